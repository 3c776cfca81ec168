//! AV1 RTP packetization (AOM "RTP Payload Format for AV1" v1.0, §4.4/§5):
//! a one-byte aggregation header `Z|Y|W W|N|000` (W = 0: every OBU element is
//! preceded by its LEB128 length), OBUs without `obu_size` fields, temporal
//! delimiters, tile lists and padding dropped (§5), OBUs split across packets
//! with Y/Z, N = 1 on the first packet of a key frame that starts a new
//! coded video sequence (it carries a sequence header).

/// OBU types (AV1 spec §6.2.2).
pub const OBU_SEQUENCE_HEADER: u8 = 1;
/// Temporal delimiter.
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
/// Frame header.
pub const OBU_FRAME_HEADER: u8 = 3;
/// Frame (header + tile group).
pub const OBU_FRAME: u8 = 6;
/// Tile list.
pub const OBU_TILE_LIST: u8 = 8;
/// Padding.
pub const OBU_PADDING: u8 = 15;

/// One OBU of a temporal unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obu<'a> {
    /// `obu_type`.
    pub kind: u8,
    /// Header (1 or 2 bytes, extension included) with `obu_has_size_field`
    /// cleared.
    pub header: Vec<u8>,
    /// Payload (after the size field).
    pub payload: &'a [u8],
}

/// Read a LEB128 value (AV1 spec §4.10.5): (value, bytes used).
pub fn leb128(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().take(8).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Append `v` as LEB128.
pub fn put_leb128(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn leb128_len(v: usize) -> usize {
    let mut n = 1;
    let mut v = v >> 7;
    while v > 0 {
        n += 1;
        v >>= 7;
    }
    n
}

/// Split a temporal unit in low-overhead bitstream format (§5.2, as stored
/// in IVF) into OBUs; `Err` names the problem for a corrupt unit.
pub fn parse_obus(mut tu: &[u8]) -> Result<Vec<Obu<'_>>, String> {
    let mut out = Vec::new();
    while !tu.is_empty() {
        let h = tu[0];
        if h & 0x80 != 0 {
            return Err("OBU forbidden bit set".into());
        }
        let ext = h & 0x04 != 0;
        let has_size = h & 0x02 != 0;
        let hlen = 1 + usize::from(ext);
        if tu.len() < hlen {
            return Err("truncated OBU header".into());
        }
        let mut header = tu[..hlen].to_vec();
        header[0] &= !0x02;
        let (size, used) = if has_size {
            let (s, used) = leb128(&tu[hlen..]).ok_or("bad OBU size")?;
            (usize::try_from(s).map_err(|_| "OBU size too big")?, used)
        } else {
            (tu.len() - hlen, 0)
        };
        let start = hlen + used;
        let payload = tu
            .get(start..start.checked_add(size).ok_or("OBU size too big")?)
            .ok_or("OBU runs past the end of its frame")?;
        out.push(Obu {
            kind: (h >> 3) & 0x0f,
            header,
            payload,
        });
        tu = &tu[start + size..];
    }
    Ok(out)
}

/// Key frame that starts a coded video sequence: the unit has a sequence
/// header and its first frame header has `show_existing_frame` = 0 and
/// `frame_type` = KEY_FRAME (§5.9.2; assumes
/// `reduced_still_picture_header` = 0).
pub fn is_keyframe(tu: &[u8]) -> bool {
    let Ok(obus) = parse_obus(tu) else {
        return false;
    };
    obus.iter().any(|o| o.kind == OBU_SEQUENCE_HEADER)
        && obus
            .iter()
            .find(|o| matches!(o.kind, OBU_FRAME | OBU_FRAME_HEADER))
            .and_then(|o| o.payload.first())
            .is_some_and(|b| b & 0xe0 == 0) // show_existing_frame, frame_type (2)
}

/// Payloads of at most `max` bytes for one temporal unit; `keyframe` sets N
/// on the first packet when the unit has a sequence header. A corrupt unit
/// yields the OBUs before the damage.
pub fn packetize(tu: &[u8], keyframe: bool, max: usize) -> Vec<Vec<u8>> {
    let obus = match parse_obus(tu) {
        Ok(o) => o,
        Err(_) => return Vec::new(),
    };
    let new_sequence = keyframe && obus.iter().any(|o| o.kind == OBU_SEQUENCE_HEADER);
    // OBU elements: header + payload, without the size field.
    let elements: Vec<Vec<u8>> = obus
        .iter()
        .filter(|o| !matches!(o.kind, OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST | OBU_PADDING))
        .map(|o| [o.header.as_slice(), o.payload].concat())
        .collect();
    let mut out = Vec::new();
    if max < 4 {
        return out;
    }
    let mut pkt = vec![0u8];
    let mut z = false; // the first element of `pkt` continues an OBU
    let flush = |out: &mut Vec<Vec<u8>>, pkt: &mut Vec<u8>, z: bool, y: bool| {
        pkt[0] |= (u8::from(z) << 7) | (u8::from(y) << 6);
        out.push(std::mem::replace(pkt, vec![0u8]));
    };
    for e in &elements {
        let mut rest = e.as_slice();
        while !rest.is_empty() {
            let room = max - pkt.len();
            if room < 2 {
                // Not even one byte of an element fits: next packet.
                flush(&mut out, &mut pkt, z, false);
                z = false;
                continue;
            }
            let take = rest.len().min(room - leb128_len(room));
            put_leb128(&mut pkt, take);
            pkt.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if !rest.is_empty() {
                flush(&mut out, &mut pkt, z, true);
                z = true;
            }
        }
    }
    if pkt.len() > 1 {
        flush(&mut out, &mut pkt, z, false);
    }
    if new_sequence && let Some(first) = out.first_mut() {
        first[0] |= 0x08;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reassemble OBU elements from packets (W = 0).
    fn depacketize(pk: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut obus: Vec<Vec<u8>> = Vec::new();
        let mut open = false;
        for p in pk {
            let z = p[0] & 0x80 != 0;
            let y = p[0] & 0x40 != 0;
            assert_eq!(z, open, "Z matches the previous Y");
            let mut b = &p[1..];
            let mut first = true;
            while !b.is_empty() {
                let (len, used) = leb128(b).unwrap();
                let data = &b[used..used + len as usize];
                if first && z {
                    obus.last_mut().unwrap().extend_from_slice(data);
                } else {
                    obus.push(data.to_vec());
                }
                first = false;
                b = &b[used + len as usize..];
            }
            open = y;
        }
        obus
    }

    #[test]
    fn fragments_and_aggregates() {
        // TD, sequence header (10 B), frame (3000 B), with size fields.
        let mut tu = vec![0x12, 0x00, 0x0a, 10];
        tu.extend([0u8; 10]);
        tu.extend([0x32, 0xb8, 0x17]); // OBU_FRAME, size 3000
        tu.extend((0..3000u32).map(|i| (i % 251) as u8));
        let obus = parse_obus(&tu).unwrap();
        assert_eq!(obus.len(), 3);
        assert!(is_keyframe(&tu));
        let pk = packetize(&tu, true, 1200);
        assert!(pk.iter().all(|p| p.len() <= 1200));
        assert_eq!(pk[0][0] & 0x08, 0x08, "N on the first packet");
        assert!(pk[1..].iter().all(|p| p[0] & 0x08 == 0));
        let got = depacketize(&pk);
        assert_eq!(got.len(), 2, "temporal delimiter dropped");
        assert_eq!(got[0][0], 0x08, "size field cleared");
        assert_eq!(got[1].len(), 3001);
        assert!(got[1][1..] == tu[17..], "payload intact");
        // Every size in a range of frame sizes round-trips.
        for n in [1usize, 1190, 1194, 1195, 1196, 1197, 2390, 2391, 5000] {
            let mut tu = vec![0x32];
            put_leb128(&mut tu, n);
            tu.extend(std::iter::repeat_n(7u8, n));
            let pk = packetize(&tu, false, 1200);
            assert!(pk.iter().all(|p| p.len() <= 1200), "{n}");
            let got = depacketize(&pk);
            assert_eq!(got, vec![[&[0x30u8][..], &vec![7u8; n]].concat()], "{n}");
        }
        assert!(parse_obus(&[0x32, 0x10, 1]).is_err());
    }
}
