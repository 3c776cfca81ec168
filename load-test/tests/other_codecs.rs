//! `load-test run --whep` against a stream someone else publishes in VP8,
//! VP9, AV1 or H.265, video only (an H.264 + Opus offer is refused with 422): a
//! probe learns the codec, every viewer joins, receives video and completes
//! a first key frame (TTFF). H.264 streams, with and without Opus, keep the
//! H.264 offer, and the probe of an H.264 stream is never refused (no `422`
//! in the server's log). The publisher sends
//! synthetic payloads with valid RTP payload descriptors (the server
//! forwards, it never decodes).

mod common;

use sfu::client::{Options, OutPacket, Session, Track};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use str0m::media::MediaKind;

/// The payloads of frame `n` (three packets), a key frame when `key`.
fn frame(track: Track, n: u32, key: bool) -> Vec<Vec<u8>> {
    let pid = [0x80 | ((n >> 8) & 0x7f) as u8, n as u8];
    (0..3)
        .map(|i| {
            let (first, last) = (i == 0, i == 2);
            let mut p = match track {
                // X=1, S on the first packet; I=1, 15-bit PictureID; then
                // the payload header's P bit (0 = key frame).
                Track::Vp8 => {
                    let mut p = vec![0x80 | if first { 0x10 } else { 0 }, 0x80];
                    p.extend_from_slice(&pid);
                    if first {
                        p.push(u8::from(!key));
                    }
                    p
                }
                // I=1, P=0 on key frames, B on the first packet, E on the last.
                Track::Vp9 => {
                    let b = 0x80
                        | if key { 0 } else { 0x40 }
                        | if first { 0x08 } else { 0 }
                        | if last { 0x04 } else { 0 };
                    let mut p = vec![b];
                    p.extend_from_slice(&pid);
                    p
                }
                // W=1; Z on continuations, Y unless last, N on a key frame start.
                Track::Av1 => vec![
                    if first { 0 } else { 0x80 }
                        | if last { 0 } else { 0x40 }
                        | 0x10
                        | if first && key { 0x08 } else { 0 },
                ],
                // VPS, then an IDR_W_RADL (type 19) in an FU (type 49)
                // start/end (RFC 7798 §4.4.3; TRAIL_R, type 1, otherwise).
                Track::H265 => {
                    let t = if key { 19 } else { 1 };
                    match i {
                        0 if key => vec![32 << 1, 0x01, 0x0c, 0x01],
                        0 => vec![49 << 1, 0x01, 0x80 | t],
                        1 => vec![49 << 1, 0x01, t],
                        _ => vec![49 << 1, 0x01, 0x40 | t],
                    }
                }
                // SPS, then an IDR in FU-A start/end (non-IDR slice: type 1).
                Track::H264(_) => {
                    let t = if key { 5 } else { 1 };
                    match i {
                        0 if key => vec![0x67, 0x42, 0xc0, 0x1f],
                        0 => vec![0x7c, 0x80 | t],
                        1 => vec![0x7c, t],
                        _ => vec![0x7c, 0x40 | t],
                    }
                }
                _ => unreachable!("video codecs of this test"),
            };
            p.resize(900, 0x5a);
            p
        })
        .collect()
}

/// Publish `track` at 30 fps (key frame every 15 frames), with Opus when
/// `audio`, until `stop`.
async fn publish(url: String, track: Track, audio: bool, stop: Arc<AtomicBool>) {
    let mut tracks = vec![track];
    if audio {
        tracks.insert(0, Track::Opus);
    }
    let opts = Options {
        tracks,
        ..Options::default()
    };
    let mut s = Session::publish(&url, opts).await.expect("publish");
    s.wait_connected(Duration::from_secs(10))
        .await
        .expect("publisher connects");
    let mut tick = tokio::time::interval(Duration::from_micros(33_333));
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let pk = frame(track, n, n.is_multiple_of(15));
        let last = pk.len() - 1;
        for (i, p) in pk.into_iter().enumerate() {
            s.send(OutPacket {
                kind: MediaKind::Video,
                ts: n.wrapping_mul(3000),
                marker: i == last,
                payload: Arc::from(p),
            });
        }
        if audio {
            s.send(OutPacket {
                kind: MediaKind::Audio,
                ts: n.wrapping_mul(1600),
                marker: false,
                payload: Arc::from(vec![0x78u8; 80]),
            });
        }
        n += 1;
    }
    let _ = tokio::time::timeout(Duration::from_secs(3), s.close()).await;
}

/// The server's count of POSTs refused with 422 (`/metrics`).
async fn refused_422(base: &str) -> u64 {
    let url = sfu::client::http::Url::parse(&format!("{base}/metrics")).unwrap();
    let r = sfu::client::http::request("GET", &url, &[], None)
        .await
        .unwrap();
    r.body
        .lines()
        .find(|l| l.starts_with("sfu_sessions_refused_total{status=\"422\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_of_streams_someone_else_publishes() {
    let base = common::start_sfu(Default::default()).await;
    let dir = std::env::temp_dir().join(format!("load-test-codecs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    for (name, track, audio) in [
        ("vp8", Track::Vp8, false),
        ("vp9", Track::Vp9, false),
        ("av1", Track::Av1, false),
        ("h265", Track::H265, false),
        ("h264", Track::H264(0x42e01f), true),
        ("h264-video", Track::H264(0x42e01f), false),
    ] {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("{base}/whip/{name}");
        let publisher = tokio::spawn(publish(url, track, audio, stop.clone()));
        // Let the stream go live (the WHEP side answers 409 until then).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let refused_before = refused_422(&base).await;
        let json = dir.join(format!("{name}.json"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_load-test"));
        cmd.args(["run", "--whep"])
            .arg(format!("{base}/whep/{name}"))
            .args(["--viewers", "4", "--duration", "2s", "--settle", "1s"])
            .args(["--ramp", "50/s", "--threads", "2", "--sample-every", "2"])
            .arg("--json")
            .arg(&json)
            .env("RUST_LOG", "debug");
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::task::spawn_blocking(move || cmd.output().expect("load-test runs")),
        )
        .await
        .expect("load-test finishes")
        .unwrap();
        stop.store(true, Ordering::Relaxed);
        let _ = publisher.await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{name}: load-test failed:\n{stdout}\n{stderr}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON written"))
                .expect("valid JSON");
        assert_eq!(v["viewers_connected"], 4, "{name}: {v:#}");
        assert_eq!(
            v["setup_failures"].as_object().map(|o| o.len()),
            Some(0),
            "{name}: {v:#}"
        );
        let bps = v["bitrate_bps"].as_f64().unwrap_or(0.0);
        // 3 x 900-byte packets at 30 fps: 648 kbit/s (+ 19 kbit/s of Opus).
        assert!(
            (300e3..1000e3).contains(&bps),
            "{name}: {bps} bit/s received"
        );
        assert!(
            v["ttff_ms"]["p99"].as_f64().is_some_and(|t| t > 0.0),
            "{name}: TTFF measured (a complete key frame): {v:#}"
        );
        let h264 = name.starts_with("h264");
        assert_eq!(
            refused_422(&base).await - refused_before,
            u64::from(!h264),
            "{name}: only the H.264 probe of a stream in another codec is refused"
        );
        let label = name.to_ascii_uppercase().replace("H265", "H.265");
        assert_eq!(
            stderr.contains(&format!("video is {label}")),
            !h264,
            "{name}: the probe names VP8, VP9, AV1 or H.265 (H.264 is the default):\n{stderr}"
        );
        assert!(
            !stderr.contains('\x1b'),
            "{name}: no ANSI codes when stderr is not a terminal:\n{stderr}"
        );
        eprintln!(
            "{name}: 4 viewers, {:.0} kbit/s each, TTFF p50 {:.0} ms",
            bps / 1e3,
            v["ttff_ms"]["p50"].as_f64().unwrap_or(f64::NAN)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_lines_have_no_colour_codes_in_a_pipe() {
    // Nothing listens on the port: the codec probe fails (a debug line)
    // and so does the viewer's join.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_load-test"))
        .args(["run", "--whep"])
        .arg(format!("http://127.0.0.1:{port}/whep/x"))
        .args(["--viewers", "1", "--duration", "0.2s", "--settle", "0s"])
        .env("RUST_LOG", "load_test=debug")
        .output()
        .expect("load-test runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DEBUG") && stderr.contains("codec probe"),
        "a log line was written:\n{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "no ANSI codes:\n{stderr:?}");
}
