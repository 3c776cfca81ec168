//! The session limit (`--max-sessions`, RFC 9725 §4.5: `503` when the
//! server cannot take another session), counted with reservations.
//!
//! A WHIP/WHEP POST takes a [`Slot`] *before* it reads its body and builds
//! the peer, and the slot lives in the session's registry entry until the
//! entry is removed (DELETE, peer close, consent loss, replacement): dropping
//! it gives the slot back. Counting the session map instead (check, then
//! insert after the body and the answer) let every POST of a burst pass the
//! check before the first one was inserted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Slots in use, shared by every [`Slot`].
#[derive(Debug, Default)]
pub struct SessionSlots {
    used: Arc<AtomicUsize>,
}

/// One session's share of the limit; given back on drop.
#[derive(Debug)]
pub struct Slot {
    used: Arc<AtomicUsize>,
    /// Taken with [`SessionSlots::take_beyond_limit`].
    beyond: bool,
}

impl SessionSlots {
    /// A slot if fewer than `max` are in use, else `None` (answer `503`).
    pub fn try_take(&self, max: usize) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot {
                used: self.used.clone(),
                beyond: false,
            })
    }

    /// A slot even at the limit, for a publisher that replaces a live one:
    /// the old session's slot comes back when its entry is removed. If no
    /// session was replaced after all (the old publisher left in between),
    /// check [`Slot::within`] and refuse.
    pub fn take_beyond_limit(&self) -> Slot {
        self.used.fetch_add(1, Ordering::AcqRel);
        Slot {
            used: self.used.clone(),
            beyond: true,
        }
    }

    /// Slots in use (sessions plus POSTs being answered).
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Slot {
    /// Whether this slot may hold a new session under `max`: always for
    /// one from [`SessionSlots::try_take`]; for one taken beyond the limit,
    /// whether the slots in use, this one included, are at most `max` (no
    /// replaced session gave its slot back: refuse, `503`).
    pub fn within(&self, max: usize) -> bool {
        !self.beyond || self.used.load(Ordering::Acquire) <= max
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reserved_and_given_back() {
        let s = SessionSlots::default();
        let a = s.try_take(2).expect("first");
        let b = s.try_take(2).expect("second");
        assert!(s.try_take(2).is_none(), "at the limit");
        let c = s.take_beyond_limit();
        assert!(b.within(2), "a slot taken within the limit stays valid");
        assert!(!c.within(2), "three in use");
        drop(a);
        assert!(c.within(2), "a replaced session gave its slot back");
        assert!(s.try_take(2).is_none());
        drop((b, c));
        assert_eq!(s.in_use(), 0);
        assert!(s.try_take(0).is_none(), "max 0 admits nothing");
    }
}
