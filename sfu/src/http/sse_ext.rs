//! WHEP server-sent events extension
//! (`urn:ietf:params:whep:ext:core:server-sent-events`, draft-ietf-wish-whep
//! §4.6.1 "Server Sent Events extension"), for viewer sessions.
//!
//! * The WHEP `201` carries `Link: </whep/{stream}/{session}/sse>;
//!   rel="urn:ietf:params:whep:ext:core:server-sent-events";
//!   events="active,inactive,layers,viewercount,reconnect"`.
//! * `POST` on that entry point, body a JSON array of event names (or empty:
//!   all of them; unknown names are ignored) → `201` with `Location:
//!   /whep/{stream}/{session}/sse/{id}`, the event stream. Same credential as
//!   the session (`401` otherwise); unknown session → `404`.
//! * `GET` on the event stream → `200 text/event-stream` (WHATWG HTML
//!   "Server-sent events"): `event: NAME` + one `data: JSON` line per event,
//!   `: keep-alive` comments every [`KEEPALIVE`]. The event stream URL is an
//!   unguessable capability (a browser `EventSource` cannot send an
//!   `Authorization` header), like the session URL itself.
//! * `DELETE` on the event stream → `200`; later GETs → `404`. Ending the WHEP
//!   session (DELETE, consent expiry, grace period) ends its event streams. A
//!   new GET on an event stream ends the previous one (one task per stream).
//!
//! Events: `active` (`{}`) when the stream has a publisher (at connect, and
//! when a new publisher is spliced in), `inactive` (`{}`) when it left
//! (viewers wait in the grace period), `layers` (`{"<m-line index>":
//! [{"rid","encodingId","bitrate","width","height","active"}]}`, bitrate in
//! bit/s, 0 when inactive as [`crate::layers::LayerTable::snapshot`] reads
//! it) when the set of simulcast layers or their
//! resolution/activity changes, `viewercount` (`{"viewercount":N}`) at most
//! once per [`VIEWERCOUNT_INTERVAL`], `reconnect` (`{}`) when the session is
//! ended because a publisher with other codecs took the name (re-POST the
//! WHEP endpoint), after which the stream ends.
//!
//! Nothing runs on the packet path: one task per open GET wakes on the
//! publication's [`crate::registry::Publication::signal`] and every [`TICK`].

use super::response::{Body, Resp, empty, error};
use super::sessions::App;
use crate::layers::LayerView;
use crate::registry::{Ended, Publication, Role, SessionEntry, SseStream, new_session_id};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Frame;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::debug;

/// The Link relation of the extension.
pub const REL: &str = "urn:ietf:params:whep:ext:core:server-sent-events";

/// Supported events; bit `i` of an event mask is `EVENTS[i]`.
pub const EVENTS: [&str; 5] = ["active", "inactive", "layers", "viewercount", "reconnect"];

/// Mask with every event.
pub const ALL: u8 = (1 << EVENTS.len()) - 1;

/// A keep-alive comment is sent after this much silence (proxies and load
/// balancers drop idle connections after 30–60 s).
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Shortest interval between two `viewercount` events of one stream.
pub const VIEWERCOUNT_INTERVAL: Duration = Duration::from_secs(1);

/// How often a stream re-reads the layer table and pending viewer counts.
pub const TICK: Duration = Duration::from_millis(500);

/// Most event streams (POSTs) one session may hold.
pub const MAX_STREAMS: usize = 8;

/// `Link` header value advertising the extension for a viewer session.
pub fn link(stream: &str, session: &str) -> String {
    format!(
        "</whep/{stream}/{session}/sse>; rel=\"{REL}\"; events=\"{}\"",
        EVENTS.join(",")
    )
}

fn bit(name: &str) -> u8 {
    EVENTS.iter().position(|e| *e == name).map_or(0, |i| 1 << i)
}

/// The event mask of a POST body: empty → [`ALL`]; a JSON array of strings
/// → those of [`EVENTS`] (others ignored). Anything else is an error.
pub fn parse_events(body: &str) -> Result<u8, &'static str> {
    if body.trim().is_empty() {
        return Ok(ALL);
    }
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|_| "body must be a JSON array of event names")?;
    let list = v
        .as_array()
        .ok_or("body must be a JSON array of event names")?;
    let mut mask = 0;
    for e in list {
        mask |= bit(e.as_str().ok_or("event names must be strings")?);
    }
    Ok(mask)
}

fn viewer_entry(app: &App, stream: &str, session: &str) -> Option<SessionEntry> {
    app.shared
        .registry
        .sessions
        .get(session)
        .map(|e| e.clone())
        .filter(|e| e.role == Role::Viewer && e.stream == stream)
}

/// `POST /whep/{stream}/{session}/sse`: create an event stream → `201`.
pub fn create(app: &App, stream: &str, session: &str, body: &str) -> Resp {
    let Some(entry) = viewer_entry(app, stream, session) else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    let events = match parse_events(body) {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let id = new_session_id();
    {
        let mut streams = entry.sse.streams.lock().unwrap_or_else(|e| e.into_inner());
        if streams.len() >= MAX_STREAMS {
            return error(
                StatusCode::CONFLICT,
                format!("at most {MAX_STREAMS} event streams per session"),
            );
        }
        streams.insert(
            id.clone(),
            SseStream {
                events,
                alive: watch::Sender::new(()),
            },
        );
    }
    debug!(stream, session, events, "SSE event stream created");
    let mut r = empty(StatusCode::CREATED);
    let loc = format!("/whep/{stream}/{session}/sse/{id}");
    r.headers_mut().insert(
        LOCATION,
        HeaderValue::from_str(&loc).expect("ascii location"),
    );
    r
}

/// `DELETE /whep/{stream}/{session}/sse/{id}` → `200`, or `404`.
pub fn delete(app: &App, stream: &str, session: &str, id: &str) -> Resp {
    let removed = viewer_entry(app, stream, session).and_then(|e| {
        e.sse
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id)
    });
    match removed {
        Some(_) => empty(StatusCode::OK),
        None => error(StatusCode::NOT_FOUND, "no such event stream"),
    }
}

/// `GET /whep/{stream}/{session}/sse/{id}`: the event stream → `200
/// text/event-stream`, open until the session or the event stream ends.
/// `probe` (a `HEAD`): the same status and headers, but the event stream
/// is neither started nor is a running GET of it ended.
pub fn open(app: &App, stream: &str, session: &str, id: &str, probe: bool) -> Resp {
    let Some(entry) = viewer_entry(app, stream, session) else {
        return error(StatusCode::NOT_FOUND, "no such event stream");
    };
    if probe {
        let known = entry
            .sse
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id);
        return if !known {
            error(StatusCode::NOT_FOUND, "no such event stream")
        } else if !app.shared.registry.streams.contains_key(stream) {
            error(StatusCode::NOT_FOUND, "no such stream")
        } else {
            event_stream_response(super::response::full(Bytes::new()))
        };
    }
    // A new `alive` sender per GET: the previous GET of this event stream
    // (an EventSource that reconnected) ends, so each stream has one task.
    let Some((events, alive)) = entry
        .sse
        .streams
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(id)
        .map(|s| {
            s.alive = watch::Sender::new(());
            (s.events, s.alive.subscribe())
        })
    else {
        return error(StatusCode::NOT_FOUND, "no such event stream");
    };
    let Some(publication) = app.shared.registry.streams.get(stream).map(|p| p.clone()) else {
        return error(StatusCode::NOT_FOUND, "no such stream");
    };
    let mline = crate::sdp_scan::scan(&entry.offer)
        .ok()
        .and_then(|o| {
            o.media
                .iter()
                .position(|m| m.kind == crate::sdp_scan::Kind::Video)
        })
        .unwrap_or(0);
    // The session entry (and with it the stream's `alive` sender) must not
    // be kept alive by this task.
    drop(entry);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run(tx, publication, events, alive, mline));
    debug!(stream, session, "SSE event stream opened");
    event_stream_response(SseBody(rx).boxed())
}

/// A `200 text/event-stream` answer with `body`.
fn event_stream_response(body: Body) -> Resp {
    let mut r = hyper::Response::new(body);
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("X-Accel-Buffering", HeaderValue::from_static("no"));
    r
}

/// A streaming body fed by the event task.
struct SseBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// One SSE message: `event: NAME\ndata: DATA\n\n` (data on a single line,
/// as the draft requires; JSON from serde has no raw newlines).
pub fn frame(name: &str, data: &str) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// What the event task reads from a publication at each wake-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// A publisher is attached.
    pub live: bool,
    /// Publisher generation (changes on every splice / take-over).
    pub generation: u64,
    /// Why the publication ended, if it did.
    pub ended: Option<Ended>,
    /// Viewers of the publication.
    pub viewers: u32,
    /// Simulcast layers (empty without simulcast).
    pub layers: Vec<LayerView>,
}

impl Snapshot {
    /// Read `p` now.
    pub fn of(p: &Publication) -> Snapshot {
        let ended = p.signal.borrow().ended;
        Snapshot {
            generation: p.generation.load(Ordering::Acquire),
            live: p.live.load(Ordering::Acquire),
            ended,
            viewers: p.viewers(),
            layers: if p.layers.is_simulcast() {
                p.layers.snapshot(std::time::Instant::now())
            } else {
                Vec::new()
            },
        }
    }
}

type LayerKey = Vec<(String, bool, u32, u32)>;

/// Turns successive [`Snapshot`]s into events (the state of one stream).
#[derive(Debug)]
pub struct Tracker {
    active: bool,
    generation: u64,
    viewers: Option<u32>,
    viewers_at: Option<Instant>,
    layers: LayerKey,
    mline: usize,
}

impl Tracker {
    /// A tracker for a viewer whose video is m-line `mline`, starting at
    /// publisher generation `generation` (nothing sent yet).
    pub fn new(generation: u64, mline: usize) -> Tracker {
        Tracker {
            active: false,
            generation,
            viewers: None,
            viewers_at: None,
            layers: Vec::new(),
            mline,
        }
    }

    /// The events due for `s` at `now` (name, JSON data), and whether the
    /// stream is over.
    pub fn step(&mut self, s: &Snapshot, now: Instant) -> (Vec<(&'static str, String)>, bool) {
        let mut out = Vec::new();
        match s.ended {
            Some(Ended::Incompatible) => {
                out.push(("reconnect", "{}".to_string()));
                return (out, true);
            }
            Some(Ended::Gone) => {
                if self.active {
                    out.push(("inactive", "{}".to_string()));
                }
                return (out, true);
            }
            None => {}
        }
        if s.generation != self.generation {
            // Another publisher since the last look: the old one left, even
            // if both changes fell between two wake-ups.
            if self.active {
                out.push(("inactive", "{}".to_string()));
                self.active = false;
            }
            self.generation = s.generation;
        }
        if s.live != self.active {
            self.active = s.live;
            out.push((if s.live { "active" } else { "inactive" }, "{}".into()));
        }
        if self.viewers != Some(s.viewers)
            && self
                .viewers_at
                .is_none_or(|t| now.duration_since(t) >= VIEWERCOUNT_INTERVAL)
        {
            self.viewers = Some(s.viewers);
            self.viewers_at = Some(now);
            out.push((
                "viewercount",
                serde_json::json!({ "viewercount": s.viewers }).to_string(),
            ));
        }
        let key: LayerKey = s
            .layers
            .iter()
            .map(|l| (l.rid.clone(), l.active, l.width, l.height))
            .collect();
        if key != self.layers {
            self.layers = key;
            let list: Vec<serde_json::Value> = s
                .layers
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "rid": l.rid,
                        "encodingId": l.rid,
                        "bitrate": l.bitrate,
                        "width": l.width,
                        "height": l.height,
                        "active": l.active,
                    })
                })
                .collect();
            let mut data = serde_json::Map::new();
            data.insert(self.mline.to_string(), serde_json::Value::Array(list));
            out.push(("layers", serde_json::Value::Object(data).to_string()));
        }
        (out, false)
    }
}

/// Send the due events of `mask`; false when the client is gone.
async fn send(tx: &mpsc::Sender<Bytes>, events: Vec<(&'static str, String)>, mask: u8) -> bool {
    for (name, data) in events {
        if mask & bit(name) != 0 && tx.send(frame(name, &data)).await.is_err() {
            return false;
        }
    }
    true
}

/// The task behind one GET: wakes on the publication's signal, every
/// [`TICK`] and for keep-alives; ends with the event stream, its session,
/// the publication, or the client.
async fn run(
    tx: mpsc::Sender<Bytes>,
    p: Arc<Publication>,
    mask: u8,
    mut alive: watch::Receiver<()>,
    mline: usize,
) {
    let mut signal = p.signal.subscribe();
    let mut tracker = Tracker::new(p.generation.load(Ordering::Acquire), mline);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keepalive = tokio::time::interval_at(Instant::now() + KEEPALIVE, KEEPALIVE);
    loop {
        let (events, done) = tracker.step(&Snapshot::of(&p), Instant::now());
        if !send(&tx, events, mask).await || done {
            return;
        }
        tokio::select! {
            r = alive.changed() => if r.is_err() {
                // The session (or this event stream) ended. If that was
                // for an incompatible publisher, say so before closing.
                let s = Snapshot::of(&p);
                if s.ended == Some(Ended::Incompatible) {
                    let (events, _) = tracker.step(&s, Instant::now());
                    send(&tx, events, mask).await;
                }
                return;
            },
            r = signal.changed() => if r.is_err() {
                return;
            },
            _ = tick.tick() => {}
            _ = keepalive.tick() => {
                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(live: bool, generation: u64, viewers: u32) -> Snapshot {
        Snapshot {
            live,
            generation,
            ended: None,
            viewers,
            layers: Vec::new(),
        }
    }

    fn names(v: &[(&'static str, String)]) -> Vec<&'static str> {
        v.iter().map(|(n, _)| *n).collect()
    }

    #[test]
    fn events_of_a_publisher_change() {
        let t0 = Instant::now();
        // No initial `inactive` (draft: MUST NOT) when nobody publishes yet.
        let mut idle = Tracker::new(0, 1);
        assert_eq!(names(&idle.step(&snap(false, 0, 1), t0).0), ["viewercount"]);
        let mut t = Tracker::new(0, 1);
        let (e, done) = t.step(&snap(true, 0, 1), t0);
        assert_eq!(names(&e), ["active", "viewercount"]);
        assert_eq!(e[1].1, r#"{"viewercount":1}"#);
        assert!(!done);
        assert!(t.step(&snap(true, 0, 1), t0).0.is_empty());
        // Publisher left and a new one spliced in between two looks.
        let (e, _) = t.step(&snap(true, 1, 1), t0);
        assert_eq!(names(&e), ["inactive", "active"]);
        let (e, _) = t.step(&snap(false, 1, 1), t0);
        assert_eq!(names(&e), ["inactive"]);
        let (e, _) = t.step(&snap(true, 2, 1), t0);
        assert_eq!(names(&e), ["active"]);
        let mut s = snap(false, 2, 1);
        s.ended = Some(Ended::Incompatible);
        let (e, done) = t.step(&s, t0);
        assert_eq!(names(&e), ["reconnect"]);
        assert!(done);
    }

    #[test]
    fn viewercount_is_debounced() {
        let t0 = Instant::now();
        let mut t = Tracker::new(0, 0);
        t.step(&snap(true, 0, 1), t0);
        assert!(t.step(&snap(true, 0, 2), t0).0.is_empty());
        let (e, _) = t.step(&snap(true, 0, 3), t0 + VIEWERCOUNT_INTERVAL);
        assert_eq!(e, [("viewercount", r#"{"viewercount":3}"#.to_string())]);
    }

    #[test]
    fn layers_event_on_change_only() {
        let t0 = Instant::now();
        let mut t = Tracker::new(0, 1);
        let layer = |rid: &str, bitrate, active| LayerView {
            index: 0,
            rid: rid.into(),
            ssrc: 1,
            bitrate,
            width: 640,
            height: 360,
            active,
        };
        let mut s = snap(true, 0, 1);
        s.layers = vec![layer("l", 300_000, true), layer("h", 0, false)];
        let (e, _) = t.step(&s, t0);
        assert_eq!(names(&e), ["active", "viewercount", "layers"]);
        let v: serde_json::Value = serde_json::from_str(&e[2].1).unwrap();
        assert_eq!(v["1"][0]["rid"], "l");
        assert_eq!(v["1"][0]["bitrate"], 300_000);
        assert_eq!(v["1"][1]["bitrate"], 0);
        // A bitrate change alone is no new event; a layer turning active is.
        s.layers[0].bitrate = 310_000;
        assert!(t.step(&s, t0).0.is_empty());
        s.layers[1].active = true;
        assert_eq!(names(&t.step(&s, t0).0), ["layers"]);
    }

    #[test]
    fn post_bodies() {
        assert_eq!(parse_events(""), Ok(ALL));
        assert_eq!(
            parse_events(r#"["active","viewercount","scte35"]"#),
            Ok(0b1001)
        );
        assert_eq!(parse_events("[]"), Ok(0));
        assert!(parse_events(r#"{"a":1}"#).is_err());
        assert!(parse_events("[1]").is_err());
        assert!(
            link("cam", "ab").contains(r#"events="active,inactive,layers,viewercount,reconnect""#)
        );
    }
}
