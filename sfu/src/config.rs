//! Server configuration: defaults < TOML file (`--config`) < `SFU_*` environment
//! variables and command-line flags. Bad values are errors at start.

mod checks;

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
    #[serde(default, deserialize_with = "checks::de_advertise")]
    pub advertise: Vec<IpAddr>,
    /// See [`Cli::workers`].
    #[serde(default, deserialize_with = "checks::de_workers")]
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
    #[serde(default, deserialize_with = "checks::de_rate_limit")]
    pub rate_limit: Option<f64>,
    /// See [`Cli::publisher_grace`] (seconds).
    #[serde(default, deserialize_with = "checks::de_grace")]
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
    #[serde(default, deserialize_with = "checks::de_streams")]
    pub streams: std::collections::BTreeMap<String, StreamAuth>,
    /// ICE servers announced in `Link` headers (RFC 9725 §4.6).
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    /// TURN REST credentials (coturn `use-auth-secret`).
    pub turn: Option<TurnSecret>,
}

/// Publish/view tokens of a stream (or the default for all streams). Per
/// stream, `None` = the default token of that role and `Some("")` = open
/// access; as the default, `None` and `Some("")` are both open access.
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
    #[serde(deserialize_with = "checks::de_ice_url")]
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
    #[serde(deserialize_with = "checks::de_turn_urls")]
    pub urls: Vec<String>,
    /// Shared secret (coturn `static-auth-secret`).
    #[serde(deserialize_with = "checks::de_turn_secret")]
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
    /// An HTTP connection with no request in progress for this long is shut
    /// down gracefully (see [`crate::http::idle`]); 60 s. Not a flag or
    /// config key: tests shorten it.
    pub http_idle_timeout: std::time::Duration,
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
    /// Whether a new publisher on live `stream` replaces the current one
    /// (per-stream `replace`, else `replace_publisher`).
    pub fn replaces(&self, stream: &str) -> bool {
        self.streams
            .get(stream)
            .and_then(|s| s.replace)
            .unwrap_or(self.replace_publisher)
    }

    /// Token a publisher (`publish` = true, WHIP) or viewer (WHEP) of
    /// `stream` must present: the stream's own token for that role when it
    /// has one (an empty one: open access), else the default; `None` = open.
    pub fn token_for(&self, stream: &str, publish: bool) -> Option<&str> {
        fn role(a: &StreamAuth, publish: bool) -> Option<&str> {
            if publish {
                a.publish_token.as_deref()
            } else {
                a.view_token.as_deref()
            }
        }
        let own = self.streams.get(stream).and_then(|a| role(a, publish));
        own.or_else(|| role(&self.auth, publish))
            .filter(|t| !t.is_empty())
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
            http_idle_timeout: std::time::Duration::from_secs(60),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Config {
    /// Merge defaults, the file named by `cli.config`, then `cli`.
    ///
    /// Errors name the file and the offending key/line (from the TOML
    /// parser, value checks included: see [`checks`]); errors in flags and
    /// environment variables name the flag or key.
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
                c.publisher_grace = checks::seconds("publisher_grace", g).map_err(err)?;
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
            checks::turn_secret(&t.secret).map_err(err)?;
            if t.urls.is_empty() {
                anyhow::bail!("turn secret given but no turn urls (turn-url / [turn] urls)");
            }
            for u in &t.urls {
                checks::turn_url(u).map_err(err)?;
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
            c.publisher_grace = checks::seconds("publisher_grace", g).map_err(err)?;
        }
        checks::rate_limit(c.rate_limit).map_err(err)?;
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
            checks::stream_name(name).map_err(err)?;
        }
        for s in &c.ice_servers {
            checks::ice_url(&s.url).map_err(err)?;
        }
        checks::workers(c.workers).map_err(err)?;
        for ip in &c.advertise {
            checks::advertise(*ip).map_err(err)?;
        }
        Ok(c)
    }
}

/// `NAME=PUBLISH:VIEW` of `--stream-token` (tokens never echoed in errors).
/// An empty side is kept as `Some("")`: open access for that role, not the
/// default token.
fn parse_stream_token(s: &str) -> anyhow::Result<(String, StreamAuth)> {
    let (name, tokens) = s
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("stream-token must be NAME=PUBLISH:VIEW"))?;
    let (publish, view) = tokens.split_once(':').ok_or_else(|| {
        anyhow::anyhow!("stream-token for '{name}' must be NAME=PUBLISH:VIEW (':' missing)")
    })?;
    Ok((
        name.trim().to_string(),
        StreamAuth {
            publish_token: Some(publish.to_string()),
            view_token: Some(view.to_string()),
            replace: None,
        },
    ))
}

/// A failed value check as an error.
fn err(msg: String) -> anyhow::Error {
    anyhow::anyhow!(msg)
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

    #[test]
    fn bad_values_in_the_file_name_key_and_line() {
        let dir = std::env::temp_dir().join(format!("sfu-cfg-line-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("sfu.toml");
        let cases = [
            (
                "http = \"127.0.0.1:9000\"\npublisher_grace = -1\n",
                "publisher_grace",
                2,
            ),
            ("\n\nrate_limit = -5\n", "rate_limit", 3),
            ("workers = 0\n", "workers", 1),
            (
                "udp = \"127.0.0.1:9\"\nadvertise = [\"0.0.0.0\"]\n",
                "advertise",
                2,
            ),
            (
                "[streams.\"bad name\"]\npublish_token = \"x\"\n",
                "stream name",
                1,
            ),
            (
                "[[ice_servers]]\nurl = \"http://x\"\n",
                "ice_servers url",
                2,
            ),
            (
                "[turn]\nurls = [\"stun:x\"]\nsecret = \"s\"\n",
                "turn url",
                2,
            ),
            (
                "[turn]\nurls = [\"turn:x\"]\nsecret = \"\"\n",
                "turn secret",
                3,
            ),
        ];
        for (text, key, line) in cases {
            std::fs::write(&f, text).unwrap();
            let e = Config::resolve(Cli {
                config: Some(f.clone()),
                ..Default::default()
            })
            .unwrap_err()
            .to_string();
            assert!(
                e.contains(key) && e.contains(&format!("line {line}")),
                "{text:?} → {e}"
            );
        }
        // The same checks on flags.
        let e = Config::resolve(Cli {
            publisher_grace: Some(-1.0),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("publisher_grace"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_empty_side_of_a_stream_token_is_open_access() {
        let c = Config::resolve(Cli {
            publish_token: Some("PUB".into()),
            view_token: Some("VIEW".into()),
            stream_tokens: vec!["open=:".into(), "half=own:".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.token_for("open", true), None, "open=: publish is open");
        assert_eq!(c.token_for("open", false), None, "open=: view is open");
        assert_eq!(c.token_for("half", true), Some("own"));
        assert_eq!(c.token_for("half", false), None);
        // A stream without an entry uses the defaults.
        assert_eq!(c.token_for("other", true), Some("PUB"));
        assert_eq!(c.token_for("other", false), Some("VIEW"));
        // In the file: an absent key is the default, an empty one is open.
        let dir = std::env::temp_dir().join(format!("sfu-cfg-open-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("sfu.toml");
        std::fs::write(
            &f,
            "[auth]\npublish_token = \"PUB\"\nview_token = \"VIEW\"\n\
             [streams.cam]\npublish_token = \"\"\n",
        )
        .unwrap();
        let c = Config::resolve(Cli {
            config: Some(f),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.token_for("cam", true), None);
        assert_eq!(c.token_for("cam", false), Some("VIEW"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
