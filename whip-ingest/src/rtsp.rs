//! RTSP camera source (RFC 2326 / 7826 client: the `retina` crate).
//!
//! DESCRIBE, SETUP (TCP interleaved by default, UDP with
//! `--rtsp-transport udp`) and PLAY; H.264 (RFC 6184) or H.265 (RFC 7798)
//! video frames arrive depacketized and are handed on as access units with
//! the parameter sets (SPS/PPS, or VPS/SPS/PPS; from the stream or the SDP's
//! `sprop-*`) in front of every IDR/IRAP; H.264 is preferred when a camera
//! offers both. PCMU/PCMA audio is passed through, and so is Opus (through
//! the raw-packet path: retina has no Opus depacketizer, see
//! [`RtspSource::raw_session`]). AAC and other audio
//! codecs are skipped with one warning (no transcoding); a camera without
//! H.264 or H.265 video (e.g. AAC audio only) is an unusable source (exit 3),
//! and so is one refusing the credentials (401, 403; also when it starts
//! refusing them later: its password was changed) or the path (404); one
//! that cannot be reached at start is asked again with backoff ([`open`]).
//! When the camera goes away (connection lost, RTSP server
//! restart, reboot) or stays silent for `--stall-timeout`, the session is torn
//! down and set up again with capped, jittered exponential backoff, while the
//! WHIP session stays up and its timestamps continue ([`crate::rtp::Rebase`]).

use crate::cli::Fail;
use crate::media::{Media, SourceInfo, VideoCodec, VideoFrame, h265_type};
use crate::publish::Backoff;
use crate::rtp::Rebase;
use futures_util::StreamExt;
use retina::client::{
    Credentials, PacketItem, PlayOptions, SessionGroup, SessionOptions, SetupOptions,
    TcpTransportOptions, Transport, UdpTransportOptions,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoParametersCodec};
use sfu::client::Track;
use sfu::client::depay::H264Depacketizer;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How RTP reaches us from the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection (works through NAT and firewalls).
    Tcp,
    /// Separate UDP ports (LAN only: no reordering, losses are not repaired).
    Udp,
}

/// A camera to pull, with what DESCRIBE told us.
pub struct RtspSource {
    url: url::Url,
    creds: Option<Credentials>,
    transport: RtspTransport,
    stall: Duration,
    group: Arc<SessionGroup>,
    /// RTP clock of the forwarded audio (8 kHz G.711, 48 kHz Opus).
    audio_clock: u32,
    /// The session [`open`] described, set up by the first [`RtspSource::session`]
    /// instead of a second DESCRIBE (a camera that serves one client at a
    /// time, or GStreamer's RTSP server tearing down the first one's media,
    /// answered that with 503).
    described: Option<retina::client::Session<retina::client::Described>>,
    /// Why the camera refused us (401, 403) on reconnecting: the run ends
    /// with exit 3 instead of asking again.
    refused: Option<String>,
}

/// An RTSP request that failed: the camera's status code, if it answered
/// one, and a one-line reason.
#[derive(Debug)]
struct RtspError {
    status: Option<u16>,
    msg: String,
}

impl RtspError {
    /// From retina's error, whose text carries connection and message
    /// context on further lines: those go to the debug log, the first line
    /// (plus a hint for 401) is the reason.
    fn new(e: &retina::Error, has_creds: bool) -> RtspError {
        let full = e.to_string();
        debug!(
            "RTSP error in full: {}",
            full.split_whitespace().collect::<Vec<_>>().join(" ")
        );
        let mut msg = full
            .split("\n\n")
            .next()
            .unwrap_or_default()
            .replace('\n', " ");
        let status = e.status_code();
        if status == Some(401) {
            msg += if has_creds {
                ": the camera refused the user name or password in the URL (percent-encode \
                 @ : / ? # % in them, e.g. @ as %40)"
            } else {
                ": the camera wants a user name and password: rtsp://USER:PASSWORD@HOST/PATH"
            };
        }
        RtspError { status, msg }
    }

    /// No request the camera answered this way will ever succeed: wrong
    /// credentials (401), access denied (403), wrong path (404).
    fn permanent(&self) -> bool {
        matches!(self.status, Some(401 | 403 | 404))
    }
}

/// Which streams of a DESCRIBE answer we use.
struct Picked {
    video: usize,
    codec: VideoCodec,
    audio: Option<(usize, Track)>,
    profile: Option<u32>,
    /// Why an audio stream is not forwarded (logged once, at startup).
    skipped_audio: Option<String>,
}

/// Credentials move from the URL's userinfo to RTSP authentication (Basic or
/// Digest, as the camera asks); the URL sent in requests carries none.
fn split_creds(raw: &str) -> Result<(url::Url, Option<Credentials>), Fail> {
    let mut url = url::Url::parse(raw).map_err(|e| Fail::usage(format!("RTSP URL: {e}")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Fail::usage(format!("RTSP URL without a host: {raw}")));
    }
    let creds = if url.username().is_empty() {
        None
    } else {
        // RFC 3986 §2.1 percent-decoding; `+` is a literal plus sign in
        // userinfo (not a space, as in form data).
        let dec = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Some(Credentials {
            username: dec(url.username()),
            password: dec(url.password().unwrap_or("")),
        })
    };
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok((url, creds))
}

/// The URL as safe to log (no password).
fn redacted(url: &url::Url) -> String {
    url.as_str().to_string()
}

fn pick(streams: &[retina::client::Stream]) -> Result<Picked, String> {
    let (mut h264, mut h265) = (None, None);
    let mut other_video = Vec::new();
    let mut audio = None;
    let mut audio_seen = Vec::new();
    let mut skipped_audio = None;
    for (i, s) in streams.iter().enumerate() {
        match (s.media(), s.encoding_name()) {
            ("video", "h264") if h264.is_none() => h264 = Some(i),
            ("video", "h265") if h265.is_none() => h265 = Some(i),
            ("video", enc) => other_video.push(enc.to_string()),
            ("audio", enc) => {
                audio_seen.push(format!("{enc}/{} Hz", s.clock_rate_hz()));
                match enc {
                    "pcmu" if audio.is_none() && s.clock_rate_hz() == 8000 => {
                        audio = Some((i, Track::Pcmu))
                    }
                    "pcma" if audio.is_none() && s.clock_rate_hz() == 8000 => {
                        audio = Some((i, Track::Pcma))
                    }
                    "opus" if audio.is_none() && s.clock_rate_hz() == 48_000 => {
                        audio = Some((i, Track::Opus))
                    }
                    _ if audio.is_none() && skipped_audio.is_none() => {
                        skipped_audio = Some(format!(
                            "camera audio is {enc}/{} Hz: not forwarded (WebRTC carries Opus or \
                             G.711 8 kHz; no transcoding here) — set the camera's audio to G.711 \
                             to hear it",
                            s.clock_rate_hz()
                        ))
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let (video, codec) = match (h264, h265) {
        (Some(i), _) => (i, VideoCodec::H264),
        (None, Some(i)) => (i, VideoCodec::H265),
        (None, None) if !other_video.is_empty() => {
            return Err(format!(
                "the camera's video is {}: whip-ingest publishes H.264 or H.265; set the \
                 camera's codec to H.264",
                other_video.join(", ")
            ));
        }
        (None, None) if !audio_seen.is_empty() => {
            return Err(format!(
                "the camera offers no video, only audio ({}): whip-ingest needs an H.264 or \
                 H.265 video stream",
                audio_seen.join(", ")
            ));
        }
        (None, None) => return Err("the camera offers no video stream".into()),
    };
    if audio.is_some() {
        skipped_audio = None;
    }
    let profile = match (codec, streams[video].parameters()) {
        (VideoCodec::H264, Some(ParametersRef::Video(v))) => profile_of(v.rfc6381_codec()),
        _ => None,
    };
    Ok(Picked {
        video,
        codec,
        audio,
        profile,
        skipped_audio,
    })
}

/// `avc1.PPCCLL` → `0xPPCCLL`.
fn profile_of(codec: &str) -> Option<u32> {
    let hex = codec.strip_prefix("avc1.")?;
    (hex.len() == 6).then(|| u32::from_str_radix(hex, 16).ok())?
}

/// DESCRIBE the camera to learn its streams. A camera that cannot be
/// reached yet (connection refused or timed out, name not resolved, no
/// answer, 5xx) is asked again with backoff, one warning per attempt, until
/// it answers or a signal stops the run (exit 0): after a power cut the
/// camera often boots later than the machine running this. What asking again
/// cannot fix ends the run at once with exit 3 and a one-line reason: wrong
/// or missing credentials (401), 403, 404, no H.264/H.265 video.
pub async fn open(
    raw_url: &str,
    transport: RtspTransport,
    stall: Duration,
) -> Result<(SourceInfo, RtspSource), Fail> {
    let (url, creds) = split_creds(raw_url)?;
    let mut src = RtspSource {
        url,
        creds,
        transport,
        stall,
        group: Arc::new(SessionGroup::default()),
        audio_clock: 8_000,
        described: None,
        refused: None,
    };
    let mut backoff = Backoff::default();
    // Both signals are listened to before the first request and throughout
    // (a signal while no listener exists would be lost, not a stop).
    let listen = |kind| signal(kind).map_err(|e| Fail::usage(e.to_string()));
    let mut int = listen(SignalKind::interrupt())?;
    let mut term = listen(SignalKind::terminate())?;
    let session = loop {
        let attempt = tokio::select! {
            r = src.describe() => r,
            _ = int.recv() => return Err(stopped()),
            _ = term.recv() => return Err(stopped()),
        };
        let e = match attempt {
            Ok(s) => break s,
            Err(e) => e,
        };
        if e.permanent() {
            return Err(Fail::source(format!(
                "RTSP DESCRIBE {}: {}",
                redacted(&src.url),
                e.msg
            )));
        }
        let delay = backoff.next_delay();
        warn!(
            "camera {}: DESCRIBE: {}; retrying in {:.1} s",
            redacted(&src.url),
            e.msg,
            delay.as_secs_f64()
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = int.recv() => return Err(stopped()),
            _ = term.recv() => return Err(stopped()),
        }
    };
    let p = pick(session.streams()).map_err(Fail::source)?;
    if let Some((_, Track::Opus)) = p.audio {
        src.audio_clock = 48_000;
    }
    if let Some(w) = &p.skipped_audio {
        warn!("{w}");
    }
    src.described = Some(session);
    let info = SourceInfo {
        describe: format!(
            "RTSP {} over {:?}: {}",
            redacted(&src.url),
            transport,
            p.codec.name()
        ),
        video: true,
        codec: p.codec,
        profile: p.profile,
        params: Vec::new(),
        audio: p.audio.map(|(_, t)| t),
        makes_keyframes: false,
    };
    Ok((info, src))
}

/// A signal before the camera ever answered: a clean stop (exit 0).
fn stopped() -> Fail {
    Fail {
        code: crate::cli::EXIT_OK,
        msg: "stopped before the camera answered".into(),
    }
}

impl RtspSource {
    /// Time for the camera to answer one request (DESCRIBE, SETUP, PLAY).
    fn request_timeout(&self) -> Duration {
        self.stall.max(Duration::from_secs(5))
    }

    /// DESCRIBE, bounded by [`RtspSource::request_timeout`]: a camera that
    /// accepts the connection and never answers (hung firmware, or a
    /// connection left half-open by a power cut) must not hold the source
    /// for ever.
    async fn describe(
        &self,
    ) -> Result<retina::client::Session<retina::client::Described>, RtspError> {
        let describe = retina::client::Session::describe(
            self.url.clone(),
            SessionOptions::default()
                .creds(self.creds.clone())
                .session_group(self.group.clone())
                .user_agent(concat!("whip-ingest/", env!("CARGO_PKG_VERSION")).into()),
        );
        self.timed(describe).await
    }

    /// Run an RTSP request with [`RtspSource::request_timeout`].
    async fn timed<T>(
        &self,
        req: impl std::future::Future<Output = Result<T, retina::Error>>,
    ) -> Result<T, RtspError> {
        match tokio::time::timeout(self.request_timeout(), req).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RtspError::new(&e, self.creds.is_some())),
            Err(_) => Err(RtspError {
                status: None,
                msg: format!(
                    "no answer within {:.0} s",
                    self.request_timeout().as_secs_f64()
                ),
            }),
        }
    }

    /// One RTSP session: DESCRIBE, SETUP, PLAY, then frames until it fails
    /// or stalls. Returns why it ended.
    async fn session(
        &mut self,
        tx: &mpsc::Sender<Media>,
        video_ts: &mut Rebase,
        audio_ts: &mut Rebase,
        healthy: &mut bool,
    ) -> String {
        let described = match self.described.take() {
            Some(s) => Ok(s),
            None => self.describe().await,
        };
        let mut session = match described {
            Ok(s) => s,
            Err(e) => {
                if matches!(e.status, Some(401 | 403)) {
                    self.refused = Some(e.msg.clone());
                }
                return format!("DESCRIBE: {}", e.msg);
            }
        };
        let p = match pick(session.streams()) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let transport = match self.transport {
            RtspTransport::Tcp => Transport::Tcp(TcpTransportOptions::default()),
            RtspTransport::Udp => Transport::Udp(UdpTransportOptions::default()),
        };
        let format = FrameFormat::MP4;
        let mut ids = vec![p.video];
        ids.extend(p.audio.map(|(i, _)| i));
        for &i in &ids {
            let opts = SetupOptions::default()
                .transport(transport.clone())
                .frame_format(format);
            if let Err(e) = self.timed(session.setup(i, opts)).await {
                return format!("SETUP: {}", e.msg);
            }
        }
        let playing = match self.timed(session.play(PlayOptions::default())).await {
            Ok(s) => s,
            Err(e) => return format!("PLAY: {}", e.msg),
        };
        if matches!(p.audio, Some((_, Track::Opus))) {
            return self
                .raw_session(playing, &p, tx, video_ts, audio_ts, healthy)
                .await;
        }
        let mut demuxed = match playing.demuxed() {
            Ok(d) => d,
            Err(e) => return format!("PLAY: {}", RtspError::new(&e, false).msg),
        };
        info!("RTSP playing {}", redacted(&self.url));
        // SPS/PPS (H.265: VPS/SPS/PPS) from the SDP's sprop-* parameters
        // (most cameras send them only there); replaced when the stream
        // carries new ones in band.
        let mut params: Vec<Vec<u8>> = match demuxed.streams()[p.video].parameters() {
            Some(ParametersRef::Video(v)) => video_params(v),
            _ => Vec::new(),
        };
        loop {
            let item = match tokio::time::timeout(self.stall, demuxed.next()).await {
                Err(_) => {
                    return format!(
                        "camera silent for {:.1} s (stall timeout)",
                        self.stall.as_secs_f64()
                    );
                }
                Ok(None) => return "RTSP session ended".into(),
                Ok(Some(Err(e))) => return format!("RTSP: {}", RtspError::new(&e, false).msg),
                Ok(Some(Ok(i))) => i,
            };
            let now = Instant::now();
            match item {
                CodecItem::VideoFrame(f) if f.stream_id() == p.video => {
                    if f.has_new_parameters()
                        && let Some(ParametersRef::Video(v)) =
                            demuxed.streams()[p.video].parameters()
                    {
                        params = video_params(v);
                    }
                    let ts = video_ts.map(f.timestamp().timestamp() as u32, now);
                    let frame = length_prefixed(f.data());
                    let keyframe = starts_gop(p.codec, f.is_random_access_point(), &frame);
                    let frame = access_unit(p.codec, ts, keyframe, &params, frame);
                    if frame.nals.is_empty() {
                        continue;
                    }
                    if !*healthy {
                        *healthy = true;
                        if tx.send(Media::Resumed).await.is_err() {
                            return String::new();
                        }
                    }
                    if tx.send(Media::Video(frame)).await.is_err() {
                        return String::new();
                    }
                }
                CodecItem::AudioFrame(f) if Some(f.stream_id()) == p.audio.map(|a| a.0) => {
                    let ts = audio_ts.map(f.timestamp().timestamp() as u32, now);
                    let payload: Arc<[u8]> = Arc::from(f.data());
                    if tx
                        .send(Media::Audio {
                            ts,
                            marker: false,
                            payload,
                        })
                        .await
                        .is_err()
                    {
                        return String::new();
                    }
                }
                _ => {}
            }
        }
    }

    /// The raw-packet path, used when the camera's audio is Opus: retina's
    /// demuxer has no Opus depacketizer (and refuses a session with a stream
    /// it cannot depacketize), so RTP packets are taken as they arrive; H.264
    /// or H.265 video is depacketized here ([`H264Depacketizer`], RFC 6184 /
    /// RFC 7798) and Opus payloads (RFC 7587) pass through unchanged.
    /// Returns why it ended.
    async fn raw_session(
        &self,
        mut playing: retina::client::Session<retina::client::Playing>,
        p: &Picked,
        tx: &mpsc::Sender<Media>,
        video_ts: &mut Rebase,
        audio_ts: &mut Rebase,
        healthy: &mut bool,
    ) -> String {
        let hevc = p.codec == VideoCodec::H265;
        info!(
            "RTSP playing {} ({} + Opus, raw RTP)",
            redacted(&self.url),
            if hevc { "H.265" } else { "H.264" }
        );
        // SPS/PPS from the SDP's sprop-parameter-sets; in-band ones are
        // learnt by the publisher's parameter cache.
        let params: Vec<Vec<u8>> = match playing.streams()[p.video].parameters() {
            Some(ParametersRef::Video(v)) => video_params(v),
            _ => Vec::new(),
        };
        let audio = p.audio.map(|a| a.0);
        let mut depay = if hevc {
            H264Depacketizer::h265()
        } else {
            H264Depacketizer::new()
        };
        let mut frames = Vec::new();
        let mut depay_errors = 0u64;
        loop {
            let pkt = match tokio::time::timeout(self.stall, playing.next()).await {
                Err(_) => {
                    return format!(
                        "camera silent for {:.1} s (stall timeout)",
                        self.stall.as_secs_f64()
                    );
                }
                Ok(None) => return "RTSP session ended".into(),
                Ok(Some(Err(e))) => return format!("RTSP: {}", RtspError::new(&e, false).msg),
                Ok(Some(Ok(PacketItem::Rtp(pkt)))) => pkt,
                Ok(Some(Ok(_))) => continue,
            };
            let now = Instant::now();
            let ts = pkt.timestamp().timestamp() as u32;
            if pkt.stream_id() == p.video {
                if let Err(e) = depay.push(
                    pkt.sequence_number(),
                    ts,
                    pkt.mark(),
                    pkt.payload(),
                    &mut frames,
                ) {
                    depay_errors += 1;
                    if depay_errors == 1 {
                        warn!("camera video RTP: {e} (further errors counted silently)");
                    }
                }
                for f in frames.drain(..) {
                    let ts = video_ts.map(f.ts, now);
                    let frame = access_unit(p.codec, ts, f.keyframe, &params, f.nals);
                    if frame.nals.is_empty() {
                        continue;
                    }
                    if !*healthy {
                        *healthy = true;
                        if tx.send(Media::Resumed).await.is_err() {
                            return String::new();
                        }
                    }
                    if tx.send(Media::Video(frame)).await.is_err() {
                        return String::new();
                    }
                }
            } else if Some(pkt.stream_id()) == audio && !pkt.payload().is_empty() {
                let media = Media::Audio {
                    ts: audio_ts.map(ts, now),
                    marker: pkt.mark(),
                    payload: Arc::from(pkt.payload()),
                };
                if tx.send(media).await.is_err() {
                    return String::new();
                }
            }
        }
    }

    /// Pull the camera until the receiver is gone, reconnecting with backoff.
    pub async fn run(mut self, tx: mpsc::Sender<Media>) {
        let mut video_ts = Rebase::new(90_000);
        let mut audio_ts = Rebase::new(self.audio_clock);
        let mut backoff = Backoff::default();
        let mut healthy = true;
        loop {
            let began = Instant::now();
            let why = self
                .session(&tx, &mut video_ts, &mut audio_ts, &mut healthy)
                .await;
            if tx.is_closed() {
                return;
            }
            if let Some(msg) = self.refused.take() {
                // The camera's password was changed: asking again cannot
                // help (and some cameras lock the account after a few
                // failed logins).
                let msg = format!("RTSP DESCRIBE {}: {msg}", redacted(&self.url));
                let _ = tx.send(Media::Failed(msg)).await;
                return;
            }
            // A session that ran for a while was a stable period: start the
            // backoff from its minimum again.
            if began.elapsed() > Duration::from_secs(10) {
                backoff.reset();
            }
            video_ts.reset();
            audio_ts.reset();
            let delay = backoff.next_delay();
            warn!(
                "camera {}: {why}; reconnecting in {:.1} s",
                redacted(&self.url),
                delay.as_secs_f64()
            );
            if healthy && tx.send(Media::Stalled(why)).await.is_err() {
                return;
            }
            healthy = false;
            tokio::time::sleep(delay).await;
            debug!("RTSP reconnect attempt");
        }
    }
}

/// An access unit for the publisher: at a keyframe, the parameter sets
/// (`params`: SPS/PPS, or VPS/SPS/PPS) that `nals` lacks go in front of it,
/// in that order (H.264 §7.4.1.2.3, H.265 §7.4.2.4.4), so every IDR/IRAP is
/// decodable on its own even when the camera sends them only in the SDP.
fn access_unit(
    codec: VideoCodec,
    ts: u32,
    keyframe: bool,
    params: &[Vec<u8>],
    nals: Vec<Vec<u8>>,
) -> VideoFrame {
    let kind = |n: &[u8]| match codec {
        VideoCodec::H265 => h265_type(n),
        _ => crate::media::nal_type(n),
    };
    let mut out = Vec::with_capacity(params.len() + nals.len());
    if keyframe {
        out.extend(
            params
                .iter()
                .filter(|ps| !nals.iter().any(|n| kind(n) == kind(ps)))
                .cloned(),
        );
    }
    out.extend(nals);
    match codec {
        VideoCodec::H265 => VideoFrame::h265(ts, out),
        _ => VideoFrame::new(ts, out),
    }
}

/// True when an access unit can start decoding: retina's random-access flag,
/// or for H.265 any IRAP picture (BLA, IDR or CRA: `nal_unit_type` 16..=23,
/// H.265 §7.4.2.2). retina 0.4 counts only IDR pictures, so the CRA pictures
/// an open-GOP encoder (x265's default) starts its GOPs with got no parameter
/// sets in front and a viewer starting there could not decode.
fn starts_gop(codec: VideoCodec, retina_rap: bool, nals: &[Vec<u8>]) -> bool {
    retina_rap
        || (codec == VideoCodec::H265 && nals.iter().any(|n| (16..=23).contains(&h265_type(n))))
}

/// The parameter sets to put in front of keyframes: H.264 SPS/PPS (from the
/// `avcC` record), H.265 VPS, SPS, PPS (in that order).
fn video_params(v: &retina::codec::VideoParameters) -> Vec<Vec<u8>> {
    match v.codec_params() {
        VideoParametersCodec::H265 { vps, sps, pps } => [vps, sps, pps]
            .into_iter()
            .filter(|n| !n.is_empty())
            .map(|n| n.to_vec())
            .collect(),
        _ => avcc_params(v.extra_data()),
    }
}

/// SPS and PPS from an `avcC` record (ISO 14496-15 §5.3.3.1).
fn avcc_params(avcc: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Some(&n_sps) = avcc.get(5) else {
        return out;
    };
    let mut i = 6;
    let take = |i: &mut usize, out: &mut Vec<Vec<u8>>| -> bool {
        let Some(len) = avcc.get(*i..*i + 2) else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let Some(nal) = avcc.get(*i + 2..*i + 2 + len) else {
            return false;
        };
        out.push(nal.to_vec());
        *i += 2 + len;
        true
    };
    for _ in 0..(n_sps & 0x1f) {
        if !take(&mut i, &mut out) {
            return out;
        }
    }
    let Some(&n_pps) = avcc.get(i) else {
        return out;
    };
    i += 1;
    for _ in 0..n_pps {
        if !take(&mut i, &mut out) {
            break;
        }
    }
    out
}

/// NAL units of a 4-byte length-prefixed access unit (malformed tails dropped).
fn length_prefixed(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let Some(nal) = b.get(4..4 + len) else { break };
        if !nal.is_empty() {
            out.push(nal.to_vec());
        }
        b = &b[4 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_leave_the_url() {
        let (u, c) = split_creds("rtsp://admin:p%40ss@192.0.2.1:554/stream1").unwrap();
        assert_eq!(u.as_str(), "rtsp://192.0.2.1:554/stream1");
        let c = c.unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("admin", "p@ss")
        );
        assert!(split_creds("rtsp:///x").is_err());
        assert!(split_creds("rtsp://cam/x").unwrap().1.is_none());
    }

    #[test]
    fn h265_cra_pictures_get_parameter_sets() {
        let params = vec![vec![0x40, 1, 0xa], vec![0x42, 1, 0xb], vec![0x44, 1, 0xc]];
        let cra = vec![vec![0x4e, 1, 5], vec![0x2a, 1, 0xaf]]; // SEI, CRA_NUT
        assert!(starts_gop(VideoCodec::H265, false, &cra));
        let f = access_unit(VideoCodec::H265, 9, true, &params, cra);
        let types: Vec<u8> = f.nals.iter().map(|n| h265_type(n)).collect();
        assert_eq!(types, vec![32, 33, 34, 39, 21]);
        assert!(!starts_gop(VideoCodec::H265, false, &[vec![0x02, 1, 0xd0]])); // TRAIL_R
        assert!(!starts_gop(VideoCodec::H264, false, &[vec![0x41, 0x9a]]));
        assert!(starts_gop(VideoCodec::H264, true, &[vec![0x65, 0x88]]));
    }

    #[test]
    fn avcc_and_length_prefixed() {
        let avcc = [
            1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 9,
        ];
        assert_eq!(avcc_params(&avcc), vec![vec![0x67, 1, 2], vec![0x68, 9]]);
        assert!(avcc_params(&avcc[..9]).is_empty());
        let au = [0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x41, 0, 0, 0, 9, 1];
        assert_eq!(length_prefixed(&au), vec![vec![0x65, 1], vec![0x41]]);
        assert_eq!(profile_of("avc1.4D401E"), Some(0x4d401e));
        assert_eq!(profile_of("hvc1.1"), None);
    }
}
