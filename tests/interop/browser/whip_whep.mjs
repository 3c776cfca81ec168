// The medooze `whip-whep` npm client library (WHIPClient / WHEPClient) in
// headless Chromium against the server: publish the fake camera and
// microphone with WHIPClient (trickle ICE by PATCH), play it with WHEPClient
// in the same page, ICE-restart both through the library's restart()
// (PATCH with `If-Match: "*"` → 200 + sdpfrag + new ETag), check that media
// keeps flowing over the new ICE credentials, then stop() both (DELETE).
//
// usage: node whip_whep.mjs --base http://IP:8080 --stream NAME [--timeout S]
//
// The library files are served to the page from node_modules/whip-whep under
// the server's origin (`/__whip-whep/...`, answered by Playwright's request
// routing; nothing else is intercepted: every WHIP/WHEP request reaches the
// server). Prints {"event":"live"} once both sessions decode, then one
// {"event":"result", ok, http: [...], before, after, ...} line.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { emit, hardDeadline, launch, log, parseArgs } from './common.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const LIB = path.join(HERE, 'node_modules', 'whip-whep');

const a = parseArgs(process.argv.slice(2), { timeout: '20' });
if (!a.base || !a.stream) { console.error('need --base and --stream'); process.exit(2); }
const base = a.base.replace(/\/$/, '');
const origin = new URL(base).origin;
const timeout = Number(a.timeout) * 1000;

const PAGE = `<!doctype html><meta charset="utf-8"><title>whip-whep</title>
<video id="v" autoplay muted playsinline></video>
<script type="module">
import { WHIPClient } from './whip.js';
import { WHEPClient } from './whep.js';
window.WHIPClient = WHIPClient;
window.WHEPClient = WHEPClient;
window.libReady = true;
</script>`;

let b = null;
const result = { event: 'result', client: 'chromium-whip-whep', ok: false, http: [] };
hardDeadline(60000 + 6 * timeout, async () => {
  result.error = 'hard deadline';
  emit(result);
  if (b) await b.close();
});

// Snapshot of both peer connections: states, ICE ufrags, decoded frames and
// the ufrag of the ICE transport actually in use (Chromium's transport stats).
const snapshot = () => b.page.evaluate(async () => {
  const ufrag = (sdp) => (sdp && (sdp.match(/a=ice-ufrag:(.*)\r\n/) || [])[1]) || null;
  const one = async (s) => {
    if (!s) return null;
    const out = {
      connection: s.pc.connectionState, ice: s.pc.iceConnectionState,
      localUfrag: ufrag(s.pc.localDescription && s.pc.localDescription.sdp),
      remoteUfrag: ufrag(s.pc.remoteDescription && s.pc.remoteDescription.sdp),
    };
    const stats = await s.pc.getStats();
    stats.forEach((r) => {
      if (r.type === 'transport') {
        out.transportLocalUfrag = r.iceLocalUsernameFragment;
        out.transportState = r.iceState;
      }
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        Object.assign(out, { framesDecoded: r.framesDecoded || 0, width: r.frameWidth, height: r.frameHeight });
      }
      if (r.type === 'inbound-rtp' && r.kind === 'audio') out.audioPackets = r.packetsReceived || 0;
      if (r.type === 'outbound-rtp' && r.kind === 'video') out.framesSent = r.framesSent || 0;
    });
    return out;
  };
  return { pub: await one(window.pub), play: await one(window.play) };
});

async function until(what, pred, ms) {
  const end = Date.now() + ms;
  let s;
  while (Date.now() < end) {
    s = await snapshot();
    if (pred(s)) return s;
    await b.page.waitForTimeout(100);
  }
  throw new Error(`${what} within ${ms} ms; last ${JSON.stringify(s)}`);
}

try {
  b = await launch(origin);
  const { page, context } = b;
  await context.route(`${origin}/__whip-whep/**`, async (route) => {
    const name = new URL(route.request().url()).pathname.split('/').pop();
    if (name === 'index.html') return route.fulfill({ contentType: 'text/html', body: PAGE });
    if (name === 'whip.js' || name === 'whep.js') {
      return route.fulfill({ contentType: 'text/javascript', body: fs.readFileSync(path.join(LIB, name)) });
    }
    return route.fulfill({ status: 404, body: 'not found' });
  });
  page.on('response', (r) => {
    const q = r.request();
    const u = new URL(q.url());
    if (u.pathname.startsWith('/__whip-whep/')) return;
    const h = q.headers();
    result.http.push({
      method: q.method(), path: u.pathname, status: r.status(),
      contentType: h['content-type'] || null, ifMatch: h['if-match'] || null,
      etag: r.headers().etag || null, body: q.method() === 'PATCH' ? q.postData() : undefined,
    });
  });

  await page.goto(`${origin}/__whip-whep/index.html`, { waitUntil: 'domcontentloaded', timeout: 15000 });
  await page.waitForFunction(() => window.libReady === true, null, { timeout: 10000 });

  const t0 = Date.now();
  await page.evaluate(async (url) => {
    const media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    const pc = new RTCPeerConnection();
    for (const t of media.getTracks()) pc.addTransceiver(t, { direction: 'sendonly', streams: [media] });
    const whip = new window.WHIPClient();
    window.pub = { pc, whip };
    await whip.publish(pc, url);
  }, `${base}/whip/${encodeURIComponent(a.stream)}`);
  await until('publisher connected', (s) => s.pub.connection === 'connected', timeout);
  log('publisher connected in', Date.now() - t0, 'ms');

  const t1 = Date.now();
  await page.evaluate(async (url) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (e) => {
      if (e.track.kind === 'video') document.getElementById('v').srcObject = new MediaStream([e.track]);
    };
    const whep = new window.WHEPClient();
    window.play = { pc, whep };
    await whep.view(pc, url);
  }, `${base}/whep/${encodeURIComponent(a.stream)}`);
  const live = await until('viewer decoding 30 frames',
    (s) => s.play.connection === 'connected' && s.play.framesDecoded >= 30, timeout);
  result.playMs = Date.now() - t1;
  emit({ event: 'live', ms: Date.now() - t0 });
  result.before = live;

  // ICE restart of both sessions through the library (PATCH If-Match "*").
  await page.evaluate(async () => {
    await window.pub.whip.restart();
    await window.play.whep.restart();
  });
  const restarted = await until('new remote ICE credentials on both sessions',
    (s) => s.pub.remoteUfrag !== live.pub.remoteUfrag && s.play.remoteUfrag !== live.play.remoteUfrag, timeout);
  log('restarted:', JSON.stringify(restarted));
  // Media over the new ICE session: both transports use the new local ufrag
  // (when Chromium reports it) and the viewer decodes 30 more frames.
  result.after = await until('media after the ICE restart', (s) =>
    s.pub.connection === 'connected' && s.play.connection === 'connected'
      && s.play.framesDecoded >= live.play.framesDecoded + 30
      && [s.pub, s.play].every((x) => x.transportLocalUfrag === undefined || x.transportLocalUfrag === x.localUfrag),
  timeout);

  await page.evaluate(async () => {
    await window.play.whep.stop();
    await window.pub.whip.stop();
  });
  await page.waitForTimeout(300);
} catch (e) {
  result.error = (result.error ? result.error + '; ' : '') + (e && e.message ? e.message : String(e));
}
if (b) {
  result.consoleErrors = b.consoleErrors;
  result.ok = !result.error && b.consoleErrors.length === 0;
  if (!result.ok) result.consoleLog = b.consoleLog.slice(-30);
  await b.close();
}
emit(result);
process.exit(result.ok ? 0 : 1);
