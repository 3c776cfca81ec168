//! A user-space impairment relay for end-to-end tests (this kernel has no
//! netem): random loss, loss bursts, blackouts, one-way delay and jitter
//! (which reorders), and a bandwidth cap (token bucket with a drop-tail queue),
//! each direction separately and by a seeded schedule, so a run is repeatable.
//!
//! The server binds `127.0.0.1:P` and advertises `127.0.0.2` (`--advertise`):
//! its answers offer the host candidate `127.0.0.2:P`, where the relay listens.
//! For every client address the relay opens its own socket on `127.0.0.3` to
//! talk to the server, so the server sees one peer per client. Impairments are
//! chosen by the client's IP (bind an impaired client to e.g. `127.0.0.5` with
//! `Options::bind_ip`), and start
//! when [`Relay::impair`] is called. Only loopback addresses are used, or
//! (`e2e::start_server_behind_relay_at`) the relay listens on the server side
//! of a veth pair between two network namespaces the test run created.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// What one direction of one client's path does to its datagrams. Times of
/// `bursts` and `blackouts` count from the [`Relay::impair`] call.
#[derive(Debug, Clone, Default)]
pub struct Impairment {
    /// Probability (0..1) that a datagram is lost, independently of others.
    pub loss: f64,
    /// Periodic loss bursts: `(period, length)`: every `period` (the first
    /// one `period` after the start) everything is lost for `length`.
    pub bursts: Option<(Duration, Duration)>,
    /// Total blackouts: `(start, length)`: everything is lost meanwhile.
    pub blackouts: Vec<(Duration, Duration)>,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay per datagram, uniform in `0..jitter` (reorders datagrams
    /// less than `jitter` apart).
    pub jitter: Duration,
    /// Bandwidth cap in bit/s (a bottleneck link: datagrams leave one after
    /// the other at this rate, UDP payload bytes counted).
    pub rate_bps: Option<u64>,
    /// Longest queueing delay at the cap; a datagram that would wait longer
    /// is dropped (drop-tail). Zero: 200 ms.
    pub queue: Duration,
    /// Seed of the loss and jitter draws.
    pub seed: u64,
    /// Deterministic reordering: the first `hold_au_start` RTP packets of
    /// every access unit (new RTP timestamp on an SSRC) are held and sent
    /// until [`hold_au_pass`](Self::hold_au_pass) later packets of it have
    /// passed (so a keyframe's SPS and PPS arrive after its first IDR
    /// packet). Applies to paths without delay, jitter or cap.
    pub hold_au_start: usize,
    /// How many later packets of the access unit pass before the held ones
    /// (0 counts as 1).
    pub hold_au_pass: usize,
}

/// Counters of one direction of one client's path.
#[derive(Debug, Clone, Default)]
pub struct PathStats {
    /// Datagrams that entered the relay.
    pub datagrams: u64,
    /// Lost by `loss`.
    pub lost_random: u64,
    /// Lost in a burst or a blackout.
    pub lost_scheduled: u64,
    /// Dropped by the bandwidth cap's full queue.
    pub lost_queue: u64,
    /// RTP packets (not RTCP, STUN or DTLS) that entered, by SSRC.
    pub rtp_by_ssrc: HashMap<u32, u64>,
    /// RTP packets that were forwarded, by SSRC.
    pub rtp_out_by_ssrc: HashMap<u32, u64>,
    /// Longest queueing delay at the bandwidth cap.
    pub max_queue_delay: Duration,
    /// RTP sequence numbers (16 bits) forwarded, by SSRC.
    pub seqs_out_by_ssrc: HashMap<u32, Vec<u16>>,
}

#[derive(Default)]
struct Path {
    imp: Impairment,
    start: Option<Instant>,
    rng: u64,
    next_free: Option<Instant>,
    stats: PathStats,
    /// `hold_au_start`: per SSRC, the last RTP timestamp, the packets held
    /// and how many passed them.
    held: HashMap<u32, (u32, Vec<Vec<u8>>, usize)>,
}

impl Path {
    fn set(&mut self, imp: Impairment, now: Instant) {
        self.rng = imp.seed ^ 0x9e37_79b9_7f4a_7c15;
        self.imp = imp;
        self.start = Some(now);
        self.next_free = None;
        self.held.clear();
    }

    /// splitmix64: a uniform draw in 0..1.
    fn draw(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// When to deliver `data` arriving `now`, or `None` to drop it.
    fn admit(&mut self, data: &[u8], now: Instant) -> Option<Instant> {
        self.stats.datagrams += 1;
        let ssrc = rtp_ssrc(data);
        if let Some(s) = ssrc {
            *self.stats.rtp_by_ssrc.entry(s).or_default() += 1;
        }
        let Some(start) = self.start else {
            if let Some(s) = ssrc {
                *self.stats.rtp_out_by_ssrc.entry(s).or_default() += 1;
            }
            return Some(now);
        };
        let t = now.saturating_duration_since(start);
        let scheduled = self
            .imp
            .blackouts
            .iter()
            .any(|(s, l)| t >= *s && t < *s + *l)
            || self.imp.bursts.is_some_and(|(p, l)| {
                !p.is_zero() && t >= p && (t.as_nanos() % p.as_nanos()) < l.as_nanos()
            });
        if scheduled {
            self.stats.lost_scheduled += 1;
            return None;
        }
        if self.imp.loss > 0.0 && self.draw() < self.imp.loss {
            self.stats.lost_random += 1;
            return None;
        }
        let mut at = now;
        if let Some(rate) = self.imp.rate_bps.filter(|r| *r > 0) {
            let queue = if self.imp.queue.is_zero() {
                Duration::from_millis(200)
            } else {
                self.imp.queue
            };
            let free = self.next_free.filter(|f| *f > now).unwrap_or(now);
            let wait = free - now;
            if wait > queue {
                self.stats.lost_queue += 1;
                return None;
            }
            self.stats.max_queue_delay = self.stats.max_queue_delay.max(wait);
            let tx = Duration::from_nanos(data.len() as u64 * 8 * 1_000_000_000 / rate);
            self.next_free = Some(free + tx);
            at = free + tx;
        }
        let jitter = self.imp.jitter.mul_f64(if self.imp.jitter.is_zero() {
            0.0
        } else {
            self.draw()
        });
        if let Some(s) = ssrc {
            *self.stats.rtp_out_by_ssrc.entry(s).or_default() += 1;
        }
        Some(at + self.imp.delay + jitter)
    }

    /// Impair one datagram: what to send when.
    fn pass(&mut self, data: Vec<u8>) -> Vec<(Vec<u8>, Instant)> {
        let now = Instant::now();
        let Some(at) = self.admit(&data, now) else {
            return Vec::new();
        };
        let sends = if at <= now {
            self.reorder(data)
        } else {
            vec![data]
        };
        for d in &sends {
            self.record(d);
        }
        sends.into_iter().map(|d| (d, at)).collect()
    }

    /// Apply `hold_au_start` to a datagram admitted for now: what to send now, in order.
    fn reorder(&mut self, data: Vec<u8>) -> Vec<Vec<u8>> {
        let n = self.imp.hold_au_start;
        let (Some(ssrc), true) = (rtp_ssrc(&data), n > 0 && self.start.is_some()) else {
            return vec![data];
        };
        let ts = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let pass = self.imp.hold_au_pass.max(1);
        let (last_ts, held, passed) = self.held.entry(ssrc).or_default();
        let mut out = Vec::new();
        if ts != *last_ts {
            // A new access unit: whatever is still held goes first.
            out.append(held);
            *last_ts = ts;
            *passed = 0;
            held.push(data);
        } else if held.len() < n && *passed == 0 {
            held.push(data);
        } else {
            out.push(data);
            *passed += 1;
            if *passed >= pass {
                out.append(held);
            }
        }
        out
    }

    fn record(&mut self, data: &[u8]) {
        if let Some(s) = rtp_ssrc(data) {
            let seq = u16::from_be_bytes([data[2], data[3]]);
            self.stats.seqs_out_by_ssrc.entry(s).or_default().push(seq);
        }
    }
}

/// The SSRC of an RTP (not RTCP) packet: version 2 and a payload type outside
/// RTCP's 64..=95 (RFC 5761 §4); the SRTP header is in the clear.
fn rtp_ssrc(d: &[u8]) -> Option<u32> {
    if d.len() < 12 || d[0] >> 6 != 2 || (64..=95).contains(&(d[1] & 0x7f)) {
        return None;
    }
    Some(u32::from_be_bytes([d[8], d[9], d[10], d[11]]))
}

/// Both directions of one client IP's path.
#[derive(Default)]
struct Client {
    /// Client → server.
    up: Path,
    /// Server → client.
    down: Path,
}

type Clients = Arc<Mutex<HashMap<IpAddr, Client>>>;

/// The running relay (stops when dropped).
pub struct Relay {
    clients: Clients,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    flows: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Relay {
    /// Listen on `listen` (the server's advertised candidate: loopback, or an
    /// address inside a test-created network namespace) and relay to
    /// `server` (the loopback address it is bound to).
    pub async fn start(listen: SocketAddr, server: SocketAddr) -> std::io::Result<Relay> {
        assert!(
            server.ip().is_loopback(),
            "the relay forwards to loopback only"
        );
        let front = Arc::new(UdpSocket::bind(listen).await?);
        let clients: Clients = Arc::default();
        let flows: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (c, f) = (clients.clone(), flows.clone());
        let task = tokio::spawn(async move {
            let mut backs: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, from)) = front.recv_from(&mut buf).await else {
                    return;
                };
                let back = match backs.get(&from) {
                    Some(b) => b.clone(),
                    None => {
                        let Ok(b) = UdpSocket::bind("127.0.0.3:0").await else {
                            continue;
                        };
                        let b = Arc::new(b);
                        backs.insert(from, b.clone());
                        // Server → client.
                        let (b2, front2, c2) = (b.clone(), front.clone(), c.clone());
                        f.lock().unwrap().push(tokio::spawn(async move {
                            let mut buf = vec![0u8; 2048];
                            loop {
                                let Ok((n, _)) = b2.recv_from(&mut buf).await else {
                                    return;
                                };
                                let data = buf[..n].to_vec();
                                let sends = {
                                    let mut g = c2.lock().unwrap();
                                    g.entry(from.ip()).or_default().down.pass(data)
                                };
                                for (d, at) in sends {
                                    send_at(front2.clone(), from, d, Some(at));
                                }
                            }
                        }));
                        b
                    }
                };
                let data = buf[..n].to_vec();
                let sends = {
                    let mut g = c.lock().unwrap();
                    g.entry(from.ip()).or_default().up.pass(data)
                };
                for (d, at) in sends {
                    send_at(back.clone(), server, d, Some(at));
                }
            }
        });
        Ok(Relay {
            clients,
            tasks: vec![task],
            flows,
        })
    }

    /// From now on impair the path of clients on `ip`: `down` server → client,
    /// `up` client → server (replacing earlier impairments; counters stay).
    pub fn impair(&self, ip: IpAddr, down: Impairment, up: Impairment) {
        let now = Instant::now();
        let mut g = self.clients.lock().unwrap();
        let c = g.entry(ip).or_default();
        c.down.set(down, now);
        c.up.set(up, now);
    }

    /// Counters of the client IP's paths: (server → client, client → server).
    pub fn stats(&self, ip: IpAddr) -> (PathStats, PathStats) {
        let g = self.clients.lock().unwrap();
        g.get(&ip)
            .map(|c| (c.down.stats.clone(), c.up.stats.clone()))
            .unwrap_or_default()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.flows.lock().unwrap().iter() {
            t.abort();
        }
    }
}

/// Send `data` to `to` at `at` (now when due already; nothing when `None`).
fn send_at(sock: Arc<UdpSocket>, to: SocketAddr, data: Vec<u8>, at: Option<Instant>) {
    let Some(at) = at else { return };
    if at <= Instant::now() {
        let _ = sock.try_send_to(&data, to);
    } else {
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = sock.send_to(&data, to).await;
        });
    }
}
