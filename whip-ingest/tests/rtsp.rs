//! An RTSP camera (GStreamer's RTSP server, started by the test: x264 H.264 +
//! G.711 µ-law) → `whip-ingest rtsp://…` → sfu → a WHEP viewer that decodes
//! the video with ffmpeg and receives PCMU audio. Then the RTSP server is
//! killed and restarted: the ingest reconnects by itself and the same viewer
//! session receives decodable video again. Also: an H.265 camera (x265 +
//! rtph265pay, parameter sets only in the SDP) reaches an H.265 viewer and
//! decodes; an AAC-only camera is refused (exit 3, one message); H.264 + AAC
//! publishes the video and skips the AAC with one warning; H.264 + Opus
//! passes the Opus packets through (a viewer decodes them with libopus).

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

/// Start the test camera (H.264 + PCMU) on `port`; returns once it listens.
fn camera(port: u16) -> Camera {
    camera_mode(port, "h264")
}

/// Start the test camera in `mode` (see rtsp_server.py) on `port`.
fn camera_mode(port: u16, mode: &str) -> Camera {
    camera_with(port, &[mode])
}

/// Start the test camera on `port` with rtsp_server.py's further arguments
/// (MODE [USER PASSWORD]).
fn camera_with(port: u16, args: &[&str]) -> Camera {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/rtsp_server.py");
    let mut child = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .args(args)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_h265_camera_reaches_an_h265_viewer() {
    let (rx, log, dir) = play_camera("rtsp-h265", "h265", "h265", vec![Track::H265]).await;

    let (packets, fus, max, decoded) = check_h265(&rx, &dir, &log);
    eprintln!("h265: {packets} packets ({fus} FUs, largest {max} B), {decoded} frames decoded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_camera_with_aac_audio_only_is_refused() {
    let base = start_server().await;
    let port = free_tcp_port();
    let _cam = camera_mode(port, "aac");
    let mut ing = Ingest::start(&[
        &format!("rtsp://127.0.0.1:{port}/cam"),
        "--url",
        &format!("{base}/whip/aac"),
    ]);
    let st = ing.wait(Duration::from_secs(20));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(3), "unusable source:\n{log}");
    assert_eq!(log.matches("no video").count(), 1, "one message:\n{log}");
    assert!(log.contains("mpeg4-generic"), "names the audio:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_h264_with_aac_publishes_video_and_warns_once() {
    let (rx, log, dir) = play_camera(
        "rtsp-aac",
        "h264+aac",
        "h264aac",
        vec![Track::Opus, Track::H264(0x42e01f)],
    )
    .await;
    let decoded = check_video(&rx, &dir, "H.264 + AAC");
    assert!(
        rx.iter().all(|r| r.kind == MediaKind::Video),
        "no audio forwarded"
    );
    assert_eq!(
        log.matches("not forwarded").count(),
        1,
        "exactly one AAC warning:\n{log}"
    );
    eprintln!("h264+aac: {decoded} frames decoded, AAC skipped with one warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_h264_with_opus_passes_opus_through() {
    let (rx, log, dir) = play_camera(
        "rtsp-opus",
        "h264+opus",
        "h264opus",
        vec![Track::Opus, Track::H264(0x42e01f)],
    )
    .await;
    assert!(
        !log.contains("not forwarded"),
        "Opus is not skipped:\n{log}"
    );
    assert!(log.contains("raw RTP"), "the raw-packet path:\n{log}");
    let decoded = check_video(&rx, &dir, "H.264 + Opus");
    let (audio, rms) = check_opus(&rx);
    assert!(audio.iter().all(|r| r.pt == 111), "Opus PT 111");
    assert!(rms > 1000.0, "the 440 Hz tone is audible (RMS {rms:.0})");
    // Timestamps advance by 960 per packet (48 kHz clock kept).
    let steps = audio
        .windows(2)
        .filter(|w| w[1].seq == w[0].seq + 1)
        .filter(|w| w[1].ts.wrapping_sub(w[0].ts) == 960)
        .count();
    assert!(
        steps * 10 >= audio.len() * 9,
        "{steps} of {} steps are 960",
        audio.len()
    );
    eprintln!(
        "h264+opus: {decoded} frames decoded, {} Opus packets decoded, RMS {rms:.0}",
        audio.len()
    );
}

/// What an H.265 viewer got from the 320x240 test camera: payloads ≤ 1200 B
/// with FUs, VPS/SPS/PPS in front of the first IRAP, ≥ 20 pictures decoded
/// by ffmpeg without error. Returns (packets, FUs, largest payload, decoded).
fn check_h265(
    rx: &[sfu::client::Received],
    dir: &std::path::Path,
    log: &str,
) -> (usize, usize, usize, usize) {
    let video = video_in_order(rx);
    let max = video.iter().map(|r| r.payload.len()).max().unwrap_or(0);
    assert!(max > 0 && max <= 1200, "{max}-byte payloads");
    let fus = video
        .iter()
        .filter(|r| (r.payload[0] >> 1) & 0x3f == 49)
        .count();
    assert!(fus > 0, "big NAL units travel as fragmentation units");
    let fr = depacketize(VideoCodec::H265, &video);
    let start = fr
        .iter()
        .position(|f| f.keyframe)
        .unwrap_or_else(|| panic!("no IRAP in {} frames:\n{log}", fr.len()));
    // The camera sends VPS/SPS/PPS only in the SDP: they must be in front of
    // the IRAP picture.
    let types: Vec<u8> = sfu::client::h264::nal_units(&fr[start].data)
        .iter()
        .map(|n| (n[0] >> 1) & 0x3f)
        .collect();
    let irap = types.iter().position(|t| (16..=23).contains(t)).unwrap();
    for ps in [32, 33, 34] {
        assert!(
            types[..irap].contains(&ps),
            "NAL type {ps} before the IRAP: {types:?}"
        );
    }
    let path = dir.join("viewer.h265");
    let stream: Vec<u8> = fr[start..].iter().flat_map(|f| f.data.clone()).collect();
    std::fs::write(&path, stream).unwrap();
    let (sizes, err) = decode_file(&path, Some("hevc"));
    assert!(err.trim().is_empty(), "ffmpeg errors: {err}");
    assert!(sizes.len() >= 20, "{} frames decoded", sizes.len());
    assert!(
        sizes.iter().all(|s| *s == 320 * 240 * 3 / 2),
        "320x240 pictures"
    );
    (video.len(), fus, max, sizes.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_h265_with_opus_passes_both() {
    let (rx, log, dir) = play_camera(
        "rtsp-h265-opus",
        "h265+opus",
        "h265opus",
        vec![Track::Opus, Track::H265],
    )
    .await;
    assert!(
        !log.contains("not forwarded"),
        "Opus is not skipped:\n{log}"
    );
    assert!(
        log.contains("H.265 + Opus, raw RTP"),
        "the raw-packet path:\n{log}"
    );
    let (packets, _, _, decoded) = check_h265(&rx, &dir, &log);
    let (audio, _) = check_opus(&rx);
    eprintln!(
        "h265+opus: {packets} video packets, {decoded} frames decoded, {} Opus packets decoded",
        audio.len()
    );
}

/// Start a server, the test camera in `mode` and `whip-ingest` publishing it
/// as `stream`; a viewer offering `tracks` collects 3 s; then the ingest is
/// stopped and must exit 0. Returns (packets received, ingest log, temp dir).
async fn play_camera(
    dir: &str,
    mode: &str,
    stream: &str,
    tracks: Vec<Track>,
) -> (Vec<sfu::client::Received>, String, std::path::PathBuf) {
    let base = start_server().await;
    let dir = temp_dir(dir);
    let port = free_tcp_port();
    let _cam = camera_mode(port, mode);
    let mut ing = Ingest::start(&[
        &format!("rtsp://127.0.0.1:{port}/cam"),
        "--url",
        &format!("{base}/whip/{stream}"),
    ]);
    let opts = sfu::client::Options {
        tracks,
        ..Default::default()
    };
    let mut v = viewer_with(
        &format!("{base}/whep/{stream}"),
        Duration::from_secs(15),
        opts,
    )
    .await;
    let rx = collect(&mut v, Duration::from_secs(3)).await;
    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "clean stop:\n{log}");
    // The session DESCRIBEd at startup is the one played: no second
    // DESCRIBE, which GStreamer's server answered with 503 (a reconnect
    // and a stall at every start).
    assert!(
        !log.contains("reconnecting") && !log.contains("stalls"),
        "a clean start:\n{log}"
    );
    (rx, log, dir)
}

/// The Opus packets of `rx` (≥ 75 in 3 s of 20 ms frames): every one is a
/// single Opus packet (RFC 7587 §4.2) that libopus decodes into 20 ms at
/// 48 kHz. Returns them and the RMS of the decoded samples.
fn check_opus(rx: &[sfu::client::Received]) -> (Vec<&sfu::client::Received>, f64) {
    let audio: Vec<_> = rx.iter().filter(|r| r.kind == MediaKind::Audio).collect();
    assert!(audio.len() >= 75, "{} Opus packets in 3 s", audio.len());
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut pcm = vec![0i16; 5760];
    let mut energy = 0f64;
    for r in &audio {
        let n = dec
            .decode(&r.payload, &mut pcm, false)
            .unwrap_or_else(|e| panic!("Opus packet of {} B: {e}", r.payload.len()));
        assert_eq!(n, 960, "20 ms of samples");
        energy += pcm[..n].iter().map(|s| f64::from(*s).powi(2)).sum::<f64>();
    }
    let rms = (energy / (audio.len() * 960) as f64).sqrt();
    (audio, rms)
}

/// Wait until `s` occurs `n` times in the ingest's stderr.
async fn wait_for_nth(ing: &Ingest, s: &str, n: usize, timeout: Duration) {
    let end = std::time::Instant::now() + timeout;
    while ing.stderr().matches(s).count() < n {
        assert!(
            std::time::Instant::now() < end,
            "'{s}' not {n} times in whip-ingest's stderr within {timeout:?}:\n{}",
            ing.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_digest_auth_wrong_password_exits_3_and_special_characters_work() {
    let base = start_server().await;
    let dir = temp_dir("rtsp-auth");
    let port = free_tcp_port();
    // A password as a user pastes it into the URL: `+`, `@`, `:` and `%`
    // unencoded (`+` is a literal plus in userinfo, RFC 3986 §3.2.1).
    let pass = "p+ss@:%w";
    let _cam = camera_with(port, &["h264", "admin", pass]);

    // Wrong password: exit 3 at once with a one-line reason, never retried.
    let mut ing = Ingest::start(&[
        &format!("rtsp://admin:wrong@127.0.0.1:{port}/cam"),
        "--url",
        &format!("{base}/whip/auth"),
    ]);
    let st = ing.wait(Duration::from_secs(20));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(3), "wrong credentials:\n{log}");
    assert!(!log.contains("retrying"), "not retried:\n{log}");
    let last = log.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("whip-ingest: RTSP DESCRIBE") && last.contains("user name or password"),
        "the last line gives the reason:\n{log}"
    );
    assert!(
        log.lines()
            .all(|l| l.starts_with("20") || l.starts_with("whip-ingest: ")),
        "every message on one line:\n{log}"
    );

    let mut ing = Ingest::start(&[
        &format!("rtsp://admin:{pass}@127.0.0.1:{port}/cam"),
        "--url",
        &format!("{base}/whip/auth"),
        "--stall-timeout",
        "1",
    ]);
    let mut v = viewer(&format!("{base}/whep/auth"), Duration::from_secs(15)).await;
    let rx = collect(&mut v, Duration::from_secs(3)).await;
    let decoded = check_video(&rx, &dir, "digest auth");

    // The camera's password is changed while it runs: the reconnect is
    // refused, and the run ends (exit 3) instead of asking for ever.
    drop(_cam);
    let _cam = camera_with(port, &["h264", "admin", "changed"]);
    let st = ing.wait(Duration::from_secs(30));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(3), "password changed:\n{log}");
    let last = log.trim().lines().last().unwrap_or_default();
    assert!(last.contains("user name or password"), "{log}");
    assert!(
        log.contains("deleted (200)"),
        "the WHIP session is DELETEd:\n{log}"
    );
    assert!(!log.contains("p+ss"), "password never logged:\n{log}");
    eprintln!("digest auth with {pass:?}: {decoded} frames decoded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtsp_camera_down_at_start_and_a_hung_camera_are_retried() {
    let base = start_server().await;
    let dir = temp_dir("rtsp-late");
    // Ctrl-C while a camera keeps the ingest waiting for an answer (the
    // listener never accepts: the kernel completes the connection) is a
    // clean stop.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_port = hole.local_addr().unwrap().port();
    let mut ing = Ingest::start(&[
        &format!("rtsp://127.0.0.1:{hole_port}/cam"),
        "--url",
        &format!("{base}/whip/late"),
    ]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let int = Command::new("kill")
        .args(["-INT", &ing.child.id().to_string()])
        .status()
        .unwrap();
    assert!(int.success());
    let st = ing.wait(Duration::from_secs(4));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "Ctrl-C during DESCRIBE:\n{log}");
    assert!(log.contains("stopped before the camera answered"), "{log}");
    drop(hole);

    let port = free_tcp_port();
    // No camera yet (it boots slower than the machine running the ingest):
    // asked again with backoff, not an unusable source.
    let mut ing = Ingest::start(&[
        &format!("rtsp://127.0.0.1:{port}/cam"),
        "--url",
        &format!("{base}/whip/late"),
        "--stall-timeout",
        "1",
    ]);
    ing.wait_for_log("retrying in", Duration::from_secs(10))
        .await;
    let cam = camera(port);
    let mut v = viewer(&format!("{base}/whep/late"), Duration::from_secs(30)).await;
    let rx = collect(&mut v, Duration::from_secs(2)).await;
    check_video(&rx, &dir, "camera up after the ingest");

    // The camera hangs: it accepts the connection and never answers (the
    // ingest's request times out, 5 s here), and is back meanwhile while
    // that connection stays open.
    drop(cam);
    let hole = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let hung = tokio::task::spawn_blocking(move || hole.accept().map(|(c, _)| c))
        .await
        .unwrap()
        .unwrap();
    let _cam = camera(port);
    ing.wait_for_log("no answer within 5 s", Duration::from_secs(20))
        .await;
    wait_for_nth(&ing, "flowing again", 1, Duration::from_secs(30)).await;
    let rx = collect(&mut v, Duration::from_secs(2)).await;
    check_video(&rx, &dir, "after the hung camera");
    drop(hung);
    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "clean stop:\n{}", ing.stderr());
}
