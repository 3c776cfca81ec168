//! What sources hand to the publisher.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The video codec a source publishes; selects the offered
/// [`sfu::client::Track`] and the RTP packetizer ([`crate::packetize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 (RFC 6184).
    H264,
    /// H.265 (RFC 7798).
    H265,
    /// VP8 (RFC 7741).
    Vp8,
    /// VP9 (RFC 9628).
    Vp9,
    /// AV1 (AOM "RTP Payload Format for AV1").
    Av1,
}

impl VideoCodec {
    /// Display name ("H.264", "VP9", ...).
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::H264 => "H.264",
            VideoCodec::H265 => "H.265",
            VideoCodec::Vp8 => "VP8",
            VideoCodec::Vp9 => "VP9",
            VideoCodec::Av1 => "AV1",
        }
    }
}

/// One video frame (access unit / temporal unit) with its 90 kHz RTP
/// timestamp, codec-agnostic.
///
/// `nals` holds, by codec: H.264/H.265 — the NAL units without start codes
/// (no access unit delimiters); VP8/VP9 — exactly one element, the compressed
/// frame as stored in IVF (a VP9 superframe stays whole); AV1 — exactly one
/// element, the temporal unit's OBUs in low-overhead format (each with
/// `obu_has_size_field` = 1, as in IVF).
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// RTP timestamp (90 kHz), already continuous across loops and restarts.
    pub ts: u32,
    /// NAL units, or the one compressed frame (see the type's docs).
    pub nals: Vec<Vec<u8>>,
    /// A random access point: H.264 IDR, H.265 IRAP, VP8/VP9/AV1 key frame.
    pub keyframe: bool,
}

impl VideoFrame {
    /// An H.264 access unit; `keyframe` is derived from the NAL types (IDR = 5).
    pub fn new(ts: u32, nals: Vec<Vec<u8>>) -> VideoFrame {
        let keyframe = nals.iter().any(|n| nal_type(n) == 5);
        VideoFrame { ts, nals, keyframe }
    }

    /// An H.265 access unit; `keyframe` when it has an IRAP NAL unit (types
    /// 16..=23, H.265 §7.4.2.2).
    pub fn h265(ts: u32, nals: Vec<Vec<u8>>) -> VideoFrame {
        let keyframe = nals.iter().any(|n| (16..=23).contains(&h265_type(n)));
        VideoFrame { ts, nals, keyframe }
    }

    /// One VP8/VP9 frame or AV1 temporal unit, whole.
    pub fn whole(ts: u32, data: Vec<u8>, keyframe: bool) -> VideoFrame {
        VideoFrame {
            ts,
            nals: vec![data],
            keyframe,
        }
    }
}

/// H.265 NAL unit type (bits 1..7 of the two-byte header, RFC 7798 §1.1.4).
pub fn h265_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| (b >> 1) & 0x3f)
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
    /// Publishes video.
    pub video: bool,
    /// The video codec (H.264 for everything but IVF files and H.265 cameras).
    pub codec: VideoCodec,
    /// H.264 `profile-level-id`, when known before the stream flows (file SPS,
    /// `sprop-parameter-sets`); otherwise learned from the first in-band SPS.
    pub profile: Option<u32>,
    /// H.264 SPS/PPS known up front (`sprop-parameter-sets`, first ones of a file).
    pub params: Vec<Vec<u8>>,
    /// The audio track published (Opus, PCMU or PCMA), if any.
    pub audio: Option<sfu::client::Track>,
    /// The source acts on [`KeyframeRequest`]s (the `test` encoder makes an
    /// IDR, files skip ahead to their next keyframe). Cameras and RTP senders
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
