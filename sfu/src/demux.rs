//! UDP demultiplexing on one port (RFC 7983 §7, RFC 8445 §5.1.1).
//!
//! A datagram is routed to its peer by ICE ufrag (STUN binding requests carry
//! `USERNAME = <our ufrag>:<their ufrag>`, RFC 8445 §7.2.2) and otherwise by
//! source address, learned only after that peer's str0m instance accepted an
//! integrity-checked STUN request from it. Lookups are O(1) hash lookups.

use dashmap::DashMap;
use std::net::SocketAddr;

/// Where a peer lives: worker (shard) index and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerRef {
    /// Worker index.
    pub shard: usize,
    /// Peer id (unique for the process lifetime).
    pub id: u64,
}

/// The routing tables shared by the UDP receive threads and the workers.
#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: DashMap<String, PeerRef>,
    by_addr: DashMap<SocketAddr, PeerRef>,
}

impl Demux {
    /// Register a peer's local ICE ufrag (before its answer is sent).
    pub fn add_ufrag(&self, ufrag: &str, peer: PeerRef) {
        self.by_ufrag.insert(ufrag.to_string(), peer);
    }

    /// Bind a remote address to a peer (after an accepted STUN request).
    /// Returns the previous owner, if the address moved between peers.
    pub fn bind_addr(&self, addr: SocketAddr, peer: PeerRef) -> Option<PeerRef> {
        match self.by_addr.insert(addr, peer) {
            Some(old) if old != peer => Some(old),
            _ => None,
        }
    }

    /// Remove every entry of a peer.
    pub fn remove(&self, ufrag: &str, addrs: &[SocketAddr], peer: PeerRef) {
        self.by_ufrag.remove_if(ufrag, |_, v| *v == peer);
        for a in addrs {
            self.by_addr.remove_if(a, |_, v| *v == peer);
        }
    }

    /// Route one datagram.
    pub fn route(&self, buf: &[u8], source: SocketAddr) -> Option<PeerRef> {
        if let Some(ufrag) = stun_local_ufrag(buf)
            && let Some(p) = self.by_ufrag.get(ufrag)
        {
            return Some(*p);
        }
        self.by_addr.get(&source).map(|p| *p)
    }

    /// Number of registered ufrags (= live peers).
    pub fn len(&self) -> usize {
        self.by_ufrag.len()
    }

    /// True when no peer is registered.
    pub fn is_empty(&self) -> bool {
        self.by_ufrag.is_empty()
    }
}

/// STUN magic cookie (RFC 8489 §5).
const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// If `buf` is a STUN binding request, the local ufrag from its USERNAME
/// attribute (the part before `:`). No allocation.
pub fn stun_local_ufrag(buf: &[u8]) -> Option<&str> {
    // RFC 7983: first byte 0..3 is STUN; binding request type 0x0001.
    if buf.len() < 20 || buf[0] > 3 || buf[0..2] != [0x00, 0x01] || buf[4..8] != MAGIC {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let end = (20 + len).min(buf.len());
    let mut i = 20;
    while i + 4 <= end {
        let typ = u16::from_be_bytes([buf[i], buf[i + 1]]);
        let alen = u16::from_be_bytes([buf[i + 2], buf[i + 3]]) as usize;
        let vstart = i + 4;
        if vstart + alen > end {
            return None;
        }
        if typ == 0x0006 {
            let v = std::str::from_utf8(&buf[vstart..vstart + alen]).ok()?;
            return v.split(':').next();
        }
        i = vstart + alen.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&0x0006u16.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[7u8; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn parses_username() {
        let m = binding_request("srvu:cli");
        assert_eq!(stun_local_ufrag(&m), Some("srvu"));
        assert_eq!(stun_local_ufrag(&m[..10]), None);
        let mut rtp = m.clone();
        rtp[0] = 0x80;
        assert_eq!(stun_local_ufrag(&rtp), None);
    }

    #[test]
    fn routes_by_ufrag_then_addr() {
        let d = Demux::default();
        let p = PeerRef { shard: 1, id: 9 };
        let q = PeerRef { shard: 0, id: 3 };
        d.add_ufrag("srvu", p);
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(d.route(&binding_request("srvu:x"), a), Some(p));
        assert_eq!(d.route(&[0x80, 0, 0, 0], a), None);
        d.bind_addr(a, p);
        assert_eq!(d.route(&[0x80, 0, 0, 0], a), Some(p));
        // Removing another peer's entries does not touch this one.
        d.remove("srvu", &[a], q);
        assert_eq!(d.route(&[0x80, 0, 0, 0], a), Some(p));
        d.remove("srvu", &[a], p);
        assert!(d.is_empty());
        assert_eq!(d.route(&[0x80, 0, 0, 0], a), None);
    }
}
