//! One log line per refused request: every `4xx` (info) and `5xx` (warn)
//! answer is logged here, once, with method, path, status, remote address
//! and reason. The query string is left out (it may carry `?token=`), and
//! no request header is logged (`Authorization`).

use super::response::{Reason, Resp};
use hyper::Method;
use std::net::SocketAddr;
use tracing::{info, warn};

/// Log `resp` if it is an error (`4xx`/`5xx`); `path` is the request's
/// path without its query string.
pub fn refused(method: &Method, path: &str, remote: SocketAddr, resp: &Resp) {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return;
    }
    let reason = resp
        .extensions()
        .get::<Reason>()
        .map(|r| r.0.as_str())
        .or(status.canonical_reason())
        .unwrap_or_default();
    let code = status.as_u16();
    if status.is_server_error() {
        warn!(%remote, %method, path, status = code, reason, "request refused");
    } else {
        info!(%remote, %method, path, status = code, reason, "request refused");
    }
}
