//! IVF files (VP8, VP9, AV1) made by ffmpeg → `whip-ingest PATH.ivf --loop`
//! → sfu → a WHEP viewer offering only that codec. The test depacketizes
//! what arrives (RFC 7741, RFC 9628, AOM AV1 RTP) into an IVF file that
//! ffmpeg must decode without errors at the clip's size, for longer than one
//! pass through the file, with RTP timestamps one frame apart across the
//! loop points.

mod common;

use common::*;
use sfu::client::{Options, Track};
use std::time::Duration;

const W: u16 = 320;
const H: u16 = 240;

async fn publish_and_decode(name: &str, encoder: &[&str], track: Track, codec: VideoCodec) {
    let base = start_server().await;
    let dir = temp_dir(name);
    let clip = dir.join("clip.ivf");
    let clip_s = clip.to_str().unwrap();
    // 1 s at 30 fps, a key frame every 15 frames.
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-t",
        "1",
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(encoder);
    args.extend_from_slice(&["-g", "15", "-b:v", "400k", "-f", "ivf", clip_s]);
    ffmpeg(&args);
    let (file_frames, err) = decode_file(&clip, None);
    assert_eq!(
        file_frames.len(),
        30,
        "{name}: the clip has 30 frames: {err}"
    );

    let mut ing = Ingest::start(&[clip_s, "--loop", "--url", &format!("{base}/whip/{name}")]);
    let opts = Options {
        tracks: vec![track],
        ..Default::default()
    };
    let mut v = viewer_with(
        &format!("{base}/whep/{name}"),
        Duration::from_secs(10),
        opts,
    )
    .await;
    let rx = collect(&mut v, Duration::from_millis(3500)).await;
    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "{name}: clean stop:\n{log}");

    let video = video_in_order(&rx);
    assert!(!video.is_empty(), "{name}: no video:\n{log}");
    let max = video.iter().map(|r| r.payload.len()).max().unwrap();
    assert!(max <= 1200, "{name}: {max}-byte payload");
    for w in video.windows(2) {
        assert_eq!(w[1].seq, w[0].seq + 1, "{name}: no sequence gap");
    }
    let fr = depacketize(codec, &video);
    let start = fr
        .iter()
        .position(|f| f.keyframe)
        .unwrap_or_else(|| panic!("{name}: no key frame in {} frames", fr.len()));
    let fr = &fr[start..];
    // Timestamps step by 3000 (30 fps) from the first live frame on (cached
    // GOP frames replayed to a joining viewer are 1 tick apart).
    let replayed = fr
        .windows(2)
        .take_while(|w| w[1].ts.wrapping_sub(w[0].ts) == 1)
        .count();
    for (i, w) in fr.windows(2).enumerate().skip(replayed) {
        assert_eq!(
            w[1].ts.wrapping_sub(w[0].ts),
            3000,
            "{name}: frame {i}: RTP timestamps one frame apart"
        );
    }
    let fourcc = match codec {
        VideoCodec::Vp8 => b"VP80",
        VideoCodec::Vp9 => b"VP90",
        VideoCodec::Av1 => b"AV01",
        VideoCodec::H265 => unreachable!(),
    };
    let out = dir.join("viewer.ivf");
    write_ivf(&out, fourcc, W, H, fr);
    let (sizes, err) = decode_file(&out, None);
    assert!(err.trim().is_empty(), "{name}: ffmpeg errors: {err}");
    assert_eq!(sizes.len(), fr.len(), "{name}: every frame decodes");
    assert!(
        sizes.len() > 45,
        "{name}: {} frames decoded: more than one 30-frame loop",
        sizes.len()
    );
    let want = usize::from(W) * usize::from(H) * 3 / 2;
    assert!(sizes.iter().all(|s| *s == want), "{name}: 320x240 pictures");
    eprintln!(
        "{name}: {} packets (largest {max} B), {} frames decoded ({:.1} loops of the 30-frame clip, {replayed} replayed from the GOP cache)",
        video.len(),
        sizes.len(),
        sizes.len() as f64 / 30.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp8_ivf_loops_and_decodes() {
    publish_and_decode(
        "vp8",
        &["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8"],
        Track::Vp8,
        VideoCodec::Vp8,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vp9_ivf_loops_and_decodes() {
    publish_and_decode(
        "vp9",
        &[
            "-c:v",
            "libvpx-vp9",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-lag-in-frames",
            "0",
        ],
        Track::Vp9,
        VideoCodec::Vp9,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn av1_ivf_loops_and_decodes() {
    publish_and_decode(
        "av1",
        &["-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8"],
        Track::Av1,
        VideoCodec::Av1,
    )
    .await;
}
