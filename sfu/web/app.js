'use strict';
// Shared helpers and page logic for the SFU web UI (no build step, no external URLs).
// Each page sets <body data-page="index|watch|publish"> and loads this file last.
(function () {
  const $ = (id) => document.getElementById(id);
  const param = (n) => new URLSearchParams(location.search).get(n);
  const enc = encodeURIComponent;
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => '&#' + c.charCodeAt(0) + ';');
  const token = param('token');

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

  /** POST an SDP offer. Resolves to {status, body, location (absolute URL or null)}. */
  async function postSdp(url, sdp) {
    const u = withToken(url);
    const r = await fetch(u, {
      method: 'POST',
      headers: authHeaders({ 'Content-Type': 'application/sdp' }),
      body: sdp,
    });
    const body = await r.text();
    const loc = r.headers.get('Location');
    return { status: r.status, body, location: loc ? new URL(loc, u).href : null };
  }

  /** DELETE a session resource; survives page unload (keepalive). Never rejects. */
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

  // ---- stats ----

  /** Returns async fn(pc) -> {bps, rtt, video, codec}; bitrate from byte deltas over >= 1 s. */
  function statsSampler() {
    let prev = null;
    let bps = null;
    return async function (pc) {
      const rep = await pc.getStats();
      let bytes = 0, ts = 0, video = null, rtt = null, remoteRtt = null, pairId = null;
      rep.forEach((s) => {
        if (s.type === 'inbound-rtp' || s.type === 'outbound-rtp') {
          bytes += (s.type === 'inbound-rtp' ? s.bytesReceived : s.bytesSent) || 0;
          ts = Math.max(ts, s.timestamp);
          if (s.kind === 'video') video = s;
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
      const now = ts || performance.now();
      if (!prev) prev = { bytes, ts: now };
      else if (now - prev.ts >= 1000) {
        bps = Math.max(0, ((bytes - prev.bytes) * 8000) / (now - prev.ts));
        prev = { bytes, ts: now };
      }
      let codec = null;
      if (video && video.codecId && rep.get(video.codecId)) codec = rep.get(video.codecId).mimeType.split('/')[1];
      return { bps, rtt, video, codec };
    };
  }

  function fmtBps(b) {
    if (b == null) return '–';
    return b >= 1e6 ? (b / 1e6).toFixed(2) + ' Mbit/s' : Math.round(b / 1e3) + ' kbit/s';
  }

  // ---- UI helpers ----

  function fallbackCopy(text) {
    const t = document.createElement('textarea');
    t.value = text;
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
      btn.textContent = ok ? 'Copied' : 'Copy failed';
      setTimeout(() => { btn.textContent = btn.dataset.label; }, 1200);
    };
    if (navigator.clipboard && window.isSecureContext) {
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

  function setStatus(text, cls) {
    const el = $('status');
    if (!el) return;
    el.textContent = text;
    el.className = 'status' + (cls ? ' ' + cls : '');
  }
  function setText(id, text) { const el = $(id); if (el) el.textContent = text; }

  const whipUrl = (n) => location.origin + '/whip/' + enc(n);
  const whepUrl = (n) => location.origin + '/whep/' + enc(n);
  const tokenQuery = () => (token ? '?token=' + enc(token) : '');
  function obsSnippet(n) {
    return 'Service: WHIP\nServer: ' + whipUrl(n) + (token ? '\nBearer Token: ' + token : '');
  }
  function haSnippet(n) {
    return 'type: custom:webrtc-camera\nurl: webrtc:' + whepUrl(n) + tokenQuery();
  }
  function setStreamParam(n) {
    const p = new URLSearchParams(location.search);
    p.set('stream', n);
    history.replaceState(null, '', location.pathname + '?' + p.toString());
  }

  // ---- index page ----

  function initIndex() {
    const grid = $('streams');
    const empty = $('empty');
    const cards = new Map();
    let order = '';
    setText('obs-snippet', obsSnippet('NAME'));

    function card(s) {
      const el = document.createElement('div');
      el.className = 'card';
      const watch = '/watch.html?stream=' + enc(s.name) + (token ? '&token=' + enc(token) : '');
      el.innerHTML =
        '<h2>' + esc(s.name) + ' <span class="badge"></span></h2>' +
        '<div class="muted info"></div>' +
        '<div class="row"><code>' + esc(whepUrl(s.name)) + '</code></div>' +
        '<div class="row"><a class="btn" href="' + esc(watch) + '">Watch</a>' +
        '<button class="secondary" data-copy-text="' + esc(whepUrl(s.name) + tokenQuery()) +
        '">Copy WHEP URL</button></div>';
      return el;
    }

    async function poll() {
      try {
        const r = await fetch('/api/streams', { headers: authHeaders(), cache: 'no-store' });
        if (!r.ok) throw new Error('HTTP ' + r.status);
        const list = (await r.json()).slice().sort((a, b) => (a.name < b.name ? -1 : 1));
        const seen = new Set();
        for (const s of list) {
          seen.add(s.name);
          let el = cards.get(s.name);
          if (!el) { el = card(s); cards.set(s.name, el); }
          const badge = el.querySelector('.badge');
          badge.textContent = s.publisher;
          badge.className = 'badge ' + s.publisher;
          el.querySelector('.info').textContent =
            ((s.codecs || []).join(', ') || 'no codecs') + ' · ' + fmtBps(s.bitrate_in_bps) +
            ' · ' + s.viewers + ' viewer' + (s.viewers === 1 ? '' : 's');
        }
        for (const [n, el] of cards) if (!seen.has(n)) { el.remove(); cards.delete(n); }
        const o = list.map((s) => s.name).join('\n');
        if (o !== order) { order = o; for (const s of list) grid.appendChild(cards.get(s.name)); }
        empty.hidden = list.length > 0;
        empty.textContent = 'No live streams right now.';
        setText('updated', 'Updated ' + new Date().toLocaleTimeString());
      } catch (e) {
        setText('updated', 'Cannot reach the server (' + e.message + '), retrying…');
      }
      setTimeout(poll, 2000);
    }
    poll();
  }

  // ---- watch page (WHEP player) ----

  function initWatch() {
    const P = (window.sfuPlayer = { state: 'idle', framesDecoded: 0, width: 0, height: 0, ttffMs: null, error: null });
    const video = $('player');
    const input = $('stream');
    input.value = param('stream') || '';
    let pc = null, loc = null, retry = null, attempt = 0, t0 = 0, sampler = null, busy = false;

    function snippets() {
      const n = input.value.trim() || 'NAME';
      setText('whep-url', whepUrl(n) + tokenQuery());
      setText('ha-snippet', haSnippet(n));
      setText('obs-snippet', obsSnippet(n));
    }
    function teardown() {
      clearTimeout(retry);
      retry = null;
      endSession(pc, loc);
      pc = null;
      loc = null;
    }
    function fail(msg) {
      teardown();
      P.state = 'failed';
      P.error = msg;
      setStatus(msg, 'err');
    }

    async function start() {
      const n = input.value.trim();
      if (!n) { setStatus('Enter a stream name.', 'err'); return; }
      teardown();
      const my = ++attempt;
      setStreamParam(n);
      snippets();
      Object.assign(P, { state: 'connecting', framesDecoded: 0, ttffMs: null, error: null });
      setStatus('Connecting to ' + n + '…');
      video.srcObject = null;
      t0 = 0;
      const c = (pc = new RTCPeerConnection());
      sampler = statsSampler();
      c.addTransceiver('video', { direction: 'recvonly' });
      c.addTransceiver('audio', { direction: 'recvonly' });
      const ms = new MediaStream();
      c.ontrack = (e) => {
        ms.addTrack(e.track);
        if (video.srcObject !== ms) video.srcObject = ms;
        video.play().catch(() => {});
      };
      c.onconnectionstatechange = () => {
        if (my !== attempt) return;
        const s = c.connectionState;
        if (s === 'connected') { P.state = 'connected'; setStatus('Playing ' + n, 'ok'); }
        else if (s === 'failed') fail('Connection failed (ICE/DTLS).');
        else if (s === 'disconnected') setStatus('Connection interrupted…', 'err');
      };
      try {
        await c.setLocalDescription(await c.createOffer());
        await waitIce(c);
        if (my !== attempt) return;
        t0 = performance.now();
        const r = await postSdp('/whep/' + enc(n), c.localDescription.sdp);
        if (my !== attempt) { del(r.location); return; }
        if (r.status === 409) {
          c.close();
          pc = null;
          P.error = (r.body.trim() || 'No live publisher') + ' (409)';
          setStatus(P.error + ' — retrying every 2 s…', 'err');
          retry = setTimeout(start, 2000);
          return;
        }
        if (r.status !== 201) throw new Error('Server answered ' + r.status + ': ' + r.body.trim());
        loc = r.location;
        await c.setRemoteDescription({ type: 'answer', sdp: r.body });
        setStatus('Waiting for media…');
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
      setText('stats', '');
    }

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
      const v = s.video || {};
      P.framesDecoded = v.framesDecoded || 0;
      if (P.ttffMs == null && P.framesDecoded > 0 && t0) P.ttffMs = Math.round(performance.now() - t0);
      setText('stats',
        (P.width ? P.width + '×' + P.height : 'no video') + ' · ' + fmtBps(s.bps) +
        (v.framesPerSecond != null ? ' · ' + Math.round(v.framesPerSecond) + ' fps' : '') +
        ' · decoded ' + P.framesDecoded +
        (s.rtt != null ? ' · RTT ' + Math.round(s.rtt * 1000) + ' ms' : '') +
        (s.codec ? ' · ' + s.codec : '') +
        (P.ttffMs != null ? ' · first frame ' + P.ttffMs + ' ms' : ''));
    }, 250);

    $('form').addEventListener('submit', (e) => { e.preventDefault(); start(); });
    $('stop').addEventListener('click', stop);
    input.addEventListener('input', snippets);
    window.addEventListener('pagehide', teardown);
    snippets();
    if (input.value.trim()) start();
    else setStatus('Enter the name of a stream to watch.');
  }

  // ---- publish page (WHIP) ----

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
  /** Put `want` (H264|VP8) first on every video transceiver; keep the rest as fallbacks. */
  function applyCodec(pc, want) {
    for (const t of pc.getTransceivers()) {
      if (!t.sender.track || t.sender.track.kind !== 'video' || !t.setCodecPreferences) continue;
      for (const cls of [window.RTCRtpSender, window.RTCRtpReceiver]) {
        const caps = cls && cls.getCapabilities && cls.getCapabilities('video');
        const list = caps && orderedCodecs(caps.codecs, want);
        if (!list) continue;
        try { t.setCodecPreferences(list); break; } catch (e) { /* try the other capability list */ }
      }
    }
  }

  function initPublish() {
    const S = (window.sfuPublisher = { state: 'idle', error: null, status: null });
    const input = $('stream'), camSel = $('camera'), micSel = $('mic'), codecSel = $('codec'), preview = $('preview');
    input.value = param('stream') || 'cam';
    const pc0 = (param('codec') || '').toUpperCase();
    if ([...codecSel.options].some((o) => o.value === pc0)) codecSel.value = pc0;
    let pc = null, loc = null, media = null, attempt = 0, busy = false;
    const sampler = { fn: null };
    const md = navigator.mediaDevices;

    function snippets() {
      const n = input.value.trim() || 'NAME';
      setText('whip-url', whipUrl(n) + tokenQuery());
      setText('obs-snippet', obsSnippet(n));
      setText('whep-url', whepUrl(n) + tokenQuery());
      const a = $('watch-link');
      a.href = '/watch.html?stream=' + enc(n) + (token ? '&token=' + enc(token) : '');
    }

    function fill(sel, devs, label) {
      const cur = sel.value;
      sel.innerHTML = '';
      devs.forEach((d, i) => sel.add(new Option(d.label || label + ' ' + (i + 1), d.deviceId)));
      if (!devs.length) sel.add(new Option('None found', ''));
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
    const vc = () => (camSel.value ? { deviceId: { exact: camSel.value } } : true);
    const ac = () => (micSel.value ? { deviceId: { exact: micSel.value } } : true);

    async function getMedia() {
      if (!md || !md.getUserMedia) throw new Error('Camera access needs HTTPS or localhost (mediaDevices unavailable).');
      let err = null;
      for (const c of [{ video: vc(), audio: ac() }, { video: vc(), audio: false }, { video: false, audio: ac() }]) {
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
        preview.play().catch(() => {});
        await listDevices();
        for (const t of m.getTracks()) {
          const id = t.getSettings && t.getSettings().deviceId;
          const sel = t.kind === 'video' ? camSel : micSel;
          if (id && [...sel.options].some((o) => o.value === id)) sel.value = id;
        }
        const c = (pc = new RTCPeerConnection());
        sampler.fn = statsSampler();
        for (const t of m.getTracks()) c.addTransceiver(t, { direction: 'sendonly', streams: [m] });
        applyCodec(c, codecSel.value);
        c.onconnectionstatechange = () => {
          if (my !== attempt) return;
          const s = c.connectionState;
          if (s === 'connected') { S.state = 'live'; setStatus('Live: ' + n, 'ok'); }
          else if (s === 'failed') fail('Connection failed (ICE/DTLS).');
          else if (s === 'disconnected') setStatus('Connection interrupted…', 'err');
        };
        setStatus('Connecting…');
        await c.setLocalDescription(await c.createOffer());
        await waitIce(c);
        if (my !== attempt) return;
        const r = await postSdp('/whip/' + enc(n), c.localDescription.sdp);
        if (my !== attempt) { del(r.location); return; }
        S.status = r.status;
        if (r.status !== 201) throw new Error('Server refused (' + r.status + '): ' + (r.body.trim() || 'no details'));
        loc = r.location;
        await c.setRemoteDescription({ type: 'answer', sdp: r.body });
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
        const m = await md.getUserMedia(kind === 'video' ? { video: vc() } : { audio: ac() });
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
      try { s = await sampler.fn(c); } catch (e) { /* closed */ }
      busy = false;
      if (!s || c !== pc) return;
      const v = s.video || {};
      setText('stats',
        (v.frameWidth ? v.frameWidth + '×' + v.frameHeight : 'no video') + ' · ' + fmtBps(s.bps) +
        (v.framesPerSecond != null ? ' · ' + Math.round(v.framesPerSecond) + ' fps' : '') +
        (s.rtt != null ? ' · RTT ' + Math.round(s.rtt * 1000) + ' ms' : '') +
        (s.codec ? ' · ' + s.codec : ''));
    }, 1000);

    $('form').addEventListener('submit', (e) => { e.preventDefault(); start(); });
    $('stop').addEventListener('click', stop);
    camSel.addEventListener('change', () => switchDevice('video'));
    micSel.addEventListener('change', () => switchDevice('audio'));
    input.addEventListener('input', snippets);
    if (md && md.addEventListener) md.addEventListener('devicechange', listDevices);
    window.addEventListener('pagehide', teardown);
    snippets();
    listDevices();
    if (param('autostart') === '1') start();
    else setStatus('Pick devices and press “Go live”.');
  }

  window.SFU = { waitIce, postSdp, del, statsSampler, fmtBps, copy, applyCodec };
  const page = document.body.dataset.page;
  if (page === 'index') initIndex();
  else if (page === 'watch') initWatch();
  else if (page === 'publish') initPublish();
})();
