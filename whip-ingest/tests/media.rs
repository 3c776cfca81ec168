//! whip-ingest publishes real media to an in-process server and a WHEP viewer
//! checks what arrives: a looped Annex B file, and ffmpeg 5.1 `-f rtp`
//! output described by its SDP file.

mod common;

use common::*;
use sfu::client::depay::Frame;
use sfu::client::h264;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use str0m::media::MediaKind;

/// NAL units without parameter sets and delimiters (whip-ingest may add
/// SPS/PPS in front of keyframes).
fn slices(nals: &[Vec<u8>]) -> Vec<Vec<u8>> {
    nals.iter()
        .filter(|n| !matches!(nal_type(n), 7..=9))
        .cloned()
        .collect()
}

fn all_nals(frames: &[Frame]) -> Vec<Vec<u8>> {
    frames.iter().flat_map(|f| f.nals.iter().cloned()).collect()
}

/// Index of the first IDR slice and whether an SPS and a PPS come before it.
fn params_before_first_idr(nals: &[Vec<u8>]) -> (usize, bool) {
    let idr = nals
        .iter()
        .position(|n| nal_type(n) == 5)
        .expect("an IDR slice");
    let before = &nals[..idr];
    (
        idr,
        before.iter().any(|n| nal_type(n) == 7) && before.iter().any(|n| nal_type(n) == 8),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looped_file_plays_seamlessly_past_its_end() {
    let base = start_server().await;
    let dir = temp_dir("loop");
    let clip = dir.join("clip.h264");
    let clip_s = clip.to_str().unwrap();
    // 2 s at 30 fps, 640x360, a keyframe every second.
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-t",
        "2",
    ];
    args.extend_from_slice(X264);
    args.extend_from_slice(&["-g", "30", "-b:v", "1M", "-f", "h264", clip_s]);
    ffmpeg(&args);
    let data = std::fs::read(&clip).unwrap();
    let file_nals = h264::nal_units(&data);
    let file_aus: Vec<Vec<Vec<u8>>> = h264::access_units(&file_nals)
        .iter()
        .map(|au| slices(&au.nals.iter().map(|n| n.to_vec()).collect::<Vec<_>>()))
        .collect();
    assert_eq!(file_aus.len(), 60);

    let mut ing = Ingest::start(&[clip_s, "--loop", "--url", &format!("{base}/whip/loop")]);
    let mut v = viewer(&format!("{base}/whep/loop"), Duration::from_secs(10)).await;
    let rx = collect(&mut v, Duration::from_millis(5500)).await;
    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "clean stop after SIGTERM:\n{log}");
    assert!(log.contains("deleted (200)"), "session DELETEd:\n{log}");

    let video = video_in_order(&rx);
    assert!(video.iter().all(|r| r.payload.len() <= 1200));
    let fr = frames(&video);
    assert!(fr.iter().all(|f| !f.damaged), "no loss on loopback");
    assert!(fr.len() >= 140, "{} frames in 5.5 s", fr.len());
    // Timestamps: exactly one frame interval apart, across loop ends too.
    // A viewer that joined from the server's GOP cache first gets the cached
    // frames with compressed timestamps (1 tick apart, so they render at
    // once); from the first live frame on, the publisher's spacing holds.
    let replayed = fr
        .windows(2)
        .take_while(|w| w[1].ts.wrapping_sub(w[0].ts) == 1)
        .count();
    assert!(replayed < 60, "{replayed} replayed frames: at most one GOP");
    for (i, w) in fr.windows(2).enumerate().skip(replayed) {
        assert_eq!(
            w[1].ts.wrapping_sub(w[0].ts),
            3000,
            "frame {i}→{}: RTP timestamps step by 3000 (30 fps)",
            i + 1
        );
    }
    // Content: the file's frames in order, wrapping around at its end. A
    // keyframe request (each viewer's join sends a PLI) makes a file source
    // skip ahead to its next IDR, so the only jumps allowed are forward, to
    // an IDR of the file.
    let start = file_aus
        .iter()
        .position(|au| *au == slices(&fr[0].nals))
        .expect("the viewer's first frame is one of the file's");
    let file_idr = |i: usize| file_aus[i].iter().any(|n| nal_type(n) == 5);
    let mut pos = start; // index into the file, counting passes (pos / 60)
    let mut jumps = 0;
    let mut passes_with_keyframe = std::collections::BTreeSet::new();
    for (k, f) in fr.iter().enumerate() {
        if k > 0 {
            let next = (1..=60)
                .map(|d| pos + d)
                .find(|&p| file_aus[p % 60] == slices(&f.nals))
                .unwrap_or_else(|| panic!("viewer frame {k} is not a later file frame"));
            if next != pos + 1 {
                assert!(file_idr(next % 60), "frame {k}: jumped to a non-IDR");
                jumps += 1;
            }
            pos = next;
        }
        if f.keyframe {
            passes_with_keyframe.insert(pos / 60);
        }
    }
    assert!(
        jumps <= 2,
        "{jumps} skips: one per keyframe request at most"
    );
    assert!(
        passes_with_keyframe.len() >= 3,
        "keyframes from three passes over the file: {passes_with_keyframe:?}"
    );
    let nals = all_nals(&fr);
    let (_, ok) = params_before_first_idr(&nals);
    assert!(ok, "SPS and PPS before the first IDR");
    let sps = nals
        .iter()
        .find_map(|n| sfu::client::sps::parse_sps(n))
        .unwrap();
    assert_eq!((sps.width, sps.height), (640, 360));
    let (decoded, errors) = decode(&nals, &dir);
    assert_eq!(errors, "", "ffmpeg decodes the viewer's stream cleanly");
    assert_eq!(decoded, fr.len());
    eprintln!(
        "loop: {} frames over {} passes, first = file frame {start}, {jumps} skips, decoded {decoded}",
        fr.len(),
        pos / 60 + 1
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// ffmpeg 5.1 encoding testsrc2 to RTP (default 1,472-byte packets) plus,
/// from an identical second encoder, an Annex B reference file.
fn ffmpeg_rtp(sdp: &str, reference: &str, port: u16, frames: u32, extra: &[&str]) -> Child {
    let (v, a) = (
        format!("rtp://127.0.0.1:{port}"),
        format!("rtp://127.0.0.1:{}", port + 2),
    );
    let secs = (frames / 30).to_string();
    let mut args: Vec<&str> = vec![
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-y",
        "-sdp_file",
        sdp,
        "-re",
        "-t",
        &secs,
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=30",
        "-re",
        "-t",
        &secs,
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000",
    ];
    let mut video: Vec<&str> = vec!["-map", "0:v"];
    video.extend_from_slice(X264);
    // (Input durations end the run: `-frames:v` on two outputs of one
    // input makes ffmpeg 5.1 hang.)
    video.extend_from_slice(&["-g", "30", "-b:v", "4M"]);
    video.extend_from_slice(extra);
    args.extend_from_slice(&video);
    args.extend_from_slice(&["-f", "rtp", &v]);
    args.extend_from_slice(&[
        "-map", "1:a", "-c:a", "libopus", "-ar", "48000", "-ac", "2", "-f", "rtp", &a,
    ]);
    args.extend_from_slice(&video);
    args.extend_from_slice(&["-f", "h264", reference]);
    Command::new("ffmpeg")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

async fn wait_for_sdp(path: &std::path::Path) {
    for _ in 0..200 {
        if let Ok(s) = std::fs::read_to_string(path)
            && s.contains("m=audio")
            && s.contains("opus")
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ffmpeg wrote no SDP file");
}

async fn collect_while(
    v: &mut sfu::client::Session,
    ff: &mut Child,
    limit: Duration,
) -> Vec<sfu::client::Received> {
    let end = std::time::Instant::now() + limit;
    let mut rx = Vec::new();
    while ff.try_wait().unwrap().is_none() && std::time::Instant::now() < end {
        rx.extend(collect(v, Duration::from_millis(250)).await);
    }
    rx.extend(collect(v, Duration::from_millis(700)).await);
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_rtp_with_big_packets_is_repacketized() {
    let base = start_server().await;
    let dir = temp_dir("rtp");
    let port = free_udp_ports();
    let sdp = dir.join("x.sdp");
    let reference = dir.join("ref.h264");
    let mut ff = ffmpeg_rtp(
        sdp.to_str().unwrap(),
        reference.to_str().unwrap(),
        port,
        180,
        &[],
    );
    wait_for_sdp(&sdp).await;
    let mut ing = Ingest::start(&[sdp.to_str().unwrap(), "--url", &format!("{base}/whip/rtp")]);
    let mut v = viewer(&format!("{base}/whep/rtp"), Duration::from_secs(10)).await;
    let rx = collect_while(&mut v, &mut ff, Duration::from_secs(15)).await;
    assert!(ff.wait().unwrap().success(), "ffmpeg ran");
    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "clean stop:\n{log}");

    // The source had NAL units far beyond one 1,472-byte ffmpeg packet.
    let ref_nals = file_nals(&reference);
    let biggest = ref_nals.iter().map(Vec::len).max().unwrap();
    assert!(biggest > 3000, "largest source NAL unit {biggest} bytes");

    let video = video_in_order(&rx);
    let max_payload = rx.iter().map(|r| r.payload.len()).max().unwrap();
    assert!(max_payload <= 1200, "largest payload {max_payload} bytes");
    let fr = frames(&video);
    assert!(fr.iter().all(|f| !f.damaged), "no loss on loopback");
    assert!(fr.len() >= 90, "{} frames", fr.len());
    for w in fr.windows(2) {
        let d = w[1].ts.wrapping_sub(w[0].ts);
        assert!(d > 0 && d < 90_000, "timestamps increase ({d})");
    }
    let nals = all_nals(&fr);
    let (idr, ok) = params_before_first_idr(&nals);
    assert!(ok, "SPS and PPS before the first IDR (at NAL {idr})");
    assert_eq!(
        nal_type(&nals[0]),
        7,
        "the viewer's stream starts with an SPS"
    );

    // The viewer's NAL units are a contiguous run of the encoder's.
    let want = slices(&ref_nals);
    let got = slices(&nals);
    let at = want
        .iter()
        .position(|n| *n == got[0])
        .expect("the viewer's first slice is in the reference");
    assert!(at + got.len() <= want.len(), "no extra NAL units");
    for (k, n) in got.iter().enumerate() {
        assert!(
            *n == want[at + k],
            "viewer NAL {k} ({} bytes) = encoder NAL {} ({} bytes)",
            n.len(),
            at + k,
            want[at + k].len()
        );
    }
    let (decoded, errors) = decode(&nals, &dir);
    assert_eq!(errors, "", "ffmpeg decodes the viewer's stream cleanly");
    assert_eq!(decoded, fr.len());
    let sps = nals
        .iter()
        .find_map(|n| sfu::client::sps::parse_sps(n))
        .unwrap();
    assert_eq!((sps.width, sps.height), (1280, 720));

    // Opus passed through: 20 ms packets, timestamps +960.
    let mut audio: Vec<_> = rx.iter().filter(|r| r.kind == MediaKind::Audio).collect();
    audio.sort_by_key(|r| r.seq);
    assert!(audio.len() >= 150, "{} audio packets", audio.len());
    for w in audio.windows(2) {
        assert_eq!(w[1].ts.wrapping_sub(w[0].ts), 960, "Opus timestamps");
    }
    eprintln!(
        "rtp: {} frames, {} NAL units matching encoder NAL {at}.., biggest source NAL {biggest} B, \
         max payload {max_payload} B, {} audio packets, decoded {decoded}",
        fr.len(),
        got.len(),
        audio.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sprop_parameter_sets_are_injected_and_a_restarted_sender_continues() {
    let base = start_server().await;
    let dir = temp_dir("sprop");
    let port = free_udp_ports();
    let sdp = dir.join("x.sdp");
    let reference = dir.join("ref.h264");
    // +global_header: SPS/PPS only in the SDP's sprop-parameter-sets.
    let gh = ["-flags", "+global_header"];
    let mut ff = ffmpeg_rtp(
        sdp.to_str().unwrap(),
        reference.to_str().unwrap(),
        port,
        90,
        &gh,
    );
    wait_for_sdp(&sdp).await;
    let text = std::fs::read_to_string(&sdp).unwrap();
    assert!(text.contains("sprop-parameter-sets"), "{text}");
    let mut ing = Ingest::start(&[
        sdp.to_str().unwrap(),
        "--url",
        &format!("{base}/whip/sprop"),
        "--stall-timeout",
        "1",
    ]);
    let mut v = viewer(&format!("{base}/whep/sprop"), Duration::from_secs(10)).await;
    let mut rx = collect_while(&mut v, &mut ff, Duration::from_secs(10)).await;
    assert!(ff.wait().unwrap().success());
    // The sender goes away; the watchdog resets the source...
    ing.wait_for_log("silent", Duration::from_secs(5)).await;
    // ...and a new sender (new SSRC, new timestamps) on the same ports is
    // published on the same session.
    let mut ff2 = ffmpeg_rtp(
        dir.join("y.sdp").to_str().unwrap(),
        dir.join("ref2.h264").to_str().unwrap(),
        port,
        90,
        &gh,
    );
    rx.extend(collect_while(&mut v, &mut ff2, Duration::from_secs(10)).await);
    assert!(ff2.wait().unwrap().success());
    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "clean stop:\n{log}");
    assert!(!log.contains("reconnected"), "same WHIP session:\n{log}");

    let fr = frames(&video_in_order(&rx));
    let keyframes: Vec<&Frame> = fr.iter().filter(|f| f.keyframe).collect();
    assert!(keyframes.len() >= 3, "{} keyframes", keyframes.len());
    for k in &keyframes {
        let types: Vec<u8> = k.nals.iter().map(|n| nal_type(n)).collect();
        let idr = types.iter().position(|t| *t == 5).unwrap();
        assert!(
            types[..idr].contains(&7) && types[..idr].contains(&8),
            "SPS/PPS injected before every IDR: {types:?}"
        );
    }
    for w in fr.windows(2) {
        let d = w[1].ts.wrapping_sub(w[0].ts);
        assert!(
            d > 0 && d < 90_000 * 20,
            "timestamps keep increasing across the restart ({d})"
        );
    }
    let gap = fr
        .windows(2)
        .map(|w| w[1].ts.wrapping_sub(w[0].ts))
        .max()
        .unwrap();
    assert!(gap > 90_000, "the outage shows as a timestamp gap ({gap})");
    let nals = all_nals(&fr);
    let (decoded, errors) = decode(&nals, &dir);
    assert_eq!(errors, "", "decodes cleanly");
    assert_eq!(decoded, fr.len());
    assert!(fr.len() >= 100, "frames from both senders: {}", fr.len());
    eprintln!(
        "sprop: {} frames, {} keyframes, longest timestamp gap {:.2} s",
        fr.len(),
        keyframes.len(),
        f64::from(gap) / 90_000.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
