//! WHIP (RFC 9725 §4.2) and WHEP (draft-ietf-wish-whep) session creation and
//! termination: offer in, answer out, peer handed to a worker.

// Errors are ready-made HTTP responses on the cold path; boxing buys nothing.
#![allow(clippy::result_large_err)]

use super::response::{Resp, cors, empty, error, with_body};
use crate::codecs::{self, Chosen, CodecError};
use crate::config::Config;
use crate::demux::PeerRef;
use crate::forward::{KeyframeWaiter, Rewrite};
use crate::registry::{Publication, Role, SessionEntry, new_session_id};
use crate::rtc_config::{self, RtcRole};
use crate::sdp_scan::{self, Offer};
use crate::slots::Slot;
use crate::worker::peer::{
    KEYFRAME_RETRY, NewPeer, PeerKind, PublisherState, Replay, ViewerState, ViewerTrack,
    publisher_tracks,
};
use crate::worker::{ShardMsg, Shared};
use hyper::StatusCode;
use hyper::header::{HeaderValue, LOCATION, RETRY_AFTER};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::media::{MediaKind, Mid};
use str0m::{Candidate, IceCreds, Rtc};
use tracing::{info, warn};

/// Everything the HTTP layer needs to create sessions.
pub struct App {
    /// Shared with workers.
    pub shared: Arc<Shared>,
    /// Effective configuration (tokens, limits, ICE servers).
    pub config: Config,
    /// One DTLS certificate for all peers (RFC 8827 §6.5 allows reuse).
    pub cert: DtlsCert,
    next_id: AtomicU64,
    next_shard: AtomicUsize,
    /// Per-IP limiter for POST/PATCH/DELETE.
    pub rate: super::rate::RateLimiter,
}

impl App {
    /// New application state.
    pub fn new(shared: Arc<Shared>, cert: DtlsCert, config: Config) -> App {
        App {
            rate: super::rate::RateLimiter::new(
                config.rate_limit,
                (config.rate_limit * 5.0).max(10.0),
            ),
            shared,
            config,
            cert,
            next_id: AtomicU64::new(1),
            next_shard: AtomicUsize::new(0),
        }
    }

    fn place(&self) -> usize {
        self.next_shard.fetch_add(1, Ordering::Relaxed) % self.shared.shards.len()
    }

    /// A str0m `Rtc` for one session of `role` ([`rtc_config::base`]) with
    /// our ICE credentials, DTLS certificate and the chosen codecs.
    fn build_rtc(&self, formats: &[&Chosen], role: RtcRole) -> Result<(Rtc, IceCreds), Resp> {
        let creds = IceCreds::new();
        let ret = creds.clone();
        let mut cfg = rtc_config::base(role)
            .set_local_ice_credentials(creds)
            .set_dtls_cert(self.cert.clone());
        for f in formats {
            f.add_to(&mut cfg);
        }
        let mut rtc = cfg.build(Instant::now());
        for c in &self.shared.sockets.candidates {
            match Candidate::host(*c, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => warn!(addr = %c, "cannot use address as host candidate: {e}"),
            }
        }
        Ok((rtc, ret))
    }
}

fn codec_status(e: &CodecError) -> StatusCode {
    match e {
        CodecError::Duplicate(_) | CodecError::Direction(..) | CodecError::Unsupported(..) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        CodecError::ViewerCannotReceive(_) | CodecError::NoMedia => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
    }
}

fn parse_offer(body: &str) -> Result<Offer, Resp> {
    sdp_scan::scan(body).map_err(|e| error(StatusCode::BAD_REQUEST, e.to_string()))
}

fn accept(rtc: &mut Rtc, body: &str) -> Result<String, Resp> {
    let offer = SdpOffer::from_sdp_string(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("malformed SDP: {e}")))?;
    let answer = rtc.sdp_api().accept_offer(offer).map_err(|e| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("offer not acceptable: {e}"),
        )
    })?;
    Ok(answer.to_sdp_string())
}

fn created(app: &App, role: Role, stream: &str, session: &str, answer: String) -> Resp {
    let mut r = with_body(StatusCode::CREATED, "application/sdp", answer);
    for link in super::ice_links::links(&app.config, session) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().append(hyper::header::LINK, v);
        }
    }
    let loc = format!("/{}/{stream}/{session}", role.path());
    app.shared
        .metrics
        .sessions_created
        .with_label_values(&[role.path()])
        .inc();
    r.headers_mut().insert(
        LOCATION,
        HeaderValue::from_str(&loc).expect("ascii location"),
    );
    r.headers_mut().insert(
        hyper::header::ETAG,
        HeaderValue::from_str(&etag_of(session, 0)).expect("ascii etag"),
    );
    r
}

/// The strong ETag of `session` after `restarts` ICE restarts (quoted).
fn etag_of(session: &str, restarts: u32) -> String {
    if restarts == 0 {
        format!("\"{session}\"")
    } else {
        format!("\"{session}-{restarts}\"")
    }
}

fn mid_of(offer: &Offer, mline: usize) -> Option<Mid> {
    offer.media.get(mline)?.mid.as_deref().map(Mid::from)
}

/// `POST /whip/{stream}`: accept a publisher. 409 if the name is live;
/// 503 if `slot` was taken beyond the limit and no live publisher is
/// replaced after all (see [`crate::slots`]).
pub fn whip_post(app: &App, stream: &str, body: &str, slot: Slot) -> Resp {
    let offer = match parse_offer(body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let tracks = match codecs::choose_publisher(&offer) {
        Ok(t) => t,
        Err(e) => return error(codec_status(&e), e.to_string()),
    };
    let mids: Option<Vec<Mid>> = tracks.iter().map(|t| mid_of(&offer, t.mline)).collect();
    let Some(mids) = mids else {
        return error(
            StatusCode::BAD_REQUEST,
            "every m-line needs a=mid (RFC 8843)",
        );
    };
    let id = app.next_id.fetch_add(1, Ordering::Relaxed);
    let shard = app.place();
    let me = PeerRef { shard, id };
    let nshards = app.shared.shards.len();
    let fresh = || {
        Arc::new(Publication {
            id,
            name: stream.to_string(),
            tracks: RwLock::new(tracks.clone()),
            publisher: Mutex::new(me),
            live: AtomicBool::new(true),
            generation: AtomicU64::new(0),
            viewers_per_shard: (0..nshards).map(|_| AtomicU32::new(0)).collect(),
            connected: AtomicBool::new(false),
            bytes_in: AtomicU64::new(0),
            packets_in: AtomicU64::new(0),
            bitrate_in: AtomicU64::new(0),
            created: Instant::now(),
            layers: Default::default(),
            signal: Default::default(),
        })
    };
    // The publisher this one replaces (replace policy), if any.
    let mut replaced = None;
    let publication = {
        use dashmap::mapref::entry::Entry;
        match app.shared.registry.streams.entry(stream.to_string()) {
            Entry::Occupied(mut o) => {
                let cur = o.get().clone();
                // A splice or a new publication is a net new session.
                if !cur.live.load(Ordering::Acquire) && !slot.within(app.config.max_sessions) {
                    return at_limit();
                }
                if cur.compatible(&tracks) && cur.splice(me, tracks.clone()) {
                    info!(
                        stream,
                        "new publisher spliced in: viewers keep their sessions"
                    );
                    cur
                } else if cur.live.load(Ordering::Acquire)
                    && app.config.replaces(stream)
                    && cur.compatible(&tracks)
                {
                    let old = cur.take_over(me, tracks.clone());
                    replaced = Some(old);
                    info!(
                        stream,
                        "new publisher replaces the live one: viewers keep their sessions"
                    );
                    app.shared.send_control(
                        old.shard,
                        ShardMsg::Close {
                            peer: old.id,
                            reason: "replaced by a new publisher",
                        },
                    );
                    cur
                } else if cur.live.load(Ordering::Acquire) && app.config.replaces(stream) {
                    let old = cur.publisher();
                    replaced = Some(old);
                    info!(
                        stream,
                        "new publisher with other codecs replaces the live one: ending the old viewers' sessions"
                    );
                    let p = fresh();
                    o.insert(p.clone());
                    app.shared.send_control(
                        old.shard,
                        ShardMsg::Close {
                            peer: old.id,
                            reason: "replaced by a new publisher",
                        },
                    );
                    cur.end(crate::registry::Ended::Incompatible);
                    close_viewers(app, &cur);
                    p
                } else if cur.live.load(Ordering::Acquire) {
                    return error(
                        StatusCode::CONFLICT,
                        format!("stream '{stream}' already has a publisher"),
                    );
                } else {
                    info!(
                        stream,
                        "new publisher has other codecs: ending the old viewers' sessions"
                    );
                    // (The entry is locked here: replace it, then close the
                    // old viewers; no second registry access.)
                    let p = fresh();
                    o.insert(p.clone());
                    cur.end(crate::registry::Ended::Incompatible);
                    close_viewers(app, &cur);
                    p
                }
            }
            Entry::Vacant(v) => {
                if !slot.within(app.config.max_sessions) {
                    return at_limit();
                }
                let p = fresh();
                v.insert(p.clone());
                p
            }
        }
    };
    publication.layers.set_offered(
        tracks
            .iter()
            .find(|t| t.kind == MediaKind::Video)
            .and_then(|t| offer.media.get(t.mline))
            .map_or(0, |m| m.rids),
    );
    if let Some(old) = replaced {
        if let Some(n) = app.shared.registry.note_replaced(stream, Instant::now()) {
            warn!(
                stream,
                replacements = n,
                "the publisher of this stream was replaced {n} times in a row, each within {} s: \
                 two publishers are probably using this stream name and reconnecting after \
                 being replaced; give each its own name",
                crate::registry::REPLACE_FLAP_WINDOW.as_secs()
            );
        }
        // Its session is gone from now on (its worker closes the peer): its
        // slot comes back, so a replacement never counts twice against the
        // session limit.
        app.shared
            .registry
            .sessions
            .retain(|_, e| !(e.role == Role::Publisher && e.peer == old));
    }
    let unpublish = || {
        if publication.id == id {
            app.shared
                .registry
                .streams
                .remove_if(stream, |_, p| p.id == id);
        } else {
            // A failed splice: nobody publishes any more.
            publication.live.store(false, Ordering::Release);
            end_publication(app, &publication);
        }
    };
    let refs: Vec<&Chosen> = tracks.iter().collect();
    let (mut rtc, creds) = match app.build_rtc(&refs, RtcRole::Publisher) {
        Ok(x) => x,
        Err(r) => {
            unpublish();
            return r;
        }
    };
    let answer = match accept(&mut rtc, body) {
        Ok(a) => a,
        Err(r) => {
            unpublish();
            return r;
        }
    };
    let now = Instant::now();
    let state = PublisherState {
        tracks: publisher_tracks(&tracks, &mids, &rtc, app.config.gop),
        ssrc_cache: Vec::new(),
        last_bytes: 0,
        last_sample: now,
        generation: publication.generation.load(Ordering::Acquire),
    };
    let session = new_session_id();
    start_peer(
        app,
        Role::Publisher,
        stream,
        &session,
        id,
        shard,
        rtc,
        creds,
        offer.ufrag.clone(),
        publication,
        PeerKind::Publisher(state),
        tracks.iter().map(Chosen::describe).collect(),
        body,
        slot,
    );
    info!(stream, session = %session, codecs = %tracks.iter().map(Chosen::describe).collect::<Vec<_>>().join(", "), "WHIP session created");
    created(app, Role::Publisher, stream, &session, answer)
}

#[allow(clippy::too_many_arguments)]
fn start_peer(
    app: &App,
    role: Role,
    stream: &str,
    session: &str,
    id: u64,
    shard: usize,
    rtc: Rtc,
    creds: IceCreds,
    remote_ufrag: String,
    publication: Arc<Publication>,
    kind: PeerKind,
    codecs: Vec<String>,
    offer_sdp: &str,
    slot: Slot,
) {
    let me = PeerRef { shard, id };
    let stats = Arc::new(crate::stats::SessionStats::new(id, codecs));
    app.shared.registry.sessions.insert(
        session.to_string(),
        SessionEntry {
            slot: Arc::new(slot),
            role,
            stream: stream.to_string(),
            peer: me,
            stats: stats.clone(),
            remote_ufrag,
            offer: Arc::from(offer_sdp),
            etag: etag_of(session, 0),
            ice_restarts: 0,
            sse: Default::default(),
        },
    );
    app.shared.demux.add_ufrag(&creds.ufrag, me);
    let peer = NewPeer {
        id,
        rtc,
        session: session.to_string(),
        ufrag: creds.ufrag,
        ice_pwd: creds.pass,
        publication,
        kind,
        created: Instant::now(),
        stats,
    };
    app.shared
        .send_control(shard, ShardMsg::AddPeer(Box::new(peer)));
}

fn random_seq() -> u16 {
    let mut b = [0u8; 2];
    getrandom::fill(&mut b).expect("OS random source");
    u16::from_be_bytes(b) & 0x7fff
}

/// `POST /whep/{stream}`: accept a viewer. 409 + Retry-After without a publisher.
///
/// `layer`: `?layer=RID` (WHEP layer extension): pin that simulcast layer.
/// `slot`: this session's share of the limit (see [`crate::slots`]).
pub fn whep_post(app: &App, stream: &str, body: &str, layer: Option<&str>, slot: Slot) -> Resp {
    let offer = match parse_offer(body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    let Some(publication) = app.shared.registry.streams.get(stream).map(|p| p.clone()) else {
        let mut r = error(
            StatusCode::CONFLICT,
            format!("stream '{stream}' has no live publisher"),
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("2"));
        return r;
    };
    if !publication.live.load(Ordering::Acquire) {
        let mut r = error(
            StatusCode::CONFLICT,
            format!("stream '{stream}' has no live publisher"),
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("2"));
        return r;
    }
    let pub_tracks = publication.tracks();
    let chosen = match codecs::choose_viewer(&offer, &pub_tracks) {
        Ok(c) => c,
        Err(e) => return error(codec_status(&e), e.to_string()),
    };
    if let Some(l) = layer
        && !super::layer_ext::valid_rid(l)
    {
        return error(StatusCode::BAD_REQUEST, "invalid layer RID");
    }
    let simulcast = publication.layers.is_simulcast();
    let refs: Vec<&Chosen> = chosen.iter().map(|(_, c)| c).collect();
    let (mut rtc, creds) = match app.build_rtc(&refs, RtcRole::Viewer { bwe: simulcast }) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let answer = match accept(&mut rtc, body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut tracks: Vec<Option<ViewerTrack>> = (0..pub_tracks.len()).map(|_| None).collect();
    for (ti, c) in &chosen {
        let Some(mid) = mid_of(&offer, c.mline) else {
            continue;
        };
        let video = c.kind == MediaKind::Video;
        let mut api = rtc.direct_api();
        let Some(tx) = api.stream_tx_by_mid(mid, None) else {
            continue; // m-line rejected in the answer
        };
        let resend = rtc_config::ResendWindow::default();
        if video {
            let bps = publication.bitrate_in.load(Ordering::Relaxed);
            rtc_config::set_resend_history(tx, bps, resend.window(), false);
        } else {
            rtc_config::no_resend_history(tx);
        }
        tracks[*ti] = Some(ViewerTrack {
            mid,
            pt: c.pt.into(),
            rewrite: Rewrite::new(pub_tracks[*ti].clock_rate, video, random_seq()),
            nackable: video,
            rtx_capped: false,
            resend,
            video,
            replay: Replay::Off,
            held: Default::default(),
            gate: Default::default(),
            auto: Default::default(),
            vp8: (pub_tracks[*ti].codec == str0m::format::Codec::Vp8).then(Default::default),
        });
    }
    if tracks.iter().all(Option::is_none) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no m-line of the offer can carry the stream",
        );
    }
    let id = app.next_id.fetch_add(1, Ordering::Relaxed);
    let shard = app.place();
    publication.viewers_per_shard[shard].fetch_add(1, Ordering::Relaxed);
    publication.notify();
    let state = ViewerState {
        tracks,
        waiter: KeyframeWaiter::new(KEYFRAME_RETRY),
        packets_out: 0,
        packets_out_video: 0,
        replay_next: None,
        manual: layer.map(str0m::media::Rid::from),
        bwe: None,
        layer_next: Instant::now(),
    };
    let session = new_session_id();
    start_peer(
        app,
        Role::Viewer,
        stream,
        &session,
        id,
        shard,
        rtc,
        creds,
        offer.ufrag.clone(),
        publication,
        PeerKind::Viewer(state),
        chosen.iter().map(|(_, c)| c.describe()).collect(),
        body,
        slot,
    );
    info!(stream, session = %session, "WHEP session created");
    let mut r = created(app, Role::Viewer, stream, &session, answer);
    if let Ok(v) = HeaderValue::from_str(&super::sse_ext::link(stream, &session)) {
        r.headers_mut().append(hyper::header::LINK, v);
    }
    if simulcast && let Ok(v) = HeaderValue::from_str(&super::layer_ext::link(stream, &session)) {
        r.headers_mut().append(hyper::header::LINK, v);
    }
    r
}

/// Remove a publication and close all its viewers (on every worker).
/// Must not be called while holding a registry entry.
pub fn end_publication(app: &App, p: &Publication) {
    app.shared
        .registry
        .streams
        .remove_if(&p.name, |_, x| x.id == p.id);
    p.end(crate::registry::Ended::Gone);
    close_viewers(app, p);
}

/// Close all viewers of a publication on every worker.
fn close_viewers(app: &App, p: &Publication) {
    for s in 0..app.shared.shards.len() {
        app.shared
            .send_control(s, ShardMsg::PublicationEnded { publication: p.id });
    }
}

/// `DELETE /{whip|whep}/{stream}/{session}` → 200, or 404 if unknown. A
/// session its peer closed itself (DTLS close_notify) less than
/// [`crate::registry::CLOSED_KEEP`] ago also gets 200, once.
pub fn delete(app: &App, role: Role, stream: &str, session: &str) -> Resp {
    let entry = app
        .shared
        .registry
        .sessions
        .get(session)
        .map(|e| e.clone())
        .filter(|e| e.role == role && e.stream == stream);
    let Some(entry) = entry else {
        let now = std::time::Instant::now();
        if app.shared.registry.take_closed(session, role, stream, now) {
            info!(
                stream,
                session,
                role = role.path(),
                "session deleted (the peer had closed it)"
            );
            return cors(empty(StatusCode::OK));
        }
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    app.shared.registry.sessions.remove(session);
    if role == Role::Publisher
        && let Some(p) = app.shared.registry.streams.get(stream)
        && p.publisher() == entry.peer
    {
        // The name is free from the 200 on: a client that DELETEs and
        // re-POSTs at once (an OBS restart) must not race the worker's close
        // into a 409. The worker still starts the grace period for viewers.
        p.publisher_left();
    }
    app.shared.send_control(
        entry.peer.shard,
        ShardMsg::Close {
            peer: entry.peer.id,
            reason: "DELETE",
        },
    );
    info!(stream, session, role = role.path(), "session deleted");
    cors(empty(StatusCode::OK))
}

/// `PATCH` on a session (RFC 9725 §4.3): trickle ICE candidates
/// (`application/trickle-ice-sdpfrag`, RFC 8840) → 204. A fragment with new
/// ICE credentials is an ICE restart (§4.3.2): the client's stored offer is
/// re-offered to the peer's str0m instance with the new credentials and
/// candidates, and the answer's new server credentials and candidates come
/// back as a `200` sdpfrag with a new `ETag`; media keeps flowing meanwhile.
/// `if_match`: the `If-Match` (or `ETag`) request header; a stale one is 412.
pub async fn patch(
    app: &App,
    role: Role,
    stream: &str,
    session: &str,
    content_type_ok: bool,
    if_match: Option<&str>,
    body: &str,
) -> Resp {
    let entry = app
        .shared
        .registry
        .sessions
        .get(session)
        .map(|e| e.clone())
        .filter(|e| e.role == role && e.stream == stream);
    let Some(entry) = entry else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    if !content_type_ok {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/trickle-ice-sdpfrag",
        );
    }
    let etag = entry.etag.clone();
    match if_match.map(str::trim) {
        None if app.config.strict_if_match => {
            return error(StatusCode::PRECONDITION_REQUIRED, "If-Match required");
        }
        Some(v) if v != "*" && v != "\"*\"" && !v.split(',').any(|t| t.trim() == etag) => {
            return error(
                StatusCode::PRECONDITION_FAILED,
                "If-Match does not match the ICE session",
            );
        }
        _ => {}
    }
    let frag = match super::sdpfrag::parse(body) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if frag
        .ufrag
        .as_deref()
        .is_some_and(|u| u != entry.remote_ufrag)
    {
        return ice_restart(app, stream, session, &entry, &frag).await;
    }
    let candidates: Vec<Candidate> = frag
        .candidates
        .iter()
        .filter_map(|c| Candidate::from_sdp_string(c).ok())
        .collect();
    if !candidates.is_empty() {
        app.shared.send_control(
            entry.peer.shard,
            ShardMsg::RemoteCandidates {
                peer: entry.peer.id,
                candidates,
            },
        );
    }
    empty(StatusCode::NO_CONTENT)
}

/// Most ICE restarts one session may do (each keeps a demux entry).
const MAX_ICE_RESTARTS: u32 = 8;

/// The ICE restart of a PATCH (see [`patch`]).
async fn ice_restart(
    app: &App,
    stream: &str,
    session: &str,
    entry: &SessionEntry,
    frag: &super::sdpfrag::Fragment,
) -> Resp {
    let (Some(ufrag), Some(pwd)) = (frag.ufrag.as_deref(), frag.pwd.as_deref()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "ICE restart needs both a=ice-ufrag and a=ice-pwd",
        );
    };
    let restarts = entry.ice_restarts + 1;
    if restarts > MAX_ICE_RESTARTS {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too many ICE restarts for this session: POST a new offer",
        );
    }
    let candidates: Vec<String> = frag
        .candidates
        .iter()
        .filter(|c| Candidate::from_sdp_string(c).is_ok())
        .cloned()
        .collect();
    let text = super::sdpfrag::with_new_ice(&entry.offer, ufrag, pwd, &candidates);
    let offer = match SdpOffer::from_sdp_string(&text) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad ICE credentials: {e}")),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    app.shared.send_control(
        entry.peer.shard,
        ShardMsg::IceRestart {
            peer: entry.peer.id,
            offer: Box::new(offer),
            reply: tx,
        },
    );
    let answer = match tokio::time::timeout(std::time::Duration::from_secs(5), rx).await {
        Ok(Ok(Ok(a))) => a,
        Ok(Ok(Err(e))) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("ICE restart failed: {e}"),
            );
        }
        _ => return error(StatusCode::NOT_FOUND, "no such session"),
    };
    let etag = etag_of(session, restarts);
    if let Some(mut e) = app.shared.registry.sessions.get_mut(session) {
        e.remote_ufrag = ufrag.to_string();
        e.offer = Arc::from(text.as_str());
        e.etag = etag.clone();
        e.ice_restarts = restarts;
    }
    info!(stream, session, restarts, "ICE restart: new credentials");
    let mut r = super::response::with_body(
        StatusCode::OK,
        "application/trickle-ice-sdpfrag",
        super::sdpfrag::ice_fragment(&answer),
    );
    r.headers_mut().insert(
        hyper::header::ETAG,
        HeaderValue::from_str(&etag).expect("ascii etag"),
    );
    r
}

/// True when a WHIP POST to `stream` would replace its live publisher (the
/// replace policy, see [`Config::replaces`]): such a POST ends the old
/// session, so it is admitted at the session limit.
pub fn replaces_live(app: &App, stream: &str) -> bool {
    app.config.replaces(stream)
        && app
            .shared
            .registry
            .streams
            .get(stream)
            .is_some_and(|p| p.live.load(Ordering::Acquire))
}

/// A slot of the session limit for a POST, or `503` + Retry-After when the
/// limit is reached (RFC 9725 §4.5). `replacing`: the POST replaces a live
/// publisher (see [`replaces_live`]) and is admitted even at the limit.
pub fn take_slot(app: &App, replacing: bool) -> Result<Slot, Resp> {
    let slots = &app.shared.registry.slots;
    if replacing {
        return Ok(slots.take_beyond_limit());
    }
    slots.try_take(app.config.max_sessions).ok_or_else(at_limit)
}

/// `503` + Retry-After: the server is at its session limit.
fn at_limit() -> Resp {
    let mut r = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "server is at its session limit",
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("5"));
    r
}
