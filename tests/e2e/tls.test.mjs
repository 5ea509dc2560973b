// tests/e2e/tls.test.mjs — wshub over TLS (--tls-cert, --tls-key,
// --tls-port): https static files (exact bytes, HEAD, 304, a file streamed in
// chunks), wss chat between clients, the HTTP chat transports over https,
// TLS 1.2 suites and refused renegotiation,
// plain and TLS listeners side by side, a 1 MiB echo, a slow consumer, what
// is refused (TLS 1.1, plain HTTP and garbage on the TLS port: closed, nobody
// else affected), start-up errors for bad certificate and key files, SIGHUP
// reloading the certificate without dropping connections (and a failed
// reload keeping the old one), and the chat page in headless Chromium over
// https/wss.
//
// Certificates are made by the real `openssl` CLI into a temporary
// directory (self-signed, EC P-256, for localhost and 127.0.0.1).
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/tls.test.mjs

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import {
  makeTree, spawnRaw, runToExit, Conn, reqBytes, assertCommon, stopAndCheck,
  sleep, HOST, WAIT_MS, INDEX_HTML,
} from './lib/server.mjs';
import { ChatClient } from './lib/chat.mjs';
import { upgradeBytes } from './lib/ws.mjs';
import { launchBrowser, until, UI_WAIT_MS } from './lib/browser.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PUBLIC = path.resolve(HERE, '../../public');

// ---------------------------------------------------------------------------
// Certificates

const certDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wshub-tls-'));
process.on('exit', () => fs.rmSync(certDir, { recursive: true, force: true }));

// A self-signed certificate and key: { cert, key, pem, fingerprint }.
function makeCert(name, cn = 'localhost') {
  const cert = path.join(certDir, `${name}.crt`);
  const key = path.join(certDir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256',
    '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${cn}`,
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'pipe' });
  const pem = fs.readFileSync(cert, 'utf8');
  return { cert, key, pem, fingerprint: new crypto.X509Certificate(pem).fingerprint256 };
}

const A = makeCert('a', 'wshub test A');
const B = makeCert('b', 'wshub test B');

// ---------------------------------------------------------------------------
// Servers and clients

const LISTEN_RE = /listening on (?:http:\/\/\S+:(\d+) and )?https:\/\/\S+:(\d+) /;

// Starts wshub with cert c; resolves with srv.port (plain, when --tls-port
// is given) and srv.tlsPort.
async function startTls(pub, args = [], c = A) {
  const srv = spawnRaw(['--host', HOST, '--public', pub, '--tls-cert', c.cert, '--tls-key', c.key,
    ...(args.includes('--port') ? [] : ['--port', '0']), ...args]);
  await waitLine(srv, LISTEN_RE, 10000);
  const m = LISTEN_RE.exec(srv.stderr);
  srv.port = m[1] ? Number(m[1]) : null;
  srv.tlsPort = Number(m[2]);
  return srv;
}

// Waits until srv's stderr matches re (the n-th time); rejects if it exits.
function waitLine(srv, re, ms = WAIT_MS, n = 1) {
  const count = () => (srv.stderr.match(new RegExp(re.source, 'g')) ?? []).length;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      reject(new Error(`no ${re} in wshub's stderr within ${ms} ms:\n${srv.tail()}`));
    }, ms);
    const check = () => { if (count() >= n) { done(); resolve(); } };
    const done = () => { clearTimeout(timer); srv.proc.stderr.off('data', check); };
    srv.proc.stderr.on('data', check);
    srv.exited.then((r) => { done(); reject(new Error(`wshub exited (${JSON.stringify(r)}):\n${srv.tail()}`)); });
    check();
  });
}

// A TLS connection as a raw Conn (exact bytes); .tls is the TLSSocket.
function openTls(port, opts = {}) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: HOST, port, ca: A.pem, servername: 'localhost', ...opts });
    sock.once('error', reject);
    sock.once('secureConnect', () => {
      sock.off('error', reject);
      const c = new Conn(sock);
      c.tls = sock;
      resolve(c);
    });
  });
}

async function httpsGet(port, target, headers = {}, opts = {}) {
  const c = await openTls(port);
  c.write(reqBytes(opts.method ?? 'GET', target, headers));
  const res = await c.readResponse({ head: opts.method === 'HEAD' });
  c.destroy();
  return res;
}

// The certificate a new TLS connection is served (its SHA-256 fingerprint).
async function servedFingerprint(port) {
  const c = await openTls(port, { ca: undefined, rejectUnauthorized: false });
  const fp = c.tls.getPeerCertificate().fingerprint256;
  c.destroy();
  return fp;
}

// A chat client over wss (ChatClient from lib/chat.mjs on a TLS socket).
function openWss(port, query = {}, opts = {}) {
  const q = new URLSearchParams(query).toString();
  const url = `wss://localhost:${port}/${q ? `?${q}` : ''}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca: A.pem, ...opts });
    const c = new ChatClient(ws, url);
    ws.once('open', () => resolve(c));
    ws.once('error', (e) => { if (ws.readyState !== WebSocket.OPEN) reject(e); });
  });
}

// Resolves with the error a connection attempt ends in (rejects if it
// succeeds).
function tlsFailure(port, opts) {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: HOST, port, rejectUnauthorized: false, ...opts });
    sock.once('secureConnect', () => { sock.destroy(); reject(new Error('the handshake succeeded')); });
    sock.once('error', (e) => resolve(e));
    sock.once('close', () => resolve(new Error('closed')));
  });
}

async function exchangeMessage(from, to, text) {
  from.send(text);
  const m = await to.next({ type: 'message', text });
  assert.equal(m.from.id, from.id, `from ${from.id}`);
  assert.equal(m.own, false);
  const own = await from.next({ type: 'message', text });
  assert.equal(own.own, true);
  assert.equal(own.id, m.id, 'the same id for both copies');
}

// ---------------------------------------------------------------------------

describe('https and wss (TLS on --port, two threads)', () => {
  let tree;
  let srv;
  const big = crypto.randomBytes(3 * 1024 * 1024 + 123);

  before(async () => {
    tree = await makeTree({ 'index.html': INDEX_HTML, 'big.bin': big });
    srv = await startTls(tree.pub, ['--threads', '2']);
  });
  after(async () => {
    if (srv) await stopAndCheck(srv);
    await tree?.cleanup();
  });

  test('the listening line names https and the port; no plain listener', () => {
    assert.equal(srv.port, null, srv.stderr);
    assert.ok(srv.tlsPort > 0);
  });

  test('GET / over TLS 1.2+ with the certificate verified: 200 and the exact bytes', async () => {
    const c = await openTls(srv.tlsPort);
    assert.match(c.tls.getProtocol(), /^TLSv1\.[23]$/);
    assert.equal(c.tls.getPeerCertificate().fingerprint256, A.fingerprint);
    c.write(reqBytes('GET', '/'));
    const res = await c.readResponse();
    assert.equal(res.status, 200, res.raw);
    assert.equal(res.text, INDEX_HTML);
    assertCommon(res);
    // Keep-alive: two pipelined requests on the same TLS connection.
    c.write(Buffer.concat([reqBytes('GET', '/index.html'), reqBytes('GET', '/nope')]));
    const r2 = await c.readResponse();
    const r3 = await c.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.text, INDEX_HTML);
    assert.equal(r3.status, 404);
    c.destroy();
  });

  test('TLS 1.2 with an ECDHE + AEAD suite', async () => {
    const c = await openTls(srv.tlsPort, { maxVersion: 'TLSv1.2' });
    assert.equal(c.tls.getProtocol(), 'TLSv1.2');
    assert.match(c.tls.getCipher().name, /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
    c.destroy();
  });

  test('TLS 1.2 renegotiation is refused (the connection ends, logged)', async () => {
    const c = await openTls(srv.tlsPort, { maxVersion: 'TLSv1.2' });
    const err = await new Promise((resolve) => {
      c.tls.once('error', resolve);
      c.tls.renegotiate({ rejectUnauthorized: false }, (e) => { if (e) resolve(e); });
    });
    assert.match(String(err.message), /no renegotiation/);
    await waitLine(srv, /: TLS failed: /);
    c.destroy();
    const res = await httpsGet(srv.tlsPort, '/');
    assert.equal(res.status, 200);
  });

  test('HEAD and 304 over TLS', async () => {
    const head = await httpsGet(srv.tlsPort, '/', {}, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    assertCommon(head, { expectLength: Buffer.byteLength(INDEX_HTML) });
    const etag = head.get('etag');
    assert.ok(etag, head.raw);
    const res = await httpsGet(srv.tlsPort, '/', { 'If-None-Match': etag });
    assert.equal(res.status, 304, res.raw);
    assert.equal(res.body.length, 0);
  });

  test('a 3 MiB file streamed over TLS arrives byte for byte', async () => {
    const res = await httpsGet(srv.tlsPort, '/big.bin', {}, {});
    assert.equal(res.status, 200);
    assert.equal(res.body.length, big.length);
    assert.ok(res.body.equals(big), 'the same bytes');
  });

  test('wss: two clients chat (messages both ways, ids agree)', async () => {
    const a = await openWss(srv.tlsPort, { room: 'tls' });
    await a.welcome();
    const b = await openWss(srv.tlsPort, { room: 'tls' });
    await b.welcome();
    await a.next({ type: 'join', room: 'tls' });
    await exchangeMessage(a, b, 'hello over wss');
    await exchangeMessage(b, a, 'and back');
    await a.close();
    await b.close();
  });

  test('the HTTP chat transports over https: poll, POST /messages, an event stream', async () => {
    const w = await openWss(srv.tlsPort, { room: 'http' });
    await w.welcome();
    const first = await httpsGet(srv.tlsPort, '/poll?room=http&nick=poller');
    assert.equal(first.status, 200, first.raw);
    assert.equal(JSON.parse(first.text).type, 'poll');
    const token = first.get('x-wshub-session');
    assert.match(token, /^[0-9a-f]{32}$/);
    await w.next({ type: 'join', room: 'http' });
    // An event stream of the same session.
    const es = await openTls(srv.tlsPort);
    es.write(reqBytes('GET', `/events?room=http&session=${token}`));
    let end = -1;
    await es.waitFor(() => (end = es.peek().indexOf('\r\n\r\n')) >= 0, WAIT_MS, 'the stream head');
    assert.match(es.take(end + 4).toString(), /^HTTP\/1\.1 200 OK\r\n[^]*Content-Type: text\/event-stream/i);
    await es.waitFor(() => es.peek().includes('event: welcome'), WAIT_MS, 'the welcome event');
    // A message posted over https reaches the WebSocket and the stream.
    const body = JSON.stringify({ type: 'message', room: 'http', text: 'posted over https' });
    const c = await openTls(srv.tlsPort);
    c.write(reqBytes('POST', `/messages?session=${token}`,
      { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }, body));
    const res = await c.readResponse();
    c.destroy();
    assert.equal(res.status, 202, res.raw + res.text);
    const m = await w.next({ type: 'message', text: 'posted over https' });
    assert.equal(m.from.nick, 'poller');
    await es.waitFor(() => es.peek().includes('"text":"posted over https"'), WAIT_MS, 'the event');
    es.destroy();
    await w.close();
  });

  test('TLS 1.1 is refused, and logged with the reason', async () => {
    const e = await tlsFailure(srv.tlsPort, {
      minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0',
    });
    assert.ok(e instanceof Error);
    await waitLine(srv, /TLS handshake failed: unsupported protocol/);
  });

  test('plain HTTP and garbage on the TLS port are closed; a wss client is not disturbed', async () => {
    const a = await openWss(srv.tlsPort, { room: 'calm' });
    await a.welcome();
    const b = await openWss(srv.tlsPort, { room: 'calm' });
    await b.welcome();
    for (const bytes of [reqBytes('GET', '/'), crypto.randomBytes(3000)]) {
      const raw = await Conn.open(srv.tlsPort);
      raw.write(bytes);
      const rest = await raw.waitEnd();
      // Nothing but, at most, a TLS alert record (content type 21).
      assert.ok(rest.length === 0 || rest[0] === 21, `no HTTP answer: ${rest.toString('latin1')}`);
      raw.destroy();
    }
    await waitLine(srv, /TLS handshake failed: http request/);
    await exchangeMessage(a, b, 'still here');
    const res = await httpsGet(srv.tlsPort, '/');
    assert.equal(res.status, 200);
    await a.close();
    await b.close();
  });
});

describe('plain and TLS listeners together, --echo', () => {
  let tree;
  let srv;
  before(async () => {
    tree = await makeTree({ 'index.html': INDEX_HTML });
    srv = await startTls(tree.pub, ['--tls-port', '0', '--echo', '--threads', '2']);
  });
  after(async () => {
    if (srv) await stopAndCheck(srv);
    await tree?.cleanup();
  });

  test('http on --port and https on --tls-port, the same files', async () => {
    assert.ok(srv.port > 0 && srv.tlsPort > 0 && srv.port !== srv.tlsPort, srv.stderr);
    const plain = await Conn.open(srv.port);
    plain.write(reqBytes('GET', '/'));
    const r1 = await plain.readResponse();
    plain.destroy();
    const r2 = await httpsGet(srv.tlsPort, '/');
    assert.equal(r1.status, 200);
    assert.equal(r2.status, 200);
    assert.equal(r1.text, INDEX_HTML);
    assert.equal(r2.text, INDEX_HTML);
  });

  test('1 MiB messages echoed over wss, byte for byte, several in a row', async () => {
    const ws = new WebSocket(`wss://localhost:${srv.tlsPort}/`, { ca: A.pem, perMessageDeflate: false });
    await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
    const got = [];
    ws.on('message', (d) => got.push(Buffer.from(d)));
    const msgs = [0, 1, 2].map(() => crypto.randomBytes(1024 * 1024));
    for (const m of msgs) ws.send(m);
    const deadline = Date.now() + 20000;
    while (got.length < msgs.length && Date.now() < deadline) await sleep(20);
    assert.equal(got.length, msgs.length, 'every message echoed');
    msgs.forEach((m, i) => assert.ok(got[i].equals(m), `message ${i} echoed exactly`));
    ws.close();
  });
});

describe('connection limits on a TLS port', () => {
  test('past --max-connections a TLS connection is closed at once (no handshake); the open one goes on', async () => {
    const tree = await makeTree({ 'index.html': INDEX_HTML });
    const srv = await startTls(tree.pub, ['--threads', '1', '--max-connections', '1']);
    try {
      const first = await openTls(srv.tlsPort);
      const e = await tlsFailure(srv.tlsPort, {});
      assert.ok(e instanceof Error);
      await waitLine(srv, /refused \(closed\): server full: too many connections/);
      first.write(reqBytes('GET', '/'));
      const res = await first.readResponse();
      assert.equal(res.status, 200);
      assert.equal(res.text, INDEX_HTML);
      first.destroy();
    } finally {
      await stopAndCheck(srv);
      await tree.cleanup();
    }
  });
});

describe('a slow consumer over TLS', () => {
  test('a wss client that stops reading is dropped; the room keeps every message', async () => {
    const tree = await makeTree({ 'index.html': INDEX_HTML });
    const srv = await startTls(tree.pub, ['--threads', '1', '--max-backlog', '1M', '--msg-rate', '0',
      '--max-text', '16000', '--log-level', 'warn']);
    try {
      const slow = await openTls(srv.tlsPort);
      slow.write(upgradeBytes('/?room=busy').bytes);
      await slow.waitFor(() => slow.peek().includes('\r\n\r\n'), WAIT_MS, 'the 101');
      slow.tls.pause(); // bytes pile up in the kernel, then in wshub's queue
      const sender = await openWss(srv.tlsPort, { room: 'busy' });
      await sender.welcome();
      const reader = await openWss(srv.tlsPort, { room: 'busy' });
      await reader.welcome();
      const TEXT = 'x'.repeat(15000);
      const MSGS = 1000;
      let sent = 0;
      let received = 0;
      const top = () => { while (sent < MSGS && sent < received + 16) sender.send({ type: 'message', text: `${sent++} ${TEXT}` }); };
      top();
      for (let i = 0; i < MSGS; i++) {
        const m = await reader.next({ type: 'message' }, 20000);
        received++;
        top();
        assert.equal(m.text.split(' ')[0], String(i), 'messages in order');
      }
      await waitLine(srv, /slow consumer/, 20000);
      const closed = new Promise((r) => slow.tls.once('close', r));
      slow.tls.resume();
      await closed;
      reader.send('still here');
      await sender.next({ type: 'message', text: 'still here' });
      await sender.close();
      await reader.close();
    } finally {
      await stopAndCheck(srv);
      await tree.cleanup();
    }
  });
});

describe('certificate reload on SIGHUP', () => {
  test('open connections survive a reload; new ones get the new certificate; a bad file changes nothing', async () => {
    const tree = await makeTree({ 'index.html': INDEX_HTML });
    // The server reads these paths; their contents are swapped below.
    const live = { cert: path.join(certDir, 'live.crt'), key: path.join(certDir, 'live.key') };
    fs.copyFileSync(A.cert, live.cert);
    fs.copyFileSync(A.key, live.key);
    const srv = await startTls(tree.pub, ['--threads', '2'], live);
    try {
      assert.equal(await servedFingerprint(srv.tlsPort), A.fingerprint);
      const a = await openWss(srv.tlsPort, { room: 'r' });
      await a.welcome();
      const b = await openWss(srv.tlsPort, { room: 'r' });
      await b.welcome();
      await exchangeMessage(a, b, 'before the reload');

      fs.copyFileSync(B.cert, live.cert);
      fs.copyFileSync(B.key, live.key);
      srv.signal('SIGHUP');
      await waitLine(srv, /SIGHUP: new certificate in use by every thread/);
      // The connections made with A go on.
      await exchangeMessage(a, b, 'after the reload');
      await exchangeMessage(b, a, 'still after the reload');
      // New connections (on either thread) are served B.
      for (let i = 0; i < 4; i++) assert.equal(await servedFingerprint(srv.tlsPort), B.fingerprint);
      const c = await openWss(srv.tlsPort, { room: 'r' }, { ca: B.pem });
      await c.welcome();
      await exchangeMessage(c, a, 'a new client with the new certificate');

      // A key that is not a key: the reload fails, B stays.
      fs.writeFileSync(live.key, 'not a key\n');
      srv.signal('SIGHUP');
      await waitLine(srv, /SIGHUP: private key \S+live\.key: not a PEM private key .*; keeping the current certificate/);
      assert.equal(await servedFingerprint(srv.tlsPort), B.fingerprint);
      await exchangeMessage(a, c, 'after a failed reload');
      for (const x of [a, b, c]) await x.close();
    } finally {
      await stopAndCheck(srv);
      await tree.cleanup();
    }
  });
});

describe('start-up errors', () => {
  let tree;
  before(async () => { tree = await makeTree({ 'index.html': INDEX_HTML }); });
  after(async () => { await tree?.cleanup(); });

  const run = (args) => runToExit(['--host', HOST, '--port', '0', '--public', tree.pub, ...args]);
  const notPem = path.join(certDir, 'not.pem');
  fs.writeFileSync(notPem, 'hello\n');
  const missing = path.join(certDir, 'missing.pem');

  const CASES = [
    ['a missing certificate', () => [missing, A.key], `wshub: TLS: certificate ${missing}: No such file or directory`],
    ['a missing key', () => [A.cert, missing], `wshub: TLS: private key ${missing}: No such file or directory`],
    ['a certificate that is not PEM', () => [notPem, A.key], `wshub: TLS: certificate ${notPem}: not a PEM certificate (`],
    ['a key that is not PEM', () => [A.cert, notPem], `wshub: TLS: private key ${notPem}: not a PEM private key (`],
    ['a key that does not match', () => [A.cert, B.key], `wshub: TLS: private key ${B.key} does not match certificate ${A.cert}`],
  ];
  for (const [what, files, want] of CASES) {
    test(`${what}: the file and the problem on stderr, exit 1, nothing listens`, async () => {
      const [cert, key] = files();
      const r = await run(['--tls-cert', cert, '--tls-key', key]);
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(want), `stderr has ${JSON.stringify(want)}:\n${r.stderr}`);
      assert.doesNotMatch(r.stderr, /listening on/);
    });
  }

  for (const [args, want] of [
    [['--tls-cert', 'x.pem'], '--tls-cert and --tls-key go together'],
    [['--tls-key', 'x.pem'], '--tls-cert and --tls-key go together'],
    [['--tls-port', '0'], '--tls-port needs --tls-cert and --tls-key'],
    [['--tls-port', 'abc', '--tls-cert', 'x', '--tls-key', 'y'], "invalid value 'abc' for --tls-port"],
  ]) {
    test(`${args.join(' ')}: option error, exit 2`, async () => {
      const r = await run(args);
      assert.equal(r.code, 2, r.stderr);
      assert.ok(r.stderr.includes(want), r.stderr);
    });
  }
});

describe('the chat page in Chromium over https and wss', () => {
  let browser;
  let srv;
  before(async () => {
    browser = await launchBrowser();
    srv = await startTls(PUBLIC, ['--threads', '1']);
  });
  after(async () => {
    if (browser) await browser.close();
    if (srv) await stopAndCheck(srv);
  });

  test('two pages exchange a message through wss', async () => {
    const url = `https://localhost:${srv.tlsPort}/`;
    const open = async () => {
      const context = await browser.newContext({ ignoreHTTPSErrors: true });
      context.setDefaultTimeout(UI_WAIT_MS);
      const page = await context.newPage();
      const sockets = [];
      page.on('websocket', (ws) => sockets.push(ws.url()));
      await page.goto(url, { waitUntil: 'load' });
      await until(page, () => document.querySelector('#status').textContent === 'open', null, 'status open');
      return { page, sockets };
    };
    const ann = await open();
    const bob = await open();
    assert.equal(ann.sockets[0], `wss://localhost:${srv.tlsPort}/`);
    await ann.page.fill('#text-field', 'hello through TLS');
    await ann.page.click('#send-button');
    await until(bob.page, (t) => [...document.querySelectorAll('#messages > li.msg .body')]
      .some((b) => b.textContent === t), 'hello through TLS', 'the message on the other page');
    assert.equal(await bob.page.textContent('#transport'), 'WebSocket');
  });
});
