//! FFmpeg 8 WHIP compatibility: its STUN binding requests carry no PRIORITY
//! attribute (RFC 8445 §7.1.1 requires it), which str0m rejects while parsing.
//! For a request addressed to one of our peers we add PRIORITY and recompute
//! MESSAGE-INTEGRITY (RFC 8489 §14.5, HMAC-SHA1 keyed with our ICE password)
//! and FINGERPRINT (§14.7), keeping the transaction id, so the ICE agent
//! answers it like any other check.

use hmac::{Hmac, Mac};

const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const PRIORITY: u16 = 0x0024;
const MESSAGE_INTEGRITY: u16 = 0x0008;
const FINGERPRINT: u16 = 0x8028;
/// Priority given to the shimmed request: a peer-reflexive candidate's
/// priority as computed by RFC 8445 §5.1.2.1 (type preference 110).
pub const SHIM_PRIORITY: u32 = 0x6e7f_1eff;

/// If `buf` is a binding request without PRIORITY, a rebuilt copy with
/// PRIORITY, MESSAGE-INTEGRITY (keyed with `pwd`) and FINGERPRINT. Otherwise
/// `None` (use the datagram as it is).
pub fn add_priority(buf: &[u8], pwd: &str) -> Option<Vec<u8>> {
    if buf.len() < 20 || buf[0..2] != [0x00, 0x01] || buf[4..8] != MAGIC {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    if 20 + len != buf.len() || !len.is_multiple_of(4) {
        return None;
    }
    let mut kept: Vec<(u16, &[u8])> = Vec::new();
    let mut i = 20;
    while i + 4 <= buf.len() {
        let typ = u16::from_be_bytes([buf[i], buf[i + 1]]);
        let alen = u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize;
        let v = buf.get(i + 4..i + 4 + alen)?;
        match typ {
            PRIORITY => return None, // already fine
            MESSAGE_INTEGRITY | FINGERPRINT => break,
            _ => kept.push((typ, v)),
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    let mut out = Vec::with_capacity(buf.len() + 8 + 24 + 8);
    out.extend_from_slice(&buf[0..20]);
    let push = |out: &mut Vec<u8>, typ: u16, v: &[u8]| {
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    };
    for (t, v) in kept {
        push(&mut out, t, v);
    }
    push(&mut out, PRIORITY, &SHIM_PRIORITY.to_be_bytes());
    // MESSAGE-INTEGRITY: length field counts up to and including MI.
    let set_len = |out: &mut Vec<u8>, extra: usize| {
        let l = (out.len() - 20 + extra) as u16;
        out[2..4].copy_from_slice(&l.to_be_bytes());
    };
    set_len(&mut out, 24);
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(pwd.as_bytes()).ok()?;
    mac.update(&out);
    let mi = mac.finalize().into_bytes();
    push(&mut out, MESSAGE_INTEGRITY, &mi);
    set_len(&mut out, 8);
    let crc = crc32fast::hash(&out) ^ 0x5354_554e;
    push(&mut out, FINGERPRINT, &crc.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use str0m::change::SdpOffer;
    use str0m::media::{Direction, MediaKind};
    use str0m::net::{DatagramRecv, Protocol, Receive};
    use str0m::{Candidate, IceCreds, Input, Output, RtcConfig};

    /// A binding request as FFmpeg 8.0 sends it: USERNAME, USE-CANDIDATE,
    /// MESSAGE-INTEGRITY, FINGERPRINT; no PRIORITY, no ICE-CONTROLLING.
    fn ffmpeg_request(username: &str, pwd: &str) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0, 0];
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(b"ffmpegtxid12");
        let push = |m: &mut Vec<u8>, t: u16, v: &[u8]| {
            m.extend_from_slice(&t.to_be_bytes());
            m.extend_from_slice(&(v.len() as u16).to_be_bytes());
            m.extend_from_slice(v);
            while !m.len().is_multiple_of(4) {
                m.push(0);
            }
        };
        push(&mut m, 0x0006, username.as_bytes());
        push(&mut m, 0x0025, &[]);
        let l = (m.len() - 20 + 24) as u16;
        m[2..4].copy_from_slice(&l.to_be_bytes());
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(pwd.as_bytes()).unwrap();
        mac.update(&m);
        push(&mut m, MESSAGE_INTEGRITY, &mac.finalize().into_bytes());
        let l = (m.len() - 20 + 8) as u16;
        m[2..4].copy_from_slice(&l.to_be_bytes());
        let crc = crc32fast::hash(&m) ^ 0x5354_554e;
        push(&mut m, FINGERPRINT, &crc.to_be_bytes());
        m
    }

    #[test]
    fn str0m_answers_shimmed_ffmpeg_check() {
        crate::server::install_crypto();
        // A client Rtc makes an offer; the "server" Rtc answers it like WHIP.
        let now = Instant::now();
        let mut client = RtcConfig::new().set_rtp_mode(true).build(now);
        let caddr = "127.0.0.1:40000".parse().unwrap();
        client.add_local_candidate(Candidate::host(caddr, "udp").unwrap());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        let (offer, _pending) = api.apply().unwrap();
        let remote_ufrag = client.direct_api().local_ice_credentials().ufrag;
        let creds = IceCreds::new();
        let mut server = RtcConfig::new()
            .set_rtp_mode(true)
            .set_local_ice_credentials(creds.clone())
            .build(now);
        let saddr = "127.0.0.1:8189".parse().unwrap();
        server.add_local_candidate(Candidate::host(saddr, "udp").unwrap());
        let offer = SdpOffer::from_sdp_string(&offer.to_sdp_string()).unwrap();
        server.sdp_api().accept_offer(offer).unwrap();

        let req = ffmpeg_request(&format!("{}:{remote_ufrag}", creds.ufrag), &creds.pass);
        let parsed: Result<DatagramRecv, _> = req.as_slice().try_into();
        assert!(parsed.is_err(), "str0m rejects a check without PRIORITY");

        let fixed = add_priority(&req, &creds.pass).expect("shim applies");
        assert_eq!(&fixed[8..20], b"ffmpegtxid12", "transaction id kept");
        assert!(add_priority(&fixed, &creds.pass).is_none(), "idempotent");
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source: caddr,
                destination: saddr,
                contents: fixed.as_slice().try_into().expect("parses now"),
            },
        );
        assert!(server.accepts(&input), "integrity checks with our password");
        server.handle_input(input).unwrap();
        let mut answered = false;
        while let Ok(o) = server.poll_output() {
            match o {
                Output::Transmit(t) => {
                    // A binding success response (0x0101) with our transaction id.
                    if t.contents[0..2] == [0x01, 0x01] && t.contents[8..20] == *b"ffmpegtxid12" {
                        answered = true;
                    }
                }
                Output::Timeout(_) => break,
                Output::Event(_) => {}
            }
        }
        assert!(answered, "server sent a binding success response");
    }
}
