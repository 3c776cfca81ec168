//! The server's DTLS: dimpl, unless the peer's first ClientHello comes from
//! OpenSSL (GStreamer's `webrtcbin`, `whipsink`, `whepsrc`, which sign with
//! RSA by default, and dimpl refuses RSA; aiortc), then OpenSSL
//! ([`super::ossl`]). Browsers (BoringSSL, NSS), pion (go2rtc) and dimpl
//! offer no `encrypt_then_mac` and keep dimpl.
//!
//! As the DTLS server (every answer is `a=setup:passive`) the server sends
//! nothing before the peer's ClientHello, so the choice can wait for it:
//! datagrams are held until then and replayed into the chosen stack. As
//! the DTLS client it takes dimpl at once.

use super::hello::{Assembler, ClientHello};
use super::{SharedConfigDtls, ossl};
use std::time::{Duration, Instant};
use str0m::crypto::CryptoError;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};

/// Datagrams held while no complete ClientHello has been seen (a peer's
/// first flight is one or two datagrams, sent again on its timer); then
/// dimpl takes them.
const MAX_HELD: usize = 16;

/// The [`DtlsProvider`] that picks dimpl or OpenSSL per session.
#[derive(Debug)]
pub struct AutoDtls {
    /// dimpl with a shared config.
    pub dimpl: &'static SharedConfigDtls,
    /// OpenSSL with a shared context.
    pub openssl: &'static ossl::OpensslDtls,
}

impl DtlsProvider for AutoDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.dimpl.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        Ok(Box::new(Session {
            state: State::Undecided {
                cert: cert.clone(),
                version: dtls_version,
                mtu,
                held: Vec::new(),
                hello: Assembler::default(),
            },
            provider: AutoDtls {
                dimpl: self.dimpl,
                openssl: self.openssl,
            },
            now,
            active: false,
        }))
    }
}

enum State {
    /// No ClientHello yet.
    Undecided {
        cert: DtlsCert,
        version: DtlsVersion,
        mtu: Option<usize>,
        held: Vec<Vec<u8>>,
        hello: Assembler,
    },
    Chosen(Box<dyn DtlsInstance>),
    /// Closed, or no stack could be built.
    Closed,
}

/// One session: undecided until the first ClientHello.
pub struct Session {
    state: State,
    provider: AutoDtls,
    now: Instant,
    active: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Undecided { .. } => "undecided",
            State::Chosen(_) => "chosen",
            State::Closed => "closed",
        };
        f.debug_struct("dtls::auto::Session")
            .field("state", &state)
            .finish()
    }
}

impl Session {
    /// Build the stack (`openssl` or dimpl), start it as server or client
    /// and replay the held datagrams.
    fn choose(&mut self, openssl: bool) -> Result<(), DtlsImplError> {
        let State::Undecided {
            cert,
            version,
            mtu,
            held,
            ..
        } = std::mem::replace(&mut self.state, State::Closed)
        else {
            return Ok(());
        };
        let built = if openssl {
            self.provider
                .openssl
                .new_dtls(&cert, self.now, version, mtu)
        } else {
            self.provider.dimpl.new_dtls(&cert, self.now, version, mtu)
        };
        let mut inner = match built {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!("DTLS session could not start: {e}");
                return Err(DtlsImplError::ConnectionClosed);
            }
        };
        inner.set_active(self.active);
        inner.handle_timeout(self.now)?;
        for d in &held {
            inner.handle_packet(d)?;
        }
        self.state = State::Chosen(inner);
        Ok(())
    }
}

impl DtlsInstance for Session {
    fn set_active(&mut self, active: bool) {
        self.active = active;
        match &mut self.state {
            State::Chosen(i) => i.set_active(active),
            State::Undecided { .. } if active => {
                let _ = self.choose(false);
            }
            _ => {}
        }
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        match &mut self.state {
            State::Chosen(i) => i.handle_packet(packet),
            State::Closed => Ok(()),
            State::Undecided { held, hello, .. } => {
                held.push(packet.to_vec());
                let hello = match hello.push(packet) {
                    Some(h) => h,
                    None if held.len() < MAX_HELD => return Ok(()),
                    None => None,
                };
                let openssl = hello.as_ref().is_some_and(ClientHello::from_openssl);
                tracing::debug!(
                    openssl,
                    suites = ?hello.as_ref().map(|h| &h.suites),
                    extensions = ?hello.as_ref().map(|h| &h.extensions),
                    "DTLS ClientHello: {}",
                    if openssl { "OpenSSL" } else { "dimpl" }
                );
                self.choose(openssl)
            }
        }
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        match &mut self.state {
            State::Chosen(i) => i.poll_output(buf),
            _ => DtlsOutput::Timeout(self.now + Duration::from_secs(3600)),
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.now = now;
        match &mut self.state {
            State::Chosen(i) => i.handle_timeout(now),
            _ => Ok(()),
        }
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        match &mut self.state {
            State::Chosen(i) => i.send_application_data(data),
            _ => Ok(0),
        }
    }

    fn is_active(&self) -> bool {
        self.active
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        match &self.state {
            State::Chosen(i) => i.protocol_version(),
            _ => None,
        }
    }

    fn is_closing(&self) -> bool {
        match &self.state {
            State::Chosen(i) => i.is_closing(),
            _ => false,
        }
    }

    fn is_closed(&self) -> bool {
        match &self.state {
            State::Chosen(i) => i.is_closed(),
            State::Closed => true,
            State::Undecided { .. } => false,
        }
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        match &mut self.state {
            State::Chosen(i) => i.close(),
            _ => {
                self.state = State::Closed;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static DIMPL: SharedConfigDtls = SharedConfigDtls::new();
    static OSSL: ossl::OpensslDtls = ossl::OpensslDtls::new();
    static AUTO: AutoDtls = AutoDtls {
        dimpl: &DIMPL,
        openssl: &OSSL,
    };

    /// Handshake `client` (active) with an auto server: whether the server
    /// connected, and its SRTP keys.
    fn handshake(mut client: Box<dyn DtlsInstance>) -> (bool, Option<Vec<u8>>) {
        let now = Instant::now();
        let cert = DIMPL.generate_certificate().unwrap();
        let mut server = AUTO
            .new_dtls(&cert, now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        server.set_active(false);
        client.set_active(true);
        client.handle_timeout(now).unwrap();
        let (mut connected, mut keys, mut client_keys) = (false, None, None);
        let mut buf = [0u8; 2048];
        for _ in 0..20 {
            loop {
                match client.poll_output(&mut buf) {
                    DtlsOutput::Packet(p) => server.handle_packet(p).unwrap(),
                    DtlsOutput::KeyingMaterial(k, _) => client_keys = Some(k.to_vec()),
                    DtlsOutput::Timeout(_) => break,
                    _ => {}
                }
            }
            loop {
                match server.poll_output(&mut buf) {
                    DtlsOutput::Packet(p) => client.handle_packet(p).unwrap(),
                    DtlsOutput::Connected => connected = true,
                    DtlsOutput::KeyingMaterial(k, _) => keys = Some(k.to_vec()),
                    DtlsOutput::Timeout(_) => break,
                    _ => {}
                }
            }
        }
        assert_eq!(keys, client_keys, "both sides export the same SRTP keys");
        (connected, keys)
    }

    #[test]
    fn an_openssl_client_with_rsa_gets_openssl() {
        let ctx = OSSL.context(&ossl::rsa_cert()).unwrap();
        let client = ossl::Session::new(&ctx, Instant::now(), Some(1150)).unwrap();
        let (connected, keys) = handshake(Box::new(client));
        assert!(connected, "RSA client connected (dimpl would refuse it)");
        assert_eq!(keys.map(|k| k.len()), Some(88), "AES-256-GCM keys");
    }

    #[test]
    fn a_dimpl_client_keeps_dimpl() {
        let cert = DIMPL.generate_certificate().unwrap();
        let client = DIMPL
            .new_dtls(&cert, Instant::now(), DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        let (connected, keys) = handshake(client);
        assert!(connected);
        assert!(keys.is_some());
    }

    #[test]
    fn datagrams_before_a_clienthello_are_held_then_dimpl_takes_them() {
        let cert = DIMPL.generate_certificate().unwrap();
        let mut s = AUTO
            .new_dtls(&cert, Instant::now(), DtlsVersion::Dtls12, None)
            .unwrap();
        s.set_active(false);
        for _ in 0..MAX_HELD - 1 {
            s.handle_packet(&[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0])
                .unwrap();
        }
        assert!(format!("{s:?}").contains("undecided"));
        // The last one: dimpl gets them all (and ignores them).
        let _ = s.handle_packet(&[23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(format!("{s:?}").contains("chosen"));
    }
}
