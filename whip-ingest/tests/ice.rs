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

mod common;

use common::*;
use sfu::config::{Config, IceServer};
use std::net::{SocketAddr, UdpSocket};
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
