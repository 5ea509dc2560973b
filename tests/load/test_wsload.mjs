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
// not there.
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

function serverFrame(opcode, payload, fin = true) {
  const len = payload.length;
  let head;
  if (len < 126) {
    head = Buffer.from([(fin ? 0x80 : 0) | opcode, len]);
  } else if (len <= 0xffff) {
    head = Buffer.alloc(4);
    head[0] = (fin ? 0x80 : 0) | opcode;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = (fin ? 0x80 : 0) | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  return Buffer.concat([head, payload]);
}

// A chat relay: every text message from a client goes to every client,
// wrapped in JSON. dropEvery: the n-th, 2n-th, ... message is not relayed.
// fragment: each relayed message is sent as three fragments (10 bytes, the
// middle, 5 bytes) with a ping between the first two.
function startRelay({ dropEvery = 0, fragment = false } = {}) {
  const stats = { received: 0, dropped: 0, relayed: 0, pings: 0, pongs: 0, badFrames: 0 };
  const clients = new Set();
  const sockets = new Set();

  function broadcast(text) {
    const body = Buffer.from(JSON.stringify({ type: 'message', text }));
    for (const c of clients) {
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
        if (!key) {
          sock.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
          return;
        }
        const accept = createHash('sha1').update(key[1] + GUID).digest('base64');
        sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n' +
          `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
        open = true;
        clients.add(sock);
      }
      while (buf.length >= 2) {
        const fin = (buf[0] & 0x80) !== 0;
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
        if (!masked || !fin) {
          stats.badFrames++;
          sock.destroy();
          return;
        }
        if (buf.length < off + 4 + len) return;
        const mask = buf.subarray(off, off + 4);
        const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
        for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3];
        buf = buf.subarray(off + 4 + len);
        if (op === 0x1) {
          stats.received++;
          if (dropEvery && stats.received % dropEvery === 0) {
            stats.dropped++;
          } else {
            stats.relayed++;
            broadcast(payload.toString('utf8'));
          }
        } else if (op === 0x8) {
          clients.delete(sock);
          sock.end(serverFrame(0x8, payload.subarray(0, 2)));
          return;
        } else if (op === 0x9) {
          sock.write(serverFrame(0xa, payload));
        } else if (op === 0xa) {
          if (payload.toString() === 'relay-ping') stats.pongs++;
        } else {
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
        close: () => new Promise((res) => {
          for (const s of sockets) s.destroy();
          server.close(() => res());
        }),
      });
    });
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
