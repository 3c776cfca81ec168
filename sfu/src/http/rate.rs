//! Per-client-IP token buckets for POST, PATCH and DELETE (RFC 9725 §5):
//! beyond the rate a request gets `429 Too Many Requests` + `Retry-After`.

use dashmap::DashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Token bucket state per IP.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Rate limiter: `rate` requests per second with bursts of `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: DashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// `rate` per second (0 disables), `burst` maximum bucket size.
    pub fn new(rate: f64, burst: f64) -> Self {
        RateLimiter {
            rate,
            burst: burst.max(1.0),
            buckets: DashMap::new(),
        }
    }

    /// Take one token for `ip` at `now`; false = over the limit.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        if self.buckets.len() > 100_000 {
            // Bound memory under a spoofed-source flood: forget full buckets.
            let (rate, burst) = (self.rate, self.burst);
            self.buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
        }
        let mut b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.rate;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills() {
        let r = RateLimiter::new(10.0, 3.0);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(r.allow(ip, t0) && r.allow(ip, t0) && r.allow(ip, t0));
        assert!(!r.allow(ip, t0), "burst exhausted");
        assert!(r.allow(other, t0), "other clients unaffected");
        assert!(
            r.allow(ip, t0 + Duration::from_millis(100)),
            "refilled one token"
        );
        assert!(RateLimiter::new(0.0, 1.0).allow(ip, t0), "0 disables");
    }
}
