//! Bad input gets an exact HTTP status and never disturbs a live stream.

use e2e::{clip, drain, publish_clip, start_server, start_server_with};
use sfu::client::http::{HttpResponse, Url, request};
use sfu::client::{Options, Session};
use sfu::config::Config;
use std::time::Duration;
use str0m::media::MediaKind;

async fn req(
    base: &str,
    method: &str,
    path: &str,
    ct: Option<&str>,
    body: Option<String>,
) -> HttpResponse {
    let url = Url::parse(&format!("{base}{path}")).unwrap();
    let mut h = Vec::new();
    if let Some(ct) = ct {
        h.push(("content-type", ct));
    }
    request(method, &url, &h, body).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_statuses_while_stream_flows() {
    let clip = clip(3);
    let base = start_server(2).await;
    let (publisher, viewer) = e2e::live_pair(&base, "live").await;

    let b = base.clone();
    let checks = async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        // A valid offer, reused for the cases below.
        let offer_src = Session::publish(&format!("{b}/whip/live"), Options::default()).await;
        let err = offer_src.err().expect("second publisher must be refused");
        assert!(err.to_string().contains("409"), "second publisher: {err}");

        let r = req(
            &b,
            "POST",
            "/whep/nobody",
            Some("application/sdp"),
            Some(VALID_VIEWER_OFFER.into()),
        )
        .await;
        assert_eq!(r.status, 409, "WHEP without publisher");
        assert!(r.header("retry-after").is_some(), "409 carries Retry-After");

        let r = req(
            &b,
            "DELETE",
            "/whep/live/00000000000000000000000000000000",
            None,
            None,
        )
        .await;
        assert_eq!(r.status, 404, "unknown session");

        let r = req(
            &b,
            "POST",
            "/whep/live",
            Some("text/plain"),
            Some(VALID_VIEWER_OFFER.into()),
        )
        .await;
        assert_eq!(r.status, 415, "wrong content type");
        let r = req(
            &b,
            "POST",
            "/whep/live",
            None,
            Some(VALID_VIEWER_OFFER.into()),
        )
        .await;
        assert_eq!(r.status, 415, "missing content type");

        let r = req(
            &b,
            "POST",
            "/whip/other",
            Some("application/sdp"),
            Some("this is not sdp".into()),
        )
        .await;
        assert_eq!(r.status, 400, "malformed SDP");
        assert_eq!(
            r.body.trim().lines().count(),
            1,
            "one-line reason: {:?}",
            r.body
        );

        let r = req(
            &b,
            "POST",
            "/whip/other",
            Some("application/sdp"),
            Some(VALID_VIEWER_OFFER.replace("a=fingerprint", "a=x-nofp")),
        )
        .await;
        assert_eq!(r.status, 400, "offer without fingerprint");

        // Missing or empty ICE credentials: the same 400.
        for (what, offer) in [
            (
                "no ufrag",
                VALID_VIEWER_OFFER.replace("a=ice-ufrag:abcd\r\n", ""),
            ),
            (
                "empty ufrag",
                VALID_VIEWER_OFFER.replace("a=ice-ufrag:abcd", "a=ice-ufrag:"),
            ),
            (
                "empty pwd",
                VALID_VIEWER_OFFER.replace("a=ice-pwd:abcdefghijklmnopqrstuvwx", "a=ice-pwd:"),
            ),
        ] {
            let r = req(
                &b,
                "POST",
                "/whep/live",
                Some("application/sdp"),
                Some(offer),
            )
            .await;
            assert_eq!(r.status, 400, "{what}: {}", r.body);
        }

        let r = req(
            &b,
            "POST",
            "/whip/other",
            Some("application/sdp"),
            Some(VALID_VIEWER_OFFER.into()),
        )
        .await;
        assert_eq!(r.status, 422, "recvonly offer to WHIP: {}", r.body);

        let r = req(
            &b,
            "POST",
            "/whip/bad%20name",
            Some("application/sdp"),
            Some(VALID_VIEWER_OFFER.into()),
        )
        .await;
        assert_eq!(r.status, 400, "invalid stream name");

        let r = req(
            &b,
            "POST",
            "/whip/big",
            Some("application/sdp"),
            Some("v=0\r\n".repeat(40_000)),
        )
        .await;
        assert_eq!(r.status, 413, "oversized body");

        let r = req(&b, "OPTIONS", "/whip/live", None, None).await;
        assert!(r.status == 204 || r.status == 200, "OPTIONS: {}", r.status);
        assert_eq!(r.header("accept-post"), Some("application/sdp"));
        assert!(
            r.header("access-control-expose-headers")
                .is_some_and(|h| h.contains("Location"))
        );
    };
    stream_survives(
        publisher,
        viewer,
        clip,
        checks,
        "the live viewer lost packets during the bad requests",
    )
    .await;
}

const VALID_VIEWER_OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n\
a=setup:actpass\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtcp-mux\r\n\
a=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n";

/// Hostile offers and a stalled (slowloris) HTTP client while a viewer keeps
/// receiving every packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_offers_and_stalled_client_while_stream_flows() {
    use tokio::io::AsyncWriteExt;
    let clip = clip(3);
    let base = start_server(2).await;
    let (publisher, viewer) = e2e::live_pair(&base, "live").await;
    let b = base.clone();
    let checks = async move {
        // Slowloris: half a request head, then silence.
        let addr = b.trim_start_matches("http://").to_string();
        let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
        slow.write_all(b"POST /whip/slow HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // And a client that connects and never sends a byte.
        let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let sdp = |s: String| Some(s);
        let ct = Some("application/sdp");
        let m = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:X\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 H264/90000\r\n";
        let hundred: String = (0..100)
            .map(|i| m.replace("mid:X", &format!("mid:{i}")))
            .collect();
        let base_offer = VALID_VIEWER_OFFER.replace("a=recvonly", "a=sendonly");
        let cases = [
            (
                "100 m-lines",
                VALID_VIEWER_OFFER.replace("a=group:BUNDLE 0\r\n", "") + &hundred,
            ),
            (
                "huge attribute",
                format!("{base_offer}a=x-huge:{}\r\n", "A".repeat(100_000)),
            ),
            (
                "invalid fingerprint",
                base_offer.replace("sha-256 00:11", "sha-256 ZZ:Q"),
            ),
            (
                "ICE-lite offer",
                base_offer.replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n"),
            ),
        ];
        for (name, body) in cases {
            let r = req(&b, "POST", "/whip/hostile", ct, sdp(body)).await;
            eprintln!("{name}: {}", r.status);
            if name == "huge attribute" || name == "ICE-lite offer" {
                // An unknown attribute within the body limit is ignored; a
                // lite peer is answered (a session, later reaped or DELETEd).
                assert_eq!(r.status, 201, "{name}: {}", r.body);
                let loc = r.header("location").unwrap().to_string();
                assert_eq!(req(&b, "DELETE", &loc, None, None).await.status, 200);
                continue;
            }
            assert!(
                (400..500).contains(&r.status),
                "{name}: {} {}",
                r.status,
                r.body
            );
        }
        // Others are served while the slow client stalls ...
        let r = req(&b, "OPTIONS", "/whip/live", None, None).await;
        assert!(r.status == 204 || r.status == 200);
        // ... and the server drops it after its header timeout, and the
        // silent one too.
        let _ = closed_by_server(&mut slow, "slowloris").await;
        let n = closed_by_server(&mut silent, "silent client").await;
        assert!(matches!(n, Ok(0) | Err(_)), "nothing is sent to it: {n:?}");
        let r = req(&b, "OPTIONS", "/whip/live", None, None).await;
        assert!(r.status == 204 || r.status == 200);
    };
    stream_survives(publisher, viewer, clip, checks, "live viewer lost packets").await;
}

/// Wait (at most 15 s, else panic) until the server ends the connection
/// `s` (`what` names it in the output); returns the read that saw it.
async fn closed_by_server(s: &mut tokio::net::TcpStream, what: &str) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 256];
    let t0 = std::time::Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("{what} not closed by the server within 15 s"));
    eprintln!(
        "{what} closed after {:.1} s: {n:?}",
        t0.elapsed().as_secs_f64()
    );
    n
}

/// One HTTP/1.1 request over a fresh TCP connection from the local address
/// `from` (a loopback address other than the live clients' 127.0.0.1, so the
/// per-IP limiter sees a different client). Returns (status, `Retry-After`).
async fn post_from(
    from: std::net::IpAddr,
    base: &str,
    path: &str,
    body: &str,
) -> (u16, Option<String>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    let mut tcp = sock.connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tcp.read_to_end(&mut resp).await.unwrap();
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"));
    let retry = text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("retry-after")
            .then(|| v.trim().to_string())
    });
    (status, retry)
}

/// A flood of WHEP offers from one address (127.0.0.2) is cut to the per-IP
/// budget (20/s, burst 100) with `429` + `Retry-After: 1`, while the live
/// viewer on 127.0.0.1 keeps receiving every packet and 127.0.0.1's own
/// POSTs are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_flood_from_one_ip_gets_429_while_stream_flows() {
    const RATE: f64 = 20.0;
    const BURST: f64 = 100.0;
    let clip = clip(3);
    let base = start_server_with(Config {
        workers: 2,
        rate_limit: RATE,
        ..Config::default()
    })
    .await;
    let (publisher, viewer) = e2e::live_pair(&base, "live").await;
    let b = base.clone();
    let checks = async move {
        let flooder: std::net::IpAddr = [127, 0, 0, 2].into();
        let t0 = std::time::Instant::now();
        // 4 connections at a time, 300 offers in all.
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let b = b.clone();
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..75 {
                    out.push(post_from(flooder, &b, "/whep/nobody", VALID_VIEWER_OFFER).await);
                }
                out
            }));
        }
        let mut served = 0;
        let mut limited = 0;
        for t in tasks {
            for (status, retry) in t.await.unwrap() {
                match status {
                    // Served: a valid offer for a stream without publisher.
                    409 => served += 1,
                    429 => {
                        limited += 1;
                        assert_eq!(retry.as_deref(), Some("1"), "429 carries Retry-After");
                    }
                    s => panic!("flood request got {s}"),
                }
            }
        }
        let budget = BURST + RATE * t0.elapsed().as_secs_f64();
        eprintln!("flood: {served} served, {limited} got 429 (budget {budget:.0})");
        assert!(limited > 0, "no 429 in a flood of 300 POSTs");
        assert!(
            (served as f64) <= budget + 1.0,
            "{served} served, over the per-IP budget {budget:.0}"
        );
        // The live clients' address is not limited by the flood.
        let own: std::net::IpAddr = [127, 0, 0, 1].into();
        assert_eq!(
            post_from(own, &b, "/whep/nobody", VALID_VIEWER_OFFER)
                .await
                .0,
            409,
            "another address must not be limited by the flood"
        );
    };
    stream_survives(
        publisher,
        viewer,
        clip,
        checks,
        "the live viewer lost packets during the POST flood",
    )
    .await;
}

/// Publish `clip` while `checks` run; the live viewer must then have received
/// every video packet (`what` says which test lost some); both sessions
/// DELETE with 200.
async fn stream_survives(
    publisher: Session,
    mut viewer: Session,
    clip: &e2e::Clip,
    checks: impl std::future::Future<Output = ()>,
    what: &str,
) {
    let sender = publish_clip(&publisher, clip);
    tokio::join!(sender, checks);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut rx = Vec::new();
    drain(&mut viewer, &mut rx);
    let video = rx.iter().filter(|r| r.kind == MediaKind::Video).count();
    assert_eq!(video, clip.video_payloads().len(), "{what}");
    assert_eq!(viewer.close().await.unwrap(), 200);
    assert_eq!(publisher.close().await.unwrap(), 200);
}
