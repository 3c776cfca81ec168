//! Simulcast layer choice for one viewer (RFC 8853 layers, one forwarded at a time).
//!
//! Two pure machines:
//! * [`LayerGate`] admits only the current layer's packets and moves to a new
//!   target layer only at that layer's keyframe, so the viewer's decoder never
//!   starts mid-GOP. Sequence/timestamp re-basing is then done by
//!   [`Rewrite`](super::Rewrite), which sees the layer as a new source.
//! * [`AutoLayer`] picks the target from the viewer's send-side bandwidth
//!   estimate with hysteresis: down at once when the estimate falls under
//!   [`DOWN_MARGIN`] of the current layer's bitrate, up one step only after the estimate has left
//!   [`UP_HEADROOM`] above the next layer's bitrate for [`UP_STABLE`].

use std::time::{Duration, Instant};

/// Most layers per track (RFC 8853 allows more; browsers send up to 3, OBS up to 4).
pub const MAX_LAYERS: usize = 4;
/// How long the estimate must allow the next layer before stepping up.
pub const UP_STABLE: Duration = Duration::from_secs(5);
/// Headroom needed over the next layer's bitrate to step up (estimate ≥ bitrate × this).
pub const UP_HEADROOM: f64 = 1.25;
/// Step down when the estimate is under the current layer's bitrate × this.
/// A publisher's encoder ramping a layer up (Chromium raises its layers'
/// bitrates as its own estimate grows) briefly outruns the viewer's estimate,
/// which is no congestion; real congestion drops the estimate well below.
pub const DOWN_MARGIN: f64 = 0.8;

/// One layer as the chooser sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    /// Layer index (the publisher track's layer slot).
    pub index: u8,
    /// Bitrate over the last second, bit/s.
    pub bitrate: u64,
    /// Picture size in pixels (width × height), 0 when unknown.
    pub pixels: u64,
}

/// Sort key of layers, lowest first: bitrate, then picture size, then index.
pub fn rank(l: &LayerInfo) -> (u64, u64, u8) {
    (l.bitrate, l.pixels, l.index)
}

/// What to do with one packet of a simulcast track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Forward (it belongs to the current layer).
    Forward,
    /// Forward: the first packet of the target layer's keyframe; the gate
    /// switched to it (count a layer switch when `from` is `Some`).
    Switched {
        /// Previous layer, `None` for the first one.
        from: Option<u8>,
    },
    /// Drop (another layer, or the target before its keyframe).
    Drop,
}

/// Admits one layer's packets and switches layers at keyframes.
#[derive(Debug, Clone, Default)]
pub struct LayerGate {
    current: Option<u8>,
    target: u8,
}

impl LayerGate {
    /// Layer being forwarded, if any.
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// Layer wanted.
    pub fn target(&self) -> u8 {
        self.target
    }

    /// True while waiting for the target layer's keyframe.
    pub fn switching(&self) -> bool {
        self.current != Some(self.target)
    }

    /// Want `layer`; the switch happens at its next keyframe.
    pub fn set_target(&mut self, layer: u8) {
        self.target = layer;
    }

    /// Decide for a packet of `layer`; `keyframe` = it starts a keyframe.
    pub fn on_packet(&mut self, layer: u8, keyframe: bool) -> Admit {
        // Until the target's keyframe, the old layer keeps playing.
        if layer == self.target && self.current != Some(layer) && keyframe {
            let from = self.current.replace(layer);
            return Admit::Switched { from };
        }
        if self.current == Some(layer) {
            Admit::Forward
        } else {
            Admit::Drop
        }
    }
}

/// Automatic layer choice from the viewer's bandwidth estimate.
#[derive(Debug, Clone, Default)]
pub struct AutoLayer {
    up_since: Option<Instant>,
}

impl AutoLayer {
    /// Choose among `layers` (any order, active ones only; not empty), given
    /// the layer currently forwarded and the estimate in bit/s (`None`: no
    /// estimate, take the top layer).
    pub fn choose(
        &mut self,
        layers: &[LayerInfo],
        current: Option<u8>,
        estimate: Option<u64>,
        now: Instant,
    ) -> Option<u8> {
        let mut sorted = [LayerInfo {
            index: 0,
            bitrate: 0,
            pixels: 0,
        }; MAX_LAYERS];
        let n = layers.len().min(MAX_LAYERS);
        sorted[..n].copy_from_slice(&layers[..n]);
        let sorted = &mut sorted[..n];
        sorted.sort_by_key(rank);
        let top = sorted.last()?.index;
        let Some(est) = estimate else {
            self.up_since = None;
            return Some(top);
        };
        // Highest layer that fits the estimate (the lowest when none does).
        let fit = sorted
            .iter()
            .rev()
            .find(|l| l.bitrate <= est)
            .unwrap_or(&sorted[0])
            .index;
        let Some(pos) = current.and_then(|c| sorted.iter().position(|l| l.index == c)) else {
            // Nothing forwarded (or the current layer went away): the fit now.
            self.up_since = None;
            return Some(fit);
        };
        if sorted[pos].bitrate as f64 * DOWN_MARGIN > est as f64 {
            // Congestion: down at once.
            self.up_since = None;
            return Some(fit);
        }
        match sorted.get(pos + 1) {
            Some(next) if est as f64 >= next.bitrate as f64 * UP_HEADROOM => {
                let since = *self.up_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= UP_STABLE {
                    self.up_since = None;
                    Some(next.index)
                } else {
                    Some(sorted[pos].index)
                }
            }
            _ => {
                self.up_since = None;
                Some(sorted[pos].index)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(index: u8, bitrate: u64) -> LayerInfo {
        LayerInfo {
            index,
            bitrate,
            pixels: 0,
        }
    }

    #[test]
    fn gate_switches_only_at_target_keyframe() {
        let mut g = LayerGate::default();
        g.set_target(2);
        assert_eq!(g.on_packet(0, true), Admit::Drop);
        assert_eq!(g.on_packet(2, false), Admit::Drop);
        assert_eq!(g.on_packet(2, true), Admit::Switched { from: None });
        assert_eq!(g.on_packet(2, false), Admit::Forward);
        assert_eq!(g.on_packet(1, true), Admit::Drop);
        g.set_target(0);
        assert!(g.switching());
        // The old layer keeps playing until the target's keyframe.
        assert_eq!(g.on_packet(2, false), Admit::Forward);
        assert_eq!(g.on_packet(0, false), Admit::Drop);
        assert_eq!(g.on_packet(0, true), Admit::Switched { from: Some(2) });
        assert_eq!(g.on_packet(2, true), Admit::Drop);
        assert_eq!(g.current(), Some(0));
        assert!(!g.switching());
    }

    /// Gate + Rewrite together: two interleaved layers with unrelated
    /// sequence numbers and timestamps become one continuous stream.
    #[test]
    fn layer_switch_is_continuous_through_rewrite() {
        use crate::forward::{Rewrite, RewriteDecision};
        let t0 = Instant::now();
        let mut g = LayerGate::default();
        let mut r = Rewrite::new(90_000, true, 500);
        g.set_target(0);
        let mut out = Vec::new();
        // Frame i: layer 0 seq 1000+i ts 3000i; layer 1 seq 60000+i ts 7e6+3000i
        // (wrapping its 16-bit seq); keyframes every 10 frames; switch at frame 13.
        for i in 0..30u64 {
            if i == 13 {
                g.set_target(1);
            }
            let now = t0 + Duration::from_millis(33 * i);
            let key = i % 10 == 0;
            for (layer, seq, ts) in [
                (0u8, 1000 + i, 3000 * i as u32),
                (1u8, 60_000 + i, 7_000_000 + 3000 * i as u32),
            ] {
                if matches!(g.on_packet(layer, key), Admit::Drop) {
                    continue;
                }
                match r.on_packet(layer as u64, seq, ts, key, now) {
                    RewriteDecision::Forward { seq, ts } => out.push((layer, seq, ts)),
                    other => panic!("{other:?}"),
                }
            }
        }
        // Layer 0 for frames 0..=20 (its frame 20 arrives before layer 1's),
        // layer 1 from its keyframe at frame 20.
        assert_eq!(out.len(), 31);
        assert!(out[..21].iter().all(|o| o.0 == 0));
        assert!(out[21..].iter().all(|o| o.0 == 1));
        for (i, w) in out.windows(2).enumerate() {
            assert_eq!(w[1].1, w[0].1 + 1, "no sequence gap");
            let dts = w[1].2.wrapping_sub(w[0].2);
            if i == 20 {
                // Same capture instant on the other layer: one tick later.
                assert_eq!(dts, 1);
            } else {
                assert!((2900..=3100).contains(&dts), "{w:?}");
            }
        }
        // A late retransmission of the old layer after the switch is dropped.
        assert_eq!(g.on_packet(0, false), Admit::Drop);
    }

    #[test]
    fn no_estimate_takes_top() {
        let mut a = AutoLayer::default();
        let t = Instant::now();
        let ls = [l(0, 2_000_000), l(1, 500_000), l(2, 150_000)];
        assert_eq!(a.choose(&ls, None, None, t), Some(0));
        assert_eq!(a.choose(&[], None, None, t), None);
    }

    #[test]
    fn down_fast_up_after_stable_period() {
        let mut a = AutoLayer::default();
        let t0 = Instant::now();
        let ls = [l(0, 150_000), l(1, 500_000), l(2, 2_000_000)];
        // Start: the highest that fits.
        assert_eq!(a.choose(&ls, None, Some(3_000_000), t0), Some(2));
        // Estimate falls under the current layer: down at once, to the fit.
        assert_eq!(a.choose(&ls, Some(2), Some(400_000), t0), Some(0));
        // Nothing fits: lowest.
        assert_eq!(a.choose(&ls, Some(0), Some(100_000), t0), Some(0));
        // Room for layer 1 with headroom: only after UP_STABLE.
        let s = Duration::from_secs(1);
        assert_eq!(a.choose(&ls, Some(0), Some(700_000), t0 + s), Some(0));
        assert_eq!(a.choose(&ls, Some(0), Some(700_000), t0 + 3 * s), Some(0));
        assert_eq!(a.choose(&ls, Some(0), Some(700_000), t0 + 6 * s), Some(1));
        // A dip resets the stable period.
        assert_eq!(a.choose(&ls, Some(1), Some(5_000_000), t0 + 7 * s), Some(1));
        assert_eq!(a.choose(&ls, Some(1), Some(600_000), t0 + 8 * s), Some(1));
        assert_eq!(a.choose(&ls, Some(1), Some(5_000_000), t0 + 9 * s), Some(1));
        assert_eq!(
            a.choose(&ls, Some(1), Some(5_000_000), t0 + 13 * s),
            Some(1)
        );
        // One step at a time.
        assert_eq!(
            a.choose(&ls, Some(1), Some(5_000_000), t0 + 14 * s),
            Some(2)
        );
    }

    #[test]
    fn a_layer_ramping_slightly_past_the_estimate_is_kept() {
        let mut a = AutoLayer::default();
        let t0 = Instant::now();
        let ls = [l(0, 150_000), l(1, 500_000), l(2, 2_000_000)];
        // 1.7 Mbit/s estimate, top layer now at 2 Mbit/s: within the margin.
        assert_eq!(a.choose(&ls, Some(2), Some(1_700_000), t0), Some(2));
        // 1.5 Mbit/s: under 80 %, down to the fit.
        assert_eq!(a.choose(&ls, Some(2), Some(1_500_000), t0), Some(1));
    }

    #[test]
    fn headroom_is_required() {
        let mut a = AutoLayer::default();
        let t0 = Instant::now();
        let ls = [l(0, 150_000), l(1, 500_000)];
        for i in 0..10 {
            // 520 kbit/s fits layer 1 but without 25 % headroom.
            assert_eq!(
                a.choose(&ls, Some(0), Some(520_000), t0 + Duration::from_secs(i)),
                Some(0)
            );
        }
    }

    #[test]
    fn vanished_current_layer_picks_fit() {
        let mut a = AutoLayer::default();
        let t0 = Instant::now();
        let ls = [l(0, 150_000), l(1, 500_000)];
        assert_eq!(a.choose(&ls, Some(3), Some(600_000), t0), Some(1));
    }
}
