//! Fuzz targets for the parsers the SFU owns. Each takes arbitrary bytes and
//! must return without panicking whatever they are; the stable runner
//! (`cargo run --release -p fuzz -- --seconds 60`) feeds them random and
//! mutated inputs seeded from real offers.

pub mod mutate;

/// A target: a name and a function over arbitrary input bytes.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order the runner cycles through them.
pub const TARGETS: &[Target] = &[
    ("sdp_scan", sdp_scan),
    ("sdpfrag", sdpfrag),
    ("sdpfrag_rewrite", sdpfrag_rewrite),
    ("config_toml", config_toml),
    ("layer_json", layer_json),
    ("sse_events", sse_events),
    ("dtls_clienthello", dtls_clienthello),
];

fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// `sfu::sdp_scan::scan` on an offer (the POST body of WHIP/WHEP).
pub fn sdp_scan(data: &[u8]) {
    if let Ok(offer) = sfu::sdp_scan::scan(&text(data)) {
        for m in &offer.media {
            let _ = m.active();
            for f in &m.formats {
                let _ = f.fmtp_param("profile-level-id");
                let _ = f.rtx_apt();
            }
        }
    }
}

/// `sfu::http::sdpfrag::parse` on a PATCH body (RFC 8840 trickle-ice-sdpfrag).
pub fn sdpfrag(data: &[u8]) {
    let _ = sfu::http::sdpfrag::parse(&text(data));
}

/// The SDP rewriting helpers used for ICE restart: `ice_fragment` on an
/// offer, `with_new_ice` with credentials and candidates parsed from a
/// fragment in the same input (split at the first NUL byte).
pub fn sdpfrag_rewrite(data: &[u8]) {
    let (sdp, frag) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &data[..0]),
    };
    let sdp = text(sdp);
    let _ = sfu::http::sdpfrag::ice_fragment(&sdp);
    if let Ok(f) = sfu::http::sdpfrag::parse(&text(frag)) {
        let u = f.ufrag.as_deref().unwrap_or("u");
        let p = f.pwd.as_deref().unwrap_or("p");
        let _ = sfu::http::sdpfrag::with_new_ice(&sdp, u, p, &f.candidates);
    }
}

/// The configuration file (TOML) as `sfu::config::FileConfig`.
pub fn config_toml(data: &[u8]) {
    let _ = toml::from_str::<sfu::config::FileConfig>(&text(data));
}

/// A WHEP layer-extension POST body (`{"mediaId":..,"rid":..}`).
pub fn layer_json(data: &[u8]) {
    if let Ok(Some(rid)) = sfu::http::layer_ext::parse_request(&text(data)) {
        let _ = sfu::http::layer_ext::valid_rid(&rid);
    }
}

/// A WHEP server-sent-events POST body (a JSON array of event names).
pub fn sse_events(data: &[u8]) {
    let _ = sfu::http::sse_ext::parse_events(&text(data));
}

/// The first DTLS datagrams of a server session (`sfu::dtls::hello`,
/// which picks the DTLS stack): the input is a sequence of datagrams, each
/// a 2-byte big-endian length and that many bytes, all given to one
/// `Assembler`.
pub fn dtls_clienthello(data: &[u8]) {
    let mut a = sfu::dtls::hello::Assembler::default();
    for d in datagrams(data) {
        if let Some(Some(h)) = a.push(d) {
            let _ = h.from_openssl();
        }
    }
}

/// Split length-prefixed datagrams (see [`dtls_clienthello`]).
fn datagrams(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([data[0], data[1]])).min(data.len() - 2);
        out.push(&data[2..2 + n]);
        data = &data[2 + n..];
    }
    out
}

/// The first flights (ClientHellos) of a dimpl and an OpenSSL DTLS client,
/// length-prefixed; OpenSSL's also cut into two handshake fragments in two
/// datagrams (RFC 6347 §4.2.3), as GStreamer sends its longer one.
fn clienthello_seeds() -> Vec<Vec<u8>> {
    use str0m::crypto::dtls::{DtlsOutput, DtlsProvider, DtlsVersion};
    let dimpl = sfu::dtls::crypto_provider(sfu::dtls::Backend::Dimpl);
    let Some(cert) = dimpl.dtls_provider.generate_certificate() else {
        return Vec::new();
    };
    let openssl = sfu::dtls::ossl::OpensslDtls::new();
    let now = std::time::Instant::now();
    let mut out = Vec::new();
    let clients: [&dyn DtlsProvider; 2] = [dimpl.dtls_provider, &openssl];
    for p in clients {
        let Ok(mut s) = p.new_dtls(&cert, now, DtlsVersion::Dtls12, Some(1150)) else {
            continue;
        };
        s.set_active(true);
        let _ = s.handle_timeout(now);
        let mut buf = vec![0u8; 2048];
        let mut flight = Vec::new();
        let mut first = None;
        while let DtlsOutput::Packet(d) = s.poll_output(&mut buf) {
            first.get_or_insert_with(|| d.to_vec());
            flight.extend_from_slice(&(d.len() as u16).to_be_bytes());
            flight.extend_from_slice(d);
        }
        out.push(flight);
        if let Some(split) = first.as_deref().and_then(fragmented) {
            out.push(split);
        }
    }
    out
}

/// A datagram holding one whole handshake message in one record, re-sent
/// as two records of two fragments, in two length-prefixed datagrams.
fn fragmented(d: &[u8]) -> Option<Vec<u8>> {
    let hs = d.get(13..)?;
    let body = hs.get(12..)?;
    let cut = body.len() / 2;
    let mut out = Vec::new();
    for (off, frag) in [(0, &body[..cut]), (cut, &body[cut..])] {
        let mut rec = d[..11].to_vec(); // type, version, epoch, sequence
        let u24 = |n: usize| [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        let mut h = hs[..6].to_vec(); // type, length, message_seq
        h.extend(u24(off));
        h.extend(u24(frag.len()));
        h.extend_from_slice(frag);
        rec.extend((h.len() as u16).to_be_bytes());
        rec.extend(h);
        out.extend((rec.len() as u16).to_be_bytes());
        out.extend(rec);
    }
    Some(out)
}

/// Seed inputs per target: real offers, fragments and configs.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    if target == "dtls_clienthello" {
        return clienthello_seeds();
    }
    let s: &[&str] = match target {
        "sdp_scan" | "sdpfrag_rewrite" => &[
            include_str!("../corpus/chrome_publish.sdp"),
            include_str!("../corpus/ffmpeg_whip.sdp"),
            include_str!("../corpus/viewer_recvonly.sdp"),
        ],
        "sdpfrag" => &[
            include_str!("../corpus/trickle.sdpfrag"),
            include_str!("../corpus/restart.sdpfrag"),
        ],
        "config_toml" => &[include_str!("../corpus/config.toml")],
        "layer_json" => &[
            r#"{"mediaId":"0","rid":"m","encodingId":"m"}"#,
            r#"{"mediaId":"0"}"#,
        ],
        "sse_events" => &[
            r#"["active","inactive","layers","viewercount","reconnect"]"#,
            "",
        ],
        _ => &[],
    };
    s.iter().map(|x| x.as_bytes().to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clienthello_seeds_are_real_clienthellos() {
        let seeds = clienthello_seeds();
        let hellos: Vec<(usize, bool)> = seeds
            .iter()
            .map(|s| {
                let mut a = sfu::dtls::hello::Assembler::default();
                let ds = datagrams(s);
                let hello = ds.iter().find_map(|d| a.push(d)).flatten();
                (
                    ds.len(),
                    hello.expect("a complete ClientHello").from_openssl(),
                )
            })
            .collect();
        assert_eq!(
            hellos,
            [(1, false), (2, false), (1, true), (2, true)],
            "dimpl is not OpenSSL, OpenSSL offers encrypt_then_mac, whole and in fragments"
        );
    }
}
