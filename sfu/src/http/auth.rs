//! Authentication (RFC 9725 §4.7): a token per stream and role, presented as
//! `Authorization: Bearer` (RFC 6750), as `?token=` on the URL (for clients that
//! cannot send headers: go2rtc, the Home Assistant card), or as the HTTP Basic
//! password (RFC 7617). Compared in constant time; never logged.

use base64::Engine;
use hyper::Request;
use hyper::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

/// The credential a request presents, if any. `Bearer undefined`/`null`/empty
/// (sent by some browser libraries when no token is set) count as none.
pub fn presented<B>(req: &Request<B>) -> Option<String> {
    if let Some(v) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if !rest.is_empty() && rest != "undefined" && rest != "null" {
                return Some(rest.to_string());
            }
        } else if scheme.eq_ignore_ascii_case("basic")
            && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest)
            && let Ok(s) = String::from_utf8(raw)
            && let Some((_, pass)) = s.split_once(':')
            && !pass.is_empty()
        {
            return Some(pass.to_string());
        }
    }
    req.uri().query().and_then(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "token" && !v.is_empty()).then(|| percent_decode(v))
        })
    })
}

/// True when `presented` satisfies `required` (`None` = open access).
pub fn allowed(required: Option<&str>, presented: Option<&str>) -> bool {
    match required {
        None => true,
        Some(want) => presented.is_some_and(|got| {
            got.len() == want.len() && bool::from(got.as_bytes().ct_eq(want.as_bytes()))
        }),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(x) =
                u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>, uri: &str) -> Request<()> {
        let mut r = Request::builder().uri(uri);
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn bearer_query_basic() {
        assert_eq!(
            presented(&req(Some("Bearer s3cret"), "/whip/a")).as_deref(),
            Some("s3cret")
        );
        assert_eq!(presented(&req(Some("Bearer undefined"), "/whip/a")), None);
        assert_eq!(
            presented(&req(None, "/whep/a?x=1&token=t%2B1")).as_deref(),
            Some("t+1")
        );
        // user:pass → pass
        assert_eq!(
            presented(&req(Some("Basic dXNlcjpwYXNz"), "/whep/a")).as_deref(),
            Some("pass")
        );
        assert!(allowed(None, None));
        assert!(allowed(Some("abc"), Some("abc")));
        assert!(!allowed(Some("abc"), Some("abd")));
        assert!(!allowed(Some("abc"), None));
    }
}
