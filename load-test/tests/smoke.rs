//! Smoke test: an in-process SFU on loopback, the `load-test` binary
//! publishing its own clip to it with 20 viewers, and checks on its JSON.
//! Needs ffmpeg with libx264 and libopus. Correctness only: no wall-clock
//! performance bounds are asserted.

mod common;

use std::process::Command;
use std::time::Duration;

fn num(v: &serde_json::Value, path: &[&str]) -> f64 {
    let mut x = v;
    for k in path {
        x = &x[*k];
    }
    x.as_f64()
        .unwrap_or_else(|| panic!("{} is not a number in {v:#}", path.join(".")))
}

/// Run `load-test run --publish clip` against `base`'s stream `name` with
/// `args` (besides the URLs, the 4-s clip, 2 threads and `--json`); its
/// stdout and JSON report. Panics if it fails or takes over 90 s.
async fn run_own_clip(base: &str, name: &str, args: &[&str]) -> (String, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!("load-test-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("out.json");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_load-test"));
    cmd.args(["run", "--publish", "clip", "--whip"])
        .arg(format!("{base}/whip/{name}"))
        .arg("--whep")
        .arg(format!("{base}/whep/{name}"))
        .args(args)
        .args(["--clip-seconds", "4", "--threads", "2", "--json"])
        .arg(&json);
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::task::spawn_blocking(move || cmd.output().expect("load-test runs")),
    )
    .await
    .expect("load-test finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "load-test failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    let text = std::fs::read_to_string(&json).expect("JSON written");
    let _ = std::fs::remove_dir_all(&dir);
    (stdout, serde_json::from_str(&text).expect("valid JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_20_viewers_of_own_clip() {
    let base = common::start_sfu(Default::default()).await;
    let pid = std::process::id().to_string();
    let (_, v) = run_own_clip(
        &base,
        "smoke",
        &[
            "--viewers",
            "20",
            "--duration",
            "5s",
            "--settle",
            "2s",
            "--ramp",
            "50/s",
            "--server-pid",
            &pid,
        ],
    )
    .await;

    assert_eq!(v["viewers_requested"], 20, "{v:#}");
    assert_eq!(v["viewers_connected"], 20, "{v:#}");
    assert_eq!(
        v["setup_failures"].as_object().map(|o| o.len()),
        Some(0),
        "{v:#}"
    );
    let loss = num(&v, &["loss_ratio"]);
    assert!((0.0..0.01).contains(&loss), "loss {loss}");
    let published = num(&v, &["published_bitrate_bps"]);
    assert!(published > 500_000.0, "published {published}");
    let got = num(&v, &["bitrate_bps"]);
    assert!(
        got >= 0.5 * published && got <= 1.5 * published,
        "received {got} bit/s vs published {published} bit/s"
    );
    assert!(num(&v, &["latency_ms", "p99"]) > 0.0, "{v:#}");
    assert!(num(&v, &["latency_ms", "p50"]) > 0.0, "{v:#}");
    assert!(num(&v, &["ttff_ms", "p50"]) > 0.0, "{v:#}");
    // Every key the issue names, with its type.
    for k in [
        "viewers_requested",
        "viewers_connected",
        "loss_ratio",
        "bitrate_bps",
        "nacks",
        "plis",
        "generator_cpu_ratio",
        "server_cpu_ratio",
        "server_rss_bytes",
        "joins_per_s",
    ] {
        assert!(v[k].is_number(), "{k} missing: {v:#}");
    }
    assert!(v["setup_failures"].is_object(), "{v:#}");
    for k in ["latency_ms", "ttff_ms"] {
        for p in ["p50", "p95", "p99"] {
            assert!(v[k][p].is_number(), "{k}.{p} missing: {v:#}");
        }
    }
    // The server runs in this test's process: it used CPU and memory.
    assert!(num(&v, &["server_cpu_ratio"]) > 0.0, "{v:#}");
    assert!(num(&v, &["server_rss_bytes"]) > 1e6, "{v:#}");
}

/// Viewers that lose every 50th RTP packet on the way in (`--drop-every`,
/// all on full accounting) NACK the gaps (RFC 4585 §6.2.1), the report
/// counts the NACKs they sent, and the server's RTX resends (RFC 4588)
/// repair the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_viewers_nack_and_are_repaired() {
    let base = common::start_sfu(Default::default()).await;
    let (stdout, v) = run_own_clip(
        &base,
        "lossy",
        &[
            "--viewers",
            "4",
            "--duration",
            "4s",
            "--settle",
            "1s",
            "--sample-every",
            "1",
            "--drop-every",
            "50",
        ],
    )
    .await;
    assert_eq!(v["viewers_connected"], 4, "{v:#}");
    // ≈ 2 % dropped on arrival: ≈ 50 NACKs per viewer in the window alone.
    assert!(num(&v, &["nacks"]) >= 20.0, "{v:#}");
    // Without resends ≈ 2 %; what is left is mostly packets still being
    // repaired when the window closed (one run: 0.23 %).
    let loss = num(&v, &["loss_ratio"]);
    assert!(loss < 0.01, "loss after resends {loss}: {v:#}");
    assert!(stdout.contains("NACKs / PLIs / FIRs sent"), "{stdout}");
}
