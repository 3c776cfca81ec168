//! Helpers for the whip-ingest end-to-end tests: an in-process server on
//! loopback, media made by ffmpeg at test time, the binary as a child
//! process, and a WHEP viewer whose packets are reassembled.

#![allow(dead_code)]

use sfu::client::depay::{Frame, H264Depacketizer, to_annex_b};
use sfu::client::{ClientEvent, Options, Received, Session};
use sfu::config::Config;
use sfu::server::Server;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::media::MediaKind;

/// Start a server on 127.0.0.1 with ephemeral ports; returns its base URL.
pub async fn start_server() -> String {
    start_server_with(Config {
        workers: 2,
        rate_limit: 0.0,
        ..Config::default()
    })
    .await
}

/// Like [`start_server`] with a custom configuration.
pub async fn start_server_with(mut cfg: Config) -> String {
    cfg.http = "127.0.0.1:0".parse().unwrap();
    cfg.udp = "127.0.0.1:0".parse().unwrap();
    let server = Server::start(&cfg).await.expect("server starts");
    let base = format!("http://{}", server.http_addr);
    tokio::spawn(server.serve());
    base
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("whip-ingest-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run ffmpeg to completion (quiet), panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg must be installed");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// x264 settings of the test streams: Constrained Baseline, no B-frames.
pub const X264: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-tune",
    "zerolatency",
    "-profile:v",
    "baseline",
    "-bf",
    "0",
    "-sc_threshold",
    "0",
    "-pix_fmt",
    "yuv420p",
];

/// The whip-ingest binary running as a child; its stderr is collected.
pub struct Ingest {
    /// The child process.
    pub child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Ingest {
    /// Start `whip-ingest ARGS`.
    pub fn start(args: &[&str]) -> Ingest {
        let mut child = Command::new(env!("CARGO_BIN_EXE_whip-ingest"))
            .args(args)
            .env("RUST_LOG", "whip_ingest=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("whip-ingest starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let s = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Ingest { child, stderr }
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Send SIGTERM.
    pub fn term(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM");
    }

    /// Wait for the exit (panics after `timeout`).
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Let the reader thread drain the pipe.
                std::thread::sleep(Duration::from_millis(50));
                return st;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!(
                    "whip-ingest did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait until stderr contains `s` (panics after `timeout`).
    pub async fn wait_for_log(&self, s: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            let e = self.stderr();
            if e.contains(s) {
                return e;
            }
            assert!(
                Instant::now() < end,
                "no '{s}' in whip-ingest's stderr within {timeout:?}:\n{e}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a WHEP viewer as soon as the stream is live (409 until then).
pub async fn viewer(url: &str, timeout: Duration) -> Session {
    viewer_with(url, timeout, Options::default()).await
}

/// Like [`viewer`] with custom options (e.g. the codecs offered).
pub async fn viewer_with(url: &str, timeout: Duration, opts: Options) -> Session {
    let end = Instant::now() + timeout;
    loop {
        match Session::play(url, opts.clone()).await {
            Ok(mut s) => {
                s.wait_connected(Duration::from_secs(10)).await.unwrap();
                return s;
            }
            Err(e) if e.to_string().contains("409") && Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("viewer: {e}"),
        }
    }
}

/// Everything a session receives for `d` (stops early on Closed).
pub async fn collect(s: &mut Session, d: Duration) -> Vec<Received> {
    let end = tokio::time::Instant::now() + d;
    let mut out = Vec::new();
    while let Ok(ev) = tokio::time::timeout_at(end, s.events.recv()).await {
        match ev {
            Some(ClientEvent::Rtp(r)) => out.push(r),
            Some(ClientEvent::Closed(why)) => panic!("viewer closed: {why}"),
            Some(_) => {}
            None => break,
        }
    }
    out
}

/// Video packets in sequence order, duplicates removed.
pub fn video_in_order(rx: &[Received]) -> Vec<Received> {
    let mut v: Vec<Received> = rx
        .iter()
        .filter(|r| r.kind == MediaKind::Video)
        .cloned()
        .collect();
    v.sort_by_key(|r| r.seq);
    v.dedup_by_key(|r| r.seq);
    v
}

/// Reassemble access units from video packets (in sequence order).
pub fn frames(video: &[Received]) -> Vec<Frame> {
    let mut d = H264Depacketizer::new();
    let mut out = Vec::new();
    for r in video {
        d.push(r.seq as u16, r.ts, r.marker, &r.payload, &mut out)
            .expect("depacketize");
    }
    out.extend(d.flush());
    out
}

/// Decode an Annex B stream with ffmpeg: (frames decoded, error output).
pub fn decode(nals: &[Vec<u8>], dir: &Path) -> (usize, String) {
    let path = dir.join("viewer.h264");
    std::fs::write(&path, to_annex_b(nals)).unwrap();
    let out = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-f",
            "h264",
            "-i",
        ])
        .arg(&path)
        .args(["-f", "framecrc", "-"])
        .output()
        .unwrap();
    let frames = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    (frames, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// NAL units of an Annex B file.
pub fn file_nals(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    sfu::client::h264::nal_units(&data)
        .into_iter()
        .map(|n| {
            let mut n = n.to_vec();
            while n.last() == Some(&0) {
                n.pop();
            }
            n
        })
        .collect()
}

/// NAL unit type.
pub fn nal_type(n: &[u8]) -> u8 {
    n.first().map_or(0, |b| b & 0x1f)
}

/// Four consecutive free UDP ports on 127.0.0.1 starting at an even one.
pub fn free_udp_ports() -> u16 {
    for _ in 0..200 {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        if !(1024..=60000).contains(&p) {
            continue;
        }
        let socks: Vec<_> = (0..4)
            .map(|i| std::net::UdpSocket::bind(("127.0.0.1", p + i)))
            .collect();
        if socks.iter().all(|s| s.is_ok()) {
            return p;
        }
    }
    panic!("no free UDP ports");
}

/// A port nothing listens on (TCP).
pub fn closed_tcp_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
