//! Real-client signalling styles (see README "Client compatibility"), each
//! reproduced with our str0m client against the in-process server, with real
//! H.264 + Opus media over DTLS/SRTP/UDP to a WHEP viewer:
//!
//! - OBS: candidate-less offer, no trickle, H.264 High; 201 exactly, DELETE 200.
//! - FFmpeg 8 `-f whip`: `a=setup:passive` (the server is the DTLS client),
//!   no `a=rtcp-mux-only`, no candidates; answer ≤ 8 KB with an IPv4 UDP host
//!   candidate first, then media with the server as DTLS client. STUN
//!   without PRIORITY is covered by the `sfu::stun_shim` unit test.
//! - go2rtc / Home Assistant: WHEP with the token only in `?token=`, complete
//!   offer, never DELETEs: reaped through ICE consent loss (RFC 7675).
//! - Eyevinn: `Authorization: Bearer undefined` with auth off, `ETag:` as a
//!   request header instead of `If-Match`, DELETE without Authorization.
//! - GStreamer `whipclientsink`: 200 or 201, `Link` ice-server headers that
//!   parse as RFC 8288 with RFC 9725 §4.6 parameters.

use e2e::{clip, drain, publish_clip, start_server, start_server_with};
use sfu::client::http::{HttpResponse, Url, request};
use sfu::client::{Options, Session, Signalling, Track};
use sfu::config::{Config, IceServer, StreamAuth, TurnSecret};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};
use str0m::media::MediaKind;

const CONNECT: Duration = Duration::from_secs(10);

/// Publish a 2 s clip through `publisher` and assert `viewer` got every
/// video payload and some audio.
/// A default WHEP viewer of `stream` receives the media `publisher` sends;
/// then both sessions DELETE with 200.
async fn default_viewer_gets_media(base: &str, stream: &str, publisher: Session) {
    let mut viewer = Session::play(&format!("{base}/whep/{stream}"), Options::default())
        .await
        .unwrap();
    viewer.wait_connected(CONNECT).await.unwrap();
    media_flows(&publisher, &mut viewer).await;
    assert_eq!(viewer.close().await.unwrap(), 200);
    assert_eq!(publisher.close().await.unwrap(), 200);
}

async fn media_flows(publisher: &Session, viewer: &mut Session) {
    let clip = clip(2);
    publish_clip(publisher, clip).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut rx = Vec::new();
    drain(viewer, &mut rx);
    let video = rx.iter().filter(|r| r.kind == MediaKind::Video).count();
    let audio = rx.iter().filter(|r| r.kind == MediaKind::Audio).count();
    assert_eq!(video, clip.video_payloads().len(), "viewer lost video");
    assert!(audio > 50, "viewer got only {audio} audio packets");
}

fn strip_candidates(sdp: &str) -> String {
    sdp.split_inclusive('\n')
        .filter(|l| !l.starts_with("a=candidate:") && !l.starts_with("a=end-of-candidates"))
        .collect()
}

/// OBS (obs-webrtc on libdatachannel): no candidates, never trickles.
fn obs_offer(sdp: &str) -> String {
    strip_candidates(sdp)
}

/// FFmpeg 8 `-f whip`: candidate-less, `setup:passive`, `rtcp-mux` only.
fn ffmpeg_offer(sdp: &str) -> String {
    strip_candidates(sdp).replace("a=setup:actpass", "a=setup:passive")
}

fn sig(rewrite: fn(&str) -> String, headers: &[(&str, &str)]) -> Signalling {
    Signalling {
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        offer_rewrite: Some(rewrite),
        ..Signalling::default()
    }
}

fn with_tracks(tracks: Vec<Track>) -> Options {
    Options {
        tracks,
        ..Options::default()
    }
}

async fn req(
    base: &str,
    method: &str,
    path: &str,
    h: &[(&str, &str)],
    body: Option<&str>,
) -> HttpResponse {
    let url = Url::parse(&format!("{base}{path}")).unwrap();
    request(method, &url, h, body.map(str::to_string))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obs_candidate_less_h264_high_publisher() {
    let base = start_server(2).await;
    // Audio mid 0 Opus, video mid 1 H.264 High 3.1, as OBS offers them.
    let opts = with_tracks(vec![Track::Opus, Track::H264(0x64001f)]);
    let mut publisher = Session::publish_with(
        &format!("{base}/whip/obs"),
        opts.clone(),
        sig(
            obs_offer,
            &[("user-agent", "Mozilla/5.0 (OBS-Studio/31.0.0)")],
        ),
    )
    .await
    .unwrap();
    let r = &publisher.response;
    assert_eq!(r.status, 201, "OBS needs exactly 201");
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    assert!(r.body.starts_with("v=0"), "answer starts with v=0");
    let loc = r.header("location").expect("Location");
    assert!(loc.starts_with('/') && !loc.contains('?'), "Location {loc}");
    // Learned as peer-reflexive: the offer named no address of ours.
    publisher.wait_connected(CONNECT).await.unwrap();
    let mut viewer = Session::play(&format!("{base}/whep/obs"), opts)
        .await
        .unwrap();
    viewer.wait_connected(CONNECT).await.unwrap();
    media_flows(&publisher, &mut viewer).await;
    assert_eq!(viewer.close().await.unwrap(), 200);
    assert_eq!(
        publisher.close().await.unwrap(),
        200,
        "OBS expects DELETE 200"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_passive_offer_gets_active_answer_under_8k() {
    let base = start_server(2).await;
    let publisher = Session::publish_with(
        &format!("{base}/whip/ffmpeg"),
        Options::default(),
        sig(
            ffmpeg_offer,
            &[
                ("cache-control", "no-cache"),
                ("user-agent", "Lavf/62.3.100"),
            ],
        ),
    )
    .await
    .unwrap();
    let answer = publisher.answer.clone();
    assert_eq!(publisher.response.status, 201);
    assert!(
        answer.starts_with("v="),
        "FFmpeg rejects answers not starting v="
    );
    assert!(
        answer.len() <= 8192,
        "answer is {} bytes, FFmpeg's MAX_SDP_SIZE is 8192",
        answer.len()
    );
    assert!(
        answer.contains("a=setup:active") && !answer.contains("a=setup:passive"),
        "a passive offerer needs an active (DTLS client) answer:\n{answer}"
    );
    // FFmpeg dials only the first `udp … typ host` candidate: it must be an
    // IPv4 literal (no mDNS, no TCP).
    let first = answer
        .lines()
        .find(|l| l.starts_with("a=candidate:"))
        .expect("answer carries candidates");
    let f: Vec<&str> = first.split_whitespace().collect();
    assert!(f.len() >= 8, "candidate line: {first}");
    assert!(f[2].eq_ignore_ascii_case("udp"), "first candidate {first}");
    assert!(f[4].parse::<Ipv4Addr>().is_ok(), "first candidate {first}");
    assert_eq!((f[6], f[7]), ("typ", "host"), "first candidate {first}");
    assert_eq!(
        publisher.close().await.unwrap(),
        200,
        "FFmpeg DELETEs on close"
    );
}

/// Media over a `setup:passive` offer: the server must act as DTLS client
/// (`a=setup:active` answer) and our str0m client, the DTLS server here,
/// must start ICE checks without a DTLS timer to wake it (this hung until
/// the client drove its ICE agent once before the first poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_passive_offer_media_flows() {
    let base = start_server(2).await;
    let mut publisher = Session::publish_with(
        &format!("{base}/whip/ffmpeg"),
        Options::default(),
        sig(ffmpeg_offer, &[("cache-control", "no-cache")]),
    )
    .await
    .unwrap();
    // DTLS completes with the server as client (our str0m is the server here).
    publisher.wait_connected(CONNECT).await.unwrap();
    default_viewer_gets_media(&base, "ffmpeg", publisher).await;
}

/// medooze `whip-whep` (npm 1.2.0) `stop()`: `pc.close()` (DTLS
/// close_notify) first, then DELETE. The server has already ended the
/// session on the close_notify; the DELETE still gets 200, a second one 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_whep_js_stop_closes_peer_before_delete_gets_200() {
    let base = start_server(2).await;
    let (publisher, viewer) = e2e::live_pair(&base, "medooze").await;
    let viewer_url = viewer.hang_up().await;
    let t0 = Instant::now();
    while viewers(&base, "medooze").await != Some(0) {
        assert!(
            t0.elapsed() < CONNECT,
            "close_notify did not end the viewer session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let publisher_url = publisher.hang_up().await;
    let t0 = Instant::now();
    while e2e::get_json(&base, "/api/streams")
        .await
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        assert!(
            t0.elapsed() < CONNECT,
            "close_notify did not end the publisher session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for url in [&viewer_url, &publisher_url] {
        let r = request("DELETE", url, &[], None).await.unwrap();
        assert_eq!(r.status, 200, "DELETE after close_notify: {}", r.body);
        let r = request("DELETE", url, &[], None).await.unwrap();
        assert_eq!(r.status, 404, "second DELETE");
    }
}

async fn viewers(base: &str, stream: &str) -> Option<u64> {
    let r = req(base, "GET", "/api/streams", &[], None).await;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v.as_array()?
        .iter()
        .find(|s| s["name"] == stream || s["stream"] == stream)
        .or_else(|| v.as_array()?.first())?["viewers"]
        .as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go2rtc_query_token_viewer_is_reaped_without_delete() {
    let base = start_server_with(Config {
        workers: 2,
        rate_limit: 0.0,
        auth: StreamAuth {
            publish_token: Some("pubtok".into()),
            view_token: Some("viewtok".into()),
            replace: None,
        },
        ..Config::default()
    })
    .await;
    let mut publisher = Session::publish(
        &format!("{base}/whip/ha"),
        Options {
            token: Some("pubtok".into()),
            ..Options::default()
        },
    )
    .await
    .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    // go2rtc sends no Authorization header at all.
    let e = Session::play(&format!("{base}/whep/ha"), Options::default())
        .await
        .err()
        .expect("no token: refused");
    assert!(e.to_string().contains("401"), "{e}");
    // Complete recvonly offer as go2rtc makes it: Opus, PCMU, PCMA, H.264.
    let tracks = vec![Track::Opus, Track::Pcmu, Track::Pcma, Track::H264(0x42e01f)];
    let mut viewer = Session::play(
        &format!("{base}/whep/ha?token=viewtok"),
        with_tracks(tracks),
    )
    .await
    .unwrap();
    assert!(viewer.answer.contains("a=candidate:"));
    viewer.wait_connected(CONNECT).await.unwrap();
    media_flows(&publisher, &mut viewer).await;
    assert_eq!(viewers(&base, "ha").await, Some(1));
    let location = viewer.location.clone();
    // go2rtc never DELETEs: the session goes on consent loss.
    let t0 = Instant::now();
    viewer.abandon();
    while viewers(&base, "ha").await != Some(0) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "vanished go2rtc viewer not reaped after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "go2rtc viewer reaped after {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let r = request(
        "DELETE",
        &location,
        &[("authorization", "Bearer viewtok")],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404, "the reaped session URL is gone");
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eyevinn_bearer_undefined_and_etag_request_header() {
    let base = start_server_with(Config {
        workers: 2,
        rate_limit: 0.0,
        strict_if_match: true,
        ..Config::default()
    })
    .await;
    let undefined = [("authorization", "Bearer undefined")];
    let keep = |s: &str| s.to_string();
    let mut publisher = Session::publish_with(
        &format!("{base}/whip/eyevinn"),
        Options::default(),
        sig(keep, &undefined),
    )
    .await
    .expect("Bearer undefined is no token when auth is off");
    publisher.wait_connected(CONNECT).await.unwrap();
    let mut viewer = Session::play_with(
        &format!("{base}/whep/eyevinn"),
        Options::default(),
        sig(keep, &[("authorization", "Bearer null")]),
    )
    .await
    .expect("Bearer null too");
    viewer.wait_connected(CONNECT).await.unwrap();
    let path = viewer.location.path.clone();
    let etag = viewer.etag.clone().expect("201 carries ETag");
    let ct = ("content-type", "application/trickle-ice-sdpfrag");
    let trickle = "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n";
    // Strict mode: a PATCH with no tag at all needs one (428) ...
    let r = req(&base, "PATCH", &path, &[ct], Some(trickle)).await;
    assert_eq!(r.status, 428, "strict mode without a tag: {}", r.body);
    // ... Eyevinn's `ETag:` request header stands in for If-Match.
    let r = req(
        &base,
        "PATCH",
        &path,
        &[ct, ("etag", "\"stale\"")],
        Some(trickle),
    )
    .await;
    assert_eq!(r.status, 412, "stale ETag header: {}", r.body);
    let r = req(
        &base,
        "PATCH",
        &path,
        &[ct, ("etag", &etag), undefined[0]],
        Some(trickle),
    )
    .await;
    assert_eq!(r.status, 204, "ETag header as If-Match: {}", r.body);
    media_flows(&publisher, &mut viewer).await;
    // Eyevinn's DELETE carries no Authorization: the session URL suffices.
    let r = request("DELETE", &viewer.location, &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(publisher.close().await.unwrap(), 200);
}

/// One RFC 8288 link-value: target and parameters (names lower-cased,
/// quoted-string values unescaped).
#[derive(Debug)]
struct Link {
    target: String,
    params: Vec<(String, String)>,
}

impl Link {
    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parse a `Link` field value (RFC 8288 §3): `#link-value`, each
/// `"<" URI-Reference ">" *( OWS ";" OWS link-param )`, where
/// `link-param = token BWS [ "=" BWS ( token / quoted-string ) ]`.
fn parse_links(value: &str) -> Result<Vec<Link>, String> {
    let mut out = Vec::new();
    let mut s = value.trim_start();
    while !s.is_empty() {
        s = s
            .strip_prefix('<')
            .ok_or(format!("expected '<' at {s:?}"))?;
        let end = s.find('>').ok_or("unterminated <")?;
        let target = s[..end].to_string();
        s = s[end + 1..].trim_start();
        let mut params = Vec::new();
        while let Some(rest) = s.strip_prefix(';') {
            s = rest.trim_start();
            let n = s
                .find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
                .unwrap_or(s.len());
            if n == 0 {
                return Err(format!("empty parameter name at {s:?}"));
            }
            let name = s[..n].to_ascii_lowercase();
            s = s[n..].trim_start();
            let mut val = String::new();
            if let Some(rest) = s.strip_prefix('=') {
                s = rest.trim_start();
                if let Some(mut q) = s.strip_prefix('"') {
                    loop {
                        let mut ch = q.chars();
                        match ch.next() {
                            None => return Err("unterminated quoted-string".into()),
                            Some('"') => break,
                            Some('\\') => val.push(ch.next().ok_or("dangling escape")?),
                            Some(c) => val.push(c),
                        }
                        q = ch.as_str();
                    }
                    s = &q[1..];
                } else {
                    let n = s.find(|c: char| c == ';' || c == ',' || c.is_whitespace());
                    let n = n.unwrap_or(s.len());
                    val = s[..n].to_string();
                    s = &s[n..];
                }
            }
            params.push((name, val));
            s = s.trim_start();
        }
        out.push(Link { target, params });
        match s.strip_prefix(',') {
            Some(rest) => s = rest.trim_start(),
            None if s.is_empty() => {}
            None => return Err(format!("garbage after link-value: {s:?}")),
        }
    }
    Ok(out)
}

#[test]
fn link_parser_handles_rfc8288_examples() {
    let l = parse_links(r#"<turn:a.example?transport=udp>; rel="ice-server"; username="u\"x"; credential=c, <stun:b>;rel=ice-server"#)
        .unwrap();
    assert_eq!(l.len(), 2);
    assert_eq!(l[0].target, "turn:a.example?transport=udp");
    assert_eq!(l[0].param("username"), Some("u\"x"));
    assert_eq!(l[0].param("credential"), Some("c"));
    assert_eq!(l[1].param("rel"), Some("ice-server"));
    assert!(parse_links("stun:x; rel=ice-server").is_err());
    assert!(parse_links("<stun:x>; rel=\"ice-server").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whipclientsink_accepts_2xx_and_follows_link_headers() {
    let base = start_server_with(Config {
        workers: 2,
        rate_limit: 0.0,
        ice_servers: vec![
            IceServer {
                url: "stun:stun.example.net:3478".into(),
                username: None,
                credential: None,
            },
            IceServer {
                url: "turn:static.example.net:3478?transport=udp".into(),
                username: Some("static\"user".into()),
                credential: Some("pa;ss,word".into()),
            },
        ],
        turn: Some(TurnSecret {
            urls: vec![
                "turn:turn.example.net:3478?transport=udp".into(),
                "turns:turn.example.net:5349?transport=tcp".into(),
            ],
            secret: "coturn-secret".into(),
            ttl_secs: Some(600),
        }),
        ..Config::default()
    })
    .await;
    let mut publisher = Session::publish(&format!("{base}/whip/gst"), Options::default())
        .await
        .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    let r = &publisher.response;
    assert!(
        matches!(r.status, 200 | 201),
        "whipclientsink takes 200 or 201"
    );
    assert!(r.header("location").is_some());
    let mut links = Vec::new();
    for (k, v) in &r.headers {
        if k == "link" {
            links.extend(parse_links(v).unwrap_or_else(|e| panic!("Link {v:?}: {e}")));
        }
    }
    let ice: Vec<&Link> = links
        .iter()
        .filter(|l| l.param("rel") == Some("ice-server"))
        .collect();
    assert_eq!(ice.len(), 4, "{links:?}");
    let targets: Vec<&str> = ice.iter().map(|l| l.target.as_str()).collect();
    assert_eq!(targets[0], "stun:stun.example.net:3478");
    assert!(ice[0].param("username").is_none());
    assert_eq!(ice[1].param("username"), Some("static\"user"));
    assert_eq!(ice[1].param("credential"), Some("pa;ss,word"));
    assert_eq!(ice[1].param("credential-type"), Some("password"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for l in &ice[2..] {
        assert!(l.target.starts_with("turn:") || l.target.starts_with("turns:"));
        assert_eq!(l.param("credential-type"), Some("password"), "{l:?}");
        let user = l.param("username").expect("TURN username");
        let (expiry, _id) = user.split_once(':').expect("coturn username expiry:id");
        let expiry: u64 = expiry.parse().expect("numeric expiry");
        assert!(
            expiry > now && expiry <= now + 601,
            "expiry {expiry} vs now {now}"
        );
        assert_eq!(
            l.param("credential"),
            Some(sfu::http::ice_links::turn_credential("coturn-secret", user).as_str()),
            "coturn use-auth-secret credential"
        );
    }
    // OBS-compatible too: one URL per field value, no commas outside quotes.
    for (k, v) in &r.headers {
        if k == "link" {
            assert_eq!(parse_links(v).unwrap().len(), 1, "one link per field: {v}");
        }
    }
    // Media still flows with the usual client.
    default_viewer_gets_media(&base, "gst", publisher).await;
}
