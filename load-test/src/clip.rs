//! The test clip (made by ffmpeg at run time) and the real-time publisher
//! that loops it with a send timestamp SEI in every access unit.

use crate::sei;
use anyhow::Context;
use sfu::client::{ClientEvent, OutPacket, Session, h264, ogg};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use str0m::media::MediaKind;

/// One access unit ready to send: payloads before the first slice, then the
/// slice payloads (the timestamp SEI goes between them at send time).
pub struct Frame {
    /// Parameter sets / encoder SEI packets (RTP payloads).
    pub head: Vec<Arc<[u8]>>,
    /// Slice packets (RTP payloads).
    pub slices: Vec<Arc<[u8]>>,
    /// Contains an IDR slice.
    pub keyframe: bool,
}

/// An H.264 + Opus clip as RTP payloads.
pub struct Clip {
    /// Video access units at 30 fps.
    pub video: Vec<Frame>,
    /// Opus packets, 20 ms each.
    pub audio: Vec<Arc<[u8]>>,
}

/// Frame interval at 30 fps.
pub const FRAME_US: u64 = 33_333;
/// Opus packet duration.
pub const AUDIO_US: u64 = 20_000;

impl Clip {
    /// Payload bit rate the publisher sends, video (with one timestamp SEI
    /// per frame) plus audio, in bit/s.
    pub fn bitrate_bps(&self) -> f64 {
        let sei = sei::make_nal(0).len();
        let v: usize = self
            .video
            .iter()
            .map(|f| {
                f.head
                    .iter()
                    .chain(&f.slices)
                    .map(|p| p.len())
                    .sum::<usize>()
                    + sei
            })
            .sum();
        let a: usize = self.audio.iter().map(|p| p.len()).sum();
        let vs = self.video.len() as f64 * FRAME_US as f64 / 1e6;
        let as_ = self.audio.len() as f64 * AUDIO_US as f64 / 1e6;
        8.0 * (v as f64 / vs.max(1e-3) + a as f64 / as_.max(1e-3))
    }
}

fn ffmpeg(args: &[&str], out: &Path) -> anyhow::Result<()> {
    let o = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .arg(out)
        .output()
        .context("cannot run ffmpeg (is it installed and on PATH?)")?;
    if !o.status.success() {
        anyhow::bail!(
            "ffmpeg failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(())
}

/// Encode a `seconds`-long clip: 1280x720 30 fps `testsrc2`, libx264
/// Constrained Baseline at `kbps` kbit/s (`-g 60 -bf 0 -tune zerolatency`),
/// and a 48 kHz stereo Opus tone at 64 kbit/s. Files go to a temporary
/// directory that is removed afterwards.
pub fn make(seconds: u32, kbps: u32) -> anyhow::Result<Clip> {
    let dir = std::env::temp_dir().join(format!("load-test-clip-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let h264_path = dir.join("clip.h264");
    let opus_path = dir.join("clip.opus");
    let t = seconds.to_string();
    let rate = format!("{kbps}k");
    let buf = format!("{}k", kbps / 2);
    let r = (|| {
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30",
                "-t",
                &t,
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-tune",
                "zerolatency",
                "-profile:v",
                "baseline",
                "-level",
                "3.1",
                "-bf",
                "0",
                "-g",
                "60",
                "-keyint_min",
                "60",
                "-sc_threshold",
                "0",
                "-b:v",
                &rate,
                "-maxrate",
                &rate,
                "-bufsize",
                &buf,
                "-pix_fmt",
                "yuv420p",
                "-f",
                "h264",
            ],
            &h264_path,
        )?;
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000",
                "-t",
                &t,
                "-c:a",
                "libopus",
                "-ac",
                "2",
                "-b:a",
                "64k",
                "-frame_duration",
                "20",
                "-f",
                "ogg",
            ],
            &opus_path,
        )?;
        let data = std::fs::read(&h264_path)?;
        let nals = h264::nal_units(&data);
        let aus = h264::access_units(&nals);
        let video: Vec<Frame> = aus
            .iter()
            .map(|au| {
                let split = au
                    .nals
                    .iter()
                    .position(|n| matches!(h264::nal_type(n), 1 | 5))
                    .unwrap_or(au.nals.len());
                let part = |nals: &[&[u8]]| -> Vec<Arc<[u8]>> {
                    let a = h264::AccessUnit {
                        nals: nals.to_vec(),
                        keyframe: au.keyframe,
                    };
                    h264::packetize(&a, h264::MAX_PAYLOAD)
                        .into_iter()
                        .map(Arc::from)
                        .collect()
                };
                Frame {
                    head: part(&au.nals[..split]),
                    slices: part(&au.nals[split..]),
                    keyframe: au.keyframe,
                }
            })
            .filter(|f| !f.slices.is_empty())
            .collect();
        let audio: Vec<Arc<[u8]>> = ogg::opus_packets(&std::fs::read(&opus_path)?)?
            .into_iter()
            .map(Arc::from)
            .collect();
        if video.is_empty() || !video[0].keyframe || audio.is_empty() {
            anyhow::bail!("the encoded clip is empty or does not start with a keyframe");
        }
        Ok(Clip { video, audio })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Counters of the running publisher.
#[derive(Default)]
pub struct PubStats {
    /// Video frames sent.
    pub frames: AtomicU64,
    /// Keyframe requests (PLI/FIR) received from the server (ignored, like
    /// FFmpeg or OBS do).
    pub keyframe_requests: AtomicU64,
    /// Set when the session ended early.
    pub closed: AtomicBool,
}

/// What a live source sends next, given the next audio packet `a` and
/// video frame `i`: audio `a` is due `a × 20 ms` ([`AUDIO_US`]) and frame
/// `i` `i × 33.3 ms` ([`FRAME_US`]) after the start; returns the earlier
/// (audio on a tie) and its due time in µs.
pub fn next_due(a: u64, i: u64) -> (MediaKind, u64) {
    let (audio, video) = (a * AUDIO_US, i * FRAME_US);
    if audio <= video {
        (MediaKind::Audio, audio)
    } else {
        (MediaKind::Video, video)
    }
}

/// Send `clip` in a loop in real time on `s` until `stop` is set or
/// `deadline` passes: frame `i` at `i × 33.3 ms` and audio packet `a` at
/// `a × 20 ms`, each at its own time as a live encoder sends them (not
/// bunched with the video frames), RTP timestamps continuous across loops.
/// Every access unit gets a timestamp SEI (nanoseconds since `epoch`) right
/// before its first slice.
pub async fn publish_loop(
    mut s: Session,
    clip: Arc<Clip>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    deadline: Instant,
    stats: Arc<PubStats>,
) -> Session {
    let start = tokio::time::Instant::now();
    let (mut i, mut a) = (0u64, 0u64);
    let nv = clip.video.len() as u64;
    let na = clip.audio.len() as u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let (kind, due) = next_due(a, i);
        tokio::time::sleep_until(start + Duration::from_micros(due)).await;
        while let Ok(ev) = s.events.try_recv() {
            match ev {
                ClientEvent::KeyframeRequest => {
                    stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                }
                ClientEvent::Closed(_) => stats.closed.store(true, Ordering::Relaxed),
                _ => {}
            }
        }
        if kind == MediaKind::Audio {
            s.send(OutPacket {
                kind: MediaKind::Audio,
                ts: (a * 960) as u32,
                marker: false,
                payload: clip.audio[(a % na) as usize].clone(),
            });
            a += 1;
            continue;
        }
        let f = &clip.video[(i % nv) as usize];
        let ts = (i * 3000) as u32;
        let ns = epoch.elapsed().as_nanos() as u64;
        let sei: Arc<[u8]> = Arc::from(sei::make_nal(ns));
        let n = f.slices.len();
        let video = |payload: Arc<[u8]>, marker: bool| OutPacket {
            kind: MediaKind::Video,
            ts,
            marker,
            payload,
        };
        for p in &f.head {
            s.send(video(p.clone(), false));
        }
        s.send(video(sei, false));
        for (k, p) in f.slices.iter().enumerate() {
            s.send(video(p.clone(), k + 1 == n));
        }
        stats.frames.fetch_add(1, Ordering::Relaxed);
        i += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Audio and video keep their own cadence: over 0.99 s, 50 audio packets
    /// 20 ms apart and 30 frames 33.3 ms apart, in time order, so audio is
    /// never held back to the next frame.
    #[test]
    fn audio_and_video_are_sent_at_their_own_times() {
        let (mut a, mut i, mut last) = (0, 0, 0);
        let (mut audio, mut video) = (Vec::new(), Vec::new());
        loop {
            let (kind, due) = next_due(a, i);
            if due >= 990_000 {
                break;
            }
            assert!(due >= last, "time order");
            last = due;
            match kind {
                MediaKind::Audio => {
                    audio.push(due);
                    a += 1;
                }
                MediaKind::Video => {
                    video.push(due);
                    i += 1;
                }
            }
        }
        assert_eq!(audio.len(), 50);
        assert_eq!(video.len(), 30);
        assert!(audio.windows(2).all(|w| w[1] - w[0] == AUDIO_US));
        assert!(video.windows(2).all(|w| w[1] - w[0] == FRAME_US));
    }
}
