// Shared helpers for the headless-Chromium interop clients (playwright-core
// driving Debian's /usr/bin/chromium; no browser is ever downloaded).
import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export function parseArgs(argv, defaults) {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) { (out._ ||= []).push(a); continue; }
    const key = a.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out[key] = true;
    else { out[key] = next; i++; }
  }
  return out;
}

export function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }
export function log(...a) { process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${a.join(' ')}\n`); }

/** Resolve with the next line on stdin (the test's "go"). */
export function waitStdinLine() {
  return new Promise((resolve) => {
    const rl = readline.createInterface({ input: process.stdin });
    let done = false;
    const finish = (line) => { if (!done) { done = true; rl.close(); resolve(line); } };
    rl.once('line', finish);
    rl.once('close', () => finish(null));
  });
}

/**
 * Launch Chromium with a fresh user-data-dir (and HOME) that is removed on close.
 * `origin` (http://IP:PORT) is treated as a secure context so getUserMedia works
 * on a plain-HTTP, non-localhost page; `{ secure: false }` leaves it insecure, as a
 * browser on another machine of the LAN sees it. Unhandled promise rejections are
 * logged as console errors (so they count in consoleErrors).
 */
export async function launch(origin, extraArgs = [], { secure = true } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sfu-interop-chromium-'));
  const profile = path.join(dir, 'profile');
  fs.mkdirSync(profile);
  const args = [
    '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
    '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
    '--disable-dev-shm-usage', '--no-default-browser-check', '--disable-features=Translate,MediaRouter',
    ...(secure ? [`--unsafely-treat-insecure-origin-as-secure=${origin}`] : []),
    ...extraArgs,
  ];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args,
    env: { ...process.env, HOME: dir, XDG_CONFIG_HOME: path.join(dir, '.config'), XDG_CACHE_HOME: path.join(dir, '.cache') },
    timeout: 30000,
    viewport: { width: 1000, height: 800 },
  });
  await context.grantPermissions(['camera', 'microphone'], { origin }).catch(() => {});
  await context.addInitScript(() => {
    window.addEventListener('unhandledrejection', (e) => {
      const r = e.reason;
      console.error('unhandledrejection: ' + (r && r.message ? r.message : String(r)));
    });
  });
  const page = context.pages()[0] || (await context.newPage());
  const consoleErrors = [];
  const consoleLog = [];
  page.on('console', (m) => {
    const text = m.text();
    consoleLog.push(`${m.type()}: ${text}`);
    if (m.type() === 'error' && !/favicon\.ico/.test(text) && !/favicon\.ico/.test(m.location()?.url || '')) {
      consoleErrors.push(text);
    }
  });
  page.on('pageerror', (e) => consoleErrors.push('pageerror: ' + (e && e.message ? e.message : String(e))));
  page.on('crash', () => consoleErrors.push('page crashed'));
  const close = async () => {
    try { await context.close(); } catch (e) { log('close:', e.message); }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  return { context, page, consoleErrors, consoleLog, close };
}

/** Exit after a hard deadline whatever happens (keeps every test bounded). */
export function hardDeadline(ms, onExpire) {
  const t = setTimeout(async () => {
    try { await onExpire(); } finally { process.exit(3); }
  }, ms);
  t.unref();
}
