//! RTP packetizers for the video codecs a source can publish: payloads of at
//! most [`MAX_PAYLOAD`] bytes, one frame's packets in order (the publisher
//! sets the marker bit on the last one). H.264 lives in `sfu::client::h264`.

pub mod av1;
pub mod h265;
pub mod vp8;
pub mod vp9;

use crate::media::{VideoCodec, VideoFrame};
use sfu::client::h264;

/// Largest RTP payload produced, bytes (fits a 1280-byte SRTP packet budget
/// with header, extensions and auth tag under a 1500-byte MTU).
pub const MAX_PAYLOAD: usize = 1200;

/// A random 15-bit start for a VP8/VP9 PictureID.
fn random_picture_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    u16::from_be_bytes(b) & 0x7fff
}

/// The packetizer of one published video track (per-codec state such as the
/// VP8/VP9 PictureID lives here and continues across reconnects).
#[derive(Debug)]
pub enum Packetizer {
    /// RFC 6184 (single NAL units and FU-A), `sfu::client::h264`, at most
    /// `h264::MAX_PAYLOAD` (1100) bytes.
    H264,
    /// RFC 7798 (single NAL units and FU).
    H265,
    /// RFC 7741.
    Vp8(vp8::Vp8Packetizer),
    /// RFC 9628, non-flexible mode.
    Vp9(vp9::Vp9Packetizer),
    /// AOM AV1 RTP payload format.
    Av1,
}

impl Packetizer {
    /// The packetizer for `codec`.
    pub fn new(codec: VideoCodec) -> Packetizer {
        match codec {
            VideoCodec::H264 => Packetizer::H264,
            VideoCodec::H265 => Packetizer::H265,
            VideoCodec::Vp8 => Packetizer::Vp8(vp8::Vp8Packetizer::new()),
            VideoCodec::Vp9 => Packetizer::Vp9(vp9::Vp9Packetizer::new()),
            VideoCodec::Av1 => Packetizer::Av1,
        }
    }

    /// RTP payloads (each at most [`MAX_PAYLOAD`] bytes) for one frame, in
    /// sending order; empty for an empty frame.
    pub fn packetize(&mut self, f: &VideoFrame) -> Vec<Vec<u8>> {
        let whole = || f.nals.first().map_or(&[][..], Vec::as_slice);
        match self {
            Packetizer::H264 => {
                let au = h264::AccessUnit {
                    nals: f.nals.iter().map(Vec::as_slice).collect(),
                    keyframe: f.keyframe,
                };
                h264::packetize(&au, h264::MAX_PAYLOAD)
            }
            Packetizer::H265 => h265::packetize(&f.nals, MAX_PAYLOAD),
            Packetizer::Vp8(p) => p.packetize(whole(), MAX_PAYLOAD),
            Packetizer::Vp9(p) => p.packetize(whole(), f.keyframe, MAX_PAYLOAD),
            Packetizer::Av1 => av1::packetize(whole(), f.keyframe, MAX_PAYLOAD),
        }
    }
}
