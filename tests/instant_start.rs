//! Instant start: a publisher that ignores PLI with a 4 s GOP. With the GOP
//! cache a viewer joining mid-GOP starts from the cached keyframe at once, its
//! replayed frames compressed in time so it then plays at the live edge;
//! without the cache it waits for the next keyframe. Times are printed (they
//! are measurements, not assertions).

use e2e::{clip_gop, drain, publish_clip, start_server_with};
use sfu::client::{Options, Received, Session};
use sfu::config::Config;
use std::time::{Duration, Instant};
use str0m::media::MediaKind;

struct Join {
    first_video_after_connect: Duration,
    video: Vec<Received>,
}

async fn join_mid_gop(cache: bool) -> Join {
    let clip = clip_gop(6, 120);
    let mut cfg = Config {
        workers: 2,
        ..Config::default()
    };
    cfg.gop.enabled = cache;
    let base = start_server_with(cfg).await;
    // The test publisher never answers PLI (it sends a fixed clip).
    let mut publisher = Session::publish(&format!("{base}/whip/cam"), Options::default())
        .await
        .unwrap();
    publisher
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let url = format!("{base}/whep/cam");
    let sender = publish_clip(&publisher, clip);
    let joiner = async {
        // Join 1.5 s into the first 4 s GOP.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let mut v = Session::play(&url, Options::default()).await.unwrap();
        v.wait_connected(Duration::from_secs(10)).await.unwrap();
        let connected = Instant::now();
        let mut first = None;
        let mut rx = Vec::new();
        let deadline = connected + Duration::from_secs(4);
        while Instant::now() < deadline {
            drain(&mut v, &mut rx);
            if first.is_none()
                && let Some(r) = rx.iter().find(|r| r.kind == MediaKind::Video)
            {
                first = Some(r.at.saturating_duration_since(connected));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (v, first, rx)
    };
    let ((), (mut v, first, mut rx)) = tokio::join!(sender, joiner);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain(&mut v, &mut rx);
    let _ = v.close().await;
    let _ = publisher.close().await;
    Join {
        first_video_after_connect: first.unwrap_or(Duration::MAX),
        video: rx
            .into_iter()
            .filter(|r| r.kind == MediaKind::Video)
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gop_cache_starts_a_mid_gop_viewer_at_once() {
    let clip = clip_gop(6, 120);
    let j = join_mid_gop(true).await;
    eprintln!(
        "GOP cache on: first video packet {:.1} ms after connect",
        j.first_video_after_connect.as_secs_f64() * 1000.0
    );
    // Structural proof: the first packet is the clip's first keyframe (frame 0,
    // published 1.5 s before the viewer joined), then every packet follows.
    let mut v = j.video;
    v.sort_by_key(|r| r.seq);
    let all = clip.video_payloads();
    assert!(!v.is_empty(), "no video");
    let gaps: Vec<(u64, u64)> = v
        .windows(2)
        .filter(|w| w[1].seq != w[0].seq + 1)
        .map(|w| (w[0].seq, w[1].seq))
        .collect();
    eprintln!(
        "received {} of {} video packets; first seq {}; gaps {:?}",
        v.len(),
        all_len(clip),
        v[0].seq,
        &gaps[..gaps.len().min(10)]
    );
    assert_eq!(
        *v[0].payload, *all[0],
        "viewer starts at the cached keyframe"
    );
    for (i, (r, e)) in v.iter().zip(all.iter()).enumerate() {
        assert_eq!(*r.payload, **e, "payload {i}");
        if i > 0 {
            assert_eq!(r.seq, v[i - 1].seq + 1, "no gap at {i}");
        }
    }
    // Replayed frames are one tick apart; the live frames after them keep the
    // publisher's 3000-tick spacing, continuing from the last replayed frame.
    let frames: Vec<u32> = {
        let mut f: Vec<u32> = v.iter().map(|r| r.ts).collect();
        f.dedup();
        f
    };
    let steps: Vec<u32> = frames.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let ones = steps.iter().take_while(|s| **s == 1).count();
    assert!(
        ones >= 30,
        "replayed ~45 cached frames compressed (got {ones} one-tick steps)"
    );
    assert!(
        steps[ones..].iter().all(|s| *s == 3000),
        "live frames continue at 3000 ticks: {:?}",
        &steps[ones..ones + 5]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cache_a_mid_gop_viewer_waits_for_the_next_keyframe() {
    let clip = clip_gop(6, 120);
    let j = join_mid_gop(false).await;
    eprintln!(
        "GOP cache off: first video packet {:.1} ms after connect",
        j.first_video_after_connect.as_secs_f64() * 1000.0
    );
    let mut v = j.video;
    v.sort_by_key(|r| r.seq);
    assert!(!v.is_empty(), "no video after the next keyframe");
    // It starts at the second keyframe (frame 120), not at frame 0.
    let idx_of_second_key: usize = clip.video.iter().take(120).map(|(_, _, p)| p.len()).sum();
    let all = clip.video_payloads();
    assert_eq!(
        *v[0].payload, *all[idx_of_second_key],
        "starts at the next keyframe"
    );
}

fn all_len(c: &e2e::Clip) -> usize {
    c.video_payloads().len()
}
