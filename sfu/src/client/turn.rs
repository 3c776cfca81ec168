//! A minimal TURN client over UDP (RFC 8656) for one relayed candidate:
//! Allocate with long-term credentials (RFC 8489 §9.2: 401 → REALM/NONCE →
//! MESSAGE-INTEGRITY with key MD5(user:realm:password)), CreatePermission
//! for the peer's addresses, Refresh, and Send/Data indications (§10, §11)
//! to carry str0m's datagrams. No ChannelData, no TCP/TLS transports.
//!
//! Messages are built here and parsed here; the caller owns the socket and
//! hands in every datagram from the TURN server (see [`Turn::is_from`]).

use super::stun::{MAGIC_COOKIE, TransactionId, new_transaction_id, transaction_id};
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const ALLOCATE: u16 = 0x0003;
const REFRESH: u16 = 0x0004;
const CREATE_PERMISSION: u16 = 0x0008;
const SEND_INDICATION: u16 = 0x0016;
const DATA_INDICATION: u16 = 0x0017;
const SUCCESS: u16 = 0x0100;
const ERROR: u16 = 0x0110;

const A_USERNAME: u16 = 0x0006;
const A_MESSAGE_INTEGRITY: u16 = 0x0008;
const A_ERROR_CODE: u16 = 0x0009;
const A_LIFETIME: u16 = 0x000d;
const A_XOR_PEER_ADDRESS: u16 = 0x0012;
const A_DATA: u16 = 0x0013;
const A_REALM: u16 = 0x0014;
const A_NONCE: u16 = 0x0015;
const A_XOR_RELAYED_ADDRESS: u16 = 0x0016;
const A_REQUESTED_TRANSPORT: u16 = 0x0019;

/// STUN attributes to encode: (type, value).
type Attrs = Vec<(u16, Vec<u8>)>;

/// Permissions last 300 s (RFC 8656 §9); refreshed after this.
const PERMISSION_REFRESH: Duration = Duration::from_secs(240);

/// One TURN allocation on one server.
#[derive(Debug)]
pub struct Turn {
    /// The TURN server's address.
    pub server: SocketAddr,
    /// The server's URL (for logs).
    pub url: String,
    username: String,
    password: String,
    realm: String,
    nonce: String,
    /// The relayed transport address (XOR-RELAYED-ADDRESS), once allocated.
    pub relayed: Option<SocketAddr>,
    /// Peer IPs with a permission (or one requested).
    permitted: Vec<IpAddr>,
    /// Outstanding requests: transaction ID, method, message (re-sent on a
    /// 438 stale nonce or a 401 with fresh credentials).
    pending: Vec<(TransactionId, u16, Attrs)>,
    /// When to send the next Refresh and CreatePermission.
    pub refresh_at: Instant,
    permission_at: Instant,
    /// Allocation lifetime granted by the server.
    lifetime: Duration,
    /// Set when the server refused us for good (e.g. wrong credentials).
    pub failed: Option<String>,
}

/// What a datagram from the TURN server was.
#[derive(Debug, PartialEq, Eq)]
pub enum TurnInput {
    /// Data relayed from `peer` (Data indication).
    Data(SocketAddr, Vec<u8>),
    /// A response to one of our requests (handled), with datagrams to send
    /// to the server (a retry with new credentials or nonce).
    Handled(Vec<Vec<u8>>),
    /// Not for us.
    Other,
}

impl Turn {
    /// A client for `server` with long-term credentials.
    pub fn new(url: &str, server: SocketAddr, username: &str, password: &str) -> Turn {
        Turn {
            server,
            url: url.to_string(),
            username: username.to_string(),
            password: password.to_string(),
            realm: String::new(),
            nonce: String::new(),
            relayed: None,
            permitted: Vec::new(),
            pending: Vec::new(),
            refresh_at: Instant::now() + Duration::from_secs(3600),
            permission_at: Instant::now() + PERMISSION_REFRESH,
            lifetime: Duration::from_secs(600),
            failed: None,
        }
    }

    /// The first Allocate request (unauthenticated: the server answers 401
    /// with its realm and nonce, RFC 8656 §7.1).
    pub fn allocate(&mut self) -> Vec<u8> {
        self.request(ALLOCATE, vec![(A_REQUESTED_TRANSPORT, vec![17, 0, 0, 0])])
    }

    /// CreatePermission for the IPs of `peers` not yet permitted (one request
    /// for all); `None` when there is nothing new.
    pub fn permit(&mut self, peers: &[SocketAddr]) -> Option<Vec<u8>> {
        let mut attrs = Vec::new();
        for p in peers {
            if !self.permitted.contains(&p.ip()) && p.is_ipv4() == self.server.is_ipv4() {
                self.permitted.push(p.ip());
                attrs.push((A_XOR_PEER_ADDRESS, xor_address(*p)));
            }
        }
        (!attrs.is_empty()).then(|| self.request(CREATE_PERMISSION, attrs))
    }

    /// Requests due at `now` (Refresh of the allocation, CreatePermission
    /// again for every permitted peer).
    pub fn timers(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if self.relayed.is_none() {
            return out;
        }
        if now >= self.refresh_at {
            self.refresh_at = now + self.lifetime / 2;
            let life = (self.lifetime.as_secs() as u32).to_be_bytes().to_vec();
            out.push(self.request(REFRESH, vec![(A_LIFETIME, life)]));
        }
        if now >= self.permission_at && !self.permitted.is_empty() {
            self.permission_at = now + PERMISSION_REFRESH;
            let attrs = self
                .permitted
                .iter()
                .map(|ip| (A_XOR_PEER_ADDRESS, xor_address(SocketAddr::new(*ip, 0))))
                .collect();
            out.push(self.request(CREATE_PERMISSION, attrs));
        }
        out
    }

    /// A Refresh with LIFETIME 0: frees the allocation (RFC 8656 §7.2), sent
    /// when the session closes.
    pub fn deallocate(&mut self) -> Vec<u8> {
        self.request(REFRESH, vec![(A_LIFETIME, vec![0; 4])])
    }

    /// The next time [`Turn::timers`] has something to do.
    pub fn next_timer(&self) -> Instant {
        self.refresh_at.min(self.permission_at)
    }

    /// A Send indication carrying `data` to `peer` through the relay.
    pub fn send(&self, peer: SocketAddr, data: &[u8]) -> Vec<u8> {
        encode(
            SEND_INDICATION,
            &new_transaction_id(),
            &[
                (A_XOR_PEER_ADDRESS, xor_address(peer)),
                (A_DATA, data.to_vec()),
            ],
            None,
        )
    }

    /// No request is waiting for its response.
    pub fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Is `source` the TURN server?
    pub fn is_from(&self, source: SocketAddr) -> bool {
        source == self.server
    }

    /// Handle a datagram from the server.
    pub fn input(&mut self, b: &[u8]) -> TurnInput {
        let Some(tid) = transaction_id(b) else {
            return TurnInput::Other;
        };
        let typ = u16::from_be_bytes([b[0], b[1]]);
        let attrs = attributes(b);
        if typ == DATA_INDICATION {
            let peer = attrs
                .iter()
                .find(|(t, _)| *t == A_XOR_PEER_ADDRESS)
                .and_then(|(_, v)| super::stun::xor_address_value(v, &tid));
            let data = attrs.iter().find(|(t, _)| *t == A_DATA);
            return match (peer, data) {
                (Some(p), Some((_, d))) => TurnInput::Data(p, d.to_vec()),
                _ => TurnInput::Other,
            };
        }
        let Some(i) = self.pending.iter().position(|p| p.0 == tid) else {
            return TurnInput::Other;
        };
        let (_, method, sent) = self.pending.swap_remove(i);
        let class = typ & 0x0110;
        let mut out = Vec::new();
        if class == SUCCESS {
            if method == ALLOCATE {
                self.relayed = attrs
                    .iter()
                    .find(|(t, _)| *t == A_XOR_RELAYED_ADDRESS)
                    .and_then(|(_, v)| super::stun::xor_address_value(v, &tid));
                if let Some((_, l)) = attrs.iter().find(|(t, _)| *t == A_LIFETIME)
                    && l.len() == 4
                {
                    self.lifetime = Duration::from_secs(u64::from(u32::from_be_bytes([
                        l[0], l[1], l[2], l[3],
                    ])));
                }
                self.refresh_at = Instant::now() + self.lifetime / 2;
                if self.relayed.is_none() {
                    self.failed = Some("Allocate success without XOR-RELAYED-ADDRESS".into());
                }
            }
        } else if class == ERROR {
            let code = attrs
                .iter()
                .find(|(t, _)| *t == A_ERROR_CODE)
                .filter(|(_, v)| v.len() >= 4)
                .map_or(0, |(_, v)| u16::from(v[2] & 7) * 100 + u16::from(v[3]));
            let reason = attrs
                .iter()
                .find(|(t, _)| *t == A_ERROR_CODE)
                .and_then(|(_, v)| v.get(4..))
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .unwrap_or_default();
            let had_nonce = !self.nonce.is_empty();
            if let Some((_, n)) = attrs.iter().find(|(t, _)| *t == A_NONCE) {
                self.nonce = String::from_utf8_lossy(n).into_owned();
            }
            if let Some((_, r)) = attrs.iter().find(|(t, _)| *t == A_REALM) {
                self.realm = String::from_utf8_lossy(r).into_owned();
            }
            // 401 on the first, unauthenticated request, or 438 stale
            // nonce: send it again with credentials and the new nonce.
            let retry = (code == 401 && !had_nonce) || code == 438;
            if retry && !self.nonce.is_empty() {
                out.push(self.request(method, sent));
            } else if method == ALLOCATE {
                self.failed = Some(format!("Allocate refused: {code} {reason}"));
            } else {
                tracing::debug!(
                    "{}: TURN method {method:#x} refused: {code} {reason}",
                    self.url
                );
            }
        }
        TurnInput::Handled(out)
    }

    /// A request of `method` with `attrs`, plus USERNAME/REALM/NONCE and
    /// MESSAGE-INTEGRITY once the server told us its realm and nonce.
    fn request(&mut self, method: u16, attrs: Vec<(u16, Vec<u8>)>) -> Vec<u8> {
        let tid = new_transaction_id();
        let mut all = attrs.clone();
        let key = (!self.nonce.is_empty()).then(|| {
            all.push((A_USERNAME, self.username.as_bytes().to_vec()));
            all.push((A_REALM, self.realm.as_bytes().to_vec()));
            all.push((A_NONCE, self.nonce.as_bytes().to_vec()));
            let mut h = Md5::new();
            h.update(format!(
                "{}:{}:{}",
                self.username, self.realm, self.password
            ));
            h.finalize().to_vec()
        });
        self.pending.push((tid, method, attrs));
        encode(method, &tid, &all, key.as_deref())
    }
}

/// A STUN message: header, attributes (padded), and MESSAGE-INTEGRITY
/// (HMAC-SHA1 with `key`, RFC 8489 §14.5) when a key is given.
fn encode(typ: u16, tid: &TransactionId, attrs: &[(u16, Vec<u8>)], key: Option<&[u8]>) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    b.extend_from_slice(&typ.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    b.extend_from_slice(tid);
    for (t, v) in attrs {
        b.extend_from_slice(&t.to_be_bytes());
        b.extend_from_slice(&(v.len() as u16).to_be_bytes());
        b.extend_from_slice(v);
        b.resize(b.len().div_ceil(4) * 4, 0);
    }
    if let Some(key) = key {
        // The length counts the MESSAGE-INTEGRITY attribute (24 bytes).
        let len = (b.len() - 20 + 24) as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("any key length");
        mac.update(&b);
        b.extend_from_slice(&A_MESSAGE_INTEGRITY.to_be_bytes());
        b.extend_from_slice(&20u16.to_be_bytes());
        b.extend_from_slice(&mac.finalize().into_bytes());
    } else {
        let len = (b.len() - 20) as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
    }
    b
}

/// The attributes of a STUN message (type, value).
fn attributes(b: &[u8]) -> Vec<(u16, &[u8])> {
    let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
    let mut a = b.get(20..20 + len).unwrap_or_default();
    let mut out = Vec::new();
    while a.len() >= 4 {
        let t = u16::from_be_bytes([a[0], a[1]]);
        let l = usize::from(u16::from_be_bytes([a[2], a[3]]));
        let Some(v) = a.get(4..4 + l) else { break };
        out.push((t, v));
        a = a.get((4 + l).div_ceil(4) * 4..).unwrap_or_default();
    }
    out
}

/// An XOR-PEER-ADDRESS value for an IPv4 `addr` (IPv6 would need the
/// transaction ID; the client relays IPv4 only).
fn xor_address(addr: SocketAddr) -> Vec<u8> {
    let mut v = vec![0, 1];
    v.extend_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => v.extend_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes()),
        IpAddr::V6(_) => v.extend_from_slice(&[0; 4]),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_term_integrity_rfc5769() {
        // RFC 5769 §2.4: request with long-term authentication; user
        // "マトリックス" (SASLprep'd as is), realm "example.org",
        // password "TheMatrIX". Rebuild it and compare MESSAGE-INTEGRITY.
        let tid: TransactionId = [
            0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
        ];
        let user = "\u{30de}\u{30c8}\u{30ea}\u{30c3}\u{30af}\u{30b9}";
        let nonce = "f//499k954d6OL34oL9FSTvy64sA";
        let mut h = Md5::new();
        h.update(format!("{user}:example.org:TheMatrIX"));
        let key = h.finalize().to_vec();
        let m = encode(
            0x0001,
            &tid,
            &[
                (A_USERNAME, user.as_bytes().to_vec()),
                (A_NONCE, nonce.as_bytes().to_vec()),
                (A_REALM, b"example.org".to_vec()),
            ],
            Some(&key),
        );
        let mi = &m[m.len() - 20..];
        assert_eq!(
            mi,
            [
                0xf6, 0x70, 0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02, 0xb8, 0xe0, 0x71, 0x2e, 0x85,
                0xc9, 0xa2, 0x8c, 0xa8, 0x96, 0x66
            ]
        );
    }

    #[test]
    fn data_indication_and_allocate_flow() {
        let mut t = Turn::new("turn:x", "127.0.0.1:3478".parse().unwrap(), "u", "p");
        let a = t.allocate();
        let tid: TransactionId = a[8..20].try_into().unwrap();
        // 401 with realm and nonce → the Allocate again, authenticated.
        let e = encode(
            ALLOCATE | ERROR,
            &tid,
            &[
                (A_ERROR_CODE, vec![0, 0, 4, 1]),
                (A_REALM, b"r".to_vec()),
                (A_NONCE, b"n".to_vec()),
            ],
            None,
        );
        let TurnInput::Handled(out) = t.input(&e) else {
            panic!()
        };
        assert_eq!(out.len(), 1);
        assert!(
            out[0]
                .windows(2)
                .any(|w| w == A_MESSAGE_INTEGRITY.to_be_bytes())
        );
        let tid2: TransactionId = out[0][8..20].try_into().unwrap();
        let relay: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let mut x = xor_address(relay);
        x.truncate(8);
        let ok = encode(
            ALLOCATE | SUCCESS,
            &tid2,
            &[(A_XOR_RELAYED_ADDRESS, x)],
            None,
        );
        assert_eq!(t.input(&ok), TurnInput::Handled(vec![]));
        assert_eq!(t.relayed, Some(relay));
        // A Data indication from a peer.
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let d = encode(
            DATA_INDICATION,
            &[1; 12],
            &[
                (A_XOR_PEER_ADDRESS, xor_address(peer)),
                (A_DATA, vec![9, 8, 7]),
            ],
            None,
        );
        assert_eq!(t.input(&d), TurnInput::Data(peer, vec![9, 8, 7]));
    }
}
