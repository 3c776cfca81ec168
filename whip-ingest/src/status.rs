//! Logging to standard error and the one-line status display.
//!
//! On a terminal the status line is redrawn in place every second; log lines
//! first erase it so the two never mix. Elsewhere a plain log line is written
//! every five seconds.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

static DRAWN: AtomicBool = AtomicBool::new(false);

/// Standard error, erasing a drawn status line before each log line.
#[derive(Debug, Clone, Copy)]
struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = std::io::Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        if DRAWN.swap(false, Ordering::AcqRel) {
            let _ = std::io::stderr().write_all(b"\r\x1b[K");
        }
        std::io::stderr()
    }
}

/// Install the tracing subscriber: `RUST_LOG` if set, else info (warn with
/// `--quiet`, debug with `-v`, trace with `-vv`) for whip-ingest and the
/// client, warn for the rest.
pub fn init_logging(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,whip_ingest={level},sfu::client={level}"))
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(LogWriter)
        .try_init();
}

/// How often the status is shown and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Redrawn line on a terminal.
    Terminal,
    /// Plain log lines.
    Log,
    /// `--quiet`.
    Off,
}

impl Mode {
    /// The mode for this process's standard error.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Off
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Log
        }
    }

    /// Interval between status updates.
    pub fn interval(self) -> Duration {
        match self {
            Mode::Terminal => Duration::from_secs(1),
            _ => Duration::from_secs(5),
        }
    }
}

/// Counters shown in the status.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Video frames sent.
    pub frames: u64,
    /// Keyframes sent.
    pub keyframes: u64,
    /// Audio packets sent.
    pub audio_packets: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// WHIP reconnections after the first session.
    pub reconnects: u64,
    /// Source stalls (watchdog resets).
    pub stalls: u64,
    /// Frames dropped while not connected or waiting for a keyframe.
    pub dropped: u64,
    /// PLI/FIR from the server.
    pub keyframe_requests: u64,
}

/// Formats and shows the status.
#[derive(Debug)]
pub struct Status {
    mode: Mode,
    last_bytes: u64,
    last_at: tokio::time::Instant,
}

impl Status {
    /// A status display in `mode`.
    pub fn new(mode: Mode) -> Status {
        Status {
            mode,
            last_bytes: 0,
            last_at: tokio::time::Instant::now(),
        }
    }

    /// Show the status: `state` is e.g. "live" or "retrying in 2.0 s".
    pub fn show(&mut self, state: &str, s: &Stats) {
        let now = tokio::time::Instant::now();
        let secs = (now - self.last_at).as_secs_f64().max(1e-3);
        let kbps = (s.bytes - self.last_bytes) as f64 * 8.0 / 1000.0 / secs;
        self.last_bytes = s.bytes;
        self.last_at = now;
        let line = line(state, s, kbps);
        match self.mode {
            Mode::Terminal => {
                let mut e = std::io::stderr().lock();
                let _ = write!(e, "\r\x1b[K{line}");
                let _ = e.flush();
                DRAWN.store(true, Ordering::Release);
            }
            Mode::Log => tracing::info!("{line}"),
            Mode::Off => {}
        }
    }
}

/// The status text: frames sent, bitrate, keyframes, reconnects, and when
/// there were any, source stalls and the frames dropped (no live session, or
/// waiting for a keyframe after one went live), so none go unnoticed.
fn line(state: &str, s: &Stats, kbps: f64) -> String {
    let mut line = format!(
        "{state}: {} frames, {kbps:.0} kbit/s, {} keyframes, {} reconnects",
        s.frames, s.keyframes, s.reconnects
    );
    if s.stalls > 0 {
        line += &format!(", {} stalls", s.stalls);
    }
    if s.dropped > 0 {
        line += &format!(", {} frames dropped", s.dropped);
    }
    line
}

/// End the status line (keep the last one visible) before the final message.
pub fn finish() {
    if DRAWN.swap(false, Ordering::AcqRel) {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_frames_are_shown() {
        let mut s = Stats {
            frames: 90,
            keyframes: 3,
            ..Stats::default()
        };
        assert_eq!(
            line("live", &s, 200.4),
            "live: 90 frames, 200 kbit/s, 3 keyframes, 0 reconnects"
        );
        s.dropped = 57;
        s.stalls = 1;
        assert_eq!(
            line("live", &s, 0.0),
            "live: 90 frames, 0 kbit/s, 3 keyframes, 0 reconnects, 1 stalls, 57 frames dropped"
        );
    }
}
