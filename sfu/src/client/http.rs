//! Minimal HTTP/1.1 requests for WHIP/WHEP signalling (hyper client).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A parsed `http://host:port/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port`.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parse an `http://` URL. `https://` is not supported by this client yet.
    pub fn parse(s: &str) -> anyhow::Result<Url> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("unsupported URL (want http://host:port/path): {s}"))?;
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.is_empty() {
            anyhow::bail!("URL has no host: {s}");
        }
        let authority = if auth.contains(':') && !auth.ends_with(']') {
            auth.to_string()
        } else {
            format!("{auth}:80")
        };
        Ok(Url {
            authority,
            path: path.to_string(),
        })
    }

    /// Resolve a `Location` header value against this URL (absolute path or URL).
    pub fn join(&self, location: &str) -> anyhow::Result<Url> {
        if location.starts_with("http://") {
            return Url::parse(location);
        }
        if location.starts_with('/') {
            return Ok(Url {
                authority: self.authority.clone(),
                path: location.to_string(),
            });
        }
        anyhow::bail!("unsupported relative Location: {location}")
    }
}

/// A response: status, headers, body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body bytes as text (lossy).
    pub body: String,
}

impl HttpResponse {
    /// First header value by (lower-case) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Send one request on a fresh connection.
pub async fn request(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> anyhow::Result<HttpResponse> {
    let stream = TcpStream::connect(&url.authority)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", url.authority))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(&url.path)
        .header("host", &url.authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_join() {
        let u = Url::parse("http://127.0.0.1:8080/whip/cam?token=x").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path, "/whip/cam?token=x");
        assert_eq!(u.join("/whip/cam/abc").unwrap().path, "/whip/cam/abc");
        assert_eq!(Url::parse("http://h/x").unwrap().authority, "h:80");
        assert!(Url::parse("ftp://x").is_err());
    }
}
