//! Send timestamps carried in H.264 SEI `user_data_unregistered` messages
//! (ITU-T H.264 §D.1.6, payloadType 5): a 16-byte UUID of ours followed by
//! 8 bytes of big-endian monotonic nanoseconds since the run's start.
//!
//! The publisher puts one such SEI NAL unit before the first slice of every
//! access unit; an SFU forwards RTP payloads untouched, so every viewer can
//! read it back and compute the frame's added latency.

/// Our `uuid_iso_iec_11578` (random, fixed): marks timestamps of this tool.
pub const UUID: [u8; 16] = [
    0x5f, 0x1d, 0x6b, 0x2e, 0x94, 0x3a, 0x4c, 0x07, 0xa1, 0x8e, 0x3b, 0x52, 0xc9, 0x70, 0x1f, 0xd4,
];

/// NAL unit type of SEI.
const NAL_SEI: u8 = 6;
/// SEI payloadType `user_data_unregistered`.
const USER_DATA_UNREGISTERED: u8 = 5;

/// Build an SEI NAL unit (header byte included, emulation prevention
/// applied) carrying `ns`.
pub fn make_nal(ns: u64) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(27);
    rbsp.push(USER_DATA_UNREGISTERED);
    rbsp.push(24); // payloadSize
    rbsp.extend_from_slice(&UUID);
    rbsp.extend_from_slice(&ns.to_be_bytes());
    rbsp.push(0x80); // rbsp_trailing_bits
    let mut nal = Vec::with_capacity(32);
    nal.push(NAL_SEI); // forbidden 0, nal_ref_idc 0, type 6
    escape_into(&rbsp, &mut nal);
    nal
}

/// Add emulation prevention bytes (H.264 §7.4.1): `00 00 0x` with x ≤ 3
/// becomes `00 00 03 0x`.
fn escape_into(rbsp: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

/// Remove emulation prevention bytes.
fn unescape(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

/// Our timestamp from one SEI NAL unit (header byte included), if it holds
/// a `user_data_unregistered` message with our UUID.
pub fn parse_nal(nal: &[u8]) -> Option<u64> {
    if nal.first()? & 0x1f != NAL_SEI {
        return None;
    }
    let rbsp = unescape(&nal[1..]);
    let mut i = 0;
    // sei_message()s until rbsp_trailing_bits.
    while i < rbsp.len() && rbsp[i] != 0x80 {
        let mut ptype = 0usize;
        while *rbsp.get(i)? == 0xff {
            ptype += 255;
            i += 1;
        }
        ptype += *rbsp.get(i)? as usize;
        i += 1;
        let mut size = 0usize;
        while *rbsp.get(i)? == 0xff {
            size += 255;
            i += 1;
        }
        size += *rbsp.get(i)? as usize;
        i += 1;
        let body = rbsp.get(i..i + size)?;
        if ptype == USER_DATA_UNREGISTERED as usize && size >= 24 && body[..16] == UUID {
            return Some(u64::from_be_bytes(body[16..24].try_into().ok()?));
        }
        i += size;
    }
    None
}

/// Our timestamp from one H.264 RTP payload (RFC 6184): a single SEI NAL
/// unit packet or a STAP-A containing one. FU-A fragments are not searched
/// (our SEI is small and never fragmented).
pub fn parse_rtp_payload(p: &[u8]) -> Option<u64> {
    match p.first()? & 0x1f {
        NAL_SEI => parse_nal(p),
        24 => {
            let mut i = 1;
            while i + 2 <= p.len() {
                let n = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                let nal = p.get(i + 2..i + 2 + n)?;
                if let Some(ts) = parse_nal(nal) {
                    return Some(ts);
                }
                i += 2 + n;
            }
            None
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_emulation_prevention() {
        for ns in [0u64, 1, 3, 0x0000_0001_0000_0000, u64::MAX, 123_456_789_000] {
            let nal = make_nal(ns);
            // No start code emulation inside the NAL.
            assert!(!nal.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2));
            assert_eq!(parse_nal(&nal), Some(ns), "ns={ns}");
            assert_eq!(parse_rtp_payload(&nal), Some(ns));
        }
    }

    #[test]
    fn ignores_other_sei_and_finds_in_stap_a() {
        // An x264-style SEI with another UUID.
        let mut other = vec![6u8, 5, 20];
        other.extend_from_slice(&[0xaa; 16]);
        other.extend_from_slice(b"x264");
        other.push(0x80);
        assert_eq!(parse_nal(&other), None);
        let ours = make_nal(42);
        let mut stap = vec![24u8];
        for n in [&other[..], &ours[..]] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        assert_eq!(parse_rtp_payload(&stap), Some(42));
        assert_eq!(parse_rtp_payload(&[0x65, 0x88]), None);
    }
}
