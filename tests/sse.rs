//! WHEP server-sent events extension
//! (`urn:ietf:params:whep:ext:core:server-sent-events`): a viewer learns that
//! its publisher left and came back (on the same session, which then carries
//! the new publisher's media), the viewer count, and that it must re-POST
//! when the stream's codecs change; the event stream follows the session's
//! credentials and lifetime.

use e2e::{clip, drain, publish_clip, start_server_with};
use http_body_util::BodyExt;
use sfu::client::http::{Url, request};
use sfu::client::sse::{EventStream, REL, find_link};
use sfu::client::{ClientEvent, Options, Session, Track};
use sfu::config::{Config, StreamAuth};
use std::time::Duration;
use str0m::media::MediaKind;

const CONNECT: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(5);

fn config() -> Config {
    Config {
        workers: 2,
        rate_limit: 0.0,
        publisher_grace: Duration::from_secs(30),
        ..Config::default()
    }
}

/// The next event, which must be `name`; returns its JSON data.
async fn expect(events: &mut EventStream, name: &str) -> serde_json::Value {
    match events.next(WAIT).await {
        Ok(Some(e)) => {
            assert_eq!(e.name, name, "event {e:?}");
            e.json()
        }
        other => panic!("expected '{name}', got {other:?}"),
    }
}

/// Events until `viewercount` is `n` (other events are skipped).
async fn viewercount(events: &mut EventStream, n: u64) {
    let until = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < until {
        let e = events
            .wait_for("viewercount", WAIT)
            .await
            .expect("a viewercount event");
        if e.json()["viewercount"] == n {
            return;
        }
    }
    panic!("viewercount never reached {n}");
}

/// True when the server ends the stream within [`WAIT`] (events before
/// the end are skipped).
async fn ended(events: &mut EventStream) -> bool {
    loop {
        match events.next(WAIT).await {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_reports_a_publisher_change_and_the_session_carries_the_new_media() {
    let clip = clip(2);
    let base = start_server_with(config()).await;
    let (a, mut viewer) = e2e::live_pair(&base, "cam").await;
    let (_, params) = find_link(&viewer.response.headers, REL).expect("SSE Link on the 201");
    assert!(
        params.contains(&(
            "events".into(),
            "active,inactive,layers,viewercount,reconnect".into()
        )),
        "{params:?}"
    );
    let location = viewer.location.clone();
    let mut events = viewer.server_events(None).await.unwrap();
    expect(&mut events, "active").await;
    assert_eq!(expect(&mut events, "viewercount").await["viewercount"], 1);

    publish_clip(&a, clip).await;
    assert_eq!(a.close().await.unwrap(), 200);
    expect(&mut events, "inactive").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut first = Vec::new();
    drain(&mut viewer, &mut first);

    // A new publisher, same codecs: spliced in, announced as active.
    let mut b = Session::publish(&format!("{base}/whip/cam"), Options::default())
        .await
        .unwrap();
    b.wait_connected(CONNECT).await.unwrap();
    expect(&mut events, "active").await;
    publish_clip(&b, clip).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    // Same session (never re-POSTed), the new publisher's media on it.
    assert_eq!(viewer.location, location);
    let mut rx = Vec::new();
    let mut closed = false;
    while let Ok(ev) = viewer.events.try_recv() {
        match ev {
            ClientEvent::Rtp(r) => rx.push(r),
            ClientEvent::Closed(_) => closed = true,
            _ => {}
        }
    }
    assert!(
        !closed,
        "the viewer's session survived the publisher change"
    );
    let video = rx.iter().filter(|r| r.kind == MediaKind::Video).count();
    let sent = clip.video_payloads().len();
    assert!(
        video * 10 >= sent * 9,
        "new publisher's video on the old session: {video} of {sent} packets"
    );
    assert!(
        first.iter().any(|r| r.kind == MediaKind::Video),
        "first publisher's video arrived too"
    );

    // DELETE of the session ends the event stream.
    assert_eq!(viewer.close().await.unwrap(), 200);
    assert!(
        ended(&mut events).await,
        "event stream ends with the session"
    );
    assert_eq!(b.close().await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_viewercount_follows_viewers() {
    let base = start_server_with(config()).await;
    let (publisher, viewer) = e2e::live_pair(&base, "cam").await;
    let mut events = viewer.server_events(Some(&["viewercount"])).await.unwrap();
    // Only the subscribed event: no `active` first.
    assert_eq!(expect(&mut events, "viewercount").await["viewercount"], 1);
    let mut second = Session::play(&format!("{base}/whep/cam"), Options::default())
        .await
        .unwrap();
    second.wait_connected(CONNECT).await.unwrap();
    assert_eq!(expect(&mut events, "viewercount").await["viewercount"], 2);
    assert_eq!(second.close().await.unwrap(), 200);
    viewercount(&mut events, 1).await;
    assert_eq!(viewer.close().await.unwrap(), 200);
    assert_eq!(publisher.close().await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_reconnect_when_the_codecs_change() {
    let base = start_server_with(config()).await;
    let (a, mut viewer) = e2e::live_pair(&base, "cam").await;
    let mut events = viewer.server_events(None).await.unwrap();
    expect(&mut events, "active").await;
    assert_eq!(a.close().await.unwrap(), 200);
    events.wait_for("inactive", WAIT).await.expect("inactive");
    let vp8 = Options {
        tracks: vec![Track::Opus, Track::Vp8],
        ..Options::default()
    };
    let mut b = Session::publish(&format!("{base}/whip/cam"), vp8)
        .await
        .unwrap();
    b.wait_connected(CONNECT).await.unwrap();
    events
        .wait_for("reconnect", WAIT)
        .await
        .expect("reconnect event for the H.264 viewer");
    assert!(
        ended(&mut events).await,
        "event stream ends after reconnect"
    );
    // The session itself was ended by the server.
    let mut closed = false;
    for _ in 0..50 {
        if let Some(ClientEvent::Closed(_)) = viewer.next_event(Duration::from_millis(100)).await {
            closed = true;
            break;
        }
    }
    assert!(closed, "viewer session closed");
    assert_eq!(b.close().await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_needs_the_session_token_and_a_known_session() {
    let mut cfg = config();
    cfg.streams.insert(
        "cam".into(),
        StreamAuth {
            view_token: Some("secret".into()),
            ..Default::default()
        },
    );
    let base = start_server_with(cfg).await;
    let mut publisher = Session::publish(&format!("{base}/whip/cam"), Options::default())
        .await
        .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    let opts = Options {
        token: Some("secret".into()),
        ..Options::default()
    };
    let mut viewer = Session::play(&format!("{base}/whep/cam"), opts)
        .await
        .unwrap();
    viewer.wait_connected(CONNECT).await.unwrap();
    let (target, _) = find_link(&viewer.response.headers, REL).unwrap();
    let entry = viewer.location.join(&target).unwrap();
    let json = ("content-type", "application/json");
    let post = |h: Vec<(&'static str, &'static str)>, url: Url, body: &str| {
        let body = body.to_string();
        async move { request("POST", &url, &h, Some(body)).await.unwrap() }
    };
    let wrong = ("authorization", "Bearer nope");
    let right = ("authorization", "Bearer secret");
    assert_eq!(post(vec![json], entry.clone(), "").await.status, 401);
    assert_eq!(post(vec![json, wrong], entry.clone(), "").await.status, 401);
    assert_eq!(
        post(vec![json, right], entry.clone(), "{\"a\":1}")
            .await
            .status,
        400
    );
    let unknown = Url::parse(&format!("{base}/whep/cam/{}/sse", "0".repeat(32))).unwrap();
    assert_eq!(post(vec![json, right], unknown, "").await.status, 404);

    let r = post(vec![json, right], entry.clone(), r#"["active"]"#).await;
    assert_eq!(r.status, 201);
    let stream = entry.join(r.header("location").unwrap()).unwrap();
    // A second GET of the same event stream (an EventSource reconnecting)
    // ends the first.
    let first = sfu::client::http::send("GET", &stream, &[], None)
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let second = sfu::client::http::send("GET", &stream, &[], None)
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    let body = tokio::time::timeout(WAIT, first.into_body().collect())
        .await
        .expect("the first GET ends")
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"event: active\ndata: {}\n\n");
    // HEAD: the GET's status and headers without a body, and the running
    // GET goes on (a HEAD is no reconnecting EventSource).
    let head = request("HEAD", &stream, &[], None).await.unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert!(head.body.is_empty());
    let mut second = second.into_body();
    let frame = tokio::time::timeout(WAIT, second.frame())
        .await
        .expect("the second GET's first event")
        .expect("a frame")
        .unwrap();
    assert_eq!(
        frame.data_ref().map(|d| &d[..]),
        Some(&b"event: active\ndata: {}\n\n"[..])
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), second.frame())
            .await
            .is_err(),
        "the second GET is still open after the HEAD"
    );
    drop(second);
    let bogus = Url::parse(&format!("{}x", stream_url(&base, &stream))).unwrap();
    assert_eq!(request("GET", &bogus, &[], None).await.unwrap().status, 404);
    assert_eq!(
        request("DELETE", &stream, &[wrong], None)
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        request("DELETE", &stream, &[right], None)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        request("GET", &stream, &[], None).await.unwrap().status,
        404
    );

    // With the right token the client opens a stream.
    let mut events = viewer.server_events(None).await.unwrap();
    expect(&mut events, "active").await;
    assert_eq!(viewer.close().await.unwrap(), 200);
    assert!(ended(&mut events).await);
    publisher.close().await.unwrap();
}

fn stream_url(base: &str, u: &Url) -> String {
    format!("{base}{}", u.path)
}
