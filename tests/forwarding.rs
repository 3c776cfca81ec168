//! End-to-end forwarding over real UDP, ICE, DTLS and SRTP on loopback:
//! a publisher sends an x264-encoded H.264 clip plus Opus through `sfu`, and
//! viewers must receive every video payload byte-identical and in order.

use e2e::{Metrics, clip, drain, live_pair, publish_clip, start_server};
use sfu::client::{ClientEvent, Options, Received, Session};
use std::time::Duration;
use str0m::media::MediaKind;

const CONNECT: Duration = Duration::from_secs(10);

fn video_in_seq_order(rx: &[Received]) -> Vec<&Received> {
    let mut v: Vec<&Received> = rx.iter().filter(|r| r.kind == MediaKind::Video).collect();
    v.sort_by_key(|r| r.seq);
    v
}

/// Assert a viewer got exactly the published video payloads, in order, with
/// consecutive sequence numbers and non-decreasing timestamps in arrival order.
fn assert_identical(name: &str, rx: &[Received], expected: &[std::sync::Arc<[u8]>]) {
    let v = video_in_seq_order(rx);
    assert_eq!(
        v.len(),
        expected.len(),
        "{name}: received {} of {} video packets",
        v.len(),
        expected.len()
    );
    for (i, (r, e)) in v.iter().zip(expected).enumerate() {
        assert_eq!(&*r.payload, &**e, "{name}: video payload {i} differs");
        if i > 0 {
            assert_eq!(r.seq, v[i - 1].seq + 1, "{name}: sequence gap at {i}");
        }
    }
    let arrival: Vec<u32> = rx
        .iter()
        .filter(|r| r.kind == MediaKind::Video)
        .map(|r| r.ts)
        .collect();
    for w in arrival.windows(2) {
        assert!(
            w[1].wrapping_sub(w[0]) < u32::MAX / 2,
            "{name}: frames out of order"
        );
    }
    let audio = rx.iter().filter(|r| r.kind == MediaKind::Audio).count();
    assert!(audio > 0, "{name}: no audio received");
}

async fn fan_out(viewers: usize, workers: usize) {
    let clip = clip(3);
    let base = start_server(workers).await;
    let mut publisher = Session::publish(&format!("{base}/whip/cam"), Options::default())
        .await
        .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..viewers {
        let mut v = Session::play(&format!("{base}/whep/cam"), Options::default())
            .await
            .unwrap();
        v.wait_connected(CONNECT).await.unwrap();
        sessions.push(v);
    }
    publish_clip(&publisher, clip).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expected = clip.video_payloads();
    for (i, v) in sessions.iter_mut().enumerate() {
        let mut rx = Vec::new();
        drain(v, &mut rx);
        assert_identical(&format!("viewer {i}"), &rx, &expected);
    }
    // The API shows the stream and its viewers, then DELETE frees them.
    let api = sfu::client::http::request(
        "GET",
        &sfu::client::http::Url::parse(&format!("{base}/api/streams")).unwrap(),
        &[],
        None,
    )
    .await
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(json[0]["name"], "cam");
    assert_eq!(json[0]["viewers"], viewers as u64);
    assert_eq!(json[0]["publisher"], "live");
    // Per-session details: address, codecs and counters from RTCP reports
    // (str0m reports every second; the clip ran for 3 s).
    let detail = sfu::client::http::request(
        "GET",
        &sfu::client::http::Url::parse(&format!("{base}/api/streams/cam")).unwrap(),
        &[],
        None,
    )
    .await
    .unwrap();
    let d: serde_json::Value = serde_json::from_str(&detail.body).unwrap();
    let list = d["viewer_sessions"].as_array().expect("viewer_sessions");
    assert_eq!(list.len(), viewers, "{d}");
    for v in list {
        assert!(
            v["address"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{v}"
        );
        assert!(v["codecs"].to_string().contains("H264"), "{v}");
        assert!(v["packets"].as_u64().unwrap() > 0, "{v}");
        assert!(v["bytes"].as_u64().unwrap() > 0, "{v}");
        assert!(v["layer"].is_null(), "no simulcast: {v}");
    }
    let p = &d["publisher_session"];
    assert!(p["packets"].as_u64().unwrap() > 0, "{d}");
    assert!(
        !detail.body.contains("/whep/cam/"),
        "session URLs are never listed"
    );
    // Prometheus counters moved accordingly.
    let m = Metrics::fetch(&base).await;
    let metric = |name: &str| m.get(name);
    assert_eq!(
        metric("sfu_sessions_created_total{role=\"whep\"}"),
        viewers as f64
    );
    assert!(metric("sfu_rtp_packets_out_total") >= (viewers * expected.len()) as f64);
    assert_eq!(metric("sfu_viewers"), viewers as f64);
    assert!(metric("sfu_keyframe_requests_total{kind=\"pli\"}") >= 1.0);
    assert!(metric("sfu_loss_ratio_count{side=\"publisher\"}") >= 1.0);
    assert_eq!(
        metric("sfu_loss_ratio_sum{side=\"publisher\"}"),
        0.0,
        "no loss on loopback"
    );
    // One fan-out observation per forwarded batch (at most one per packet),
    // and the last viewer is written no earlier than the first.
    let (first, last) = (
        metric("sfu_fanout_seconds_count{viewer=\"first\"}"),
        metric("sfu_fanout_seconds_count{viewer=\"last\"}"),
    );
    assert!(
        first >= 1.0 && first <= metric("sfu_rtp_packets_in_total"),
        "{first}"
    );
    assert_eq!(first, last);
    assert!(
        metric("sfu_fanout_seconds_sum{viewer=\"last\"}")
            >= metric("sfu_fanout_seconds_sum{viewer=\"first\"}")
    );
    for v in sessions {
        assert_eq!(v.close().await.unwrap(), 200);
    }
    assert_eq!(publisher.close().await.unwrap(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_viewers_receive_identical_h264_and_opus() {
    fan_out(3, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_viewers_receive_every_packet() {
    fan_out(50, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_viewer_starts_at_a_keyframe() {
    let clip = clip(3);
    let base = start_server(1).await;
    let mut publisher = Session::publish(&format!("{base}/whip/late"), Options::default())
        .await
        .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    let pub_url = format!("{base}/whep/late");
    let sender = async {
        publish_clip(&publisher, clip).await;
    };
    let joiner = async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mut v = Session::play(&pub_url, Options::default()).await.unwrap();
        v.wait_connected(CONNECT).await.unwrap();
        v
    };
    let ((), mut v) = tokio::join!(sender, joiner);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut rx = Vec::new();
    drain(&mut v, &mut rx);
    let got = video_in_seq_order(&rx);
    assert!(!got.is_empty(), "late viewer received no video");
    // First packet is the SPS of an IDR access unit; the rest is the exact
    // published suffix from that keyframe.
    let all = clip.video_payloads();
    let key_starts: Vec<usize> = {
        let mut idx = 0;
        let mut ks = Vec::new();
        for (_, key, p) in &clip.video {
            if *key {
                ks.push(idx);
            }
            idx += p.len();
        }
        ks
    };
    // SPS/PPS repeat every GOP, so locate the viewer's start as the keyframe
    // from which the whole received sequence is the exact published suffix.
    let start = key_starts.iter().copied().find(|&k| {
        all.len() - k == got.len() && got.iter().zip(&all[k..]).all(|(r, e)| *r.payload == **e)
    });
    assert!(
        start.is_some_and(|k| k > 0),
        "late viewer's {} packets are not the published suffix from a later keyframe",
        got.len()
    );
    let _ = v.close().await;
    let _ = publisher.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_keyframe_request_reaches_publisher() {
    let base = start_server(2).await;
    let mut publisher = Session::publish(&format!("{base}/whip/pli"), Options::default())
        .await
        .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    let mut v = Session::play(&format!("{base}/whep/pli"), Options::default())
        .await
        .unwrap();
    v.wait_connected(CONNECT).await.unwrap();
    // The server asks the publisher for a keyframe when the viewer connects.
    let mut got = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if let Some(ClientEvent::KeyframeRequest) =
            publisher.next_event(Duration::from_millis(200)).await
        {
            got = true;
            break;
        }
    }
    assert!(
        got,
        "publisher never received a PLI/FIR for the joining viewer"
    );
    let _ = v.close().await;
    let _ = publisher.close().await;
}

/// A viewer that loses every 10th RTP packet on the way in (simulated in
/// its client, before SRTP) gets the lost video back: it NACKs (RFC 4585
/// §6.2.1), the server resends from that viewer's resend history over RTX
/// (RFC 4588). At 10 % NACKed the server also turns the RTX ratio cap on for
/// that track (`sfu_rtx_ratio_caps_total`), which empties the history once;
/// the clean viewer next to it is untouched and gets every packet. Each
/// client's own count of the NACKs it sent (`Session::feedback`) agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_viewer_is_repaired_by_rtx_and_capped() {
    let clip = clip(4);
    let base = start_server(1).await;
    let (publisher, mut clean) = live_pair(&base, "lossy").await;
    let lossy_opts = Options {
        drop_every: Some(10),
        ..Options::default()
    };
    let mut lossy = Session::play(&format!("{base}/whep/lossy"), lossy_opts)
        .await
        .unwrap();
    lossy.wait_connected(CONNECT).await.unwrap();
    publish_clip(&publisher, clip).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expected = clip.video_payloads();

    let mut rx = Vec::new();
    drain(&mut clean, &mut rx);
    assert_identical("clean viewer", &rx, &expected);

    let mut rx = Vec::new();
    drain(&mut lossy, &mut rx);
    let seqs = video_seqs(&rx);
    // Without resends it would hold ≈ 90 %; the history is emptied once
    // when the cap goes on, so a few packets NACKed at that moment may stay
    // lost.
    let got = seqs.len() as f64 / expected.len() as f64;
    assert!(
        got >= 0.98,
        "lossy viewer holds {} of {} video packets ({:.1} %)",
        seqs.len(),
        expected.len(),
        got * 100.0
    );

    let m = Metrics::fetch(&base).await;
    let metric = |name: &str| m.get(name);
    assert!(metric("sfu_nacks_total{direction=\"from_viewers\"}") > 0.0);
    // The client counts the feedback it sent (str0m's ingress stats, once a
    // second): the lossy viewer NACKed, the clean one had nothing to ask.
    let (lossy_fb, clean_fb) = (*lossy.feedback.borrow(), *clean.feedback.borrow());
    assert!(lossy_fb.nacks > 0, "lossy viewer sent NACKs: {lossy_fb:?}");
    assert_eq!(clean_fb.nacks, 0, "clean viewer: {clean_fb:?}");
    assert_eq!(
        metric("sfu_rtx_ratio_caps_total"),
        1.0,
        "the lossy viewer's video track, and only it, is capped"
    );
    for v in [clean, lossy] {
        assert_eq!(v.close().await.unwrap(), 200);
    }
    assert_eq!(publisher.close().await.unwrap(), 200);
}

/// A far viewer that loses every 10th RTP packet on the way in: its client
/// holds everything it sends for 300 ms, so the server measures a round
/// trip of ≈ 300 ms and gets each NACK (RFC 4585 §6.2.1) that much later,
/// after the 200 ms resend history a viewer starts with has let the packet
/// go. Once its receiver reports carry the round-trip time, the server
/// sizes its history to RTT + 100 ms (`rtc_config::ResendWindow`), and the
/// losses of the second half of the clip are repaired over RTX (RFC 4588).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_lossy_viewer_gets_a_resend_history_as_long_as_its_round_trip() {
    let clip = clip(6);
    let base = start_server(1).await;
    let (publisher, near) = live_pair(&base, "far").await;
    drop(near);
    let far_opts = Options {
        drop_every: Some(10),
        delay_sends: Some(Duration::from_millis(300)),
        ..Options::default()
    };
    let mut far = Session::play(&format!("{base}/whep/far"), far_opts)
        .await
        .unwrap();
    far.wait_connected(CONNECT).await.unwrap();
    publish_clip(&publisher, clip).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let expected = clip.video_payloads().len() as u64;

    let mut rx = Vec::new();
    drain(&mut far, &mut rx);
    let seqs = video_seqs(&rx);
    let first = seqs[0];
    // The second half of the clip, but for its last packets (a loss at the
    // very end has no later packet to reveal it).
    let (from, to) = (expected / 2, expected - 10);
    let held = seqs
        .iter()
        .filter(|s| (from..to).contains(&(**s - first)))
        .count() as u64;
    let got = held as f64 / (to - from) as f64;
    // Without resends it would hold ≈ 90 %.
    assert!(
        got >= 0.98,
        "far lossy viewer holds {held} of {} video packets of the second half ({:.1} %)",
        to - from,
        got * 100.0
    );
    let m = Metrics::fetch(&base).await;
    assert!(m.get("sfu_nacks_total{direction=\"from_viewers\"}") > 0.0);
    assert_eq!(far.close().await.unwrap(), 200);
    assert_eq!(publisher.close().await.unwrap(), 200);
}

/// The distinct video sequence numbers in `rx`, ascending.
fn video_seqs(rx: &[Received]) -> Vec<u64> {
    let mut seqs: Vec<u64> = rx
        .iter()
        .filter(|r| r.kind == MediaKind::Video)
        .map(|r| r.seq)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    seqs
}
