//! The str0m configuration of every session, by role: one place for what
//! the server negotiates and keeps per peer, shared by the HTTP handlers and
//! the benchmarks (so the benchmarks measure what the server runs).

use std::time::Duration;
use str0m::RtcConfig;
use str0m::rtp::{Extension, ExtensionMap, StreamTx};

/// Which side of the SFU a session's `Rtc` is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcRole {
    /// A WHIP publisher: the server receives, and sends TWCC feedback so
    /// the publisher's own bandwidth estimate works.
    Publisher,
    /// A WHEP viewer; `bwe`: a send-side bandwidth estimate (TWCC, GCC)
    /// picks its simulcast layer.
    Viewer {
        /// Estimate the viewer's bandwidth (simulcast publications).
        bwe: bool,
    },
}

/// Shortest resend history of a viewer video stream (Janus's default
/// `min_nack_queue`): enough for a NACK and a retry on a LAN.
pub const RESEND_WINDOW_MIN: Duration = Duration::from_millis(200);
/// Longest resend history of a viewer video stream: a resend later than
/// this would come after the viewer's jitter buffer gave the frame up.
pub const RESEND_WINDOW_MAX: Duration = Duration::from_secs(1);
/// Added to the smoothed round-trip time: the receiver's loss detection and
/// NACK delay, and the retry of a lost resend.
pub const RESEND_WINDOW_MARGIN: Duration = Duration::from_millis(100);
/// Fewest video packets a viewer keeps for resends: at 2 Mbit/s about
/// [`RESEND_WINDOW_MIN`] of packets (≈ 46) with a keyframe (≈ 22) sent at
/// once on top, so a burst does not push out packets a NACK may still ask
/// for.
pub const RTX_CACHE_MIN: usize = 64;
/// Most video packets a viewer keeps for resends.
pub const RTX_CACHE_MAX: usize = 1024;
/// Resends are dropped while they exceed this share of a stream's bytes
/// (str0m's RTX ratio cap: a lossy viewer link is not flooded further).
pub const RTX_RATIO_CAP: f32 = 0.15;
/// Loss from which a viewer track gets the [`RTX_RATIO_CAP`], as a
/// fraction (0..1) of the packets sent to it: receiver-reported loss
/// (fraction lost, RFC 3550 §6.4.1), or NACKs (RFC 4585 §6.2.1) per packet
/// sent over one stats interval. Below it resends are a few percent of the
/// stream at most and need no cap.
pub const RTX_CAP_LOSS: f32 = 0.05;

/// Whether a viewer track's receiver report (`loss`: fraction lost, 0..1)
/// and its new `nacks` for `packets` sent since the previous report call for
/// the [`RTX_RATIO_CAP`] ([`RTX_CAP_LOSS`] or more of either).
pub fn needs_rtx_cap(loss: Option<f32>, nacks: u64, packets: u64) -> bool {
    loss.is_some_and(|l| l >= RTX_CAP_LOSS)
        || (packets > 0 && nacks as f32 / packets as f32 >= RTX_CAP_LOSS)
}

/// The shared DTLS configuration ([`crate::dtls`]: dimpl, or OpenSSL for
/// OpenSSL peers, whose certificate may be RSA), RTP mode (we forward
/// packets, never frames), the stats interval, no
/// codecs yet (the caller adds the chosen ones), and per role:
/// - publishers and simulcast viewers: str0m's standard header extensions,
///   and for simulcast viewers the bandwidth estimate (initial 10 Mbit/s);
/// - other viewers: the same extensions without the two that only feed
///   bandwidth estimation, transport-wide sequence numbers (TWCC,
///   draft-holmer-rmcat-transport-wide-cc-extensions-01) and absolute send
///   time (REMB, draft-alvestrand-rmcat-remb): nothing on their path adapts
///   to an estimate, so the server neither numbers and records every packet
///   it sends them (≈ 90 KiB per viewer in str0m's send register), writes
///   those extensions, nor receives and parses their feedback.
pub fn base(role: RtcRole) -> RtcConfig {
    let mut cfg = RtcConfig::new()
        .set_crypto_provider(crate::dtls::crypto_provider(crate::dtls::Backend::Auto))
        .set_rtp_mode(true)
        .set_stats_interval(Some(crate::stats::STATS_INTERVAL))
        .clear_codecs();
    match role {
        RtcRole::Publisher => {}
        RtcRole::Viewer { bwe: true } => {
            cfg = cfg.enable_bwe(Some(str0m::bwe::Bitrate::mbps(10)));
        }
        RtcRole::Viewer { bwe: false } => {
            let mut exts = ExtensionMap::empty();
            for (id, e) in ExtensionMap::standard().iter() {
                if !matches!(
                    e,
                    Extension::TransportSequenceNumber | Extension::AbsoluteSendTime
                ) {
                    exts.set(id, e.clone());
                }
            }
            cfg = cfg.set_extension_map(exts);
        }
    }
    cfg
}

/// Most video packets a viewer keeps for resends over `window`: the packets
/// of `window` at the publication's incoming rate `bitrate_bps` (bit/s, all
/// tracks; 0 when not measured yet) in ≈ 1,100-byte packets, within
/// [`RTX_CACHE_MIN`]..=[`RTX_CACHE_MAX`]. Each costs 432 B in str0m
/// whether or not it is ever resent, and str0m grows the history to this
/// bound at the first burst (a keyframe, a GOP replay), so the bound, not
/// the window, is the memory; in a burst the oldest packets go before they
/// are `window` old.
pub fn rtx_cache_packets(bitrate_bps: u64, window: Duration) -> usize {
    let per_s = bitrate_bps as f64 / (8.0 * 1100.0);
    ((per_s * window.as_secs_f64()).ceil() as usize).clamp(RTX_CACHE_MIN, RTX_CACHE_MAX)
}

/// Size a viewer video stream's resend history for NACKs (RFC 4585
/// §6.2.1, resends per RFC 4588): packets up to `window` old (see
/// [`ResendWindow`]), at most [`rtx_cache_packets`] of them. str0m keeps
/// 1,024 packets over 3 s by default, 432 B of bookkeeping each (the
/// payloads are shared). `ratio_cap`: apply [`RTX_RATIO_CAP`]; str0m then
/// records every sent packet's size for 1 s (≈ 25 KiB per viewer at
/// 2 Mbit/s), so the server turns it on only for viewers that report
/// [`RTX_CAP_LOSS`] or more. Calling this again empties the stream's
/// resend history once.
pub fn set_resend_history(tx: &mut StreamTx, bitrate_bps: u64, window: Duration, ratio_cap: bool) {
    tx.set_rtx_cache(
        rtx_cache_packets(bitrate_bps, window),
        window,
        ratio_cap.then_some(RTX_RATIO_CAP),
    );
}

/// A stream that is never resent (audio: no NACK negotiated for it) keeps
/// no resend history; str0m would otherwise allocate one per stream.
pub fn no_resend_history(tx: &mut StreamTx) {
    tx.set_rtx_cache(0, Duration::ZERO, None);
}

/// How long a viewer video stream keeps packets for resends, from the
/// viewer's round-trip time as Janus sizes its NACK queue: smoothed RTT
/// (RFC 6298 §2, gain 1/8) plus [`RESEND_WINDOW_MARGIN`], within
/// [`RESEND_WINDOW_MIN`]..=[`RESEND_WINDOW_MAX`]; the minimum until the
/// first RTT, like Janus (a history sized for a far viewer and then cut
/// would leave its memory to the allocator, not give it back). A resize
/// empties str0m's history, so the window only moves when the target
/// differs from it by a quarter or more.
#[derive(Debug, Clone, Copy)]
pub struct ResendWindow {
    srtt: Option<Duration>,
    window: Duration,
}

impl Default for ResendWindow {
    fn default() -> Self {
        Self {
            srtt: None,
            window: RESEND_WINDOW_MIN,
        }
    }
}

impl ResendWindow {
    /// The window in force.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Feed a round-trip time from a receiver report (RFC 3550 §6.4.1);
    /// returns the new window when the stream's history should be resized.
    pub fn on_rtt(&mut self, rtt: Duration) -> Option<Duration> {
        let srtt = match self.srtt {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        };
        self.srtt = Some(srtt);
        let target = (srtt + RESEND_WINDOW_MARGIN).clamp(RESEND_WINDOW_MIN, RESEND_WINDOW_MAX);
        if target.abs_diff(self.window) * 4 < self.window {
            return None;
        }
        self.window = target;
        Some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_history_follows_the_stream_rate() {
        let w = Duration::from_millis(200);
        // Unknown rate and up to ~2.8 Mbit/s: the floor.
        assert_eq!(rtx_cache_packets(0, w), RTX_CACHE_MIN);
        assert_eq!(rtx_cache_packets(2_000_000, w), RTX_CACHE_MIN);
        // 6 Mbit/s (OBS): 6e6 / 8,800 bit per packet × 0.2 s = 137.
        assert_eq!(rtx_cache_packets(6_000_000, w), 137);
        // A far viewer (400 ms) of the 2 Mbit/s stream: 91.
        assert_eq!(rtx_cache_packets(2_000_000, 2 * w), 91);
        // 50 Mbit/s over 1 s: the ceiling.
        assert_eq!(
            rtx_cache_packets(50_000_000, RESEND_WINDOW_MAX),
            RTX_CACHE_MAX
        );
    }

    #[test]
    fn resend_window_follows_the_round_trip_time() {
        let ms = Duration::from_millis;
        let mut w = ResendWindow::default();
        assert_eq!(w.window(), RESEND_WINDOW_MIN);
        // A LAN viewer (5 ms): the floor stays, no resize.
        assert_eq!(w.on_rtt(ms(5)), None);
        // Jitter within a quarter of the window: no resize.
        assert_eq!(w.on_rtt(ms(60)), None);
        assert_eq!(w.window(), ms(200));
        // The path gets slow (400 ms): the smoothed RTT climbs to it, and
        // the window follows in a few steps of a quarter or more.
        let mut steps = Vec::new();
        for _ in 0..40 {
            steps.extend(w.on_rtt(ms(400)));
        }
        assert!(steps.len() >= 2 && steps.len() <= 6, "{steps:?}");
        assert!(steps.windows(2).all(|p| p[1] > p[0]), "{steps:?}");
        assert!(
            w.window() >= ms(400) && w.window() <= ms(500),
            "{:?}",
            w.window()
        );
        // A satellite link (1.5 s): the ceiling.
        let mut far = ResendWindow::default();
        assert_eq!(far.on_rtt(ms(1500)), Some(RESEND_WINDOW_MAX));
        assert_eq!(far.on_rtt(ms(1500)), None);
    }

    #[test]
    fn rtx_cap_only_for_lossy_viewers() {
        // A clean viewer: no cap.
        assert!(!needs_rtx_cap(Some(0.0), 0, 200));
        assert!(!needs_rtx_cap(None, 0, 0));
        // 1 % NACKed, 2 % reported lost: no cap.
        assert!(!needs_rtx_cap(Some(0.02), 2, 200));
        // 5 % reported lost (after repairs), or 10 of 200 packets NACKed.
        assert!(needs_rtx_cap(Some(0.05), 0, 200));
        assert!(needs_rtx_cap(Some(0.0), 10, 200));
        assert!(!needs_rtx_cap(Some(0.0), 9, 200));
        // NACKs in an interval without packets sent count as lossy only
        // through the receiver report.
        assert!(!needs_rtx_cap(None, 3, 0));
    }

    #[test]
    fn plain_viewers_negotiate_no_estimation_extensions() {
        let twcc = |role| {
            let mut c = base(role);
            c.extension_map()
                .id_of(Extension::TransportSequenceNumber)
                .is_some()
        };
        assert!(!twcc(RtcRole::Viewer { bwe: false }));
        assert!(twcc(RtcRole::Viewer { bwe: true }));
        assert!(twcc(RtcRole::Publisher));
        let mut c = base(RtcRole::Viewer { bwe: false });
        let exts = c.extension_map();
        assert!(exts.id_of(Extension::AbsoluteSendTime).is_none());
        assert!(exts.id_of(Extension::RtpMid).is_some());
        assert!(exts.id_of(Extension::AudioLevel).is_some());
    }
}
