//! Minimal HTTP/1.1 requests for WHIP/WHEP signalling (hyper client), over
//! plain TCP or TLS (rustls; web PKI roots, or any certificate with
//! [`Url::insecure`]).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A parsed `http(s)://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `host:port` (port defaulted to 80 or 443).
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `https://`: the request goes over TLS.
    pub https: bool,
    /// Accept any TLS certificate (self-signed test servers). Carried over
    /// by [`Url::join`].
    pub insecure: bool,
}

impl Url {
    /// Parse an `http://` or `https://` URL.
    ///
    /// Errors: another scheme, or no host.
    pub fn parse(s: &str) -> anyhow::Result<Url> {
        let (https, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            anyhow::bail!("unsupported URL (want http(s)://host:port/path): {s}")
        };
        let (auth, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if auth.is_empty() {
            anyhow::bail!("URL has no host: {s}");
        }
        let authority = if auth
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.ends_with(']'))
        {
            auth.to_string()
        } else {
            format!("{auth}:{}", if https { 443 } else { 80 })
        };
        Ok(Url {
            authority,
            path: path.to_string(),
            https,
            insecure: false,
        })
    }

    /// Resolve a `Location` header value against this URL (absolute path or URL).
    pub fn join(&self, location: &str) -> anyhow::Result<Url> {
        if location.starts_with("http://") || location.starts_with("https://") {
            let mut u = Url::parse(location)?;
            u.insecure = self.insecure;
            return Ok(u);
        }
        if location.starts_with('/') {
            return Ok(Url {
                path: location.to_string(),
                ..self.clone()
            });
        }
        anyhow::bail!("unsupported relative Location: {location}")
    }

    /// The host part of the authority, without brackets or port (TLS SNI).
    pub fn host(&self) -> &str {
        let h = self
            .authority
            .rsplit_once(':')
            .map_or(self.authority.as_str(), |(h, _)| h);
        h.trim_start_matches('[').trim_end_matches(']')
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
    let resp = send(method, url, headers, body).await?;
    let status = resp.status().as_u16();
    let headers = header_list(&resp);
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The headers of `resp` as (lower-case name, value) pairs.
pub fn header_list<B>(resp: &hyper::Response<B>) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Send one request on a fresh connection and return the response with its
/// body unread (a streaming body such as `text/event-stream`).
pub async fn send(
    method: &str,
    url: &Url,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>> {
    let stream = TcpStream::connect(&url.authority)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", url.authority))?;
    let mut sender = if url.https {
        let name = rustls_pki_types::ServerName::try_from(url.host().to_string())
            .map_err(|e| anyhow::anyhow!("bad TLS server name {}: {e}", url.host()))?;
        let tls = tokio_rustls::TlsConnector::from(tls_config(url.insecure))
            .connect(name, stream)
            .await
            .map_err(|e| anyhow::anyhow!("TLS with {} failed: {e}", url.authority))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
    } else {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender
    };
    let mut req = Request::builder()
        .method(method)
        .uri(&url.path)
        .header("host", &url.authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    Ok(sender.send_request(req).await?)
}

/// Client TLS config: web PKI roots, or (`insecure`) any certificate.
/// Built once per process for each mode.
fn tls_config(insecure: bool) -> std::sync::Arc<rustls::ClientConfig> {
    use std::sync::{Arc, OnceLock};
    static STRICT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    static ANY: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    let cell = if insecure { &ANY } else { &STRICT };
    cell.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default TLS versions");
        let mut cfg = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth()
        } else {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    })
    .clone()
}

/// `--insecure`: accepts every server certificate (signatures are still
/// checked against the presented certificate, so the handshake is sound).
#[derive(Debug)]
struct AnyCert(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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
        let s = Url::parse("https://[::1]/whep/a").unwrap();
        assert!(s.https && s.authority == "[::1]:443" && s.host() == "::1");
        let s = Url::parse("https://cam.example:8443/whip/a").unwrap();
        assert_eq!(
            (s.authority.as_str(), s.host()),
            ("cam.example:8443", "cam.example")
        );
        assert!(Url::parse("ftp://x").is_err());
    }
}
