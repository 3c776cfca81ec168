//! WHEP answer generation for a Chrome-like offer, along the server's path:
//! scan the offer, choose the viewer's formats against the publisher's
//! tracks, build the server's viewer `RtcConfig` ([`sfu::rtc_config::base`]:
//! its shared DTLS configuration and header extensions), add the host
//! candidate, `accept_offer`, serialize the answer. The DTLS certificate is
//! shared (made once), as in the server.
use benches::{CHROME_WHEP_OFFER, CHROME_WHIP_OFFER, init};
use criterion::{Criterion, criterion_group, criterion_main};
use sfu::codecs::{self, Chosen};
use sfu::rtc_config::{self, RtcRole};
use sfu::sdp_scan;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::{Candidate, IceCreds, RtcConfig};

/// The server's configuration of a WHEP viewer of a single-layer stream.
fn viewer_config(cert: &DtlsCert) -> RtcConfig {
    rtc_config::base(RtcRole::Viewer { bwe: false })
        .set_local_ice_credentials(IceCreds::new())
        .set_dtls_cert(cert.clone())
}

fn answer_once(cert: &DtlsCert, tracks: &[Chosen], host: SocketAddr, body: &str) -> String {
    let offer = sdp_scan::scan(body).expect("scan");
    let chosen = codecs::choose_viewer(&offer, tracks).expect("viewer formats");
    let mut cfg = viewer_config(cert);
    for (_, c) in &chosen {
        c.add_to(&mut cfg);
    }
    let mut rtc = cfg.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(host, "udp").expect("candidate"));
    let offer = SdpOffer::from_sdp_string(body).expect("offer");
    let answer = rtc.sdp_api().accept_offer(offer).expect("answer");
    answer.to_sdp_string()
}

fn answer(c: &mut Criterion) {
    init();
    let cert = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
        .expect("certificate");
    let publisher = sdp_scan::scan(CHROME_WHIP_OFFER).expect("whip offer");
    let tracks = codecs::choose_publisher(&publisher).expect("publisher formats");
    let host: SocketAddr = "127.0.0.1:8443".parse().unwrap();
    let a = answer_once(&cert, &tracks, host, CHROME_WHEP_OFFER);
    assert!(a.contains("a=setup:") && a.contains("H264"), "{a}");
    let mut g = c.benchmark_group("answer");
    g.bench_function("whep_chrome_offer", |b| {
        b.iter(|| {
            black_box(answer_once(
                &cert,
                &tracks,
                host,
                black_box(CHROME_WHEP_OFFER),
            ))
        })
    });
    g.bench_function("rtc_build_only", |b| {
        b.iter(|| {
            let mut cfg = viewer_config(&cert);
            for c in &tracks {
                c.add_to(&mut cfg);
            }
            black_box(cfg.build(Instant::now()))
        })
    });
    g.finish();
}

criterion_group!(benches, answer);
criterion_main!(benches);
