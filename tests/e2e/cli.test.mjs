// tests/e2e/cli.test.mjs — the wshub program itself: --help, --version, bad
// options (exit 2), port in use (exit 1), missing public dir, and shutdown on
// SIGTERM / SIGINT (exit 0, in-flight responses finished, new connections
// refused).
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/cli.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import {
  makeTree, startServer, runToExit, withServer, Conn, reqBytes, get,
  assertAlive, sleep, HOST, INDEX_HTML,
} from './lib/server.mjs';

const OPTIONS = [
  '--host', '--port', '--public', '--header-timeout', '--keepalive-timeout',
  '--max-header-bytes', '--max-headers', '--max-body', '--log-level', '--help', '--version',
  '--deflate', '--deflate-threshold', '--deflate-level', '--deflate-client-window',
  '--redis', '--config',
  '--metrics', '--health', '--metrics-port', '--log-format', '--access-log',
  '--tls-cert', '--tls-key', '--tls-port',
];

test('--help prints usage listing every option to stdout and exits 0', async () => {
  const r = await runToExit(['--help']);
  assert.equal(r.code, 0, r.stderr);
  for (const opt of OPTIONS) assert.ok(r.stdout.includes(opt), `--help mentions ${opt}:\n${r.stdout}`);
});

test('--version prints "wshub x.y.z" and exits 0; Server header agrees', async () => {
  const r = await runToExit(['--version']);
  assert.equal(r.code, 0, r.stderr);
  const m = /^wshub (\d+\.\d+\.\d+)\n?$/.exec(r.stdout);
  assert.ok(m, `version line: ${JSON.stringify(r.stdout)}`);
  await withServer({}, async ({ port }) => {
    const res = await get(port, '/index.html');
    assert.equal(res.get('server'), `wshub/${m[1]}`);
  });
});

const BAD = [
  [['--bogus'], 'bogus'],
  [['--port', 'abc'], 'port'],
  [['--port', '70000'], 'port'],
  [['--port', '-1'], 'port'],
  [['--port'], 'port'],
  [['--header-timeout', 'abc'], 'header-timeout'],
  [['--header-timeout', '-1'], 'header-timeout'],
  [['--keepalive-timeout', 'soon'], 'keepalive-timeout'],
  [['--max-header-bytes', '16Q'], 'max-header-bytes'],
  [['--max-headers', 'many'], 'max-headers'],
  [['--max-body', 'lots'], 'max-body'],
  [['--log-level', 'loud'], 'log-level'],
  [['--deflate', 'yes'], 'deflate'],
  [['--deflate-threshold', 'big'], 'deflate-threshold'],
  [['--deflate-level', '0'], 'deflate-level'],
  [['--deflate-level', '10'], 'deflate-level'],
  [['--deflate-client-window', '7'], 'deflate-client-window'],
  [['--deflate-client-window', '16'], 'deflate-client-window'],
  [['--redis', 'http://127.0.0.1:6379'], 'redis'],
  [['--redis', 'redis://127.0.0.1:0'], 'redis'],
  [['--metrics', 'yes'], 'metrics'],
  [['--health', 'no'], 'health'],
  [['--metrics-port', 'x'], 'metrics-port'],
  [['--log-format', 'xml'], 'log-format'],
  [['--access-log', '1'], 'access-log'],
];

for (const [bad, name] of BAD) {
  test(`bad option ${bad.join(' ')} → message naming it on stderr, exit 2`, async () => {
    const tree = await makeTree({ 'index.html': INDEX_HTML });
    try {
      const port = bad[0] === '--port' ? [] : ['--port', '0'];
      const r = await runToExit(['--host', HOST, ...port, '--public', tree.pub, ...bad]);
      assert.equal(r.signal, null, `exited normally\n${r.stderr}`);
      assert.equal(r.code, 2, `exit status\n${r.stderr}`);
      assert.ok(r.stderr.includes(name), `stderr names ${name}: ${JSON.stringify(r.stderr)}`);
      assert.ok(!/listening on/.test(r.stderr), 'did not start listening');
    } finally {
      await tree.cleanup();
    }
  });
}

test('port already in use → "address already in use", exit 1', async () => {
  const blocker = net.createServer();
  await new Promise((resolve) => blocker.listen(0, HOST, resolve));
  const { port } = blocker.address();
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  try {
    const r = await runToExit(['--host', HOST, '--port', String(port), '--public', tree.pub]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /address already in use/i);
  } finally {
    blocker.close();
    await tree.cleanup();
  }
});

test('--public /nonexistent → non-zero exit with a message', async () => {
  const r = await runToExit(['--host', HOST, '--port', '0', '--public', '/nonexistent-wshub-e2e']);
  assert.equal(r.signal, null, r.stderr);
  assert.notEqual(r.code, 0);
  assert.ok(r.stderr.trim().length > 0, 'a message on stderr');
  assert.ok(!/listening on/.test(r.stderr), 'did not start listening');
});

test('--log-level debug is accepted and the server serves', async () => {
  await withServer({ args: ['--log-level', 'debug'] }, async ({ port }) => {
    await assertAlive(port);
  });
});

// --- Shutdown -------------------------------------------------------------------

for (const sig of ['SIGTERM', 'SIGINT']) {
  test(`${sig} on an idle server → exit 0`, async () => {
    const tree = await makeTree({ 'index.html': INDEX_HTML });
    const srv = await startServer(tree.pub);
    try {
      await assertAlive(srv.port);
      srv.signal(sig);
      const r = await srv.waitExit(10000);
      assert.ok(r, `exited after ${sig}\n${srv.tail()}`);
      assert.deepEqual(r, { code: 0, signal: null }, srv.tail());
    } finally {
      await srv.stop();
      await tree.cleanup();
    }
  });
}

test('SIGHUP without TLS (a service manager\'s reload) → logged, nothing changes, the server serves', async () => {
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  const srv = await startServer(tree.pub);
  try {
    srv.signal('SIGHUP');
    const end = Date.now() + 5000;
    while (!/SIGHUP: nothing to reload/.test(srv.tail()) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.match(srv.tail(), /SIGHUP: nothing to reload \(no --tls-cert\)/, srv.tail());
    assert.equal(srv.exit, null, `still running after SIGHUP\n${srv.tail()}`);
    await assertAlive(srv.port);
    srv.signal('SIGTERM');
    const r = await srv.waitExit(10000);
    assert.deepEqual(r, { code: 0, signal: null }, srv.tail());
  } finally {
    await srv.stop();
    await tree.cleanup();
  }
});

test('SIGTERM with an idle keep-alive connection open → connection closed, exit 0', async () => {
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  const srv = await startServer(tree.pub);
  try {
    const conn = await Conn.open(srv.port);
    conn.write(reqBytes('GET', '/index.html'));
    const res = await conn.readResponse();
    assert.equal(res.text, INDEX_HTML);
    srv.signal('SIGTERM');
    await conn.waitEnd(10000);
    const r = await srv.waitExit(10000);
    assert.ok(r, `exited after SIGTERM\n${srv.tail()}`);
    assert.deepEqual(r, { code: 0, signal: null }, srv.tail());
  } finally {
    await srv.stop();
    await tree.cleanup();
  }
});

// Tries to connect until a connection is refused; true if that happens
// within ms. A reset during connect counts as a refusal too: a SYN that
// races the closing of one of the SO_REUSEPORT listeners (one per thread)
// is answered with RST instead of the later ECONNREFUSED.
async function refusedWithin(port, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      const c = await Conn.open(port);
      c.destroy();
    } catch (e) {
      if (e.code === 'ECONNREFUSED' || e.code === 'ECONNRESET') return true;
      throw e;
    }
    await sleep(50);
  }
  return false;
}

for (const sig of ['SIGTERM', 'SIGINT']) {
  test(`${sig} during a slow 32 MiB download: response finished, new connections refused, exit 0`, async () => {
    const data = crypto.randomBytes(32 * 1024 * 1024);
    const tree = await makeTree({ 'index.html': INDEX_HTML, 'big.bin': data });
    const srv = await startServer(tree.pub);
    try {
      const conn = await Conn.open(srv.port);
      conn.write(reqBytes('GET', '/big.bin'));
      await conn.waitFor(() => conn.len > 0, 5000, 'first bytes of the download');
      conn.sock.pause();
      srv.signal(sig);
      assert.ok(await refusedWithin(srv.port, 5000), 'new connections refused after the signal');
      assert.equal(srv.exit, null, `server must not exit before the response is finished\n${srv.tail()}`);
      conn.sock.resume();
      const res = await conn.readResponse({ ms: 30000 });
      assert.equal(res.status, 200);
      assert.equal(res.get('content-length'), String(data.length));
      assert.equal(res.body.length, data.length);
      assert.ok(res.body.equals(data), 'body identical');
      const r = await srv.waitExit(10000);
      assert.ok(r, `exited after the response\n${srv.tail()}`);
      assert.deepEqual(r, { code: 0, signal: null }, srv.tail());
    } finally {
      await srv.stop();
      await tree.cleanup();
    }
  });
}
