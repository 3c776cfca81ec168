'use strict';
// Shared helpers and page logic for the SFU web UI (no build step, no external URLs).
// Each page sets <body data-page="index|watch|publish"> and loads this file last.
// Pages work on plain http:// from any address: there the page is not a secure context, so
// navigator.mediaDevices and navigator.clipboard may be missing; nothing here may throw for that.
(function () {
  const $ = (id) => document.getElementById(id);
  const param = (n) => new URLSearchParams(location.search).get(n);
  const enc = encodeURIComponent;
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
  const token = param('token');
  const LAYER_REL = 'urn:ietf:params:whep:ext:core:layer';
  const SSE_REL = 'urn:ietf:params:whep:ext:core:server-sent-events';
  const SSE_EVENTS = ['active', 'inactive', 'layers', 'viewercount', 'reconnect'];

  // ---- WHIP / WHEP helpers ----

  /** Resolve when ICE gathering is complete, or after `ms` (default 2 s). */
  function waitIce(pc, ms = 2000) {
    return new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        pc.removeEventListener('icecandidate', onCand);
        resolve();
      };
      const check = () => { if (pc.iceGatheringState === 'complete') done(); };
      const onCand = (e) => { if (!e.candidate) done(); };
      const timer = setTimeout(done, ms);
      pc.addEventListener('icegatheringstatechange', check);
      pc.addEventListener('icecandidate', onCand);
    });
  }

  function withToken(url) {
    const u = new URL(url, location.href);
    if (token) u.searchParams.set('token', token);
    return u;
  }
  function authHeaders(h = {}) {
    if (token) h.Authorization = 'Bearer ' + token;
    return h;
  }

  /** Parse a (comma-joined) Link header into [{url, rel}], URLs made absolute against `base`. */
  function parseLinks(header, base) {
    const out = [];
    if (!header) return out;
    const re = /<([^>]*)>((?:\s*;\s*[^;,]+(?:=(?:"[^"]*"|[^;,]*))?)*)/g;
    let m;
    while ((m = re.exec(header))) {
      const rel = /;\s*rel\s*=\s*(?:"([^"]*)"|([^;,\s]+))/i.exec(m[2]);
      let url = m[1];
      try { url = new URL(m[1], base).href; } catch (e) { /* keep as given */ }
      out.push({ url, rel: rel ? (rel[1] || rel[2]) : '' });
    }
    return out;
  }

  /** POST an SDP offer. Resolves to {status, body, location, etag, links}; URLs are absolute. */
  async function postSdp(url, sdp) {
    const u = withToken(url);
    const r = await fetch(u, {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/sdp' }),
      body: sdp,
    });
    const body = await r.text();
    const loc = r.headers.get('Location');
    return {
      status: r.status,
      body,
      location: loc ? new URL(loc, u).href : null,
      etag: r.headers.get('ETag'),
      links: parseLinks(r.headers.get('Link'), u),
    };
  }

  /** DELETE a resource; survives page unload (keepalive). Never rejects. */
  function del(url) {
    if (!url) return Promise.resolve();
    try {
      return fetch(withToken(url), { method: 'DELETE', keepalive: true, headers: authHeaders() }).catch(() => {});
    } catch (e) { return Promise.resolve(); }
  }
  /** End a session: DELETE first, then close the peer connection (closing first makes the
   *  server drop the session on DTLS close, and the DELETE would then get a 404). */
  function endSession(pc, loc) {
    if (!pc) { del(loc); return; }
    if (!loc) { pc.close(); return; }
    const t = setTimeout(() => pc.close(), 1000);
    del(loc).then(() => { clearTimeout(t); pc.close(); });
  }

  /**
   * Open a WHEP session for stream `name`, playing into `video`.
   * Resolves to {pc, t0 (performance.now() of the POST), status, body, location, links}; when
   * status is not 201 the peer connection is already closed. `onState(connectionState)` is
   * called on every connection state change. If the promise `gate` (awaited with the offer
   * ready) resolves false, nothing is POSTed and status is 0.
   */
  async function openWhep(name, video, onState, gate) {
    const pc = new RTCPeerConnection();
    try {
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      const ms = new MediaStream();
      pc.ontrack = (e) => {
        ms.addTrack(e.track);
        if (video.srcObject !== ms) video.srcObject = ms;
        video.play().catch(() => {});
      };
      pc.onconnectionstatechange = () => onState && onState(pc.connectionState);
      await pc.setLocalDescription(await pc.createOffer());
      await waitIce(pc);
      if (gate && !(await gate)) { pc.close(); return { pc, status: 0 }; }
      const t0 = performance.now();
      const r = await postSdp('/whep/' + enc(name), pc.localDescription.sdp);
      const s = Object.assign({ pc, t0 }, r);
      if (r.status !== 201) { pc.close(); return s; }
      await pc.setRemoteDescription({ type: 'answer', sdp: r.body });
      return s;
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  /** GET /api/streams (never rejects; [] on failure). */
  async function listStreams() {
    try {
      const r = await fetch('/api/streams', { headers: authHeaders(), cache: 'no-store' });
      return r.ok ? await r.json() : [];
    } catch (e) { return []; }
  }
  /** Whether stream `name` has a live publisher (so a WHEP POST will not get 409, which the
   *  browser would log as a failed request). */
  async function isLive(name) {
    return (await listStreams()).some((s) => s.name === name && s.publisher === 'live');
  }

  // ---- trickle ICE (RFC 8840 fragments PATCHed to the session URL) ----

  /** Collect `pc`'s candidates from now on; PATCH them once `start(location, etag)` is called. */
  function trickler(pc) {
    const pending = [];
    let url = null, etag = null, ended = false, endSent = false, chain = Promise.resolve();
    pc.addEventListener('icecandidate', (e) => {
      if (e.candidate && e.candidate.candidate) pending.push(e.candidate);
      else ended = true;
      flush();
    });
    function fragment(cands, end) {
      const sdp = pc.localDescription ? pc.localDescription.sdp : '';
      const ufrag = /a=ice-ufrag:(\S+)/.exec(sdp), pwd = /a=ice-pwd:(\S+)/.exec(sdp);
      const lines = [];
      if (ufrag) lines.push('a=ice-ufrag:' + ufrag[1]);
      if (pwd) lines.push('a=ice-pwd:' + pwd[1]);
      const mid = cands.length ? cands[0].sdpMid : (pc.getTransceivers()[0] || {}).mid;
      lines.push('m=audio 9 UDP/TLS/RTP/SAVPF 0', 'a=mid:' + (mid == null ? '0' : mid));
      for (const c of cands) lines.push('a=' + c.candidate);
      if (end) lines.push('a=end-of-candidates');
      return lines.join('\r\n') + '\r\n';
    }
    function flush() {
      if (!url || endSent || (!pending.length && !ended)) return;
      const body = fragment(pending.splice(0), ended);
      endSent = ended;
      const headers = authHeaders({ 'Content-Type': 'application/trickle-ice-sdpfrag' });
      if (etag) headers['If-Match'] = etag;
      chain = chain.then(() => fetch(withToken(url), { method: 'PATCH', headers, body }).catch(() => {}));
    }
    return { start(location, tag) { url = location; etag = tag; flush(); } };
  }

  // ---- stats ----

  /**
   * Returns async fn(pc) -> {bps, fps, rtt, video, codec, audioCodec, loss, jitterMs}. `video` is the
   * largest video inbound/outbound-rtp entry; bitrate (and fps, when the browser reports none) from
   * deltas over >= 1 s; `loss` =
   * {lost, pct} of received video; `jitterMs` = average jitter-buffer delay per emitted frame.
   */
  function statsSampler() {
    let prev = null;
    let bps = null;
    let fps = null;
    return async function (pc) {
      const rep = await pc.getStats();
      let bytes = 0, ts = 0, video = null, audio = null, rtt = null, remoteRtt = null, pairId = null;
      rep.forEach((s) => {
        if (s.type === 'inbound-rtp' || s.type === 'outbound-rtp') {
          bytes += (s.type === 'inbound-rtp' ? s.bytesReceived : s.bytesSent) || 0;
          ts = Math.max(ts, s.timestamp);
          if (s.kind === 'video' && (!video || (s.frameWidth || 0) > (video.frameWidth || 0))) video = s;
          if (s.kind === 'audio') audio = s;
        } else if (s.type === 'transport' && s.selectedCandidatePairId) {
          pairId = s.selectedCandidatePairId;
        } else if (s.type === 'remote-inbound-rtp' && s.roundTripTime != null) {
          remoteRtt = s.roundTripTime;
        }
      });
      rep.forEach((s) => {
        if (s.type === 'candidate-pair' && s.currentRoundTripTime != null &&
            (s.id === pairId || (!pairId && s.nominated && s.state === 'succeeded'))) {
          rtt = s.currentRoundTripTime;
        }
      });
      if (rtt == null) rtt = remoteRtt;
      // Rates start with the first RTP stats (stats timestamps are their own clock).
      const now = ts;
      const frames = video ? video.framesDecoded || video.framesEncoded || 0 : 0;
      if (!now) { /* no RTP stream yet */ } else if (!prev) prev = { bytes, frames, ts: now };
      else if (now - prev.ts >= 1000) {
        bps = Math.max(0, ((bytes - prev.bytes) * 8000) / (now - prev.ts));
        fps = Math.max(0, ((frames - prev.frames) * 1000) / (now - prev.ts));
        prev = { bytes, frames, ts: now };
      }
      const codecOf = (s) => (s && s.codecId && rep.get(s.codecId) ? rep.get(s.codecId).mimeType.split('/')[1] : null);
      let loss = null, jitterMs = null;
      if (video && video.type === 'inbound-rtp') {
        const lost = Math.max(0, video.packetsLost || 0), got = video.packetsReceived || 0;
        loss = { lost, pct: got + lost ? (100 * lost) / (got + lost) : 0 };
        if (video.jitterBufferEmittedCount) jitterMs = (1000 * video.jitterBufferDelay) / video.jitterBufferEmittedCount;
      }
      if (video && video.framesPerSecond != null) fps = video.framesPerSecond;
      return { bps, fps, rtt, video, codec: codecOf(video), audioCodec: codecOf(audio), loss, jitterMs };
    };
  }

  function fmtBps(b) {
    if (b == null) return '–';
    return b >= 1e6 ? (b / 1e6).toFixed(2) + ' Mbit/s' : Math.round(b / 1e3) + ' kbit/s';
  }

  // ---- copy to clipboard ----

  /** Copy through a hidden textarea (works on http:// pages, where navigator.clipboard is missing). */
  function fallbackCopy(text) {
    const t = document.createElement('textarea');
    t.value = text;
    t.setAttribute('readonly', '');
    t.style.cssText = 'position:fixed;top:0;left:0;opacity:0';
    document.body.appendChild(t);
    t.select();
    let ok = false;
    try { ok = document.execCommand('copy'); } catch (e) { /* ignore */ }
    t.remove();
    return ok;
  }
  function copy(text, btn) {
    const show = (ok) => {
      if (!btn) return;
      if (!btn.dataset.label) btn.dataset.label = btn.textContent;
      btn.textContent = ok ? 'Copied' : 'Copy failed (select the text)';
      setTimeout(() => { btn.textContent = btn.dataset.label; }, 1500);
    };
    if (navigator.clipboard && navigator.clipboard.writeText && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(() => show(true), () => show(fallbackCopy(text)));
    } else show(fallbackCopy(text));
  }
  // <button data-copy="elementId"> copies that element's text; data-copy-text copies literal text.
  document.addEventListener('click', (e) => {
    const b = e.target.closest('[data-copy],[data-copy-text]');
    if (!b) return;
    const text = b.dataset.copyText != null ? b.dataset.copyText : ($(b.dataset.copy) || {}).textContent;
    if (text) copy(text.trim(), b);
  });

  // ---- UI helpers ----

  function setStatus(text, cls) {
    const el = $('status');
    if (!el) return;
    el.textContent = text;
    el.className = 'status' + (cls ? ' ' + cls : '');
  }
  function setText(id, text) { const el = $(id); if (el) el.textContent = text; }
  function setStreamParam(n) {
    const p = new URLSearchParams(location.search);
    p.set('stream', n);
    history.replaceState(null, '', location.pathname + '?' + p.toString());
  }
  const pageUrl = (page, n) => '/' + page + '?stream=' + enc(n) + (token ? '&token=' + enc(token) : '');

  // ---- ready-to-paste settings for other software ----

  const whipUrl = (n) => location.origin + '/whip/' + enc(n);
  const whepUrl = (n) => location.origin + '/whep/' + enc(n);
  const tokenQuery = () => (token ? '?token=' + enc(token) : '');
  /** Quote for a POSIX shell when needed. */
  const shq = (s) => (/^[\w@%+=:,./?&-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'");

  /** [{id, title, text, note}] for stream `n`: URLs, OBS, ffmpeg, GStreamer, whip-ingest, Home Assistant. */
  function recipes(n) {
    const whip = whipUrl(n), whep = whepUrl(n) + tokenQuery(), t = token ? shq(token) : null;
    return [
      { id: 'whip-url', title: 'WHIP URL (publish)', text: whip + tokenQuery(), url: true },
      { id: 'whep-url', title: 'WHEP URL (watch)', text: whep, url: true },
      { id: 'snippet-obs', title: 'OBS 30+ (Settings → Stream)',
        text: 'Service: WHIP\nServer: ' + whip + '\nBearer Token: ' + (token || '(leave empty)') },
      { id: 'snippet-ffmpeg', title: 'ffmpeg 8 (WHIP muxer)',
        text: 'ffmpeg -re -i input.mp4 -c:v libx264 -preset veryfast -tune zerolatency -profile:v baseline -bf 0 ' +
          '-c:a libopus -ar 48000 -ac 2 ' + (t ? '-authorization ' + t + ' ' : '') + '-f whip ' + whip },
      { id: 'snippet-gstreamer', title: 'GStreamer (gst-plugins-rs whipclientsink)',
        text: 'gst-launch-1.0 videotestsrc is-live=true ! videoconvert ! queue ! whipclientsink ' +
          'signaller::whip-endpoint=' + whip + (t ? ' signaller::auth-token=' + t : ''),
        note: 'GStreamer’s default RSA DTLS certificate is refused; see the README’s Limitations.' },
      { id: 'snippet-whip-ingest', title: 'whip-ingest (RTSP camera)',
        text: 'whip-ingest rtsp://USER:PASS@CAMERA:554/stream --url ' + whip + (t ? ' --token ' + t : '') },
      { id: 'snippet-ha-card', title: 'Home Assistant: AlexxIT WebRTC Camera card',
        text: 'type: custom:webrtc-camera\nurl: webrtc:' + whep },
      { id: 'snippet-go2rtc', title: 'Home Assistant / Frigate: go2rtc source',
        text: 'streams:\n  ' + n + ': webrtc:' + whep },
    ];
  }
  function renderRecipes(n) {
    const box = $('recipes');
    if (!box) return;
    box.innerHTML = recipes(n).map((r) =>
      '<div class="recipe"><h3>' + esc(r.title) + '</h3>' +
      (r.url ? '<div class="row"><code id="' + r.id + '">' + esc(r.text) + '</code>'
             : '<pre id="' + r.id + '">' + esc(r.text) + '</pre><div class="row">') +
      '<button type="button" class="secondary" data-copy="' + r.id + '">Copy</button>' +
      (r.note ? ' <span class="muted small">' + esc(r.note) + '</span>' : '') + '</div></div>').join('');
  }

  // ---- index page: stream list with live previews ----

  const MAX_PREVIEWS = 6;

  function initIndex() {
    const grid = $('streams'), empty = $('empty'), previews = $('previews');
    const cards = new Map(); // name -> {el, session, busy}
    let order = '';
    previews.checked = localStorage.getItem('sfu.previews') !== 'off';
    renderRecipes('NAME');

    function card(s) {
      const el = document.createElement('div');
      el.className = 'card stream';
      el.dataset.stream = s.name;
      el.innerHTML =
        '<h2><a href="' + esc(pageUrl('watch.html', s.name)) + '">' + esc(s.name) + '</a> <span class="badge"></span></h2>' +
        '<a class="thumb" href="' + esc(pageUrl('watch.html', s.name)) + '"><video muted autoplay playsinline></video></a>' +
        '<div class="muted info"><span class="codecs"></span> · <span class="bitrate"></span> · <span class="viewers"></span></div>' +
        '<div class="row"><a class="btn" href="' + esc(pageUrl('watch.html', s.name)) + '">Watch</a>' +
        '<button type="button" class="secondary" data-copy-text="' + esc(whepUrl(s.name) + tokenQuery()) + '">Copy WHEP URL</button>' +
        '<button type="button" class="secondary" data-copy-text="' + esc(whipUrl(s.name) + tokenQuery()) + '">Copy WHIP URL</button></div>';
      return { el, session: null, busy: false };
    }

    function stopPreview(c) {
      if (c.session) endSession(c.session.pc, c.session.location);
      c.session = null;
      const v = c.el.querySelector('video');
      v.srcObject = null;
    }
    async function startPreview(name, c) {
      c.busy = true;
      try {
        const s = await openWhep(name, c.el.querySelector('video'), (st) => {
          if ((st === 'failed' || st === 'closed') && c.session && c.session.pc.connectionState === st) stopPreview(c);
        });
        if (s.status === 201 && cards.get(name) === c && previews.checked) c.session = s;
        else if (s.status === 201) endSession(s.pc, s.location);
      } catch (e) { /* retried at the next poll */ }
      c.busy = false;
    }
    function updatePreviews(list) {
      let running = 0;
      for (const s of list) {
        const c = cards.get(s.name);
        const want = previews.checked && s.publisher === 'live' && running < MAX_PREVIEWS;
        if (want) running++;
        if (!want && c.session) stopPreview(c);
        else if (want && !c.session && !c.busy) startPreview(s.name, c);
      }
    }

    function update(c, s) {
      const badge = c.el.querySelector('.badge');
      badge.textContent = s.publisher;
      badge.className = 'badge ' + s.publisher;
      c.el.querySelector('.codecs').textContent = (s.codecs || []).join(', ') || 'no codecs yet';
      c.el.querySelector('.bitrate').textContent = fmtBps(s.bitrate_in_bps);
      c.el.querySelector('.viewers').textContent = s.viewers + ' viewer' + (s.viewers === 1 ? '' : 's');
    }

    async function poll() {
      try {
        const r = await fetch('/api/streams', { headers: authHeaders(), cache: 'no-store' });
        if (!r.ok) throw new Error('HTTP ' + r.status);
        const list = (await r.json()).slice().sort((a, b) => (a.name < b.name ? -1 : 1));
        const seen = new Set(list.map((s) => s.name));
        for (const s of list) {
          if (!cards.has(s.name)) cards.set(s.name, card(s));
          update(cards.get(s.name), s);
        }
        for (const [n, c] of cards) if (!seen.has(n)) { stopPreview(c); c.el.remove(); cards.delete(n); }
        const o = list.map((s) => s.name).join('\n');
        if (o !== order) { order = o; for (const s of list) grid.appendChild(cards.get(s.name).el); }
        updatePreviews(list);
        empty.hidden = list.length > 0;
        setText('updated', list.length + ' stream' + (list.length === 1 ? '' : 's') + ' · updated ' +
          new Date().toLocaleTimeString() + (previews.checked ? ' · previews count as viewers' : ''));
      } catch (e) {
        setText('updated', 'Cannot reach the server (' + e.message + '), retrying…');
      }
      setTimeout(poll, 2000);
    }

    previews.addEventListener('change', () => {
      localStorage.setItem('sfu.previews', previews.checked ? 'on' : 'off');
      if (!previews.checked) for (const c of cards.values()) stopPreview(c);
    });
    window.addEventListener('pagehide', () => { for (const c of cards.values()) stopPreview(c); });
    poll();
  }

  // ---- watch page (WHEP player) ----

  /** Show the layer picker iff the WHEP answer advertised the layer extension; wire it to `url`. */
  function setupLayers(links, pc) {
    const box = $('layers'), sel = $('layer');
    const link = links.find((l) => l.rel.split(/\s+/).includes(LAYER_REL));
    box.hidden = !link;
    sel.value = 'auto';
    if (!link) return;
    sel.onchange = async () => {
      const video = pc.getTransceivers().find((t) => t.receiver.track && t.receiver.track.kind === 'video');
      const req = sel.value === 'auto'
        ? { method: 'DELETE', headers: authHeaders() }
        : {
            method: 'POST',
            headers: authHeaders({ 'Content-Type': 'application/json' }),
            // encodingId is the draft's name for the simulcast layer's rid.
            body: JSON.stringify({ mediaId: video ? video.mid : '0', rid: sel.value, encodingId: sel.value }),
          };
      try {
        const r = await fetch(withToken(link.url), req);
        if (!r.ok) setStatus('Layer change refused (' + r.status + ')', 'err');
      } catch (e) {
        setStatus('Layer change failed: ' + e.message, 'err');
      }
    };
  }

  /**
   * Subscribe to the WHEP server-sent events extension when the answer advertised it: POST the
   * event list to the Link URL (201 + Location), then an EventSource on that Location.
   * Resolves to the EventSource (close() it on teardown) or null.
   */
  async function openEvents(links, onEvent) {
    const link = links.find((l) => l.rel.split(/\s+/).includes(SSE_REL));
    if (!link) return null;
    const r = await fetch(withToken(link.url), {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/json' }),
      body: JSON.stringify(SSE_EVENTS),
    });
    const loc = r.headers.get('Location');
    if (r.status !== 201 || !loc) return null;
    const es = new EventSource(withToken(new URL(loc, link.url).href));
    for (const name of SSE_EVENTS) {
      es.addEventListener(name, (e) => {
        let data = {};
        try { data = JSON.parse(e.data || '{}'); } catch (err) { /* keep {} */ }
        onEvent(name, data);
      });
    }
    return es;
  }

  function renderWatchStats(P, s) {
    setText('stat-resolution', P.width ? P.width + 'x' + P.height : '–');
    setText('stat-fps', s.fps != null ? Math.round(s.fps) + ' fps' : '–');
    setText('stat-codec', [s.codec, s.audioCodec].filter(Boolean).join(' + ') || '–');
    setText('stat-bitrate', fmtBps(s.bps));
    setText('stat-rtt', s.rtt != null ? Math.round(s.rtt * 1000) + ' ms' : '–');
    setText('stat-loss', s.loss ? s.loss.lost + ' packets (' + s.loss.pct.toFixed(1) + ' %)' : '–');
    setText('stat-jitter', s.jitterMs != null ? Math.round(s.jitterMs) + ' ms' : '–');
    setText('stat-ttff', P.ttffMs != null ? P.ttffMs + ' ms' : '–');
    setText('stat-frames', String(P.framesDecoded));
    setText('stat-viewers', P.viewerCount != null ? String(P.viewerCount) : '–');
  }
  function clearWatchStats() {
    for (const el of document.querySelectorAll('#stats dd')) el.textContent = '–';
  }

  function initWatch() {
    // window.sfuPlayer is read by the interop tests (tests/interop/browser/play.mjs).
    const P = (window.sfuPlayer = {
      state: 'idle', framesDecoded: 0, width: 0, height: 0, ttffMs: null, error: null, events: [], viewerCount: null,
    });
    const video = $('player');
    const input = $('stream');
    input.value = param('stream') || '';
    let pc = null, loc = null, retry = null, attempt = 0, t0 = 0, sampler = null, busy = false, lastRender = 0;
    let events = null;

    function teardown() {
      clearTimeout(retry);
      retry = null;
      if (events) events.close();
      events = null;
      endSession(pc, loc);
      pc = null;
      loc = null;
      $('layers').hidden = true;
    }
    function fail(msg) {
      teardown();
      P.state = 'failed';
      P.error = msg;
      setStatus(msg, 'err');
    }
    function onState(my, n, s) {
      if (my !== attempt) return;
      if (s === 'connected') { P.state = 'connected'; setStatus('Playing ' + n, 'ok'); }
      else if (s === 'failed') fail('Connection failed (ICE/DTLS).');
      else if (s === 'disconnected') setStatus('Connection interrupted…', 'err');
    }

    async function start() {
      const n = input.value.trim();
      if (!n) { setStatus('Enter a stream name.', 'err'); return; }
      teardown();
      const my = ++attempt;
      setStreamParam(n);
      renderRecipes(n);
      Object.assign(P, { state: 'connecting', framesDecoded: 0, ttffMs: null, error: null });
      setStatus('Connecting to ' + n + '…');
      clearWatchStats();
      video.srcObject = null;
      t0 = 0;
      sampler = statsSampler();
      try {
        const s = await openWhep(n, video, (st) => onState(my, n, st), isLive(n));
        if (my !== attempt) { if (s.status === 201) endSession(s.pc, s.location); return; }
        if (s.status === 0) {
          P.error = 'not live';
          setStatus('“' + n + '” is not live yet — waiting for its publisher…');
          retry = setTimeout(start, 2000);
          return;
        }
        if (s.status === 409) {
          P.error = (s.body.trim() || 'No live publisher') + ' (409)';
          setStatus(P.error + ' — retrying every 2 s…', 'err');
          retry = setTimeout(start, 2000);
          return;
        }
        if (s.status !== 201) throw new Error('Server answered ' + s.status + ': ' + s.body.trim());
        pc = s.pc;
        loc = s.location;
        t0 = s.t0;
        setupLayers(s.links, pc);
        P.events = [];
        openEvents(s.links, (name, data) => {
          if (my !== attempt) return;
          P.events.push({ name, data, t: Math.round(performance.now() - t0) });
          if (name === 'inactive') setStatus('The publisher went away — waiting for it to come back…');
          else if (name === 'active') setStatus('Playing ' + n, 'ok');
          else if (name === 'viewercount') P.viewerCount = data.viewercount;
          else if (name === 'reconnect') { setStatus('The stream changed — reconnecting…'); start(); }
        }).then((es) => { if (my === attempt) events = es; else if (es) es.close(); }, () => {});
        if (pc.connectionState !== 'connected') setStatus('Waiting for media…');
        if (video.requestVideoFrameCallback) {
          video.requestVideoFrameCallback(() => {
            if (my === attempt && P.ttffMs == null) P.ttffMs = Math.round(performance.now() - t0);
          });
        }
      } catch (e) {
        if (my === attempt) fail(e.message || String(e));
      }
    }

    function stop() {
      attempt++;
      teardown();
      video.srcObject = null;
      Object.assign(P, { state: 'idle', error: null });
      setStatus('Stopped.');
      clearWatchStats();
    }

    // Sample every 250 ms (window.sfuPlayer stays fresh for the tests); redraw the panel every second.
    setInterval(async () => {
      P.width = video.videoWidth || 0;
      P.height = video.videoHeight || 0;
      const c = pc;
      if (!c || busy || !loc) return;
      busy = true;
      let s = null;
      try { s = await sampler(c); } catch (e) { /* closed */ }
      busy = false;
      if (!s || c !== pc) return;
      P.framesDecoded = (s.video && s.video.framesDecoded) || 0;
      // Freezes (webrtc-stats §8.2 freezeCount, s) and dropped frames, for the layer-switch tests.
      P.freezeCount = (s.video && s.video.freezeCount) || 0;
      P.freezeSeconds = (s.video && s.video.totalFreezesDuration) || 0;
      P.framesDropped = (s.video && s.video.framesDropped) || 0;
      P.pliCount = (s.video && s.video.pliCount) || 0;
      P.layer = $('layer').value;
      if (P.ttffMs == null && P.framesDecoded > 0 && t0) P.ttffMs = Math.round(performance.now() - t0);
      const now = performance.now();
      if (now - lastRender >= 1000 || (P.width && $('stat-resolution').textContent === '–')) {
        lastRender = now;
        renderWatchStats(P, s);
      }
    }, 250);

    $('form').addEventListener('submit', (e) => { e.preventDefault(); start(); });
    $('stop').addEventListener('click', stop);
    input.addEventListener('input', () => renderRecipes(input.value.trim() || 'NAME'));
    window.addEventListener('pagehide', teardown);
    listStreams().then((list) => {
      const dl = $('live-streams');
      for (const s of list) dl.appendChild(new Option(s.name + ' (' + s.publisher + ')', s.name));
    });
    renderRecipes(input.value.trim() || 'NAME');
    if (input.value.trim()) start();
    else setStatus('Enter the name of a stream to watch.');
  }

  // ---- publish page (WHIP) ----

  const VIDEO_CODECS = ['H264', 'VP8', 'VP9', 'AV1'];

  /** Capabilities of this browser for video, from the receiver or sender list (setCodecPreferences wants those). */
  function videoCaps() {
    for (const cls of [window.RTCRtpReceiver, window.RTCRtpSender]) {
      const caps = cls && cls.getCapabilities && cls.getCapabilities('video');
      if (caps && caps.codecs) return caps.codecs;
    }
    return [];
  }
  /** Which of H264/VP8/VP9/AV1 this browser has. */
  function availableCodecs() {
    const have = new Set(videoCaps().map((c) => c.mimeType.split('/')[1].toUpperCase()));
    return VIDEO_CODECS.filter((c) => have.has(c));
  }
  function h264Score(c) {
    const f = c.sdpFmtpLine || '';
    return (/packetization-mode=1/.test(f) ? 4 : 0) + (/profile-level-id=42e01f/i.test(f) ? 2 : 0) +
      (/profile-level-id=42/i.test(f) ? 1 : 0);
  }
  function orderedCodecs(codecs, want) {
    const mime = 'video/' + want.toLowerCase();
    const pick = codecs.filter((c) => c.mimeType.toLowerCase() === mime);
    if (!pick.length) return null;
    if (want === 'H264') pick.sort((a, b) => h264Score(b) - h264Score(a));
    return pick.concat(codecs.filter((c) => c.mimeType.toLowerCase() !== mime));
  }
  /** Put `want` first on the video transceiver `t`; keep the rest as fallbacks. */
  function applyCodec(t, want) {
    if (!t.setCodecPreferences) return;
    for (const cls of [window.RTCRtpReceiver, window.RTCRtpSender]) {
      const caps = cls && cls.getCapabilities && cls.getCapabilities('video');
      const list = caps && orderedCodecs(caps.codecs, want);
      if (!list) continue;
      try { t.setCodecPreferences(list); return; } catch (e) { /* try the other capability list */ }
    }
  }
  /** Simulcast encodings, full resolution first (rids h, m, l). */
  const SIMULCAST = [
    { rid: 'h' },
    { rid: 'm', scaleResolutionDownBy: 2 },
    { rid: 'l', scaleResolutionDownBy: 4 },
  ];

  function initPublish() {
    // window.sfuPublisher is read by the interop tests (tests/interop/browser/publish.mjs).
    const S = (window.sfuPublisher = { state: 'idle', error: null, status: null });
    const input = $('stream'), camSel = $('camera'), micSel = $('mic'), codecSel = $('codec');
    const resSel = $('resolution'), simulcast = $('simulcast'), trickle = $('trickle'), preview = $('preview');
    const md = navigator.mediaDevices;
    let pc = null, loc = null, media = null, attempt = 0, busy = false, sampler = null;

    function fromParams() {
      input.value = param('stream') || 'cam';
      for (const c of availableCodecs()) codecSel.add(new Option(c, c));
      if (!codecSel.options.length) codecSel.add(new Option('browser default', ''));
      const want = (param('codec') || 'H264').toUpperCase();
      if ([...codecSel.options].some((o) => o.value === want)) codecSel.value = want;
      const res = param('resolution');
      if (res && [...resSel.options].some((o) => o.value === res)) resSel.value = res;
      simulcast.checked = param('simulcast') === '1';
      trickle.checked = param('trickle') === '1';
    }
    function snippets() {
      const n = input.value.trim() || 'NAME';
      renderRecipes(n);
      $('watch-link').href = pageUrl('watch.html', n);
    }

    function fill(sel, devs, label) {
      const cur = sel.value;
      sel.innerHTML = '';
      sel.add(new Option('Default ' + label.toLowerCase(), ''));
      // Chromium also lists pseudo-devices 'default' and 'communications'; our '' entry is the default.
      devs.filter((d) => d.deviceId && d.deviceId !== 'default' && d.deviceId !== 'communications')
        .forEach((d, i) => sel.add(new Option(d.label || label + ' ' + (i + 1), d.deviceId)));
      if ([...sel.options].some((o) => o.value === cur)) sel.value = cur;
    }
    async function listDevices() {
      if (!md || !md.enumerateDevices) return;
      try {
        const devs = await md.enumerateDevices();
        fill(camSel, devs.filter((d) => d.kind === 'videoinput'), 'Camera');
        fill(micSel, devs.filter((d) => d.kind === 'audioinput'), 'Microphone');
      } catch (e) { /* ignore */ }
    }
    function videoConstraints() {
      const c = {};
      if (camSel.value) c.deviceId = { exact: camSel.value };
      const m = /^(\d+)x(\d+)$/.exec(resSel.value);
      if (m) { c.width = { ideal: +m[1] }; c.height = { ideal: +m[2] }; }
      return Object.keys(c).length ? c : true;
    }
    const audioConstraints = () => (micSel.value ? { deviceId: { exact: micSel.value } } : true);

    async function getMedia() {
      if (!md || !md.getUserMedia) {
        throw new Error('Camera access needs HTTPS or localhost (this page is not a secure context): ' +
          'serve the sfu over HTTPS (--tls-cert/--tls-key) or publish with OBS/ffmpeg (below).');
      }
      let err = null;
      const v = videoConstraints(), a = audioConstraints();
      for (const c of [{ video: v, audio: a }, { video: v, audio: false }, { video: false, audio: a }]) {
        try { return await md.getUserMedia(c); } catch (e) {
          err = e;
          if (e.name === 'NotAllowedError' || e.name === 'SecurityError') break;
        }
      }
      throw new Error('Cannot open camera/microphone: ' + (err.name || '') + ' ' + (err.message || ''));
    }
    function stopMedia() {
      if (media) media.getTracks().forEach((t) => t.stop());
      media = null;
      preview.srcObject = null;
      preview.hidden = true;
    }
    function teardown() {
      endSession(pc, loc);
      pc = null;
      loc = null;
    }
    function fail(msg) {
      teardown();
      S.state = 'failed';
      S.error = msg;
      setStatus(msg, 'err');
      $('start').disabled = false;
    }
    function selectUsedDevices(m) {
      for (const t of m.getTracks()) {
        const id = t.getSettings && t.getSettings().deviceId;
        const sel = t.kind === 'video' ? camSel : micSel;
        if (id && [...sel.options].some((o) => o.value === id)) sel.value = id;
      }
    }
    function addTracks(c, m) {
      for (const t of m.getTracks()) {
        const init = { direction: 'sendonly', streams: [m] };
        if (t.kind === 'video' && simulcast.checked) init.sendEncodings = SIMULCAST.map((e) => ({ ...e }));
        const tr = c.addTransceiver(t, init);
        if (t.kind === 'video' && codecSel.value) applyCodec(tr, codecSel.value);
      }
    }
    function onState(my, n, s) {
      if (my !== attempt) return;
      if (s === 'connected') { S.state = 'live'; setStatus('Live: ' + n, 'ok'); }
      else if (s === 'failed') fail('Connection failed (ICE/DTLS).');
      else if (s === 'disconnected') setStatus('Connection interrupted…', 'err');
    }

    async function start() {
      const n = input.value.trim();
      if (!n) { setStatus('Enter a stream name.', 'err'); return; }
      teardown();
      stopMedia();
      const my = ++attempt;
      setStreamParam(n);
      snippets();
      Object.assign(S, { state: 'connecting', error: null, status: null });
      $('start').disabled = true;
      setStatus('Opening camera…');
      try {
        const m = await getMedia();
        if (my !== attempt) { m.getTracks().forEach((t) => t.stop()); return; }
        media = m;
        preview.srcObject = m;
        preview.hidden = false;
        preview.play().catch(() => {});
        await listDevices();
        selectUsedDevices(m);
        const c = (pc = new RTCPeerConnection());
        sampler = statsSampler();
        addTracks(c, m);
        c.onconnectionstatechange = () => onState(my, n, c.connectionState);
        const tr = trickle.checked ? trickler(c) : null;
        setStatus('Connecting…');
        await c.setLocalDescription(await c.createOffer());
        if (!tr) await waitIce(c);
        if (my !== attempt) return;
        const r = await postSdp('/whip/' + enc(n), c.localDescription.sdp);
        if (my !== attempt) { del(r.location); return; }
        S.status = r.status;
        if (r.status !== 201) throw new Error('Server refused (' + r.status + '): ' + (r.body.trim() || 'no details'));
        loc = r.location;
        await c.setRemoteDescription({ type: 'answer', sdp: r.body });
        if (tr) tr.start(r.location, r.etag);
      } catch (e) {
        if (my === attempt) fail(e.message || String(e));
      }
    }

    function stop() {
      attempt++;
      teardown();
      stopMedia();
      Object.assign(S, { state: 'idle', error: null });
      setStatus('Stopped.');
      setText('stats', '');
      $('start').disabled = false;
    }

    async function switchDevice(kind) {
      if (!media || !pc) return;
      const sender = pc.getSenders().find((s) => s.track && s.track.kind === kind);
      if (!sender) return;
      try {
        const m = await md.getUserMedia(kind === 'video' ? { video: videoConstraints() } : { audio: audioConstraints() });
        const t = m.getTracks()[0];
        const old = sender.track;
        await sender.replaceTrack(t);
        media.removeTrack(old);
        old.stop();
        media.addTrack(t);
        if (kind === 'video') { preview.srcObject = null; preview.srcObject = media; }
      } catch (e) {
        setStatus('Cannot switch ' + kind + ': ' + e.message, 'err');
      }
    }

    setInterval(async () => {
      const c = pc;
      if (!c || busy || !loc) return;
      busy = true;
      let s = null;
      try { s = await sampler(c); } catch (e) { /* closed */ }
      busy = false;
      if (!s || c !== pc) return;
      const v = s.video || {};
      setText('stats',
        (v.frameWidth ? v.frameWidth + 'x' + v.frameHeight : 'no video') + ' · ' + fmtBps(s.bps) +
        (s.fps != null ? ' · ' + Math.round(s.fps) + ' fps' : '') +
        (s.rtt != null ? ' · RTT ' + Math.round(s.rtt * 1000) + ' ms' : '') +
        (s.codec ? ' · ' + s.codec : '') + (simulcast.checked ? ' · simulcast h/m/l' : ''));
    }, 1000);

    $('form').addEventListener('submit', (e) => { e.preventDefault(); start(); });
    $('stop').addEventListener('click', stop);
    camSel.addEventListener('change', () => switchDevice('video'));
    micSel.addEventListener('change', () => switchDevice('audio'));
    resSel.addEventListener('change', () => switchDevice('video'));
    input.addEventListener('input', snippets);
    if (md && md.addEventListener) md.addEventListener('devicechange', listDevices);
    window.addEventListener('pagehide', () => { teardown(); stopMedia(); });
    fromParams();
    snippets();
    listDevices();
    if (!md || !md.getUserMedia) {
      setStatus('This page is not a secure context (plain http:// from another machine), so the browser offers ' +
        'no camera: use HTTPS or localhost, or publish with the software below.', 'err');
      $('start').disabled = true;
    } else if (param('autostart') === '1') start();
    else setStatus('Pick devices and press “Go live”.');
  }

  window.SFU = { waitIce, postSdp, del, openWhep, parseLinks, statsSampler, fmtBps, copy, recipes };
  const page = document.body.dataset.page;
  if (page === 'index') initIndex();
  else if (page === 'watch') initWatch();
  else if (page === 'publish') initPublish();
})();
