//! `load-test`: a WHIP/WHEP load generator and meter.
//!
//! N WHEP viewers (str0m, RTP mode, no decoding) in one process, optionally
//! fed by its own WHIP publisher that embeds a send timestamp in every
//! access unit, so per-frame added latency can be measured exactly.

mod chart;
mod check;
mod clip;
mod procfs;
mod report;
mod sei;
mod units;
mod viewer;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use report::Report;
use sfu::client::{Options, Session};
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use str0m::format::Codec;
use tokio::sync::{Semaphore, watch};

/// A video codec's usual name.
fn codec_name(c: Codec) -> &'static str {
    match c {
        Codec::H264 => "H.264",
        Codec::H265 => "H.265",
        Codec::Vp8 => "VP8",
        Codec::Vp9 => "VP9",
        Codec::Av1 => "AV1",
        _ => "another codec",
    }
}

const USAGE: &str = "\
Examples (server on 127.0.0.1:8080, its rate limit off: `sfu --rate-limit 0`):

  # 200 viewers of our own 720p30 2 Mbit/s clip, 20 s measured, JSON out
  load-test run --publish clip --whip http://127.0.0.1:8080/whip/lt \\
      --whep http://127.0.0.1:8080/whep/lt --viewers 200 --duration 20 \\
      --server-pid $(pidof sfu) --json run.json

  # viewers of a stream someone else publishes (H.264, VP8, VP9, AV1 or H.265;
  # no latency figures)
  load-test run --whep http://127.0.0.1:8080/whep/cam --viewers 50

  # raise N until loss > 0.1 % or frame latency p99 > 200 ms
  taskset -c 1 sfu --rate-limit 0 --workers 1 &
  taskset -c 0 load-test ladder --whip http://127.0.0.1:8080/whip/lt \\
      --whep http://127.0.0.1:8080/whep/lt --server-pid $! \\
      --steps 10,50,100,200,400,600,800,1000 --step-duration 20 \\
      --json ladder.json --chart ladder.svg

  # WHIP/WHEP conformance suite (any server; the stream must be free)
  load-test check --whip http://127.0.0.1:8080/whip/check \\
      --whep http://127.0.0.1:8080/whep/check --json check.json

Latency is per frame: the send timestamp in the access unit's SEI
(user_data_unregistered) to the arrival of the frame's last packet, counted
only for frames sent after the viewer's POST (GOP-cache replays excluded).
TTFF is POST sent -> first complete keyframe access unit.
Loss counts sequence gaps per viewer and track in the measurement window.
CPU ratios are CPU seconds per wall second (1.0 = one core).";

/// WHIP/WHEP load generator: many WHEP viewers in one process.
#[derive(Parser, Debug)]
#[command(version, about, after_help = USAGE)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Join N viewers, measure for a while, report.
    Run(RunArgs),
    /// Raise N step by step until loss or latency exceeds its bound.
    Ladder(LadderArgs),
    /// WHIP/WHEP conformance suite against any server (RFC 9725,
    /// draft-ietf-wish-whep): prints a table, exit code 1 when a MUST fails.
    /// The stream named by --whip/--whep must be free (nobody publishing).
    Check(check::CheckArgs),
}

/// What to publish ourselves.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Source {
    /// A 720p30 x264 `testsrc2` clip + Opus tone made by ffmpeg at start,
    /// looped in real time with a timestamp SEI per access unit.
    Clip,
}

#[derive(Args, Debug, Clone)]
struct Common {
    /// WHEP endpoint the viewers POST to.
    #[arg(long)]
    whep: String,
    /// Joins per second (`50`, `50/s`, `3000/m`).
    #[arg(long, default_value = "50", value_parser = units::per_second)]
    ramp: f64,
    /// Wait after the last join before measuring (a joiner's GOP-cache
    /// replay must be over); `5`, `5s`, `500ms`.
    #[arg(long, default_value = "5", value_parser = units::seconds)]
    settle: f64,
    /// Bearer token for WHIP and WHEP requests.
    #[arg(long)]
    token: Option<String>,
    /// Accept any TLS certificate of an https:// server (self-signed).
    #[arg(long)]
    insecure: bool,
    /// DTLS stack of every session: `dimpl` (least memory and CPU per
    /// session, ECDSA server certificates only) or `openssl` (RSA server
    /// certificates too, e.g. GStreamer-based servers).
    #[arg(long, default_value = "dimpl", value_parser = parse_dtls)]
    dtls: sfu::dtls::Backend,
    /// Local address of the viewers' (and publisher's) UDP sockets.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Server process to sample CPU and RSS of (from /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Length of the encoded clip that is looped (seconds, a multiple of 2).
    #[arg(long, default_value_t = 10)]
    clip_seconds: u32,
    /// Video bit rate of the clip, kbit/s.
    #[arg(long, default_value_t = 2000)]
    video_kbps: u32,
    /// Every M-th viewer keeps full accounting (SRTP decryption, SEI
    /// latency, NACKs); the others switch to header-only accounting (loss
    /// and bitrate from the clear RTP headers) after their first complete
    /// keyframe (at 300 viewers of the 2 Mbit/s clip: the generator used
    /// 29 % of its core with the default, 57 % with all full). 1: all full.
    #[arg(long, default_value_t = 20)]
    sample_every: usize,
    /// Simulated downlink loss: each viewer discards every N-th RTP packet
    /// it receives, before its RTP stack sees it (so viewers on full
    /// accounting NACK it and the server can resend it; header-only
    /// viewers count it as lost). Off by default.
    #[arg(long, value_name = "N")]
    drop_every: Option<u32>,
    /// Runtime worker threads [default: number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// Number of viewers.
    #[arg(long)]
    viewers: usize,
    /// Measurement window after joins and settle (`10`, `10s`, `2m`).
    #[arg(long, default_value = "10", value_parser = units::seconds)]
    duration: f64,
    /// Publish our own stream first (needs --whip). Without it the viewers
    /// watch what someone else publishes at --whep: a probe session first
    /// learns its video codec (H.264, VP8, VP9, AV1 or H.265; latency needs our
    /// own H.264 publisher).
    #[arg(long, requires = "whip")]
    publish: Option<Source>,
    /// WHIP endpoint for --publish.
    #[arg(long)]
    whip: Option<String>,
    /// Write an SVG chart of the run (CPU, loss, latency at this N).
    #[arg(long)]
    chart: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct LadderArgs {
    #[command(flatten)]
    common: Common,
    /// WHIP endpoint: the ladder publishes the clip itself, once.
    #[arg(long)]
    whip: String,
    /// Viewer counts, ascending.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10,50,100,200,400,600,800,1000"
    )]
    steps: Vec<usize>,
    /// Measurement window of each step (`20`, `20s`, `1m`).
    #[arg(long, default_value = "20", value_parser = units::seconds)]
    step_duration: f64,
    /// A step holds while the loss ratio stays at or below this.
    #[arg(long, default_value_t = 0.001)]
    max_loss: f64,
    /// A step holds while frame latency p99 stays at or below this (ms).
    #[arg(long, default_value_t = 200.0)]
    max_p99_ms: f64,
    /// Write an SVG chart (viewers vs server CPU, loss, latency).
    #[arg(long)]
    chart: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        // Colour codes only for a person at a terminal, not in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    raise_nofile();
    let threads = match &cli.cmd {
        Cmd::Run(a) => a.common.threads,
        Cmd::Ladder(a) => a.common.threads,
        Cmd::Check(_) => None,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = threads {
        rt.worker_threads(t.max(1));
    }
    let rt = rt.build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::Run(a) => run_cmd(a).await,
            Cmd::Ladder(a) => ladder_cmd(a).await,
            Cmd::Check(a) => {
                let r = check::run(a).await?;
                if r.failed > 0 {
                    use std::io::Write;
                    let _ = std::io::stdout().flush();
                    std::process::exit(1);
                }
                Ok(())
            }
        }
    })
}

/// One socket per viewer: lift the soft open-file limit to the hard one.
fn raise_nofile() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// The publisher of a run: its task and controls.
struct Publisher {
    thread: std::thread::JoinHandle<()>,
    stop: Arc<AtomicBool>,
    bitrate: f64,
    stats: Arc<clip::PubStats>,
}

/// Viewers and publisher of one process.
struct Rig {
    c: Common,
    epoch: Instant,
    viewers: Vec<Arc<Mutex<viewer::Stats>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    groups: Vec<tokio::sync::mpsc::UnboundedSender<viewer::Slot>>,
    joins: Arc<Semaphore>,
    publisher: Option<Publisher>,
    rss_base: Option<u64>,
    /// Successful joins per second of the last `grow` (first POST to the
    /// last join settled).
    join_rate: Option<f64>,
    /// Video codec the viewers offer (H.264 unless a probe found another).
    video: Codec,
}

impl Rig {
    fn new(c: Common) -> Rig {
        let rss_base = c.server_pid.and_then(|p| procfs::rss_bytes(&p.to_string()));
        let epoch = Instant::now();
        let stop = watch::channel(false).0;
        // One accounting task per runtime thread.
        let n = c
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
            .max(1);
        let mut groups = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            groups.push(tx);
            tasks.push(tokio::spawn(viewer::group(rx, epoch, stop.subscribe())));
        }
        Rig {
            c,
            epoch,
            viewers: Vec::new(),
            tasks,
            stop,
            groups,
            joins: Arc::new(Semaphore::new(256)),
            publisher: None,
            rss_base,
            join_rate: None,
            video: Codec::H264,
        }
    }

    /// Viewers of a stream we do not publish: find out whether its video
    /// is VP8, VP9, AV1 or H.265 (one probe session) and offer that instead of
    /// H.264.
    async fn probe_codec(&mut self) {
        if let Some(c) = viewer::probe_video_codec(&self.c.whep, self.opts()).await {
            eprintln!(
                "the stream's video is {}: viewers offer it + Opus (no latency figures)",
                codec_name(c)
            );
            self.video = c;
        }
    }

    fn opts(&self) -> Options {
        Options {
            bind_ip: self.c.bind_ip,
            token: self.c.token.clone(),
            insecure: self.c.insecure,
            dtls: self.c.dtls,
            drop_every: self.c.drop_every,
            ..Options::default()
        }
    }

    /// Encode the clip, publish it and wait until it flows (1 s). The
    /// publisher runs on a thread and runtime of its own, so a busy viewer
    /// runtime never delays the frames (their timestamps are taken when
    /// they are handed to the session).
    async fn publish(&mut self, whip: &str, max_run: Duration) -> anyhow::Result<()> {
        let (secs, kbps) = (self.c.clip_seconds.max(2), self.c.video_kbps);
        eprintln!("encoding a {secs} s 720p30 clip at {kbps} kbit/s with ffmpeg...");
        let clip = tokio::task::spawn_blocking(move || clip::make(secs, kbps)).await??;
        let bitrate = clip.bitrate_bps();
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let whip_url = whip.to_string();
        let (whip, opts, epoch, stop2) = (whip.to_string(), self.opts(), self.epoch, stop.clone());
        let stats = Arc::new(clip::PubStats::default());
        let stats2 = stats.clone();
        let thread = std::thread::Builder::new()
            .name("publisher".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => return drop(ready_tx.send(Err(anyhow::Error::from(e)))),
                };
                rt.block_on(async move {
                    let mut s = match Session::publish(&whip, opts).await {
                        Ok(s) => s,
                        Err(e) => return drop(ready_tx.send(Err(e))),
                    };
                    if let Err(e) = s.wait_connected(Duration::from_secs(10)).await {
                        return drop(ready_tx.send(Err(e)));
                    }
                    let _ = ready_tx.send(Ok(()));
                    let deadline = Instant::now() + max_run;
                    let s =
                        clip::publish_loop(s, Arc::new(clip), epoch, stop2, deadline, stats2).await;
                    let _ = tokio::time::timeout(Duration::from_secs(5), s.close()).await;
                });
            })?;
        ready
            .await
            .map_err(|_| anyhow::anyhow!("publisher thread ended"))?
            .map_err(|e| anyhow::anyhow!("publishing to {whip_url} failed: {e:#}"))?;
        self.publisher = Some(Publisher {
            thread,
            stop,
            bitrate,
            stats,
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Viewers' memory is measured against the server with the stream up.
        self.rss_base = self
            .c
            .server_pid
            .and_then(|p| procfs::rss_bytes(&p.to_string()));
        Ok(())
    }

    /// Join viewers until there are `target`, at `ramp` per second, and wait
    /// until every join finished (connected or failed).
    async fn grow(&mut self, target: usize) {
        let from = self.viewers.len();
        if target <= from {
            return;
        }
        let bar = ProgressBar::new((target - from) as u64).with_style(
            ProgressStyle::with_template("joining  {bar:40} {pos}/{len} viewers {msg}")
                .expect("valid template"),
        );
        let start = tokio::time::Instant::now();
        let gap = Duration::from_secs_f64(1.0 / self.c.ramp.max(0.1));
        for i in from..target {
            tokio::time::sleep_until(start + gap * (i - from) as u32).await;
            let permit = self
                .joins
                .clone()
                .acquire_owned()
                .await
                .expect("not closed");
            let st = Arc::new(Mutex::new(viewer::Stats::new(Instant::now())));
            let (st2, ep, codec) = (st.clone(), self.c.whep.clone(), self.video);
            let opts = Options {
                tracks: viewer::offer_tracks(codec),
                ..self.opts()
            };
            let group = self.groups[i % self.groups.len()].clone();
            let sample = i % self.c.sample_every.max(1) == 0;
            self.tasks.push(tokio::spawn(async move {
                if let Some(slot) = viewer::join(ep, opts, codec, st2, sample).await {
                    drop(permit);
                    // A closed group (stopping) drops the slot: it closes
                    // without DELETE, as the session task ends.
                    let _ = group.send(slot);
                }
            }));
            self.viewers.push(st);
            bar.set_position(self.settled(from) as u64);
        }
        let t0 = Instant::now();
        while t0.elapsed() < viewer::JOIN_TIMEOUT + Duration::from_secs(8) {
            let n = self.settled(from);
            bar.set_position(n as u64);
            bar.set_message(format!("({} failed)", self.failed(from)));
            if n == target - from {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bar.finish_and_clear();
        let took = (Instant::now() - start.into_std()).as_secs_f64();
        let ok = target - from - self.failed(from);
        self.join_rate = (took > 0.0).then(|| ok as f64 / took);
    }

    fn settled(&self, from: usize) -> usize {
        self.viewers[from..]
            .iter()
            .filter(|v| v.lock().unwrap().state != viewer::State::Joining)
            .count()
    }

    fn failed(&self, from: usize) -> usize {
        self.viewers[from..]
            .iter()
            .filter(|v| matches!(v.lock().unwrap().state, viewer::State::Failed(_)))
            .count()
    }

    /// Settle, then measure for `secs` and report.
    async fn measure(&mut self, secs: f64, label: &str) -> Report {
        tokio::time::sleep(Duration::from_secs_f64(self.c.settle.max(0.0))).await;
        for v in &self.viewers {
            v.lock().unwrap().start_window();
        }
        let pid = self.c.server_pid.map(|p| p.to_string());
        let gen_cpu = procfs::CpuMeter::start("self");
        let srv_cpu = pid.as_deref().map(procfs::CpuMeter::start);
        let t0 = Instant::now();
        // Health probe: how late a 10 ms timer fires on the viewers' runtime.
        let window = Duration::from_secs_f64(secs.max(0.0));
        let lag = tokio::spawn(async move {
            let mut v = Vec::new();
            while t0.elapsed() < window {
                let t = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                v.push((t.elapsed().as_secs_f64() * 1e3 - 10.0).max(0.0));
            }
            v
        });
        let ticks = (secs * 10.0).ceil().max(1.0) as u64;
        let bar = ProgressBar::new(ticks).with_style(
            ProgressStyle::with_template("{prefix} {bar:40} {elapsed}/{msg}")
                .expect("valid template"),
        );
        bar.set_prefix(label.to_string());
        bar.set_message(format!("{secs:.0}s"));
        let start = tokio::time::Instant::now();
        for i in 1..=ticks {
            tokio::time::sleep_until(start + Duration::from_millis(100 * i)).await;
            bar.set_position(i);
        }
        bar.finish_and_clear();
        let window_s = t0.elapsed().as_secs_f64();
        let generator_cpu = gen_cpu.ratio();
        let server_cpu = srv_cpu.and_then(|m| m.ratio());
        let server_rss = pid.as_deref().and_then(procfs::rss_bytes);
        let timer_lag = tokio::time::timeout(Duration::from_secs(1), lag)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let snap: Vec<viewer::Stats> = self
            .viewers
            .iter()
            .map(|v| {
                let mut g = v.lock().unwrap();
                g.measuring = false;
                g.clone()
            })
            .collect();
        report::build(
            &snap,
            &report::Context {
                requested: self.viewers.len(),
                window_s,
                generator_cpu,
                server_cpu,
                server_rss,
                server_rss_base: self.rss_base,
                published_bps: self.publisher.as_ref().map(|p| p.bitrate),
                join_rate: self.join_rate,
                timer_lag_ms: timer_lag,
                publisher: self.publisher.as_ref().map(|p| {
                    (
                        p.stats.keyframe_requests.load(Ordering::Relaxed),
                        p.stats.closed.load(Ordering::Relaxed),
                    )
                }),
            },
        )
    }

    /// Close every viewer (DELETE) and the publisher; bounded in time.
    async fn shutdown(self) {
        let _ = self.stop.send(true);
        let all = futures_join(self.tasks);
        let _ = tokio::time::timeout(Duration::from_secs(20), all).await;
        if let Some(p) = self.publisher {
            p.stop.store(true, Ordering::Relaxed);
            // The thread closes its session (DELETE, at most 5 s) and ends.
            let join = tokio::task::spawn_blocking(move || p.thread.join());
            let _ = tokio::time::timeout(Duration::from_secs(8), join).await;
        }
    }
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

fn write_json(path: &Option<PathBuf>, v: &impl serde::Serialize) -> anyhow::Result<()> {
    if let Some(p) = path {
        std::fs::write(p, serde_json::to_string_pretty(v)? + "\n")
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
    }
    Ok(())
}

async fn run_cmd(a: RunArgs) -> anyhow::Result<()> {
    let mut rig = Rig::new(a.common.clone());
    if a.publish.is_some() {
        let whip = a.whip.as_deref().expect("clap requires --whip");
        let ramp_s = a.viewers as f64 / rig.c.ramp.max(0.1);
        let max_run = Duration::from_secs_f64(ramp_s + rig.c.settle + a.duration + 120.0);
        rig.publish(whip, max_run).await?;
    } else {
        rig.probe_codec().await;
    }
    rig.grow(a.viewers).await;
    let r = rig.measure(a.duration, "running").await;
    rig.shutdown().await;
    println!("load-test run: {} viewers of {}", a.viewers, a.common.whep);
    print!("{}", report::table(&r));
    write_json(&a.common.json, &r)?;
    if let Some(c) = &a.chart {
        chart::draw(c, std::slice::from_ref(&r), 0.001, 200.0)?;
        println!("chart: {}", c.display());
    }
    Ok(())
}

/// The JSON of a ladder: the report keys of the step at `max_viewers` (the
/// first step when none held), plus the ladder's own keys.
#[derive(serde::Serialize)]
struct Ladder {
    /// Largest N that held both bounds with every join successful.
    max_viewers: usize,
    #[serde(flatten)]
    at_max: Option<Report>,
    max_loss: f64,
    max_p99_ms: f64,
    steps: Vec<Report>,
}

async fn ladder_cmd(a: LadderArgs) -> anyhow::Result<()> {
    let mut steps = a.steps.clone();
    steps.sort_unstable();
    steps.dedup();
    steps.retain(|&n| n > 0);
    anyhow::ensure!(!steps.is_empty(), "--steps: give at least one viewer count");
    let mut rig = Rig::new(a.common.clone());
    let top = *steps.last().expect("non-empty");
    let per_step = rig.c.settle + a.step_duration + 30.0;
    let max_run = Duration::from_secs_f64(
        top as f64 / rig.c.ramp.max(0.1) + per_step * steps.len() as f64 + 120.0,
    );
    rig.publish(&a.whip, max_run).await?;
    let mut out = Ladder {
        max_viewers: 0,
        at_max: None,
        max_loss: a.max_loss,
        max_p99_ms: a.max_p99_ms,
        steps: Vec::new(),
    };
    println!(
        "{:>7} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9}",
        "viewers",
        "connected",
        "loss %",
        "kbit/s",
        "lat p50",
        "lat p99",
        "ttff p50",
        "ttff p99",
        "srv CPU",
        "gen CPU",
        "KiB/view"
    );
    for &n in &steps {
        rig.grow(n).await;
        let r = rig
            .measure(a.step_duration, &format!("{n:>5} viewers"))
            .await;
        let p99 = r.latency_ms.p99.unwrap_or(f64::INFINITY);
        let held = r.viewers_connected == n && r.loss_ratio <= a.max_loss && p99 <= a.max_p99_ms;
        let pc = |v: Option<f64>| v.map_or("-".into(), |c| format!("{:.0}%", c * 100.0));
        println!(
            "{:>7} {:>9} {:>8.4} {:>9.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>8} {:>8} {:>9} {}",
            n,
            r.viewers_connected,
            r.loss_ratio * 100.0,
            r.bitrate_bps / 1e3,
            r.latency_ms.p50.unwrap_or(f64::NAN),
            p99,
            r.ttff_ms.p50.unwrap_or(f64::NAN),
            r.ttff_ms.p99.unwrap_or(f64::NAN),
            pc(r.server_cpu_ratio),
            pc(r.generator_cpu_ratio),
            r.server_rss_per_viewer_bytes
                .map_or("-".into(), |b| format!("{:.0}", b / 1024.0)),
            if held { "held" } else { "FAILED" }
        );
        if r.generator_timer_lag_ms
            .p99
            .is_some_and(|l| l > report::GENERATOR_LAG_BOUND_MS)
        {
            println!(
                "        (generator timer lag p99 {:.0} ms: this step is bounded by the load generator)",
                r.generator_timer_lag_ms.p99.unwrap_or(0.0)
            );
        }
        out.steps.push(r);
        if !held {
            break;
        }
        out.max_viewers = n;
    }
    rig.shutdown().await;
    out.at_max = out
        .steps
        .iter()
        .rev()
        .find(|r| r.viewers_requested == out.max_viewers)
        .or(out.steps.first())
        .cloned();
    if let Some(r) = &out.at_max {
        println!("summary at {} viewers:", r.viewers_requested);
        print!("{}", report::table(r));
    }
    println!(
        "max viewers: {} (loss <= {} %, frame latency p99 <= {} ms, all joins ok)",
        out.max_viewers,
        a.max_loss * 100.0,
        a.max_p99_ms
    );
    write_json(&a.common.json, &out)?;
    if let Some(c) = &a.chart {
        chart::draw(c, &out.steps, a.max_loss, a.max_p99_ms)?;
        println!("chart: {}", c.display());
    }
    Ok(())
}

/// `--dtls`: `dimpl` or `openssl` (a client has no use for `auto`, which
/// picks by the peer's ClientHello).
fn parse_dtls(s: &str) -> Result<sfu::dtls::Backend, String> {
    match s.parse()? {
        sfu::dtls::Backend::Auto => Err("auto is for servers: dimpl or openssl".into()),
        b => Ok(b),
    }
}
