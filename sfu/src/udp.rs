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
    /// UDP GSO (`UDP_SEGMENT`) in use by [`SendBatch`]: on when the kernel
    /// knows the option, off for good after the first send it refuses.
    pub gso: std::sync::atomic::AtomicBool,
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
        let gso = gso_supported(&list[0].socket);
        Ok(Sockets {
            list,
            candidates,
            gso: gso.into(),
        })
    }

    /// Index in [`Sockets::list`] of the socket whose advertised address is
    /// `source` (the first socket when none is).
    pub fn index_of(&self, source: SocketAddr) -> usize {
        self.list
            .iter()
            .position(|b| b.advertised == source)
            .unwrap_or(0)
    }

    /// Send one datagram from the socket whose advertised address is `source`.
    pub fn send(&self, source: SocketAddr, destination: SocketAddr, buf: &[u8]) {
        self.send_on(self.index_of(source), destination, buf);
    }

    /// Send one datagram from socket `idx` of [`Sockets::list`].
    pub fn send_on(&self, idx: usize, destination: SocketAddr, buf: &[u8]) {
        if let Err(e) = self.list[idx].socket.send_to(buf, destination) {
            debug!(%destination, "udp send failed: {e}");
        }
    }
}

/// Whether the kernel knows UDP GSO (`UDP_SEGMENT`, Linux ≥ 4.18): reading
/// the option succeeds. A device that cannot segment still refuses a send;
/// [`SendBatch`] then turns GSO off.
fn gso_supported(s: &UdpSocket) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid fd; `v` and `len` are a c_int and its size.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                &mut v as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        r == 0 && std::env::var_os("SFU_NO_GSO").is_none()
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = s;
        false
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
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
            set_int_option(s.as_raw_fd(), libc::SOL_SOCKET, opt, bytes as libc::c_int);
        }
    }
    if s.recv_buffer_size().unwrap_or(0) < bytes {
        let _ = s.set_recv_buffer_size(bytes);
    }
    if s.send_buffer_size().unwrap_or(0) < bytes {
        let _ = s.set_send_buffer_size(bytes);
    }
}

/// `setsockopt(fd, level, name, &value)` for an integer option; true when
/// the kernel took it.
fn set_int_option(
    fd: std::os::fd::RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> bool {
    // SAFETY: the option value is a c_int of the given size; an invalid fd
    // or unknown option only makes the call fail.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// Most datagrams one [`SendBatch`] holds before it flushes by itself: a
/// frame of ≈ 8 packets to each of ≈ 30 viewers per `sendmmsg`, and few
/// frames cut in two (two GSO sends) by a flush that comes mid-frame.
pub const BATCH_MAX: usize = 256;
/// Most segments in one UDP GSO send (the kernel allows 64, newer 128).
const GSO_MAX_SEGMENTS: usize = 32;
/// Most payload bytes in one UDP GSO send (an IPv4 UDP datagram's limit is
/// 65,507).
const GSO_MAX_BYTES: usize = 60_000;

/// One queued datagram: socket index in [`Sockets::list`], destination, and
/// its bytes (str0m's buffer, moved in, not copied).
#[derive(Debug)]
struct Queued {
    sock: usize,
    dest: SocketAddr,
    data: Vec<u8>,
}

/// A worker's outgoing datagrams of one wake-up, sent together: `sendmmsg`
/// (one system call for up to [`BATCH_MAX`] datagrams), and consecutive
/// datagrams to the same destination of equal size (the packets of one
/// frame to one viewer) merged into one UDP GSO send (`UDP_SEGMENT`, Linux
/// ≥ 4.18) while the kernel accepts it. Each datagram's buffer is the one
/// str0m allocated for the `Transmit`, moved in and freed after the send;
/// the batch itself allocates nothing after [`SendBatch::new`].
///
/// Order is kept: datagrams leave in the order they were pushed.
#[derive(Debug)]
pub struct SendBatch {
    queued: Vec<Queued>,
    addrs: Vec<socket2::SockAddr>,
}

impl Default for SendBatch {
    fn default() -> Self {
        SendBatch::new()
    }
}

impl SendBatch {
    /// An empty batch with its buffers allocated.
    pub fn new() -> SendBatch {
        SendBatch {
            queued: Vec::with_capacity(BATCH_MAX),
            addrs: Vec::with_capacity(BATCH_MAX),
        }
    }

    /// Datagrams waiting.
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// Nothing waiting.
    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Queue `data` for `destination` from the socket whose advertised
    /// address is `source` (as [`Sockets::send`]); flushes first when full.
    pub fn push(
        &mut self,
        sockets: &Sockets,
        source: SocketAddr,
        destination: SocketAddr,
        data: Vec<u8>,
    ) {
        if self.queued.len() == BATCH_MAX {
            self.flush(sockets);
        }
        self.queued.push(Queued {
            sock: sockets.index_of(source),
            dest: destination,
            data,
        });
    }

    /// Send everything queued.
    pub fn flush(&mut self, sockets: &Sockets) {
        if self.queued.is_empty() {
            return;
        }
        #[cfg(target_os = "linux")]
        self.flush_linux(sockets);
        #[cfg(not(target_os = "linux"))]
        for q in &self.queued {
            sockets.send_on(q.sock, q.dest, &q.data);
        }
        self.queued.clear();
    }

    /// Datagrams `i..` that form one message: one, or with GSO a run to the
    /// same socket and destination, all as long as the first except a last
    /// shorter one. Returns the run's end.
    #[cfg(target_os = "linux")]
    fn run_end(&self, i: usize, gso: bool) -> usize {
        let first = &self.queued[i];
        let mut end = i + 1;
        if !gso {
            return end;
        }
        let len = first.data.len();
        let mut bytes = len;
        while end < self.queued.len() && end - i < GSO_MAX_SEGMENTS {
            let q = &self.queued[end];
            if q.sock != first.sock
                || q.dest != first.dest
                || q.data.len() > len
                || q.data.is_empty()
                || bytes + q.data.len() > GSO_MAX_BYTES
            {
                break;
            }
            bytes += q.data.len();
            end += 1;
            if q.data.len() < len {
                break; // a shorter segment ends the run
            }
        }
        end
    }

    #[cfg(target_os = "linux")]
    fn flush_linux(&mut self, sockets: &Sockets) {
        use std::mem::MaybeUninit;
        use std::os::fd::AsRawFd;
        // Control message room for one UDP_SEGMENT (u16), 8-byte aligned.
        const CMSG_WORDS: usize = 4;
        let gso = sockets.gso.load(std::sync::atomic::Ordering::Relaxed);
        self.addrs.clear();
        for q in &self.queued {
            self.addrs.push(socket2::SockAddr::from(q.dest));
        }
        let mut start = 0;
        while start < self.queued.len() {
            let sock = self.queued[start].sock;
            // Messages of one socket, in order.
            let mut iov: [MaybeUninit<libc::iovec>; BATCH_MAX] =
                [const { MaybeUninit::uninit() }; BATCH_MAX];
            let mut hdr: [MaybeUninit<libc::mmsghdr>; BATCH_MAX] =
                [const { MaybeUninit::uninit() }; BATCH_MAX];
            let mut cmsg = [[0u64; CMSG_WORDS]; BATCH_MAX];
            // (first datagram, end) of each message.
            let mut runs = [(0usize, 0usize); BATCH_MAX];
            let mut n = 0;
            let mut i = start;
            while i < self.queued.len() && self.queued[i].sock == sock {
                let end = self.run_end(i, gso);
                for (k, q) in self.queued[i..end].iter().enumerate() {
                    iov[i + k].write(libc::iovec {
                        iov_base: q.data.as_ptr() as *mut libc::c_void,
                        iov_len: q.data.len(),
                    });
                }
                // SAFETY: all-zero is a valid mmsghdr.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = self.addrs[i].as_ptr() as *mut libc::c_void;
                h.msg_hdr.msg_namelen = self.addrs[i].len();
                h.msg_hdr.msg_iov = iov[i].as_mut_ptr();
                h.msg_hdr.msg_iovlen = (end - i) as _;
                if end - i > 1 {
                    let c = &mut cmsg[n];
                    let space = unsafe { libc::CMSG_SPACE(2) } as usize;
                    h.msg_hdr.msg_control = c.as_mut_ptr() as *mut libc::c_void;
                    h.msg_hdr.msg_controllen = space as _;
                    // SAFETY: the control buffer holds CMSG_SPACE(2) bytes,
                    // aligned for cmsghdr.
                    unsafe {
                        let cm = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                        (*cm).cmsg_level = libc::SOL_UDP;
                        (*cm).cmsg_type = libc::UDP_SEGMENT;
                        (*cm).cmsg_len = libc::CMSG_LEN(2) as _;
                        std::ptr::write_unaligned(
                            libc::CMSG_DATA(cm) as *mut u16,
                            self.queued[i].data.len() as u16,
                        );
                    }
                }
                hdr[n].write(h);
                runs[n] = (i, end);
                n += 1;
                i = end;
            }
            let fd = sockets.list[sock].socket.as_raw_fd();
            let mut sent = 0;
            while sent < n {
                // SAFETY: headers 0..n are initialised and point into `iov`,
                // `cmsg`, `addrs` and the queued buffers, all alive for the call.
                let r = unsafe {
                    libc::sendmmsg(fd, hdr[sent].as_mut_ptr(), (n - sent) as libc::c_uint, 0)
                };
                if r > 0 {
                    sent += r as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                let (a, b) = runs[sent];
                if b - a > 1
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT)
                    )
                {
                    // The device or kernel refuses GSO: never again, and send
                    // this run datagram by datagram.
                    warn!("UDP GSO refused ({e}): sending datagrams one by one from now on");
                    sockets
                        .gso
                        .store(false, std::sync::atomic::Ordering::Relaxed);
                    for q in &self.queued[a..b] {
                        sockets.send_on(q.sock, q.dest, &q.data);
                    }
                } else {
                    debug!(destination = %self.queued[a].dest, "udp send failed: {e}");
                }
                sent += 1; // skip the failed message
            }
            start = i;
        }
    }
}

/// Most datagrams one [`RecvBatch::fill`] reads.
pub const RECV_BATCH: usize = 16;
/// Largest datagram a [`RecvBatch`] slot holds (longer ones are cut).
const RECV_SLOT: usize = 2048;
/// Messages one [`RecvBatch::fill`] reads with UDP GRO on: each may carry
/// up to 64 KiB of coalesced datagrams.
const GRO_BATCH: usize = 8;
/// Slot size with UDP GRO on: the largest coalesced message (an IPv4 UDP
/// datagram's limit).
const GRO_SLOT: usize = 65_535;
/// `UDP_GRO` socket option and control message (Linux ≥ 5.0,
/// `include/uapi/linux/udp.h`); not in `libc` for glibc targets.
const UDP_GRO: libc::c_int = 104;

/// Datagrams read from a socket with one `recvmmsg` call (up to
/// [`RECV_BATCH`] messages), handed out one by one with [`RecvBatch::next`]:
/// one wake-up and one system call per burst instead of per datagram.
/// Buffers are allocated once.
///
/// With [`RecvBatch::with_gro`] the socket also coalesces datagrams of one
/// flow (UDP GRO): a UDP GSO burst from a sender (a frame to one viewer)
/// arrives as one message of equal-sized segments, which `next` splits
/// again. On loopback the receiver's kernel work runs on the sender's core,
/// so this also keeps a load generator from charging its receive path to
/// the server it measures.
#[derive(Debug)]
pub struct RecvBatch {
    buf: Vec<u8>,
    /// Bytes per slot: [`RECV_SLOT`], or [`GRO_SLOT`] with GRO.
    slot: usize,
    /// Slots in use: [`RECV_BATCH`], or [`GRO_BATCH`] with GRO.
    slots: usize,
    lens: [usize; RECV_BATCH],
    /// Segment size of each message (UDP GRO), 0 when it is one datagram.
    segs: [usize; RECV_BATCH],
    from: [Option<SocketAddr>; RECV_BATCH],
    n: usize,
    next: usize,
    /// Offset of the next segment in message `next`.
    off: usize,
    at: Instant,
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch::new()
    }
}

impl RecvBatch {
    /// An empty batch with its buffer allocated.
    pub fn new() -> RecvBatch {
        RecvBatch::sized(RECV_BATCH, RECV_SLOT)
    }

    /// An empty batch for socket `fd` with UDP GRO turned on when the kernel
    /// has it (Linux ≥ 5.0): [`GRO_BATCH`] messages of up to 64 KiB each.
    /// Falls back to [`RecvBatch::new`] when the option is refused or the
    /// environment has `SFU_NO_GRO`.
    pub fn with_gro(fd: std::os::fd::RawFd) -> RecvBatch {
        // `SFU_NO_GRO` (any value) keeps the option off, for comparisons.
        if std::env::var_os("SFU_NO_GRO").is_some() {
            return RecvBatch::new();
        }
        if set_int_option(fd, libc::SOL_UDP, UDP_GRO, 1) {
            RecvBatch::sized(GRO_BATCH, GRO_SLOT)
        } else {
            RecvBatch::new()
        }
    }

    fn sized(slots: usize, slot: usize) -> RecvBatch {
        RecvBatch {
            buf: vec![0; slots * slot],
            slot,
            slots,
            lens: [0; RECV_BATCH],
            segs: [0; RECV_BATCH],
            from: [None; RECV_BATCH],
            n: 0,
            next: 0,
            off: 0,
            at: Instant::now(),
        }
    }

    /// Whether the socket coalesces datagrams (UDP GRO on).
    pub fn gro(&self) -> bool {
        self.slot == GRO_SLOT
    }

    /// When the batch was read.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The next datagram not yet handed out: (source, bytes, time the batch
    /// was read). A coalesced message (UDP GRO) is handed out segment by
    /// segment.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<(SocketAddr, &[u8], Instant)> {
        while self.next < self.n {
            let i = self.next;
            let len = self.lens[i];
            let seg = if self.segs[i] == 0 { len } else { self.segs[i] };
            let start = self.off;
            let end = (start + seg).min(len);
            if end >= len {
                self.next += 1;
                self.off = 0;
            } else {
                self.off = end;
            }
            if let Some(src) = self.from[i]
                && end > start
            {
                let base = i * self.slot;
                return Some((src, &self.buf[base + start..base + end], self.at));
            }
        }
        None
    }

    /// Read what the non-blocking socket `fd` has (up to [`RECV_BATCH`]
    /// messages) into the batch, replacing what was there. Returns how many
    /// messages were read; `WouldBlock` when none is waiting.
    pub fn fill(&mut self, fd: std::os::fd::RawFd) -> io::Result<usize> {
        use std::mem::MaybeUninit;
        /// Control message room for one `UDP_GRO` (c_int), 8-byte aligned.
        const CMSG_ROOM: usize = 32;
        self.n = 0;
        self.next = 0;
        self.off = 0;
        let slots = self.slots;
        let mut iov: [MaybeUninit<libc::iovec>; RECV_BATCH] =
            [const { MaybeUninit::uninit() }; RECV_BATCH];
        // SAFETY: all-zero is a valid sockaddr_storage and mmsghdr.
        let mut names: [libc::sockaddr_storage; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut hdr: [libc::mmsghdr; RECV_BATCH] = unsafe { std::mem::zeroed() };
        let mut cmsg = [[0u64; CMSG_ROOM / 8]; RECV_BATCH];
        for i in 0..slots {
            iov[i].write(libc::iovec {
                // SAFETY: slot i lies inside `buf`.
                iov_base: unsafe { self.buf.as_mut_ptr().add(i * self.slot) } as *mut libc::c_void,
                iov_len: self.slot,
            });
            hdr[i].msg_hdr.msg_name =
                &mut names[i] as *mut libc::sockaddr_storage as *mut libc::c_void;
            hdr[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as _;
            hdr[i].msg_hdr.msg_iov = iov[i].as_mut_ptr();
            hdr[i].msg_hdr.msg_iovlen = 1;
            hdr[i].msg_hdr.msg_control = cmsg[i].as_mut_ptr() as *mut libc::c_void;
            hdr[i].msg_hdr.msg_controllen = CMSG_ROOM as _;
        }
        // SAFETY: `slots` initialised headers pointing at live buffers.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdr.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = r as usize;
        self.at = Instant::now();
        for i in 0..n {
            self.lens[i] = (hdr[i].msg_len as usize).min(self.slot);
            self.from[i] = from_storage(&names[i]);
            self.segs[i] = gro_segment(&hdr[i].msg_hdr);
        }
        self.n = n;
        Ok(n)
    }
}

/// The segment size a `UDP_GRO` control message in `m` gives, 0 without one.
fn gro_segment(m: &libc::msghdr) -> usize {
    // SAFETY: `m` was filled by recvmmsg; the CMSG macros walk its control
    // buffer within `msg_controllen`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                return v.max(0) as usize;
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    0
}

/// The IPv4 or IPv6 address in a `sockaddr_storage` filled by the kernel.
fn from_storage(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match a.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: family AF_INET: the storage holds a sockaddr_in.
            let v4 = unsafe { &*(a as *const libc::sockaddr_storage as *const libc::sockaddr_in) };
            let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(v4.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: family AF_INET6: the storage holds a sockaddr_in6.
            let v6 = unsafe { &*(a as *const libc::sockaddr_storage as *const libc::sockaddr_in6) };
            let ip = std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(v6.sin6_port),
                v6.sin6_flowinfo,
                v6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    /// Send a frame-like burst through a [`SendBatch`] over loopback and read
    /// it back with [`RecvBatch`]: every datagram arrives intact, in order.
    fn round_trip(gso: bool, gro: bool) {
        let sockets = Sockets::bind("127.0.0.1:0".parse().unwrap(), &[]).unwrap();
        if !gso {
            sockets.gso.store(false, Ordering::Relaxed);
        }
        let from = sockets.list[0].advertised;
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        // GRO applies to datagrams that arrive after it is turned on.
        let mut readers: Vec<RecvBatch> = [&a, &b]
            .iter()
            .map(|s| {
                if gro {
                    RecvBatch::with_gro(s.as_raw_fd())
                } else {
                    RecvBatch::new()
                }
            })
            .collect();
        let mut sent: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        // To a: 7 equal packets and a short last one (one GSO send), then
        // to b: 3, then to a again: 2 of another size.
        let mut k = 0u8;
        let mut add = |to: &UdpSocket, len: usize| {
            k = k.wrapping_add(1);
            sent.push((to.local_addr().unwrap(), vec![k; len]));
        };
        for _ in 0..7 {
            add(&a, 1200);
        }
        add(&a, 300);
        for _ in 0..3 {
            add(&b, 1000);
        }
        add(&a, 200);
        add(&a, 200);
        let mut batch = SendBatch::new();
        for (to, d) in &sent {
            batch.push(&sockets, from, *to, d.clone());
        }
        assert_eq!(batch.len(), sent.len());
        let had = sockets.gso.load(Ordering::Relaxed);
        batch.flush(&sockets);
        assert!(batch.is_empty());
        // Loopback segments in software: a kernel that knows GSO accepts it.
        assert_eq!(sockets.gso.load(Ordering::Relaxed), had);
        for (s, rx) in [&a, &b].into_iter().zip(&mut readers) {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let want: Vec<&Vec<u8>> = sent
                .iter()
                .filter(|(to, _)| *to == s.local_addr().unwrap())
                .map(|(_, d)| d)
                .collect();
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut messages = 0;
            let deadline = Instant::now() + Duration::from_secs(2);
            while got.len() < want.len() && Instant::now() < deadline {
                match rx.fill(s.as_raw_fd()) {
                    Ok(n) => {
                        messages += n;
                        while let Some((src, d, _)) = rx.next() {
                            assert_eq!(src, from);
                            got.push(d.to_vec());
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            assert_eq!(got.len(), want.len(), "gso={gso} gro={gro}");
            if gso && rx.gro() {
                // The run of 8 to `a` came as one message.
                assert!(
                    messages < want.len(),
                    "{messages} messages for {}",
                    want.len()
                );
            }
            for (g, w) in got.iter().zip(want) {
                assert_eq!(g, w, "gso={gso} gro={gro}");
            }
        }
    }

    #[test]
    fn batch_with_gso_delivers_every_datagram_in_order() {
        round_trip(true, false);
    }

    /// GSO sends read with UDP GRO arrive coalesced and are split back into
    /// the datagrams sent, short last segment included.
    #[test]
    fn gso_batch_read_with_gro_delivers_every_datagram_in_order() {
        round_trip(true, true);
    }

    #[test]
    fn batch_without_gso_delivers_every_datagram_in_order() {
        round_trip(false, false);
    }
}
