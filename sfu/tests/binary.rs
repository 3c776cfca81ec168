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
    let mut child = Command::new(env!("CARGO_BIN_EXE_sfu"))
        .args([
            "--http",
            &format!("127.0.0.1:{http}"),
            "--udp",
            &format!("127.0.0.1:{udp}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
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
}
