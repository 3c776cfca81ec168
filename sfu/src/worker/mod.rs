//! Workers: one thread per core, each owning a disjoint set of peers.
//!
//! A worker receives datagrams routed to its peers, peer additions and closes,
//! and media packets of publications that have viewers on it. A publisher's
//! packet is handed to each worker with viewers once (an `Arc`), never once per
//! viewer; the worker then rewrites and writes it for each local viewer. Timers
//! are a heap keyed by each `Rtc`'s own `Output::Timeout`: only peers with
//! work are driven.

pub mod peer;

use crate::demux::{Demux, PeerRef};
use crate::media::MediaPacket;
use crate::metrics::Metrics;
use crate::registry::{Publication, Registry};
use crate::stats::MidCounters;
use crate::udp::{SendBatch, Sockets};
pub use peer::NewPeer;
use peer::{Peer, PeerKind, Replay, ViewerTrack};
use rustc_hash::FxHashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Event, IceConnectionState, Input, Output};
use tracing::{debug, info, warn};

/// Establishment timeout: ICE+DTLS must be up this long after the POST.
pub const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long ICE may stay Disconnected (consent lost, RFC 7675) before the session ends.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(10);
/// Worker inbox capacity (messages).
pub const INBOX: usize = 16 * 1024;

/// Messages to a worker.
pub enum ShardMsg {
    /// A datagram for one of this worker's peers.
    Datagram {
        /// Peer id.
        peer: u64,
        /// Remote address.
        source: SocketAddr,
        /// Local (advertised) address it arrived at.
        destination: SocketAddr,
        /// Bytes.
        data: Vec<u8>,
        /// Receive time.
        at: Instant,
    },
    /// Take ownership of a new peer.
    AddPeer(Box<NewPeer>),
    /// End a peer (DELETE or shutdown).
    Close {
        /// Peer id.
        peer: u64,
        /// Why (for logs).
        reason: &'static str,
    },
    /// A publisher packet for local viewers of its publication.
    Media(Arc<MediaPacket>),
    /// A viewer wants a keyframe of a publisher track on this worker.
    KeyframeRequest {
        /// Publisher peer id.
        publisher: u64,
        /// Track index.
        track: usize,
        /// Simulcast layer slot (ignored without simulcast).
        layer: u8,
    },
    /// Pin a viewer to a simulcast layer (`Some(rid)`) or return it to
    /// automatic choice (`None`): the WHEP layer extension.
    SetLayer {
        /// Viewer peer id.
        peer: u64,
        /// RID to pin.
        rid: Option<str0m::media::Rid>,
    },
    /// ICE restart (RFC 9725 §4.3.2): accept the client's offer re-made with
    /// new ICE credentials; replies with the answer SDP (new server
    /// credentials) or why not.
    IceRestart {
        /// Peer id.
        peer: u64,
        /// The re-offer.
        offer: Box<str0m::change::SdpOffer>,
        /// Answer SDP or why str0m refused the offer; dropped unanswered
        /// when the session has already ended (the HTTP side answers `404`).
        reply: tokio::sync::oneshot::Sender<Result<String, String>>,
    },
    /// Trickled remote ICE candidates (RFC 8838) for a peer.
    RemoteCandidates {
        /// Peer id.
        peer: u64,
        /// Parsed candidates.
        candidates: Vec<str0m::Candidate>,
    },
    /// A viewer wants the cached GOP of a publisher track.
    GopRequest {
        /// Publisher peer id (on this worker).
        publisher: u64,
        /// Track index.
        track: usize,
        /// The viewer asking.
        viewer: PeerRef,
    },
    /// The cached GOP for a viewer on this worker (may be empty).
    GopReplay {
        /// Viewer peer id.
        viewer: u64,
        /// Track index.
        track: usize,
        /// Cached packets, keyframe first.
        packets: Vec<Arc<MediaPacket>>,
    },
    /// Close every peer properly (RTCP BYE, DTLS close_notify), then ack.
    Shutdown(std::sync::mpsc::Sender<usize>),
    /// A publication ended: close its local viewers.
    PublicationEnded {
        /// Publication id.
        publication: u64,
    },
}

/// Sender half of a worker inbox.
pub type ShardSender = SyncSender<ShardMsg>;

/// State shared by the HTTP layer, UDP threads and workers.
pub struct Shared {
    /// UDP routing.
    pub demux: Arc<Demux>,
    /// Streams and sessions.
    pub registry: Registry,
    /// Worker inboxes.
    pub shards: Vec<ShardSender>,
    /// Peers per worker (for placement and metrics).
    pub load: Vec<AtomicUsize>,
    /// Media sockets.
    pub sockets: Arc<Sockets>,
    /// GOP cache on: viewers ask for a replay when they connect.
    pub gop_enabled: bool,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// How long viewers wait for a new publisher after theirs left.
    pub publisher_grace: Duration,
}

impl Shared {
    /// Send to a worker; a full inbox for control messages blocks briefly
    /// rather than losing a peer or a close.
    pub fn send_control(&self, shard: usize, msg: ShardMsg) -> bool {
        self.shards[shard].send(msg).is_ok()
    }
}

enum Action {
    Fanout(Arc<MediaPacket>, Arc<Publication>),
    Keyframe {
        publisher: PeerRef,
        track: usize,
        layer: u8,
    },
    GopRequest {
        publisher: PeerRef,
        track: usize,
        viewer: PeerRef,
    },
    Close(u64, &'static str),
}

/// One worker's state.
pub struct Worker {
    idx: usize,
    shared: Arc<Shared>,
    /// Boxed: a `Peer` (its `Rtc` inline) is several KiB, and a map of
    /// values that size keeps up to 2× its live peers in spare slots (plus
    /// the old table while it grows). Keyed by server-made sequential ids,
    /// so a fast non-keyed hash (Fx) is safe: it is looked up several times
    /// per viewer and packet.
    peers: FxHashMap<u64, Box<Peer>>,
    /// Viewer ids of each publication (publication id → viewers).
    subs: FxHashMap<u64, Vec<u64>>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    actions: Vec<Action>,
    spare: Vec<Action>,
    /// Publications whose publisher left: (deadline, publication, generation).
    grace: Vec<(Instant, Arc<Publication>, u64)>,
    /// Outgoing datagrams of this wake-up (`sendmmsg`/GSO), flushed before
    /// the worker blocks again.
    out: SendBatch,
    /// Publisher packets waiting for [`Worker::flush_fanout`], in arrival order.
    pending: Vec<Arc<MediaPacket>>,
    /// Arrival of the oldest packet in `pending`.
    held_since: Option<Instant>,
    /// `sfu_fanout_seconds{viewer="first"}` and `{viewer="last"}`.
    fanout: [prometheus::Histogram; 2],
}

/// Most publisher packets held for one viewer-major fan-out pass.
const PENDING_MAX: usize = 64;
/// Longest the first packets of a video frame wait for the frame's last
/// (marker) packet before the held packets go out anyway.
pub const HOLD_MAX: Duration = Duration::from_millis(4);

impl Worker {
    /// A worker with index `idx`.
    pub fn new(idx: usize, shared: Arc<Shared>) -> Worker {
        Worker {
            idx,
            peers: FxHashMap::default(),
            subs: FxHashMap::default(),
            timers: BinaryHeap::new(),
            actions: Vec::with_capacity(64),
            spare: Vec::with_capacity(64),
            grace: Vec::new(),
            out: SendBatch::new(),
            pending: Vec::with_capacity(PENDING_MAX),
            held_since: None,
            fanout: ["first", "last"]
                .map(|v| shared.metrics.fanout_seconds.with_label_values(&[v])),
            shared,
        }
    }

    /// Run until the inbox closes.
    pub fn run(mut self, rx: Receiver<ShardMsg>) {
        loop {
            let now = Instant::now();
            self.fire_timers(now);
            self.end_expired_publications(now);
            self.flush_fanout_if_due(now);
            self.out.flush(&self.shared.sockets);
            let mut wait = self
                .timers
                .peek()
                .map(|Reverse((t, _))| t.saturating_duration_since(now))
                .unwrap_or(Duration::from_millis(500))
                .min(Duration::from_millis(if self.grace.is_empty() {
                    500
                } else {
                    100
                }));
            if let Some(t) = self.held_since {
                wait = wait.min((t + HOLD_MAX).saturating_duration_since(now));
            }
            match rx.recv_timeout(wait) {
                Ok(msg) => {
                    self.handle(msg);
                    // Drain what is queued before looking at timers again.
                    for _ in 0..256 {
                        match rx.try_recv() {
                            Ok(m) => self.handle(m),
                            Err(_) => break,
                        }
                    }
                    self.flush_fanout_if_due(Instant::now());
                    self.out.flush(&self.shared.sockets);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let ids: Vec<u64> = self.peers.keys().copied().collect();
        for id in ids {
            self.close_peer(id, "shutdown");
        }
        self.out.flush(&self.shared.sockets);
    }

    fn handle(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Datagram {
                peer,
                source,
                destination,
                data,
                at,
            } => self.on_datagram(peer, source, destination, &data, at),
            ShardMsg::AddPeer(n) => self.add_peer(*n),
            ShardMsg::Close { peer, reason } => self.close_peer(peer, reason),
            ShardMsg::Media(pkt) => {
                self.hold(pkt);
                self.run_actions();
            }
            ShardMsg::KeyframeRequest {
                publisher,
                track,
                layer,
            } => {
                self.keyframe_to_publisher(publisher, track, layer, Instant::now());
                self.run_actions();
            }
            ShardMsg::SetLayer { peer, rid } => {
                let now = Instant::now();
                if let Some(p) = self.peers.get_mut(&peer)
                    && let PeerKind::Viewer(v) = &mut p.kind
                {
                    v.manual = rid;
                    v.layer_next = now;
                    evaluate_layers(p, now, &mut self.actions);
                }
                self.run_actions();
            }
            ShardMsg::IceRestart { peer, offer, reply } => {
                // A session that ended meanwhile (a DELETE racing the
                // PATCH) leaves `reply` unanswered.
                if let Some(r) = self.ice_restart(peer, *offer) {
                    let _ = reply.send(r);
                }
                self.drive(peer, Instant::now());
                self.run_actions();
            }
            ShardMsg::RemoteCandidates { peer, candidates } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    for c in candidates {
                        p.rtc.add_remote_candidate(c);
                    }
                    self.drive(peer, Instant::now());
                    self.run_actions();
                }
            }
            ShardMsg::GopRequest {
                publisher,
                track,
                viewer,
            } => {
                self.serve_gop(publisher, track, viewer);
                self.run_actions();
            }
            ShardMsg::GopReplay {
                viewer,
                track,
                packets,
            } => {
                self.replay(viewer, track, packets, Instant::now());
                self.run_actions();
            }
            ShardMsg::Shutdown(ack) => {
                let ids: Vec<u64> = self.peers.keys().copied().collect();
                let n = ids.len();
                for id in ids {
                    self.close_peer(id, "server shutdown");
                }
                self.out.flush(&self.shared.sockets);
                let _ = ack.send(n);
            }
            ShardMsg::PublicationEnded { publication } => {
                let viewers = self.subs.remove(&publication).unwrap_or_default();
                for v in viewers {
                    self.close_peer(v, "publisher ended");
                }
            }
        }
    }

    /// See [`ShardMsg::IceRestart`]: str0m restarts ICE when an offer
    /// carries new remote credentials and answers with new local ones, which
    /// the demux learns so the client's checks with them reach this peer.
    /// `None` when peer `id` is gone.
    fn ice_restart(
        &mut self,
        id: u64,
        offer: str0m::change::SdpOffer,
    ) -> Option<Result<String, String>> {
        let peer = self.peers.get_mut(&id)?;
        if peer.closing {
            return None;
        }
        let _span = peer.span.clone().entered();
        Some(Self::restart_ice(peer, offer, id, self.idx, &self.shared))
    }

    /// [`Worker::ice_restart`] of a live peer.
    fn restart_ice(
        peer: &mut Peer,
        offer: str0m::change::SdpOffer,
        id: u64,
        idx: usize,
        shared: &Shared,
    ) -> Result<String, String> {
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| e.to_string())?
            .to_sdp_string();
        let attr = |name: &str| {
            answer
                .lines()
                .find_map(|l| l.trim_end_matches('\r').strip_prefix(name))
                .map(str::to_string)
        };
        let (Some(ufrag), Some(pwd)) = (attr("a=ice-ufrag:"), attr("a=ice-pwd:")) else {
            return Err("answer without ICE credentials".into());
        };
        let me = PeerRef { shard: idx, id };
        shared.demux.add_ufrag(&ufrag, me);
        peer.old_ufrags
            .push(std::mem::replace(&mut peer.ufrag, ufrag));
        peer.ice_pwd = pwd;
        info!(peer = id, "ICE restarted with new credentials");
        Ok(answer)
    }

    fn add_peer(&mut self, n: NewPeer) {
        let id = n.id;
        let publication = n.publication.id;
        let is_viewer = matches!(n.kind, PeerKind::Viewer(_));
        let peer = Box::new(Peer::new(n));
        let _span = peer.span.clone().entered();
        info!(peer = id, session = %peer.session, stream = %peer.publication.name, role = peer.role(), "peer added");
        self.peers.insert(id, peer);
        if is_viewer {
            self.subs.entry(publication).or_default().push(id);
        }
        self.shared.load[self.idx].fetch_add(1, Ordering::Relaxed);
        self.drive(id, Instant::now());
        self.run_actions();
    }

    fn on_datagram(
        &mut self,
        id: u64,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        at: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        // FFmpeg 8 sends binding requests without PRIORITY: complete them.
        let shimmed;
        let data = if data.first().is_some_and(|b| *b < 2) {
            match crate::stun_shim::add_priority(data, &peer.ice_pwd) {
                Some(f) => {
                    shimmed = f;
                    &shimmed[..]
                }
                None => data,
            }
        } else {
            data
        };
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            at,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        if !peer.addrs.contains(&source) {
            if !peer.rtc.accepts(&input) {
                return;
            }
            // Integrity-checked STUN (or a nominated pair): route this address here.
            if peer.addrs.len() < 8 {
                peer.addrs.push(source);
                let me = PeerRef {
                    shard: self.idx,
                    id,
                };
                if let Some(old) = self.shared.demux.bind_addr(source, me) {
                    debug!(%source, old = old.id, new = id, "remote address moved between peers");
                }
            }
        }
        if let Err(e) = peer.rtc.handle_input(input) {
            debug!(peer = id, "input rejected: {e}");
        }
        self.drive(id, Instant::now());
        self.run_actions();
    }

    /// Send what was just written to peer `id`'s `Rtc`: str0m releases
    /// written packets only after a timeout input has stamped them (its
    /// send queue), so hand it `now` and drive, instead of leaving them
    /// queued until the peer's timer fires.
    fn send_written(&mut self, id: u64, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
            debug!(peer = id, "timeout input: {e}");
        }
        self.drive(id, now);
    }

    /// Poll one peer's output until it asks for a timeout.
    fn drive(&mut self, id: u64, now: Instant) {
        let Worker {
            peers,
            shared,
            actions,
            timers,
            idx,
            out,
            ..
        } = self;
        let Some(peer) = peers.get_mut(&id) else {
            return;
        };
        loop {
            match peer.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    out.push(&shared.sockets, t.source, t.destination, t.contents.into())
                }
                Ok(Output::Event(e)) => on_event(peer, e, now, *idx, shared, actions),
                Ok(Output::Timeout(t)) => {
                    let mut next = t;
                    if let Some(extra) = peer_deadline(peer) {
                        next = next.min(extra);
                    }
                    if !peer.rtc.is_alive() {
                        actions.push(Action::Close(
                            id,
                            if peer.closing { "closed" } else { "peer gone" },
                        ));
                        break;
                    }
                    if peer.next_timeout != Some(next) {
                        peer.next_timeout = Some(next);
                        timers.push(Reverse((next, id)));
                    }
                    break;
                }
                Err(e) => {
                    warn!(peer = id, "str0m error: {e}");
                    actions.push(Action::Close(id, "str0m error"));
                    break;
                }
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((t, id))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            if peer.next_timeout != Some(t) {
                continue; // stale entry
            }
            // This entry is spent: whatever `drive` computes next is armed,
            // even when it equals `t` (str0m answers with its last `now`
            // while it still has output to give).
            peer.next_timeout = None;
            if let Some(reason) = expired(peer, now) {
                self.close_peer(id, reason);
                continue;
            }
            if let Err(e) = peer.rtc.handle_input(Input::Timeout(now)) {
                debug!(peer = id, "timeout input: {e}");
            }
            let mut replay_due = false;
            // Role timers: deferred keyframe requests, viewer retries.
            match &mut peer.kind {
                PeerKind::Publisher(p) => {
                    for (i, tr) in p.tracks.iter_mut().enumerate() {
                        if tr.throttle.poll(now) {
                            request_keyframe(
                                &mut peer.rtc,
                                tr.mid,
                                None,
                                tr.fir_only,
                                &self.shared.metrics,
                            );
                            debug!(peer = id, track = i, "deferred keyframe request sent");
                        }
                        for l in tr.layers.iter_mut() {
                            if l.throttle.poll(now) {
                                request_keyframe(
                                    &mut peer.rtc,
                                    tr.mid,
                                    Some(l.rid),
                                    tr.fir_only,
                                    &self.shared.metrics,
                                );
                            }
                        }
                    }
                    sample_bitrate(p, &peer.publication, now);
                }
                PeerKind::Viewer(v) => {
                    if v.replay_next.is_some_and(|t| now >= t) {
                        v.replay_next = None;
                        replay_due = true;
                    }
                    if v.waiter.ask_if_due(now) {
                        for (ti, t) in v.tracks.iter().enumerate() {
                            if let Some(t) = t.as_ref().filter(|t| t.video) {
                                self.actions.push(Action::Keyframe {
                                    publisher: peer.publication.publisher(),
                                    track: ti,
                                    layer: t.gate.target(),
                                });
                            }
                        }
                    }
                    if now >= v.layer_next {
                        evaluate_layers(peer, now, &mut self.actions);
                    }
                }
            }
            if replay_due {
                self.drain_replay(id, now);
            }
            self.drive(id, now);
        }
        self.run_actions();
    }

    fn run_actions(&mut self) {
        while !self.actions.is_empty() {
            // Swap buffers instead of allocating one per batch.
            let mut batch = std::mem::take(&mut self.spare);
            std::mem::swap(&mut batch, &mut self.actions);
            for a in batch.drain(..) {
                self.run_action(a);
            }
            self.spare = batch;
        }
    }

    fn run_action(&mut self, a: Action) {
        {
            match a {
                Action::Fanout(pkt, publication) => {
                    for (s, count) in publication.viewers_per_shard.iter().enumerate() {
                        if s != self.idx && count.load(Ordering::Relaxed) > 0 {
                            match self.shared.shards[s].try_send(ShardMsg::Media(pkt.clone())) {
                                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                                Err(TrySendError::Full(_)) => {
                                    debug!(shard = s, "worker inbox full: media dropped")
                                }
                            }
                        }
                    }
                    self.hold(pkt);
                }
                Action::Keyframe {
                    publisher,
                    track,
                    layer,
                } => {
                    if publisher.shard == self.idx {
                        self.keyframe_to_publisher(publisher.id, track, layer, Instant::now());
                    } else {
                        let _ = self.shared.shards[publisher.shard].try_send(
                            ShardMsg::KeyframeRequest {
                                publisher: publisher.id,
                                track,
                                layer,
                            },
                        );
                    }
                }
                Action::GopRequest {
                    publisher,
                    track,
                    viewer,
                } => {
                    if publisher.shard == self.idx {
                        self.serve_gop(publisher.id, track, viewer);
                    } else {
                        let _ = self.shared.shards[publisher.shard].send(ShardMsg::GopRequest {
                            publisher: publisher.id,
                            track,
                            viewer,
                        });
                    }
                }
                Action::Close(id, reason) => self.close_peer(id, reason),
            }
        }
    }

    /// Hold `pkt` for the viewer-major fan-out ([`Worker::flush_fanout`]):
    /// every publisher packet waits in `pending` (in arrival order) until
    /// [`Worker::flush_fanout_if_due`] lets the batch go.
    fn hold(&mut self, pkt: Arc<MediaPacket>) {
        if self.pending.len() == PENDING_MAX {
            self.flush_fanout();
        }
        self.held_since.get_or_insert(pkt.arrival);
        self.pending.push(pkt);
    }

    /// Send the held packets unless the newest one is a video packet whose
    /// frame is still open (no marker bit yet, RFC 6184 §5.1 / RFC 7741
    /// §4.1) and the oldest has waited less than [`HOLD_MAX`]: a frame then
    /// leaves in one pass per viewer (one UDP GSO send each) instead of a
    /// pass per packet. The frame's last packet is never delayed by this,
    /// so frame latency is not either; only its first packets wait for it.
    fn flush_fanout_if_due(&mut self, now: Instant) {
        let open = self.pending.last().is_some_and(|p| p.video && !p.marker);
        if !open || self.held_since.is_some_and(|t| now >= t + HOLD_MAX) {
            self.flush_fanout();
        }
    }

    /// Forward the held publisher packets viewer by viewer: each viewer gets
    /// all of them (in arrival order) and is driven once, so its datagrams
    /// leave back to back (one UDP GSO send per viewer and frame where the
    /// kernel has it) and viewers complete a frame one after another instead
    /// of all of them late during a keyframe burst. Per viewer and
    /// publication the order is the arrival order, as without holding.
    fn flush_fanout(&mut self) {
        self.held_since = None;
        if self.pending.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut pending = std::mem::take(&mut self.pending);
        let newest = pending.last().map_or(now, |p| p.arrival);
        let mut viewers = 0;
        let mut i = 0;
        while i < pending.len() {
            // Packets of one publication: [i, j).
            let publication = pending[i].publication;
            let mut j = i + 1;
            while j < pending.len() && pending[j].publication == publication {
                j += 1;
            }
            let n = self.subs.get(&publication).map_or(0, Vec::len);
            viewers += n;
            for k in 0..n {
                let Some(&id) = self.subs.get(&publication).and_then(|v| v.get(k)) else {
                    break;
                };
                // At most WRITE_CHUNK packets in str0m's send queue before
                // they are sent: the queue keeps its largest size for the
                // session (≈ 470 B a packet), so a 60-packet keyframe
                // written at once cost every viewer ≈ 28 KiB for good.
                for chunk in pending[i..j].chunks(peer::WRITE_CHUNK) {
                    let mut wrote = false;
                    for pkt in chunk {
                        wrote |= self.forward(id, pkt, now);
                    }
                    if wrote {
                        self.send_written(id, now);
                    }
                }
            }
            i = j;
        }
        if viewers > 0 {
            let [first, last] = &self.fanout;
            first.observe(now.saturating_duration_since(newest).as_secs_f64());
            last.observe(newest.elapsed().as_secs_f64());
        }
        pending.clear();
        if self.pending.is_empty() {
            self.pending = pending; // keep the allocation
        }
        self.run_actions();
    }

    /// Rewrite and write one live packet to one viewer (held instead while a
    /// GOP replay is awaited). Returns true if written.
    fn forward(&mut self, id: u64, pkt: &Arc<MediaPacket>, now: Instant) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        if !peer.connected || peer.closing {
            return false;
        }
        let PeerKind::Viewer(v) = &mut peer.kind else {
            return false;
        };
        let Some(Some(t)) = v.tracks.get_mut(pkt.track) else {
            return false;
        };
        match &mut t.replay {
            Replay::Awaiting(held) if held.len() < peer::REPLAY_HOLD_MAX => {
                held.push(pkt.clone());
                return false;
            }
            Replay::Draining(q) if q.len() < peer::REPLAY_HOLD_MAX => {
                q.push_back((pkt.clone(), pkt.ts));
                return false;
            }
            Replay::Awaiting(_) | Replay::Draining(_) => t.replay = Replay::Done,
            Replay::Off | Replay::Done => {}
        }
        self.forward_ts(id, pkt, pkt.ts, now)
    }

    /// Rewrite and write `pkt` with input timestamp `ts_in` to viewer `id`.
    fn forward_ts(&mut self, id: u64, pkt: &Arc<MediaPacket>, ts_in: u32, now: Instant) -> bool {
        let Some(peer) = self.peers.get_mut(&id) else {
            return false;
        };
        let PeerKind::Viewer(v) = &mut peer.kind else {
            return false;
        };
        let Some(Some(t)) = v.tracks.get_mut(pkt.track) else {
            return false;
        };
        if t.video {
            match t.gate.on_packet(pkt.layer, pkt.keyframe) {
                crate::forward::Admit::Forward => {}
                crate::forward::Admit::Switched { from } => {
                    if let Some(v8) = &mut t.vp8 {
                        v8.on_switch();
                    }
                    if from.is_some() {
                        self.shared.metrics.layer_switches.inc();
                        debug!(peer = id, ?from, to = pkt.layer, "simulcast layer switched");
                    }
                    if peer.publication.layers.is_simulcast() {
                        peer.stats
                            .set_layer(&peer.publication.layers.rid(pkt.layer));
                    }
                }
                crate::forward::Admit::Drop => {
                    // Waiting for the wanted layer's keyframe: keep its
                    // newest access unit in case that is the keyframe.
                    if pkt.layer == t.gate.target() {
                        t.held.hold(ts_in, (pkt.clone(), ts_in));
                    }
                    return false;
                }
            }
        }
        use crate::forward::RewriteDecision::*;
        match t
            .rewrite
            .on_packet(pkt.source, pkt.seq, ts_in, pkt.keyframe, now)
        {
            Forward { seq, ts } => {
                if t.video && pkt.keyframe {
                    if v.waiter.is_waiting() && v.packets_out_video == 0 {
                        self.shared
                            .metrics
                            .ttff_seconds
                            .observe(now.saturating_duration_since(peer.created).as_secs_f64());
                    }
                    v.waiter.on_keyframe_forwarded();
                }
                if t.video {
                    v.packets_out_video += 1;
                }
                self.shared.metrics.packets_out.inc();
                self.shared
                    .metrics
                    .bytes_out
                    .inc_by(pkt.payload.len() as u64);
                let (mid, pt, nackable) = (t.mid, t.pt, t.nackable);
                let exts = ExtensionValues {
                    audio_level: pkt.audio_level,
                    voice_activity: pkt.voice_activity,
                    ..Default::default()
                };
                let patch = t.vp8.as_mut().and_then(|v8| {
                    let (pid, tl0) = crate::forward::vp8ids::read(&pkt.payload)?;
                    match v8.map(pid, tl0) {
                        (None, None) => None,
                        (p, l) => {
                            let d = str0m::rtp::Vp8Descriptor::parse(&pkt.payload).ok()?;
                            let mut b = d.patch();
                            if let Some(p) = p {
                                b = b.picture_id(p);
                            }
                            if let Some(l) = l {
                                b = b.tl0_pic_idx(l);
                            }
                            b.build().ok()
                        }
                    }
                });
                let mut api = peer.rtc.direct_api();
                let Some(tx) = api.stream_tx_by_mid(mid, None) else {
                    return false;
                };
                let mut w = RtpWrite::new(pt, seq.into(), ts, pkt.arrival, pkt.payload.clone())
                    .marker(pkt.marker)
                    .nackable(nackable)
                    .ext_vals(exts);
                if let Some(p) = patch {
                    w = w.vp8_patch(p);
                }
                tx.write_rtp(w);
                v.packets_out += 1;
                if pkt.keyframe && !t.held.is_empty() {
                    // Started at this keyframe: the packets of its access
                    // unit that arrived before the one it was detected on.
                    let held: Vec<_> = t.held.take(ts_in).collect();
                    for (p, ts) in &held {
                        self.forward_ts(id, p, *ts, now);
                    }
                }
                true
            }
            NeedKeyframe => {
                if t.video {
                    t.held.hold(ts_in, (pkt.clone(), ts_in));
                }
                // A new source (spliced publisher) needs a keyframe: wait again.
                let ask = if v.waiter.is_waiting() {
                    v.waiter.ask_if_due(now)
                } else {
                    v.waiter.on_loss(now)
                };
                if ask {
                    self.actions.push(Action::Keyframe {
                        publisher: peer.publication.publisher(),
                        track: pkt.track,
                        layer: pkt.layer,
                    });
                }
                false
            }
            Stale => false,
        }
    }

    /// Publisher side: send the cached GOP of `track` to `viewer`.
    fn serve_gop(&mut self, publisher: u64, track: usize, viewer: PeerRef) {
        let now = Instant::now();
        let packets = match self.peers.get(&publisher).map(|p| &p.kind) {
            Some(PeerKind::Publisher(p)) => p
                .tracks
                .get(track)
                .and_then(|t| t.gop.as_ref())
                .map(|g| g.snapshot(now))
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if viewer.shard == self.idx {
            self.replay(viewer.id, track, packets, now);
        } else {
            let _ = self.shared.shards[viewer.shard].send(ShardMsg::GopReplay {
                viewer: viewer.id,
                track,
                packets,
            });
        }
    }

    /// Viewer side: queue the cached GOP with compressed timestamps, then the
    /// live packets held meanwhile (those newer than the cache), and start
    /// draining the queue.
    fn replay(&mut self, id: u64, track: usize, packets: Vec<Arc<MediaPacket>>, now: Instant) {
        let Some(PeerKind::Viewer(v)) = self.peers.get_mut(&id).map(|p| &mut p.kind) else {
            return;
        };
        let Some(Some(t)) = v.tracks.get_mut(track) else {
            return;
        };
        let Replay::Awaiting(held) = std::mem::replace(&mut t.replay, Replay::Done) else {
            return;
        };
        let ts = crate::forward::gop::replay_ts(&packets);
        let last = packets.last().map(|p| p.seq);
        let mut q: std::collections::VecDeque<(Arc<MediaPacket>, u32)> =
            packets.into_iter().zip(ts).collect();
        if !q.is_empty() {
            debug!(peer = id, packets = q.len(), "GOP cache replay");
            self.shared.metrics.gop_replays.inc();
        }
        q.extend(
            held.into_iter()
                .filter(|p| last.is_none_or(|s| p.seq > s))
                .map(|p| {
                    let ts = p.ts;
                    (p, ts)
                }),
        );
        t.replay = Replay::Draining(q);
        self.drain_replay(id, now);
    }

    /// Write up to one batch of queued replay packets per track; the rest
    /// waits for the next replay tick (see `peer_deadline`).
    fn drain_replay(&mut self, id: u64, now: Instant) {
        let Some(PeerKind::Viewer(v)) = self.peers.get_mut(&id).map(|p| &mut p.kind) else {
            return;
        };
        let mut batch: Vec<(Arc<MediaPacket>, u32)> = Vec::new();
        for t in v.tracks.iter_mut().flatten() {
            if let Replay::Draining(q) = &mut t.replay {
                let n = q.len().min(peer::WRITE_CHUNK);
                batch.extend(q.drain(..n));
                if q.is_empty() {
                    t.replay = Replay::Done;
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        v.replay_next = Some(now + peer::REPLAY_TICK);
        for (p, ts) in &batch {
            self.forward_ts(id, p, *ts, now);
        }
        self.send_written(id, now);
    }

    fn keyframe_to_publisher(&mut self, publisher: u64, track: usize, layer: u8, now: Instant) {
        let Some(peer) = self.peers.get_mut(&publisher) else {
            return;
        };
        let PeerKind::Publisher(p) = &mut peer.kind else {
            return;
        };
        let Some(tr) = p.tracks.get_mut(track) else {
            return;
        };
        let (throttle, rid) = match tr.layers.get_mut(layer as usize) {
            Some(l) => (&mut l.throttle, Some(l.rid)),
            None => (&mut tr.throttle, None),
        };
        if throttle.request(now) {
            request_keyframe(
                &mut peer.rtc,
                tr.mid,
                rid,
                tr.fir_only,
                &self.shared.metrics,
            );
            debug!(peer = publisher, track, layer, "keyframe request sent");
            self.drive(publisher, now);
        } else if let Some(due) = throttle.next_due()
            && peer.next_timeout.is_none_or(|t| due < t)
        {
            peer.next_timeout = Some(due);
            self.timers.push(Reverse((due, publisher)));
        }
    }

    /// Remove a publication and close its viewers on every worker.
    fn end_publication(&mut self, publication: &Arc<Publication>) {
        self.shared
            .registry
            .streams
            .remove_if(&publication.name, |_, p| p.id == publication.id);
        publication.end(crate::registry::Ended::Gone);
        for (s, tx) in self.shared.shards.iter().enumerate() {
            if s != self.idx {
                let _ = tx.send(ShardMsg::PublicationEnded {
                    publication: publication.id,
                });
            }
        }
        let viewers = self.subs.remove(&publication.id).unwrap_or_default();
        for v in viewers {
            self.close_peer(v, "publisher ended");
        }
    }

    /// End publications whose grace period passed without a new publisher.
    fn end_expired_publications(&mut self, now: Instant) {
        if self.grace.is_empty() {
            return;
        }
        let mut due = Vec::new();
        self.grace.retain(|(t, p, g)| {
            let spliced =
                p.live.load(Ordering::Acquire) || p.generation.load(Ordering::Acquire) != *g;
            if spliced {
                return false;
            }
            if now >= *t {
                due.push(p.clone());
                return false;
            }
            true
        });
        for p in due {
            info!(stream = %p.name, "publisher did not return within the grace period");
            self.end_publication(&p);
        }
    }

    /// End a peer: DTLS close_notify + RTCP BYE, unregister everything.
    fn close_peer(&mut self, id: u64, reason: &'static str) {
        let Some(mut peer) = self.peers.remove(&id) else {
            return;
        };
        if peer.rtc.is_alive() {
            let _ = peer.rtc.close();
            // Flush BYE/close_notify.
            for _ in 0..64 {
                match peer.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => self.out.push(
                        &self.shared.sockets,
                        t.source,
                        t.destination,
                        t.contents.into(),
                    ),
                    Ok(Output::Event(_)) => {}
                    _ => break,
                }
            }
        }
        let me = PeerRef {
            shard: self.idx,
            id,
        };
        self.shared.demux.remove(&peer.ufrag, &peer.addrs, me);
        for u in &peer.old_ufrags {
            self.shared.demux.remove(u, &[], me);
        }
        let registry = &self.shared.registry;
        if let Some((_, e)) = registry.sessions.remove(&peer.session)
            && reason == "closed"
        {
            // Closed by the peer (close_notify) before any DELETE: that
            // DELETE may still come and gets 200.
            registry.remember_closed(&peer.session, e.role, &e.stream, Instant::now());
        }
        self.shared.load[self.idx].fetch_sub(1, Ordering::Relaxed);
        let publication = peer.publication.clone();
        match &peer.kind {
            PeerKind::Publisher(_) => {
                if publication.publisher() == me {
                    publication.publisher_left();
                    let grace = self.shared.publisher_grace;
                    if publication.viewers() == 0 || grace.is_zero() {
                        self.end_publication(&publication);
                    } else {
                        // Viewers stay for the grace period: a compatible new
                        // publisher on the same name is spliced in.
                        let generation = publication.generation.load(Ordering::Acquire);
                        self.grace
                            .push((Instant::now() + grace, publication.clone(), generation));
                    }
                }
            }
            PeerKind::Viewer(_) => {
                if let Some(list) = self.subs.get_mut(&publication.id) {
                    list.retain(|v| *v != id);
                    if list.is_empty() {
                        self.subs.remove(&publication.id);
                    }
                }
                publication.viewers_per_shard[self.idx].fetch_sub(1, Ordering::Relaxed);
                publication.notify();
            }
        }
        self.shared
            .metrics
            .sessions_ended
            .with_label_values(&[reason])
            .inc();
        let _span = peer.span.clone().entered();
        info!(peer = id, session = %peer.session, stream = %publication.name, role = peer.role(), reason, "peer closed");
    }
}

fn request_keyframe(
    rtc: &mut str0m::Rtc,
    mid: str0m::media::Mid,
    rid: Option<str0m::media::Rid>,
    fir_only: bool,
    m: &crate::metrics::Metrics,
) {
    let (kind, label) = if fir_only {
        (KeyframeRequestKind::Fir, "fir")
    } else {
        (KeyframeRequestKind::Pli, "pli")
    };
    if let Some(rx) = rtc.direct_api().stream_rx_by_mid(mid, rid) {
        rx.request_keyframe(kind);
        m.keyframe_requests.with_label_values(&[label]).inc();
    }
}

fn sample_bitrate(
    p: &mut peer::PublisherState,
    publication: &crate::registry::Publication,
    now: Instant,
) {
    let dt = now.saturating_duration_since(p.last_sample);
    if dt >= Duration::from_secs(1) {
        let bytes = publication.bytes_in.load(Ordering::Relaxed);
        let bps = (bytes - p.last_bytes) * 8 * 1000 / dt.as_millis().max(1) as u64;
        publication.bitrate_in.store(bps, Ordering::Relaxed);
        for tr in &mut p.tracks {
            for (i, l) in tr.layers.iter_mut().enumerate() {
                if let Some(slot) = publication.layers.slot(i as u8) {
                    let bps = l.bytes * 8 * 1000 / dt.as_millis().max(1) as u64;
                    slot.bitrate.store(bps, Ordering::Relaxed);
                }
                l.bytes = 0;
            }
        }
        p.last_bytes = bytes;
        p.last_sample = now;
    }
}

/// Deadlines of our own (establishment, consent grace, role timers).
fn peer_deadline(peer: &Peer) -> Option<Instant> {
    let mut d = if peer.connected {
        None
    } else {
        Some(peer.created + ESTABLISH_TIMEOUT)
    };
    let mut min = |t: Instant| d = Some(d.map_or(t, |x: Instant| x.min(t)));
    if let Some(at) = peer.disconnected_at {
        min(at + DISCONNECT_GRACE);
    }
    match &peer.kind {
        PeerKind::Publisher(p) => {
            for t in &p.tracks {
                if let Some(due) = t.throttle.next_due() {
                    min(due);
                }
                for l in &t.layers {
                    if let Some(due) = l.throttle.next_due() {
                        min(due);
                    }
                }
            }
            min(p.last_sample + Duration::from_secs(1));
        }
        PeerKind::Viewer(v) => {
            if let Some(t) = v.waiter.next_retry() {
                min(t);
            }
            if let Some(t) = v.replay_next {
                min(t);
            }
            if peer.connected {
                min(v.layer_next);
            }
        }
    }
    d
}

fn expired(peer: &Peer, now: Instant) -> Option<&'static str> {
    if !peer.connected && now >= peer.created + ESTABLISH_TIMEOUT {
        return Some("ICE/DTLS establishment timeout");
    }
    if peer
        .disconnected_at
        .is_some_and(|at| now >= at + DISCONNECT_GRACE)
    {
        return Some("ICE consent lost");
    }
    None
}

/// The cumulative counters str0m's `MediaEgressStats` and
/// `MediaIngressStats` share, as [`MidCounters`].
macro_rules! mid_counters {
    ($s:expr) => {
        MidCounters {
            bytes: $s.bytes,
            packets: $s.packets,
            nacks: $s.nacks,
            plis: $s.plis,
            firs: $s.firs,
        }
    };
}

fn on_event(
    peer: &mut Peer,
    e: Event,
    now: Instant,
    shard: usize,
    shared: &Shared,
    actions: &mut Vec<Action>,
) {
    let gop_enabled = shared.gop_enabled;
    let m = &shared.metrics;
    // Media events are the hot path: no span there.
    let _span = (!matches!(e, Event::RtpPacket(_))).then(|| peer.span.clone().entered());
    match e {
        Event::Connected => {
            peer.connected = true;
            m.connect_seconds
                .with_label_values(&[peer.role()])
                .observe(now.saturating_duration_since(peer.created).as_secs_f64());
            info!(peer = peer.id, stream = %peer.publication.name, role = peer.role(), setup_ms = now.saturating_duration_since(peer.created).as_millis() as u64, "connected");
            if let Some(a) = peer.addrs.last() {
                peer.stats.set_remote(*a);
                peer.span.record("addr", tracing::field::display(a));
            }
            match &mut peer.kind {
                PeerKind::Publisher(_) => peer.publication.connected.store(true, Ordering::Relaxed),
                PeerKind::Viewer(v) => {
                    let ask = v.waiter.on_connected(now);
                    for (ti, t) in v.tracks.iter_mut().enumerate() {
                        let Some(t) = t.as_mut().filter(|t| t.video) else {
                            continue;
                        };
                        if ask {
                            actions.push(Action::Keyframe {
                                publisher: peer.publication.publisher(),
                                track: ti,
                                layer: t.gate.target(),
                            });
                        }
                        if gop_enabled {
                            t.replay = Replay::Awaiting(Vec::new());
                            actions.push(Action::GopRequest {
                                publisher: peer.publication.publisher(),
                                track: ti,
                                viewer: PeerRef { shard, id: peer.id },
                            });
                        }
                    }
                }
            }
        }
        Event::IceConnectionStateChange(s) => {
            debug!(peer = peer.id, ?s, "ICE state");
            match s {
                IceConnectionState::Disconnected if peer.disconnected_at.is_none() => {
                    peer.disconnected_at = Some(now);
                }
                IceConnectionState::Connected | IceConnectionState::Completed => {
                    peer.disconnected_at = None
                }
                _ => {}
            }
        }
        Event::RtpPacket(p) => {
            let PeerKind::Publisher(ps) = &mut peer.kind else {
                return;
            };
            let ssrc = p.header.ssrc;
            let publication = &peer.publication;
            let (track, layer) = match ps.ssrc_cache.iter().find(|(s, _, _)| *s == ssrc) {
                Some((_, t, l)) => (*t, *l),
                None => {
                    let rx = peer
                        .rtc
                        .direct_api()
                        .stream_rx(&ssrc)
                        .map(|s| (s.mid(), s.rid()));
                    let Some((mid, rid)) = rx else {
                        return;
                    };
                    let Some(t) = ps.tracks.iter().position(|t| t.mid == mid) else {
                        return;
                    };
                    let tr = &mut ps.tracks[t];
                    let layer = rid.filter(|_| tr.codec.is_video()).and_then(|r| {
                        let slot = publication.layers.slot_of(&r, *ssrc)?;
                        while tr.layers.len() <= slot as usize {
                            tr.layers.push(peer::PubLayer {
                                rid: r,
                                throttle: crate::forward::KeyframeThrottle::new(
                                    peer::KEYFRAME_MIN_INTERVAL,
                                ),
                                bytes: 0,
                                key_start: Default::default(),
                            });
                        }
                        tr.layers[slot as usize].rid = r;
                        info!(peer = peer.id, rid = %r, ssrc = *ssrc, slot, "simulcast layer");
                        Some(slot)
                    });
                    if ps.ssrc_cache.len() < 16 {
                        ps.ssrc_cache.push((ssrc, t, layer));
                    }
                    (t, layer)
                }
            };
            let generation = peer.publication.generation.load(Ordering::Relaxed);
            if generation != ps.generation {
                return; // replaced (replace policy): no longer this stream's source
            }
            let tr = &mut ps.tracks[track];
            let ts = p.header.timestamp;
            let keyframe = match layer.and_then(|l| tr.layers.get_mut(l as usize)) {
                Some(pl) => pl.key_start.on_packet(tr.codec, ts, &p.payload),
                None => tr.key_start.on_packet(tr.codec, ts, &p.payload),
            };
            if let Some(l) = layer {
                publication.layers.touch(l, p.timestamp);
                if let Some(pl) = tr.layers.get_mut(l as usize) {
                    pl.bytes += p.payload.len() as u64;
                    if keyframe {
                        pl.throttle.on_keyframe();
                        if let (Some((w, h)), Some(slot)) = (
                            crate::layers::keyframe_size(tr.codec, &p.payload),
                            publication.layers.slot(l),
                        ) {
                            slot.width.store(w, Ordering::Relaxed);
                            slot.height.store(h, Ordering::Relaxed);
                        }
                    }
                }
            } else if keyframe && tr.codec.is_video() {
                tr.throttle.on_keyframe();
            }
            publication.packets_in.fetch_add(1, Ordering::Relaxed);
            m.packets_in.inc();
            m.bytes_in.inc_by(p.payload.len() as u64);
            publication
                .bytes_in
                .fetch_add(p.payload.len() as u64, Ordering::Relaxed);
            let viewers = publication.viewers();
            if viewers == 0 && tr.gop.is_none() {
                return;
            }
            let pkt = Arc::new(MediaPacket {
                video: tr.codec.is_video(),
                publication: publication.id,
                track,
                layer: layer.unwrap_or(0),
                source: (*ssrc as u64) | (generation << 32),
                seq: *p.seq_no,
                ts: p.header.timestamp,
                marker: p.header.marker,
                keyframe,
                arrival: p.timestamp,
                audio_level: p.header.ext_vals.audio_level,
                voice_activity: p.header.ext_vals.voice_activity,
                payload: p.payload,
            });
            if let Some(g) = tr.gop.as_mut().filter(|_| layer.is_none()) {
                g.push(&pkt);
            }
            if viewers > 0 {
                actions.push(Action::Fanout(pkt, publication.clone()));
            }
        }
        Event::KeyframeRequest(r) => {
            m.viewer_keyframe_requests.inc();
            if let PeerKind::Viewer(v) = &mut peer.kind {
                // Map the viewer's mid to the publisher track it carries.
                if let Some(ti) = v
                    .tracks
                    .iter()
                    .position(|t| t.as_ref().is_some_and(|t| t.mid == r.mid))
                {
                    let layer = v.tracks[ti].as_ref().map_or(0, |t| t.gate.target());
                    actions.push(Action::Keyframe {
                        publisher: peer.publication.publisher(),
                        track: ti,
                        layer,
                    });
                }
            }
        }
        Event::Closed => {
            peer.closing = true;
        }
        Event::EgressBitrateEstimate(
            str0m::bwe::BweKind::Twcc { estimate, .. } | str0m::bwe::BweKind::Remb { estimate, .. },
        ) => {
            if let PeerKind::Viewer(v) = &mut peer.kind {
                debug!(
                    peer = peer.id,
                    estimate = estimate.as_u64(),
                    "egress bitrate estimate"
                );
                v.bwe = Some(estimate.as_u64());
            }
        }
        Event::MediaEgressStats(s) => {
            // A viewer's receiver reports about what we send it.
            let c = mid_counters!(s);
            let d = fold_stats(
                peer,
                m,
                now,
                (s.mid, c, s.rtt, s.loss),
                ["from_viewers", "viewer"],
            );
            if crate::rtc_config::needs_rtx_cap(s.loss, d.nacks, d.packets) {
                cap_resends(peer, s.mid, m);
            }
            if let Some(rtt) = s.rtt {
                resize_resends(peer, s.mid, rtt);
            }
        }
        Event::MediaIngressStats(s) => {
            // What we receive from a publisher.
            let c = mid_counters!(s);
            fold_stats(
                peer,
                m,
                now,
                (s.mid, c, s.rtt, s.loss),
                ["to_publishers", "publisher"],
            );
        }
        _ => {}
    }
}

/// One mid's RTCP-derived report: (mid, counters, RTT, fraction lost).
type MidReport = (Mid, MidCounters, Option<Duration>, Option<f32>);

/// A viewer's track with mid `mid` whose packets are kept for resends
/// (video); `None` for publishers and other tracks.
fn nackable_track(kind: &mut PeerKind, mid: Mid) -> Option<&mut ViewerTrack> {
    let PeerKind::Viewer(v) = kind else {
        return None;
    };
    v.tracks
        .iter_mut()
        .flatten()
        .find(|t| t.mid == mid && t.nackable)
}

/// Turn str0m's RTX ratio cap on for viewer `peer`'s video track `mid`
/// (once; see [`crate::rtc_config::set_resend_history`]): it reported
/// enough loss that its NACKs could make resends a large share of what it
/// is sent.
fn cap_resends(peer: &mut Peer, mid: Mid, m: &Metrics) {
    let Some(t) = nackable_track(&mut peer.kind, mid).filter(|t| !t.rtx_capped) else {
        return;
    };
    t.rtx_capped = true;
    if apply_resend_history(&mut peer.rtc, &peer.publication, t) {
        m.rtx_caps.inc();
        debug!(peer = peer.id, %mid, "lossy viewer: RTX ratio cap on");
    }
}

/// Feed viewer `peer`'s round-trip time `rtt` (from its receiver report
/// about video track `mid`) to the track's
/// [`crate::rtc_config::ResendWindow`], and resize str0m's resend history
/// when the window moves.
fn resize_resends(peer: &mut Peer, mid: Mid, rtt: std::time::Duration) {
    let Some(t) = nackable_track(&mut peer.kind, mid) else {
        return;
    };
    let Some(window) = t.resend.on_rtt(rtt) else {
        return;
    };
    if apply_resend_history(&mut peer.rtc, &peer.publication, t) {
        debug!(peer = peer.id, %mid, ?rtt, ?window, "resend history resized");
    }
}

/// Re-size str0m's resend history of viewer track `t` from its window and
/// RTX cap at the publication's current rate (see
/// [`crate::rtc_config::set_resend_history`]). False when the track has no
/// send stream.
fn apply_resend_history(rtc: &mut str0m::Rtc, publication: &Publication, t: &ViewerTrack) -> bool {
    let bps = publication.bitrate_in.load(Ordering::Relaxed);
    let mut api = rtc.direct_api();
    let Some(tx) = api.stream_tx_by_mid(t.mid, None) else {
        return false;
    };
    crate::rtc_config::set_resend_history(tx, bps, t.resend.window(), t.rtx_capped);
    true
}

/// Fold a report into the peer's [`crate::stats::SessionStats`] and the
/// metrics; `labels` = (NACK direction, loss side).
fn fold_stats(
    peer: &mut Peer,
    m: &Metrics,
    now: Instant,
    r: MidReport,
    labels: [&str; 2],
) -> crate::stats::Delta {
    let (mid, c, rtt, loss) = r;
    let d = peer.folder.fold(mid, c, rtt, loss, now, &peer.stats);
    m.nacks.with_label_values(&[labels[0]]).inc_by(d.nacks);
    if let Some(l) = loss {
        m.loss_ratio
            .with_label_values(&[labels[1]])
            .observe(f64::from(l));
    }
    d
}

/// Re-choose the simulcast layer of each video track of viewer `peer`:
/// the pinned RID when it is active, otherwise [`crate::forward::AutoLayer`]
/// from the bandwidth estimate; ask for a keyframe of the target while a
/// switch is pending (throttled per layer at the publisher).
fn evaluate_layers(peer: &mut Peer, now: Instant, actions: &mut Vec<Action>) {
    use crate::forward::layer::{LayerInfo, MAX_LAYERS};
    let PeerKind::Viewer(v) = &mut peer.kind else {
        return;
    };
    v.layer_next = now + peer::LAYER_TICK;
    let table = &peer.publication.layers;
    let mut buf = [LayerInfo {
        index: 0,
        bitrate: 0,
        pixels: 0,
    }; MAX_LAYERS];
    let n = table.active(now, &mut buf);
    let active = &buf[..n];
    let pinned = v
        .manual
        .and_then(|r| table.find(&r))
        .filter(|i| active.iter().any(|l| l.index == *i));
    let mut top_bps = 0;
    let mut cur_bps = 0;
    for (ti, t) in v.tracks.iter_mut().enumerate() {
        let Some(t) = t.as_mut().filter(|t| t.video) else {
            continue;
        };
        let target = if n == 0 {
            t.gate.target()
        } else {
            let auto = t.auto.choose(active, t.gate.current(), v.bwe, now);
            pinned.or(auto).unwrap_or(0)
        };
        t.gate.set_target(target);
        let cur = active
            .iter()
            .find(|l| Some(l.index) == t.gate.current())
            .map_or(0, |l| l.bitrate);
        for l in active {
            top_bps = top_bps.max(l.bitrate);
            // Pad towards the next layer up, so the estimate can reach it.
            if l.bitrate > cur && (cur_bps <= cur || l.bitrate < cur_bps) {
                cur_bps = l.bitrate;
            }
        }
        cur_bps = if pinned.is_some() {
            cur
        } else {
            cur_bps.max(cur)
        };
        if n > 1 && t.gate.switching() {
            actions.push(Action::Keyframe {
                publisher: peer.publication.publisher(),
                track: ti,
                layer: target,
            });
        }
    }
    if n > 1 && v.bwe.is_some() {
        // Probe towards the top layer; sustain (with padding) the next layer
        // up's rate so the estimate can show it fits (RFC 8698-style ramp-up).
        peer.rtc.bwe().set_bitrate(
            str0m::bwe::Bitrate::bps(cur_bps),
            str0m::bwe::Bitrate::bps(top_bps.max(cur_bps) * 5 / 4),
        );
    }
}
