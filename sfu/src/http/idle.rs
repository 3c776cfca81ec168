//! Idle HTTP connections: one with no request in progress for
//! [`Config::http_idle_timeout`](crate::config::Config::http_idle_timeout)
//! is shut down gracefully (HTTP/2: GOAWAY, RFC 9113 §6.8, and streams
//! already open, such as an SSE event stream, run to their end; HTTP/1.1:
//! closed between requests, RFC 9112 §9.6).
//!
//! HTTP/1.1 connections idle between requests are already closed by hyper's
//! header timeout; HTTP/2 has no such timeout in hyper, so without this a
//! client could hold any number of idle connections (file descriptors) for
//! ever.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Requests in progress on one connection and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `epoch` when the last request ended (or the
    /// connection opened).
    last_ms: AtomicU64,
}

/// A request in progress; ends (and marks the time) on drop.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Activity);

impl Activity {
    /// A connection opened at `now`.
    pub fn new(now: Instant) -> Self {
        Activity {
            epoch: now,
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    /// A request starts (until its response head is ready).
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    fn end(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::AcqRel);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// `None` when the connection has been idle for `timeout` at `now`
    /// (shut it down), else the instant to look again.
    pub fn check(&self, now: Instant, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Some(now + timeout);
        }
        let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Acquire));
        let due = last + timeout;
        (due > now).then_some(due)
    }

    /// Resolves once the connection has been idle for `timeout`.
    pub async fn idle(&self, timeout: Duration) {
        while let Some(next) = self.check(Instant::now(), timeout) {
            tokio::time::sleep_until(next.into()).await;
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.end(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_after_the_timeout_without_requests() {
        let t0 = Instant::now();
        let a = Activity::new(t0);
        let timeout = Duration::from_secs(60);
        assert_eq!(a.check(t0, timeout), Some(t0 + timeout));
        assert_eq!(a.check(t0 + timeout, timeout), None, "never used");
        let r = a.start();
        assert!(
            a.check(t0 + 2 * timeout, timeout).is_some(),
            "busy is never idle"
        );
        drop(r);
        let ended = Instant::now();
        let next = a.check(ended, timeout).expect("just ended");
        assert!(next >= ended + timeout - Duration::from_millis(2));
        assert_eq!(a.check(next + Duration::from_millis(1), timeout), None);
    }
}
