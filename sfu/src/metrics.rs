//! Prometheus metrics (`GET /metrics`, text exposition format 0.0.4).
//!
//! Counters are plain atomics bumped by workers and the HTTP layer; gauges of
//! streams/publishers/viewers are computed from the registry at scrape time.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// All metrics of one server.
pub struct Metrics {
    registry: Registry,
    /// Sessions created, by role (`whip`, `whep`).
    pub sessions_created: IntCounterVec,
    /// POSTs refused, by HTTP status.
    pub sessions_refused: IntCounterVec,
    /// Sessions ended, by reason.
    pub sessions_ended: IntCounterVec,
    /// RTP packets received from publishers.
    pub packets_in: IntCounter,
    /// RTP payload bytes received from publishers.
    pub bytes_in: IntCounter,
    /// RTP packets written to viewers.
    pub packets_out: IntCounter,
    /// RTP payload bytes written to viewers.
    pub bytes_out: IntCounter,
    /// Keyframe requests sent to publishers, by kind (`pli`, `fir`).
    pub keyframe_requests: IntCounterVec,
    /// PLI/FIR received from viewers.
    pub viewer_keyframe_requests: IntCounter,
    /// GOP cache replays started.
    pub gop_replays: IntCounter,
    /// NACKs (RFC 4585 §6.2.1), by direction: `from_viewers` (received,
    /// answered by RTX) and `to_publishers` (sent for lost packets).
    pub nacks: IntCounterVec,
    /// Fraction of packets lost per RTCP report interval, by side: `viewer`
    /// (what viewers report about our sends) and `publisher` (what we lose
    /// of a publisher's sends).
    pub loss_ratio: HistogramVec,
    /// Simulcast layer switches of viewers (0 until simulcast forwarding
    /// is on).
    pub layer_switches: IntCounter,
    /// Viewer tracks whose resends got the RTX ratio cap (lossy viewers,
    /// [`crate::rtc_config::needs_rtx_cap`]).
    pub rtx_caps: IntCounter,
    /// POST → ICE+DTLS connected, seconds, by role.
    pub connect_seconds: HistogramVec,
    /// Viewer POST → first keyframe packet forwarded, seconds.
    pub ttff_seconds: Histogram,
    /// Fan-out delay, seconds: from the arrival of the newest publisher
    /// packet of a forwarded batch (a video frame's last packet, RFC 6184
    /// §5.1 marker) at the receive thread to the worker writing it to its
    /// `first` and to its `last` viewer (label `viewer`). One observation
    /// per batch and worker that has viewers of it. `last` growing towards
    /// the frame interval (33 ms at 30 fps) means the worker's core is full.
    pub fanout_seconds: HistogramVec,
    /// Streams with a publisher (set at scrape).
    pub streams: IntGauge,
    /// Viewers (set at scrape).
    pub viewers: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let cv = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let c = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let g = |name: &str, help: &str| {
            let c = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let hv = |name: &str, help: &str, buckets: Vec<f64>, label: &str| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), &[label])
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let buckets = vec![0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];
        let connect_seconds = hv(
            "sfu_connect_seconds",
            "POST to ICE+DTLS connected",
            buckets.clone(),
            "role",
        );
        let loss_ratio = hv(
            "sfu_loss_ratio",
            "Fraction of RTP packets lost per 1 s report, by side",
            vec![0.0, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0],
            "side",
        );
        let ttff_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "sfu_ttff_seconds",
                "Viewer POST to first keyframe packet forwarded",
            )
            .buckets(buckets),
        )
        .expect("valid metric");
        registry
            .register(Box::new(ttff_seconds.clone()))
            .expect("unique metric");
        let fanout_seconds = hv(
            "sfu_fanout_seconds",
            "Publisher packet arrival to written to the worker's first/last viewer",
            vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5,
            ],
            "viewer",
        );
        Metrics {
            sessions_created: cv("sfu_sessions_created_total", "Sessions created", "role"),
            sessions_refused: cv(
                "sfu_sessions_refused_total",
                "WHIP/WHEP POSTs refused",
                "status",
            ),
            sessions_ended: cv("sfu_sessions_ended_total", "Sessions ended", "reason"),
            packets_in: c("sfu_rtp_packets_in_total", "RTP packets from publishers"),
            bytes_in: c(
                "sfu_rtp_bytes_in_total",
                "RTP payload bytes from publishers",
            ),
            packets_out: c(
                "sfu_rtp_packets_out_total",
                "RTP packets written to viewers",
            ),
            bytes_out: c(
                "sfu_rtp_bytes_out_total",
                "RTP payload bytes written to viewers",
            ),
            keyframe_requests: cv(
                "sfu_keyframe_requests_total",
                "PLI/FIR sent to publishers",
                "kind",
            ),
            viewer_keyframe_requests: c(
                "sfu_viewer_keyframe_requests_total",
                "PLI/FIR received from viewers",
            ),
            gop_replays: c(
                "sfu_gop_replays_total",
                "GOP cache replays to joining viewers",
            ),
            nacks: cv("sfu_nacks_total", "NACKs by direction", "direction"),
            loss_ratio,
            layer_switches: c(
                "sfu_layer_switches_total",
                "Simulcast layer switches of viewers",
            ),
            rtx_caps: c(
                "sfu_rtx_ratio_caps_total",
                "Viewer tracks whose resends were capped at 15 % of their bytes (lossy viewers)",
            ),
            connect_seconds,
            ttff_seconds,
            fanout_seconds,
            streams: g("sfu_streams", "Streams with a publisher"),
            viewers: g("sfu_viewers", "Connected viewer sessions"),
            registry,
        }
    }

    /// Text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
