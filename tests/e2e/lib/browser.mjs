// tests/e2e/lib/browser.mjs — headless Chromium for the end-to-end tests.
//
// What lives here: launching Debian's chromium through playwright-core with
// the project's fixed flags, opening a page in its own browser context (own
// cookies and localStorage, so two pages are two independent users) while
// recording every WebSocket frame it sends and receives and every uncaught
// page error, bounded waits on page state and on recorded frames, and
// starting wshub on a given port (for the restart-on-the-same-port test).
//
// Ownership: the caller closes what it launches (browser.close() in an
// after hook); servers started here are Server objects from server.mjs and
// are stopped by the caller like any other.

import { chromium } from 'playwright-core';
import { spawnRaw, HOST, sleep } from './server.mjs';

export const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// Bound on every wait for something the page must do; a page that takes
// longer fails the test rather than hanging it. Not an assertion of speed.
export const UI_WAIT_MS = 8000;

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_ARGS,
    headless: true,
    timeout: 30000,
  });
}

// Opens url in a fresh context. Returns { context, page, log } where log
// holds { sockets: [url], sent: [{url, data}], received: [{url, data}],
// errors: [Error], console: [string] } for everything that page did.
export async function openPage(browser, url, opts = {}) {
  const context = await browser.newContext({
    viewport: opts.viewport ?? { width: 1200, height: 760 },
    deviceScaleFactor: opts.deviceScaleFactor ?? 1,
    isMobile: opts.isMobile ?? false,
    hasTouch: opts.isMobile ?? false,
    locale: 'en-US',
    timezoneId: 'UTC',
    colorScheme: 'light',
  });
  context.setDefaultTimeout(UI_WAIT_MS);
  context.setDefaultNavigationTimeout(UI_WAIT_MS);
  const page = await context.newPage();
  const log = { sockets: [], sent: [], received: [], errors: [], console: [] };
  page.on('websocket', (ws) => {
    log.sockets.push(ws.url());
    ws.on('framesent', (f) => log.sent.push({ url: ws.url(), data: f.payload }));
    ws.on('framereceived', (f) => log.received.push({ url: ws.url(), data: f.payload }));
  });
  page.on('pageerror', (e) => log.errors.push(e));
  page.on('console', (m) => log.console.push(`${m.type()}: ${m.text()}`));
  await page.goto(url, { waitUntil: 'load' });
  return { context, page, log };
}

// The JSON objects among frames (text frames that parse), in order.
export function jsonFrames(frames) {
  const out = [];
  for (const f of frames) {
    if (typeof f.data !== 'string') continue;
    try {
      out.push(JSON.parse(f.data));
    } catch { /* plain text frame */ }
  }
  return out;
}

// Waits until pred(parsedReceivedFrame) holds for some frame; returns it.
export async function waitForFrame(log, pred, what, ms = UI_WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const hit = jsonFrames(log.received).find(pred);
    if (hit) return hit;
    if (Date.now() > deadline) {
      const seen = log.received.slice(-12).map((f) => String(f.data).slice(0, 200));
      throw new Error(`timed out after ${ms} ms waiting for a frame: ${what}; ` +
        `last frames received:\n  ${seen.join('\n  ')}`);
    }
    await sleep(20);
  }
}

// Waits until fn(arg) is truthy in the page; on timeout the error carries a
// snapshot of #status and the visible messages so that failures explain
// themselves.
export async function until(page, fn, arg, what, ms = UI_WAIT_MS) {
  try {
    return await page.waitForFunction(fn, arg, { timeout: ms, polling: 25 });
  } catch (err) {
    let snap = '';
    try {
      snap = await page.evaluate(() => {
        const s = document.querySelector('#status');
        const items = [...document.querySelectorAll('#messages > *, body > div')]
          .slice(-15)
          .map((n) => `  [${n.dataset.type ?? ''} id=${n.dataset.id ?? ''} own=${n.dataset.own ?? ''}] ` +
            n.textContent.replace(/\s+/g, ' ').slice(0, 160));
        return `status: ${s ? JSON.stringify(s.textContent) : '(none)'}\n${items.join('\n')}`;
      });
    } catch { /* page gone */ }
    throw new Error(`timed out after ${ms} ms waiting for ${what}\n${snap}\n(${err.message.split('\n')[0]})`);
  }
}

// Starts wshub on exactly HOST:port serving pub (used to bring a server
// back on the port its clients know). Resolves once it reports listening;
// the bind may briefly fail while the old socket is released, so a failed
// start is retried a few times.
export async function startServerOnPort(pub, port, args = [], ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const srv = spawnRaw(['--host', HOST, '--port', String(port), '--public', pub, ...args]);
    const ok = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), Math.max(100, deadline - Date.now()));
      const check = () => {
        if (/listening on http:\/\//.test(srv.stderr)) {
          clearTimeout(timer);
          srv.proc.stderr.off('data', check);
          resolve(true);
        }
      };
      srv.proc.stderr.on('data', check);
      srv.exited.then(() => { clearTimeout(timer); resolve(false); });
      check();
    });
    if (ok) {
      srv.port = port;
      return srv;
    }
    await srv.stop();
    if (Date.now() > deadline) {
      throw new Error(`wshub did not start on port ${port} within ${ms} ms; stderr:\n${srv.tail()}`);
    }
    await sleep(200);
  }
}
