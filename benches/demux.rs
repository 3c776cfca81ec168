//! UDP demultiplexing: `sfu::demux::Demux::route` with 1,000 registered
//! peers, for STUN binding requests (by ufrag) and for media (by address).
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sfu::demux::{Demux, PeerRef};
use std::hint::black_box;
use std::net::SocketAddr;

const PEERS: usize = 1_000;

fn ufrag(i: usize) -> String {
    format!("k{i:07}")
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16))
}

/// A binding request shaped like Chrome's: USERNAME first, then network
/// info, ICE-CONTROLLING, USE-CANDIDATE, PRIORITY, MESSAGE-INTEGRITY and
/// FINGERPRINT (values are filler: `route` reads USERNAME only).
fn binding_request(local: &str) -> Vec<u8> {
    fn attr(out: &mut Vec<u8>, typ: u16, v: &[u8]) {
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut a = Vec::new();
    attr(&mut a, 0x0006, format!("{local}:RmQk").as_bytes());
    attr(&mut a, 0xc057, &[0, 1, 0, 10]);
    attr(&mut a, 0x802a, &[7; 8]);
    attr(&mut a, 0x0025, &[]);
    attr(&mut a, 0x0024, &[0x6e, 0x7f, 0x1e, 0xff]);
    attr(&mut a, 0x0008, &[9; 20]);
    attr(&mut a, 0x8028, &[1, 2, 3, 4]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(a.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    m.extend_from_slice(&[5; 12]);
    m.extend_from_slice(&a);
    m
}

fn route(c: &mut Criterion) {
    let d = Demux::default();
    for i in 0..PEERS {
        let p = PeerRef {
            shard: i % 2,
            id: i as u64,
        };
        d.add_ufrag(&ufrag(i), p);
        d.bind_addr(addr(i), p);
    }
    let stun: Vec<Vec<u8>> = (0..PEERS).map(|i| binding_request(&ufrag(i))).collect();
    let mut rtp = vec![0u8; 1200];
    rtp[0] = 0x80;
    rtp[1] = 96;
    let stranger = SocketAddr::from(([127, 0, 0, 2], 9));
    let mut g = c.benchmark_group("demux_route_1000_peers");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("stun_by_ufrag", |b| {
        b.iter(|| {
            i = (i + 1) % PEERS;
            black_box(d.route(black_box(&stun[i]), stranger))
        })
    });
    g.bench_function("media_by_addr", |b| {
        b.iter(|| {
            i = (i + 1) % PEERS;
            black_box(d.route(black_box(&rtp), addr(i)))
        })
    });
    g.bench_function("media_unknown_addr", |b| {
        b.iter(|| black_box(d.route(black_box(&rtp), stranger)))
    });
    g.finish();
}

criterion_group!(benches, route);
criterion_main!(benches);
