//! The HTTP edge (hyper, HTTP/1.1 and HTTP/2): routing, body limits, CORS.

pub mod access_log;
pub mod auth;
pub mod ice_links;
pub mod idle;
pub mod layer_ext;
pub mod rate;
pub mod response;
pub mod sdpfrag;
pub mod sessions;
pub mod sse_ext;
pub mod tls;
pub mod web;

use crate::registry::{Role, valid_stream_name};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, ETAG, HeaderValue, IF_MATCH};
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use response::{Resp, cors, empty, error, json};
pub use sessions::App;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::net::TcpListener;
use tracing::debug;

/// Largest accepted request body (SDP offers are a few kB).
pub const MAX_BODY: usize = 128 * 1024;

/// A client must deliver its request head (HTTP/1.1 headers) within this time,
/// or the connection is closed (slowloris defence).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A client must deliver its whole request body within this time after the
/// head, or it gets `408 Request Timeout` (RFC 9110 §15.5.9).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serve HTTP on `listener` forever: plain HTTP/1.1 + h2c, or HTTPS
/// (HTTP/1.1 and HTTP/2 by ALPN) when `tls` is given.
pub async fn serve(listener: TcpListener, app: Arc<App>, tls: Option<Arc<tls::Tls>>) {
    let mut accept_errors = AcceptErrors::default();
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors (EMFILE/ENFILE) and the like: the
                // pending connection stays queued, so retrying at once spins.
                let _ = accept_errors.failed(&e, std::time::Instant::now());
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            let activity = Arc::new(idle::Activity::new(std::time::Instant::now()));
            let idle_timeout = app.config.http_idle_timeout;
            let watch = activity.clone();
            let svc = service_fn(move |req| {
                let app = app.clone();
                let activity = activity.clone();
                async move {
                    let _busy = activity.start();
                    Ok::<_, std::convert::Infallible>(respond(&app, req, remote).await)
                }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let result = match acceptor {
                None => {
                    // hyper's header timeout starts with the first byte (the
                    // HTTP/1.1 vs h2c detection waits for it unbounded): a
                    // client that connects and sends nothing is dropped here.
                    if !matches!(
                        tokio::time::timeout(HEADER_TIMEOUT, stream.peek(&mut [0u8; 1])).await,
                        Ok(Ok(_))
                    ) {
                        debug!(%remote, "http connection closed: no request within {HEADER_TIMEOUT:?}");
                        return;
                    }
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    until_idle(conn, &watch, idle_timeout, remote).await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            debug!(%remote, "TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    // The protocol is known from ALPN (RFC 9113 §3.2: h2 over
                    // TLS is negotiated, never detected), so hyper does not
                    // wait unbounded for a first byte to detect it, and
                    // HTTP/1.1's header timeout covers a silent client.
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    let builder = if h2 {
                        builder.http2_only()
                    } else {
                        builder.http1_only()
                    };
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    until_idle(conn, &watch, idle_timeout, remote).await
                }
            };
            if let Err(e) = result {
                debug!(%remote, "http connection ended: {e}");
            }
        });
    }
}

/// Drive `conn` to its end, shutting it down gracefully once it has been
/// idle for `timeout` (see [`idle`]).
async fn until_idle<I, S, B>(
    conn: hyper_util::server::conn::auto::Connection<'_, I, S, TokioExecutor>,
    activity: &idle::Activity,
    timeout: std::time::Duration,
    remote: SocketAddr,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: hyper::service::Service<Request<Incoming>, Response = hyper::Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        () = activity.idle(timeout) => {
            debug!(%remote, "http connection idle for {timeout:?}: shutting it down");
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Pause after a failed `accept` (e.g. out of file descriptors) before the
/// next one.
pub const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
/// Failed `accept`s are logged at most once per this interval.
const ACCEPT_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Failed `accept` calls, logged as a warning with a count at most once per
/// [`ACCEPT_LOG_EVERY`] (a full file-descriptor table fails every call).
#[derive(Debug, Default)]
struct AcceptErrors {
    last_log: Option<std::time::Instant>,
    since_log: u64,
}

impl AcceptErrors {
    /// Count a failure at `now`; true when it was logged.
    fn failed(&mut self, e: &std::io::Error, now: std::time::Instant) -> bool {
        self.since_log += 1;
        if self
            .last_log
            .is_none_or(|t| now.saturating_duration_since(t) >= ACCEPT_LOG_EVERY)
        {
            tracing::warn!(
                failures = self.since_log,
                "accepting HTTP connections fails: {e} (out of file descriptors? raise `ulimit -n`); \
                 retrying every {} ms",
                ACCEPT_RETRY.as_millis()
            );
            self.last_log = Some(now);
            self.since_log = 0;
            return true;
        }
        false
    }
}

/// Marks a request that arrived as `HEAD` and is routed as `GET` (see
/// [`respond`]); a handler with side effects on `GET` checks for it.
#[derive(Debug, Clone, Copy)]
pub struct HeadRequest;

/// Everything around the router, for every request: `HEAD` is answered as
/// `GET` without the body (RFC 9110 §9.3.2), refusals are logged
/// ([`access_log`]) and counted, and CORS headers are added.
async fn respond(app: &App, mut req: Request<Incoming>, remote: SocketAddr) -> Resp {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let head = method == Method::HEAD;
    if head {
        *req.method_mut() = Method::GET;
        req.extensions_mut().insert(HeadRequest);
    }
    let mut resp = handle(app, req, remote).await;
    if head {
        resp = response::head_of(resp);
    }
    access_log::refused(&method, &path, remote, &resp);
    if method == Method::POST && resp.status().as_u16() >= 400 {
        app.shared
            .metrics
            .sessions_refused
            .with_label_values(&[resp.status().as_str()])
            .inc();
    }
    cors(resp)
}

fn is_sdp(req: &Request<Incoming>, want: &str) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
}

async fn read_body(req: Request<Incoming>) -> Result<String, Resp> {
    let collect = Limited::new(req.into_body(), MAX_BODY).collect();
    let body = tokio::time::timeout(BODY_TIMEOUT, collect)
        .await
        .map_err(|_| {
            error(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {BODY_TIMEOUT:?}"),
            )
        })?
        .map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("body larger than {MAX_BODY} bytes"),
                )
            } else {
                error(StatusCode::BAD_REQUEST, "could not read request body")
            }
        })?
        .to_bytes();
    String::from_utf8(body.to_vec())
        .map_err(|_| error(StatusCode::BAD_REQUEST, "body is not UTF-8"))
}

fn preflight(endpoint: bool) -> Resp {
    let mut r = empty(StatusCode::NO_CONTENT);
    let h = r.headers_mut();
    h.insert(
        "Access-Control-Allow-Methods",
        HeaderValue::from_static("OPTIONS, GET, HEAD, POST, PATCH, DELETE"),
    );
    h.insert(
        "Access-Control-Allow-Headers",
        HeaderValue::from_static("Authorization, Content-Type, If-Match, ETag"),
    );
    h.insert("Access-Control-Max-Age", HeaderValue::from_static("86400"));
    h.insert(
        "Access-Control-Allow-Private-Network",
        HeaderValue::from_static("true"),
    );
    if endpoint {
        h.insert("Accept-Post", HeaderValue::from_static("application/sdp"));
    }
    r
}

/// GET/HEAD on WHIP/WHEP resources: 200, `application/sdp`, no content (RFC 9725 §4.1).
fn sdp_no_content() -> Resp {
    let mut r = empty(StatusCode::OK);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    r
}

/// 401 + `WWW-Authenticate: Bearer` unless the request carries the stream's
/// token for `role` (or none is configured).
fn unauthorized(app: &App, req: &Request<Incoming>, stream: &str, role: Role) -> Option<Resp> {
    let required = app.config.token_for(stream, role == Role::Publisher);
    if auth::allowed(required, auth::presented(req).as_deref()) {
        return None;
    }
    let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong token");
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"sfu\""),
    );
    Some(r)
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    r.headers_mut()
        .insert("Allow", HeaderValue::from_static(allow));
    r
}

async fn handle(app: &App, req: Request<Incoming>, remote: SocketAddr) -> Resp {
    if matches!(*req.method(), Method::POST | Method::PATCH | Method::DELETE)
        && !app.rate.allow(remote.ip(), std::time::Instant::now())
    {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests from this address",
        );
        r.headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (parts.as_slice(), &method) {
        ([role @ ("whip" | "whep"), name], m) => {
            let role = if *role == "whip" {
                Role::Publisher
            } else {
                Role::Viewer
            };
            if !valid_stream_name(name) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid stream name: use 1-64 of A-Z a-z 0-9 _ . -",
                );
            }
            match *m {
                Method::OPTIONS => preflight(true),
                Method::GET => sdp_no_content(),
                Method::POST => {
                    if !is_sdp(&req, "application/sdp") {
                        return error(
                            StatusCode::UNSUPPORTED_MEDIA_TYPE,
                            "Content-Type must be application/sdp",
                        );
                    }
                    if let Some(r) = unauthorized(app, &req, name, role) {
                        return r;
                    }
                    // A slot of the session limit, held from here (before
                    // the body is read) until the session ends. A publisher
                    // replacing a live one ends that session: no net new
                    // session, so not refused at the limit.
                    let replacing = role == Role::Publisher && sessions::replaces_live(app, name);
                    let slot = match sessions::take_slot(app, replacing) {
                        Ok(s) => s,
                        Err(r) => return r,
                    };
                    let layer = layer_ext::query_layer(req.uri().query()).map(str::to_string);
                    let body = match read_body(req).await {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    match role {
                        Role::Publisher => sessions::whip_post(app, name, &body, slot),
                        Role::Viewer => {
                            sessions::whep_post(app, name, &body, layer.as_deref(), slot)
                        }
                    }
                }
                _ => method_not_allowed("OPTIONS, GET, HEAD, POST"),
            }
        }
        (["whep", name, session, "layer"], m) => {
            if matches!(*m, Method::POST | Method::DELETE)
                && let Some(r) = unauthorized(app, &req, name, Role::Viewer)
            {
                return r;
            }
            if *m == Method::OPTIONS {
                return preflight(false);
            }
            let body = if *m == Method::POST {
                match read_body(req).await {
                    Ok(b) => b,
                    Err(r) => return r,
                }
            } else {
                String::new()
            };
            layer_ext::handle(app, name, session, m, &body)
        }
        (["whep", name, session, "sse"], m) => match *m {
            Method::OPTIONS => preflight(false),
            Method::POST => {
                if let Some(r) = unauthorized(app, &req, name, Role::Viewer) {
                    return r;
                }
                match read_body(req).await {
                    Ok(body) => sse_ext::create(app, name, session, &body),
                    Err(r) => r,
                }
            }
            _ => method_not_allowed("OPTIONS, POST"),
        },
        (["whep", name, session, "sse", id], m) => match *m {
            Method::OPTIONS => preflight(false),
            Method::GET => {
                let probe = req.extensions().get::<HeadRequest>().is_some();
                sse_ext::open(app, name, session, id, probe)
            }
            Method::DELETE => {
                if let Some(r) = unauthorized(app, &req, name, Role::Viewer) {
                    return r;
                }
                sse_ext::delete(app, name, session, id)
            }
            _ => method_not_allowed("OPTIONS, GET, HEAD, DELETE"),
        },
        ([role @ ("whip" | "whep"), name, session], m) => {
            let role = if *role == "whip" {
                Role::Publisher
            } else {
                Role::Viewer
            };
            if matches!(*m, Method::DELETE | Method::PATCH)
                && let Some(r) = unauthorized(app, &req, name, role)
            {
                return r;
            }
            match *m {
                Method::OPTIONS => preflight(false),
                Method::DELETE => sessions::delete(app, role, name, session),
                Method::PATCH => {
                    let ct_ok = is_sdp(&req, "application/trickle-ice-sdpfrag");
                    let if_match = req
                        .headers()
                        .get(IF_MATCH)
                        .or_else(|| req.headers().get(ETAG))
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let body = match read_body(req).await {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    sessions::patch(app, role, name, session, ct_ok, if_match.as_deref(), &body)
                        .await
                }
                _ if !app.shared.registry.sessions.contains_key(*session) => {
                    error(StatusCode::NOT_FOUND, "no such session")
                }
                Method::GET => sdp_no_content(),
                _ => method_not_allowed("OPTIONS, GET, HEAD, PATCH, DELETE"),
            }
        }
        (["api", "streams"], m) => get_only(m, || json(&streams_json(app))),
        (["api", "streams", name], m) => get_only(m, || {
            match app
                .shared
                .registry
                .streams
                .get(*name)
                .map(|p| stream_detail_json(app, &p))
            {
                Some(v) => json(&v),
                None => error(StatusCode::NOT_FOUND, "no such stream"),
            }
        }),
        (["metrics"], m) => get_only(m, || metrics(app)),
        (["healthz"], m) => get_only(m, || {
            response::with_body(StatusCode::OK, "text/plain", "ok\n")
        }),
        (["readyz"], m) => get_only(m, || {
            response::with_body(StatusCode::OK, "text/plain", "ready\n")
        }),
        (_, m) if web::exists(&path) => get_only(m, || {
            web::file(&path).unwrap_or_else(|| error(StatusCode::NOT_FOUND, "not found"))
        }),
        (_, &Method::OPTIONS) => preflight(false),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// A resource that only has a representation to `GET` (and so `HEAD`, see
/// [`respond`]): other methods get `405` + `Allow`, `OPTIONS` the preflight.
fn get_only(method: &Method, get: impl FnOnce() -> Resp) -> Resp {
    match *method {
        Method::GET => get(),
        Method::OPTIONS => preflight(false),
        _ => method_not_allowed("OPTIONS, GET, HEAD"),
    }
}

/// `GET /metrics`: the Prometheus text, with the stream and viewer gauges
/// brought up to date.
fn metrics(app: &App) -> Resp {
    let m = &app.shared.metrics;
    m.streams.set(app.shared.registry.streams.len() as i64);
    m.viewers.set(
        app.shared
            .registry
            .streams
            .iter()
            .map(|p| p.viewers() as i64)
            .sum(),
    );
    response::with_body(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        m.render(),
    )
}

/// `GET /api/streams` body: `[{name, publisher, codecs, bitrate_in_bps, viewers}]`.
pub fn streams_json(app: &App) -> serde_json::Value {
    let mut list: Vec<serde_json::Value> = app
        .shared
        .registry
        .streams
        .iter()
        .map(|p| stream_json(&p))
        .collect();
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    serde_json::Value::Array(list)
}

/// `GET /api/streams/{name}` body: the [`stream_json`] fields plus
/// `publisher_session` and `viewer_sessions`, each session as
/// [`crate::stats::StatsSnapshot`] (`id`, `codecs`, `address`, `uptime_s`,
/// `bytes`, `packets`, `bitrate_bps`, `rtt_ms`, `loss` 0..1, `nacks`,
/// `plis`, `firs`; counts are what the viewer sent us / we sent the
/// publisher) and for viewers `layer` (`null`: no simulcast). Viewers are
/// sorted by id. Session URLs are capabilities and never listed.
pub fn stream_detail_json(app: &App, p: &crate::registry::Publication) -> serde_json::Value {
    let mut v = stream_json(p);
    let mut viewers = Vec::new();
    let mut publisher = serde_json::Value::Null;
    let current = p.publisher();
    for s in app.shared.registry.sessions.iter() {
        if s.stream != p.name {
            continue;
        }
        let mut snap = serde_json::to_value(s.stats.snapshot()).unwrap_or_default();
        match s.role {
            crate::registry::Role::Viewer => {
                snap["layer"] = s.stats.layer().into();
                viewers.push(snap);
            }
            crate::registry::Role::Publisher if s.peer == current => publisher = snap,
            crate::registry::Role::Publisher => {}
        }
    }
    viewers.sort_by_key(|s| s["id"].as_u64());
    v["publisher_session"] = publisher;
    v["viewer_sessions"] = serde_json::Value::Array(viewers);
    v
}

/// One stream's JSON object (see [`streams_json`]).
pub fn stream_json(p: &crate::registry::Publication) -> serde_json::Value {
    {
        {
            serde_json::json!({
                "name": p.name,
                "publisher": if !p.live.load(Ordering::Relaxed) {
                    "gone"
                } else if p.connected.load(Ordering::Relaxed) {
                    "live"
                } else {
                    "connecting"
                },
                "codecs": p.tracks().iter().map(|t| t.describe()).collect::<Vec<_>>(),
                "bitrate_in_bps": p.bitrate_in.load(Ordering::Relaxed),
                "packets_in": p.packets_in.load(Ordering::Relaxed),
                "viewers": p.viewers(),
                "uptime_s": p.created.elapsed().as_secs(),
                "layers": layers_json(p),
            })
        }
    }
}

/// The simulcast layers of a publication as JSON (lowest bitrate first):
/// `[{"rid","encodingId","ssrc","bitrate_bps","width","height","active"}]`;
/// empty without simulcast.
pub fn layers_json(p: &crate::registry::Publication) -> serde_json::Value {
    if !p.layers.is_simulcast() {
        return serde_json::json!([]);
    }
    let v: Vec<serde_json::Value> = p
        .layers
        .snapshot(std::time::Instant::now())
        .into_iter()
        .map(|l| {
            serde_json::json!({
                "rid": l.rid,
                "encodingId": l.rid,
                "ssrc": l.ssrc,
                "bitrate_bps": l.bitrate,
                "width": l.width,
                "height": l.height,
                "active": l.active,
            })
        })
        .collect();
    serde_json::Value::Array(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_are_logged_once_per_interval() {
        let mut a = AcceptErrors::default();
        let e = std::io::Error::from_raw_os_error(24); // EMFILE
        let t0 = std::time::Instant::now();
        assert!(a.failed(&e, t0), "the first is logged");
        assert!(!a.failed(&e, t0 + ACCEPT_RETRY));
        assert!(!a.failed(&e, t0 + ACCEPT_LOG_EVERY / 2));
        assert_eq!(a.since_log, 2, "counted meanwhile");
        assert!(a.failed(&e, t0 + ACCEPT_LOG_EVERY));
        assert_eq!(a.since_log, 0);
    }
}
