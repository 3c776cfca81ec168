//! Pure forwarding state machines: no sockets, no clocks, no str0m.
//!
//! Each machine is fed with time (`Instant`) and input, and returns what to do.
//! They are unit-tested in isolation and driven by the worker on the hot path.

pub mod gop;
pub mod keyframe;
pub mod layer;
pub mod rewrite;
pub mod vp8ids;

pub use gop::GopCache;
pub use keyframe::{AccessUnitHold, KeyframeThrottle, KeyframeWaiter};
pub use layer::{Admit, AutoLayer, LayerGate};
pub use rewrite::{Rewrite, RewriteDecision};
