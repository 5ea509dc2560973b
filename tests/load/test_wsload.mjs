// tests/load/test_wsload.mjs — correctness of the load generator's counts.
//
// What this proves (never speed: nothing here asserts a rate or a latency
// bound): wsload's RESULT line counts exactly against wshub's chat (every
// client, the sender too, gets every message once) over WebSocket and over
// the HTTP transports (--transport sse, longpoll, poll), its handshake-only
// mode counts upgrades, its WebSocket client reassembles fragmented
// messages with 7-, 16- and 64-bit lengths and answers pings interleaved
// with them, it reports fewer deliveries than expected when a relay drops
// messages (so the count can fail), its HTTP client parses event streams
// (CRLF and LF, multi-line data, comments, events split across reads) and
// poll bodies (strings with escaped quotes and brackets, markers outside
// "messages" not counted) and counts refused POSTs and messages a poll
// skipped, and its exit codes for usage errors and for a server that is
// not there. With --deflate (permessage-deflate) it offers exactly
// Chromium's offer plus client_no_context_takeover, refuses a 101 that does
// not accept it or answers what was not offered, compresses what it sends
// from --deflate-threshold bytes on, inflates RSV1 messages (zlib's output,
// stored and fixed-Huffman blocks written by hand here, fragmented with
// pings between, a final block; a server's context kept between messages
// unless it said server_no_context_takeover), rejects bad compressed frames,
// and counts compressed and plain messages and their wire and payload
// bytes exactly; against wshub's permessage-deflate the delivery counts
// stay exact.
//
// Environment: WSHUB_BIN (default build/wshub) and WSLOAD_BIN (default
// build/wsload). Ownership: every server and client process started here is
// stopped by PID in an after/finally hook; the raw relay and the fake HTTP
// chat are in-process node:net servers closed at the end of their test.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const WSHUB_BIN = process.env.WSHUB_BIN || path.join(ROOT, 'build/wshub');
const WSLOAD_BIN = process.env.WSLOAD_BIN || path.join(ROOT, 'build/wsload');
const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
// Bound on any one wsload run; a run that takes longer fails the test.
const RUN_LIMIT_MS = 60000;

function stopProcess(child, ms = 5000) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

// Starts wshub on a free loopback port; resolves { child, port }.
function startWshub(extra = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(WSHUB_BIN, ['--host', '127.0.0.1', '--port', '0', ...extra], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`wshub did not start: ${err}`));
    }, 10000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      err += d;
      const m = /listening on http:\/\/[^\s]*:(\d+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`wshub exited (${code}): ${err}`));
    });
  });
}

// Runs wsload; resolves { code, stdout, stderr, result } where result holds
// the RESULT line's keys (strings), or null when there is no such line.
function runWsload(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(WSLOAD_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`wsload ran past ${RUN_LIMIT_MS} ms: ${stderr}`));
    }, RUN_LIMIT_MS);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      const lines = stdout.split('\n').filter((l) => l.startsWith('RESULT '));
      let result = null;
      if (lines.length === 1) {
        result = {};
        for (const kv of lines[0].slice(7).trim().split(' ')) {
          const i = kv.indexOf('=');
          result[kv.slice(0, i)] = kv.slice(i + 1);
        }
      }
      resolve({ code, stdout, stderr, resultLines: lines.length, result });
    });
  });
}

const num = (r, k) => {
  assert.ok(k in r, `RESULT has no ${k}`);
  assert.match(r[k], /^-?\d+(\.\d+)?$/, `${k}=${r[k]} is not a number`);
  return Number(r[k]);
};

function assertLatencies(r) {
  const p50 = num(r, 'p50_ms');
  const p90 = num(r, 'p90_ms');
  const p99 = num(r, 'p99_ms');
  const p999 = num(r, 'p999_ms');
  const max = num(r, 'max_ms');
  assert.ok(p50 >= 0, `p50 ${p50}`);
  assert.ok(p50 <= p90 && p90 <= p99 && p99 <= p999 && p999 <= max,
    `percentiles out of order: ${p50} ${p90} ${p99} ${p999} ${max}`);
}

// ---- a raw relay written for these tests (node:net, no ws) ----

// rsv: the RSV bits as they sit in the first byte (0x40 = RSV1).
function serverFrame(opcode, payload, fin = true, rsv = 0) {
  const len = payload.length;
  const b0 = (fin ? 0x80 : 0) | rsv | opcode;
  let head;
  if (len < 126) {
    head = Buffer.from([b0, len]);
  } else if (len <= 0xffff) {
    head = Buffer.alloc(4);
    head[0] = b0;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

// A chat relay: every text message from a client goes to every client,
// wrapped in JSON. dropEvery: the n-th, 2n-th, ... message is not relayed.
// fragment: each relayed message is sent as three fragments (10 bytes, the
// middle, 5 bytes) with a ping between the first two.
// A fake WebSocket server on a free loopback port (node:net, byte-exact),
// the skeleton of the relays below: it answers each upgrade (hooks.open
// returns the extra 101 header lines, or null to refuse with 400), parses
// the client's frames, answers pings and closes, counts pongs whose payload
// is 'relay-ping', and hands every other frame to hooks.frame(sock, {op,
// rsv, payload}). hooks.valid(frame) says whether a frame may come at all
// (masked and FIN are always required): a bad one destroys the socket.
// `clients` holds the upgraded sockets; its values are hooks.open's state.
function startFakeWs(stats, hooks) {
  const clients = new Map();
  const sockets = new Set();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    let buf = Buffer.alloc(0);
    let open = false;
    sock.on('error', () => {});
    sock.on('close', () => {
      clients.delete(sock);
      sockets.delete(sock);
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!open) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        const key = /^sec-websocket-key:[ \t]*(\S+)[ \t]*$/im.exec(head);
        const opened = key ? hooks.open(sock, head) : null;
        if (!opened) {
          sock.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
          return;
        }
        const accept = createHash('sha1').update(key[1] + GUID).digest('base64');
        sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n' +
          `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n` +
          opened.lines.map((l) => `${l}\r\n`).join('') + '\r\n');
        open = true;
        clients.set(sock, opened.state);
        opened.ready?.();
      }
      while (buf.length >= 2) {
        const fin = (buf[0] & 0x80) !== 0;
        const rsv = buf[0] & 0x70;
        const op = buf[0] & 0x0f;
        const masked = (buf[1] & 0x80) !== 0;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (!masked || !fin || !hooks.valid({ op, rsv })) {
          stats.badFrames++;
          sock.destroy();
          return;
        }
        if (buf.length < off + 4 + len) return;
        const mask = buf.subarray(off, off + 4);
        const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
        for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
        buf = buf.subarray(off + 4 + len);
        if (op === 0x8) {
          clients.delete(sock);
          sock.end(serverFrame(0x8, payload.subarray(0, 2)));
          return;
        } else if (op === 0x9) {
          sock.write(serverFrame(0xa, payload));
        } else if (op === 0xa) {
          if (payload.toString() === 'relay-ping') stats.pongs++;
        } else if (!hooks.frame(sock, { op, rsv, payload })) {
          stats.badFrames++;
        }
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        stats,
        clients,
        close: () => new Promise((res) => {
          for (const s of sockets) s.destroy();
          server.close(() => res());
        }),
      });
    });
  });
}

function startRelay({ dropEvery = 0, fragment = false } = {}) {
  const stats = { received: 0, dropped: 0, relayed: 0, pings: 0, pongs: 0, badFrames: 0 };
  let clients = null;

  function broadcast(text) {
    const body = Buffer.from(JSON.stringify({ type: 'message', text }));
    for (const c of clients.keys()) {
      if (!fragment) {
        c.write(serverFrame(0x1, body));
        continue;
      }
      stats.pings++;
      c.write(Buffer.concat([
        serverFrame(0x1, body.subarray(0, 10), false),
        serverFrame(0x9, Buffer.from('relay-ping')),
        serverFrame(0x0, body.subarray(10, body.length - 5), false),
      ]));
      c.write(serverFrame(0x0, body.subarray(body.length - 5), true));
    }
  }

  return startFakeWs(stats, {
    open: () => ({ lines: [], state: true }),
    valid: () => true,
    frame: (sock, { op, payload }) => {
      if (op !== 0x1) return false;
      stats.received++;
      if (dropEvery && stats.received % dropEvery === 0) {
        stats.dropped++;
      } else {
        stats.relayed++;
        broadcast(payload.toString('utf8'));
      }
      return true;
    },
  }).then((srv) => {
    clients = srv.clients;
    return srv;
  });
}


// ---- permessage-deflate without zlib: DEFLATE data written by hand ----

// DEFLATE (RFC 1951) bits go out least significant first; Huffman codes
// most significant bit first.
class BitWriter {
  constructor() {
    this.bytes = [];
    this.cur = 0;
    this.n = 0;
  }
  bits(v, k) {
    for (let i = 0; i < k; i++) {
      this.cur |= ((v >> i) & 1) << this.n;
      if (++this.n === 8) {
        this.bytes.push(this.cur);
        this.cur = 0;
        this.n = 0;
      }
    }
  }
  code(c, k) {
    for (let i = k - 1; i >= 0; i--) this.bits((c >> i) & 1, 1);
  }
  // Pads to a byte boundary.
  buffer() {
    if (this.n > 0) this.bits(0, 8 - this.n);
    return Buffer.from(this.bytes);
  }
}

const LEN_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59,
  67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4,
  5, 5, 5, 5, 0];

function fixedSymbol(w, sym) {
  if (sym < 144) w.code(0x30 + sym, 8);
  else if (sym < 256) w.code(0x190 + sym - 144, 9);
  else if (sym < 280) w.code(sym - 256, 7);
  else w.code(0xc0 + sym - 280, 8);
}

// One fixed-Huffman block (BFINAL 0): first a copy of `copy.length` bytes
// from `copy.distance` back (into what an earlier message left in the
// window), then `literals`; then the empty stored block of a sync flush,
// whose 00 00 ff ff is left off as permessage-deflate wants.
function fixedBlock(literals, copy = null) {
  const w = new BitWriter();
  w.bits(0, 1);
  w.bits(1, 2);
  if (copy) {
    let i = LEN_BASE.length - 1;
    while (LEN_BASE[i] > copy.length) i--;
    fixedSymbol(w, 257 + i);
    w.bits(copy.length - LEN_BASE[i], LEN_EXTRA[i]);
    let c = 0;
    for (; c < 29; c++) {
      const extra = c < 4 ? 0 : (c >> 1) - 1;
      const base = c < 4 ? c + 1 : ((2 | (c & 1)) << extra) + 1;
      if (copy.distance < base + (1 << extra)) {
        w.code(c, 5);
        w.bits(copy.distance - base, extra);
        break;
      }
    }
  }
  for (const b of literals) fixedSymbol(w, b);
  fixedSymbol(w, 256);
  w.bits(0, 3); // the sync flush's empty stored block
  return w.buffer();
}

// Stored blocks (at most 65535 bytes each) holding data; final: the last
// one has BFINAL set (and no sync flush follows), else the sync flush's
// empty stored block follows without its 00 00 ff ff.
function storedBlocks(data, final = false) {
  const parts = [];
  let off = 0;
  do {
    const n = Math.min(65535, data.length - off);
    const last = off + n === data.length;
    const h = Buffer.alloc(5);
    h[0] = final && last ? 1 : 0;
    h.writeUInt16LE(n, 1);
    h.writeUInt16LE(~n & 0xffff, 3);
    parts.push(h, data.subarray(off, off + n));
    off += n;
  } while (off < data.length);
  if (!final) parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

// A relay that speaks permessage-deflate for wsload's --deflate. `answer`:
// the 101's Sec-WebSocket-Extensions (a string, an array for several
// header lines, or null for none). Client messages sent compressed are
// relayed as they are (RSV1, the same bytes: each was compressed on its
// own); plain ones according to `mode`:
//   plain          as plain text frames
//   stored         stored blocks, RSV1, in three fragments with a ping
//                  between the first two (RSV1 on the first only)
//   final          stored blocks, the last with BFINAL set
//   context        a fixed-Huffman block per message, {"type":"message",
//                  "text":…}, whose first 26 bytes are copied from the
//                  previous message to that client (so the client must keep
//                  the context); each client first gets a welcome
//                  (literals only)
//   rsv1-continuation, rsv1-ping, rsv2, garbage, after-final: invalid
//                  frames (RSV1 on a continuation, a ping with RSV1 before
//                  a plain message, RSV2, a reserved block type, a byte after
//                  a final block)
function startDeflateRelay({ answer, mode = 'plain' }) {
  const stats = { offers: [], compressedIn: 0, plainIn: 0, compressedSizes: [],
    markerInCompressed: 0, pings: 0, pongs: 0, badFrames: 0 };
  let clients = null; // socket -> { prev: the last body sent, for `context` }
  const PREFIX = '{"type":"message","text":"';

  function sendContext(sock, st, body) {
    const b = Buffer.from(body);
    const copy = st.prev && b.length >= PREFIX.length
      ? { length: PREFIX.length, distance: st.prev.length } : null;
    sock.write(serverFrame(0x1, fixedBlock(copy ? b.subarray(PREFIX.length) : b, copy), true, 0x40));
    st.prev = b;
  }

  function relayPlain(text) {
    const body = Buffer.from(text);
    for (const [c, st] of clients) {
      switch (mode) {
        case 'plain':
          c.write(serverFrame(0x1, body));
          break;
        case 'stored': {
          const z = storedBlocks(body);
          const a = Math.floor(z.length / 3);
          const b = Math.floor((2 * z.length) / 3);
          stats.pings++;
          c.write(Buffer.concat([
            serverFrame(0x1, z.subarray(0, a), false, 0x40),
            serverFrame(0x9, Buffer.from('relay-ping')),
            serverFrame(0x0, z.subarray(a, b), false),
            serverFrame(0x0, z.subarray(b), true),
          ]));
          break;
        }
        case 'final':
          c.write(serverFrame(0x1, storedBlocks(body, true), true, 0x40));
          break;
        case 'context':
          sendContext(c, st, PREFIX + text + '"}');
          break;
        case 'rsv1-continuation': {
          const z = storedBlocks(body);
          c.write(Buffer.concat([serverFrame(0x1, z.subarray(0, 4), false, 0x40),
            serverFrame(0x0, z.subarray(4), true, 0x40)]));
          break;
        }
        case 'rsv1-ping':
          c.write(Buffer.concat([serverFrame(0x9, Buffer.from('p'), true, 0x40),
            serverFrame(0x1, body)]));
          break;
        case 'rsv2':
          c.write(serverFrame(0x1, storedBlocks(body), true, 0x60));
          break;
        case 'garbage':
          c.write(serverFrame(0x1, Buffer.concat([Buffer.from([0x07]), body]), true, 0x40));
          break;
        case 'after-final':
          c.write(serverFrame(0x1, Buffer.concat([storedBlocks(body, true), Buffer.from([0])]),
            true, 0x40));
          break;
        default:
          throw new Error(`unknown mode ${mode}`);
      }
    }
  }

  return startFakeWs(stats, {
    open: (sock, head) => {
      const ext = [...head.matchAll(/^sec-websocket-extensions:[ \t]*(.*?)[ \t]*$/gim)];
      stats.offers.push(ext.map((m) => m[1]).join(', ') || null);
      const st = { prev: null };
      return {
        lines: (answer === null ? [] : [].concat(answer)).map((l) => `Sec-WebSocket-Extensions: ${l}`),
        state: st,
        ready: () => {
          if (mode === 'context') sendContext(sock, st, PREFIX + 'welcome to the relay"}');
        },
      };
    },
    // wsload never fragments, and RSV1 only on data messages.
    valid: ({ op, rsv }) => !(rsv & 0x30) && !(rsv && op !== 0x1),
    frame: (sock, { op, rsv, payload }) => {
      if (op !== 0x1) return false;
      if (rsv) {
        stats.compressedIn++;
        stats.compressedSizes.push(payload.length);
        if (payload.includes('wsl:')) stats.markerInCompressed++;
        for (const c of clients.keys()) c.write(serverFrame(0x1, payload, true, 0x40));
      } else {
        stats.plainIn++;
        relayPlain(payload.toString('utf8'));
      }
      return true;
    },
  }).then((srv) => {
    clients = srv.clients;
    return srv;
  });
}

// ---- a fake HTTP chat written for these tests (node:net, byte-exact) ----

// It speaks just enough of wshub's HTTP transports for wsload: GET /events
// (a stream per request, its own session token), GET /poll (wait=0
// semantics: the messages after `after` and the newest id, or 204 when
// there is no newer id), POST /messages (202 with
// the id). Every message goes to every stream. Streams mix CRLF and LF
// lines, comments, multi-line data, and each event is written in two
// pieces a turn apart. Poll bodies put "messages" before "last_id", hide
// escaped quotes and brackets in strings, and repeat the first marker in
// an "extra" array outside "messages" (which must not be counted).
// dropEvery: every n-th message gets an id but is stored nowhere (as if the
// ring lost it). refusePostEvery: every n-th POST is answered 429.
// refuseEvents: GET /events is answered 503.
function startFakeHttpChat({ dropEvery = 0, refusePostEvery = 0, refuseEvents = false } = {}) {
  const stats = { posts: 0, refused: 0, dropped: 0, badSession: 0, streams: 0, polls: 0 };
  const tokens = new Set();
  const streams = new Set();
  const sockets = new Set();
  const messages = [];
  let nextId = 0;
  let tokenSeq = 0;

  const newToken = () => {
    const t = createHash('md5').update(`fake-${tokenSeq++}`).digest('hex');
    tokens.add(t);
    return t;
  };

  function respond(sock, status, reason, headers, body = '') {
    const b = Buffer.from(body);
    sock.write(`HTTP/1.1 ${status} ${reason}\r\n${headers}Content-Length: ${b.length}\r\n\r\n`);
    if (b.length) sock.write(b);
  }

  // Writes an event in two pieces: the second (and anything queued
  // behind it) a turn later, so order is kept.
  function streamWrite(st, text) {
    if (st.queue !== null) {
      st.queue += text;
      return;
    }
    const cut = Math.floor(text.length / 2);
    st.sock.write(text.slice(0, cut));
    st.queue = text.slice(cut);
    setImmediate(() => {
      if (!st.sock.destroyed) st.sock.write(st.queue);
      st.queue = null;
    });
  }

  function eventFor(id, text) {
    const nl = id % 2 ? '\n' : '\r\n';
    return `: note${nl}id: ${id}${nl}event: message${nl}` +
      `data: {"type":"message","id":${id},${nl}` +
      `data:"text":${JSON.stringify(text)}}${nl}${nl}`;
  }

  function pollBody(after) {
    const list = messages.filter((m) => m.id > after);
    const note = JSON.stringify('a "}] [{ \\" wsl:zz {"x":[1]}');
    const objs = list.map((m) => `{"type":"message","id":${m.id},"note":${note},` +
      `"text":${JSON.stringify(m.text)},"params":{"value":${JSON.stringify(m.text)}}}`);
    const extra = list.length ? `[{"text":${JSON.stringify(list[0].text)}}]` : '[]';
    return { body: `{"type":"poll","messages":[${objs.join(',')}],"extra":${extra}, "last_id" : ${nextId}}` };
  }

  function handle(sock, method, target, headers, body) {
    const url = new URL(target, 'http://fake');
    const session = headers['x-wshub-session'];
    if (method === 'GET' && url.pathname === '/events') {
      if (refuseEvents) {
        respond(sock, 503, 'Service Unavailable', '');
        return;
      }
      stats.streams++;
      const t = newToken();
      sock.write('HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n' +
        `X-Wshub-Session: ${t}\r\nConnection: close\r\n\r\n: hello\n\n` +
        'event: welcome\ndata:{"type":"welcome","history":[]}\n\n');
      streams.add({ sock, queue: null });
      return;
    }
    if (method === 'GET' && url.pathname === '/poll') {
      stats.polls++;
      let t = session;
      const after = url.searchParams.get('after');
      if (!t || !tokens.has(t)) t = newToken();
      const hdr = `Content-Type: application/json\r\nX-Wshub-Session: ${t}\r\n`;
      // As wshub: 200 whenever the room is past `after` (even if what is
      // past it was dropped), else 204.
      const { body: b } = pollBody(after === null ? nextId : Number(after));
      if (after !== null && Number(after) >= nextId) respond(sock, 204, 'No Content', `X-Wshub-Session: ${t}\r\n`);
      else respond(sock, 200, 'OK', hdr, b);
      return;
    }
    if (method === 'POST' && url.pathname === '/messages') {
      stats.posts++;
      if (!tokens.has(session)) stats.badSession++;
      const hdr = `Content-Type: application/json\r\nX-Wshub-Session: ${session}\r\n`;
      if (refusePostEvery && stats.posts % refusePostEvery === 0) {
        stats.refused++;
        respond(sock, 429, 'Too Many Requests', hdr, '{"type":"error","code":"rate_limited"}');
        return;
      }
      const text = JSON.parse(body).text;
      const id = ++nextId;
      if (dropEvery && id % dropEvery === 0) {
        stats.dropped++;
      } else {
        messages.push({ id, text });
        for (const st of streams) streamWrite(st, eventFor(id, text));
      }
      respond(sock, 202, 'Accepted', hdr, `{"type":"accepted","id":${id}}`);
      return;
    }
    respond(sock, 404, 'Not Found', '');
  }

  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    sock.on('error', () => {});
    sock.on('close', () => {
      sockets.delete(sock);
      for (const st of streams) if (st.sock === sock) streams.delete(st);
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
        const [method, target] = lines[0].split(' ');
        const headers = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        const len = Number(headers['content-length'] || 0);
        if (buf.length < end + 4 + len) return;
        const body = buf.subarray(end + 4, end + 4 + len).toString('utf8');
        buf = buf.subarray(end + 4 + len);
        handle(sock, method, target, headers, body);
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: server.address().port,
        stats,
        close: () => new Promise((res) => {
          for (const sock of sockets) sock.destroy();
          server.close(() => res());
        }),
      });
    });
  });
}

// ---- against wshub ----

let hub;
// The HTTP transports' runs: no per-client rate limit (a window of POSTs
// may exceed it) and a ring that polling cannot outrun here.
let httpHub;
before(async () => {
  hub = await startWshub();
  httpHub = await startWshub(['--msg-rate', '0', '--history', '1000']);
});
after(async () => {
  if (hub) await stopProcess(hub.child);
  if (httpHub) await stopProcess(httpHub.child);
});

test('fan-out through wshub: every client gets every message exactly once', async () => {
  const { code, result: r, resultLines } = await runWsload([
    '--url', `ws://127.0.0.1:${hub.port}/`, '--connections', '20', '--senders', '3',
    '--messages', '30', '--rate', '90', '--duration', '10', '--drain', '2', '--quiet',
  ]);
  assert.equal(code, 0);
  assert.equal(resultLines, 1);
  assert.equal(r.mode, 'fanout');
  assert.equal(num(r, 'conns'), 20);
  assert.equal(num(r, 'connected'), 20);
  assert.equal(num(r, 'senders'), 3);
  assert.equal(num(r, 'sent'), 90);
  assert.equal(num(r, 'expected'), 90 * 20);
  assert.equal(num(r, 'delivered'), 90 * 20);
  assert.equal(r.delivery_ratio, '1.0000');
  assert.equal(num(r, 'duplicates'), 0);
  assert.equal(num(r, 'errors'), 0);
  assert.equal(num(r, 'upgrades'), 20);
  assertLatencies(r);
  assert.ok(num(r, 'max_ms') > 0);
});

test('saturation through wshub with JSON messages: counts stay exact', async () => {
  const { code, result: r } = await runWsload([
    '--url', `ws://127.0.0.1:${hub.port}/chat`, '--connections', '10', '--senders', '10',
    '--rate', '0', '--window', '2', '--messages', '25', '--duration', '10', '--drain', '2',
    '--format', 'chat-json', '--payload', '300', '--quiet',
  ]);
  assert.equal(code, 0);
  assert.equal(r.mode, 'saturation');
  assert.equal(r.format, 'chat-json');
  assert.equal(num(r, 'connected'), 10);
  assert.equal(num(r, 'sent'), 250);
  assert.equal(num(r, 'expected'), 2500);
  assert.equal(num(r, 'delivered'), 2500);
  assert.equal(num(r, 'duplicates'), 0);
  assert.equal(num(r, 'errors'), 0);
  assertLatencies(r);
});

test('lecture2 format through wshub: params.value is relayed and counted', async () => {
  const { code, result: r } = await runWsload([
    '--url', `ws://127.0.0.1:${hub.port}/`, '--connections', '5', '--senders', '1',
    '--messages', '10', '--rate', '50', '--duration', '10', '--drain', '2', '--format', 'lecture2', '--quiet',
  ]);
  assert.equal(code, 0);
  assert.equal(num(r, 'sent'), 10);
  assert.equal(num(r, 'delivered'), 50);
  assert.equal(num(r, 'expected'), 50);
  assert.equal(num(r, 'errors'), 0);
});

test('handshake-only: 50 connections give 50 upgrades', async () => {
  const { code, result: r } = await runWsload([
    '--url', `ws://127.0.0.1:${hub.port}/`, '--connections', '50', '--handshake-only',
    '--concurrency', '10', '--quiet',
  ]);
  assert.equal(code, 0);
  assert.equal(r.mode, 'handshake');
  assert.equal(num(r, 'upgrades'), 50);
  assert.equal(num(r, 'connected'), 50);
  assert.equal(num(r, 'sent'), 0);
  assert.equal(num(r, 'errors'), 0);
  assert.ok(num(r, 'upgrades_per_s') > 0);
  const hs50 = num(r, 'hs_p50_ms');
  const hs99 = num(r, 'hs_p99_ms');
  const hsmax = num(r, 'hs_max_ms');
  assert.ok(hs50 <= hs99 && hs99 <= hsmax);
});

test('hold: prints "connected N" before the RESULT line', async () => {
  const { code, stdout, result: r } = await runWsload([
    '--url', `ws://127.0.0.1:${hub.port}/`, '--connections', '15', '--hold', '0.3', '--quiet',
  ]);
  assert.equal(code, 0);
  const lines = stdout.trim().split('\n');
  assert.equal(lines.length, 2);
  assert.equal(lines[0], 'connected 15');
  assert.ok(lines[1].startsWith('RESULT mode=hold '));
  assert.equal(num(r, 'connected'), 15);
  assert.equal(num(r, 'errors'), 0);
});


// ---- permessage-deflate through wshub (docs: the server's contract) ----

// No presence notices (so every message a client gets is its welcome or a
// chat message), deflate on with its defaults; the same with a threshold
// nothing reaches; and with deflate off.
let pmdHub;
let pmdPlainHub;
let pmdOffHub;
before(async () => {
  pmdHub = await startWshub(['--presence-limit', '0', '--msg-rate', '0']);
  pmdPlainHub = await startWshub(['--presence-limit', '0', '--deflate-threshold', '100000']);
  pmdOffHub = await startWshub(['--deflate', 'off']);
});
after(async () => {
  for (const h of [pmdHub, pmdPlainHub, pmdOffHub]) if (h) await stopProcess(h.child);
});

test('fan-out through wshub with --deflate: exact deliveries, compressed both ways', async () => {
  const { code, result: r } = await runWsload([
    '--url', `ws://127.0.0.1:${pmdHub.port}/?room=pmd-fanout`, '--connections', '20',
    '--senders', '3', '--messages', '30', '--rate', '90', '--duration', '10', '--drain', '2',
    '--format', 'chat-json', '--payload', '200', '--deflate', '--quiet',
  ]);
  assert.equal(code, 0);
  assert.equal(r.deflate, 'on');
  assert.equal(num(r, 'connected'), 20);
  assert.equal(num(r, 'deflate_conns'), 20);
  assert.equal(num(r, 'sent'), 90);
  assert.equal(num(r, 'expected'), 1800);
  assert.equal(num(r, 'delivered'), 1800);
  assert.equal(num(r, 'duplicates'), 0);
  assert.equal(num(r, 'errors'), 0);
  // Every message sent is over 64 bytes and compressible.
  assert.equal(num(r, 'msgs_out_compressed'), 90);
  assert.equal(num(r, 'msgs_out_plain'), 0);
  // A welcome each and the 1800 chat messages, all over the threshold.
  assert.equal(num(r, 'msgs_in_compressed'), 1820);
  assert.equal(num(r, 'msgs_in_plain'), 0);
  assert.equal(num(r, 'inflates') + num(r, 'inflate_cache_hits'), 1820);
  assert.ok(num(r, 'msg_wire_bytes_in') < num(r, 'msg_payload_bytes_in'));
  assert.ok(num(r, 'delivered_wire_bytes') < num(r, 'delivered_payload_bytes'));
  assert.ok(num(r, 'msg_wire_bytes_out') < num(r, 'msg_payload_bytes_out'));
  assertLatencies(r);
});

test('saturation through wshub with --deflate: short messages go plain, come back compressed', async () => {
  const { code, result: r } = await runWsload([
    '--url', `ws://127.0.0.1:${pmdHub.port}/?room=pmd-sat`, '--connections', '10',
    '--senders', '10', '--rate', '0', '--window', '2', '--messages', '25', '--duration', '10',
    '--drain', '2', '--deflate', '--quiet',
  ]);
  assert.equal(code, 0);
  assert.equal(r.mode, 'saturation');
  assert.equal(num(r, 'deflate_conns'), 10);
  assert.equal(num(r, 'sent'), 250);
  assert.equal(num(r, 'expected'), 2500);
  assert.equal(num(r, 'delivered'), 2500);
  assert.equal(num(r, 'duplicates'), 0);
  assert.equal(num(r, 'errors'), 0);
  // The bare marker is under 64 bytes; wshub's JSON around it is not.
  assert.equal(num(r, 'msgs_out_compressed'), 0);
  assert.equal(num(r, 'msgs_out_plain'), 250);
  assert.equal(num(r, 'msgs_in_compressed'), 2510);
  assert.equal(num(r, 'msgs_in_plain'), 0);
  assert.ok(num(r, 'delivered_wire_bytes') < num(r, 'delivered_payload_bytes'));
});

test('wshub --deflate-threshold 100000: negotiated, but everything comes plain', async () => {
  const { code, result: r } = await runWsload([
    '--url', `ws://127.0.0.1:${pmdPlainHub.port}/?room=pmd-plain`, '--connections', '5',
    '--senders', '1', '--messages', '10', '--rate', '50', '--duration', '10', '--drain', '2',
    '--format', 'chat-json', '--payload', '200', '--deflate', '--quiet',
  ]);
  assert.equal(code, 0);
  assert.equal(num(r, 'deflate_conns'), 5);
  assert.equal(num(r, 'delivered'), 50);
  assert.equal(num(r, 'expected'), 50);
  assert.equal(num(r, 'errors'), 0);
  // wsload still compresses what it sends; wshub inflates it.
  assert.equal(num(r, 'msgs_out_compressed'), 10);
  assert.equal(num(r, 'msgs_in_compressed'), 0);
  assert.equal(num(r, 'msgs_in_plain'), 55);
  assert.ok(num(r, 'msg_wire_bytes_in') > num(r, 'msg_payload_bytes_in'));
});

test('wshub --deflate off: wsload --deflate refuses the plain 101, loudly', async () => {
  const { code, stderr, result: r } = await runWsload([
    '--url', `ws://127.0.0.1:${pmdOffHub.port}/`, '--connections', '3', '--senders', '1',
    '--duration', '0.2', '--deflate', '--quiet',
  ]);
  assert.equal(code, 1);
  assert.equal(num(r, 'connected'), 0);
  assert.equal(num(r, 'handshake_errors'), 3);
  assert.equal(num(r, 'errors'), 3);
  assert.match(stderr, /did not accept permessage-deflate/);
});

// ---- HTTP transports against wshub: counts, never speed ----

function assertHttpExact(r, transport, { conns, senders, sent }) {
  assert.equal(r.transport, transport);
  assert.equal(r.format, 'chat-json');
  assert.equal(num(r, 'conns'), conns);
  assert.equal(num(r, 'connected'), conns);
  assert.equal(num(r, 'senders'), senders);
  assert.equal(num(r, 'sent'), sent);
  assert.equal(num(r, 'expected'), sent * conns);
  assert.equal(num(r, 'delivered'), sent * conns);
  assert.equal(r.delivery_ratio, '1.0000');
  assert.equal(num(r, 'duplicates'), 0);
  assert.equal(num(r, 'missed'), 0);
  assert.equal(num(r, 'http_errors'), 0);
  assert.equal(num(r, 'errors'), 0);
  assertLatencies(r);
}

for (const transport of ['sse', 'longpoll', 'poll']) {
  test(`${transport} through wshub: 20 sessions, 2 senders, every message once`, async () => {
    const { code, result: r, resultLines } = await runWsload([
      '--url', `http://127.0.0.1:${httpHub.port}/?room=t-${transport}`, '--transport', transport,
      '--connections', '20', '--senders', '2', '--messages', '150', '--rate', '150',
      '--poll-interval', '100', '--duration', '10', '--drain', '3', '--quiet',
    ]);
    assert.equal(code, 0);
    assert.equal(resultLines, 1);
    assert.equal(r.mode, 'fanout');
    assertHttpExact(r, transport, { conns: 20, senders: 2, sent: 300 });
    assert.equal(num(r, 'reconnects'), 0);
    if (transport === 'sse') {
      // 20 GET /events and one POST per message, nothing else.
      assert.equal(num(r, 'requests'), 20 + 300);
      // 20 welcomes, 300 messages on each of the 20 streams.
      assert.ok(num(r, 'frames_in') >= 20 + 300 * 20);
    } else {
      // At least the first poll of each session, then one per answer.
      assert.ok(num(r, 'requests') > 300 + 20);
    }
  });
}

for (const transport of ['sse', 'longpoll', 'poll']) {
  test(`${transport} through wshub with a window: every sender sees its own messages`, async () => {
    const { code, result: r } = await runWsload([
      '--url', `http://127.0.0.1:${httpHub.port}/?room=w-${transport}`, '--transport', transport,
      '--connections', '10', '--senders', '10', '--rate', '0', '--window', '2',
      '--messages', '20', '--poll-interval', '50', '--payload', '300',
      '--duration', '10', '--drain', '3', '--quiet',
    ]);
    assert.equal(code, 0);
    assert.equal(r.mode, 'saturation');
    assertHttpExact(r, transport, { conns: 10, senders: 10, sent: 200 });
  });
}

// ---- HTTP transports against the fake chat ----

test('sse parsing: CRLF and LF, comments, multi-line data, split events', async () => {
  const fake = await startFakeHttpChat();
  try {
    const { code, result: r } = await runWsload([
      '--url', `http://127.0.0.1:${fake.port}/`, '--transport', 'sse', '--connections', '5',
      '--senders', '2', '--messages', '20', '--rate', '40', '--window', '2',
      '--duration', '10', '--drain', '2', '--quiet',
    ]);
    assert.equal(code, 0);
    assert.equal(fake.stats.streams, 5);
    assert.equal(fake.stats.posts, 40);
    assert.equal(fake.stats.badSession, 0);
    assertHttpExact(r, 'sse', { conns: 5, senders: 2, sent: 40 });
    assert.equal(num(r, 'requests'), 45);
  } finally {
    await fake.close();
  }
});

test('poll parsing: tricky strings, markers outside "messages", skipped ids', async () => {
  const fake = await startFakeHttpChat({ dropEvery: 10 });
  try {
    const { code, result: r } = await runWsload([
      '--url', `http://127.0.0.1:${fake.port}/?room=x`, '--transport', 'poll',
      '--poll-interval', '50', '--connections', '5', '--senders', '2', '--messages', '20',
      '--rate', '40', '--window', '2', '--duration', '10', '--drain', '2', '--quiet',
    ]);
    assert.equal(code, 0);
    assert.equal(fake.stats.badSession, 0);
    assert.equal(fake.stats.dropped, 4);
    // A dropped message of a sender's own frees its window once its
    // receiver has polled past the id: all 40 are sent.
    assert.equal(num(r, 'sent'), 40);
    assert.equal(num(r, 'expected'), 200);
    assert.equal(num(r, 'delivered'), 36 * 5);
    assert.equal(num(r, 'missed'), 4 * 5);
    assert.equal(num(r, 'duplicates'), 0);
    assert.equal(num(r, 'errors'), 0);
  } finally {
    await fake.close();
  }
});

test('refused POSTs are http_errors and free the window', async () => {
  const fake = await startFakeHttpChat({ refusePostEvery: 5 });
  try {
    const { code, result: r } = await runWsload([
      '--url', `http://127.0.0.1:${fake.port}/`, '--transport', 'sse', '--connections', '4',
      '--senders', '2', '--messages', '20', '--rate', '40', '--window', '1',
      '--duration', '10', '--drain', '1', '--quiet',
    ]);
    assert.equal(code, 0);
    assert.equal(fake.stats.refused, 8);
    assert.equal(num(r, 'sent'), 40);
    assert.equal(num(r, 'expected'), 160);
    assert.equal(num(r, 'delivered'), 32 * 4);
    assert.equal(num(r, 'http_errors'), 8);
    assert.equal(num(r, 'errors'), 8);
  } finally {
    await fake.close();
  }
});

test('an event stream refused with 503: handshake errors, exit 1', async () => {
  const fake = await startFakeHttpChat({ refuseEvents: true });
  try {
    const { code, result: r } = await runWsload([
      '--url', `http://127.0.0.1:${fake.port}/`, '--transport', 'sse', '--connections', '3',
      '--senders', '1', '--duration', '0.2', '--quiet',
    ]);
    assert.equal(code, 1);
    assert.equal(num(r, 'connected'), 0);
    assert.equal(num(r, 'handshake_errors'), 3);
    assert.equal(num(r, 'sent'), 0);
  } finally {
    await fake.close();
  }
});

// ---- against the raw relay ----

test('a relay that drops every 10th message: delivered < expected, exactly', async () => {
  const relay = await startRelay({ dropEvery: 10 });
  try {
    const { code, result: r } = await runWsload([
      '--url', `ws://127.0.0.1:${relay.port}/`, '--connections', '6', '--senders', '2',
      '--messages', '20', '--rate', '100', '--window', '0', '--duration', '10',
      '--drain', '1', '--quiet',
    ]);
    assert.equal(code, 0);
    assert.equal(num(r, 'sent'), 40);
    assert.equal(relay.stats.received, 40);
    assert.equal(relay.stats.dropped, 4);
    assert.equal(num(r, 'expected'), 40 * 6);
    assert.equal(num(r, 'delivered'), 36 * 6);
    assert.ok(num(r, 'delivered') < num(r, 'expected'));
    assert.equal(r.delivery_ratio, '0.9000');
    assert.equal(num(r, 'errors'), 0);
  } finally {
    await relay.close();
  }
});

test('a relay that relays nothing: delivered=0, the window stops the senders', async () => {
  const relay = await startRelay({ dropEvery: 1 });
  try {
    const { code, result: r } = await runWsload([
      '--url', `ws://127.0.0.1:${relay.port}/`, '--connections', '4', '--senders', '2',
      '--rate', '0', '--window', '3', '--duration', '0.5', '--drain', '0.5', '--quiet',
    ]);
    assert.equal(code, 0);
    assert.equal(num(r, 'sent'), 6);
    assert.equal(num(r, 'expected'), 24);
    assert.equal(num(r, 'delivered'), 0);
    assert.equal(relay.stats.received, 6);
  } finally {
    await relay.close();
  }
});

for (const payload of [3000, 70000]) {
  test(`fragmented ${payload}-byte messages with pings in between are reassembled`, async () => {
    const relay = await startRelay({ fragment: true });
    try {
      const { code, result: r } = await runWsload([
        '--url', `ws://127.0.0.1:${relay.port}/`, '--connections', '4', '--senders', '2',
        '--messages', '5', '--rate', '50', '--duration', '10', '--drain', '2', '--payload', String(payload),
        '--quiet',
      ]);
      assert.equal(code, 0);
      assert.equal(num(r, 'sent'), 10);
      assert.equal(num(r, 'delivered'), 40);
      assert.equal(num(r, 'expected'), 40);
      assert.equal(num(r, 'protocol_errors'), 0);
      assert.equal(num(r, 'errors'), 0);
      assert.equal(relay.stats.badFrames, 0);
      assert.equal(relay.stats.pings, 40);
      assert.equal(relay.stats.pongs, 40);
    } finally {
      await relay.close();
    }
  });
}

// ---- permessage-deflate against the hand-written relay ----

const OFFER = 'permessage-deflate; client_no_context_takeover; client_max_window_bits';
const ACCEPT = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
// Frame header sizes, server → client (unmasked) and client → server.
const hdr = (n) => (n < 126 ? 2 : n <= 0xffff ? 4 : 10);
const sum = (a) => a.reduce((x, y) => x + y, 0);

// 4 clients, 2 of them send 10 messages each: 20 sent, 80 deliveries.
function deflateArgs(port, extra) {
  return ['--url', `ws://127.0.0.1:${port}/`, '--connections', '4', '--senders', '2',
    '--messages', '10', '--rate', '40', '--duration', '10', '--drain', '2', '--quiet', ...extra];
}

for (const { payload, threshold, compressed, cache = null } of [
  { payload: 63, threshold: null, compressed: false },
  { payload: 64, threshold: null, compressed: true },
  { payload: 200, threshold: null, compressed: true },
  { payload: 200, threshold: null, compressed: true, cache: 0 },
  { payload: 200, threshold: 201, compressed: false },
]) {
  const t = (threshold === null ? 'the default threshold' : `--deflate-threshold ${threshold}`) +
    (cache === null ? '' : ` and --deflate-cache ${cache}`);
  test(`deflate: ${payload}-byte messages with ${t} go ${compressed ? 'compressed' : 'plain'}, counted exactly`, async () => {
    const relay = await startDeflateRelay({ answer: ACCEPT, mode: 'plain' });
    try {
      const { code, result: r } = await runWsload(deflateArgs(relay.port, [
        '--deflate', '--payload', String(payload),
        ...(threshold === null ? [] : ['--deflate-threshold', String(threshold)]),
        ...(cache === null ? [] : ['--deflate-cache', String(cache)])]));
      assert.equal(code, 0);
      assert.deepEqual(relay.stats.offers, [OFFER, OFFER, OFFER, OFFER]);
      assert.equal(relay.stats.badFrames, 0);
      assert.equal(r.deflate, 'on');
      assert.equal(num(r, 'deflate_conns'), 4);
      assert.equal(num(r, 'sent'), 20);
      assert.equal(num(r, 'expected'), 80);
      assert.equal(num(r, 'delivered'), 80);
      assert.equal(num(r, 'errors'), 0);
      assert.equal(num(r, 'msg_payload_bytes_out'), 20 * payload);
      assert.equal(num(r, 'msg_payload_bytes_in'), 80 * payload);
      assert.equal(num(r, 'delivered_payload_bytes'), 80 * payload);
      if (compressed) {
        assert.equal(relay.stats.compressedIn, 20);
        assert.equal(relay.stats.plainIn, 0);
        assert.equal(relay.stats.markerInCompressed, 0);
        for (const n of relay.stats.compressedSizes) assert.ok(n < payload, `${n} >= ${payload}`);
        const sizes = relay.stats.compressedSizes;
        assert.equal(num(r, 'msgs_out_compressed'), 20);
        assert.equal(num(r, 'msgs_out_plain'), 0);
        assert.equal(num(r, 'msg_wire_bytes_out'), sum(sizes.map((n) => hdr(n) + 4 + n)));
        // The relay sends each compressed message on to all 4 as it came.
        const wire = 4 * sum(sizes.map((n) => hdr(n) + n));
        assert.equal(num(r, 'msgs_in_compressed'), 80);
        assert.equal(num(r, 'msgs_in_plain'), 0);
        assert.equal(num(r, 'msg_wire_bytes_in'), wire);
        assert.equal(num(r, 'delivered_wire_bytes'), wire);
        assert.ok(num(r, 'msg_wire_bytes_in') < num(r, 'msg_payload_bytes_in'));
        // The same compressed bytes reach 4 clients, 40 ms apart from the
        // next message: inflated once, found in the cache 3 times (unless
        // the cache is off).
        assert.equal(num(r, 'inflates'), cache === 0 ? 80 : 20);
        assert.equal(num(r, 'inflate_cache_hits'), cache === 0 ? 0 : 60);
      } else {
        assert.equal(relay.stats.compressedIn, 0);
        assert.equal(relay.stats.plainIn, 20);
        assert.equal(num(r, 'msgs_out_compressed'), 0);
        assert.equal(num(r, 'msgs_out_plain'), 20);
        assert.equal(num(r, 'msg_wire_bytes_out'), 20 * (hdr(payload) + 4 + payload));
        assert.equal(num(r, 'msgs_in_compressed'), 0);
        assert.equal(num(r, 'msgs_in_plain'), 80);
        assert.equal(num(r, 'msg_wire_bytes_in'), 80 * (hdr(payload) + payload));
        assert.equal(num(r, 'delivered_wire_bytes'), 80 * (hdr(payload) + payload));
      }
    } finally {
      await relay.close();
    }
  });
}

test('without --deflate: no offer, no compression, the same counters', async () => {
  const relay = await startDeflateRelay({ answer: null, mode: 'plain' });
  try {
    const { code, result: r } = await runWsload(deflateArgs(relay.port, ['--payload', '200']));
    assert.equal(code, 0);
    assert.deepEqual(relay.stats.offers, [null, null, null, null]);
    assert.equal(relay.stats.plainIn, 20);
    assert.equal(r.deflate, 'off');
    assert.equal(num(r, 'deflate_conns'), 0);
    assert.equal(num(r, 'delivered'), 80);
    assert.equal(num(r, 'msgs_out_plain'), 20);
    assert.equal(num(r, 'msgs_out_compressed'), 0);
    assert.equal(num(r, 'msgs_in_plain'), 80);
    assert.equal(num(r, 'msg_wire_bytes_in'), 80 * (4 + 200));
    assert.equal(num(r, 'msg_wire_bytes_out'), 20 * (8 + 200));
    assert.equal(num(r, 'msg_payload_bytes_in'), 80 * 200);
    assert.equal(num(r, 'errors'), 0);
  } finally {
    await relay.close();
  }
});

for (const { mode, payload } of [
  { mode: 'stored', payload: 3000 },
  { mode: 'stored', payload: 70000 },
  { mode: 'final', payload: 3000 },
  { mode: 'final', payload: 70000 },
]) {
  test(`deflate: ${payload}-byte messages as ${mode === 'stored' ? 'stored blocks in fragments with a ping between' : 'a final block'} are inflated`, async () => {
    const relay = await startDeflateRelay({ answer: ACCEPT, mode });
    try {
      // Sent plain (over the threshold) so that the relay compresses them.
      const { code, result: r } = await runWsload(['--url', `ws://127.0.0.1:${relay.port}/`,
        '--connections', '4', '--senders', '2', '--messages', '5', '--rate', '50',
        '--duration', '10', '--drain', '2', '--payload', String(payload),
        '--deflate', '--deflate-threshold', '1000000', '--quiet']);
      assert.equal(code, 0);
      assert.equal(relay.stats.plainIn, 10);
      assert.equal(num(r, 'sent'), 10);
      assert.equal(num(r, 'delivered'), 40);
      assert.equal(num(r, 'expected'), 40);
      assert.equal(num(r, 'protocol_errors'), 0);
      assert.equal(num(r, 'errors'), 0);
      assert.equal(num(r, 'msgs_in_compressed'), 40);
      assert.equal(num(r, 'msgs_in_plain'), 0);
      assert.equal(num(r, 'msg_payload_bytes_in'), 40 * payload);
      const z = storedBlocks(Buffer.alloc(payload), mode === 'final').length;
      let wire;
      if (mode === 'stored') {
        const a = Math.floor(z / 3);
        const b = Math.floor((2 * z) / 3);
        wire = hdr(a) + a + hdr(b - a) + (b - a) + hdr(z - b) + (z - b);
        assert.equal(relay.stats.pings, 40);
        assert.equal(relay.stats.pongs, 40);
      } else {
        wire = hdr(z) + z;
      }
      assert.equal(num(r, 'msg_wire_bytes_in'), 40 * wire);
      assert.equal(num(r, 'delivered_wire_bytes'), 40 * wire);
    } finally {
      await relay.close();
    }
  });
}

test('deflate: a server that keeps its context (no server_no_context_takeover)', async () => {
  const relay = await startDeflateRelay({
    answer: 'permessage-deflate; client_no_context_takeover', mode: 'context' });
  try {
    const { code, result: r } = await runWsload(deflateArgs(relay.port, [
      '--deflate', '--deflate-threshold', '1000000']));
    assert.equal(code, 0);
    assert.equal(num(r, 'delivered'), 80);
    assert.equal(num(r, 'expected'), 80);
    assert.equal(num(r, 'errors'), 0);
    // A welcome each, then the 80 messages, each referring to the one before.
    assert.equal(num(r, 'msgs_in_compressed'), 84);
    assert.equal(num(r, 'msgs_in_plain'), 0);
    // Messages that depend on a context are never taken from the cache.
    assert.equal(num(r, 'inflates'), 84);
    assert.equal(num(r, 'inflate_cache_hits'), 0);
  } finally {
    await relay.close();
  }
});

test('deflate: server_no_context_takeover, yet a message refers back: protocol errors', async () => {
  const relay = await startDeflateRelay({ answer: ACCEPT, mode: 'context' });
  try {
    const { code, result: r } = await runWsload(deflateArgs(relay.port, [
      '--deflate', '--deflate-threshold', '1000000']));
    assert.equal(code, 0);
    assert.equal(num(r, 'connected'), 4);
    assert.equal(num(r, 'msgs_in_compressed'), 4); // the welcomes
    assert.equal(num(r, 'delivered'), 0);
    assert.equal(num(r, 'protocol_errors'), 4);
    assert.equal(num(r, 'errors'), 4);
  } finally {
    await relay.close();
  }
});

for (const { mode, deflate } of [
  { mode: 'rsv1-continuation', deflate: true },
  { mode: 'rsv1-ping', deflate: true },
  { mode: 'rsv2', deflate: true },
  { mode: 'garbage', deflate: true },
  { mode: 'after-final', deflate: true },
  { mode: 'stored', deflate: false }, // RSV1 when deflate was not negotiated
]) {
  test(`deflate: bad frames (${mode}${deflate ? '' : ', not negotiated'}) are protocol errors`, async () => {
    const relay = await startDeflateRelay({ answer: deflate ? ACCEPT : null, mode });
    try {
      const { code, result: r } = await runWsload(deflateArgs(relay.port, [
        ...(deflate ? ['--deflate', '--deflate-threshold', '1000000'] : [])]));
      assert.equal(code, 0);
      assert.equal(num(r, 'connected'), 4);
      assert.equal(num(r, 'delivered'), 0);
      assert.equal(num(r, 'protocol_errors'), 4);
      assert.equal(num(r, 'errors'), 4);
    } finally {
      await relay.close();
    }
  });
}

test('deflate: a 101 must accept the offer, with nothing that was not offered', async () => {
  const bad = [
    null,
    'permessage-deflate; client_max_window_bits',
    'permessage-deflate; server_max_window_bits=16',
    'permessage-deflate; server_max_window_bits=7',
    'permessage-deflate; server_max_window_bits=010',
    'permessage-deflate; client_max_window_bits="1x"',
    'permessage-deflate; client_max_window_bits="10',
    'permessage-deflate; server_no_context_takeover=1',
    'permessage-deflate; server_no_context_takeover; server_no_context_takeover',
    'permessage-deflate; mystery',
    'permessage-deflate; ',
    'permessage-deflate, permessage-deflate',
    ['permessage-deflate', 'permessage-deflate'],
    'x-webkit-deflate-frame',
    'permessage-deflate; server_no_context_takeover, x-other',
  ];
  for (const answer of bad) {
    const relay = await startDeflateRelay({ answer, mode: 'plain' });
    try {
      const { code, stderr, result: r } = await runWsload(['--url', `ws://127.0.0.1:${relay.port}/`,
        '--connections', '3', '--senders', '1', '--duration', '0.2', '--deflate', '--quiet']);
      const what = JSON.stringify(answer);
      assert.equal(code, 1, what);
      assert.equal(num(r, 'connected'), 0, what);
      assert.equal(num(r, 'handshake_errors'), 3, what);
      assert.equal(num(r, 'deflate_conns'), 0, what);
      assert.equal(num(r, 'sent'), 0, what);
      assert.match(stderr, answer === null ? /did not accept permessage-deflate/
        : /parameters we did not offer/, what);
    } finally {
      await relay.close();
    }
  }
});

test('deflate: 101s that accept in other valid spellings', async () => {
  for (const answer of [
    'permessage-deflate;client_no_context_takeover;server_no_context_takeover',
    ', permessage-deflate ; client_max_window_bits="10" ; server_max_window_bits=9 ,',
    ['permessage-deflate; server_no_context_takeover', ''],
    'permessage-deflate; client_max_window_bits=8',
  ]) {
    const relay = await startDeflateRelay({ answer, mode: 'plain' });
    try {
      const { code, result: r } = await runWsload(['--url', `ws://127.0.0.1:${relay.port}/`,
        '--connections', '3', '--senders', '1', '--messages', '3', '--rate', '30', '--payload', '200',
        '--duration', '10', '--drain', '2', '--deflate', '--quiet']);
      const what = JSON.stringify(answer);
      assert.equal(code, 0, what);
      assert.equal(num(r, 'deflate_conns'), 3, what);
      assert.equal(num(r, 'delivered'), 9, what);
      assert.equal(num(r, 'msgs_out_compressed'), 3, what);
      assert.equal(relay.stats.compressedIn, 3, what);
      assert.equal(num(r, 'errors'), 0, what);
    } finally {
      await relay.close();
    }
  }
});

test('without --deflate, a 101 that answers an extension is refused', async () => {
  const relay = await startDeflateRelay({ answer: ACCEPT, mode: 'plain' });
  try {
    const { code, result: r } = await runWsload(['--url', `ws://127.0.0.1:${relay.port}/`,
      '--connections', '3', '--senders', '1', '--duration', '0.2', '--quiet']);
    assert.equal(code, 1);
    assert.equal(num(r, 'handshake_errors'), 3);
  } finally {
    await relay.close();
  }
});

// ---- exit codes ----

test('usage errors exit 2', async () => {
  for (const args of [
    [],
    ['--url', 'http://127.0.0.1:1/'],
    ['--url', 'ws://127.0.0.1:1/', '--connections', '0'],
    ['--url', 'ws://127.0.0.1:1/', '--connections', '2', '--senders', '3'],
    ['--url', 'ws://127.0.0.1:1/', '--format', 'xml'],
    ['--url', 'ws://127.0.0.1:1/', '--bogus'],
    ['--url', 'ws://127.0.0.1:1/', '--transport', 'carrier-pigeon'],
    ['--url', 'http://127.0.0.1:1/', '--transport', 'ws'],
    ['--url', 'http://127.0.0.1:1/', '--transport', 'sse', '--format', 'raw'],
    ['--url', 'http://127.0.0.1:1/', '--transport', 'poll', '--handshake-only'],
    ['--url', 'http://127.0.0.1:1/', '--transport', 'longpoll', '--poll-wait', '31'],
    ['--url', 'http://127.0.0.1:1/', '--transport', 'poll', '--poll-interval', '0'],
    ['--url', 'http://127.0.0.1:1/', '--transport', 'sse', '--deflate'],
    ['--url', 'ws://127.0.0.1:1/', '--deflate', '--deflate-level', '0'],
    ['--url', 'ws://127.0.0.1:1/', '--deflate', '--deflate-level', '10'],
    ['--url', 'ws://127.0.0.1:1/', '--deflate', '--deflate-threshold', 'x'],
    ['--url', 'ws://127.0.0.1:1/', '--deflate', '--deflate-cache', '-1'],
  ]) {
    const { code, resultLines } = await runWsload(args);
    assert.equal(code, 2, `args ${args.join(' ')}`);
    assert.equal(resultLines, 0);
  }
});

test('nothing listening: exit 1 with connect errors counted', async () => {
  // A port that was free a moment ago and has no listener now.
  const port = await new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
  const { code, result: r } = await runWsload([
    '--url', `ws://127.0.0.1:${port}/`, '--connections', '3', '--senders', '1',
    '--duration', '0.2', '--quiet',
  ]);
  assert.equal(code, 1);
  assert.equal(num(r, 'connected'), 0);
  assert.equal(num(r, 'connect_errors'), 3);
  assert.equal(num(r, 'errors'), 3);
});
