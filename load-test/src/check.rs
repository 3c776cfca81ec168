//! `load-test check`: a WHIP (RFC 9725) / WHEP (draft-ietf-wish-whep)
//! conformance suite that runs against any server.
//!
//! Each check is a small function that sends one request (raw HTTP through
//! [`sfu::client::http::request`], or a full str0m session through
//! [`sfu::client::Session`]) and records one row: id, requirement, source,
//! level (MUST/SHOULD/MAY) and result (`pass`, `FAIL`, `warn`, `skip`).
//! A requirement that is not met is `FAIL` at level MUST and `warn` at
//! SHOULD/MAY, so the exit code (1 when any MUST failed) only reflects
//! MUST-level violations. Ids follow /work/shared/notes/wish-checklist.md
//! (A = POST, B = other methods and CORS, C = PATCH, D = DELETE, E = auth,
//! M = media), suffixed with the endpoint (`whip` / `whep`).
//!
//! The stream named by the URLs must be free: the suite publishes to it.

use crate::clip;
use clap::Args;
use serde::Serialize;
use sfu::client::http::{HttpResponse, Url, request};
use sfu::client::{ClientEvent, Options, Session};
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use str0m::media::{Direction, MediaKind};
use str0m::{Candidate, RtcConfig};

/// `load-test check` arguments.
#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// WHIP endpoint URL of one free stream (e.g. http://host:8080/whip/check).
    #[arg(long)]
    pub whip: String,
    /// WHEP endpoint URL of the same stream.
    #[arg(long)]
    pub whep: String,
    /// Bearer token (WHIP and WHEP); enables the authentication checks.
    #[arg(long)]
    pub token: Option<String>,
    /// WHEP token when it differs from --token.
    #[arg(long)]
    pub view_token: Option<String>,
    /// Accept any TLS certificate of an https:// server (self-signed).
    #[arg(long)]
    pub insecure: bool,
    /// DTLS stack of the check's sessions: `openssl` (RSA or ECDSA server
    /// certificates) or `dimpl` (ECDSA only).
    #[arg(long, default_value = "openssl", value_parser = crate::parse_dtls)]
    pub dtls: sfu::dtls::Backend,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Local address of the UDP sockets (offered as host candidate).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_ip: IpAddr,
    /// How long the WHEP viewer counts packets, seconds.
    #[arg(long, default_value_t = 3.0)]
    pub media_seconds: f64,
}

/// Strength of a requirement (RFC 2119 keyword).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Must,
    Should,
    May,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
            Level::May => "MAY",
        }
    }
}

/// Result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    Warn,
    Skip,
}

impl Outcome {
    /// A met requirement passes; an unmet one fails at MUST, warns below.
    fn of(level: Level, ok: bool) -> Outcome {
        if ok {
            Outcome::Pass
        } else if level == Level::Must {
            Outcome::Fail
        } else {
            Outcome::Warn
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Warn => "warn",
            Outcome::Skip => "skip",
        }
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub id: String,
    pub requirement: String,
    pub source: String,
    pub level: &'static str,
    pub result: &'static str,
    pub detail: String,
}

/// The JSON report.
#[derive(Debug, Serialize)]
pub struct Report {
    pub server: Server,
    pub checks: Vec<Row>,
    pub passed: usize,
    pub failed: usize,
    pub warned: usize,
    pub skipped: usize,
}

/// The endpoints checked.
#[derive(Debug, Serialize)]
pub struct Server {
    pub whip: String,
    pub whep: String,
}

/// WHIP or WHEP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Whip,
    Whep,
}

impl Role {
    fn tag(self) -> &'static str {
        match self {
            Role::Whip => "whip",
            Role::Whep => "whep",
        }
    }
    /// Spec section prefix for sources.
    fn spec(self) -> &'static str {
        match self {
            Role::Whip => "RFC 9725",
            Role::Whep => "WHEP",
        }
    }
    /// Direction of the client's offer.
    fn offer_dir(self) -> Direction {
        match self {
            Role::Whip => Direction::SendOnly,
            Role::Whep => Direction::RecvOnly,
        }
    }
    /// Direction every accepted answer m-line must carry.
    fn answer_dir(self) -> &'static str {
        match self {
            Role::Whip => "recvonly",
            Role::Whep => "sendonly",
        }
    }
}

/// Which credentials a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    /// The configured token (if any).
    Valid,
    /// No `Authorization` header.
    Missing,
    /// A token the server cannot know.
    Wrong,
}

/// What one row checks: id, requirement text, source (spec section) and
/// level; the row's result and detail come from the check.
#[derive(Debug, Clone)]
struct Req<'a> {
    id: String,
    requirement: &'a str,
    source: &'a str,
    level: Level,
}

impl<'a> Req<'a> {
    fn new(id: String, requirement: &'a str, source: &'a str, level: Level) -> Req<'a> {
        Req {
            id,
            requirement,
            source,
            level,
        }
    }
}

/// Any 4xx meets the requirement; a 4xx other than `preferred` is noted as
/// `(4xx accepted)` in the detail.
fn any_4xx(status: u16, preferred: u16, detail: String) -> (bool, String) {
    let ok = (400..500).contains(&status);
    if ok && status != preferred {
        (ok, detail + " (4xx accepted)")
    } else {
        (ok, detail)
    }
}

/// 415 passes, another 4xx warns (`(4xx, not 415)`), anything else fails.
fn want_415(status: u16, detail: String) -> (Outcome, String) {
    match status {
        415 => (Outcome::Pass, detail),
        400..=499 => (Outcome::Warn, detail + " (4xx, not 415)"),
        _ => (Outcome::Fail, detail),
    }
}

/// A session created by a raw POST.
struct RawSession {
    url: Url,
    etag: Option<String>,
    offer: String,
    answer: String,
}

/// Shared state of a run.
struct Ctx {
    args: CheckArgs,
    whip: Url,
    whep: Url,
    rows: Vec<Row>,
}

impl Ctx {
    fn url(&self, role: Role) -> &Url {
        match role {
            Role::Whip => &self.whip,
            Role::Whep => &self.whep,
        }
    }

    fn token(&self, role: Role) -> Option<&str> {
        match role {
            Role::Whip => self.args.token.as_deref(),
            Role::Whep => self
                .args
                .view_token
                .as_deref()
                .or(self.args.token.as_deref()),
        }
    }

    fn record(
        &mut self,
        id: String,
        req: &str,
        src: &str,
        level: Level,
        o: Outcome,
        detail: String,
    ) {
        self.rows.push(Row {
            id,
            requirement: req.to_string(),
            source: src.to_string(),
            level: level.as_str(),
            result: o.as_str(),
            detail,
        });
    }

    /// Record `ok` as pass, else FAIL (MUST) or warn (SHOULD/MAY).
    fn check(&mut self, id: String, req: &str, src: &str, level: Level, ok: bool, detail: String) {
        self.record(id, req, src, level, Outcome::of(level, ok), detail);
    }

    fn skip(&mut self, id: String, req: &str, src: &str, level: Level, why: &str) {
        self.record(id, req, src, level, Outcome::Skip, why.to_string());
    }

    /// [`Ctx::record`] for `q`.
    fn record_q(&mut self, q: Req, o: Outcome, detail: String) {
        self.record(q.id, q.requirement, q.source, q.level, o, detail);
    }

    /// [`Ctx::check`] for `q`.
    fn check_q(&mut self, q: Req, ok: bool, detail: String) {
        self.check(q.id, q.requirement, q.source, q.level, ok, detail);
    }

    /// A request that got no answer: the requirement is not met.
    fn failed(&mut self, q: Req, e: &anyhow::Error) {
        self.check_q(q, false, format!("request failed: {e:#}"));
    }

    /// Record `q` from a request's result: `judge` gives (met, detail) for
    /// a response; an error is [`Ctx::failed`].
    fn judge<T>(
        &mut self,
        q: Req,
        res: &anyhow::Result<T>,
        judge: impl FnOnce(&T) -> (bool, String),
    ) {
        let level = q.level;
        self.judge_outcome(q, res, |r| {
            let (ok, d) = judge(r);
            (Outcome::of(level, ok), d)
        });
    }

    /// Like [`Ctx::judge`] with the outcome chosen by `judge`.
    fn judge_outcome<T>(
        &mut self,
        q: Req,
        res: &anyhow::Result<T>,
        judge: impl FnOnce(&T) -> (Outcome, String),
    ) {
        match res {
            Ok(r) => {
                let (o, d) = judge(r);
                self.record_q(q, o, d);
            }
            Err(e) => self.failed(q, e),
        }
    }

    /// One raw request with the role's credentials.
    async fn send(
        &self,
        role: Role,
        method: &str,
        url: &Url,
        auth: Auth,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> anyhow::Result<HttpResponse> {
        let bearer = match auth {
            Auth::Valid => self.token(role).map(|t| format!("Bearer {t}")),
            Auth::Missing => None,
            Auth::Wrong => Some("Bearer wrong-token-from-load-test-check".to_string()),
        };
        let mut h: Vec<(&str, &str)> = headers.to_vec();
        if let Some(b) = &bearer {
            h.push(("authorization", b.as_str()));
        }
        let r = tokio::time::timeout(Duration::from_secs(10), request(method, url, &h, body)).await;
        match r {
            Ok(r) => r,
            Err(_) => anyhow::bail!("{method} {}: no response within 10 s", url.path),
        }
    }

    /// POST `body` as `content_type` to `url`.
    async fn post(
        &self,
        role: Role,
        url: &Url,
        auth: Auth,
        content_type: &str,
        body: String,
    ) -> anyhow::Result<HttpResponse> {
        let h = [("content-type", content_type)];
        self.send(role, "POST", url, auth, &h, Some(body)).await
    }

    fn opts(&self, role: Role) -> Options {
        Options {
            bind_ip: self.args.bind_ip,
            token: self.token(role).map(str::to_string),
            insecure: self.args.insecure,
            dtls: self.args.dtls,
            ..Options::default()
        }
    }
}

/// Run the suite, print the table, write the JSON; returns the report.
pub async fn run(args: CheckArgs) -> anyhow::Result<Report> {
    sfu::server::install_crypto();
    let mut whip = Url::parse(&args.whip)?;
    whip.insecure = args.insecure;
    let mut whep = Url::parse(&args.whep)?;
    whep.insecure = args.insecure;
    let mut cx = Ctx {
        args,
        whip,
        whep,
        rows: Vec::new(),
    };

    for role in [Role::Whip, Role::Whep] {
        options_checks(&mut cx, role).await;
    }
    auth_checks(&mut cx, Role::Whip).await;
    bad_content_type(&mut cx, Role::Whip).await;
    garbage_body(&mut cx, Role::Whip).await;
    if let Some(s) = raw_post(&mut cx, Role::Whip).await {
        session_checks(&mut cx, Role::Whip, s).await;
    } else {
        skip_session_checks(&mut cx, Role::Whip, "no session (POST failed)");
    }

    // A live publication: WHEP servers may refuse viewers without one.
    let publisher = start_publisher(&mut cx).await;
    auth_checks(&mut cx, Role::Whep).await;
    bad_content_type(&mut cx, Role::Whep).await;
    garbage_body(&mut cx, Role::Whep).await;
    if let Some(s) = raw_post(&mut cx, Role::Whep).await {
        session_checks(&mut cx, Role::Whep, s).await;
    } else {
        skip_session_checks(&mut cx, Role::Whep, "no session (POST failed)");
    }
    match &publisher {
        Some(p) => view_media(&mut cx, p).await,
        None => {
            cx.skip(
                "M2.whep".into(),
                "viewer connects (ICE+DTLS)",
                "WHEP; RFC 8827",
                Level::Must,
                "no publisher",
            );
            cx.skip(
                "M3.whep".into(),
                "viewer receives H.264 keyframe + Opus",
                "WHEP",
                Level::Must,
                "no publisher",
            );
        }
    }
    if publisher.is_some() {
        second_publisher(&mut cx).await;
    }
    if let Some(p) = publisher {
        stop_publisher(&mut cx, p).await;
    }

    let count = |r: &str| cx.rows.iter().filter(|x| x.result == r).count();
    let report = Report {
        server: Server {
            whip: cx.args.whip.clone(),
            whep: cx.args.whep.clone(),
        },
        passed: count("pass"),
        failed: count("FAIL"),
        warned: count("warn"),
        skipped: count("skip"),
        checks: cx.rows,
    };
    print!("{}", table(&report));
    if let Some(p) = &cx.args.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", p.display()))?;
    }
    Ok(report)
}

/// The report as a text table.
pub fn table(r: &Report) -> String {
    let mut w = [2usize, 11, 6, 5, 6];
    for row in &r.checks {
        w[0] = w[0].max(row.id.len());
        w[1] = w[1].max(row.requirement.chars().count());
        w[2] = w[2].max(row.source.chars().count());
        w[3] = w[3].max(row.level.len());
    }
    let mut s = format!(
        "{:<a$}  {:<b$}  {:<c$}  {:<d$}  {:<e$}  detail\n",
        "id",
        "requirement",
        "source",
        "level",
        "result",
        a = w[0],
        b = w[1],
        c = w[2],
        d = w[3],
        e = w[4]
    );
    for row in &r.checks {
        let mut detail: String = row.detail.chars().take(110).collect();
        if row.detail.chars().count() > 110 {
            detail.push('…');
        }
        s += &format!(
            "{:<a$}  {:<b$}  {:<c$}  {:<d$}  {:<e$}  {}\n",
            row.id,
            row.requirement,
            row.source,
            row.level,
            row.result,
            detail,
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3],
            e = w[4]
        );
    }
    s += &format!(
        "{} checks: {} passed, {} FAILED, {} warned, {} skipped\n",
        r.checks.len(),
        r.passed,
        r.failed,
        r.warned,
        r.skipped
    );
    s
}

// ---------------------------------------------------------------- helpers

/// A random lower-case hex string of `n` characters (not for secrets).
fn random_hex(n: usize) -> String {
    let mut s = String::new();
    while s.len() < n {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos() ^ std::process::id() as u128);
        s += &format!("{:016x}", h.finish());
    }
    s.truncate(n);
    s
}

/// A valid WebRTC offer built with str0m's `SdpApi`: audio (Opus) then video
/// (H.264 42e01f), `a=setup:actpass`, one UDP host candidate on `bind_ip`,
/// BUNDLE, rtcp-mux; `dir` = `sendonly` (WHIP) or `recvonly` (WHEP).
pub fn make_offer(bind_ip: IpAddr, dir: Direction) -> anyhow::Result<String> {
    sfu::server::install_crypto();
    let sock = std::net::UdpSocket::bind((bind_ip, 0))?;
    let local = sock.local_addr()?;
    let mut cfg = RtcConfig::new().set_rtp_mode(true).clear_codecs();
    cfg.codec_config()
        .add_h264(96.into(), Some(97.into()), true, 0x42e01f);
    cfg = cfg.enable_opus(true, false);
    let mut rtc = cfg.build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp")?);
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, dir, Some("check".into()), None, None);
    api.add_media(MediaKind::Video, dir, Some("check".into()), None, None);
    let (offer, _pending) = api
        .apply()
        .ok_or_else(|| anyhow::anyhow!("str0m built no offer"))?;
    Ok(offer.to_sdp_string())
}

/// SDP split into the session part and the media sections (lines, no CR).
struct Sdp<'a> {
    session: Vec<&'a str>,
    media: Vec<Vec<&'a str>>,
}

impl<'a> Sdp<'a> {
    fn parse(s: &'a str) -> Sdp<'a> {
        let mut sdp = Sdp {
            session: Vec::new(),
            media: Vec::new(),
        };
        for l in s.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
            if l.starts_with("m=") {
                sdp.media.push(vec![l]);
            } else if let Some(m) = sdp.media.last_mut() {
                m.push(l);
            } else {
                sdp.session.push(l);
            }
        }
        sdp
    }

    /// `a=name:value` values (or `a=name` flags as "") in `lines`.
    fn attrs<'b>(lines: &'b [&'a str], name: &'b str) -> impl Iterator<Item = &'a str> + 'b {
        lines.iter().filter_map(move |l| {
            let a = l.strip_prefix("a=")?;
            match a.split_once(':') {
                Some((k, v)) if k == name => Some(v.trim()),
                None if a == name => Some(""),
                _ => None,
            }
        })
    }

    /// First value of `name` in media section `i`, else at session level.
    fn attr(&self, i: usize, name: &str) -> Option<&'a str> {
        Self::attrs(&self.media[i], name)
            .next()
            .or_else(|| Self::attrs(&self.session, name).next())
    }

    /// Media kinds in order (`audio`, `video`, …).
    fn kinds(&self) -> Vec<&'a str> {
        self.media
            .iter()
            .map(|m| m[0][2..].split(' ').next().unwrap_or(""))
            .collect()
    }

    /// Port of media section `i` (0 = rejected).
    fn port(&self, i: usize) -> Option<u32> {
        self.media[i][0].split(' ').nth(1)?.parse().ok()
    }

    /// Direction attribute of media section `i` (default `sendrecv`).
    fn direction(&self, i: usize) -> &'a str {
        for d in ["sendonly", "recvonly", "sendrecv", "inactive"] {
            if self.attr(i, d).is_some() {
                return d;
            }
        }
        "sendrecv"
    }
}

/// `Link` values with `rel="ice-server"`: their URLs.
fn ice_server_links(r: &HttpResponse) -> Vec<String> {
    let mut out = Vec::new();
    for (_, v) in r.headers.iter().filter(|(k, _)| k == "link") {
        // One field may carry several comma-separated links.
        for link in v.split(", <").map(|l| l.trim_start_matches('<')) {
            let Some((url, params)) = link.split_once('>') else {
                continue;
            };
            let rel = params.split(';').any(|p| {
                let p = p.replace([' ', '"'], "");
                p.eq_ignore_ascii_case("rel=ice-server")
            });
            if rel {
                out.push(url.to_string());
            }
        }
    }
    out
}

/// Media type of a response, lower case, without parameters.
fn media_type(r: &HttpResponse) -> String {
    r.header("content-type")
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A one-line summary of a response: status and a short body.
fn brief(r: &HttpResponse) -> String {
    let body: String = r.body.trim().chars().take(60).collect();
    let body = body.replace(['\r', '\n'], " ");
    if body.is_empty() {
        format!("{}", r.status)
    } else {
        format!("{} \"{body}\"", r.status)
    }
}

/// An H.264 RTP payload that carries (the start of) an IDR slice.
fn is_h264_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        5 => true,
        // FU-A: start bit and IDR inside.
        28 => p.get(1).is_some_and(|b| b & 0x80 != 0 && b & 0x1f == 5),
        24 => crate::viewer::stap_a_has_idr(p),
        _ => false,
    }
}

// ----------------------------------------------------------------- checks

/// B3/B4/B5: `OPTIONS` on the endpoint (RFC 9725 §4.2: CORS per Fetch;
/// `Accept-Post: application/sdp` SHOULD; §4.6: no ice-server Links on a
/// preflight).
async fn options_checks(cx: &mut Ctx, role: Role) {
    let t = role.tag();
    let s = role.spec();
    let url = cx.url(role).clone();
    let pre = [
        ("origin", "https://check.example"),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "authorization, content-type",
        ),
    ];
    let res = cx
        .send(role, "OPTIONS", &url, Auth::Missing, &pre, None)
        .await;
    let src = format!("{s} §4.2");
    let q = Req::new(
        format!("B3.{t}"),
        "OPTIONS (CORS preflight) → 2xx",
        &src,
        Level::Must,
    );
    cx.judge(q, &res, |r| {
        let ok = (200..300).contains(&r.status);
        (ok, format!("preflight OPTIONS → {}", brief(r)))
    });
    let Ok(r) = res else { return };
    let ap = r.header("accept-post").unwrap_or("");
    cx.check(
        format!("B3.{t}.accept-post"),
        "Accept-Post: application/sdp",
        &format!("{s} §4.2"),
        Level::Should,
        ap.to_ascii_lowercase().contains("application/sdp"),
        format!("Accept-Post: {}", if ap.is_empty() { "(none)" } else { ap }),
    );
    let acao = r.header("access-control-allow-origin");
    cx.check(
        format!("B5.{t}.cors"),
        "preflight has Access-Control-Allow-Origin",
        "Fetch CORS; clients.md",
        Level::Should,
        acao.is_some(),
        format!(
            "Allow-Origin: {}, Allow-Headers: {}",
            acao.unwrap_or("(none)"),
            r.header("access-control-allow-headers").unwrap_or("(none)")
        ),
    );
    let links = ice_server_links(&r);
    cx.check(
        format!("B4.{t}"),
        "no ice-server Link on preflight",
        &format!("{s} §4.6"),
        Level::Should,
        links.is_empty(),
        if links.is_empty() {
            "none".into()
        } else {
            links.join(" ")
        },
    );
}

/// E1: with a token configured, POST without `Authorization` → 401 +
/// `WWW-Authenticate` (RFC 9725 §4.7, RFC 9110 §11.6.1), wrong token → 401
/// (403 accepted).
async fn auth_checks(cx: &mut Ctx, role: Role) {
    let t = role.tag();
    let src = format!("{} §4.7", role.spec());
    let req_none = "no token → 401 + WWW-Authenticate";
    let req_wrong = "wrong token → 401/403";
    if cx.token(role).is_none() {
        cx.skip(
            format!("E1.{t}.none"),
            req_none,
            &src,
            Level::Must,
            "no --token given",
        );
        cx.skip(
            format!("E1.{t}.wrong"),
            req_wrong,
            &src,
            Level::Must,
            "no --token given",
        );
        return;
    }
    let url = cx.url(role).clone();
    let offer = make_offer(cx.args.bind_ip, role.offer_dir()).unwrap_or_default();
    let res = cx
        .post(role, &url, Auth::Missing, "application/sdp", offer.clone())
        .await;
    let q = Req::new(format!("E1.{t}.none"), req_none, &src, Level::Must);
    cx.judge(q, &res, |r| {
        let www = r.header("www-authenticate");
        let d = format!(
            "POST offer without Authorization → {}, WWW-Authenticate: {}",
            brief(r),
            www.unwrap_or("(none)")
        );
        (r.status == 401 && www.is_some(), d)
    });
    cleanup(cx, role, &url, &res).await;
    let res = cx
        .post(role, &url, Auth::Wrong, "application/sdp", offer)
        .await;
    let q = Req::new(format!("E1.{t}.wrong"), req_wrong, &src, Level::Must);
    cx.judge(q, &res, |r| {
        let d = format!("POST offer with a wrong Bearer token → {}", brief(r));
        (matches!(r.status, 401 | 403), d)
    });
    cleanup(cx, role, &url, &res).await;
}

/// A check's POST that unexpectedly created a session: DELETE it so the
/// stream stays free.
async fn cleanup(cx: &Ctx, role: Role, url: &Url, res: &anyhow::Result<HttpResponse>) {
    if let Ok(r) = res
        && r.status == 201
        && let Some(loc) = r.header("location")
        && let Ok(u) = url.join(loc)
    {
        let _ = cx.send(role, "DELETE", &u, Auth::Valid, &[], None).await;
    }
}

/// A2: offer with `Content-Type: text/plain` → 415 (RFC 9725 §4.2: other
/// 4xx tolerated as a warning).
async fn bad_content_type(cx: &mut Ctx, role: Role) {
    let (t, s) = (role.tag(), role.spec());
    let url = cx.url(role).clone();
    let offer = make_offer(cx.args.bind_ip, role.offer_dir()).unwrap_or_default();
    let id = format!("A2.{t}");
    let req = "POST with Content-Type text/plain → 415";
    let src = format!("{s} §4.2");
    let res = cx.post(role, &url, Auth::Valid, "text/plain", offer).await;
    cx.judge_outcome(Req::new(id, req, &src, Level::Must), &res, |r| {
        let d = format!("POST valid offer as text/plain → {}", brief(r));
        want_415(r.status, d)
    });
    cleanup(cx, role, &url, &res).await;
}

/// A3: a body that is not SDP → 400 (any 4xx passes; the detail says which).
async fn garbage_body(cx: &mut Ctx, role: Role) {
    let (t, s) = (role.tag(), role.spec());
    let url = cx.url(role).clone();
    let id = format!("A3.{t}");
    let req = "POST non-SDP body → 400 (4xx)";
    let src = format!("{s} §4.2");
    let body = "this is not an SDP offer\r\n".to_string();
    let res = cx
        .post(role, &url, Auth::Valid, "application/sdp", body)
        .await;
    cx.judge(Req::new(id, req, &src, Level::Must), &res, |r| {
        let d = format!(
            "POST application/sdp \"this is not an SDP offer\" → {}",
            brief(r)
        );
        any_4xx(r.status, 400, d)
    });
    cleanup(cx, role, &url, &res).await;
}

/// A1 and the answer checks: POST a valid str0m offer → 201,
/// `Content-Type: application/sdp`, `Location`; answer sanity; Link
/// ice-servers; Location without the token. Returns the session.
async fn raw_post(cx: &mut Ctx, role: Role) -> Option<RawSession> {
    let (t, s) = (role.tag(), role.spec());
    let url = cx.url(role).clone();
    let src = format!("{s} §4.2");
    let offer = match make_offer(cx.args.bind_ip, role.offer_dir()) {
        Ok(o) => o,
        Err(e) => {
            cx.skip(
                format!("A1.{t}"),
                "valid offer → 201",
                &src,
                Level::Must,
                &format!("cannot build an offer: {e:#}"),
            );
            return None;
        }
    };
    let r = match cx
        .post(role, &url, Auth::Valid, "application/sdp", offer.clone())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            let q = Req::new(format!("A1.{t}"), "valid offer → 201", &src, Level::Must);
            cx.failed(q, &e);
            return None;
        }
    };
    let dir = role.offer_dir();
    cx.check(
        format!("A1.{t}"),
        "valid offer → 201 Created",
        &src,
        Level::Must,
        r.status == 201,
        format!(
            "POST {dir} audio+video offer ({} B) → {}",
            offer.len(),
            r.status
        ),
    );
    if !(200..300).contains(&r.status) {
        return None;
    }
    let mt = media_type(&r);
    cx.check(
        format!("A1.{t}.type"),
        "answer Content-Type application/sdp",
        &src,
        Level::Must,
        mt == "application/sdp",
        format!(
            "Content-Type: {}",
            r.header("content-type").unwrap_or("(none)")
        ),
    );
    let loc = r.header("location");
    let session = loc.and_then(|l| url.join(l).ok());
    cx.check(
        format!("A1.{t}.location"),
        "201 has Location (session URL)",
        &src,
        Level::Must,
        session.is_some(),
        format!("Location: {}", loc.unwrap_or("(none)")),
    );
    let tok = format!("E3.{t}.location");
    match (cx.token(role).map(str::to_string), loc) {
        (Some(tk), Some(l)) => cx.check(
            tok,
            "Location does not carry the token",
            &format!("{s} §4.7.1"),
            Level::Should,
            !l.contains(&tk),
            format!("Location: {l}"),
        ),
        _ => cx.skip(
            tok,
            "Location does not carry the token",
            &format!("{s} §4.7.1"),
            Level::Should,
            "no --token or no Location",
        ),
    }
    let expose = r
        .header("access-control-expose-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    let missing: Vec<&str> = ["location", "etag", "link"]
        .into_iter()
        .filter(|h| !expose.contains(h))
        .collect();
    cx.check(
        format!("B5.{t}.expose"),
        "201 exposes Location, ETag, Link (CORS)",
        "Fetch CORS; clients.md",
        Level::Should,
        missing.is_empty(),
        if missing.is_empty() {
            format!("Access-Control-Expose-Headers: {expose}")
        } else {
            format!("not exposed: {}", missing.join(", "))
        },
    );
    let links = ice_server_links(&r);
    let bad: Vec<&String> = links
        .iter()
        .filter(|u| {
            !["stun:", "stuns:", "turn:", "turns:"]
                .iter()
                .any(|p| u.starts_with(p))
        })
        .collect();
    if links.is_empty() {
        cx.skip(
            format!("A15.{t}"),
            "Link rel=\"ice-server\" (info)",
            &format!("{s} §4.6"),
            Level::May,
            "no ice-server Link sent",
        );
    } else {
        cx.check(
            format!("A15.{t}"),
            "Link rel=\"ice-server\" (info)",
            &format!("{s} §4.6"),
            Level::May,
            bad.is_empty(),
            format!("{} ice-server(s): {}", links.len(), links.join(" ")),
        );
    }
    answer_checks(cx, role, &offer, &r.body);
    let etag = r.header("etag").map(str::to_string);
    match session {
        Some(url) => Some(RawSession {
            url,
            etag,
            offer,
            answer: r.body.clone(),
        }),
        None => {
            etag_check(cx, role, etag.as_deref(), None);
            None
        }
    }
}

/// A14: the 201 carries a strong entity tag (RFC 9725 §4.3.1: MUST when ICE
/// restart is supported). Missing while the server refused ICE restart
/// (`restart_refused`) is a warning.
fn etag_check(cx: &mut Ctx, role: Role, etag: Option<&str>, restart_refused: Option<u16>) {
    let (t, s) = (role.tag(), role.spec());
    let id = format!("A14.{t}");
    let req = "201 has a strong ETag";
    let src = format!("{s} §4.3.1");
    match etag {
        Some(e) => {
            let strong = e.len() >= 2 && e.starts_with('"') && e.ends_with('"');
            cx.check(id, req, &src, Level::Must, strong, format!("ETag: {e}"));
        }
        None => match restart_refused {
            Some(st) => cx.record(
                id,
                req,
                &src,
                Level::Must,
                Outcome::Warn,
                format!("no ETag (allowed: ICE restart refused with {st})"),
            ),
            None => cx.record(id, req, &src, Level::Must, Outcome::Fail, "no ETag".into()),
        },
    }
}

/// Answer SDP sanity: ICE credentials (RFC 8839 §5.4), fingerprint (RFC
/// 8122 §5), setup not actpass (RFC 8842 §5.3), candidates in the answer
/// (RFC 9725 §4.3.2: the server does not trickle), same m-lines as the offer
/// (RFC 3264 §6), direction (RFC 9725 §4.2 / WHEP), BUNDLE + rtcp-mux (RFC
/// 9725 §4.4.1).
fn answer_checks(cx: &mut Ctx, role: Role, offer: &str, answer: &str) {
    let (t, s) = (role.tag(), role.spec());
    let o = Sdp::parse(offer);
    let a = Sdp::parse(answer);
    let n = a.media.len();
    let is_sdp = answer.trim_start().starts_with("v=0") && n > 0;
    cx.check(
        format!("A1.{t}.sdp"),
        "answer body is SDP with m-lines",
        &format!("{s} §4.2"),
        Level::Must,
        is_sdp,
        format!("{} B, {n} m-line(s)", answer.len()),
    );
    if !is_sdp {
        return;
    }
    let ufrag = (0..n).all(|i| a.attr(i, "ice-ufrag").is_some() && a.attr(i, "ice-pwd").is_some());
    cx.check(
        format!("S1.{t}.ice"),
        "answer has ice-ufrag and ice-pwd",
        "RFC 8839 §5.4",
        Level::Must,
        ufrag,
        format!("ice-ufrag: {}", a.attr(0, "ice-ufrag").unwrap_or("(none)")),
    );
    let fp = (0..n).all(|i| a.attr(i, "fingerprint").is_some());
    cx.check(
        format!("S2.{t}.fingerprint"),
        "answer has a=fingerprint",
        "RFC 8122 §5; RFC 8827 §6.5",
        Level::Must,
        fp,
        format!(
            "fingerprint: {}",
            a.attr(0, "fingerprint")
                .unwrap_or("(none)")
                .split(' ')
                .next()
                .unwrap_or("")
        ),
    );
    let setups: Vec<&str> = (0..n)
        .map(|i| a.attr(i, "setup").unwrap_or("(none)"))
        .collect();
    let offer_setup = if o.media.is_empty() {
        "(none)"
    } else {
        o.attr(0, "setup").unwrap_or("(none)")
    };
    cx.check(
        format!("S3.{t}.setup"),
        "answer setup active/passive (not actpass)",
        "RFC 8842 §5.3",
        Level::Must,
        setups.iter().all(|x| matches!(*x, "active" | "passive")),
        format!(
            "offer setup:{offer_setup} → answer setup:{}",
            setups.join(",")
        ),
    );
    let cands: Vec<&str> = a
        .media
        .iter()
        .flat_map(|m| Sdp::attrs(m, "candidate"))
        .chain(Sdp::attrs(&a.session, "candidate"))
        .collect();
    let first = cands
        .first()
        .map(|c| c.split(' ').skip(2).take(6).collect::<Vec<_>>().join(" "));
    cx.check(
        format!("A7.{t}"),
        "answer carries its ICE candidates",
        &format!("{s} §4.3.2"),
        Level::Must,
        !cands.is_empty(),
        format!(
            "{} candidate(s), first: {}",
            cands.len(),
            first.unwrap_or_else(|| "(none)".into())
        ),
    );
    let (ok_kinds, ak) = (o.kinds(), a.kinds());
    cx.check(
        format!("S4.{t}.mlines"),
        "answer m-lines = offer m-lines, same order",
        "RFC 3264 §6",
        Level::Must,
        ok_kinds == ak,
        format!("offer [{}] → answer [{}]", ok_kinds.join(","), ak.join(",")),
    );
    let want = role.answer_dir();
    let dirs: Vec<&str> = (0..n)
        .map(|i| {
            if a.port(i) == Some(0) {
                "rejected"
            } else {
                a.direction(i)
            }
        })
        .collect();
    cx.check(
        format!("A{}.{t}.direction", if role == Role::Whip { 5 } else { 6 }),
        if role == Role::Whip {
            "answer m-lines recvonly"
        } else {
            "answer m-lines sendonly"
        },
        if role == Role::Whip {
            "RFC 9725 §4.2"
        } else {
            "WHEP Media Direction"
        },
        Level::Must,
        dirs.iter().all(|d| *d == want || *d == "rejected") && dirs.contains(&want),
        format!("directions: {}", dirs.join(",")),
    );
    let mids: Vec<&str> = (0..n)
        .filter_map(|i| Sdp::attrs(&a.media[i], "mid").next())
        .collect();
    let bundle = Sdp::attrs(&a.session, "group").find(|g| g.starts_with("BUNDLE"));
    let bundled =
        bundle.is_some_and(|g| mids.iter().all(|m| g.split(' ').skip(1).any(|x| x == *m)));
    let mux = (0..n).all(|i| Sdp::attrs(&a.media[i], "rtcp-mux").next().is_some());
    cx.check(
        format!("A8.{t}"),
        "answer BUNDLEs all m-lines, rtcp-mux",
        &format!("{s} §4.4.1"),
        Level::Must,
        bundled && mux,
        format!(
            "group: {}, rtcp-mux in every m-line: {mux}",
            bundle.unwrap_or("(none)")
        ),
    );
}

/// The sdpfrag header lines (ufrag, pwd, first m-line and mid) of `offer`,
/// with the ICE credentials replaced when given.
fn frag(offer: &str, cred: Option<(&str, &str)>, candidate: &str) -> String {
    let o = Sdp::parse(offer);
    let ufrag = o.attr(0, "ice-ufrag").unwrap_or("");
    let pwd = o.attr(0, "ice-pwd").unwrap_or("");
    let (u, p) = cred.unwrap_or((ufrag, pwd));
    let mline = o
        .media
        .first()
        .map_or("m=audio 9 UDP/TLS/RTP/SAVPF 111", |m| m[0]);
    let mid = o.attr(0, "mid").unwrap_or("0");
    format!("a=ice-ufrag:{u}\r\na=ice-pwd:{p}\r\n{mline}\r\na=mid:{mid}\r\na={candidate}\r\n")
}

/// PATCH and DELETE checks on a raw session, then the unknown-session check.
async fn session_checks(cx: &mut Ctx, role: Role, s: RawSession) {
    let supported = trickle(cx, role, &s).await;
    patch_content_type(cx, role, &s).await;
    if supported {
        wrong_if_match(cx, role, &s).await;
    } else {
        cx.skip(
            format!("C6.{}", role.tag()),
            "PATCH wrong If-Match → 412",
            &format!("{} §4.3.1", role.spec()),
            Level::Must,
            "server does not support PATCH",
        );
    }
    let refused = ice_restart(cx, role, &s).await;
    etag_check(cx, role, s.etag.as_deref(), refused);
    delete_twice(cx, role, &s).await;
    unknown_session(cx, role, &s).await;
}

/// When no session exists, the checks that need one are skipped.
fn skip_session_checks(cx: &mut Ctx, role: Role, why: &str) {
    let (t, s) = (role.tag(), role.spec());
    for (id, req, src, level) in [
        (
            "C3",
            "trickle PATCH (sdpfrag) → 204",
            format!("{s} §4.3.2"),
            Level::Must,
        ),
        (
            "C1",
            "PATCH other Content-Type → 415",
            format!("{s} §4.3.1"),
            Level::Must,
        ),
        (
            "C6",
            "PATCH wrong If-Match → 412",
            format!("{s} §4.3.1"),
            Level::Must,
        ),
        (
            "C9",
            "ICE restart PATCH → 200 + new credentials",
            format!("{s} §4.3.3"),
            Level::Must,
        ),
        (
            "D1",
            "DELETE session → 200",
            format!("{s} §4.2"),
            Level::Must,
        ),
        (
            "D5",
            "second DELETE → 404 (4xx)",
            "RFC 9110 §9.3.5".into(),
            Level::Should,
        ),
        (
            "B6",
            "unknown session URL → 404",
            "RFC 9110 §15.5.5".into(),
            Level::Should,
        ),
    ] {
        cx.skip(format!("{id}.{t}"), req, &src, level, why);
    }
}

/// C3: trickle ICE PATCH (`application/trickle-ice-sdpfrag`, RFC 8840) with
/// the session's ufrag and one new host candidate → 204 (RFC 9725 §4.3.2).
/// 405/422/501 = trickle not supported (warn). Returns whether supported.
async fn trickle(cx: &mut Ctx, role: Role, s: &RawSession) -> bool {
    let (t, sp) = (role.tag(), role.spec());
    let ip = cx.args.bind_ip;
    let body = frag(
        &s.offer,
        None,
        &format!("candidate:9 1 udp 2130706175 {ip} 9 typ host"),
    );
    let body = body + "a=end-of-candidates\r\n";
    let mut h = vec![("content-type", "application/trickle-ice-sdpfrag")];
    if let Some(e) = &s.etag {
        h.push(("if-match", e.as_str()));
    }
    let id = format!("C3.{t}");
    let req = "trickle PATCH (sdpfrag) → 204";
    let src = format!("{sp} §4.3.2");
    let res = cx
        .send(role, "PATCH", &s.url, Auth::Valid, &h, Some(body))
        .await;
    cx.judge_outcome(Req::new(id, req, &src, Level::Must), &res, |r| {
        let d = format!(
            "PATCH sdpfrag with 1 candidate + end-of-candidates → {}",
            brief(r)
        );
        match r.status {
            204 => (Outcome::Pass, d),
            405 | 422 | 501 => (Outcome::Warn, d + " (trickle not supported)"),
            _ => (Outcome::Fail, d),
        }
    });
    res.is_ok_and(|r| !matches!(r.status, 405 | 422 | 501))
}

/// C1: PATCH with `Content-Type: application/json` → 415 (RFC 9725 §4.3.1).
async fn patch_content_type(cx: &mut Ctx, role: Role, s: &RawSession) {
    let (t, sp) = (role.tag(), role.spec());
    let id = format!("C1.{t}");
    let req = "PATCH other Content-Type → 415";
    let src = format!("{sp} §4.3.1");
    let body = r#"{"candidate":"candidate:9 1 udp 2130706175 127.0.0.1 9 typ host","sdpMid":"0"}"#;
    let mut h = vec![("content-type", "application/json")];
    if let Some(e) = &s.etag {
        h.push(("if-match", e.as_str()));
    }
    let res = cx
        .send(role, "PATCH", &s.url, Auth::Valid, &h, Some(body.into()))
        .await;
    cx.judge_outcome(Req::new(id, req, &src, Level::Must), &res, |r| {
        let d = format!("PATCH application/json candidate → {}", brief(r));
        want_415(r.status, d)
    });
}

/// C6: PATCH with an `If-Match` that is not the session's entity tag → 412
/// (RFC 9725 §4.3.1, RFC 9110 §13.1.1).
async fn wrong_if_match(cx: &mut Ctx, role: Role, s: &RawSession) {
    let (t, sp) = (role.tag(), role.spec());
    let ip = cx.args.bind_ip;
    let body = frag(
        &s.offer,
        None,
        &format!("candidate:8 1 udp 2130706175 {ip} 7 typ host"),
    );
    let h = [
        ("content-type", "application/trickle-ice-sdpfrag"),
        ("if-match", "\"not-the-etag-0000\""),
    ];
    let id = format!("C6.{t}");
    let req = "PATCH wrong If-Match → 412";
    let src = format!("{sp} §4.3.1");
    let res = cx
        .send(role, "PATCH", &s.url, Auth::Valid, &h, Some(body))
        .await;
    cx.judge(Req::new(id, req, &src, Level::Must), &res, |r| {
        let d = format!("PATCH If-Match: \"not-the-etag-0000\" → {}", brief(r));
        (r.status == 412, d)
    });
}

/// C9: ICE restart PATCH (new ice-ufrag/ice-pwd, `If-Match: *`) → 200,
/// `application/trickle-ice-sdpfrag` with new server credentials and a new
/// ETag (RFC 9725 §4.3.3). 405/422/501 = not supported (warn). Returns the
/// refusal status, if refused.
async fn ice_restart(cx: &mut Ctx, role: Role, s: &RawSession) -> Option<u16> {
    let (t, sp) = (role.tag(), role.spec());
    let ip = cx.args.bind_ip;
    let (u, p) = (random_hex(8), random_hex(24));
    let body = frag(
        &s.offer,
        Some((&u, &p)),
        &format!("candidate:7 1 udp 2130706175 {ip} 9 typ host"),
    );
    let h = [
        ("content-type", "application/trickle-ice-sdpfrag"),
        // RFC 9110 §13.1.1: the bare `*` (not the quoted tag `"*"`).
        ("if-match", "*"),
    ];
    let id = format!("C9.{t}");
    let req = "ICE restart PATCH → 200 + new credentials";
    let src = format!("{sp} §4.3.3");
    let q = Req::new(id, req, &src, Level::Must);
    let r = match cx
        .send(role, "PATCH", &s.url, Auth::Valid, &h, Some(body))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            cx.failed(q, &e);
            return None;
        }
    };
    match r.status {
        200 => {
            let f = Sdp::parse(&r.body);
            let old = Sdp::parse(&s.answer);
            let old_u = Sdp::attrs(&old.session, "ice-ufrag")
                .chain(old.media.iter().flat_map(|m| Sdp::attrs(m, "ice-ufrag")))
                .next();
            let new_u = Sdp::attrs(&f.session, "ice-ufrag")
                .chain(f.media.iter().flat_map(|m| Sdp::attrs(m, "ice-ufrag")))
                .next();
            let new_p = Sdp::attrs(&f.session, "ice-pwd")
                .chain(f.media.iter().flat_map(|m| Sdp::attrs(m, "ice-pwd")))
                .next();
            let new_etag = r.header("etag");
            let mut bad = Vec::new();
            if media_type(&r) != "application/trickle-ice-sdpfrag" {
                bad.push(format!(
                    "Content-Type {}",
                    r.header("content-type").unwrap_or("(none)")
                ));
            }
            if new_u.is_none() || new_p.is_none() || new_u == old_u {
                bad.push(format!(
                    "ice-ufrag {} (was {})",
                    new_u.unwrap_or("(none)"),
                    old_u.unwrap_or("(none)")
                ));
            }
            if new_etag.is_none() || new_etag == s.etag.as_deref() {
                bad.push(format!(
                    "ETag {} (was {})",
                    new_etag.unwrap_or("(none)"),
                    s.etag.as_deref().unwrap_or("(none)")
                ));
            }
            let d = if bad.is_empty() {
                format!(
                    "200, new ice-ufrag {} , ETag {}",
                    new_u.unwrap_or(""),
                    new_etag.unwrap_or("")
                )
            } else {
                format!("200 but {}", bad.join("; "))
            };
            cx.check_q(q, bad.is_empty(), d);
            None
        }
        405 | 422 | 501 => {
            let d = format!("{}: server does not support ICE restart", brief(&r));
            cx.record_q(q, Outcome::Warn, d);
            Some(r.status)
        }
        _ => {
            let d = format!("PATCH new ufrag/pwd, If-Match * → {}", brief(&r));
            cx.check_q(q, false, d);
            None
        }
    }
}

/// D1: DELETE the session URL → 200 (RFC 9725 §4.2); D5: DELETE again →
/// 404 (RFC 9110 §9.3.5: the resource is gone; any 4xx passes).
async fn delete_twice(cx: &mut Ctx, role: Role, s: &RawSession) {
    let (t, sp) = (role.tag(), role.spec());
    let src = format!("{sp} §4.2");
    let res = cx
        .send(role, "DELETE", &s.url, Auth::Valid, &[], None)
        .await;
    let q = Req::new(format!("D1.{t}"), "DELETE session → 200", &src, Level::Must);
    cx.judge(q, &res, |r| {
        let d = format!("DELETE {} → {}", s.url.path, brief(r));
        (r.status == 200, d)
    });
    let res = cx
        .send(role, "DELETE", &s.url, Auth::Valid, &[], None)
        .await;
    let q = Req::new(
        format!("D5.{t}"),
        "second DELETE → 404 (4xx)",
        "RFC 9110 §9.3.5",
        Level::Should,
    );
    cx.judge(q, &res, |r| {
        any_4xx(r.status, 404, format!("DELETE again → {}", brief(r)))
    });
}

/// B6: DELETE on a session URL that was never issued → 404 (RFC 9110
/// §15.5.5; any 4xx passes).
async fn unknown_session(cx: &mut Ctx, role: Role, s: &RawSession) {
    let t = role.tag();
    let mut u = s.url.clone();
    let path = u.path.split('?').next().unwrap_or("").to_string();
    let base = path.rsplit_once('/').map_or("", |(b, _)| b);
    u.path = format!("{base}/{}", random_hex(32));
    let res = cx.send(role, "DELETE", &u, Auth::Valid, &[], None).await;
    let q = Req::new(
        format!("B6.{t}"),
        "unknown session URL → 404",
        "RFC 9110 §15.5.5",
        Level::Should,
    );
    cx.judge(q, &res, |r| {
        any_4xx(r.status, 404, format!("DELETE {} → {}", u.path, brief(r)))
    });
}

/// Our own publisher: session plus the real-time clip loop.
struct Publisher {
    task: tokio::task::JoinHandle<Session>,
    stop: Arc<AtomicBool>,
    stats: Arc<clip::PubStats>,
}

/// M1: publish real H.264 + Opus over WHIP with str0m: the session must
/// connect (ICE + DTLS, RFC 9725 §4.2, RFC 8827) and then loops a 2 s clip.
async fn start_publisher(cx: &mut Ctx) -> Option<Publisher> {
    let id = "M1.whip".to_string();
    let req = "publisher connects (ICE+DTLS)";
    let src = "RFC 9725 §4.2; RFC 8827";
    let t0 = Instant::now();
    let mut s = match Session::publish(&cx.args.whip, cx.opts(Role::Whip)).await {
        Ok(s) => s,
        Err(e) => {
            cx.check(
                id,
                req,
                src,
                Level::Must,
                false,
                format!("WHIP publish failed: {e:#}"),
            );
            return None;
        }
    };
    if let Err(e) = s.wait_connected(Duration::from_secs(10)).await {
        cx.check(id, req, src, Level::Must, false, format!("{e:#}"));
        let _ = s.close().await;
        return None;
    }
    cx.check(
        id,
        req,
        src,
        Level::Must,
        true,
        format!("connected {} ms after POST", t0.elapsed().as_millis()),
    );
    let clip = match tokio::task::spawn_blocking(|| clip::make(2, 800)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            eprintln!("check: cannot make the test clip: {e:#}");
            let _ = s.close().await;
            return None;
        }
        Err(e) => {
            eprintln!("check: clip task failed: {e}");
            let _ = s.close().await;
            return None;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(clip::PubStats::default());
    let task = tokio::spawn(clip::publish_loop(
        s,
        Arc::new(clip),
        Instant::now(),
        stop.clone(),
        Instant::now() + Duration::from_secs(120),
        stats.clone(),
    ));
    // Let the first keyframe reach the server.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Some(Publisher { task, stop, stats })
}

/// M2/M3: a WHEP viewer connects and receives the publisher's H.264 (a
/// keyframe among it) and Opus; M4 (info): keyframe requests reached the
/// publisher; D1.whep.viewer: DELETE of a connected viewer → 200.
async fn view_media(cx: &mut Ctx, p: &Publisher) {
    let src = "WHEP; RFC 8827";
    let t0 = Instant::now();
    let plis0 = p.stats.keyframe_requests.load(Ordering::Relaxed);
    let mut v = match Session::play(&cx.args.whep, cx.opts(Role::Whep)).await {
        Ok(v) => v,
        Err(e) => {
            cx.check(
                "M2.whep".into(),
                "viewer connects (ICE+DTLS)",
                src,
                Level::Must,
                false,
                format!("WHEP play failed: {e:#}"),
            );
            cx.skip(
                "M3.whep".into(),
                "viewer receives H.264 keyframe + Opus",
                "WHEP",
                Level::Must,
                "viewer not connected",
            );
            return;
        }
    };
    let (mut video, mut audio, mut key_at, mut connected) = (0u64, 0u64, None, None);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut window_end = None;
    loop {
        let end = window_end.unwrap_or(deadline);
        let Ok(ev) = tokio::time::timeout_at(end, v.events.recv()).await else {
            break;
        };
        match ev {
            Some(ClientEvent::Connected) => {
                connected = Some(t0.elapsed());
                window_end = Some(
                    tokio::time::Instant::now()
                        + Duration::from_secs_f64(cx.args.media_seconds.max(0.5)),
                );
            }
            Some(ClientEvent::Rtp(r)) if r.kind == MediaKind::Video => {
                video += 1;
                if key_at.is_none() && is_h264_keyframe(&r.payload) {
                    key_at = Some(t0.elapsed());
                }
            }
            Some(ClientEvent::Rtp(_)) => audio += 1,
            Some(ClientEvent::Closed(_)) | None => break,
            Some(ClientEvent::KeyframeRequest) => {}
        }
    }
    let ms = |d: Option<Duration>| d.map_or("never".into(), |d| format!("{} ms", d.as_millis()));
    cx.check(
        "M2.whep".into(),
        "viewer connects (ICE+DTLS)",
        src,
        Level::Must,
        connected.is_some(),
        format!("connected: {}", ms(connected)),
    );
    cx.check(
        "M3.whep".into(),
        "viewer receives H.264 keyframe + Opus",
        "WHEP; RFC 6184",
        Level::Must,
        video > 0 && audio > 0 && key_at.is_some(),
        format!(
            "{video} video + {audio} audio packets in {:.1} s, first keyframe at {}",
            cx.args.media_seconds,
            ms(key_at)
        ),
    );
    let plis = p.stats.keyframe_requests.load(Ordering::Relaxed) - plis0;
    cx.record(
        "M4.whip".into(),
        "viewer join → PLI/FIR to publisher (info)",
        "RFC 4585 §6.3.1",
        Level::May,
        if plis > 0 {
            Outcome::Pass
        } else {
            Outcome::Skip
        },
        if plis > 0 {
            format!("{plis} keyframe request(s) reached the publisher")
        } else {
            "none (server may serve a GOP cache)".into()
        },
    );
    let q = Req::new(
        "D1.whep.viewer".into(),
        "DELETE connected viewer → 200",
        "WHEP Termination",
        Level::Must,
    );
    let res = v.close().await;
    cx.judge(q, &res, |&st| (st == 200, format!("DELETE → {st}")));
}

/// A second WHIP POST on the live stream name: implementation-defined (409
/// is common); reported as info.
async fn second_publisher(cx: &mut Ctx) {
    let url = cx.whip.clone();
    let offer = make_offer(cx.args.bind_ip, Direction::SendOnly).unwrap_or_default();
    let res = cx
        .post(Role::Whip, &url, Auth::Valid, "application/sdp", offer)
        .await;
    let q = Req::new(
        "I1.whip".into(),
        "second publisher on a live stream (info)",
        "implementation-defined",
        Level::May,
    );
    // Any answer passes; no answer is a warning (level MAY).
    cx.judge(q, &res, |r| (true, format!("second POST → {}", brief(r))));
    cleanup(cx, Role::Whip, &url, &res).await;
}

/// Stop the publisher; D1.whip.live: DELETE of a connected publisher → 200.
async fn stop_publisher(cx: &mut Ctx, p: Publisher) {
    p.stop.store(true, Ordering::Relaxed);
    let q = Req::new(
        "D1.whip.live".into(),
        "DELETE connected publisher → 200",
        "RFC 9725 §4.2",
        Level::Must,
    );
    match p.task.await {
        Ok(s) => {
            let res = s.close().await;
            cx.judge(q, &res, |&st| (st == 200, format!("DELETE → {st}")));
        }
        Err(e) => cx.check_q(q, false, format!("publisher task failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offer_is_a_valid_webrtc_offer() {
        let o = make_offer("127.0.0.1".parse().unwrap(), Direction::SendOnly).unwrap();
        let s = Sdp::parse(&o);
        assert_eq!(s.kinds(), ["audio", "video"]);
        assert!(s.attr(0, "ice-ufrag").is_some() && s.attr(0, "fingerprint").is_some());
        assert_eq!(s.attr(0, "setup"), Some("actpass"));
        assert_eq!(s.direction(1), "sendonly");
        assert!(Sdp::attrs(&s.media[0], "candidate").next().is_some());
    }

    #[test]
    fn link_parsing() {
        let r = HttpResponse {
            status: 201,
            headers: vec![
                ("link".into(), "<stun:stun.example:3478>; rel=\"ice-server\"".into()),
                (
                    "link".into(),
                    "<turn:t.example?transport=udp>; rel=\"ice-server\"; username=\"u\", <https://x>; rel=\"next\"".into(),
                ),
            ],
            body: String::new(),
        };
        assert_eq!(
            ice_server_links(&r),
            ["stun:stun.example:3478", "turn:t.example?transport=udp"]
        );
    }

    #[test]
    fn keyframe_detection() {
        assert!(is_h264_keyframe(&[0x65, 1]));
        assert!(is_h264_keyframe(&[0x7c, 0x85, 0]));
        assert!(!is_h264_keyframe(&[0x7c, 0x05, 0]));
        assert!(is_h264_keyframe(&[0x78, 0, 2, 0x67, 0, 0, 2, 0x65, 0]));
        assert!(!is_h264_keyframe(&[0x41, 0]));
    }
}
