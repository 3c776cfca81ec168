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

/// A full SDP (an offer or answer of an established session) with its ICE
/// credentials replaced and its candidates replaced by `candidates`
/// (values without `a=`), for an ICE restart by PATCH (RFC 9725 §4.3.2):
/// str0m restarts ICE when it accepts an offer (or answer) whose
/// credentials differ. Every `a=ice-ufrag`/`a=ice-pwd` line gets the new
/// values; old `a=candidate`/`a=end-of-candidates` lines go; the new
/// candidates follow the first `a=mid` (BUNDLE: one transport).
pub fn with_new_ice(sdp: &str, ufrag: &str, pwd: &str, candidates: &[String]) -> String {
    let mut out = String::with_capacity(sdp.len() + candidates.len() * 80);
    let mut placed = false;
    for raw in sdp.lines() {
        let line = raw.trim_end_matches('\r');
        if line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("a=ice-ufrag:") {
            out.push_str("a=ice-ufrag:");
            out.push_str(ufrag);
        } else if line.starts_with("a=ice-pwd:") {
            out.push_str("a=ice-pwd:");
            out.push_str(pwd);
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
        if !placed && line.starts_with("a=mid:") {
            placed = true;
            for c in candidates {
                out.push_str("a=");
                out.push_str(c);
                out.push_str("\r\n");
            }
            if !candidates.is_empty() {
                out.push_str("a=end-of-candidates\r\n");
            }
        }
    }
    out
}

/// The ICE part of an SDP as an `application/trickle-ice-sdpfrag` body (RFC
/// 8840 §9): session-level `a=ice-ufrag`/`a=ice-pwd`, then the first media
/// section's `m=` and `a=mid` lines with its candidates. Used for the 200
/// answer to an ICE restart PATCH and by the client to send one.
pub fn ice_fragment(sdp: &str) -> String {
    let attr = |name: &str| {
        sdp.lines()
            .map(|l| l.trim_end_matches('\r'))
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .to_string()
    };
    let mut out = format!(
        "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
        attr("a=ice-ufrag:"),
        attr("a=ice-pwd:")
    );
    let m = sdp
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.starts_with("m="));
    let mid = attr("a=mid:");
    if let Some(m) = m {
        out.push_str(m);
        out.push_str("\r\n");
        if !mid.is_empty() {
            out.push_str("a=mid:");
            out.push_str(&mid);
            out.push_str("\r\n");
        }
    }
    for c in sdp
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| l.starts_with("a=candidate:"))
    {
        out.push_str(c);
        out.push_str("\r\n");
    }
    out.push_str("a=end-of-candidates\r\n");
    out
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

    #[test]
    fn ice_restart_rewrites_credentials_and_candidates() {
        let sdp = "v=0\r\na=ice-ufrag:old\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
a=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\na=candidate:1 1 udp 1 10.0.0.1 5 typ host\r\n\
a=end-of-candidates\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=ice-ufrag:old\r\na=ice-pwd:oldpwd\r\n";
        let c = vec!["candidate:2 1 udp 9 10.0.0.2 6 typ host".to_string()];
        let n = with_new_ice(sdp, "new", "newpwd", &c);
        assert!(!n.contains("old"), "{n}");
        assert_eq!(n.matches("a=ice-ufrag:new").count(), 3);
        assert_eq!(n.matches("a=candidate:").count(), 1);
        assert!(n.contains(
            "a=mid:0\r\na=candidate:2 1 udp 9 10.0.0.2 6 typ host\r\na=end-of-candidates"
        ));
        let f = ice_fragment(&n);
        let p = parse(&f).unwrap();
        assert_eq!(
            (p.ufrag.as_deref(), p.pwd.as_deref()),
            (Some("new"), Some("newpwd"))
        );
        assert_eq!(
            p.candidates,
            vec!["candidate:2 1 udp 9 10.0.0.2 6 typ host".to_string()]
        );
        assert!(f.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"));
    }
}
