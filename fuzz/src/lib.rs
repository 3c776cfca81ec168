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

/// Seed inputs per target: real offers, fragments and configs.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
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
