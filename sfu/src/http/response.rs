//! Response helpers: bodies, CORS (Fetch standard), errors as short text.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, CONTENT_TYPE, HeaderValue,
};
use hyper::{Response, StatusCode};

/// Body of every response: a whole buffer ([`Full`]) for almost all, a
/// stream for the server-sent events of [`super::sse_ext`].
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// Response type of every handler.
pub type Resp = Response<Body>;

/// A whole-buffer body.
pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

/// Add the CORS headers every response carries.
pub fn cors(mut r: Resp) -> Resp {
    let h = r.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, Link, ETag, Accept-Patch, Accept-Post, Retry-After"),
    );
    r
}

/// A response with a body and content type.
pub fn with_body(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// An error: status plus a one-line plain-text reason (clients such as go2rtc
/// show the body to the user).
pub fn error(status: StatusCode, reason: impl Into<String>) -> Resp {
    let mut s = reason.into();
    s.push('\n');
    with_body(status, "text/plain; charset=utf-8", s)
}

/// An empty response.
pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// JSON body.
pub fn json(value: &serde_json::Value) -> Resp {
    with_body(StatusCode::OK, "application/json", value.to_string())
}
