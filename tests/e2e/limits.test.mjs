// tests/e2e/limits.test.mjs — the hardening limits: the Origin check for
// browsers' WebSocket upgrades, the connection limits (in all, per remote
// address) and the per-client message rate. Each asserts the offender's
// fate (status or close code) and that the other clients carry on.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/limits.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { makeTree, startServer, HOST, WAIT_MS } from './lib/server.mjs';
import { rawUpgrade, assertWsWorks, upgradeBytes } from './lib/ws.mjs';
import { ChatClient, sleep } from './lib/chat.mjs';

async function withWshub(args, fn) {
  const tree = await makeTree({ 'index.html': 'x' });
  const srv = await startServer(tree.pub, ['--threads', '1', ...args]);
  try {
    await fn(srv);
  } finally {
    const r = await srv.stop();
    await tree.cleanup();
    assert.equal(r.wasRunning, true, 'the server was still running');
    assert.equal(r.code, 0, `exit 0; stderr:\n${srv.tail()}`);
  }
}

async function upgradeStatus(port, origin) {
  const extra = origin === undefined ? [] : [['Origin', origin]];
  const { res, conn } = await rawUpgrade(port, '/', { extra, host: `127.0.0.1:${port}` });
  conn.destroy();
  return res;
}

test('origin: same host and no Origin are accepted, a foreign Origin gets 403', async () => {
  await withWshub(['--echo'], async ({ port }) => {
    assert.equal((await upgradeStatus(port, undefined)).status, 101, 'no Origin (not a browser)');
    assert.equal((await upgradeStatus(port, `http://127.0.0.1:${port}`)).status, 101, 'same host');
    for (const o of ['http://evil.example', `http://127.0.0.1:${port + 1}`, 'null',
      `http://127.0.0.1:${port}.evil`]) {
      const res = await upgradeStatus(port, o);
      assert.equal(res.status, 403, `Origin ${o}`);
      assert.match(res.text, /origin not allowed/);
    }
    await assertWsWorks(port);
  });
});

test('origin: --allow-origin lists exact origins; * allows any', async () => {
  await withWshub(['--echo', '--allow-origin', 'https://chat.example'], async ({ port }) => {
    assert.equal((await upgradeStatus(port, 'https://chat.example')).status, 101);
    assert.equal((await upgradeStatus(port, 'https://CHAT.example')).status, 101, 'case-insensitive');
    assert.equal((await upgradeStatus(port, 'https://chat.example:8443')).status, 403, 'port differs');
    assert.equal((await upgradeStatus(port, `http://127.0.0.1:${port}`)).status, 403, 'the list replaces same-host');
  });
  await withWshub(['--echo', '--allow-origin', '*'], async ({ port }) => {
    assert.equal((await upgradeStatus(port, 'http://anywhere.example')).status, 101);
  });
});

// A raw connection from `localAddress`; resolves with everything the server
// sent once it has closed the connection.
function refusedConnection(port, localAddress = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    let data = '';
    const timer = setTimeout(() => reject(new Error(`not closed: ${data}`)), WAIT_MS);
    const s = net.connect({ port, host: HOST, localAddress }, () => s.write(upgradeBytes('/').bytes));
    s.on('data', (d) => { data += d.toString('latin1'); });
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(timer); resolve(data); });
  });
}

// The response head to an upgrade from `localAddress` (the socket is then
// closed by us).
function responseHead(port, localAddress) {
  return new Promise((resolve, reject) => {
    let data = '';
    const timer = setTimeout(() => reject(new Error(`no response head: ${data}`)), WAIT_MS);
    const s = net.connect({ port, host: HOST, localAddress }, () => s.write(upgradeBytes('/').bytes));
    s.on('data', (d) => {
      data += d.toString('latin1');
      const end = data.indexOf('\r\n\r\n');
      if (end >= 0) {
        clearTimeout(timer);
        s.destroy();
        resolve(data.slice(0, end));
      }
    });
    s.on('error', reject);
  });
}

test('max connections: the one past the limit gets 503, the others keep chatting', async () => {
  await withWshub(['--max-connections', '3'], async ({ port }) => {
    const clients = [];
    for (let i = 0; i < 3; i++) {
      const c = await ChatClient.open(port, { room: 'full' });
      await c.welcome();
      clients.push(c);
    }
    const reply = await refusedConnection(port);
    assert.match(reply, /^HTTP\/1\.1 503 Service Unavailable\r\n/);
    assert.match(reply, /too many connections/);
    clients[0].send('still chatting');
    for (const c of clients) await c.next({ type: 'message', text: 'still chatting' });
    // A place frees up: a new client gets in.
    await clients[2].close();
    await sleep(100);
    const d = await ChatClient.open(port, { room: 'full' });
    assert.equal((await d.welcome()).type, 'welcome');
    for (const c of [clients[0], clients[1], d]) await c.close();
  });
});

test('max per address: a third connection from one address gets 503, other addresses still get in', async () => {
  await withWshub(['--max-per-ip', '2'], async ({ port }) => {
    const a = await ChatClient.open(port);
    const b = await ChatClient.open(port);
    await a.welcome();
    await b.welcome();
    const reply = await refusedConnection(port, '127.0.0.1');
    assert.match(reply, /^HTTP\/1\.1 503 /);
    assert.match(reply, /from your address/);
    // 127.0.0.2 is another address (loopback is a /8).
    const other = await responseHead(port, '127.0.0.2');
    assert.match(other, /^HTTP\/1\.1 101 /, 'another address is not refused');
    a.send('fine');
    await b.next({ type: 'message', text: 'fine' });
    await a.close();
    await b.close();
  });
});

test('message rate: over the bucket → one rate_limited error; flooding on → close 1008; the room carries on', async () => {
  await withWshub(['--msg-rate', '2', '--msg-burst', '5'], async ({ port }) => {
    const flood = await ChatClient.open(port, { room: 'rate' });
    await flood.welcome();
    const calm = await ChatClient.open(port, { room: 'rate' });
    await calm.welcome();
    for (let i = 0; i < 6; i++) flood.send(`m${i}`);
    const err = await flood.next({ type: 'error' });
    assert.equal(err.code, 'rate_limited');
    for (let i = 0; i < 5; i++) await calm.next({ type: 'message', text: `m${i}` });
    // Keeps flooding while refused: closed with 1008.
    for (let i = 0; i < 10; i++) flood.send(`more${i}`);
    const closed = await flood.closed;
    assert.equal(closed.code, 1008);
    assert.match(closed.reason, /rate limit/);
    assert.equal(flood.received.filter((m) => m.type === 'error').length, 1, 'one error, not one per message');
    await calm.expectNothing((m) => m.type === 'message' && /^(m5|more)/.test(m.text));
    // The calm client still chats.
    const other = await ChatClient.open(port, { room: 'rate' });
    await other.welcome();
    calm.send('hello');
    await other.next({ type: 'message', text: 'hello' });
    await calm.close();
    await other.close();
  });
});

test('out of descriptors (EMFILE): no spin, excess connections closed, open clients unaffected, recovers', async () => {
  const { spawn } = await import('node:child_process');
  const { BIN } = await import('./lib/server.mjs');
  const tree = await makeTree({ 'index.html': 'x' });
  // A hard limit of 40 descriptors, and no connection limit of wshub's own,
  // so that accept() itself fails with EMFILE.
  const proc = spawn('prlimit', ['--nofile=40:40', BIN, '--threads', '1', '--host', HOST,
    '--port', '0', '--public', tree.pub, '--max-connections', '0', '--max-per-ip', '0',
    '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise((r) => proc.on('exit', (code) => r(code)));
  const socks = [];
  try {
    const port = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no port: ${stderr}`)), WAIT_MS);
      const check = () => {
        const m = /listening on http:\/\/[^\s]*:(\d+)/.exec(stderr);
        if (m) { clearTimeout(t); resolve(Number(m[1])); }
      };
      proc.stderr.on('data', check);
    });
    const a = await ChatClient.open(port, { room: 'fds' });
    await a.welcome();
    const b = await ChatClient.open(port, { room: 'fds' });
    await b.welcome();
    // Far more connections than descriptors left: libuv's reserve-descriptor
    // trick accepts and closes what cannot be served (no busy loop).
    let ended = 0;
    for (let i = 0; i < 60; i++) {
      socks.push(await new Promise((resolve) => {
        const s = net.connect(port, HOST, () => resolve(s));
        s.on('error', () => resolve(s));
        s.on('close', () => { ended++; });
      }));
    }
    await sleep(300);
    const cpu0 = await cpuTicks(proc.pid);
    await sleep(1000);
    const cpu1 = await cpuTicks(proc.pid);
    assert.ok(cpu1 - cpu0 < 50, `not spinning (${cpu1 - cpu0} ticks in 1 s)`);
    assert.ok(ended > 0, `the server closed connections it had no descriptor for (${ended})`);
    a.send('still here');
    await b.next({ type: 'message', text: 'still here' });
    assert.doesNotMatch(stderr, /error/i, `no error lines:\n${stderr}`);
    // Descriptors free up: new clients get in again.
    for (const s of socks) s.destroy();
    socks.length = 0;
    await sleep(500);
    const c = await ChatClient.open(port, { room: 'fds' });
    assert.equal((await c.welcome()).type, 'welcome');
    for (const x of [a, b, c]) await x.close();
  } finally {
    for (const s of socks) s.destroy();
    proc.kill('SIGTERM');
    const code = await exited;
    await tree.cleanup();
    assert.equal(code, 0, `exit 0:\n${stderr}`);
  }
});

async function cpuTicks(pid) {
  const { readFile } = await import('node:fs/promises');
  const f = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
}
