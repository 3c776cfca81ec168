//! H.264 RTP depacketization (RFC 6184, packetization-mode 1: single NAL unit
//! packets, STAP-A, FU-A) and H.265 (RFC 7798 without DONL: single NAL unit
//! packets, AP, FU) into access units, and small helpers on H.264 bitstreams
//! (parameter sets, Annex B output).
//!
//! Used by `whip-ingest` to take RTP from ffmpeg or GStreamer apart, and by
//! tests to reassemble what a viewer received.

/// One access unit rebuilt from RTP: all NAL units sharing one RTP timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// RTP timestamp of the unit.
    pub ts: u32,
    /// NAL units (without start codes) in decoding order.
    pub nals: Vec<Vec<u8>>,
    /// Contains an IDR slice (H.264 NAL type 5; H.265: an IRAP picture,
    /// NAL types 16..=23).
    pub keyframe: bool,
    /// A packet of this unit was lost or a NAL unit could not be rebuilt.
    pub damaged: bool,
}

/// Why a payload was not (fully) used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepayError {
    /// Zero-length payload.
    #[error("empty RTP payload")]
    Empty,
    /// A packetization this depacketizer does not take (STAP-B, MTAP, FU-B:
    /// interleaved mode) or a reserved NAL type.
    #[error("unsupported H.264 payload type {0} (only single NAL, STAP-A and FU-A)")]
    Unsupported(u8),
    /// A STAP-A whose sizes run past its end.
    #[error("truncated STAP-A")]
    TruncatedStap,
    /// A FU-A shorter than its two header bytes.
    #[error("truncated FU-A")]
    TruncatedFu,
}

/// Rebuilds NAL units and access units from H.264 (or, made with
/// [`H264Depacketizer::h265`], H.265) RTP packets given in arrival order. A gap in sequence numbers drops the NAL unit being
/// reassembled from FU-A fragments and marks the unit damaged; late
/// (reordered) packets are dropped.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    last_seq: Option<u16>,
    fu: Option<Vec<u8>>,
    cur_ts: Option<u32>,
    cur: Vec<Vec<u8>>,
    cur_damaged: bool,
    /// H.265 payloads (RFC 7798) instead of H.264.
    hevc: bool,
    /// Packets found missing from sequence-number gaps.
    pub lost: u64,
    /// Late or duplicate packets dropped.
    pub late: u64,
}

impl H264Depacketizer {
    /// A fresh depacketizer.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh depacketizer for H.265 (RFC 7798 §4.4: single NAL unit
    /// packets, aggregation packets (type 48) and fragmentation units (type
    /// 49); no DONL fields, i.e. `sprop-max-don-diff` 0 as cameras send).
    pub fn h265() -> Self {
        Self {
            hevc: true,
            ..Self::default()
        }
    }

    /// Forget all state (e.g. after the source restarted). Any unit in
    /// progress is discarded.
    pub fn reset(&mut self) {
        let (lost, late, hevc) = (self.lost, self.late, self.hevc);
        *self = Self {
            lost,
            late,
            hevc,
            ..Self::default()
        };
    }

    /// Feed one RTP packet. Completed access units (at the marker bit, or when
    /// the timestamp changes without one) are appended to `out`, also when an
    /// error is returned for this packet's payload.
    pub fn push(
        &mut self,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
        out: &mut Vec<Frame>,
    ) -> Result<(), DepayError> {
        let mut gap = false;
        if let Some(last) = self.last_seq {
            let d = seq.wrapping_sub(last);
            if d == 0 || d >= 0x8000 {
                self.late += 1;
                return Ok(());
            }
            if d > 1 {
                self.lost += u64::from(d - 1);
                gap = true;
            }
        }
        self.last_seq = Some(seq);
        if gap {
            // The lost packets belong to the unit in progress, to a new one,
            // or both: mark whichever units they may have been part of.
            self.fu = None;
            self.cur_damaged |= self.cur_ts.is_some();
        }
        if self.cur_ts.is_some_and(|t| t != ts) {
            // The previous unit lost its marker packet (or the sender sets
            // none).
            if self.fu.take().is_some() {
                self.cur_damaged = true;
            }
            self.finish(out);
            self.cur_damaged = gap;
        } else if self.cur_ts.is_none() {
            self.cur_damaged = gap;
        }
        self.cur_ts = Some(ts);
        let r = self.payload(payload);
        if r.is_err() {
            self.cur_damaged = true;
        }
        if marker {
            if self.fu.take().is_some() {
                self.cur_damaged = true;
            }
            self.finish(out);
        }
        r
    }

    /// Emit the unit in progress, if any (end of stream).
    pub fn flush(&mut self) -> Option<Frame> {
        let mut out = Vec::new();
        if self.fu.take().is_some() {
            self.cur_damaged = true;
        }
        self.finish(&mut out);
        out.pop()
    }

    fn finish(&mut self, out: &mut Vec<Frame>) {
        let Some(ts) = self.cur_ts.take() else {
            return;
        };
        let nals = std::mem::take(&mut self.cur);
        let damaged = std::mem::take(&mut self.cur_damaged);
        if nals.is_empty() {
            return;
        }
        let hevc = self.hevc;
        let keyframe = nals.iter().any(|n| {
            n.first().is_some_and(|b| {
                if hevc {
                    (16..=23).contains(&((b >> 1) & 0x3f))
                } else {
                    b & 0x1f == 5
                }
            })
        });
        out.push(Frame {
            ts,
            nals,
            keyframe,
            damaged,
        });
    }

    fn payload(&mut self, p: &[u8]) -> Result<(), DepayError> {
        let Some(&h) = p.first() else {
            return Err(DepayError::Empty);
        };
        if self.hevc {
            return self.payload_h265(p);
        }
        match h & 0x1f {
            1..=23 => {
                if self.fu.take().is_some() {
                    self.cur_damaged = true;
                }
                self.cur.push(p.to_vec());
                Ok(())
            }
            24 => self.aggregate(&p[1..]),
            28 => {
                if p.len() < 2 {
                    return Err(DepayError::TruncatedFu);
                }
                let (ind, fh) = (p[0], p[1]);
                self.fragment(fh, &[(ind & 0xe0) | (fh & 0x1f)], &p[2..]);
                Ok(())
            }
            t => Err(DepayError::Unsupported(t)),
        }
    }

    /// The NAL units of an aggregation packet body (H.264 STAP-A after its
    /// one-byte header, RFC 6184 §5.7.1; H.265 AP after its two, RFC 7798
    /// §4.4.2): 16-bit big-endian sizes, each followed by a NAL unit.
    fn aggregate(&mut self, mut b: &[u8]) -> Result<(), DepayError> {
        while !b.is_empty() {
            let Some(len) = b.get(..2) else {
                return Err(DepayError::TruncatedStap);
            };
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            let Some(nal) = b.get(2..2 + len) else {
                return Err(DepayError::TruncatedStap);
            };
            if !nal.is_empty() {
                self.cur.push(nal.to_vec());
            }
            b = &b[2 + len..];
        }
        Ok(())
    }

    /// One fragment of a NAL unit (H.264 FU-A, RFC 6184 §5.8; H.265 FU,
    /// RFC 7798 §4.4.3): `fu_header` carries the S (0x80) and E (0x40)
    /// bits, `nal_header` is the rebuilt NAL unit header used at the start.
    /// A middle or end fragment whose start was missed marks the unit
    /// damaged and is dropped.
    fn fragment(&mut self, fu_header: u8, nal_header: &[u8], body: &[u8]) {
        let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
        if start {
            if self.fu.is_some() {
                self.cur_damaged = true;
            }
            let mut nal = Vec::with_capacity(body.len() * 4);
            nal.extend_from_slice(nal_header);
            nal.extend_from_slice(body);
            self.fu = Some(nal);
        } else if let Some(nal) = self.fu.as_mut() {
            nal.extend_from_slice(body);
        } else {
            self.cur_damaged = true;
            return;
        }
        if end && let Some(nal) = self.fu.take() {
            self.cur.push(nal);
        }
    }

    /// One H.265 payload (RFC 7798 §4.4; two-byte NAL unit header, type in
    /// bits 1..7 of the first byte).
    fn payload_h265(&mut self, p: &[u8]) -> Result<(), DepayError> {
        if p.len() < 2 {
            return Err(DepayError::TruncatedFu);
        }
        match (p[0] >> 1) & 0x3f {
            0..=47 => {
                if self.fu.take().is_some() {
                    self.cur_damaged = true;
                }
                self.cur.push(p.to_vec());
                Ok(())
            }
            48 => self.aggregate(&p[2..]),
            49 => {
                let Some(&fh) = p.get(2) else {
                    return Err(DepayError::TruncatedFu);
                };
                self.fragment(fh, &[(p[0] & 0x81) | ((fh & 0x3f) << 1), p[1]], &p[3..]);
                Ok(())
            }
            t => Err(DepayError::Unsupported(t)),
        }
    }
}

/// `profile-level-id` (RFC 6184 §8.1) of a sequence parameter set NAL unit:
/// `profile_idc`, the constraint flags byte and `level_idc`, e.g. `0x42c01f`.
pub fn profile_level_id(sps: &[u8]) -> Option<u32> {
    if sps.len() < 4 || sps[0] & 0x1f != 7 {
        return None;
    }
    Some(u32::from(sps[1]) << 16 | u32::from(sps[2]) << 8 | u32::from(sps[3]))
}

/// NAL units as an Annex B byte stream (4-byte start codes).
pub fn to_annex_b<N: AsRef<[u8]>>(nals: &[N]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nals.iter().map(|n| n.as_ref().len() + 4).sum());
    for n in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(n.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::h264;

    #[test]
    fn h265_single_ap_and_fu() {
        let vps = vec![0x40, 0x01, 0x0c, 0x01];
        let sps = vec![0x42, 0x01, 0x01, 0x60];
        let pps = vec![0x44, 0x01, 0xc1];
        // CRA (type 21) split in three FUs.
        let cra: Vec<u8> = [0x2a, 0x01]
            .into_iter()
            .chain((0..3000).map(|i| (i % 251) as u8))
            .collect();
        let mut ap = vec![48 << 1, 0x01];
        for n in [&vps, &sps, &pps] {
            ap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            ap.extend_from_slice(n);
        }
        let fu = |part: &[u8], start: bool, end: bool| {
            let mut v = vec![
                49 << 1,
                0x01,
                21 | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
            ];
            v.extend_from_slice(part);
            v
        };
        let body = cra[2..].to_vec();
        let mut d = H264Depacketizer::h265();
        let mut out = Vec::new();
        d.push(1, 90, false, &ap, &mut out).unwrap();
        d.push(2, 90, false, &fu(&body[..1000], true, false), &mut out)
            .unwrap();
        d.push(3, 90, false, &fu(&body[1000..2000], false, false), &mut out)
            .unwrap();
        d.push(4, 90, true, &fu(&body[2000..], false, true), &mut out)
            .unwrap();
        let trail = vec![0x02, 0x01, 0xd0, 0x55];
        d.push(5, 3090, true, &trail, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].nals, vec![vps, sps, pps, cra]);
        assert!(out[0].keyframe && !out[0].damaged);
        assert_eq!(out[1].nals, vec![trail]);
        assert!(!out[1].keyframe);
        // A lost middle fragment: the NAL unit is dropped (no frame from a
        // unit that only had it), the loss counted, nothing panics.
        d.push(6, 6090, false, &fu(&body[..1000], true, false), &mut out)
            .unwrap();
        d.push(8, 6090, true, &fu(&body[2000..], false, true), &mut out)
            .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(d.lost, 1);
        assert!(d.push(9, 9090, true, &[0x62], &mut out).is_err());
    }

    #[test]
    fn round_trip_through_packetize() {
        let sps = vec![0x67, 0x42, 0xc0, 0x1f, 1, 2];
        let pps = vec![0x68, 3];
        let mut idr = vec![0x65, 0x88];
        idr.extend((0..5000).map(|i| (i % 251) as u8));
        let p = vec![0x41, 0x9a, 1, 2, 3];
        let au1 = h264::AccessUnit {
            nals: vec![&sps, &pps, &idr],
            keyframe: true,
        };
        let au2 = h264::AccessUnit {
            nals: vec![&p],
            keyframe: false,
        };
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        let mut seq = 65530u16;
        for (ts, au) in [(1000u32, &au1), (4000, &au2)] {
            let pk = h264::packetize(au, 1100);
            let n = pk.len();
            for (i, x) in pk.iter().enumerate() {
                d.push(seq, ts, i + 1 == n, x, &mut out).unwrap();
                seq = seq.wrapping_add(1);
            }
        }
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].nals, vec![sps.clone(), pps, idr]);
        assert!(out[0].keyframe && !out[0].damaged);
        assert_eq!(out[1].nals, vec![p]);
        assert_eq!(out[1].ts, 4000);
        assert_eq!(profile_level_id(&sps), Some(0x42c01f));
        assert_eq!(d.lost, 0);
    }

    #[test]
    fn stap_a_loss_and_missing_marker() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        let stap = [24u8, 0, 2, 0x67, 1, 0, 2, 0x68, 2];
        d.push(1, 10, false, &stap, &mut out).unwrap();
        d.push(2, 10, false, &[28, 0x85, 1, 2], &mut out).unwrap();
        // seq 3 lost: the IDR fragment is dropped, unit damaged.
        d.push(4, 10, true, &[28, 0x45, 5], &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(out[0].damaged);
        assert_eq!(out[0].nals, vec![vec![0x67, 1], vec![0x68, 2]]);
        assert_eq!(d.lost, 1);
        // No marker, then a new timestamp: the old unit is emitted.
        d.push(5, 20, false, &[0x41, 1], &mut out).unwrap();
        d.push(6, 30, true, &[0x41, 2], &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!((out[1].ts, out[2].ts), (20, 30));
        // Late packet ignored, unsupported type reported.
        d.push(5, 30, true, &[0x41, 9], &mut out).unwrap();
        assert_eq!(d.late, 1);
        assert_eq!(
            d.push(7, 40, true, &[25, 0], &mut out),
            Err(DepayError::Unsupported(25))
        );
        assert_eq!(to_annex_b(&[[1u8, 2]]), vec![0, 0, 0, 1, 1, 2]);
    }
}
