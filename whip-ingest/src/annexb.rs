//! Annex B H.264 sources: a file (optionally looped) or standard input,
//! split into access units as the bytes arrive and paced at the frame rate.

use crate::cli::Fail;
use crate::media::{KeyframeRequest, Media, SourceInfo, VideoFrame, nal_type};
use sfu::client::sps;
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// All NAL units (without start codes) of a complete Annex B buffer.
pub fn split_annexb(data: &[u8]) -> Vec<Vec<u8>> {
    let mut sp = NalSplitter::default();
    let mut out = Vec::new();
    sp.push(data, &mut out);
    sp.finish(&mut out);
    out
}

/// Incremental Annex B splitter: bytes in, NAL units (without start codes) out.
#[derive(Debug, Default)]
pub struct NalSplitter {
    buf: Vec<u8>,
    scan: usize,
    start: Option<usize>,
}

impl NalSplitter {
    /// Feed bytes; complete NAL units (those followed by a start code) are
    /// appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Vec<u8>>) {
        self.buf.extend_from_slice(data);
        let mut i = self.scan.max(2);
        while i < self.buf.len() {
            if self.buf[i] == 0 {
                i += 1;
            } else if self.buf[i] == 1 && self.buf[i - 1] == 0 && self.buf[i - 2] == 0 {
                if let Some(s) = self.start {
                    emit(&self.buf[s..i - 2], out);
                }
                self.start = Some(i + 1);
                i += 3;
            } else {
                // A non-zero byte: no start code ends at i, i + 1 or i + 2.
                i += 3;
            }
        }
        self.scan = i;
        // Drop consumed bytes.
        let keep_from = match self.start {
            Some(s) => s,
            None => self.buf.len().saturating_sub(2),
        };
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.scan -= keep_from;
            self.start = self.start.map(|s| s - keep_from);
        }
    }

    /// End of stream: the last NAL unit, if any.
    pub fn finish(&mut self, out: &mut Vec<Vec<u8>>) {
        if let Some(s) = self.start.take() {
            emit(&self.buf[s..], out);
        }
        self.buf.clear();
        self.scan = 0;
    }
}

fn emit(nal: &[u8], out: &mut Vec<Vec<u8>>) {
    let mut end = nal.len();
    while end > 0 && nal[end - 1] == 0 {
        end -= 1; // trailing_zero_8bits / the zero of a 4-byte start code
    }
    if end > 0 {
        out.push(nal[..end].to_vec());
    }
}

/// Groups NAL units into access units (H.264 §7.4.1.2.3): a new unit starts
/// at an AUD, SPS, PPS or SEI after a slice, or at a slice whose
/// `first_mb_in_slice` is 0 after a slice. AUDs are dropped.
#[derive(Debug, Default)]
pub struct AuBuilder {
    cur: Vec<Vec<u8>>,
    has_slice: bool,
}

impl AuBuilder {
    /// Add a NAL unit; returns the previous access unit when this one starts
    /// a new one.
    pub fn push(&mut self, nal: Vec<u8>) -> Option<Vec<Vec<u8>>> {
        let t = nal_type(&nal);
        let is_slice = t == 1 || t == 5;
        let first_mb_zero = is_slice && nal.get(1).is_some_and(|b| b & 0x80 != 0);
        let mut done = None;
        if self.has_slice && (matches!(t, 6..=9) || (14..=18).contains(&t) || first_mb_zero) {
            done = Some(std::mem::take(&mut self.cur));
            self.has_slice = false;
        }
        if t != 9 {
            self.cur.push(nal);
            self.has_slice |= is_slice;
        }
        done
    }

    /// End of stream: the unit in progress, if it has a slice.
    pub fn finish(&mut self) -> Option<Vec<Vec<u8>>> {
        let cur = std::mem::take(&mut self.cur);
        std::mem::take(&mut self.has_slice).then_some(cur)
    }
}

/// Paces frames at a frame rate and stamps them from the schedule, so
/// timestamps follow the wall clock even when the input runs late.
#[derive(Debug)]
pub struct Pacer {
    fps: f64,
    t0: Instant,
    ts0: u32,
    n: u64,
}

impl Pacer {
    /// Start now with a random first timestamp.
    pub fn new(fps: f64) -> Pacer {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        Pacer {
            fps,
            t0: Instant::now(),
            ts0: u32::from_be_bytes(b) >> 1,
            n: 0,
        }
    }

    /// When to send the next frame (made ready at `ready`) and its timestamp.
    /// A frame later than one frame interval moves the schedule (and the
    /// timestamps) forward to `ready`.
    pub fn next(&mut self, ready: Instant) -> (Instant, u32) {
        let due = self.due(self.n);
        let frame = Duration::from_secs_f64(1.0 / self.fps);
        if ready > due + frame {
            let late = ready - due;
            self.t0 += late;
            self.ts0 = self
                .ts0
                .wrapping_add((late.as_secs_f64() * 90_000.0).round() as u32);
        }
        let due = self.due(self.n);
        let ts = self
            .ts0
            .wrapping_add((self.n as f64 * 90_000.0 / self.fps).round() as u64 as u32);
        self.n += 1;
        (due, ts)
    }

    fn due(&self, n: u64) -> Instant {
        self.t0 + Duration::from_secs_f64(n as f64 / self.fps)
    }
}

/// Where the Annex B bytes come from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file, with `--loop`.
    File(PathBuf, bool),
    /// Standard input.
    Stdin,
}

/// An Annex B source ready to run.
#[derive(Debug)]
pub struct AnnexBSource {
    input: Input,
    fps: Option<f64>,
    stall: Duration,
    keyframes: Option<KeyframeRequest>,
}

/// How much of a file is read up front to find its SPS.
const PROBE: usize = 4 << 20;

/// Check a file (exists, is Annex B H.264 with an SPS) and describe it.
pub async fn open_file(
    path: PathBuf,
    repeat: bool,
    fps: Option<f64>,
    stall: Duration,
    keyframes: KeyframeRequest,
) -> Result<(SourceInfo, AnnexBSource), Fail> {
    let name = path.display().to_string();
    let mut f = tokio::fs::File::open(&path)
        .await
        .map_err(|e| Fail::source(format!("cannot open {name}: {}", io_reason(&e))))?;
    let mut head = Vec::new();
    (&mut f)
        .take(PROBE as u64)
        .read_to_end(&mut head)
        .await
        .map_err(|e| Fail::source(format!("cannot read {name}: {}", io_reason(&e))))?;
    if head.is_empty() {
        return Err(Fail::source(format!("{name} is empty")));
    }
    let mut nals = Vec::new();
    let mut sp = NalSplitter::default();
    sp.push(&head, &mut nals);
    if head.len() < PROBE {
        sp.finish(&mut nals);
    }
    if nals.is_empty() || nals.iter().any(|n| n[0] & 0x80 != 0) {
        return Err(Fail::source(format!(
            "{name} is not an Annex B H.264 stream (no start codes or bad NAL headers)"
        )));
    }
    let Some(sps) = nals.iter().find_map(|n| sps::parse_sps(n)) else {
        return Err(Fail::source(format!(
            "no H.264 sequence parameter set in the first {} MB of {name}",
            PROBE >> 20
        )));
    };
    let params: Vec<Vec<u8>> = nals
        .iter()
        .filter(|n| matches!(nal_type(n), 7 | 8))
        .take(8)
        .cloned()
        .collect();
    let fps = fps.or(sps.fps).unwrap_or(30.0);
    let info = SourceInfo {
        codec: crate::media::VideoCodec::H264,
        describe: format!(
            "{name}: H.264 {:06x} {}x{} at {fps:.3} fps{}",
            sps.profile_level_id(),
            sps.width,
            sps.height,
            if repeat { ", looped" } else { "" }
        ),
        video: true,
        profile: Some(sps.profile_level_id()),
        params,
        audio: None,
        makes_keyframes: true,
    };
    Ok((
        info,
        AnnexBSource {
            input: Input::File(path, repeat),
            fps: Some(fps),
            stall,
            keyframes: Some(keyframes),
        },
    ))
}

/// Standard input as a source (the profile is learned from the stream).
pub fn open_stdin(fps: Option<f64>, stall: Duration) -> (SourceInfo, AnnexBSource) {
    (
        SourceInfo {
            codec: crate::media::VideoCodec::H264,
            describe: "standard input: Annex B H.264".into(),
            video: true,
            profile: None,
            params: Vec::new(),
            audio: None,
            makes_keyframes: false,
        },
        AnnexBSource {
            input: Input::Stdin,
            fps,
            stall,
            keyframes: None,
        },
    )
}

/// A short reason for an I/O error (no "os error N" noise).
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

impl AnnexBSource {
    /// Read, split, pace and send frames until the end (or the receiver is
    /// gone). Waits for `go` first when the source starts on connect.
    pub async fn run(self, tx: mpsc::Sender<Media>, mut go: watch::Receiver<bool>) {
        let r = match self.input.clone() {
            Input::File(path, repeat) => {
                if go.wait_for(|v| *v).await.is_err() {
                    return;
                }
                self.run_file(path, repeat, &tx).await
            }
            Input::Stdin => self.run_reader(tokio::io::stdin(), &tx).await,
        };
        let last = match r {
            Ok(()) => Media::End,
            Err(e) => Media::Failed(e),
        };
        let _ = tx.send(last).await;
    }

    async fn run_file(
        &self,
        path: PathBuf,
        repeat: bool,
        tx: &mpsc::Sender<Media>,
    ) -> Result<(), String> {
        let name = path.display().to_string();
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| format!("cannot open {name}: {}", io_reason(&e)))?;
        let mut st = State::new(self.fps);
        st.keyframes = self.keyframes.clone();
        let mut loops = 0u64;
        loop {
            let frames_before = st.frames;
            if !self.pump(&mut f, &mut st, tx, false).await? {
                return Ok(()); // receiver gone
            }
            if !repeat {
                return Ok(());
            }
            if st.frames == frames_before {
                return Err(format!("{name} has no complete H.264 frame"));
            }
            loops += 1;
            debug!(loops, "looping {name}");
            f.seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(|e| format!("cannot rewind {name}: {}", io_reason(&e)))?;
        }
    }

    async fn run_reader<R: AsyncRead + Unpin>(
        &self,
        mut r: R,
        tx: &mpsc::Sender<Media>,
    ) -> Result<(), String> {
        let mut st = State::new(self.fps);
        self.pump(&mut r, &mut st, tx, true).await?;
        if st.frames == 0 {
            return Err("standard input carried no H.264 frame".into());
        }
        Ok(())
    }

    /// Read `r` to its end, sending paced frames. `Ok(false)` when the
    /// receiver is gone.
    async fn pump<R: AsyncRead + Unpin>(
        &self,
        r: &mut R,
        st: &mut State,
        tx: &mpsc::Sender<Media>,
        watch_stall: bool,
    ) -> Result<bool, String> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut nals = Vec::new();
        let mut stalled = false;
        loop {
            let n = if watch_stall {
                match tokio::time::timeout(self.stall, r.read(&mut buf)).await {
                    Ok(n) => n,
                    Err(_) => {
                        if !stalled {
                            stalled = true;
                            let msg = format!(
                                "no data on standard input for {:.1} s",
                                self.stall.as_secs_f64()
                            );
                            if tx.send(Media::Stalled(msg)).await.is_err() {
                                return Ok(false);
                            }
                        }
                        continue;
                    }
                }
            } else {
                r.read(&mut buf).await
            };
            let n = n.map_err(|e| format!("read error: {}", io_reason(&e)))?;
            if stalled {
                stalled = false;
                if tx.send(Media::Resumed).await.is_err() {
                    return Ok(false);
                }
            }
            if n == 0 {
                st.split.finish(&mut nals);
            } else {
                st.split.push(&buf[..n], &mut nals);
            }
            for nal in nals.drain(..) {
                if st.fps.is_none()
                    && let Some(s) = sps::parse_sps(&nal)
                {
                    let fps = s.fps.unwrap_or(30.0);
                    info!(
                        "H.264 {:06x} {}x{} at {fps:.3} fps",
                        s.profile_level_id(),
                        s.width,
                        s.height
                    );
                    st.fps = Some(fps);
                }
                if let Some(au) = st.aus.push(nal)
                    && !st.send(au, tx).await
                {
                    return Ok(false);
                }
            }
            if n == 0 {
                if let Some(au) = st.aus.finish()
                    && !st.send(au, tx).await
                {
                    return Ok(false);
                }
                return Ok(true);
            }
        }
    }
}

struct State {
    split: NalSplitter,
    aus: AuBuilder,
    fps: Option<f64>,
    pacer: Option<Pacer>,
    frames: u64,
    warned_no_sps: bool,
    /// Keyframe requests (files only): skip ahead to the next IDR.
    keyframes: Option<KeyframeRequest>,
    skipping: bool,
}

impl State {
    fn new(fps: Option<f64>) -> State {
        State {
            split: NalSplitter::default(),
            aus: AuBuilder::default(),
            fps,
            pacer: None,
            frames: 0,
            warned_no_sps: false,
            keyframes: None,
            skipping: false,
        }
    }

    /// Pace and send one access unit; false when the receiver is gone.
    async fn send(&mut self, au: Vec<Vec<u8>>, tx: &mpsc::Sender<Media>) -> bool {
        if self.fps.is_none() && !self.warned_no_sps {
            self.warned_no_sps = true;
            warn!("frames before the first SPS: pacing at 30 fps");
        }
        self.frames += 1;
        if self.keyframes.as_ref().is_some_and(KeyframeRequest::take) && !self.skipping {
            debug!("keyframe requested: skipping ahead to the file's next IDR");
            self.skipping = true;
        }
        if self.skipping {
            if !au.iter().any(|n| nal_type(n) == 5) {
                return true; // not sent, not paced: the IDR comes at once
            }
            self.skipping = false;
        }
        let fps = self.fps.unwrap_or(30.0);
        let pacer = self.pacer.get_or_insert_with(|| Pacer::new(fps));
        let (due, ts) = pacer.next(Instant::now());
        tokio::time::sleep_until(due).await;
        tx.send(Media::Video(VideoFrame::new(ts, au))).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(data: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut s = NalSplitter::default();
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn splitter_matches_batch_parser_at_any_chunking() {
        let mut s = vec![
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 0x88,
        ];
        s.extend((0..3000).map(|i| (i % 200 + 2) as u8));
        s.extend_from_slice(&[0, 0, 1, 0x41, 0x9a, 9, 0, 0, 0, 1, 0x09, 0x10]);
        s.extend_from_slice(&[0, 0, 1, 0x41, 0x9a, 0, 3, 1, 0]);
        let want: Vec<Vec<u8>> = sfu::client::h264::nal_units(&s)
            .into_iter()
            .map(|n| {
                let mut n = n.to_vec();
                while n.last() == Some(&0) {
                    n.pop();
                }
                n
            })
            .collect();
        for chunk in [1, 2, 3, 5, 7, 64, 4096] {
            assert_eq!(split_all(&s, chunk), want, "chunk {chunk}");
        }
        // Access units: SPS+PPS+IDR, P, (AUD dropped) P.
        let mut b = AuBuilder::default();
        let mut aus: Vec<_> = want.into_iter().filter_map(|n| b.push(n)).collect();
        aus.extend(b.finish());
        assert_eq!(aus.len(), 3);
        assert_eq!(aus[0].len(), 3);
        assert_eq!(aus[1], vec![vec![0x41, 0x9a, 9]]);
        assert_eq!(aus[2][0][0], 0x41);
    }

    #[test]
    fn pacer_keeps_timestamps_on_schedule_and_rebases_when_late() {
        let mut p = Pacer::new(30.0);
        let t0 = p.t0;
        let (d0, ts0) = p.next(t0);
        let (d1, ts1) = p.next(t0);
        assert_eq!(d0, t0);
        assert_eq!(ts1.wrapping_sub(ts0), 3000);
        assert!((d1 - d0).as_micros().abs_diff(33_333) <= 1);
        // One second late: schedule and timestamps jump together.
        let (d2, ts2) = p.next(t0 + Duration::from_secs(1));
        assert_eq!(d2, t0 + Duration::from_secs(1));
        assert_eq!(ts2.wrapping_sub(ts0), 90_000);
    }
}
