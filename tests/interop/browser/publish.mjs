// Headless Chromium WHIP publisher through the server's own /publish.html page
// (Chromium's fake camera and microphone).
//
// usage: node publish.mjs --base http://IP:8080 --stream NAME [--duration S] [--timeout S] [--codec H264|VP8|VP9|AV1]
//        [--query 'simulcast=1&trickle=1&resolution=1280x720'] (more publish-page parameters)
//
// Opens /publish.html?stream=NAME&autostart=1, waits for
// window.sfuPublisher.state === 'live' (prints {"event":"live"}), keeps
// publishing for --duration seconds, stops and prints {"event":"result", ...}.
import { emit, hardDeadline, launch, log, parseArgs } from './common.mjs';

const a = parseArgs(process.argv.slice(2), { duration: '20', timeout: '15' });
if (!a.base || !a.stream) { console.error('need --base and --stream'); process.exit(2); }
const base = a.base.replace(/\/$/, '');
const origin = new URL(base).origin;
const duration = Number(a.duration) * 1000;
const timeout = Number(a.timeout) * 1000;

let b = null;
const result = { event: 'result', client: 'chromium-publisher', ok: false };
hardDeadline(60000 + duration + timeout, async () => {
  result.error = 'hard deadline';
  emit(result);
  if (b) await b.close();
});

try {
  b = await launch(origin);
  const { page } = b;
  let url = `${base}/publish.html?stream=${encodeURIComponent(a.stream)}&autostart=1`;
  if (a.codec) url += `&codec=${encodeURIComponent(a.codec)}`;
  if (a.query) url += `&${a.query}`;
  log('goto', url);
  const t0 = Date.now();
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 15000 });
  const live = await page
    .waitForFunction(() => window.sfuPublisher && ['live', 'failed'].includes(window.sfuPublisher.state), null,
      { timeout, polling: 50 })
    .then(() => true, (e) => { result.error = 'not live: ' + e.message.split('\n')[0]; return false; });
  let S = await page.evaluate(() => ({ ...window.sfuPublisher }));
  if (live && S.state === 'live') {
    const settings = await page.evaluate(() => {
      const v = document.getElementById('preview');
      const s = v && v.srcObject;
      const t = s && s.getVideoTracks()[0];
      return t ? t.getSettings() : null;
    });
    emit({ event: 'live', ms: Date.now() - t0, status: S.status, camera: settings });
    const end = Date.now() + duration;
    while (Date.now() < end) {
      await page.waitForTimeout(Math.min(500, end - Date.now()));
      S = await page.evaluate(() => ({ ...window.sfuPublisher }));
      if (S.state !== 'live') { result.error = 'publisher left live state: ' + S.state + ' ' + S.error; break; }
    }
  } else if (!result.error) {
    result.error = 'publisher failed: ' + S.error;
  }
  const statsText = await page.evaluate(() => (document.getElementById('stats') || {}).textContent || '');
  Object.assign(result, { state: S.state, status: S.status, publisherError: S.error, stats: statsText });
  await page.goto('about:blank').catch(() => {});  // pagehide → DELETE
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
