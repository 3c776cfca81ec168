//! The embedded web UI (no CDN): stream list, WHEP player, WHIP publish page.
//!
//! The files are compiled into the binary. For UI work, set the environment
//! variable `SFU_WEB_DIR` to a directory holding the same files (normally
//! `sfu/web`): each request then reads the file from there (a file missing
//! there falls back to the embedded copy), so HTML/JS/CSS edits show up on
//! reload without rebuilding. Only the names listed in [`FILES`] are served
//! either way, so no other path of that directory is reachable.

use super::response::{Resp, with_body};
use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue};
use std::path::Path;

/// Static files compiled into the binary: (URL path, file name, content type, body).
const FILES: &[(&str, &str, &str, &str)] = &[
    (
        "/",
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/index.html",
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "/watch.html",
        "watch.html",
        "text/html; charset=utf-8",
        include_str!("../../web/watch.html"),
    ),
    (
        "/publish.html",
        "publish.html",
        "text/html; charset=utf-8",
        include_str!("../../web/publish.html"),
    ),
    (
        "/app.js",
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "/style.css",
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../web/style.css"),
    ),
];

/// True when URL `path` names a web UI file.
pub fn exists(path: &str) -> bool {
    FILES.iter().any(|(p, ..)| *p == path)
}

/// The web UI file at URL `path`, if any: from `$SFU_WEB_DIR` when that is
/// set and holds the file, else the embedded copy. Browsers revalidate it on
/// every load (`Cache-Control: no-cache`), so an upgraded binary's UI is seen.
pub fn file(path: &str) -> Option<Resp> {
    let (_, name, content_type, embedded) = FILES.iter().find(|(p, ..)| *p == path)?;
    let from_dir = std::env::var_os("SFU_WEB_DIR")
        .and_then(|dir| std::fs::read(Path::new(&dir).join(name)).ok());
    let mut r = match from_dir {
        Some(body) => with_body(StatusCode::OK, content_type, body),
        None => with_body(StatusCode::OK, content_type, *embedded),
    };
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(r)
}
