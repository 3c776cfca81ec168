//! Codec choice for publishers (WHIP) and viewers (WHEP).
//!
//! The server never transcodes, so a viewer must receive exactly the codec the
//! publisher sends. A publisher's answer carries one audio and one video codec
//! (the first the publisher offered that we can forward, plus its RTX), so the
//! stream has a single, known format per track. A viewer's answer then carries
//! the viewer's own format for that codec: for H.264 the one with the same
//! profile when offered, otherwise one with the same packetization-mode
//! (RFC 6184 §8.1; decoders play other profiles in practice).

use crate::sdp_scan::{Dir, Kind, MediaSection, Offer, OfferedFormat};
use std::num::NonZeroU32;
use str0m::RtcConfig;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind};

/// One forwardable format chosen from an offer, ready to configure str0m with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// Media kind.
    pub kind: MediaKind,
    /// Index of the m-line in the offer.
    pub mline: usize,
    /// Codec.
    pub codec: Codec,
    /// Payload type as offered.
    pub pt: u8,
    /// RTX payload type as offered (RFC 4588), if any.
    pub rtx: Option<u8>,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels.
    pub channels: Option<u8>,
    /// Raw fmtp parameters.
    pub fmtp: Option<String>,
}

impl Chosen {
    /// Human-readable codec name with H.264 profile, e.g. `H264 42e01f`, `opus/48000/2`.
    pub fn describe(&self) -> String {
        let name = codec_name(self.codec);
        match self.codec {
            Codec::H264 => {
                let f = FormatParams::parse_line(self.fmtp.as_deref().unwrap_or(""));
                match f.profile_level_id {
                    Some(p) => format!("{name} {p:06x}"),
                    None => name.to_string(),
                }
            }
            _ if self.kind == MediaKind::Audio => {
                format!("{name}/{}/{}", self.clock_rate, self.channels.unwrap_or(1))
            }
            _ => name.to_string(),
        }
    }

    /// Add this format to a str0m config (after `clear_codecs`).
    pub fn add_to(&self, cfg: &mut RtcConfig) {
        let clock = NonZeroU32::new(self.clock_rate)
            .map(Frequency::from_nonzero)
            .unwrap_or(Frequency::NINETY_KHZ);
        cfg.codec_config().add_config(
            self.pt.into(),
            self.rtx.map(Into::into),
            self.codec,
            clock,
            self.channels,
            FormatParams::parse_line(self.fmtp.as_deref().unwrap_or("")),
        );
    }
}

/// Lower-case codec name as used in SDP and the API.
pub fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::H264 => "H264",
        Codec::H265 => "H265",
        Codec::Vp8 => "VP8",
        Codec::Vp9 => "VP9",
        Codec::Av1 => "AV1",
        Codec::Opus => "opus",
        Codec::PCMU => "PCMU",
        Codec::PCMA => "PCMA",
        _ => "other",
    }
}

fn codec_of(f: &OfferedFormat) -> Option<Codec> {
    Some(match f.encoding.as_str() {
        "H264" if f.clock_rate == 90_000 => Codec::H264,
        "H265" if f.clock_rate == 90_000 => Codec::H265,
        "VP8" if f.clock_rate == 90_000 => Codec::Vp8,
        "VP9" if f.clock_rate == 90_000 => Codec::Vp9,
        "AV1" if f.clock_rate == 90_000 => Codec::Av1,
        "OPUS" if f.clock_rate == 48_000 => Codec::Opus,
        "PCMU" if f.clock_rate == 8_000 => Codec::PCMU,
        "PCMA" if f.clock_rate == 8_000 => Codec::PCMA,
        _ => return None,
    })
}

fn chosen(m: &MediaSection, idx: usize, f: &OfferedFormat, codec: Codec) -> Chosen {
    let rtx = m
        .formats
        .iter()
        .find(|r| r.rtx_apt() == Some(f.pt))
        .map(|r| r.pt);
    Chosen {
        kind: if m.kind == Kind::Audio {
            MediaKind::Audio
        } else {
            MediaKind::Video
        },
        mline: idx,
        codec,
        pt: f.pt,
        rtx,
        clock_rate: f.clock_rate,
        channels: f.channels,
        fmtp: f.fmtp.clone(),
    }
}

/// Errors choosing codecs; each maps to an HTTP status in the WHIP/WHEP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// RFC 9725 §4.4.2: at most one audio and one video m-line.
    #[error("offer has more than one {0} m-line; WHIP allows one audio and one video")]
    Duplicate(&'static str),
    /// Offer direction not allowed for the endpoint.
    #[error("m-line {0} has direction {1}; {2}")]
    Direction(usize, &'static str, &'static str),
    /// No format we can forward.
    #[error("no supported codec offered for {0} (server forwards {1})")]
    Unsupported(&'static str, &'static str),
    /// Viewer cannot receive what the publisher sends.
    #[error("viewer offer cannot receive the stream's {0}")]
    ViewerCannotReceive(String),
    /// Nothing to do.
    #[error("offer has no audio or video m-line")]
    NoMedia,
}

const VIDEO_LIST: &str = "H264, VP8, VP9, AV1, H265";
const AUDIO_LIST: &str = "opus, PCMU, PCMA";

fn dir_name(d: Dir) -> &'static str {
    match d {
        Dir::SendRecv => "sendrecv",
        Dir::SendOnly => "sendonly",
        Dir::RecvOnly => "recvonly",
        Dir::Inactive => "inactive",
    }
}

/// Choose the publisher's formats from a WHIP offer (RFC 9725 §4.2, §4.4.2).
///
/// Returns one [`Chosen`] per audio/video m-line, in m-line order.
/// Errors: duplicate kinds, `recvonly`/`inactive` m-lines, or an m-line with no
/// forwardable codec (the whole POST fails, RFC 9725 §4.4.3).
pub fn choose_publisher(offer: &Offer) -> Result<Vec<Chosen>, CodecError> {
    let mut out = Vec::new();
    let (mut audio, mut video) = (false, false);
    for (i, m) in offer.media.iter().enumerate() {
        if m.kind == Kind::Other || !m.active() {
            continue;
        }
        let (seen, label) = if m.kind == Kind::Audio {
            (&mut audio, "audio")
        } else {
            (&mut video, "video")
        };
        if *seen {
            return Err(CodecError::Duplicate(label));
        }
        *seen = true;
        if matches!(m.dir, Dir::RecvOnly | Dir::Inactive) {
            return Err(CodecError::Direction(
                i,
                dir_name(m.dir),
                "a WHIP publisher must send (sendonly or sendrecv)",
            ));
        }
        let pick = m
            .formats
            .iter()
            .find_map(|f| codec_of(f).map(|c| (f, c)))
            .ok_or(CodecError::Unsupported(
                label,
                if m.kind == Kind::Audio {
                    AUDIO_LIST
                } else {
                    VIDEO_LIST
                },
            ))?;
        out.push(chosen(m, i, pick.0, pick.1));
    }
    if out.is_empty() {
        return Err(CodecError::NoMedia);
    }
    Ok(out)
}

fn h264_profile(f: &str) -> Option<u16> {
    let p = FormatParams::parse_line(f).profile_level_id?;
    Some((p >> 8) as u16)
}

fn h264_pm(f: Option<&str>) -> u8 {
    f.map(FormatParams::parse_line)
        .and_then(|p| p.packetization_mode)
        .unwrap_or(0)
}

/// For one publisher track, pick the viewer's matching format in m-line `m`.
fn viewer_match(track: &Chosen, m: &MediaSection, idx: usize) -> Option<Chosen> {
    let same_codec = |f: &&OfferedFormat| codec_of(f) == Some(track.codec);
    if track.codec == Codec::H264 {
        let want_profile = track.fmtp.as_deref().and_then(h264_profile);
        let want_pm = h264_pm(track.fmtp.as_deref());
        let candidates: Vec<&OfferedFormat> = m
            .formats
            .iter()
            .filter(same_codec)
            .filter(|f| h264_pm(f.fmtp.as_deref()) == want_pm)
            .collect();
        let exact = candidates.iter().find(|f| {
            f.fmtp.as_deref().and_then(h264_profile) == want_profile && want_profile.is_some()
        });
        let f = exact.or(candidates.first())?;
        return Some(chosen(m, idx, f, Codec::H264));
    }
    let f = m.formats.iter().find(same_codec)?;
    Some(chosen(m, idx, f, track.codec))
}

/// Choose the viewer's formats from a WHEP offer given the publisher's tracks.
///
/// Returns `(publisher track index, viewer format)` pairs. An m-line of a kind
/// the stream does not have, or whose codec the viewer cannot receive, is left
/// out (str0m rejects it with port 0); if nothing remains, the error names the
/// codec. `sendonly`/`inactive` viewer m-lines are refused (WHEP: viewers receive).
pub fn choose_viewer(offer: &Offer, tracks: &[Chosen]) -> Result<Vec<(usize, Chosen)>, CodecError> {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    for (i, m) in offer.media.iter().enumerate() {
        if m.kind == Kind::Other || !m.active() {
            continue;
        }
        if matches!(m.dir, Dir::SendOnly | Dir::Inactive) {
            return Err(CodecError::Direction(
                i,
                dir_name(m.dir),
                "a WHEP viewer must receive (recvonly or sendrecv)",
            ));
        }
        let kind = if m.kind == Kind::Audio {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        let Some((ti, track)) = tracks.iter().enumerate().find(|(ti, t)| {
            t.kind == kind && !out.iter().any(|(used, _): &(usize, Chosen)| used == ti)
        }) else {
            continue;
        };
        match viewer_match(track, m, i) {
            Some(c) => out.push((ti, c)),
            None => missing.push(track.describe()),
        }
    }
    if out.is_empty() {
        if missing.is_empty() {
            return Err(CodecError::NoMedia);
        }
        return Err(CodecError::ViewerCannotReceive(missing.join(", ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp_scan::scan;

    fn offer(dir: &str, video: &str) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=ice-ufrag:u\r\na=ice-pwd:p\r\n\
a=fingerprint:sha-256 AA\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na={dir}\r\n\
a=rtpmap:111 opus/48000/2\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100\r\na=mid:1\r\na={dir}\r\n{video}"
        )
    }

    const CHROME_VIDEO: &str = "a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n\
a=rtpmap:98 H264/90000\r\na=fmtp:98 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:99 rtx/90000\r\na=fmtp:99 apt=98\r\n\
a=rtpmap:100 H264/90000\r\na=fmtp:100 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032\r\n";

    #[test]
    fn publisher_takes_first_supported_with_rtx() {
        let o = scan(&offer("sendonly", CHROME_VIDEO)).unwrap();
        let c = choose_publisher(&o).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].codec, Codec::Opus);
        assert_eq!(c[1].codec, Codec::Vp8);
        assert_eq!(c[1].rtx, Some(97));
    }

    #[test]
    fn publisher_recvonly_is_refused() {
        let o = scan(&offer("recvonly", CHROME_VIDEO)).unwrap();
        assert!(matches!(
            choose_publisher(&o),
            Err(CodecError::Direction(0, "recvonly", _))
        ));
    }

    #[test]
    fn viewer_gets_same_h264_profile_or_same_packetization_mode() {
        let pubv = Chosen {
            kind: MediaKind::Video,
            mline: 1,
            codec: Codec::H264,
            pt: 102,
            rtx: None,
            clock_rate: 90_000,
            channels: None,
            fmtp: Some("packetization-mode=1;profile-level-id=640028".into()),
        };
        let o = scan(&offer("recvonly", CHROME_VIDEO)).unwrap();
        let v = choose_viewer(&o, std::slice::from_ref(&pubv)).unwrap();
        assert_eq!(v[0].1.pt, 100, "High profile offered: use it");
        // aiortc-like viewer: only Constrained Baseline offered.
        let only_cb =
            "a=rtpmap:98 H264/90000\r\na=fmtp:98 packetization-mode=1;profile-level-id=42e01f\r\n";
        let o = scan(&offer("recvonly", only_cb)).unwrap();
        let v = choose_viewer(&o, std::slice::from_ref(&pubv)).unwrap();
        assert_eq!(v[0].1.pt, 98);
        // VP8-only viewer cannot receive H.264.
        let vp8 = "a=rtpmap:96 VP8/90000\r\n";
        let o =
            scan(&offer("recvonly", vp8).replace("m=audio", "m=audio 0 X 0\r\nm=text")).unwrap();
        let err = choose_viewer(&o, std::slice::from_ref(&pubv)).unwrap_err();
        assert!(err.to_string().contains("H264 640028"), "{err}");
    }
}
