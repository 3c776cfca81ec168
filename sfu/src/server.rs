//! Assembles the server: sockets, workers, UDP receive threads, HTTP.

use crate::config::Config;
use crate::demux::Demux;
use crate::http::{self, App};
use crate::registry::Registry;
use crate::udp::{self, Sockets};
use crate::worker::{INBOX, Shared, Worker};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use tokio::net::TcpListener;
use tracing::info;

/// A started server.
pub struct Server {
    /// Application state (for tests and metrics).
    pub app: Arc<App>,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    /// Host candidates put in answers.
    pub candidates: Vec<SocketAddr>,
    /// HTTPS certificate (when configured); [`http::tls::Tls::reload`] it on SIGHUP.
    pub tls: Option<Arc<http::tls::Tls>>,
    listener: Option<TcpListener>,
}

impl Server {
    /// Bind sockets and start workers and UDP threads. Call [`Server::serve`]
    /// (inside a Tokio runtime) to serve HTTP.
    pub async fn start(cfg: &Config) -> anyhow::Result<Server> {
        install_crypto();
        let sockets = Arc::new(Sockets::bind(cfg.udp, &cfg.advertise)?);
        let demux = Arc::new(Demux::default());
        let mut txs = Vec::new();
        let mut rxs = Vec::new();
        for _ in 0..cfg.workers {
            let (tx, rx) = std::sync::mpsc::sync_channel(INBOX);
            txs.push(tx);
            rxs.push(rx);
        }
        let shared = Arc::new(Shared {
            demux: demux.clone(),
            registry: Registry::default(),
            shards: txs.clone(),
            load: (0..cfg.workers).map(|_| AtomicUsize::new(0)).collect(),
            sockets: sockets.clone(),
            gop_enabled: cfg.gop.enabled,
            metrics: crate::metrics::Metrics::new(),
            publisher_grace: cfg.publisher_grace,
        });
        for (i, rx) in rxs.into_iter().enumerate() {
            let w = Worker::new(i, shared.clone());
            std::thread::Builder::new()
                .name(format!("sfu-worker-{i}"))
                .spawn(move || w.run(rx))?;
        }
        for i in 0..sockets.list.len() {
            let (s, d, t) = (sockets.clone(), demux.clone(), txs.clone());
            std::thread::Builder::new()
                .name(format!("sfu-udp-{i}"))
                .spawn(move || udp::recv_loop(s, i, d, t))?;
        }
        let cert = str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| anyhow::anyhow!("cannot generate DTLS certificate"))?;
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => Some(Arc::new(http::tls::Tls::load(c, k)?)),
            _ => None,
        };
        let listener = TcpListener::bind(cfg.http)
            .await
            .map_err(|e| anyhow::anyhow!("cannot bind HTTP {}: {e}", cfg.http))?;
        let http_addr = listener.local_addr()?;
        let candidates = sockets.candidates.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        info!(%scheme, http = %http_addr, udp = ?candidates, workers = cfg.workers, "sfu listening");
        Ok(Server {
            app: Arc::new(App::new(shared, cert, cfg.clone())),
            http_addr,
            candidates,
            tls,
            listener: Some(listener),
        })
    }

    /// Close every session properly (RTCP BYE + DTLS close_notify to each
    /// peer) and wait for the workers, at most `timeout`. Returns the number
    /// of sessions closed.
    pub fn shutdown(app: &App, timeout: std::time::Duration) -> usize {
        let (tx, rx) = std::sync::mpsc::channel();
        let n = app.shared.shards.len();
        for s in 0..n {
            app.shared
                .send_control(s, crate::worker::ShardMsg::Shutdown(tx.clone()));
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut closed = 0;
        for _ in 0..n {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(c) => closed += c,
                Err(_) => break,
            }
        }
        closed
    }

    /// Serve HTTP until the task is dropped.
    pub async fn serve(mut self) {
        let listener = self.listener.take().expect("serve once");
        http::serve(listener, self.app.clone(), self.tls.clone()).await
    }
}

/// Install str0m's default crypto provider (aws-lc-rs) once per process.
pub fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| str0m::crypto::from_feature_flags().install_process_default());
}
