// tests/e2e/deflate.test.mjs — permessage-deflate (RFC 7692) in the chat,
// end to end: the real wshub binary on a free loopback port, raw clients
// that read every frame's RSV1 bit and payload bytes, and the `ws` npm
// client (which offers permessage-deflate by default).
//
// What is covered (the contract is /tmp/pmd-spec.md, docs/PROTOCOL.md for
// the chat): negotiation over the chat (the exact response header, `ws`'s
// view of it, --deflate off, a malformed header → 400); a room message is
// compressed once — every deflate member gets byte-identical RSV1 payloads
// that inflate to exactly what a plain member gets — and the threshold is
// exact (--deflate-threshold L vs L+1 around a message of L bytes); inbound
// compressed messages, single and fragmented, and every way a compressed
// message can be bad (invalid DEFLATE, data after the final block, a zip
// bomb, invalid UTF-8, RSV1 on a continuation or a control frame, a back
// reference under client_no_context_takeover), each closing only the bad
// client while the room goes on; client context takeover with
// --deflate-client-window (one deflate stream for 20 messages); and
// --threads 2 with deflate and plain members mixed.
//
// Every assertion is on exact values (headers, bytes, close codes, texts);
// waits are bounded but never measured. The one memory check (the zip bomb)
// bounds the server's VmRSS growth, not any time.
//
// Ownership: servers and fixture trees belong to lib/server.mjs and are
// started and stopped (SIGTERM, SIGKILL after a timeout) by the helpers
// below; every socket and client a test opens is closed by that test, in a
// finally.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/deflate.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { isDeepStrictEqual } from 'node:util';
import { BIN_IS_ASAN, Conn, WAIT_MS, makeTree, startServer, stopAndCheck, assertError } from './lib/server.mjs';
import {
  OP, acceptFor, upgradeBytes, parseFrame, parseClose, clientFrame, closePayload,
} from './lib/ws.mjs';
import { ChatClient, WebSocket, wsUrl, assertMessageObject } from './lib/chat.mjs';

const Z = zlib.constants;
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);

// A generous bound on anything that must happen (valgrind is slow); a
// test that reaches it fails, it is never a measurement.
const LONG_MS = 20000;

const EXT = 'permessage-deflate';
const ANSWER_DEFAULT = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';

// ---------------------------------------------------------------------------
// Compression helpers (the client side of RFC 7692 §7.2)

// Inflates one server message on its own: append 00 00 ff ff, a fresh
// raw inflater.
function inflateMessage(payload) {
  return zlib.inflateRawSync(Buffer.concat([payload, TAIL]), { finishFlush: Z.Z_SYNC_FLUSH });
}

// Compresses one message on its own (no context), Z_SYNC_FLUSH, with the
// trailing 00 00 ff ff removed.
function deflateMessage(data, opts = {}) {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
  const out = zlib.deflateRawSync(buf, { finishFlush: Z.Z_SYNC_FLUSH, ...opts });
  assert.deepEqual(out.subarray(-4), TAIL, 'a sync flush ends in 00 00 ff ff');
  return out.subarray(0, -4);
}

// One raw deflate stream kept across messages (client context takeover):
// each message is written and sync-flushed; the 00 00 ff ff is removed.
class DeflateStream {
  constructor(windowBits) {
    this.z = zlib.createDeflateRaw({ windowBits, level: 6 });
    this.chunks = [];
    this.z.on('data', (d) => this.chunks.push(d));
  }

  message(text) {
    return new Promise((resolve, reject) => {
      this.z.once('error', reject);
      this.z.write(Buffer.from(text));
      this.z.flush(Z.Z_SYNC_FLUSH, () => {
        this.z.off('error', reject);
        const out = Buffer.concat(this.chunks);
        this.chunks = [];
        assert.deepEqual(out.subarray(-4), TAIL, 'a sync flush ends in 00 00 ff ff');
        resolve(out.subarray(0, -4));
      });
    });
  }

  close() {
    this.z.close();
  }
}

// ---------------------------------------------------------------------------
// Servers

// The chat server with `args`; fn(srv) runs the test. Afterwards the server
// must still be running and exit 0 on SIGTERM.
async function withChat(args, fn) {
  const tree = await makeTree({ 'index.html': '<!doctype html><title>deflate</title>\n' });
  let srv;
  try {
    srv = await startServer(tree.pub, args);
    await fn(srv);
    await stopAndCheck(srv, LONG_MS);
  } finally {
    if (srv && !srv.exit) await srv.stop(LONG_MS);
    await tree.cleanup();
  }
}

function vmRssKiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `VmRSS of ${pid}`);
  return Number(m[1]);
}

// ---------------------------------------------------------------------------
// A raw chat client that sees every frame's bits and bytes

function query(q) {
  const s = Object.entries(q).map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join('&');
  return s ? `/?${s}` : '/';
}

// Asserts the 101 for `key`, with exactly `ext` as its one
// Sec-WebSocket-Extensions line (null: none).
function assert101Ext(res, key, ext) {
  const ctx = `\n${res.raw}`;
  assert.equal(res.status, 101, `101 Switching Protocols${ctx}${res.text ?? ''}`);
  assert.ok(res.raw.startsWith('HTTP/1.1 101 Switching Protocols\r\n'), `exact status line${ctx}`);
  assert.deepEqual(res.all('upgrade'), ['websocket'], `Upgrade${ctx}`);
  assert.deepEqual(res.all('connection'), ['Upgrade'], `Connection${ctx}`);
  assert.deepEqual(res.all('sec-websocket-accept'), [acceptFor(key)], `Accept${ctx}`);
  assert.deepEqual(res.all('sec-websocket-extensions'), ext === null ? [] : [ext],
    `Sec-WebSocket-Extensions${ctx}`);
}

class RawChat {
  // offer: a Sec-WebSocket-Extensions value (or an array of header lines),
  // null for none; expect: the exact answer (null: none). Reads the welcome.
  static async open(port, q = {}, { offer = EXT, expect } = {}) {
    const extra = offer === null ? [] : [].concat(offer).map((v) => ['Sec-WebSocket-Extensions', v]);
    const { key, bytes } = upgradeBytes(query(q), { extra });
    const conn = await Conn.open(port);
    conn.write(bytes);
    const res = await conn.readResponse({ ms: LONG_MS });
    const want = expect !== undefined ? expect : (offer === null ? null : ANSWER_DEFAULT);
    try {
      assert101Ext(res, key, want);
    } catch (e) {
      conn.destroy();
      throw e;
    }
    const c = new RawChat(conn, want !== null, res);
    const w = await c.next('welcome');
    c.id = w.msg.id;
    c.member = { id: w.msg.id, nick: w.msg.nick };
    c.welcomeMsg = w.msg;
    return c;
  }

  constructor(conn, deflate, res) {
    this.conn = conn;
    this.deflate = deflate;
    this.res = res;
    this.frames = []; // every data frame: { rsv, opcode, payload, data, msg }
    this.pending = []; // data frames not yet taken by next()
  }

  // Reads one frame, asserting what every server frame obeys here.
  async readFrame(ms = LONG_MS) {
    let f = null;
    await this.conn.waitFor(() => (f = parseFrame(this.conn.peek())) !== null, ms,
      `a WebSocket frame at ${this.id ?? 'a new client'}`);
    this.conn.take(f.size);
    const ctx = ` (frame ${f.raw.subarray(0, 16).toString('hex')})`;
    assert.equal(f.masked, false, `server frames are not masked${ctx}`);
    assert.equal(f.fin, true, `the server never fragments${ctx}`);
    if (f.opcode >= 8) {
      assert.equal(f.rsv, 0, `control frames have no RSV bits${ctx}`);
      assert.ok(f.payload.length <= 125, `control payload <= 125 bytes${ctx}`);
      if (f.opcode === OP.PING) this.conn.write(clientFrame(OP.PONG, f.payload));
      return f;
    }
    assert.equal(f.opcode, OP.TEXT, `chat frames are text${ctx}`);
    assert.ok(f.rsv === 0 || (this.deflate && f.rsv === 4),
      `RSV ${f.rsv} (deflate ${this.deflate ? '' : 'not '}negotiated)${ctx}`);
    f.data = f.rsv === 4 ? inflateMessage(f.payload) : f.payload;
    f.msg = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(f.data));
    this.frames.push(f);
    return f;
  }

  // The first data frame (already read or next) whose message matches pred
  // (type name, partial object or function); earlier others stay pending.
  async next(pred, ms = LONG_MS) {
    const f = typeof pred === 'function' ? pred
      : typeof pred === 'string' ? (m) => m.type === pred
        : (m) => Object.entries(pred).every(([k, v]) => isDeepStrictEqual(m[k], v));
    const i = this.pending.findIndex((x) => f(x.msg));
    if (i >= 0) return this.pending.splice(i, 1)[0];
    for (;;) {
      const fr = await this.readFrame(ms);
      assert.notEqual(fr.opcode, OP.CLOSE,
        `unexpected close ${fr.payload.toString('hex')} at ${this.id} waiting for ${JSON.stringify(pred)}`);
      if (fr.opcode !== OP.TEXT) continue;
      if (f(fr.msg)) return fr;
      this.pending.push(fr);
    }
  }

  // Sends one text message; compress: RSV1 + raw DEFLATE of it on its own.
  send(text, { compress = this.deflate } = {}) {
    if (compress) this.conn.write(clientFrame(OP.TEXT, deflateMessage(text), { rsv: 4 }));
    else this.conn.write(clientFrame(OP.TEXT, Buffer.from(text)));
  }

  write(bytes) {
    this.conn.write(bytes);
  }

  // Reads frames until the close frame; asserts its code (and reason when
  // given), then that the server closes the TCP connection.
  async expectClose(code, reason, what) {
    let f;
    do f = await this.readFrame(); while (f.opcode !== OP.CLOSE);
    const c = parseClose(f);
    assert.equal(c.code, code, `${what}: close code (reason ${JSON.stringify(c.reason)})`);
    if (reason !== undefined) assert.equal(c.reason, reason, `${what}: close reason`);
    const rest = await this.conn.waitEnd(LONG_MS);
    assert.equal(rest.length, 0, `${what}: nothing after the close frame`);
    return c;
  }

  async close() {
    if (!this.conn.ended) {
      this.conn.write(clientFrame(OP.CLOSE, closePayload(1000)));
      try {
        await this.conn.waitEnd(WAIT_MS);
      } catch { /* destroyed below */ }
    }
    this.conn.destroy();
  }
}

// A `ws` chat client opened with `options`; resolves once open with the
// client and the Sec-WebSocket-Extensions line of the 101 (null if none).
function openWs(port, q = {}, options = {}) {
  const url = wsUrl(port, q);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options);
    const c = new ChatClient(ws, url);
    let ext = null;
    ws.once('upgrade', (res) => { ext = res.headers['sec-websocket-extensions'] ?? null; });
    ws.once('open', () => resolve({ c, ext }));
    ws.once('unexpected-response', (req, res) => {
      reject(new Error(`unexpected HTTP ${res.statusCode} to the upgrade of ${url}`));
      req.destroy();
    });
    ws.once('error', (e) => { if (ws.readyState !== WebSocket.OPEN) reject(e); });
  });
}

async function wsJoin(port, q, options) {
  const { c, ext } = await openWs(port, q, options);
  c.ext = ext;
  c.welcomeMsg = await c.welcome(LONG_MS);
  return c;
}

// A text of `n` bytes that compresses well but is not one repeated byte.
function prose(n, tag = '') {
  const words = ['alpha', 'bravo', 'charlie', 'delta', 'echo', 'foxtrot', 'golf', 'hotel'];
  let s = tag;
  for (let i = 0; s.length < n; i++) s += `${words[(i * 7 + tag.length) % words.length]} `;
  return s.slice(0, n);
}

async function closeAll(list) {
  await Promise.all(list.filter(Boolean).map((c) => c.close()));
}

// ===========================================================================
// 1. Negotiation over the chat

test('negotiation: exact answer to a raw offer and to ws; --deflate off: none, chat works; malformed → 400', async () => {
  await withChat([], async (srv) => {
    const room = 'neg';
    const raw = await RawChat.open(srv.port, { room, nick: 'raw' },
      { offer: 'permessage-deflate; client_max_window_bits', expect: ANSWER_DEFAULT });
    const w = await wsJoin(srv.port, { room, nick: 'npm' });
    try {
      assert.equal(w.ext, ANSWER_DEFAULT, 'the 101 the ws client got');
      assert.equal(w.ws.extensions, 'permessage-deflate', 'ws.extensions');
      await raw.next({ type: 'join', room, member: w.member });
      // A message from ws to raw, long enough (≥ 1024) for ws to compress
      // it, arrives compressed at raw.
      const text = prose(1500, 'neg ');
      w.send(text);
      const f = await raw.next({ type: 'message', text });
      assert.equal(f.rsv, 4, 'RSV1 on the copy to the deflate client');
      assertMessageObject(f.msg, { room, text, from: w.member, own: false });
      const own = await w.next({ type: 'message', text });
      assertMessageObject(own, { room, text, from: w.member, own: true, id: f.msg.id });
      raw.send(JSON.stringify({ type: 'message', text: 'raw says hi' }));
      await w.next({ type: 'message', text: 'raw says hi', from: raw.member, own: false });
    } finally {
      await closeAll([raw, w]);
    }

    const bad = await Conn.open(srv.port);
    try {
      const { bytes } = upgradeBytes('/', { extra: [['Sec-WebSocket-Extensions', 'permessage-deflate;;']] });
      bad.write(bytes);
      const res = await bad.readResponse({ ms: LONG_MS });
      assertError(res, 400);
      assert.ok(res.text.includes('malformed Sec-WebSocket-Extensions'),
        `the body names the header: ${JSON.stringify(res.text)}`);
    } finally {
      bad.destroy();
    }
  });

  await withChat(['--deflate', 'off'], async (srv) => {
    const room = 'off';
    const raw = await RawChat.open(srv.port, { room, nick: 'raw' },
      { offer: 'permessage-deflate; client_max_window_bits', expect: null });
    // Off: even a malformed header is ignored (never answered, never refused).
    const raw2 = await RawChat.open(srv.port, { room, nick: 'raw2' },
      { offer: 'permessage-deflate;;', expect: null });
    const w = await wsJoin(srv.port, { room, nick: 'npm' });
    try {
      assert.equal(w.ext, null, 'no Sec-WebSocket-Extensions in the 101 the ws client got');
      assert.equal(w.ws.extensions, '', 'ws.extensions is empty');
      const text = prose(1500, 'off ');
      w.send(text);
      for (const r of [raw, raw2]) {
        const f = await r.next({ type: 'message', text });
        assert.equal(f.rsv, 0, 'plain');
        assertMessageObject(f.msg, { room, text, from: w.member, own: false });
      }
      raw.send('plain from raw');
      await w.next({ type: 'message', text: 'plain from raw', from: raw.member, own: false });
      // RSV1 without deflate negotiated: 1002, the others go on.
      raw2.write(clientFrame(OP.TEXT, deflateMessage('sneaky'), { rsv: 4 }));
      await raw2.expectClose(1002, undefined, 'RSV1 with deflate off');
      await w.next({ type: 'leave', room, member: raw2.member });
      w.send('still here');
      await raw.next({ type: 'message', text: 'still here' });
      assert.ok(raw.frames.every((f) => f.rsv === 0), 'no frame had RSV1');
    } finally {
      await closeAll([raw, raw2, w]);
    }
  });
});

// ===========================================================================
// 2. Encode once; the threshold

test('encode once: two deflate members get identical RSV1 payloads that inflate to the plain member\'s bytes', async () => {
  await withChat([], async (srv) => {
    const room = 'once';
    const a = await RawChat.open(srv.port, { room, nick: 'ann' });
    const b = await RawChat.open(srv.port, { room, nick: 'bea' }, { offer: 'permessage-deflate' });
    const p = await RawChat.open(srv.port, { room, nick: 'pat' }, { offer: null });
    const d = await wsJoin(srv.port, { room, nick: 'dan' }, { perMessageDeflate: false });
    try {
      assert.equal(d.ext, null, 'the sender offered nothing');
      const join = await Promise.all([a, b, p].map((r) => r.next({ type: 'join', room, member: d.member })));
      assert.deepEqual(join[0].payload, join[1].payload, 'the join notice: same bytes to both deflate members');
      assert.deepEqual(join[0].data, join[2].payload, 'the join notice inflates to the plain copy');

      for (const text of [prose(300, 'first '), `"quotes" & <tags> — ünïcødé ${prose(400, 'second ')}`]) {
        d.send(text);
        const [fa, fb, fp] = await Promise.all([a, b, p].map((r) => r.next({ type: 'message', text })));
        assert.equal(fa.rsv, 4, 'RSV1 to ann');
        assert.equal(fb.rsv, 4, 'RSV1 to bea');
        assert.equal(fp.rsv, 0, 'no RSV1 to pat (no deflate)');
        assert.equal(fa.payload.toString('hex'), fb.payload.toString('hex'),
          'byte-identical compressed payloads');
        assert.equal(inflateMessage(fa.payload).toString('hex'), fp.payload.toString('hex'),
          'the compressed payload inflates to exactly the plain payload');
        assert.ok(fa.payload.length < fp.payload.length,
          `compressed (${fa.payload.length}) is smaller than plain (${fp.payload.length})`);
        assertMessageObject(fp.msg, { room, text, from: d.member, own: false });
        await d.next({ type: 'message', text, own: true });
      }
    } finally {
      await closeAll([a, b, p, d]);
    }
  });
});

// Runs one fixed conversation on a fresh server (same ids, nicks, message
// id; timestamps have 13 digits) and returns the frames of the message as
// seen by a deflate member and by a plain one, and every frame the deflate
// member got.
async function thresholdRun(args, text) {
  let out;
  await withChat(args, async (srv) => {
    const room = 'thr';
    const a = await RawChat.open(srv.port, { room, nick: 'ann' });
    const p = await RawChat.open(srv.port, { room, nick: 'pat' }, { offer: null });
    const d = await RawChat.open(srv.port, { room, nick: 'dan' }, { offer: null });
    try {
      await a.next({ type: 'join', room, member: p.member });
      for (const r of [a, p]) await r.next({ type: 'join', room, member: d.member });
      d.send(text);
      const fa = await a.next({ type: 'message', text });
      const fp = await p.next({ type: 'message', text });
      await d.next({ type: 'message', text, own: true });
      out = { fa, fp, all: a.frames };
    } finally {
      await closeAll([a, p, d]);
    }
  });
  return out;
}

test('threshold: a message of L bytes is plain with --deflate-threshold L+1, compressed with L; 100000 makes all plain', async () => {
  const text = prose(120, 'threshold ');
  const big = await thresholdRun(['--deflate-threshold', '100000'], text);
  const L = big.fp.payload.length;
  assert.equal(big.fa.rsv, 0, 'plain under --deflate-threshold 100000');
  assert.equal(big.fa.payload.toString('hex'), big.fp.payload.toString('hex'), 'the same bytes as the plain member');
  assert.ok(big.all.length >= 4, `welcome, two joins and the message: ${big.all.length} frames`);
  assert.deepEqual(big.all.map((f) => f.rsv), big.all.map(() => 0),
    'every frame plain (welcome, joins, message) under --deflate-threshold 100000');

  const below = await thresholdRun(['--deflate-threshold', String(L + 1)], text);
  assert.equal(below.fp.payload.length, L, 'the same conversation gives the same message length');
  assert.equal(below.fa.rsv, 0, `a ${L}-byte message is plain with --deflate-threshold ${L + 1}`);
  assert.equal(below.fa.payload.toString('hex'), below.fp.payload.toString('hex'));

  const at = await thresholdRun(['--deflate-threshold', String(L)], text);
  assert.equal(at.fp.payload.length, L, 'the same conversation gives the same message length');
  assert.equal(at.fa.rsv, 4, `a ${L}-byte message is compressed with --deflate-threshold ${L}`);
  assert.equal(inflateMessage(at.fa.payload).toString('hex'), at.fp.payload.toString('hex'));
});

// ===========================================================================
// 3. Inbound compressed messages

test('inbound: compressed messages, single and fragmented, mixed with plain ones, reach everyone intact', async () => {
  await withChat([], async (srv) => {
    const room = 'in';
    const s = await RawChat.open(srv.port, { room, nick: 'sam' });
    const p = await RawChat.open(srv.port, { room, nick: 'pat' }, { offer: null });
    const x = await wsJoin(srv.port, { room, nick: 'xia' });
    try {
      await s.next({ type: 'join', room, member: p.member });
      await s.next({ type: 'join', room, member: x.member });
      await p.next({ type: 'join', room, member: x.member });
      const deliver = async (text, what) => {
        for (const [r, own] of [[s, true], [p, false]]) {
          const f = await r.next({ type: 'message', text });
          assertMessageObject(f.msg, { room, text, from: s.member, own }, `${what}: `);
        }
        const m = await x.next({ type: 'message', text });
        assertMessageObject(m, { room, text, from: s.member, own: false }, `${what}: `);
      };

      const t1 = prose(200, 'one frame ');
      s.send(t1);
      await deliver(t1, 'single compressed frame');

      const t2 = `${prose(600, 'three fragments ')} — ça marche ✓`;
      const z = deflateMessage(JSON.stringify({ type: 'message', text: t2 }));
      const cut1 = Math.floor(z.length / 3);
      const cut2 = Math.floor((2 * z.length) / 3);
      s.write(Buffer.concat([
        clientFrame(OP.TEXT, z.subarray(0, cut1), { rsv: 4, fin: false }),
        clientFrame(OP.CONT, z.subarray(cut1, cut2), { fin: false }),
        clientFrame(OP.PING, 'between'),
        clientFrame(OP.CONT, z.subarray(cut2)),
      ]));
      await deliver(t2, 'fragmented compressed message');

      const t3 = 'plain in the same session';
      s.send(t3, { compress: false });
      await deliver(t3, 'uncompressed message from a deflate client');

      // A compressed message that is one byte per fragment.
      const t4 = 'tiny fragments ü';
      const z4 = deflateMessage(t4);
      s.write(Buffer.concat([...z4].map((byte, i) => clientFrame(i === 0 ? OP.TEXT : OP.CONT,
        Buffer.from([byte]), { rsv: i === 0 ? 4 : 0, fin: i === z4.length - 1 }))));
      await deliver(t4, 'one byte per fragment');

      // An empty compressed frame: the stored-block empty message (00) is
      // valid DEFLATE; an empty text is empty_text, to the sender only.
      s.write(clientFrame(OP.TEXT, Buffer.from([0x00]), { rsv: 4 }));
      const e = await s.next({ type: 'error' });
      assert.equal(e.msg.code, 'empty_text', 'an empty compressed message is an empty text');
      s.send('after the empty one');
      await deliver('after the empty one', 'after the empty message');
    } finally {
      await closeAll([s, p, x]);
    }
  });
});

// Every bad compressed input, each from its own client in a room where two
// others keep chatting: the bad one gets the close code, the others its
// leave notice, and they still chat afterwards.
const BAD_CASES = [
  {
    what: 'invalid DEFLATE (reserved block type)',
    frames: () => [clientFrame(OP.TEXT, Buffer.from([0xff, 0xff, 0xff, 0xff]), { rsv: 4 })],
    code: 1007,
    reason: 'invalid compressed data',
  },
  {
    what: 'data after the final block',
    frames: () => {
      const fin = zlib.deflateRawSync(Buffer.from('the end'));
      return [clientFrame(OP.TEXT, Buffer.concat([fin, Buffer.from([0x00, 0x00, 0x00, 0x00])]), { rsv: 4 })];
    },
    code: 1007,
    reason: 'invalid compressed data',
  },
  {
    what: 'invalid UTF-8 inside a compressed text',
    frames: () => [clientFrame(OP.TEXT, deflateMessage(Buffer.from([0x68, 0x69, 0xc3, 0x28, 0x21])), { rsv: 4 })],
    code: 1007,
  },
  {
    what: 'a truncated UTF-8 sequence at the end of a compressed text',
    frames: () => [clientFrame(OP.TEXT, deflateMessage(Buffer.from([0x68, 0x69, 0xe2, 0x82])), { rsv: 4 })],
    code: 1007,
  },
  {
    what: 'RSV1 on a continuation frame',
    frames: () => {
      const z = deflateMessage('split across two frames, the second wrongly flagged');
      return [clientFrame(OP.TEXT, z.subarray(0, 5), { rsv: 4, fin: false }),
        clientFrame(OP.CONT, z.subarray(5), { rsv: 4 })];
    },
    code: 1002,
  },
  {
    what: 'RSV1 on a ping',
    frames: () => [clientFrame(OP.PING, deflateMessage('ping'), { rsv: 4 })],
    code: 1002,
  },
  {
    what: 'RSV2 on a text frame',
    frames: () => [clientFrame(OP.TEXT, Buffer.from('rsv2'), { rsv: 2 })],
    code: 1002,
  },
  {
    what: 'a back reference into the previous message under client_no_context_takeover',
    frames: async () => {
      const ds = new DeflateStream(15);
      const text = JSON.stringify({ type: 'message', text: prose(300, 'context ') });
      const z1 = await ds.message(text);
      const z2 = await ds.message(text);
      ds.close();
      assert.throws(() => inflateMessage(z2), 'self-check: the second message needs the first');
      return [clientFrame(OP.TEXT, z1, { rsv: 4 }), clientFrame(OP.TEXT, z2, { rsv: 4 })];
    },
    code: 1007,
    reason: 'invalid compressed data',
    firstDelivered: true,
  },
];

test('inbound errors: invalid DEFLATE, trailing data, bad UTF-8, RSV1 misuse, stale context: close code, leave, chat goes on', async () => {
  await withChat([], async (srv) => {
    const room = 'bad';
    const a = await wsJoin(srv.port, { room, nick: 'ann' });
    const p = await RawChat.open(srv.port, { room, nick: 'pat' }, { offer: null });
    try {
      await a.next({ type: 'join', room, member: p.member });
      for (const [i, c] of BAD_CASES.entries()) {
        const bad = await RawChat.open(srv.port, { room, nick: `bad${i}` });
        try {
          await a.next({ type: 'join', room, member: bad.member });
          await p.next({ type: 'join', room, member: bad.member });
          bad.write(Buffer.concat(await c.frames()));
          if (c.firstDelivered) {
            await p.next((m) => m.type === 'message' && m.from.id === bad.id && m.text.startsWith('context '));
          }
          await bad.expectClose(c.code, c.reason, c.what);
          await a.next({ type: 'leave', room, member: bad.member });
          await p.next({ type: 'leave', room, member: bad.member });
          const text = `${prose(200, `after case ${i} `)}`;
          a.send(text);
          const f = await p.next({ type: 'message', text });
          assertMessageObject(f.msg, { room, text, from: a.member, own: false }, `${c.what}: `);
          p.send(`pat after case ${i}`);
          await a.next({ type: 'message', text: `pat after case ${i}`, from: p.member });
        } finally {
          bad.conn.destroy();
        }
      }
      assert.deepEqual(a.received.filter((m) => m.type === 'message' && m.from.id !== a.id && m.from.id !== p.id)
        .map((m) => m.text.slice(0, 8)), ['context '],
      'the only message a bad client got through is the first of the stale-context pair');
    } finally {
      await closeAll([a, p]);
    }
  });
});

// Memory: one event loop (--threads 1), so that every bomb is inflated in
// the same malloc arena. Three bombs, because the first large block glibc
// hands out is mmapped and given back (and raises its mmap threshold); the
// later ones would stay resident in the heap if the server inflated them
// fully. What is allowed is one buffer up to the 1 MiB limit and slack
// (3 MiB). Under a wrapper tool (valgrind keeps freed blocks in a 20 MB
// queue instead of reusing them) or AddressSanitizer (its quarantine does
// the same) every bomb's buffers add up: 4 MiB a bomb is allowed, still
// less than the 5 MiB a full inflation keeps per bomb.
const WRAPPED = Boolean(process.env.WSHUB_WRAPPER) || BIN_IS_ASAN;
test('zip bomb: 5 MB of "a" compressed against --max-message 1 MiB → 1009, no 5 MB in memory, room unaffected', async () => {
  await withChat(['--threads', '1'], async (srv) => {
    const room = 'bomb';
    const a = await wsJoin(srv.port, { room, nick: 'ann' });
    const p = await RawChat.open(srv.port, { room, nick: 'pat' });
    try {
      await a.next({ type: 'join', room, member: p.member });
      // Warm up: compression and inflation both used before measuring.
      for (let i = 0; i < 5; i++) {
        const text = prose(2000, `warm ${i} `);
        p.send(text);
        await a.next({ type: 'message', text });
        a.send(text);
        await p.next({ type: 'message', text, own: false });
      }
      const bomb = zlib.deflateRawSync(Buffer.alloc(5 * 1024 * 1024, 'a'), { finishFlush: Z.Z_SYNC_FLUSH })
        .subarray(0, -4);
      assert.ok(bomb.length < 64 * 1024, `self-check: the bomb is small compressed (${bomb.length} bytes)`);
      const before = vmRssKiB(srv.pid);
      for (let i = 0; i < 3; i++) {
        const bad = await RawChat.open(srv.port, { room, nick: `bomber${i}` });
        try {
          await a.next({ type: 'join', room, member: bad.member });
          bad.write(clientFrame(OP.TEXT, bomb, { rsv: 4 }));
          await bad.expectClose(1009, 'message too big', 'zip bomb');
          await a.next({ type: 'leave', room, member: bad.member });
          await p.next({ type: 'leave', room, member: bad.member });
        } finally {
          bad.conn.destroy();
        }
      }
      const after = vmRssKiB(srv.pid);
      const bound = WRAPPED ? 12 * 1024 : 3 * 1024;
      assert.ok(after - before < bound,
        `VmRSS grew by ${after - before} KiB over three 5 MiB bombs (before ${before}, after ${after}); ` +
        `want < ${bound} KiB`);
      const text = prose(300, 'after the bombs ');
      a.send(text);
      const f = await p.next({ type: 'message', text });
      assert.equal(f.rsv, 4);
      assertMessageObject(f.msg, { room, text, from: a.member, own: false });
      p.send('pat is fine too');
      await a.next({ type: 'message', text: 'pat is fine too', from: p.member });
      assert.deepEqual(a.received.filter((m) => m.type === 'message' && /^a{100}/.test(m.text)), [],
        'nothing of the bomb reached the room');
    } finally {
      await closeAll([a, p]);
    }
  });
});

test('size limit: a compressed message inflating to exactly --max-message passes the limit; one byte more → 1009', async () => {
  // --max-text is raised so that the chat takes the message itself.
  const max = 8192;
  await withChat(['--max-message', String(max), '--max-text', String(max)], async (srv) => {
    const room = 'limit';
    const a = await RawChat.open(srv.port, { room, nick: 'ann' }, { offer: null });
    const s = await RawChat.open(srv.port, { room, nick: 'sam' });
    try {
      await a.next({ type: 'join', room, member: s.member });
      const exact = prose(max, 'limit ');
      s.send(exact);
      const f = await a.next({ type: 'message', text: exact });
      assertMessageObject(f.msg, { room, text: exact, from: s.member, own: false });
      s.send(`${exact}!`);
      await s.expectClose(1009, 'message too big', `a message of ${max + 1} bytes`);
      await a.next({ type: 'leave', room, member: s.member });
    } finally {
      await closeAll([a, s]);
    }
  });
});

// ===========================================================================
// 4. Client context takeover (--deflate-client-window)

test('client context takeover: window 12 answered; 20 messages through one deflate stream arrive intact', async () => {
  await withChat(['--deflate-client-window', '12'], async (srv) => {
    const room = 'ctx';
    const s = await RawChat.open(srv.port, { room, nick: 'sam' }, {
      offer: 'permessage-deflate; client_max_window_bits',
      expect: 'permessage-deflate; server_no_context_takeover; client_max_window_bits=12',
    });
    const p = await RawChat.open(srv.port, { room, nick: 'pat' }, { offer: null });
    const d = await RawChat.open(srv.port, { room, nick: 'dee' }, {
      offer: 'permessage-deflate; client_max_window_bits=10',
      expect: 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10',
    });
    const ds = new DeflateStream(12);
    try {
      await s.next({ type: 'join', room, member: p.member });
      await s.next({ type: 'join', room, member: d.member });
      await p.next({ type: 'join', room, member: d.member });
      const texts = [];
      let sawBackRef = 0;
      for (let i = 0; i < 20; i++) {
        // The same long sentence each time with a changing number, some JSON
        // and some raw: later messages refer back into earlier ones.
        const text = `message ${i % 3 === 0 ? i : ''}: ${prose(250, 'the repeated sentence ')} #${i}`;
        texts.push(text);
        const body = i % 2 ? JSON.stringify({ type: 'message', text }) : text;
        const z = await ds.message(body);
        if (i > 0) {
          try {
            inflateMessage(z);
          } catch {
            sawBackRef++;
          }
        }
        if (i % 4 === 3) {
          // Fragmented too: the context spans frames and messages.
          const cut = Math.floor(z.length / 2);
          s.write(Buffer.concat([clientFrame(OP.TEXT, z.subarray(0, cut), { rsv: 4, fin: false }),
            clientFrame(OP.CONT, z.subarray(cut))]));
        } else {
          s.write(clientFrame(OP.TEXT, z, { rsv: 4 }));
        }
      }
      assert.ok(sawBackRef >= 15, `self-check: ${sawBackRef} of 19 messages need the earlier context`);
      for (const r of [p, d]) {
        for (const [i, text] of texts.entries()) {
          const f = await r.next((m) => m.type === 'message' && m.from.id === s.id);
          assertMessageObject(f.msg, { room, text, from: s.member, own: false }, `message ${i}: `);
        }
      }
      for (const text of texts) await s.next({ type: 'message', text, own: true });

      // dee keeps a 10-bit window across messages too.
      const dd = new DeflateStream(10);
      try {
        for (let i = 0; i < 5; i++) {
          const text = `${prose(180, 'dee window ten ')} ${i}`;
          d.write(clientFrame(OP.TEXT, await dd.message(text), { rsv: 4 }));
          const f = await p.next({ type: 'message', text });
          assertMessageObject(f.msg, { room, text, from: d.member, own: false });
        }
      } finally {
        dd.close();
      }
    } finally {
      ds.close();
      await closeAll([s, p, d]);
    }
  });
});

test('client context takeover: offers with and without client_max_window_bits and the ws client, against --deflate-client-window 12', async () => {
  await withChat(['--deflate-client-window', '12'], async (srv) => {
    const room = 'ctx-ws';
    const cases = [
      // [offer, exact answer]
      ['permessage-deflate', 'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
      ['permessage-deflate; client_no_context_takeover; client_max_window_bits',
        'permessage-deflate; server_no_context_takeover; client_no_context_takeover'],
      ['permessage-deflate; client_max_window_bits=15',
        'permessage-deflate; server_no_context_takeover; client_max_window_bits=12'],
      ['permessage-deflate; server_max_window_bits=9; client_max_window_bits',
        'permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_max_window_bits=12'],
    ];
    for (const [offer, expect] of cases) {
      const r = await RawChat.open(srv.port, { room: `${room}-raw` }, { offer, expect });
      await r.close();
    }

    // ws's default offer is "permessage-deflate; client_max_window_bits";
    // threshold 0 makes it compress every message, keeping its context.
    const w = await wsJoin(srv.port, { room, nick: 'npm' }, { perMessageDeflate: { threshold: 0 } });
    const w10 = await wsJoin(srv.port, { room, nick: 'npm10' },
      { perMessageDeflate: { threshold: 0, clientMaxWindowBits: 10 } });
    const wno = await wsJoin(srv.port, { room, nick: 'npmno' },
      { perMessageDeflate: { threshold: 0, clientNoContextTakeover: true } });
    const p = await RawChat.open(srv.port, { room, nick: 'pat' }, { offer: null });
    try {
      assert.equal(w.ext, 'permessage-deflate; server_no_context_takeover; client_max_window_bits=12');
      assert.equal(w10.ext, 'permessage-deflate; server_no_context_takeover; client_max_window_bits=10');
      assert.equal(wno.ext, 'permessage-deflate; server_no_context_takeover; client_no_context_takeover');
      for (const c of [w, w10, wno]) assert.equal(c.ws.extensions, 'permessage-deflate');
      for (const [who, c] of [['npm', w], ['npm10', w10], ['npmno', wno]]) {
        const texts = Array.from({ length: 20 }, (_, i) => `${who} ${prose(300, 'takeover ')} ${i}`);
        for (const t of texts) c.send(t);
        for (const t of texts) {
          const f = await p.next({ type: 'message', text: t });
          assertMessageObject(f.msg, { room, text: t, from: c.member, own: false }, `${who}: `);
        }
        for (const t of texts) await c.next({ type: 'message', text: t, own: true });
      }
      // And back: the server's compressed messages to all three ws clients.
      const text = prose(500, 'from pat ');
      p.send(text);
      for (const c of [w, w10, wno]) await c.next({ type: 'message', text, from: p.member });
    } finally {
      await closeAll([w, w10, wno, p]);
    }
  });
});

// ===========================================================================
// 5. Threads

test('threads: --threads 2, 8 deflate and 2 plain members; 50 messages from one arrive in order everywhere', async () => {
  await withChat(['--threads', '2'], async (srv) => {
    const room = 'threads';
    const members = [];
    try {
      for (let i = 0; i < 10; i++) {
        const plain = i === 3 || i === 7;
        members.push(await RawChat.open(srv.port, { room, nick: `${plain ? 'plain' : 'zip'}${i}` },
          { offer: plain ? null : EXT }));
      }
      // Everyone sees everyone who came later.
      for (let i = 0; i < 10; i++) {
        for (let j = i + 1; j < 10; j++) {
          await members[i].next({ type: 'join', room, member: members[j].member });
        }
      }
      const sender = members[0];
      const texts = Array.from({ length: 50 }, (_, i) => `${i}: ${prose(100 + 13 * i, `thread text ${i} `)}`);
      for (const [i, t] of texts.entries()) sender.send(i % 2 ? JSON.stringify({ type: 'message', text: t }) : t);
      let firstId = null;
      for (const [k, r] of members.entries()) {
        const got = [];
        for (let i = 0; i < 50; i++) got.push(await r.next('message'));
        assert.deepEqual(got.map((f) => f.msg.text), texts, `member ${k}: all 50 texts in order`);
        if (firstId === null) firstId = got[0].msg.id;
        got.forEach((f, i) => {
          assertMessageObject(f.msg, { room, from: sender.member, own: r === sender, id: firstId + i },
            `member ${k} message ${i}: `);
          assert.equal(f.rsv, r.deflate ? 4 : 0, `member ${k} message ${i}: RSV1 iff deflate`);
        });
      }
    } finally {
      await closeAll(members);
    }
  });
});
