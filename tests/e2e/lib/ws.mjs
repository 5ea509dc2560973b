// tests/e2e/lib/ws.mjs — WebSocket helpers for the end-to-end tests.
//
// What lives here: building opening-handshake requests byte by byte and
// computing the Sec-WebSocket-Accept they must get back (RFC 6455 §4.2),
// building client frames (masked or, for negative tests, not) and parsing
// the server's frames exactly (§5.2) from a raw Conn of lib/server.mjs, and
// a thin promise wrapper around the `ws` npm client for the browser-like
// side. Processes and fixture trees stay owned by lib/server.mjs; every
// socket and client opened here is closed by the test that opened it.

import crypto from 'node:crypto';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { Conn, HOST, WAIT_MS, reqBytes, sleep } from './server.mjs';

export { WebSocket };

export const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };

// The Sec-WebSocket-Accept value for a key (§4.2.2, step 5.4).
export function acceptFor(key) {
  return crypto.createHash('sha1').update(key + GUID, 'latin1').digest('base64');
}

// A fresh Sec-WebSocket-Key: base64 of 16 random bytes.
export function newKey() {
  return crypto.randomBytes(16).toString('base64');
}

// The header fields of a valid upgrade (Host is added by reqBytes). Pass
// null as a value to leave a field out; pass an array of [name, value]
// pairs as `extra` to append fields (repeated names allowed).
export function upgradeHeaders(key, over = {}) {
  return {
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': key,
    'Sec-WebSocket-Version': '13',
    ...over,
  };
}

// A complete upgrade request. opts: method, version ('1.1'), headers
// (overrides of upgradeHeaders, null removes), extra ([[name, value]...]
// appended after the others), key, host (null: no Host field).
export function upgradeBytes(target = '/', opts = {}) {
  const key = opts.key ?? newKey();
  const hs = upgradeHeaders(key, opts.headers);
  if (opts.host !== undefined) hs.Host = opts.host;
  let head = reqBytes(opts.method ?? 'GET', target, hs, '', opts.version ?? '1.1')
    .toString('latin1');
  if (opts.extra && opts.extra.length) {
    const more = opts.extra.map(([k, v]) => `${k}: ${v}\r\n`).join('');
    head = head.slice(0, -2) + more + '\r\n';
  }
  return { key, bytes: Buffer.from(head, 'latin1') };
}

// Sends an upgrade on a fresh raw connection and reads the response head
// (and body, for error responses). Returns { res, conn, key }.
export async function rawUpgrade(port, target = '/', opts = {}) {
  const { key, bytes } = upgradeBytes(target, opts);
  const conn = await Conn.open(port);
  conn.write(opts.append ? Buffer.concat([bytes, opts.append]) : bytes);
  const res = await conn.readResponse();
  return { res, conn, key };
}

// Asserts a response is exactly the 101 this key must get: status line
// byte for byte, Upgrade, Connection, the right Accept, one of each, and
// the subprotocol header iff `protocol` is given. No body.
export function assert101(res, key, protocol = null) {
  const ctx = `\n${res.raw}`;
  assert.ok(res.raw.startsWith('HTTP/1.1 101 Switching Protocols\r\n'),
    `exact status line${ctx}`);
  assert.deepEqual(res.all('upgrade'), ['websocket'], `Upgrade: websocket${ctx}`);
  assert.deepEqual(res.all('connection'), ['Upgrade'], `Connection: Upgrade${ctx}`);
  assert.deepEqual(res.all('sec-websocket-accept'), [acceptFor(key)],
    `Sec-WebSocket-Accept${ctx}`);
  if (protocol === null) {
    assert.equal(res.get('sec-websocket-protocol'), undefined, `no Sec-WebSocket-Protocol${ctx}`);
  } else {
    assert.deepEqual(res.all('sec-websocket-protocol'), [protocol],
      `Sec-WebSocket-Protocol: ${protocol}${ctx}`);
  }
  assert.equal(res.get('sec-websocket-extensions'), undefined, `no extension accepted${ctx}`);
  assert.equal(res.get('content-length'), undefined, `a 101 has no Content-Length${ctx}`);
  assert.equal(res.get('transfer-encoding'), undefined, `a 101 has no Transfer-Encoding${ctx}`);
}

// ---------------------------------------------------------------------------
// Frames

// A client frame. opts: fin (true), mask (true), maskKey (4 bytes; random
// by default), rsv (0..7), len (override the encoded length).
export function clientFrame(opcode, payload = Buffer.alloc(0), opts = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const fin = opts.fin ?? true;
  const mask = opts.mask ?? true;
  const n = opts.len ?? data.length;
  const b0 = (fin ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | opcode;
  let head;
  if (n < 126) {
    head = Buffer.from([b0, (mask ? 0x80 : 0) | n]);
  } else if (n < 65536) {
    head = Buffer.from([b0, (mask ? 0x80 : 0) | 126, n >> 8, n & 0xff]);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = (mask ? 0x80 : 0) | 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  if (!mask) return Buffer.concat([head, data]);
  const key = opts.maskKey ?? crypto.randomBytes(4);
  const body = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) body[i] = data[i] ^ key[i & 3];
  return Buffer.concat([head, key, body]);
}

// A close frame payload: 2-byte code and a UTF-8 reason.
export function closePayload(code, reason = '') {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
}

// The exact bytes of an unmasked server frame (FIN set).
export function serverFrameBytes(opcode, payload) {
  return clientFrame(opcode, payload, { mask: false });
}

// Parses one frame from the front of buf. Returns null if incomplete, else
// { fin, rsv, opcode, masked, payload, size } (size: bytes consumed).
export function parseFrame(buf) {
  if (buf.length < 2) return null;
  const b0 = buf[0];
  const b1 = buf[1];
  let n = b1 & 0x7f;
  let off = 2;
  if (n === 126) {
    if (buf.length < 4) return null;
    n = buf.readUInt16BE(2);
    off = 4;
  } else if (n === 127) {
    if (buf.length < 10) return null;
    const big = buf.readBigUInt64BE(2);
    assert.ok(big < 2n ** 40n, `absurd frame length ${big}`);
    n = Number(big);
    off = 10;
  }
  const masked = (b1 & 0x80) !== 0;
  let key = null;
  if (masked) {
    if (buf.length < off + 4) return null;
    key = buf.subarray(off, off + 4);
    off += 4;
  }
  if (buf.length < off + n) return null;
  let payload = Buffer.from(buf.subarray(off, off + n));
  if (masked) for (let i = 0; i < n; i++) payload[i] ^= key[i & 3];
  return {
    fin: (b0 & 0x80) !== 0,
    rsv: (b0 >> 4) & 7,
    opcode: b0 & 0x0f,
    masked,
    payload,
    size: off + n,
    raw: Buffer.from(buf.subarray(0, off + n)),
  };
}

// Reads the next server frame from a raw Conn, asserting the framing rules
// every server frame obeys: unmasked, no RSV bits, and for control frames
// FIN set and at most 125 bytes of payload.
export async function readFrame(conn, ms = WAIT_MS) {
  let f = null;
  await conn.waitFor(() => (f = parseFrame(conn.peek())) !== null, ms, 'a WebSocket frame');
  conn.take(f.size);
  const ctx = ` (frame ${f.raw.subarray(0, 16).toString('hex')})`;
  assert.equal(f.masked, false, `server frames are not masked${ctx}`);
  assert.equal(f.rsv, 0, `no RSV bits without an extension${ctx}`);
  if (f.opcode >= 8) {
    assert.equal(f.fin, true, `control frames are not fragmented${ctx}`);
    assert.ok(f.payload.length <= 125, `control payload <= 125 bytes${ctx}`);
  }
  return f;
}

// Decodes a close frame's payload: { code, reason } (code null if empty).
export function parseClose(f) {
  assert.equal(f.opcode, OP.CLOSE, `a close frame, got opcode ${f.opcode}`);
  assert.notEqual(f.payload.length, 1, 'a close payload is never 1 byte');
  if (f.payload.length === 0) return { code: null, reason: '' };
  const reason = f.payload.subarray(2);
  const text = new TextDecoder('utf-8', { fatal: true }).decode(reason);
  return { code: f.payload.readUInt16BE(0), reason: text };
}

// Reads the next frame and asserts it is a close frame with `code`.
export async function expectClose(conn, code, ms = WAIT_MS) {
  const f = await readFrame(conn, ms);
  assert.equal(f.opcode, OP.CLOSE,
    `expected a close frame (${code}), got opcode ${f.opcode}: ${f.raw.subarray(0, 32).toString('hex')}`);
  const c = parseClose(f);
  assert.equal(c.code, code, `close code (reason ${JSON.stringify(c.reason)})`);
  return c;
}

// Upgrades a raw connection (asserting the 101) and returns it ready for
// frames. opts as for rawUpgrade.
export async function rawOpen(port, target = '/', opts = {}) {
  const { res, conn, key } = await rawUpgrade(port, target, opts);
  assert101(res, key, opts.protocol ?? null);
  return conn;
}

// A raw WebSocket still works: text and ping round trips on a fresh
// connection (`echo`: whether the text comes back).
export async function assertWsWorks(port, { target = '/', echo = true } = {}) {
  const conn = await rawOpen(port, target);
  try {
    if (echo) {
      conn.write(clientFrame(OP.TEXT, 'still alive'));
      const f = await readFrame(conn);
      assert.equal(f.raw.toString('latin1'), serverFrameBytes(OP.TEXT, 'still alive').toString('latin1'));
    }
    conn.write(clientFrame(OP.PING, 'p'));
    let f = await readFrame(conn);
    while (!echo && f.opcode !== OP.PONG) f = await readFrame(conn);
    assert.equal(f.raw.toString('hex'), serverFrameBytes(OP.PONG, 'p').toString('hex'), 'pong');
    conn.write(clientFrame(OP.CLOSE, closePayload(1000)));
    if (echo) {
      await expectClose(conn, 1000);
    } else {
      // The chat may still be telling this client about the room (a leave
      // of an earlier client): text frames, then the close.
      let c = await readFrame(conn);
      while (c.opcode === OP.TEXT) c = await readFrame(conn);
      assert.equal(c.opcode, OP.CLOSE, `expected a close frame, got opcode ${c.opcode}`);
      assert.equal(parseClose(c).code, 1000, 'close code');
    }
    await conn.waitEnd();
  } finally {
    conn.destroy();
  }
}

// ---------------------------------------------------------------------------
// The `ws` client

export function wsUrl(port, path = '/') {
  return `ws://${HOST}:${port}${path}`;
}

// Opens a `ws` client and resolves once it is open. The returned object
// queues messages (next()), records pongs and resolves `closed` with
// { code, reason } when the connection ends.
export function openClient(port, path = '/', protocols = undefined, options = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl(port, path), protocols, options);
    const c = {
      ws,
      messages: [],
      pongs: [],
      pings: [],
      waiters: new Set(),
      closeInfo: null,
      error: null,
    };
    const wake = () => { for (const w of c.waiters) w(); };
    c.closed = new Promise((res) => {
      ws.on('close', (code, reason) => {
        c.closeInfo = { code, reason: reason.toString() };
        wake();
        res(c.closeInfo);
      });
    });
    ws.on('message', (data, isBinary) => { c.messages.push({ data, isBinary }); wake(); });
    ws.on('pong', (d) => { c.pongs.push(d); wake(); });
    ws.on('ping', (d) => { c.pings.push(d); wake(); });
    ws.on('error', (e) => { c.error = e; wake(); });
    c.until = (pred, what, ms = WAIT_MS) => new Promise((res, rej) => {
      let timer;
      const check = () => {
        if (pred()) { done(); res(); } else if (c.closeInfo) {
          done();
          rej(new Error(`ws closed (${JSON.stringify(c.closeInfo)}) waiting for ${what}`));
        }
      };
      const done = () => { clearTimeout(timer); c.waiters.delete(check); };
      timer = setTimeout(() => { done(); rej(new Error(`timed out waiting for ${what}`)); }, ms);
      c.waiters.add(check);
      check();
    });
    c.next = async (ms = WAIT_MS) => {
      await c.until(() => c.messages.length > 0, 'a message', ms);
      return c.messages.shift();
    };
    c.waitClosed = async (ms = WAIT_MS) => {
      let timer;
      const t = new Promise((_, rej) => {
        timer = setTimeout(() => rej(new Error('ws client did not see the close')), ms);
      });
      try {
        return await Promise.race([c.closed, t]);
      } finally {
        clearTimeout(timer);
      }
    };
    c.terminate = () => ws.terminate();
    ws.once('open', () => resolve(c));
    ws.once('unexpected-response', (req, res) => {
      reject(new Error(`unexpected HTTP ${res.statusCode} to the upgrade`));
      req.destroy();
    });
    ws.once('error', (e) => { if (ws.readyState !== WebSocket.OPEN) reject(e); });
  });
}

export { sleep };
