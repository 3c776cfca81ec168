//! The WHIP/WHEP client on str0m, shared by `whip-ingest`, `load-test` and the
//! end-to-end tests.
//!
//! [`Session::publish`] POSTs a `sendonly` offer to a WHIP endpoint
//! (RFC 9725 §4.2), [`Session::play`] a `recvonly` offer to a WHEP endpoint.
//! Each session owns one UDP socket and a Tokio task that drives its `Rtc`;
//! media goes in with [`Session::send`] and comes out as [`ClientEvent`]s.
//! [`Session::server_events`] opens a WHEP session's server-sent event
//! stream ([`sse`]).

pub mod depay;
pub mod h264;
pub mod http;
pub mod link;
pub mod ogg;
mod session;
pub mod sps;
pub mod sse;
pub mod stun;
pub mod turn;

pub use session::{
    ClientEvent, FEEDBACK_INTERVAL, Feedback, GATHER_TIMEOUT, Gathered, HeaderSink, NoCommonCodec,
    Options, OutPacket, Received, Refused, Session, Signalling, Track,
};
