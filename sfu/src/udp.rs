//! The UDP edge: one port, one socket per local address, receive threads that
//! route datagrams to workers, and sends on behalf of workers.

use crate::demux::Demux;
use crate::worker::{ShardMsg, ShardSender};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, warn};

/// One bound socket and the address peers reach it at.
#[derive(Debug)]
pub struct BoundSocket {
    /// The socket (bound to a specific local address).
    pub socket: UdpSocket,
    /// Address advertised in answers for this socket (host candidate). Equals
    /// the bound address unless `--advertise` maps it (1:1 NAT).
    pub advertised: SocketAddr,
}

/// All media sockets.
#[derive(Debug)]
pub struct Sockets {
    /// Bound sockets, in candidate order.
    pub list: Vec<BoundSocket>,
    /// Candidate addresses put in answers (IPv4 first, non-loopback first).
    pub candidates: Vec<SocketAddr>,
}

impl Sockets {
    /// Bind `udp` (port shared by all sockets). An unspecified IP binds every
    /// interface address of that family. `advertise` (may be empty) replaces the
    /// candidate addresses; each socket then maps to the advertised address of
    /// the same IP, or to the first advertised address (1:1 NAT).
    pub fn bind(udp: SocketAddr, advertise: &[IpAddr]) -> io::Result<Sockets> {
        let mut ips: Vec<IpAddr> = if udp.ip().is_unspecified() {
            let v4 = udp.is_ipv4();
            if_addrs::get_if_addrs()?
                .into_iter()
                .map(|i| i.ip())
                .filter(|ip| ip.is_ipv4() == v4)
                .filter(|ip| match ip {
                    IpAddr::V6(v6) => !v6.is_unicast_link_local(),
                    IpAddr::V4(v4) => !v4.is_link_local(),
                })
                .collect()
        } else {
            vec![udp.ip()]
        };
        ips.sort_by_key(|ip| (ip.is_ipv6(), ip.is_loopback()));
        ips.dedup();
        if ips.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("no interface address to bind for {udp}"),
            ));
        }
        let mut list = Vec::new();
        for ip in ips {
            let addr = SocketAddr::new(ip, udp.port());
            let socket = bind_one(addr)?;
            let port = socket.local_addr()?.port();
            let adv_ip = if advertise.is_empty() || advertise.contains(&ip) {
                ip
            } else {
                advertise[0]
            };
            list.push(BoundSocket {
                socket,
                advertised: SocketAddr::new(adv_ip, port),
            });
        }
        let port = list[0].advertised.port();
        let mut candidates: Vec<SocketAddr> = if advertise.is_empty() {
            list.iter().map(|b| b.advertised).collect()
        } else {
            advertise
                .iter()
                .map(|ip| SocketAddr::new(*ip, port))
                .collect()
        };
        candidates.sort_by_key(|a| (a.is_ipv6(), a.ip().is_loopback()));
        candidates.dedup();
        Ok(Sockets { list, candidates })
    }

    /// Send one datagram from the socket whose advertised address is `source`.
    pub fn send(&self, source: SocketAddr, destination: SocketAddr, buf: &[u8]) {
        let s = self
            .list
            .iter()
            .find(|b| b.advertised == source)
            .unwrap_or(&self.list[0]);
        if let Err(e) = s.socket.send_to(buf, destination) {
            debug!(%destination, "udp send failed: {e}");
        }
    }
}

fn bind_one(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    set_buffers(&s, 8 << 20);
    s.bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}")))?;
    Ok(s.into())
}

/// Run a receive loop for socket `idx` forever (on its own thread).
pub fn recv_loop(sockets: Arc<Sockets>, idx: usize, demux: Arc<Demux>, shards: Vec<ShardSender>) {
    let b = &sockets.list[idx];
    let destination = b.advertised;
    let mut buf = vec![0u8; 2048];
    let mut dropped: u64 = 0;
    loop {
        let (n, source) = match b.socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) => {
                debug!("udp recv error: {e}");
                continue;
            }
        };
        let source = canonical(source);
        let data = &buf[..n];
        let Some(peer) = demux.route(data, source) else {
            continue;
        };
        let msg = ShardMsg::Datagram {
            peer: peer.id,
            source,
            destination,
            data: data.to_vec(),
            at: Instant::now(),
        };
        if shards[peer.shard].try_send(msg).is_err() {
            dropped += 1;
            if dropped.is_power_of_two() {
                warn!(dropped, "worker inbox full: dropping datagrams");
            }
        }
    }
}

/// Map v4-mapped IPv6 addresses to IPv4.
fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        _ => a,
    }
}

/// Ask for `bytes` of receive and send buffer: beyond `net.core.rmem_max`
/// with `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` when privileged, else up to the cap.
/// Large buffers absorb keyframe bursts.
pub fn set_buffers(s: &socket2::Socket, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let v = bytes as libc::c_int;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            // SAFETY: valid fd, option value is a c_int of the given size.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    &v as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
    if s.recv_buffer_size().unwrap_or(0) < bytes {
        let _ = s.set_recv_buffer_size(bytes);
    }
    if s.send_buffer_size().unwrap_or(0) < bytes {
        let _ = s.set_send_buffer_size(bytes);
    }
}
