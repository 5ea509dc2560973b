// tests/e2e/http.test.mjs — wshub's HTTP/1.1 connection handling, end to end:
// common response headers, keep-alive and pipelining, Connection: close,
// HTTP/1.0, malformed input (400), limits (431, 413), methods (405) and the
// header / keep-alive timeouts. Raw sockets, exact bytes.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/http.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import {
  withServer, Conn, reqBytes, exchange, get, assertCommon, assertError,
  assertAlive, assertClosedAfter, hasToken, sleep, INDEX_HTML,
} from './lib/server.mjs';

const A = 'alpha file\n';
const B = '{"b":2}\n';
const C = 'body { color: red }\n';
const FILES = { 'a.txt': A, 'b.json': B, 'c.css': C };

test('GET carries Date, Server, Content-Length and the exact body', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const { res, conn } = await exchange(port, reqBytes('GET', '/a.txt'));
    assert.equal(res.version, '1.1');
    assert.equal(res.status, 200);
    assert.equal(res.reason, 'OK');
    assertCommon(res);
    assert.equal(res.text, A);
    const date = Date.parse(res.get('date'));
    assert.ok(Math.abs(date - Date.now()) < 60_000, 'Date is the current time');
    conn.destroy();
  });
});

test("node:http keep-alive client: strict response parsing, one reused socket", async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const sockets = new Set();
      for (let i = 0; i < 10; i++) {
        const path = i % 2 ? '/a.txt' : '/b.json';
        const { res, body } = await new Promise((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
            const parts = [];
            res.on('data', (d) => parts.push(d));
            res.on('end', () => resolve({ res, body: Buffer.concat(parts).toString() }));
            res.on('error', reject);
          });
          req.on('socket', (s) => sockets.add(s));
          req.on('error', reject);
        });
        assert.equal(res.statusCode, 200);
        assert.equal(res.headers['content-type'], i % 2 ? 'text/plain; charset=utf-8' : 'application/json');
        assert.equal(body, i % 2 ? A : B);
      }
      assert.equal(sockets.size, 1, 'all ten requests on one connection');
    } finally {
      agent.destroy();
    }
  });
});

test('keep-alive: sequential requests on one connection', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const conn = await Conn.open(port);
    for (const [p, body] of [['/a.txt', A], ['/b.json', B], ['/a.txt', A]]) {
      conn.write(reqBytes('GET', p));
      const res = await conn.readResponse();
      assert.equal(res.status, 200);
      assert.equal(res.text, body);
      assert.ok(!hasToken(res.get('connection'), 'close'), 'no Connection: close');
    }
    assert.equal(conn.ended, false);
    conn.destroy();
  });
});

test('pipelined requests in one write are answered in order', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const conn = await Conn.open(port);
    const order = [['/a.txt', A], ['/b.json', B], ['/c.css', C], ['/index.html', INDEX_HTML], ['/a.txt', A]];
    conn.write(Buffer.concat(order.map(([p]) => reqBytes('GET', p))));
    for (const [, body] of order) {
      const res = await conn.readResponse();
      assert.equal(res.status, 200);
      assertCommon(res);
      assert.equal(res.text, body);
    }
    // The connection is still usable afterwards.
    conn.write(reqBytes('GET', '/b.json'));
    const res = await conn.readResponse();
    assert.equal(res.text, B);
    conn.destroy();
  });
});

test('pipelined requests split at awkward byte boundaries', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const conn = await Conn.open(port);
    const all = Buffer.concat([reqBytes('GET', '/a.txt'), reqBytes('GET', '/b.json')]);
    // One byte, then the rest of the first request plus half of the second.
    conn.write(all.subarray(0, 1));
    await sleep(20);
    const cut = reqBytes('GET', '/a.txt').length + 7;
    conn.write(all.subarray(1, cut));
    await sleep(20);
    conn.write(all.subarray(cut));
    const r1 = await conn.readResponse();
    const r2 = await conn.readResponse();
    assert.equal(r1.text, A);
    assert.equal(r2.text, B);
    conn.destroy();
  });
});

test('50 concurrent connections, each with pipelined requests, all answered correctly', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const one = async (i) => {
      const conn = await Conn.open(port);
      const order = i % 2 ? [['/a.txt', A], ['/b.json', B]] : [['/c.css', C], ['/a.txt', A], ['/index.html', INDEX_HTML]];
      conn.write(Buffer.concat(order.map(([p]) => reqBytes('GET', p))));
      for (const [, body] of order) {
        const res = await conn.readResponse({ ms: 15000 });
        assert.equal(res.status, 200);
        assert.equal(res.text, body);
      }
      conn.destroy();
    };
    await Promise.all(Array.from({ length: 50 }, (_, i) => one(i)));
    await assertAlive(port);
  });
});

test('Connection: close is echoed and the server closes after the response', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const { res, conn } = await exchange(port, reqBytes('GET', '/a.txt', { Connection: 'close' }));
    assert.equal(res.status, 200);
    assert.equal(res.text, A);
    assert.ok(hasToken(res.get('connection'), 'close'), `Connection: close\n${res.raw}`);
    await assertClosedAfter(conn);
  });
});

test('Connection: close in a pipeline: later requests are not answered', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(Buffer.concat([
      reqBytes('GET', '/a.txt'),
      reqBytes('GET', '/b.json', { Connection: 'close' }),
      reqBytes('GET', '/c.css'),
    ]));
    const r1 = await conn.readResponse();
    const r2 = await conn.readResponse();
    assert.equal(r1.text, A);
    assert.equal(r2.text, B);
    assert.ok(hasToken(r2.get('connection'), 'close'));
    await assertClosedAfter(conn);
  });
});

test('HTTP/1.0 without keep-alive: response, then close', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write('GET /a.txt HTTP/1.0\r\n\r\n');
    const res = await conn.readResponse();
    assert.equal(res.status, 200);
    assertCommon(res);
    assert.equal(res.text, A);
    assert.ok(!hasToken(res.get('connection'), 'keep-alive'));
    await assertClosedAfter(conn);
  });
});

test('HTTP/1.0 with Connection: keep-alive stays open', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write('GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    const r1 = await conn.readResponse();
    assert.equal(r1.status, 200);
    assert.equal(r1.text, A);
    assert.ok(hasToken(r1.get('connection'), 'keep-alive'), `Connection: keep-alive\n${r1.raw}`);
    conn.write('GET /b.json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    const r2 = await conn.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.text, B);
    assert.equal(conn.ended, false);
    conn.destroy();
  });
});

// --- Malformed requests: 400, Connection: close, then close --------------

const MALFORMED = {
  'garbage request line': 'HELLO\r\n\r\n',
  'binary junk': Buffer.from([0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0x0d, 0x0a, 0x0d, 0x0a]),
  'request line without version': 'GET /index.html\r\nHost: x\r\n\r\n',
  'header without colon': 'GET /index.html HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n',
  'space before colon': 'GET /index.html HTTP/1.1\r\nHost : x\r\n\r\n',
  'control character in header name': 'GET /index.html HTTP/1.1\r\nHo\x01st: x\r\n\r\n',
  'Content-Length not a number': 'POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
  'negative Content-Length': 'POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n',
  'two different Content-Lengths':
    'POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
  'Content-Length and Transfer-Encoding':
    'POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
  'invalid chunk size':
    'POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
  // RFC 9112 §6.3: a request Transfer-Encoding whose final coding is not chunked.
  'Transfer-Encoding without chunked':
    'POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc',
  'Content-Length with a sign': 'POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc',
  'chunk data longer than its size':
    'POST /index.html HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n',
  // RFC 9112 §3.2: an HTTP/1.1 request without Host, or with two, MUST get 400.
  'HTTP/1.1 without Host': 'GET /index.html HTTP/1.1\r\nAccept: */*\r\n\r\n',
  'two Host fields': 'GET /index.html HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n',
};

for (const [name, bytes] of Object.entries(MALFORMED)) {
  test(`malformed request (${name}) → 400 and close`, async () => {
    await withServer({}, async ({ port }) => {
      const conn = await Conn.open(port);
      conn.write(bytes);
      // A server may legitimately answer an earlier, well-formed part (the
      // header section) before it meets the error in the body; the last
      // response must be the 400 and the connection must then be closed.
      let res = await conn.readResponse();
      while (res.status !== 400 && conn.len > 0) res = await conn.readResponse();
      assertError(res, 400);
      assert.ok(hasToken(res.get('connection'), 'close'), `Connection: close\n${res.raw}`);
      await assertClosedAfter(conn);
      await assertAlive(port);
    });
  });
}

test('malformed request after a good one on the same connection', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(Buffer.concat([reqBytes('GET', '/a.txt'), Buffer.from('NOT HTTP AT ALL\r\n\r\n')]));
    const r1 = await conn.readResponse();
    assert.equal(r1.status, 200);
    assert.equal(r1.text, A);
    const r2 = await conn.readResponse();
    assertError(r2, 400);
    assert.ok(hasToken(r2.get('connection'), 'close'));
    await assertClosedAfter(conn);
    await assertAlive(port);
  });
});

// --- Header limits: 431 -----------------------------------------------------

test('header section over the default 16384 bytes → 431 and close', async () => {
  await withServer({}, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/index.html', { 'X-Big': 'a'.repeat(17000) }));
    const res = await conn.readResponse();
    assertError(res, 431);
    await assertClosedAfter(conn);
    await assertAlive(port);
  });
});

test('header section under the default limit is served', async () => {
  await withServer({}, async ({ port }) => {
    const res = await get(port, '/index.html', { 'X-Big': 'a'.repeat(12000) });
    assert.equal(res.status, 200);
    assert.equal(res.text, INDEX_HTML);
  });
});

test('more than the default 100 header fields → 431 and close', async () => {
  await withServer({}, async ({ port }) => {
    const headers = {};
    for (let i = 0; i < 120; i++) headers[`X-H${i}`] = 'v';
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/index.html', headers));
    const res = await conn.readResponse();
    assertError(res, 431);
    await assertClosedAfter(conn);
    await assertAlive(port);
  });
});

test('--max-headers N: N fields pass, N+1 → 431', async () => {
  await withServer({ args: ['--max-headers', '5'] }, async ({ port }) => {
    // Host + 4 = 5 fields.
    const ok = await get(port, '/index.html', { A1: '1', A2: '2', A3: '3', A4: '4' });
    assert.equal(ok.status, 200);
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/index.html', { A1: '1', A2: '2', A3: '3', A4: '4', A5: '5' }));
    const res = await conn.readResponse();
    assertError(res, 431);
    await assertClosedAfter(conn);
    await assertAlive(port);
  });
});

test('--max-header-bytes: small header passes, larger → 431', async () => {
  await withServer({ args: ['--max-header-bytes', '2048'] }, async ({ port }) => {
    const ok = await get(port, '/index.html', { 'X-Pad': 'p'.repeat(1000) });
    assert.equal(ok.status, 200);
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/index.html', { 'X-Pad': 'p'.repeat(3000) }));
    const res = await conn.readResponse();
    assertError(res, 431);
    await assertClosedAfter(conn);
    await assertAlive(port);
  });
});

test('--max-header-bytes counts many small fields too', async () => {
  await withServer({ args: ['--max-header-bytes', '2048'] }, async ({ port }) => {
    const headers = {};
    for (let i = 0; i < 60; i++) headers[`X-Field-${i}`] = 'v'.repeat(40);
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/index.html', headers));
    const res = await conn.readResponse();
    assertError(res, 431);
    await assertClosedAfter(conn);
    await assertAlive(port);
  });
});

test('oversized header sent slowly in pieces → 431 and close', async () => {
  await withServer({ args: ['--max-header-bytes', '2048'] }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write('GET /index.html HTTP/1.1\r\nHost: x\r\nX-Pad: ');
    for (let i = 0; i < 6 && !conn.ended; i++) {
      conn.write('q'.repeat(500));
      await sleep(10);
    }
    const res = await conn.readResponse();
    assertError(res, 431);
    await conn.waitEnd();
    await assertAlive(port);
  });
});

// --- Body limits: 413 ---------------------------------------------------------

test('Content-Length over the default --max-body → 413 without waiting for the body', async () => {
  await withServer({}, async ({ port }) => {
    const conn = await Conn.open(port);
    // Only the header section; the body is never sent.
    conn.write(reqBytes('POST', '/index.html', { 'Content-Length': String(1048576 + 1) }));
    const res = await conn.readResponse();
    assertError(res, 413);
    await assertClosedAfter(conn);
    await assertAlive(port);
  });
});

test('--max-body N: Content-Length N+1 → 413 (GET too)', async () => {
  await withServer({ args: ['--max-body', '1000'] }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/index.html', { 'Content-Length': '1001' }));
    const res = await conn.readResponse();
    assertError(res, 413);
    await assertClosedAfter(conn);
    await assertAlive(port);
  });
});

test('--max-body N: body of exactly N bytes is accepted and discarded', async () => {
  await withServer({ args: ['--max-body', '1000'] }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(Buffer.concat([
      reqBytes('GET', '/index.html', { 'Content-Length': '1000' }, 'x'.repeat(1000)),
      reqBytes('GET', '/index.html'),
    ]));
    const r1 = await conn.readResponse();
    assert.equal(r1.status, 200);
    assert.equal(r1.text, INDEX_HTML);
    const r2 = await conn.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.text, INDEX_HTML);
    conn.destroy();
  });
});

test('chunked body growing past --max-body → 413 and close', async () => {
  await withServer({ args: ['--max-body', '1000'] }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/index.html', { 'Transfer-Encoding': 'chunked' }));
    conn.write(`258\r\n${'a'.repeat(600)}\r\n`);
    await sleep(20);
    conn.write(`258\r\n${'b'.repeat(600)}\r\n`);
    let res = await conn.readResponse();
    while (res.status !== 413 && conn.len > 0) res = await conn.readResponse();
    assertError(res, 413);
    await conn.waitEnd();
    await assertAlive(port);
  });
});

test('chunked body within --max-body is read completely; next pipelined request works', async () => {
  await withServer({ files: FILES, args: ['--max-body', '1000'] }, async ({ port }) => {
    const conn = await Conn.open(port);
    const chunked = 'Transfer-Encoding: chunked';
    conn.write(Buffer.concat([
      Buffer.from(`GET /a.txt HTTP/1.1\r\nHost: x\r\n${chunked}\r\n\r\n` +
        `5\r\nhello\r\n1;ext=1\r\n \r\n1F4\r\n${'z'.repeat(500)}\r\n0\r\nX-Trailer: t\r\n\r\n`),
      reqBytes('GET', '/b.json'),
    ]));
    const r1 = await conn.readResponse();
    assert.equal(r1.status, 200);
    assert.equal(r1.text, A);
    const r2 = await conn.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.text, B);
    conn.destroy();
  });
});

// --- Methods: 405 -------------------------------------------------------------

for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
  test(`${method} on a static file → 405 with Allow, body discarded, kept alive`, async () => {
    await withServer({ files: FILES }, async ({ port }) => {
      const conn = await Conn.open(port);
      conn.write(Buffer.concat([
        reqBytes(method, '/a.txt', { 'Content-Length': '11', 'Content-Type': 'text/plain' }, 'GET /x HTTP'),
        reqBytes('GET', '/a.txt'),
      ]));
      const r1 = await conn.readResponse();
      assertError(r1, 405);
      assert.equal(r1.get('allow'), 'GET, HEAD');
      assert.ok(!hasToken(r1.get('connection'), 'close'), `kept alive\n${r1.raw}`);
      const r2 = await conn.readResponse();
      assert.equal(r2.status, 200);
      assert.equal(r2.text, A);
      assert.equal(conn.ended, false);
      conn.destroy();
    });
  });
}

test('POST with a chunked body → 405, body discarded, next request answered', async () => {
  await withServer({ files: FILES }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(Buffer.concat([
      Buffer.from('POST /missing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '4\r\nGET \r\n3\r\n/x \r\n0\r\n\r\n'),
      reqBytes('GET', '/a.txt'),
    ]));
    const r1 = await conn.readResponse();
    assertError(r1, 405);
    assert.equal(r1.get('allow'), 'GET, HEAD');
    const r2 = await conn.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.text, A);
    conn.destroy();
  });
});

// --- Timeouts -----------------------------------------------------------------

const SHORT = ['--header-timeout', '0.5', '--keepalive-timeout', '0.5'];

test('slow header (partial, then stall) → 408 and close; others served meanwhile', async () => {
  await withServer({ files: FILES, args: SHORT }, async ({ port }) => {
    const slow = await Conn.open(port);
    slow.write('GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Slow: ');
    // Another client is served normally while the slow one stalls.
    const other = await get(port, '/b.json');
    assert.equal(other.status, 200);
    assert.equal(other.text, B);
    const res = await slow.readResponse();
    assertError(res, 408);
    await assertClosedAfter(slow);
    await assertAlive(port);
  });
});

test('a stalled second request on a keep-alive connection → 408 after --header-timeout', async () => {
  await withServer({ files: FILES, args: ['--header-timeout', '0.5', '--keepalive-timeout', '30'] }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/a.txt'));
    assert.equal((await conn.readResponse()).text, A);
    conn.write('GET /b.json HTTP/1.1\r\nHost: x\r\n');
    const res = await conn.readResponse();
    assertError(res, 408);
    await assertClosedAfter(conn);
    await assertAlive(port);
  });
});

test('slowloris trickle (one byte at a time) is cut off by --header-timeout', async () => {
  await withServer({ files: FILES, args: SHORT }, async ({ port }) => {
    const slow = await Conn.open(port);
    const bytes = Buffer.from('GET /a.txt HTTP/1.1\r\nHost: x\r\n' + 'X-Drip: ' + 'd'.repeat(400));
    let i = 0;
    const timer = setInterval(() => {
      if (i < bytes.length && !slow.ended) slow.write(bytes.subarray(i, ++i));
    }, 50);
    try {
      const res = await slow.readResponse();
      assertError(res, 408);
      await slow.waitEnd();
      assert.ok(i < bytes.length, 'cut off before the trickle finished');
    } finally {
      clearInterval(timer);
    }
    await assertAlive(port);
  });
});

test('a connection that sends nothing is closed after --header-timeout', async () => {
  await withServer({ files: FILES, args: SHORT }, async ({ port }) => {
    const silent = await Conn.open(port);
    const other = await get(port, '/a.txt');
    assert.equal(other.text, A);
    const rest = (await silent.waitEnd()).toString('latin1');
    // Either closed silently or with a 408; nothing else.
    assert.ok(rest === '' || rest.startsWith('HTTP/1.1 408 '), `unexpected bytes: ${JSON.stringify(rest)}`);
    await assertAlive(port);
  });
});

test('idle keep-alive connection is closed after --keepalive-timeout', async () => {
  await withServer({ files: FILES, args: SHORT }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/a.txt'));
    const res = await conn.readResponse();
    assert.equal(res.status, 200);
    assert.ok(!hasToken(res.get('connection'), 'close'));
    // Closed without another response.
    await assertClosedAfter(conn);
    await assertAlive(port);
  });
});

test('an idle keep-alive connection is governed by --keepalive-timeout, not --header-timeout', async () => {
  await withServer({ files: FILES, args: ['--header-timeout', '0.3', '--keepalive-timeout', '30'] }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/a.txt'));
    assert.equal((await conn.readResponse()).text, A);
    // Idle for well over the header timeout, far under the keep-alive one.
    assert.ok(await conn.staysOpen(1200), 'connection still open while idle');
    conn.write(reqBytes('GET', '/b.json'));
    const r2 = await conn.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.text, B);
    conn.destroy();
  });
});

test('many stalled connections do not block other clients', async () => {
  await withServer({ files: FILES, args: SHORT }, async ({ port }) => {
    const stalled = [];
    for (let i = 0; i < 20; i++) {
      const c = await Conn.open(port);
      c.write('GET /a.txt HTTP/1.1\r\n');
      stalled.push(c);
    }
    for (let i = 0; i < 5; i++) {
      const res = await get(port, '/c.css');
      assert.equal(res.text, C);
    }
    for (const c of stalled) {
      const res = await c.readResponse();
      assertError(res, 408);
      await c.waitEnd();
    }
    await assertAlive(port);
  });
});
