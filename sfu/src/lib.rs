//! A WHIP (RFC 9725) / WHEP (draft-ietf-wish-whep) selective forwarding unit.
//!
//! Layers, from the wire inwards:
//! - [`udp`]: one UDP port, sockets per local address, receive threads.
//! - [`demux`]: datagram → peer by ICE ufrag, then by learned address.
//! - [`worker`]: threads owning disjoint peers (str0m `Rtc`s) and fan-out.
//! - [`forward`]: pure state machines (rewrite, keyframe gating/throttling).
//! - [`http`]: WHIP/WHEP endpoints, API, embedded web UI.
//! - [`client`]: the WHIP/WHEP client on str0m used by `whip-ingest`,
//!   `load-test` and the tests.

#![warn(missing_docs)]

pub mod client;
pub mod codecs;
pub mod config;
pub mod demux;
pub mod dtls;
pub mod forward;
pub mod http;
pub mod layers;
pub mod media;
pub mod metrics;
pub mod registry;
pub mod rtc_config;
pub mod sdp_scan;
pub mod server;
pub mod slots;
pub mod stats;
pub mod stun_shim;
pub mod udp;
pub mod worker;
