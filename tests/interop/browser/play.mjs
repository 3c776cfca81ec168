// Headless Chromium WHEP viewer through the server's own /watch.html page.
//
// usage: node play.mjs --base http://IP:8080 --stream NAME [--duration S] [--timeout S] [--wait-go] [--query 'token=T']
//        [--switch-layer RID [--switch-at S]]
//
// Opens /watch.html?stream=NAME, waits for window.sfuPlayer.framesDecoded > 0
// (and a known video size), keeps watching for --duration seconds, then prints
// {"event":"result", width, height, ttffMs, framesDecoded, ...}. ttffMs is the
// page's own POST → first presented frame time. Exit status 0 iff frames were
// decoded and the page logged no console error.
import { emit, hardDeadline, launch, log, parseArgs, waitStdinLine } from './common.mjs';

const a = parseArgs(process.argv.slice(2), { duration: '5', timeout: '10' });
if (!a.base || !a.stream) { console.error('need --base and --stream'); process.exit(2); }
const base = a.base.replace(/\/$/, '');
const origin = new URL(base).origin;
const duration = Number(a.duration) * 1000;
const timeout = Number(a.timeout) * 1000;

let b = null;
const result = { event: 'result', client: 'chromium', ok: false, width: 0, height: 0, ttffMs: null, framesDecoded: 0 };
hardDeadline(60000 + duration + timeout, async () => {
  result.error = 'hard deadline';
  if (b) result.consoleErrors = b.consoleErrors;
  emit(result);
  if (b) await b.close();
});

try {
  b = await launch(origin);
  const { page } = b;
  // Open the player page without a stream before "ready", then at "go" type
  // the stream name and press Watch, as a person would: Chromium starts the
  // page's renderer (≈ 1 CPU-s) while the test waits, not at "go", where on a
  // 2-core machine it competed with the other viewers started at that moment.
  const url = `${base}/watch.html` + (a.query ? `?${a.query}` : '');
  log('goto', url);
  await page.goto(url, { waitUntil: 'load', timeout: 15000 });
  await page.waitForFunction(() => window.sfuPlayer && window.sfuPlayer.state === 'idle', null, { timeout: 15000 });
  emit({ event: 'ready' });
  if (a.waitGo) log('stdin:', (await waitStdinLine()) ?? '<eof>');
  await page.fill('#stream', a.stream);
  await page.click('#start');
  const t0 = Date.now();
  const got = await page
    .waitForFunction(
      () => {
        const P = window.sfuPlayer;
        return P && (P.state === 'failed' || (P.framesDecoded > 0 && P.width > 0 && P.ttffMs != null));
      },
      null,
      { timeout, polling: 50 },
    )
    .then(() => true, (e) => { result.error = 'no decoded frame: ' + e.message.split('\n')[0]; return false; });
  const first = await page.evaluate(() => ({ ...window.sfuPlayer }));
  log('first:', JSON.stringify(first));
  if (first.state === 'failed') result.error = 'player failed: ' + first.error;
  emit({ event: 'first-frame', ttff_ms: first.ttffMs, width: first.width, height: first.height });
  if (got && first.state !== 'failed') {
    // Sample the picture size every 250 ms; with --switch-layer RID pick that
    // simulcast layer in the page's layer picker (WHEP layer extension)
    // --switch-at seconds after the first frame.
    let switchAt = a.switchLayer ? t0 + Number(a.switchAt || 2) * 1000 : Infinity;
    result.timeline = [];
    while (Date.now() - t0 < duration) {
      if (Date.now() >= switchAt) {
        result.beforeSwitch = await page.evaluate(() => ({ ...window.sfuPlayer }));
        await page.selectOption('#layer', a.switchLayer, { timeout: 5000 });
        log('switched layer to', a.switchLayer);
        result.switchedAtMs = Date.now() - t0;
        switchAt = Infinity;
      }
      const s = await page.evaluate(() => [window.sfuPlayer.width, window.sfuPlayer.height,
        window.sfuPlayer.framesDecoded, window.sfuPlayer.freezeCount || 0]);
      result.timeline.push([Date.now() - t0, ...s]);
      await page.waitForTimeout(250);
    }
  }
  const P = await page.evaluate(() => ({ ...window.sfuPlayer }));
  const statsText = await page.evaluate(() => ((document.getElementById('stats') || {}).textContent || '')
    .replace(/\s+/g, ' ').trim());
  Object.assign(result, {
    width: P.width, height: P.height, ttffMs: P.ttffMs ?? first.ttffMs, framesDecoded: P.framesDecoded,
    state: P.state, playerError: P.error, stats: statsText, firstWidth: first.width, firstHeight: first.height,
    freezeCount: P.freezeCount, freezeSeconds: P.freezeSeconds, framesDropped: P.framesDropped, pliCount: P.pliCount,
    events: P.events, viewerCount: P.viewerCount,
  });
  // The watch page DELETEs its session on pagehide; navigate away to trigger it.
  await page.goto('about:blank').catch(() => {});
  await page.waitForTimeout(300);
} catch (e) {
  result.error = (result.error ? result.error + '; ' : '') + (e && e.message ? e.message : String(e));
}
if (b) {
  result.consoleErrors = b.consoleErrors;
  result.ok = result.framesDecoded > 0 && result.width > 0 && b.consoleErrors.length === 0 && !result.error;
  if (!result.ok) result.consoleLog = b.consoleLog.slice(-30);
  await b.close();
}
emit(result);
process.exit(result.ok ? 0 : 1);
