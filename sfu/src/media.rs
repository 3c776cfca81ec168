//! The media packet descriptor handed from a publisher to its viewers.
//!
//! Built once per ingress RTP packet on the publisher's worker and shared by
//! reference count (`Arc`) with every worker that has viewers of the stream;
//! the payload bytes themselves are str0m's `Arc<[u8]>`, never copied.

use std::sync::Arc;
use std::time::Instant;
use str0m::format::Codec;

/// One RTP packet from a publisher, as viewers need it.
#[derive(Debug, Clone)]
pub struct MediaPacket {
    /// Publication this packet belongs to.
    pub publication: u64,
    /// Index of the publisher track (`Publication::tracks`).
    pub track: usize,
    /// The track is video (the marker bit ends a frame).
    pub video: bool,
    /// Source identity for rewriting (publisher SSRC; changes on re-publish).
    pub source: u64,
    /// Simulcast layer slot (`Publication::layers`); 0 without simulcast.
    pub layer: u8,
    /// Extended sequence number as received (RFC 3550 §A.1, RTX unwrapped).
    pub seq: u64,
    /// RTP timestamp as received, in the track clock.
    pub ts: u32,
    /// RTP marker bit (end of frame for video).
    pub marker: bool,
    /// The packet starts a keyframe (SPS/IDR for H.264, key frame for VP8/VP9/AV1).
    pub keyframe: bool,
    /// Arrival time at the server.
    pub arrival: Instant,
    /// Audio level header extension (RFC 6464), dBov.
    pub audio_level: Option<i8>,
    /// Voice activity flag (RFC 6464).
    pub voice_activity: Option<bool>,
    /// RTP payload, shared.
    pub payload: Arc<[u8]>,
}

/// True when `payload` begins a keyframe for `codec`.
///
/// H.264: a packet carrying an SPS (type 7) or an IDR slice start (type 5),
/// so a viewer starts at the parameter sets that precede the IDR (RFC 6184).
/// H.265 likewise: a VPS (type 32, alone or first in an aggregation packet)
/// or an IRAP NAL unit start (RFC 7798).
pub fn starts_keyframe(codec: Codec, payload: &[u8]) -> bool {
    use str0m::format::*;
    match codec {
        Codec::H264 => detect_h264_nalu(payload, 7) || detect_h264_keyframe(payload),
        Codec::Vp8 => detect_vp8_keyframe(payload),
        Codec::Vp9 => detect_vp9_keyframe(payload),
        Codec::Av1 => detect_av1_keyframe(payload),
        Codec::H265 => h265_vps(payload) || detect_h265_keyframe(payload),
        _ => true,
    }
}

/// Marks only the first keyframe-starting packet of each video access unit.
///
/// An H.264 keyframe access unit often spans several packets that each
/// satisfy [`starts_keyframe`] (SPS, PPS, then an IDR FU-A start, all with
/// one RTP timestamp). A viewer gate or layer switch that opened at the
/// second of those would miss the parameter sets and the decoder could not
/// start; so within one RTP timestamp only the first such packet counts.
/// A lost first packet is harmless: the next one in the same access unit
/// is then the first seen and is marked.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyframeStart {
    /// RTP timestamp (track clock) of the last access unit marked.
    last: Option<u32>,
}

impl KeyframeStart {
    /// True when this packet starts a keyframe access unit not yet marked.
    /// Non-video codecs: every packet (each is decodable on its own).
    pub fn on_packet(&mut self, codec: Codec, ts: u32, payload: &[u8]) -> bool {
        if !starts_keyframe(codec, payload) {
            return false;
        }
        if !codec.is_video() {
            return true;
        }
        let first = self.last != Some(ts);
        self.last = Some(ts);
        first
    }
}

/// An H.265 payload that is a VPS, or an aggregation packet (type 48,
/// RFC 7798 §4.4.2) whose first NAL unit is one.
fn h265_vps(payload: &[u8]) -> bool {
    let t = |b: u8| (b >> 1) & 0x3f;
    match payload {
        [b, ..] if t(*b) == 32 => true,
        [b, _, _, _, inner, ..] if t(*b) == 48 => t(*inner) == 32,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_keyframe_detection() {
        assert!(starts_keyframe(Codec::H264, &[0x67, 0x42])); // SPS
        assert!(starts_keyframe(Codec::H264, &[0x65, 0x88])); // IDR
        assert!(starts_keyframe(Codec::H264, &[0x7c, 0x85])); // FU-A start, IDR
        assert!(!starts_keyframe(Codec::H264, &[0x7c, 0x05])); // FU-A middle
        assert!(!starts_keyframe(Codec::H264, &[0x41, 0x9a])); // non-IDR slice
        assert!(starts_keyframe(Codec::Opus, &[1, 2, 3]));
    }

    #[test]
    fn h265_keyframe_starts_at_the_vps() {
        assert!(starts_keyframe(Codec::H265, &[0x40, 0x01, 0x0c])); // VPS
        assert!(starts_keyframe(
            Codec::H265,
            &[0x60, 0x01, 0, 4, 0x40, 0x01]
        )); // AP: VPS
        assert!(starts_keyframe(Codec::H265, &[0x26, 0x01, 0xaf])); // IDR_W_RADL
        assert!(starts_keyframe(Codec::H265, &[0x62, 0x01, 0x93])); // FU start, IDR
        assert!(!starts_keyframe(Codec::H265, &[0x62, 0x01, 0x13])); // FU middle
        assert!(!starts_keyframe(Codec::H265, &[0x42, 0x01, 0x01])); // SPS
        assert!(!starts_keyframe(Codec::H265, &[0x02, 0x01, 0xd0])); // TRAIL_R
    }

    #[test]
    fn only_the_first_packet_of_a_keyframe_access_unit_is_marked() {
        let mut k = KeyframeStart::default();
        assert!(k.on_packet(Codec::H264, 3000, &[0x67, 0x42])); // SPS
        assert!(!k.on_packet(Codec::H264, 3000, &[0x68, 0xce])); // PPS
        assert!(!k.on_packet(Codec::H264, 3000, &[0x7c, 0x85])); // IDR FU-A start
        assert!(!k.on_packet(Codec::H264, 6000, &[0x41, 0x9a])); // P slice
        // The next GOP, whose SPS packet was lost: the IDR start counts.
        assert!(k.on_packet(Codec::H264, 9000, &[0x7c, 0x85]));
        let mut h = KeyframeStart::default();
        assert!(h.on_packet(Codec::H265, 1, &[0x60, 0x01, 0, 4, 0x40, 0x01])); // AP: VPS
        assert!(!h.on_packet(Codec::H265, 1, &[0x62, 0x01, 0x95])); // FU start, CRA
        let mut a = KeyframeStart::default();
        assert!(a.on_packet(Codec::Opus, 960, &[1]));
        assert!(a.on_packet(Codec::Opus, 960, &[1]));
    }
}
