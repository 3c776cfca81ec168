//! Bad input, refusals, an unreachable server, redirects and reconnection:
//! each ends with the documented exit code and a one-line reason, or is
//! survived.

mod common;

use common::*;
use sfu::client::http::{Url, request};
use sfu::client::{Options, Session};
use sfu::config::{Config, StreamAuth};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use str0m::media::MediaKind;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Run whip-ingest to completion: (exit code, stderr).
fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_whip-ingest"))
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A 2 s 640x360 clip with a keyframe every second.
fn make_clip(dir: &Path) -> String {
    let clip = dir.join("clip.h264");
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30",
        "-t",
        "2",
    ];
    args.extend_from_slice(X264);
    args.extend_from_slice(&["-g", "30", "-f", "h264", clip.to_str().unwrap()]);
    ffmpeg(&args);
    clip.to_str().unwrap().to_string()
}

#[test]
fn bad_sources_and_arguments() {
    let dir = temp_dir("bad");
    let url = format!("http://127.0.0.1:{}/whip/x", closed_tcp_port());
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();

    let missing = p("missing.h264");
    let (code, err) = run(&[&missing, "--url", &url]);
    assert_eq!(code, Some(3), "{err}");
    assert_eq!(
        err.trim(),
        format!("whip-ingest: cannot open {missing}: no such file")
    );

    std::fs::write(p("noise.h264"), b"this is not video at all").unwrap();
    let (code, err) = run(&[&p("noise.h264"), "--url", &url]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("not an Annex B H.264 stream"), "{err}");

    std::fs::write(
        p("corrupt.sdp"),
        b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\nm=video five RTP/AVP 96\r\n",
    )
    .unwrap();
    let (code, err) = run(&[&p("corrupt.sdp"), "--url", &url]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.starts_with("whip-ingest: corrupt SDP"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    std::fs::write(p("garbage.sdp"), [0u8, 159, 146, 150, 1, 2]).unwrap();
    let (code, err) = run(&[&p("garbage.sdp"), "--url", &url]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("corrupt SDP"), "{err}");

    std::fs::write(
        p("vp8.sdp"),
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=video 5004 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
    )
    .unwrap();
    let (code, err) = run(&[&p("vp8.sdp"), "--url", &url]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("unsupported video codec VP8"), "{err}");

    let (code, err) = run(&[&missing]);
    assert_eq!(code, Some(2), "no --url: {err}");
    let (code, err) = run(&["movie.mp4", "--url", &url]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unrecognised SOURCE"), "{err}");
    let (code, err) = run(&[&missing, "--url", "ftp://host/x"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["-", "--loop", "--url", &url]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&[&missing, "--url", &url, "--ice-server", "http://x"]);
    assert_eq!(code, Some(2), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_refusals_exit_4_with_the_reason() {
    let base = start_server_with(Config {
        workers: 1,
        rate_limit: 0.0,
        auth: StreamAuth {
            publish_token: Some("s3cret".into()),
            view_token: None,
            replace: None,
        },
        ..Config::default()
    })
    .await;
    let dir = temp_dir("refused");
    let clip = make_clip(&dir);

    // No token: 401.
    let url = format!("{base}/whip/cam");
    let t = Instant::now();
    let (code, err) = run(&[&clip, "--url", &url]);
    assert_eq!(code, Some(4), "{err}");
    assert_eq!(
        err.trim(),
        "whip-ingest: server refused: 401 Unauthorized: missing or wrong token"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "no retries on 401");

    // The name is taken by a live publisher: 409.
    let opts = Options {
        token: Some("s3cret".into()),
        ..Options::default()
    };
    let mut other = Session::publish(&format!("{base}/whip/busy"), opts)
        .await
        .unwrap();
    other.wait_connected(Duration::from_secs(10)).await.unwrap();
    let (code, err) = run(&[
        &clip,
        "--url",
        &format!("{base}/whip/busy"),
        "--token",
        "s3cret",
        "--conflict-wait",
        "0",
    ]);
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.trim()
            .starts_with("whip-ingest: server refused: 409 Conflict: stream 'busy'"),
        "{err}"
    );

    // The token in the environment works; the end of the file is a clean stop.
    let out = Command::new(env!("CARGO_BIN_EXE_whip-ingest"))
        .args([&clip, "--url", &url])
        .env("WHIP_TOKEN", "s3cret")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("end of source") && err.contains("deleted (200)"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_retried_until_stopped() {
    let dir = temp_dir("unreachable");
    let clip = make_clip(&dir);
    let url = format!("http://127.0.0.1:{}/whip/cam", closed_tcp_port());
    let mut ing = Ingest::start(&[&clip, "--url", &url]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(ing.running(), "still retrying after 2 s");
    let log = ing.stderr();
    let retries = log.matches("retrying in").count();
    assert!(retries >= 2, "backoff retries in 2 s: {retries}\n{log}");
    ing.term();
    let st = ing.wait(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "SIGTERM is a clean stop");

    // With --give-up-after: exit 5.
    let t = Instant::now();
    let (code, err) = run(&[&clip, "--url", &url, "--give-up-after", "1"]);
    assert_eq!(code, Some(5), "{err}");
    assert!(
        err.starts_with("whip-ingest: server unreachable for"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(6));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A WHIP endpoint that only redirects (307) to `to`.
async fn redirector(to: String) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            let to = to.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut n = 0;
                // Read headers and the body (Content-Length).
                loop {
                    let Ok(k) = c.read(&mut buf[n..]).await else {
                        return;
                    };
                    if k == 0 {
                        return;
                    }
                    n += k;
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    if let Some(h) = text.find("\r\n\r\n") {
                        let len = text[..h]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if n >= h + 4 + len {
                            break;
                        }
                    }
                }
                let resp = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nLocation: {to}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = c.write_all(resp.as_bytes()).await;
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_307_and_reconnects_when_the_server_ends_the_session() {
    let base = start_server().await;
    let dir = temp_dir("redirect");
    let clip = make_clip(&dir);
    let port = redirector(format!("{base}/whip/moved")).await;
    let mut ing = Ingest::start(&[
        &clip,
        "--loop",
        "--url",
        &format!("http://127.0.0.1:{port}/whip/cam"),
    ]);
    let log = ing
        .wait_for_log("publishing to", Duration::from_secs(10))
        .await;
    let mut v = viewer(&format!("{base}/whep/moved"), Duration::from_secs(10)).await;
    let before = collect(&mut v, Duration::from_secs(1)).await;
    assert!(
        frames(&video_in_order(&before)).len() >= 20,
        "video through the redirect"
    );

    // The server ends the publisher's session (DELETE on its URL, as an
    // operator would): whip-ingest notices and publishes again.
    let loc = log
        .split("(session ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("session path in the log")
        .to_string();
    let t = Instant::now();
    let del = request(
        "DELETE",
        &Url::parse(&format!("{base}{loc}")).unwrap(),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(del.status, 200);
    ing.wait_for_log("reconnected", Duration::from_secs(10))
        .await;
    let took = t.elapsed();
    // The viewer stays on and gets video from the new session.
    let after = collect(&mut v, Duration::from_secs(2)).await;
    let fr = frames(&video_in_order(&after));
    assert!(
        fr.len() >= 30,
        "video after the reconnect: {} frames",
        fr.len()
    );
    assert!(
        fr.iter().any(|f| f.keyframe),
        "a keyframe after the reconnect"
    );
    ing.term();
    let st = ing.wait(Duration::from_secs(5));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "{log}");
    eprintln!(
        "reconnect: back after {:.2} s, {} frames in the next 2 s",
        took.as_secs_f64(),
        fr.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_ivf_files_exit_3_with_a_reason() {
    let dir = temp_dir("bad-ivf");
    let url = format!("http://127.0.0.1:{}/whip/x", closed_tcp_port());
    let good = dir.join("good.ivf");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=320x240:rate=30",
        "-t",
        "0.5",
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-f",
        "ivf",
        good.to_str().unwrap(),
    ]);
    let data = std::fs::read(&good).unwrap();
    let mut wrong_codec = data.clone();
    wrong_codec[8..12].copy_from_slice(b"H264");
    let mut bad_obu = data[..32].to_vec();
    bad_obu[8..12].copy_from_slice(b"AV01");
    bad_obu.extend([
        5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff,
    ]);
    let cases: [(&str, Vec<u8>, &str); 5] = [
        (
            "short.ivf",
            data[..20].to_vec(),
            "shorter than its 32-byte header",
        ),
        ("cut.ivf", data[..200].to_vec(), "truncated IVF frame"),
        (
            "codec.ivf",
            wrong_codec,
            "IVF codec 'H264' is not supported",
        ),
        ("random.ivf", vec![7u8; 500], "not an IVF file"),
        ("obu.ivf", bad_obu, "OBU forbidden bit"),
    ];
    for (name, bytes, want) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, err) = run(&[path.to_str().unwrap(), "--url", &url]);
        assert_eq!(code, Some(3), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
    }
}

/// A server on 127.0.0.1 with a self-signed certificate: a CA certificate
/// used as its own, as `openssl req -x509` makes (README's HTTPS section),
/// or a plain end-entity one (rcgen's default). Returns the https base URL.
async fn https_server(dir: &Path, name: &str, ca: bool) -> String {
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    if ca {
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (crt, pem) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&pem, key.serialize_pem()).unwrap();
    let base = start_server_with(Config {
        workers: 1,
        rate_limit: 0.0,
        tls_cert: Some(crt),
        tls_key: Some(pem),
        ..Config::default()
    })
    .await;
    base.replacen("http://", "https://", 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_exits_4_at_once_and_insecure_publishes() {
    let dir = temp_dir("tls");
    for (name, ca, why) in [
        ("ca", true, "CA certificate as its own"),
        ("leaf", false, "not signed by a certificate authority"),
    ] {
        let url = format!("{}/whip/{name}", https_server(&dir, name, ca).await);
        let t = Instant::now();
        // (Ingest::wait kills it and fails the test if it keeps retrying.)
        let mut ing = Ingest::start(&["test", "--size", "160x120", "--url", &url]);
        let st = ing.wait(Duration::from_secs(5));
        let err = ing.stderr();
        assert_eq!(st.code(), Some(4), "{name}: exit 4:\n{err}");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{name}: no retries ({:?})",
            t.elapsed()
        );
        assert!(!err.contains("retrying"), "{name}: not retried:\n{err}");
        let last = err.trim().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("whip-ingest: the server's TLS certificate is not trusted: ")
                && last.contains(why)
                && last.contains("add --insecure"),
            "{name}: {last}"
        );
        assert!(
            !err.contains('\x1b'),
            "{name}: no ANSI codes in a pipe:\n{err}"
        );
    }

    // The same server with --insecure: published, then a clean stop.
    let url = format!("{}/whip/ok", https_server(&dir, "ok", true).await);
    let mut ing = Ingest::start(&["test", "--size", "160x120", "--insecure", "--url", &url]);
    ing.wait_for_log("publishing to", Duration::from_secs(10))
        .await;
    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    let log = ing.stderr();
    assert_eq!(st.code(), Some(0), "clean stop:\n{log}");
    assert!(!log.contains('\x1b'), "no ANSI codes in a pipe:\n{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A name still held by a publisher that vanished without DELETE (here a
/// live session the test ends after a few seconds; the server would reap a
/// killed ingest's session after ≈ 30 s): the 409 is asked again within
/// `--conflict-wait` and the ingest publishes once the name is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_held_by_a_previous_publisher_is_waited_for() {
    let base = start_server().await;
    let dir = temp_dir("conflict");
    let clip = make_clip(&dir);
    let url = format!("{base}/whip/held");
    let mut stale = Session::publish(&url, Options::default()).await.unwrap();
    stale.wait_connected(Duration::from_secs(10)).await.unwrap();
    let mut ing = Ingest::start(&[&clip, "--loop", "--url", &url]);
    ing.wait_for_log("did not stop cleanly", Duration::from_secs(10))
        .await;
    assert!(ing.running(), "a 409 at start is waited for");
    stale.close().await.unwrap();
    ing.wait_for_log("publishing to", Duration::from_secs(20))
        .await;
    let mut v = viewer(&format!("{base}/whep/held"), Duration::from_secs(10)).await;
    let rx = collect(&mut v, Duration::from_secs(2)).await;
    let video = rx.iter().filter(|r| r.kind == MediaKind::Video).count();
    assert!(video > 20, "{video} video packets");
    ing.term();
    let st = ing.wait(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "{}", ing.stderr());
    let _ = std::fs::remove_dir_all(&dir);
}
