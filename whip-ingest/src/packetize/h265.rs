//! H.265 RTP packetization, RFC 7798: NAL units of at most `max` bytes as
//! single NAL unit packets (§4.4.1), bigger ones as fragmentation units
//! (§4.4.3: payload header type 49 with the NAL's F, LayerId and TID, FU
//! header `S|E|FuType`).

/// FU packet type.
pub const FU: u8 = 49;

/// Payloads of at most `max` bytes for one access unit's NAL units (without
/// start codes), in order. NAL units shorter than their 2-byte header are
/// dropped.
pub fn packetize(nals: &[Vec<u8>], max: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for n in nals {
        if n.len() < 3 {
            continue;
        }
        if n.len() <= max {
            out.push(n.clone());
            continue;
        }
        let kind = (n[0] >> 1) & 0x3f;
        let hdr = [(n[0] & 0x81) | (FU << 1), n[1]];
        let chunks: Vec<&[u8]> = n[2..].chunks(max - 3).collect();
        let last = chunks.len() - 1;
        for (i, c) in chunks.into_iter().enumerate() {
            let mut fu = kind;
            if i == 0 {
                fu |= 0x80;
            }
            if i == last {
                fu |= 0x40;
            }
            let mut p = Vec::with_capacity(3 + c.len());
            p.extend_from_slice(&[hdr[0], hdr[1], fu]);
            p.extend_from_slice(c);
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_fragmented() {
        let vps = vec![0x40, 0x01, 0x0c, 0x01];
        let mut idr = vec![0x26, 0x01]; // IDR_W_RADL (19)
        idr.extend((0..3000u32).map(|i| i as u8));
        let pk = packetize(&[vps.clone(), idr.clone()], 1200);
        assert_eq!(pk[0], vps);
        assert_eq!(pk.len(), 4);
        assert!(pk.iter().all(|p| p.len() <= 1200));
        assert_eq!(&pk[1][..3], &[0x62, 0x01, 0x80 | 19]);
        assert_eq!(&pk[3][..3], &[0x62, 0x01, 0x40 | 19]);
        let body: Vec<u8> = pk[1..].iter().flat_map(|p| p[3..].to_vec()).collect();
        assert_eq!(body, idr[2..]);
    }
}
