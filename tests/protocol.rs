//! WHIP/WHEP protocol behaviour: authentication (Bearer, `?token=`, Basic),
//! trickle PATCH with If-Match/ETag, ICE restart, GET/HEAD (HTTP/1.1 and
//! HTTP/2) and 405, Link ice-server headers with TURN REST credentials, the
//! session limit (503, also for a burst of concurrent POSTs) and a replacing
//! publisher at that limit.

use e2e::{clip, drain, publish_clip, start_server_with};
use sfu::client::http::{HttpResponse, Url, request};
use sfu::client::{Options, Session};
use sfu::config::{Config, IceServer, StreamAuth, TurnSecret};
use std::time::Duration;
use str0m::media::MediaKind;

async fn req(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    let url = Url::parse(&format!("{base}{path}")).unwrap();
    request(method, &url, headers, body.map(str::to_string))
        .await
        .unwrap()
}

fn config() -> Config {
    let mut cfg = Config {
        workers: 2,
        max_sessions: 4,
        ..Config::default()
    };
    cfg.auth.publish_token = Some("pubtok".into());
    cfg.streams.insert(
        "cam".into(),
        StreamAuth {
            publish_token: None,
            view_token: Some("viewtok".into()),
            replace: None,
        },
    );
    cfg.ice_servers.push(IceServer {
        url: "stun:stun.example.net:3478".into(),
        username: None,
        credential: None,
    });
    cfg.turn = Some(TurnSecret {
        urls: vec!["turn:turn.example.net:3478?transport=udp".into()],
        secret: "s3cr3t".into(),
        ttl_secs: Some(600),
    });
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_trickle_links_and_limits() {
    let base = start_server_with(config()).await;
    let opts = |token: Option<&str>| Options {
        token: token.map(str::to_string),
        ..Options::default()
    };

    // Publishing needs the default publish token.
    let e = Session::publish(&format!("{base}/whip/cam"), opts(None))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("401"), "{e}");
    let e = Session::publish(&format!("{base}/whip/cam"), opts(Some("wrong")))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("401"), "{e}");
    let mut publisher = Session::publish(&format!("{base}/whip/cam"), opts(Some("pubtok")))
        .await
        .unwrap();
    let r = &publisher.response;
    assert_eq!(r.status, 201);
    let etag = r.header("etag").expect("ETag").to_string();
    assert!(
        etag.starts_with('"') && etag.len() >= 34,
        "strong ETag: {etag}"
    );
    let links: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| k == "link")
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        links
            .iter()
            .any(|l| l.starts_with("<stun:stun.example.net:3478>; rel=\"ice-server\"")),
        "{links:?}"
    );
    let turn = links
        .iter()
        .find(|l| l.starts_with("<turn:"))
        .expect("TURN link");
    assert!(
        turn.contains("username=\"")
            && turn.contains("credential=\"")
            && turn.contains("credential-type=\"password\"")
    );
    publisher
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();

    // Viewing `cam` needs its own view token: header, query or Basic password.
    let e = Session::play(&format!("{base}/whep/cam"), opts(None))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("401"), "{e}");
    let unauth = req(
        &base,
        "POST",
        "/whep/cam",
        &[("content-type", "application/sdp")],
        Some("v=0"),
    )
    .await;
    assert_eq!(unauth.status, 401);
    assert!(
        unauth
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    let mut viewer = Session::play(&format!("{base}/whep/cam?token=viewtok"), opts(None))
        .await
        .unwrap();
    let loc = viewer.response.header("location").unwrap().to_string();
    assert!(
        loc.starts_with("/whep/cam/") && !loc.contains('?') && !loc.contains("viewtok"),
        "{loc}"
    );
    viewer
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();

    // GET/HEAD on the endpoint: 200, application/sdp, no body.
    for m in ["GET", "HEAD"] {
        let r = req(&base, m, "/whep/cam", &[], None).await;
        assert_eq!(r.status, 200, "{m}");
        assert_eq!(r.header("content-type"), Some("application/sdp"));
        assert!(r.body.is_empty());
    }

    // Trickle PATCH on the viewer session (needs the view token).
    let vpath = loc.clone();
    let vtag = viewer.response.header("etag").unwrap().to_string();
    let frag = "a=ice-ufrag:UFRAG\r\na=ice-pwd:PWD\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=candidate:2 1 udp 2130706431 abcd.local 9 typ host\r\na=end-of-candidates\r\n";
    let auth = ("authorization", "Bearer viewtok");
    let sdpfrag = ("content-type", "application/trickle-ice-sdpfrag");
    let r = req(&base, "PATCH", &vpath, &[sdpfrag], Some(frag)).await;
    assert_eq!(r.status, 401, "PATCH without the credential");
    let r = req(
        &base,
        "PATCH",
        &vpath,
        &[auth, ("content-type", "application/json")],
        Some("{}"),
    )
    .await;
    assert_eq!(r.status, 415, "PATCH with JSON");
    let r = req(
        &base,
        "PATCH",
        &vpath,
        &[auth, sdpfrag, ("if-match", "\"nope\"")],
        Some(frag),
    )
    .await;
    assert_eq!(r.status, 412, "stale If-Match");
    let r = req(
        &base,
        "PATCH",
        &vpath,
        &[auth, sdpfrag, ("etag", &vtag)],
        Some("{garbage"),
    )
    .await;
    assert_eq!(r.status, 400, "malformed sdpfrag");
    // Candidates for the current ICE session: 204, no ETag. (Our client's real
    // ufrag is in its offer; a fragment without credentials is plain trickle.)
    let trickle = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n";
    let r = req(
        &base,
        "PATCH",
        &vpath,
        &[auth, sdpfrag, ("etag", &vtag)],
        Some(trickle),
    )
    .await;
    assert_eq!(r.status, 204, "trickle: {}", r.body);
    assert!(r.header("etag").is_none());
    // ICE restart (RFC 9725 §4.3.2) by the viewer's own str0m: new local
    // credentials in a PATCH with If-Match = the current ETag → 200 with the
    // server's new credentials and a new ETag; ICE reconnects with them.
    let old_server_ufrag = frag_attr(&viewer.answer, "a=ice-ufrag:");
    let mut ice = viewer.ice.clone();
    let r = viewer.ice_restart().await.unwrap();
    assert_eq!(r.status, 200, "ICE restart: {}", r.body);
    assert_eq!(
        r.header("content-type"),
        Some("application/trickle-ice-sdpfrag")
    );
    let new_tag = r.header("etag").expect("new ETag").to_string();
    assert_ne!(new_tag, vtag, "the ETag changes with the ICE session");
    let new_server_ufrag = frag_attr(&r.body, "a=ice-ufrag:");
    assert!(
        !new_server_ufrag.is_empty() && new_server_ufrag != old_server_ufrag,
        "{}",
        r.body
    );
    assert!(r.body.contains("a=candidate:"), "{}", r.body);
    // The agent re-checks with the new credentials and connects again
    // (it would fail if the server still expected the old ones).
    let reconnected = tokio::time::timeout(Duration::from_secs(10), async {
        let mut checking = false;
        loop {
            ice.changed().await.unwrap();
            let s = *ice.borrow_and_update();
            checking |= s == str0m::IceConnectionState::Checking;
            if checking
                && matches!(
                    s,
                    str0m::IceConnectionState::Connected | str0m::IceConnectionState::Completed
                )
            {
                return s;
            }
            assert_ne!(
                s,
                str0m::IceConnectionState::Disconnected,
                "ICE lost after the restart"
            );
        }
    })
    .await;
    assert!(
        reconnected.is_ok(),
        "ICE connected again with the new credentials"
    );
    let r = req(
        &base,
        "PATCH",
        &vpath,
        &[auth, sdpfrag, ("if-match", &vtag)],
        Some(trickle),
    )
    .await;
    assert_eq!(r.status, 412, "the pre-restart ETag is stale");
    let r = req(
        &base,
        "PATCH",
        &vpath,
        &[auth, sdpfrag, ("if-match", &new_tag)],
        Some("a=ice-ufrag:onlyufrag\r\n"),
    )
    .await;
    assert_eq!(r.status, 400, "a restart needs ufrag and pwd");
    let r = req(
        &base,
        "PATCH",
        "/whep/cam/ffffffffffffffffffffffffffffffff",
        &[auth, sdpfrag],
        Some(trickle),
    )
    .await;
    assert_eq!(r.status, 404);

    // Session limit: publisher + viewer + 2 more = 4; the fifth POST gets 503.
    let v2 = Session::play(&format!("{base}/whep/cam?token=viewtok"), opts(None))
        .await
        .unwrap();
    let v3 = Session::play(&format!("{base}/whep/cam?token=viewtok"), opts(None))
        .await
        .unwrap();
    let r = req(
        &base,
        "POST",
        "/whep/cam?token=viewtok",
        &[("content-type", "application/sdp")],
        Some(&v3.answer),
    )
    .await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert_eq!(v2.close().await.unwrap(), 200);
    assert_eq!(v3.close().await.unwrap(), 200);

    // After all that, the viewer still receives the whole stream.
    let clip = clip(3);
    publish_clip(&publisher, clip).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut rx = Vec::new();
    drain(&mut viewer, &mut rx);
    let video = rx.iter().filter(|r| r.kind == MediaKind::Video).count();
    assert_eq!(video, clip.video_payloads().len(), "viewer lost packets");

    // DELETE needs the credential; a second DELETE is 404.
    let r = req(&base, "DELETE", &vpath, &[], None).await;
    assert_eq!(r.status, 401);
    let r = req(
        &base,
        "DELETE",
        &vpath,
        &[("authorization", "Basic dTp2aWV3dG9r")],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "DELETE with Basic u:viewtok");
    let r = req(&base, "DELETE", &vpath, &[auth], None).await;
    assert_eq!(r.status, 404);
    assert_eq!(publisher.close().await.unwrap(), 200);

    // A flood of POSTs from one address gets 429 + Retry-After (20/s, burst 100).
    let mut limited = None;
    for i in 0..300 {
        let r = req(
            &base,
            "POST",
            "/whip/flood",
            &[("content-type", "text/plain")],
            Some("x"),
        )
        .await;
        if r.status == 429 {
            limited = Some((i, r.header("retry-after").map(str::to_string)));
            break;
        }
        assert_eq!(r.status, 415);
    }
    let (after, retry) = limited.expect("no 429 after 300 POSTs");
    assert!((90..=200).contains(&after), "429 after {after} requests");
    assert_eq!(retry.as_deref(), Some("1"));
}

/// Value of the first `name` attribute line of an SDP or sdpfrag.
fn frag_attr(sdp: &str, name: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end_matches('\r').strip_prefix(name))
        .unwrap_or_default()
        .to_string()
}

/// Paths with a `GET` representation (RFC 9110 §9.3.2: `HEAD` must answer
/// with the same status and headers, without a body).
const GET_PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/watch.html",
    "/publish.html",
    "/app.js",
    "/style.css",
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/streams",
    "/api/streams/nobody",
    "/whep/cam",
    "/no-such-page",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_mirrors_get_on_http1_and_http2_and_wrong_methods_get_405() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    let base = start_server_with(Config {
        workers: 2,
        rate_limit: 0.0,
        ..Config::default()
    })
    .await;

    // HTTP/1.1: same status and headers, Content-Length of the GET body.
    let mut statuses = Vec::new();
    for path in GET_PATHS {
        let get = req(&base, "GET", path, &[], None).await;
        let head = req(&base, "HEAD", path, &[], None).await;
        assert_eq!(head.status, get.status, "HEAD {path}");
        assert_eq!(
            head.header("content-type"),
            get.header("content-type"),
            "HEAD {path}"
        );
        assert!(head.body.is_empty(), "HEAD {path} has no body");
        let len: usize = head
            .header("content-length")
            .unwrap_or_else(|| panic!("HEAD {path}: Content-Length"))
            .parse()
            .unwrap();
        if *path != "/metrics" {
            // (The metrics text changes between two requests.)
            assert_eq!(len, get.body.len(), "HEAD {path}: Content-Length");
        }
        statuses.push(get.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 2);

    // HTTP/2 (h2c with prior knowledge): the stream ends cleanly after the
    // headers; no DATA frame.
    let addr = base.trim_start_matches("http://").to_string();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (path, status) in GET_PATHS.iter().zip(&statuses) {
        let r = hyper::Request::head(format!("http://{addr}{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let resp = h2
            .send_request(r)
            .await
            .unwrap_or_else(|e| panic!("HEAD {path} over HTTP/2: {e}"));
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        assert_eq!(resp.status().as_u16(), *status, "HEAD {path} over HTTP/2");
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("HEAD {path} over HTTP/2 not closed cleanly: {e}"))
            .to_bytes();
        assert!(body.is_empty(), "HEAD {path} over HTTP/2 has no body");
    }

    // A method the resource does not have: 405 + Allow; no resource: 404.
    for (method, path) in [
        ("POST", "/metrics"),
        ("DELETE", "/healthz"),
        ("PUT", "/readyz"),
        ("POST", "/api/streams"),
        ("DELETE", "/api/streams/cam"),
        ("POST", "/watch.html"),
        ("PUT", "/"),
    ] {
        let r = req(&base, method, path, &[], Some("x")).await;
        assert_eq!(r.status, 405, "{method} {path}");
        let allow = r.header("allow").unwrap_or_default();
        assert!(
            allow.contains("GET") && allow.contains("HEAD"),
            "{method} {path}: Allow {allow:?}"
        );
    }
    assert_eq!(req(&base, "POST", "/nothing", &[], None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacing_publisher_is_admitted_at_the_session_limit() {
    let base = start_server_with(Config {
        workers: 2,
        rate_limit: 0.0,
        max_sessions: 3,
        replace_publisher: true,
        ..Config::default()
    })
    .await;
    let connect = Duration::from_secs(10);
    let (mut a, viewer) = e2e::live_pair(&base, "cam").await;
    let v2 = Session::play(&format!("{base}/whep/cam"), Options::default())
        .await
        .unwrap();
    // Three sessions: a new stream is refused ...
    let e = Session::publish(&format!("{base}/whip/other"), Options::default())
        .await
        .err()
        .expect("over the limit");
    assert!(e.to_string().contains("503"), "{e}");
    // ... but a publisher replacing the live one on `cam` is not.
    let mut b = Session::publish(&format!("{base}/whip/cam"), Options::default())
        .await
        .expect("replacing publisher admitted at the session limit");
    b.wait_connected(connect).await.unwrap();
    let mut a_closed = false;
    for _ in 0..50 {
        if let Some(sfu::client::ClientEvent::Closed(_)) =
            a.next_event(Duration::from_millis(100)).await
        {
            a_closed = true;
            break;
        }
    }
    assert!(a_closed, "the replaced publisher's session ended");
    // Still three sessions (B and both viewers): no room for a fourth.
    let e = Session::publish(&format!("{base}/whip/other"), Options::default())
        .await
        .err()
        .expect("still at the limit");
    assert!(e.to_string().contains("503"), "{e}");
    let s = e2e::get_json(&base, "/api/streams/cam").await;
    assert_eq!(s["viewers"], 2, "{s}");
    assert_eq!(s["publisher"], "live", "{s}");
    assert_eq!(viewer.close().await.unwrap(), 200);
    assert_eq!(v2.close().await.unwrap(), 200);
    assert_eq!(b.close().await.unwrap(), 200);
}

/// A WHEP offer (video + audio, receive only) made by str0m, no candidates.
fn whep_offer() -> String {
    use str0m::media::Direction;
    let mut rtc = str0m::Rtc::builder().build(std::time::Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _) = api.apply().expect("an offer");
    offer.to_sdp_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_posts_is_held_to_the_session_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let base = start_server_with(Config {
        workers: 2,
        rate_limit: 0.0,
        max_sessions: 3,
        ..Config::default()
    })
    .await;
    let (_publisher, _viewer) = e2e::live_pair(&base, "cam").await;
    // Two sessions: one slot left. Eight POSTs send their headers, and
    // only when all eight are in (each past the limit check, which comes
    // before the body is read) their bodies.
    let offer = whep_offer();
    let addr = base.trim_start_matches("http://").to_string();
    let mut conns = Vec::new();
    for _ in 0..8 {
        let mut c = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = format!(
            "POST /whep/cam HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            offer.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        conns.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut statuses = Vec::new();
    for mut c in conns {
        let _ = c.write_all(offer.as_bytes()).await;
        let mut resp = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut resp)).await;
        let text = String::from_utf8_lossy(&resp);
        statuses.push(text.get(9..12).unwrap_or("none").to_string());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        ["201", "503", "503", "503", "503", "503", "503", "503"],
        "one slot left: one 201, the rest 503"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_shut_down_and_a_busy_one_is_not() {
    use bytes::Bytes;
    use http_body_util::Empty;
    let base = start_server_with(Config {
        workers: 1,
        http_idle_timeout: Duration::from_secs(1),
        ..Config::default()
    })
    .await;
    let addr = base.trim_start_matches("http://").to_string();
    let h2c = || async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (h2, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        (h2, tokio::spawn(conn))
    };
    let get = |h2: &mut hyper::client::conn::http2::SendRequest<Empty<Bytes>>| {
        let r = hyper::Request::get(format!("http://{addr}/healthz"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let f = h2.send_request(r);
        async move { f.await.map(|r| r.status().as_u16()) }
    };
    // Busy: a request every 300 ms for 3 s (three idle timeouts) all pass.
    let (mut busy, busy_conn) = h2c().await;
    for _ in 0..10 {
        assert_eq!(get(&mut busy).await.expect("connection kept"), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(!busy_conn.is_finished());
    // Idle after one request: the server ends the connection (GOAWAY).
    let (mut idle, idle_conn) = h2c().await;
    assert_eq!(get(&mut idle).await.unwrap(), 200);
    tokio::time::timeout(Duration::from_secs(10), idle_conn)
        .await
        .expect("the idle HTTP/2 connection was shut down by the server")
        .unwrap()
        .expect("a graceful shutdown, not an error");
}
