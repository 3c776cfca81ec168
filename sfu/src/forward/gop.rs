//! GOP cache: the latest keyframe of a video track and every packet after it,
//! so a joining viewer can start decoding at once even when the publisher
//! ignores PLI (RTSP cameras, OBS) or has a long GOP.
//!
//! Replay compresses the cached frames' timestamps (see [`replay_ts`]) so the
//! player renders them immediately and continues at the live edge instead of
//! playing the cached seconds back at real time.

use crate::media::MediaPacket;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bounded cache of the current GOP of one video track.
#[derive(Debug)]
pub struct GopCache {
    packets: VecDeque<Arc<MediaPacket>>,
    bytes: usize,
    max_bytes: usize,
    max_age: Duration,
    started: Option<Instant>,
}

impl GopCache {
    /// A cache holding at most `max_bytes` of payload and serving a GOP at
    /// most `max_age` old (counted from its keyframe's arrival).
    pub fn new(max_bytes: usize, max_age: Duration) -> Self {
        GopCache {
            packets: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_age,
            started: None,
        }
    }

    /// Add a packet in arrival order. A keyframe packet with a new RTP
    /// timestamp starts a new GOP; packets before the first keyframe are not
    /// kept; a GOP that outgrows the byte bound is dropped whole (a partial
    /// GOP cannot be decoded).
    pub fn push(&mut self, p: &Arc<MediaPacket>) {
        let new_gop = p.keyframe && self.packets.front().is_none_or(|f| f.ts != p.ts);
        if new_gop {
            // Packets of this keyframe's access unit that arrived before the
            // one it was detected on (a reordering path) stay, after it.
            let keep = self
                .packets
                .iter()
                .rev()
                .take(crate::forward::keyframe::ACCESS_UNIT_HOLD_MAX)
                .take_while(|q| q.ts == p.ts)
                .count();
            self.packets.drain(..self.packets.len() - keep);
            self.bytes = self.packets.iter().map(|q| q.payload.len()).sum();
            self.bytes += p.payload.len();
            self.packets.push_front(p.clone());
            self.started = Some(p.arrival);
            return;
        } else if self.packets.is_empty() {
            return;
        }
        self.bytes += p.payload.len();
        self.packets.push_back(p.clone());
        if self.bytes > self.max_bytes {
            self.clear();
        }
    }

    /// Drop everything (e.g. the publisher changed).
    pub fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
        self.started = None;
    }

    /// The cached GOP for a joining viewer, or empty when none or too old.
    pub fn snapshot(&self, now: Instant) -> Vec<Arc<MediaPacket>> {
        match self.started {
            Some(t) if now.saturating_duration_since(t) <= self.max_age => {
                self.packets.iter().cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }
}

/// Input timestamps for replaying `packets` (one GOP, in order): frame `i` of
/// `n` gets `last_ts - (n - 1 - i)`, i.e. the cached frames are one tick apart
/// and end at the last cached frame's real timestamp. Fed through the viewer's
/// offset rewriter, the frames that follow live continue seamlessly, and the
/// player sees the cached frames as due at once (it decodes them all and shows
/// the newest) instead of a GOP-long delay.
pub fn replay_ts(packets: &[Arc<MediaPacket>]) -> Vec<u32> {
    let Some(last) = packets.last() else {
        return Vec::new();
    };
    // Frame index per packet (a frame = run of equal timestamps).
    let mut frame = Vec::with_capacity(packets.len());
    let mut n = 0u32;
    for (i, p) in packets.iter().enumerate() {
        if i > 0 && p.ts != packets[i - 1].ts {
            n += 1;
        }
        frame.push(n);
    }
    frame
        .into_iter()
        .map(|f| last.ts.wrapping_sub(n - f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u64, ts: u32, key: bool, len: usize, at: Instant) -> Arc<MediaPacket> {
        Arc::new(MediaPacket {
            publication: 1,
            track: 1,
            video: true,
            layer: 0,
            source: 1,
            seq,
            ts,
            marker: false,
            keyframe: key,
            arrival: at,
            audio_level: None,
            voice_activity: None,
            payload: vec![0u8; len].into(),
        })
    }

    #[test]
    fn keeps_latest_gop_only() {
        let t0 = Instant::now();
        let mut c = GopCache::new(1 << 20, Duration::from_secs(5));
        c.push(&pkt(1, 0, false, 100, t0)); // before any keyframe: ignored
        assert!(c.is_empty());
        c.push(&pkt(2, 3000, true, 100, t0)); // SPS
        c.push(&pkt(3, 3000, true, 100, t0)); // IDR start, same frame: same GOP
        c.push(&pkt(4, 6000, false, 100, t0));
        assert_eq!(c.len(), 3);
        c.push(&pkt(5, 9000, true, 100, t0)); // next keyframe: new GOP
        assert_eq!(c.len(), 1);
        assert_eq!(c.snapshot(t0)[0].seq, 5);
    }

    #[test]
    fn a_keyframe_keeps_its_access_unit_packets_that_came_first() {
        let t0 = Instant::now();
        let mut c = GopCache::new(1 << 20, Duration::from_secs(5));
        c.push(&pkt(1, 0, true, 100, t0));
        c.push(&pkt(2, 3000, false, 100, t0));
        // Next GOP at ts 6000: its PPS (4) arrives before its IDR start (5),
        // its SPS (3) after.
        c.push(&pkt(4, 6000, false, 100, t0));
        c.push(&pkt(5, 6000, true, 100, t0));
        c.push(&pkt(3, 6000, false, 100, t0));
        let seqs: Vec<u64> = c.snapshot(t0).iter().map(|p| p.seq).collect();
        assert_eq!(
            seqs,
            vec![5, 4, 3],
            "the detected start first, then its stragglers"
        );
        assert_eq!(c.bytes(), 300);
    }

    #[test]
    fn bounded_by_bytes_and_age() {
        let t0 = Instant::now();
        let mut c = GopCache::new(250, Duration::from_secs(2));
        c.push(&pkt(1, 0, true, 100, t0));
        c.push(&pkt(2, 3000, false, 100, t0));
        assert_eq!(c.bytes(), 200);
        assert_eq!(c.snapshot(t0 + Duration::from_secs(3)).len(), 0, "too old");
        c.push(&pkt(3, 6000, false, 100, t0)); // 300 > 250: dropped whole
        assert!(c.is_empty());
        c.push(&pkt(4, 9000, false, 100, t0)); // no keyframe yet: ignored
        assert!(c.is_empty());
    }

    #[test]
    fn replay_timestamps_are_compressed_and_end_at_last() {
        let t0 = Instant::now();
        let p = vec![
            pkt(1, 1000, true, 1, t0),
            pkt(2, 1000, true, 1, t0),
            pkt(3, 4000, false, 1, t0),
            pkt(4, 7000, false, 1, t0),
            pkt(5, 7000, false, 1, t0),
        ];
        assert_eq!(replay_ts(&p), vec![6998, 6998, 6999, 7000, 7000]);
        // Wraparound of the RTP timestamp.
        let q = vec![pkt(1, u32::MAX, true, 1, t0), pkt(2, 2999, false, 1, t0)];
        assert_eq!(replay_ts(&q), vec![2998, 2999]);
    }
}
