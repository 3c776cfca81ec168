//! `whip-ingest`: publish an RTSP camera (H.264 or H.265), an H.264, VP8,
//! VP9 or AV1 file, standard input or RTP from ffmpeg/GStreamer (described
//! by an SDP file) to a WHIP server.
//!
//! ```text
//! whip-ingest rtsp://admin:secret@192.168.1.10:554/stream1 --url http://127.0.0.1:8080/whip/cam1
//! whip-ingest clip.h264 --loop --url http://127.0.0.1:8080/whip/cam1
//! ffmpeg -f lavfi -i testsrc2=size=1280x720:rate=30 -t 10 -c:v libvpx-vp9 -g 60 clip.ivf
//! whip-ingest clip.ivf --loop --url http://127.0.0.1:8080/whip/cam1
//! ffmpeg -re -f lavfi -i testsrc2=size=1280x720:rate=30 -c:v libx264 -profile:v baseline \
//!   -bf 0 -g 60 -tune zerolatency -pix_fmt yuv420p -f rtp rtp://127.0.0.1:5004 -sdp_file x.sdp &
//! sleep 1
//! whip-ingest x.sdp --url http://127.0.0.1:8080/whip/cam1
//! rpicam-vid -t 0 --inline -o - | whip-ingest - --url http://pi:8080/whip/cam1
//! whip-ingest test --size 1280x720 --fps 30 --bitrate 2M --audio --url http://127.0.0.1:8080/whip/test
//! ```
//!
//! Exit codes: 0 clean stop (Ctrl-C, SIGTERM, end of a file: the session is
//! DELETEd), 2 bad arguments, 3 unusable source, 4 server refused (or its
//! TLS certificate is not trusted), 5 server unreachable for `--give-up-after`.

mod annexb;
mod cli;
mod ivf;
mod media;
mod packetize;
mod publish;
mod rtp;
mod rtsp;
mod sdp;
mod status;
mod testsrc;

use clap::Parser;
use cli::{Cli, EXIT_OK, Fail, SourceKind};
use tokio::sync::{mpsc, watch};

fn main() {
    let cli = Cli::parse();
    status::init_logging(cli.quiet, cli.verbose);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("whip-ingest: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = rt.block_on(run(cli));
    status::finish();
    let code = match result {
        Ok(()) => EXIT_OK,
        Err(f) => {
            eprintln!("whip-ingest: {}", f.msg);
            f.code
        }
    };
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    std::process::exit(code);
}

async fn run(cli: Cli) -> Result<(), Fail> {
    sfu::client::http::Url::parse(&cli.url).map_err(|e| Fail::usage(format!("--url: {e}")))?;
    let kind = SourceKind::of(&cli.source).map_err(Fail::usage)?;
    if cli.repeat && !matches!(kind, SourceKind::AnnexB(_) | SourceKind::Ivf(_)) {
        return Err(Fail::usage(
            "--loop needs a file source (PATH.h264, PATH.264 or PATH.ivf)",
        ));
    }
    let (tx, rx) = mpsc::channel::<media::Media>(256);
    let (go_tx, go_rx) = watch::channel(false);
    let keyframes = media::KeyframeRequest::default();
    let info = match kind {
        SourceKind::Test => {
            let set = testsrc::TestSettings {
                width: cli.size.0,
                height: cli.size.1,
                fps: cli.fps.unwrap_or(30.0),
                bitrate: cli.bitrate,
                gop_secs: cli.gop.as_secs_f64(),
                audio: cli.audio,
            };
            let (info, src) = testsrc::open(set, keyframes.clone())?;
            tokio::spawn(src.run(tx, go_rx));
            info
        }
        SourceKind::AnnexB(path) => {
            let (info, src) = annexb::open_file(
                path,
                cli.repeat,
                cli.fps,
                cli.stall_timeout,
                keyframes.clone(),
            )
            .await?;
            tokio::spawn(src.run(tx, go_rx));
            info
        }
        SourceKind::Ivf(path) => {
            let (info, src) = ivf::open_file(path, cli.repeat, cli.fps, keyframes.clone()).await?;
            tokio::spawn(src.run(tx, go_rx));
            info
        }
        SourceKind::Stdin => {
            let (info, src) = annexb::open_stdin(cli.fps, cli.stall_timeout);
            tokio::spawn(src.run(tx, go_rx));
            info
        }
        SourceKind::Rtsp(url) => {
            if cli.fps.is_some() {
                tracing::warn!("--fps is ignored for RTSP sources (they carry timestamps)");
            }
            let (info, src) = rtsp::open(&url, cli.rtsp_transport, cli.stall_timeout).await?;
            tokio::spawn(src.run(tx));
            info
        }
        SourceKind::Sdp(path) => {
            if cli.fps.is_some() {
                tracing::warn!("--fps is ignored for RTP sources (they carry timestamps)");
            }
            let (info, src) = rtp::open_sdp(&path, cli.stall_timeout).await?;
            tokio::spawn(src.run(tx));
            info
        }
    };
    let cfg = publish::Config {
        url: cli.url.clone(),
        token: cli.token.clone().filter(|t| !t.is_empty()),
        insecure: cli.insecure,
        give_up_after: cli.give_up_after,
        status: status::Mode::detect(cli.quiet),
        ice_servers: cli
            .ice_servers
            .iter()
            .map(|s| sfu::client::stun::IceServer {
                url: s.url.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect(),
        relay_only: cli.relay_only,
        conflict_wait: cli.conflict_wait,
    };
    publish::run(cfg, info, rx, go_tx, keyframes).await
}
