//! Session lifecycle: a client that vanishes without DELETE is reaped through
//! ICE consent loss (RFC 7675), and its resources disappear from the API.

use e2e::start_server;
use sfu::client::http::{Url, request};
use sfu::client::{Options, Session};
use std::time::{Duration, Instant};

async fn viewers(base: &str) -> Option<u64> {
    let r = request(
        "GET",
        &Url::parse(&format!("{base}/api/streams")).unwrap(),
        &[],
        None,
    )
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    v.as_array()?.first()?["viewers"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_viewer_and_publisher_are_reaped() {
    let base = start_server(2).await;
    let mut publisher = Session::publish(&format!("{base}/whip/reap"), Options::default())
        .await
        .unwrap();
    publisher
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap();
    let mut v = Session::play(&format!("{base}/whep/reap"), Options::default())
        .await
        .unwrap();
    v.wait_connected(Duration::from_secs(10)).await.unwrap();
    let location = v.location.clone();
    assert_eq!(viewers(&base).await, Some(1));
    let t0 = Instant::now();
    v.abandon();
    while viewers(&base).await != Some(0) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "vanished viewer not reaped after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "viewer reaped {:.1} s after it vanished",
        t0.elapsed().as_secs_f64()
    );
    // Its session URL is gone too.
    let r = request("DELETE", &location, &[], None).await.unwrap();
    assert_eq!(r.status, 404);
    // Same for a publisher: the stream disappears.
    let t1 = Instant::now();
    publisher.abandon();
    while viewers(&base).await.is_some() {
        assert!(
            t1.elapsed() < Duration::from_secs(60),
            "vanished publisher not reaped after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "publisher reaped {:.1} s after it vanished",
        t1.elapsed().as_secs_f64()
    );
}
