// Headless Chromium walk through the server's web UI, with a stream already live.
//
// usage: node web.mjs --base http://IP:8080 --stream LIVE --publish-stream NAME --shots DIR [--width W --height H]
//
// 1. A browser that does NOT treat the origin as secure (as a phone on the LAN sees
//    http://IP:8080): index.html (the live stream's card, preview playing, viewer
//    count, copy buttons), watch.html?stream=LIVE (decoded video, stats panel,
//    no layer picker, settings for other software, a copy button), watch.html again
//    with a layer-extension Link added to the answer (picker shown; POST/DELETE), watch.html for
//    a stream that is not live (waits, no error), publish.html
//    (no camera API: a hint, no error).
// 2. A browser that treats it as secure: publish.html goes live with the fake
//    camera, trickle ICE on.
// Every page must log no console error, page error or unhandled rejection.
// Screenshots: DIR/{index,watch,watch-layers,publish,publish-insecure}.png. Prints one
// {"event":"result", ok, pages, problems} line; exit 0 iff ok.
import fs from 'node:fs';
import path from 'node:path';
import { emit, hardDeadline, launch, log, parseArgs } from './common.mjs';

const a = parseArgs(process.argv.slice(2), { width: '640', height: '360', publishStream: 'webpub' });
if (!a.base || !a.stream || !a.shots) { console.error('need --base, --stream and --shots'); process.exit(2); }
const base = a.base.replace(/\/$/, '');
const origin = new URL(base).origin;
const live = a.stream;
const size = `${a.width}x${a.height}`;
fs.mkdirSync(a.shots, { recursive: true });

const result = { event: 'result', client: 'chromium-web', ok: false, pages: {}, problems: [] };
const browsers = [];
hardDeadline(150000, async () => {
  result.problems.push('hard deadline');
  emit(result);
  for (const b of browsers) await b.close();
});

const check = (page, cond, msg) => { if (!cond) result.problems.push(`${page}: ${msg}`); return !!cond; };
const wait = (page, fn, arg, ms, what) =>
  page.waitForFunction(fn, arg, { timeout: ms, polling: 100 }).then(() => true, () => false)
    .then((ok) => { if (!ok) result.problems.push(`timeout: ${what}`); return ok; });

/** Load `url` in browser `b` (after `setup(page)`, if given), run `fn(page)`, screenshot it,
 *  record its console errors. */
async function visit(b, name, url, fn, setup) {
  const before = b.consoleErrors.length;
  const t0 = Date.now();
  log('goto', url);
  let info = {};
  try {
    if (setup) await setup(b.page);
    await b.page.goto(url, { waitUntil: 'domcontentloaded', timeout: 15000 });
    info = (await fn(b.page)) || {};
  } catch (e) {
    result.problems.push(`${name}: ${e.message.split('\n')[0]}`);
  }
  await b.page.unrouteAll({ behavior: 'ignoreErrors' }).catch(() => {});
  await b.page.screenshot({ path: path.join(a.shots, `${name}.png`), fullPage: true }).catch((e) => {
    result.problems.push(`${name}: screenshot: ${e.message}`);
  });
  const errors = b.consoleErrors.slice(before);
  for (const e of errors) result.problems.push(`${name}: console/page error: ${e}`);
  result.pages[name] = { ms: Date.now() - t0, consoleErrors: errors, ...info };
}

/** Poll a Node-side condition every 50 ms for up to `ms`. */
async function until(cond, ms) {
  for (const end = Date.now() + ms; !cond() && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
  return cond();
}

const text = (page, sel) => page.$eval(sel, (e) => e.textContent.trim()).catch(() => null);

async function indexPage(page) {
  const card = `.stream[data-stream="${live}"]`;
  if (!(await wait(page, (s) => !!document.querySelector(s), card, 10000, `index: card for ${live}`))) return {};
  await wait(page, (s) => {
    const v = document.querySelector(s + ' video');
    return v && v.videoWidth > 0 && v.currentTime > 0;
  }, card, 15000, 'index: preview playing');
  await wait(page, (s) => /^[1-9]\d* viewers?$/.test(document.querySelector(s + ' .viewers').textContent), card,
    8000, 'index: viewer count >= 1 (the preview itself)');
  const info = await page.$eval(card, (el) => ({
    title: el.querySelector('h2').textContent,
    info: el.querySelector('.info').textContent,
    viewers: el.querySelector('.viewers').textContent,
    previewWidth: el.querySelector('video').videoWidth,
    previewHeight: el.querySelector('video').videoHeight,
    copy: [...el.querySelectorAll('[data-copy-text]')].map((b) => b.dataset.copyText),
    links: [...el.querySelectorAll('a')].map((x) => x.getAttribute('href')),
  }));
  check('index', info.copy.includes(`${base}/whep/${live}`), `Copy WHEP URL button: ${info.copy}`);
  check('index', info.copy.includes(`${base}/whip/${live}`), `Copy WHIP URL button: ${info.copy}`);
  check('index', info.links.some((h) => h === `/watch.html?stream=${live}`), `watch link: ${info.links}`);
  check('index', `${info.previewWidth}x${info.previewHeight}` === size, `preview ${info.previewWidth}x${info.previewHeight}`);
  check('index', /bit\/s/.test(info.info) && /h264/i.test(info.info), `info line: ${info.info}`);
  info.recipes = await page.$$eval('#recipes pre, #recipes code', (els) => els.length);
  check('index', info.recipes >= 8, `settings snippets: ${info.recipes}`);
  return info;
}

async function watchPage(page) {
  const ok = await wait(page, () => {
    const P = window.sfuPlayer;
    return P && (P.state === 'failed' || (P.framesDecoded > 0 && P.width > 0 && P.ttffMs != null));
  }, null, 10000, 'watch: decoded frame');
  const first = await page.evaluate(() => ({ ...window.sfuPlayer }));
  check('watch', ok && first.state !== 'failed', `player: ${JSON.stringify(first)}`);
  // The panel redraws every second; give bitrate (a 1 s delta) and fps time to appear.
  await wait(page, () => ['stat-bitrate', 'stat-fps', 'stat-rtt', 'stat-jitter']
    .every((id) => document.getElementById(id).textContent !== '–'), null, 6000, 'watch: stats panel filled');
  const stats = await page.$$eval('#stats dd', (dds) => Object.fromEntries(dds.map((d) => [d.id, d.textContent])));
  check('watch', stats['stat-resolution'] === size, `resolution ${stats['stat-resolution']}`);
  check('watch', /^\d+ fps$/.test(stats['stat-fps']), `fps ${stats['stat-fps']}`);
  check('watch', /H264/i.test(stats['stat-codec']), `codec ${stats['stat-codec']}`);
  check('watch', /bit\/s$/.test(stats['stat-bitrate']), `bitrate ${stats['stat-bitrate']}`);
  check('watch', /^\d+ ms$/.test(stats['stat-rtt']), `rtt ${stats['stat-rtt']}`);
  check('watch', /packets/.test(stats['stat-loss']), `loss ${stats['stat-loss']}`);
  check('watch', /^\d+ ms$/.test(stats['stat-jitter']), `jitter buffer ${stats['stat-jitter']}`);
  check('watch', stats['stat-ttff'] === `${first.ttffMs} ms`, `ttff ${stats['stat-ttff']} vs ${first.ttffMs}`);
  const P = await page.evaluate(() => ({ ...window.sfuPlayer }));
  check('watch', P.framesDecoded > first.framesDecoded, `frames not advancing: ${first.framesDecoded} -> ${P.framesDecoded}`);
  // Our server does not advertise the WHEP layer extension: the picker stays hidden.
  const layersHidden = !(await page.locator('#layers').isVisible());
  check('watch', layersHidden, 'layer picker shown without a layer Link');
  const links = await page.evaluate((b) => window.SFU.parseLinks(
    '<stun:10.0.0.1:3478>; rel="ice-server", </whep/x/s1/layer>; rel="urn:ietf:params:whep:ext:core:layer"', b), base);
  check('watch', links.length === 2 && links[1].url === `${new URL(base).origin}/whep/x/s1/layer`,
    `parseLinks: ${JSON.stringify(links)}`);
  const snippets = await snippetTexts(page);
  const whip = `${base}/whip/${live}`, whep = `${base}/whep/${live}`;
  const want = {
    'whip-url': whip, 'whep-url': whep, 'snippet-obs': `Service: WHIP\nServer: ${whip}`,
    'snippet-ffmpeg': `-f whip ${whip}`, 'snippet-gstreamer': `whipclientsink signaller::whip-endpoint=${whip}`,
    'snippet-whip-ingest': `--url ${whip}`, 'snippet-ha-card': `url: webrtc:${whep}`,
    'snippet-go2rtc': `${live}: webrtc:${whep}`,
  };
  for (const [id, s] of Object.entries(want)) check('watch', (snippets[id] || '').includes(s), `${id}: ${snippets[id]}`);
  const copied = await clickCopy(page, 'whep-url');
  return { player: P, stats, layersHidden, copied, snippets: Object.keys(snippets).length };
}

// The WHEP layer extension, which our server does not offer yet: the test adds the Link
// header to the real answer and plays the layer endpoint itself.
const layerCalls = [];
async function addLayerLink(page) {
  await page.route('**/whep/*', async (route) => {
    if (route.request().method() !== 'POST') return route.continue();
    const resp = await route.fetch();
    const link = [resp.headers().link, '</layer-test>; rel="urn:ietf:params:whep:ext:core:layer"']
      .filter(Boolean).join(', ');
    await route.fulfill({ response: resp, headers: { ...resp.headers(), link } });
  });
  await page.route('**/layer-test', async (route) => {
    const r = route.request();
    layerCalls.push({ method: r.method(), body: r.postData(), auth: r.headers().authorization || null });
    await route.fulfill({ status: 204 });
  });
}

async function layerPickerPage(page) {
  const shown = await wait(page, () => {
    const l = document.getElementById('layers');
    return l && !l.hidden && window.sfuPlayer.framesDecoded > 0;
  }, null, 10000, 'watch-layers: picker shown for a layer Link');
  if (!shown) return {};
  check('watch-layers', await page.locator('#layers').isVisible(), 'picker not visible');
  await page.selectOption('#layer', 'm');
  await until(() => layerCalls.length >= 1, 3000);
  await page.selectOption('#layer', 'auto');
  await until(() => layerCalls.length >= 2, 3000);
  const [pick, auto] = layerCalls;
  const body = pick && pick.body ? JSON.parse(pick.body) : {};
  check('watch-layers', pick && pick.method === 'POST' && body.rid === 'm' && body.mediaId != null,
    `layer POST: ${JSON.stringify(pick)}`);
  check('watch-layers', auto && auto.method === 'DELETE', `auto: ${JSON.stringify(auto)}`);
  const status = await text(page, '#status');
  check('watch-layers', !/refused|failed/i.test(status), `status ${status}`);
  return { layerCalls, status };
}

/** A stream that is not live: the player waits (no 409 logged as a failed request). */
async function waitingPage(page) {
  await wait(page, () => /not live yet/.test(document.getElementById('status').textContent), null, 5000,
    'watch-waiting: waiting status');
  await page.waitForTimeout(2500);  // one retry round
  const P = await page.evaluate(() => ({ ...window.sfuPlayer }));
  check('watch-waiting', P.state === 'connecting' && P.error === 'not live', `player ${JSON.stringify(P)}`);
  return { status: await text(page, '#status') };
}

async function snippetTexts(page) {
  return page.$$eval('#recipes [id]', (els) => Object.fromEntries(els.map((e) => [e.id, e.textContent])));
}

/** Click the copy button of element `id`; its label must say "Copied". */
async function clickCopy(page, id) {
  const btn = page.locator(`[data-copy="${id}"]`);
  await btn.click();
  const label = await btn.textContent();
  check(page.url().includes('watch') ? 'watch' : 'publish', label === 'Copied', `copy button says ${label}`);
  return label;
}

const optionValues = (page, id) => page.$$eval(`#${id} option`, (os) => os.map((o) => o.value));

async function publishInsecurePage(page) {
  const status = await text(page, '#status');
  check('publish-insecure', /secure context/.test(status), `status: ${status}`);
  const codecs = await optionValues(page, 'codec');
  check('publish-insecure', codecs.includes('H264') && codecs.includes('VP8') &&
    codecs.every((c) => ['H264', 'VP8', 'VP9', 'AV1'].includes(c)), `codecs ${codecs}`);
  const simulcast = await page.$eval('#simulcast', (e) => e.checked);
  check('publish-insecure', !simulcast, 'simulcast on by default');
  const copied = await clickCopy(page, 'snippet-obs');
  return { status, codecs, copied };
}

async function publishPage(page) {
  const ok = await wait(page, () => window.sfuPublisher && ['live', 'failed'].includes(window.sfuPublisher.state),
    null, 15000, 'publish: live');
  const S = await page.evaluate(() => ({ ...window.sfuPublisher }));
  check('publish', ok && S.state === 'live', `publisher: ${JSON.stringify(S)}`);
  await wait(page, () => /\d+x\d+ .*bit\/s/.test(document.getElementById('stats').textContent), null, 6000,
    'publish: stats line');
  const info = {
    state: S.state,
    stats: await text(page, '#stats'),
    cameras: await optionValues(page, 'camera'),
    mics: await optionValues(page, 'mic'),
    codecs: await optionValues(page, 'codec'),
    resolutions: await optionValues(page, 'resolution'),
    trickle: await page.$eval('#trickle', (e) => e.checked),
    simulcast: await page.$eval('#simulcast', (e) => e.checked),
  };
  check('publish', info.cameras.length >= 2 && info.mics.length >= 2, `devices ${info.cameras} / ${info.mics}`);
  check('publish', info.trickle && !info.simulcast, `options trickle=${info.trickle} simulcast=${info.simulcast}`);
  info.api = await page.evaluate(async (n) => (await (await fetch('/api/streams/' + n)).json()), a.publishStream);
  check('publish', info.api.publisher === 'live', `/api/streams/${a.publishStream}: ${JSON.stringify(info.api)}`);
  const snippets = await snippetTexts(page);
  check('publish', snippets['whip-url'] === `${base}/whip/${a.publishStream}`, `whip-url ${snippets['whip-url']}`);
  return info;
}

try {
  const insecure = await launch(origin, [], { secure: false });
  browsers.push(insecure);
  await visit(insecure, 'index', `${base}/`, indexPage);
  await visit(insecure, 'watch', `${base}/watch.html?stream=${encodeURIComponent(live)}`, watchPage);
  await visit(insecure, 'watch-layers', `${base}/watch.html?stream=${encodeURIComponent(live)}`, layerPickerPage,
    addLayerLink);
  await visit(insecure, 'watch-waiting', `${base}/watch.html?stream=notyet`, waitingPage);
  await visit(insecure, 'publish-insecure', `${base}/publish.html?stream=${encodeURIComponent(a.publishStream)}`,
    publishInsecurePage);
  await insecure.page.goto('about:blank').catch(() => {});  // pagehide → DELETE

  const secure = await launch(origin);
  browsers.push(secure);
  await visit(secure, 'publish',
    `${base}/publish.html?stream=${encodeURIComponent(a.publishStream)}&trickle=1&autostart=1`, publishPage);
  await secure.page.goto('about:blank').catch(() => {});
  await secure.page.waitForTimeout(300);
} catch (e) {
  result.problems.push(e && e.message ? e.message : String(e));
}
for (const b of browsers) {
  if (result.problems.length) result.consoleLog = (result.consoleLog || []).concat(b.consoleLog.slice(-30));
  await b.close();
}
result.ok = result.problems.length === 0;
emit(result);
process.exit(result.ok ? 0 : 1);
