//! WHEP layer extension (`urn:ietf:params:whep:ext:core:layer`, draft-ietf-wish-whep
//! §4.x): a viewer session's sub-resource `/whep/{stream}/{session}/layer`.
//!
//! * `POST` JSON `{"mediaId": "1", "rid": "m"}` (or `"encodingId": "m"`) pins
//!   the simulcast layer with that RID → `204`; `{"mediaId": "1"}` alone → `204`
//!   and back to automatic choice; an unknown RID → `400`.
//! * `DELETE` → `204`, automatic choice.
//! * `GET` → `200` JSON `{"layers": [...], "pinned": rid|null, "current": rid|null}`.
//!
//! `?layer=RID` on the WHEP POST pins a layer from the start.

use super::response::{Resp, empty, error, with_body};
use super::sessions::App;
use crate::registry::Role;
use crate::worker::ShardMsg;
use hyper::StatusCode;

/// The Link relation of the extension.
pub const REL: &str = "urn:ietf:params:whep:ext:core:layer";

/// `Link` header value advertising the extension for a viewer session.
pub fn link(stream: &str, session: &str) -> String {
    format!("</whep/{stream}/{session}/layer>; rel=\"{REL}\"")
}

/// A syntactically valid RID (RFC 8851 §10: `1*(ALPHA / DIGIT / "-" / "_")`),
/// at most 8 bytes (str0m's limit).
pub fn valid_rid(rid: &str) -> bool {
    !rid.is_empty()
        && rid.len() <= 8
        && rid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `layer` query parameter of a WHEP POST, if any.
pub fn query_layer(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|kv| kv.strip_prefix("layer="))
        .filter(|v| !v.is_empty())
}

/// Parse a layer-extension POST body: a JSON object naming the layer by
/// `rid` (or the draft's `encodingId`); `Ok(None)` when it names none
/// (`{"mediaId":"0"}` alone: back to automatic choice).
///
/// # Errors
/// `"body must be a JSON object"` for anything else (answered 400).
pub fn parse_request(body: &str) -> Result<Option<String>, &'static str> {
    let v = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .filter(|v| v.is_object())
        .ok_or("body must be a JSON object")?;
    Ok(v.get("rid")
        .or_else(|| v.get("encodingId"))
        .and_then(|r| r.as_str())
        .map(str::to_string))
}

/// Handle a request on `/whep/{stream}/{session}/layer` (`HEAD` arrives as
/// `GET`, see [`super::respond`]).
pub fn handle(app: &App, stream: &str, session: &str, method: &hyper::Method, body: &str) -> Resp {
    let Some(entry) = app
        .shared
        .registry
        .sessions
        .get(session)
        .map(|e| e.clone())
        .filter(|e| e.role == Role::Viewer && e.stream == stream)
    else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    let Some(publication) = app.shared.registry.streams.get(stream).map(|p| p.clone()) else {
        return error(StatusCode::NOT_FOUND, "no such stream");
    };
    let set = |rid: Option<str0m::media::Rid>| {
        app.shared.send_control(
            entry.peer.shard,
            ShardMsg::SetLayer {
                peer: entry.peer.id,
                rid,
            },
        );
        empty(StatusCode::NO_CONTENT)
    };
    match *method {
        hyper::Method::GET => {
            let v = serde_json::json!({
                "layers": super::layers_json(&publication),
                "current": entry.stats.layer(),
            });
            with_body(StatusCode::OK, "application/json", v.to_string())
        }
        hyper::Method::DELETE => set(None),
        hyper::Method::POST => match parse_request(body) {
            Err(e) => error(StatusCode::BAD_REQUEST, e),
            Ok(None) => set(None),
            Ok(Some(r)) if valid_rid(&r) && publication.layers.find(&r).is_some() => {
                set(Some(r.as_str().into()))
            }
            Ok(Some(r)) => error(
                StatusCode::BAD_REQUEST,
                format!("no simulcast layer with rid '{r}'"),
            ),
        },
        _ => {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut().insert(
                "Allow",
                hyper::header::HeaderValue::from_static("GET, HEAD, POST, DELETE, OPTIONS"),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rid_and_query() {
        assert!(valid_rid("h"));
        assert!(valid_rid("q-1_x"));
        assert!(!valid_rid(""));
        assert!(!valid_rid("toolong99"));
        assert!(!valid_rid("a b"));
        assert_eq!(query_layer(Some("x=1&layer=l")), Some("l"));
        assert_eq!(query_layer(Some("layer=")), None);
        assert_eq!(query_layer(None), None);
    }
}
