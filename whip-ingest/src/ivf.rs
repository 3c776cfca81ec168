//! IVF files (VP8, VP9, AV1) as a source: the 32-byte file header, 12-byte
//! frame headers, keyframe detection per codec, pacing at the file's frame
//! rate, `--loop` with continuous timestamps, and skipping ahead to the next
//! keyframe on a keyframe request (as [`crate::annexb`] does for H.264).
//!
//! Layout (little-endian): `DKIF`, version u16, header size u16, fourcc
//! (`VP80`, `VP90`, `AV01`), width u16, height u16, time base denominator
//! u32, numerator u32, frame count u32, unused u32; then per frame: size u32,
//! pts u64 (time base units), the compressed frame (AV1: a temporal unit).

use crate::annexb::{Pacer, io_reason};
use crate::cli::Fail;
use crate::media::{KeyframeRequest, Media, SourceInfo, VideoCodec, VideoFrame};
use crate::packetize::{av1, vp8, vp9};
use std::path::PathBuf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::debug;

/// File header size, bytes.
pub const HEADER: usize = 32;
/// Largest frame accepted, bytes (a bigger size field means corruption).
pub const MAX_FRAME: u32 = 32 << 20;

/// What the IVF file header says.
#[derive(Debug, Clone, PartialEq)]
pub struct IvfHeader {
    /// Codec from the fourcc.
    pub codec: VideoCodec,
    /// Picture width, pixels.
    pub width: u16,
    /// Picture height, pixels.
    pub height: u16,
    /// Time base denominator (ticks per second when the numerator is 1).
    pub rate: u32,
    /// Time base numerator.
    pub scale: u32,
    /// Frame count (as written; informational).
    pub frames: u32,
}

/// Parse the 32-byte file header.
pub fn parse_header(b: &[u8]) -> Result<IvfHeader, String> {
    if b.len() < HEADER || &b[..4] != b"DKIF" {
        return Err("not an IVF file (no DKIF header)".into());
    }
    let u16at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
    let u32at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    if usize::from(u16at(6)) != HEADER {
        return Err(format!("unsupported IVF header size {}", u16at(6)));
    }
    let codec = match &b[8..12] {
        b"VP80" => VideoCodec::Vp8,
        b"VP90" => VideoCodec::Vp9,
        b"AV01" => VideoCodec::Av1,
        other => {
            return Err(format!(
                "IVF codec '{}' is not supported (want VP80, VP90 or AV01)",
                String::from_utf8_lossy(other)
            ));
        }
    };
    Ok(IvfHeader {
        codec,
        width: u16at(12),
        height: u16at(14),
        rate: u32at(16),
        scale: u32at(20),
        frames: u32at(24),
    })
}

/// Whether a frame of `codec` is a key frame (random access point).
pub fn is_keyframe(codec: VideoCodec, frame: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8::is_keyframe(frame),
        VideoCodec::Vp9 => vp9::is_keyframe(frame),
        VideoCodec::Av1 => av1::is_keyframe(frame),
        VideoCodec::H264 | VideoCodec::H265 => false,
    }
}

/// Frames per second from the time base and the pts step between the first
/// frames (`rate / (scale * step)`); `None` when the header is unusable.
pub fn frame_rate(h: &IvfHeader, pts: &[u64]) -> Option<f64> {
    let step = pts
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .find(|d| *d > 0)
        .unwrap_or(1);
    let fps = f64::from(h.rate) / (f64::from(h.scale) * step as f64);
    (fps.is_finite() && (0.5..=1000.0).contains(&fps)).then_some(fps)
}

/// Read one frame: `Ok(None)` at a clean end of file.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<(u64, Vec<u8>)>, String> {
    let mut h = [0u8; 12];
    let mut got = 0;
    while got < h.len() {
        let n = r
            .read(&mut h[got..])
            .await
            .map_err(|e| format!("read error: {}", io_reason(&e)))?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err("truncated IVF frame header".into())
            };
        }
        got += n;
    }
    let size = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let pts = u64::from_le_bytes(h[4..12].try_into().expect("8 bytes"));
    if size == 0 || size > MAX_FRAME {
        return Err(format!("corrupt IVF frame size {size}"));
    }
    let mut data = vec![0u8; size as usize];
    r.read_exact(&mut data)
        .await
        .map_err(|_| format!("truncated IVF frame ({size} bytes announced)"))?;
    Ok(Some((pts, data)))
}

/// An IVF file ready to run.
#[derive(Debug)]
pub struct IvfSource {
    path: PathBuf,
    repeat: bool,
    fps: f64,
    codec: VideoCodec,
    keyframes: KeyframeRequest,
}

/// Check a file (IVF header, supported codec, a readable first key frame)
/// and describe it; problems are exit-3 failures.
pub async fn open_file(
    path: PathBuf,
    repeat: bool,
    fps: Option<f64>,
    keyframes: KeyframeRequest,
) -> Result<(SourceInfo, IvfSource), Fail> {
    let name = path.display().to_string();
    let bad = |m: String| Fail::source(format!("{name}: {m}"));
    let f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Fail::source(format!("cannot open {name}: {}", io_reason(&e))))?;
    let mut r = BufReader::new(f);
    let mut head = [0u8; HEADER];
    r.read_exact(&mut head)
        .await
        .map_err(|_| bad("not an IVF file (shorter than its 32-byte header)".into()))?;
    let h = parse_header(&head).map_err(bad)?;
    let mut pts = Vec::new();
    let mut first_key = None;
    while pts.len() < 8 {
        let Some((p, data)) = read_frame(&mut r).await.map_err(bad)? else {
            break;
        };
        if h.codec == VideoCodec::Av1 {
            av1::parse_obus(&data).map_err(|e| bad(format!("AV1 frame {}: {e}", pts.len())))?;
        }
        if first_key.is_none() && is_keyframe(h.codec, &data) {
            first_key = Some(pts.len());
        }
        pts.push(p);
    }
    if pts.is_empty() {
        return Err(bad("no frames".into()));
    }
    if first_key.is_none() && pts.len() < 8 {
        return Err(bad(format!("no {} key frame", h.codec.name())));
    }
    let fps = match fps.or_else(|| frame_rate(&h, &pts)) {
        Some(f) => f,
        None => {
            return Err(bad(format!(
                "unusable time base {}/{}: give --fps",
                h.scale, h.rate
            )));
        }
    };
    let info = SourceInfo {
        describe: format!(
            "{name}: {} {}x{} at {fps:.3} fps{}",
            h.codec.name(),
            h.width,
            h.height,
            if repeat { ", looped" } else { "" }
        ),
        video: true,
        codec: h.codec,
        profile: None,
        params: Vec::new(),
        audio: None,
        makes_keyframes: true,
    };
    Ok((
        info,
        IvfSource {
            path,
            repeat,
            fps,
            codec: h.codec,
            keyframes,
        },
    ))
}

impl IvfSource {
    /// Read, pace and send frames until the end (or, with `--loop`,
    /// forever); waits for `go` (the session is live) first.
    pub async fn run(self, tx: mpsc::Sender<Media>, mut go: watch::Receiver<bool>) {
        if go.wait_for(|v| *v).await.is_err() {
            return;
        }
        let last = match self.play(&tx).await {
            Ok(()) => Media::End,
            Err(e) => Media::Failed(format!("{}: {e}", self.path.display())),
        };
        let _ = tx.send(last).await;
    }

    async fn play(&self, tx: &mpsc::Sender<Media>) -> Result<(), String> {
        let f = tokio::fs::File::open(&self.path)
            .await
            .map_err(|e| format!("cannot open: {}", io_reason(&e)))?;
        let mut r = BufReader::new(f);
        let mut pacer = Pacer::new(self.fps);
        let mut skipping = false;
        let mut loops = 0u64;
        loop {
            r.seek(std::io::SeekFrom::Start(HEADER as u64))
                .await
                .map_err(|e| format!("cannot rewind: {}", io_reason(&e)))?;
            let mut keys = 0u64;
            while let Some((_, data)) = read_frame(&mut r).await? {
                let keyframe = is_keyframe(self.codec, &data);
                keys += u64::from(keyframe);
                if self.codec == VideoCodec::Av1
                    && let Err(e) = av1::parse_obus(&data)
                {
                    return Err(format!("corrupt AV1 temporal unit: {e}"));
                }
                if self.keyframes.take() && !skipping {
                    debug!("keyframe requested: skipping ahead to the file's next key frame");
                    skipping = true;
                }
                if skipping {
                    if !keyframe {
                        continue; // not sent, not paced: the key frame comes at once
                    }
                    skipping = false;
                }
                let (due, ts) = pacer.next(Instant::now());
                tokio::time::sleep_until(due).await;
                if tx
                    .send(Media::Video(VideoFrame::whole(ts, data, keyframe)))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            if !self.repeat {
                return Ok(());
            }
            if keys == 0 {
                return Err(format!("no {} key frame in the file", self.codec.name()));
            }
            loops += 1;
            debug!(loops, "looping {}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_frame_rate() {
        let mut b = b"DKIF\0\0\x20\0VP90".to_vec();
        b.extend(320u16.to_le_bytes());
        b.extend(240u16.to_le_bytes());
        b.extend(1000u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend([0u8; 8]);
        let h = parse_header(&b).unwrap();
        assert_eq!(h.codec, VideoCodec::Vp9);
        assert_eq!((h.width, h.height), (320, 240));
        // A 1/1000 time base with 40 ms steps is 25 fps.
        assert_eq!(frame_rate(&h, &[0, 40, 80]), Some(25.0));
        b[8..12].copy_from_slice(b"H264");
        assert!(parse_header(&b).unwrap_err().contains("H264"));
        assert!(parse_header(b"RIFF").is_err());
    }
}
