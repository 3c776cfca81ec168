//! Per-peer state owned by a worker: the str0m `Rtc` plus our forwarding state.

use crate::codecs::Chosen;
use crate::config::GopSettings;
use crate::forward::{AutoLayer, GopCache, KeyframeThrottle, KeyframeWaiter, LayerGate, Rewrite};
use crate::media::{KeyframeStart, MediaPacket};
use crate::registry::Publication;
use crate::stats::{SessionStats, StatsFolder};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::Rtc;
use str0m::format::Codec;
use str0m::media::{Mid, Pt};
use str0m::rtp::Ssrc;

/// Minimum spacing of keyframe requests sent to one publisher track.
pub const KEYFRAME_MIN_INTERVAL: Duration = Duration::from_millis(500);
/// Retry spacing while a viewer still waits for its first keyframe.
pub const KEYFRAME_RETRY: Duration = Duration::from_secs(1);

/// A publisher track as the publisher's worker sees it.
#[derive(Debug)]
pub struct PubTrack {
    /// The m-line's mid.
    pub mid: Mid,
    /// Codec.
    pub codec: Codec,
    /// Throttle for PLI/FIR towards this track.
    pub throttle: KeyframeThrottle,
    /// FIR negotiated but not PLI (RFC 5104 §4.3.1).
    pub fir_only: bool,
    /// GOP cache (video tracks, when enabled; not fed with simulcast layers).
    pub gop: Option<GopCache>,
    /// Simulcast layers seen, indexed by `Publication::layers` slot.
    pub layers: Vec<PubLayer>,
    /// First-packet-of-keyframe marker (tracks without simulcast).
    pub key_start: KeyframeStart,
}

/// One simulcast layer (RID) of a publisher track.
#[derive(Debug)]
pub struct PubLayer {
    /// RID (RFC 8851).
    pub rid: str0m::media::Rid,
    /// Throttle for PLI/FIR towards this layer's SSRC.
    pub throttle: KeyframeThrottle,
    /// Payload bytes since the last bitrate sample.
    pub bytes: u64,
    /// First-packet-of-keyframe marker for this layer's SSRC.
    pub key_start: KeyframeStart,
}

/// Publisher-specific state.
#[derive(Debug)]
pub struct PublisherState {
    /// Tracks in `Publication::tracks` order.
    pub tracks: Vec<PubTrack>,
    /// SSRC → (track index, simulcast layer slot) cache (str0m resolves
    /// SSRC → mid/rid once).
    pub ssrc_cache: Vec<(Ssrc, usize, Option<u8>)>,
    /// Bytes at the last bitrate sample.
    pub last_bytes: u64,
    /// Time of the last bitrate sample.
    pub last_sample: Instant,
    /// `Publication::generation` when this publisher got the stream; a
    /// different current value means it was replaced, and its packets are
    /// dropped until its session is closed.
    pub generation: u64,
}

/// A viewer track's GOP-cache replay state.
#[derive(Debug)]
pub enum Replay {
    /// No replay asked (audio, cache off, or not connected yet).
    Off,
    /// Replay requested; live packets are held here meanwhile (bounded).
    Awaiting(Vec<Arc<MediaPacket>>),
    /// Replaying: packets (with their input timestamps) written a few at a
    /// time on a short timer, so a GOP burst does not overflow the viewer's
    /// receive buffer; live packets are appended behind them.
    Draining(std::collections::VecDeque<(Arc<MediaPacket>, u32)>),
    /// Replay done (or none available): live forwarding.
    Done,
}

/// Live packets held while a replay is awaited, at most.
pub const REPLAY_HOLD_MAX: usize = 4096;
/// Most packets written to a viewer's `Rtc` before it is driven (its
/// datagrams sent): live frames go in chunks of this many, a GOP replay one
/// chunk per [`REPLAY_TICK`] and track. str0m's send queue never shrinks,
/// so this bounds it per stream (16 × ≈ 450 B).
pub const WRITE_CHUNK: usize = 16;
/// Replay tick (16 packets per 2 ms ≈ 8,000 packets/s ≈ 70 Mbit/s).
pub const REPLAY_TICK: Duration = Duration::from_millis(2);

/// One forwarded track of a viewer.
#[derive(Debug)]
pub struct ViewerTrack {
    /// Viewer m-line mid.
    pub mid: Mid,
    /// Viewer payload type for this codec.
    pub pt: Pt,
    /// Sequence/timestamp rewriting.
    pub rewrite: Rewrite,
    /// Video packets are kept for NACK/RTX (RFC 4588).
    pub nackable: bool,
    /// str0m's RTX ratio cap is on for this track (turned on once the
    /// viewer reports [`crate::rtc_config::RTX_CAP_LOSS`] loss, see
    /// [`crate::rtc_config::set_resend_history`]).
    pub rtx_capped: bool,
    /// How long the track's packets are kept for resends (follows the
    /// viewer's round-trip time; video only).
    pub resend: crate::rtc_config::ResendWindow,
    /// Video (keyframe-gated).
    pub video: bool,
    /// GOP replay state.
    pub replay: Replay,
    /// Packets of the newest access unit dropped while waiting for a
    /// keyframe, with their input timestamps (video; see
    /// [`crate::forward::AccessUnitHold`]).
    pub held: crate::forward::AccessUnitHold<(Arc<MediaPacket>, u32)>,
    /// Simulcast: which layer is forwarded / wanted.
    pub gate: LayerGate,
    /// Simulcast: automatic layer choice.
    pub auto: AutoLayer,
    /// VP8 PictureID/TL0PICIDX continuity across layer switches (VP8 only).
    pub vp8: Option<crate::forward::vp8ids::Vp8Ids>,
}

/// Viewer-specific state.
#[derive(Debug)]
pub struct ViewerState {
    /// Indexed by publisher track index; `None` when the viewer lacks that kind.
    pub tracks: Vec<Option<ViewerTrack>>,
    /// Keyframe wait / retry.
    pub waiter: KeyframeWaiter,
    /// Packets forwarded.
    pub packets_out: u64,
    /// Video packets forwarded.
    pub packets_out_video: u64,
    /// Next GOP-replay tick, while replaying.
    pub replay_next: Option<Instant>,
    /// Layer pinned by the WHEP layer extension or `?layer=` (RID), if any.
    pub manual: Option<str0m::media::Rid>,
    /// Latest send-side bandwidth estimate towards this viewer, bit/s.
    pub bwe: Option<u64>,
    /// Next simulcast layer evaluation.
    pub layer_next: Instant,
}

/// Spacing of simulcast layer evaluations per viewer.
pub const LAYER_TICK: Duration = Duration::from_millis(500);

/// Role-specific state.
#[derive(Debug)]
pub enum PeerKind {
    /// WHIP publisher.
    Publisher(PublisherState),
    /// WHEP viewer.
    Viewer(ViewerState),
}

/// A peer handed to a worker by the HTTP layer.
pub struct NewPeer {
    /// Process-unique id.
    pub id: u64,
    /// The negotiated str0m instance (offer accepted, answer sent).
    pub rtc: Rtc,
    /// Session id (URL segment).
    pub session: String,
    /// Our ICE ufrag (demux key).
    pub ufrag: String,
    /// Our ICE password (for the FFmpeg STUN shim).
    pub ice_pwd: String,
    /// The publication this peer publishes or views.
    pub publication: Arc<Publication>,
    /// Role state.
    pub kind: PeerKind,
    /// Creation time.
    pub created: Instant,
    /// Live statistics shared with the HTTP layer.
    pub stats: Arc<SessionStats>,
}

/// A live peer on a worker.
pub struct Peer {
    /// See [`NewPeer`].
    pub id: u64,
    /// str0m instance.
    pub rtc: Rtc,
    /// Session id.
    pub session: String,
    /// ICE ufrag.
    pub ufrag: String,
    /// ICE password.
    pub ice_pwd: String,
    /// Publication.
    pub publication: Arc<Publication>,
    /// Role state.
    pub kind: PeerKind,
    /// Creation time (for the establishment timeout).
    pub created: Instant,
    /// ICE+DTLS up.
    pub connected: bool,
    /// ICE reported Disconnected at this time (consent lost).
    pub disconnected_at: Option<Instant>,
    /// Remote addresses bound in the demux.
    pub addrs: Vec<SocketAddr>,
    /// When the peer's live entry in the worker's timer heap fires (`None`:
    /// no live entry, the next `drive` arms one). Older heap entries with
    /// other times are stale and skipped.
    pub next_timeout: Option<Instant>,
    /// Closing: `rtc.close()` called, draining.
    pub closing: bool,
    /// Live statistics shared with the HTTP layer.
    pub stats: Arc<SessionStats>,
    /// Folds str0m's per-mid reports into `stats`.
    pub folder: StatsFolder,
    /// Our ICE ufrags before ICE restarts (still in the demux until close).
    pub old_ufrags: Vec<String>,
    /// `session` span (stream, session id, role, peer id, remote address)
    /// entered around this peer's non-media events and log lines.
    pub span: tracing::Span,
}

impl Peer {
    /// Wrap a new peer.
    pub fn new(n: NewPeer) -> Peer {
        let role = match n.kind {
            PeerKind::Publisher(_) => "publisher",
            PeerKind::Viewer(_) => "viewer",
        };
        let span = tracing::info_span!(
            "session",
            stream = %n.publication.name,
            session = %n.session,
            role,
            peer = n.id,
            addr = tracing::field::Empty,
        );
        Peer {
            span,
            old_ufrags: Vec::new(),
            id: n.id,
            rtc: n.rtc,
            session: n.session,
            ufrag: n.ufrag,
            ice_pwd: n.ice_pwd,
            publication: n.publication,
            kind: n.kind,
            created: n.created,
            connected: false,
            disconnected_at: None,
            addrs: Vec::new(),
            next_timeout: None,
            closing: false,
            stats: n.stats,
            folder: StatsFolder::default(),
        }
    }

    /// Human role name for logs.
    pub fn role(&self) -> &'static str {
        match self.kind {
            PeerKind::Publisher(_) => "publisher",
            PeerKind::Viewer(_) => "viewer",
        }
    }
}

/// Build publisher tracks from the chosen formats and the offer's mids.
pub fn publisher_tracks(
    tracks: &[Chosen],
    mids: &[Mid],
    rtc: &Rtc,
    gop: GopSettings,
) -> Vec<PubTrack> {
    tracks
        .iter()
        .zip(mids)
        .map(|(t, mid)| {
            let params = rtc.codec_config().find(|p| *p.pt() == t.pt);
            let (pli, fir) = params.map_or((true, false), |p| (p.fb_pli(), p.fb_fir()));
            PubTrack {
                mid: *mid,
                codec: t.codec,
                throttle: KeyframeThrottle::new(KEYFRAME_MIN_INTERVAL),
                fir_only: !pli && fir,
                gop: (gop.enabled && t.kind == str0m::media::MediaKind::Video)
                    .then(|| GopCache::new(gop.max_bytes, gop.max_age)),
                layers: Vec::new(),
                key_start: KeyframeStart::default(),
            }
        })
        .collect()
}
