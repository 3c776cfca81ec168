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

/// Oldest video packet a viewer keeps for resends.
pub const RTX_CACHE_AGE: Duration = Duration::from_millis(500);
/// Fewest video packets a viewer keeps for resends ([`RTX_CACHE_AGE`] at
/// 2 Mbit/s in ≈ 1,100-byte packets, rounded up).
pub const RTX_CACHE_MIN: usize = 128;
/// Most video packets a viewer keeps for resends.
pub const RTX_CACHE_MAX: usize = 512;
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

/// The shared DTLS configuration ([`crate::dtls`]), RTP mode (we forward
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
        .set_crypto_provider(crate::dtls::crypto_provider())
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

/// Video packets a viewer keeps for resends: [`RTX_CACHE_AGE`] worth at the
/// publication's incoming rate `bitrate_bps` (bit/s, all tracks; 0 when not
/// measured yet) in ≈ 1,100-byte packets, within
/// [`RTX_CACHE_MIN`]..=[`RTX_CACHE_MAX`].
pub fn rtx_cache_packets(bitrate_bps: u64) -> usize {
    let per_s = bitrate_bps as f64 / (8.0 * 1100.0);
    ((per_s * RTX_CACHE_AGE.as_secs_f64()).ceil() as usize).clamp(RTX_CACHE_MIN, RTX_CACHE_MAX)
}

/// Size a viewer video stream's resend history for NACKs (RFC 4585
/// §6.2.1) from the publication's rate `bitrate_bps` (bit/s): str0m keeps
/// 1,024 packets over 3 s by default, ≈ 480 B of bookkeeping each (the
/// payloads are shared); [`RTX_CACHE_AGE`] covers a NACK round trip and a
/// retry. `ratio_cap`: apply [`RTX_RATIO_CAP`]. str0m then records every
/// sent packet's size for 1 s (≈ 25 KiB per viewer at 2 Mbit/s), so the
/// server turns it on only for viewers that report [`RTX_CAP_LOSS`] or
/// more. Calling this again empties the stream's resend history once.
pub fn set_resend_history(tx: &mut StreamTx, bitrate_bps: u64, ratio_cap: bool) {
    tx.set_rtx_cache(
        rtx_cache_packets(bitrate_bps),
        RTX_CACHE_AGE,
        ratio_cap.then_some(RTX_RATIO_CAP),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resend_history_follows_the_stream_rate() {
        // Unknown rate and up to ~2 Mbit/s: the floor.
        assert_eq!(rtx_cache_packets(0), RTX_CACHE_MIN);
        assert_eq!(rtx_cache_packets(2_000_000), RTX_CACHE_MIN);
        // 6 Mbit/s (OBS): 6e6 / 8,800 bit per packet × 0.5 s = 341.
        assert_eq!(rtx_cache_packets(6_000_000), 341);
        // 50 Mbit/s: the ceiling.
        assert_eq!(rtx_cache_packets(50_000_000), RTX_CACHE_MAX);
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
