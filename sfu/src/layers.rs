//! Simulcast layers of a publication (RFC 8853), shared lock-free between the
//! publisher's worker (writer) and viewers' workers and the HTTP layer (readers).
//!
//! A slot is claimed the first time a packet with a new RID (RFC 8852
//! `urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id`) arrives; the publisher's
//! worker then updates its bitrate every second, its resolution at keyframes
//! and its last-packet time on every packet (relaxed atomics, no locks).

use crate::forward::layer::{LayerInfo, MAX_LAYERS};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A layer silent for longer than this is inactive (skipped by viewers).
pub const INACTIVE_AFTER: Duration = Duration::from_secs(1);

/// One layer slot.
#[derive(Debug, Default)]
pub struct LayerSlot {
    /// RID packed as up to 8 ASCII bytes, big-endian; 0 = slot unused.
    rid: AtomicU64,
    /// SSRC of the layer's media stream.
    pub ssrc: AtomicU32,
    /// Bitrate over the last second, bit/s.
    pub bitrate: AtomicU64,
    /// Picture width in pixels from the last keyframe (0 unknown).
    pub width: AtomicU32,
    /// Picture height in pixels from the last keyframe (0 unknown).
    pub height: AtomicU32,
    /// Last packet, milliseconds since the table's epoch (+1; 0 = never).
    last_ms: AtomicU64,
}

/// The layers of one publication's simulcast video track.
#[derive(Debug)]
pub struct LayerTable {
    epoch: Instant,
    slots: [LayerSlot; MAX_LAYERS],
    /// The current publisher's offer declares two or more layers.
    offered: AtomicBool,
}

/// A snapshot of one layer for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerView {
    /// Slot index.
    pub index: u8,
    /// RID.
    pub rid: String,
    /// SSRC.
    pub ssrc: u32,
    /// Bitrate, bit/s.
    pub bitrate: u64,
    /// Width, pixels.
    pub width: u32,
    /// Height, pixels.
    pub height: u32,
    /// Packets seen within [`INACTIVE_AFTER`].
    pub active: bool,
}

fn pack(rid: &str) -> Option<u64> {
    let b = rid.as_bytes();
    if b.is_empty() || b.len() > 8 {
        return None;
    }
    let mut v = [0u8; 8];
    v[..b.len()].copy_from_slice(b);
    Some(u64::from_be_bytes(v))
}

fn unpack(v: u64) -> String {
    let b = v.to_be_bytes();
    let n = b.iter().position(|c| *c == 0).unwrap_or(8);
    String::from_utf8_lossy(&b[..n]).into_owned()
}

impl Default for LayerTable {
    fn default() -> Self {
        LayerTable {
            epoch: Instant::now(),
            slots: Default::default(),
            offered: AtomicBool::new(false),
        }
    }
}

impl LayerTable {
    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    /// Forget every layer (a new publisher was spliced in).
    pub fn reset(&self) {
        for s in &self.slots {
            s.rid.store(0, Ordering::Relaxed);
            s.bitrate.store(0, Ordering::Relaxed);
            s.width.store(0, Ordering::Relaxed);
            s.height.store(0, Ordering::Relaxed);
            s.last_ms.store(0, Ordering::Relaxed);
        }
    }

    /// The slot of `rid`, claiming a free one on first sight (publisher's
    /// worker only). `None`: RID longer than 8 bytes or no free slot.
    pub fn slot_of(&self, rid: &str, ssrc: u32) -> Option<u8> {
        let key = pack(rid)?;
        let mut free = None;
        for (i, s) in self.slots.iter().enumerate() {
            let v = s.rid.load(Ordering::Relaxed);
            if v == key {
                s.ssrc.store(ssrc, Ordering::Relaxed);
                return Some(i as u8);
            }
            if v == 0 && free.is_none() {
                free = Some(i);
            }
        }
        let i = free?;
        self.slots[i].ssrc.store(ssrc, Ordering::Relaxed);
        self.slots[i].rid.store(key, Ordering::Relaxed);
        Some(i as u8)
    }

    /// The slot index of `rid` if known.
    pub fn find(&self, rid: &str) -> Option<u8> {
        let key = pack(rid)?;
        self.slots
            .iter()
            .position(|s| s.rid.load(Ordering::Relaxed) == key)
            .map(|i| i as u8)
    }

    /// The RID of slot `i` (empty when unused).
    pub fn rid(&self, i: u8) -> String {
        self.slots
            .get(i as usize)
            .map(|s| unpack(s.rid.load(Ordering::Relaxed)))
            .unwrap_or_default()
    }

    /// A packet of layer `i` arrived at `now`.
    pub fn touch(&self, i: u8, now: Instant) {
        if let Some(s) = self.slots.get(i as usize) {
            s.last_ms.store(self.ms(now), Ordering::Relaxed);
        }
    }

    /// Slot `i` (panics never: out of range gives `None`).
    pub fn slot(&self, i: u8) -> Option<&LayerSlot> {
        self.slots.get(i as usize)
    }

    /// The current publisher's WHIP offer declares `rids` simulcast layers
    /// (`a=rid` lines on its video m-line, RFC 8851 / RFC 8853).
    pub fn set_offered(&self, rids: usize) {
        self.offered.store(rids > 1, Ordering::Relaxed);
    }

    /// True when the publisher's offer declares two or more layers, or it
    /// sends more than one (simulcast). The offer counts so that a viewer
    /// arriving before the first layer packets (publisher still connecting
    /// or just connected) is set up for simulcast too: bandwidth estimation
    /// and the layer extension are fixed when its session is created.
    pub fn is_simulcast(&self) -> bool {
        self.offered.load(Ordering::Relaxed)
            || self
                .slots
                .iter()
                .filter(|s| s.rid.load(Ordering::Relaxed) != 0)
                .count()
                > 1
    }

    fn active_at(&self, s: &LayerSlot, now: Instant) -> bool {
        let last = s.last_ms.load(Ordering::Relaxed);
        s.rid.load(Ordering::Relaxed) != 0
            && last != 0
            && self.ms(now).saturating_sub(last) <= INACTIVE_AFTER.as_millis() as u64
    }

    /// Active layers for the chooser, written into `out`; returns how many.
    pub fn active(&self, now: Instant, out: &mut [LayerInfo; MAX_LAYERS]) -> usize {
        let mut n = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if self.active_at(s, now) {
                out[n] = LayerInfo {
                    index: i as u8,
                    bitrate: s.bitrate.load(Ordering::Relaxed),
                    pixels: u64::from(s.width.load(Ordering::Relaxed))
                        * u64::from(s.height.load(Ordering::Relaxed)),
                };
                n += 1;
            }
        }
        n
    }

    /// All known layers, for the API, ordered by their last measured bitrate
    /// (lowest first). An inactive layer (silent for over [`INACTIVE_AFTER`]:
    /// paused by the publisher, or the publisher left) reads 0 bit/s, not
    /// the bitrate it had when it stopped.
    pub fn snapshot(&self, now: Instant) -> Vec<LayerView> {
        let mut v: Vec<(u64, LayerView)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.rid.load(Ordering::Relaxed) != 0)
            .map(|(i, s)| {
                let last = s.bitrate.load(Ordering::Relaxed);
                let active = self.active_at(s, now);
                let view = LayerView {
                    index: i as u8,
                    rid: unpack(s.rid.load(Ordering::Relaxed)),
                    ssrc: s.ssrc.load(Ordering::Relaxed),
                    bitrate: if active { last } else { 0 },
                    width: s.width.load(Ordering::Relaxed),
                    height: s.height.load(Ordering::Relaxed),
                    active,
                };
                (last, view)
            })
            .collect();
        v.sort_by_key(|(last, l)| (*last, u64::from(l.width) * u64::from(l.height), l.index));
        v.into_iter().map(|(_, l)| l).collect()
    }
}

/// Picture size from a keyframe payload: H.264 SPS (single NAL or STAP-A,
/// RFC 6184 §5.7.1) or the VP8 key frame header (RFC 6386 §9.1 after the
/// RFC 7741 payload descriptor). `None` when the packet carries neither.
pub fn keyframe_size(codec: str0m::format::Codec, payload: &[u8]) -> Option<(u32, u32)> {
    use str0m::format::Codec;
    match codec {
        Codec::H264 => {
            let t = *payload.first()? & 0x1f;
            let nal = match t {
                7 => payload,
                24 => {
                    // STAP-A: [hdr][len16][nal]...
                    let mut i = 1;
                    loop {
                        let len =
                            u16::from_be_bytes([*payload.get(i)?, *payload.get(i + 1)?]) as usize;
                        let nal = payload.get(i + 2..i + 2 + len)?;
                        if nal.first().is_some_and(|b| b & 0x1f == 7) {
                            break nal;
                        }
                        i += 2 + len;
                    }
                }
                _ => return None,
            };
            let s = crate::client::sps::parse_sps(nal)?;
            Some((s.width, s.height))
        }
        Codec::Vp8 => {
            let b0 = *payload.first()?;
            let mut i = 1;
            if b0 & 0x80 != 0 {
                let x = *payload.get(1)?;
                i = 2;
                if x & 0x80 != 0 {
                    i += if payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
                }
                if x & 0x40 != 0 {
                    i += 1;
                }
                if x & 0x30 != 0 {
                    i += 1;
                }
            }
            // Start of partition (S) and partition 0 only.
            if b0 & 0x10 == 0 || b0 & 0x0f != 0 {
                return None;
            }
            let f = payload.get(i..i + 10)?;
            if f[0] & 1 != 0 || f[3..6] != [0x9d, 0x01, 0x2a] {
                return None;
            }
            let w = u32::from(u16::from_le_bytes([f[6], f[7]]) & 0x3fff);
            let h = u32::from(u16::from_le_bytes([f[8], f[9]]) & 0x3fff);
            Some((w, h))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_claim_and_activity() {
        let t = LayerTable::default();
        let now = Instant::now();
        assert_eq!(t.slot_of("h", 10), Some(0));
        assert_eq!(t.slot_of("m", 11), Some(1));
        assert_eq!(t.slot_of("h", 10), Some(0));
        assert_eq!(t.slot_of("toolongrid", 1), None);
        assert!(t.is_simulcast());
        assert_eq!(t.find("m"), Some(1));
        assert_eq!(t.rid(1), "m");
        t.touch(0, now);
        let mut out = [LayerInfo {
            index: 0,
            bitrate: 0,
            pixels: 0,
        }; MAX_LAYERS];
        assert_eq!(t.active(now, &mut out), 1);
        assert_eq!(t.active(now + Duration::from_millis(1500), &mut out), 0);
        t.slots[0].bitrate.store(900_000, Ordering::Relaxed);
        t.slots[1].bitrate.store(300_000, Ordering::Relaxed);
        t.touch(1, now + Duration::from_millis(1000));
        let later = now + Duration::from_millis(1500);
        let rates: Vec<_> = t
            .snapshot(later)
            .iter()
            .map(|l| (l.rid.clone(), l.bitrate, l.active))
            .collect();
        assert_eq!(
            rates,
            [("m".into(), 300_000, true), ("h".into(), 0, false)],
            "a silent layer reads 0 bit/s and keeps its place"
        );
        assert_eq!(t.slot_of("a", 1), Some(2));
        assert_eq!(t.slot_of("b", 1), Some(3));
        assert_eq!(t.slot_of("c", 1), None);
        t.reset();
        assert!(!t.is_simulcast());
        // Simulcast as soon as the offer declares layers, before any is seen.
        t.set_offered(3);
        assert!(t.is_simulcast());
        t.set_offered(1);
        assert!(!t.is_simulcast());
    }

    #[test]
    fn vp8_keyframe_size() {
        // Descriptor: X=0, S=1, PID=0; frame tag (key), start code, 640x360.
        let p = [
            0x10, 0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
        ];
        assert_eq!(
            keyframe_size(str0m::format::Codec::Vp8, &p),
            Some((640, 360))
        );
        assert_eq!(keyframe_size(str0m::format::Codec::Vp8, &p[..5]), None);
    }

    #[test]
    fn bad_input_does_not_panic() {
        for p in [
            &[24u8, 0, 50][..],
            &[24, 0xff, 0xff, 7],
            &[7],
            &[0x90, 0x80],
        ] {
            let _ = keyframe_size(str0m::format::Codec::H264, p);
            let _ = keyframe_size(str0m::format::Codec::Vp8, p);
        }
    }
}
