//! The WHIP side: connect, re-packetize and send what the source produces,
//! reconnect with backoff, stop cleanly on a signal.

use crate::cli::{EXIT_REFUSED, EXIT_UNREACHABLE, Fail};
use crate::media::{KeyframeRequest, Media, SourceInfo, VideoCodec, VideoFrame, nal_type};
use crate::packetize::Packetizer;
use crate::status::{Mode, Stats, Status};
use sfu::client::http::Url;
use sfu::client::{
    ClientEvent, NoCommonCodec, Options, OutPacket, Refused, Session, Signalling, Track, sps,
};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use str0m::media::MediaKind;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// First reconnection delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Reconnection delay cap.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A session live this long resets the backoff.
pub const STABLE: Duration = Duration::from_secs(10);
/// Reconnection delay cap after sessions the server ended less than
/// [`STABLE`] after they went live: a server that keeps ending them (another
/// publisher on the same name under the server's replace policy, each taking
/// the name back when it reconnects) is asked less and less often.
pub const BACKOFF_MAX_SHORT: Duration = Duration::from_secs(60);
/// Short sessions in a row from which the log says why that may be.
const SHORT_SESSIONS_HINT: u32 = 3;
/// Time for the POST to be answered.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for ICE + DTLS after the answer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Publisher settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// WHIP endpoint.
    pub url: String,
    /// Bearer token.
    pub token: Option<String>,
    /// Accept any TLS certificate (`--insecure`).
    pub insecure: bool,
    /// Give up (exit 5) after being down this long; zero = never.
    pub give_up_after: Duration,
    /// Status display.
    pub status: Mode,
    /// `--ice-server` values: `stun:` servers give a server-reflexive
    /// candidate before each offer (`turn:` is not supported yet).
    pub ice_servers: Vec<sfu::client::stun::IceServer>,
    /// `--relay-only`: offer the TURN relay candidate only.
    pub relay_only: bool,
    /// `--conflict-wait`: how long from the start a `409` (the name has a
    /// publisher) is asked again before it ends the run (exit 4).
    pub conflict_wait: Duration,
}

/// Caches SPS/PPS by id and puts them in front of every IDR that lacks them.
#[derive(Debug, Default)]
pub struct ParamCache {
    sps: Vec<(u32, Vec<u8>)>,
    pps: Vec<(u32, Vec<u8>)>,
    /// `profile-level-id` of the latest SPS.
    pub profile: Option<u32>,
    /// How many keyframes got parameter sets added.
    pub injected: u64,
}

impl ParamCache {
    /// Remember an SPS or PPS (other NAL units are ignored).
    pub fn learn(&mut self, nal: &[u8]) {
        match nal_type(nal) {
            7 => {
                if let Some(s) = sps::parse_sps(nal) {
                    let p = s.profile_level_id();
                    if self.profile.is_some_and(|old| old != p) {
                        info!("H.264 profile-level-id changed to {p:06x}");
                    }
                    self.profile = Some(p);
                    put(&mut self.sps, s.id, nal);
                }
            }
            8 => {
                if let Some(id) = sps::pps_id(nal) {
                    put(&mut self.pps, id, nal);
                }
            }
            _ => {}
        }
    }

    /// Learn from a frame and, if it is a keyframe, add the cached SPS/PPS it
    /// lacks (SPS first, PPS after the last SPS).
    pub fn prepare(&mut self, f: &mut VideoFrame) {
        for n in &f.nals {
            self.learn(n);
        }
        if !f.keyframe {
            return;
        }
        let has = |t: u8| f.nals.iter().any(|n| nal_type(n) == t);
        let (has_sps, has_pps) = (has(7), has(8));
        let mut added = false;
        if !has_sps && !self.sps.is_empty() {
            for (i, (_, s)) in self.sps.iter().enumerate() {
                f.nals.insert(i, s.clone());
            }
            added = true;
        }
        if !has_pps && !self.pps.is_empty() {
            let at = f
                .nals
                .iter()
                .rposition(|n| nal_type(n) == 7)
                .map_or(0, |i| i + 1);
            for (i, (_, p)) in self.pps.iter().enumerate() {
                f.nals.insert(at + i, p.clone());
            }
            added = true;
        }
        self.injected += u64::from(added);
    }
}

fn put(v: &mut Vec<(u32, Vec<u8>)>, id: u32, nal: &[u8]) {
    match v.iter_mut().find(|(i, _)| *i == id) {
        Some(e) => {
            if e.1 != nal {
                e.1 = nal.to_vec();
            }
        }
        None => v.push((id, nal.to_vec())),
    }
}

/// Reconnection delays: exponential from [`BACKOFF_MIN`] to [`BACKOFF_MAX`]
/// (to [`BACKOFF_MAX_SHORT`] after a short session, see
/// [`Backoff::next_delay_after_short_session`]), ±20 % jitter.
#[derive(Debug, Default)]
pub struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// The next delay (and count the attempt).
    pub fn next_delay(&mut self) -> Duration {
        self.delay_capped(BACKOFF_MAX)
    }

    /// The next delay after a session the server ended before it was
    /// [`STABLE`]: the same doubling, capped at [`BACKOFF_MAX_SHORT`].
    pub fn next_delay_after_short_session(&mut self) -> Duration {
        self.delay_capped(BACKOFF_MAX_SHORT)
    }

    fn delay_capped(&mut self, cap: Duration) -> Duration {
        let base = BACKOFF_MIN
            .saturating_mul(1u32 << self.attempts.min(10))
            .min(cap);
        self.attempts = self.attempts.saturating_add(1);
        let mut b = [0u8; 2];
        let _ = getrandom::fill(&mut b);
        let jitter = 0.8 + 0.4 * f64::from(u16::from_be_bytes(b)) / f64::from(u16::MAX);
        base.mul_f64(jitter)
    }

    /// Start again from the minimum (after a stable session).
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// What to do after a failed POST.
#[derive(Debug)]
enum Outcome {
    Retry { why: String, at_least: Duration },
    Fatal(Fail),
}

/// `401 Unauthorized: <first line of the body>`.
pub fn describe_refusal(r: &Refused) -> String {
    let reason = http::StatusCode::from_u16(r.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut s = format!("{} {reason}", r.status).trim_end().to_string();
    if let Some(line) = r.body.lines().map(str::trim).find(|l| !l.is_empty()) {
        let line: String = line.chars().take(200).collect();
        s += &format!(": {line}");
    }
    s
}

/// The message for a server whose TLS certificate failed verification, or
/// `None` when `e` is something else (a refused connection, a reset, a
/// timeout: those may pass, so they are retried).
///
/// A certificate this client does not trust stays untrusted however often
/// it is presented, so retrying cannot help. `sfu::client` reports rustls's
/// error as text ("TLS with HOST:PORT failed: invalid peer certificate:
/// REASON"), hence the match on rustls's wording.
pub fn untrusted_certificate(e: &anyhow::Error) -> Option<String> {
    let text = format!("{e:#}");
    let at = text.find("invalid peer certificate")?;
    let reason = text[at..].to_ascii_lowercase().replace([' ', '_'], "");
    let why = if reason.contains("causedasendentity") {
        "the server presents a CA certificate as its own (what `openssl req -x509` makes: a self-signed test certificate)"
    } else if reason.contains("unknownissuer") {
        "it is not signed by a certificate authority this client trusts (a self-signed certificate?)"
    } else if reason.contains("notvalidforname") {
        "it is not issued for the host name in --url"
    } else if reason.contains("expired") {
        "it has expired"
    } else if reason.contains("notvalidyet") {
        "it is not valid yet (check this machine's clock)"
    } else if reason.contains("revoked") {
        "it has been revoked"
    } else {
        "it failed verification"
    };
    Some(format!(
        "the server's TLS certificate is not trusted: {why}. Retrying cannot fix this: \
         add --insecure to accept a self-signed test certificate, or give the server a \
         certificate from a trusted authority ({text})"
    ))
}

/// What to do after a failed POST. A `409` is waited for when our own
/// previous session may still hold the name: after one of this run
/// (`had_session`), or while `conflict_wait` (`--conflict-wait`) lasts from
/// the start, for a previous run that ended without DELETE (killed, crashed,
/// its machine lost power), which the server only reaps when ICE consent
/// fails (≈ 30 s).
fn classify(e: &anyhow::Error, had_session: bool, conflict_wait: bool) -> Outcome {
    if let Some(msg) = untrusted_certificate(e) {
        return Outcome::Fatal(Fail {
            code: EXIT_REFUSED,
            msg,
        });
    }
    if let Some(n) = e.downcast_ref::<NoCommonCodec>() {
        // The same offer gets the same answer: retrying cannot help.
        return Outcome::Fatal(Fail {
            code: EXIT_REFUSED,
            msg: n.to_string(),
        });
    }
    let Some(r) = e.downcast_ref::<Refused>() else {
        return Outcome::Retry {
            why: format!("{e:#}"),
            at_least: Duration::ZERO,
        };
    };
    let what = describe_refusal(r);
    let at_least = Duration::from_secs(r.retry_after.unwrap_or(0).min(60));
    match r.status {
        // Our previous session may still hold the name until the server
        // notices it is gone: only then is 409 worth waiting for.
        409 if had_session => Outcome::Retry {
            why: format!("server answered {what}"),
            at_least,
        },
        409 if conflict_wait => Outcome::Retry {
            why: format!(
                "server answered {what} (a previous run that did not stop cleanly holds the name \
                 until the server notices it is gone; waiting for it, see --conflict-wait)"
            ),
            at_least,
        },
        429 | 500..=599 => Outcome::Retry {
            why: format!("server answered {what}"),
            at_least,
        },
        _ => Outcome::Fatal(Fail {
            code: EXIT_REFUSED,
            msg: format!("server refused: {what}"),
        }),
    }
}

/// The local address to offer: the one routing to the server.
async fn local_ip_for(authority: &str) -> IpAddr {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let Ok(mut addrs) = tokio::net::lookup_host(authority).await else {
        return lo;
    };
    let Some(server) = addrs.next() else {
        return lo;
    };
    if server.ip().is_loopback() {
        return server.ip();
    }
    let any: std::net::SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    std::net::UdpSocket::bind(any)
        .and_then(|s| {
            s.connect(server)?;
            s.local_addr()
        })
        .map_or(lo, |a| a.ip())
}

type Posting = Pin<Box<dyn Future<Output = anyhow::Result<Session>> + Send>>;

fn post(
    url: String,
    token: Option<String>,
    insecure: bool,
    tracks: Vec<Track>,
    ice_servers: Vec<sfu::client::stun::IceServer>,
    relay_only: bool,
) -> Posting {
    Box::pin(async move {
        let authority = Url::parse(&url)?.authority;
        // (`..Options::default()` keeps this building when fields are added.)
        #[allow(clippy::needless_update)]
        let opts = Options {
            bind_ip: local_ip_for(&authority).await,
            token,
            tracks,
            insecure,
            ice_servers,
            relay_only,
            link_ice_servers: true,
            // OpenSSL takes RSA server certificates too (GStreamer-based
            // servers), which dimpl refuses; one session, so its extra
            // memory does not matter.
            dtls: sfu::dtls::Backend::Openssl,
            ..Options::default()
        };
        let sig = Signalling {
            headers: vec![(
                "user-agent".into(),
                concat!("whip-ingest/", env!("CARGO_PKG_VERSION")).into(),
            )],
            ..Signalling::default()
        };
        match tokio::time::timeout(POST_TIMEOUT, Session::publish_with(&url, opts, sig)).await {
            Ok(r) => r,
            Err(_) => anyhow::bail!("no answer from {authority} within {POST_TIMEOUT:?}"),
        }
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Waiting for the stream's SPS (the offer needs its profile).
    WaitStream,
    Backoff(Instant),
    Posting,
    Handshake(Instant),
    Live(Instant),
}

/// DELETE a session in the background (best effort).
fn discard(s: Session) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(3), s.close()).await;
    });
}

async fn next_event(s: &mut Option<Session>) -> Option<ClientEvent> {
    match s {
        Some(s) => s.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn poll_posting(p: &mut Option<Posting>) -> anyhow::Result<Session> {
    match p {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// The state of one run.
struct Run {
    cfg: Config,
    info: SourceInfo,
    go: watch::Sender<bool>,
    keyframes: KeyframeRequest,
    phase: Phase,
    session: Option<Session>,
    posting: Option<Posting>,
    backoff: Backoff,
    params: ParamCache,
    packetizer: Packetizer,
    need_keyframe: bool,
    had_session: bool,
    had_live: bool,
    /// When the run began (for `--conflict-wait`).
    started: Instant,
    /// Sessions in a row the server ended before they were [`STABLE`].
    short_sessions: u32,
    down_since: Option<Instant>,
    last_error: String,
    stats: Stats,
    kf_log: Option<Instant>,
}

impl Run {
    fn tracks(&self) -> Option<Vec<Track>> {
        let mut t = Vec::new();
        if let Some(a) = &self.info.audio {
            t.push(*a);
        }
        if self.info.video {
            t.push(match self.info.codec {
                VideoCodec::H264 => Track::H264(self.info.profile.or(self.params.profile)?),
                VideoCodec::H265 => Track::H265,
                VideoCodec::Vp8 => Track::Vp8,
                VideoCodec::Vp9 => Track::Vp9,
                VideoCodec::Av1 => Track::Av1,
            });
        }
        Some(t)
    }

    fn start_posting(&mut self) {
        match self.tracks() {
            Some(tracks) => {
                debug!(url = %self.cfg.url, "POST offer");
                self.posting = Some(post(
                    self.cfg.url.clone(),
                    self.cfg.token.clone(),
                    self.cfg.insecure,
                    tracks,
                    self.cfg.ice_servers.clone(),
                    self.cfg.relay_only,
                ));
                self.phase = Phase::Posting;
            }
            None => self.phase = Phase::WaitStream,
        }
    }

    /// Schedule the next attempt; `Err` when it is time to give up.
    fn retry(&mut self, why: String, at_least: Duration) -> Result<(), Fail> {
        let now = Instant::now();
        let mut short = false;
        if let Phase::Live(since) = self.phase {
            if now - since >= STABLE {
                self.backoff.reset();
                self.short_sessions = 0;
            } else {
                short = true;
                self.short_sessions += 1;
                if self.short_sessions >= SHORT_SESSIONS_HINT {
                    warn!(
                        "the server ended {} sessions in a row less than {} s after they went live: \
                         if another publisher uses this stream name on a server that lets a new \
                         publisher replace the live one, the two take turns; give each its own name",
                        self.short_sessions,
                        STABLE.as_secs()
                    );
                }
            }
        }
        let down = *self.down_since.get_or_insert(now);
        if !self.cfg.give_up_after.is_zero() && now - down >= self.cfg.give_up_after {
            return Err(Fail {
                code: EXIT_UNREACHABLE,
                msg: format!(
                    "server unreachable for {:.0} s, giving up: {why}",
                    (now - down).as_secs_f64()
                ),
            });
        }
        let delay = if short {
            self.backoff.next_delay_after_short_session()
        } else {
            self.backoff.next_delay()
        }
        .max(at_least);
        warn!("{why}; retrying in {:.1} s", delay.as_secs_f64());
        self.last_error = why;
        self.phase = Phase::Backoff(now + delay);
        Ok(())
    }

    fn state_label(&self) -> String {
        match self.phase {
            Phase::WaitStream => "waiting for the stream".into(),
            Phase::Backoff(at) => format!(
                "retrying in {:.1} s",
                at.saturating_duration_since(Instant::now()).as_secs_f64()
            ),
            Phase::Posting => "connecting".into(),
            Phase::Handshake(_) => "connecting (ICE/DTLS)".into(),
            Phase::Live(_) if self.need_keyframe => "live, waiting for a keyframe".into(),
            Phase::Live(_) => "live".into(),
        }
    }

    fn send_video(&mut self, mut f: VideoFrame) {
        if self.info.codec == VideoCodec::H264 {
            self.params.prepare(&mut f);
        }
        if self.phase == Phase::WaitStream && self.tracks().is_some() {
            self.start_posting();
        }
        let (Phase::Live(_), Some(s)) = (self.phase, &self.session) else {
            self.stats.dropped += 1;
            return;
        };
        if self.need_keyframe && !f.keyframe {
            self.stats.dropped += 1;
            return;
        }
        if self.need_keyframe {
            debug!("first keyframe: video flows");
        }
        self.need_keyframe = false;
        let pk = self.packetizer.packetize(&f);
        let n = pk.len();
        for (k, p) in pk.into_iter().enumerate() {
            self.stats.bytes += p.len() as u64;
            s.send(OutPacket {
                kind: MediaKind::Video,
                ts: f.ts,
                marker: k + 1 == n,
                payload: Arc::from(p),
            });
        }
        self.stats.frames += 1;
        self.stats.keyframes += u64::from(f.keyframe);
    }

    fn send_audio(&mut self, ts: u32, marker: bool, payload: Arc<[u8]>) {
        let (Phase::Live(_), Some(s)) = (self.phase, &self.session) else {
            return;
        };
        self.stats.bytes += payload.len() as u64;
        self.stats.audio_packets += 1;
        s.send(OutPacket {
            kind: MediaKind::Audio,
            ts,
            marker,
            payload,
        });
    }

    /// DELETE the session (if any, also one being created) before exiting.
    async fn stop(&mut self) {
        if let Some(p) = self.posting.take()
            && let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), p).await
        {
            self.session = Some(s);
        }
        if let Some(s) = self.session.take() {
            let loc = s.location.path.clone();
            match tokio::time::timeout(Duration::from_secs(3), s.close()).await {
                Ok(Ok(st)) => info!("session {loc} deleted ({st})"),
                Ok(Err(e)) => warn!("DELETE {loc} failed: {e:#}"),
                Err(_) => warn!("DELETE {loc}: no answer within 3 s"),
            }
        }
    }
}

/// Publish what `rx` delivers until a signal, the end of the source or a
/// fatal error.
pub async fn run(
    cfg: Config,
    info: SourceInfo,
    mut rx: mpsc::Receiver<Media>,
    go: watch::Sender<bool>,
    keyframes: KeyframeRequest,
) -> Result<(), Fail> {
    let mut term = signal(SignalKind::terminate()).map_err(|e| Fail::usage(e.to_string()))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Fail::usage(e.to_string()))?;
    let mut params = ParamCache::default();
    for p in &info.params {
        params.learn(p);
    }
    info!("source {}", info.describe);
    let mut status = Status::new(cfg.status);
    let mut tick = tokio::time::interval(cfg.status.interval());
    tick.tick().await;
    let packetizer = Packetizer::new(info.codec);
    let mut r = Run {
        cfg,
        info,
        go,
        keyframes,
        phase: Phase::WaitStream,
        session: None,
        posting: None,
        backoff: Backoff::default(),
        params,
        packetizer,
        need_keyframe: true,
        had_session: false,
        had_live: false,
        started: Instant::now(),
        short_sessions: 0,
        down_since: None,
        last_error: String::new(),
        stats: Stats::default(),
        kf_log: None,
    };
    r.start_posting();
    if r.phase == Phase::WaitStream {
        info!("waiting for an H.264 SPS to learn the stream's profile");
    }
    loop {
        let timer = match r.phase {
            Phase::Backoff(t) | Phase::Handshake(t) => t,
            _ => Instant::now() + Duration::from_secs(3600),
        };
        tokio::select! {
            _ = term.recv() => {
                info!("SIGTERM: stopping");
                r.stop().await;
                return Ok(());
            }
            _ = int.recv() => {
                info!("interrupted: stopping");
                r.stop().await;
                return Ok(());
            }
            m = rx.recv() => match m {
                Some(Media::Video(f)) => r.send_video(f),
                Some(Media::Audio { ts, marker, payload }) => r.send_audio(ts, marker, payload),
                Some(Media::Stalled(msg)) => {
                    r.stats.stalls += 1;
                    warn!("{msg}");
                }
                Some(Media::Resumed) => info!("source is flowing again"),
                Some(Media::End) | None => {
                    info!("end of source");
                    // Let the last packets leave before the DELETE.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    r.stop().await;
                    return Ok(());
                }
                Some(Media::Failed(msg)) => {
                    r.stop().await;
                    return Err(Fail::source(msg));
                }
            },
            res = poll_posting(&mut r.posting) => {
                r.posting = None;
                match res {
                    Ok(s) => {
                        debug!(location = %s.location.path, "session created");
                        for (k, v) in &s.response.headers {
                            if k == "link" {
                                debug!("server offers ICE server {v}");
                            }
                        }
                        r.had_session = true;
                        r.session = Some(s);
                        r.phase = Phase::Handshake(Instant::now() + HANDSHAKE_TIMEOUT);
                    }
                    Err(e) => match classify(
                        &e,
                        r.had_session,
                        r.started.elapsed() < r.cfg.conflict_wait,
                    ) {
                        Outcome::Fatal(f) => {
                            r.stop().await;
                            return Err(f);
                        }
                        Outcome::Retry { why, at_least } => r.retry(why, at_least)?,
                    },
                }
            }
            ev = next_event(&mut r.session) => match ev {
                Some(ClientEvent::Connected) => {
                    let loc = r.session.as_ref().map(|s| s.location.path.clone()).unwrap_or_default();
                    if r.had_live {
                        r.stats.reconnects += 1;
                        info!("reconnected: {loc}");
                    } else {
                        info!("publishing to {} (session {loc})", r.cfg.url);
                    }
                    r.had_live = true;
                    r.down_since = None;
                    r.need_keyframe = r.info.video;
                    if r.info.makes_keyframes {
                        // A new session (or server) needs an IDR now, not
                        // at the end of the GOP.
                        r.keyframes.request();
                    }
                    r.phase = Phase::Live(Instant::now());
                    let _ = r.go.send(true);
                }
                Some(ClientEvent::KeyframeRequest) => {
                    r.stats.keyframe_requests += 1;
                    let now = Instant::now();
                    if r.info.makes_keyframes {
                        r.keyframes.request();
                    } else if r.kf_log.is_none_or(|t| now - t >= Duration::from_secs(10)) {
                        r.kf_log = Some(now);
                        debug!(
                            requests = r.stats.keyframe_requests,
                            "the server asked for a keyframe; this source cannot make one (next IDR comes from the source)"
                        );
                    }
                }
                Some(ClientEvent::Rtp(_)) => {}
                Some(ClientEvent::Closed(why)) => {
                    if let Some(s) = r.session.take() {
                        discard(s);
                    }
                    r.retry(format!("WHIP session ended ({why})"), Duration::ZERO)?;
                }
                None => {
                    if let Some(s) = r.session.take() {
                        discard(s);
                    }
                    r.retry("WHIP session task ended".into(), Duration::ZERO)?;
                }
            },
            _ = tokio::time::sleep_until(timer) => match r.phase {
                Phase::Backoff(_) => r.start_posting(),
                Phase::Handshake(_) => {
                    if let Some(s) = r.session.take() {
                        discard(s);
                    }
                    r.retry(format!("ICE/DTLS not connected within {HANDSHAKE_TIMEOUT:?}"), Duration::ZERO)?;
                }
                _ => {}
            },
            _ = tick.tick() => status.show(&r.state_label(), &r.stats),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injects_parameter_sets_before_idr() {
        let sps = vec![
            0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc8, 0xf1, 0x83, 0x24, 0x80,
        ];
        let pps = vec![0x68, 0xcb, 0x83, 0xcb, 0x20];
        let mut c = ParamCache::default();
        let mut first = VideoFrame::new(0, vec![sps.clone(), pps.clone(), vec![0x65, 0x88]]);
        c.prepare(&mut first);
        assert_eq!(first.nals.len(), 3);
        assert_eq!(c.profile, Some(0x42c01f));
        let mut p = VideoFrame::new(3000, vec![vec![0x41, 0x9a]]);
        c.prepare(&mut p);
        assert_eq!(p.nals.len(), 1, "P frames untouched");
        let mut idr = VideoFrame::new(6000, vec![vec![0x06, 5], vec![0x65, 0x88]]);
        c.prepare(&mut idr);
        assert_eq!(idr.nals[0], sps);
        assert_eq!(idr.nals[1], pps);
        assert_eq!(idr.nals.len(), 4);
        let mut only_sps = VideoFrame::new(9000, vec![sps.clone(), vec![0x65, 0x88]]);
        c.prepare(&mut only_sps);
        assert_eq!(only_sps.nals, vec![sps, pps, vec![0x65, 0x88]]);
        assert_eq!(c.injected, 2);
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::default();
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(400) && d[0] <= Duration::from_millis(600));
        assert!(d[1] >= Duration::from_millis(800) && d[1] <= Duration::from_millis(1200));
        assert!(d[7] >= Duration::from_secs(8) && d[7] <= Duration::from_secs(12));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(600));
    }

    #[test]
    fn short_sessions_back_off_to_a_longer_cap() {
        let mut b = Backoff::default();
        let d: Vec<Duration> = (0..9).map(|_| b.next_delay_after_short_session()).collect();
        assert!(d[4] >= Duration::from_millis(6400) && d[4] <= Duration::from_millis(9600));
        assert!(d[6] >= Duration::from_millis(25_600) && d[6] <= Duration::from_millis(38_400));
        assert!(d[8] >= Duration::from_secs(48) && d[8] <= Duration::from_secs(72));
        // An ordinary failure after them is capped at BACKOFF_MAX again.
        assert!(b.next_delay() <= Duration::from_secs(12));
    }

    #[test]
    fn refusals() {
        let r = |status, body: &str| {
            anyhow::Error::from(Refused {
                status,
                body: body.into(),
                retry_after: None,
            })
        };
        let Outcome::Fatal(f) = classify(&r(401, "unauthorized\nmore"), false, false) else {
            panic!()
        };
        assert_eq!(f.code, 4);
        assert_eq!(f.msg, "server refused: 401 Unauthorized: unauthorized");
        assert!(matches!(
            classify(&r(409, "x"), false, false),
            Outcome::Fatal(_)
        ));
        let Outcome::Retry { why, .. } = classify(&r(409, "x"), false, true) else {
            panic!("a 409 within --conflict-wait is retried")
        };
        assert!(why.contains("did not stop cleanly"), "{why}");
        assert!(matches!(
            classify(&r(409, "x"), true, false),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(&r(503, ""), false, false),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(&r(429, ""), false, false),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(&anyhow::anyhow!("cannot connect"), false, false),
            Outcome::Retry { .. }
        ));
    }

    /// What `sfu::client::http` reports for a TLS handshake that failed
    /// with `err` (it formats rustls's error into its message).
    fn tls_failure(err: rustls::Error) -> anyhow::Error {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, err);
        anyhow::anyhow!("TLS with localhost:18080 failed: {io}")
    }

    #[test]
    fn untrusted_certificates_are_fatal_with_a_hint() {
        use rustls::{CertificateError, OtherError};
        // webpki's error for an `openssl req -x509` certificate (CA:TRUE),
        // which rustls shows by its Debug name.
        #[derive(Debug)]
        struct CaUsedAsEndEntity;
        impl std::fmt::Display for CaUsedAsEndEntity {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("CaUsedAsEndEntity")
            }
        }
        impl std::error::Error for CaUsedAsEndEntity {}
        let self_signed_ca = rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(CaUsedAsEndEntity)),
        ));
        for (err, says) in [
            (self_signed_ca, "CA certificate as its own"),
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "not signed by a certificate authority",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                "not issued for the host name",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "expired",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                "failed verification",
            ),
        ] {
            let e = tls_failure(err);
            let Outcome::Fatal(f) = classify(&e, true, false) else {
                panic!("{e:#} must not be retried")
            };
            assert_eq!(f.code, EXIT_REFUSED, "{e:#}");
            assert!(f.msg.contains(says), "{says}: {}", f.msg);
            assert!(f.msg.contains("--insecure"), "{}", f.msg);
            assert!(
                f.msg.contains("invalid peer certificate"),
                "the raw cause: {}",
                f.msg
            );
        }
        // The exact text QA saw (rustls 0.23 + webpki).
        let qa = anyhow::anyhow!(
            "TLS with localhost:18080 failed: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))"
        );
        assert!(matches!(classify(&qa, false, false), Outcome::Fatal(_)));
    }

    #[test]
    fn other_tls_and_connect_errors_are_retried() {
        for e in [
            tls_failure(rustls::Error::AlertReceived(
                rustls::AlertDescription::InternalError,
            )),
            tls_failure(rustls::Error::DecryptError),
            anyhow::anyhow!("TLS with localhost:18080 failed: connection reset by peer"),
            anyhow::anyhow!("cannot connect to localhost:18080: Connection refused (os error 111)"),
            anyhow::anyhow!("no answer from localhost:18080 within 10s"),
        ] {
            assert!(
                matches!(classify(&e, false, false), Outcome::Retry { .. }),
                "{e:#} is retried"
            );
            assert!(untrusted_certificate(&e).is_none());
        }
    }
}
