//! ICE servers (STUN, RFC 8489) for `whip-ingest` through `sfu::client`, on
//! loopback. A STUN server written here answers Binding requests; since
//! loopback has no NAT, it plays one: the XOR-MAPPED-ADDRESS it returns is
//! the request's source with another port (what a NAT's mapping looks like),
//! so the server-reflexive candidate differs from the host candidate and
//! str0m keeps it (a srflx equal to its base is redundant, RFC 8445 §5.1.3).
//!
//! - `--ice-server stun:…`: the candidate is gathered before the offer, from
//!   the session's own media socket, and the session carries media to a
//!   viewer.
//! - A server whose answer carries `Link: <stun:…>; rel="ice-server"` (RFC
//!   9725 §4.6): the candidate is learnt after the answer and trickled by
//!   PATCH `application/trickle-ice-sdpfrag`, which the server accepts.
//! - TURN (RFC 8656) with coturn (`turnserver`, Debian's `coturn`) on
//!   loopback: `--ice-server turn:…,user,pass --relay-only` offers only the
//!   relayed candidate, so every packet goes through coturn; a viewer still
//!   gets the media. A TURN server named only in a `Link` header gets its
//!   relay candidate trickled.

mod common;

use common::*;
use sfu::config::{Config, IceServer};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use str0m::media::MediaKind;

/// The test's STUN server: answers every Binding request with the source
/// address, port changed by [`nat_port`]; records `(source, mapped)`.
struct StunServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(SocketAddr, SocketAddr)>>>,
    stop: Arc<AtomicBool>,
}

/// The emulated NAT's port mapping.
fn nat_port(p: u16) -> u16 {
    if p >= 60_000 { p - 10_000 } else { p + 1_000 }
}

impl StunServer {
    fn start() -> StunServer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                // A Binding request: type 0x0001, magic cookie.
                if n < 20 || buf[..2] != [0, 1] || buf[4..8] != [0x21, 0x12, 0xa4, 0x42] {
                    continue;
                }
                let SocketAddr::V4(v4) = from else { continue };
                let mapped = SocketAddr::new(from.ip(), nat_port(from.port()));
                let mut r = vec![0x01, 0x01, 0, 12];
                r.extend_from_slice(&buf[4..20]);
                // XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
                r.extend_from_slice(&[0x00, 0x20, 0, 8, 0, 1]);
                r.extend_from_slice(&(mapped.port() ^ 0x2112).to_be_bytes());
                let ip = u32::from(*v4.ip()) ^ 0x2112_a442;
                r.extend_from_slice(&ip.to_be_bytes());
                let _ = sock.send_to(&r, from);
                s.lock().unwrap().push((from, mapped));
            }
        });
        StunServer { addr, seen, stop }
    }

    fn seen(&self) -> Vec<(SocketAddr, SocketAddr)> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for StunServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The test pattern with a beep publishes to `base`/`name`; a viewer gets
/// video frames and Opus. Returns the ingest's log after a clean stop.
async fn publish_and_view(base: &str, name: &str, extra: &[&str]) -> String {
    let url = format!("{base}/whip/{name}");
    let mut args = vec!["test", "--fps", "30", "--audio", "--url", &url];
    args.extend_from_slice(extra);
    let mut ing = Ingest::start(&args);
    let mut v = viewer(&format!("{base}/whep/{name}"), Duration::from_secs(10)).await;
    let rx = collect(&mut v, Duration::from_secs(2)).await;
    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "clean stop:\n{log}");
    let fr = frames(&video_in_order(&rx));
    assert!(
        fr.iter().any(|f| f.keyframe) && fr.len() >= 30,
        "{} video frames in 2 s:\n{log}",
        fr.len()
    );
    let opus = rx.iter().filter(|r| r.kind == MediaKind::Audio).count();
    assert!(opus >= 50, "{opus} Opus packets in 2 s");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stun_server_from_the_command_line_gives_a_srflx_candidate_in_the_offer() {
    let stun = StunServer::start();
    let base = start_server().await;
    let server = format!("stun:{}", stun.addr);
    let log = publish_and_view(&base, "stuncli", &["--ice-server", &server]).await;
    let seen = stun.seen();
    assert!(
        !seen.is_empty(),
        "no Binding request reached the STUN server"
    );
    let (from, mapped) = seen[0];
    // Asked from the media socket: the candidate's base is the host
    // candidate (raddr/rport), and it was gathered before the offer.
    let line = format!("server-reflexive candidate {mapped} from {server}");
    assert!(log.contains(&line), "no '{line}':\n{log}");
    assert!(
        !log.contains("(trickled)"),
        "gathered before the offer:\n{log}"
    );
    assert!(!log.contains("no STUN answer"), "{log}");
    eprintln!("srflx {mapped} for the media socket {from}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stun_server_from_a_link_header_is_trickled() {
    let stun = StunServer::start();
    let server = format!("stun:{}", stun.addr);
    let base = start_server_with(Config {
        workers: 2,
        rate_limit: 0.0,
        ice_servers: vec![IceServer {
            url: server.clone(),
            username: None,
            credential: None,
        }],
        ..Config::default()
    })
    .await;
    let log = publish_and_view(&base, "stunlink", &[]).await;
    let seen = stun.seen();
    assert!(
        !seen.is_empty(),
        "no Binding request reached the STUN server"
    );
    let (_, mapped) = seen[0];
    let line = format!("server-reflexive candidate {mapped} from {server} (trickled)");
    assert!(log.contains(&line), "no '{line}':\n{log}");
    // The PATCH carried the candidate and the server took it (2xx).
    let trickled = log
        .lines()
        .find(|l| l.contains("trickled candidate:"))
        .unwrap_or_else(|| panic!("no trickle PATCH:\n{log}"));
    assert!(
        trickled.contains(&format!("127.0.0.1 {} typ srflx", mapped.port())),
        "{trickled}"
    );
    assert!(
        trickled.trim_end().ends_with(": 204") || trickled.trim_end().ends_with(": 200"),
        "{trickled}"
    );
    assert!(!log.contains("trickle PATCH"), "no failed PATCH:\n{log}");
}

/// coturn on 127.0.0.1 (UDP only, long-term credentials `u`/`p`, realm
/// `test`, relaying to loopback peers); killed when dropped.
struct Coturn {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Coturn {
    fn start(dir: &std::path::Path) -> Coturn {
        let port = free_udp_ports();
        let log = dir.join("turnserver.log");
        let child = Command::new("turnserver")
            .args([
                "-n",
                "--listening-ip",
                "127.0.0.1",
                "--relay-ip",
                "127.0.0.1",
            ])
            .args(["--listening-port", &port.to_string()])
            .args([
                "--allow-loopback-peers",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--no-tcp",
            ])
            .args([
                "--lt-cred-mech",
                "--user",
                "u:p",
                "--realm",
                "test",
                "--simple-log",
            ])
            .args(["--log-file", log.to_str().unwrap(), "-v"])
            .args(["--pidfile", dir.join("turnserver.pid").to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver (Debian's coturn; tests/run.sh installs it)");
        // Killed by Drop also if it never answers.
        let turn = Coturn { child, port, log };
        // Listening once a Binding request is answered.
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let req = sfu::client::stun::binding_request(&[3; 12]);
        let mut buf = [0u8; 512];
        for _ in 0..50 {
            let _ = probe.send_to(&req, ("127.0.0.1", port));
            if let Ok(n) = probe.recv(&mut buf)
                && sfu::client::stun::parse_binding_success(&buf[..n]).is_some()
            {
                return turn;
            }
        }
        panic!("turnserver did not answer on 127.0.0.1:{port}");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_relay_carries_the_media_when_only_the_relay_candidate_is_offered() {
    let dir = temp_dir("turn");
    let turn = Coturn::start(&dir);
    let base = start_server().await;
    let server = format!("turn:127.0.0.1:{}", turn.port);
    let log = publish_and_view(
        &base,
        "turnrelay",
        &["--ice-server", &format!("{server},u,p"), "--relay-only"],
    )
    .await;
    let line = "relay candidate 127.0.0.1:";
    assert!(
        log.lines()
            .any(|l| l.contains(line) && l.contains(&server) && !l.contains("trickled")),
        "no relay candidate from {server} in the offer:\n{log}"
    );
    // coturn logs the session's end (after our deallocating Refresh) with
    // its packet counts.
    let mut tlog = turn.log();
    for _ in 0..50 {
        if tlog.contains("usage:") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        tlog = turn.log();
    }
    assert!(
        tlog.contains("ALLOCATE processed, success"),
        "coturn allocated:\n{tlog}"
    );
    assert!(
        tlog.contains("CREATE_PERMISSION processed, success"),
        "coturn permitted the server's address:\n{tlog}"
    );
    // What the relay sent on to the peer (the sfu): the media.
    let relayed: u64 = tlog
        .lines()
        .find(|l| l.contains("peer usage:"))
        .and_then(|l| l.split("sp=").nth(1))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peer usage in coturn's log:\n{tlog}"));
    assert!(relayed >= 100, "{relayed} packets relayed to the sfu");
    eprintln!("turn: {relayed} packets relayed to the sfu");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_server_from_a_link_header_gives_a_trickled_relay_candidate() {
    let dir = temp_dir("turnlink");
    let turn = Coturn::start(&dir);
    let server = format!("turn:127.0.0.1:{}", turn.port);
    let base = start_server_with(Config {
        workers: 2,
        rate_limit: 0.0,
        ice_servers: vec![IceServer {
            url: server.clone(),
            username: Some("u".into()),
            credential: Some("p".into()),
        }],
        ..Config::default()
    })
    .await;
    let log = publish_and_view(&base, "turnlink", &[]).await;
    assert!(
        log.lines()
            .any(|l| l.contains("relay candidate 127.0.0.1:") && l.contains("(trickled)")),
        "no trickled relay candidate:\n{log}"
    );
    let trickled = log
        .lines()
        .find(|l| l.contains("trickled candidate:") && l.contains("typ relay"))
        .unwrap_or_else(|| panic!("no trickle PATCH of the relay candidate:\n{log}"));
    assert!(trickled.trim_end().ends_with(": 204"), "{trickled}");
    let _ = std::fs::remove_dir_all(&dir);
}
