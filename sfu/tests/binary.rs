//! The `sfu` binary as a user runs it: configuration errors at start, and a
//! graceful SIGTERM that closes every session (DTLS close_notify reaches the
//! client) and exits 0.

use sfu::client::{ClientEvent, Options, Session};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
            Session::publish(&format!("https://127.0.0.1:{http}/whip/cam"), opts.clone())
                .await
                .unwrap();
        publisher
            .wait_connected(Duration::from_secs(10))
            .await
            .unwrap();

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

/// Start the binary on free loopback ports with `args`, stdout and stderr
/// into `log_path`, `NO_COLOR` unset; returns it and its HTTP base URL once
/// `/healthz` answers.
fn start_logging(args: &[&str], log_path: &std::path::Path) -> (std::process::Child, String) {
    let (http, udp) = (free_port(false), free_port(true));
    let log = std::fs::File::create(log_path).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args(["--http", &format!("127.0.0.1:{http}")])
        .args(["--udp", &format!("127.0.0.1:{udp}")])
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
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

/// Text logs into a file (not a terminal) carry no ANSI escape codes.
#[test]
fn text_logs_into_a_file_have_no_colour_codes() {
    let log_path = std::env::temp_dir().join(format!("sfu-ansi-{}.log", std::process::id()));
    let (mut child, _) = start_logging(&[], &log_path);
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.contains("sfu listening"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "ANSI codes in a log file:\n{text:?}"
    );
    let _ = std::fs::remove_file(&log_path);
}
