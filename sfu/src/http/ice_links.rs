//! `Link: <url>; rel="ice-server"` headers (RFC 9725 §4.6), one URL per value,
//! with per-session TURN REST credentials for coturn's `use-auth-secret`
//! (username `expiry:session`, credential `base64(HMAC-SHA1(secret, username))`).

use crate::config::Config;
use base64::Engine;
use hmac::{Hmac, Mac};
use std::time::{SystemTime, UNIX_EPOCH};

/// TURN REST credential for `username` with `secret`.
pub fn turn_credential(secret: &str, username: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Link header values for a new session.
pub fn links(cfg: &Config, session: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in &cfg.ice_servers {
        match (&s.username, &s.credential) {
            (Some(u), Some(c)) => out.push(format!(
                "<{}>; rel=\"ice-server\"; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                s.url,
                quote(u),
                quote(c)
            )),
            _ => out.push(format!("<{}>; rel=\"ice-server\"", s.url)),
        }
    }
    if let Some(t) = &cfg.turn {
        let expiry = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + t.ttl_secs.unwrap_or(86_400);
        let username = format!("{expiry}:{}", &session[..session.len().min(16)]);
        let credential = turn_credential(&t.secret, &username);
        for url in &t.urls {
            out.push(format!(
                "<{url}>; rel=\"ice-server\"; username=\"{username}\"; credential=\"{credential}\"; credential-type=\"password\""
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coturn_rest_credential() {
        // HMAC-SHA1("secret", "1700000000:abc") computed with openssl:
        // printf '1700000000:abc' | openssl dgst -sha1 -hmac secret -binary | base64
        assert_eq!(
            turn_credential("secret", "1700000000:abc"),
            "JHgegmW+/B84iarkT5SFAOC1Iqw="
        );
    }
}
