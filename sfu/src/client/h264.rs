//! H.264 Annex B parsing and RTP packetization (RFC 6184, packetization-mode 1).

/// Maximum RTP payload size produced (fits a 1,200-byte datagram budget with
/// headers, extensions and SRTP tag).
pub const MAX_PAYLOAD: usize = 1100;

/// Split an Annex B byte stream into NAL units (without start codes).
pub fn nal_units(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut start: Option<usize> = None;
    while i + 3 <= data.len() {
        let sc3 = data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1;
        if sc3 {
            if let Some(s) = start {
                let mut end = i;
                while end > s && data[end - 1] == 0 {
                    end -= 1; // trailing zero of a 4-byte start code
                }
                out.push(&data[s..end]);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start
        && s < data.len()
    {
        out.push(&data[s..]);
    }
    out.retain(|n| !n.is_empty());
    out
}

/// NAL unit type (RFC 6184 §1.3).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// One access unit (frame): its NAL units.
#[derive(Debug, Clone)]
pub struct AccessUnit<'a> {
    /// NAL units in decoding order.
    pub nals: Vec<&'a [u8]>,
    /// Contains an IDR slice.
    pub keyframe: bool,
}

/// Group NAL units into access units: a new unit starts at an AUD (9), at
/// SPS/PPS/SEI following a slice, or at a slice with `first_mb_in_slice == 0`
/// following a slice.
pub fn access_units<'a>(nals: &[&'a [u8]]) -> Vec<AccessUnit<'a>> {
    let mut out: Vec<AccessUnit<'a>> = Vec::new();
    let mut cur: Vec<&'a [u8]> = Vec::new();
    let mut cur_has_slice = false;
    for &n in nals {
        let t = nal_type(n);
        let is_slice = t == 1 || t == 5;
        let first_mb_zero = is_slice && n.get(1).is_some_and(|b| b & 0x80 != 0);
        let boundary = cur_has_slice && (t == 9 || t == 7 || t == 8 || t == 6 || first_mb_zero);
        if boundary {
            let keyframe = cur.iter().any(|n| nal_type(n) == 5);
            out.push(AccessUnit {
                nals: std::mem::take(&mut cur),
                keyframe,
            });
            cur_has_slice = false;
        }
        if t == 9 {
            continue; // access unit delimiters are not sent
        }
        cur.push(n);
        cur_has_slice |= is_slice;
    }
    if !cur.is_empty() {
        let keyframe = cur.iter().any(|n| nal_type(n) == 5);
        out.push(AccessUnit {
            nals: cur,
            keyframe,
        });
    }
    out
}

/// Packetize one access unit into RTP payloads: single NAL unit packets when
/// they fit, FU-A fragments otherwise (RFC 6184 §5.6, §5.8).
/// The last payload of the unit carries the marker bit.
pub fn packetize(au: &AccessUnit<'_>, max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for nal in &au.nals {
        if nal.len() <= max {
            out.push(nal.to_vec());
            continue;
        }
        let hdr = nal[0];
        let fu_ind = (hdr & 0xe0) | 28;
        let body = &nal[1..];
        let chunk = max - 2;
        let n = body.len().div_ceil(chunk);
        for (i, part) in body.chunks(chunk).enumerate() {
            let mut fu_hdr = hdr & 0x1f;
            if i == 0 {
                fu_hdr |= 0x80;
            }
            if i + 1 == n {
                fu_hdr |= 0x40;
            }
            let mut p = Vec::with_capacity(part.len() + 2);
            p.push(fu_ind);
            p.push(fu_hdr);
            p.extend_from_slice(part);
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_fragments() {
        let mut s = vec![
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 0x88,
        ];
        s.extend(std::iter::repeat_n(7u8, 3000));
        s.extend_from_slice(&[0, 0, 1, 0x41, 0x9a, 9]);
        let nals = nal_units(&s);
        assert_eq!(nals.len(), 4);
        assert_eq!(nals[0], &[0x67, 1, 2]);
        let aus = access_units(&nals);
        assert_eq!(aus.len(), 2);
        assert!(aus[0].keyframe && !aus[1].keyframe);
        let pk = packetize(&aus[0], 1100);
        assert!(pk.iter().all(|p| p.len() <= 1100));
        assert_eq!(pk[0], vec![0x67, 1, 2]);
        assert_eq!(pk[2][0] & 0x1f, 28);
        assert_eq!(pk[2][1], 0x85, "FU-A start of IDR");
        assert_eq!(pk.last().unwrap()[1] & 0x40, 0x40, "FU-A end");
        // Reassemble.
        let mut idr = vec![pk[2][0] & 0xe0 | 5];
        for p in &pk[2..] {
            idr.extend_from_slice(&p[2..]);
        }
        assert_eq!(idr, nals[2]);
    }
}
