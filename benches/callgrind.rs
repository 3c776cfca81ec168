//! A fixed forwarding scenario for `valgrind --tool=callgrind`: one viewer's
//! str0m `Rtc` (RTP mode, real DTLS-SRTP keys, connected in memory to a
//! receiving str0m client), 21,000 video packets of 1,200 bytes in frames
//! of 7 packets at 210 packets/s of simulated time (100 s).
//!
//! Only [`forward_frame`] is meant to be counted (`--toggle-collect`): per
//! packet the offset rewrite, `write_rtp`, then per frame a timeout drive
//! and `poll_output` until idle (SRTP seal, one `Transmit` per packet).
//! Delivery to the client and its RTCP are outside. Run `benches/callgrind.sh`,
//! which prints instructions per forwarded packet.
use benches::{Pair, drain, payload_1200};
use sfu::forward::{Rewrite, RewriteDecision};
use std::sync::Arc;
use std::time::Duration;
use str0m::net::Transmit;
use str0m::rtp::RtpWrite;
use str0m::{Input, Rtc};

/// Packets per frame (a 2 Mbit/s P-frame ≈ 8 KB).
const FRAME: u64 = 7;
/// Frames forwarded.
const FRAMES: u64 = 3_000;

/// Forward one frame of [`FRAME`] packets to the viewer; returns datagrams
/// produced. Not inlined, so callgrind can count exactly this.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn forward_frame(
    sfu: &mut Rtc,
    rw: &mut Rewrite,
    in_seq: &mut u64,
    pair_mid: str0m::media::Mid,
    pt: str0m::media::Pt,
    now: std::time::Instant,
    payload: &Arc<[u8]>,
    out: &mut Vec<Transmit>,
) -> usize {
    let before = out.len();
    for _ in 0..FRAME {
        *in_seq += 1;
        let ts = (*in_seq / FRAME * 3000) as u32;
        let d = rw.on_packet(1, *in_seq, ts, false, now);
        if let RewriteDecision::Forward { seq, ts } = d
            && let Some(tx) = sfu.direct_api().stream_tx_by_mid(pair_mid, None)
        {
            tx.write_rtp(
                RtpWrite::new(pt, seq.into(), ts, now, payload.clone())
                    .marker(in_seq.is_multiple_of(FRAME))
                    .nackable(true),
            );
        }
    }
    drain(sfu, out);
    let _ = sfu.handle_input(Input::Timeout(now));
    drain(sfu, out);
    out.len() - before
}

fn main() {
    let mut pair = Pair::connected();
    let payload = payload_1200();
    let mut rw = Rewrite::new(90_000, true, 1);
    let mut in_seq = 100_000u64;
    rw.on_packet(1, in_seq, 0, true, pair.now);
    let mut out = Vec::with_capacity(64);
    let mut sent = 0usize;
    for _ in 0..FRAMES {
        let (mid, pt, now) = (pair.mid, pair.pt, pair.now);
        sent += forward_frame(
            &mut pair.sfu,
            &mut rw,
            &mut in_seq,
            mid,
            pt,
            now,
            &payload,
            &mut out,
        );
        pair.now += Duration::from_micros(33_333);
        pair.pump(&mut out);
    }
    println!("packets={} datagrams={sent}", FRAMES * FRAME);
}
