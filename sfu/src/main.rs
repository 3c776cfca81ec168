//! `sfu`: the WHIP/WHEP server binary.

use clap::Parser;
use sfu::config::{Cli, Config, LogFormat};
use sfu::server::Server;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

fn main() {
    let cli = Cli::parse();
    let cfg = match Config::resolve(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sfu: {e}");
            std::process::exit(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match cfg.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .json()
            .init(),
        // Log lines go to standard output: colours only on a terminal.
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colour(
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .init(),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let server = match Server::start(&cfg).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sfu: {e}");
                std::process::exit(1);
            }
        };
        let app = server.app.clone();
        #[cfg(unix)]
        if let Some(tls) = server.tls.clone() {
            tokio::spawn(reload_on_sighup(tls));
        }
        tokio::select! {
            _ = server.serve() => {}
            _ = shutdown_signal() => {
                tracing::info!("shutting down: closing every session");
                let n = tokio::task::spawn_blocking(move || {
                    Server::shutdown(&app, std::time::Duration::from_secs(3))
                })
                .await
                .unwrap_or(0);
                tracing::info!(sessions = n, "shutdown complete");
            }
        }
    });
}

/// ANSI colours in text logs: only when they go to a terminal, and not
/// with a non-empty `NO_COLOR` (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// SIGHUP: re-read the TLS certificate and key; new connections use them,
/// established connections and media sessions are untouched.
#[cfg(unix)]
async fn reload_on_sighup(tls: std::sync::Arc<sfu::http::tls::Tls>) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler: no TLS reload");
        return;
    };
    while hup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
            Err(e) => {
                tracing::error!("SIGHUP: TLS reload failed, keeping the old certificate: {e}")
            }
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::colour;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None), "a file or pipe gets no ANSI codes");
    }
}
