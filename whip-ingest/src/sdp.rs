//! The SDP files that ffmpeg (`-sdp_file`) and GStreamer write for plain RTP
//! output (RFC 8866): media kinds, ports, addresses, `rtpmap` and `fmtp`.

use base64::Engine;
use std::net::IpAddr;

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDesc {
    /// `video`, `audio`, ...
    pub kind: String,
    /// RTP port.
    pub port: u16,
    /// Payload types listed on the `m=` line.
    pub pts: Vec<u8>,
    /// Connection address (`c=` of the section, else of the session).
    pub addr: Option<IpAddr>,
    /// `a=rtpmap` entries.
    pub rtpmap: Vec<RtpMap>,
    /// `a=fmtp` entries: payload type and parameters.
    pub fmtp: Vec<(u8, String)>,
}

/// One `a=rtpmap:<pt> <name>/<clock>[/<channels>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub pt: u8,
    /// Encoding name as written (compare case-insensitively).
    pub name: String,
    /// Clock rate.
    pub clock: u32,
    /// Channels (audio).
    pub channels: Option<u8>,
}

impl MediaDesc {
    /// The codec of the first payload type: (pt, encoding name upper-cased,
    /// clock rate). Static payload types without `rtpmap` get their RFC 3551
    /// names.
    pub fn codec(&self) -> Option<(u8, String, u32)> {
        let pt = *self.pts.first()?;
        if let Some(m) = self.rtpmap.iter().find(|m| m.pt == pt) {
            return Some((pt, m.name.to_ascii_uppercase(), m.clock));
        }
        let (name, clock) = match pt {
            0 => ("PCMU", 8000),
            8 => ("PCMA", 8000),
            9 => ("G722", 8000),
            14 => ("MPA", 90000),
            26 => ("JPEG", 90000),
            32 => ("MPV", 90000),
            33 => ("MP2T", 90000),
            _ => return Some((pt, format!("payload type {pt}"), 0)),
        };
        Some((pt, name.into(), clock))
    }

    /// A format parameter of payload type `pt` (`key=value`, `;`-separated).
    pub fn fmtp_param(&self, pt: u8, key: &str) -> Option<String> {
        let (_, params) = self.fmtp.iter().find(|(p, _)| *p == pt)?;
        params.split(';').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case(key)
                .then(|| v.trim().to_string())
        })
    }

    /// Decoded `sprop-parameter-sets` (RFC 6184 §8.1) of payload type `pt`.
    pub fn sprop_parameter_sets(&self, pt: u8) -> Result<Vec<Vec<u8>>, String> {
        let Some(v) = self.fmtp_param(pt, "sprop-parameter-sets") else {
            return Ok(Vec::new());
        };
        v.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim())
                    .map_err(|e| format!("bad sprop-parameter-sets '{s}': {e}"))
            })
            .collect()
    }
}

/// Parse an SDP description. Errors name the line.
pub fn parse(text: &str) -> Result<Vec<MediaDesc>, String> {
    let mut session_addr: Option<IpAddr> = None;
    let mut media: Vec<MediaDesc> = Vec::new();
    let mut seen_v = false;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let bad = |what: &str| format!("line {n}: {what}: '{}'", clip(line));
        let Some((key, val)) = line.split_once('=') else {
            return Err(bad("not a <type>=<value> line"));
        };
        if key.len() != 1 || !key.as_bytes()[0].is_ascii_lowercase() {
            return Err(bad("not a <type>=<value> line"));
        }
        if !seen_v {
            if line != "v=0" {
                return Err(bad("an SDP description starts with v=0"));
            }
            seen_v = true;
            continue;
        }
        match key {
            "m" => {
                let f: Vec<&str> = val.split_whitespace().collect();
                if f.len() < 4 {
                    return Err(bad("bad m= line"));
                }
                let port = f[1]
                    .split('/')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| bad("bad port"))?;
                if !f[2].starts_with("RTP/") {
                    return Err(bad("not an RTP transport"));
                }
                let pts = f[3..]
                    .iter()
                    .map(|p| p.parse::<u8>().ok().filter(|p| *p < 128))
                    .collect::<Option<Vec<u8>>>()
                    .ok_or_else(|| bad("bad payload type"))?;
                media.push(MediaDesc {
                    kind: f[0].to_ascii_lowercase(),
                    port,
                    pts,
                    addr: session_addr,
                    rtpmap: Vec::new(),
                    fmtp: Vec::new(),
                });
            }
            "c" => {
                let f: Vec<&str> = val.split_whitespace().collect();
                if f.len() != 3 || f[0] != "IN" {
                    return Err(bad("bad c= line"));
                }
                // Multicast addresses may carry /ttl[/count].
                let addr = f[2]
                    .split('/')
                    .next()
                    .and_then(|a| a.parse::<IpAddr>().ok())
                    .ok_or_else(|| bad("bad connection address"))?;
                match media.last_mut() {
                    Some(m) => m.addr = Some(addr),
                    None => session_addr = Some(addr),
                }
            }
            "a" => {
                let Some(m) = media.last_mut() else { continue };
                if let Some(v) = val.strip_prefix("rtpmap:") {
                    let (pt, enc) = v.split_once(' ').ok_or_else(|| bad("bad rtpmap"))?;
                    let pt = pt.trim().parse::<u8>().map_err(|_| bad("bad rtpmap"))?;
                    let mut p = enc.trim().split('/');
                    let name = p.next().unwrap_or_default().to_string();
                    let clock = p
                        .next()
                        .and_then(|c| c.parse::<u32>().ok())
                        .ok_or_else(|| bad("bad rtpmap clock rate"))?;
                    let channels = p.next().and_then(|c| c.parse::<u8>().ok());
                    m.rtpmap.push(RtpMap {
                        pt,
                        name,
                        clock,
                        channels,
                    });
                } else if let Some(v) = val.strip_prefix("fmtp:") {
                    let (pt, params) = v.split_once(' ').ok_or_else(|| bad("bad fmtp"))?;
                    let pt = pt.trim().parse::<u8>().map_err(|_| bad("bad fmtp"))?;
                    m.fmtp.push((pt, params.trim().to_string()));
                }
            }
            _ => {}
        }
    }
    if !seen_v {
        return Err("empty file, not an SDP description".into());
    }
    if media.is_empty() {
        return Err("no m= line".into());
    }
    Ok(media)
}

fn clip(s: &str) -> String {
    let s: String = s.chars().take(60).collect();
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=No Name\r\nt=0 0\r\n\
a=tool:libavformat LIBAVFORMAT_VERSION\r\nm=video 5004 RTP/AVP 96\r\nc=IN IP4 127.0.0.1\r\n\
a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z0LAH9kAUAW7ARAAAAMAEAAAAwPI8YMkgA==,aMuDyyA=; profile-level-id=42C01F\r\n\
m=audio 5006 RTP/AVP 97\r\nc=IN IP4 127.0.0.1\r\nb=AS:96\r\na=rtpmap:97 opus/48000/2\r\na=fmtp:97 sprop-stereo=1";

    #[test]
    fn ffmpeg_sdp() {
        let m = parse(FFMPEG).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].kind.as_str(), m[0].port), ("video", 5004));
        assert_eq!(m[0].codec(), Some((96, "H264".into(), 90000)));
        let ps = m[0].sprop_parameter_sets(96).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0][0], 0x67);
        assert_eq!(ps[1], vec![0x68, 0xcb, 0x83, 0xcb, 0x20]);
        assert_eq!(
            m[0].fmtp_param(96, "packetization-mode").as_deref(),
            Some("1")
        );
        assert_eq!(m[1].codec(), Some((97, "OPUS".into(), 48000)));
        assert_eq!(m[1].addr, Some([127, 0, 0, 1].into()));
    }

    #[test]
    fn corrupt_sdp() {
        assert!(parse("").is_err());
        assert!(parse("\u{0}\u{1}garbage").is_err());
        assert!(parse("v=0\r\nm=video x RTP/AVP 96\r\n").is_err());
        assert!(parse("v=0\r\ns=x\r\n").unwrap_err().contains("no m="));
        assert!(parse("v=0\r\nm=video 5004 RTP/AVP 96\r\nthis is not sdp\r\n").is_err());
        let e = parse("hello\nworld").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }
}
