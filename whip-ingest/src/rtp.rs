//! RTP described by an SDP file (ffmpeg `-f rtp -sdp_file`, GStreamer
//! `rtph264pay ! udpsink`): H.264 is depacketized into access units (to be
//! re-packetized at ≤ 1,200 bytes), Opus passes through unchanged. Timestamps
//! are rebased so they stay continuous when the sender restarts.

use crate::annexb::io_reason;
use crate::cli::Fail;
use crate::media::{Media, SourceInfo, VideoFrame};
use crate::sdp::{self, MediaDesc};
use sfu::client::depay::H264Depacketizer;
use sfu::client::sps;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Which stream a socket feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Video,
    Audio,
}

/// One RTP stream to receive.
#[derive(Debug, Clone)]
struct StreamCfg {
    kind: Kind,
    addr: SocketAddr,
    multicast: Option<IpAddr>,
    pt: u8,
    clock: u32,
}

/// An SDP-described RTP source, sockets bound.
#[derive(Debug)]
pub struct RtpSource {
    streams: Vec<(StreamCfg, UdpSocket, Option<UdpSocket>)>,
    stall: Duration,
}

/// Read and check an SDP file, bind its ports.
pub async fn open_sdp(path: &Path, stall: Duration) -> Result<(SourceInfo, RtpSource), Fail> {
    let name = path.display().to_string();
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| Fail::source(format!("cannot open {name}: {}", io_reason(&e))))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Fail::source(format!("corrupt SDP {name}: not UTF-8 text")))?;
    let media = sdp::parse(&text).map_err(|e| Fail::source(format!("corrupt SDP {name}: {e}")))?;
    let mut video: Option<(&MediaDesc, u8)> = None;
    let mut audio: Option<(&MediaDesc, u8)> = None;
    let mut refused_video = Vec::new();
    for m in &media {
        let Some((pt, codec, clock)) = m.codec() else {
            continue;
        };
        match (m.kind.as_str(), codec.as_str()) {
            ("video", "H264") if video.is_none() => {
                if clock != 90_000 {
                    return Err(Fail::source(format!(
                        "corrupt SDP {name}: H264 clock rate {clock}, want 90000"
                    )));
                }
                let mode = m.fmtp_param(pt, "packetization-mode");
                if mode.as_deref().is_some_and(|v| v.trim() == "2") {
                    return Err(Fail::source(format!(
                        "unsupported H.264 packetization-mode=2 (interleaved) in {name}"
                    )));
                }
                video = Some((m, pt));
            }
            ("video", _) => refused_video.push(codec),
            ("audio", "OPUS") if audio.is_none() => {
                if clock != 48_000 {
                    return Err(Fail::source(format!(
                        "corrupt SDP {name}: opus clock rate {clock}, want 48000"
                    )));
                }
                audio = Some((m, pt));
            }
            ("audio", c) => warn!(
                "skipping audio m= line on port {} ({c}): only Opus is passed through",
                m.port
            ),
            (k, c) => warn!("skipping {k} m= line on port {} ({c})", m.port),
        }
    }
    if video.is_none() && !refused_video.is_empty() {
        return Err(Fail::source(format!(
            "unsupported video codec {} in {name}: whip-ingest publishes H.264",
            refused_video.join(", ")
        )));
    }
    if video.is_none() && audio.is_none() {
        return Err(Fail::source(format!(
            "no usable stream in {name}: want H.264 video and/or Opus audio"
        )));
    }
    let mut params = Vec::new();
    let mut profile = None;
    let mut describe = format!("{name}:");
    let mut cfgs = Vec::new();
    if let Some((m, pt)) = video {
        params = m
            .sprop_parameter_sets(pt)
            .map_err(|e| Fail::source(format!("corrupt SDP {name}: {e}")))?;
        let parsed = params.iter().find_map(|p| sps::parse_sps(p));
        profile = parsed.map(|s| s.profile_level_id()).or_else(|| {
            m.fmtp_param(pt, "profile-level-id")
                .and_then(|v| u32::from_str_radix(&v, 16).ok())
                .filter(|v| *v <= 0xff_ffff)
        });
        describe += &format!(" H.264 RTP on port {}", m.port);
        if let Some(s) = parsed {
            describe += &format!(" ({}x{})", s.width, s.height);
        }
        cfgs.push(stream_cfg(m, pt, Kind::Video, 90_000));
    }
    if let Some((m, pt)) = audio {
        describe += &format!(" Opus RTP on port {}", m.port);
        cfgs.push(stream_cfg(m, pt, Kind::Audio, 48_000));
    }
    let mut streams = Vec::new();
    for c in cfgs {
        let (sock, rtcp) = bind_stream(&c).map_err(Fail::source)?;
        streams.push((c, sock, rtcp));
    }
    let info = SourceInfo {
        codec: crate::media::VideoCodec::H264,
        describe,
        video: video.is_some(),
        profile,
        params,
        audio: audio.map(|_| sfu::client::Track::Opus),
        makes_keyframes: false,
    };
    Ok((info, RtpSource { streams, stall }))
}

fn stream_cfg(m: &MediaDesc, pt: u8, kind: Kind, clock: u32) -> StreamCfg {
    let want = m.addr.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (ip, multicast) = if want.is_multicast() {
        let any = match want {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        (any, Some(want))
    } else {
        (want, None)
    };
    StreamCfg {
        kind,
        addr: SocketAddr::new(ip, m.port),
        multicast,
        pt,
        clock,
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // A keyframe arrives as a burst of packets.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Bind the RTP port (required) and the RTCP port after it (best effort, so
/// the sender's RTCP is not answered with ICMP port unreachable).
fn bind_stream(c: &StreamCfg) -> Result<(UdpSocket, Option<UdpSocket>), String> {
    let mut addr = c.addr;
    let sock = match bind_udp(addr) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            let lo = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port());
            warn!("{} is not a local address: receiving on {lo}", addr.ip());
            addr = lo;
            bind_udp(addr)
                .map_err(|e| format!("cannot receive RTP on {addr}: {}", io_reason(&e)))?
        }
        Err(e) => return Err(format!("cannot receive RTP on {addr}: {}", io_reason(&e))),
    };
    if let Some(IpAddr::V4(g)) = c.multicast {
        sock.join_multicast_v4(g, Ipv4Addr::UNSPECIFIED)
            .map_err(|e| format!("cannot join multicast group {g}: {}", io_reason(&e)))?;
    }
    let rtcp = addr
        .port()
        .checked_add(1)
        .and_then(|p| bind_udp(SocketAddr::new(addr.ip(), p)).ok());
    Ok((sock, rtcp))
}

/// One parsed RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Payload (padding removed).
    pub payload: &'a [u8],
}

/// Parse an RTP packet (RFC 3550 §5.1); `None` if it is not one.
pub fn parse_rtp(b: &[u8]) -> Option<RtpPacket<'_>> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(b[0] & 0x0f);
    let mut off = 12 + 4 * cc;
    if b[0] & 0x10 != 0 {
        let ext = b.get(off..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*b.last()?))?;
    }
    let payload = b.get(off..end)?;
    Some(RtpPacket {
        pt: b[1] & 0x7f,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload,
    })
}

/// Maps a source's RTP timestamps onto a continuous output timeline: a fixed
/// offset while the source runs, re-anchored on the wall clock after a
/// discontinuity (new SSRC, a jump of more than 10 s, a stall).
#[derive(Debug)]
pub struct Rebase {
    clock: u32,
    anchor: Option<(u32, u32)>,
    last: Option<(u32, u32, Instant)>,
}

impl Rebase {
    /// For a clock rate, starting at a random output timestamp.
    pub fn new(clock: u32) -> Rebase {
        Rebase {
            clock,
            anchor: None,
            last: None,
        }
    }

    /// Forget the anchor: the next timestamp continues from the last output
    /// plus the wall-clock time since.
    pub fn reset(&mut self) {
        self.anchor = None;
    }

    /// Output timestamp for input `ts` seen at `now`.
    pub fn map(&mut self, ts: u32, now: Instant) -> u32 {
        if let Some((last_in, _, _)) = self.last {
            let jump = ts.wrapping_sub(last_in) as i32;
            if jump.unsigned_abs() > self.clock.saturating_mul(10) {
                debug!(jump, "RTP timestamp jump: rebasing");
                self.anchor = None;
            }
        }
        let (in0, out0) = *self.anchor.get_or_insert_with(|| {
            let out0 = match self.last {
                Some((_, out, at)) => {
                    let ticks = (now - at).as_secs_f64() * f64::from(self.clock);
                    out.wrapping_add((ticks.round() as u32).max(1))
                }
                None => {
                    let mut b = [0u8; 4];
                    let _ = getrandom::fill(&mut b);
                    u32::from_be_bytes(b) >> 1
                }
            };
            (ts, out0)
        });
        let out = out0.wrapping_add(ts.wrapping_sub(in0));
        self.last = Some((ts, out, now));
        out
    }
}

struct StreamState {
    cfg: StreamCfg,
    sock: Option<UdpSocket>,
    rtcp: Option<UdpSocket>,
    ssrc: Option<u32>,
    rebase: Rebase,
    depay: H264Depacketizer,
    packets: u64,
    other_pt: u64,
}

impl StreamState {
    fn reset(&mut self) {
        self.ssrc = None;
        self.rebase.reset();
        self.depay.reset();
    }
}

async fn recv(sock: Option<&UdpSocket>, buf: &mut [u8]) -> Option<usize> {
    match sock {
        Some(s) => match s.recv(buf).await {
            Ok(n) => Some(n),
            Err(e) => {
                debug!("RTP receive error: {e}");
                None
            }
        },
        None => std::future::pending().await,
    }
}

enum Ev {
    Packet(usize, usize),
    Tick,
    Nothing,
}

impl RtpSource {
    /// Receive until the receiver is gone.
    pub async fn run(self, tx: mpsc::Sender<Media>) {
        let where_: Vec<String> = self
            .streams
            .iter()
            .map(|(c, s, _)| {
                let a = s.local_addr().map_or(c.addr, |a| a);
                format!(
                    "{a} ({})",
                    if c.kind == Kind::Video {
                        "H.264"
                    } else {
                        "Opus"
                    }
                )
            })
            .collect();
        info!("waiting for RTP on {}", where_.join(", "));
        let mut st: Vec<StreamState> = self
            .streams
            .into_iter()
            .map(|(cfg, sock, rtcp)| StreamState {
                rebase: Rebase::new(cfg.clock),
                cfg,
                sock: Some(sock),
                rtcp,
                ssrc: None,
                depay: H264Depacketizer::new(),
                packets: 0,
                other_pt: 0,
            })
            .collect();
        // At most two streams (video, audio): RTP and RTCP buffers for each.
        let mut bufs: [Vec<u8>; 4] = std::array::from_fn(|_| vec![0u8; 65536]);
        let mut last_rx = Instant::now();
        let mut ever = false;
        let mut stalled = false;
        let mut depay_warn: Option<Instant> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut frames = Vec::new();
        loop {
            let [b0, b1, b2, b3] = &mut bufs;
            let sock = |i: usize| st.get(i).and_then(|s| s.sock.as_ref());
            let rtcp = |i: usize| st.get(i).and_then(|s| s.rtcp.as_ref());
            let ev = tokio::select! {
                r = recv(sock(0), b0) => r.map_or(Ev::Nothing, |n| Ev::Packet(0, n)),
                r = recv(sock(1), b1) => r.map_or(Ev::Nothing, |n| Ev::Packet(1, n)),
                _ = recv(rtcp(0), b2) => Ev::Nothing,
                _ = recv(rtcp(1), b3) => Ev::Nothing,
                _ = tick.tick() => Ev::Tick,
            };
            let (i, n) = match ev {
                Ev::Packet(i, n) => (i, n),
                Ev::Nothing => continue,
                Ev::Tick => {
                    let now = Instant::now();
                    if now - last_rx < self.stall {
                        continue;
                    }
                    let msg = if ever {
                        format!(
                            "RTP source silent for {:.1} s: resetting it",
                            self.stall.as_secs_f64()
                        )
                    } else {
                        format!(
                            "no RTP received on {} within {:.1} s",
                            where_.join(", "),
                            self.stall.as_secs_f64()
                        )
                    };
                    last_rx = now;
                    let first = !stalled;
                    stalled = true;
                    for s in &mut st {
                        s.reset();
                        // Re-open the ports: fresh sockets, nothing stale queued.
                        s.sock = None;
                        s.rtcp = None;
                        match bind_stream(&s.cfg) {
                            Ok((sock, rtcp)) => {
                                s.sock = Some(sock);
                                s.rtcp = rtcp;
                            }
                            Err(e) => warn!("{e}"),
                        }
                    }
                    if !first {
                        debug!("{msg}");
                    } else if tx.send(Media::Stalled(msg)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let buf = &bufs[i];
            let Some(p) = parse_rtp(&buf[..n]) else {
                continue;
            };
            let s = &mut st[i];
            if p.pt != s.cfg.pt {
                s.other_pt += 1;
                if s.other_pt == 1 {
                    debug!(pt = p.pt, "ignoring RTP with another payload type");
                }
                continue;
            }
            let now = Instant::now();
            last_rx = now;
            ever = true;
            if stalled {
                stalled = false;
                if tx.send(Media::Resumed).await.is_err() {
                    return;
                }
            }
            if s.ssrc != Some(p.ssrc) {
                if s.ssrc.is_some() {
                    info!(ssrc = p.ssrc, "RTP sender restarted (new SSRC)");
                }
                s.reset();
                s.ssrc = Some(p.ssrc);
            }
            s.packets += 1;
            match s.cfg.kind {
                Kind::Audio => {
                    let ts = s.rebase.map(p.ts, now);
                    let m = Media::Audio {
                        ts,
                        marker: p.marker,
                        payload: Arc::from(p.payload),
                    };
                    if tx.send(m).await.is_err() {
                        return;
                    }
                }
                Kind::Video => {
                    if let Err(e) = s.depay.push(p.seq, p.ts, p.marker, p.payload, &mut frames)
                        && depay_warn.is_none_or(|t| now - t > Duration::from_secs(10))
                    {
                        depay_warn = Some(now);
                        warn!("H.264 RTP: {e}");
                    }
                    for f in frames.drain(..) {
                        if f.damaged {
                            debug!(lost = s.depay.lost, "frame damaged by packet loss");
                        }
                        let ts = s.rebase.map(f.ts, now);
                        if tx
                            .send(Media::Video(VideoFrame::new(ts, f.nals)))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }
    }
}
