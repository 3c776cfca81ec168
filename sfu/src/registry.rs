//! Streams (publications) and sessions known to the server.
//!
//! Written by the HTTP layer on POST/DELETE and by workers when a peer ends;
//! read on the hot path only through the `Arc<Publication>` each peer holds.

use crate::codecs::Chosen;
use crate::demux::PeerRef;
use dashmap::DashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// One live publisher on a stream name and what viewers need to know about it.
#[derive(Debug)]
pub struct Publication {
    /// Process-unique id.
    pub id: u64,
    /// Stream name (`/whip/{name}`).
    pub name: String,
    /// The publisher's tracks: one format per audio/video m-line. Replaced when
    /// a compatible publisher is spliced in.
    pub tracks: RwLock<Vec<Chosen>>,
    /// Where the current publisher peer lives.
    pub publisher: Mutex<PeerRef>,
    /// A publisher is attached (false during the grace period after it left).
    pub live: AtomicBool,
    /// Incremented on every splice; part of each packet's source identity so
    /// viewers re-base at the new publisher's first keyframe.
    pub generation: AtomicU64,
    /// Viewers of this publication per worker (index = worker).
    pub viewers_per_shard: Vec<AtomicU32>,
    /// ICE+DTLS of the publisher is up.
    pub connected: AtomicBool,
    /// RTP payload bytes received.
    pub bytes_in: AtomicU64,
    /// RTP packets received.
    pub packets_in: AtomicU64,
    /// Ingress bitrate over the last second, bit/s.
    pub bitrate_in: AtomicU64,
    /// When the WHIP POST was accepted.
    pub created: Instant,
    /// Simulcast layers of the video track (empty without simulcast).
    pub layers: crate::layers::LayerTable,
    /// Change signal for the WHEP server-sent events extension: notified
    /// (never on the packet path) when the publisher attaches or leaves and
    /// when the viewer count changes; carries why the publication ended.
    pub signal: tokio::sync::watch::Sender<Signal>,
}

/// Why a publication ended (see [`Publication::signal`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// No publisher returned within the grace period (or the last one left
    /// without viewers).
    Gone,
    /// A publisher with other codecs took the name: viewers must re-POST
    /// (WHEP `reconnect` event).
    Incompatible,
}

/// State carried by [`Publication::signal`]; everything else (liveness,
/// generation, viewer count, layers) is read from the publication itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signal {
    /// Set once when the publication ends.
    pub ended: Option<Ended>,
}

impl Publication {
    /// Wake the publication's event-stream tasks (liveness or viewer count
    /// changed). Cheap; not for the packet path.
    pub fn notify(&self) {
        self.signal.send_modify(|_| {});
    }

    /// Record that the publication ended and why (first reason wins), and
    /// wake its event-stream tasks.
    pub fn end(&self, why: Ended) {
        self.signal.send_modify(|s| {
            s.ended.get_or_insert(why);
        });
    }

    /// The current publisher.
    pub fn publisher(&self) -> PeerRef {
        *self.publisher.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the current tracks.
    pub fn tracks(&self) -> Vec<Chosen> {
        self.tracks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// True when `new` can replace the current tracks without renegotiating
    /// viewers: same kinds and codecs, in the same order.
    pub fn compatible(&self, new: &[Chosen]) -> bool {
        let cur = self.tracks.read().unwrap_or_else(|e| e.into_inner());
        cur.len() == new.len()
            && cur.iter().zip(new).all(|(a, b)| {
                a.kind == b.kind && a.codec == b.codec && a.clock_rate == b.clock_rate
            })
    }

    /// Attach a new publisher (splice). Returns false if one is attached.
    pub fn splice(&self, publisher: PeerRef, tracks: Vec<Chosen>) -> bool {
        if self
            .live
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        *self.publisher.lock().unwrap_or_else(|e| e.into_inner()) = publisher;
        *self.tracks.write().unwrap_or_else(|e| e.into_inner()) = tracks;
        self.layers.reset();
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.connected.store(false, Ordering::Relaxed);
        self.notify();
        true
    }

    /// Replace the live publisher (replace policy): the new one takes over
    /// with a new generation, so viewers re-base onto it as on a splice.
    /// Returns the publisher that was replaced.
    pub fn take_over(&self, publisher: PeerRef, tracks: Vec<Chosen>) -> PeerRef {
        let old = std::mem::replace(
            &mut *self.publisher.lock().unwrap_or_else(|e| e.into_inner()),
            publisher,
        );
        *self.tracks.write().unwrap_or_else(|e| e.into_inner()) = tracks;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.connected.store(false, Ordering::Relaxed);
        self.live.store(true, Ordering::Release);
        self.notify();
        old
    }

    /// The current publisher left (DELETE, DTLS close, ICE loss): none is
    /// attached or sending any more, so the ingress bitrate reads 0 (it is
    /// otherwise only updated by the publisher's own worker, which stops
    /// with it). Viewers wait for a splice (see [`Publication::splice`]).
    pub fn publisher_left(&self) {
        self.live.store(false, Ordering::Release);
        self.connected.store(false, Ordering::Relaxed);
        self.bitrate_in.store(0, Ordering::Relaxed);
        self.notify();
    }

    /// Total viewers over all workers.
    pub fn viewers(&self) -> u32 {
        self.viewers_per_shard
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// WHIP (publisher) or WHEP (viewer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// WHIP publisher.
    Publisher,
    /// WHEP viewer.
    Viewer,
}

impl Role {
    /// `whip` or `whep`: the URL path segment.
    pub fn path(self) -> &'static str {
        match self {
            Role::Publisher => "whip",
            Role::Viewer => "whep",
        }
    }
}

/// A session resource (`Location` of a 201).
#[derive(Debug, Clone)]
pub struct SessionEntry {
    /// Its share of the session limit, given back when the entry is removed
    /// (and the copies a request handler took of it are dropped).
    pub slot: Arc<crate::slots::Slot>,
    /// Role.
    pub role: Role,
    /// Stream name.
    pub stream: String,
    /// Where the peer lives.
    pub peer: PeerRef,
    /// Live statistics, written by the peer's worker.
    pub stats: Arc<crate::stats::SessionStats>,
    /// The client's offer as received (an ICE restart re-offers it with
    /// new credentials).
    pub offer: Arc<str>,
    /// Current strong entity tag of the ICE session (RFC 9725 §4.3.1),
    /// quoted; changes with every ICE restart.
    pub etag: String,
    /// ICE restarts done so far.
    pub ice_restarts: u32,
    /// The client's ICE ufrag from its offer (a PATCH with another one is an
    /// ICE restart, RFC 9725 §4.3.3).
    pub remote_ufrag: String,
    /// Server-sent event streams of a WHEP viewer session (shared by clones;
    /// dropped with the registry's entry, which ends those streams).
    pub sse: Arc<SessionSse>,
}

/// The WHEP server-sent events state of one session
/// (see [`crate::http::sse_ext`]).
#[derive(Debug, Default)]
pub struct SessionSse {
    /// Event stream id (32 hex digits) → the stream. Removing one (its
    /// DELETE) or dropping the whole map with the session ends its GETs.
    pub streams: Mutex<std::collections::HashMap<String, SseStream>>,
}

/// One event stream created by a POST to the extension's entry point.
#[derive(Debug)]
pub struct SseStream {
    /// Bit mask of the subscribed events ([`crate::http::sse_ext::EVENTS`] order).
    pub events: u8,
    /// Never sent on: the receiver (the current GET's task) sees the channel
    /// close when the stream is deleted, its session ends, or a new GET
    /// replaces this sender.
    pub alive: tokio::sync::watch::Sender<()>,
}

/// All streams and sessions.
#[derive(Debug, Default)]
pub struct Registry {
    /// Stream name → current publication.
    pub streams: DashMap<String, Arc<Publication>>,
    /// Session id (128-bit hex) → session.
    pub sessions: DashMap<String, SessionEntry>,
    /// Sessions the peer itself closed (DTLS close_notify, RFC 5246 §7.2.1)
    /// in the last [`CLOSED_KEEP`]: session id → (role, stream, when). A
    /// client that closes its peer connection before its DELETE (the medooze
    /// `whip-whep` library's `stop()`, a browser's `pc.close()`) still gets
    /// `200` for that DELETE instead of `404`.
    pub closed_by_peer: DashMap<String, (Role, String, Instant)>,
    /// Stream name → when its live publisher was last replaced
    /// (`--replace-publisher`) and how many replacements in a row came less
    /// than [`REPLACE_FLAP_WINDOW`] apart (see [`Registry::note_replaced`]).
    pub replaced: DashMap<String, (Instant, u32)>,
    /// The session limit's reservations (one per entry of `sessions` and per
    /// POST being answered).
    pub slots: crate::slots::SessionSlots,
}

/// Replacements of one stream's publisher closer together than this count as
/// one run (see [`Registry::note_replaced`]).
pub const REPLACE_FLAP_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);
/// Replacements in one run from which two publishers are taken to share a
/// stream name (each reconnects after the other replaced it).
pub const REPLACE_FLAP_COUNT: u32 = 3;

/// How long a session closed by its peer still answers its DELETE with 200.
pub const CLOSED_KEEP: std::time::Duration = std::time::Duration::from_secs(30);

impl Registry {
    /// Remember that the peer of session `id` closed it at `now` (see
    /// [`Registry::closed_by_peer`]); forgets entries older than
    /// [`CLOSED_KEEP`].
    pub fn remember_closed(&self, id: &str, role: Role, stream: &str, now: Instant) {
        self.closed_by_peer
            .retain(|_, (_, _, at)| now.saturating_duration_since(*at) < CLOSED_KEEP);
        self.closed_by_peer
            .insert(id.to_string(), (role, stream.to_string(), now));
    }

    /// Record that `stream`'s live publisher was replaced at `now`. Returns
    /// the number of replacements in the current run (each less than
    /// [`REPLACE_FLAP_WINDOW`] after the previous one) once it reaches
    /// [`REPLACE_FLAP_COUNT`], else `None`: two publishers that both
    /// reconnect after being replaced take turns for ever, and the operator
    /// needs to hear about it. Runs older than the window are forgotten.
    pub fn note_replaced(&self, stream: &str, now: Instant) -> Option<u32> {
        self.replaced
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < REPLACE_FLAP_WINDOW);
        let mut e = self.replaced.entry(stream.to_string()).or_insert((now, 0));
        e.0 = now;
        e.1 += 1;
        (e.1 >= REPLACE_FLAP_COUNT).then_some(e.1)
    }

    /// True (once) when session `id` of `role` on `stream` was closed by its
    /// peer less than [`CLOSED_KEEP`] before `now`.
    pub fn take_closed(&self, id: &str, role: Role, stream: &str, now: Instant) -> bool {
        self.closed_by_peer
            .remove_if(id, |_, (r, s, at)| {
                *r == role && s == stream && now.saturating_duration_since(*at) < CLOSED_KEEP
            })
            .is_some()
    }
}

/// A new 128-bit session id from the OS CSPRNG (RFC 4086), as 32 hex digits.
pub fn new_session_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("OS random source");
    let mut s = String::with_capacity(32);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Stream names: 1–64 characters of `[A-Za-z0-9_.-]`, not starting with `.`.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_closed_sessions_are_remembered_once_for_a_while() {
        let r = Registry::default();
        let t0 = Instant::now();
        r.remember_closed("a", Role::Viewer, "cam", t0);
        assert!(
            !r.take_closed("a", Role::Publisher, "cam", t0),
            "other role"
        );
        assert!(
            !r.take_closed("a", Role::Viewer, "other", t0),
            "other stream"
        );
        assert!(r.take_closed("a", Role::Viewer, "cam", t0 + CLOSED_KEEP / 2));
        assert!(!r.take_closed("a", Role::Viewer, "cam", t0), "only once");
        r.remember_closed("b", Role::Publisher, "cam", t0);
        assert!(
            !r.take_closed("b", Role::Publisher, "cam", t0 + CLOSED_KEEP),
            "expired"
        );
        r.remember_closed("c", Role::Publisher, "cam", t0 + CLOSED_KEEP * 2);
        assert_eq!(r.closed_by_peer.len(), 1, "old entries pruned on insert");
    }

    #[test]
    fn replacements_in_quick_succession_are_reported_from_the_third() {
        let r = Registry::default();
        let t0 = Instant::now();
        let s = std::time::Duration::from_secs;
        assert_eq!(r.note_replaced("cam", t0), None);
        assert_eq!(r.note_replaced("cam", t0 + s(5)), None);
        assert_eq!(r.note_replaced("other", t0 + s(6)), None, "per stream");
        assert_eq!(r.note_replaced("cam", t0 + s(10)), Some(3));
        assert_eq!(r.note_replaced("cam", t0 + s(39)), Some(4), "29 s apart");
        // A replacement a window after the last starts a new run.
        assert_eq!(
            r.note_replaced("cam", t0 + s(39) + REPLACE_FLAP_WINDOW),
            None
        );
        assert!(!r.replaced.contains_key("other"), "old runs forgotten");
    }

    #[test]
    fn a_publisher_that_left_sends_nothing() {
        let p = Publication {
            id: 1,
            name: "cam".into(),
            tracks: Default::default(),
            publisher: Mutex::new(PeerRef { shard: 0, id: 1 }),
            live: AtomicBool::new(true),
            generation: AtomicU64::new(0),
            viewers_per_shard: vec![AtomicU32::new(1)],
            connected: AtomicBool::new(true),
            bytes_in: AtomicU64::new(5000),
            packets_in: AtomicU64::new(5),
            bitrate_in: AtomicU64::new(1_000_000),
            created: Instant::now(),
            layers: Default::default(),
            signal: Default::default(),
        };
        p.publisher_left();
        assert!(!p.live.load(Ordering::Acquire));
        assert!(!p.connected.load(Ordering::Relaxed));
        assert_eq!(p.bitrate_in.load(Ordering::Relaxed), 0);
        assert_eq!(p.bytes_in.load(Ordering::Relaxed), 5000, "totals are kept");
    }

    #[test]
    fn session_ids_are_unique_and_long() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = new_session_id();
            assert_eq!(id.len(), 32);
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn stream_names() {
        assert!(valid_stream_name("cam-1.main_2"));
        assert!(!valid_stream_name(""));
        assert!(!valid_stream_name("../etc"));
        assert!(!valid_stream_name("a/b"));
        assert!(!valid_stream_name(&"x".repeat(65)));
    }
}
