//! Server configuration: defaults < TOML file (`--config`) < `SFU_*` environment
//! variables and command-line flags. Bad values are errors at start.

use clap::Parser;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Command line (every flag also as an `SFU_*` environment variable).
#[derive(Debug, Parser, Default)]
#[command(name = "sfu", version, about = "WHIP/WHEP selective forwarding unit")]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "SFU_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// HTTP listen address [default: 0.0.0.0:8080].
    #[arg(long, env = "SFU_HTTP", value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// UDP media address, one port for all peers [default: 0.0.0.0:8189].
    #[arg(long, env = "SFU_UDP", value_name = "ADDR")]
    pub udp: Option<SocketAddr>,
    /// Host-candidate address put in answers (repeatable; e.g. a public IP
    /// behind 1:1 NAT) [default: the bound interface addresses].
    #[arg(long, env = "SFU_ADVERTISE", value_name = "IP", value_delimiter = ',')]
    pub advertise: Vec<IpAddr>,
    /// Forwarding worker threads [default: number of CPUs].
    #[arg(long, env = "SFU_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Log format.
    #[arg(long, env = "SFU_LOG_FORMAT", value_name = "text|json")]
    pub log_format: Option<LogFormat>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The TOML file (`sfu.toml`). Unknown keys are errors.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Cli::http`].
    pub http: Option<SocketAddr>,
    /// See [`Cli::udp`].
    pub udp: Option<SocketAddr>,
    /// See [`Cli::advertise`].
    #[serde(default)]
    pub advertise: Vec<IpAddr>,
    /// See [`Cli::workers`].
    pub workers: Option<usize>,
    /// See [`Cli::log_format`].
    pub log_format: Option<LogFormat>,
}

/// Effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP listen address.
    pub http: SocketAddr,
    /// UDP media address.
    pub udp: SocketAddr,
    /// Advertised candidate IPs (empty = bound addresses).
    pub advertise: Vec<IpAddr>,
    /// Worker threads (≥ 1).
    pub workers: usize,
    /// Log format.
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: "0.0.0.0:8080".parse().expect("literal"),
            udp: "0.0.0.0:8189".parse().expect("literal"),
            advertise: Vec::new(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            log_format: LogFormat::Text,
        }
    }
}

impl Config {
    /// Merge defaults, the file named by `cli.config`, then `cli`.
    ///
    /// Errors name the file and the offending key/line (from the TOML parser).
    pub fn resolve(cli: Cli) -> anyhow::Result<Config> {
        let mut c = Config::default();
        if let Some(path) = &cli.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
            let f: FileConfig = toml::from_str(&text)
                .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
            c.http = f.http.unwrap_or(c.http);
            c.udp = f.udp.unwrap_or(c.udp);
            if !f.advertise.is_empty() {
                c.advertise = f.advertise;
            }
            c.workers = f.workers.unwrap_or(c.workers);
            c.log_format = f.log_format.unwrap_or(c.log_format);
        }
        c.http = cli.http.unwrap_or(c.http);
        c.udp = cli.udp.unwrap_or(c.udp);
        if !cli.advertise.is_empty() {
            c.advertise = cli.advertise;
        }
        c.workers = cli.workers.unwrap_or(c.workers);
        c.log_format = cli.log_format.unwrap_or(c.log_format);
        if c.workers == 0 || c.workers > 256 {
            anyhow::bail!("workers must be between 1 and 256 (got {})", c.workers);
        }
        for ip in &c.advertise {
            if ip.is_unspecified() || ip.is_multicast() {
                anyhow::bail!("advertise address {ip} is not a usable unicast address");
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let dir = std::env::temp_dir().join(format!("sfu-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("sfu.toml");
        std::fs::write(&f, "http = \"127.0.0.1:9000\"\nworkers = 3\n").unwrap();
        let c = Config::resolve(Cli {
            config: Some(f.clone()),
            workers: Some(2),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.http.port(), 9000);
        assert_eq!(c.workers, 2);
        std::fs::write(&f, "http = \"127.0.0.1:9000\"\nbogus = 1\n").unwrap();
        let e = Config::resolve(Cli {
            config: Some(f.clone()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("bogus") && e.contains("line 2"), "{e}");
        std::fs::write(&f, "udp = \"nonsense\"\n").unwrap();
        let e = Config::resolve(Cli {
            config: Some(f),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("udp"), "{e}");
    }
}
