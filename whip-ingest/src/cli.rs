//! Command line and exit codes.

use clap::Parser;
use std::time::Duration;

/// Exit code after a clean stop (Ctrl-C, SIGTERM, end of a file).
pub const EXIT_OK: i32 = 0;
/// Exit code for bad arguments (also clap's usage errors).
pub const EXIT_USAGE: i32 = 2;
/// Exit code for an unusable source (missing file, corrupt SDP, codec).
pub const EXIT_SOURCE: i32 = 3;
/// Exit code when the server refused the session (4xx) or presented a TLS
/// certificate that failed verification: retrying cannot help.
pub const EXIT_REFUSED: i32 = 4;
/// Exit code when the server stayed unreachable for `--give-up-after`.
pub const EXIT_UNREACHABLE: i32 = 5;

/// Publish RTSP cameras, H.264/VP8/VP9/AV1 files, standard input or RTP from
/// ffmpeg/GStreamer to a WHIP server.
///
/// SOURCE is one of:
///   rtsp://[user:pass@]host[:port]/path   RTSP camera (H.264 or H.265; G.711 or Opus audio)
///   PATH.h264 | PATH.264   Annex B H.264 file, paced at its frame rate
///   PATH.ivf               VP8, VP9 or AV1 IVF file, paced at its frame rate
///   PATH.sdp               RTP described by an SDP file (ffmpeg -f rtp -sdp_file PATH.sdp)
///   -                      Annex B H.264 on standard input (rpicam-vid --inline -o -)
///   test                   synthetic H.264 test pattern (OpenH264), optional Opus beep
///
/// Exit codes: 0 clean stop, 2 bad arguments, 3 unusable source, 4 server
/// refused (or its TLS certificate is not trusted), 5 server unreachable
/// (only with --give-up-after).
#[derive(Debug, Clone, Parser)]
#[command(name = "whip-ingest", version, verbatim_doc_comment)]
pub struct Cli {
    /// rtsp://[user:pass@]host[:port]/path, PATH.h264, PATH.264, PATH.ivf
    /// (VP8/VP9/AV1), PATH.sdp, - (Annex B H.264 on stdin) or test (a
    /// synthetic pattern).
    pub source: String,

    /// WHIP endpoint, e.g. http://127.0.0.1:8080/whip/cam1
    #[arg(long, env = "WHIP_URL")]
    pub url: String,

    /// Bearer token sent as `Authorization: Bearer T`.
    #[arg(long, env = "WHIP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Accept any TLS certificate of an https:// server (self-signed). Without
    /// it, a certificate that fails verification ends the run (exit code 4).
    #[arg(long)]
    pub insecure: bool,

    /// Frame rate of an Annex B, IVF or test source [default: from the SPS
    /// timing info or the IVF time base, else 30].
    #[arg(long, value_parser = parse_fps)]
    pub fps: Option<f64>,

    /// `test` source: picture size WIDTHxHEIGHT (even numbers).
    #[arg(long, default_value = "1280x720", value_parser = parse_size)]
    pub size: (usize, usize),

    /// `test` source: video bitrate in bit/s (suffix k or M allowed).
    #[arg(long, default_value = "2M", value_parser = parse_bitrate)]
    pub bitrate: u32,

    /// `test` source: seconds between keyframes (GOP length).
    #[arg(long, default_value = "2", value_parser = parse_secs)]
    pub gop: Duration,

    /// `test` source: also publish Opus audio (a 440 Hz beep every second).
    #[arg(long)]
    pub audio: bool,

    /// Repeat a file source (.h264, .264, .ivf) forever (continuous RTP
    /// timestamps and sequence numbers).
    #[arg(long = "loop")]
    pub repeat: bool,

    /// No status line; warnings and errors only.
    #[arg(long, short)]
    pub quiet: bool,

    /// More logging (-v debug, -vv trace). `RUST_LOG` overrides.
    #[arg(long, short, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// How an RTSP camera sends RTP: interleaved in the TCP connection, or UDP.
    #[arg(long, value_enum, default_value = "tcp")]
    pub rtsp_transport: crate::rtsp::RtspTransport,

    /// Seconds without media after which an RTP or RTSP source is reset;
    /// also the time (at least 5 s) a camera has to answer an RTSP request.
    #[arg(long, default_value = "5", value_parser = parse_secs)]
    pub stall_timeout: Duration,

    /// Exit with code 5 after the server has been unreachable (or answered
    /// 5xx) for this many seconds; 0 = retry forever.
    #[arg(long, default_value = "0", value_parser = parse_secs0)]
    pub give_up_after: Duration,

    /// Seconds from the start during which a `409` (the stream name already
    /// has a publisher) is asked again before it ends the run (exit 4): a
    /// previous run that was killed or lost power holds the name until the
    /// server reaps it (≈ 30 s on ours). 0 = exit 4 at once.
    #[arg(long, default_value = "45", value_parser = parse_secs0)]
    pub conflict_wait: Duration,

    /// STUN/TURN server `URL[,user,credential]` (repeatable). Each `stun:`
    /// server is asked for our public (server-reflexive) address; the first
    /// `turn:` server (UDP, with user and credential) relays for us (a relay
    /// candidate). `turns:` is not supported.
    #[arg(long = "ice-server", value_parser = IceServer::parse)]
    pub ice_servers: Vec<IceServer>,

    /// Offer only the TURN relay candidate (no host or server-reflexive
    /// ones): all media goes through the `--ice-server turn:` relay.
    #[arg(long)]
    pub relay_only: bool,
}

/// One `--ice-server` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URL.
    pub url: String,
    /// TURN user name.
    pub username: Option<String>,
    /// TURN credential.
    pub credential: Option<String>,
}

impl IceServer {
    /// Parse `URL[,user,credential]`.
    pub fn parse(s: &str) -> Result<IceServer, String> {
        let mut parts = s.splitn(3, ',');
        let url = parts.next().unwrap_or_default().trim().to_string();
        if !["stun:", "turn:", "turns:"]
            .iter()
            .any(|p| url.starts_with(p))
        {
            return Err(format!("want stun:, turn: or turns: URL, got '{url}'"));
        }
        let username = parts.next().map(str::to_string);
        let credential = parts.next().map(str::to_string);
        if username.is_some() != credential.is_some() {
            return Err("want URL or URL,user,credential".into());
        }
        Ok(IceServer {
            url,
            username,
            credential,
        })
    }
}

fn parse_fps(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.5..=1000.0).contains(&f) => Ok(f),
        _ => Err(format!("want a frame rate between 0.5 and 1000, got '{s}'")),
    }
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("want WIDTHxHEIGHT such as 1280x720, got '{s}'");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    Ok((w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?))
}

fn parse_bitrate(s: &str) -> Result<u32, String> {
    let (num, mul) = match s.strip_suffix(['k', 'K']) {
        Some(n) => (n, 1e3),
        None => match s.strip_suffix('M') {
            Some(n) => (n, 1e6),
            None => (s, 1.0),
        },
    };
    match num.parse::<f64>() {
        Ok(v) if (10e3..=50e6).contains(&(v * mul)) => Ok((v * mul) as u32),
        _ => Err(format!("want a bitrate from 10k to 50M bit/s, got '{s}'")),
    }
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(f) if f > 0.0 && f < 1e6 => Ok(Duration::from_secs_f64(f)),
        _ => Err(format!("want a positive number of seconds, got '{s}'")),
    }
}

fn parse_secs0(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..1e9).contains(&f) => Ok(Duration::from_secs_f64(f)),
        _ => Err(format!("want a number of seconds (0 = never), got '{s}'")),
    }
}

/// What SOURCE names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceKind {
    /// Annex B H.264 file.
    AnnexB(std::path::PathBuf),
    /// IVF file (VP8, VP9, AV1).
    Ivf(std::path::PathBuf),
    /// Annex B H.264 on standard input.
    Stdin,
    /// RTP described by an SDP file.
    Sdp(std::path::PathBuf),
    /// An RTSP camera URL.
    Rtsp(String),
    /// The synthetic test pattern.
    Test,
}

impl SourceKind {
    /// Classify SOURCE; `Err` is a usage error.
    pub fn of(s: &str) -> Result<SourceKind, String> {
        let lower = s.to_ascii_lowercase();
        if s == "-" {
            Ok(SourceKind::Stdin)
        } else if lower.starts_with("rtsp://") {
            Ok(SourceKind::Rtsp(s.into()))
        } else if lower.starts_with("rtsps://") {
            Err("rtsps:// is not supported: use rtsp:// (RTSP over TLS is rare on cameras)".into())
        } else if s == "test" {
            Ok(SourceKind::Test)
        } else if lower.ends_with(".sdp") {
            Ok(SourceKind::Sdp(s.into()))
        } else if lower.ends_with(".h264") || lower.ends_with(".264") {
            Ok(SourceKind::AnnexB(s.into()))
        } else if lower.ends_with(".ivf") {
            Ok(SourceKind::Ivf(s.into()))
        } else {
            Err(format!(
                "unrecognised SOURCE '{s}': want rtsp://..., PATH.h264, PATH.264, PATH.ivf, PATH.sdp, - (stdin) or test"
            ))
        }
    }
}

/// A failure with its exit code and a one-line message.
#[derive(Debug)]
pub struct Fail {
    /// Process exit code.
    pub code: i32,
    /// One-line reason.
    pub msg: String,
}

impl Fail {
    /// Bad arguments (exit 2).
    pub fn usage(msg: impl Into<String>) -> Fail {
        Fail {
            code: EXIT_USAGE,
            msg: msg.into(),
        }
    }

    /// Unusable source (exit 3).
    pub fn source(msg: impl Into<String>) -> Fail {
        Fail {
            code: EXIT_SOURCE,
            msg: msg.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_and_ice_servers() {
        assert_eq!(SourceKind::of("-"), Ok(SourceKind::Stdin));
        assert_eq!(
            SourceKind::of("a/B.H264"),
            Ok(SourceKind::AnnexB("a/B.H264".into()))
        );
        assert!(matches!(SourceKind::of("x.sdp"), Ok(SourceKind::Sdp(_))));
        assert!(matches!(SourceKind::of("x.IVF"), Ok(SourceKind::Ivf(_))));
        assert!(SourceKind::of("x.mp4").is_err());
        let s = IceServer::parse("turn:t.example:3478,u,p,w").unwrap();
        assert_eq!(s.credential.as_deref(), Some("p,w"));
        assert!(IceServer::parse("http://x").is_err());
        assert!(IceServer::parse("stun:x,u").is_err());
        Cli::try_parse_from(["whip-ingest", "x.h264", "--url", "http://h/whip/a"]).unwrap();
        assert!(
            Cli::try_parse_from(["whip-ingest", "x.h264", "--url", "u", "--fps", "0"]).is_err()
        );
    }
}
