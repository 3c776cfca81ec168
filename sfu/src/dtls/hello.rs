//! The first DTLS ClientHello of a session (RFC 6347 §4.2.2, RFC 5246
//! §7.4.1.2), read just far enough to tell which TLS library sent it: its
//! cipher suites and extension types. [`Assembler`] puts a ClientHello sent
//! in several fragments (GStreamer sends its ≈ 300 bytes in two) together.

/// Cipher suites and extension types of a ClientHello, in offer order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    /// Cipher suite code points.
    pub suites: Vec<u16>,
    /// Extension types.
    pub extensions: Vec<u16>,
}

/// `encrypt_then_mac` (RFC 7366): OpenSSL offers it; BoringSSL (Chrome),
/// NSS (Firefox), pion (go2rtc) and dimpl do not.
pub const ENCRYPT_THEN_MAC: u16 = 22;

impl ClientHello {
    /// Parse a complete ClientHello body (after the handshake header):
    /// `None` if it is malformed.
    pub fn parse_body(body: &[u8]) -> Option<ClientHello> {
        let mut r = Reader(body);
        r.skip(2 + 32)?; // client_version, random
        let sid = r.u8()?;
        r.skip(usize::from(sid))?;
        let cookie = r.u8()?;
        r.skip(usize::from(cookie))?;
        let suites_len = usize::from(r.u16()?);
        let suites = r.take(suites_len)?;
        let mut hello = ClientHello {
            suites: suites
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect(),
            extensions: Vec::new(),
        };
        let comp = r.u8()?;
        r.skip(usize::from(comp))?;
        let Some(ext_len) = r.u16() else {
            return Some(hello); // no extensions
        };
        let mut exts = Reader(r.take(usize::from(ext_len))?);
        while let (Some(t), Some(l)) = (exts.u16(), exts.u16()) {
            hello.extensions.push(t);
            exts.skip(usize::from(l))?;
        }
        Some(hello)
    }

    /// Whether OpenSSL (or a library that offers what it offers) sent it.
    /// GStreamer's webrtcbin signs with RSA by default through OpenSSL;
    /// browsers, pion and dimpl, which sign with ECDSA, do not offer
    /// `encrypt_then_mac`.
    pub fn from_openssl(&self) -> bool {
        self.extensions.contains(&ENCRYPT_THEN_MAC)
    }
}

/// Collects the fragments of the first ClientHello (epoch 0, message_seq 0)
/// from DTLS datagrams (RFC 6347 §4.2.3: fragment offset and length per
/// handshake record; several records per datagram).
#[derive(Debug, Default)]
pub struct Assembler {
    /// The message body, sized by its declared length on first sight.
    body: Vec<u8>,
    /// Which bytes of `body` arrived.
    have: Vec<bool>,
}

/// Largest ClientHello accepted (a DTLS 1.2 ClientHello is a few hundred
/// bytes; post-quantum key shares make DTLS 1.3 ones ≈ 1.5 KB).
const MAX_HELLO: usize = 16 * 1024;

impl Assembler {
    /// Take the ClientHello fragments of datagram `d`; the ClientHello once
    /// complete (then parsed), else `None`.
    pub fn push(&mut self, d: &[u8]) -> Option<Option<ClientHello>> {
        let mut rest = d;
        while rest.len() >= 13 {
            let len = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
            let Some(rec) = rest.get(13..13 + len) else {
                break;
            };
            let plain_handshake = rest[0] == 22 && rest[3..5] == [0, 0];
            rest = &rest[13 + len..];
            if !plain_handshake || rec.len() < 12 || rec[0] != 1 || rec[4..6] != [0, 0] {
                continue;
            }
            let u24 =
                |b: &[u8]| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
            let (total, off, flen) = (u24(&rec[1..4]), u24(&rec[6..9]), u24(&rec[9..12]));
            if total > MAX_HELLO || off + flen > total {
                continue;
            }
            let Some(frag) = rec.get(12..12 + flen) else {
                continue;
            };
            if self.body.len() != total {
                self.body = vec![0; total];
                self.have = vec![false; total];
            }
            self.body[off..off + flen].copy_from_slice(frag);
            self.have[off..off + flen].fill(true);
        }
        (!self.body.is_empty() && self.have.iter().all(|h| *h))
            .then(|| ClientHello::parse_body(&self.body))
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DTLS record holding one fragment of a ClientHello `body`.
    fn record(body: &[u8], off: usize, len: usize) -> Vec<u8> {
        let u24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let mut hs = vec![1];
        hs.extend(u24(body.len()));
        hs.extend([0, 0]);
        hs.extend(u24(off));
        hs.extend(u24(len));
        hs.extend(&body[off..off + len]);
        let mut r = vec![22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0];
        r.extend((hs.len() as u16).to_be_bytes());
        r.extend(hs);
        r
    }

    /// A ClientHello body: suites, then extensions of the given types
    /// (each with two bytes of data).
    fn body(suites: &[u16], exts: &[u16]) -> Vec<u8> {
        let mut b = vec![0xfe, 0xfd];
        b.extend([7u8; 32]);
        b.extend([0, 0]); // session id, cookie
        b.extend(((suites.len() * 2) as u16).to_be_bytes());
        for s in suites {
            b.extend(s.to_be_bytes());
        }
        b.extend([1, 0]); // null compression
        b.extend(((exts.len() * 6) as u16).to_be_bytes());
        for e in exts {
            b.extend(e.to_be_bytes());
            b.extend([0, 2, 0xaa, 0xbb]);
        }
        b
    }

    #[test]
    fn a_clienthello_in_two_fragments_is_put_together() {
        // OpenSSL as GStreamer sends it: many suites, encrypt_then_mac.
        let b = body(&[0xc02c, 0x009f, 0x0035], &[0xff01, 11, 10, 14, 22, 23, 13]);
        let mut a = Assembler::default();
        assert_eq!(a.push(&record(&b, 0, 40)), None, "first fragment only");
        let hello = a
            .push(&record(&b, 40, b.len() - 40))
            .expect("complete")
            .expect("well-formed");
        assert_eq!(hello.suites, [0xc02c, 0x009f, 0x0035]);
        assert_eq!(hello.extensions, [0xff01, 11, 10, 14, 22, 23, 13]);
        assert!(hello.from_openssl());
    }

    #[test]
    fn one_datagram_and_foreign_records() {
        // A browser's: no encrypt_then_mac. An alert record before it and a
        // ChangeCipherSpec after it are skipped.
        let b = body(&[0xc02b, 0xc02f], &[23, 0xff01, 10, 11, 13, 14]);
        let mut d = vec![21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0];
        d.extend(record(&b, 0, b.len()));
        d.extend([20, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1]);
        let hello = Assembler::default()
            .push(&d)
            .expect("complete")
            .expect("well-formed");
        assert_eq!(hello.suites, [0xc02b, 0xc02f]);
        assert!(!hello.from_openssl());
    }

    #[test]
    fn garbage_is_never_a_clienthello() {
        let mut a = Assembler::default();
        for d in [&[][..], &[22, 0xfe], &[22; 40], &[0xff; 13]] {
            assert_eq!(a.push(d), None);
        }
        // Declared longer than its record: skipped, no panic.
        let mut r = record(&body(&[1], &[]), 0, 10);
        r[12] = 200;
        assert_eq!(a.push(&r), None);
        // Complete but malformed body.
        let b = vec![0u8; 20];
        assert_eq!(a.push(&record(&b, 0, b.len())), Some(None));
    }
}
