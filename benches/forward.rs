//! Per-packet cost of the pure forwarding state machines.
use criterion::{Criterion, criterion_group, criterion_main};
use sfu::forward::Rewrite;
use std::hint::black_box;
use std::time::Instant;

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

criterion_group!(benches, rewrite);
criterion_main!(benches);
