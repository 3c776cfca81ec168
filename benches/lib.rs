//! Shared helpers for the criterion benches: an in-memory str0m pair (the
//! SFU's viewer-side `Rtc` and a receiving client) and Chrome-like offers.
//!
//! Nothing here touches a socket: datagrams move between the two `Rtc`s in
//! memory, with loopback addresses only as labels.

use sfu::rtc_config::RtcRole;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// Address label of the SFU side.
pub const SFU_ADDR: &str = "127.0.0.1:40000";
/// Address label of the client side.
pub const CLIENT_ADDR: &str = "127.0.0.1:40001";

/// Install str0m's default crypto provider once.
pub fn init() {
    sfu::server::install_crypto();
}

/// Drain `rtc`'s output until `Timeout`: transmits are appended to `out`,
/// returns the timeout and whether `Event::Connected` was seen.
pub fn drain(rtc: &mut Rtc, out: &mut Vec<Transmit>) -> (Instant, bool) {
    let mut connected = false;
    for _ in 0..100_000 {
        match rtc.poll_output().expect("poll_output") {
            Output::Transmit(t) => out.push(t),
            Output::Timeout(t) => return (t, connected),
            Output::Event(Event::Connected) => connected = true,
            Output::Event(_) => {}
        }
    }
    panic!("poll_output never returned a timeout");
}

/// Hand datagrams to `rtc` as received at `now`.
pub fn deliver(rtc: &mut Rtc, now: Instant, datagrams: &mut Vec<Transmit>) {
    for t in datagrams.drain(..) {
        let Ok(contents) = t.contents[..].try_into() else {
            continue;
        };
        let _ = rtc.handle_input(Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source: t.source,
                destination: t.destination,
                contents,
            },
        ));
    }
}

/// The SFU's viewer-side `Rtc` (answers a `recvonly` WHEP offer, so its
/// m-lines are `sendonly`) connected in memory to a receiving client.
pub struct Pair {
    /// SFU side (sends).
    pub sfu: Rtc,
    /// Client side (receives).
    pub client: Rtc,
    /// Simulated clock.
    pub now: Instant,
    /// Video mid.
    pub mid: Mid,
    /// Video payload type on the SFU side.
    pub pt: Pt,
}

/// H.264 (+ RTX) and Opus on `cfg`.
fn with_codecs(mut cfg: RtcConfig) -> RtcConfig {
    cfg.codec_config()
        .add_h264(96.into(), Some(97.into()), true, 0x42e01f);
    cfg.enable_opus(true, false)
}

impl Pair {
    /// Build both sides, do offer/answer, and run ICE + DTLS to `Connected`
    /// (bounded; panics if the pair does not connect).
    pub fn connected() -> Pair {
        init();
        let mut now = Instant::now();
        let (sfu_addr, client_addr): (SocketAddr, SocketAddr) =
            (SFU_ADDR.parse().unwrap(), CLIENT_ADDR.parse().unwrap());
        let mut client = with_codecs(RtcConfig::new().set_rtp_mode(true).clear_codecs()).build(now);
        client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
        let mut api = client.sdp_api();
        let _audio = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        let mid = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
        let (offer, pending) = api.apply().expect("offer");
        // The server's own viewer configuration (sfu::rtc_config): what
        // the benchmarks measure is what `sfu` runs.
        let mut sfu = with_codecs(sfu::rtc_config::base(RtcRole::Viewer { bwe: false })).build(now);
        sfu.add_local_candidate(Candidate::host(sfu_addr, "udp").unwrap());
        let answer = sfu.sdp_api().accept_offer(offer).expect("answer");
        client
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("accept answer");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let (mut up_s, mut up_c) = (false, false);
        for _ in 0..10_000 {
            let (ts, cs) = drain(&mut sfu, &mut a);
            let (tc, cc) = drain(&mut client, &mut b);
            up_s |= cs;
            up_c |= cc;
            if up_s && up_c {
                break;
            }
            let sent = !a.is_empty() || !b.is_empty();
            deliver(&mut client, now, &mut a);
            deliver(&mut sfu, now, &mut b);
            if !sent {
                now = ts.min(tc).max(now + Duration::from_millis(1));
                let _ = sfu.handle_input(Input::Timeout(now));
                let _ = client.handle_input(Input::Timeout(now));
            }
        }
        assert!(up_s && up_c, "in-memory pair did not connect");
        if let Some(tx) = sfu.direct_api().stream_tx_by_mid(mid, None) {
            // A LAN viewer's resend history (its RTT is ≈ 0 here too).
            let window = sfu::rtc_config::RESEND_WINDOW_MIN;
            sfu::rtc_config::set_resend_history(tx, 2_000_000, window, false);
        }
        let pt = sfu
            .media(mid)
            .and_then(|m| m.remote_pts().first().copied())
            .expect("video pt");
        Pair {
            sfu,
            client,
            now,
            mid,
            pt,
        }
    }

    /// Move pending datagrams both ways once and let both sides handle
    /// timers up to `now` (keeps RTCP and ICE consent alive).
    pub fn pump(&mut self, from_sfu: &mut Vec<Transmit>) {
        deliver(&mut self.client, self.now, from_sfu);
        let _ = self.client.handle_input(Input::Timeout(self.now));
        let mut back = Vec::new();
        drain(&mut self.client, &mut back);
        deliver(&mut self.sfu, self.now, &mut back);
        let _ = self.sfu.handle_input(Input::Timeout(self.now));
        drain(&mut self.sfu, from_sfu);
        from_sfu.clear();
    }
}

/// A 1,160-byte H.264 FU-A payload: with the RTP header, str0m's header
/// extensions and the SRTP tag the datagram is about 1,200 bytes.
pub fn payload_1200() -> Arc<[u8]> {
    let mut p = vec![0x5a_u8; 1160];
    p[0] = 0x7c; // FU-A, NRI 3
    p[1] = 0x01; // middle fragment of a non-IDR slice
    Arc::from(p)
}

/// A WHIP offer as Chrome sends it (sendonly Opus + H.264), used to define
/// the publisher's tracks.
pub const CHROME_WHIP_OFFER: &str = include_str!("chrome_whip_offer.sdp");

/// A WHEP offer as Chrome sends it (recvonly, its full codec list).
pub const CHROME_WHEP_OFFER: &str = include_str!("chrome_whep_offer.sdp");

/// Check the offer parses (for benches' setup).
pub fn parse_offer(sdp: &str) -> SdpOffer {
    SdpOffer::from_sdp_string(sdp).expect("valid offer")
}
