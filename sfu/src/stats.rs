//! Per-session statistics for the HTTP API (`GET /api/streams/{name}`) and
//! the Prometheus metrics.
//!
//! The worker that owns a peer folds str0m's periodic RTCP-derived reports
//! (`MediaEgressStats` for viewers, `MediaIngressStats` for publishers, every
//! [`STATS_INTERVAL`]) into a [`SessionStats`] with relaxed atomics; nothing
//! here runs per packet. Readers see values at most one interval old.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use str0m::media::Mid;

/// How often str0m reports per-mid statistics for a peer.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// `u32`/`u64` value meaning "not reported yet".
const UNKNOWN: u64 = u64::MAX;

/// Live statistics of one WHIP or WHEP session (shared by its worker, which
/// writes, and the HTTP layer, which reads).
#[derive(Debug)]
pub struct SessionStats {
    /// Process-unique peer id (shown instead of the secret session URL).
    pub id: u64,
    /// Negotiated codecs, e.g. `["opus/48000/2", "H264 42e01f"]`.
    pub codecs: Vec<String>,
    /// Session creation time.
    pub created: Instant,
    /// The peer's selected remote address (set when ICE connects).
    remote: Mutex<Option<SocketAddr>>,
    /// RTP bytes (header + payload) sent to a viewer / received from a
    /// publisher, as counted by str0m.
    bytes: AtomicU64,
    /// RTP packets, same direction as `bytes`.
    packets: AtomicU64,
    /// Bitrate over the last interval, bit/s.
    bitrate_bps: AtomicU64,
    /// Round-trip time from RTCP (RFC 3550 §6.4.1 LSR/DLSR), µs.
    rtt_us: AtomicU64,
    /// Fraction lost (RFC 3550 §6.4.1) × 1,000,000: reported by the viewer
    /// for what we send, or measured by us on what the publisher sends.
    loss_ppm: AtomicU32,
    /// NACKs (RFC 4585 §6.2.1) received from a viewer / sent to a publisher.
    nacks: AtomicU64,
    /// PLIs received from a viewer / sent to a publisher.
    plis: AtomicU64,
    /// FIRs received from a viewer / sent to a publisher.
    firs: AtomicU64,
    /// RID of the simulcast layer a viewer receives (`None`: no simulcast).
    layer: Mutex<Option<String>>,
}

/// A consistent copy of [`SessionStats`] for serialization.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    /// See [`SessionStats::id`].
    pub id: u64,
    /// See [`SessionStats::codecs`].
    pub codecs: Vec<String>,
    /// Remote address, once connected.
    pub address: Option<String>,
    /// Seconds since the session was created.
    pub uptime_s: u64,
    /// RTP bytes.
    pub bytes: u64,
    /// RTP packets.
    pub packets: u64,
    /// Bitrate over the last interval, bit/s.
    pub bitrate_bps: u64,
    /// Round-trip time in ms (`null` until the first RTCP report).
    pub rtt_ms: Option<f64>,
    /// Fraction lost 0..1 (`null` until the first report).
    pub loss: Option<f64>,
    /// NACK count.
    pub nacks: u64,
    /// PLI count.
    pub plis: u64,
    /// FIR count.
    pub firs: u64,
}

impl SessionStats {
    /// Fresh statistics for a new session.
    pub fn new(id: u64, codecs: Vec<String>) -> SessionStats {
        SessionStats {
            id,
            codecs,
            created: Instant::now(),
            remote: Mutex::new(None),
            bytes: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            bitrate_bps: AtomicU64::new(0),
            rtt_us: AtomicU64::new(UNKNOWN),
            loss_ppm: AtomicU32::new(u32::MAX),
            nacks: AtomicU64::new(0),
            plis: AtomicU64::new(0),
            firs: AtomicU64::new(0),
            layer: Mutex::new(None),
        }
    }

    /// Record the simulcast layer (RID) a viewer now receives (at switches only).
    pub fn set_layer(&self, rid: &str) {
        if let Ok(mut l) = self.layer.lock() {
            *l = Some(rid.to_string());
        }
    }

    /// The simulcast layer (RID) a viewer receives, if any.
    pub fn layer(&self) -> Option<String> {
        self.layer.lock().ok().and_then(|l| l.clone())
    }

    /// Record the selected remote address (ICE connected).
    pub fn set_remote(&self, addr: SocketAddr) {
        if let Ok(mut r) = self.remote.lock() {
            *r = Some(addr);
        }
    }

    /// Copy the current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let rtt = self.rtt_us.load(Ordering::Relaxed);
        let loss = self.loss_ppm.load(Ordering::Relaxed);
        StatsSnapshot {
            id: self.id,
            codecs: self.codecs.clone(),
            address: self
                .remote
                .lock()
                .ok()
                .and_then(|r| r.map(|a| a.to_string())),
            uptime_s: self.created.elapsed().as_secs(),
            bytes: self.bytes.load(Ordering::Relaxed),
            packets: self.packets.load(Ordering::Relaxed),
            bitrate_bps: self.bitrate_bps.load(Ordering::Relaxed),
            rtt_ms: (rtt != UNKNOWN).then(|| rtt as f64 / 1000.0),
            loss: (loss != u32::MAX).then(|| f64::from(loss) / 1e6),
            nacks: self.nacks.load(Ordering::Relaxed),
            plis: self.plis.load(Ordering::Relaxed),
            firs: self.firs.load(Ordering::Relaxed),
        }
    }
}

/// One mid's cumulative counters as last reported by str0m.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MidCounters {
    /// RTP bytes.
    pub bytes: u64,
    /// RTP packets.
    pub packets: u64,
    /// NACKs.
    pub nacks: u64,
    /// PLIs.
    pub plis: u64,
    /// FIRs.
    pub firs: u64,
}

/// What changed since the previous report, for the Prometheus counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delta {
    /// New RTP packets.
    pub packets: u64,
    /// New NACKs.
    pub nacks: u64,
    /// New PLIs.
    pub plis: u64,
    /// New FIRs.
    pub firs: u64,
}

/// The worker-side accumulator of one peer: folds per-mid reports (each
/// cumulative since the session began) into session totals. Pure state: fed
/// reports and times, it returns deltas.
#[derive(Debug, Default)]
pub struct StatsFolder {
    mids: Vec<(Mid, MidCounters)>,
    last_bytes: u64,
    last_at: Option<Instant>,
}

impl StatsFolder {
    /// Fold one mid's report taken at `at`; writes totals into `out` and
    /// returns the new NACK/PLI/FIR counts. `rtt` and `loss` (fraction 0..1)
    /// replace the previous values when present.
    pub fn fold(
        &mut self,
        mid: Mid,
        c: MidCounters,
        rtt: Option<Duration>,
        loss: Option<f32>,
        at: Instant,
        out: &SessionStats,
    ) -> Delta {
        let prev = match self.mids.iter_mut().find(|(m, _)| *m == mid) {
            Some((_, p)) => std::mem::replace(p, c),
            None => {
                if self.mids.len() < 16 {
                    self.mids.push((mid, c));
                }
                MidCounters::default()
            }
        };
        let delta = Delta {
            packets: c.packets.saturating_sub(prev.packets),
            nacks: c.nacks.saturating_sub(prev.nacks),
            plis: c.plis.saturating_sub(prev.plis),
            firs: c.firs.saturating_sub(prev.firs),
        };
        let total = self
            .mids
            .iter()
            .fold(MidCounters::default(), |a, (_, c)| MidCounters {
                bytes: a.bytes + c.bytes,
                packets: a.packets + c.packets,
                nacks: a.nacks + c.nacks,
                plis: a.plis + c.plis,
                firs: a.firs + c.firs,
            });
        out.bytes.store(total.bytes, Ordering::Relaxed);
        out.packets.store(total.packets, Ordering::Relaxed);
        out.nacks.store(total.nacks, Ordering::Relaxed);
        out.plis.store(total.plis, Ordering::Relaxed);
        out.firs.store(total.firs, Ordering::Relaxed);
        // Bitrate once per interval (reports of several mids arrive together).
        match self.last_at {
            None => {
                self.last_at = Some(at);
                self.last_bytes = total.bytes;
            }
            Some(t) if at.saturating_duration_since(t) >= STATS_INTERVAL / 2 => {
                let secs = at.saturating_duration_since(t).as_secs_f64();
                let bits = total.bytes.saturating_sub(self.last_bytes) * 8;
                out.bitrate_bps
                    .store((bits as f64 / secs) as u64, Ordering::Relaxed);
                self.last_at = Some(at);
                self.last_bytes = total.bytes;
            }
            Some(_) => {}
        }
        if let Some(r) = rtt {
            out.rtt_us.store(
                r.as_micros().min(u64::MAX as u128 - 1) as u64,
                Ordering::Relaxed,
            );
        }
        if let Some(l) = loss.filter(|l| l.is_finite()) {
            out.loss_ppm
                .store((l.clamp(0.0, 1.0) * 1e6) as u32, Ordering::Relaxed);
        }
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(bytes: u64, nacks: u64) -> MidCounters {
        MidCounters {
            bytes,
            packets: bytes / 100,
            nacks,
            plis: 0,
            firs: 0,
        }
    }

    #[test]
    fn folds_mids_into_totals_and_rates() {
        let s = SessionStats::new(7, vec!["H264 42e01f".into()]);
        let mut f = StatsFolder::default();
        let t0 = Instant::now();
        let (a, v) = (Mid::from("0"), Mid::from("1"));
        assert_eq!(f.fold(a, c(1_000, 0), None, None, t0, &s).nacks, 0);
        f.fold(
            v,
            c(10_000, 2),
            Some(Duration::from_millis(12)),
            Some(0.01),
            t0,
            &s,
        );
        let d = f.fold(
            v,
            c(260_000, 5),
            None,
            None,
            t0 + Duration::from_secs(1),
            &s,
        );
        assert_eq!(d.nacks, 3, "only new NACKs count");
        let snap = s.snapshot();
        assert_eq!(snap.bytes, 261_000);
        assert_eq!(snap.nacks, 5);
        assert_eq!(
            snap.bitrate_bps,
            260_000 * 8,
            "new bytes of all mids over 1 s"
        );
        assert_eq!(snap.rtt_ms, Some(12.0));
        assert_eq!(snap.loss, Some(0.01));
        assert_eq!(snap.address, None);
        s.set_remote("127.0.0.1:5000".parse().unwrap());
        assert_eq!(s.snapshot().address.as_deref(), Some("127.0.0.1:5000"));
    }

    #[test]
    fn unknown_until_reported() {
        let s = SessionStats::new(1, vec![]);
        let snap = s.snapshot();
        assert_eq!((snap.rtt_ms, snap.loss), (None, None));
    }
}
