//! DTLS 1.2 (RFC 6347) with DTLS-SRTP (RFC 5764) on OpenSSL, as a str0m
//! [`DtlsInstance`]: for peers whose certificate is RSA. dimpl, str0m's own
//! DTLS stack, accepts only ECDSA peer certificates, and GStreamer's
//! `webrtcbin` (so `whipsink`, `whipclientsink`, `whepsrc`,
//! simple-whip-client) signs with RSA 2048 by default.
//!
//! Sans-IO like the rest: datagrams go in through [`DtlsInstance::handle_packet`]
//! and out through [`DtlsInstance::poll_output`], over an in-memory BIO (one
//! read or write per datagram); the retransmission timer is OpenSSL's,
//! read with `DTLSv1_get_timeout` and fired with `DTLSv1_handle_timeout`.
//! The peer certificate is accepted here and checked against the SDP
//! `a=fingerprint` by str0m (RFC 8122 §5), as with dimpl. Keying material is
//! exported with the `EXTRACTOR-dtls_srtp` label (RFC 5764 §4.2); SRTP itself
//! stays with str0m's aws-lc ciphers.

use foreign_types::ForeignTypeRef;
use openssl::pkey::PKey;
use openssl::srtp::SrtpProfileId;
use openssl::ssl::{
    ErrorCode, ShutdownResult, Ssl, SslContext, SslMethod, SslMode, SslOptions, SslStream,
    SslVerifyMode, SslVersion,
};
use openssl::x509::X509;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use str0m::crypto::CryptoError;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};

/// SRTP protection profiles offered and accepted, in order of preference
/// (RFC 7714 AES-GCM first).
const SRTP_PROFILES: &str = "SRTP_AEAD_AES_256_GCM:SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80";

/// The label of the DTLS-SRTP keying material exporter (RFC 5764 §4.2).
const SRTP_EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// `DTLS_CTRL_GET_TIMEOUT` / `DTLS_CTRL_HANDLE_TIMEOUT` of `ssl.h` (the
/// `DTLSv1_get_timeout` and `DTLSv1_handle_timeout` macros).
const DTLS_CTRL_GET_TIMEOUT: libc::c_int = 73;
const DTLS_CTRL_HANDLE_TIMEOUT: libc::c_int = 74;

/// How far away "no timer" is.
const NO_TIMER: Duration = Duration::from_secs(3600);

/// Most [`SslContext`]s an [`OpensslDtls`] keeps (one per certificate).
pub const MAX_CONTEXTS: usize = 4;

/// The OpenSSL [`DtlsProvider`]: one [`SslContext`] per certificate (the
/// server has one), built on first use and shared by its sessions.
#[derive(Debug)]
pub struct OpensslDtls {
    contexts: Mutex<Vec<(Vec<u8>, SslContext)>>,
}

impl OpensslDtls {
    /// No context yet.
    pub const fn new() -> Self {
        OpensslDtls {
            contexts: Mutex::new(Vec::new()),
        }
    }

    /// The context for `cert`, built on first use. At most
    /// [`MAX_CONTEXTS`] are kept (the oldest goes first): a process has one
    /// certificate in practice (the server's, or the client's shared one),
    /// but a caller giving every session its own must not grow this list
    /// and its lookup without bound.
    pub(crate) fn context(&self, cert: &DtlsCert) -> Result<SslContext, CryptoError> {
        let mut contexts = self.contexts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = contexts.iter().find(|(der, _)| *der == cert.certificate) {
            return Ok(c.clone());
        }
        let c = context(cert)?;
        if contexts.len() >= MAX_CONTEXTS {
            contexts.remove(0);
        }
        contexts.push((cert.certificate.clone(), c.clone()));
        Ok(c)
    }
}

impl Default for OpensslDtls {
    fn default() -> Self {
        Self::new()
    }
}

impl DtlsProvider for OpensslDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        dimpl::certificate::generate_self_signed_certificate().ok()
    }

    /// A session; DTLS 1.2 whatever `_version` asks (OpenSSL 3.0 has no
    /// DTLS 1.3; a client offering 1.3 gets 1.2).
    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        _version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let ctx = self.context(cert)?;
        Ok(Box::new(Session::new(&ctx, now, mtu)?))
    }
}

/// An OpenSSL context for `cert`: DTLS 1.2 only, the cert and its key, the
/// SRTP profiles, any peer certificate accepted (str0m checks its
/// fingerprint), no cookie exchange (ICE has already verified return
/// routability), buffers released when idle.
fn context(cert: &DtlsCert) -> Result<SslContext, CryptoError> {
    let err = |what: &str, e: openssl::error::ErrorStack| {
        CryptoError::Other(format!("OpenSSL DTLS context: {what}: {e}"))
    };
    let mut b = SslContext::builder(SslMethod::dtls()).map_err(|e| err("new", e))?;
    b.set_min_proto_version(Some(SslVersion::DTLS1_2))
        .map_err(|e| err("version", e))?;
    let x509 = X509::from_der(&cert.certificate).map_err(|e| err("certificate", e))?;
    let key = PKey::private_key_from_der(&cert.private_key).map_err(|e| err("key", e))?;
    b.set_certificate(&x509)
        .map_err(|e| err("certificate", e))?;
    b.set_private_key(&key).map_err(|e| err("key", e))?;
    b.check_private_key().map_err(|e| err("key check", e))?;
    b.set_tlsext_use_srtp(SRTP_PROFILES)
        .map_err(|e| err("use_srtp", e))?;
    b.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        |_, _| true,
    );
    b.set_options(SslOptions::NO_QUERY_MTU);
    b.set_mode(SslMode::RELEASE_BUFFERS);
    b.set_session_cache_mode(openssl::ssl::SslSessionCacheMode::OFF);
    Ok(b.build())
}

/// Datagrams between OpenSSL and str0m: one `read` is one received
/// datagram, one `write` one datagram to send.
#[derive(Debug, Default)]
struct Datagrams {
    incoming: VecDeque<Vec<u8>>,
    outgoing: VecDeque<Vec<u8>>,
}

impl Read for Datagrams {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.incoming.pop_front() {
            Some(d) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Datagrams {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.outgoing.push_back(buf.to_vec());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What the handshake produced, handed out by `poll_output` in this order.
#[derive(Debug)]
enum Event {
    PeerCert(Vec<u8>),
    Keying(dimpl::KeyingMaterial, dimpl::SrtpProfile),
    Connected,
    Data(Vec<u8>),
    CloseNotify,
}

/// One session's OpenSSL DTLS state.
pub struct Session {
    /// Until `set_active`: the SSL object, role not yet known.
    pending: Option<Ssl>,
    stream: Option<SslStream<Datagrams>>,
    mtu: Option<usize>,
    active: bool,
    connected: bool,
    closing: bool,
    events: VecDeque<Event>,
    now: Instant,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("dtls::openssl::Session")
            .field("active", &self.active)
            .field("connected", &self.connected)
            .finish()
    }
}

/// A failed DTLS step: OpenSSL's reason is logged, str0m gets a closed
/// connection (the session ends, as when dimpl fails).
fn failed(what: &str, e: impl std::fmt::Display) -> DtlsImplError {
    tracing::debug!("OpenSSL DTLS {what}: {e}");
    DtlsImplError::ConnectionClosed
}

impl Session {
    /// A session on `ctx` created at `now`; `mtu` in bytes (`None`: 1150).
    pub fn new(ctx: &SslContext, now: Instant, mtu: Option<usize>) -> Result<Self, CryptoError> {
        let ssl = Ssl::new(ctx).map_err(|e| CryptoError::Other(format!("OpenSSL DTLS: {e}")))?;
        Ok(Session {
            pending: Some(ssl),
            stream: None,
            mtu,
            active: false,
            connected: false,
            closing: false,
            events: VecDeque::new(),
            now,
        })
    }

    /// Drive the handshake, or read records once connected.
    fn drive(&mut self) -> Result<(), DtlsImplError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        if !self.connected {
            match stream.do_handshake() {
                Ok(()) => self.on_connected()?,
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {
                    return Ok(());
                }
                Err(e) => return Err(failed("handshake", e)),
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let mut buf = [0u8; 2048];
        loop {
            match stream.ssl_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => self.events.push_back(Event::Data(buf[..n].to_vec())),
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    self.events.push_back(Event::CloseNotify);
                    break;
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {
                    break;
                }
                Err(e) => return Err(failed("read", e)),
            }
        }
        Ok(())
    }

    /// The handshake is done: peer certificate, SRTP keys, connected.
    fn on_connected(&mut self) -> Result<(), DtlsImplError> {
        let Some(stream) = self.stream.as_ref() else {
            return Ok(());
        };
        let ssl = stream.ssl();
        let cert = ssl
            .peer_certificate()
            .ok_or_else(|| failed("handshake", "no peer certificate"))?
            .to_der()
            .map_err(|e| failed("peer certificate", e))?;
        let (profile, len) = match ssl.selected_srtp_profile().map(|p| p.id()) {
            Some(SrtpProfileId::SRTP_AEAD_AES_256_GCM) => {
                (dimpl::SrtpProfile::AEAD_AES_256_GCM, 88)
            }
            Some(SrtpProfileId::SRTP_AEAD_AES_128_GCM) => {
                (dimpl::SrtpProfile::AEAD_AES_128_GCM, 56)
            }
            Some(SrtpProfileId::SRTP_AES128_CM_SHA1_80) => {
                (dimpl::SrtpProfile::AES128_CM_SHA1_80, 60)
            }
            _ => return Err(failed("handshake", "no SRTP profile negotiated")),
        };
        let mut km = vec![0u8; len];
        ssl.export_keying_material(&mut km, SRTP_EXPORTER_LABEL, None)
            .map_err(|e| failed("keying material", e))?;
        self.connected = true;
        self.events.push_back(Event::PeerCert(cert));
        self.events
            .push_back(Event::Keying(dimpl::KeyingMaterial::new(&km), profile));
        self.events.push_back(Event::Connected);
        Ok(())
    }

    /// OpenSSL's retransmission timer: the time left, if it runs.
    fn timer_left(&self) -> Option<Duration> {
        let stream = self.stream.as_ref()?;
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        // SAFETY: DTLSv1_get_timeout(ssl, &timeval): reads the SSL object's
        // timer into `tv`; both pointers are valid for the call.
        let running = unsafe {
            openssl_sys::SSL_ctrl(
                stream.ssl().as_ptr(),
                DTLS_CTRL_GET_TIMEOUT,
                0,
                (&mut tv as *mut libc::timeval).cast(),
            )
        };
        (running == 1).then(|| {
            Duration::from_secs(tv.tv_sec.max(0) as u64)
                + Duration::from_micros(tv.tv_usec.max(0) as u64)
        })
    }
}

impl DtlsInstance for Session {
    fn set_active(&mut self, active: bool) {
        let Some(mut ssl) = self.pending.take() else {
            return;
        };
        self.active = active;
        if let Some(mtu) = self.mtu
            && let Err(e) = ssl.set_mtu(mtu as u32)
        {
            tracing::debug!("OpenSSL DTLS MTU {mtu}: {e}");
        }
        if active {
            ssl.set_connect_state();
        } else {
            ssl.set_accept_state();
        }
        match SslStream::new(ssl, Datagrams::default()) {
            Ok(s) => self.stream = Some(s),
            Err(e) => tracing::warn!("OpenSSL DTLS session: {e}"),
        }
        if active {
            // The ClientHello goes out at once.
            let _ = self.drive();
        }
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        stream.get_mut().incoming.push_back(packet.to_vec());
        self.drive()
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        if let Some(stream) = self.stream.as_mut()
            && let Some(d) = stream.get_mut().outgoing.front()
        {
            if d.len() > buf.len() {
                return DtlsOutput::BufferTooSmall { needed: d.len() };
            }
            let d = stream.get_mut().outgoing.pop_front().unwrap_or_default();
            buf[..d.len()].copy_from_slice(&d);
            return DtlsOutput::Packet(&buf[..d.len()]);
        }
        let needed = match self.events.front() {
            Some(Event::PeerCert(d) | Event::Data(d)) => d.len(),
            _ => 0,
        };
        if needed > buf.len() {
            return DtlsOutput::BufferTooSmall { needed };
        }
        if let Some(e) = self.events.pop_front() {
            return match e {
                Event::PeerCert(der) => {
                    buf[..der.len()].copy_from_slice(&der);
                    DtlsOutput::PeerCert(&buf[..der.len()])
                }
                Event::Data(d) => {
                    buf[..d.len()].copy_from_slice(&d);
                    DtlsOutput::ApplicationData(&buf[..d.len()])
                }
                Event::Keying(km, profile) => DtlsOutput::KeyingMaterial(km, profile),
                Event::Connected => DtlsOutput::Connected,
                Event::CloseNotify => DtlsOutput::CloseNotify,
            };
        }
        let left = if self.connected {
            None
        } else {
            self.timer_left()
        };
        DtlsOutput::Timeout(self.now + left.unwrap_or(NO_TIMER))
    }

    /// Retransmits the last flight when OpenSSL's timer (on the system
    /// clock, as str0m's `now`) has expired.
    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.now = now;
        if self.connected {
            return Ok(());
        }
        if let Some(stream) = self.stream.as_ref() {
            // SAFETY: DTLSv1_handle_timeout(ssl): if the timer expired,
            // retransmits the last flight through the BIO (else returns 0);
            // the pointer is valid for the call.
            let r = unsafe {
                openssl_sys::SSL_ctrl(
                    stream.ssl().as_ptr(),
                    DTLS_CTRL_HANDLE_TIMEOUT,
                    0,
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return Err(failed("retransmission", "too many timeouts"));
            }
        }
        Ok(())
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        if data.is_empty() || !self.connected {
            return Ok(0);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Ok(0);
        };
        match stream.ssl_write(data) {
            Ok(n) => Ok(n),
            Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => Ok(0),
            Err(e) => Err(failed("write", e)),
        }
    }

    fn is_active(&self) -> bool {
        self.active
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.connected.then_some(ProtocolVersion::DTLS1_2)
    }

    fn is_closing(&self) -> bool {
        self.closing
            && self
                .stream
                .as_ref()
                .is_some_and(|s| !s.get_ref().outgoing.is_empty())
    }

    fn is_closed(&self) -> bool {
        self.closing && !self.is_closing()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        if self.closing {
            return Ok(());
        }
        self.closing = true;
        if let Some(stream) = self.stream.as_mut()
            && self.connected
        {
            match stream.shutdown() {
                Ok(ShutdownResult::Sent | ShutdownResult::Received) => {}
                Err(e) => tracing::debug!("OpenSSL DTLS close_notify: {e}"),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
/// A self-signed RSA 2048 certificate, as GStreamer's DTLS elements make.
pub(crate) fn rsa_cert() -> DtlsCert {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::rsa::Rsa;
    use openssl::x509::X509NameBuilder;
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "gst").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    DtlsCert {
        certificate: b.build().to_der().unwrap(),
        private_key: key.private_key_to_der().unwrap(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Out {
        Packet(Vec<u8>),
        Cert(Vec<u8>),
        Keys(Vec<u8>, dimpl::SrtpProfile),
        Connected,
        Timeout(Instant),
        Other,
    }

    fn poll(s: &mut Session) -> Out {
        let mut buf = [0u8; 2048];
        match s.poll_output(&mut buf) {
            DtlsOutput::Packet(p) => Out::Packet(p.to_vec()),
            DtlsOutput::PeerCert(c) => Out::Cert(c.to_vec()),
            DtlsOutput::KeyingMaterial(k, p) => Out::Keys(k.to_vec(), p),
            DtlsOutput::Connected => Out::Connected,
            DtlsOutput::Timeout(t) => Out::Timeout(t),
            _ => Out::Other,
        }
    }

    #[derive(Default)]
    struct Seen {
        cert: Option<Vec<u8>>,
        keys: Option<(Vec<u8>, dimpl::SrtpProfile)>,
        connected: bool,
    }

    /// Move every datagram `from` has to `to`, noting what `from` reports.
    fn pump(from: &mut Session, to: &mut Session, seen: &mut Seen) {
        loop {
            match poll(from) {
                Out::Packet(p) => to.handle_packet(&p).unwrap(),
                Out::Cert(c) => seen.cert = Some(c),
                Out::Keys(k, p) => seen.keys = Some((k, p)),
                Out::Connected => seen.connected = true,
                Out::Timeout(_) | Out::Other => return,
            }
        }
    }

    #[test]
    fn rsa_client_and_ecdsa_server_agree_on_srtp_keys() {
        let server_cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
        let client_cert = rsa_cert();
        let now = Instant::now();
        let provider = OpensslDtls::new();
        let mut server =
            Session::new(&provider.context(&server_cert).unwrap(), now, Some(1150)).unwrap();
        let mut client = Session::new(&context(&client_cert).unwrap(), now, Some(1150)).unwrap();
        server.set_active(false);
        client.set_active(true);
        let (mut s, mut c) = (Seen::default(), Seen::default());
        // The ClientHello is lost: OpenSSL's timer (1 s, system clock)
        // sends it again.
        assert!(matches!(poll(&mut client), Out::Packet(_)));
        let Out::Timeout(t) = poll(&mut client) else {
            panic!("a retransmission timer");
        };
        assert!(t > now && t <= now + Duration::from_secs(2), "timer armed");
        client.handle_timeout(Instant::now()).unwrap();
        assert!(
            matches!(poll(&mut client), Out::Timeout(_)),
            "nothing before the timer expires"
        );
        std::thread::sleep(t.saturating_duration_since(Instant::now()) + Duration::from_millis(50));
        client.handle_timeout(Instant::now()).unwrap();
        for _ in 0..10 {
            pump(&mut client, &mut server, &mut c);
            pump(&mut server, &mut client, &mut s);
        }
        assert!(s.connected && c.connected, "both sides connected");
        assert_eq!(s.cert.as_deref(), Some(&client_cert.certificate[..]));
        assert_eq!(c.cert.as_deref(), Some(&server_cert.certificate[..]));
        let (sk, sp) = s.keys.expect("server keys");
        let (ck, cp) = c.keys.expect("client keys");
        assert_eq!(sp, dimpl::SrtpProfile::AEAD_AES_256_GCM);
        assert_eq!(sp, cp);
        assert_eq!(sk.len(), 88);
        assert_eq!(sk, ck, "one exporter, the same keying material");
        assert_eq!(server.protocol_version(), Some(ProtocolVersion::DTLS1_2));
        // close_notify reaches the other side.
        client.close().unwrap();
        let mut buf = [0u8; 2048];
        let DtlsOutput::Packet(p) = client.poll_output(&mut buf) else {
            panic!("close_notify sent");
        };
        server.handle_packet(p).unwrap();
        assert!(matches!(
            server.poll_output(&mut buf),
            DtlsOutput::CloseNotify
        ));
        assert!(client.is_closed());
    }

    /// Our client's OpenSSL DTLS (ECDSA certificate, DTLS client) against
    /// a server session of `server` with `server_cert`: both connect, each
    /// with the other's certificate and the same SRTP keying material.
    fn openssl_client_against(server: &dyn DtlsProvider, server_cert: &DtlsCert) {
        let now = Instant::now();
        let client_cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
        let mut server = server
            .new_dtls(server_cert, now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        let mut client = OpensslDtls::new()
            .new_dtls(&client_cert, now, DtlsVersion::Dtls12, Some(1150))
            .unwrap();
        server.set_active(false);
        client.set_active(true);
        let [c, s] = crate::dtls::pair::handshake(client.as_mut(), server.as_mut());
        assert!(c.0 && s.0, "both sides connected");
        assert_eq!(c.1.as_deref(), Some(&server_cert.certificate[..]));
        assert_eq!(s.1.as_deref(), Some(&client_cert.certificate[..]));
        assert!(c.2.is_some() && c.2 == s.2, "the same SRTP keying material");
    }

    #[test]
    fn openssl_client_reaches_a_dimpl_server() {
        // whip-ingest against a str0m (dimpl) server.
        let dimpl = crate::dtls::SharedConfigDtls::new();
        let cert = dimpl::certificate::generate_self_signed_certificate().unwrap();
        openssl_client_against(&dimpl, &cert);
    }

    #[test]
    fn openssl_client_takes_an_rsa_server_certificate() {
        // whip-ingest against a GStreamer-based server that is the DTLS
        // server (answer a=setup:passive) with its default RSA certificate.
        openssl_client_against(&OpensslDtls::new(), &rsa_cert());
    }

    #[test]
    fn contexts_are_kept_per_certificate_and_bounded() {
        let p = OpensslDtls::new();
        let first = dimpl::certificate::generate_self_signed_certificate().unwrap();
        p.context(&first).unwrap();
        p.context(&first).unwrap();
        assert_eq!(p.contexts.lock().unwrap().len(), 1, "one per certificate");
        for _ in 0..10 {
            p.context(&dimpl::certificate::generate_self_signed_certificate().unwrap())
                .unwrap();
        }
        let contexts = p.contexts.lock().unwrap();
        assert_eq!(contexts.len(), MAX_CONTEXTS);
        assert!(
            contexts.iter().all(|(der, _)| *der != first.certificate),
            "the oldest went first"
        );
    }
}
