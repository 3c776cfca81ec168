//! The `sfu` binary as a user runs it: configuration errors at start, and a
//! graceful SIGTERM that closes every session (DTLS close_notify reaches the
//! client) and exits 0.

use sfu::client::{ClientEvent, Options, Session};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A publisher on `url` whose ICE and DTLS are up (panics otherwise).
async fn connected_publisher(url: &str, opts: Options) -> Session {
    let mut s = Session::publish(url, opts).await.unwrap();
    s.wait_connected(Duration::from_secs(10)).await.unwrap();
    s
}

fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("sfu-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("sfu.toml");
    std::fs::write(&f, "http = \"127.0.0.1:8080\"\nworkers = \"many\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .arg("--config")
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("workers") && err.contains("line 2"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["--udp", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--udp"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigterm_closes_sessions_and_exits_cleanly() {
    let (http, udp) = (free_port(false), free_port(true));
    let log_path = std::env::temp_dir().join(format!("sfu-sigterm-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args([
            "--http",
            &format!("127.0.0.1:{http}"),
            "--udp",
            &format!("127.0.0.1:{udp}"),
            "--log-format",
            "json",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let base = format!("http://127.0.0.1:{http}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut publisher = loop {
            match Session::publish(&format!("{base}/whip/cam"), Options::default()).await {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("server did not come up: {e}"),
            }
        };
        publisher
            .wait_connected(Duration::from_secs(10))
            .await
            .unwrap();
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let mut closed = false;
        let until = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < until {
            match publisher.next_event(Duration::from_millis(200)).await {
                Some(ClientEvent::Closed(_)) => {
                    closed = true;
                    break;
                }
                _ => continue,
            }
        }
        assert!(
            closed,
            "the client was told (DTLS close_notify) that the session ended"
        );
    });
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "sfu did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // JSON logs: the session's lines carry its span (stream, session id,
    // role, remote address).
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let closed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "peer closed")
        .unwrap_or_else(|| panic!("no 'peer closed' line:\n{text}"));
    let span = &closed["span"];
    assert_eq!(span["name"], "session", "{closed}");
    assert_eq!(span["stream"], "cam");
    assert_eq!(span["role"], "publisher");
    assert_eq!(span["session"].as_str().map(str::len), Some(32), "{closed}");
    assert!(
        span["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{closed}"
    );
    let _ = std::fs::remove_file(&log_path);
}

/// Does a TLS handshake with the server at `port` succeed when only `cert`
/// is trusted?
async fn served_cert_is(port: u16, cert: &rustls_pki_types::CertificateDer<'static>) -> bool {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(name, tcp)
        .await
        .is_ok()
}

#[test]
fn sighup_reloads_the_tls_certificate_and_keeps_sessions() {
    let dir = std::env::temp_dir().join(format!("sfu-hup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mk = || {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        (
            ck.cert.pem(),
            ck.signing_key.serialize_pem(),
            ck.cert.der().clone(),
        )
    };
    let (a_pem, a_key, a_der) = mk();
    let (b_pem, b_key, b_der) = mk();
    let (crt, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&crt, &a_pem).unwrap();
    std::fs::write(&key, &a_key).unwrap();
    let (http, udp) = (free_port(false), free_port(true));
    let mut child = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--udp", &format!("127.0.0.1:{udp}")])
        .arg("--tls-cert")
        .arg(&crt)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !served_cert_is(http, &a_der).await {
            assert!(Instant::now() < deadline, "sfu did not serve certificate A");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let opts = Options {
            insecure: true,
            ..Options::default()
        };
        let mut publisher =
            connected_publisher(&format!("https://127.0.0.1:{http}/whip/cam"), opts.clone()).await;

        std::fs::write(&crt, &b_pem).unwrap();
        std::fs::write(&key, &b_key).unwrap();
        // SAFETY: plain kill(2) on our child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !served_cert_is(http, &b_der).await {
            assert!(
                Instant::now() < deadline,
                "SIGHUP did not load certificate B"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!served_cert_is(http, &a_der).await);
        assert!(child.try_wait().unwrap().is_none(), "sfu survived SIGHUP");
        // The session made before the reload is still there: a viewer of its
        // stream is accepted (409 would mean the publisher was dropped).
        let mut viewer = Session::play(&format!("https://127.0.0.1:{http}/whep/cam"), opts)
            .await
            .expect("publisher still live after SIGHUP");
        viewer
            .wait_connected(Duration::from_secs(10))
            .await
            .unwrap();
        while let Ok(ev) = publisher.events.try_recv() {
            assert!(
                !matches!(ev, ClientEvent::Closed(_)),
                "publisher session closed by SIGHUP"
            );
        }
    });
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A running `sfu` child, killed and reaped when dropped (also when the
/// test fails half-way).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the binary on free loopback ports with `args`, stdout and stderr
/// into `log_path`, `NO_COLOR` unset; returns it and its HTTP base URL once
/// `/healthz` answers.
fn start_logging(args: &[&str], log_path: &std::path::Path) -> (Running, String) {
    let (http, udp) = (free_port(false), free_port(true));
    let log = std::fs::File::create(log_path).unwrap();
    let child = Running(
        Command::new(env!("CARGO_BIN_EXE_sfu"))
            .args(["--http", &format!("127.0.0.1:{http}")])
            .args(["--udp", &format!("127.0.0.1:{udp}")])
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{http}");
    let url = sfu::client::http::Url::parse(&format!("{base}/healthz")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while sfu::client::http::request("GET", &url, &[], None)
            .await
            .map_or(true, |r| r.status != 200)
        {
            assert!(Instant::now() < deadline, "sfu did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    (child, base)
}

/// One HTTP/1.1 POST with a chunked body of `len` bytes and the bearer
/// `token` on a raw TCP connection; returns the status code.
async fn post_chunked(base: &str, path: &str, token: &str, len: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\n\
         Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    let mut left = len;
    while left > 0 {
        let n = left.min(16 * 1024);
        req.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        req.extend(std::iter::repeat_n(b'v', n));
        req.extend_from_slice(b"\r\n");
        left -= n;
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let _ = tcp.write_all(&req).await;
    let mut resp = Vec::new();
    let _ = tcp.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text}"))
}

/// Every refused request (4xx/5xx) is logged exactly once with method, path
/// (no query string), status, remote address and reason; no token (query
/// or header) ever appears in the log.
#[test]
fn every_refused_request_is_logged_once_without_tokens() {
    use sfu::client::http::{Url, request};
    let log_path = std::env::temp_dir().join(format!("sfu-refused-{}.log", std::process::id()));
    let (server, base) = start_logging(
        &["--log-format", "json", "--publish-token", "PUBSECRET"],
        &log_path,
    );
    let unknown = "0123456789abcdef0123456789abcdef";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let publisher_path = rt.block_on(async {
        let send = |method: &'static str,
                    path: String,
                    headers: Vec<(&'static str, String)>,
                    body: Option<String>| {
            let base = base.clone();
            async move {
                let url = Url::parse(&format!("{base}{path}")).unwrap();
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                request(method, &url, &h, body).await.unwrap().status
            }
        };
        let sdp = || ("content-type", "application/sdp".to_string());
        let auth = || ("authorization", "Bearer PUBSECRET".to_string());
        let opts = Options {
            token: Some("PUBSECRET".into()),
            ..Options::default()
        };
        let publisher = connected_publisher(&format!("{base}/whip/cam"), opts).await;
        let loc = publisher.response.header("location").unwrap().to_string();
        let big = "v=0\r\n".repeat(40_000);
        assert_eq!(
            send("POST", "/whip/big".into(), vec![sdp(), auth()], Some(big)).await,
            413
        );
        assert_eq!(
            post_chunked(&base, "/whip/chunked", "PUBSECRET", 200 * 1024).await,
            413
        );
        let frag = (
            "content-type",
            "application/trickle-ice-sdpfrag".to_string(),
        );
        let stale = ("if-match", "\"stale\"".to_string());
        let trickle = "a=end-of-candidates\r\n".to_string();
        assert_eq!(
            send(
                "PATCH",
                loc.clone(),
                vec![frag.clone(), stale, auth()],
                Some(trickle.clone())
            )
            .await,
            412
        );
        assert_eq!(
            send("DELETE", format!("/whip/cam/{unknown}"), vec![auth()], None).await,
            404
        );
        assert_eq!(
            send("GET", format!("/whep/cam/{unknown}"), vec![], None).await,
            404
        );
        assert_eq!(
            send(
                "PATCH",
                format!("/whep/cam/{unknown}"),
                vec![frag],
                Some(trickle)
            )
            .await,
            404
        );
        assert_eq!(send("POST", "/metrics".into(), vec![], None).await, 405);
        let e = Session::play(&format!("{base}/whep/cam?layer=b%21d"), Options::default())
            .await
            .err()
            .expect("invalid RID");
        assert!(e.to_string().contains("400"), "{e}");
        let q = "/whip/notsdp?token=QUERYSECRET".to_string();
        assert_eq!(
            send("POST", q, vec![sdp(), auth()], Some("hello".into())).await,
            400
        );
        let q = "/whip/cam2?token=WRONGSECRET".to_string();
        assert_eq!(send("POST", q, vec![sdp()], Some("v=0".into())).await, 401);
        let basic = ("authorization", "Basic dTpCQVNJQ1NFQ1JFVA==".to_string()); // u:BASICSECRET
        assert_eq!(
            send(
                "POST",
                "/whip/cam3".into(),
                vec![sdp(), basic],
                Some("v=0".into())
            )
            .await,
            401
        );
        assert_eq!(send("HEAD", "/nope".into(), vec![], None).await, 404);
        assert_eq!(publisher.close().await.unwrap(), 200);
        loc
    });
    // (The log is written line by line; give the last ones a moment.)
    std::thread::sleep(Duration::from_millis(300));
    drop(server);
    let text = std::fs::read_to_string(&log_path).unwrap();
    for secret in [
        "PUBSECRET",
        "QUERYSECRET",
        "WRONGSECRET",
        "BASICSECRET",
        "dTpCQVNJQ1NFQ1JFVA",
    ] {
        assert!(!text.contains(secret), "{secret} in the log:\n{text}");
    }
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let expected = [
        ("POST", "/whip/big".to_string(), 413, "body larger than"),
        ("POST", "/whip/chunked".to_string(), 413, "body larger than"),
        ("PATCH", publisher_path, 412, "If-Match does not match"),
        (
            "DELETE",
            format!("/whip/cam/{unknown}"),
            404,
            "no such session",
        ),
        (
            "GET",
            format!("/whep/cam/{unknown}"),
            404,
            "no such session",
        ),
        (
            "PATCH",
            format!("/whep/cam/{unknown}"),
            404,
            "no such session",
        ),
        ("POST", "/metrics".to_string(), 405, "method not allowed"),
        ("POST", "/whep/cam".to_string(), 400, "invalid layer RID"),
        ("POST", "/whip/notsdp".to_string(), 400, "not an SDP offer"),
        (
            "POST",
            "/whip/cam2".to_string(),
            401,
            "missing or wrong token",
        ),
        (
            "POST",
            "/whip/cam3".to_string(),
            401,
            "missing or wrong token",
        ),
        ("HEAD", "/nope".to_string(), 404, "not found"),
    ];
    for (method, path, status, reason) in &expected {
        let hits: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| {
                let f = &l["fields"];
                f["method"] == *method && f["path"] == path.as_str() && f["status"] == *status
            })
            .collect();
        assert_eq!(hits.len(), 1, "{method} {path} {status}:\n{text}");
        let f = &hits[0]["fields"];
        assert_eq!(hits[0]["level"], "INFO", "{}", hits[0]);
        assert!(
            f["reason"].as_str().is_some_and(|r| r.contains(reason)),
            "{}",
            hits[0]
        );
        assert!(
            f["remote"]
                .as_str()
                .is_some_and(|r| r.starts_with("127.0.0.1:")),
            "{}",
            hits[0]
        );
    }
    // Exactly one line per refusal: no other line restates a reason.
    for (_, _, _, reason) in &expected {
        let want = expected.iter().filter(|e| e.3 == *reason).count();
        let got = text.lines().filter(|l| l.contains(reason)).count();
        assert_eq!(got, want, "lines with {reason:?}:\n{text}");
    }
    let _ = std::fs::remove_file(&log_path);
}

/// Text logs into a file (not a terminal) carry no ANSI escape codes.
#[test]
fn text_logs_into_a_file_have_no_colour_codes() {
    let log_path = std::env::temp_dir().join(format!("sfu-ansi-{}.log", std::process::id()));
    let (server, _) = start_logging(&[], &log_path);
    std::thread::sleep(Duration::from_millis(300));
    drop(server);
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("sfu listening"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "ANSI codes in a log file:\n{text:?}"
    );
    let _ = std::fs::remove_file(&log_path);
}
