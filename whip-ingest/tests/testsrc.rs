//! `whip-ingest test`: the OpenH264 test pattern (+ Opus beep) → sfu → WHEP
//! viewers. The first viewer's video decodes with ffmpeg at the requested
//! size; Opus arrives; and with a 10 s GOP, a second viewer's join (a PLI
//! from the server) makes the source emit an IDR at once, seen by the first
//! viewer long before the GOP would have ended.

mod common;

use common::*;
use std::time::Duration;
use str0m::media::MediaKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_pattern_decodes_at_its_size_and_answers_keyframe_requests() {
    let base = start_server().await;
    let dir = temp_dir("testsrc");
    let mut ing = Ingest::start(&[
        "test",
        "--size",
        "640x360",
        "--fps",
        "30",
        "--bitrate",
        "800k",
        "--gop",
        "10",
        "--audio",
        "--url",
        &format!("{base}/whip/pattern"),
    ]);
    let mut v1 = viewer(&format!("{base}/whep/pattern"), Duration::from_secs(10)).await;
    let rx = collect(&mut v1, Duration::from_secs(2)).await;
    let fr = frames(&video_in_order(&rx));
    let start = fr
        .iter()
        .position(|f| f.keyframe)
        .expect("a keyframe in the first 2 s");
    let nals: Vec<Vec<u8>> = fr[start..]
        .iter()
        .flat_map(|f| f.nals.iter().cloned())
        .collect();
    let sps = nals
        .iter()
        .find_map(|n| sfu::client::sps::parse_sps(n))
        .expect("SPS before the IDR");
    assert_eq!((sps.width, sps.height), (640, 360));
    assert_eq!(sps.profile_level_id() >> 16, 0x42, "Baseline profile");
    let (decoded, errors) = decode(&nals, &dir);
    assert_eq!(errors, "", "ffmpeg decodes the pattern cleanly");
    assert!(decoded >= 40, "{decoded} frames decoded from 2 s at 30 fps");
    let opus = rx.iter().filter(|r| r.kind == MediaKind::Audio).count();
    assert!(opus >= 70, "{opus} Opus packets in 2 s (20 ms frames)");

    // A second viewer joins: the server asks the publisher for a keyframe
    // and the encoder makes one now, not at the end of its 10 s GOP.
    let mut v2 = viewer(&format!("{base}/whep/pattern"), Duration::from_secs(10)).await;
    let rx1 = collect(&mut v1, Duration::from_secs(2)).await;
    let fr1 = frames(&video_in_order(&rx1));
    let keyframes = fr1.iter().filter(|f| f.keyframe).count();
    assert!(
        keyframes >= 1,
        "an IDR answered the join's PLI within 2 s ({} frames, 10 s GOP)",
        fr1.len()
    );
    let rx2 = collect(&mut v2, Duration::from_secs(1)).await;
    assert!(
        frames(&video_in_order(&rx2)).iter().any(|f| f.keyframe),
        "the second viewer starts on a keyframe"
    );

    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "clean stop:\n{log}");
    assert!(log.contains("deleted (200)"), "session DELETEd:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "test pattern: {decoded} frames decoded, {opus} Opus packets, {keyframes} IDR(s) after the join"
    );
}
