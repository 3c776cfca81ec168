//! ICE servers for the client: `Link: <url>; rel="ice-server"` headers (RFC
//! 9725 §4.6), `stun:`/`turn:` URLs (RFC 7064 / RFC 7065), and STUN Binding
//! requests and responses (RFC 8489 §5, §14.2) to learn a server-reflexive
//! address from the session's own UDP socket.
//!
//! Only what a client needs: a Binding request without attributes, and the
//! XOR-MAPPED-ADDRESS (or legacy MAPPED-ADDRESS) of a success response whose
//! transaction ID matches ours. Everything else on the socket is not ours
//! (str0m's ICE, DTLS, SRTP) and goes on to str0m.

pub use crate::config::IceServer;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The STUN magic cookie (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_a442;
const BINDING_REQUEST: u16 = 0x0001;
const BINDING_SUCCESS: u16 = 0x0101;
const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;

/// A 96-bit STUN transaction ID (RFC 8489 §5), random.
pub type TransactionId = [u8; 12];

/// A fresh random transaction ID.
pub fn new_transaction_id() -> TransactionId {
    let mut t = [0u8; 12];
    let _ = getrandom::fill(&mut t);
    t
}

/// A Binding request (20-byte header, no attributes) with transaction ID `tid`.
pub fn binding_request(tid: &TransactionId) -> Vec<u8> {
    let mut b = Vec::with_capacity(20);
    b.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    b.extend_from_slice(tid);
    b
}

/// The transaction ID of a STUN message (RFC 8489 §5: first two bits zero,
/// the magic cookie, length a multiple of 4 that fits), or `None` when `b`
/// is not STUN.
pub fn transaction_id(b: &[u8]) -> Option<TransactionId> {
    if b.len() < 20 || b[0] & 0xc0 != 0 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    if len % 4 != 0 || 20 + len > b.len() || b[4..8] != MAGIC_COOKIE.to_be_bytes() {
        return None;
    }
    b[8..20].try_into().ok()
}

/// The mapped address of a Binding success response: XOR-MAPPED-ADDRESS
/// (RFC 8489 §14.2), else MAPPED-ADDRESS (§14.1). `None` for anything else
/// (not STUN, another method or class, no address attribute, truncated).
pub fn parse_binding_success(b: &[u8]) -> Option<SocketAddr> {
    let tid = transaction_id(b)?;
    if u16::from_be_bytes([b[0], b[1]]) != BINDING_SUCCESS {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let mut attrs = &b[20..20 + len];
    let mut plain = None;
    while attrs.len() >= 4 {
        let t = u16::from_be_bytes([attrs[0], attrs[1]]);
        let l = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let v = attrs.get(4..4 + l)?;
        match t {
            ATTR_XOR_MAPPED_ADDRESS => return address(v, Some(&tid)),
            ATTR_MAPPED_ADDRESS => plain = address(v, None),
            _ => {}
        }
        // Attributes are padded to 4 bytes (§14).
        let next = (4 + l).div_ceil(4) * 4;
        attrs = attrs.get(next..).unwrap_or_default();
    }
    plain
}

/// The address in an XOR-MAPPED/-PEER/-RELAYED-ADDRESS value of a message
/// with transaction ID `tid` (RFC 8489 §14.2).
pub fn xor_address_value(v: &[u8], tid: &TransactionId) -> Option<SocketAddr> {
    address(v, Some(tid))
}

/// An address attribute value: 0, family (1 = IPv4, 2 = IPv6), port,
/// address; XOR-ed with the cookie (and transaction ID) when `xor` is given.
fn address(v: &[u8], xor: Option<&TransactionId>) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let mut port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]);
    let mut key = [0u8; 16];
    key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    if let Some(t) = xor {
        port ^= (MAGIC_COOKIE >> 16) as u16;
        key[4..].copy_from_slice(t);
    }
    let unmask = |a: &[u8]| -> Vec<u8> {
        a.iter()
            .zip(key.iter())
            .map(|(x, k)| if xor.is_some() { x ^ k } else { *x })
            .collect()
    };
    let ip = match family {
        1 => {
            let a: [u8; 4] = unmask(v.get(4..8)?).try_into().ok()?;
            IpAddr::V4(Ipv4Addr::from(a))
        }
        2 => {
            let a: [u8; 16] = unmask(v.get(4..20)?).try_into().ok()?;
            IpAddr::V6(Ipv6Addr::from(a))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The scheme and `host:port` of a `stun:`, `stuns:`, `turn:` or `turns:`
/// URL (RFC 7064 §3.1, RFC 7065 §3.1), with the default port (3478, or 5349
/// for the TLS schemes) and without a `?transport=` query.
///
/// Errors: another scheme or no host.
pub fn server_address(url: &str) -> Result<(&str, String), String> {
    let (scheme, rest) = url
        .split_once(':')
        .filter(|(s, _)| matches!(*s, "stun" | "stuns" | "turn" | "turns"))
        .ok_or_else(|| format!("not a stun:/turn: URL: {url}"))?;
    let hostport = rest.split('?').next().unwrap_or_default();
    if hostport.is_empty() {
        return Err(format!("no host in {url}"));
    }
    let default = if scheme.ends_with('s') { 5349 } else { 3478 };
    let has_port = match hostport.rfind(']') {
        Some(i) => hostport[i..].contains(':'),
        None => hostport.contains(':'),
    };
    Ok((
        scheme,
        if has_port {
            hostport.to_string()
        } else {
            format!("{hostport}:{default}")
        },
    ))
}

/// The ICE servers in `Link` header values (RFC 9725 §4.6, RFC 8288): every
/// link with `rel="ice-server"`, with its `username` and `credential`
/// parameters. A header value may hold several comma-separated links.
pub fn ice_servers_from_links<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<IceServer> {
    values
        .into_iter()
        .flat_map(super::link::parse)
        .filter(|l| l.has_rel("ice-server"))
        .map(|l| IceServer {
            username: l.param("username").map(str::to_string),
            credential: l.param("credential").map(str::to_string),
            url: l.target,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.2: sample IPv4 response (software name, XOR-MAPPED-ADDRESS
    /// 192.0.2.1:32853, MESSAGE-INTEGRITY, FINGERPRINT).
    const RFC5769_V4: [u8; 80] = [
        0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1,
        0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3,
        0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00,
        0x04, 0xc0, 0x7d, 0x4c, 0x96,
    ];

    /// RFC 5769 §2.3: sample IPv6 response, XOR-MAPPED-ADDRESS
    /// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
    const RFC5769_V6: [u8; 92] = [
        0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76,
        0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01,
        0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9,
        0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb,
        0x0b, 0x4c,
    ];

    #[test]
    fn rfc5769_responses() {
        assert_eq!(
            parse_binding_success(&RFC5769_V4),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        assert_eq!(
            parse_binding_success(&RFC5769_V6),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
        assert_eq!(transaction_id(&RFC5769_V4).unwrap(), RFC5769_V4[8..20]);
        // Truncated, not STUN, or a request: no address.
        assert_eq!(parse_binding_success(&RFC5769_V4[..60]), None);
        assert_eq!(parse_binding_success(&[0x80; 40]), None);
        let req = binding_request(&[7; 12]);
        assert_eq!(req.len(), 20);
        assert_eq!(transaction_id(&req), Some([7; 12]));
        assert_eq!(parse_binding_success(&req), None);
        // An RTP or DTLS packet is not STUN.
        assert_eq!(
            transaction_id(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            None
        );
    }

    #[test]
    fn urls_and_links() {
        assert_eq!(
            server_address("stun:stun.example.org").unwrap(),
            ("stun", "stun.example.org:3478".to_string())
        );
        assert_eq!(
            server_address("turn:127.0.0.1:3479?transport=udp").unwrap(),
            ("turn", "127.0.0.1:3479".to_string())
        );
        assert_eq!(
            server_address("turns:[::1]").unwrap(),
            ("turns", "[::1]:5349".to_string())
        );
        assert!(server_address("http://x").is_err());
        assert!(server_address("stun:").is_err());
        let s = ice_servers_from_links([
            "<stun:stun.example.net>; rel=\"ice-server\"",
            "<turn:turn.example.net?transport=udp>; rel=\"ice-server\"; username=\"u,1\"; \
             credential=\"p\\\"w\"; credential-type=\"password\", </x>; rel=\"next\"",
        ]);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].url, "stun:stun.example.net");
        assert_eq!(s[0].username, None);
        assert_eq!(s[1].url, "turn:turn.example.net?transport=udp");
        assert_eq!(s[1].username.as_deref(), Some("u,1"));
        assert_eq!(s[1].credential.as_deref(), Some("p\"w"));
    }
}
