//! The `test` source: a moving test pattern encoded with OpenH264 (Constrained
//! Baseline, real encoder, real rate control) and, with `--audio`, an Opus
//! beep once a second. A square of fresh texture in the pattern gives the
//! encoder detail to spend `--bitrate` on (flat bars alone came out near
//! 130 kbit/s at 720p whatever was asked). It answers the server's keyframe requests (PLI/FIR)
//! with an IDR at once, so it is what a person uses to try a server without
//! a camera.

use crate::annexb::Pacer;
use crate::cli::Fail;
use crate::media::{KeyframeRequest, Media, SourceInfo, VideoFrame};
use openh264::OpenH264API;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, Profile, RateControlMode,
    UsageType,
};
use openh264::formats::YUVBuffer;
use sfu::client::{Track, sps};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Opus frame: 20 ms at 48 kHz.
const OPUS_FRAME: usize = 960;

/// Settings of the `test` source.
#[derive(Debug, Clone, Copy)]
pub struct TestSettings {
    /// Picture width in pixels (even).
    pub width: usize,
    /// Picture height in pixels (even).
    pub height: usize,
    /// Frames per second.
    pub fps: f64,
    /// Target video bitrate in bit/s.
    pub bitrate: u32,
    /// Seconds between periodic keyframes (the GOP length).
    pub gop_secs: f64,
    /// Also publish an Opus beep.
    pub audio: bool,
}

/// A running test pattern; see the module docs.
pub struct TestSource {
    set: TestSettings,
    encoder: Encoder,
    keyframes: KeyframeRequest,
}

/// Check the settings and start the encoder; the first frame's SPS gives the
/// `profile-level-id` for the offer.
///
/// Errors: a size that is odd, under 16x16 or over 3840x2160 (usage, exit 2);
/// an encoder that cannot start (exit 3).
pub fn open(
    set: TestSettings,
    keyframes: KeyframeRequest,
) -> Result<(SourceInfo, TestSource), Fail> {
    if !set.width.is_multiple_of(2)
        || !set.height.is_multiple_of(2)
        || !(16..=3840).contains(&set.width)
        || !(16..=2160).contains(&set.height)
    {
        return Err(Fail::usage(format!(
            "--size {}x{}: want even numbers from 16x16 to 3840x2160",
            set.width, set.height
        )));
    }
    let gop = (set.gop_secs * set.fps).round().max(1.0) as u32;
    let cfg = EncoderConfig::new()
        .bitrate(BitRate::from_bps(set.bitrate))
        .max_frame_rate(FrameRate::from_hz(set.fps as f32))
        .rate_control_mode(RateControlMode::Bitrate)
        .usage_type(UsageType::CameraVideoRealTime)
        .profile(Profile::Baseline)
        .skip_frames(true)
        .intra_frame_period(IntraFramePeriod::from_num_frames(gop));
    let mut encoder = Encoder::with_api_config(OpenH264API::from_source(), cfg)
        .map_err(|e| Fail::source(format!("OpenH264 encoder: {e}")))?;
    // Encode one frame to learn SPS/PPS (the stream's profile and level).
    let side = texture_side(&set);
    let first = pattern(set.width, set.height, 0, side);
    let nals = encoder
        .encode(&first)
        .map(|b| crate::annexb::split_annexb(&b.to_vec()))
        .map_err(|e| Fail::source(format!("OpenH264 encoder: {e}")))?;
    let params: Vec<Vec<u8>> = nals
        .into_iter()
        .filter(|n| matches!(n.first().map(|b| b & 0x1f), Some(7 | 8)))
        .collect();
    let profile = params
        .iter()
        .find_map(|n| sps::parse_sps(n))
        .map(|s| s.profile_level_id());
    encoder.force_intra_frame();
    let info = SourceInfo {
        codec: crate::media::VideoCodec::H264,
        describe: format!(
            "test pattern {}x{} at {} fps, {} kbit/s H.264{}",
            set.width,
            set.height,
            set.fps,
            set.bitrate / 1000,
            if set.audio { " + Opus beep" } else { "" }
        ),
        video: true,
        profile,
        params,
        audio: set.audio.then_some(Track::Opus),
        makes_keyframes: true,
    };
    Ok((
        info,
        TestSource {
            set,
            encoder,
            keyframes,
        },
    ))
}

impl TestSource {
    /// Encode and send until the receiver is gone; starts when `go` turns
    /// true (the WHIP session is connected). Video and audio run on their own
    /// threads (encoding is CPU work, not async work).
    pub async fn run(self, tx: mpsc::Sender<Media>, mut go: watch::Receiver<bool>) {
        if go.wait_for(|v| *v).await.is_err() {
            return;
        }
        info!("{}", "test pattern running");
        let TestSource {
            set,
            encoder,
            keyframes,
        } = self;
        let vtx = tx.clone();
        let video = std::thread::Builder::new()
            .name("test-video".into())
            .spawn(move || video_loop(set, encoder, keyframes, vtx));
        let audio = set.audio.then(|| {
            let atx = tx.clone();
            std::thread::Builder::new()
                .name("test-audio".into())
                .spawn(move || audio_loop(atx))
        });
        let mut failed = None;
        for h in [Some(video), audio].into_iter().flatten() {
            match h {
                Ok(h) => {
                    let res = tokio::task::spawn_blocking(move || h.join()).await;
                    if let Ok(Ok(Err(e))) = res {
                        failed = Some(e);
                    }
                }
                Err(e) => failed = Some(format!("cannot start a thread: {e}")),
            }
        }
        if let Some(e) = failed {
            let _ = tx.send(Media::Failed(e)).await;
        }
    }
}

/// Encode paced frames; `Ok` when the receiver is gone.
fn video_loop(
    set: TestSettings,
    mut encoder: Encoder,
    keyframes: KeyframeRequest,
    tx: mpsc::Sender<Media>,
) -> Result<(), String> {
    let mut pacer = Pacer::new(set.fps);
    let side = texture_side(&set);
    let mut n = 0u64;
    loop {
        let (due, ts) = pacer.next(Instant::now());
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        if keyframes.take() {
            debug!("keyframe requested: encoding an IDR");
            encoder.force_intra_frame();
        }
        let yuv = pattern(set.width, set.height, n, side);
        n += 1;
        let nals = match encoder.encode(&yuv) {
            Ok(b) => crate::annexb::split_annexb(&b.to_vec()),
            Err(e) => return Err(format!("OpenH264 encoder: {e}")),
        };
        if nals.is_empty() {
            continue; // frame skipped by rate control
        }
        if tx
            .blocking_send(Media::Video(VideoFrame::new(ts, nals)))
            .is_err()
        {
            return Ok(());
        }
    }
}

/// Encode a 440 Hz beep of 200 ms every second (silence between) as 20 ms
/// Opus frames on a 48 kHz clock; `Ok` when the receiver is gone.
fn audio_loop(tx: mpsc::Sender<Media>) -> Result<(), String> {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio)
        .map_err(|e| format!("Opus encoder: {e}"))?;
    if let Err(e) = enc.set_bitrate(opus::Bitrate::Bits(48_000)) {
        warn!("Opus bitrate: {e}");
    }
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    let ts0 = u32::from_be_bytes(b);
    let t0 = Instant::now();
    let mut pcm = [0i16; OPUS_FRAME];
    let mut out = [0u8; 1500];
    for frame in 0u64.. {
        let due = t0 + Duration::from_millis(20 * frame);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        tone(&mut pcm, frame * OPUS_FRAME as u64);
        let len = enc
            .encode(&pcm, &mut out)
            .map_err(|e| format!("Opus encoder: {e}"))?;
        let ts = ts0.wrapping_add((frame * OPUS_FRAME as u64) as u32);
        let payload: Arc<[u8]> = Arc::from(&out[..len]);
        let media = Media::Audio {
            ts,
            marker: false,
            payload,
        };
        if tx.blocking_send(media).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Fill `pcm` with the samples starting at sample `at` (48 kHz) of a 440 Hz
/// beep in the first 200 ms of every second.
fn tone(pcm: &mut [i16], at: u64) {
    for (i, s) in pcm.iter_mut().enumerate() {
        let n = at + i as u64;
        let in_second = n % 48_000;
        *s = if in_second < 9_600 {
            let t = n as f64 / 48_000.0;
            (8_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        } else {
            0
        };
    }
}

/// BT.601 studio-range YUV of the eight 75 % colour bars.
const BARS: [(u8, u8, u8); 8] = [
    (180, 128, 128), // white
    (168, 44, 136),  // yellow
    (145, 147, 44),  // cyan
    (133, 63, 52),   // green
    (63, 193, 204),  // magenta
    (51, 109, 212),  // red
    (28, 212, 120),  // blue
    (16, 128, 128),  // black
];

/// Textured square: block levels (one per [`TEXTURE_BLOCK`] pixels
/// across, lines at a time) within ±[`TEXTURE_BLOCK_AMP`] of mid-grey, plus
/// per-pixel grain of ±[`TEXTURE_GRAIN_AMP`], drawn afresh every frame. The
/// coarse part costs bits even at a high QP, the grain only at a low one, so
/// the encoder's rate control finds a QP that spends the bitrate asked for.
const TEXTURE_BLOCK: usize = 4;
/// See [`TEXTURE_BLOCK`].
const TEXTURE_BLOCK_AMP: i32 = 16;
/// See [`TEXTURE_BLOCK`].
const TEXTURE_GRAIN_AMP: i32 = 3;
/// Bits per textured pixel per frame OpenH264 spends at most (measured:
/// a 180x180 square at 720p30 tops out near 2.9 Mbit/s, ≈ 3 bits).
const TEXTURE_BITS_PER_PIXEL: f64 = 3.0;

/// Side of the textured square for `set`: a quarter of the height, larger
/// when the bitrate asked for needs more texture to be spent (its area
/// grows with the bitrate; at most the picture's height).
pub fn texture_side(set: &TestSettings) -> usize {
    let bits_per_frame = f64::from(set.bitrate) / set.fps.max(0.5);
    // 30 % headroom: the rest of the picture costs little.
    let want = (1.3 * bits_per_frame / TEXTURE_BITS_PER_PIXEL).sqrt() as usize;
    want.max(set.height / 4)
        .min(set.height.min(set.width))
        .max(2)
        & !1
}

/// Frame `n` of the pattern (I420): colour bars, a textured square of side
/// `side` (see [`texture_side`]) moving across them, and a grey ramp
/// scrolling along the bottom, so motion and frame order are visible and
/// the encoder has detail to spend its bitrate on.
pub fn pattern(w: usize, h: usize, n: u64, side: usize) -> YUVBuffer {
    let (cw, ch) = (w / 2, h / 2);
    let mut buf = vec![0u8; w * h + 2 * cw * ch];
    let (y, uv) = buf.split_at_mut(w * h);
    let (u, v) = uv.split_at_mut(cw * ch);
    let bar = |x: usize| BARS[(x * 8 / w).min(7)];
    let ramp_top = h * 7 / 8;
    // Every row of the bars is the same, and so is every row of the ramp.
    let bars: Vec<u8> = (0..w).map(|col| bar(col).0).collect();
    let ramp: Vec<u8> = (0..w as u64)
        .map(|col| 16 + ((col + n * 4) % w as u64 * 219 / w as u64) as u8)
        .collect();
    for (row, line) in y.chunks_exact_mut(w).enumerate() {
        line.copy_from_slice(if row >= ramp_top { &ramp } else { &bars });
    }
    let (cb, cr): (Vec<u8>, Vec<u8>) = (0..cw).map(|col| (bar(col * 2).1, bar(col * 2).2)).unzip();
    for row in 0..ch {
        let line = row * cw..(row + 1) * cw;
        if row * 2 >= ramp_top {
            u[line.clone()].fill(128);
            v[line].fill(128);
        } else {
            u[line.clone()].copy_from_slice(&cb);
            v[line].copy_from_slice(&cr);
        }
    }
    // The textured square, bouncing left and right across the middle.
    let side = side.min(h).min(w).max(2) & !1;
    let span = (w - side) as u64;
    let step = (n * 6) % (2 * span.max(1));
    let x0 = (if step < span { step } else { 2 * span - step }) as usize & !1;
    let y0 = (h / 2 - side / 2) & !1;
    let mut rng = Noise::new(n);
    let mut levels = vec![0u8; side.div_ceil(TEXTURE_BLOCK)];
    let mut grain = vec![0u8; side];
    for row in y0..y0 + side {
        if (row - y0).is_multiple_of(TEXTURE_BLOCK) {
            rng.fill(&mut levels);
        }
        rng.fill(&mut grain);
        let line = &mut y[row * w + x0..row * w + x0 + side];
        for (i, px) in line.iter_mut().enumerate() {
            let l = 128
                + (i32::from(levels[i / TEXTURE_BLOCK]) - 128) * TEXTURE_BLOCK_AMP / 128
                + (i32::from(grain[i]) - 128) * TEXTURE_GRAIN_AMP / 128;
            *px = l.clamp(16, 235) as u8;
        }
    }
    for row in y0 / 2..(y0 + side) / 2 {
        u[row * cw + x0 / 2..row * cw + (x0 + side) / 2].fill(128);
        v[row * cw + x0 / 2..row * cw + (x0 + side) / 2].fill(128);
    }
    YUVBuffer::from_vec(buf, w, h)
}

/// A fast pseudo-random byte source (xorshift64*), seeded per frame.
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Noise {
        Noise(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// Fill `out` with uniformly distributed bytes.
    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_moves_and_has_bars() {
        let a = pattern(64, 32, 0, 8);
        let b = pattern(64, 32, 5, 8);
        use openh264::formats::YUVSource;
        assert_ne!(a.y(), b.y(), "the box moves");
        // Top-left is the white bar, top-right the black bar.
        assert_eq!(a.y()[0], 180);
        assert_eq!(a.y()[63], 16);
    }

    #[test]
    fn beep_is_on_for_200_ms_each_second() {
        let mut pcm = [0i16; 960];
        tone(&mut pcm, 0);
        assert!(pcm.iter().any(|s| s.abs() > 4000));
        tone(&mut pcm, 48_000 / 2);
        assert!(pcm.iter().all(|s| *s == 0));
    }

    #[test]
    fn encoder_starts_and_answers_keyframe_requests() {
        let set = TestSettings {
            width: 320,
            height: 240,
            fps: 30.0,
            bitrate: 300_000,
            gop_secs: 10.0,
            audio: false,
        };
        let (info, mut src) = open(set, KeyframeRequest::default()).unwrap();
        assert_eq!(info.params.len(), 2, "SPS and PPS");
        assert_eq!(info.profile.map(|p| p >> 16), Some(0x42), "Baseline");
        let is_idr = |e: &mut Encoder, n| {
            let nals =
                crate::annexb::split_annexb(&e.encode(&pattern(320, 240, n, 60)).unwrap().to_vec());
            nals.iter().any(|n| n[0] & 0x1f == 5)
        };
        assert!(
            is_idr(&mut src.encoder, 1),
            "first frame after open is an IDR"
        );
        assert!(!is_idr(&mut src.encoder, 2), "then P frames (GOP 10 s)");
        src.encoder.force_intra_frame();
        assert!(is_idr(&mut src.encoder, 3), "IDR on request");
    }

    /// Encode `secs` of the pattern as the source does: (kbit/s, ms to
    /// draw a frame, ms to encode a frame, frames skipped).
    fn measure(w: usize, h: usize, bitrate: u32, secs: u32) -> (f64, f64, f64, usize) {
        measure_at(w, h, 30.0, bitrate, secs)
    }

    /// [`measure`] at `fps` frames per second.
    fn measure_at(w: usize, h: usize, fps: f64, bitrate: u32, secs: u32) -> (f64, f64, f64, usize) {
        let set = TestSettings {
            width: w,
            height: h,
            fps,
            bitrate,
            gop_secs: 2.0,
            audio: false,
        };
        let (_, mut src) = open(set, KeyframeRequest::default()).unwrap();
        let side = texture_side(&set);
        let (mut bytes, mut skipped) = (0usize, 0usize);
        let (mut draw, mut enc) = (Duration::ZERO, Duration::ZERO);
        let frames = (fps * f64::from(secs)) as u64;
        for n in 1..=frames {
            let t = std::time::Instant::now();
            let yuv = pattern(w, h, n, side);
            draw += t.elapsed();
            let t = std::time::Instant::now();
            let b = src.encoder.encode(&yuv).unwrap().to_vec();
            enc += t.elapsed();
            bytes += b.len();
            skipped += usize::from(b.is_empty());
        }
        let per = |d: Duration| d.as_secs_f64() * 1e3 / frames as f64;
        (
            bytes as f64 * 8.0 / 1e3 / f64::from(secs),
            per(draw),
            per(enc),
            skipped,
        )
    }

    /// `cargo test --release -p whip-ingest --bin whip-ingest -- --ignored
    /// --nocapture bitrate_per_setting`: the rates in the README.
    #[test]
    #[ignore = "a measurement (10 s of 720p per setting); run in release"]
    fn bitrate_per_setting() {
        for (w, h, fps, b) in [
            (1280, 720, 30.0, 500_000),
            (1280, 720, 30.0, 2_000_000),
            (1280, 720, 30.0, 8_000_000),
            (640, 360, 30.0, 800_000),
            (1280, 720, 15.0, 1_000_000),
            (1920, 1080, 30.0, 4_000_000),
        ] {
            let (kbps, draw, enc, skipped) = measure_at(w, h, fps, b, 10);
            eprintln!(
                "{w}x{h} {fps} fps --bitrate {}k: {kbps:.0} kbit/s, draw {draw:.2} ms + encode {enc:.2} ms per frame, {skipped} skipped",
                b / 1000
            );
        }
    }

    #[test]
    fn the_encoder_spends_the_bitrate_asked_for() {
        for b in [150_000, 600_000] {
            let (kbps, _, _, skipped) = measure(320, 240, b, 3);
            let want = f64::from(b) / 1e3;
            assert!(
                (0.7 * want..1.3 * want).contains(&kbps),
                "--bitrate {want} kbit/s at 320x240: {kbps:.0} kbit/s"
            );
            assert!(skipped <= 3, "{skipped} of 90 frames skipped");
        }
    }

    #[test]
    fn texture_grows_with_the_bitrate() {
        let set = |bitrate, fps| TestSettings {
            width: 1280,
            height: 720,
            fps,
            bitrate,
            gop_secs: 2.0,
            audio: false,
        };
        assert_eq!(texture_side(&set(500_000, 30.0)), 180, "a quarter of 720");
        assert_eq!(texture_side(&set(2_000_000, 30.0)), 180);
        let big = texture_side(&set(8_000_000, 30.0));
        assert!((300..400).contains(&big), "{big}");
        assert!(
            texture_side(&set(8_000_000, 15.0)) > big,
            "fewer frames, more bits each"
        );
        assert_eq!(
            texture_side(&set(50_000_000, 30.0)),
            720,
            "at most the height"
        );
        // Every side draws, even the whole picture.
        let p = pattern(64, 32, 3, 1000);
        use openh264::formats::YUVSource;
        assert_eq!(p.y().len(), 64 * 32);
    }

    #[test]
    fn odd_sizes_are_refused() {
        let set = TestSettings {
            width: 321,
            height: 240,
            fps: 30.0,
            bitrate: 300_000,
            gop_secs: 2.0,
            audio: false,
        };
        assert!(open(set, KeyframeRequest::default()).is_err());
    }
}
