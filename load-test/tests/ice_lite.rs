//! Our WHIP client (`sfu::client::Session`, used by `load-test check`, `run`
//! and `ladder`) must connect to an ICE-lite server (RFC 8445 §2.7), which
//! never sends connectivity checks of its own: the client, as controlling
//! agent, has to start them. Live777 answers with `a=ice-lite`; before the fix
//! the client sent no STUN check and waited forever.
//!
//! The server here is a minimal WHIP endpoint on loopback: one HTTP POST →
//! a str0m `Rtc` with ICE lite that answers the offer and runs ICE + DTLS on a
//! real UDP socket.

mod common;

use sfu::client::{Options, Session};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, UdpSocket};

/// Serve one WHIP POST with an ICE-lite answer; returns the endpoint URL and
/// a receiver that yields once the server side reports `Connected`.
async fn ice_lite_server() -> (String, tokio::sync::oneshot::Receiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/whip/lite", l.local_addr().unwrap());
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let (_, body) = common::read_request(&mut s)
            .await
            .expect("connection closed before the request");
        // Take the DTLS client role (`a=setup:active`) as Live777 does: then
        // the WHIP client is the DTLS server and has no DTLS timer either, so
        // nothing but its own ICE checks can start the session.
        let offer = body.replace("a=setup:actpass", "a=setup:passive");
        let offer = SdpOffer::from_sdp_string(&offer).unwrap();

        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local: SocketAddr = udp.local_addr().unwrap();
        let mut rtc: Rtc = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let answer = rtc.sdp_api().accept_offer(offer).unwrap().to_sdp_string();
        assert!(
            answer.contains("a=ice-lite"),
            "server answer is not ICE lite"
        );
        assert!(
            answer.contains("a=setup:active"),
            "server is not the DTLS client"
        );
        let resp = format!(
            "HTTP/1.1 201 Created\r\nContent-Type: application/sdp\r\n\
             Location: /whip/lite/1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
            answer.len()
        );
        s.write_all(resp.as_bytes()).await.unwrap();

        let mut done = Some(done_tx);
        let mut ubuf = vec![0u8; 2048];
        loop {
            let timeout = match rtc.poll_output().unwrap() {
                Output::Transmit(t) => {
                    let _ = udp.send_to(&t.contents, t.destination).await;
                    continue;
                }
                Output::Event(Event::Connected) => {
                    if let Some(d) = done.take() {
                        let _ = d.send(());
                    }
                    continue;
                }
                Output::Event(_) => continue,
                Output::Timeout(t) => t,
            };
            let wait = timeout
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            tokio::select! {
                r = udp.recv_from(&mut ubuf) => {
                    let Ok((n, source)) = r else { continue };
                    let Ok(contents) = ubuf[..n].try_into() else { continue };
                    let _ = rtc.handle_input(Input::Receive(Instant::now(), Receive {
                        proto: Protocol::Udp, source, destination: local, contents,
                    }));
                }
                _ = tokio::time::sleep(wait) => {
                    let _ = rtc.handle_input(Input::Timeout(Instant::now()));
                }
            }
        }
    });
    (url, done_rx)
}

#[tokio::test]
async fn whip_client_connects_to_an_ice_lite_server() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    sfu::server::install_crypto();
    let (url, server_connected) = ice_lite_server().await;
    let mut s = Session::publish(&url, Options::default()).await.unwrap();
    s.wait_connected(Duration::from_secs(5))
        .await
        .expect("client connects (ICE + DTLS) to an ICE-lite server");
    tokio::time::timeout(Duration::from_secs(5), server_connected)
        .await
        .expect("server side connected")
        .unwrap();
}
