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
    /// Token required to publish to any stream without its own (Bearer, `?token=` or Basic password).
    #[arg(
        long,
        env = "SFU_PUBLISH_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub publish_token: Option<String>,
    /// Token required to view any stream without its own.
    #[arg(
        long,
        env = "SFU_VIEW_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub view_token: Option<String>,
    /// Maximum concurrent sessions; beyond it POST gets 503 + Retry-After [default: 10000].
    #[arg(long, env = "SFU_MAX_SESSIONS", value_name = "N")]
    pub max_sessions: Option<usize>,
    /// Require If-Match on PATCH (428 without it) [default: false].
    #[arg(long, env = "SFU_STRICT_IF_MATCH")]
    pub strict_if_match: bool,
    /// A new WHIP publisher on a live stream name takes it over (the old
    /// publisher's session ends, viewers are spliced over) instead of `409`:
    /// for OBS restarts and cameras that reconnect before their old session
    /// timed out. Per stream: `replace` in `[streams.NAME]`.
    #[arg(long, env = "SFU_REPLACE_PUBLISHER")]
    pub replace_publisher: bool,
    /// POST/PATCH/DELETE per client IP per second; 0 disables [default: 20].
    #[arg(long, env = "SFU_RATE_LIMIT", value_name = "PER_SEC")]
    pub rate_limit: Option<f64>,
    /// Seconds viewers stay connected after their publisher left, waiting for
    /// a new one on the same name [default: 30].
    #[arg(long, env = "SFU_PUBLISHER_GRACE", value_name = "SECS")]
    pub publisher_grace: Option<f64>,
    /// Disable the GOP cache (joining viewers then wait for a fresh keyframe).
    #[arg(long, env = "SFU_NO_GOP_CACHE")]
    pub no_gop_cache: bool,
    /// GOP cache bound in payload bytes per video track [default: 4194304].
    #[arg(long, env = "SFU_GOP_CACHE_MAX_BYTES", value_name = "BYTES")]
    pub gop_cache_max_bytes: Option<usize>,
    /// GOP cache bound in age of its keyframe, ms [default: 5000].
    #[arg(long, env = "SFU_GOP_CACHE_MAX_AGE_MS", value_name = "MS")]
    pub gop_cache_max_age_ms: Option<u64>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key);
    /// re-read on SIGHUP.
    #[arg(long, env = "SFU_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "SFU_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// STUN/TURN server announced in Link headers (repeatable):
    /// `URL` or `URL,username,credential`.
    #[arg(
        long = "ice-server",
        env = "SFU_ICE_SERVERS",
        value_name = "URL[,USER,CRED]",
        value_delimiter = ';'
    )]
    pub ice_servers: Vec<String>,
    /// TURN URL(s) whose per-session credentials are derived from
    /// --turn-secret (coturn use-auth-secret; repeatable).
    #[arg(
        long = "turn-url",
        env = "SFU_TURN_URLS",
        value_name = "URL",
        value_delimiter = ','
    )]
    pub turn_urls: Vec<String>,
    /// coturn `static-auth-secret` shared with the TURN server.
    #[arg(
        long,
        env = "SFU_TURN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub turn_secret: Option<String>,
    /// Lifetime of generated TURN credentials, seconds [default: 86400].
    #[arg(long, env = "SFU_TURN_TTL", value_name = "SECS")]
    pub turn_ttl: Option<u64>,
    /// Tokens of one stream (repeatable; env `;`-separated), overriding the
    /// defaults like `[streams.NAME]`: `NAME=PUBLISH:VIEW`, either side may
    /// be empty for open access, e.g. `frontdoor=cam-secret:family`.
    #[arg(
        long = "stream-token",
        env = "SFU_STREAM_TOKENS",
        value_name = "NAME=PUBLISH:VIEW",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub stream_tokens: Vec<String>,
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
    /// See [`Cli::max_sessions`].
    pub max_sessions: Option<usize>,
    /// See [`Cli::strict_if_match`].
    pub strict_if_match: Option<bool>,
    /// See [`Cli::replace_publisher`] (default for every stream).
    pub replace_publisher: Option<bool>,
    /// See [`Cli::rate_limit`].
    pub rate_limit: Option<f64>,
    /// See [`Cli::publisher_grace`] (seconds).
    pub publisher_grace: Option<f64>,
    /// GOP cache on/off [default: true].
    pub gop_cache: Option<bool>,
    /// GOP cache bound in payload bytes per video track [default: 4194304].
    pub gop_cache_max_bytes: Option<usize>,
    /// GOP cache bound in age of its keyframe, ms [default: 5000].
    pub gop_cache_max_age_ms: Option<u64>,
    /// HTTPS certificate chain (PEM); relative paths are relative to the
    /// working directory.
    pub tls_cert: Option<PathBuf>,
    /// HTTPS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Default tokens for all streams.
    #[serde(default)]
    pub auth: StreamAuth,
    /// Per-stream tokens: `[streams.NAME]`.
    #[serde(default)]
    pub streams: std::collections::BTreeMap<String, StreamAuth>,
    /// ICE servers announced in `Link` headers (RFC 9725 §4.6).
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    /// TURN REST credentials (coturn `use-auth-secret`).
    pub turn: Option<TurnSecret>,
}

/// Publish/view tokens of a stream (or the default for all streams).
/// `None` = open access for that role.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StreamAuth {
    /// Token a WHIP publisher must present.
    pub publish_token: Option<String>,
    /// Token a WHEP viewer must present.
    pub view_token: Option<String>,
    /// Replace policy of this stream (see [`Cli::replace_publisher`]);
    /// `None` = the default. Only meaningful in `[streams.NAME]`.
    pub replace: Option<bool>,
}

/// A STUN/TURN server with static credentials.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:`, `turn:` or `turns:` URL.
    pub url: String,
    /// TURN username.
    pub username: Option<String>,
    /// TURN password.
    pub credential: Option<String>,
}

/// TURN servers sharing a secret with coturn (`use-auth-secret`,
/// draft-uberti-behave-turn-rest): per-session username `expiry:id` and
/// credential `base64(HMAC-SHA1(secret, username))`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TurnSecret {
    /// `turn:`/`turns:` URLs.
    pub urls: Vec<String>,
    /// Shared secret (coturn `static-auth-secret`).
    pub secret: String,
    /// Credential lifetime in seconds [default: 86400].
    pub ttl_secs: Option<u64>,
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
    /// Default tokens.
    pub auth: StreamAuth,
    /// Per-stream tokens (override the default per role).
    pub streams: std::collections::BTreeMap<String, StreamAuth>,
    /// Session limit.
    pub max_sessions: usize,
    /// Require If-Match on PATCH.
    pub strict_if_match: bool,
    /// Default replace policy (see [`Config::replaces`]).
    pub replace_publisher: bool,
    /// Static ICE servers for `Link` headers.
    pub ice_servers: Vec<IceServer>,
    /// TURN REST secret.
    pub turn: Option<TurnSecret>,
    /// GOP cache settings.
    pub gop: GopSettings,
    /// Requests per second per client IP (bursts of 5×, min 10); 0 = off.
    pub rate_limit: f64,
    /// Viewers wait this long for a new publisher after theirs left.
    pub publisher_grace: std::time::Duration,
    /// HTTPS certificate chain file (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// HTTPS private key file.
    pub tls_key: Option<PathBuf>,
}

/// GOP cache settings (instant start for joining viewers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GopSettings {
    /// Cache on.
    pub enabled: bool,
    /// Max payload bytes per video track.
    pub max_bytes: usize,
    /// Max age of the cached keyframe.
    pub max_age: std::time::Duration,
}

impl Default for GopSettings {
    fn default() -> Self {
        GopSettings {
            enabled: true,
            max_bytes: 4 << 20,
            max_age: std::time::Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Token required to publish (`publish` = true, WHIP) or view (WHEP) `stream`:
    /// the stream's own token for that role, else the default; `None` = open.
    /// Whether a new publisher on live `stream` replaces the current one
    /// (per-stream `replace`, else `replace_publisher`).
    pub fn replaces(&self, stream: &str) -> bool {
        self.streams
            .get(stream)
            .and_then(|s| s.replace)
            .unwrap_or(self.replace_publisher)
    }

    /// Token a publisher (`publish`) or viewer of `stream` must present.
    pub fn token_for(&self, stream: &str, publish: bool) -> Option<&str> {
        let per = self.streams.get(stream);
        let t = if publish {
            per.and_then(|a| a.publish_token.as_deref())
                .or(self.auth.publish_token.as_deref())
        } else {
            per.and_then(|a| a.view_token.as_deref())
                .or(self.auth.view_token.as_deref())
        };
        t.filter(|t| !t.is_empty())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http: "0.0.0.0:8080".parse().expect("literal"),
            udp: "0.0.0.0:8189".parse().expect("literal"),
            advertise: Vec::new(),
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            log_format: LogFormat::Text,
            auth: StreamAuth::default(),
            streams: Default::default(),
            max_sessions: 10_000,
            strict_if_match: false,
            replace_publisher: false,
            ice_servers: Vec::new(),
            turn: None,
            gop: GopSettings::default(),
            rate_limit: 20.0,
            publisher_grace: std::time::Duration::from_secs(30),
            tls_cert: None,
            tls_key: None,
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
            c.max_sessions = f.max_sessions.unwrap_or(c.max_sessions);
            c.strict_if_match = f.strict_if_match.unwrap_or(c.strict_if_match);
            c.replace_publisher = f.replace_publisher.unwrap_or(c.replace_publisher);
            c.auth = f.auth;
            c.streams = f.streams;
            c.ice_servers = f.ice_servers;
            c.turn = f.turn;
            c.rate_limit = f.rate_limit.unwrap_or(c.rate_limit);
            if let Some(g) = f.publisher_grace {
                c.publisher_grace = secs("publisher_grace", g)?;
            }
            c.gop.enabled = f.gop_cache.unwrap_or(c.gop.enabled);
            c.gop.max_bytes = f.gop_cache_max_bytes.unwrap_or(c.gop.max_bytes);
            if let Some(ms) = f.gop_cache_max_age_ms {
                c.gop.max_age = std::time::Duration::from_millis(ms);
            }
            c.tls_cert = f.tls_cert;
            c.tls_key = f.tls_key;
        }
        c.gop.max_bytes = cli.gop_cache_max_bytes.unwrap_or(c.gop.max_bytes);
        if let Some(ms) = cli.gop_cache_max_age_ms {
            c.gop.max_age = std::time::Duration::from_millis(ms);
        }
        if cli.tls_cert.is_some() {
            c.tls_cert = cli.tls_cert;
        }
        if cli.tls_key.is_some() {
            c.tls_key = cli.tls_key;
        }
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            anyhow::bail!("tls_cert and tls_key must be given together");
        }
        for s in &cli.stream_tokens {
            let (name, auth) = parse_stream_token(s)?;
            let e = c.streams.entry(name).or_default();
            e.publish_token = auth.publish_token;
            e.view_token = auth.view_token;
        }
        for s in &cli.ice_servers {
            let mut parts = s.split(',');
            let url = parts.next().unwrap_or_default().trim().to_string();
            let username = parts.next().map(|p| p.trim().to_string());
            let credential = parts.next().map(|p| p.trim().to_string());
            if parts.next().is_some() || username.is_some() != credential.is_some() {
                anyhow::bail!("ice-server must be URL or URL,username,credential (got {s})");
            }
            c.ice_servers.push(IceServer {
                url,
                username,
                credential,
            });
        }
        if let Some(secret) = cli.turn_secret {
            let t = c.turn.get_or_insert(TurnSecret {
                urls: Vec::new(),
                secret: String::new(),
                ttl_secs: None,
            });
            t.secret = secret;
        }
        if !cli.turn_urls.is_empty() {
            match c.turn.as_mut() {
                Some(t) => t.urls = cli.turn_urls,
                None => anyhow::bail!("turn-url needs turn-secret (or [turn] secret in the file)"),
            }
        }
        if let Some(ttl) = cli.turn_ttl {
            match c.turn.as_mut() {
                Some(t) => t.ttl_secs = Some(ttl),
                None => anyhow::bail!("turn-ttl needs turn-secret (or [turn] in the file)"),
            }
        }
        if let Some(t) = &c.turn {
            if t.secret.is_empty() {
                anyhow::bail!("turn secret must not be empty");
            }
            if t.urls.is_empty() {
                anyhow::bail!("turn secret given but no turn urls (turn-url / [turn] urls)");
            }
            for u in &t.urls {
                if !(u.starts_with("turn:") || u.starts_with("turns:")) {
                    anyhow::bail!("turn url must start with turn: or turns: (got {u})");
                }
            }
        }
        c.http = cli.http.unwrap_or(c.http);
        c.udp = cli.udp.unwrap_or(c.udp);
        if !cli.advertise.is_empty() {
            c.advertise = cli.advertise;
        }
        c.workers = cli.workers.unwrap_or(c.workers);
        c.log_format = cli.log_format.unwrap_or(c.log_format);
        c.max_sessions = cli.max_sessions.unwrap_or(c.max_sessions);
        c.strict_if_match |= cli.strict_if_match;
        c.replace_publisher |= cli.replace_publisher;
        c.rate_limit = cli.rate_limit.unwrap_or(c.rate_limit);
        if let Some(g) = cli.publisher_grace {
            c.publisher_grace = secs("publisher_grace", g)?;
        }
        if !(c.rate_limit >= 0.0 && c.rate_limit.is_finite()) {
            anyhow::bail!(
                "rate_limit must be a non-negative number (got {})",
                c.rate_limit
            );
        }
        if cli.no_gop_cache {
            c.gop.enabled = false;
        }
        if cli.publish_token.is_some() {
            c.auth.publish_token = cli.publish_token;
        }
        if cli.view_token.is_some() {
            c.auth.view_token = cli.view_token;
        }
        for name in c.streams.keys() {
            if !crate::registry::valid_stream_name(name) {
                anyhow::bail!(
                    "invalid stream name in [streams.{name}]: use 1-64 of A-Z a-z 0-9 _ . -"
                );
            }
        }
        for s in &c.ice_servers {
            if !(s.url.starts_with("stun:")
                || s.url.starts_with("turn:")
                || s.url.starts_with("turns:"))
            {
                anyhow::bail!(
                    "ice_servers url must start with stun:, turn: or turns: (got {})",
                    s.url
                );
            }
        }
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

/// `NAME=PUBLISH:VIEW` of `--stream-token` (tokens never echoed in errors).
fn parse_stream_token(s: &str) -> anyhow::Result<(String, StreamAuth)> {
    let (name, tokens) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("stream-token must be NAME=PUBLISH:VIEW"))?;
    let (publish, view) = tokens.split_once(':').ok_or_else(|| {
        anyhow::anyhow!("stream-token for '{name}' must be NAME=PUBLISH:VIEW (':' missing)")
    })?;
    let some = |t: &str| (!t.is_empty()).then(|| t.to_string());
    Ok((
        name.trim().to_string(),
        StreamAuth {
            publish_token: some(publish),
            view_token: some(view),
            replace: None,
        },
    ))
}

fn secs(key: &str, v: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(v)
        .map_err(|_| anyhow::anyhow!("{key} must be a non-negative number of seconds (got {v})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_is_valid() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sfu.toml");
        let c = Config::resolve(Cli {
            config: Some(path),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.http.port(), 8080);
        assert_eq!(c.udp.port(), 8189);
        assert!(c.gop.enabled);
    }

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
            config: Some(f.clone()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("udp"), "{e}");
        // Per-stream tokens from flags override the file's.
        std::fs::write(
            &f,
            "[streams.cam]\npublish_token = \"file\"\nview_token = \"v\"\n",
        )
        .unwrap();
        let c = Config::resolve(Cli {
            config: Some(f.clone()),
            stream_tokens: vec!["cam=flag:".into(), "door=:watch".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.token_for("cam", true), Some("flag"));
        assert_eq!(c.token_for("door", false), Some("watch"));
        assert!(
            Config::resolve(Cli {
                stream_tokens: vec!["bad".into()],
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            Config::resolve(Cli {
                stream_tokens: vec!["bad name=a:b".into()],
                ..Default::default()
            })
            .is_err(),
            "stream names are validated"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
