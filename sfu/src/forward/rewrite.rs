//! Per-viewer RTP sequence number and timestamp rewriting (offset maps).
//!
//! A viewer sees one continuous RTP stream per track even though its source can
//! change (publisher restart, simulcast layer switch). The rewrite is an offset:
//! `out_seq = in_seq + dseq`, `out_ts = in_ts + dts`, fixed per source, so gaps
//! and late retransmissions keep their place (RFC 3550 §5.1). Offsets are only
//! re-based at a keyframe of the new source, so a decoder never starts mid-GOP.
//!
//! The packet a keyframe is detected on need not be the first of its access
//! unit on the wire: when the publisher's path reorders, an IDR slice can
//! arrive before the SPS/PPS packets sent ahead of it. When a viewer starts
//! (goes live for the first time), those earlier packets of the starting
//! access unit (same RTP timestamp) are still forwarded, below the first
//! outgoing sequence number, so its decoder gets the parameter sets; a
//! receiver that reorders (libwebrtc's packet buffer does) puts them first.
//! At a re-base (new source) there is no room below: the numbers just under
//! it are the old source's, so such packets stay dropped there.
//!
//! Outgoing sequence numbers start below 65,536 because str0m derives the SRTP
//! rollover counter (RFC 3711 §3.3.1) from the upper bits of the extended
//! sequence number it is given.

use std::time::Instant;

/// What to do with one incoming packet for one viewer track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteDecision {
    /// Forward with these extended sequence number and RTP timestamp.
    Forward {
        /// Extended outgoing sequence number (low 16 bits go on the wire).
        seq: u64,
        /// Outgoing RTP timestamp in the track's clock (90 kHz video, 48 kHz Opus).
        ts: u32,
    },
    /// Drop: waiting for a keyframe of the current source (request one).
    NeedKeyframe,
    /// Drop: a straggler from before the last re-base (older than the start).
    Stale,
}

/// Offset rewriter for one (viewer, track).
///
/// `source` identifies where packets come from (e.g. publisher SSRC, or a
/// simulcast layer); a change of source forces a re-base at the next keyframe.
#[derive(Debug, Clone)]
pub struct Rewrite {
    clock_rate: u32,
    gated: bool,
    live: bool,
    source: u64,
    dseq: u64,
    dts: u32,
    start_in: u64,
    hi_seq: u64,
    hi_ts: u32,
    hi_at: Option<Instant>,
    first_seq: u64,
    /// Input timestamp of the access unit the current source started at.
    start_ts: u32,
    /// Lowest outgoing sequence number a straggler of that access unit may
    /// take: 0 for a viewer's start, the re-base point otherwise.
    floor: u64,
}

impl Rewrite {
    /// A rewriter for a track clocked at `clock_rate` Hz (90,000 for video,
    /// 48,000 for Opus, 8,000 for G.711). `keyframe_gated` is true for video:
    /// output starts only at a packet flagged as a keyframe start.
    /// `first_seq` is the first outgoing sequence number (must be < 65,536).
    pub fn new(clock_rate: u32, keyframe_gated: bool, first_seq: u16) -> Self {
        Rewrite {
            clock_rate: clock_rate.max(1),
            gated: keyframe_gated,
            live: false,
            source: 0,
            dseq: 0,
            dts: 0,
            start_in: 0,
            hi_seq: 0,
            hi_ts: 0,
            hi_at: None,
            first_seq: first_seq as u64,
            start_ts: 0,
            floor: 0,
        }
    }

    /// True once the first packet (keyframe for video) has been forwarded.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Decide for one packet.
    ///
    /// * `source`: identity of the packet's source stream.
    /// * `seq`: extended incoming sequence number (monotonic, from str0m).
    /// * `ts`: incoming RTP timestamp.
    /// * `keyframe_start`: the packet begins a keyframe (first packet of an IDR
    ///   access unit, or the SPS preceding it).
    /// * `now`: arrival time, used to space timestamps across a re-base.
    pub fn on_packet(
        &mut self,
        source: u64,
        seq: u64,
        ts: u32,
        keyframe_start: bool,
        now: Instant,
    ) -> RewriteDecision {
        if !self.live || self.source != source {
            if self.gated && !keyframe_start {
                return RewriteDecision::NeedKeyframe;
            }
            let (first, floor) = if self.live {
                (self.hi_seq + 1, self.hi_seq + 1)
            } else {
                (self.first_seq, 0)
            };
            let out_ts = match self.hi_at {
                Some(at) => {
                    let elapsed = now.saturating_duration_since(at);
                    let ticks = (elapsed.as_micros() as u64 * self.clock_rate as u64 / 1_000_000)
                        .max(1) as u32;
                    self.hi_ts.wrapping_add(ticks)
                }
                None => ts,
            };
            self.dseq = first.wrapping_sub(seq);
            self.dts = out_ts.wrapping_sub(ts);
            self.start_in = seq;
            self.start_ts = ts;
            self.floor = floor;
            self.source = source;
            self.live = true;
        }
        if seq < self.start_in {
            // An earlier packet of the starting access unit (reordered
            // before its keyframe was detected) fits below the start.
            let below = self.start_in - seq;
            let room = self.start_in.wrapping_add(self.dseq) - self.floor;
            if ts != self.start_ts || below > room {
                return RewriteDecision::Stale;
            }
        }
        let out_seq = seq.wrapping_add(self.dseq);
        let out_ts = ts.wrapping_add(self.dts);
        if out_seq > self.hi_seq || self.hi_at.is_none() {
            self.hi_seq = out_seq;
            self.hi_ts = out_ts;
            self.hi_at = Some(now);
        }
        RewriteDecision::Forward {
            seq: out_seq,
            ts: out_ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn fwd(d: RewriteDecision) -> (u64, u32) {
        match d {
            RewriteDecision::Forward { seq, ts } => (seq, ts),
            other => panic!("expected Forward, got {other:?}"),
        }
    }

    #[test]
    fn video_waits_for_keyframe_then_offsets() {
        let t0 = Instant::now();
        let mut r = Rewrite::new(90_000, true, 1000);
        assert_eq!(
            r.on_packet(7, 70_000, 5, false, t0),
            RewriteDecision::NeedKeyframe
        );
        assert!(!r.is_live());
        assert_eq!(fwd(r.on_packet(7, 70_001, 3000, true, t0)), (1000, 3000));
        assert_eq!(fwd(r.on_packet(7, 70_002, 3000, false, t0)), (1001, 3000));
        // A gap stays a gap (offset, not a counter).
        assert_eq!(fwd(r.on_packet(7, 70_005, 6000, false, t0)), (1004, 6000));
        // A late retransmission keeps its place.
        assert_eq!(fwd(r.on_packet(7, 70_003, 3000, false, t0)), (1002, 3000));
        // Stragglers from before the start are dropped.
        assert_eq!(r.on_packet(7, 69_999, 0, false, t0), RewriteDecision::Stale);
    }

    #[test]
    fn reordered_start_of_the_first_keyframe_is_kept() {
        let t0 = Instant::now();
        let mut r = Rewrite::new(90_000, true, 1000);
        // SPS 100, PPS 101, IDR 102..104 (ts 3000); the IDR start arrives
        // first and is the packet the keyframe is detected on.
        assert_eq!(fwd(r.on_packet(7, 102, 3000, true, t0)), (1000, 3000));
        assert_eq!(fwd(r.on_packet(7, 100, 3000, false, t0)), (998, 3000));
        assert_eq!(fwd(r.on_packet(7, 103, 3000, false, t0)), (1001, 3000));
        assert_eq!(fwd(r.on_packet(7, 101, 3000, false, t0)), (999, 3000));
        // Earlier access units stay out.
        assert_eq!(r.on_packet(7, 99, 0, false, t0), RewriteDecision::Stale);
        // No room below outgoing sequence number 0.
        let mut r = Rewrite::new(90_000, true, 1);
        assert_eq!(fwd(r.on_packet(7, 102, 3000, true, t0)), (1, 3000));
        assert_eq!(fwd(r.on_packet(7, 101, 3000, false, t0)), (0, 3000));
        assert_eq!(r.on_packet(7, 100, 3000, false, t0), RewriteDecision::Stale);
    }

    #[test]
    fn reordered_start_at_a_rebase_does_not_reuse_old_numbers() {
        let t0 = Instant::now();
        let mut r = Rewrite::new(90_000, true, 100);
        fwd(r.on_packet(1, 10, 0, true, t0));
        fwd(r.on_packet(1, 11, 3000, false, t0));
        // New source; its keyframe start arrives before its SPS (500).
        assert_eq!(fwd(r.on_packet(2, 502, 7, true, t0)).0, 102);
        assert_eq!(r.on_packet(2, 501, 7, false, t0), RewriteDecision::Stale);
    }

    #[test]
    fn audio_is_not_gated() {
        let t0 = Instant::now();
        let mut r = Rewrite::new(48_000, false, 1);
        assert_eq!(fwd(r.on_packet(1, 5, 960, false, t0)), (1, 960));
    }

    #[test]
    fn source_switch_rebases_continuously_at_keyframe() {
        let t0 = Instant::now();
        let mut r = Rewrite::new(90_000, true, 100);
        fwd(r.on_packet(1, 10, 90_000, true, t0));
        let (s, ts) = fwd(r.on_packet(1, 11, 93_000, false, t0 + Duration::from_millis(33)));
        assert_eq!((s, ts), (101, 93_000));
        // New source: non-keyframes are held back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(
            r.on_packet(2, 500, 7, false, t1),
            RewriteDecision::NeedKeyframe
        );
        // Keyframe of the new source continues seq and advances ts by wallclock.
        let (s2, ts2) = fwd(r.on_packet(2, 501, 7, true, t1));
        assert_eq!(s2, 102);
        // 67 ms since the last forwarded packet at 90 kHz = 6030 ticks.
        assert_eq!(ts2, 93_000 + 6030);
        assert_eq!(
            fwd(r.on_packet(2, 502, 7 + 3000, false, t1)),
            (103, 93_000 + 6030 + 3000)
        );
        // Old source packets arriving late are not mixed in.
        assert_eq!(
            r.on_packet(1, 12, 96_000, false, t1),
            RewriteDecision::NeedKeyframe
        );
    }

    #[test]
    fn timestamp_and_sequence_wraparound() {
        let t0 = Instant::now();
        let mut r = Rewrite::new(90_000, false, 65_530);
        // Incoming extended seq crosses 2^16 and ts crosses 2^32.
        let (s0, t_0) = fwd(r.on_packet(3, 131_070, u32::MAX - 1000, false, t0));
        assert_eq!((s0, t_0), (65_530, u32::MAX - 1000));
        let (s1, t_1) = fwd(r.on_packet(3, 131_080, 2000, false, t0));
        assert_eq!(s1, 65_540); // outgoing extended seq keeps counting past 2^16
        assert_eq!(t_1, 2000);
    }
}
