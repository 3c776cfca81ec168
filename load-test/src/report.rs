//! Aggregation of viewer statistics into one report (JSON + table).

use crate::viewer::{State, Stats};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// p50/p95/p99 of a sample set (`null` in JSON when there are no samples).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Pct {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Pct {
    /// Nearest-rank percentiles of `v` (sorted in place).
    pub fn of(v: &mut [f64]) -> Pct {
        if v.is_empty() {
            return Pct::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
            Some(v[rank.clamp(1, v.len()) - 1])
        };
        Pct {
            p50: at(50.0),
            p95: at(95.0),
            p99: at(99.0),
        }
    }
}

/// The result of one measurement (a `run`, or one `ladder` step).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Viewers asked for.
    pub viewers_requested: usize,
    /// Viewers connected (ICE + DTLS up) and still up at the window's end.
    pub viewers_connected: usize,
    /// Failed joins by HTTP status (`"409"`) or cause (`"timeout"`: no HTTP
    /// answer within 10 s, `"ice-timeout"`: answered but ICE not connected
    /// within 10 s, `"dtls-timeout"`: ICE connected but DTLS not within
    /// 10 s, `"no-common-codec"`: the answer accepts none of the offered
    /// codecs, `"error"`: connection/SDP error).
    pub setup_failures: BTreeMap<String, usize>,
    /// Lost / expected packets over all viewers and tracks (0..1).
    pub loss_ratio: f64,
    /// Mean received RTP payload bit rate per connected viewer.
    pub bitrate_bps: f64,
    /// Per-frame added latency: timestamp SEI sent → frame's last packet
    /// received (needs `--publish clip`).
    pub latency_ms: Pct,
    /// Time to first frame: POST sent → first complete keyframe access unit.
    pub ttff_ms: Pct,
    /// Generic NACKs (RFC 4585 §6.2.1) the viewers sent since they joined.
    /// Viewers on header-only accounting (all but every `--sample-every`-th,
    /// from their first keyframe on) hand received RTP to no RTP stack, so
    /// they send none: this counts the sampled viewers' and the others'
    /// until their first keyframe.
    pub nacks: u64,
    /// PLIs (RFC 4585 §6.3.1) the viewers sent (same viewers as `nacks`).
    pub plis: u64,
    /// FIRs (RFC 5104 §4.3.1) the viewers sent (same viewers as `nacks`).
    pub firs: u64,
    /// The generator's own CPU time per wall second (1.0 = one core).
    pub generator_cpu_ratio: Option<f64>,
    /// The server's CPU time per wall second (with `--server-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_ratio: Option<f64>,
    /// The server's resident memory at the window's end (with `--server-pid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_bytes: Option<u64>,
    /// Measurement window length in seconds.
    pub duration_s: f64,
    /// Successful joins per second while the viewers were being added
    /// (first POST → last join settled; bounded by `--ramp`).
    pub joins_per_s: Option<f64>,
    /// Payload bit rate our publisher sends (with `--publish clip`).
    pub published_bitrate_bps: Option<f64>,
    /// Per-packet latency of the packet carrying the timestamp SEI.
    pub packet_latency_ms: Pct,
    /// POST sent → first video packet of a keyframe.
    pub ttff_first_packet_ms: Pct,
    /// POST sent → ICE + DTLS connected.
    pub connect_ms: Pct,
    /// Loss ratio of the worst viewer.
    pub worst_viewer_loss_ratio: f64,
    /// Viewers whose session ended during the run.
    pub viewers_dropped: usize,
    /// Frames measured for `latency_ms`.
    pub latency_samples: usize,
    /// Generator health: lateness of a 10 ms timer on the viewers' runtime
    /// (p99 above a few ms means the generator is saturated).
    pub generator_timer_lag_ms: Pct,
    /// PLI/FIR the server sent to our publisher since it started (ignored,
    /// like FFmpeg or OBS do; the server's GOP cache serves joiners).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher_keyframe_requests: Option<u64>,
    /// Server RSS growth per connected viewer since before the first join.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_rss_per_viewer_bytes: Option<f64>,
    /// Caveats.
    pub notes: Vec<String>,
}

/// Generator health bound: a 10 ms timer on the viewers' runtime firing
/// later than this at p99 means the generator, not the server, is the limit.
pub const GENERATOR_LAG_BOUND_MS: f64 = 20.0;

/// Inputs besides the viewers' stats.
pub struct Context {
    /// Viewers asked for.
    pub requested: usize,
    /// Window length, seconds.
    pub window_s: f64,
    /// Generator CPU ratio over the window.
    pub generator_cpu: Option<f64>,
    /// Server CPU ratio over the window.
    pub server_cpu: Option<f64>,
    /// Server RSS at the window's end.
    pub server_rss: Option<u64>,
    /// Server RSS before the first viewer joined.
    pub server_rss_base: Option<u64>,
    /// Publisher bit rate.
    pub published_bps: Option<f64>,
    /// Successful joins per second of the last ramp.
    pub join_rate: Option<f64>,
    /// Lateness of a 10 ms timer on the viewers' runtime, ms.
    pub timer_lag_ms: Vec<f64>,
    /// Our publisher: keyframe requests it got so far, and whether its
    /// session ended early.
    pub publisher: Option<(u64, bool)>,
}

/// Build a report from a snapshot of every viewer's stats.
pub fn build(stats: &[Stats], ctx: &Context) -> Report {
    let mut failures = BTreeMap::new();
    let (mut connected, mut dropped) = (0, 0);
    let (mut lost, mut expected, mut bytes) = (0u64, 0u64, 0u64);
    let mut worst = 0f64;
    let (mut lat, mut plat, mut ttff, mut ttfp, mut conn) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    for s in stats {
        match &s.state {
            State::Failed(why) => *failures.entry(why.clone()).or_insert(0) += 1,
            State::Closed => dropped += 1,
            State::Joining => *failures.entry("pending".to_string()).or_insert(0) += 1,
            State::Connected => {
                connected += 1;
                let (l, e) = (
                    s.video.lost() + s.audio.lost(),
                    s.video.expected() + s.audio.expected(),
                );
                lost += l;
                expected += e;
                bytes += s.video.bytes + s.audio.bytes;
                if e > 0 {
                    worst = worst.max(l as f64 / e as f64);
                }
                lat.extend(s.frame_latency_ms.iter().map(|&x| x as f64));
                plat.extend(s.packet_latency_ms.iter().map(|&x| x as f64));
            }
        }
        ttff.extend(s.first_frame.map(ms));
        ttfp.extend(s.first_key_packet.map(ms));
        conn.extend(s.connect.map(ms));
    }
    let mut notes = vec![
        "nacks/plis/firs: sent by viewers on full accounting (every --sample-every-th, and \
         the others until their first keyframe); header-only viewers send no RTCP feedback"
            .to_string(),
    ];
    if ctx.published_bps.is_none() {
        notes.push("latency: needs --publish clip (timestamp SEI)".into());
    }
    if ctx.publisher.is_some_and(|p| p.1) {
        notes.push("our publisher's session ended during the run".into());
    }
    if failures.contains_key(DTLS_TIMEOUT) {
        notes.push(DTLS_HINT.into());
    }
    let lag = Pct::of(&mut ctx.timer_lag_ms.clone());
    if lag.p99.is_some_and(|l| l > GENERATOR_LAG_BOUND_MS) {
        notes.push(format!(
            "generator saturated: its timer lag p99 > {GENERATOR_LAG_BOUND_MS} ms, \
             latency and loss are bounded by the load generator, not the server"
        ));
    }
    let latency_samples = lat.len();
    let feedback: sfu::client::Feedback = stats.iter().map(|s| s.feedback).sum();
    Report {
        viewers_requested: ctx.requested,
        viewers_connected: connected,
        setup_failures: failures,
        loss_ratio: if expected > 0 {
            lost as f64 / expected as f64
        } else {
            0.0
        },
        bitrate_bps: if connected > 0 && ctx.window_s > 0.0 {
            8.0 * bytes as f64 / connected as f64 / ctx.window_s
        } else {
            0.0
        },
        latency_ms: Pct::of(&mut lat),
        ttff_ms: Pct::of(&mut ttff),
        nacks: feedback.nacks,
        plis: feedback.plis,
        firs: feedback.firs,
        generator_cpu_ratio: ctx.generator_cpu,
        server_cpu_ratio: ctx.server_cpu,
        server_rss_bytes: ctx.server_rss,
        duration_s: ctx.window_s,
        joins_per_s: ctx.join_rate,
        published_bitrate_bps: ctx.published_bps,
        packet_latency_ms: Pct::of(&mut plat),
        ttff_first_packet_ms: Pct::of(&mut ttfp),
        connect_ms: Pct::of(&mut conn),
        worst_viewer_loss_ratio: worst,
        viewers_dropped: dropped,
        latency_samples,
        generator_timer_lag_ms: lag,
        publisher_keyframe_requests: ctx.publisher.map(|p| p.0),
        server_rss_per_viewer_bytes: match (ctx.server_rss, ctx.server_rss_base) {
            (Some(r), Some(b)) if connected > 0 => Some((r as f64 - b as f64) / connected as f64),
            _ => None,
        },
        notes,
    }
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

fn pct(p: &Pct) -> String {
    format!("{} / {} / {}", f(p.p50, 1), f(p.p95, 1), f(p.p99, 1))
}

/// The summary table of one report.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let fails = if r.setup_failures.is_empty() {
        "none".to_string()
    } else {
        r.setup_failures
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rows: Vec<(&str, String)> = vec![
        ("viewers requested", r.viewers_requested.to_string()),
        (
            "viewers connected",
            format!("{} (dropped: {})", r.viewers_connected, r.viewers_dropped),
        ),
        ("setup failures", fails),
        ("window", format!("{:.1} s", r.duration_s)),
        (
            "loss",
            format!(
                "{:.4} % (worst viewer {:.4} %)",
                r.loss_ratio * 100.0,
                r.worst_viewer_loss_ratio * 100.0
            ),
        ),
        (
            "bitrate per viewer",
            format!(
                "{:.0} kbit/s (published {} kbit/s)",
                r.bitrate_bps / 1e3,
                f(r.published_bitrate_bps.map(|b| b / 1e3), 0)
            ),
        ),
        (
            "frame latency p50/p95/p99",
            format!("{} ms ({} frames)", pct(&r.latency_ms), r.latency_samples),
        ),
        (
            "SEI packet latency p50/95/99",
            format!("{} ms", pct(&r.packet_latency_ms)),
        ),
        (
            "TTFF full keyframe p50/95/99",
            format!("{} ms", pct(&r.ttff_ms)),
        ),
        (
            "TTFF first key pkt p50/95/99",
            format!("{} ms", pct(&r.ttff_first_packet_ms)),
        ),
        ("connect p50/p95/p99", format!("{} ms", pct(&r.connect_ms))),
        ("joins", format!("{} per s", f(r.joins_per_s, 1))),
        (
            "NACKs / PLIs / FIRs sent",
            format!(
                "{} / {} / {} (by viewers on full accounting)",
                r.nacks, r.plis, r.firs
            ),
        ),
        (
            "generator CPU",
            format!(
                "{} % of one core",
                f(r.generator_cpu_ratio.map(|c| c * 100.0), 1)
            ),
        ),
        (
            "generator timer lag p50/95/99",
            format!("{} ms", pct(&r.generator_timer_lag_ms)),
        ),
    ];
    let mut rows = rows;
    if r.server_cpu_ratio.is_some() || r.server_rss_bytes.is_some() {
        rows.push((
            "server CPU",
            format!(
                "{} % of one core",
                f(r.server_cpu_ratio.map(|c| c * 100.0), 1)
            ),
        ));
        rows.push((
            "server RSS",
            format!(
                "{} MiB ({} KiB per viewer)",
                f(r.server_rss_bytes.map(|b| b as f64 / 1048576.0), 1),
                f(r.server_rss_per_viewer_bytes.map(|b| b / 1024.0), 1)
            ),
        ));
    }
    for (k, v) in rows {
        let _ = writeln!(s, "  {k:<30} {v}");
    }
    if r.setup_failures.contains_key(DTLS_TIMEOUT) {
        let _ = writeln!(s, "  note: {DTLS_HINT}");
    }
    s
}

/// Setup failure: ICE connected, DTLS did not within the join timeout.
pub const DTLS_TIMEOUT: &str = "dtls-timeout";

/// What a [`DTLS_TIMEOUT`] usually means.
const DTLS_HINT: &str = "dtls-timeout: ICE connected but the DTLS handshake did not finish; \
     a server whose DTLS certificate is RSA (GStreamer-based) needs --dtls openssl";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Pct::of(&mut v);
        assert_eq!((p.p50, p.p95, p.p99), (Some(50.0), Some(95.0), Some(99.0)));
        assert!(Pct::of(&mut []).p50.is_none());
        assert_eq!(Pct::of(&mut [3.0]).p99, Some(3.0));
    }
}
