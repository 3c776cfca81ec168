//! Viewers and publishers on an impaired path (loss, bursts, reordering,
//! jitter, blackouts, a bandwidth cap), through the user-space relay of
//! `e2e::impair` with real ICE, DTLS and SRTP over loopback UDP.

use e2e::impair::{Impairment, PathStats};
use e2e::{Clip, Metrics, clip_gop, drain, get_json, publish_clip, start_server_behind_relay};
use sfu::client::{ClientEvent, Options, Received, Session};
use sfu::config::Config;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use str0m::media::MediaKind;

const CONNECT: Duration = Duration::from_secs(10);
/// The impaired client's address (the relay impairs by client IP).
const IMPAIRED: [u8; 4] = [127, 0, 0, 5];
/// A second, unimpaired viewer's address.
const CLEAN: [u8; 4] = [127, 0, 0, 6];

/// Options of a client on `ip`. Its host candidate names an address nothing
/// listens on, so the server reaches it only through the relay (on loopback
/// the server's own ICE checks would otherwise find the direct path, and
/// switch to it when the relayed one fails).
fn opts(ip: [u8; 4]) -> Options {
    Options {
        bind_ip: IpAddr::from(ip),
        advertise_ip: Some(IpAddr::from([127, 0, 0, 9])),
        ..Options::default()
    }
}

/// What a viewer made of the clip.
#[derive(Debug, Default)]
struct Outcome {
    /// Video packets of the clip / distinct ones received.
    expected: usize,
    got: usize,
    /// Frames of the clip / complete ones / decodable ones (complete, and
    /// every frame since the last keyframe complete: H.264 P-frame chain).
    frames: usize,
    complete: usize,
    decodable: usize,
    /// Runs of non-decodable frames (freezes) and the longest, in frames.
    freezes: usize,
    longest_freeze: usize,
    /// Duplicated payloads, and distinct payloads in a different order than
    /// published when sorted by sequence number.
    duplicates: usize,
    misordered: usize,
}

fn outcome(clip: &Clip, rx: &[Received], skip_frames: usize) -> Outcome {
    // Clip position of every packet; payloads seen once anchor the
    // sequence-number offset (SPS/PPS packets repeat at every keyframe).
    let flat: Vec<(usize, usize, &[u8])> = clip
        .video
        .iter()
        .enumerate()
        .flat_map(|(f, (_, _, ps))| ps.iter().enumerate().map(move |(k, p)| (f, k, &p[..])))
        .collect();
    let mut count: HashMap<&[u8], (usize, usize)> = HashMap::new();
    for (i, (_, _, p)) in flat.iter().enumerate() {
        let e = count.entry(p).or_insert((0, i));
        e.0 += 1;
    }
    let mut video: Vec<&Received> = rx.iter().filter(|r| r.kind == MediaKind::Video).collect();
    video.sort_by_key(|r| r.seq);
    let mut o = Outcome::default();
    let offset = video.iter().find_map(|r| {
        let (n, i) = count.get(&r.payload[..])?;
        (*n == 1).then(|| r.seq as i64 - *i as i64)
    });
    let mut have: Vec<Vec<bool>> = clip
        .video
        .iter()
        .map(|(_, _, ps)| vec![false; ps.len()])
        .collect();
    let mut prev = None;
    for r in &video {
        if prev == Some(r.seq) {
            o.duplicates += 1;
            continue;
        }
        prev = Some(r.seq);
        let pos = offset.map(|off| r.seq as i64 - off);
        match pos.and_then(|p| flat.get(usize::try_from(p).ok()?)) {
            Some((f, k, p)) if *p == &r.payload[..] => have[*f][*k] = true,
            _ => o.misordered += 1,
        }
    }
    if std::env::var("MISSING").is_ok() {
        let miss: Vec<(usize, usize)> = have
            .iter()
            .enumerate()
            .flat_map(|(f, h)| {
                h.iter()
                    .enumerate()
                    .filter(|(_, x)| !**x)
                    .map(move |(k, _)| (f, k))
            })
            .collect();
        eprintln!(
            "missing {} e.g. {:?}, first seqs {:?}",
            miss.len(),
            &miss[..miss.len().min(30)],
            video.iter().take(5).map(|r| r.seq).collect::<Vec<_>>()
        );
    }
    let frames = &clip.video[skip_frames..];
    o.frames = frames.len();
    o.expected = frames.iter().map(|(_, _, p)| p.len()).sum();
    let mut chain = false;
    let mut run = 0usize;
    for (i, (_, key, _)) in frames.iter().enumerate() {
        let h = &have[skip_frames + i];
        let complete = h.iter().all(|x| *x);
        o.got += h.iter().filter(|x| **x).count();
        o.complete += complete as usize;
        chain = complete && (*key || chain);
        if chain {
            o.decodable += 1;
            if run > 0 {
                o.freezes += 1;
                o.longest_freeze = o.longest_freeze.max(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        o.freezes += 1;
        o.longest_freeze = o.longest_freeze.max(run);
    }
    o
}

/// The RTX SSRC (`a=ssrc-group:FID <media> <rtx>`) of an answer's video.
fn rtx_ssrc(answer: &str) -> Option<u32> {
    answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=ssrc-group:FID "))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
        .next_back()
}

struct Run {
    clean: Outcome,
    impaired: Outcome,
    down: PathStats,
    up: PathStats,
    rtx: u64,
    impaired_api: serde_json::Value,
    metrics: Metrics,
    publisher_pli: usize,
}

/// A publisher (unimpaired, or impaired when `impair_publisher`), a clean
/// viewer and an impaired viewer; the impairment starts with the clip.
async fn run(clip: &Clip, down: Impairment, up: Impairment, impair_publisher: bool) -> Run {
    let (base, relay) = start_server_behind_relay(Config {
        workers: 1,
        rate_limit: 0.0,
        ..Config::default()
    })
    .await;
    let pub_ip = if impair_publisher {
        IMPAIRED
    } else {
        [127, 0, 0, 1]
    };
    let view_ip = if impair_publisher {
        [127, 0, 0, 7]
    } else {
        IMPAIRED
    };
    let mut publisher = Session::publish(&format!("{base}/whip/s"), opts(pub_ip))
        .await
        .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    let mut clean = Session::play(&format!("{base}/whep/s"), opts(CLEAN))
        .await
        .unwrap();
    clean.wait_connected(CONNECT).await.unwrap();
    let mut viewer = Session::play(&format!("{base}/whep/s"), opts(view_ip))
        .await
        .unwrap();
    viewer.wait_connected(CONNECT).await.unwrap();
    let rtx = rtx_ssrc(&viewer.answer);
    relay.impair(IpAddr::from(IMPAIRED), down, up);
    publish_clip(&publisher, clip).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut publisher_pli = 0;
    while let Ok(ev) = publisher.events.try_recv() {
        publisher_pli += matches!(ev, ClientEvent::KeyframeRequest) as usize;
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    drain(&mut clean, &mut a);
    drain(&mut viewer, &mut b);
    let api = get_json(&base, "/api/streams/s").await;
    let impaired_api = if impair_publisher {
        api["publisher_session"].clone()
    } else {
        serde_json::Value::Array(
            api["viewer_sessions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    serde_json::json!([v["nacks"], v["plis"], v["firs"], v["loss"], v["packets"]])
                })
                .collect(),
        )
    };
    let (d, u) = relay.stats(IpAddr::from(IMPAIRED));
    let rtx = rtx.map_or(0, |s| *d.rtp_out_by_ssrc.get(&s).unwrap_or(&0));
    let metrics = Metrics::fetch(&base).await;
    for s in [clean, viewer] {
        s.abandon();
    }
    publisher.abandon();
    Run {
        clean: outcome(clip, &a, 0),
        impaired: outcome(clip, &b, 0),
        down: d,
        up: u,
        rtx,
        impaired_api,
        metrics,
        publisher_pli,
    }
}

fn report(name: &str, r: &Run) {
    let m = |n: &str| r.metrics.get(n);
    eprintln!(
        "{name}: impaired {:?}\n  clean {:?}\n  down lost rnd {} sched {} queue {} of {} (max queue {:?}); up lost rnd {} sched {} of {}\n  rtx delivered {} api {}\n  nacks from viewers {} to publishers {} kf requests to publisher {:?} publisher got {}",
        r.impaired,
        r.clean,
        r.down.lost_random,
        r.down.lost_scheduled,
        r.down.lost_queue,
        r.down.datagrams,
        r.down.max_queue_delay,
        r.up.lost_random,
        r.up.lost_scheduled,
        r.up.datagrams,
        r.rtx,
        r.impaired_api,
        m("sfu_nacks_total{direction=\"from_viewers\"}"),
        m("sfu_nacks_total{direction=\"to_publishers\"}"),
        (
            m("sfu_keyframe_requests_total{kind=\"pli\"}"),
            m("sfu_viewer_keyframe_requests_total")
        ),
        r.publisher_pli,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints figures, `SCEN=loss5,… cargo test -p e2e --test impaired -- --ignored --nocapture`"]
async fn measure() {
    let clip = clip_gop(8, 60);
    let which = std::env::var("SCEN").unwrap_or_default();
    let ms = Duration::from_millis;
    let scen: Vec<(&str, Impairment, Impairment, bool)> = vec![
        (
            "loss1",
            Impairment {
                loss: 0.01,
                seed: 1,
                ..Default::default()
            },
            Impairment::default(),
            false,
        ),
        (
            "loss5",
            Impairment {
                loss: 0.05,
                seed: 2,
                ..Default::default()
            },
            Impairment::default(),
            false,
        ),
        (
            "loss10",
            Impairment {
                loss: 0.10,
                seed: 3,
                ..Default::default()
            },
            Impairment::default(),
            false,
        ),
        (
            "burst100",
            Impairment {
                bursts: Some((ms(2000), ms(100))),
                ..Default::default()
            },
            Impairment::default(),
            false,
        ),
        (
            "burst300",
            Impairment {
                bursts: Some((ms(2000), ms(300))),
                ..Default::default()
            },
            Impairment::default(),
            false,
        ),
        (
            "jitter80",
            Impairment {
                jitter: ms(80),
                delay: ms(20),
                seed: 4,
                ..Default::default()
            },
            Impairment::default(),
            false,
        ),
        (
            "up_loss5",
            Impairment::default(),
            Impairment {
                loss: 0.05,
                seed: 5,
                ..Default::default()
            },
            true,
        ),
        (
            "up_jitter60",
            Impairment::default(),
            Impairment {
                jitter: ms(60),
                delay: ms(20),
                seed: 6,
                ..Default::default()
            },
            true,
        ),
        (
            "up_burst300",
            Impairment::default(),
            Impairment {
                bursts: Some((ms(2000), ms(300))),
                ..Default::default()
            },
            true,
        ),
        (
            "blackout2",
            Impairment {
                blackouts: vec![(ms(2000), ms(2000))],
                ..Default::default()
            },
            Impairment {
                blackouts: vec![(ms(2000), ms(2000))],
                ..Default::default()
            },
            false,
        ),
        (
            "cap500",
            Impairment {
                rate_bps: Some(500_000),
                ..Default::default()
            },
            Impairment::default(),
            false,
        ),
    ];
    let both = |b: Vec<(Duration, Duration)>| Impairment {
        blackouts: b,
        ..Default::default()
    };
    let mut scen = scen;
    scen.push((
        "blackout8",
        both(vec![(ms(1000), ms(8000))]),
        both(vec![(ms(1000), ms(8000))]),
        false,
    ));
    scen.push((
        "bursts300mid",
        both(vec![
            (ms(1000), ms(300)),
            (ms(3000), ms(300)),
            (ms(5000), ms(300)),
        ]),
        Impairment::default(),
        false,
    ));
    scen.push((
        "bursts150mid",
        both(vec![
            (ms(1000), ms(150)),
            (ms(3000), ms(150)),
            (ms(5000), ms(150)),
        ]),
        Impairment::default(),
        false,
    ));
    for (name, d, u, p) in scen {
        if !which.is_empty() && !which.split(',').any(|w| w == name) {
            continue;
        }
        let r = run(clip, d, u, p).await;
        report(name, &r);
        // Whatever the path does, the rewrite never puts a payload at a
        // wrong sequence number, and a viewer on a clean path gets all of
        // an unimpaired publisher's video.
        assert_eq!(r.impaired.misordered, 0, "{name}");
        assert_eq!(r.clean.misordered, 0, "{name}");
        if !p {
            assert_eq!(r.clean.got, r.clean.expected, "{name}: clean viewer");
        }
    }
}

/// The video SSRC (`a=ssrc-group:FID <media> <rtx>`) of an answer.
fn video_ssrc(answer: &str) -> Option<u32> {
    answer
        .lines()
        .filter_map(|l| l.strip_prefix("a=ssrc-group:FID "))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .next_back()
}

/// A publisher whose path reorders every access unit (its first `hold`
/// packets arrive after the next `pass` ones); a viewer joins mid-GOP, so it
/// starts at such a keyframe: from the GOP cache (`gop`), or at the next
/// keyframe. Returns the packets (index from its keyframe's first packet,
/// the SPS) the server never sent the viewer, from the keyframe it started
/// at to the end of the clip's last frame but one (whose first packets stay
/// held); judged by the relay's record of what the server sent the viewer,
/// compared with the clip (our client, like str0m, drops packets older than
/// the first it saw, so it cannot show the parameter sets itself).
async fn reordered_keyframe_missing(gop: bool, hold: usize, pass: usize) -> Vec<usize> {
    let clip = e2e::clip(4);
    let mut cfg = Config {
        workers: 1,
        rate_limit: 0.0,
        ..Config::default()
    };
    cfg.gop.enabled = gop;
    let (base, relay) = start_server_behind_relay(cfg).await;
    let mut publisher = Session::publish(&format!("{base}/whip/r"), opts(IMPAIRED))
        .await
        .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    let up = Impairment {
        hold_au_start: hold,
        hold_au_pass: pass,
        ..Impairment::default()
    };
    relay.impair(IpAddr::from(IMPAIRED), Impairment::default(), up);
    let publishing = tokio::spawn(async move {
        publish_clip(&publisher, clip).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        publisher
    });
    tokio::time::sleep(Duration::from_millis(1400)).await;
    let mut viewer = Session::play(&format!("{base}/whep/r"), opts(CLEAN))
        .await
        .unwrap();
    viewer.wait_connected(CONNECT).await.unwrap();
    let ssrc = video_ssrc(&viewer.answer).expect("answer has the video SSRC");
    let publisher = publishing.await.unwrap();
    let mut rx = Vec::new();
    drain(&mut viewer, &mut rx);

    // Clip position of every packet; the offset from one unique payload.
    let flat: Vec<(usize, &[u8])> = clip
        .video
        .iter()
        .enumerate()
        .flat_map(|(f, (_, _, ps))| ps.iter().map(move |p| (f, &p[..])))
        .collect();
    let mut count: HashMap<&[u8], (usize, usize)> = HashMap::new();
    for (i, (_, p)) in flat.iter().enumerate() {
        count.entry(p).or_insert((0, i)).0 += 1;
    }
    let mut video: Vec<&Received> = rx.iter().filter(|r| r.kind == MediaKind::Video).collect();
    video.sort_by_key(|r| r.seq);
    let first = video.first().expect("the viewer received video");
    let offset = video
        .iter()
        .find_map(|r| {
            let (n, i) = count.get(&r.payload[..])?;
            (*n == 1).then(|| r.seq as i64 - *i as i64)
        })
        .expect("a unique payload");
    let start_frame = flat[(first.seq as i64 - offset) as usize].0;
    assert!(
        clip.video[start_frame].1,
        "the viewer starts at a keyframe (frame {start_frame})"
    );
    assert!(
        start_frame > 0,
        "the viewer joined after the first keyframe"
    );
    let from = flat.iter().position(|(f, _)| *f == start_frame).unwrap();
    let to = flat
        .iter()
        .position(|(f, _)| *f == clip.video.len() - 1)
        .unwrap();
    let (down, _) = relay.stats(IpAddr::from(CLEAN));
    let sent: std::collections::HashSet<u16> = down
        .seqs_out_by_ssrc
        .get(&ssrc)
        .expect("video sent to the viewer")
        .iter()
        .copied()
        .collect();
    viewer.abandon();
    publisher.abandon();
    (from..to)
        .filter(|i| !sent.contains(&((*i as i64 + offset) as u16)))
        .map(|i| i - from)
        .collect()
}

/// The keyframe's SPS and PPS arrive after its first IDR packet: they are
/// sent below it (`forward::Rewrite`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_parameter_sets_arriving_late_reach_a_joining_viewer() {
    let missing = reordered_keyframe_missing(false, 2, 1).await;
    assert!(missing.is_empty(), "never sent: {missing:?}");
}

/// The keyframe's PPS arrives before its first IDR packet, its SPS after:
/// the PPS, dropped while the viewer waited, is sent once it starts
/// (`forward::AccessUnitHold`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_packets_arriving_before_its_detected_start_reach_a_joining_viewer() {
    let missing = reordered_keyframe_missing(false, 1, 2).await;
    assert!(missing.is_empty(), "never sent: {missing:?}");
}

/// As above, for a viewer started from the GOP cache (`forward::GopCache`
/// keeps the packets of the keyframe's access unit that came first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyframe_packets_arriving_before_its_detected_start_are_in_the_gop_cache() {
    let missing = reordered_keyframe_missing(true, 1, 2).await;
    assert!(missing.is_empty(), "never sent: {missing:?}");
}

/// Blackout of one viewer (both directions) from 2.5 s for `SECS` (env,
/// default 8): when its video is decodable again, whether its session
/// survives (`/api/streams` viewers, polled each second), and the clean
/// viewer's arrival spread. Prints figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: prints figures, `SECS=8 cargo test -p e2e --test impaired measure_blackout -- --ignored --nocapture`"]
async fn measure_blackout() {
    let secs: u64 = std::env::var("SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let clip = clip_gop(secs as u32 + 8, 60);
    let (base, relay) = start_server_behind_relay(Config {
        workers: 1,
        rate_limit: 0.0,
        ..Config::default()
    })
    .await;
    let mut publisher = Session::publish(&format!("{base}/whip/b"), opts([127, 0, 0, 1]))
        .await
        .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    let mut clean = Session::play(&format!("{base}/whep/b"), opts(CLEAN))
        .await
        .unwrap();
    clean.wait_connected(CONNECT).await.unwrap();
    let mut viewer = Session::play(&format!("{base}/whep/b"), opts(IMPAIRED))
        .await
        .unwrap();
    viewer.wait_connected(CONNECT).await.unwrap();
    let out = Duration::from_secs(secs);
    let b = Impairment {
        blackouts: vec![(Duration::from_millis(2500), out)],
        ..Impairment::default()
    };
    relay.impair(IpAddr::from(IMPAIRED), b.clone(), b);
    let t0 = tokio::time::Instant::now();
    let publishing = tokio::spawn(async move {
        publish_clip(&publisher, clip).await;
        publisher
    });
    let mut counts = Vec::new();
    while !publishing.is_finished() {
        let api = get_json(&base, "/api/streams/b").await;
        counts.push((
            t0.elapsed().as_secs(),
            api["viewer_sessions"].as_array().map_or(0, |v| v.len()),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (mut a, mut v) = (Vec::new(), Vec::new());
    drain(&mut clean, &mut a);
    let mut closed = None;
    while let Ok(ev) = viewer.events.try_recv() {
        match ev {
            ClientEvent::Rtp(r) => v.push(r),
            ClientEvent::Closed(why) => closed = Some(why),
            _ => {}
        }
    }
    let o = outcome(clip, &v, 0);
    let oc = outcome(clip, &a, 0);
    // First decodable frame after the blackout, from the viewer's payloads.
    let end_frame = (2500 + secs * 1000) as usize * 30 / 1000;
    eprintln!(
        "blackout {secs} s: viewer {o:?}\n  clean {oc:?}\n  viewer sessions over time {counts:?}\n  viewer closed: {closed:?}\n  frames after the blackout end (frame {end_frame}): {} decodable of {}",
        o.decodable.saturating_sub(75),
        clip.video.len() - end_frame
    );
    // Clean viewer: arrival spread of frames' first packets against the clip clock.
    let mut first_at: HashMap<u32, tokio::time::Instant> = HashMap::new();
    for r in a.iter().filter(|r| r.kind == MediaKind::Video) {
        first_at.entry(r.ts).or_insert(r.at.into());
    }
    let mut lag: Vec<i64> = first_at
        .iter()
        .map(|(ts, at)| at.duration_since(t0).as_millis() as i64 - (*ts as i64 / 90))
        .collect();
    lag.sort_unstable();
    if let (Some(lo), Some(hi)) = (lag.first(), lag.last()) {
        eprintln!(
            "  clean viewer frame arrival spread {} ms (p50 {} ms above min)",
            hi - lo,
            lag[lag.len() / 2] - lo
        );
    }
    assert_eq!(oc.got, oc.expected, "the clean viewer gets everything");
}

/// A simulcast publisher (rids h/m/l at ≈ 1.5 Mbit/s, 400 and 120 kbit/s)
/// and two viewers that POST before the publisher's first packet (so before
/// any layer has been seen), one behind a 500 kbit/s cap (200 ms drop-tail
/// queue). The capped viewer's session must be set up for simulcast
/// (bandwidth estimation: transport-wide sequence numbers negotiated) and
/// end on a lower layer. Prints, second by second, each viewer's layer and
/// loss (`/api/streams`) and the cap's drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulcast_viewer_joining_before_the_first_layer_packet_adapts_to_a_cap() {
    const RIDS: [&str; 3] = ["h", "m", "l"];
    let layers = [
        e2e::clip_sized(16, 60, 640, 360, 1500),
        e2e::clip_sized(16, 60, 320, 180, 400),
        e2e::clip_sized(16, 60, 160, 90, 120),
    ];
    let (base, relay) = start_server_behind_relay(Config {
        workers: 1,
        rate_limit: 0.0,
        ..Config::default()
    })
    .await;
    let popts = Options {
        tracks: vec![sfu::client::Track::H264(0x42e01f)],
        ..opts([127, 0, 0, 1])
    };
    let mut publisher = Session::publish_simulcast(&format!("{base}/whip/sc"), popts, &RIDS)
        .await
        .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    let mut clean = Session::play(&format!("{base}/whep/sc"), opts(CLEAN))
        .await
        .unwrap();
    clean.wait_connected(CONNECT).await.unwrap();
    let mut viewer = Session::play(&format!("{base}/whep/sc"), opts(IMPAIRED))
        .await
        .unwrap();
    viewer.wait_connected(CONNECT).await.unwrap();
    if std::env::var("SHOWSDP").is_ok() {
        eprintln!("PUB {}\nVIEW {}", publisher.answer, viewer.answer);
    }
    relay.impair(
        IpAddr::from(IMPAIRED),
        Impairment {
            rate_bps: Some(500_000),
            ..Impairment::default()
        },
        Impairment::default(),
    );
    let publisher = Arc::new(publisher);
    let p2 = publisher.clone();
    let sending = tokio::spawn(e2e::publish_layers(p2, RIDS, layers));
    let t0 = tokio::time::Instant::now();
    let mut timeline = Vec::new();
    while !sending.is_finished() {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let api = get_json(&base, "/api/streams/sc").await;
        let l: Vec<String> = api["viewer_sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| format!("{}:{}", v["layer"], v["loss"]))
            .collect();
        let (d, _) = relay.stats(IpAddr::from(IMPAIRED));
        timeline.push((t0.elapsed().as_secs(), l, d.lost_queue));
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    drain(&mut clean, &mut a);
    drain(&mut viewer, &mut b);
    // Payload → layer.
    let mut map: HashMap<&[u8], usize> = HashMap::new();
    for (li, c) in layers.iter().enumerate() {
        for (_, _, ps) in &c.video {
            for p in ps {
                map.insert(&p[..], li);
            }
        }
    }
    let per_layer = |rx: &[Received]| {
        let mut n = [0usize; 3];
        for r in rx.iter().filter(|r| r.kind == MediaKind::Video) {
            if let Some(l) = map.get(&r.payload[..]) {
                n[*l] += 1;
            }
        }
        n
    };
    let m = Metrics::fetch(&base).await;
    // The capped viewer's last 4 s of video: no packet of the top layer.
    let end = b
        .iter()
        .map(|r| r.at)
        .max()
        .expect("the capped viewer got video");
    let late: Vec<&Received> = b
        .iter()
        .filter(|r| r.kind == MediaKind::Video && end.duration_since(r.at) < Duration::from_secs(4))
        .collect();
    let top = late
        .iter()
        .filter(|r| map.get(&r.payload[..]) == Some(&0))
        .count();
    assert!(
        !late.is_empty() && top == 0,
        "the capped viewer still gets the top layer at the end: {top} of {} packets",
        late.len()
    );
    assert!(
        viewer.answer.contains("transport-wide-cc"),
        "the viewer's session estimates its bandwidth: {}",
        viewer.answer
    );
    eprintln!(
        "simulcast cap 500k: timeline (s, [layer:loss per viewer], queue drops) {timeline:?}\n  packets per layer h/m/l: clean {:?} capped {:?}\n  layer switches {} kf requests {}",
        per_layer(&a),
        per_layer(&b),
        m.get("sfu_layer_switches_total"),
        m.get("sfu_keyframe_requests_total{kind=\"pli\"}"),
    );
}

/// A headless Chromium viewer (`tests/interop/browser/play.mjs`, the
/// server's own /watch.html; needs `npm ci` there and /usr/bin/chromium) on
/// an impaired downlink, watching a looped x264 clip (2 s GOP; the publisher
/// ignores PLI) for 15 s: prints the page's getStats figures (freezes,
/// dropped frames, PLIs) and the server's per-viewer NACK/PLI counts.
/// Chromium offers every interface address, and the server's own ICE
/// checks would find it directly on loopback, so this runs across two
/// network namespaces joined by a veth pair (10.231.7.1 ↔ 10.231.7.2): the
/// test in the first (`ip netns exec h1s`), Chromium in the second
/// (`CLIENT_NS=h1c`); the media socket is on the first's loopback, which the
/// second cannot reach but through the relay on 10.231.7.1.
/// `CHSCEN`: none, loss1, loss5, loss10, bursts, jitter, blackout2. As root:
/// `ip netns add h1s; ip netns add h1c; ip link add h1v0 type veth peer name
/// h1v1; ip link set h1v0 netns h1s; ip link set h1v1 netns h1c; ip -n h1s
/// addr add 10.231.7.1/24 dev h1v0; ip -n h1c addr add 10.231.7.2/24 dev
/// h1v1`, then `lo` and the veth ends up in both, then `CLIENT_NS=h1c
/// CHSCEN=loss5 ip netns exec h1s <impaired test binary> measure_chromium
/// --ignored --nocapture` (from `tests/`), and `ip netns del` both after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: needs two network namespaces, Chromium and node (see the doc comment)"]
async fn measure_chromium() {
    let scen = std::env::var("CHSCEN").unwrap_or_else(|_| "loss5".into());
    let ns = std::env::var("CLIENT_NS").expect("CLIENT_NS: the client network namespace");
    let ms = Duration::from_millis;
    let down = match scen.as_str() {
        "none" => Impairment::default(),
        "loss1" => Impairment {
            loss: 0.01,
            seed: 11,
            ..Default::default()
        },
        "loss5" => Impairment {
            loss: 0.05,
            seed: 12,
            ..Default::default()
        },
        "loss10" => Impairment {
            loss: 0.10,
            seed: 13,
            ..Default::default()
        },
        "bursts" => Impairment {
            blackouts: (0..5).map(|i| (ms(4000 + i * 2500), ms(300))).collect(),
            ..Default::default()
        },
        "jitter" => Impairment {
            delay: ms(20),
            jitter: ms(60),
            seed: 14,
            ..Default::default()
        },
        "blackout2" => Impairment {
            blackouts: vec![(ms(8000), ms(2000))],
            ..Default::default()
        },
        other => panic!("unknown CHSCEN {other}"),
    };
    let up = if scen == "blackout2" {
        Impairment {
            blackouts: vec![(ms(8000), ms(2000))],
            ..Default::default()
        }
    } else {
        Impairment::default()
    };
    let clip = clip_gop(24, 60);
    let server_ip = IpAddr::from([10, 231, 7, 1]);
    let (base, relay) = e2e::start_server_behind_relay_at(
        Config {
            workers: 1,
            rate_limit: 0.0,
            ..Config::default()
        },
        server_ip,
        server_ip,
    )
    .await;
    let mut publisher = Session::publish(&format!("{base}/whip/ch"), opts([127, 0, 0, 7]))
        .await
        .unwrap();
    publisher.wait_connected(CONNECT).await.unwrap();
    let sending = tokio::spawn(async move {
        publish_clip(&publisher, clip).await;
        publisher
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let chrome = IpAddr::from([10, 231, 7, 2]);
    relay.impair(chrome, down, up);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/browser");
    let b = base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "node"])
            .arg(dir.join("play.mjs"))
            .args([
                "--base",
                &b,
                "--stream",
                "ch",
                "--duration",
                "15",
                "--timeout",
                "15",
            ])
            .output()
            .expect("node runs")
    });
    // The server's view of the viewer while it plays.
    tokio::time::sleep(Duration::from_secs(14)).await;
    let api = get_json(&base, "/api/streams/ch").await;
    let out = out.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "result")
        .unwrap_or_default();
    let (d, u) = relay.stats(chrome);
    let m = Metrics::fetch(&base).await;
    eprintln!(
        "chromium {scen}: ok {} ttff {} ms, frames decoded {}, dropped {}, freezes {} ({} s), PLIs sent {}, size {}x{}\n  stats: {}\n  relay down: {} datagrams, lost rnd {} sched {}; up: {} datagrams, lost sched {}\n  server viewer: {}\n  kf requests to publisher {} (from viewers {})",
        result["ok"],
        result["ttffMs"],
        result["framesDecoded"],
        result["framesDropped"],
        result["freezeCount"],
        result["freezeSeconds"],
        result["pliCount"],
        result["width"],
        result["height"],
        result["stats"],
        d.datagrams,
        d.lost_random,
        d.lost_scheduled,
        u.datagrams,
        u.lost_scheduled,
        api["viewer_sessions"],
        m.get("sfu_keyframe_requests_total{kind=\"pli\"}"),
        m.get("sfu_viewer_keyframe_requests_total"),
    );
    // Freeze count changes: (ms after the page pressed Watch, freezes, frames decoded).
    let freezes: Vec<(i64, i64, i64)> = result["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e[0].as_i64()?, e[4].as_i64()?, e[3].as_i64()?)))
        .fold(Vec::new(), |mut v: Vec<(i64, i64, i64)>, e| {
            if v.last().is_none_or(|l| l.1 != e.1) {
                v.push(e);
            }
            v
        });
    eprintln!("  freeze count changes (ms, count, decoded): {freezes:?}");
    eprintln!(
        "  down RTP by SSRC in {:?} out {:?}",
        d.rtp_by_ssrc, d.rtp_out_by_ssrc
    );
    assert!(
        !result.is_null(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sending.abort();
}
