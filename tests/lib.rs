//! End-to-end test helpers: an in-process server on loopback, real media made
//! by ffmpeg (x264 + libopus) at test time, and a paced publisher.

pub mod impair;

use sfu::client::{ClientEvent, Options, OutPacket, Received, Session, h264, ogg};
use sfu::config::Config;
use sfu::server::Server;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use str0m::media::MediaKind;

/// One video frame: RTP timestamp (90 kHz), keyframe flag, packet payloads.
pub type Frame = (u32, bool, Vec<Arc<[u8]>>);

/// A clip: H.264 access units (as RTP payloads) and Opus packets.
pub struct Clip {
    /// Video frames in order.
    pub video: Vec<Frame>,
    /// Opus packets (20 ms each).
    pub audio: Vec<Arc<[u8]>>,
}

impl Clip {
    /// All video payloads in send order.
    pub fn video_payloads(&self) -> Vec<Arc<[u8]>> {
        self.video
            .iter()
            .flat_map(|(_, _, p)| p.iter().cloned())
            .collect()
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .expect("ffmpeg must be installed (see README test command)");
    assert!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Encode (once per process) a 640x360 30 fps H.264 Constrained Baseline clip
/// with a 1 s GOP and a 48 kHz stereo Opus tone, `seconds` long, with ffmpeg.
pub fn clip(seconds: u32) -> &'static Clip {
    clip_gop(seconds, 30)
}

/// Like [`clip`] with a GOP of `gop` frames (30 fps, no scene-cut keyframes).
pub fn clip_gop(seconds: u32, gop: u32) -> &'static Clip {
    clip_sized(seconds, gop, 640, 360, 1000)
}

/// Like [`clip_gop`] at `width`x`height` and `kbps` kbit/s (e.g. simulcast layers).
pub fn clip_sized(seconds: u32, gop: u32, width: u32, height: u32, kbps: u32) -> &'static Clip {
    type Cache = Vec<((u32, u32, u32, u32, u32), &'static Clip)>;
    static CLIPS: std::sync::Mutex<Cache> = std::sync::Mutex::new(Vec::new());
    let key = (seconds, gop, width, height, kbps);
    let mut clips = CLIPS.lock().unwrap();
    if let Some((_, c)) = clips.iter().find(|(k, _)| *k == key) {
        return c;
    }
    let c: &'static Clip = Box::leak(Box::new(make_clip(seconds, gop, width, height, kbps)));
    clips.push((key, c));
    c
}

fn make_clip(seconds: u32, gop: u32, width: u32, height: u32, kbps: u32) -> Clip {
    let dir: PathBuf = std::env::temp_dir().join(format!("sfu-e2e-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let h264 = dir.join(format!("clip-{seconds}-{gop}-{width}x{height}-{kbps}.h264"));
    let opus = dir.join(format!("clip-{seconds}.opus"));
    let (t, g) = (seconds.to_string(), gop.to_string());
    let quiet = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
    ];
    run(Command::new("ffmpeg")
        .args(quiet)
        .arg(format!("testsrc2=size={width}x{height}:rate=30"))
        .args([
            "-t",
            &t,
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
        ])
        .args([
            "-profile:v",
            "baseline",
            "-bf",
            "0",
            "-g",
            &g,
            "-sc_threshold",
            "0",
        ])
        .args([
            "-pix_fmt",
            "yuv420p",
            "-b:v",
            &format!("{kbps}k"),
            "-f",
            "h264",
        ])
        .arg(&h264));
    run(Command::new("ffmpeg")
        .args(quiet)
        .arg("sine=frequency=440:sample_rate=48000")
        .args([
            "-t", &t, "-c:a", "libopus", "-ac", "2", "-b:a", "64k", "-f", "ogg",
        ])
        .arg(&opus));
    let data = std::fs::read(&h264).unwrap();
    let nals = h264::nal_units(&data);
    let aus = h264::access_units(&nals);
    let video = aus
        .iter()
        .enumerate()
        .map(|(i, au)| {
            let p = h264::packetize(au, h264::MAX_PAYLOAD);
            (
                i as u32 * 3000,
                au.keyframe,
                p.into_iter().map(Arc::from).collect(),
            )
        })
        .collect();
    let audio = ogg::opus_packets(&std::fs::read(&opus).unwrap())
        .unwrap()
        .into_iter()
        .map(Arc::from)
        .collect();
    let _ = std::fs::remove_file(&h264);
    let _ = std::fs::remove_file(&opus);
    let _ = std::fs::remove_dir(&dir);
    Clip { video, audio }
}

/// Start a server on 127.0.0.1 with ephemeral ports; returns its base URL.
pub async fn start_server(workers: usize) -> String {
    start_server_with(Config {
        workers,
        rate_limit: 0.0,
        ..Config::default()
    })
    .await
}

/// Like [`start_server`] with a custom configuration (addresses are replaced
/// by loopback ephemeral ports).
pub async fn start_server_with(mut cfg: Config) -> String {
    init_log();
    cfg.http = "127.0.0.1:0".parse().unwrap();
    cfg.udp = "127.0.0.1:0".parse().unwrap();
    let server = Server::start(&cfg).await.expect("server starts");
    let base = format!("http://{}", server.http_addr);
    tokio::spawn(server.serve());
    base
}

/// Like [`start_server_with`], behind an impairment relay ([`impair`]): the
/// server binds `127.0.0.1:P` and advertises `127.0.0.2`, where the relay
/// listens, so every client's media goes through the relay.
pub async fn start_server_behind_relay(cfg: Config) -> (String, impair::Relay) {
    let lo2 = std::net::IpAddr::from([127, 0, 0, 2]);
    start_server_behind_relay_at(cfg, std::net::IpAddr::from([127, 0, 0, 1]), lo2).await
}

/// Like [`start_server_behind_relay`] with HTTP on `http_ip` and the relay
/// (the advertised candidate) on `relay_ip`, e.g. the server side of a veth
/// pair between two test-created network namespaces; the media socket stays
/// on `127.0.0.1`, so a client in the other namespace reaches it only
/// through the relay.
pub async fn start_server_behind_relay_at(
    mut cfg: Config,
    http_ip: std::net::IpAddr,
    relay_ip: std::net::IpAddr,
) -> (String, impair::Relay) {
    init_log();
    cfg.http = std::net::SocketAddr::new(http_ip, 0);
    cfg.udp = "127.0.0.1:0".parse().unwrap();
    cfg.advertise = vec![relay_ip];
    let server = Server::start(&cfg).await.expect("server starts");
    let base = format!("http://{}", server.http_addr);
    let listen = server.candidates[0];
    let bound = std::net::SocketAddr::from(([127, 0, 0, 1], listen.port()));
    let relay = impair::Relay::start(listen, bound)
        .await
        .expect("relay binds");
    tokio::spawn(server.serve());
    (base, relay)
}

fn init_log() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// Send the clip in real time (30 fps video, 20 ms audio). Returns when done.
pub async fn publish_clip(s: &Session, clip: &Clip) {
    let start = tokio::time::Instant::now();
    let mut a = 0usize;
    for (i, (ts, _, payloads)) in clip.video.iter().enumerate() {
        let at = start + Duration::from_micros(i as u64 * 33_333);
        tokio::time::sleep_until(at).await;
        let n = payloads.len();
        for (k, p) in payloads.iter().enumerate() {
            s.send(OutPacket {
                kind: MediaKind::Video,
                ts: *ts,
                marker: k + 1 == n,
                payload: p.clone(),
            });
        }
        // Audio up to this frame's time.
        while a < clip.audio.len() && (a as u64 * 20_000) <= i as u64 * 33_333 {
            s.send(OutPacket {
                kind: MediaKind::Audio,
                ts: a as u32 * 960,
                marker: false,
                payload: clip.audio[a].clone(),
            });
            a += 1;
        }
    }
}

/// Everything a viewer received so far (non-blocking drain).
pub fn drain(s: &mut Session, into: &mut Vec<Received>) {
    while let Ok(ev) = s.events.try_recv() {
        if let ClientEvent::Rtp(r) = ev {
            into.push(r);
        }
    }
}

/// A connected WHIP publisher on `{base}/whip/{stream}` and a connected WHEP
/// viewer of it (default options, 10 s to connect each).
pub async fn live_pair(base: &str, stream: &str) -> (Session, Session) {
    let connect = std::time::Duration::from_secs(10);
    let mut publisher = Session::publish(&format!("{base}/whip/{stream}"), Options::default())
        .await
        .expect("publisher POST");
    publisher
        .wait_connected(connect)
        .await
        .expect("publisher connects");
    let mut viewer = Session::play(&format!("{base}/whep/{stream}"), Options::default())
        .await
        .expect("viewer POST");
    viewer
        .wait_connected(connect)
        .await
        .expect("viewer connects");
    (publisher, viewer)
}

/// `GET {base}{path}` parsed as JSON (the stream API).
pub async fn get_json(base: &str, path: &str) -> serde_json::Value {
    let url = sfu::client::http::Url::parse(&format!("{base}{path}")).expect("URL");
    let r = sfu::client::http::request("GET", &url, &[], None)
        .await
        .expect("GET");
    serde_json::from_str(&r.body).expect("JSON body")
}

/// The server's Prometheus text (`GET {base}/metrics`), read one sample at a
/// time with [`Metrics::get`].
pub struct Metrics(String);

impl Metrics {
    /// Fetch `GET {base}/metrics`.
    pub async fn fetch(base: &str) -> Metrics {
        let url = sfu::client::http::Url::parse(&format!("{base}/metrics")).expect("URL");
        let r = sfu::client::http::request("GET", &url, &[], None)
            .await
            .expect("GET /metrics");
        Metrics(r.body)
    }

    /// The value of the first sample whose line starts with `name` (a
    /// metric name with its labels, e.g. `sfu_viewers` or
    /// `sfu_nacks_total{direction="from_viewers"}`). Panics if absent.
    pub fn get(&self, name: &str) -> f64 {
        self.0
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }
}

/// Send three simulcast layers (`rids[i]` carries `layers[i]`) through
/// publisher `s` in real time, 30 fps; each layer's RTP timestamps start at
/// a different base (layers do not share one, like browsers).
pub async fn publish_layers(
    s: std::sync::Arc<sfu::client::Session>,
    rids: [&'static str; 3],
    layers: [&'static Clip; 3],
) {
    let start = tokio::time::Instant::now();
    let frames = layers.iter().map(|c| c.video.len()).min().unwrap_or(0);
    for i in 0..frames {
        tokio::time::sleep_until(start + std::time::Duration::from_micros(i as u64 * 33_333)).await;
        for (li, clip) in layers.iter().enumerate() {
            let (ts, _, payloads) = &clip.video[i];
            let n = payloads.len();
            for (k, p) in payloads.iter().enumerate() {
                s.send_layer(
                    rids[li],
                    sfu::client::OutPacket {
                        kind: str0m::media::MediaKind::Video,
                        ts: ts.wrapping_add(li as u32 * 1_000_000),
                        marker: k + 1 == n,
                        payload: p.clone(),
                    },
                );
            }
        }
    }
}
