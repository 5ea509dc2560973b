// wsclient.mjs — a raw-frame WebSocket client for the conformance suite.
//
// Why it exists: a conformance suite must be able to send frames that no
// well-behaved client library would ever produce (reserved bits, reserved
// opcodes, unmasked frames, oversized control frames, bogus lengths, frames
// cut into arbitrary TCP writes) and must see exactly what the server sends
// back, frame by frame, including how the TCP connection ends (FIN vs RST).
// It uses only node:net, node:crypto and node:zlib (through pmd.mjs).
//
// permessage-deflate (RFC 7692): a client may offer extensions (option
// `extensions`, one Sec-WebSocket-Extensions line per string). The answer is
// checked strictly: against RFC 7692 (only parameters the offer allows,
// values in range) and, unless `server: null`, against exactly what wshub's
// contract says it answers (`wshubAnswer` in pmd.mjs), given the server's
// options (`server: { deflate, clientWindow, threshold }`, filled in by the
// runner). When deflate is negotiated, server messages with RSV1 are
// inflated (a fresh inflater per message when the server declared
// server_no_context_takeover, so a message that leans on an earlier one does
// not inflate; the declared window checked exactly when it is below 15), and
// `sendCompressed` / `compressMessage` send compressed messages, with or
// without context takeover.
//
// Ownership: a WsClient owns its socket. Every received frame is kept in
// `frames` (in arrival order, payloads as Buffers; the last frame of a data
// message also gets `data`, the message as the application sees it, inflated
// if it was compressed, and `compressed`); every way in which the server's
// byte stream breaks RFC 6455 / RFC 7692 (or wshub's deflate contract) is
// recorded as a string in `violations`, which the runner checks after every
// case.

import net from 'node:net';
import crypto from 'node:crypto';
import { wshubAnswer, checkResponse, deflateMessage, inflateMessage, inflateRawJs, TRAILER } from './pmd.mjs';

export const OP = Object.freeze({
  CONT: 0x0,
  TEXT: 0x1,
  BINARY: 0x2,
  CLOSE: 0x8,
  PING: 0x9,
  PONG: 0xa,
});

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const opName = (op) =>
  ({ 0: 'cont', 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' })[op] ??
  `op${op}`;

export const isControl = (op) => (op & 0x8) !== 0;

/** The Sec-WebSocket-Accept value a server must answer for `key`. */
export function acceptFor(key) {
  return crypto.createHash('sha1').update(key + WS_GUID).digest('base64');
}

/** Strict UTF-8 check (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
export function isValidUtf8(buf) {
  return utf8FirstError(buf, true) === -1;
}

/**
 * Index of the first byte at which `buf` stops being a prefix of valid
 * UTF-8, or -1 if there is none. With `complete`, an unfinished sequence at
 * the end counts as an error (reported at buf.length).
 */
export function utf8FirstError(buf, complete) {
  let i = 0;
  const n = buf.length;
  while (i < n) {
    const b = buf[i];
    if (b < 0x80) {
      i++;
      continue;
    }
    let need;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b === 0xe0) { need = 2; lo = 0xa0; }
    else if (b >= 0xe1 && b <= 0xec) need = 2;
    else if (b === 0xed) { need = 2; hi = 0x9f; }
    else if (b >= 0xee && b <= 0xef) need = 2;
    else if (b === 0xf0) { need = 3; lo = 0x90; }
    else if (b >= 0xf1 && b <= 0xf3) need = 3;
    else if (b === 0xf4) { need = 3; hi = 0x8f; }
    else return i;
    for (let k = 1; k <= need; k++) {
      if (i + k >= n) return complete ? n : -1;
      const c = buf[i + k];
      const l = k === 1 ? lo : 0x80;
      const h = k === 1 ? hi : 0xbf;
      if (c < l || c > h) return i + k;
    }
    i += need + 1;
  }
  return -1;
}

/** Close codes a peer may put on the wire (RFC 6455 7.4 + IANA registry). */
export function isSendableCloseCode(code) {
  if (code >= 3000 && code <= 4999) return true;
  if (code >= 1000 && code <= 1014) return code !== 1004 && code !== 1005 && code !== 1006;
  return false;
}

export function toBuf(x) {
  if (x === undefined || x === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(x)) return x;
  if (typeof x === 'string') return Buffer.from(x, 'utf8');
  if (x instanceof Uint8Array) return Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  if (Array.isArray(x)) return Buffer.from(x);
  throw new TypeError('payload must be a Buffer, string, Uint8Array or byte array');
}

/** XOR `payload` with the 4-byte `key` into a fresh buffer (fast for big payloads). */
export function maskPayload(payload, key) {
  const n = payload.length;
  const ab = new ArrayBuffer(n + 3 - ((n + 3) % 4));
  const out = Buffer.from(ab, 0, n);
  payload.copy(out);
  const words = n >>> 2;
  if (words > 0) {
    const u32 = new Uint32Array(ab, 0, words);
    const k32 = new Uint32Array(Uint8Array.from(key).buffer)[0];
    for (let i = 0; i < words; i++) u32[i] ^= k32;
  }
  for (let i = words * 4; i < n; i++) out[i] ^= key[i & 3];
  return out;
}

/**
 * Build one frame's bytes. Everything may be set, including invalid values:
 *   fin      FIN bit (default true)
 *   rsv      3-bit value, placed as RSV1..RSV3 = bits 6..4 of byte 0 (4 = RSV1, 1 = RSV3)
 *   opcode   0..15
 *   payload  Buffer | string | bytes
 *   mask     whether to set the MASK bit and mask the payload (default true)
 *   maskKey  4 bytes (default random)
 *   length   advertised payload length (number or BigInt) if it must differ from the real one
 *   lenForm  7 | 16 | 64 to force an encoding of the length (default: minimal)
 */
export function buildFrame({
  fin = true,
  rsv = 0,
  opcode,
  payload,
  mask = true,
  maskKey,
  length,
  lenForm,
} = {}) {
  if (!Number.isInteger(opcode) || opcode < 0 || opcode > 15) throw new RangeError('opcode');
  const data = toBuf(payload);
  const len = length === undefined ? BigInt(data.length) : BigInt(length);
  let form = lenForm;
  if (form === undefined) form = len <= 125n ? 7 : len <= 0xffffn ? 16 : 64;
  const hlen = 2 + (form === 16 ? 2 : form === 64 ? 8 : 0) + (mask ? 4 : 0);
  const head = Buffer.alloc(hlen);
  head[0] = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | opcode;
  let off = 2;
  if (form === 7) {
    if (len > 127n) throw new RangeError('length does not fit the 7-bit form');
    head[1] = Number(len);
  } else if (form === 16) {
    head[1] = 126;
    head.writeUInt16BE(Number(len & 0xffffn), 2);
    off = 4;
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt.asUintN(64, len), 2);
    off = 10;
  }
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const key = maskKey ? toBuf(maskKey) : crypto.randomBytes(4);
  key.copy(head, off, 0, 4);
  return Buffer.concat([head, maskPayload(data, key)]);
}

/** Payload of a close frame: 2-byte code (if given) + UTF-8 (or raw) reason. */
export function closePayload(code, reason) {
  if (code === undefined || code === null) return Buffer.alloc(0);
  const r = toBuf(reason);
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code, 0);
  r.copy(b, 2);
  return b;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** wshub's deflate defaults, as the runner describes a server started without deflate options. */
export const DEFAULT_SERVER = Object.freeze({ deflate: true, clientWindow: 0, threshold: 64 });

function keepTail(buf, n) {
  return buf.length > n ? Buffer.from(buf.subarray(buf.length - n)) : buf;
}

/**
 * One message's frames: `payload` cut into frames of `size` bytes (0 or
 * >= length: one frame), `rsv` on the first frame only (4 = RSV1).
 */
export function frameMessage(opcode, payload, size, rsv = 0) {
  const b = toBuf(payload);
  if (!size || size >= b.length) return buildFrame({ opcode, payload: b, rsv });
  const out = [];
  for (let off = 0; off < b.length; off += size) {
    const end = Math.min(off + size, b.length);
    out.push(buildFrame({ opcode: off === 0 ? opcode : OP.CONT, fin: end === b.length, rsv: off === 0 ? rsv : 0, payload: b.subarray(off, end) }));
  }
  return Buffer.concat(out);
}

export class WsClient {
  constructor(socket, opts = {}) {
    this.socket = socket;
    this.frames = []; // {fin, rsv, opcode, masked, payload} (+ data, compressed on a message's last frame)
    this.frameCount = 0; // frames received, including those dropped by forgetFrames()
    this.violations = [];
    this.tcp = 'open'; // 'open' | 'fin' | 'reset' | 'error'
    this.tcpError = null;
    this.closed = false; // socket fully closed
    this.closeFrame = null; // first close frame received
    this.sentClose = false;
    this.autoPong = opts.autoPong ?? true;
    this.autoCloseReply = opts.autoCloseReply ?? true;
    this.writeErrors = 0;
    this._chunks = [];
    this._avail = 0;
    this._waiters = new Set();
    this._fragOpcode = null; // opcode of a fragmented server message in progress
    this._fragParts = [];
    this._handshakeDone = false;
    // permessage-deflate: negotiated parameters (null = not negotiated), the
    // server's options as the runner knows them, and the windows kept when
    // context takeover is in use.
    this.pmd = null;
    this.extensionsAnswer = null; // the Sec-WebSocket-Extensions values of the 101
    this.serverModel = opts.server === undefined ? DEFAULT_SERVER : opts.server;
    this._fragCompressed = false;
    this._rxHistory = Buffer.alloc(0);
    this._txHistory = Buffer.alloc(0);
    this.compressedReceived = 0;
  }

  /**
   * Connect and perform the opening handshake. Resolves to a WsClient.
   * opts: host, port, path, timeoutMs, autoPong, autoCloseReply, headers (extra request lines),
   *   extensions       string | string[]: Sec-WebSocket-Extensions value(s), one header line each
   *   server           the server's deflate options { deflate, clientWindow, threshold } (default:
   *                    wshub's defaults), or null to check the answer against RFC 7692 only
   *   expectExtensions the exact Sec-WebSocket-Extensions value the 101 must carry, or null for none
   */
  static connect(opts) {
    const { host = '127.0.0.1', port, path = '/', timeoutMs = 5000 } = opts;
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host, port, allowHalfOpen: true });
      socket.setNoDelay(true);
      const c = new WsClient(socket, opts);
      const key = crypto.randomBytes(16).toString('base64');
      let head = Buffer.alloc(0);
      let settled = false;
      const done = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          socket.destroy();
          reject(err);
        } else resolve(c);
      };
      const timer = setTimeout(() => done(new Error(`handshake timeout after ${timeoutMs} ms`)), timeoutMs);
      c._attach();
      c._onHandshakeData = (chunk) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > 16384) done(new Error('handshake response headers too large'));
          return;
        }
        const err = c._checkHandshake(head.subarray(0, end).toString('latin1'), key, offers, opts);
        if (err) return done(new Error(err));
        c._handshakeDone = true;
        c._onHandshakeData = null;
        const rest = head.subarray(end + 4);
        done(null);
        if (rest.length) c._onData(rest);
      };
      c._onHandshakeFail = (why) => done(new Error(`connection ${why} during handshake`));
      const extLines = [opts.extensions ?? []].flat().map((v) => `Sec-WebSocket-Extensions: ${v}`);
      const extra = [...extLines, ...(opts.headers ?? [])];
      const offers = extra
        .filter((l) => /^sec-websocket-extensions\s*:/i.test(l))
        .map((l) => l.slice(l.indexOf(':') + 1).trim());
      socket.once('connect', () => {
        const lines = [
          `GET ${path} HTTP/1.1`,
          `Host: ${host}:${port}`,
          'Upgrade: websocket',
          'Connection: Upgrade',
          `Sec-WebSocket-Key: ${key}`,
          'Sec-WebSocket-Version: 13',
          ...extra,
          '',
          '',
        ];
        socket.write(lines.join('\r\n'));
      });
    });
  }

  _checkHandshake(text, key, offers, opts) {
    const lines = text.split('\r\n');
    const status = lines.shift();
    if (!/^HTTP\/1\.1 101( |$)/.test(status)) return `handshake: expected HTTP/1.1 101, got "${status}"`;
    const h = new Map();
    const ext = [];
    for (const l of lines) {
      const i = l.indexOf(':');
      if (i <= 0) return `handshake: malformed header line "${l}"`;
      const name = l.slice(0, i).trim().toLowerCase();
      const v = l.slice(i + 1).trim();
      h.set(name, h.has(name) ? `${h.get(name)}, ${v}` : v);
      if (name === 'sec-websocket-extensions') ext.push(v);
    }
    if ((h.get('upgrade') ?? '').toLowerCase() !== 'websocket')
      return `handshake: expected "Upgrade: websocket", got "${h.get('upgrade')}"`;
    const conn = (h.get('connection') ?? '').toLowerCase().split(',').map((s) => s.trim());
    if (!conn.includes('upgrade')) return `handshake: expected "Connection: Upgrade", got "${h.get('connection')}"`;
    const want = acceptFor(key);
    if (h.get('sec-websocket-accept') !== want)
      return `handshake: expected Sec-WebSocket-Accept ${want}, got ${h.get('sec-websocket-accept')}`;
    if (h.has('sec-websocket-protocol'))
      return `handshake: no subprotocol was offered, got Sec-WebSocket-Protocol: ${h.get('sec-websocket-protocol')}`;
    this.extensionsAnswer = ext;
    const shown = ext.length ? ext.map((v) => `"Sec-WebSocket-Extensions: ${v}"`).join(' + ') : 'no Sec-WebSocket-Extensions';
    if (offers.length === 0) {
      if (ext.length) return `handshake: no extension was offered, got Sec-WebSocket-Extensions: ${h.get('sec-websocket-extensions')}`;
      return null;
    }
    const offered = offers.map((v) => JSON.stringify(v)).join(' + ');
    if (this.serverModel) {
      const m = wshubAnswer(offers, this.serverModel);
      if (m.status !== 101) return `handshake: the offer ${offered} is malformed: expected HTTP/1.1 400, got "${status}"`;
      if (m.response === null && ext.length) return `handshake: offer ${offered} has nothing wshub may accept: expected no Sec-WebSocket-Extensions, got ${shown}`;
      if (m.response !== null && (ext.length !== 1 || ext[0] !== m.response))
        return `handshake: offer ${offered}: expected "Sec-WebSocket-Extensions: ${m.response}", got ${shown}`;
    }
    if (opts.expectExtensions !== undefined) {
      const e = opts.expectExtensions;
      if (e === null ? ext.length !== 0 : ext.length !== 1 || ext[0] !== e)
        return `handshake: offer ${offered}: expected ${e === null ? 'no Sec-WebSocket-Extensions' : `"Sec-WebSocket-Extensions: ${e}"`}, got ${shown}`;
    }
    if (ext.length) {
      const r = checkResponse(offers, ext);
      if (r.error) return `handshake: offer ${offered}: ${r.error}`;
      this.pmd = r.params;
    }
    return null;
  }

  _attach() {
    const s = this.socket;
    s.on('data', (chunk) => {
      if (!this._handshakeDone) {
        if (this._onHandshakeData) this._onHandshakeData(chunk);
        return;
      }
      this._onData(chunk);
    });
    s.on('end', () => {
      if (this.tcp === 'open') this.tcp = 'fin';
      if (this._avail > 0 && !this._parseDead) this._violate(`TCP closed in the middle of a server frame (${this._avail} bytes left over)`);
      if (!this._handshakeDone && this._onHandshakeFail) this._onHandshakeFail('closed');
      // The server finished; finish our side too so the socket is released.
      s.end();
      this._wake();
    });
    s.on('error', (err) => {
      this.tcpError = err;
      if (this.tcp === 'open' || this.tcp === 'fin') {
        if (err.code === 'ECONNRESET') this.tcp = 'reset';
        else if (err.code === 'EPIPE') this.tcp = this.tcp === 'fin' ? 'fin' : 'reset';
        else this.tcp = 'error';
      }
      if (!this._handshakeDone && this._onHandshakeFail) this._onHandshakeFail(`failed (${err.code})`);
      this._wake();
    });
    s.on('close', () => {
      this.closed = true;
      if (this.tcp === 'open') this.tcp = 'fin';
      this._wake();
    });
  }

  // ---- receiving -----------------------------------------------------------

  _onData(chunk) {
    this._chunks.push(chunk);
    this._avail += chunk.length;
    this._parse();
    this._wake();
  }

  _peek(n) {
    if (this._chunks[0].length >= n) return this._chunks[0].subarray(0, n);
    const out = Buffer.alloc(n);
    let off = 0;
    for (const c of this._chunks) {
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (off === n) break;
    }
    return out;
  }

  _take(n) {
    if (n === 0) return Buffer.alloc(0);
    const first = this._chunks[0];
    let out;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this._chunks.shift();
      else this._chunks[0] = first.subarray(n);
    } else {
      out = Buffer.alloc(n);
      let off = 0;
      while (off < n) {
        const c = this._chunks[0];
        const k = Math.min(c.length, n - off);
        c.copy(out, off, 0, k);
        off += k;
        if (k === c.length) this._chunks.shift();
        else this._chunks[0] = c.subarray(k);
      }
    }
    this._avail -= n;
    return out;
  }

  _violate(msg) {
    this.violations.push(msg);
  }

  _parse() {
    for (;;) {
      if (this._avail < 2) return;
      const h2 = this._peek(2);
      const masked = (h2[1] & 0x80) !== 0;
      const l7 = h2[1] & 0x7f;
      const hlen = 2 + (l7 === 126 ? 2 : l7 === 127 ? 8 : 0) + (masked ? 4 : 0);
      if (this._avail < hlen) return;
      const h = this._peek(hlen);
      let len;
      let lenBig = 0n;
      if (l7 === 126) {
        len = h.readUInt16BE(2);
        if (len < 126) this._violate(`server frame uses 16-bit length for ${len} bytes (not minimal)`);
      } else if (l7 === 127) {
        lenBig = h.readBigUInt64BE(2);
        if (lenBig >> 63n) {
          this._violate('server frame has 64-bit length with the most significant bit set');
          this._drop();
          return;
        }
        if (lenBig <= 0xffffn) this._violate(`server frame uses 64-bit length for ${lenBig} bytes (not minimal)`);
        if (lenBig > 1n << 31n) {
          this._violate(`server frame announces ${lenBig} bytes; refusing to buffer it`);
          this._drop();
          return;
        }
        len = Number(lenBig);
      } else len = l7;
      if (this._avail < hlen + len) return;
      this._take(hlen);
      let payload = this._take(len);
      const frame = {
        fin: (h[0] & 0x80) !== 0,
        rsv: (h[0] >> 4) & 7,
        opcode: h[0] & 0x0f,
        masked,
        payload,
      };
      if (masked) {
        payload = maskPayload(payload, h.subarray(hlen - 4, hlen));
        frame.payload = payload;
      }
      this._onFrame(frame);
    }
  }

  _drop() {
    this._chunks = [];
    this._avail = 0;
    this._parseDead = true;
  }

  _onFrame(f) {
    const idx = this.frameCount++;
    const where = `server frame #${idx + 1} (${opName(f.opcode)})`;
    const op = f.opcode;
    if (this.closeFrame) this._violate(`${where} received after the server's close frame`);
    if (f.masked) this._violate(`${where} is masked`);
    if (!this.pmd) {
      if (f.rsv) this._violate(`${where} has RSV bits ${f.rsv.toString(2).padStart(3, '0')} set`);
    } else {
      if (f.rsv & 3) this._violate(`${where} has RSV bits ${f.rsv.toString(2).padStart(3, '0')} set (only RSV1 belongs to permessage-deflate)`);
      if (f.rsv & 4 && op !== OP.TEXT && op !== OP.BINARY)
        this._violate(`${where} has RSV1 set (permessage-deflate allows it only on the first frame of a data message)`);
    }
    if ((op >= 3 && op <= 7) || op >= 0xb) this._violate(`${where} uses reserved opcode ${op}`);
    if (isControl(op)) {
      if (!f.fin) this._violate(`${where} is a fragmented control frame`);
      if (f.payload.length > 125) this._violate(`${where} control payload of ${f.payload.length} > 125 bytes`);
    }
    if (op === OP.CONT) {
      if (this._fragOpcode === null) this._violate(`${where} continues no message`);
      else {
        this._fragParts.push(f.payload);
        if (f.fin) {
          this._finishMessage(f, this._fragOpcode, this._fragParts, this._fragCompressed, where);
          this._fragOpcode = null;
          this._fragParts = [];
        }
      }
    } else if (op === OP.TEXT || op === OP.BINARY) {
      if (this._fragOpcode !== null) this._violate(`${where} starts a message inside a fragmented one`);
      const compressed = this.pmd !== null && (f.rsv & 4) !== 0;
      if (f.fin) this._finishMessage(f, op, [f.payload], compressed, where);
      else {
        this._fragOpcode = op;
        this._fragParts = [f.payload];
        this._fragCompressed = compressed;
      }
    } else if (op === OP.CLOSE) {
      const p = f.payload;
      if (p.length === 1) this._violate(`${where} has a 1-byte payload`);
      if (p.length >= 2) {
        const code = p.readUInt16BE(0);
        if (!isSendableCloseCode(code)) this._violate(`${where} carries close code ${code}, which may not be sent`);
        if (!isValidUtf8(p.subarray(2))) this._violate(`${where} has a reason that is not UTF-8`);
      }
    }
    this.frames.push(f);
    if (op === OP.CLOSE && !this.closeFrame) {
      this.closeFrame = f;
      if (this.autoCloseReply && !this.sentClose) {
        const code = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : undefined;
        this.sendFrameNow({ opcode: OP.CLOSE, payload: closePayload(code) });
        this.sentClose = true;
      }
    } else if (op === OP.PING && this.autoPong && !this.sentClose && !this.closeFrame) {
      this.sendFrameNow({ opcode: OP.PONG, payload: f.payload });
    }
  }

  /** A complete data message: inflate it if compressed, check it, attach it to its last frame. */
  _finishMessage(f, op, parts, compressed, where) {
    const raw = parts.length === 1 ? parts[0] : Buffer.concat(parts);
    f.compressed = compressed;
    f.data = raw;
    if (compressed) {
      const data = this._inflate(raw, where);
      if (data === null) {
        f.data = null; // did not inflate: matches nothing
        return;
      }
      f.data = data;
      this.compressedReceived++;
    }
    this._checkMessage(op, f.data, where);
  }

  _inflate(payload, where) {
    const p = this.pmd;
    const w = p.serverMaxWindowBits;
    const model = this.serverModel;
    if (payload.length >= 4 && payload.subarray(payload.length - 4).equals(TRAILER))
      this._violate(`${where}: compressed payload still ends with 00 00 ff ff (the flush trailer must be removed, RFC 7692 7.2.1)`);
    // Fresh inflater for each message when the server declared
    // server_no_context_takeover: a message that refers back into an earlier
    // one then fails to inflate ("invalid distance too far back").
    const dictionary = p.serverNoContextTakeover ? undefined : this._rxHistory;
    let r;
    try {
      r = inflateMessage(payload, { windowBits: w, dictionary });
    } catch (err) {
      const ctx = p.serverNoContextTakeover ? ' with a fresh inflater (server_no_context_takeover)' : '';
      this._violate(`${where}: compressed message (${payload.length} bytes ${payload.subarray(0, 16).toString('hex')}…) does not inflate${ctx}: ${err.message}`);
      return null;
    }
    if (r.consumed !== r.total)
      this._violate(`${where}: compressed message contains a final (BFINAL) block ${r.total - 4 - r.consumed > 0 ? 'followed by more data' : ''} (wshub flushes with Z_SYNC_FLUSH)`);
    if (w < 15 || this.compressedReceived < 8) {
      // Decode again with the suite's own decoder: zlib does not hold a raw
      // stream to its window (so every distance is looked at), nor does it
      // complain when the data + 00 00 ff ff ends inside a block (RFC 7692
      // 7.2.1: the payload must end with the start of an empty stored block).
      // Always with a window below 15, else for the first 8 of a connection.
      try {
        const j = inflateRawJs(Buffer.concat([payload, TRAILER]), { history: dictionary });
        if (!j.data.equals(r.data)) this._violate(`${where}: the suite's own decoder and zlib disagree on this message`);
        if (j.maxDist > 1 << w)
          this._violate(`${where}: compressed message refers ${j.maxDist} bytes back, beyond the negotiated server_max_window_bits=${w} (${1 << w} bytes)`);
      } catch (err) {
        this._violate(`${where}: compressed message + 00 00 ff ff is not a complete DEFLATE stream up to a block boundary (RFC 7692 7.2.1): ${err.message}`);
      }
    }
    if (model) {
      const threshold = model.threshold ?? 64;
      if (r.data.length < threshold)
        this._violate(`${where}: a ${r.data.length}-byte message (below the ${threshold}-byte threshold) was compressed`);
      if (payload.length >= r.data.length)
        this._violate(`${where}: compressed payload (${payload.length} bytes) is not smaller than the message (${r.data.length} bytes); it must be sent plain`);
    }
    if (!p.serverNoContextTakeover) this._rxHistory = keepTail(Buffer.concat([this._rxHistory, r.data]), 1 << w);
    return r.data;
  }

  _checkMessage(op, payload, where) {
    if (op === OP.TEXT && !isValidUtf8(payload)) this._violate(`${where}: text message is not valid UTF-8`);
  }

  // ---- sending -------------------------------------------------------------

  get writable() {
    return this.tcp === 'open' && !this.socket.destroyed && this.socket.writable;
  }

  /** Write raw bytes; resolves when handed to the kernel (or immediately if the socket is gone). */
  send(bytes) {
    const b = toBuf(bytes);
    if (!this.writable) {
      this.writeErrors++;
      return Promise.resolve(false);
    }
    return new Promise((resolve) => {
      this.socket.write(b, (err) => {
        if (err) this.writeErrors++;
        resolve(!err);
      });
    });
  }

  /**
   * Write bytes in pieces of `chunk` bytes, each as its own write, optionally
   * `delayMs` apart. Stops early once the server closed (close frame or TCP).
   */
  async sendChunked(bytes, chunk, delayMs = 0) {
    const b = toBuf(bytes);
    for (let off = 0; off < b.length; off += chunk) {
      if (this.closeFrame || !this.writable) return false;
      const piece = b.subarray(off, Math.min(off + chunk, b.length));
      if (delayMs > 0) {
        await this.send(piece);
        await sleep(delayMs);
      } else if (!this.socket.write(piece)) {
        await new Promise((r) => {
          const onDrain = () => { this.socket.off('close', onDrain); this.socket.off('drain', onDrain); r(); };
          this.socket.once('drain', onDrain);
          this.socket.once('close', onDrain);
        });
      }
    }
    return true;
  }

  /** Build and send one frame; `chunk`/`delayMs` split its bytes across writes. */
  sendFrame(opts, { chunk, delayMs } = {}) {
    const bytes = buildFrame(opts);
    if (opts.opcode === OP.CLOSE) this.sentClose = true;
    if (chunk) return this.sendChunked(bytes, chunk, delayMs);
    return this.send(bytes);
  }

  sendFrameNow(opts) {
    if (this.writable) this.socket.write(buildFrame(opts), () => {});
  }

  sendText(text, opts = {}) {
    return this.sendFrame({ opcode: OP.TEXT, payload: text, ...opts });
  }

  sendBinary(data, opts = {}) {
    return this.sendFrame({ opcode: OP.BINARY, payload: data, ...opts });
  }

  sendClose(code, reason, opts = {}) {
    return this.sendFrame({ opcode: OP.CLOSE, payload: closePayload(code, reason), ...opts });
  }

  /**
   * Compress one message for sending (RFC 7692 7.2.1), with the negotiated
   * client window. opts:
   *   takeover   keep the compression context from earlier messages
   *              (default: whatever the server allowed; true forces it, the
   *              way a broken client would)
   *   level, flush, keepTrailer, windowBits: see deflateMessage in pmd.mjs
   * With takeover, the data joins the window the server is assumed to keep,
   * so the result must then really be sent.
   */
  compressMessage(data, opts = {}) {
    const b = toBuf(data);
    const p = this.pmd ?? { clientNoContextTakeover: true, clientMaxWindowBits: 15 };
    const takeover = opts.takeover ?? !p.clientNoContextTakeover;
    const windowBits = opts.windowBits ?? p.clientMaxWindowBits;
    const out = deflateMessage(b, {
      windowBits,
      level: opts.level,
      flush: opts.flush,
      keepTrailer: opts.keepTrailer,
      dictionary: takeover ? this._txHistory : undefined,
    });
    if (takeover) this._txHistory = keepTail(Buffer.concat([this._txHistory, b]), 1 << Math.max(9, windowBits));
    return out;
  }

  /**
   * Frames of one compressed message: the compressed payload cut into
   * frames of `fragment` bytes (0: one frame), RSV1 on the first only.
   */
  compressedFrames(opcode, data, opts = {}) {
    const z = this.compressMessage(data, opts);
    return frameMessage(opcode, z, opts.fragment ?? 0, 4);
  }

  /** Send one compressed message (see compressedFrames); `chunk`/`delayMs` as for sendFrame. */
  sendCompressed(opcode, data, opts = {}) {
    const bytes = this.compressedFrames(opcode, data, opts);
    if (opts.chunk) return this.sendChunked(bytes, opts.chunk, opts.delayMs);
    return this.send(bytes);
  }

  // ---- waiting -------------------------------------------------------------

  _wake() {
    for (const w of [...this._waiters]) w();
  }

  /**
   * Resolve once pred(this) is true. Rejects after timeoutMs, or as soon as
   * the TCP connection is gone while pred is still false.
   */
  waitFor(pred, timeoutMs, what) {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        let ok;
        try {
          ok = pred(this);
        } catch (e) {
          finish(e);
          return;
        }
        if (ok) finish(null);
        else if (this.tcp !== 'open') finish(new Error(`TCP ${this.tcp === 'fin' ? 'closed' : this.tcp} while waiting for ${what}`));
      };
      const finish = (err) => {
        clearTimeout(timer);
        this._waiters.delete(check);
        if (err) reject(err);
        else resolve(this);
      };
      timer = setTimeout(() => finish(new Error(`timeout after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
      this._waiters.add(check);
      check();
    });
  }

  /** Resolve with the TCP end state ('fin' | 'reset' | 'error') or reject on timeout. */
  waitTcpClose(timeoutMs) {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        if (this.tcp !== 'open') finish(null);
      };
      const finish = (err) => {
        clearTimeout(timer);
        this._waiters.delete(check);
        if (err) reject(err);
        else resolve(this.tcp);
      };
      timer = setTimeout(() => finish(new Error(`timeout after ${timeoutMs} ms waiting for the server to close TCP`)), timeoutMs);
      this._waiters.add(check);
      check();
    });
  }

  /** Has anything at all arrived within `ms`? (used to check that nothing does) */
  async quietFor(ms) {
    const before = this.frames.length;
    const tcp = this.tcp;
    await sleep(ms);
    return this.frames.length === before && this.tcp === tcp;
  }

  /** Drop the frames received so far (long echo loops that checked them already). */
  forgetFrames() {
    this.frames = [];
  }

  destroy() {
    if (!this.socket.destroyed) this.socket.destroy();
  }
}

export { sleep };
