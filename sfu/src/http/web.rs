//! The embedded web UI (no CDN): stream list, WHEP player, WHIP publish page.

use super::response::{Resp, with_body};
use hyper::StatusCode;

/// Static files compiled into the binary: (path, content type, body).
const FILES: &[(&str, &str, &str)] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/watch.html",
        "text/html; charset=utf-8",
        include_str!("../../web/watch.html"),
    ),
    (
        "/publish.html",
        "text/html; charset=utf-8",
        include_str!("../../web/publish.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

/// The embedded file at `path`, if any.
pub fn file(path: &str) -> Option<Resp> {
    FILES
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ct, body)| with_body(StatusCode::OK, ct, *body))
}
