// tests/embed/run.mjs — wshub as an *installed* library inside a host's
// own libuv loop. It installs the build into a temporary DESTDIR, compiles
// tests/embed/host.c against the installed header and shared library found
// through pkg-config (never the source tree), checks with ldd that the
// binary really loads the installed libwshub.so, then drives the host with
// the npm `ws` client: two servers on two ports in one loop, the host's
// timer beside them, the host's refusal and HTTP route, room/all/self
// sends, per-client user data, a host-initiated close, and a clean
// shutdown on SIGTERM (close 1001 to every client, uv_loop_close() == 0).
// Finally the host runs once under valgrind (when installed): exit 0 and
// no leaks.
//
// Owns: a temporary directory (removed at the end) and the host processes
// it spawns (stopped by PID: SIGTERM, then SIGKILL after a timeout).
//
//   node tests/embed/run.mjs --build-dir build [--source-dir .] [--meson meson]
//        [--sanitize none|address,undefined|...]
//   (or WSHUB_BUILD_DIR / WSHUB_SOURCE_DIR in the environment). With a
//   sanitizer build (--sanitize, meson's b_sanitize; detected from the
//   installed library when not given) the host is compiled with the same
//   -fsanitize and the valgrind test does not run (valgrind cannot run an
//   ASan binary); it runs in the plain build.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

function option(name, envName, fallback) {
  const i = process.argv.indexOf(name);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (envName && process.env[envName]) return process.env[envName];
  return fallback;
}

const SOURCE_DIR = path.resolve(option('--source-dir', 'WSHUB_SOURCE_DIR', path.join(HERE, '..', '..')));
const BUILD_DIR = path.resolve(option('--build-dir', 'WSHUB_BUILD_DIR', path.join(SOURCE_DIR, 'build')));
const MESON = option('--meson', 'MESON', 'meson');
const SANITIZE_OPT = option('--sanitize', 'WSHUB_SANITIZE', null);
const HOST_C = path.join(HERE, 'host.c');

// The `ws` client from the project's node_modules.
const { WebSocket } = createRequire(path.join(SOURCE_DIR, 'package.json'))('ws');

const WAIT_MS = 5000;       // any single expected event
const QUIET_MS = 300;       // extra time for unexpected extra deliveries
const STOP_MS = 8000;       // SIGTERM → exit, before SIGKILL
const VG_START_MS = 20000;  // host start under valgrind

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error) throw r.error;
  return r;
}

function runOk(cmd, args, opts = {}) {
  const r = run(cmd, args, opts);
  assert.equal(r.status, 0,
    `${cmd} ${args.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r;
}

function hasProgram(name) {
  return run('sh', ['-c', `command -v ${name}`]).status === 0;
}

// ---------------------------------------------------------------------------
// The host process

const started = new Set(); // every host child still running

function startHost(argvPrefix = []) {
  const [cmd, ...args] = [...argvPrefix, ctx.bin];
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LD_LIBRARY_PATH: ctx.libdir },
  });
  started.add(child);
  const h = { child, stdout: '', stderr: '', exited: null };
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (d) => { h.stdout += d; });
  child.stderr.on('data', (d) => { h.stderr += d; });
  h.exit = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      started.delete(child);
      h.exited = { code, signal };
      resolve(h.exited);
    });
  });
  return h;
}

async function hostPorts(h, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = /host: A=(\d+) B=(\d+)\n/.exec(h.stderr);
    if (m) return { A: Number(m[1]), B: Number(m[2]) };
    if (h.exited) assert.fail(`host exited ${JSON.stringify(h.exited)} before listening\n${h.stderr}`);
    if (Date.now() > deadline) assert.fail(`host did not print its ports\n${h.stderr}`);
    await sleep(20);
  }
}

// SIGTERM, wait; SIGKILL after STOP_MS. Returns the exit status.
async function stopHost(h, waitMs = STOP_MS) {
  if (h.exited) return h.exited;
  h.child.kill('SIGTERM');
  const t = setTimeout(() => { if (!h.exited) h.child.kill('SIGKILL'); }, waitMs);
  const r = await h.exit;
  clearTimeout(t);
  return r;
}

async function killHost(h) {
  if (h && !h.exited) {
    h.child.kill('SIGKILL');
    await h.exit;
  }
}

// ---------------------------------------------------------------------------
// Clients

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

// A `ws` client that records every message, the ticks apart.
class Client {
  constructor(port, target, label) {
    this.label = label;
    this.msgs = [];   // non-tick text messages, in order
    this.ticks = [];  // tick numbers, in order
    this.waiters = [];
    this.ws = new WebSocket(`ws://127.0.0.1:${port}${target}`);
    this.closed = new Promise((resolve) => {
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`${label}: HTTP ${res.statusCode}`)));
      this.ws.once('close', () => reject(new Error(`${label}: closed before opening`)));
    });
    this.opened.catch(() => {});
    this.ws.on('error', (e) => { this.error = e; });
    this.ws.on('message', (data, isBinary) => {
      assert.equal(isBinary, false, `${label}: binary message`);
      const text = data.toString();
      let obj = null;
      if (text.startsWith('{')) obj = JSON.parse(text);
      if (obj && obj.type === 'tick') this.ticks.push(obj.n);
      else this.msgs.push(text);
      this.wake();
    });
  }

  wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  async waitFor(pred, what, ms = WAIT_MS) {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = pred(this);
      if (v) return v;
      if (Date.now() > deadline) {
        assert.fail(`${this.label}: timed out waiting for ${what}; got ${JSON.stringify(this.msgs)}`);
      }
      await new Promise((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  count(text) {
    return this.msgs.filter((m) => m === text).length;
  }

  // Opens and returns the hello (the first message).
  async open() {
    await withTimeout(this.opened, WAIT_MS, `${this.label} open`);
    await this.waitFor((c) => c.msgs.length >= 1, 'hello');
    return JSON.parse(this.msgs[0]);
  }

  send(text) {
    this.ws.send(text);
  }

  // Sends `count` and returns the parsed reply. Because a connection's
  // frames stay in order, everything the host queued for this client
  // before it handled `count` has arrived when the reply does.
  async countReply() {
    const before = this.msgs.length;
    this.send('count');
    const i = await this.waitFor((c) => {
      for (let k = before; k < c.msgs.length; k++) if (c.msgs[k].startsWith('{"server"')) return k + 1;
      return 0;
    }, 'count reply');
    return JSON.parse(this.msgs[i - 1]);
  }
}

// Resolves with the HTTP status of a refused upgrade (fails if it opens).
function refusedStatus(port, target) {
  return withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${target}`);
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
      res.on('error', reject);
    });
    ws.on('open', () => { ws.terminate(); reject(new Error(`${target}: upgrade accepted`)); });
    ws.on('error', (e) => reject(e));
  }), WAIT_MS, `refusal of ${target}`);
}

function get(port, target) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, method: 'GET', agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
      });
    req.on('error', reject);
    req.end();
  }), WAIT_MS, `GET ${target}`);
}

// ---------------------------------------------------------------------------
// Install and build

const ctx = { tmp: null, destdir: null, libdir: null, bin: null, flags: null, sanitize: null };

before(() => {
  ctx.tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'wshub-embed-'));
  ctx.destdir = path.join(ctx.tmp, 'dest');
  ctx.bin = path.join(ctx.tmp, 'host');
});

after(async () => {
  for (const child of started) {
    child.kill('SIGKILL');
  }
  if (ctx.tmp) fs.rmSync(ctx.tmp, { recursive: true, force: true });
});

test('install: meson install --destdir puts the header, the .so and wshub.pc in place', () => {
  runOk(MESON, ['install', '--no-rebuild', '-C', BUILD_DIR, '--destdir', ctx.destdir]);
  const found = runOk('find', [ctx.destdir, '-name', 'wshub.pc']).stdout.trim().split('\n').filter(Boolean);
  assert.equal(found.length, 1, `exactly one wshub.pc: ${JSON.stringify(found)}`);
  const pcdir = path.dirname(found[0]);
  ctx.libdir = path.dirname(pcdir);
  const prefix = path.join(ctx.destdir, 'usr', 'local');
  assert.ok(fs.existsSync(path.join(prefix, 'include', 'wshub.h')), 'installed wshub.h');
  assert.ok(fs.existsSync(path.join(ctx.libdir, 'libwshub.so')), `libwshub.so in ${ctx.libdir}`);
  const pc = runOk('pkg-config', [`--define-variable=prefix=${prefix}`, '--cflags', '--libs', 'wshub'], {
    env: { ...process.env, PKG_CONFIG_PATH: pcdir },
  }).stdout.trim();
  assert.ok(pc.includes(`-I${path.join(prefix, 'include')}`), `cflags point at the install: ${pc}`);
  assert.ok(pc.includes(`-L${ctx.libdir}`), `libs point at the install: ${pc}`);
  assert.ok(!pc.includes(SOURCE_DIR + '/src'), `no source-tree include: ${pc}`);
  ctx.flags = pc.split(/\s+/).filter(Boolean);
  // Which sanitizers the library was built with.
  const deps = runOk('ldd', [path.join(ctx.libdir, 'libwshub.so')]).stdout;
  const detected = [];
  if (/libasan\.so/.test(deps)) detected.push('address');
  if (/libubsan\.so/.test(deps)) detected.push('undefined');
  if (/libtsan\.so/.test(deps)) detected.push('thread');
  ctx.sanitize = SANITIZE_OPT ?? (detected.length ? detected.join(',') : 'none');
  if (ctx.sanitize !== 'none' && detected.length > 0) {
    for (const d of detected) {
      assert.ok(ctx.sanitize.split(',').includes(d), `library uses ${d}; --sanitize ${ctx.sanitize}`);
    }
  }
});

test('build: host.c compiles warning-free against the installed library and loads it', () => {
  assert.ok(ctx.flags, 'install step ran');
  const san = ctx.sanitize && ctx.sanitize !== 'none' ? [`-fsanitize=${ctx.sanitize}`] : [];
  runOk('cc', ['-std=c11', '-D_POSIX_C_SOURCE=200809L', '-Wall', '-Wextra', '-Werror', ...san,
    '-o', ctx.bin, HOST_C, ...ctx.flags]);
  const ldd = runOk('ldd', [ctx.bin], { env: { ...process.env, LD_LIBRARY_PATH: ctx.libdir } }).stdout;
  const line = ldd.split('\n').find((l) => l.includes('libwshub.so'));
  assert.ok(line, `ldd names libwshub.so:\n${ldd}`);
  const m = /libwshub\.so\.0 => (\S+)/.exec(line);
  assert.ok(m, `libwshub.so.0 resolved: ${line}`);
  assert.equal(path.dirname(m[1]), ctx.libdir, `loaded from the installed lib dir: ${line}`);
  // Nothing is linked statically: the host's own symbols hold no wshub_*.
  const nm = runOk('nm', ['--defined-only', ctx.bin]).stdout;
  assert.ok(!/ T wshub_/.test(nm), 'wshub_* comes from the shared library, not the binary');
});

// ---------------------------------------------------------------------------
// The embedded servers

test('host: two servers and a timer in one loop, then a clean SIGTERM', async (t) => {
  assert.ok(fs.existsSync(ctx.bin ?? ''), 'host binary built');
  const h = startHost();
  const clients = [];
  try {
    const ports = await hostPorts(h, WAIT_MS);
    assert.notEqual(ports.A, ports.B, 'two ports');
    assert.ok(ports.A > 0 && ports.B > 0, `real ports: ${JSON.stringify(ports)}`);

    const a1 = new Client(ports.A, '/', 'a1');
    const a2 = new Client(ports.A, '/', 'a2');
    const a3 = new Client(ports.A, '/chat?x=1', 'a3');
    const b1 = new Client(ports.B, '/', 'b1');
    const b2 = new Client(ports.B, '/', 'b2');
    clients.push(a1, a2, a3, b1, b2);
    const as = [a1, a2, a3];
    const bs = [b1, b2];

    await t.test('hello from the right server, first', async () => {
      const ids = new Set();
      for (const c of as) {
        const hello = await c.open();
        assert.equal(hello.type, 'hello');
        assert.equal(hello.server, 'A');
        assert.match(hello.id, /^c\d+$/);
        assert.deepEqual(Object.keys(hello).sort(), ['id', 'server', 'type']);
        ids.add(hello.id);
      }
      assert.equal(ids.size, 3, 'distinct client ids on A');
      for (const c of bs) {
        const hello = await c.open();
        assert.equal(hello.type, 'hello');
        assert.equal(hello.server, 'B');
      }
    });

    await t.test('the host timer ticks to A\'s room, never to B', async () => {
      const start = a1.ticks.length;
      await a1.waitFor((c) => c.ticks.length >= start + 3, '3 ticks');
      for (let i = 1; i < a1.ticks.length; i++) {
        assert.equal(a1.ticks[i], a1.ticks[i - 1] + 1, `consecutive ticks: ${a1.ticks}`);
      }
      await a2.waitFor((c) => c.ticks.length >= 1, 'a tick on a2');
      await a3.waitFor((c) => c.ticks.length >= 1, 'a tick on a3');
      for (const c of bs) assert.equal(c.ticks.length, 0, `${c.label} got ticks`);
    });

    await t.test('all / room / me reach exactly the right clients of the right server', async () => {
      // all from a1: every A client, itself included; no B client.
      a1.send('all');
      await a1.waitFor((c) => c.count('from-host-all') >= 1, 'from-host-all');
      const counts = await Promise.all([...as, ...bs].map((c) => c.countReply()));
      for (const c of as) assert.equal(c.count('from-host-all'), 1, `${c.label} all`);
      for (const c of bs) assert.equal(c.count('from-host-all'), 0, `${c.label} all from A`);
      // count sees only its own server's clients; the per-client counter.
      for (const r of counts.slice(0, 3)) assert.equal(r.server, 'A');
      for (const r of counts.slice(3)) assert.equal(r.server, 'B');
      assert.deepEqual(counts.map((r) => r.clients), [3, 3, 3, 2, 2]);
      assert.deepEqual(counts.map((r) => r.msgs), [2, 1, 1, 1, 1]);

      // room from a1: the other members of "ticks"; me: a1 only.
      a1.send('room');
      a1.send('me');
      await a1.waitFor((c) => c.count('from-host-me') >= 1, 'from-host-me');
      await Promise.all([a2, a3, ...bs].map((c) => c.countReply()));
      assert.equal(a1.count('from-host-room'), 0, 'room skips the sender');
      assert.equal(a2.count('from-host-room'), 1, 'a2 room');
      assert.equal(a3.count('from-host-room'), 1, 'a3 room');
      for (const c of [a2, a3, ...bs]) assert.equal(c.count('from-host-me'), 0, `${c.label} me`);

      // all / room / me on B stay on B (B's "ticks" room is empty).
      b1.send('all');
      b1.send('room');
      b1.send('me');
      await b1.waitFor((c) => c.count('from-host-me') >= 1, 'from-host-me on b1');
      const again = await Promise.all([...as, b2].map((c) => c.countReply()));
      assert.deepEqual(again.map((r) => r.clients), [3, 3, 3, 2]);
      assert.equal(b1.count('from-host-all'), 1, 'b1 all');
      assert.equal(b2.count('from-host-all'), 1, 'b2 all');
      for (const c of as) {
        assert.equal(c.count('from-host-all'), 1, `${c.label}: B's all leaked to A`);
        assert.equal(c.count('from-host-me'), c === a1 ? 1 : 0, `${c.label} me`);
      }
      for (const c of bs) assert.equal(c.count('from-host-room'), 0, `${c.label} room`);

      // Nothing late or duplicated.
      await sleep(QUIET_MS);
      assert.deepEqual([...as, ...bs].map((c) => c.count('from-host-all')), [1, 1, 1, 1, 1]);
      assert.deepEqual([...as, ...bs].map((c) => c.count('from-host-room')), [0, 1, 1, 0, 0]);
      assert.deepEqual([...as, ...bs].map((c) => c.count('from-host-me')), [1, 0, 0, 1, 0]);
      // a1 sent all, count, room, me, count and now count: six messages.
      const r = await a1.countReply();
      assert.equal(r.msgs, 6, 'a1 per-client counter');
    });

    await t.test('bye: the host closes a client with 4001 "bye"', async () => {
      a3.send('bye');
      const closed = await withTimeout(a3.closed, WAIT_MS, 'a3 close');
      assert.deepEqual(closed, { code: 4001, reason: 'bye' });
      const r = await a1.countReply();
      assert.equal(r.clients, 2, 'A has two clients left');
      assert.equal(r.opens, 3);
      assert.equal(r.closes, 1, 'on_close ran once');
      assert.equal(r.last_code, 4001, 'on_close got the code');
      const rb = await b1.countReply();
      assert.equal(rb.clients, 2, 'B unchanged');
      assert.equal(rb.closes, 0, 'B saw no close');
    });

    await t.test('the host refuses /refuse on A with 403; B has no such rule', async () => {
      const refused = await refusedStatus(ports.A, '/refuse');
      assert.equal(refused.status, 403);
      const b3 = new Client(ports.B, '/refuse', 'b3');
      const hello = await b3.open();
      assert.equal(hello.server, 'B');
      b3.ws.close(1000, 'done');
      assert.deepEqual(await withTimeout(b3.closed, WAIT_MS, 'b3 close'), { code: 1000, reason: 'done' });
      const r = await a1.countReply();
      assert.equal(r.clients, 2, 'the refused client is not counted');
      assert.equal(r.opens, 3, 'on_open accepted nobody new on A');
      const rb = await b2.countReply();
      assert.equal(rb.clients, 2, 'b3 is gone from B');
      assert.equal(rb.opens, 3);
      assert.equal(rb.closes, 1);
      assert.equal(rb.last_code, 1000);
    });

    await t.test('HTTP: the host route on A, 404 elsewhere', async () => {
      const ok = await get(ports.A, '/host');
      assert.equal(ok.status, 200);
      assert.equal(ok.headers['content-type'], 'text/plain');
      assert.equal(ok.headers['content-length'], '10');
      assert.equal(ok.body, 'host route');
      assert.equal((await get(ports.A, '/other')).status, 404);
      assert.equal((await get(ports.B, '/host')).status, 404, 'B has no host route');
      assert.equal((await get(ports.B, '/')).status, 404);
    });

    await t.test('operations: A answers /metrics for A and B together, /healthz, /readyz; B none', async () => {
      const m = await get(ports.A, '/metrics');
      assert.equal(m.status, 200);
      assert.equal(m.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
      assert.match(m.body, /^wshub_threads 2$/m);
      assert.match(m.body, /^wshub_hub_rooms\{thread="0"\} 1$/m, 'A has its room "ticks"');
      assert.match(m.body, /^wshub_hub_rooms\{thread="1"\} 0$/m);
      assert.match(m.body, /^wshub_ready 1$/m);
      assert.equal((await get(ports.A, '/healthz')).body, 'ok\n');
      assert.equal((await get(ports.A, '/readyz')).body, 'ready\n');
      assert.equal((await get(ports.B, '/metrics')).status, 404);
      assert.equal((await get(ports.B, '/healthz')).status, 404);
    });

    await t.test('SIGTERM: close 1001 to every client, both servers close, uv_loop_close() == 0', async () => {
      // Still ticking, still only on A.
      const n = a2.ticks.length;
      await a2.waitFor((c) => c.ticks.length > n, 'one more tick');
      for (const c of bs) assert.equal(c.ticks.length, 0, `${c.label} got ticks`);

      const open = [a1, a2, b1, b2];
      const res = await stopHost(h);
      const closes = await Promise.all(open.map((c) => withTimeout(c.closed, WAIT_MS, `${c.label} close`)));
      for (let i = 0; i < open.length; i++) {
        assert.equal(closes[i].code, 1001, `${open[i].label} close code`);
      }
      assert.deepEqual(res, { code: 0, signal: null }, `host exit\n${h.stderr}`);
      assert.equal(h.stdout, '', 'the library and the host print nothing to stdout');
      const lines = h.stderr.split('\n');
      const closedA = lines.findIndex((l) => l.startsWith(`host: server closed port=${ports.A} `));
      const closedB = lines.findIndex((l) => l.startsWith(`host: server closed port=${ports.B} `));
      const loopClose = lines.indexOf('host: uv_loop_close=0');
      assert.ok(closedA >= 0 && closedB >= 0, `both close callbacks ran:\n${h.stderr}`);
      assert.ok(loopClose > closedA && loopClose > closedB, `loop closed after both:\n${h.stderr}`);
      for (const i of [closedA, closedB]) {
        assert.match(lines[i], / connections=0 clients=0$/, 'nothing left when close_cb runs');
      }
      const stats = lines.find((l) => l.startsWith('host: A opens='));
      assert.match(stats ?? '', /^host: A opens=3 closes=3 last_code=1001 B opens=3 closes=3 last_code=1001 ticks=\d+$/);
    });
  } finally {
    for (const c of clients) c.ws.terminate();
    await killHost(h);
  }
});

// ---------------------------------------------------------------------------
// Valgrind

const VALGRIND = hasProgram('valgrind');
if (!VALGRIND) console.log('# valgrind is not installed: the valgrind test did not run (not passed)');

test('valgrind: a short session leaks nothing and the host exits 0', async (t) => {
    if (!VALGRIND) {
      t.skip('valgrind absent: not run, not counted as passed');
      return;
    }
    if (ctx.sanitize && ctx.sanitize !== 'none') {
      console.log(`# sanitizer build (${ctx.sanitize}): the valgrind test did not run (the plain build runs it)`);
      t.skip(`sanitizer build (${ctx.sanitize}): valgrind runs in the plain build`);
      return;
    }
    assert.ok(fs.existsSync(ctx.bin ?? ''), 'host binary built');
    const h = startHost(['valgrind', '--leak-check=full', '--error-exitcode=9',
      '--errors-for-leak-kinds=definite,indirect,possible']);
    const clients = [];
    try {
      const ports = await hostPorts(h, VG_START_MS);
      const a1 = new Client(ports.A, '/', 'vg-a1');
      const a2 = new Client(ports.A, '/', 'vg-a2');
      const b1 = new Client(ports.B, '/', 'vg-b1');
      clients.push(a1, a2, b1);
      for (const c of clients) await c.open();
      a1.send('all');
      a1.send('room');
      a1.send('me');
      b1.send('hello?');
      await a1.waitFor((c) => c.count('from-host-me') === 1, 'me');
      await a2.waitFor((c) => c.count('from-host-room') === 1, 'room');
      await b1.waitFor((c) => c.msgs.some((m) => m.includes('"unknown"')), 'unknown');
      assert.equal((await a2.countReply()).clients, 2);
      a2.send('bye');
      assert.equal((await withTimeout(a2.closed, WAIT_MS, 'bye')).code, 4001);
      assert.equal((await refusedStatus(ports.A, '/refuse')).status, 403);
      assert.equal((await get(ports.A, '/host')).body, 'host route');
      assert.equal((await get(ports.A, '/other')).status, 404);
      await a1.waitFor((c) => c.ticks.length >= 1, 'a tick', 10000);
      const res = await stopHost(h, 20000);
      for (const c of [a1, b1]) {
        assert.equal((await withTimeout(c.closed, WAIT_MS, `${c.label} close`)).code, 1001);
      }
      for (const l of h.stderr.split('\n')) {
        if (/(in use at exit|total heap usage|definitely lost|no leaks are possible|ERROR SUMMARY)/.test(l)) {
          t.diagnostic(l.replace(/^==\d+== /, ''));
        }
      }
      assert.deepEqual(res, { code: 0, signal: null }, `valgrind exit\n${h.stderr}`);
      assert.match(h.stderr, /host: uv_loop_close=0\n/);
      assert.match(h.stderr, /ERROR SUMMARY: 0 errors/, h.stderr);
      assert.doesNotMatch(h.stderr, /definitely lost: [1-9]/, h.stderr);
      assert.doesNotMatch(h.stderr, /indirectly lost: [1-9]/, h.stderr);
    } finally {
      for (const c of clients) c.ws.terminate();
      await killHost(h);
    }
  });
