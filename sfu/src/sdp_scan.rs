//! A small, allocation-light reader for SDP offers (RFC 8866) that extracts what
//! the server must decide before handing the offer to str0m: media kinds,
//! directions (RFC 8866 §6.7), offered codecs with their `a=fmtp` parameters,
//! and RTX associations (RFC 4588 §8.6).
//!
//! str0m parses and negotiates the offer itself; this scan only picks codecs and
//! validates WHIP/WHEP rules (RFC 9725 §4.2, §4.4.2) so errors get exact statuses.

/// Media kind of an m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `m=audio`
    Audio,
    /// `m=video`
    Video,
    /// `m=application` (data channels) or anything else.
    Other,
}

/// Direction attribute of an m-line (RFC 8866 §6.7; default `sendrecv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// `a=sendrecv`
    SendRecv,
    /// `a=sendonly`
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
}

/// One payload type offered on an m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferedFormat {
    /// RTP payload type (0–127).
    pub pt: u8,
    /// Encoding name from `a=rtpmap`, upper-cased (e.g. `H264`, `OPUS`, `RTX`).
    pub encoding: String,
    /// Clock rate in Hz from `a=rtpmap`.
    pub clock_rate: u32,
    /// Channel count from `a=rtpmap` (audio), if given.
    pub channels: Option<u8>,
    /// Raw `a=fmtp` parameter string (after the PT), if any.
    pub fmtp: Option<String>,
}

impl OfferedFormat {
    /// Value of one `key=value` fmtp parameter (case-insensitive key).
    pub fn fmtp_param(&self, key: &str) -> Option<&str> {
        self.fmtp.as_deref()?.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
        })
    }

    /// RTX `apt=` association: the PT this RTX format repairs.
    pub fn rtx_apt(&self) -> Option<u8> {
        if self.encoding != "RTX" {
            return None;
        }
        self.fmtp_param("apt")?.parse().ok()
    }
}

/// One m-line of an offer.
#[derive(Debug, Clone)]
pub struct MediaSection {
    /// Kind.
    pub kind: Kind,
    /// Port from the m-line (0 = rejected/disabled).
    pub port: u16,
    /// Direction.
    pub dir: Dir,
    /// `a=mid` value.
    pub mid: Option<String>,
    /// Formats in m-line order (the offerer's preference).
    pub formats: Vec<OfferedFormat>,
    /// `a=rid` lines present (simulcast, RFC 8851).
    pub rids: usize,
    /// `a=bundle-only` (RFC 8843 §6): port 0 but part of the BUNDLE group.
    pub bundle_only: bool,
}

impl MediaSection {
    /// The m-line is in use: a non-zero port, or port 0 with `a=bundle-only`
    /// (JSEP §5.2.1: `max-bundle` offers mark every m-line but the first so).
    pub fn active(&self) -> bool {
        self.port != 0 || self.bundle_only
    }
}

/// Summary of an offer.
#[derive(Debug, Clone, Default)]
pub struct Offer {
    /// All m-lines in order.
    pub media: Vec<MediaSection>,
    /// `a=ice-lite` at session level.
    pub ice_lite: bool,
    /// Some `a=ice-ufrag` with a value is present.
    pub has_ufrag: bool,
    /// The first `a=ice-ufrag` value.
    pub ufrag: String,
    /// Some `a=ice-pwd` with a value is present.
    pub has_pwd: bool,
    /// Some `a=fingerprint` with a value is present.
    pub has_fingerprint: bool,
    /// Some `a=ice-ufrag`, `a=ice-pwd` or `a=fingerprint` has an empty value.
    pub empty_transport_attr: bool,
}

/// Why an offer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Does not start with `v=0`.
    #[error("not an SDP offer: body must start with v=0")]
    NotSdp,
    /// No m-line at all.
    #[error("SDP has no media (m=) lines")]
    NoMedia,
    /// Too many m-lines.
    #[error("SDP has {0} m-lines; at most {MAX_MEDIA} are accepted")]
    TooManyMedia(usize),
    /// A line is malformed.
    #[error("malformed SDP line {0}: {1}")]
    BadLine(usize, &'static str),
    /// Missing or empty ICE credentials or DTLS fingerprint.
    #[error("SDP lacks a=ice-ufrag, a=ice-pwd or a=fingerprint, or one is empty")]
    NoTransport,
}

/// Upper bound on m-lines accepted in an offer.
pub const MAX_MEDIA: usize = 16;

/// Read an offer. Lines may end with CRLF or LF.
pub fn scan(sdp: &str) -> Result<Offer, ScanError> {
    let sdp = sdp.trim_start_matches('\u{feff}');
    if !sdp.starts_with("v=0") {
        return Err(ScanError::NotSdp);
    }
    let mut offer = Offer::default();
    for (i, raw) in sdp.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let bytes = line.as_bytes();
        if bytes.len() < 2 || bytes[1] != b'=' {
            return Err(ScanError::BadLine(i + 1, "expected <type>=<value>"));
        }
        let val = &line[2..];
        match bytes[0] {
            b'm' => {
                if offer.media.len() >= MAX_MEDIA {
                    return Err(ScanError::TooManyMedia(offer.media.len() + 1));
                }
                let mut it = val.split_ascii_whitespace();
                let kind = match it.next() {
                    Some("audio") => Kind::Audio,
                    Some("video") => Kind::Video,
                    Some(_) => Kind::Other,
                    None => return Err(ScanError::BadLine(i + 1, "empty m-line")),
                };
                let port = it
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or(ScanError::BadLine(i + 1, "bad m-line port"))?;
                let _proto = it
                    .next()
                    .ok_or(ScanError::BadLine(i + 1, "m-line lacks proto"))?;
                let mut formats = Vec::new();
                if kind != Kind::Other {
                    for f in it {
                        let pt: u8 = f
                            .parse()
                            .map_err(|_| ScanError::BadLine(i + 1, "bad payload type"))?;
                        if pt > 127 {
                            return Err(ScanError::BadLine(i + 1, "payload type > 127"));
                        }
                        formats.push(OfferedFormat {
                            pt,
                            encoding: String::new(),
                            clock_rate: 0,
                            channels: None,
                            fmtp: None,
                        });
                    }
                }
                offer.media.push(MediaSection {
                    kind,
                    port,
                    dir: Dir::SendRecv,
                    mid: None,
                    formats,
                    rids: 0,
                    bundle_only: false,
                });
            }
            b'a' => {
                let (name, rest) = val.split_once(':').unwrap_or((val, ""));
                match name {
                    "ice-lite" => offer.ice_lite = true,
                    "ice-ufrag" | "ice-pwd" | "fingerprint" if rest.trim().is_empty() => {
                        offer.empty_transport_attr = true;
                    }
                    "ice-ufrag" => {
                        if !offer.has_ufrag {
                            offer.ufrag = rest.trim().to_string();
                        }
                        offer.has_ufrag = true;
                    }
                    "ice-pwd" => offer.has_pwd = true,
                    "fingerprint" => offer.has_fingerprint = true,
                    _ => {}
                }
                let Some(m) = offer.media.last_mut() else {
                    continue;
                };
                match name {
                    "sendrecv" => m.dir = Dir::SendRecv,
                    "sendonly" => m.dir = Dir::SendOnly,
                    "recvonly" => m.dir = Dir::RecvOnly,
                    "inactive" => m.dir = Dir::Inactive,
                    "mid" => m.mid = Some(rest.trim().to_string()),
                    "rid" => m.rids += 1,
                    "bundle-only" => m.bundle_only = true,
                    "rtpmap" => {
                        let (pt, enc) = rest
                            .split_once(' ')
                            .ok_or(ScanError::BadLine(i + 1, "bad a=rtpmap"))?;
                        let pt: u8 = pt
                            .trim()
                            .parse()
                            .map_err(|_| ScanError::BadLine(i + 1, "bad a=rtpmap payload type"))?;
                        let mut parts = enc.trim().split('/');
                        let name = parts.next().unwrap_or("").to_ascii_uppercase();
                        let clock = parts.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                        let ch = parts.next().and_then(|c| c.parse().ok());
                        if let Some(f) = m.formats.iter_mut().find(|f| f.pt == pt) {
                            f.encoding = name;
                            f.clock_rate = clock;
                            f.channels = ch;
                        }
                    }
                    "fmtp" => {
                        if let Some((pt, params)) = rest.split_once(' ')
                            && let Ok(pt) = pt.trim().parse::<u8>()
                            && let Some(f) = m.formats.iter_mut().find(|f| f.pt == pt)
                        {
                            f.fmtp = Some(params.trim().to_string());
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    if offer.media.is_empty() {
        return Err(ScanError::NoMedia);
    }
    // Static payload types without rtpmap (RFC 3551): PCMU 0, PCMA 8.
    for m in &mut offer.media {
        for f in &mut m.formats {
            if f.encoding.is_empty() {
                match f.pt {
                    0 => (f.encoding, f.clock_rate, f.channels) = ("PCMU".into(), 8000, Some(1)),
                    8 => (f.encoding, f.clock_rate, f.channels) = ("PCMA".into(), 8000, Some(1)),
                    _ => {}
                }
            }
        }
    }
    if !offer.has_ufrag || !offer.has_pwd || !offer.has_fingerprint || offer.empty_transport_attr {
        return Err(ScanError::NoTransport);
    }
    Ok(offer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\na=fingerprint:sha-256 AA:BB\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 H264/90000\r\n\
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1\r\n\
a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n";

    #[test]
    fn reads_kinds_codecs_and_rtx() {
        let o = scan(OFFER).unwrap();
        assert_eq!(o.media.len(), 2);
        assert_eq!(o.media[0].kind, Kind::Audio);
        assert_eq!(o.media[0].dir, Dir::SendOnly);
        assert_eq!(o.media[0].formats[0].encoding, "OPUS");
        assert_eq!(o.media[0].formats[0].channels, Some(2));
        assert_eq!(o.media[0].formats[1].encoding, "PCMU");
        let v = &o.media[1];
        assert_eq!(v.mid.as_deref(), Some("1"));
        assert_eq!(v.formats[0].fmtp_param("profile-level-id"), Some("42e01f"));
        assert_eq!(v.formats[0].fmtp_param("PACKETIZATION-MODE"), Some("1"));
        assert_eq!(v.formats[1].rtx_apt(), Some(96));
    }

    #[test]
    fn bundle_only_port_zero_is_active() {
        let o = scan(
            &OFFER
                .replace("m=audio 9 ", "m=audio 0 ")
                .replace("a=mid:0\r\n", "a=mid:0\r\na=bundle-only\r\n"),
        )
        .unwrap();
        assert_eq!(o.media[0].port, 0);
        assert!(o.media[0].active());
        let rejected = scan(&OFFER.replace("m=audio 9 ", "m=audio 0 ")).unwrap();
        assert!(!rejected.media[0].active());
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(scan("hello").unwrap_err(), ScanError::NotSdp);
        assert_eq!(
            scan("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n").unwrap_err(),
            ScanError::NoMedia
        );
        let many = format!("{OFFER}{}", "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n".repeat(20));
        assert!(matches!(scan(&many), Err(ScanError::TooManyMedia(_))));
        let no_ice = OFFER.replace("a=ice-ufrag:abcd\r\n", "");
        assert_eq!(scan(&no_ice).unwrap_err(), ScanError::NoTransport);
    }

    #[test]
    fn missing_or_empty_ice_credentials_are_the_same_error() {
        let pwd = "a=ice-pwd:0123456789012345678901\r\n";
        for bad in [
            OFFER.replace("a=ice-ufrag:abcd", "a=ice-ufrag:"),
            OFFER.replace("a=ice-ufrag:abcd", "a=ice-ufrag: "),
            OFFER.replace(pwd, ""),
            OFFER.replace(pwd, "a=ice-pwd:\r\n"),
            OFFER.replace("a=fingerprint:sha-256 AA:BB", "a=fingerprint:"),
            // An empty one is not made good by another with a value.
            OFFER.replace("a=mid:1\r\n", "a=mid:1\r\na=ice-ufrag:\r\n"),
        ] {
            assert_eq!(scan(&bad).unwrap_err(), ScanError::NoTransport, "{bad}");
        }
    }
}
