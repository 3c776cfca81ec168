//! `application/trickle-ice-sdpfrag` bodies (RFC 8840 §9), read line by line:
//! clients send odd `m=` lines, so only the ICE attributes are taken.

/// What a fragment carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fragment {
    /// `a=ice-ufrag` (a new one means ICE restart).
    pub ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub pwd: Option<String>,
    /// `a=candidate:` values without the `a=` prefix.
    pub candidates: Vec<String>,
    /// `a=end-of-candidates` seen.
    pub end_of_candidates: bool,
}

/// Parse a fragment. Errors (400): not text lines of `x=...`, or more than
/// 1,000 lines.
pub fn parse(body: &str) -> Result<Fragment, &'static str> {
    let mut f = Fragment::default();
    for (n, raw) in body.lines().enumerate() {
        if n >= 1000 {
            return Err("sdpfrag has more than 1000 lines");
        }
        let line = raw.trim_end_matches('\r').trim();
        if line.is_empty() {
            continue;
        }
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err("malformed sdpfrag: every line must be <letter>=<value>");
        }
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            f.ufrag = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            f.pwd = Some(v.trim().to_string());
        } else if line.starts_with("a=candidate:") {
            f.candidates.push(line[2..].to_string());
        } else if line == "a=end-of-candidates" {
            f.end_of_candidates = true;
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_candidates_and_creds() {
        let f = parse(
            "a=ice-ufrag:abc\r\na=ice-pwd:xyz\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n\
a=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\na=candidate:2 1 udp 1 x.local 5 typ host\r\na=end-of-candidates\r\n",
        )
        .unwrap();
        assert_eq!(f.ufrag.as_deref(), Some("abc"));
        assert_eq!(f.candidates.len(), 2);
        assert!(f.end_of_candidates);
        assert!(parse("{\"candidate\": 1}").is_err());
        assert!(parse("").unwrap().candidates.is_empty());
    }
}
