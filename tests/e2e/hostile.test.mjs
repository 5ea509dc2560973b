// tests/e2e/hostile.test.mjs — hostile clients against a chatting server:
// a connect/disconnect churn with every kind of early exit, a half-open
// peer that never answers pings, SIGTERM in the middle of a conversation,
// a slowloris on the WebSocket handshake and a flood of random bytes after
// a valid upgrade.
//
// Every test asserts two things: what happens to the hostile client (the
// status, close code or TCP close it gets) and that healthy clients in the
// same room keep chatting meanwhile (a message sent by one is delivered to
// it and to the other; delivery is asserted, never speed). Every server is
// started with --port 0 and stopped by PID, and must exit 0 on SIGTERM.
//
// Ownership: servers and fixture trees belong to lib/server.mjs (started
// and stopped through withHub below); every raw socket and ChatClient a
// test opens is closed by that test, in a finally. Random choices come from
// a seeded generator (HOSTILE_SEED overrides the seed) so that a failure can
// be replayed.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/hostile.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { BIN, BIN_IS_ASAN, makeTree, startServer, stopAndCheck, Conn, sleep, HOST, WAIT_MS } from './lib/server.mjs';
import {
  upgradeBytes, assert101, clientFrame, closePayload, parseFrame, readFrame, parseClose, OP,
} from './lib/ws.mjs';
import { ChatClient, WebSocket } from './lib/chat.mjs';

const SEED = Number(process.env.HOSTILE_SEED ?? 0x5eed1e55) >>> 0;

// A generous bound for anything that must happen (sanitizer builds are
// several times slower); reaching it is a failure, never a measurement.
const LONG_MS = 20000;

// mulberry32: a small seeded generator, uniform in [0, 1).
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomBytes(rand, n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

// Lines of the server's stderr that mention an error: its log lines are
// "<time> <level> <text>", sanitizer reports say "ERROR:" or "runtime
// error". Where no client ever errs, any line with the word counts.
// Lines of a wrapper tool (valgrind's "==pid== ...", WSHUB_WRAPPER in
// lib/server.mjs) are its own: its verdict is the exit status.
function errorLines(stderr, { strict = false } = {}) {
  const re = strict ? /\berror\b/i : /^\S+ error |ERROR|runtime error/;
  return stderr.split('\n').filter((l) => re.test(l) && !/^==\d+==/.test(l));
}

const ASAN = BIN_IS_ASAN;

// The server with --threads 1 and `args`; fn(srv) runs the test. Afterwards
// the server must still be running and exit 0 on SIGTERM (stop() sends it,
// SIGKILL after a timeout). env: variables added to the server's
// environment.
async function withHub(args, fn, env = {}) {
  const tree = await makeTree({ 'index.html': '<!doctype html><title>hostile</title>\n' });
  let srv;
  try {
    const saved = { ...process.env };
    Object.assign(process.env, env);
    try {
      srv = await startServer(tree.pub, ['--threads', '1', ...args]);
    } finally {
      for (const k of Object.keys(env)) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
    await fn(srv);
    await stopAndCheck(srv, LONG_MS);
    assert.deepEqual(errorLines(srv.stderr), [], 'no error lines on stderr');
  } finally {
    if (srv && !srv.exit) await srv.stop(LONG_MS);
    await tree.cleanup();
  }
}

async function join(port, query) {
  const c = await ChatClient.open(port, query);
  c.welcomeMsg = await c.welcome(LONG_MS);
  return c;
}

// Resolves with the first message ever received by c matching pred (the
// inbox may have been drained; `received` keeps everything).
function seen(c, pred, what, ms = LONG_MS) {
  return c.waitUntil(() => c.received.find(pred), ms, what);
}

// Two healthy members of a room chatting in a bounded loop: `a` sends a
// numbered text, and both `a` (own: true) and `b` (own: false) must get it
// before the next one is sent. Messages that are not ours are drained from
// the inbox (tests look at `received`). stop() rethrows a failure.
class Chatter {
  constructor(a, b, tag, { max = 5000, pauseMs = 20 } = {}) {
    Object.assign(this, { a, b, tag, max, pauseMs });
    this.delivered = 0;
    this.running = false;
    this.error = null;
  }

  start() {
    this.running = true;
    this.done = this.loop().catch((e) => { this.error = e; });
    return this;
  }

  async loop() {
    const mine = (m) => m.type === 'message' && m.text.startsWith(`${this.tag}-`);
    for (let i = 0; this.running && i < this.max; i++) {
      const text = `${this.tag}-${i}`;
      this.a.send(text);
      await this.a.next({ type: 'message', text, own: true }, LONG_MS);
      await this.b.next({ type: 'message', text, own: false }, LONG_MS);
      this.delivered++;
      this.a.takeAll((m) => !mine(m));
      this.b.takeAll((m) => !mine(m));
      await sleep(this.pauseMs);
    }
  }

  // Waits until `n` more round trips than now have completed.
  async more(n, what) {
    const want = this.delivered + n;
    const deadline = Date.now() + LONG_MS;
    while (this.delivered < want && !this.error && this.running && Date.now() < deadline) {
      await sleep(20);
    }
    if (this.error) throw this.error;
    assert.ok(this.delivered >= want,
      `healthy clients completed ${this.delivered} round trips, want ${want} (${what})`);
  }

  async stop() {
    this.running = false;
    await this.done;
    if (this.error) throw this.error;
    return this.delivered;
  }
}

async function healthyPair(port, room) {
  const a = await join(port, { room, nick: 'alice' });
  const b = await join(port, { room, nick: 'bob' });
  await a.next({ type: 'join', room, member: b.member }, LONG_MS);
  return [a, b];
}

function vmRssKiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `VmRSS of ${pid}`);
  return Number(m[1]);
}

// The next text frame on a raw connection, parsed as JSON (pings and other
// frames before it are skipped).
async function readJson(conn, ms = LONG_MS) {
  for (;;) {
    const f = await readFrame(conn, ms);
    if (f.opcode === OP.TEXT) return JSON.parse(f.payload.toString('utf8'));
    assert.notEqual(f.opcode, OP.CLOSE, `unexpected close ${f.payload.toString('hex')}`);
  }
}

// Every frame fully buffered on conn, in order.
function drainFrames(conn) {
  const out = [];
  for (;;) {
    const f = parseFrame(conn.peek());
    if (!f) return out;
    conn.take(f.size);
    out.push(f);
  }
}

// ---------------------------------------------------------------------------
// 1. Churn

const CHURN = 1000;
const CHURN_PARALLEL = 50;
// Under a wrapper tool (valgrind keeps 20 MB of freed blocks by default
// before reusing them) the warm-up is long enough to fill that queue.
const WRAPPED = Boolean(process.env.WSHUB_WRAPPER);
const CHURN_WARMUP = WRAPPED ? 400 : 100;
const MODES = ['mid-handshake', 'after-101', 'mid-frame', 'clean-close', 'abrupt'];

// One hostile cycle in `room`; returns the mode. Asserts what the server
// owes a client at each step (the 101, the welcome, the close echo).
async function churnOne(port, room, i, rand) {
  const mode = MODES[Math.floor(rand() * MODES.length)];
  const conn = await Conn.open(port);
  try {
    const { key, bytes } = upgradeBytes(`/?room=${room}`);
    if (mode === 'mid-handshake') {
      conn.write(bytes.subarray(0, 1 + Math.floor(rand() * (bytes.length - 2))));
      if (rand() < 0.5) await sleep(1);
      return mode;
    }
    conn.write(bytes);
    const res = await conn.readResponse({ ms: LONG_MS });
    assert101(res, key);
    if (mode === 'after-101') return mode;
    if (mode === 'mid-frame') {
      const f = clientFrame(OP.TEXT, `half a frame from churner ${i}`);
      conn.write(f.subarray(0, 1 + Math.floor(rand() * (f.length - 2))));
      if (rand() < 0.5) await sleep(1);
      return mode;
    }
    const w = await readJson(conn);
    assert.equal(w.type, 'welcome', `churner ${i}: the welcome first, got ${JSON.stringify(w)}`);
    assert.equal(w.room, room);
    const n = 1 + Math.floor(rand() * 3);
    for (let k = 0; k < n; k++) conn.write(clientFrame(OP.TEXT, `churn ${i}.${k}`));
    if (mode === 'abrupt') return mode;
    conn.write(clientFrame(OP.CLOSE, closePayload(1000, 'bye')));
    let own = 0;
    for (;;) {
      const f = await readFrame(conn, LONG_MS);
      if (f.opcode === OP.CLOSE) {
        assert.equal(parseClose(f).code, 1000, `churner ${i}: the close is echoed with 1000`);
        break;
      }
      if (f.opcode === OP.TEXT) {
        const m = JSON.parse(f.payload.toString('utf8'));
        if (m.type === 'message' && m.own) own++;
      }
    }
    assert.equal(own, n, `churner ${i}: its ${n} messages were echoed before the close`);
    const rest = await conn.waitEnd(LONG_MS);
    assert.equal(rest.length, 0, `churner ${i}: nothing after the close frame`);
    return mode;
  } finally {
    conn.destroy();
  }
}

// AddressSanitizer keeps freed memory in a quarantine (256 MiB by default)
// to catch use-after-free; by RSS that is indistinguishable from a leak.
// The churn test caps it so that its RSS bound means the same in both
// builds; LeakSanitizer still checks every allocation at exit.
const CHURN_ENV = ASAN
  ? { ASAN_OPTIONS: `${process.env.ASAN_OPTIONS ? `${process.env.ASAN_OPTIONS}:` : ''}quarantine_size_mb=4` }
  : {};

test('churn: 1000 connect/disconnect cycles with early exits leak no members, memory or errors', async () => {
  await withHub(['--msg-rate', '0', '--max-per-ip', '0'], async (srv) => {
    const room = 'churn';
    const [a, b] = await healthyPair(srv.port, room);
    const newcomers = [];
    try {
      const chat = new Chatter(a, b, 'churn-chat').start();
      await chat.more(3, 'before the churn');

      const rand = rng(SEED);
      const counts = Object.fromEntries(MODES.map((m) => [m, 0]));
      let next = 0;
      const round = async (end) => {
        const worker = async () => {
          while (next < end) {
            const i = next++;
            counts[await churnOne(srv.port, room, i, rand)]++;
          }
        };
        await Promise.all(Array.from({ length: CHURN_PARALLEL }, worker));
      };
      // A warm-up round first: what the first burst of 50 connections
      // leaves allocated for good (allocator arenas, caches) is not a leak.
      await round(CHURN_WARMUP);
      const rssBefore = vmRssKiB(srv.pid);
      await round(CHURN_WARMUP + CHURN);
      await chat.more(3, 'after the churn');
      await chat.stop();
      assert.equal(Object.values(counts).reduce((x, y) => x + y), CHURN_WARMUP + CHURN);

      // Every churner that got in (all but the mid-handshake ones) was
      // announced to alice, and every one of them left again.
      const upgraded = CHURN_WARMUP + CHURN - counts['mid-handshake'];
      const presence = () => {
        const joined = new Set();
        const left = new Set();
        for (const m of a.received) {
          if (m.room !== room) continue;
          if (m.type === 'join') joined.add(m.member.id);
          if (m.type === 'leave') left.add(m.member.id);
        }
        return { joined, left };
      };
      await a.waitUntil(() => {
        const { joined, left } = presence();
        return joined.size === upgraded + 1 && left.size === upgraded ? true : undefined;
      }, LONG_MS, `${upgraded + 1} joins (bob + the churners) and ${upgraded} leaves at alice`);
      const { joined, left } = presence();
      for (const id of left) assert.ok(joined.has(id), `leave of ${id} without a join`);
      assert.ok(!left.has(b.id), 'bob never left');

      // A newcomer counts exactly the live members: alice, bob and itself.
      const c = await join(srv.port, { room, nick: 'carol' });
      newcomers.push(c);
      assert.equal(c.welcomeMsg.member_count, 3, `member_count after the churn: ${JSON.stringify(c.welcomeMsg)}`);
      assert.deepEqual(c.welcomeMsg.members.map((m) => m.id).sort(), [a.id, b.id, c.id].sort());

      // Memory: back within 20 MiB of where it was (the server trims its
      // heap every 10 s; wait for a trim, bounded).
      const bound = rssBefore + 20 * 1024;
      let rssAfter = vmRssKiB(srv.pid);
      const deadline = Date.now() + 12000;
      while (rssAfter >= bound && Date.now() < deadline) {
        await sleep(250);
        rssAfter = vmRssKiB(srv.pid);
      }
      assert.ok(rssAfter < bound,
        `VmRSS ${rssAfter} kB after the churn, ${rssBefore} kB before (bound ${bound} kB)`);

      // And the pair still chats.
      const chat2 = new Chatter(a, b, 'churn-after').start();
      await chat2.more(2, 'after the checks');
      await chat2.stop();
      assert.deepEqual(errorLines(srv.stderr, { strict: true }), [], 'no line mentions an error');
    } finally {
      for (const c of [a, b, ...newcomers]) await c.close();
    }
  }, CHURN_ENV);
});

// ---------------------------------------------------------------------------
// 2. Half-open TCP

test('half-open: a peer that goes silent after the upgrade is dropped after a missed ping', async () => {
  await withHub(['--ping-interval', '0.3'], async (srv) => {
    const room = 'half';
    const [a, b] = await healthyPair(srv.port, room);
    const conn = await Conn.open(srv.port);
    try {
      const { key, bytes } = upgradeBytes(`/?room=${room}`);
      conn.write(bytes);
      assert101(await conn.readResponse({ ms: LONG_MS }), key);
      const w = await readJson(conn);
      assert.equal(w.type, 'welcome');
      await seen(a, (m) => m.type === 'join' && m.member.id === w.id, `the join of ${w.id}`);
      // From here on we neither read nor write a byte.
      conn.sock.pause();

      const chat = new Chatter(a, b, 'half-chat').start();
      const leave = await seen(a, (m) => m.type === 'leave' && m.room === room && m.member.id === w.id,
        `the leave of the silent peer ${w.id}`);
      assert.deepEqual(leave.member, { id: w.id, nick: w.nick });
      await chat.more(3, 'after the silent peer was dropped');
      await chat.stop();

      // What reached the silent peer: the room's traffic and the pings it
      // never answered, then the server's end of the TCP connection.
      conn.sock.resume();
      await conn.waitFor(() => conn.ended, LONG_MS, 'the server to close the silent connection');
      const frames = drainFrames(conn);
      const pings = frames.filter((f) => f.opcode === OP.PING);
      const others = frames.filter((f) => f.opcode !== OP.PING && f.opcode !== OP.TEXT &&
        f.opcode !== OP.CLOSE);
      assert.ok(pings.length >= 1, `the server pinged before dropping (opcodes ${frames.map((f) => f.opcode)})`);
      assert.deepEqual(others.map((f) => f.opcode), [], 'only text, ping and close frames');
      assert.equal(conn.peek().length, 0, 'no partial frame at the end');
      assert.equal(b.closeInfo, null, 'bob (who answers pings) is still connected');
    } finally {
      conn.destroy();
      await a.close();
      await b.close();
    }
  });
});

// ---------------------------------------------------------------------------
// 3. SIGTERM during active chat

test('SIGTERM during chat: every client gets 1001 and no acknowledged message is lost', async () => {
  // Under valgrind, with compression (the npm ws client offers it), seconds
  // of messages pile up between the server and these flooding clients, and
  // the server's close frame waits behind them: give it the time.
  const wrapped = Boolean(process.env.WSHUB_WRAPPER);
  const shutdownS = wrapped ? 10 : 5;
  const tree = await makeTree({ 'index.html': 'x' });
  let srv;
  const clients = [];
  try {
    srv = await startServer(tree.pub, ['--threads', '1', '--msg-rate', '0',
      '--shutdown-timeout', String(shutdownS), '--close-timeout', wrapped ? '8' : '2']);
    const room = 'term';
    for (let i = 0; i < 5; i++) clients.push(await join(srv.port, { room, nick: `t${i}` }));
    const last = clients[4];
    for (const c of clients.slice(0, 4)) {
      await c.next({ type: 'join', room, member: last.member }, LONG_MS);
    }
    const own = (c) => c.received.filter((m) => m.type === 'message' && m.own).length;
    // Each client sends in a bounded loop (bursts of three) until its
    // connection closes, so messages are in flight when the signal lands.
    const sent = clients.map(() => 0);
    const loops = clients.map(async (c, i) => {
      for (let n = 0; n < 3000 && c.ws.readyState === WebSocket.OPEN; n++) {
        c.send({ type: 'message', text: `t${i}-${n}` });
        sent[i]++;
        if (n % 3 === 2) await sleep(2);
        c.takeAll();
      }
    });
    for (const c of clients) {
      await c.waitUntil(() => (own(c) >= 20 ? true : undefined), LONG_MS, '20 own messages echoed');
    }
    srv.signal('SIGTERM');
    const closes = [];
    for (const c of clients) closes.push(await closedWithin(c, LONG_MS));
    await Promise.all(loops);
    const exit = await srv.waitExit((shutdownS + 5) * 1000);
    assert.notEqual(exit, null, `the server exited after SIGTERM\n${srv.tail()}`);
    assert.deepEqual(exit, { code: 0, signal: null }, `exit status\n${srv.tail()}`);
    closes.forEach((ci, i) => assert.equal(ci.code, 1001, `client t${i} close: ${JSON.stringify(ci)}`));

    // Every message acknowledged to its sender (own: true) reached every
    // other client before its close, and each client's view of the room is
    // gap-free.
    const ids = clients.map((c) => new Map(c.received.filter((m) => m.type === 'message')
      .map((m) => [m.id, m])));
    let acked = 0;
    clients.forEach((s, si) => {
      for (const m of s.received) {
        if (m.type !== 'message' || !m.own) continue;
        acked++;
        clients.forEach((r, ri) => {
          if (ri === si) return;
          const got = ids[ri].get(m.id);
          assert.ok(got, `message ${m.id} ${JSON.stringify(m.text)} acknowledged to t${si} ` +
            `is missing at t${ri} (which saw ids up to ${Math.max(...ids[ri].keys())} ` +
            `before its close ${JSON.stringify(r.closeInfo)})`);
          assert.equal(got.text, m.text);
          assert.equal(got.from.id, s.id);
        });
      }
    });
    assert.ok(acked >= 100, `at least 100 acknowledged messages, got ${acked}`);
    clients.forEach((c, i) => {
      const list = [...ids[i].keys()];
      assert.deepEqual(list, list.map((_, k) => k + 1), `t${i} saw ids 1..${list.length} in order`);
    });
    assert.deepEqual(errorLines(srv.stderr), [], 'no error lines on stderr');
  } finally {
    for (const c of clients) c.ws.terminate();
    if (srv && !srv.exit) await srv.stop(LONG_MS);
    await tree.cleanup();
  }
});

async function closedWithin(c, ms) {
  let timer;
  const t = new Promise((_, rej) => {
    timer = setTimeout(() => rej(new Error(`${c.label()} saw no close within ${ms} ms\n${c.dump()}`)), ms);
  });
  try {
    return await Promise.race([c.closed, t]);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// 4. Slowloris on the handshake

// Sends `bytes` one byte every `everyMs` until the server answers or
// closes; resolves with { sent, data } once the server has closed.
function drip(port, bytes, everyMs, ms) {
  return Conn.open(port).then((conn) => new Promise((resolve) => {
    let sent = 0;
    const tick = setInterval(() => {
      if (conn.len > 0 || conn.ended || sent >= bytes.length) {
        clearInterval(tick);
        return;
      }
      conn.write(bytes.subarray(sent, sent + 1));
      sent++;
    }, everyMs);
    const finish = (closed) => {
      clearInterval(tick);
      const data = conn.take(conn.len).toString('latin1');
      conn.destroy();
      resolve({ sent, data, closed });
    };
    conn.waitFor(() => conn.ended, ms, 'close').then(() => finish(true), () => finish(false));
  }));
}

test('slowloris: upgrades dripped a byte at a time get 408 or are closed; chat goes on', async () => {
  await withHub(['--header-timeout', '1', '--max-per-ip', '0'], async (srv) => {
    const room = 'slow';
    const [a, b] = await healthyPair(srv.port, room);
    try {
      const chat = new Chatter(a, b, 'slow-chat').start();
      const { bytes } = upgradeBytes(`/?room=${room}`);
      const results = await Promise.all(Array.from({ length: 50 },
        () => drip(srv.port, bytes, 200, LONG_MS)));
      await chat.more(3, 'after the slowloris connections');
      await chat.stop();
      results.forEach((r, i) => {
        const ctx = `connection ${i} (sent ${r.sent} of ${bytes.length} bytes): got ${JSON.stringify(r.data.slice(0, 200))}`;
        assert.equal(r.closed, true, `the server closed ${ctx}`);
        assert.ok(r.sent < bytes.length, `the request never completed: ${ctx}`);
        if (r.data !== '') {
          assert.match(r.data, /^HTTP\/1\.1 408 Request Timeout\r\n/, ctx);
          assert.match(r.data, /\r\nConnection: close\r\n/i, ctx);
        }
      });
      assert.ok(results.some((r) => r.data !== ''), 'at least one got the 408');
      const c = await join(srv.port, { room });
      assert.equal(c.welcomeMsg.member_count, 3, 'no slowloris connection became a member');
      await c.close();
    } finally {
      await a.close();
      await b.close();
    }
  });
});

// ---------------------------------------------------------------------------
// 5. Garbage after a valid upgrade

const GARBAGE_CODES = [1002, 1007, 1009];
const MAX_MESSAGE = 64 * 1024;

// The first 4 KiB a garbage connection sends, by kind:
//   random  random bytes (a well-formed close frame would legitimately be
//           answered with the echo of its random code, so the first frame
//           is never a close);
//   text    a well-formed masked text frame of random bytes (not UTF-8);
//   huge    a well-formed masked binary frame header announcing more than
//           --max-message, then random bytes.
function garbageStart(kind, rand) {
  if (kind === 'random') {
    const b = randomBytes(rand, 4096);
    if ((b[0] & 0x0f) === OP.CLOSE) b[0] ^= 0x08;
    return b;
  }
  if (kind === 'text') {
    const f = clientFrame(OP.TEXT, randomBytes(rand, 200 + Math.floor(rand() * 3000)));
    return Buffer.concat([f, randomBytes(rand, 4096 - f.length)]);
  }
  const len = MAX_MESSAGE + 1 + Math.floor(rand() * 1e6);
  const f = clientFrame(OP.BINARY, randomBytes(rand, 4096 - 14), { len });
  return f;
}

// Upgrades, then writes garbage (4 KiB at a time, at most `max`) until the
// server closes. Returns { code, sent, head, frames }: code is the first
// close frame's code, or 'tcp' for a close without one.
async function garbageOne(port, room, kind, rand, max) {
  const conn = await Conn.open(port);
  try {
    const { key, bytes } = upgradeBytes(`/?room=${room}`);
    conn.write(bytes);
    assert101(await conn.readResponse({ ms: LONG_MS }), key);
    const first = garbageStart(kind, rand);
    const head = first.subarray(0, 16).toString('hex');
    let sent = 0;
    let close = null;
    const frames = [];
    const scan = () => {
      for (const f of drainFrames(conn)) {
        frames.push(f.opcode);
        if (f.opcode === OP.CLOSE && close === null) close = parseClose(f).code;
      }
      return close !== null || conn.ended;
    };
    while (!scan() && sent < max) {
      const chunk = sent === 0 ? first : randomBytes(rand, 4096);
      conn.write(chunk);
      sent += chunk.length;
      await new Promise((r) => setImmediate(r));
      if (conn.sock.writableLength > 65536) await sleep(5);
    }
    await conn.waitFor(() => scan() && conn.ended, LONG_MS,
      `the server to close after ${sent} bytes of garbage starting ${head}`).catch((e) => {
      throw new Error(`${e.message}; frames so far: ${frames}`);
    });
    scan();
    return { code: close ?? 'tcp', sent, head, frames };
  } finally {
    conn.destroy();
  }
}

test('garbage: random bytes after the upgrade end in close 1002/1007/1009 or a TCP close; chat goes on', async () => {
  await withHub(['--msg-rate', '0', '--max-per-ip', '0', '--max-message', '64K'], async (srv) => {
    const room = 'garbage';
    const [a, b] = await healthyPair(srv.port, room);
    try {
      const chat = new Chatter(a, b, 'garbage-chat').start();
      const rand = rng(SEED ^ 0x9e3779b9);
      const kinds = ['random', 'text', 'huge', 'random'];
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => {
        const kind = kinds[i % kinds.length];
        return garbageOne(srv.port, room, kind, rand, 1 << 20).then((r) => ({ kind, ...r }));
      }));
      await chat.more(3, 'after the garbage');
      await chat.stop();
      for (const r of results) {
        const ctx = `${r.kind} garbage: close ${r.code} after ${r.sent} bytes starting ${r.head} ` +
          `(opcodes received ${r.frames})`;
        assert.ok(GARBAGE_CODES.includes(r.code) || r.code === 'tcp', ctx);
        // Well-formed frames with bad content get the specific code.
        if (r.kind === 'text') assert.equal(r.code, 1007, ctx);
        if (r.kind === 'huge') assert.equal(r.code, 1009, ctx);
      }
      assert.ok(results.some((r) => r.code !== 'tcp'), 'at least one close frame with a code');
      const c = await join(srv.port, { room });
      assert.equal(c.welcomeMsg.member_count, 3, 'every garbage connection left the room');
      await c.close();
    } finally {
      await a.close();
      await b.close();
    }
  });
});

// With several threads a client's own copies cross the server's internal
// bus; they must still reach it before the close reply to a close frame it
// sent in the same packet as its messages.
test('threads: messages then a close in one packet: both own copies precede the close reply', async () => {
  const tree = await makeTree({ 'index.html': 'x' });
  const srv = await startServer(tree.pub, ['--threads', '2', '--max-per-ip', '0']);
  try {
    for (let k = 0; k < 40; k++) {
      const got = await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no close')), WAIT_MS);
        const s = net.connect(srv.port, HOST, () => s.write(upgradeBytes(`/?room=race${k}`).bytes));
        let buf = Buffer.alloc(0);
        let sent = false;
        s.on('data', (d) => {
          buf = Buffer.concat([buf, d]);
          if (!sent && buf.includes('"welcome"')) {
            sent = true;
            s.write(Buffer.concat([clientFrame(OP.TEXT, 'one'), clientFrame(OP.TEXT, 'two'),
              clientFrame(OP.CLOSE, closePayload(1000))]));
          }
        });
        s.on('error', () => {});
        s.on('close', () => { clearTimeout(timer); resolve(buf.toString('latin1')); });
      });
      const own = got.match(/"own":true/g) || [];
      assert.equal(own.length, 2, `attempt ${k}: both own copies before the close`);
      assert.ok(got.lastIndexOf('"own":true') < got.lastIndexOf('\x88\x02\x03\xe8'), 'then the close echo');
    }
  } finally {
    const r = await srv.stop();
    await tree.cleanup();
    assert.equal(r.code, 0);
  }
});
