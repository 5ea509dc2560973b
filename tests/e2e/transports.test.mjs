// tests/e2e/transports.test.mjs — the HTTP transports of docs/PROTOCOL.md
// ("HTTP transports: Server-Sent Events, long polling, polling"), end to
// end: sessions (token in Set-Cookie / X-Wshub-Session / ?session=, which
// one wins, unknown tokens, nick= on the first request, refused requests
// start none), one room shared by an event-stream client, a long-polling
// one, a plain polling one and a WebSocket one (every message exactly once,
// same order, same ids, own right), the event stream itself (headers, welcome, id: lines, resume by
// Last-Event-ID and after=, gap, several streams, room isolation, ping
// comments, slow consumers), long polling (at once, held, 204), POST
// /messages (202 and every 400 / 413 / 429 / 405 of the spec, the session
// and the room chatting on afterwards) and session expiry.
//
// Ownership: servers come from lib/chat.mjs (chatServer: --port 0, stopped
// by PID, must exit 0); WebSocket clients are opened through a Tracker and
// closed in afterEach; every event stream and raw socket opened here is in
// `streams` and destroyed in afterEach. Nothing here asserts speed: every
// wait is bounded only so that a missing answer fails instead of hanging.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/transports.test.mjs

import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { Conn, HOST, WAIT_MS, reqBytes, parseHead, hasToken } from './lib/server.mjs';
import {
  Tracker, chatServer, uniqueRoom, assertCommon, assertMember,
  assertMessageObject, assertHistory, toPredicate, sleep, QUIET_MS,
} from './lib/chat.mjs';

const COMMON = ['params', 'text', 'timestamp', 'type'];
const WELCOME_KEYS = [...COMMON, 'history', 'id', 'last_id', 'member_count', 'members', 'nick',
  'room', 'rooms'].sort();
const TOKEN_RE = /^[0-9a-f]{32}$/;
const COOKIE_RE = /^wshub_session=([0-9a-f]{32}); Path=\/; HttpOnly; SameSite=Lax$/;

// Every event stream / raw socket a test opens; destroyed after each test.
const streams = new Set();
function closeStreams() {
  for (const s of streams) {
    if (typeof s.close === 'function') s.close();
    else s.destroy();
  }
  streams.clear();
}

function show(x) {
  const s = JSON.stringify(x);
  return s.length > 400 ? `${s.slice(0, 400)}…` : s;
}

// A request target: path plus percent-encoded query (a space is %20).
function target(path, query = {}) {
  const q = Object.entries(query)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  return q ? `${path}?${q}` : path;
}

// The media type of a Content-Type value (parameters dropped), lower case.
function mediaType(v) {
  return v === undefined ? undefined : v.split(';')[0].trim().toLowerCase();
}

// ---------------------------------------------------------------------------
// Plain requests

// One request. With opts.conn it goes on that (kept-alive) connection,
// else on a fresh one that is closed afterwards. res.json is the parsed
// body when it is application/json.
async function request(port, method, tgt, { headers = {}, body, ms = WAIT_MS, conn } = {}) {
  const own = !conn;
  const c = conn ?? await Conn.open(port);
  if (own) streams.add(c);
  const hs = { ...headers };
  let b = '';
  if (body !== undefined) {
    b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
    hs['Content-Length'] = String(b.length);
  }
  c.write(reqBytes(method, tgt, hs, b));
  let res;
  try {
    res = await c.readResponse({ ms });
  } finally {
    if (own) { c.destroy(); streams.delete(c); }
  }
  res.json = null;
  if (mediaType(res.get('content-type')) === 'application/json' && res.body.length) {
    try {
      res.json = JSON.parse(res.text);
    } catch {
      assert.fail(`${method} ${tgt}: the body is not JSON: ${show(res.text)}`);
    }
  }
  res.what = `${method} ${tgt} → ${res.status}\n${res.raw}${res.text.slice(0, 400)}`;
  return res;
}

// The session token of a response: Set-Cookie and X-Wshub-Session, once
// each, the same 32 lowercase hex digits.
function assertSessionHeaders(res) {
  const cookies = res.all('set-cookie');
  assert.equal(cookies.length, 1, `one Set-Cookie: ${res.what}`);
  const m = COOKIE_RE.exec(cookies[0]);
  assert.ok(m, `Set-Cookie is "wshub_session=<32 hex>; Path=/; HttpOnly; SameSite=Lax": ${res.what}`);
  const xs = res.all('x-wshub-session');
  assert.equal(xs.length, 1, `one X-Wshub-Session: ${res.what}`);
  assert.match(xs[0], TOKEN_RE, `X-Wshub-Session is 32 lowercase hex digits: ${res.what}`);
  assert.equal(xs[0], m[1], `X-Wshub-Session and the cookie carry the same token: ${res.what}`);
  return m[1];
}

// The session headers of an answer, as a problem string (null when right):
// tests check them last, after everything else, so one failure report
// shows all that differs.
function sessionProblem(res, token) {
  try {
    assert.equal(assertSessionHeaders(res), token, `the session's token: ${res.what}`);
    return null;
  } catch (e) {
    return e.message.split('\n')[0];
  }
}

// assertJsonError as a problem string (null when right).
function errorProblem(res, status, code) {
  try {
    assertJsonError(res, status, code);
    return null;
  } catch (e) {
    return `want ${status} ${code}: got ${res.status} ${res.json ? res.json.code : ''} — ${res.what.split('\n')[0]}`;
  }
}

function assertNoProblems(problems, what) {
  const list = problems.filter(Boolean);
  assert.equal(list.length, 0, `${what}:\n  ${list.join('\n  ')}`);
}

// A 400/429 answer: application/json, the error object a WebSocket client
// would get (exactly type, code, text, timestamp, params).
function assertJsonError(res, status, code) {
  assert.equal(res.status, status, `status ${status} (${code}): ${res.what}`);
  assert.equal(mediaType(res.get('content-type')), 'application/json', `Content-Type: ${res.what}`);
  assert.ok(res.json, `a JSON body: ${res.what}`);
  assertCommon(res.json, `${res.what}\n`);
  assert.deepEqual(Object.keys(res.json).sort(), [...COMMON, 'code'].sort(), `error fields: ${res.what}`);
  assert.equal(res.json.type, 'error', res.what);
  assert.equal(res.json.code, code, `error code: ${res.what}`);
}

// A 202 for a POST: {"type":"accepted"} (plus "id" for a room message).
function assertAccepted(res, withId) {
  assert.equal(res.status, 202, `202 Accepted: ${res.what}`);
  assert.equal(mediaType(res.get('content-type')), 'application/json', `Content-Type: ${res.what}`);
  assert.ok(res.json, `a JSON body: ${res.what}`);
  if (withId) {
    assert.deepEqual(Object.keys(res.json).sort(), ['id', 'type'], `accepted fields: ${res.what}`);
    assert.ok(Number.isInteger(res.json.id) && res.json.id >= 1, `accepted id: ${res.what}`);
  } else {
    assert.deepEqual(res.json, { type: 'accepted' }, `accepted body: ${res.what}`);
  }
  assert.equal(res.json.type, 'accepted', res.what);
  return res.json.id;
}

// A 200 poll answer: messages `ids` of `room`, own against selfId (when
// known), last_id. Returns the messages.
function assertPoll(res, { room, ids, lastId, selfId }) {
  assert.equal(res.status, 200, `200: ${res.what}`);
  assert.equal(mediaType(res.get('content-type')), 'application/json', `Content-Type: ${res.what}`);
  const p = res.json;
  assert.ok(p, `a JSON body: ${res.what}`);
  assert.equal(p.type, 'poll', `type poll: ${res.what}`);
  assert.equal(p.room, room, `room: ${res.what}`);
  assert.ok(Array.isArray(p.messages), `messages is an array: ${res.what}`);
  assert.ok(Number.isInteger(p.last_id), `last_id is an integer: ${res.what}`);
  if (ids) assert.deepEqual(p.messages.map((m) => m.id), ids, `poll message ids: ${res.what}`);
  if (lastId !== undefined) assert.equal(p.last_id, lastId, `last_id: ${res.what}`);
  p.messages.forEach((m, i) => {
    const want = { room };
    if (selfId) want.own = m.from.id === selfId;
    assertMessageObject(m, want, `poll messages[${i}] `);
  });
  return p.messages;
}

function assert204(res) {
  assert.equal(res.status, 204, `204 No Content: ${res.what}`);
  assert.equal(res.body.length, 0, `an empty body: ${res.what}`);
}

// ---------------------------------------------------------------------------
// The event stream

// Incremental decoder of a chunked body (in case the stream is chunked; the
// spec does not say either way).
class Dechunk {
  constructor() { this.buf = Buffer.alloc(0); this.state = 'size'; this.left = 0; this.done = false; }

  push(b) {
    this.buf = Buffer.concat([this.buf, b]);
    const out = [];
    for (;;) {
      if (this.done) break;
      if (this.state === 'size') {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) break;
        const size = parseInt(this.buf.subarray(0, i).toString('latin1'), 16);
        assert.ok(Number.isFinite(size), 'a chunk size line');
        this.buf = this.buf.subarray(i + 2);
        if (size === 0) { this.done = true; break; }
        this.left = size;
        this.state = 'data';
      } else if (this.state === 'data') {
        const n = Math.min(this.left, this.buf.length);
        if (n === 0) break;
        out.push(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        this.left -= n;
        if (this.left === 0) this.state = 'crlf';
      } else {
        if (this.buf.length < 2) break;
        this.buf = this.buf.subarray(2);
        this.state = 'size';
      }
    }
    return Buffer.concat(out);
  }
}

// Checks one dispatched event: one data: line holding one JSON object with
// the common fields; event: equal to its type; id: exactly on room
// messages, equal to their id.
function assertEventShape(ev, ctx = '') {
  const where = `${ctx}event ${show(ev.fields)}`;
  const names = ev.fields.map(([n]) => n);
  for (const n of names) {
    assert.ok(['event', 'id', 'data', 'retry'].includes(n), `unexpected field "${n}": ${where}`);
  }
  const data = ev.fields.filter(([n]) => n === 'data');
  assert.equal(data.length, 1, `exactly one data: line: ${where}`);
  assert.ok(ev.json !== undefined, `data: is JSON: ${where}`);
  assertCommon(ev.json, ctx);
  const evs = ev.fields.filter(([n]) => n === 'event');
  assert.equal(evs.length, 1, `exactly one event: line: ${where}`);
  assert.equal(evs[0][1], ev.json.type, `event: is the object's type: ${where}`);
  const ids = ev.fields.filter(([n]) => n === 'id');
  if (ev.json.type === 'message') {
    assert.equal(ids.length, 1, `a room message carries one id: line: ${where}`);
    assert.equal(ids[0][1], String(ev.json.id), `id: is the message id: ${where}`);
  } else {
    assert.equal(ids.length, 0, `no id: line on a ${ev.json.type}: ${where}`);
  }
}

class Sse {
  // GET tgt with headers; resolves once the response head is in. A non-200
  // answer's body is read (res.json for JSON) and the stream is closed.
  static async open(port, tgt, headers = {}) {
    const conn = await Conn.open(port);
    const s = new Sse(conn, tgt);
    streams.add(s);
    conn.write(reqBytes('GET', tgt, headers));
    let end = -1;
    await conn.waitFor(() => conn.len > 0 && (end = conn.peek().indexOf('\r\n\r\n')) >= 0,
      WAIT_MS, `the head of GET ${tgt}`);
    const head = parseHead(conn.take(end + 4).toString('latin1'));
    head.what = `GET ${tgt} → ${head.status}\n${head.raw}`;
    s.head = head;
    if (head.status !== 200) {
      const cl = head.get('content-length');
      if (cl !== undefined) {
        await conn.waitFor(() => conn.len >= Number(cl), WAIT_MS, 'the error body');
        head.body = conn.take(Number(cl));
      } else {
        await conn.waitFor(() => conn.ended, WAIT_MS, 'the error body');
        head.body = conn.take(conn.len);
      }
      head.text = head.body.toString('utf8');
      head.what += head.text;
      head.json = null;
      if (mediaType(head.get('content-type')) === 'application/json') head.json = JSON.parse(head.text);
      s.close();
      return s;
    }
    if (hasToken(head.get('transfer-encoding'), 'chunked')) s.dechunk = new Dechunk();
    conn.wakers.add(() => s.pump());
    s.pump();
    return s;
  }

  constructor(conn, tgt) {
    this.conn = conn;
    this.tgt = tgt;
    this.decoder = new StringDecoder('utf8');
    this.text = '';
    this.cur = [];
    this.events = [];   // every dispatched event, in order
    this.inbox = [];    // not yet consumed
    this.comments = []; // comment lines as received
    this.waiters = new Set();
    this.dechunk = null;
  }

  pump() {
    if (this.conn.len > 0) {
      let b = this.conn.take(this.conn.len);
      if (this.dechunk) b = this.dechunk.push(b);
      this.text += this.decoder.write(b);
      let i;
      while ((i = this.text.indexOf('\n')) >= 0) {
        let line = this.text.slice(0, i);
        this.text = this.text.slice(i + 1);
        if (line.endsWith('\r')) line = line.slice(0, -1);
        this.line(line);
      }
    }
    for (const w of this.waiters) w();
  }

  line(l) {
    if (l === '') {
      if (this.cur.length) this.dispatch(this.cur);
      this.cur = [];
    } else if (l.startsWith(':')) {
      this.comments.push(l);
    } else {
      const i = l.indexOf(':');
      const name = i < 0 ? l : l.slice(0, i);
      let value = i < 0 ? '' : l.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      this.cur.push([name, value]);
    }
  }

  dispatch(fields) {
    const ev = { fields, json: undefined };
    const data = fields.filter(([n]) => n === 'data').map(([, v]) => v).join('\n');
    try {
      ev.json = JSON.parse(data);
    } catch { /* left undefined: assertEventShape reports it */ }
    if (ev.json === null || typeof ev.json !== 'object') {
      ev.json = { type: '<not a JSON object>', raw: data };
    }
    Object.defineProperty(ev.json, 'sse', { value: ev, enumerable: false });
    this.events.push(ev);
    this.inbox.push(ev.json);
  }

  get ended() { return this.conn.ended; }

  dump() {
    const all = this.events.map((e) => `  ${show(e.fields)}`).join('\n');
    return `stream ${this.tgt} got ${this.events.length} event(s):\n${all || '  (none)'}` +
      (this.comments.length ? `\n  comments: ${show(this.comments)}` : '') +
      (this.ended ? '\n  [connection ended]' : '');
  }

  waitUntil(check, ms, what) {
    return new Promise((resolve, reject) => {
      let timer;
      const run = () => {
        let r;
        try { r = check(); } catch (e) { done(); reject(e); return; }
        if (r !== undefined) { done(); resolve(r); } else if (this.ended) {
          done();
          reject(new Error(`the stream ended while waiting for ${what}\n${this.dump()}`));
        }
      };
      const done = () => { clearTimeout(timer); this.waiters.delete(run); };
      timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}\n${this.dump()}`));
      }, ms);
      this.waiters.add(run);
      run();
    });
  }

  // The next event's object, whatever it is (strict order); shape checked.
  async shift(ms = WAIT_MS) {
    const m = await this.waitUntil(() => (this.inbox.length ? this.inbox.shift() : undefined),
      ms, `any event on ${this.tgt}`);
    assertEventShape(m.sse, `${this.tgt}: `);
    return m;
  }

  // The first unconsumed event matching pred; earlier ones stay.
  async next(pred, ms = WAIT_MS) {
    const f = toPredicate(pred);
    const m = await this.waitUntil(() => {
      const i = this.inbox.findIndex((x) => f(x));
      return i < 0 ? undefined : this.inbox.splice(i, 1)[0];
    }, ms, `an event matching ${typeof pred === 'function' ? pred.toString().slice(0, 100) : show(pred)} on ${this.tgt}`);
    assertEventShape(m.sse, `${this.tgt}: `);
    return m;
  }

  // n events matching pred, in arrival order (removed).
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
    }, ms, `${n} events matching ${show(pred)} on ${this.tgt}`);
    for (const m of list) assertEventShape(m.sse, `${this.tgt}: `);
    return list;
  }

  async expectNothing(pred = () => true, ms = QUIET_MS) {
    const f = toPredicate(pred);
    await sleep(ms);
    const bad = this.inbox.filter((x) => f(x));
    assert.equal(bad.length, 0, `${this.tgt} must not get ${bad.map(show).join('\n')}\n${this.dump()}`);
  }

  takeAll(pred = () => true) {
    const f = toPredicate(pred);
    const out = [];
    this.inbox = this.inbox.filter((x) => { if (f(x)) { out.push(x); return false; } return true; });
    for (const m of out) assertEventShape(m.sse, `${this.tgt}: `);
    return out;
  }

  // Every event received so far has the right shape.
  checkAll() {
    for (const ev of this.events) assertEventShape(ev, `${this.tgt}: `);
  }

  // Ids of every message delivered on this stream: the welcome's history
  // and the message events.
  deliveredIds() {
    const out = [];
    for (const ev of this.events) {
      if (ev.json.type === 'welcome' && Array.isArray(ev.json.history)) {
        out.push(...ev.json.history.map((m) => m.id));
      } else if (ev.json.type === 'message') {
        out.push(ev.json.id);
      }
    }
    return out;
  }

  async waitEnd(ms = WAIT_MS) {
    await this.conn.waitFor(() => this.conn.ended, ms, `the end of ${this.tgt}`);
  }

  close() {
    this.conn.destroy();
    streams.delete(this);
  }
}

// The headers of a 200 event stream.
function assertStreamHead(head) {
  assert.equal(head.status, 200, `200: ${head.what}`);
  assert.equal(mediaType(head.get('content-type')), 'text/event-stream', `Content-Type: ${head.what}`);
  assert.equal(head.get('cache-control'), 'no-store', `Cache-Control: ${head.what}`);
  assert.ok(hasToken(head.get('connection'), 'close'), `Connection: close: ${head.what}`);
}

// ---------------------------------------------------------------------------
// An HTTP chat client (one session)

class HttpSession {
  constructor(port, label = 'session') {
    this.port = port;
    this.label = label;
    this.token = null;
    this.id = null;
    this.nick = null;
  }

  get member() { return { id: this.id, nick: this.nick }; }

  // Query and headers carrying the token `how`: header, query, cookie, none.
  query(q, how) {
    return this.token && how === 'query' ? { ...q, session: this.token } : { ...q };
  }

  headers(how, extra = {}) {
    const h = {};
    if (this.token && how === 'header') h['X-Wshub-Session'] = this.token;
    if (this.token && how === 'cookie') h.Cookie = `wshub_session=${this.token}`;
    return { ...h, ...extra };
  }

  // Checks the response's token: the first one is adopted, later ones must
  // be the same.
  adopt(res) {
    const t = assertSessionHeaders(res);
    if (this.token === null) this.token = t;
    else assert.equal(t, this.token, `${this.label} keeps its token: ${res.what}`);
    return t;
  }

  async poll(q = {}, { how = 'header', headers = {}, ms = WAIT_MS, conn } = {}) {
    const res = await request(this.port, 'GET', target('/poll', this.query(q, how)),
      { headers: this.headers(how, headers), ms, conn });
    this.adopt(res);
    return res;
  }

  // POSTs an object (as JSON) or a string body.
  async post(obj, { how = 'header', query = {}, contentType = 'application/json', headers = {},
    conn, adopt = true } = {}) {
    const body = typeof obj === 'string' || Buffer.isBuffer(obj) ? obj : JSON.stringify(obj);
    const hs = this.headers(how, headers);
    if (contentType !== null) hs['Content-Type'] = contentType;
    const res = await request(this.port, 'POST', target('/messages', this.query(query, how)),
      { headers: hs, body, conn });
    if (adopt) this.adopt(res);
    return res;
  }

  async say(text, room) {
    const res = await this.post(room ? { type: 'message', room, text } : { type: 'message', text });
    return assertAccepted(res, true);
  }

  async setNick(name) {
    assertAccepted(await this.post({ type: 'nick', name }), false);
    this.nick = name;
  }

  async events(q = {}, { how = 'query', headers = {} } = {}) {
    const s = await Sse.open(this.port, target('/events', this.query(q, how)), this.headers(how, headers));
    this.adopt(s.head);
    assertStreamHead(s.head);
    return s;
  }

  // Opens a stream and reads its welcome (recording id and nick).
  async stream(q = {}, opts = {}) {
    const s = await this.events(q, opts);
    const w = await s.shift();
    assert.equal(w.type, 'welcome', `the first event is the welcome: ${show(w)}`);
    assert.deepEqual(Object.keys(w).sort(), WELCOME_KEYS, `welcome fields: ${show(w)}`);
    if (this.id === null) {
      this.id = w.id;
      this.nick = w.nick;
    } else {
      assert.equal(w.id, this.id, `${this.label}: the same id on every stream`);
    }
    s.welcome = w;
    return s;
  }
}

// A session's first request (a poll in `room`); `watcher` (a WebSocket
// client already in the room) sees its join, which gives its id and nick.
async function pollingSession(port, room, watcher, q = {}, label = 'poller') {
  const s = new HttpSession(port, label);
  const res = await s.poll({ room, ...q });
  assert.equal(res.status, 200, `a first poll without after answers at once: ${res.what}`);
  const j = await watcher.next({ type: 'join', room });
  assertMember(j.member);
  s.id = j.member.id;
  s.nick = j.member.nick;
  return s;
}

const sortMembers = (list) => [...list].sort((a, b) => Number(a.id.slice(1)) - Number(b.id.slice(1)));

// ===========================================================================
// An idle stream opened first and checked last: a ": ping" comment within
// 15 s (plus slack). Its own server, so nothing else happens in its room.
let pingServer;
let pingStream;
before(async () => {
  pingServer = await chatServer([]);
  const s = new HttpSession(pingServer.port, 'idle');
  pingStream = await s.stream({ room: 'idle' });
  streams.delete(pingStream); // not closed by the per-test cleanup
});
after(async () => {
  if (pingStream) pingStream.close();
  if (pingServer) await pingServer.stop();
});

// ===========================================================================
describe('sessions', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer([]); });
  after(async () => { await tr.closeAll(); closeStreams(); await server.stop(); });
  afterEach(async () => { await tr.closeAll(); closeStreams(); });

  test('first request: a 32-hex token in Set-Cookie and X-Wshub-Session; nick= and room= of the first request apply', async () => {
    const room = uniqueRoom('sess');
    const w = await tr.join(server.port, { room });
    const res = await request(server.port, 'GET', target('/poll', { room, nick: 'ann smith' }));
    assertPoll(res, { room, ids: [], lastId: 0 });
    const t = assertSessionHeaders(res);
    const j = await w.next({ type: 'join', room });
    assertMember(j.member);
    assert.equal(j.member.nick, 'ann smith', 'nick= of the first request');
    assert.notEqual(j.member.id, w.id, 'a session id of its own');
    // Its welcome (via ?session=) shows the same identity, in `room` only.
    const s = new HttpSession(server.port);
    s.token = t;
    const st = await s.stream({ room });
    assert.equal(st.welcome.id, j.member.id);
    assert.equal(st.welcome.nick, 'ann smith');
    assert.equal(st.welcome.room, room);
    assert.deepEqual(st.welcome.rooms, [room], 'the first request\'s room= instead of lobby');
    assert.deepEqual(sortMembers(st.welcome.members), sortMembers([w.member, j.member]));
    assert.equal(st.welcome.member_count, 2);
    // A session without nick= gets guest-<n>; its id is another c<n>.
    const res2 = await request(server.port, 'GET', target('/poll', { room }));
    const t2 = assertSessionHeaders(res2);
    assert.notEqual(t2, t, 'a second client without a token gets another token');
    const j2 = await w.next({ type: 'join', room });
    assert.match(j2.member.nick, /^guest-\d+$/);
    assert.notEqual(j2.member.id, j.member.id);
    assert.notEqual(j2.member.id, w.id);
  });

  test('the token by header, query and cookie: one identity (from.id, own), the same token back', async () => {
    const room = uniqueRoom('sess');
    const w = await tr.join(server.port, { room });
    const s = await pollingSession(server.port, room, w, { nick: 'bea' });
    assert.equal(s.nick, 'bea');
    const ids = [];
    for (const how of ['header', 'query', 'cookie']) {
      const res = await s.post({ type: 'message', text: `via ${how}` }, { how });
      ids.push(assertAccepted(res, true));
    }
    assert.deepEqual(ids, [1, 2, 3]);
    // A cookie among others.
    const res = await s.post({ type: 'message', text: 'via cookie among others' },
      { how: 'none', headers: { Cookie: `a=1; wshub_session=${s.token}; b=2` } });
    assert.equal(assertAccepted(res, true), 4);
    const got = await w.nextN('message', 4);
    got.forEach((m, i) => assertMessageObject(m, { id: i + 1, room, from: { id: s.id, nick: 'bea' }, own: false }));
    assert.deepEqual(got.map((m) => m.text),
      ['via header', 'via query', 'via cookie', 'via cookie among others']);
    // Polling by each way: own is true on all four.
    for (const how of ['header', 'query', 'cookie']) {
      const p = await s.poll({ room, after: 0, wait: 0 }, { how });
      const msgs = assertPoll(p, { room, ids: [1, 2, 3, 4], lastId: 4, selfId: s.id });
      assert.deepEqual(msgs.map((m) => m.own), [true, true, true, true]);
    }
    // The event stream with the cookie and with the header.
    for (const how of ['cookie', 'header']) {
      const st = await s.stream({ room }, { how });
      assert.equal(st.welcome.id, s.id, `welcome id with the token by ${how}`);
      st.close();
    }
  });

  test('precedence: the header wins over the query, the query over the cookie', async () => {
    const room = uniqueRoom('sess');
    const w = await tr.join(server.port, { room });
    const a = await pollingSession(server.port, room, w, { nick: 'alpha' });
    const b = await pollingSession(server.port, room, w, { nick: 'beta' });
    assert.notEqual(a.token, b.token);
    // header a, query b, cookie b → a
    let res = await request(server.port, 'POST', target('/messages', { session: b.token }), {
      headers: { 'X-Wshub-Session': a.token, Cookie: `wshub_session=${b.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'message', text: 'header wins' }),
    });
    assertAccepted(res, true);
    assert.equal(assertSessionHeaders(res), a.token, 'the answer carries the header\'s token');
    let m = await w.next('message');
    assertMessageObject(m, { text: 'header wins', from: a.member, own: false });
    // query b, cookie a → b
    res = await request(server.port, 'POST', target('/messages', { session: b.token }), {
      headers: { Cookie: `wshub_session=${a.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'message', text: 'query wins' }),
    });
    assertAccepted(res, true);
    assert.equal(assertSessionHeaders(res), b.token, 'the answer carries the query\'s token');
    m = await w.next('message');
    assertMessageObject(m, { text: 'query wins', from: b.member, own: false });
    // The same on /poll: own follows the winning token.
    res = await request(server.port, 'GET', target('/poll', { room, after: 0, wait: 0, session: a.token }), {
      headers: { 'X-Wshub-Session': b.token },
    });
    assert.equal(assertSessionHeaders(res), b.token);
    const msgs = assertPoll(res, { room, ids: [1, 2], lastId: 2, selfId: b.id });
    assert.deepEqual(msgs.map((x) => x.own), [false, true]);
  });

  test('an unknown or malformed token gets a new token and a new identity', async () => {
    const room = uniqueRoom('sess');
    const w = await tr.join(server.port, { room });
    const known = await pollingSession(server.port, room, w);
    const seen = new Set([known.token]);
    const ids = new Set([known.id, w.id]);
    const bogus = [
      ['an unknown token by header', { headers: { 'X-Wshub-Session': 'f'.repeat(32) } }, 'f'.repeat(32)],
      ['an unknown token by query', { query: { session: '0123456789abcdef0123456789abcdef' } }, '0123456789abcdef0123456789abcdef'],
      ['an unknown token by cookie', { headers: { Cookie: `wshub_session=${'a'.repeat(32)}` } }, 'a'.repeat(32)],
      ['a malformed token', { headers: { 'X-Wshub-Session': 'not-a-token' } }, 'not-a-token'],
    ];
    for (const [label, { headers = {}, query = {} }, sent] of bogus) {
      const res = await request(server.port, 'GET', target('/poll', { room, ...query }), { headers });
      assert.equal(res.status, 200, `${label}: ${res.what}`);
      const t = assertSessionHeaders(res);
      assert.notEqual(t, sent, `${label}: the server issues its own token`);
      assert.ok(!seen.has(t), `${label}: a new token`);
      seen.add(t);
      const j = await w.next({ type: 'join', room });
      assert.ok(!ids.has(j.member.id), `${label}: a new client id (${j.member.id})`);
      ids.add(j.member.id);
    }
    // The known one still works and is still the same client.
    assert.equal(await known.say('still me'), 1);
    assertMessageObject(await w.next('message'), { id: 1, from: known.member, text: 'still me' });
  });

  test('a request refused for bad input (400, 405, 413) starts no session: no token, no member', async () => {
    const room = uniqueRoom('sess');
    const w = await tr.join(server.port, { room });
    const json = { 'Content-Type': 'application/json' };
    const refused = [
      ['GET', target('/poll', { room, after: '-1' }), {}, undefined, 400, 'bad_after'],
      ['GET', target('/poll', { room, wait: '31' }), {}, undefined, 400, 'bad_wait'],
      ['GET', target('/poll', { room: 'x'.repeat(65) }), {}, undefined, 400, 'bad_room'],
      ['GET', target('/events', { room: 'no spaces' }), {}, undefined, 400, 'bad_room'],
      ['POST', target('/messages', { room }), json, '{"type":', 400, 'bad_json'],
      ['POST', target('/messages', { room }), { 'Content-Type': 'text/plain' }, 'hi', 400, 'bad_body'],
      ['POST', target('/messages', { room }), json, JSON.stringify({ type: 'message', text: 'x'.repeat(70000) }), 413, 'body_too_large'],
      ['GET', target('/messages', { room }), {}, undefined, 405, 'bad_method'],
      ['PUT', target('/poll', { room }), {}, '', 405, 'bad_method'],
      // An unknown token presented with a bad request starts none either.
      ['GET', target('/poll', { room, after: 'x' }), { 'X-Wshub-Session': 'e'.repeat(32) }, undefined, 400, 'bad_after'],
    ];
    for (const [method, tgt, headers, body, status, code] of refused) {
      const res = await request(server.port, method, tgt, { headers, body });
      assertJsonError(res, status, code);
      assert.equal(res.get('set-cookie'), undefined, `no Set-Cookie: ${res.what}`);
      assert.equal(res.get('x-wshub-session'), undefined, `no X-Wshub-Session: ${res.what}`);
    }
    await w.expectNothing('join');
    assert.equal(w.welcomeMsg.member_count, 1);
    // A good first request then starts one (and only one) member.
    const p = await pollingSession(server.port, room, w);
    assert.equal(await p.say('hello'), 1);
    assertMessageObject(await w.next('message'), { id: 1, from: p.member, own: false });
  });
});

// ===========================================================================
describe('one room, four transports', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer([]); });
  after(async () => { await tr.closeAll(); closeStreams(); await server.stop(); });
  afterEach(async () => { await tr.closeAll(); closeStreams(); });

  test('SSE, long polling, polling and WebSocket: every message exactly once, same order, same ids, own right', async () => {
    const { port } = server;
    const room = uniqueRoom('mix');
    const W = await tr.join(port, { room });
    // The event-stream client.
    const S = new HttpSession(port, 'sse');
    const sse = await S.stream({ room });
    assert.deepEqual((await W.next({ type: 'join', room })).member, S.member);
    // The long-polling and the polling client.
    const L = await pollingSession(port, room, W, {}, 'long-poller');
    assert.deepEqual((await sse.next({ type: 'join', room })).member, L.member);
    const P = await pollingSession(port, room, W, { wait: 0 }, 'poller');
    assert.deepEqual((await sse.next({ type: 'join', room })).member, P.member);
    const ids = new Set([W.id, S.id, L.id, P.id]);
    assert.equal(ids.size, 4, 'four distinct client ids');

    // Nicknames: HTTP ones by POST, the WebSocket one by frame.
    const nicks = new Map();
    for (const [c, name] of [[S, 'sse-ann'], [L, 'long-bob'], [P, 'poll-cy']]) {
      const old = c.nick;
      await c.setNick(name);
      const n = await W.next({ type: 'nick', room });
      assert.deepEqual(n.member, { id: c.id, nick: name }, `${c.label}'s nick notice`);
      assert.equal(n.old, old);
      nicks.set(c.id, name);
    }
    W.send({ type: 'nick', name: 'ws-dan' });
    const own = await W.next((m) => m.type === 'nick' && !('room' in m));
    assert.deepEqual(own.member, { id: W.id, nick: 'ws-dan' });
    W.member = own.member;
    nicks.set(W.id, 'ws-dan');
    // The stream gets its own nick (without room) and the others' (with room).
    const selfNick = await sse.next((m) => m.type === 'nick' && m.member.id === S.id);
    assert.ok(!('room' in selfNick), `its own nick notice has no room: ${show(selfNick)}`);
    assert.deepEqual(selfNick.member, { id: S.id, nick: 'sse-ann' });
    for (const c of [L, P, W]) {
      const n = await sse.next((m) => m.type === 'nick' && m.member.id === c.id);
      assert.equal(n.room, room);
      assert.equal(n.member.nick, nicks.get(c.id));
    }

    // The readers run while everyone writes.
    const ROUNDS = 3;
    const TOTAL = ROUNDS * 4;
    const deadline = Date.now() + 20000;
    const longPolled = [];
    const longPolling = (async () => {
      let last = 0;
      let rounds = 0;
      while (longPolled.length < TOTAL && Date.now() < deadline) {
        rounds++;
        const res = await L.poll({ room, after: last, wait: 5 }, { ms: 10000 });
        if (res.status === 204) { assert204(res); continue; }
        const msgs = assertPoll(res, { room, selfId: L.id });
        assert.ok(msgs.length > 0, `a 200 to after=${last} holds messages: ${res.what}`);
        assert.equal(msgs[0].id, last + 1, `after=${last}: the next id first (no gap)`);
        assert.equal(res.json.last_id, msgs[msgs.length - 1].id, 'last_id is the newest id');
        longPolled.push(...msgs);
        last = res.json.last_id;
      }
      return rounds;
    })();
    const polled = [];
    const polling = (async () => {
      let last = 0;
      for (let i = 0; i < 400 && polled.length < TOTAL && Date.now() < deadline; i++) {
        const res = await P.poll({ room, after: last, wait: 0 });
        if (res.status === 204) { assert204(res); await sleep(25); continue; }
        const msgs = assertPoll(res, { room, selfId: P.id });
        assert.ok(msgs.length > 0, `a 200 to after=${last} holds messages: ${res.what}`);
        assert.equal(msgs[0].id, last + 1, `after=${last}: the next id first (no gap)`);
        assert.equal(res.json.last_id, msgs[msgs.length - 1].id, 'last_id is the newest id');
        polled.push(...msgs);
        last = res.json.last_id;
      }
    })();

    // Everyone writes: each round, the four at once.
    const accepted = new Map(); // text → id from the 202
    for (let r = 0; r < ROUNDS; r++) {
      W.send(`ws-${r}`);
      const posts = [S, L, P].map(async (c) => {
        const text = `${c.label}-${r}`;
        accepted.set(text, await c.say(text));
      });
      await Promise.all(posts);
    }
    const [wsGot, sseGot] = await Promise.all([
      W.nextN('message', TOTAL, 20000),
      sse.nextN('message', TOTAL, 20000),
      longPolling,
      polling,
    ]);
    assert.equal(longPolled.length, TOTAL, `the long poller got all ${TOTAL} (got ${show(longPolled.map((m) => m.id))})`);
    assert.equal(polled.length, TOTAL, `the poller got all ${TOTAL} (got ${show(polled.map((m) => m.id))})`);

    const expectIds = Array.from({ length: TOTAL }, (_, i) => i + 1);
    const reference = wsGot.map((m) => ({ id: m.id, from: m.from, text: m.text }));
    const sent = new Set([...accepted.keys(), ...Array.from({ length: ROUNDS }, (_, r) => `ws-${r}`)]);
    assert.deepEqual(new Set(reference.map((m) => m.text)), sent, 'every message sent arrived, once');
    for (const [label, selfId, list] of [['websocket', W.id, wsGot], ['sse', S.id, sseGot],
      ['long-poller', L.id, longPolled], ['poller', P.id, polled]]) {
      assert.deepEqual(list.map((m) => m.id), expectIds, `${label}: ids 1..${TOTAL}, in order, once`);
      assert.deepEqual(list.map((m) => ({ id: m.id, from: m.from, text: m.text })), reference,
        `${label}: the same messages in the same order as the others`);
      list.forEach((m) => assertMessageObject(m, { room, own: m.from.id === selfId }, `${label}: `));
      assert.equal(list.filter((m) => m.own).length, ROUNDS, `${label}: own on exactly its ${ROUNDS} messages`);
    }
    for (const m of reference) {
      assert.equal(m.from.nick, nicks.get(m.from.id), `from.nick is the nick set: ${show(m)}`);
      if (accepted.has(m.text)) assert.equal(accepted.get(m.text), m.id, `the 202's id is the message's: ${show(m)}`);
    }
    // Nothing more: no duplicate later on any of them.
    await W.expectNothing('message');
    await sse.expectNothing('message');
    assert204(await L.poll({ room, after: TOTAL, wait: 0 }));
    assert204(await P.poll({ room, after: TOTAL, wait: 0 }));
    sse.checkAll();
    assert.ok(!sse.ended, 'the stream is still open');
  });
});

// ===========================================================================
describe('event stream (--history 5)', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer(['--history', '5']); });
  after(async () => { await tr.closeAll(); closeStreams(); await server.stop(); });
  afterEach(async () => { await tr.closeAll(); closeStreams(); });

  // A room where a WebSocket writer has sent m1..mN.
  async function roomWith(n) {
    const room = uniqueRoom('sse');
    const writer = await tr.join(server.port, { room });
    for (let i = 1; i <= n; i++) writer.send(`m${i}`);
    if (n) assert.deepEqual((await writer.nextN('message', n)).map((m) => m.id), Array.from({ length: n }, (_, i) => i + 1));
    return { room, writer };
  }

  async function writerSays(writer, text) {
    writer.send(text);
    return (await writer.next({ type: 'message', text })).id;
  }

  test('headers, the welcome with history, id: only on room messages, event: = type', async () => {
    const { room, writer } = await roomWith(8);
    const s = new HttpSession(server.port, 'sse');
    const st = await s.stream({ room });
    // (events() checked 200, text/event-stream, Cache-Control: no-store,
    // Connection: close and the session headers.)
    const w = st.welcome;
    assert.match(w.id, /^c\d+$/);
    assert.match(w.nick, /^guest-\d+$/);
    assert.equal(w.room, room);
    assert.deepEqual(w.rooms, [room]);
    assert.deepEqual(sortMembers(w.members), sortMembers([writer.member, { id: w.id, nick: w.nick }]));
    assert.equal(w.member_count, 2);
    assert.equal(w.last_id, 8);
    assertHistory(w.history, { room, ids: [4, 5, 6, 7, 8], selfId: w.id, texts: ['m4', 'm5', 'm6', 'm7', 'm8'] });
    assert.deepEqual((await writer.next('join')).member, s.member);
    // A live room message: id: 9.
    assert.equal(await writerSays(writer, 'm9'), 9);
    const m9 = await st.shift();
    assertMessageObject(m9, { id: 9, room, from: writer.member, text: 'm9', own: false });
    assert.deepEqual(m9.sse.fields.filter(([n]) => n === 'id'), [['id', '9']]);
    // A join notice: no id:.
    const other = await tr.join(server.port, { room });
    const j = await st.shift();
    assert.equal(j.type, 'join');
    assert.deepEqual(j.member, other.member);
    // A direct message to the session: no id:, own false; the session's
    // own direct comes back with own true.
    writer.send({ type: 'message', to: s.id, text: 'psst' });
    const wpsst = await writer.next('direct');
    assert.deepEqual([wpsst.from, wpsst.to, wpsst.text, wpsst.own], [writer.member, s.member, 'psst', true]);
    const d = await st.shift();
    assert.equal(d.type, 'direct', show(d));
    assert.deepEqual(d.from, writer.member);
    assert.deepEqual(d.to, s.member);
    assert.equal(d.text, 'psst');
    assert.equal(d.own, false);
    assertAccepted(await s.post({ type: 'message', to: writer.id, text: 'back' }), false);
    const d2 = await st.shift();
    assert.equal(d2.type, 'direct', show(d2));
    assert.deepEqual([d2.from, d2.to, d2.text, d2.own], [s.member, writer.member, 'back', true]);
    const wd = await writer.next({ type: 'direct', text: 'back' });
    assert.deepEqual([wd.from, wd.to, wd.text, wd.own], [s.member, writer.member, 'back', false]);
    // The session's own room message: id: 10, own true.
    assert.equal(await s.say('mine'), 10);
    const mine = await st.shift();
    assertMessageObject(mine, { id: 10, room, from: s.member, text: 'mine', own: true });
    assertMessageObject(await writer.next('message'), { id: 10, from: s.member, own: false });
    await st.expectNothing();
    st.checkAll();
  });

  test('resume: Last-Event-ID, after=, the header wins; exactly the missed messages, none twice', async () => {
    const { room, writer } = await roomWith(3);
    const s = new HttpSession(server.port, 'sse');
    const st1 = await s.stream({ room });
    assert.deepEqual(st1.welcome.history.map((m) => m.id), [1, 2, 3]);
    await writerSays(writer, 'm4');
    assert.equal((await st1.next('message')).id, 4);
    st1.close();
    await writerSays(writer, 'm5');
    await writerSays(writer, 'm6');

    // Last-Event-ID: 4 → 5, 6 (in the welcome or as events), then live 7.
    const resumed = async (q, headers, want, live) => {
      const st = await s.stream({ room, ...q }, { headers });
      assert.equal(st.welcome.room, room);
      const newest = want.length ? want[want.length - 1] : Number(q.after ?? headers['Last-Event-ID']);
      assert.equal(st.welcome.last_id, newest, 'welcome.last_id is the newest id');
      st.welcome.history.forEach((m, i) => assertMessageObject(m, { room, own: false }, `welcome.history[${i}] `));
      await sleep(QUIET_MS);
      assert.ok(!st.events.some((e) => e.json.type === 'gap'), `no gap: ${st.dump()}`);
      assert.deepEqual(st.deliveredIds(), want, `${show(q)} ${show(headers)}: exactly the missed ids\n${st.dump()}`);
      const liveId = await writerSays(writer, live);
      await st.next({ type: 'message', id: liveId });
      await st.expectNothing('message');
      assert.deepEqual(st.deliveredIds(), [...want, liveId], `no message twice\n${st.dump()}`);
      st.checkAll();
      st.close();
    };
    await resumed({}, { 'Last-Event-ID': '4' }, [5, 6], 'm7');
    // after=6 → 7, then live 8.
    await resumed({ after: 6 }, {}, [7], 'm8');
    // The header wins over after=.
    await resumed({ after: 2 }, { 'Last-Event-ID': '7' }, [8], 'm9');
    // Up to date: nothing missed.
    await resumed({ after: 9 }, {}, [], 'm10');
    // after=5 with the ring at 6..10 (--history 5): no gap.
    await resumed({ after: 5 }, {}, [6, 7, 8, 9, 10], 'm11');
  });

  test('resume past the ring: welcome, then a gap event, then what is held', async () => {
    const { room, writer } = await roomWith(12); // the ring holds 8..12
    for (const [how, q, headers] of [['after=1', { after: 1 }, {}], ['Last-Event-ID: 2', {}, { 'Last-Event-ID': '2' }],
      ['after=0', { after: 0 }, {}]]) {
      const s = new HttpSession(server.port, 'gap');
      const st = await s.stream({ room, ...q }, { headers });
      const after = q.after ?? Number(headers['Last-Event-ID']);
      const g = await st.shift();
      assert.equal(g.type, 'gap', `${how}: a gap right after the welcome, got ${show(g)}\n${st.dump()}`);
      assert.deepEqual(Object.keys(g).sort(), [...COMMON, 'after', 'oldest', 'room'].sort());
      assert.deepEqual([g.room, g.after, g.oldest], [room, after, 8], `${how}: gap fields`);
      await sleep(QUIET_MS);
      assert.deepEqual(st.deliveredIds(), [8, 9, 10, 11, 12], `${how}: the held messages, once\n${st.dump()}`);
      assert.equal(st.events.filter((e) => e.json.type === 'gap').length, 1, 'one gap');
      st.checkAll();
      st.close();
      await writer.next('join');
    }
    // after=7: the oldest held is 8, nothing lost, no gap.
    const s = new HttpSession(server.port, 'nogap');
    const st = await s.stream({ room, after: 7 });
    await sleep(QUIET_MS);
    assert.ok(!st.events.some((e) => e.json.type === 'gap'), `no gap at after=7\n${st.dump()}`);
    assert.deepEqual(st.deliveredIds(), [8, 9, 10, 11, 12]);
  });

  test('several streams of one session in one room: each gets its welcome and every message', async () => {
    const { room, writer } = await roomWith(2);
    const s = new HttpSession(server.port, 'tabs');
    const a = await s.stream({ room });
    const b = await s.stream({ room });
    assert.equal(b.welcome.id, a.welcome.id);
    assert.deepEqual(b.welcome.history.map((m) => m.id), [1, 2]);
    assert.equal(b.welcome.member_count, 2, 'still one member for the session');
    assert.deepEqual((await writer.next('join')).member, s.member);
    await writer.expectNothing('join');
    const id = await writerSays(writer, 'both tabs');
    for (const st of [a, b]) {
      assertMessageObject(await st.next('message'), { id, text: 'both tabs', own: false });
    }
    assert.equal(await s.say('from a tab'), id + 1);
    for (const st of [a, b]) {
      assertMessageObject(await st.next('message'), { id: id + 1, from: s.member, own: true });
    }
    assert.ok(!a.ended && !b.ended, 'both streams stay open');
    // Closing one leaves the other working.
    a.close();
    const id2 = await writerSays(writer, 'one tab left');
    assertMessageObject(await b.next('message'), { id: id2, text: 'one tab left' });
    await writer.expectNothing('leave');
  });

  test('room isolation: another room of the session stays off this room\'s stream', async () => {
    const roomA = uniqueRoom('iso-a');
    const roomB = uniqueRoom('iso-b');
    const wa = await tr.join(server.port, { room: roomA });
    const wb = await tr.join(server.port, { room: roomB });
    const s = new HttpSession(server.port, 'iso');
    const stA = await s.stream({ room: roomA });
    await wa.next('join');
    assertAccepted(await s.post({ type: 'join', room: roomB }), false);
    assert.deepEqual((await wb.next('join')).member, s.member);
    wb.send('b from ws');
    assert.equal((await wb.next({ type: 'message', text: 'b from ws' })).id, 1);
    assert.equal(await s.say('b from the session', roomB), 2);
    assert.equal(await s.say('a from the session', roomA), 1);
    wa.send('a from ws');
    const gotA = await stA.nextN('message', 2);
    assert.deepEqual(gotA.map((m) => [m.room, m.id, m.text, m.own]),
      [[roomA, 1, 'a from the session', true], [roomA, 2, 'a from ws', false]]);
    await stA.expectNothing((m) => m.room === roomB || m.type === 'joined');
    // The stream of B has B's messages, own right.
    const stB = await s.stream({ room: roomB });
    assert.equal(stB.welcome.room, roomB);
    assert.deepEqual([...stB.welcome.rooms].sort(), [roomA, roomB].sort());
    assertHistory(stB.welcome.history, { room: roomB, ids: [1, 2], selfId: s.id, texts: ['b from ws', 'b from the session'] });
    // Live: each stream only its room.
    wb.send('b live');
    wa.send('a live');
    assertMessageObject(await stB.next('message'), { room: roomB, id: 3, text: 'b live' });
    assertMessageObject(await stA.next('message'), { room: roomA, id: 3, text: 'a live' });
    // A notice of B (someone joins B) only on B's stream.
    const nb = await tr.join(server.port, { room: roomB });
    assert.deepEqual((await stB.next('join')).member, nb.member);
    await stA.expectNothing();
    await stB.expectNothing('message');
    stA.checkAll();
    stB.checkAll();
  });

  test('bad input on /events: 400 with a JSON error, the stream not opened', async () => {
    const { room, writer } = await roomWith(0);
    const s = new HttpSession(server.port, 'bad');
    const st = await s.stream({ room });
    await writer.next('join');
    const problems = [];
    for (const [q, code] of [[{ room: 'no/slash' }, 'bad_room'], [{ room: 'x'.repeat(65) }, 'bad_room'],
      [{ room, after: '-1' }, 'bad_after'], [{ room, after: 'abc' }, 'bad_after']]) {
      const bad = await Sse.open(server.port, target('/events', { ...q, session: s.token }));
      const res = bad.head;
      res.json = res.json ?? null;
      const bad400 = errorProblem(res, 400, code);
      problems.push(bad400 ?? sessionProblem(res, s.token));
    }
    // The session and its stream carry on.
    const id = await s.say('fine', room);
    assertMessageObject(await st.next('message'), { id, text: 'fine', own: true });
    assertMessageObject(await writer.next('message'), { id, text: 'fine', own: false });
    assertNoProblems(problems, 'each bad request gets its 400 with the session');
  });
});

// ===========================================================================
describe('polling and long polling', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer([]); });
  after(async () => { await tr.closeAll(); closeStreams(); await server.stop(); });
  afterEach(async () => { await tr.closeAll(); closeStreams(); });

  test('messages after `after` exist: 200 at once; none: held until the next one; wait=1 → 204; wait=0 → 204', async () => {
    const room = uniqueRoom('poll');
    const w = await tr.join(server.port, { room });
    for (let i = 1; i <= 3; i++) w.send(`m${i}`);
    await w.nextN('message', 3);
    const p = await pollingSession(server.port, room, w);
    let res = await p.poll({ room, after: 1, wait: 5 });
    const got = assertPoll(res, { room, ids: [2, 3], lastId: 3, selfId: p.id });
    assert.deepEqual(got.map((m) => [m.text, m.own]), [['m2', false], ['m3', false]]);
    got.forEach((m) => assert.deepEqual(m.from, w.member));
    assertPoll(await p.poll({ room, after: 0 }), { room, ids: [1, 2, 3], lastId: 3, selfId: p.id });
    // Held: nothing after 3 yet.
    let posted = false;
    let answeredAfterPost = null;
    const held = p.poll({ room, after: 3, wait: 10 }, { ms: 15000 }).then((r) => {
      answeredAfterPost = posted;
      return r;
    });
    await sleep(500);
    assert.equal(answeredAfterPost, null, 'the poll is held while there is nothing new');
    posted = true;
    w.send('m4');
    res = await held;
    assert.equal(answeredAfterPost, true, 'answered after the post');
    const m4 = assertPoll(res, { room, ids: [4], lastId: 4, selfId: p.id });
    assertMessageObject(m4[0], { id: 4, text: 'm4', from: w.member, own: false });
    await w.next('message');
    // wait=1 and nothing: 204, empty body, the session's headers.
    assert204(await p.poll({ room, after: 4, wait: 1 }, { ms: 10000 }));
    // wait=0: plain polling, 204.
    assert204(await p.poll({ room, after: 4, wait: 0 }));
    // after beyond the newest (a client from before a restart): the recent
    // messages at once, so it can start again from last_id — never held.
    assertPoll(await p.poll({ room, after: 1000, wait: 10 }), { room, ids: [1, 2, 3, 4], lastId: 4, selfId: p.id });
    // The session's own message: own true.
    assert.equal(await p.say('mine'), 5);
    const mine = assertPoll(await p.poll({ room, after: 4, wait: 0 }), { room, ids: [5], lastId: 5, selfId: p.id });
    assert.equal(mine[0].own, true);
    assertMessageObject(await w.next('message'), { id: 5, from: p.member, own: false });
  });

  test('a held poll answers a POST of another session too', async () => {
    const room = uniqueRoom('poll');
    const w = await tr.join(server.port, { room });
    const p = await pollingSession(server.port, room, w);
    const q = await pollingSession(server.port, room, w);
    let posted = false;
    let answeredAfterPost = null;
    const held = p.poll({ room, after: 0, wait: 10 }, { ms: 15000 }).then((r) => {
      answeredAfterPost = posted;
      return r;
    });
    await sleep(300);
    posted = true;
    assert.equal(await q.say('from q'), 1);
    const res = await held;
    assert.equal(answeredAfterPost, true);
    const got = assertPoll(res, { room, ids: [1], lastId: 1, selfId: p.id });
    assertMessageObject(got[0], { from: q.member, text: 'from q', own: false });
  });

  test('without after: the last 50 and last_id (an empty room: [] and 0); after=0: all the ring holds; /events: the last 50', async () => {
    const room = uniqueRoom('poll');
    const empty = uniqueRoom('poll-empty');
    const p0 = new HttpSession(server.port, 'empty');
    assertPoll(await p0.poll({ room: empty }), { room: empty, ids: [], lastId: 0 });
    // A new session's first poll is never held, even with after and wait:
    // it answers long before the 10 s it asks for (bounded here by 5 s).
    const p1 = new HttpSession(server.port, 'first');
    assertPoll(await p1.poll({ room: empty, after: 0, wait: 10 }, { ms: 5000 }), { room: empty, ids: [], lastId: 0 });
    const w = await tr.join(server.port, { room });
    for (let i = 1; i <= 60; i++) w.send(`m${i}`);
    await w.nextN('message', 60);
    const p = await pollingSession(server.port, room, w);
    const ids = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    assertPoll(await p.poll({ room }), { room, ids: ids(11, 60), lastId: 60, selfId: p.id });
    assertPoll(await p.poll({ room, after: 0 }), { room, ids: ids(1, 60), lastId: 60, selfId: p.id });
    const st = await new HttpSession(server.port, 'sse').stream({ room });
    assert.deepEqual(st.welcome.history.map((m) => m.id), ids(11, 60));
    assert.equal(st.welcome.last_id, 60);
  });

  test('bad after / wait / room: 400 with bad_after, bad_wait, bad_room; the session chats on', async () => {
    const room = uniqueRoom('poll');
    const w = await tr.join(server.port, { room });
    const p = await pollingSession(server.port, room, w);
    const cases = [
      [{ room, after: '-1' }, 'bad_after'],
      [{ room, after: 'abc' }, 'bad_after'],
      [{ room, after: '1.5' }, 'bad_after'],
      [{ room, after: '' }, 'bad_after'],
      [{ room, after: '2x' }, 'bad_after'],
      [{ room, wait: '31' }, 'bad_wait'],
      [{ room, wait: '-1' }, 'bad_wait'],
      [{ room, wait: '2.5' }, 'bad_wait'],
      [{ room, wait: 'soon' }, 'bad_wait'],
      [{ room, wait: '' }, 'bad_wait'],
      [{ room: 'no spaces' }, 'bad_room'],
      [{ room: 'x'.repeat(65) }, 'bad_room'],
      [{ room: 'slash/room' }, 'bad_room'],
    ];
    const problems = [];
    for (const [q, code] of cases) {
      const res = await request(server.port, 'GET', target('/poll', q), { headers: { 'X-Wshub-Session': p.token } });
      const bad400 = errorProblem(res, 400, code);
      problems.push(bad400 ?? sessionProblem(res, p.token));
    }
    // wait=30 and wait=0 are fine (the bounds).
    assert204(await p.poll({ room, after: 0, wait: 0 }));
    w.send('after the bad ones');
    const m = await w.next('message');
    const at30 = await p.poll({ room, after: 0, wait: 30 }, { ms: 35000 });
    assertPoll(at30, { room, ids: [m.id], lastId: m.id, selfId: p.id });
    assert.equal(await p.say('me too', room), m.id + 1);
    assertMessageObject(await w.next('message'), { id: m.id + 1, from: p.member, own: false });
    assertNoProblems(problems, 'each bad request gets its 400 with the session');
  });
});

// ===========================================================================
describe('POST /messages (--max-text 100)', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer(['--max-text', '100']); });
  after(async () => { await tr.closeAll(); closeStreams(); await server.stop(); });
  afterEach(async () => { await tr.closeAll(); closeStreams(); });

  const JSON_CT = 'application/json';
  const good = JSON.stringify({ type: 'message', text: 'x' });
  // [label, content type (null: none), body, code]
  const cases = [
    ['truncated JSON', JSON_CT, '{"type":"message","text":"x"', 'bad_json'],
    ['single quotes', JSON_CT, "{'type':'message','text':'x'}", 'bad_json'],
    ['trailing garbage', JSON_CT, `${good} trailing`, 'bad_json'],
    ['two objects', JSON_CT, `${good}${good}`, 'bad_json'],
    ['a body that is not JSON at all', JSON_CT, 'hello there', 'bad_json'],
    ['a JSON array', JSON_CT, '[1,2]', 'bad_json'],
    ['a JSON number', JSON_CT, '42', 'bad_json'],
    ['a JSON string', JSON_CT, '"hi"', 'bad_json'],
    ['an empty body', JSON_CT, '', 'bad_body'],
    ['Content-Type text/plain', 'text/plain', good, 'bad_body'],
    ['a form body', 'application/x-www-form-urlencoded', 'type=message&text=x', 'bad_body'],
    ['no Content-Type', null, good, 'bad_body'],
    ['an unknown type', JSON_CT, '{"type":"dance"}', 'unknown_type'],
    ['no type', JSON_CT, '{"text":"x"}', 'unknown_type'],
    ['a message without text', JSON_CT, '{"type":"message"}', 'missing_field'],
    ['a numeric text', JSON_CT, '{"type":"message","text":5}', 'missing_field'],
    ['a join without room', JSON_CT, '{"type":"join"}', 'missing_field'],
    ['a resume with after -1', JSON_CT, '{"type":"resume","room":"lobby","after":-1}', 'missing_field'],
    ['text of 101 bytes', JSON_CT, JSON.stringify({ type: 'message', text: 'x'.repeat(101) }), 'text_too_long'],
    ['an empty text', JSON_CT, '{"type":"message","text":""}', 'empty_text'],
    ['a message to a room not joined', JSON_CT, '{"type":"message","room":"not-joined","text":"x"}', 'not_in_room'],
    ['a leave of a room not joined', JSON_CT, '{"type":"leave","room":"not-joined"}', 'not_in_room'],
    ['a bad room name', JSON_CT, '{"type":"join","room":"no spaces"}', 'bad_room'],
    ['an empty nick', JSON_CT, '{"type":"nick","name":""}', 'bad_nick'],
    ['a direct message to nobody', JSON_CT, '{"type":"message","to":"c999999","text":"x"}', 'unknown_client'],
  ];

  for (const [label, ct, body, code] of cases) {
    test(`bad POST: ${label} → 400 ${code}; the same connection, session and room carry on`, async () => {
      const room = uniqueRoom('post');
      const w = await tr.join(server.port, { room });
      const p = await pollingSession(server.port, room, w);
      const conn = await Conn.open(server.port);
      streams.add(conn);
      const res = await p.post(body, { contentType: ct, conn, adopt: false });
      assertJsonError(res, 400, code);
      // Answered, not closed: the next request on the same connection works.
      const ok = await p.post({ type: 'message', text: `fine after ${label}` }, { conn });
      assert.equal(assertAccepted(ok, true), 1, 'the bad one made no message');
      assertMessageObject(await w.shift(), { id: 1, room, from: p.member, text: `fine after ${label}`, own: false });
      w.send('ws too');
      await w.next({ type: 'message', text: 'ws too' });
      const back = assertPoll(await p.poll({ room, after: 0, wait: 5 }), { room, ids: [1, 2], lastId: 2, selfId: p.id });
      assert.deepEqual(back.map((m) => [m.text, m.own]), [[`fine after ${label}`, true], ['ws too', false]]);
      await w.expectNothing((m) => m.type !== 'message');
      assertNoProblems([sessionProblem(res, p.token)], 'the 400 carries the session');
    });
  }

  test('202: {"type":"accepted","id":N} for room messages (text, params.value, room=, charset), {"type":"accepted"} otherwise', async () => {
    const room = uniqueRoom('post');
    const other = uniqueRoom('post-other');
    const w = await tr.join(server.port, { room });
    const p = await pollingSession(server.port, room, w);
    assert.equal(assertAccepted(await p.post({ type: 'message', text: 'a' }), true), 1);
    assert.equal(assertAccepted(await p.post({ type: 'message', params: { value: 'b' } }), true), 2);
    assert.equal(assertAccepted(await p.post({ type: 'message', room, text: 'c' }), true), 3);
    assert.equal(assertAccepted(await p.post({ type: 'message', text: 'd' },
      { contentType: 'application/json; charset=utf-8' }), true), 4);
    assert.equal(assertAccepted(await p.post({ type: 'message', text: 'x'.repeat(100) }), true), 5);
    const got = await w.nextN('message', 5);
    assert.deepEqual(got.map((m) => [m.id, m.text]), [[1, 'a'], [2, 'b'], [3, 'c'], [4, 'd'], [5, 'x'.repeat(100)]]);
    // join: accepted, the join notice; now the current room is `other`.
    const wo = await tr.join(server.port, { room: other });
    assertAccepted(await p.post({ type: 'join', room: other }), false);
    assert.deepEqual((await wo.next('join')).member, p.member);
    assert.equal(assertAccepted(await p.post({ type: 'message', text: 'to the current room' }), true), 1);
    assertMessageObject(await wo.next('message'), { room: other, id: 1, from: p.member });
    // leave: accepted, the leave notice; a message there is now not_in_room.
    assertAccepted(await p.post({ type: 'leave', room: other }), false);
    assert.deepEqual((await wo.next('leave')).member, p.member);
    assertJsonError(await p.post({ type: 'message', room: other, text: 'x' }), 400, 'not_in_room');
    // resume: accepted (its history goes to the streams).
    assertAccepted(await p.post({ type: 'resume', room, after: 3 }), false);
    await w.expectNothing((m) => m.type !== 'message' || m.room !== room);
  });

  test('body size: exactly 64 KiB is accepted, one byte more → 413 body_too_large', async () => {
    const room = uniqueRoom('post');
    const w = await tr.join(server.port, { room });
    const p = await pollingSession(server.port, room, w);
    const base = JSON.stringify({ type: 'message', text: 'padded' });
    const exact = base + ' '.repeat(65536 - base.length);
    assert.equal(Buffer.byteLength(exact), 65536);
    assert.equal(assertAccepted(await p.post(exact), true), 1);
    const res = await p.post(`${exact} `, { adopt: false });
    assertJsonError(res, 413, 'body_too_large');
    assertMessageObject(await w.shift(), { id: 1, text: 'padded', from: p.member });
    await w.expectNothing();
    // The session carries on.
    assert.equal(await p.say('small again'), 2);
    assertMessageObject(await w.shift(), { id: 2, text: 'small again' });
    assertNoProblems([sessionProblem(res, p.token)], 'the 413 carries the session');
  });

  test('other methods: 405 bad_method with Allow', async () => {
    for (const [method, path, allowed] of [['GET', '/messages', 'POST'], ['PUT', '/messages', 'POST'],
      ['DELETE', '/messages', 'POST'], ['POST', '/poll', 'GET'], ['PUT', '/poll', 'GET'],
      ['POST', '/events', 'GET'], ['DELETE', '/events', 'GET']]) {
      const res = await request(server.port, method, path, method === 'GET' ? {} : { body: '' });
      assertJsonError(res, 405, 'bad_method');
      const allow = res.get('allow');
      assert.ok(allow !== undefined, `${method} ${path}: an Allow header: ${res.what}`);
      assert.ok(hasToken(allow, allowed), `${method} ${path}: Allow lists ${allowed}: ${res.what}`);
      assert.ok(!hasToken(allow, method), `${method} ${path}: Allow does not list ${method}: ${res.what}`);
    }
  });
});

// ===========================================================================
describe('POST rate limit (--msg-rate 5 --msg-burst 5)', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer(['--msg-rate', '5', '--msg-burst', '5']); });
  after(async () => { await tr.closeAll(); closeStreams(); await server.stop(); });
  afterEach(async () => { await tr.closeAll(); closeStreams(); });

  test('over the bucket: 429 rate_limited with Retry-After: 1; after it the session chats again', async () => {
    const room = uniqueRoom('rate');
    const w = await tr.join(server.port, { room });
    const p = await pollingSession(server.port, room, w);
    for (let i = 1; i <= 5; i++) assert.equal(await p.say(`r${i}`), i);
    const res = await p.post({ type: 'message', text: 'r6' });
    assertJsonError(res, 429, 'rate_limited');
    assert.equal(res.get('retry-after'), '1', `Retry-After: 1: ${res.what}`);
    const got = await w.nextN('message', 5);
    assert.deepEqual(got.map((m) => [m.id, m.text]), [[1, 'r1'], [2, 'r2'], [3, 'r3'], [4, 'r4'], [5, 'r5']]);
    await w.expectNothing('message');
    // As told: retry after a second.
    await sleep(1100);
    assert.equal(await p.say('r7'), 6);
    assertMessageObject(await w.next('message'), { id: 6, text: 'r7', from: p.member });
    w.send('ws still fine');
    await w.next({ type: 'message', text: 'ws still fine' });
    const back = assertPoll(await p.poll({ room, after: 5, wait: 5 }), { room, selfId: p.id });
    assert.deepEqual(back.map((m) => [m.id, m.text, m.own]), [[6, 'r7', true], [7, 'ws still fine', false]]);
  });
});

// ===========================================================================
describe('session expiry (--session-timeout 1)', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer(['--session-timeout', '1']); });
  after(async () => { await tr.closeAll(); closeStreams(); await server.stop(); });
  afterEach(async () => { await tr.closeAll(); closeStreams(); });

  test('a session that stops polling leaves (leave notice); its token is then unknown; a held poll or an open stream keeps one alive', async () => {
    const room = uniqueRoom('exp');
    const w = await tr.join(server.port, { room });
    const gone = await pollingSession(server.port, room, w);
    const lv = await w.next({ type: 'leave', room }, 10000);
    assert.deepEqual(lv.member, gone.member, 'the idle session left');
    // Its token is no longer known: a new token and a new client.
    const res = await request(server.port, 'GET', target('/poll', { room, wait: 0 }),
      { headers: { 'X-Wshub-Session': gone.token } });
    assert.equal(res.status, 200, res.what);
    assert.notEqual(assertSessionHeaders(res), gone.token, 'an expired token is replaced');
    const again = await w.next({ type: 'join', room });
    assert.notEqual(again.member.id, gone.id);
    const lv2 = await w.next({ type: 'leave', room }, 10000);
    assert.deepEqual(lv2.member, again.member);

    // A held poll (3 s) and an open stream: both stay while they last.
    const holder = await pollingSession(server.port, room, w);
    const reader = new HttpSession(server.port, 'reader');
    const st = await reader.stream({ room });
    assert.deepEqual((await w.next({ type: 'join', room })).member, reader.member);
    const held = holder.poll({ room, after: 0, wait: 3 }, { ms: 10000 });
    await w.expectNothing('leave', 2500);
    assert204(await held);
    st.close();
    const leaves = await w.nextN({ type: 'leave', room }, 2, 10000);
    assert.deepEqual(sortMembers(leaves.map((m) => m.member)), sortMembers([holder.member, reader.member]));
    w.send('alone again');
    assertMessageObject(await w.next('message'), { text: 'alone again', own: true });
  });

  test('a held poll whose client goes away lets its session end; a message after it goes nowhere', async () => {
    const room = uniqueRoom('exp');
    const w = await tr.join(server.port, { room });
    const p = await pollingSession(server.port, room, w);
    // A long poll (wait 20 s) on a connection of our own, then dropped.
    const c = await Conn.open(server.port);
    streams.add(c);
    c.write(reqBytes('GET', target('/poll', { room, after: 0, wait: 20 }),
      { 'X-Wshub-Session': p.token }, ''));
    await w.expectNothing('leave', 1500); // held: the session stays
    c.destroy();
    streams.delete(c);
    // Released at once: the session ends a timeout later, long before the
    // 20 s the poll asked for.
    const lv = await w.next({ type: 'leave', room }, 5000);
    assert.deepEqual(lv.member, p.member, 'the session whose poll went away left');
    // The room's next message has no poll to wake; everyone else is fine.
    w.send('after the dropped poll');
    assertMessageObject(await w.next('message'), { text: 'after the dropped poll', own: true });
    const r = await request(server.port, 'GET', target('/poll', { room, wait: 0 }));
    assert.equal(r.status, 200, r.what);
    assert.deepEqual(r.json.messages.map((m) => m.text), ['after the dropped poll']);
  });
});

// ===========================================================================
describe('slow consumer (--max-backlog 64K)', () => {
  let server;
  const tr = new Tracker();
  before(async () => {
    server = await chatServer(['--threads', '1', '--max-backlog', '64K', '--msg-rate', '0',
      '--max-text', '16000', '--log-level', 'warn']);
  });
  after(async () => { await tr.closeAll(); closeStreams(); await server.stop(); });
  afterEach(async () => { await tr.closeAll(); closeStreams(); });

  test('an event stream that never reads is closed; the WebSocket clients keep every message', async () => {
    const room = uniqueRoom('slow');
    const sender = await tr.join(server.port, { room });
    const reader = await tr.join(server.port, { room });
    await sender.next('join');
    // The stream: request sent, then never read.
    const sock = await new Promise((resolve, reject) => {
      const s = net.connect(server.port, HOST, () => {
        s.pause();
        s.write(reqBytes('GET', target('/events', { room })));
        resolve(s);
      });
      s.on('error', reject);
    });
    streams.add({ close: () => sock.destroy() });
    let closed = false;
    sock.on('close', () => { closed = true; });
    sock.on('error', () => {});
    await sender.next('join');
    await reader.next('join');
    const MSGS = 800;
    const TEXT = 'x'.repeat(15000);
    const WINDOW = 16;
    let sent = 0;
    let received = 0;
    const top = () => {
      while (sent < MSGS && sent < received + WINDOW) sender.send({ type: 'message', text: `${sent++} ${TEXT}` });
    };
    top();
    let last = 0;
    for (let i = 0; i < MSGS; i++) {
      let m;
      try {
        m = await reader.next('message', 20000);
      } catch (e) {
        // Diagnosis for the failure report: is the server still serving?
        let probe;
        try {
          const c = await tr.join(server.port, { room: uniqueRoom('probe') });
          c.send('probe');
          await c.next({ type: 'message', text: 'probe' }, 2000);
          probe = 'a new client in another room still chats';
        } catch (pe) {
          probe = `a new client in another room fails too (${pe.message.split('\n')[0]})`;
        }
        const echoes = sender.received.filter((x) => x.type === 'message').length;
        e.message = `the healthy reader stalled after ${received} of ${sent} sent messages ` +
          `(the sender got ${echoes} own copies; the stalled stream ${closed ? 'was already closed' : 'was still open'}; ` +
          `${probe}):\n${e.message.slice(0, 600)}`;
        throw e;
      }
      received++;
      top();
      assert.equal(m.text.split(' ')[0], String(i), 'in order');
      if (last) assert.equal(m.id, last + 1, 'no gap');
      last = m.id;
    }
    // Now read what the stream got: the server has ended it.
    const bytes = await new Promise((resolve, reject) => {
      let n = 0;
      const timer = setTimeout(() => reject(new Error(`the stalled stream is still open (${n} bytes read)`)), 20000);
      sock.on('data', (d) => { n += d.length; });
      if (closed) { clearTimeout(timer); resolve(n); }
      sock.on('close', () => { clearTimeout(timer); resolve(n); });
      sock.resume();
    });
    assert.ok(bytes < MSGS * TEXT.length, `the dropped stream got only part (${bytes} bytes)`);
    // The others chat on, and a new client gets in.
    const fresh = await tr.join(server.port, { room });
    fresh.send('still here');
    await reader.next({ type: 'message', text: 'still here' });
    await sender.next({ type: 'message', text: 'still here' });
  });
});

// ===========================================================================
test('an idle event stream gets ": ping" comments (within 15 s, plus slack)', async () => {
  await pingStream.waitUntil(() => (pingStream.comments.length ? true : undefined), 25000, 'a ": ping" comment');
  assert.equal(pingStream.comments[0], ': ping', `the comment line: ${show(pingStream.comments)}`);
  assert.ok(!pingStream.ended, 'the stream stays open');
  assert.equal(pingStream.events.length, 1, `nothing but the welcome and pings on an idle stream\n${pingStream.dump()}`);
});
