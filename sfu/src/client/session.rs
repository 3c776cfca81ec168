//! One WHIP or WHEP client session: offer/answer over HTTP, then a Tokio task
//! that drives the str0m `Rtc` over one UDP socket.

use super::http::{HttpResponse, Url, request};
use super::stun::{self, IceServer};
use super::turn::{Turn, TurnInput};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

/// Which media a session sends or receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// H.264 video, PT 96 (RTX 97), packetization-mode 1, the given
    /// `profile-level-id` (e.g. `0x42e01f` Constrained Baseline 3.1).
    H264(u32),
    /// VP8 video (RFC 7741).
    Vp8,
    /// VP9 video (RFC 9628), profile 0 (profile 2 also offered).
    Vp9,
    /// AV1 video (AOM "RTP Payload Format for AV1").
    Av1,
    /// H.265 video (RFC 7798).
    H265,
    /// Opus audio, 48 kHz stereo, PT 111.
    Opus,
    /// G.711 µ-law audio, 8 kHz, PT 0.
    Pcmu,
    /// G.711 A-law audio, 8 kHz, PT 8.
    Pcma,
}

/// Session options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Local IP to bind the UDP socket to and offer as host candidate.
    pub bind_ip: IpAddr,
    /// Bearer token (RFC 6750) for the POST and DELETE.
    pub token: Option<String>,
    /// Tracks to publish (WHIP) or to receive (WHEP; codecs offered).
    pub tracks: Vec<Track>,
    /// Accept any TLS certificate for `https://` endpoints (`--insecure`,
    /// self-signed test servers).
    pub insecure: bool,
    /// STUN/TURN servers to use besides those of the answer's `Link` headers
    /// (RFC 9725 §4.6). Each `stun:` server is asked for this session's
    /// server-reflexive address before the offer (RFC 8489 Binding, up to
    /// [`GATHER_TIMEOUT`]); the first `turn:` server (UDP, with username
    /// and credential) gets an allocation (RFC 8656) whose relayed address
    /// is offered as a relay candidate.
    pub ice_servers: Vec<IceServer>,
    /// Offer and use only the TURN relay candidate (no host or
    /// server-reflexive ones), like WebRTC's `iceTransportPolicy: "relay"`.
    /// Without a working TURN server the session cannot connect.
    pub relay_only: bool,
    /// Also use the STUN/TURN servers of the answer's `Link: <…>;
    /// rel="ice-server"` headers (RFC 9725 §4.6): their candidates are
    /// learnt after the answer and trickled by PATCH. Off by default, so
    /// tests and load runs against a server announcing unreachable ICE
    /// servers do not wait for them.
    pub link_ice_servers: bool,
    /// Discard every N-th RTP packet received (before str0m sees it):
    /// simulated loss, which the session repairs with NACKs (RFC 4585
    /// §6.2.1) answered by RTX resends (RFC 4588). `None`: no loss.
    pub drop_every: Option<u32>,
    /// Hold every datagram the session sends once it is connected for this
    /// long (simulated one-way delay towards the server, so the server
    /// measures a round-trip time this much longer and receives NACKs this
    /// much later). `None`: no delay.
    pub delay_sends: Option<Duration>,
    /// Offer this IP in the host candidate instead of the bound one, with
    /// the bound port (the address a 1:1 NAT maps the socket to, like the
    /// server's `--advertise`); datagrams the socket receives are handed to
    /// ICE as arriving at it. Tests use an address nothing listens on so
    /// that the server reaches the session only through a relay.
    pub advertise_ip: Option<IpAddr>,
    /// The session's DTLS stack (RFC 5764 DTLS-SRTP): [`crate::dtls::Backend::Dimpl`]
    /// (default) takes only ECDSA server certificates and costs least per
    /// session; [`crate::dtls::Backend::Openssl`] also takes RSA ones (GStreamer
    /// `webrtcbin`-based servers sign with RSA 2048 by default).
    pub dtls: crate::dtls::Backend,
}

/// Simulated path impairments of a session ([`Options::drop_every`],
/// [`Options::delay_sends`]).
#[derive(Debug, Clone, Copy, Default)]
struct Impair {
    drop_every: Option<u32>,
    delay_sends: Option<Duration>,
}

/// How long the gathering of server-reflexive candidates may delay the offer
/// (RFC 8489 §6.2.1 retransmissions at 0, 250 and 750 ms).
pub const GATHER_TIMEOUT: Duration = Duration::from_millis(1500);

/// A server-reflexive (STUN) or relay (TURN) candidate this session learnt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gathered {
    /// The STUN or TURN server's URL.
    pub server: String,
    /// The candidate, as in SDP without `a=` (`candidate:… typ srflx raddr … rport …`).
    pub candidate: String,
    /// `None`: in the offer. `Some(status)`: learnt after the offer (from a
    /// `Link` header) and sent by PATCH `application/trickle-ice-sdpfrag`
    /// (RFC 9725 §4.3.1), answered with `status` (0: the request failed).
    pub trickled: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            token: None,
            tracks: vec![Track::Opus, Track::H264(0x42e01f)],
            insecure: false,
            ice_servers: Vec::new(),
            relay_only: false,
            link_ice_servers: false,
            drop_every: None,
            delay_sends: None,
            advertise_ip: None,
            dtls: crate::dtls::Backend::Dimpl,
        }
    }
}

/// HTTP signalling options beyond [`Options`] (see [`Session::publish_with`]).
#[derive(Debug, Clone)]
pub struct Signalling {
    /// Extra request headers sent with the POST and the DELETE (e.g.
    /// `User-Agent`). Names in lower case.
    pub headers: Vec<(String, String)>,
    /// How many `307`/`308` redirects a POST follows (RFC 9725 §4.5); the
    /// offer and `Authorization` are sent again to the new URL.
    pub max_redirects: usize,
    /// Rewrites the offer SDP text before it is POSTed, to reproduce another
    /// client's offer style (e.g. drop `a=candidate` lines like OBS, or say
    /// `a=setup:passive` like FFmpeg). The local str0m agent keeps its own
    /// view; the rewrite must stay consistent with the answer it will accept.
    pub offer_rewrite: Option<fn(&str) -> String>,
}

impl Default for Signalling {
    fn default() -> Self {
        Signalling {
            headers: Vec::new(),
            max_redirects: 5,
            offer_rewrite: None,
        }
    }
}

/// A received RTP packet (RTP mode: payload untouched).
#[derive(Debug, Clone)]
pub struct Received {
    /// Audio or video.
    pub kind: MediaKind,
    /// Extended sequence number.
    pub seq: u64,
    /// RTP timestamp.
    pub ts: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub pt: u8,
    /// Payload.
    pub payload: Arc<[u8]>,
    /// Arrival time.
    pub at: Instant,
}

/// What a session reports.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// ICE + DTLS are up.
    Connected,
    /// An RTP packet arrived.
    Rtp(Received),
    /// The server asked for a keyframe (PLI/FIR) on our video.
    KeyframeRequest,
    /// The session ended (server closed, or error).
    Closed(String),
}

/// One packet to send on a published track.
#[derive(Debug, Clone)]
pub struct OutPacket {
    /// Audio or video.
    pub kind: MediaKind,
    /// RTP timestamp in the track clock.
    pub ts: u32,
    /// Marker bit.
    pub marker: bool,
    /// Payload (already packetized).
    pub payload: Arc<[u8]>,
}

enum Cmd {
    Send(OutPacket),
    SendLayer(str0m::media::Rid, OutPacket),
    Close,
    /// Start a local ICE restart: reply with our offer (new credentials).
    IceRestart(oneshot::Sender<Result<String, String>>),
    /// The server's answer to that restart (full SDP with its new credentials).
    IceAnswer(String, oneshot::Sender<Result<(), String>>),
    /// The server refused the restart: forget the pending offer.
    IceRollback,
    /// From now on account received RTP from its header only.
    HeaderOnly(Arc<dyn HeaderSink>),
}

/// Receives what can be read of a received SRTP packet without decrypting
/// it (RFC 3711 §3.1: the RTP header is sent in the clear), once a session
/// is switched to header-only accounting ([`Session::header_only`]).
pub trait HeaderSink: Send + Sync + 'static {
    /// One RTP packet of a known media stream: its kind, the 16-bit
    /// sequence number (RFC 3550 §5.1; extend it yourself), the payload
    /// length in bytes (datagram minus RTP header, SRTP auth tag and
    /// padding as learnt from the decrypted packets before the switch) and
    /// the arrival time (taken when the datagram batch was read).
    fn on_rtp(&self, kind: MediaKind, seq: u16, payload_len: usize, at: Instant);
}

/// The clear parts of an SRTP packet: `(ssrc, seq, header_len)`; `None` for
/// anything that is not RTP version 2 (STUN, DTLS, RTCP: RFC 7983 §7,
/// RFC 5761 §4 payload types 64–95 with the marker bit are RTCP).
fn rtp_header(d: &[u8]) -> Option<(u32, u16, usize)> {
    if d.len() < 12 || d[0] >> 6 != 2 || (64..96).contains(&(d[1] & 0x7f)) {
        return None;
    }
    let mut len = 12 + 4 * (d[0] & 0x0f) as usize;
    if d[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*d.get(len + 2)?, *d.get(len + 3)?]) as usize;
        len += 4 + 4 * words;
    }
    (len <= d.len()).then(|| {
        let ssrc = u32::from_be_bytes([d[8], d[9], d[10], d[11]]);
        (ssrc, u16::from_be_bytes([d[2], d[3]]), len)
    })
}

/// The media kind of received SSRC `ssrc`: its str0m receive stream's mid
/// looked up in `mids`; `None` for an SSRC str0m has no stream for.
fn kind_of(rtc: &mut Rtc, mids: &[(MediaKind, Mid)], ssrc: Ssrc) -> Option<MediaKind> {
    let mid = rtc.direct_api().stream_rx(&ssrc)?.mid();
    mids.iter().find(|(_, m)| *m == mid).map(|(k, _)| *k)
}

/// Header-only accounting state of one session.
struct Lean {
    sink: Arc<dyn HeaderSink>,
    /// SSRC → kind of the streams str0m knows (looked up once each).
    kinds: Vec<(u32, MediaKind)>,
}

/// A live client session.
pub struct Session {
    /// Resolved session URL (the 201's `Location`).
    pub location: Url,
    /// The answer SDP.
    pub answer: String,
    /// The full HTTP response of the POST.
    pub response: HttpResponse,
    /// Events from the session task.
    pub events: mpsc::UnboundedReceiver<ClientEvent>,
    /// The current `ETag` of the ICE session (from the 201, then from each
    /// ICE restart's 200), sent as `If-Match` on PATCH.
    pub etag: Option<String>,
    /// The ICE agent's connection state, as str0m reports it.
    pub ice: watch::Receiver<IceConnectionState>,
    /// RTCP feedback this session has sent for the streams it receives,
    /// updated once a second ([`FEEDBACK_INTERVAL`]).
    pub feedback: watch::Receiver<Feedback>,
    /// Server-reflexive and relay candidates learnt so far (from
    /// [`Options::ice_servers`] before the offer; from the answer's `Link`
    /// headers after it, with [`Options::link_ice_servers`]).
    pub gathered: watch::Receiver<Vec<Gathered>>,
    cmd: mpsc::UnboundedSender<Cmd>,
    token: Option<String>,
    extra_headers: Vec<(String, String)>,
    task: tokio::task::JoinHandle<()>,
}

/// How often [`Session::feedback`] is brought up to date (str0m's stats
/// interval).
pub const FEEDBACK_INTERVAL: Duration = Duration::from_secs(1);

/// RTCP feedback a session sent for the streams it receives, since it
/// started, summed over them (str0m's ingress statistics). A receiver sends
/// these on its own: NACKs for gaps in the sequence numbers, and PLI/FIR
/// when a decoder asks. Received RTP that is only accounted from its header
/// ([`Session::header_only`]) never reaches str0m, so it causes none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Feedback {
    /// Generic NACK messages sent (RFC 4585 §6.2.1).
    pub nacks: u64,
    /// Picture Loss Indications sent (RFC 4585 §6.3.1).
    pub plis: u64,
    /// Full Intra Requests sent (RFC 5104 §4.3.1).
    pub firs: u64,
}

impl std::iter::Sum for Feedback {
    fn sum<I: Iterator<Item = Feedback>>(iter: I) -> Feedback {
        iter.fold(Feedback::default(), |a, b| Feedback {
            nacks: a.nacks + b.nacks,
            plis: a.plis + b.plis,
            firs: a.firs + b.firs,
        })
    }
}

/// Where the session task reports what the [`Session`] exposes.
struct Reports {
    ice: watch::Sender<IceConnectionState>,
    feedback: watch::Sender<Feedback>,
    /// Latest cumulative feedback counts per received (mid, rid) stream.
    per_stream: Vec<((Mid, Option<str0m::media::Rid>), Feedback)>,
}

impl Reports {
    /// Take one stream's new cumulative counts and publish the sum.
    fn on_ingress(&mut self, s: &str0m::stats::MediaIngressStats) {
        let key = (s.mid, s.rid);
        let f = Feedback {
            nacks: s.nacks,
            plis: s.plis,
            firs: s.firs,
        };
        match self.per_stream.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = f,
            None => self.per_stream.push((key, f)),
        }
        let sum: Feedback = self.per_stream.iter().map(|(_, v)| *v).sum();
        self.feedback.send_if_modified(|old| {
            let changed = *old != sum;
            *old = sum;
            changed
        });
    }
}

/// A non-201 answer from the server.
#[derive(Debug, thiserror::Error)]
#[error("server answered {status}: {body}")]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// Body (reason).
    pub body: String,
    /// `Retry-After` in seconds, when the server sent one (429, 503).
    pub retry_after: Option<u64>,
}

/// A WHIP or WHEP answer (`201`) that agrees on a payload type for none
/// of the offered tracks (RFC 3264 §6.1: its m-lines are rejected, or their
/// formats match none of the offer's, e.g. H.264 without the offered
/// `profile-level-id`, RFC 6184 §8.1): no media could be sent or received.
/// The session has been DELETEd.
#[derive(Debug, thiserror::Error)]
#[error(
    "the server's answer accepts none of the offered codecs, so no media can flow \
     (the session was deleted); its codecs per m-line: {answer}"
)]
pub struct NoCommonCodec {
    /// The answer's `a=rtpmap`/`a=fmtp` lines per offered kind.
    pub answer: String,
}

/// The `a=rtpmap` and `a=fmtp` lines of the first m-section of `kind` in
/// `sdp`, joined by `, ` ("rejected" for port 0, "absent" if none).
fn answer_codecs(sdp: &str, kind: MediaKind) -> String {
    let want = format!("m={kind} ");
    let mut lines = sdp.lines().map(str::trim);
    let Some(m) = lines.find(|l| l.starts_with(&want)) else {
        return "absent".into();
    };
    if m.split(' ').nth(1) == Some("0") {
        return "rejected".into();
    }
    let codecs: Vec<&str> = lines
        .take_while(|l| !l.starts_with("m="))
        .filter(|l| l.starts_with("a=rtpmap:") || l.starts_with("a=fmtp:"))
        .collect();
    if codecs.is_empty() {
        return "no a=rtpmap".into();
    }
    let mut out = codecs.join(", ");
    if out.contains(" H264/") && !out.contains("profile-level-id") {
        out += " (H.264 without profile-level-id is Baseline level 1.0, RFC 6184 §8.1)";
    }
    out
}

/// This process's DTLS certificate for every client session (ECDSA P-256,
/// self-signed, made on first use), as the server has one for all of its
/// sessions: the fingerprint in each offer (RFC 8122) names it. One key
/// pair instead of one per session spares every join a key generation, and
/// the OpenSSL stack keeps one context per certificate.
fn client_cert() -> anyhow::Result<str0m::config::DtlsCert> {
    static CERT: std::sync::OnceLock<Option<str0m::config::DtlsCert>> = std::sync::OnceLock::new();
    CERT.get_or_init(|| dimpl::certificate::generate_self_signed_certificate().ok())
        .clone()
        .ok_or_else(|| anyhow::anyhow!("cannot make a DTLS certificate"))
}

impl Session {
    /// Publish over WHIP to `endpoint` (e.g. `http://127.0.0.1:8080/whip/cam`).
    pub async fn publish(endpoint: &str, opts: Options) -> anyhow::Result<Session> {
        Self::start(
            endpoint,
            opts,
            Signalling::default(),
            Direction::SendOnly,
            &[],
        )
        .await
    }

    /// Publish over WHIP with simulcast video (RFC 8853): one `a=rid:<rid> send`
    /// per entry of `rids` and `a=simulcast:send`; send each layer's packets
    /// with [`Session::send_layer`].
    pub async fn publish_simulcast(
        endpoint: &str,
        opts: Options,
        rids: &[&str],
    ) -> anyhow::Result<Session> {
        Self::start(
            endpoint,
            opts,
            Signalling::default(),
            Direction::SendOnly,
            rids,
        )
        .await
    }

    /// [`Session::publish`] with extra signalling options.
    pub async fn publish_with(
        endpoint: &str,
        opts: Options,
        sig: Signalling,
    ) -> anyhow::Result<Session> {
        Self::start(endpoint, opts, sig, Direction::SendOnly, &[]).await
    }

    /// Play over WHEP from `endpoint` (e.g. `http://127.0.0.1:8080/whep/cam`).
    pub async fn play(endpoint: &str, opts: Options) -> anyhow::Result<Session> {
        Self::start(
            endpoint,
            opts,
            Signalling::default(),
            Direction::RecvOnly,
            &[],
        )
        .await
    }

    /// [`Session::play`] with extra signalling options.
    pub async fn play_with(
        endpoint: &str,
        opts: Options,
        sig: Signalling,
    ) -> anyhow::Result<Session> {
        Self::start(endpoint, opts, sig, Direction::RecvOnly, &[]).await
    }

    async fn start(
        endpoint: &str,
        opts: Options,
        sig: Signalling,
        dir: Direction,
        rids: &[&str],
    ) -> anyhow::Result<Session> {
        crate::server::install_crypto();
        let mut url = Url::parse(endpoint)?;
        url.insecure = opts.insecure;
        let socket = bind_udp(SocketAddr::new(opts.bind_ip, 0))?;
        let local = socket.local_addr()?;
        let mut cfg = RtcConfig::new()
            .set_crypto_provider(crate::dtls::crypto_provider(opts.dtls))
            .set_dtls_cert(client_cert()?)
            .set_stats_interval(Some(FEEDBACK_INTERVAL))
            .set_rtp_mode(true)
            .clear_codecs();
        let mut kinds = Vec::new();
        for t in &opts.tracks {
            match t {
                Track::H264(profile) => {
                    cfg.codec_config()
                        .add_h264(96.into(), Some(97.into()), true, *profile);
                    if dir == Direction::RecvOnly {
                        // Viewers accept the other common profiles too.
                        for (pt, p) in [(98u8, 0x42001fu32), (100, 0x4d001f), (102, 0x64001f)] {
                            if p != *profile {
                                cfg.codec_config().add_h264(
                                    pt.into(),
                                    Some((pt + 1).into()),
                                    true,
                                    p,
                                );
                            }
                        }
                    }
                    kinds.push(MediaKind::Video);
                }
                Track::Vp8 => {
                    cfg = cfg.enable_vp8(true);
                    kinds.push(MediaKind::Video);
                }
                Track::Vp9 => {
                    cfg = cfg.enable_vp9(true);
                    kinds.push(MediaKind::Video);
                }
                Track::Av1 => {
                    cfg = cfg.enable_av1(true);
                    kinds.push(MediaKind::Video);
                }
                Track::H265 => {
                    cfg = cfg.enable_h265(true);
                    kinds.push(MediaKind::Video);
                }
                Track::Opus => {
                    cfg = cfg.enable_opus(true, false);
                    kinds.push(MediaKind::Audio);
                }
                Track::Pcmu => {
                    cfg = cfg.enable_pcmu(true, false);
                    kinds.push(MediaKind::Audio);
                }
                Track::Pcma => {
                    cfg = cfg.enable_pcma(true, false);
                    kinds.push(MediaKind::Audio);
                }
            }
        }
        kinds.dedup();
        let mut rtc = cfg.build(Instant::now());
        // The address ICE sees this socket as (see `Options::advertise_ip`).
        let local = opts
            .advertise_ip
            .map_or(local, |ip| SocketAddr::new(ip, local.port()));
        if !opts.relay_only {
            rtc.add_local_candidate(Candidate::host(local, "udp")?);
        }
        let mut gathered = Vec::new();
        let mut turn = None;
        if let Some(t) = allocate(&socket, &opts.ice_servers, local).await {
            let relayed = t.relayed.expect("allocated");
            let c = Candidate::relayed(relayed, local, "udp")?;
            if let Some(c) = rtc.add_local_candidate(c) {
                info!("relay candidate {relayed} from {}", t.url);
                gathered.push(Gathered {
                    server: t.url.clone(),
                    candidate: c.to_sdp_string(),
                    trickled: None,
                });
            }
            turn = Some(t);
        }
        if opts.relay_only && turn.is_none() {
            anyhow::bail!("relay only, but no TURN allocation (see the log)");
        }
        let stun_servers: &[IceServer] = if opts.relay_only {
            &[]
        } else {
            &opts.ice_servers
        };
        let early = resolve_stun(stun_servers, local).await;
        for (server, mapped) in gather(&socket, &early, GATHER_TIMEOUT).await {
            match srflx(&mut rtc, mapped, local) {
                Some(candidate) => {
                    info!("server-reflexive candidate {mapped} from {server}");
                    gathered.push(Gathered {
                        server,
                        candidate,
                        trickled: None,
                    });
                }
                None => debug!("{server} maps us to {mapped}: same as a host candidate"),
            }
        }
        let mut api = rtc.sdp_api();
        let mut mids: Vec<(MediaKind, Mid)> = Vec::new();
        for k in &kinds {
            let simulcast = (*k == MediaKind::Video && !rids.is_empty()).then(|| {
                let mut s = str0m::media::Simulcast::new();
                for r in rids {
                    s.add_send_layer(str0m::media::SimulcastLayer::new(r));
                }
                s
            });
            let mid = api.add_media(*k, dir, Some("sfu-client".into()), None, simulcast);
            mids.push((*k, mid));
        }
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| anyhow::anyhow!("no media to offer"))?;
        let mut headers = vec![("content-type", "application/sdp")];
        let auth = opts.token.as_ref().map(|t| format!("Bearer {t}"));
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        for (k, v) in &sig.headers {
            headers.push((k.as_str(), v.as_str()));
        }
        let mut offer_sdp = offer.to_sdp_string();
        if let Some(f) = sig.offer_rewrite {
            offer_sdp = f(&offer_sdp);
        }
        let mut redirects = 0;
        let resp = loop {
            let resp = request("POST", &url, &headers, Some(offer_sdp.clone())).await?;
            if matches!(resp.status, 307 | 308)
                && redirects < sig.max_redirects
                && let Some(to) = resp.header("location")
            {
                url = url.join(to)?;
                redirects += 1;
                continue;
            }
            break resp;
        };
        if resp.status != 201 {
            return Err(Refused {
                status: resp.status,
                body: resp.body.trim().to_string(),
                retry_after: resp
                    .header("retry-after")
                    .and_then(|v| v.trim().parse().ok()),
            }
            .into());
        }
        let location = url.join(
            resp.header("location")
                .ok_or_else(|| anyhow::anyhow!("201 without Location"))?,
        )?;
        let answer = SdpAnswer::from_sdp_string(&resp.body)
            .map_err(|e| anyhow::anyhow!("bad answer SDP: {e}"))?;
        rtc.sdp_api().accept_answer(pending, answer)?;
        let unusable: Vec<MediaKind> = mids
            .iter()
            .filter(|(_, mid)| rtc.media(*mid).is_none_or(|m| m.remote_pts().is_empty()))
            .map(|(k, _)| *k)
            .collect();
        // A publisher is told of each track it cannot send; a viewer's
        // rejected m-line is only a track the stream does not have.
        if dir == Direction::SendOnly {
            for k in &unusable {
                warn!(
                    "the answer agrees on no payload type for the offered {k} ({}): \
                     its packets cannot be sent",
                    answer_codecs(&resp.body, *k)
                );
            }
        }
        if unusable.len() == mids.len() {
            let _ = request("DELETE", &location, &headers, None).await;
            return Err(NoCommonCodec {
                answer: unusable
                    .iter()
                    .map(|k| format!("{k}: {}", answer_codecs(&resp.body, *k)))
                    .collect::<Vec<_>>()
                    .join("; "),
            }
            .into());
        }
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (ice_tx, ice) = watch::channel(IceConnectionState::New);
        let (feedback_tx, feedback) = watch::channel(Feedback::default());
        // STUN servers named only by the answer's Link headers: asked now,
        // their candidates trickled by PATCH.
        let links = resp
            .headers
            .iter()
            .filter(|(k, _)| k == "link" && opts.link_ice_servers);
        let linked: Vec<IceServer> = stun::ice_servers_from_links(links.map(|(_, v)| v.as_str()))
            .into_iter()
            .filter(|l| !opts.ice_servers.iter().any(|o| o.url == l.url))
            .collect();
        let mut late_candidates = Vec::new();
        if turn.is_none()
            && let Some(t) = allocate(&socket, &linked, local).await
        {
            let relayed = t.relayed.expect("allocated");
            if let Some(c) = rtc.add_local_candidate(Candidate::relayed(relayed, local, "udp")?) {
                info!("relay candidate {relayed} from {} (trickled)", t.url);
                late_candidates.push((t.url.clone(), c.to_sdp_string()));
            }
            turn = Some(t);
        }
        if let Some(t) = &mut turn {
            permit(&socket, t, &remote_addrs(&resp.body)).await;
        }
        let late = if opts.relay_only {
            Vec::new()
        } else {
            resolve_stun(&linked, local).await
        };
        let (gathered_tx, gathered) = watch::channel(gathered);
        let token = opts.token.or_else(|| query_token(endpoint));
        let mut patch_headers = vec![(
            "content-type".to_string(),
            "application/trickle-ice-sdpfrag".to_string(),
        )];
        if let Some(t) = &token {
            patch_headers.push(("authorization".into(), format!("Bearer {t}")));
        }
        if let Some(e) = resp.header("etag") {
            patch_headers.push(("if-match".into(), e.to_string()));
        }
        patch_headers.extend(sig.headers.iter().cloned());
        let trickle = Trickle {
            url: location.clone(),
            headers: patch_headers,
            offer: offer_sdp,
            servers: late,
            gathered: gathered_tx,
        };
        for (server, c) in late_candidates {
            send_trickle(&trickle, server, c);
        }
        let task = tokio::spawn(drive(
            rtc,
            socket,
            local,
            mids,
            cmd_rx,
            ev_tx,
            Reports {
                ice: ice_tx,
                feedback: feedback_tx,
                per_stream: Vec::new(),
            },
            trickle,
            turn,
            Impair {
                drop_every: opts.drop_every,
                delay_sends: opts.delay_sends,
            },
        ));
        Ok(Session {
            etag: resp.header("etag").map(str::to_string),
            ice,
            feedback,
            gathered,
            location,
            answer: resp.body.clone(),
            response: resp,
            events,
            cmd,
            // A token given in the endpoint's query (`?token=`) authorizes the
            // DELETE too: the Location never carries it.
            token,
            extra_headers: sig.headers,
            task,
        })
    }

    /// Open this WHEP session's server-sent event stream (WHEP extension
    /// `urn:ietf:params:whep:ext:core:server-sent-events`) with the session's
    /// token; `events`: the names to subscribe to (`None`: all).
    ///
    /// Errors: the `201` had no such Link, or the server refused (status in
    /// the error text).
    pub async fn server_events(
        &self,
        events: Option<&[&str]>,
    ) -> anyhow::Result<super::sse::EventStream> {
        super::sse::subscribe(
            &self.location,
            &self.response.headers,
            self.token.as_deref(),
            events,
        )
        .await
    }

    /// Queue one packet for sending (publishers).
    pub fn send(&self, p: OutPacket) {
        let _ = self.cmd.send(Cmd::Send(p));
    }

    /// Queue one video packet of simulcast layer `rid` (see
    /// [`Session::publish_simulcast`]); each layer has its own SSRC and
    /// sequence numbers.
    pub fn send_layer(&self, rid: &str, p: OutPacket) {
        let _ = self.cmd.send(Cmd::SendLayer(rid.into(), p));
    }

    /// Wait for an event, up to `timeout`.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<ClientEvent> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Wait until connected (ICE + DTLS), up to `timeout`. Other events seen
    /// meanwhile are dropped.
    pub async fn wait_connected(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(ClientEvent::Connected)) => return Ok(()),
                Ok(Some(ClientEvent::Closed(r))) => anyhow::bail!("session closed: {r}"),
                Ok(Some(_)) => {}
                Ok(None) => anyhow::bail!("session task ended"),
                Err(_) => anyhow::bail!("not connected within {timeout:?}"),
            }
        }
    }

    /// Stop decrypting received RTP: from now on each RTP datagram of a
    /// stream str0m already knows goes to `sink` as header facts instead of
    /// through SRTP and str0m (so no [`ClientEvent::Rtp`], no NACKs and no
    /// receiver-side RTCP for them); STUN, DTLS, RTCP and packets of new
    /// SSRCs (RTX too) still take the full path. For load generators that
    /// account thousands of viewers on one core.
    pub fn header_only(&self, sink: Arc<dyn HeaderSink>) {
        let _ = self.cmd.send(Cmd::HeaderOnly(sink));
    }

    /// Vanish without DELETE (as go2rtc or a crashed client does): the task
    /// and its socket stop; the server must notice through ICE consent.
    pub fn abandon(self) {
        self.task.abort();
    }

    /// ICE restart by PATCH (RFC 9725 §4.3.2): new local ICE credentials go
    /// to the session URL as an `application/trickle-ice-sdpfrag` with
    /// `If-Match` = the current ETag. On `200` the server's new credentials
    /// and candidates are applied and [`Session::etag`] updated; any other
    /// status leaves the session as it was. Returns the PATCH response.
    ///
    /// Errors: the session task is gone, the request failed, or a 200 body
    /// without usable credentials.
    pub async fn ice_restart(&mut self) -> anyhow::Result<HttpResponse> {
        let (tx, rx) = oneshot::channel();
        let _ = self.cmd.send(Cmd::IceRestart(tx));
        let offer = rx
            .await
            .map_err(|_| anyhow::anyhow!("session task ended"))?
            .map_err(|e| anyhow::anyhow!("ICE restart: {e}"))?;
        let frag = crate::http::sdpfrag::ice_fragment(&offer);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/trickle-ice-sdpfrag")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        if let Some(e) = &self.etag {
            headers.push(("if-match", e.as_str()));
        }
        for (k, v) in &self.extra_headers {
            headers.push((k.as_str(), v.as_str()));
        }
        let resp = request("PATCH", &self.location, &headers, Some(frag)).await;
        let resp = match resp {
            Ok(r) if r.status == 200 => r,
            other => {
                let _ = self.cmd.send(Cmd::IceRollback);
                return other;
            }
        };
        let f = crate::http::sdpfrag::parse(&resp.body)
            .map_err(|e| anyhow::anyhow!("ICE restart answer: {e}"))?;
        let (Some(u), Some(p)) = (f.ufrag.as_deref(), f.pwd.as_deref()) else {
            let _ = self.cmd.send(Cmd::IceRollback);
            anyhow::bail!("ICE restart answer without a=ice-ufrag/a=ice-pwd");
        };
        let answer = crate::http::sdpfrag::with_new_ice(&self.answer, u, p, &f.candidates);
        let (tx, rx) = oneshot::channel();
        let _ = self.cmd.send(Cmd::IceAnswer(answer.clone(), tx));
        rx.await
            .map_err(|_| anyhow::anyhow!("session task ended"))?
            .map_err(|e| anyhow::anyhow!("ICE restart answer: {e}"))?;
        self.answer = answer;
        self.etag = resp.header("etag").map(str::to_string);
        Ok(resp)
    }

    /// Close the peer connection first (RTCP BYE + DTLS close_notify) and
    /// stop, without DELETE, as the medooze `whip-whep` library's `stop()`
    /// and a browser's `pc.close()` do; returns the session URL for a later
    /// DELETE.
    pub async fn hang_up(self) -> Url {
        let _ = self.cmd.send(Cmd::Close);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
        self.location
    }

    /// DELETE the session resource and stop. Returns the DELETE status.
    pub async fn close(self) -> anyhow::Result<u16> {
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        for (k, v) in &self.extra_headers {
            headers.push((k.as_str(), v.as_str()));
        }
        let resp = request("DELETE", &self.location, &headers, None).await;
        let _ = self.cmd.send(Cmd::Close);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.task).await;
        Ok(resp?.status)
    }
}

/// STUN servers learnt after the offer, and how to trickle what they tell.
struct Trickle {
    url: Url,
    headers: Vec<(String, String)>,
    /// The offer as POSTed (ICE credentials and first m-line for the fragment).
    offer: String,
    servers: Vec<(String, SocketAddr)>,
    gathered: watch::Sender<Vec<Gathered>>,
}

/// One outstanding Binding request.
struct Pending {
    tid: stun::TransactionId,
    url: String,
    server: SocketAddr,
    sent: u32,
    next: Instant,
}

/// Retransmission times of a Binding request after the first send (RFC
/// 8489 §6.2.1 with RTO 250 ms), then given up.
const STUN_RETRIES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(750),
    Duration::from_millis(1750),
];

/// The session task: [`drive_inner`], then the TURN allocation (if any) is
/// freed whichever way the session ended.
#[allow(clippy::too_many_arguments)]
async fn drive(
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mids: Vec<(MediaKind, Mid)>,
    cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    ev: mpsc::UnboundedSender<ClientEvent>,
    reports: Reports,
    trickle: Trickle,
    mut turn: Option<Turn>,
    impair: Impair,
) {
    drive_inner(
        rtc, &socket, local, mids, cmd_rx, ev, reports, trickle, &mut turn, impair,
    )
    .await;
    if let Some(r) = &mut turn {
        let m = r.deallocate();
        let _ = socket.send_to(&m, r.server).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive_inner(
    mut rtc: Rtc,
    socket: &UdpSocket,
    local: SocketAddr,
    mids: Vec<(MediaKind, Mid)>,
    mut cmd_rx: mpsc::UnboundedReceiver<Cmd>,
    ev: mpsc::UnboundedSender<ClientEvent>,
    mut reports: Reports,
    trickle: Trickle,
    turn: &mut Option<Turn>,
    impair: Impair,
) {
    // Datagrams are read in batches (recvmmsg), a GSO burst coalesced by
    // UDP GRO into one message: one wake-up per burst.
    let mut rx = {
        use std::os::fd::AsRawFd;
        crate::udp::RecvBatch::with_gro(socket.as_raw_fd())
    };
    let now = Instant::now();
    let mut stun_pending: Vec<Pending> = trickle
        .servers
        .iter()
        .map(|(url, server)| Pending {
            tid: stun::new_transaction_id(),
            url: url.clone(),
            server: *server,
            sent: 0,
            next: now,
        })
        .collect();
    let mut pending: Option<SdpPendingOffer> = None;
    let mut seqs: Vec<u64> = mids
        .iter()
        .map(|_| {
            let mut b = [0u8; 2];
            let _ = getrandom::fill(&mut b);
            (u16::from_be_bytes(b) & 0x7fff) as u64
        })
        .collect();
    let mut layer_seqs: Vec<(str0m::media::Rid, u64)> = Vec::new();
    let mut lean: Option<Lean> = None;
    // SRTP overhead (auth tag + padding) learnt from the last decrypted
    // packet: `(ssrc, seq, datagram length − header length)` of the last
    // RTP datagram fed to str0m, and the overhead seen.
    let mut last_rtp: Option<(u32, u16, usize)> = None;
    let mut rtp_received = 0u64;
    let mut overhead = 0usize;
    // Datagrams held by `impair.delay_sends`: (due, destination, bytes).
    let mut delayed: std::collections::VecDeque<(Instant, SocketAddr, Vec<u8>)> =
        Default::default();
    let mut connected = false;
    // Drive the agents once before the first poll: the ICE agent (`is` 0.12
    // `IceAgent::poll_timeout`) reports no timeout until its first
    // `handle_timeout`, so without this only a DTLS client timer would ever
    // wake the loop. As DTLS server (`a=setup:passive` offer, `active`
    // answer) no connectivity check was ever sent and the session hung in
    // `New` while the server waited in `Checking`.
    let _ = rtc.handle_input(Input::Timeout(Instant::now()));
    loop {
        let timeout = loop {
            match rtc.poll_output() {
                Ok(Output::Transmit(t)) => match &turn {
                    Some(r) if r.relayed == Some(t.source) => {
                        let m = r.send(t.destination, &t.contents);
                        let _ = socket.send_to(&m, r.server).await;
                    }
                    _ => match impair.delay_sends.filter(|_| connected) {
                        Some(d) => delayed.push_back((
                            Instant::now() + d,
                            t.destination,
                            t.contents.to_vec(),
                        )),
                        None => {
                            let _ = socket.send_to(&t.contents, t.destination).await;
                        }
                    },
                },
                Ok(Output::Timeout(t)) => break t,
                Ok(Output::Event(e)) => {
                    let out = match e {
                        Event::Connected => {
                            connected = true;
                            Some(ClientEvent::Connected)
                        }
                        Event::RtpPacket(p) => {
                            if let Some((ssrc, seq, body)) = last_rtp.take()
                                && ssrc == *p.header.ssrc
                                && seq == p.header.sequence_number
                            {
                                overhead = body.saturating_sub(p.payload.len());
                            }
                            let kind =
                                kind_of(&mut rtc, &mids, p.header.ssrc).unwrap_or(MediaKind::Video);
                            Some(ClientEvent::Rtp(Received {
                                kind,
                                seq: *p.seq_no,
                                ts: p.header.timestamp,
                                marker: p.header.marker,
                                pt: *p.header.payload_type,
                                payload: p.payload,
                                at: p.timestamp,
                            }))
                        }
                        Event::KeyframeRequest(_) => Some(ClientEvent::KeyframeRequest),
                        Event::IceConnectionStateChange(s) => {
                            let _ = reports.ice.send(s);
                            None
                        }
                        Event::MediaIngressStats(s) => {
                            reports.on_ingress(&s);
                            None
                        }
                        Event::Closed => Some(ClientEvent::Closed("remote closed".into())),
                        _ => None,
                    };
                    if let Some(o) = out {
                        let _ = ev.send(o);
                    }
                }
                Err(e) => {
                    let _ = ev.send(ClientEvent::Closed(format!("str0m: {e}")));
                    return;
                }
            }
        };
        if !rtc.is_alive() {
            let _ = ev.send(ClientEvent::Closed("rtc ended".into()));
            return;
        }
        // Feed the rest of the last batch one datagram at a time, polling
        // the output after each as before.
        if let Some((source, data, at)) = rx.next() {
            // A Binding response to one of our requests (matched by
            // transaction ID); TURN server traffic; everything else is str0m's.
            if let Some(tid) = stun::transaction_id(data)
                && let Some(i) = stun_pending
                    .iter()
                    .position(|p| p.tid == tid && p.server == source)
            {
                let p = stun_pending.swap_remove(i);
                let Some(mapped) = stun::parse_binding_success(data) else {
                    debug!("{}: Binding failed", p.url);
                    continue;
                };
                match srflx(&mut rtc, mapped, local) {
                    Some(candidate) => {
                        info!(
                            "server-reflexive candidate {mapped} from {} (trickled)",
                            p.url
                        );
                        send_trickle(&trickle, p.url, candidate);
                    }
                    None => debug!("{} maps us to {mapped}: same as a host candidate", p.url),
                }
                continue;
            }
            if let Some(r) = turn.as_mut()
                && r.is_from(source)
            {
                match r.input(data) {
                    TurnInput::Data(peer, data) => {
                        let relayed = r.relayed.unwrap_or(local);
                        if let Ok(contents) = data.as_slice().try_into() {
                            let _ = rtc.handle_input(Input::Receive(
                                at,
                                Receive {
                                    proto: Protocol::Udp,
                                    source: peer,
                                    destination: relayed,
                                    contents,
                                },
                            ));
                        }
                    }
                    TurnInput::Handled(out) => {
                        for m in out {
                            let _ = socket.try_send_to(&m, r.server);
                        }
                    }
                    TurnInput::Other => {}
                }
                continue;
            }
            let rtp = rtp_header(data);
            if rtp.is_some()
                && let Some(n) = impair.drop_every
            {
                rtp_received += 1;
                if rtp_received.is_multiple_of(u64::from(n.max(1))) {
                    continue;
                }
            }
            if let (Some(l), Some((ssrc, seq, hlen))) = (lean.as_mut(), rtp) {
                let kind = match l.kinds.iter().find(|(s, _)| *s == ssrc) {
                    Some((_, k)) => Some(*k),
                    None => {
                        let k = kind_of(&mut rtc, &mids, ssrc.into());
                        if let Some(k) = k {
                            l.kinds.push((ssrc, k));
                        }
                        k
                    }
                };
                if let Some(kind) = kind {
                    let len = (data.len() - hlen).saturating_sub(overhead);
                    l.sink.on_rtp(kind, seq, len, at);
                    continue;
                }
            }
            last_rtp = rtp.map(|(ssrc, seq, hlen)| (ssrc, seq, data.len() - hlen));
            if let Ok(contents) = data.try_into() {
                let _ = rtc.handle_input(Input::Receive(
                    at,
                    Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: local,
                        contents,
                    },
                ));
            }
            continue;
        }
        let now = Instant::now();
        stun_pending.retain_mut(|p| {
            if p.next > now {
                return true;
            }
            let Some(after) = STUN_RETRIES.get(p.sent as usize) else {
                debug!("no answer from {} ({})", p.url, p.server);
                return false;
            };
            let _ = socket.try_send_to(&stun::binding_request(&p.tid), p.server);
            p.next = now + *after;
            p.sent += 1;
            true
        });
        while delayed.front().is_some_and(|(due, _, _)| *due <= now) {
            if let Some((_, to, m)) = delayed.pop_front() {
                let _ = socket.send_to(&m, to).await;
            }
        }
        let mut timeout = stun_pending
            .iter()
            .map(|p| p.next)
            .chain(delayed.front().map(|(due, _, _)| *due))
            .fold(timeout, Instant::min);
        if let Some(r) = turn.as_mut() {
            for m in r.timers(now) {
                let _ = socket.try_send_to(&m, r.server);
            }
            timeout = timeout.min(r.next_timer());
        }
        let sleep = tokio::time::sleep_until(timeout.into());
        tokio::select! {
            r = socket.readable() => {
                if r.is_ok() {
                    use std::os::fd::AsRawFd;
                    let fd = socket.as_raw_fd();
                    // Timers due by the time the batch was read fire before
                    // its datagrams are fed: a receiver report due then would
                    // otherwise be made at the instant a sender report in the
                    // batch arrived, with DLSR 0 (RFC 3550 §6.4.1), which
                    // str0m reads as "no SR yet", so the server learnt no
                    // round-trip time from this client.
                    if let Ok(n) = socket.try_io(tokio::io::Interest::READABLE, || rx.fill(fd))
                        && n > 0
                    {
                        let _ = rtc.handle_input(Input::Timeout(rx.at()));
                    }
                }
            }
            c = cmd_rx.recv() => match c {
                Some(Cmd::SendLayer(rid, p)) => {
                    let Some(i) = mids.iter().position(|(k, _)| *k == p.kind) else { continue };
                    let mid = mids[i].1;
                    let pt = rtc.media(mid).and_then(|m| m.remote_pts().first().copied());
                    let Some(pt) = pt else { continue };
                    let li = match layer_seqs.iter().position(|(r, _)| *r == rid) {
                        Some(li) => li,
                        None => {
                            layer_seqs.push((rid, seqs[i] + 10_000 * layer_seqs.len() as u64));
                            layer_seqs.len() - 1
                        }
                    };
                    if let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, Some(rid)) {
                        let seq: SeqNo = layer_seqs[li].1.into();
                        layer_seqs[li].1 += 1;
                        tx.write_rtp(RtpWrite::new(pt, seq, p.ts, Instant::now(), p.payload)
                            .marker(p.marker).nackable(true));
                    }
                }
                Some(Cmd::Send(p)) => {
                    let Some(i) = mids.iter().position(|(k, _)| *k == p.kind) else { continue };
                    let mid = mids[i].1;
                    let pt = rtc.media(mid).and_then(|m| m.remote_pts().first().copied());
                    let Some(pt) = pt else { continue };
                    let video = p.kind == MediaKind::Video;
                    if let Some(tx) = rtc.direct_api().stream_tx_by_mid(mid, None) {
                        let seq: SeqNo = seqs[i].into();
                        seqs[i] += 1;
                        tx.write_rtp(RtpWrite::new(pt, seq, p.ts, Instant::now(), p.payload)
                            .marker(p.marker).nackable(video));
                    }
                }
                Some(Cmd::IceRestart(reply)) => {
                    let mut api = rtc.sdp_api();
                    api.ice_restart(true);
                    let r = match api.apply() {
                        Some((offer, p)) => {
                            pending = Some(p);
                            Ok(offer.to_sdp_string())
                        }
                        None => Err("nothing to offer".to_string()),
                    };
                    let _ = reply.send(r);
                }
                Some(Cmd::IceAnswer(sdp, reply)) => {
                    let r = match (pending.take(), SdpAnswer::from_sdp_string(&sdp)) {
                        (Some(p), Ok(a)) => rtc.sdp_api().accept_answer(p, a).map_err(|e| e.to_string()),
                        (None, _) => Err("no ICE restart pending".to_string()),
                        (_, Err(e)) => Err(e.to_string()),
                    };
                    let _ = reply.send(r);
                }
                Some(Cmd::IceRollback) => pending = None,
                Some(Cmd::HeaderOnly(sink)) => lean = Some(Lean { sink, kinds: Vec::new() }),
                Some(Cmd::Close) | None => {
                    let _ = rtc.close();
                    for _ in 0..64 {
                        match rtc.poll_output() {
                            Ok(Output::Transmit(t)) => {
                                let (to, m) = match &turn {
                                    Some(r) if r.relayed == Some(t.source) => (r.server, r.send(t.destination, &t.contents)),
                                    _ => (t.destination, t.contents.to_vec()),
                                };
                                let _ = socket.send_to(&m, to).await;
                            }
                            Ok(Output::Event(_)) => {}
                            _ => break,
                        }
                    }
                    return;
                }
            },
            _ = sleep => {
                let _ = rtc.handle_input(Input::Timeout(Instant::now()));
            }
        }
    }
}

/// Add a server-reflexive candidate for `mapped` (base `local`); its SDP
/// form, or `None` when str0m drops it as redundant (the same address as
/// the host candidate: no NAT between us and the STUN server).
fn srflx(rtc: &mut Rtc, mapped: SocketAddr, local: SocketAddr) -> Option<String> {
    let c = Candidate::server_reflexive(mapped, local, "udp").ok()?;
    rtc.add_local_candidate(c)
        .map(|c| c.to_sdp_string().trim_start_matches("a=").to_string())
}

/// PATCH one candidate to the session (RFC 9725 §4.3.1, RFC 8840 fragment:
/// the offer's ICE credentials, its first m-line and mid, the candidate), in
/// the background; the status lands in [`Session::gathered`].
fn send_trickle(t: &Trickle, server: String, candidate: String) {
    let mut frag = String::new();
    for l in crate::http::sdpfrag::ice_fragment(&t.offer).lines() {
        if !l.starts_with("a=candidate:") && l != "a=end-of-candidates" {
            frag.push_str(l);
            frag.push_str("\r\n");
        }
    }
    frag.push_str(&format!("a={candidate}\r\n"));
    let (url, headers, tx) = (t.url.clone(), t.headers.clone(), t.gathered.clone());
    tokio::spawn(async move {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let status = match request("PATCH", &url, &h, Some(frag)).await {
            Ok(r) => {
                if r.status >= 300 {
                    warn!(
                        "trickle PATCH {} answered {}: {}",
                        url.path,
                        r.status,
                        r.body.trim()
                    );
                } else {
                    debug!("trickled {candidate}: {}", r.status);
                }
                r.status
            }
            Err(e) => {
                warn!("trickle PATCH {}: {e:#}", url.path);
                0
            }
        };
        tx.send_modify(|g| {
            g.push(Gathered {
                server,
                candidate,
                trickled: Some(status),
            })
        });
    });
}

/// The `stun:` servers of `servers`, resolved to addresses of `local`'s IP
/// family (names that do not resolve, and `turn:` servers, are logged and
/// skipped).
async fn resolve_stun(servers: &[IceServer], local: SocketAddr) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    for s in servers {
        let (scheme, hostport) = match stun::server_address(&s.url) {
            Ok(a) => a,
            Err(e) => {
                warn!("ICE server {e}");
                continue;
            }
        };
        if scheme == "turn" {
            // Allocated by `allocate`.
            continue;
        }
        if scheme != "stun" {
            // Said once per process: a server's Link headers come with
            // every session.
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                warn!(
                    "ICE server {}: {scheme}: (over TLS) is not supported; stun: and turn: over \
                     UDP are",
                    s.url
                )
            });
            continue;
        }
        match tokio::net::lookup_host(hostport.as_str()).await {
            Ok(addrs) => match addrs.into_iter().find(|a| a.is_ipv4() == local.is_ipv4()) {
                Some(a) => out.push((s.url.clone(), a)),
                None => warn!("ICE server {}: no address of our IP family", s.url),
            },
            Err(e) => warn!("ICE server {}: {e}", s.url),
        }
    }
    out
}

/// The first `turn:` server of `servers` with credentials, allocated from
/// `socket` (within [`GATHER_TIMEOUT`]); `None` (logged) when there is none
/// or it fails. Only `turn:` over UDP: `turns:` and `?transport=tcp` are
/// skipped.
async fn allocate(socket: &UdpSocket, servers: &[IceServer], local: SocketAddr) -> Option<Turn> {
    for s in servers {
        let Ok(("turn", hostport)) = stun::server_address(&s.url) else {
            continue;
        };
        if s.url.contains("transport=tcp") {
            warn!("ICE server {}: TURN over TCP is not supported", s.url);
            continue;
        }
        let (Some(user), Some(pass)) = (&s.username, &s.credential) else {
            warn!("ICE server {}: TURN without username/credential", s.url);
            continue;
        };
        let addr = match tokio::net::lookup_host(hostport.as_str()).await {
            Ok(mut a) => a.find(|a| a.is_ipv4() && local.is_ipv4()),
            Err(e) => {
                warn!("ICE server {}: {e}", s.url);
                continue;
            }
        };
        let Some(addr) = addr else {
            warn!(
                "ICE server {}: no IPv4 address (TURN here is IPv4 only)",
                s.url
            );
            continue;
        };
        let mut t = Turn::new(&s.url, addr, user, pass);
        let first = t.allocate();
        turn_exchange(socket, &mut t, first).await;
        match (&t.relayed, &t.failed) {
            (Some(_), _) => return Some(t),
            (None, Some(why)) => warn!("ICE server {}: {why}", s.url),
            (None, None) => warn!(
                "ICE server {}: no TURN answer within {GATHER_TIMEOUT:?}",
                s.url
            ),
        }
    }
    None
}

/// CreatePermission for `peers` on the allocation (before the session task
/// starts; errors are logged).
async fn permit(socket: &UdpSocket, t: &mut Turn, peers: &[SocketAddr]) {
    if let Some(m) = t.permit(peers) {
        turn_exchange(socket, t, m).await;
        if !t.idle() {
            warn!("{}: no answer to CreatePermission", t.url);
        }
    }
}

/// Send `msg` to the TURN server and handle its answers (and the retries
/// they cause) until none is outstanding, resending after 500 ms, up to
/// [`GATHER_TIMEOUT`]. Other datagrams are dropped (nothing else is expected
/// before the session task starts).
async fn turn_exchange(socket: &UdpSocket, t: &mut Turn, msg: Vec<u8>) {
    let deadline = tokio::time::Instant::now() + GATHER_TIMEOUT;
    let mut last = msg;
    let mut buf = [0u8; 1500];
    let _ = socket.send_to(&last, t.server).await;
    let mut resend = tokio::time::Instant::now() + Duration::from_millis(500);
    while !t.idle() && t.failed.is_none() {
        match tokio::time::timeout_at(resend.min(deadline), socket.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) if t.is_from(from) => {
                if let TurnInput::Handled(out) = t.input(&buf[..n]) {
                    for m in out {
                        let _ = socket.send_to(&m, t.server).await;
                        last = m;
                    }
                }
            }
            Ok(_) => {}
            Err(_) if tokio::time::Instant::now() >= deadline => return,
            Err(_) => {
                let _ = socket.send_to(&last, t.server).await;
                resend += Duration::from_millis(500);
            }
        }
    }
}

/// The addresses of an SDP's `a=candidate` lines (UDP).
fn remote_addrs(sdp: &str) -> Vec<SocketAddr> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=candidate:"))
        .filter_map(|c| {
            let f: Vec<&str> = c.split_whitespace().collect();
            if !f.get(2)?.eq_ignore_ascii_case("udp") {
                return None;
            }
            Some(SocketAddr::new(
                f.get(4)?.parse().ok()?,
                f.get(5)?.parse().ok()?,
            ))
        })
        .collect()
}

/// Ask each server for our mapped address from `socket` (before the offer:
/// nothing else arrives on it yet), retransmitting per [`STUN_RETRIES`],
/// until all answered or `limit` passed. Returns `(url, mapped)` pairs.
async fn gather(
    socket: &UdpSocket,
    servers: &[(String, SocketAddr)],
    limit: Duration,
) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    if servers.is_empty() {
        return out;
    }
    let start = tokio::time::Instant::now();
    let deadline = start + limit;
    let mut pending: Vec<(stun::TransactionId, &str, SocketAddr)> = servers
        .iter()
        .map(|(u, a)| (stun::new_transaction_id(), u.as_str(), *a))
        .collect();
    let mut buf = [0u8; 1500];
    let mut round = 0;
    while !pending.is_empty() {
        for (tid, _, a) in &pending {
            let _ = socket.send_to(&stun::binding_request(tid), a).await;
        }
        let next = STUN_RETRIES
            .get(round)
            .map_or(deadline, |d| (start + *d).min(deadline));
        round += 1;
        loop {
            match tokio::time::timeout_at(next, socket.recv_from(&mut buf)).await {
                Ok(Ok((n, from))) => {
                    let Some(tid) = stun::transaction_id(&buf[..n]) else {
                        continue;
                    };
                    let Some(i) = pending.iter().position(|p| p.0 == tid && p.2 == from) else {
                        continue;
                    };
                    let (_, url, _) = pending.swap_remove(i);
                    match stun::parse_binding_success(&buf[..n]) {
                        Some(m) => out.push((url.to_string(), m)),
                        None => debug!("{url}: Binding failed"),
                    }
                    if pending.is_empty() {
                        break;
                    }
                }
                Ok(Err(_)) => {}
                Err(_) => break,
            }
        }
        if tokio::time::Instant::now() >= deadline {
            for (_, url, a) in &pending {
                warn!("ICE server {url} ({a}): no STUN answer within {limit:?}");
            }
            break;
        }
    }
    out
}

/// `token` query parameter of a URL, if any.
fn query_token(url: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "token" && !v.is_empty()).then(|| v.to_string())
    })
}

/// A non-blocking UDP socket with large buffers (a GOP replay or keyframe
/// arrives as a burst).
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    crate::udp::set_buffers(&s, 4 << 20);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_sessions_share_one_certificate() {
        let (a, b) = (client_cert().unwrap(), client_cert().unwrap());
        assert_eq!(a.certificate, b.certificate);
    }

    #[test]
    fn answer_codecs_names_the_m_section_of_a_kind() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 H264/90000\r\n\
                   a=fmtp:96 packetization-mode=1\r\n";
        assert_eq!(
            answer_codecs(sdp, MediaKind::Audio),
            "a=rtpmap:111 opus/48000/2"
        );
        let v = answer_codecs(sdp, MediaKind::Video);
        assert!(
            v.starts_with("a=rtpmap:96 H264/90000, a=fmtp:96 packetization-mode=1 (H.264 without"),
            "{v}"
        );
        let rejected = "v=0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n";
        assert_eq!(answer_codecs(rejected, MediaKind::Video), "rejected");
        assert_eq!(answer_codecs(rejected, MediaKind::Audio), "absent");
    }
}
