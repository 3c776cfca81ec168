//! Keyframe request state machines (PLI/FIR, RFC 4585 §6.3.1, RFC 5104 §4.3.1).

use std::time::{Duration, Instant};

/// Throttles keyframe requests towards one publisher track.
///
/// Requests arriving within `min_interval` of the last one sent are not lost:
/// they are coalesced into one deferred request, released by [`poll`](Self::poll)
/// when the interval has passed. This keeps a burst of joining viewers from
/// flooding an encoder while guaranteeing that the last of them gets a keyframe.
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    min_interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    /// `min_interval`: minimum spacing between two requests (typically 500 ms).
    pub fn new(min_interval: Duration) -> Self {
        KeyframeThrottle {
            min_interval,
            last_sent: None,
            pending: false,
        }
    }

    /// A viewer (or the server) wants a keyframe. Returns true when a request
    /// must be sent now; otherwise it is remembered and released by `poll`.
    pub fn request(&mut self, now: Instant) -> bool {
        match self.last_sent {
            Some(t) if now.saturating_duration_since(t) < self.min_interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last_sent = Some(now);
                self.pending = false;
                true
            }
        }
    }

    /// Returns true when a deferred request is due now.
    pub fn poll(&mut self, now: Instant) -> bool {
        if self.pending && self.next_due().is_some_and(|t| now >= t) {
            self.pending = false;
            self.last_sent = Some(now);
            return true;
        }
        false
    }

    /// When the deferred request (if any) becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        if !self.pending {
            return None;
        }
        Some(
            self.last_sent
                .map_or_else(Instant::now, |t| t + self.min_interval),
        )
    }

    /// A keyframe arrived from the publisher: nothing deferred is needed any more.
    pub fn on_keyframe(&mut self) {
        self.pending = false;
    }
}

/// Tracks one viewer's wait for its first keyframe (or for one after a loss).
///
/// Asks once when the viewer's DTLS is up (a request before that is wasted),
/// then again every `retry` until a keyframe has been forwarded.
#[derive(Debug, Clone)]
pub struct KeyframeWaiter {
    retry: Duration,
    waiting: bool,
    connected: bool,
    last_ask: Option<Instant>,
}

impl KeyframeWaiter {
    /// `retry`: spacing of repeated requests while still waiting (typically 1 s).
    pub fn new(retry: Duration) -> Self {
        KeyframeWaiter {
            retry,
            waiting: true,
            connected: false,
            last_ask: None,
        }
    }

    /// The viewer's ICE+DTLS came up. Returns true: ask for a keyframe now.
    pub fn on_connected(&mut self, now: Instant) -> bool {
        self.connected = true;
        if self.waiting {
            self.last_ask = Some(now);
            return true;
        }
        false
    }

    /// The viewer decoded state was lost (viewer PLI/FIR): wait again.
    /// Returns true when a request should go out now.
    pub fn on_loss(&mut self, now: Instant) -> bool {
        self.waiting = true;
        self.ask_if_due(now)
    }

    /// A keyframe was forwarded to this viewer.
    pub fn on_keyframe_forwarded(&mut self) {
        self.waiting = false;
    }

    /// True while waiting.
    pub fn is_waiting(&self) -> bool {
        self.waiting
    }

    /// Called when a packet had to be dropped for lack of a keyframe, or on a
    /// timer. Returns true when a (repeated) request is due.
    pub fn ask_if_due(&mut self, now: Instant) -> bool {
        if !self.waiting || !self.connected {
            return false;
        }
        match self.last_ask {
            Some(t) if now.saturating_duration_since(t) < self.retry => false,
            _ => {
                self.last_ask = Some(now);
                true
            }
        }
    }

    /// Next time a retry could be due (for timers), if waiting.
    pub fn next_retry(&self) -> Option<Instant> {
        if self.waiting && self.connected {
            self.last_ask.map(|t| t + self.retry)
        } else {
            None
        }
    }
}

/// Most packets of one access unit an [`AccessUnitHold`] keeps (a 1080p
/// keyframe at ≈ 1,100 bytes a packet is ≈ 100–200 packets; the parameter
/// sets and first slices that can arrive ahead of the keyframe start are a
/// handful).
pub const ACCESS_UNIT_HOLD_MAX: usize = 32;

/// Packets of the newest access unit that a viewer waiting for a keyframe had
/// to drop, kept in case that access unit turns out to be the keyframe: on a
/// reordering publisher path its SPS/PPS or first slices can arrive before
/// the packet the keyframe is detected on. When the viewer starts at that
/// keyframe, [`take`](Self::take) hands them back to be forwarded too.
/// Holds packets of one RTP timestamp only, at most
/// [`ACCESS_UNIT_HOLD_MAX`]; the storage is reused (no allocation once grown).
#[derive(Debug, Clone)]
pub struct AccessUnitHold<T> {
    ts: u32,
    items: Vec<T>,
}

impl<T> Default for AccessUnitHold<T> {
    fn default() -> Self {
        AccessUnitHold {
            ts: 0,
            items: Vec::new(),
        }
    }
}

impl<T> AccessUnitHold<T> {
    /// Keep `item`, a dropped packet with RTP timestamp `ts`; packets of an
    /// older access unit (another timestamp) are forgotten.
    pub fn hold(&mut self, ts: u32, item: T) {
        if self.ts != ts {
            self.items.clear();
            self.ts = ts;
        }
        if self.items.len() < ACCESS_UNIT_HOLD_MAX {
            self.items.push(item);
        }
    }

    /// The packets held for access unit `ts` (empty for another one), in
    /// arrival order; the hold is emptied either way.
    pub fn take(&mut self, ts: u32) -> std::vec::Drain<'_, T> {
        if self.ts != ts {
            self.items.clear();
        }
        self.items.drain(..)
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_keeps_only_the_newest_access_unit() {
        let mut h = AccessUnitHold::default();
        h.hold(3000, 1);
        h.hold(6000, 2);
        h.hold(6000, 3);
        assert_eq!(h.take(3000).count(), 0, "another access unit");
        assert!(h.is_empty());
        h.hold(6000, 2);
        h.hold(6000, 3);
        assert_eq!(h.take(6000).collect::<Vec<_>>(), vec![2, 3]);
        assert!(h.is_empty());
        for i in 0..100 {
            h.hold(9000, i);
        }
        assert_eq!(h.take(9000).count(), ACCESS_UNIT_HOLD_MAX);
    }

    #[test]
    fn throttle_coalesces_and_defers() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(500));
        assert!(k.request(t0));
        assert!(!k.request(t0 + Duration::from_millis(100)));
        assert!(!k.request(t0 + Duration::from_millis(200)));
        assert_eq!(k.next_due(), Some(t0 + Duration::from_millis(500)));
        assert!(!k.poll(t0 + Duration::from_millis(499)));
        assert!(k.poll(t0 + Duration::from_millis(500)));
        assert!(!k.poll(t0 + Duration::from_millis(900)));
        assert!(k.request(t0 + Duration::from_millis(1001)));
    }

    #[test]
    fn throttle_drops_deferred_after_keyframe() {
        let t0 = Instant::now();
        let mut k = KeyframeThrottle::new(Duration::from_millis(500));
        assert!(k.request(t0));
        assert!(!k.request(t0 + Duration::from_millis(10)));
        k.on_keyframe();
        assert!(!k.poll(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn waiter_asks_on_connect_and_retries() {
        let t0 = Instant::now();
        let mut w = KeyframeWaiter::new(Duration::from_secs(1));
        assert!(!w.ask_if_due(t0), "no request before DTLS is up");
        assert!(w.on_connected(t0));
        assert!(!w.ask_if_due(t0 + Duration::from_millis(500)));
        assert!(w.ask_if_due(t0 + Duration::from_millis(1000)));
        w.on_keyframe_forwarded();
        assert!(!w.ask_if_due(t0 + Duration::from_secs(5)));
        assert!(w.on_loss(t0 + Duration::from_secs(6)));
    }
}
