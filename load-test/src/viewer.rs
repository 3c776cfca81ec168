//! One WHEP viewer: joins with `sfu::client::Session::play` and accounts what
//! it receives from RTP headers and payload starts only (no decoding).
//!
//! Viewers offer H.264 (several profiles) + Opus, or, for a stream found by
//! [`probe_video_codec`] to be VP8, VP9, AV1 or H.265, that codec + Opus. Loss,
//! bitrate and TTFF work for every codec; latency needs the H.264 SEI that
//! only our own publisher sends.

use crate::sei;
use sfu::client::{
    ClientEvent, Feedback, HeaderSink, NoCommonCodec, Options, Received, Refused, Session,
};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::IceConnectionState;
use str0m::format::Codec;
use str0m::media::MediaKind;
use tokio::sync::{mpsc, watch};

/// How long a join may take: POST + answer, then ICE + DTLS.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a viewer is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// POST sent, not connected yet.
    Joining,
    /// ICE + DTLS up.
    Connected,
    /// Setup failed: HTTP status (`"409"`) or a cause (`"timeout"`,
    /// `"ice-timeout"`, `"dtls-timeout"`, `"no-common-codec"`, `"error"`).
    Failed(String),
    /// The session ended after connecting.
    Closed,
}

/// Sequence accounting for one RTP stream within the measurement window.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeqCount {
    lo: Option<u64>,
    hi: u64,
    /// Packets received.
    pub received: u64,
    /// Payload bytes received.
    pub bytes: u64,
}

impl SeqCount {
    fn on(&mut self, seq: u64, len: usize) {
        match self.lo {
            None => {
                self.lo = Some(seq);
                self.hi = seq;
            }
            Some(lo) => {
                self.lo = Some(lo.min(seq));
                self.hi = self.hi.max(seq);
            }
        }
        self.received += 1;
        self.bytes += len as u64;
    }

    /// Packets expected: highest − lowest + 1 after the first packet.
    pub fn expected(&self) -> u64 {
        self.lo.map_or(0, |lo| self.hi - lo + 1)
    }

    /// Packets missing (never negative).
    pub fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }
}

/// Everything one viewer measured.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Life cycle.
    pub state: State,
    /// When the POST was sent.
    pub post_at: Instant,
    /// POST → connected.
    pub connect: Option<Duration>,
    /// POST → first video packet of a keyframe.
    pub first_key_packet: Option<Duration>,
    /// POST → first complete keyframe access unit.
    pub first_frame: Option<Duration>,
    /// Window counters: video.
    pub video: SeqCount,
    /// Window counters: audio.
    pub audio: SeqCount,
    /// Window: per-frame added latency (send → last packet), ms.
    pub frame_latency_ms: Vec<f32>,
    /// Window: per-packet latency of the SEI packet (send → arrival), ms.
    pub packet_latency_ms: Vec<f32>,
    /// Measurement window on (latency samples are kept).
    pub measuring: bool,
    /// Header-only accounting since the first complete keyframe (no SRTP
    /// decryption; loss and bitrate from RTP headers, no latency samples).
    pub header_only: bool,
    /// Highest extended sequence number seen per kind (video, audio),
    /// across windows: extends the 16-bit ones of header-only packets.
    last_seq: [Option<u64>; 2],
    /// RTCP feedback (NACK, PLI, FIR) this viewer sent since it joined, as
    /// its session last reported it (once a second).
    pub feedback: Feedback,
}

/// Extend a 16-bit RTP sequence number (RFC 3550 §A.1) to the 64-bit one
/// nearest `last` (the highest extended number seen so far).
pub fn extend_seq(last: Option<u64>, seq: u16) -> u64 {
    match last {
        None => seq as u64,
        Some(l) => {
            let d = seq.wrapping_sub(l as u16) as i16 as i64;
            (l as i64 + d).max(0) as u64
        }
    }
}

/// Header-only accounting of one viewer ([`Session::header_only`]).
struct Lean(Arc<Mutex<Stats>>);

impl HeaderSink for Lean {
    fn on_rtp(&self, kind: MediaKind, seq: u16, payload_len: usize, _at: Instant) {
        let mut st = self.0.lock().unwrap();
        st.count(kind, None, seq, payload_len);
    }
}

impl Stats {
    /// Fresh stats of a viewer whose POST is sent at `post_at`.
    pub fn new(post_at: Instant) -> Stats {
        Stats {
            state: State::Joining,
            post_at,
            connect: None,
            first_key_packet: None,
            first_frame: None,
            video: SeqCount::default(),
            audio: SeqCount::default(),
            frame_latency_ms: Vec::new(),
            packet_latency_ms: Vec::new(),
            measuring: false,
            header_only: false,
            last_seq: [None; 2],
            feedback: Feedback::default(),
        }
    }

    /// Count one packet of `kind` with extended sequence number `ext` (full
    /// path) or 16-bit `seq` (header-only) and `len` payload bytes.
    fn count(&mut self, kind: MediaKind, ext: Option<u64>, seq: u16, len: usize) {
        let k = usize::from(kind == MediaKind::Audio);
        let ext = ext.unwrap_or_else(|| extend_seq(self.last_seq[k], seq));
        self.last_seq[k] = Some(self.last_seq[k].map_or(ext, |l| l.max(ext)));
        match kind {
            MediaKind::Video => self.video.on(ext, len),
            MediaKind::Audio => self.audio.on(ext, len),
        }
    }

    /// Start a new measurement window: clear window counters.
    pub fn start_window(&mut self) {
        self.video = SeqCount::default();
        self.audio = SeqCount::default();
        self.frame_latency_ms.clear();
        self.packet_latency_ms.clear();
        self.measuring = true;
    }
}

/// The video codec of the stream at `endpoint` when it is VP8, VP9, AV1 or
/// H.265. A throw-away WHEP session with the default offer (H.264 + Opus)
/// comes first, closed at once: if its answer accepts the video m-line the
/// stream is H.264 and `None` is returned, so a server log shows no refused
/// probe for the common case. Refused (e.g. `422`) or answered without
/// video, a second one offers VP8, VP9, AV1 and H.265 (and Opus). `None`
/// also for a stream without video or when both fail (the viewers then
/// report why).
///
/// Two probes, not one offer of all codecs: `sfu::client` gives H.264 and
/// VP8/VP9/H.265 the same payload type numbers (96..103), so one offer
/// cannot carry H.264 with them.
pub async fn probe_video_codec(endpoint: &str, opts: Options) -> Option<Codec> {
    use sfu::client::Track as T;
    if let Some(Some(_)) = probe(endpoint, opts.clone()).await {
        return None;
    }
    let others = Options {
        tracks: vec![T::Opus, T::Vp8, T::Vp9, T::Av1, T::H265],
        ..opts
    };
    probe(endpoint, others)
        .await
        .flatten()
        .filter(|c| matches!(c, Codec::Vp8 | Codec::Vp9 | Codec::Av1 | Codec::H265))
}

/// One throw-away WHEP session with `opts`: `Some(its answer's video
/// codec)` when accepted (closed at once), `None` when refused or not
/// answered within [`JOIN_TIMEOUT`].
async fn probe(endpoint: &str, opts: Options) -> Option<Option<Codec>> {
    let s = match tokio::time::timeout(JOIN_TIMEOUT, Session::play(endpoint, opts)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!("codec probe: {e:#}");
            return None;
        }
        Err(_) => {
            tracing::debug!("codec probe: no answer within {JOIN_TIMEOUT:?}");
            return None;
        }
    };
    let codec = answer_video_codec(&s.answer);
    let _ = tokio::time::timeout(Duration::from_secs(5), s.close()).await;
    Some(codec)
}

/// The codec of the first accepted (port not 0) video m-line of an SDP
/// answer: its first payload type's `a=rtpmap` name.
pub fn answer_video_codec(sdp: &str) -> Option<Codec> {
    let mut pt: Option<&str> = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            if pt.is_some() {
                return None; // the accepted video m-line had no rtpmap
            }
            let f: Vec<&str> = m.split_whitespace().collect();
            if f.len() > 3 && f[0] == "video" && f[1] != "0" {
                pt = Some(f[3]);
            }
        } else if let (Some(want), Some(map)) = (pt, line.strip_prefix("a=rtpmap:"))
            && let Some((p, name)) = map.split_once(' ')
            && p == want
        {
            let name = name.split('/').next().unwrap_or_default();
            return match name.to_ascii_uppercase().as_str() {
                "H264" => Some(Codec::H264),
                "H265" => Some(Codec::H265),
                "VP8" => Some(Codec::Vp8),
                "VP9" => Some(Codec::Vp9),
                "AV1" => Some(Codec::Av1),
                _ => None,
            };
        }
    }
    None
}

/// The tracks a viewer offers for a stream whose video is `codec`: H.264
/// (and anything else) gets the default offer, H.264 profiles + Opus.
pub fn offer_tracks(codec: Codec) -> Vec<sfu::client::Track> {
    use sfu::client::Track as T;
    match codec {
        Codec::Vp8 => vec![T::Opus, T::Vp8],
        Codec::Vp9 => vec![T::Opus, T::Vp9],
        Codec::Av1 => vec![T::Opus, T::Av1],
        Codec::H265 => vec![T::Opus, T::H265],
        _ => Options::default().tracks,
    }
}

/// Whether a VP8, VP9 or AV1 payload is the first packet of a key frame
/// (VP8: S=1, PID=0 and a key frame header; VP9: B=1 and P=0; AV1: N=1,
/// the start of a coded video sequence).
fn starts_keyframe(codec: Codec, p: &[u8]) -> bool {
    match codec {
        Codec::Vp9 => p.first().is_some_and(|b| b & 0x08 != 0 && b & 0x40 == 0),
        c => sfu::media::starts_keyframe(c, p),
    }
}

/// Per-viewer state that only its task touches.
struct Track {
    /// Video codec received (H.264: NAL units and SEI are looked at).
    codec: Codec,
    /// Frame assembly for TTFF.
    cur_ts: Option<u32>,
    cur_ok: bool,
    cur_idr: bool,
    last_seq: Option<u64>,
    last_marker: bool,
    /// Pending SEI timestamp: (rtp ts, send instant).
    pending: Option<(u32, Instant)>,
}

/// NAL type of a payload's first NAL unit (FU-A: the fragmented unit's type
/// and whether this is its start fragment).
fn first_nal(p: &[u8]) -> (u8, bool) {
    match p.first().map(|b| b & 0x1f) {
        Some(28) => (
            p.get(1).map_or(0, |b| b & 0x1f),
            p.get(1).is_some_and(|b| b & 0x80 != 0),
        ),
        Some(24) => (p.get(3).map_or(0, |b| b & 0x1f), true),
        Some(t) => (t, true),
        None => (0, false),
    }
}

fn has_idr(p: &[u8]) -> bool {
    match p.first().map(|b| b & 0x1f) {
        Some(24) => stap_a_has_idr(p),
        _ => first_nal(p).0 == 5,
    }
}

/// Whether a STAP-A payload (RFC 6184 §5.7.1; `p[0]` is the STAP-A header)
/// aggregates an IDR slice (NAL type 5). Truncated input ends the scan.
pub(crate) fn stap_a_has_idr(p: &[u8]) -> bool {
    let mut i = 1;
    while i + 2 < p.len() {
        let n = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
        if p[i + 2] & 0x1f == 5 {
            return true;
        }
        i += 2 + n;
    }
    false
}

impl Track {
    fn new(codec: Codec) -> Track {
        Track {
            codec,
            cur_ts: None,
            cur_ok: false,
            cur_idr: false,
            last_seq: None,
            last_marker: false,
            pending: None,
        }
    }

    fn on_video(&mut self, r: &Received, st: &mut Stats, epoch: Instant) {
        let h264 = self.codec == Codec::H264;
        // (starts a keyframe, carries keyframe data, starts an access unit)
        let (key_start, key, au_start) = if h264 {
            let (nal, start) = first_nal(&r.payload);
            (
                start && matches!(nal, 5 | 7),
                has_idr(&r.payload),
                start && matches!(nal, 5..=9),
            )
        } else {
            let k = starts_keyframe(self.codec, &r.payload);
            (k, k, k)
        };
        if st.first_key_packet.is_none() && (key_start || key) {
            st.first_key_packet = Some(r.at.saturating_duration_since(st.post_at));
        }
        // Frame assembly (TTFF to a complete keyframe).
        let contiguous = self.last_seq.is_some_and(|s| r.seq == s + 1);
        if self.cur_ts != Some(r.ts) {
            self.cur_ts = Some(r.ts);
            self.cur_ok = (contiguous && self.last_marker) || (self.last_seq.is_none() && au_start);
            self.cur_idr = false;
        } else if !contiguous {
            self.cur_ok = false;
        }
        self.cur_idr |= key;
        if r.marker && self.cur_ok && self.cur_idr && st.first_frame.is_none() {
            st.first_frame = Some(r.at.saturating_duration_since(st.post_at));
        }
        self.last_seq = Some(r.seq.max(self.last_seq.unwrap_or(0)));
        self.last_marker = r.marker;
        // Latency (our publisher's SEI, H.264 only).
        if let Some(ns) = sei::parse_rtp_payload(&r.payload).filter(|_| h264) {
            let sent = epoch + Duration::from_nanos(ns);
            // Frames sent before this viewer joined are replays (GOP cache):
            // their delay is not added latency.
            if sent >= st.post_at {
                self.pending = Some((r.ts, sent));
                if st.measuring {
                    let ms = r.at.saturating_duration_since(sent).as_secs_f32() * 1e3;
                    st.packet_latency_ms.push(ms);
                }
            } else {
                self.pending = None;
            }
        }
        if r.marker
            && let Some((ts, sent)) = self.pending
            && ts == r.ts
        {
            self.pending = None;
            if st.measuring {
                let ms = r.at.saturating_duration_since(sent).as_secs_f32() * 1e3;
                st.frame_latency_ms.push(ms);
            }
        }
        st.count(MediaKind::Video, Some(r.seq), r.seq as u16, r.payload.len());
    }
}

/// A connected viewer handed to a [`group`] task.
pub struct Slot {
    session: Session,
    stats: Arc<Mutex<Stats>>,
    track: Track,
    /// Stays on full accounting (SRTP, SEI latency, NACKs) for good.
    sample: bool,
}

/// Join one viewer: POST the offer, wait for ICE + DTLS (both bounded by
/// [`JOIN_TIMEOUT`]). On failure the cause lands in `stats` and the result
/// is `None`. A `sample` viewer keeps full accounting; the others switch to
/// header-only accounting after their first complete keyframe. `codec` is
/// the video codec `opts` offers (see [`offer_tracks`]).
pub async fn join(
    endpoint: String,
    opts: Options,
    codec: Codec,
    stats: Arc<Mutex<Stats>>,
    sample: bool,
) -> Option<Slot> {
    let post_at = Instant::now();
    *stats.lock().unwrap() = Stats::new(post_at);
    let fail = |why: String| stats.lock().unwrap().state = State::Failed(why);
    let mut s = match tokio::time::timeout(JOIN_TIMEOUT, Session::play(&endpoint, opts)).await {
        Err(_) => {
            fail("timeout".into());
            return None;
        }
        Ok(Err(e)) => {
            let why = match e.downcast_ref::<Refused>() {
                Some(r) => r.status.to_string(),
                None if e.downcast_ref::<NoCommonCodec>().is_some() => {
                    // Every viewer gets the same answer: say it once.
                    static SAID: std::sync::atomic::AtomicBool =
                        std::sync::atomic::AtomicBool::new(false);
                    if !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        tracing::warn!("join failed: {e}");
                    }
                    "no-common-codec".into()
                }
                None => {
                    tracing::debug!("join failed: {e:#}");
                    "error".into()
                }
            };
            fail(why);
            return None;
        }
        Ok(Ok(s)) => s,
    };
    let left = JOIN_TIMEOUT.saturating_sub(post_at.elapsed());
    let connected = tokio::time::timeout(left, async {
        loop {
            match s.events.recv().await {
                Some(ClientEvent::Connected) => return true,
                Some(ClientEvent::Closed(_)) | None => return false,
                Some(_) => {}
            }
        }
    })
    .await;
    if connected != Ok(true) {
        let ice_up = matches!(
            *s.ice.borrow(),
            IceConnectionState::Connected | IceConnectionState::Completed
        );
        fail(
            match connected {
                Err(_) if ice_up => crate::report::DTLS_TIMEOUT,
                Err(_) => "ice-timeout",
                Ok(_) => "closed",
            }
            .into(),
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), s.close()).await;
        return None;
    }
    {
        let mut st = stats.lock().unwrap();
        st.state = State::Connected;
        st.connect = Some(post_at.elapsed());
    }
    Some(Slot {
        session: s,
        stats,
        track: Track::new(codec),
        sample,
    })
}

/// How often a group drains its viewers' events. Arrival times are taken
/// by each session's task when the datagram is read, so batching here does
/// not change the measured latency; it halves task wake-ups per packet.
const DRAIN_EVERY: Duration = Duration::from_millis(5);

/// Drain one viewer's pending events; false once its session ended.
fn drain(slot: &mut Slot, epoch: Instant) -> bool {
    let mut st = slot.stats.lock().unwrap();
    if slot.session.feedback.has_changed().unwrap_or(false) {
        st.feedback = *slot.session.feedback.borrow_and_update();
    }
    loop {
        match slot.session.events.try_recv() {
            Ok(ClientEvent::Rtp(r)) => match r.kind {
                MediaKind::Video => {
                    slot.track.on_video(&r, &mut st, epoch);
                    if !slot.sample && !st.header_only && st.first_frame.is_some() {
                        st.header_only = true;
                        slot.session.header_only(Arc::new(Lean(slot.stats.clone())));
                    }
                }
                MediaKind::Audio => {
                    st.count(MediaKind::Audio, Some(r.seq), r.seq as u16, r.payload.len())
                }
            },
            Ok(ClientEvent::Closed(_)) | Err(mpsc::error::TryRecvError::Disconnected) => {
                st.state = State::Closed;
                return false;
            }
            Ok(_) => {}
            Err(mpsc::error::TryRecvError::Empty) => return true,
        }
    }
}

/// Account the media of the viewers sent to `rx` until `stop` turns true,
/// then close them all (DELETE, bounded in time).
pub async fn group(
    mut rx: mpsc::UnboundedReceiver<Slot>,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) {
    let mut slots: Vec<Slot> = Vec::new();
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                while let Ok(s) = rx.try_recv() {
                    slots.push(s);
                }
                slots.retain_mut(|s| drain(s, epoch));
            }
            r = stop.changed() => if r.is_err() || *stop.borrow() { break },
        }
    }
    // Late joiners still on their way in are closed too.
    rx.close();
    while let Some(s) = rx.recv().await {
        slots.push(s);
    }
    let mut closing = tokio::task::JoinSet::new();
    for s in slots {
        closing.spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), s.session.close()).await;
        });
    }
    while closing.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_from_gaps() {
        let mut c = SeqCount::default();
        for s in [10u64, 11, 13, 14, 12, 17] {
            c.on(s, 100);
        }
        assert_eq!(c.expected(), 8);
        assert_eq!(c.received, 6);
        assert_eq!(c.lost(), 2);
    }

    #[test]
    fn sequence_numbers_extend_across_wraps() {
        assert_eq!(extend_seq(None, 65535), 65535);
        assert_eq!(extend_seq(Some(65535), 0), 65536);
        assert_eq!(extend_seq(Some(65536), 65535), 65535);
        assert_eq!(extend_seq(Some(3 * 65536 + 10), 5), 3 * 65536 + 5);
        assert_eq!(extend_seq(Some(3), 65530), 0);
    }

    #[test]
    fn codec_of_the_answer() {
        let answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 98 99\r\na=rtpmap:98 VP9/90000\r\na=rtpmap:99 rtx/90000\r\n";
        assert_eq!(answer_video_codec(answer), Some(Codec::Vp9));
        let rejected = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\n";
        assert_eq!(answer_video_codec(rejected), None, "port 0: rejected");
        assert_eq!(
            answer_video_codec("m=video 9 RTP/SAVPF 45\na=rtpmap:45 AV1/90000\n"),
            Some(Codec::Av1)
        );
        assert_eq!(answer_video_codec(""), None);
        assert_eq!(offer_tracks(Codec::Av1).len(), 2);
        assert_eq!(
            offer_tracks(Codec::H265),
            [sfu::client::Track::Opus, sfu::client::Track::H265]
        );
        assert_eq!(offer_tracks(Codec::H264), Options::default().tracks);
    }

    /// Feed `pkts` (payload, marker) with one timestamp per frame, 30 fps.
    fn feed(codec: Codec, frames: &[Vec<(Vec<u8>, bool)>]) -> Stats {
        let epoch = Instant::now();
        let mut st = Stats::new(epoch);
        let mut t = Track::new(codec);
        let mut seq = 100;
        for (i, f) in frames.iter().enumerate() {
            for (p, marker) in f {
                let r = Received {
                    kind: MediaKind::Video,
                    seq,
                    ts: 3000 * i as u32,
                    marker: *marker,
                    pt: 96,
                    payload: Arc::from(p.as_slice()),
                    at: Instant::now(),
                };
                t.on_video(&r, &mut st, epoch);
                seq += 1;
            }
        }
        st
    }

    #[test]
    fn first_frame_of_vp8_vp9_av1() {
        // VP8: S=1 PID=0, frame tag P=0 (key) or 1 (inter).
        let vp8_key = vec![0x10, 0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a];
        let vp8_inter = vec![0x10, 0x01, 0x00, 0x00];
        // VP9: B=1 (frame start), P=0 key / 1 inter; E=1 ends the frame.
        let (vp9_key, vp9_mid, vp9_inter) = (vec![0x08, 0], vec![0x04, 0], vec![0x4c, 0]);
        // AV1: N=1 starts a coded video sequence.
        let (av1_key, av1_more, av1_inter) = (vec![0x18, 0], vec![0x90, 0], vec![0x10, 0]);
        for (codec, inter, key) in [
            (
                Codec::Vp8,
                vp8_inter,
                vec![(vp8_key, false), (vec![0x00, 1], true)],
            ),
            (
                Codec::Vp9,
                vp9_inter,
                vec![(vp9_key, false), (vp9_mid, true)],
            ),
            (
                Codec::Av1,
                av1_inter,
                vec![(av1_key, false), (av1_more, true)],
            ),
        ] {
            let st = feed(
                codec,
                &[vec![(inter.clone(), true)], key, vec![(inter, true)]],
            );
            assert!(st.first_key_packet.is_some(), "{codec:?}");
            assert!(st.first_frame.is_some(), "{codec:?}: TTFF");
            assert_eq!(st.video.received, 4, "{codec:?}");
        }
        // Without a key frame there is no first frame.
        let st = feed(Codec::Vp9, &vec![vec![(vec![0x4c, 0], true)]; 3]);
        assert!(st.first_frame.is_none());
    }

    #[test]
    fn nal_kinds() {
        assert_eq!(first_nal(&[0x7c, 0x85, 1]), (5, true));
        assert_eq!(first_nal(&[0x7c, 0x05, 1]), (5, false));
        assert!(has_idr(&[24, 0, 2, 0x67, 1, 0, 2, 0x65, 0]));
        assert!(!has_idr(&[0x41, 0x9a]));
    }
}
