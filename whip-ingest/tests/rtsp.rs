//! An RTSP camera (GStreamer's RTSP server, started by the test: x264 H.264 +
//! G.711 µ-law) → `whip-ingest rtsp://…` → sfu → a WHEP viewer that decodes
//! the video with ffmpeg and receives PCMU audio. Then the RTSP server is
//! killed and restarted: the ingest reconnects by itself and the same viewer
//! session receives decodable video again.

mod common;

use common::*;
use sfu::client::Track;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use str0m::media::MediaKind;

/// The test camera process, killed when dropped (also when a test panics, so
/// it never outlives the test run holding its output pipe).
struct Camera(Child);

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the test camera on `port`; returns once it listens.
fn camera(port: u16) -> Camera {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rtsp_server.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with GStreamer (tests/run.sh installs it)");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let cam = Camera(child);
    assert_eq!(line.trim(), "READY", "RTSP server did not start");
    cam
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check_video(rx: &[sfu::client::Received], dir: &std::path::Path, what: &str) -> usize {
    let fr = frames(&video_in_order(rx));
    let start = fr
        .iter()
        .position(|f| f.keyframe)
        .unwrap_or_else(|| panic!("{what}: no keyframe in {} frames", fr.len()));
    let first = &fr[start];
    let types: Vec<u8> = first.nals.iter().map(|n| nal_type(n)).collect();
    let idr = types.iter().position(|t| *t == 5).unwrap();
    assert!(
        types[..idr].contains(&7) && types[..idr].contains(&8),
        "{what}: SPS/PPS before the IDR: {types:?}"
    );
    let nals: Vec<Vec<u8>> = fr[start..]
        .iter()
        .filter(|f| !f.damaged)
        .flat_map(|f| f.nals.iter().cloned())
        .collect();
    let (decoded, err) = decode(&nals, dir);
    assert!(
        decoded >= 20,
        "{what}: ffmpeg decoded {decoded} frames: {err}"
    );
    assert!(
        rx.iter()
            .filter(|r| r.kind == MediaKind::Video)
            .all(|r| r.payload.len() <= 1200)
    );
    decoded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_camera_is_published_and_survives_a_server_restart() {
    let base = start_server().await;
    let dir = temp_dir("rtsp");
    let port = free_tcp_port();
    let cam = camera(port);
    let mut ing = Ingest::start(&[
        &format!("rtsp://user:secret@127.0.0.1:{port}/cam"),
        "--url",
        &format!("{base}/whip/cam"),
        "--stall-timeout",
        "2",
    ]);
    // The viewer offers G.711 µ-law like a phone or Home Assistant would; the
    // server never transcodes, so it must match the camera's audio.
    let opts = sfu::client::Options {
        tracks: vec![Track::Pcmu, Track::H264(0x42e01f)],
        ..Default::default()
    };
    let mut v = viewer_with(&format!("{base}/whep/cam"), Duration::from_secs(15), opts).await;
    let rx = collect(&mut v, Duration::from_secs(3)).await;
    let first = check_video(&rx, &dir, "before restart");
    let audio: Vec<_> = rx.iter().filter(|r| r.kind == MediaKind::Audio).collect();
    assert!(audio.len() >= 50, "{} PCMU packets in 3 s", audio.len());
    assert!(audio.iter().all(|r| r.pt == 0), "PCMU (PT 0)");

    // The camera goes away and comes back on the same address.
    drop(cam);
    ing.wait_for_log("reconnecting", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cam = camera(port);
    ing.wait_for_log("flowing again", Duration::from_secs(20))
        .await;
    // The same viewer session (never re-POSTed) gets decodable video again.
    let rx2 = collect(&mut v, Duration::from_secs(3)).await;
    let second = check_video(&rx2, &dir, "after restart");

    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "clean stop:\n{log}");
    assert!(!log.contains("secret"), "password never logged:\n{log}");
    drop(cam);
    eprintln!("decoded {first} frames before and {second} after the camera restart");
}
