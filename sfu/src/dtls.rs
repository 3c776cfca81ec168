//! DTLS for every session (RFC 5764 DTLS-SRTP), by [`Backend`]:
//! - str0m's own backend (dimpl with aws-lc-rs), except that the dimpl
//!   `Config` is built once per MTU and shared, instead of once per session:
//!   our own client, and every server session whose peer is not OpenSSL;
//! - OpenSSL ([`ossl`]) for server sessions whose peer's ClientHello comes
//!   from OpenSSL ([`auto`], [`hello`]): GStreamer's webrtcbin signs with an
//!   RSA certificate by default, which dimpl refuses. OpenSSL costs ≈ 54 KiB
//!   more per session than dimpl (measured: 300 sessions), so browsers and
//!   other ECDSA peers, the bulk of a fan-out, keep dimpl.
//!
//! Building a dimpl `Config` validates its crypto provider, which signs and
//! verifies test messages (one of them ECDSA P-384). str0m-aws-lc-rs 0.7
//! builds one in every `new_dtls`, i.e. for every `Rtc`: in a `perf`
//! profile of 300 viewers joining at once that self-test was ≈ 24 % of the
//! server's core. A `Config` holds no per-connection state (dimpl takes it
//! as `Arc<Config>`), so one serves every session.

pub mod auto;
pub mod hello;
pub mod ossl;

use std::sync::{Arc, Mutex};
use std::time::Instant;
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// The DTLS stack of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// dimpl (ECDSA peer certificates only), shared config: [`SharedConfigDtls`].
    Dimpl,
    /// dimpl, or OpenSSL (RSA or ECDSA peer certificates) when the peer's
    /// ClientHello comes from OpenSSL: [`auto::AutoDtls`]. For server
    /// sessions; as the DTLS client it is dimpl.
    Auto,
    /// OpenSSL for every session ([`ossl::OpensslDtls`]), in either DTLS
    /// role: RSA or ECDSA peer certificates. For a client that must reach
    /// any server (whose certificate it cannot know before its
    /// ClientHello); ≈ 54 KiB more per session than dimpl.
    Openssl,
}

impl std::str::FromStr for Backend {
    type Err = String;

    /// `dimpl`, `auto` or `openssl` (command-line values).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dimpl" => Ok(Backend::Dimpl),
            "auto" => Ok(Backend::Auto),
            "openssl" => Ok(Backend::Openssl),
            _ => Err(format!("unknown DTLS stack {s:?}: dimpl, auto or openssl")),
        }
    }
}

/// str0m's default crypto provider (SRTP, STUN HMAC, hashes: aws-lc-rs) with
/// the DTLS provider of `backend`; built once per backend, shared by every
/// `RtcConfig` of this process.
pub fn crypto_provider(backend: Backend) -> Arc<CryptoProvider> {
    static DIMPL_PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    static DIMPL: SharedConfigDtls = SharedConfigDtls::new();
    static AUTO_PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    static OSSL_PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    static OSSL: ossl::OpensslDtls = ossl::OpensslDtls::new();
    static AUTO: auto::AutoDtls = auto::AutoDtls {
        dimpl: &DIMPL,
        openssl: &OSSL,
    };
    let (cell, dtls): (_, &'static dyn DtlsProvider) = match backend {
        Backend::Dimpl => (&DIMPL_PROVIDER, &DIMPL),
        Backend::Auto => (&AUTO_PROVIDER, &AUTO),
        Backend::Openssl => (&OSSL_PROVIDER, &OSSL),
    };
    cell.get_or_init(|| {
        let mut p = str0m::crypto::from_feature_flags();
        p.dtls_provider = dtls;
        Arc::new(p)
    })
    .clone()
}

/// A [`DtlsProvider`] that builds dimpl's `Config` once per MTU.
#[derive(Debug, Default)]
pub struct SharedConfigDtls {
    /// `(mtu, config)`; str0m passes the same MTU for every session, so
    /// this holds one entry in practice.
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
}

impl SharedConfigDtls {
    /// No config yet; the first session of each MTU builds one.
    pub const fn new() -> Self {
        Self {
            configs: Mutex::new(Vec::new()),
        }
    }

    /// The shared config for `mtu` (bytes; `None`: dimpl's default), built
    /// on first use as str0m-aws-lc-rs builds it (no server cookie: ICE has
    /// already verified return routability). Errors if dimpl rejects it.
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut configs = self.configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = configs.iter().find(|(m, _)| *m == mtu) {
            return Ok(c.clone());
        }
        let mut b = dimpl::Config::builder().use_server_cookie(false);
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        let c = Arc::new(
            b.build()
                .map_err(|e| CryptoError::Other(format!("dimpl config creation failed: {e}")))?,
        );
        configs.push((mtu, c.clone()));
        Ok(c)
    }
}

impl DtlsProvider for SharedConfigDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        dimpl::certificate::generate_self_signed_certificate().ok()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            v => {
                return Err(CryptoError::Other(format!("unsupported DTLS version: {v}")));
            }
        };
        Ok(Box::new(Session { dtls, idle: None }))
    }
}

/// One session's dimpl state machine.
///
/// `idle`: the deadline of dimpl's last `Timeout` output, kept until the
/// next input. str0m polls DTLS on every `Rtc::poll_output`, i.e. once per
/// forwarded packet, long after the handshake; without input dimpl's output
/// cannot change, so the repeat is answered here (≈ 1.5 % of the
/// instructions per forwarded packet in `benches/callgrind.sh`).
struct Session {
    dtls: dimpl::Dtls,
    idle: Option<Instant>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("dtls::Session").finish()
    }
}

impl DtlsInstance for Session {
    fn set_active(&mut self, active: bool) {
        self.idle = None;
        self.dtls.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.idle = None;
        self.dtls.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        if let Some(t) = self.idle {
            return DtlsOutput::Timeout(t);
        }
        let out = self.dtls.poll_output(buf);
        if let DtlsOutput::Timeout(t) = out {
            self.idle = Some(t);
        }
        out
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.idle = None;
        self.dtls.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.idle = None;
        self.dtls.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.dtls.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.dtls.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.dtls.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.dtls.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.idle = None;
        self.dtls.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_config_per_mtu() {
        let d = SharedConfigDtls::new();
        let a = d.config(Some(1150)).unwrap();
        let b = d.config(Some(1150)).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = d.config(Some(1400)).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(d.configs.lock().unwrap().len(), 2);
    }

    #[test]
    fn an_idle_session_repeats_its_deadline_and_wakes_on_input() {
        let d = SharedConfigDtls::new();
        let cert = d.generate_certificate().unwrap();
        let now = Instant::now();
        let mut client = d.new_dtls(&cert, now, DtlsVersion::Dtls12, None).unwrap();
        let mut server = d.new_dtls(&cert, now, DtlsVersion::Dtls12, None).unwrap();
        client.set_active(true);
        server.set_active(false);
        let [c, s] = pair::handshake(client.as_mut(), server.as_mut());
        assert!(c.0 && s.0, "both sides connected");
        // Every deadline, polled again as str0m does per packet, repeated.
        assert!(c.3 && s.3, "repeated polls gave the same deadline");
        // Idle and polled again and again; then data to send is still sent
        // at once, and arrives.
        let mut r = pair::Reported::default();
        pair::drain(client.as_mut(), server.as_mut(), &mut r);
        client.send_application_data(b"after idle").unwrap();
        pair::drain(client.as_mut(), server.as_mut(), &mut r);
        pair::drain(server.as_mut(), client.as_mut(), &mut r);
        assert_eq!(r.4, [b"after idle".to_vec()]);
    }
}

/// Test helpers: two DTLS sessions of any stack connected in memory.
#[cfg(test)]
pub(crate) mod pair {
    use std::time::Instant;
    use str0m::crypto::dtls::{DtlsInstance, DtlsOutput};

    /// What one side of [`handshake`] reported: connected, the peer's
    /// certificate, the SRTP keying material, whether every `Timeout` was
    /// the same when polled again, the application data received.
    pub type Reported = (bool, Option<Vec<u8>>, Option<Vec<u8>>, bool, Vec<Vec<u8>>);

    /// Moves every datagram `from` has to `to`, noting what `from` reports,
    /// until its `Timeout`, which is polled once more.
    pub fn drain(from: &mut dyn DtlsInstance, to: &mut dyn DtlsInstance, seen: &mut Reported) {
        let mut buf = [0u8; 4096];
        loop {
            match from.poll_output(&mut buf) {
                DtlsOutput::Packet(p) => {
                    let p = p.to_vec();
                    to.handle_packet(&p).unwrap();
                }
                DtlsOutput::PeerCert(c) => seen.1 = Some(c.to_vec()),
                DtlsOutput::KeyingMaterial(k, _) => seen.2 = Some(k.to_vec()),
                DtlsOutput::Connected => seen.0 = true,
                DtlsOutput::ApplicationData(d) => seen.4.push(d.to_vec()),
                DtlsOutput::Timeout(t) => {
                    let again = from.poll_output(&mut buf);
                    seen.3 &= matches!(again, DtlsOutput::Timeout(u) if u == t);
                    return;
                }
                _ => return,
            }
        }
    }

    /// A handshake between two sessions of any stack, lossless; time
    /// input first on every round, as str0m gives it (dimpl draws its
    /// random there).
    pub fn handshake(a: &mut dyn DtlsInstance, b: &mut dyn DtlsInstance) -> [Reported; 2] {
        let fresh = || (false, None, None, true, Vec::new());
        let (mut ra, mut rb) = (fresh(), fresh());
        for _ in 0..20 {
            a.handle_timeout(Instant::now()).unwrap();
            b.handle_timeout(Instant::now()).unwrap();
            drain(a, b, &mut ra);
            drain(b, a, &mut rb);
        }
        [ra, rb]
    }
}
