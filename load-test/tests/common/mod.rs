//! Helpers shared by the load-test integration tests.

#![allow(dead_code)] // each test crate uses its own subset

use sfu::config::{Config, StreamAuth};
use sfu::server::Server;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Start our SFU in this process on loopback (one worker, no rate limit,
/// HTTP and UDP on free ports) with `auth`; returns its `http://` base URL.
/// It serves until the test's runtime ends.
pub async fn start_sfu(auth: StreamAuth) -> String {
    let cfg = Config {
        workers: 1,
        rate_limit: 0.0,
        http: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        auth,
        ..Config::default()
    };
    let server = Server::start(&cfg).await.expect("server starts");
    let base = format!("http://{}", server.http_addr);
    tokio::spawn(server.serve());
    base
}

/// Read one HTTP/1.1 request from `s`: its head (request line and headers,
/// without the blank line) and its body (`Content-Length` bytes, fewer when
/// the peer closes first). `None` when the connection closes before the head
/// is complete.
pub async fn read_request(s: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let (head, start) = loop {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&buf[..i]).into_owned(), i + 4);
        }
    };
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < start + len {
        let n = s.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some((head, String::from_utf8_lossy(&buf[start..]).into_owned()))
}
