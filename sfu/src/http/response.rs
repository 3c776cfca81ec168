//! Response helpers: bodies, CORS (Fetch standard), errors as short text.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Body as _;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, CONTENT_LENGTH, CONTENT_TYPE,
    HeaderValue,
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

/// The one-line reason of an [`error`] response, kept as a response
/// extension for the request log ([`super::access_log`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason(pub String);

/// An error: status plus a one-line plain-text reason (clients such as go2rtc
/// show the body to the user). The reason is also attached as [`Reason`].
pub fn error(status: StatusCode, reason: impl Into<String>) -> Resp {
    let reason = reason.into();
    let mut r = with_body(status, "text/plain; charset=utf-8", format!("{reason}\n"));
    r.extensions_mut().insert(Reason(reason));
    r
}

/// The answer to a `HEAD` request from the answer its `GET` got (RFC 9110
/// §9.3.2): same status and headers, `Content-Length` set when the body's
/// length is known, and no body. (hyper drops a HEAD body itself on
/// HTTP/1.1 but sends it on HTTP/2, which clients reject.)
pub fn head_of(r: Resp) -> Resp {
    let (mut parts, body) = r.into_parts();
    if let Some(len) = body.size_hint().exact()
        && !parts.headers.contains_key(CONTENT_LENGTH)
        && !matches!(
            parts.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        )
        && !parts.status.is_informational()
    {
        parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    Response::from_parts(parts, full(Bytes::new()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_keeps_status_and_headers_and_drops_the_body() {
        let r = head_of(with_body(StatusCode::OK, "text/plain", "ready\n"));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain");
        assert_eq!(r.headers()[CONTENT_LENGTH], "6");
        assert_eq!(r.body().size_hint().exact(), Some(0));
        let r = head_of(empty(StatusCode::NO_CONTENT));
        assert!(r.headers().get(CONTENT_LENGTH).is_none());
    }

    #[test]
    fn errors_carry_their_reason() {
        let r = error(StatusCode::NOT_FOUND, "no such session");
        assert_eq!(
            r.extensions().get::<Reason>(),
            Some(&Reason("no such session".into()))
        );
    }
}
