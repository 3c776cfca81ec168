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
            .env("RUST_LOG", "whip_ingest=debug,sfu::client=debug")
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

/// Video codecs the depacketizers below understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// RFC 7741.
    Vp8,
    /// RFC 9628.
    Vp9,
    /// AOM AV1 RTP payload format.
    Av1,
    /// RFC 7798.
    H265,
}

/// One reassembled video frame.
#[derive(Debug, Clone)]
pub struct VFrame {
    /// RTP timestamp (90 kHz).
    pub ts: u32,
    /// VP8/VP9: the compressed frame; AV1: the temporal unit in low-overhead
    /// format (temporal delimiter + OBUs with size fields); H.265: NAL units
    /// in Annex B.
    pub data: Vec<u8>,
    /// Key frame per the payload format (VP8 frame tag, VP9 P bit = 0, AV1
    /// N bit, H.265 IRAP NAL unit).
    pub keyframe: bool,
}

fn leb128(b: &[u8]) -> (usize, usize) {
    let mut v = 0usize;
    for (i, &x) in b.iter().enumerate().take(8) {
        v |= usize::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    panic!("bad LEB128");
}

fn put_leb128(out: &mut Vec<u8>, mut v: usize) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// VP8 payload descriptor (RFC 7741 §4.2): (starts a frame, payload).
fn vp8_payload(p: &[u8]) -> (bool, &[u8]) {
    let b0 = p[0];
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = p[1];
        i = 2;
        if x & 0x80 != 0 {
            i += if p[i] & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1;
        }
        if x & 0x30 != 0 {
            i += 1;
        }
    }
    (b0 & 0x10 != 0 && b0 & 0x07 == 0, &p[i..])
}

/// VP9 payload descriptor (RFC 9628 §4.2): (B bit, P bit, payload).
fn vp9_payload(p: &[u8]) -> (bool, bool, &[u8]) {
    let b0 = p[0];
    let mut i = 1;
    if b0 & 0x80 != 0 {
        i += if p[i] & 0x80 != 0 { 2 } else { 1 };
    }
    let flexible = b0 & 0x10 != 0;
    if b0 & 0x20 != 0 {
        i += if flexible { 1 } else { 2 };
    }
    if flexible && b0 & 0x40 != 0 {
        while p[i] & 0x01 != 0 {
            i += 1;
        }
        i += 1;
    }
    if b0 & 0x02 != 0 {
        let ss = p[i];
        i += 1;
        let n_s = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            i += 4 * n_s;
        }
        if ss & 0x08 != 0 {
            let n_g = p[i];
            i += 1;
            for _ in 0..n_g {
                let r = usize::from((p[i] >> 2) & 3);
                i += 1 + r;
            }
        }
    }
    (b0 & 0x08 != 0, b0 & 0x40 != 0, &p[i..])
}

/// Reassemble frames (in sequence order, one frame per marker bit) and
/// check each packet's payload format.
pub fn depacketize(codec: VideoCodec, video: &[Received]) -> Vec<VFrame> {
    let mut out = Vec::new();
    let mut cur: Vec<&Received> = Vec::new();
    for r in video {
        if cur.first().is_some_and(|f| f.ts != r.ts) {
            cur.clear(); // incomplete frame (no marker): dropped
        }
        cur.push(r);
        if r.marker {
            if let Some(f) = assemble(codec, &cur) {
                out.push(f);
            }
            cur.clear();
        }
    }
    out
}

fn assemble(codec: VideoCodec, pk: &[&Received]) -> Option<VFrame> {
    let ts = pk[0].ts;
    match codec {
        VideoCodec::Vp8 => {
            let (start, _) = vp8_payload(&pk[0].payload);
            if !start {
                return None;
            }
            let data: Vec<u8> = pk
                .iter()
                .flat_map(|r| vp8_payload(&r.payload).1.to_vec())
                .collect();
            let keyframe = data.first().is_some_and(|b| b & 1 == 0);
            Some(VFrame { ts, data, keyframe })
        }
        VideoCodec::Vp9 => {
            let (b, p, _) = vp9_payload(&pk[0].payload);
            if !b {
                return None;
            }
            let data: Vec<u8> = pk
                .iter()
                .flat_map(|r| vp9_payload(&r.payload).2.to_vec())
                .collect();
            Some(VFrame {
                ts,
                data,
                keyframe: !p,
            })
        }
        VideoCodec::Av1 => {
            if pk[0].payload[0] & 0x80 != 0 {
                return None; // starts inside an OBU
            }
            let keyframe = pk[0].payload[0] & 0x08 != 0;
            let mut obus: Vec<Vec<u8>> = Vec::new();
            for r in pk {
                let p = &r.payload;
                let z = p[0] & 0x80 != 0;
                let w = usize::from((p[0] >> 4) & 3);
                let mut b = &p[1..];
                let mut k = 0;
                while !b.is_empty() {
                    k += 1;
                    let (len, used) = if w != 0 && k == w {
                        (b.len(), 0)
                    } else {
                        leb128(b)
                    };
                    let el = &b[used..used + len];
                    if k == 1 && z {
                        obus.last_mut()
                            .expect("Z=1 continues an OBU")
                            .extend_from_slice(el);
                    } else {
                        obus.push(el.to_vec());
                    }
                    b = &b[used + len..];
                }
            }
            let mut data = vec![0x12, 0x00]; // temporal delimiter
            for o in obus {
                let hlen = if o[0] & 0x04 != 0 { 2 } else { 1 };
                data.push(o[0] | 0x02);
                data.extend_from_slice(&o[1..hlen]);
                put_leb128(&mut data, o.len() - hlen);
                data.extend_from_slice(&o[hlen..]);
            }
            Some(VFrame { ts, data, keyframe })
        }
        VideoCodec::H265 => {
            let mut nals: Vec<Vec<u8>> = Vec::new();
            let t = |b: u8| (b >> 1) & 0x3f;
            for r in pk {
                let p = &r.payload;
                match t(p[0]) {
                    49 => {
                        let fu = p[2];
                        if fu & 0x80 != 0 {
                            nals.push(vec![(p[0] & 0x81) | ((fu & 0x3f) << 1), p[1]]);
                        }
                        nals.last_mut()?.extend_from_slice(&p[3..]);
                    }
                    48 => {
                        let mut b = &p[2..];
                        while b.len() > 2 {
                            let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
                            nals.push(b[2..2 + n].to_vec());
                            b = &b[2 + n..];
                        }
                    }
                    _ => nals.push(p.to_vec()),
                }
            }
            let keyframe = nals.iter().any(|n| (16..=23).contains(&t(n[0])));
            Some(VFrame {
                ts,
                data: to_annex_b(&nals),
                keyframe,
            })
        }
    }
}

/// Write frames as an IVF file (pts = frame index, time base 1/30).
pub fn write_ivf(path: &Path, fourcc: &[u8; 4], w: u16, h: u16, frames: &[VFrame]) {
    let mut b = b"DKIF\0\0\x20\0".to_vec();
    b.extend_from_slice(fourcc);
    b.extend(w.to_le_bytes());
    b.extend(h.to_le_bytes());
    b.extend(30u32.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    b.extend((frames.len() as u32).to_le_bytes());
    b.extend([0u8; 4]);
    for (i, f) in frames.iter().enumerate() {
        b.extend((f.data.len() as u32).to_le_bytes());
        b.extend((i as u64).to_le_bytes());
        b.extend_from_slice(&f.data);
    }
    std::fs::write(path, b).unwrap();
}

/// Decode a file with ffmpeg: (bytes of each decoded picture, error output).
pub fn decode_file(path: &Path, format: Option<&str>) -> (Vec<usize>, String) {
    let mut c = Command::new("ffmpeg");
    c.args(["-hide_banner", "-nostdin", "-v", "error"]);
    if let Some(f) = format {
        c.args(["-f", f]);
    }
    let out = c
        .arg("-i")
        .arg(path)
        .args(["-pix_fmt", "yuv420p", "-f", "framecrc", "-"])
        .output()
        .unwrap();
    let sizes = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(',').nth(4).unwrap().trim().parse().unwrap())
        .collect();
    (sizes, String::from_utf8_lossy(&out.stderr).into_owned())
}
