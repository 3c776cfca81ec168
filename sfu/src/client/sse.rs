//! Client of the WHEP server-sent events extension
//! (`urn:ietf:params:whep:ext:core:server-sent-events`, draft-ietf-wish-whep
//! §4.6.1): find the extension's `Link` in a WHEP `201`, POST the wanted
//! event names, GET the event stream at the returned `Location` and yield
//! its events (WHATWG HTML "Server-sent events" framing).

use super::http::{Url, header_list, request, send};
use http_body_util::BodyExt;
use std::time::Duration;
use tokio::sync::mpsc;

/// The Link relation of the extension.
pub const REL: &str = "urn:ietf:params:whep:ext:core:server-sent-events";

/// One event: its `event:` name (`message` when absent) and its `data:`
/// lines joined with `\n` (JSON text for WHEP events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEvent {
    /// Event type, e.g. `active`, `viewercount`.
    pub name: String,
    /// Data (JSON for WHEP events).
    pub data: String,
}

impl ServerEvent {
    /// The data parsed as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_default()
    }
}

/// The target of the first `Link` (RFC 8288) among `headers` (lower-case
/// names) whose `rel` is `rel`, with its other parameters.
pub fn find_link(
    headers: &[(String, String)],
    rel: &str,
) -> Option<(String, Vec<(String, String)>)> {
    headers
        .iter()
        .filter(|(k, _)| k == "link")
        .flat_map(|(_, v)| super::link::parse(v))
        .find(|l| l.has_rel(rel))
        .map(|l| (l.target, l.params))
}

/// Incremental `text/event-stream` parser (lines end with `\n` or `\r\n`).
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    name: String,
    data: Vec<String>,
}

impl Parser {
    /// Feed bytes; returns the events completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<ServerEvent> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            if line.is_empty() {
                let name = std::mem::take(&mut self.name);
                if !self.data.is_empty() {
                    out.push(ServerEvent {
                        name: if name.is_empty() {
                            "message".into()
                        } else {
                            name
                        },
                        data: std::mem::take(&mut self.data).join("\n"),
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue; // comment (keep-alive)
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => self.name = value.to_string(),
                "data" => self.data.push(value.to_string()),
                _ => {}
            }
        }
        out
    }
}

/// An open event stream.
#[derive(Debug)]
pub struct EventStream {
    /// The event stream resource (`Location` of the POST); DELETE it to end.
    pub location: Url,
    rx: mpsc::UnboundedReceiver<ServerEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EventStream {
    /// The next event: `Ok(Some)`, `Ok(None)` once the server ended the
    /// stream, `Err` if nothing came within `timeout`.
    pub async fn next(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<ServerEvent>, tokio::time::error::Elapsed> {
        tokio::time::timeout(timeout, self.rx.recv()).await
    }

    /// Skip events until one named `name` arrives (`None`: the stream
    /// ended or `timeout` passed first).
    pub async fn wait_for(&mut self, name: &str, timeout: Duration) -> Option<ServerEvent> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Ok(Some(e)) if e.name == name => return Some(e),
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }
}

/// Open the event stream of a WHEP session: `session` is its URL (to
/// resolve a relative Link), `headers` the `201`'s headers, `token` its
/// bearer token, `events` the names to subscribe to (`None`: all).
///
/// Errors: no extension Link, or a POST/GET that is not `201`/`200
/// text/event-stream` (the error text carries the status).
pub async fn subscribe(
    session: &Url,
    headers: &[(String, String)],
    token: Option<&str>,
    events: Option<&[&str]>,
) -> anyhow::Result<EventStream> {
    let (target, _) = find_link(headers, REL)
        .ok_or_else(|| anyhow::anyhow!("no {REL} Link in the WHEP response"))?;
    let entry = session.join(&target)?;
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut h = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        h.push(("authorization", a.as_str()));
    }
    let body = events.map(|e| serde_json::json!(e).to_string());
    let r = request("POST", &entry, &h, body).await?;
    if r.status != 201 {
        anyhow::bail!("event stream POST: {} {}", r.status, r.body.trim());
    }
    let location = entry.join(
        r.header("location")
            .ok_or_else(|| anyhow::anyhow!("event stream 201 without Location"))?,
    )?;
    h[0] = ("accept", "text/event-stream");
    let resp = send("GET", &location, &h, None).await?;
    let ct = header_list(&resp)
        .into_iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v);
    if resp.status() != 200
        || !ct
            .as_deref()
            .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        anyhow::bail!("event stream GET: {} ({ct:?})", resp.status());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut body = resp.into_body();
    let task = tokio::spawn(async move {
        let mut parser = Parser::default();
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                for e in parser.push(&data) {
                    if tx.send(e).is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(EventStream { location, rx, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_events_and_comments() {
        let mut p = Parser::default();
        assert!(p.push(b"event: active\ndata: {}").is_empty());
        let e = p.push(b"\n\n: keep-alive\n\nevent:viewercount\r\ndata: {\"viewercount\":2}\r\n\r\ndata: a\ndata: b\n\n");
        assert_eq!(
            e,
            [
                ServerEvent {
                    name: "active".into(),
                    data: "{}".into()
                },
                ServerEvent {
                    name: "viewercount".into(),
                    data: r#"{"viewercount":2}"#.into()
                },
                ServerEvent {
                    name: "message".into(),
                    data: "a\nb".into()
                },
            ]
        );
        assert_eq!(e[1].json()["viewercount"], 2);
    }

    #[test]
    fn finds_links() {
        let h = vec![
            ("link".to_string(), "<stun:x>; rel=\"ice-server\", </whep/a/b/sse>; rel=\"urn:ietf:params:whep:ext:core:server-sent-events\"; events=\"active,inactive\"".to_string()),
        ];
        let (t, params) = find_link(&h, REL).unwrap();
        assert_eq!(t, "/whep/a/b/sse");
        assert!(params.contains(&("events".into(), "active,inactive".into())));
        assert!(find_link(&h, "urn:x").is_none());
    }
}
