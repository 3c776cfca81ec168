//! HTTPS signalling (rustls): WHIP publish and WHEP play of a real x264 clip
//! over `https://` with a self-signed certificate (`insecure` client), an
//! HTTP/2 request by ALPN, and a certificate reload (what SIGHUP does) that
//! new connections see while an established session keeps receiving media.

use bytes::Bytes;
use e2e::{clip, drain, publish_clip};
use http_body_util::{BodyExt, Empty};
use rustls_pki_types::{CertificateDer, ServerName};
use sfu::client::{Options, Received, Session};
use sfu::config::Config;
use sfu::server::Server;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use str0m::media::MediaKind;

const CONNECT: Duration = Duration::from_secs(10);

/// Write a self-signed certificate for 127.0.0.1 to `dir/{name}.{crt,key}`;
/// returns its DER.
fn make_cert(dir: &Path, name: &str) -> CertificateDer<'static> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), ck.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        ck.signing_key.serialize_pem(),
    )
    .unwrap();
    ck.cert.der().clone()
}

/// A TLS connection to `addr` that trusts only `cert`, offering `alpn`.
async fn connect_trusting(
    addr: std::net::SocketAddr,
    cert: &CertificateDer<'static>,
    alpn: &[u8],
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1")?.to_owned();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?)
}

fn video(rx: &[Received]) -> usize {
    rx.iter().filter(|r| r.kind == MediaKind::Video).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_publish_play_h2_and_certificate_reload() {
    let dir = std::env::temp_dir().join(format!("sfu-https-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_a = make_cert(&dir, "a");
    let cert_b = make_cert(&dir, "b");
    // The live files start as certificate A.
    std::fs::copy(dir.join("a.crt"), dir.join("live.crt")).unwrap();
    std::fs::copy(dir.join("a.key"), dir.join("live.key")).unwrap();

    let cfg = Config {
        http: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        workers: 2,
        rate_limit: 0.0,
        tls_cert: Some(dir.join("live.crt")),
        tls_key: Some(dir.join("live.key")),
        ..Config::default()
    };
    let server = Server::start(&cfg).await.expect("server starts with TLS");
    let addr = server.http_addr;
    let tls = server.tls.clone().expect("TLS configured");
    tokio::spawn(server.serve());
    let base = format!("https://{addr}");

    // Without --insecure the self-signed certificate is refused by the client.
    let strict = Session::play(&format!("{base}/whep/cam"), Options::default()).await;
    let e = strict
        .err()
        .expect("self-signed certificate must be refused");
    assert!(format!("{e:#}").contains("TLS"), "{e:#}");

    let opts = Options {
        insecure: true,
        ..Options::default()
    };
    let mut publisher = Session::publish(&format!("{base}/whip/cam"), opts.clone())
        .await
        .expect("WHIP over https");
    publisher.wait_connected(CONNECT).await.unwrap();
    let mut viewer = Session::play(&format!("{base}/whep/cam"), opts.clone())
        .await
        .expect("WHEP over https");
    viewer.wait_connected(CONNECT).await.unwrap();

    // HTTP/2 by ALPN.
    let tls_a = connect_trusting(addr, &cert_a, b"h2").await.unwrap();
    assert_eq!(tls_a.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls_a),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("https://{addr}/healthz"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = h2.send_request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await;

    // An HTTP/1.1 client (by ALPN) that completes TLS and then sends
    // nothing is closed after the header timeout, not kept for ever.
    {
        use tokio::io::AsyncReadExt;
        let mut silent = connect_trusting(addr, &cert_a, b"http/1.1").await.unwrap();
        let t0 = std::time::Instant::now();
        let n = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut [0u8; 64]))
            .await
            .expect("silent TLS client not closed within 15 s");
        eprintln!(
            "silent TLS client closed after {:.1} s: {n:?}",
            t0.elapsed().as_secs_f64()
        );
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }

    // Media flows while the certificate is swapped for B and reloaded.
    let clip = clip(3);
    let sender = tokio::spawn(async move {
        publish_clip(&publisher, clip).await;
        publisher
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut rx = Vec::new();
    drain(&mut viewer, &mut rx);
    let before = video(&rx);
    assert!(before > 0, "video over the https-signalled session");

    std::fs::copy(dir.join("b.crt"), dir.join("live.crt")).unwrap();
    std::fs::copy(dir.join("b.key"), dir.join("live.key")).unwrap();
    tls.reload().expect("reload");

    // New connections get certificate B; A is no longer served.
    assert!(connect_trusting(addr, &cert_b, b"http/1.1").await.is_ok());
    assert!(connect_trusting(addr, &cert_a, b"http/1.1").await.is_err());
    // A broken file keeps the current certificate.
    std::fs::write(dir.join("live.key"), "not a key").unwrap();
    assert!(tls.reload().is_err());
    assert!(connect_trusting(addr, &cert_b, b"http/1.1").await.is_ok());

    let publisher = sender.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drain(&mut viewer, &mut rx);
    let after = video(&rx);
    assert!(
        after > before,
        "the established session kept receiving media after the reload ({before} -> {after})"
    );
    assert_eq!(
        after,
        clip.video.iter().map(|f| f.2.len()).sum::<usize>(),
        "every video packet arrived"
    );
    assert_eq!(viewer.close().await.unwrap(), 200);
    assert_eq!(publisher.close().await.unwrap(), 200);
    let _ = std::fs::remove_dir_all(&dir);
}
