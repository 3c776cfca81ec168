//! `Link` header values (RFC 8288 §3): `<target>; key=value; key="quoted"`
//! links, several per value separated by commas. Used by the client for the
//! WHIP/WHEP `ice-server` links (RFC 9725 §4.6) and extension links
//! (`urn:ietf:params:whep:ext:core:*`).

/// One link: its target (as written, maybe relative) and its parameters
/// (keys lower-cased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The URI reference between `<` and `>`, trimmed.
    pub target: String,
    /// Parameters in order.
    pub params: Vec<(String, String)>,
}

impl Link {
    /// The first value of parameter `key` (lower-case).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `rel` (a space-separated list, RFC 8288 §3.3) holds `rel`.
    pub fn has_rel(&self, rel: &str) -> bool {
        self.param("rel")
            .is_some_and(|r| r.split_whitespace().any(|r| r == rel))
    }
}

/// The links of one `Link` header value; malformed ones are skipped.
pub fn parse(value: &str) -> Vec<Link> {
    split_links(value)
        .into_iter()
        .filter_map(|link| {
            let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
            let params = split_outside_quotes(params, ';')
                .into_iter()
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k.trim().to_ascii_lowercase(), unquote(v.trim())))
                })
                .collect();
            Some(Link {
                target: target.trim().to_string(),
                params,
            })
        })
        .collect()
}

/// Links of one header value: split at commas outside quotes and `<>`.
fn split_links(v: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    let mut escaped = false;
    for (i, c) in v.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' if !angle => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&v[start..]);
    out
}

fn split_outside_quotes(v: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in v.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&v[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&v[start..]);
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(q) => {
            let mut out = String::with_capacity(q.len());
            let mut esc = false;
            for c in q.chars() {
                if esc || c != '\\' {
                    out.push(c);
                    esc = false;
                } else {
                    esc = true;
                }
            }
            out
        }
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_params_and_quotes() {
        let l = parse(
            r#"<turn:h:3478?transport=udp>; rel="ice-server"; username="a,b"; credential="x\"y", </s>; rel="next alt""#,
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].target, "turn:h:3478?transport=udp");
        assert!(l[0].has_rel("ice-server"));
        assert_eq!(l[0].param("username"), Some("a,b"));
        assert_eq!(l[0].param("credential"), Some("x\"y"));
        assert!(l[1].has_rel("alt") && !l[1].has_rel("ice-server"));
        assert!(parse("no brackets; rel=x").is_empty());
    }
}
