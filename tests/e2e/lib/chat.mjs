// tests/e2e/lib/chat.mjs — a chat-protocol client for the end-to-end tests
// of docs/PROTOCOL.md.
//
// What lives here: ChatClient, a thin wrapper around the `ws` npm client
// that connects with query parameters, parses every server frame as JSON
// into an inbox, and lets a test wait for the next message matching a
// predicate (next), take messages strictly in arrival order (shift), or
// assert that no matching message arrives within a window (expectNothing);
// checks of the fields every server message carries (assertCommon) and of
// message objects (assertMessageObject); a per-group server (chatServer)
// and a tracker that closes every client a test opened.
//
// Ownership: servers are started and stopped through lib/server.mjs (it
// owns the processes and fixture trees); every ChatClient opened through a
// Tracker is closed by Tracker.closeAll(), which each test group calls in
// afterEach.

import assert from 'node:assert/strict';
import { isDeepStrictEqual } from 'node:util';
import WebSocket from 'ws';
import { HOST, WAIT_MS, makeTree, startServer, sleep } from './server.mjs';

export { WebSocket, WAIT_MS, sleep };

// How long an absence is watched for. It asserts that something does NOT
// happen, never how fast anything else happens.
export const QUIET_MS = 200;

// Timestamps must be epoch milliseconds: within a minute of our clock
// (a correctness check of the unit, not a speed assertion).
const CLOCK_SLACK_MS = 60000;

const MESSAGE_KEYS = ['from', 'id', 'own', 'params', 'room', 'text', 'timestamp', 'type'];

export function wsUrl(port, query = {}, path = '/') {
  // Percent-encoding throughout (a space is %20, never "+").
  const q = Object.entries(query)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  return `ws://${HOST}:${port}${path}${q ? `?${q}` : ''}`;
}

// Short rendering of a message for failure output.
function show(m) {
  const s = JSON.stringify(m);
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}

// A predicate from a function, a type name, or an object whose entries
// must all be deep-equal to the message's (a partial match).
export function toPredicate(p) {
  if (typeof p === 'function') return p;
  if (typeof p === 'string') return (m) => m.type === p;
  if (p && typeof p === 'object') {
    return (m) => Object.entries(p).every(([k, v]) => isDeepStrictEqual(m[k], v));
  }
  throw new TypeError(`bad predicate ${p}`);
}

function describePred(p) {
  if (typeof p === 'function') return p.what ?? p.toString().slice(0, 120);
  return JSON.stringify(p);
}

// The fields every server message has: type, text, timestamp, params.
export function assertCommon(m, ctx = '') {
  const where = `${ctx}${show(m)}`;
  assert.equal(typeof m, 'object', `a JSON object: ${where}`);
  assert.notEqual(m, null, `a JSON object: ${where}`);
  assert.ok(!Array.isArray(m), `a JSON object, not an array: ${where}`);
  assert.equal(typeof m.type, 'string', `type is a string: ${where}`);
  assert.equal(typeof m.text, 'string', `text is a string: ${where}`);
  assert.ok(Number.isInteger(m.timestamp), `timestamp is an integer: ${where}`);
  assert.ok(Math.abs(m.timestamp - Date.now()) < CLOCK_SLACK_MS,
    `timestamp is epoch milliseconds near now (${Date.now()}): ${where}`);
  assert.deepEqual(m.params, { value: m.text }, `params is {value: text}: ${where}`);
  if (m.type !== 'message') {
    assert.ok(m.text.length > 0, `a human-readable, non-empty text: ${where}`);
  }
}

// A member object {id, nick}.
export function assertMember(m, ctx = '') {
  assert.equal(typeof m, 'object', `${ctx}member is an object: ${show(m)}`);
  assert.deepEqual(Object.keys(m).sort(), ['id', 'nick'], `${ctx}member keys: ${show(m)}`);
  assert.match(m.id, /^c\d+$/, `${ctx}member id: ${show(m)}`);
  assert.equal(typeof m.nick, 'string', `${ctx}member nick: ${show(m)}`);
}

// A message object as documented: exactly these keys, with these types;
// `want` (optional) gives exact values to compare (e.g. {id, room, from,
// text, own}).
export function assertMessageObject(m, want = {}, ctx = '') {
  assertCommon(m, ctx);
  const where = `${ctx}${show(m)}`;
  assert.deepEqual(Object.keys(m).sort(), MESSAGE_KEYS, `message object keys: ${where}`);
  assert.equal(m.type, 'message', `type: ${where}`);
  assert.ok(Number.isInteger(m.id) && m.id >= 1, `id is a positive integer: ${where}`);
  assert.equal(typeof m.room, 'string', `room: ${where}`);
  assertMember(m.from, ctx);
  assert.equal(typeof m.own, 'boolean', `own is a boolean: ${where}`);
  for (const [k, v] of Object.entries(want)) {
    assert.deepEqual(m[k], v, `message ${k}: ${where}`);
  }
}

// Checks a history array: message objects with ids `ids` in that order,
// all in `room`, own computed against `selfId`.
export function assertHistory(list, { room, ids, selfId, texts }, ctx = '') {
  assert.ok(Array.isArray(list), `${ctx}history is an array: ${show(list)}`);
  assert.deepEqual(list.map((m) => m.id), ids, `${ctx}history ids: ${show(list)}`);
  list.forEach((m, i) => {
    assertMessageObject(m, { room, own: m.from.id === selfId }, `${ctx}history[${i}] `);
    if (texts) assert.equal(m.text, texts[i], `${ctx}history[${i}] text`);
  });
}

// ---------------------------------------------------------------------------
// The client

export class ChatClient {
  constructor(ws, url) {
    this.ws = ws;
    this.url = url;
    this.inbox = [];      // not yet consumed, in arrival order
    this.received = [];   // everything, for failure messages
    this.waiters = new Set();
    this.closeInfo = null;
    this.error = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.wake();
        resolve(this.closeInfo);
      });
    });
    ws.on('message', (data, isBinary) => {
      let m;
      if (isBinary) {
        m = { type: '<binary frame>', hex: Buffer.from(data).toString('hex') };
      } else {
        const s = data.toString('utf8');
        try {
          m = JSON.parse(s);
        } catch {
          m = { type: '<not JSON>', raw: s };
        }
      }
      this.inbox.push(m);
      this.received.push(m);
      this.wake();
    });
    ws.on('error', (e) => { this.error = e; this.wake(); });
  }

  // Opens a client; query is an object of URL query parameters.
  static open(port, query = {}, path = '/') {
    const url = wsUrl(port, query, path);
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const c = new ChatClient(ws, url);
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (req, res) => {
        reject(new Error(`unexpected HTTP ${res.statusCode} to the upgrade of ${url}`));
        req.destroy();
      });
      ws.once('error', (e) => { if (ws.readyState !== WebSocket.OPEN) reject(e); });
    });
  }

  wake() {
    for (const w of this.waiters) w();
  }

  label() {
    return this.id ? `client ${this.id}` : `client at ${this.url}`;
  }

  dump() {
    const all = this.received.map((m) => `  ${show(m)}`).join('\n');
    return `${this.label()} received ${this.received.length} message(s):\n${all || '  (none)'}` +
      (this.closeInfo ? `\n  [closed ${JSON.stringify(this.closeInfo)}]` : '');
  }

  // Waits until check() returns something other than undefined; rejects
  // on close or after ms with the list of what was received.
  waitUntil(check, ms, what) {
    return new Promise((resolve, reject) => {
      let timer;
      const run = () => {
        let r;
        try {
          r = check();
        } catch (e) {
          done();
          reject(e);
          return;
        }
        if (r !== undefined) {
          done();
          resolve(r);
        } else if (this.closeInfo) {
          done();
          reject(new Error(`connection closed (${JSON.stringify(this.closeInfo)}) while ` +
            `waiting for ${what}\n${this.dump()}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(run);
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}\n${this.dump()}`));
      }, ms);
      this.waiters.add(run);
      run();
    });
  }

  // The first unconsumed message matching pred (function, type name or
  // partial object); it is removed from the inbox, earlier non-matching
  // ones stay. Common fields are checked on what is returned.
  async next(pred, ms = WAIT_MS) {
    const f = toPredicate(pred);
    const m = await this.waitUntil(() => {
      const i = this.inbox.findIndex((x) => f(x));
      if (i < 0) return undefined;
      return this.inbox.splice(i, 1)[0];
    }, ms, `a message matching ${describePred(pred)} at ${this.label()}`);
    assertCommon(m, `${this.label()}: `);
    return m;
  }

  // The very next unconsumed message, whatever it is (strict order).
  async shift(ms = WAIT_MS) {
    const m = await this.waitUntil(() => (this.inbox.length ? this.inbox.shift() : undefined),
      ms, `any message at ${this.label()}`);
    assertCommon(m, `${this.label()}: `);
    return m;
  }

  // Asserts that no message matching pred is in the inbox now or arrives
  // within ms (default QUIET_MS).
  async expectNothing(pred = () => true, ms = QUIET_MS) {
    const f = toPredicate(pred);
    await sleep(ms);
    const bad = this.inbox.filter((x) => f(x));
    assert.equal(bad.length, 0,
      `${this.label()} must not receive a message matching ${describePred(pred)}, got:\n` +
      `${bad.map((m) => `  ${show(m)}`).join('\n')}\n${this.dump()}`);
  }

  // All currently unconsumed messages matching pred (removed).
  takeAll(pred = () => true) {
    const f = toPredicate(pred);
    const out = [];
    this.inbox = this.inbox.filter((x) => {
      if (f(x)) { out.push(x); return false; }
      return true;
    });
    return out;
  }

  // Waits for n messages matching pred and removes exactly those n (in
  // arrival order); later matches stay in the inbox.
  async nextN(pred, n, ms = WAIT_MS) {
    const f = toPredicate(pred);
    const list = await this.waitUntil(() => {
      const idx = [];
      this.inbox.forEach((x, i) => { if (idx.length < n && f(x)) idx.push(i); });
      if (idx.length < n) return undefined;
      const picked = idx.map((i) => this.inbox[i]);
      const drop = new Set(idx);
      this.inbox = this.inbox.filter((_, i) => !drop.has(i));
      return picked;
    }, ms, `${n} messages matching ${describePred(pred)} at ${this.label()}`);
    for (const m of list) assertCommon(m, `${this.label()}: `);
    return list;
  }

  // Sends a string as a text frame, an object as its JSON, a Buffer as a
  // binary frame.
  send(x) {
    if (Buffer.isBuffer(x)) this.ws.send(x, { binary: true });
    else if (typeof x === 'string') this.ws.send(x);
    else this.ws.send(JSON.stringify(x));
  }

  // Waits for the welcome, which must be the first message, and records
  // this client's id and nick.
  async welcome(ms = WAIT_MS) {
    const w = await this.shift(ms);
    assert.equal(w.type, 'welcome', `the first message is the welcome: ${show(w)}\n${this.dump()}`);
    this.id = w.id;
    this.nick = w.nick;
    this.member = { id: w.id, nick: w.nick };
    return w;
  }

  async close(ms = 2000) {
    if (this.closeInfo) return this.closeInfo;
    try {
      this.ws.close(1000);
    } catch { /* not open */ }
    let timer;
    const t = new Promise((r) => { timer = setTimeout(() => r(null), ms); });
    const res = await Promise.race([this.closed, t]);
    clearTimeout(timer);
    if (!res) {
      this.ws.terminate();
      await this.closed;
    }
    return this.closeInfo;
  }

  // Drops the TCP connection without a close frame.
  terminate() {
    this.ws.terminate();
    return this.closed;
  }
}

// Tracks the clients of one test so they are all closed afterwards.
export class Tracker {
  constructor() {
    this.clients = new Set();
  }

  async open(port, query = {}, path = '/') {
    const c = await ChatClient.open(port, query, path);
    this.clients.add(c);
    return c;
  }

  // Opens a client and reads its welcome; returns the client (c.welcomeMsg
  // holds the welcome).
  async join(port, query = {}) {
    const c = await this.open(port, query);
    c.welcomeMsg = await c.welcome();
    return c;
  }

  async closeAll() {
    const list = [...this.clients];
    this.clients.clear();
    await Promise.all(list.map((c) => c.close()));
  }
}

// ---------------------------------------------------------------------------
// A server for a group of tests

// Starts wshub (chat mode) with extra args; stop() asserts it was still
// running and exited 0 on SIGTERM.
export async function chatServer(args = []) {
  const tree = await makeTree({ 'index.html': '<!doctype html><title>chat e2e</title>\n' });
  let srv;
  try {
    srv = await startServer(tree.pub, args);
  } catch (e) {
    await tree.cleanup();
    throw e;
  }
  return {
    srv,
    port: srv.port,
    async stop() {
      try {
        const res = await srv.stop();
        assert.ok(res.wasRunning, `server died during the tests: ${JSON.stringify(res)}\n${srv.tail()}`);
        assert.equal(res.killed, false, `server ignored SIGTERM\n${srv.tail()}`);
        assert.equal(res.code, 0, `server exit code on SIGTERM\n${srv.tail()}`);
      } finally {
        if (!srv.exit) await srv.stop();
        await tree.cleanup();
      }
    },
  };
}

// Unique room names for tests sharing a server.
let roomSeq = 0;
export function uniqueRoom(prefix = 'r') {
  roomSeq += 1;
  return `${prefix}-${process.pid}-${roomSeq}`;
}
