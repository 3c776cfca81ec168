//! Per-packet forwarding cost for one viewer.
//!
//! * `rewrite_per_packet`: the pure sequence/timestamp offset rewrite.
//! * `forward_one_viewer/*`: what the SFU does per outgoing packet on the
//!   viewer's `Rtc`: rewrite + str0m `write_rtp` + `poll_output`, then
//!   `handle_input(Timeout(now))` (str0m sends queued RTP on a timeout) and
//!   `poll_output` until `Timeout` (SRTP encryption, one `Transmit`).
//!   `1200B`/`200B`: one packet per drive; `1200B_frame7`: a 7-packet frame
//!   written before one drive (time per packet). The viewer side runs
//!   against a real receiving str0m client connected in memory; delivering
//!   to the client and RTCP/ICE upkeep happen outside the timed part. The
//!   kernel's UDP send is not included.
use benches::{Pair, drain, payload_1200};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sfu::forward::{Rewrite, RewriteDecision};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::Input;
use str0m::rtp::RtpWrite;

fn rewrite(c: &mut Criterion) {
    let now = Instant::now();
    let mut r = Rewrite::new(90_000, true, 1);
    r.on_packet(1, 0, 0, true, now);
    let mut seq = 1u64;
    c.bench_function("rewrite_per_packet", |b| {
        b.iter(|| {
            seq += 1;
            black_box(r.on_packet(1, black_box(seq), (seq * 3000) as u32, false, now))
        })
    });
}

/// Packets timed back to back before the untimed delivery to the client.
const BATCH: u64 = 35;

fn forward_one_viewer(c: &mut Criterion) {
    let mut g = c.benchmark_group("forward_one_viewer");
    g.throughput(Throughput::Elements(1));
    let big = payload_1200();
    let small: Arc<[u8]> = Arc::from(vec![0x41_u8; 200]);
    for (name, payload, per_drive) in [
        ("1200B", big.clone(), 1),
        ("200B", small, 1),
        ("1200B_frame7", big, 7),
    ] {
        let mut pair = Pair::connected();
        let mut rw = Rewrite::new(90_000, true, 1);
        let mut in_seq = 100_000u64;
        rw.on_packet(1, in_seq, 0, true, pair.now);
        let mut out = Vec::with_capacity(2 * BATCH as usize);
        let mut size_shown = false;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = (iters - done).min(BATCH).div_ceil(per_drive) * per_drive;
                    let t0 = Instant::now();
                    for j in 0..n {
                        in_seq += 1;
                        let ts = (in_seq / 7 * 3000) as u32;
                        let d = rw.on_packet(1, in_seq, ts, false, pair.now);
                        if let RewriteDecision::Forward { seq, ts } = d
                            && let Some(tx) = pair.sfu.direct_api().stream_tx_by_mid(pair.mid, None)
                        {
                            tx.write_rtp(
                                RtpWrite::new(pair.pt, seq.into(), ts, pair.now, payload.clone())
                                    .marker(in_seq.is_multiple_of(7))
                                    .nackable(true),
                            );
                        }
                        if (j + 1) % per_drive == 0 {
                            drain(&mut pair.sfu, &mut out);
                            let _ = pair.sfu.handle_input(Input::Timeout(pair.now));
                            drain(&mut pair.sfu, &mut out);
                        }
                    }
                    total += t0.elapsed();
                    done += n;
                    if !size_shown && let Some(t) = out.last() {
                        eprintln!(
                            "forward_one_viewer/{name}: datagram {} bytes",
                            t.contents.len()
                        );
                        size_shown = true;
                    }
                    // Untimed: 210 packets/s of simulated time, deliver,
                    // let both sides run their timers (RTCP, ICE consent).
                    pair.now += Duration::from_micros(4_762 * n);
                    pair.pump(&mut out);
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, rewrite, forward_one_viewer);
criterion_main!(benches);
