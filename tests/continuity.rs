//! Publisher continuity: when a publisher leaves, its viewers stay for a grace
//! period; a new publisher with the same codecs on the same name is spliced in
//! with continuous sequence numbers and timestamps; an incompatible one, or
//! the end of the grace period, ends the viewers' sessions.

use e2e::{clip, drain, publish_clip, start_server_with};
use sfu::client::{ClientEvent, Options, Received, Session, Track};
use sfu::config::Config;
use std::time::Duration;
use str0m::media::MediaKind;

const CONNECT: Duration = Duration::from_secs(10);

fn config(grace: Duration) -> Config {
    Config {
        workers: 2,
        rate_limit: 0.0,
        publisher_grace: grace,
        ..Config::default()
    }
}

/// The viewer's session is still open and it received the clip's video
/// twice (publisher A, then B) byte-identical, with consecutive sequence
/// numbers and increasing timestamps; returns those packets in order.
fn both_publishers_arrived(viewer: &mut Session, clip: &e2e::Clip) -> Vec<Received> {
    let mut events = Vec::new();
    while let Ok(e) = viewer.events.try_recv() {
        events.push(e);
    }
    assert!(
        !closed(&events),
        "the viewer's session survived the publisher change"
    );
    let mut video: Vec<Received> = events
        .into_iter()
        .filter_map(|e| match e {
            ClientEvent::Rtp(r) if r.kind == MediaKind::Video => Some(r),
            _ => None,
        })
        .collect();
    video.sort_by_key(|r| r.seq);
    let one = clip.video_payloads();
    assert_eq!(
        video.len(),
        2 * one.len(),
        "both publishers' packets arrived"
    );
    for (i, r) in video.iter().enumerate() {
        assert_eq!(*r.payload, *one[i % one.len()], "payload {i}");
        if i > 0 {
            assert_eq!(r.seq, video[i - 1].seq + 1, "sequence continuous at {i}");
            assert!(
                r.ts.wrapping_sub(video[i - 1].ts) < 90_000 * 5,
                "timestamps keep increasing at {i}"
            );
        }
    }
    video
}

fn closed(rx: &[ClientEvent]) -> bool {
    rx.iter().any(|e| matches!(e, ClientEvent::Closed(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_publisher_is_spliced_into_live_viewers() {
    let clip = clip(3);
    let base = start_server_with(config(Duration::from_secs(30))).await;
    let url = format!("{base}/whip/cam");
    let (a, mut viewer) = e2e::live_pair(&base, "cam").await;
    publish_clip(&a, clip).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.close().await.unwrap(), 200);
    tokio::time::sleep(Duration::from_millis(700)).await;

    // A second publisher on the same name, same codecs: spliced in.
    let mut b = Session::publish(&url, Options::default()).await.unwrap();
    b.wait_connected(CONNECT).await.unwrap();
    publish_clip(&b, clip).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let video = both_publishers_arrived(&mut viewer, clip);
    let one = clip.video_payloads();
    // The splice point: B's first packet comes after A's last, with the
    // timestamp advanced by roughly the wall-clock pause (≥ 0.5 s).
    let k = one.len();
    let step = video[k].ts.wrapping_sub(video[k - 1].ts);
    assert!(step >= 45_000, "timestamp step across the splice: {step}");
    assert_eq!(viewer.close().await.unwrap(), 200);
    assert_eq!(b.close().await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_end_after_the_grace_period() {
    let base = start_server_with(config(Duration::from_secs(1))).await;
    let mut a = Session::publish(&format!("{base}/whip/cam"), Options::default())
        .await
        .unwrap();
    a.wait_connected(CONNECT).await.unwrap();
    let mut viewer = Session::play(&format!("{base}/whep/cam"), Options::default())
        .await
        .unwrap();
    viewer.wait_connected(CONNECT).await.unwrap();
    assert_eq!(a.close().await.unwrap(), 200);
    // Still there right after the publisher left ...
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut events = Vec::new();
    while let Ok(e) = viewer.events.try_recv() {
        events.push(e);
    }
    assert!(!closed(&events), "closed before the grace period ended");
    // ... and closed (DTLS close_notify) once it has passed.
    let mut got = false;
    for _ in 0..50 {
        if let Some(ClientEvent::Closed(_)) = viewer.next_event(Duration::from_millis(100)).await {
            got = true;
            break;
        }
    }
    assert!(got, "viewer not closed after the grace period");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incompatible_publisher_ends_old_viewers() {
    let base = start_server_with(config(Duration::from_secs(30))).await;
    let url = format!("{base}/whip/cam");
    let (a, mut viewer) = e2e::live_pair(&base, "cam").await;
    assert_eq!(a.close().await.unwrap(), 200);
    let vp8 = Options {
        tracks: vec![Track::Opus, Track::Vp8],
        ..Options::default()
    };
    let mut b = Session::publish(&url, vp8).await.unwrap();
    b.wait_connected(CONNECT).await.unwrap();
    let mut got = false;
    for _ in 0..50 {
        if let Some(ClientEvent::Closed(_)) = viewer.next_event(Duration::from_millis(100)).await {
            got = true;
            break;
        }
    }
    assert!(
        got,
        "H.264 viewer must be told to re-POST when the stream becomes VP8"
    );
    let mut rx = Vec::new();
    drain(&mut viewer, &mut rx);
    let _ = b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_policy_hands_the_stream_to_a_new_publisher() {
    let clip = clip(3);
    let mut cfg = config(Duration::from_secs(30));
    cfg.streams.insert(
        "cam".into(),
        sfu::config::StreamAuth {
            replace: Some(true),
            ..Default::default()
        },
    );
    let base = start_server_with(cfg).await;
    // Without the policy a second publisher on a live name gets 409.
    let mut x = Session::publish(&format!("{base}/whip/other"), Options::default())
        .await
        .unwrap();
    x.wait_connected(CONNECT).await.unwrap();
    let e = Session::publish(&format!("{base}/whip/other"), Options::default())
        .await
        .err()
        .expect("409 without the replace policy");
    assert!(e.to_string().contains("409"), "{e}");

    let url = format!("{base}/whip/cam");
    let (mut a, mut viewer) = e2e::live_pair(&base, "cam").await;
    publish_clip(&a, clip).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A second publisher while the first is still live: it takes over.
    let mut b = Session::publish(&url, Options::default()).await.unwrap();
    b.wait_connected(CONNECT).await.unwrap();
    let mut a_events = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !closed(&a_events) && tokio::time::Instant::now() < until {
        if let Some(ev) = a.next_event(Duration::from_millis(100)).await {
            a_events.push(ev);
        }
    }
    assert!(closed(&a_events), "the replaced publisher's session ended");
    publish_clip(&b, clip).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    both_publishers_arrived(&mut viewer, clip);
    assert_eq!(b.close().await.unwrap(), 200);
    assert_eq!(viewer.close().await.unwrap(), 200);
    assert_eq!(x.close().await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrate_reads_zero_once_the_publisher_is_gone() {
    let clip = clip(3);
    let base = start_server_with(config(Duration::from_secs(30))).await;
    let (a, viewer) = e2e::live_pair(&base, "cam").await;
    publish_clip(&a, clip).await;
    let s = e2e::get_json(&base, "/api/streams/cam").await;
    assert!(
        s["bitrate_in_bps"].as_u64().is_some_and(|b| b > 0),
        "bitrate while publishing: {s}"
    );
    assert_eq!(a.close().await.unwrap(), 200);
    // Past the publisher's last one-second sample: the viewer waits in the
    // grace period, nobody sends.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = e2e::get_json(&base, "/api/streams/cam").await;
    assert_eq!(s["publisher"], "gone", "{s}");
    assert_eq!(s["bitrate_in_bps"], 0, "no publisher, no bitrate: {s}");
    let list = e2e::get_json(&base, "/api/streams").await;
    assert_eq!(list[0]["bitrate_in_bps"], 0, "{list}");
    assert_eq!(viewer.close().await.unwrap(), 200);
}
