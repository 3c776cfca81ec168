//! What sources hand to the publisher.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One H.264 access unit with its 90 kHz RTP timestamp.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// RTP timestamp (90 kHz), already continuous across loops and restarts.
    pub ts: u32,
    /// NAL units without start codes (no access unit delimiters).
    pub nals: Vec<Vec<u8>>,
    /// Contains an IDR slice.
    pub keyframe: bool,
}

impl VideoFrame {
    /// Build a frame; `keyframe` is derived from the NAL types.
    pub fn new(ts: u32, nals: Vec<Vec<u8>>) -> VideoFrame {
        let keyframe = nals.iter().any(|n| nal_type(n) == 5);
        VideoFrame { ts, nals, keyframe }
    }
}

/// NAL unit type.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// A source's output.
#[derive(Debug)]
pub enum Media {
    /// A video access unit, due now.
    Video(VideoFrame),
    /// An audio packet (Opus, PCMU or PCMA as in [`SourceInfo::audio`]),
    /// passed through unchanged.
    Audio {
        /// RTP timestamp (the codec's clock: 48 kHz Opus, 8 kHz G.711).
        ts: u32,
        /// RTP marker bit.
        marker: bool,
        /// Payload.
        payload: Arc<[u8]>,
    },
    /// The source went silent and was reset by the stall watchdog.
    Stalled(String),
    /// The source is flowing again after a stall.
    Resumed,
    /// The source ended (end of file without `--loop`, end of stdin).
    End,
    /// The source failed and cannot go on (exit 3).
    Failed(String),
}

/// What the publisher must know before the first POST.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    /// Human-readable description for the log.
    pub describe: String,
    /// Publishes H.264 video.
    pub video: bool,
    /// `profile-level-id`, when known before the stream flows (file SPS,
    /// `sprop-parameter-sets`); otherwise learned from the first in-band SPS.
    pub profile: Option<u32>,
    /// SPS/PPS known up front (`sprop-parameter-sets`, first ones of a file).
    pub params: Vec<Vec<u8>>,
    /// The audio track published (Opus, PCMU or PCMA), if any.
    pub audio: Option<sfu::client::Track>,
    /// The source acts on [`KeyframeRequest`]s (the `test` encoder makes an
    /// IDR, files skip ahead to their next IDR). Cameras and RTP senders
    /// cannot be asked: their requests are only counted and logged.
    pub makes_keyframes: bool,
}

/// A pending keyframe request from the server (RTCP PLI or FIR, RFC 4585
/// §6.3.1 / RFC 5104 §4.3.1), shared between the publisher, which raises it,
/// and a source that can act on it. Requests arriving before the source acts
/// fold into one.
#[derive(Debug, Clone, Default)]
pub struct KeyframeRequest(Arc<AtomicBool>);

impl KeyframeRequest {
    /// Ask for a keyframe.
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a keyframe was asked for since the last call (and clear it).
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::Relaxed)
    }
}
