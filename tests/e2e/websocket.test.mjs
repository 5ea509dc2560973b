// tests/e2e/websocket.test.mjs — wshub's WebSocket side, end to end: the
// RFC 6455 opening handshake (§4.2) and its refusals, endpoint paths,
// subprotocol choice, bytes pipelined behind the handshake, echo mode
// through the `ws` client and raw frames, the closing handshake and the
// close codes for bad frames (§7.4), keep-alive pings, the close timeout
// on shutdown, and the non-echo mode. Raw sockets where bytes matter.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/websocket.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  withServer, makeTree, startServer, Conn, reqBytes, assertError, assertCommon,
  assertAlive, assertClosedAfter, sleep, INDEX_HTML, WAIT_MS,
} from './lib/server.mjs';
import {
  WebSocket, OP, acceptFor, newKey, upgradeBytes, rawUpgrade, rawOpen, assert101,
  clientFrame, closePayload, serverFrameBytes, readFrame, parseFrame, parseClose, expectClose,
  assertWsWorks, openClient,
} from './lib/ws.mjs';

const hex = (b) => Buffer.from(b).toString('hex');

// A refused upgrade: exact status, the common headers, a text body that
// names the problem, the connection closed, and the server still serving
// both HTTP and WebSocket clients afterwards.
async function assertRefused(port, target, opts, status, detail, { echo = true, wsTarget = '/' } = {}) {
  const { res, conn } = await rawUpgrade(port, target, opts);
  try {
    assertError(res, status);
    assert.match(res.text, detail, `body names the problem: ${JSON.stringify(res.text)}`);
    assert.equal(res.get('sec-websocket-accept'), undefined, 'no Accept on a refusal');
    if (status === 426) {
      assert.deepEqual(res.all('sec-websocket-version'), ['13'], `Sec-WebSocket-Version: 13\n${res.raw}`);
    } else {
      assert.equal(res.get('sec-websocket-version'), undefined, `no Sec-WebSocket-Version\n${res.raw}`);
    }
    assert.equal(res.get('connection'), 'close', `Connection: close\n${res.raw}`);
    await assertClosedAfter(conn);
  } finally {
    conn.destroy();
  }
  await assertAlive(port);
  await assertWsWorks(port, { echo, target: wsTarget });
}

// ---------------------------------------------------------------------------
// 1. The opening handshake

test('handshake: the RFC 6455 sample key gets s3pPLMBiTxaQ9kYGzzhZRbK+xOo=', async () => {
  // §1.3's worked example, independent of our own helper.
  assert.equal(acceptFor('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    const key = 'dGhlIHNhbXBsZSBub25jZQ==';
    const conn = await Conn.open(port);
    conn.write(upgradeBytes('/', { key }).bytes);
    const expected = 'HTTP/1.1 101 Switching Protocols\r\n' +
      'Upgrade: websocket\r\n' +
      'Connection: Upgrade\r\n' +
      'Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n';
    // The 101 head is fully specified here: compare byte for byte.
    await conn.waitFor(() => conn.len >= expected.length, WAIT_MS, 'the 101 response');
    assert.equal(conn.take(expected.length).toString('latin1'), expected);
    assert.equal(conn.len, 0, 'nothing after the 101 head');
    // RFC 6455 §5.7: a masked "Hello" text frame, echoed unmasked.
    conn.write(Buffer.from('818537fa213d7f9f4d5158', 'hex'));
    const f = await readFrame(conn);
    assert.equal(hex(f.raw), '810548656c6c6f');
    conn.destroy();
  });
});

test('handshake: random keys, case-insensitive names and values, token lists', async () => {
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    for (let i = 0; i < 3; i++) {
      const conn = await rawOpen(port, '/');
      conn.destroy();
    }
    const variants = [
      { headers: { Upgrade: null, Connection: null, 'Sec-WebSocket-Key': null, 'Sec-WebSocket-Version': null },
        extra: [['UPGRADE', 'WebSocket'], ['CONNECTION', 'UPGRADE'], ['SEC-WEBSOCKET-VERSION', '13']] },
      { headers: { Connection: 'keep-alive, Upgrade' } },
      { headers: { Connection: 'Upgrade,keep-alive' } },
      { headers: { Upgrade: 'websocket', Connection: 'keep-alive,  upgrade ' } },
      { headers: { Upgrade: 'foo/2, websocket' } },
    ];
    for (const v of variants) {
      const key = newKey();
      const opts = { ...v, key };
      if (v.extra) opts.extra = [...v.extra, ['sec-websocket-key', key]];
      const { res, conn } = await rawUpgrade(port, '/', opts);
      try {
        assert101(res, key);
        conn.write(clientFrame(OP.TEXT, 'x'));
        const f = await readFrame(conn);
        assert.equal(hex(f.raw), '810178', `echo after ${JSON.stringify(v)}`);
      } finally {
        conn.destroy();
      }
    }
  });
});

test('handshake: each failed check → 400 naming it, connection closed', async () => {
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    await assertRefused(port, '/', { method: 'POST' }, 400, /GET/);
    await assertRefused(port, '/', { method: 'POST', headers: { 'Content-Length': '0' } }, 400, /GET/);
    await assertRefused(port, '/', { version: '1.0' }, 400, /HTTP\/1\.1/);
    await assertRefused(port, '/', { host: null }, 400, /Host/);
    await assertRefused(port, '/', { headers: { 'Sec-WebSocket-Key': null } }, 400, /Sec-WebSocket-Key/);
    await assertRefused(port, '/', { key: '!!!!not*base64!!!!!!!A==' }, 400, /Sec-WebSocket-Key/);
    await assertRefused(port, '/', { key: crypto.randomBytes(15).toString('base64') }, 400, /Sec-WebSocket-Key/);
    await assertRefused(port, '/', { key: crypto.randomBytes(17).toString('base64') }, 400, /Sec-WebSocket-Key/);
    await assertRefused(port, '/', { key: crypto.randomBytes(12).toString('base64') }, 400, /Sec-WebSocket-Key/);
    await assertRefused(port, '/', { key: 'dGhlIHNhbXBsZSBub25jZQ' }, 400, /Sec-WebSocket-Key/);
    await assertRefused(port, '/', { extra: [['Sec-WebSocket-Key', newKey()]] }, 400, /Sec-WebSocket-Key/);
    await assertRefused(port, '/', { headers: { Connection: 'keep-alive' } }, 400, /Connection/);
    await assertRefused(port, '/', { headers: { Connection: null } }, 400, /Connection/);
  });
});

test('handshake: Sec-WebSocket-Version missing, 8 or 12 → 426 with Sec-WebSocket-Version: 13', async () => {
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    await assertRefused(port, '/', { headers: { 'Sec-WebSocket-Version': null } }, 426, /Sec-WebSocket-Version/);
    await assertRefused(port, '/', { headers: { 'Sec-WebSocket-Version': '8' } }, 426, /Sec-WebSocket-Version/);
    await assertRefused(port, '/', { headers: { 'Sec-WebSocket-Version': '12' } }, 426, /Sec-WebSocket-Version/);
    await assertRefused(port, '/', { headers: { 'Sec-WebSocket-Version': '13, 8' } }, 426, /Sec-WebSocket-Version/);
  });
});

test('handshake: an Upgrade other than websocket is plain HTTP (static file), connection reusable', async () => {
  await withServer({ args: ['--echo', '--ws-path', '/ws'] }, async ({ port }) => {
    for (const [target, status] of [['/ws', 404], ['/', 200], ['/index.html', 200]]) {
      const conn = await Conn.open(port);
      try {
        conn.write(reqBytes('GET', target, {
          Connection: 'Upgrade, HTTP2-Settings', Upgrade: 'h2c', 'HTTP2-Settings': 'AAMAAABkAAQCAAAAAAIAAAAA',
        }));
        const res = await conn.readResponse();
        assert.equal(res.status, status, `GET ${target} with Upgrade: h2c\n${res.raw}`);
        assertCommon(res);
        assert.equal(res.get('upgrade'), undefined, `no Upgrade in the answer\n${res.raw}`);
        if (status === 200) assert.equal(res.text, INDEX_HTML);
        // The Upgrade was ignored (RFC 9110 §7.8): still HTTP/1.1 on this connection.
        conn.write(reqBytes('GET', '/index.html'));
        const again = await conn.readResponse();
        assert.equal(again.status, 200, `second request on the same connection\n${again.raw}`);
        assert.equal(again.text, INDEX_HTML);
      } finally {
        conn.destroy();
      }
    }
    await assertAlive(port);
    await assertWsWorks(port, { target: '/ws' });
  });
});

// ---------------------------------------------------------------------------
// 2. Paths

test('paths: by default / and /ws (the lecture pages) accept an upgrade', async () => {
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    await assertWsWorks(port, { target: '/' });
    await assertWsWorks(port, { target: '/ws' });
    const a = await openClient(port, '/');
    const b = await openClient(port, '/ws');
    a.ws.send('to a');
    b.ws.send('to b');
    assert.equal((await a.next()).data.toString(), 'to a');
    assert.equal((await b.next()).data.toString(), 'to b');
    a.ws.close(1000);
    b.ws.close(1000);
    assert.equal((await a.waitClosed()).code, 1000);
    assert.equal((await b.waitClosed()).code, 1000);
  });
});

test('paths: --ws-path /ws refuses / with 404, accepts /ws and /ws?room=x; GET /ws is a file', async () => {
  await withServer({ args: ['--echo', '--ws-path', '/ws'], files: { ws: 'the ws file\n' } }, async ({ port }) => {
    const o = { wsTarget: '/ws' };
    await assertRefused(port, '/', {}, 404, /WebSocket/, o);
    await assertRefused(port, '/index.html', {}, 404, /WebSocket/, o);
    await assertRefused(port, '/wsx', {}, 404, /WebSocket/, o);
    await assertRefused(port, '/ws/', {}, 404, /WebSocket/, o);
    await assertRefused(port, '/x/ws', {}, 404, /WebSocket/, o);
    await assertWsWorks(port, { target: '/ws' });
    await assertWsWorks(port, { target: '/ws?room=x' });
    await assertWsWorks(port, { target: '/ws?' });
    const c = await openClient(port, '/ws?room=lobby&nick=a');
    c.ws.send('q');
    assert.equal((await c.next()).data.toString(), 'q');
    c.ws.close(1000);
    assert.equal((await c.waitClosed()).code, 1000);
    // A plain GET of the same path is still static.
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/ws'));
    const res = await conn.readResponse();
    assert.equal(res.status, 200, res.raw);
    assertCommon(res);
    assert.equal(res.text, 'the ws file\n');
    conn.destroy();
  });
  await withServer({ args: ['--echo', '--ws-path', '/ws'] }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(reqBytes('GET', '/ws'));
    const res = await conn.readResponse();
    assertError(res, 404);
    conn.destroy();
    await assertWsWorks(port, { target: '/ws' });
  });
});

test('paths: several --ws-path options each accept, others refuse', async () => {
  await withServer({ args: ['--echo', '--ws-path', '/ws', '--ws-path', '/chat'] }, async ({ port }) => {
    await assertWsWorks(port, { target: '/ws' });
    await assertWsWorks(port, { target: '/chat?x=1' });
    await assertRefused(port, '/', {}, 404, /WebSocket/, { wsTarget: '/chat' });
    await assertRefused(port, '/Chat', {}, 404, /WebSocket/, { wsTarget: '/ws' });
  });
});

// ---------------------------------------------------------------------------
// 3. Subprotocols

test('subprotocols: the first the client offers that the server supports', async () => {
  await withServer({ args: ['--echo', '--protocol', 'chat', '--protocol', 'superchat'] }, async ({ port }) => {
    const cases = [
      [[['Sec-WebSocket-Protocol', 'superchat, chat']], 'superchat'],
      [[['Sec-WebSocket-Protocol', 'chat, superchat']], 'chat'],
      [[['Sec-WebSocket-Protocol', 'foo,superchat,chat']], 'superchat'],
      [[['Sec-WebSocket-Protocol', 'foo'], ['Sec-WebSocket-Protocol', 'superchat, chat']], 'superchat'],
      [[['Sec-WebSocket-Protocol', 'superchat'], ['Sec-WebSocket-Protocol', 'chat']], 'superchat'],
      [[['sec-websocket-protocol', 'foo, bar'], ['SEC-WEBSOCKET-PROTOCOL', 'chat']], 'chat'],
      [[], null],
      [[['Sec-WebSocket-Protocol', 'foo, bar']], null],
      [[['Sec-WebSocket-Protocol', 'Chat, SUPERCHAT']], null],
      [[['Sec-WebSocket-Protocol', 'chats']], null],
    ];
    for (const [extra, want] of cases) {
      const { res, conn, key } = await rawUpgrade(port, '/', { extra });
      try {
        assert101(res, key, want);
        conn.write(clientFrame(OP.TEXT, 'p'));
        assert.equal(hex((await readFrame(conn)).raw), '810170');
      } finally {
        conn.destroy();
      }
    }
    const c = await openClient(port, '/', ['chat']);
    assert.equal(c.ws.protocol, 'chat');
    c.ws.close();
    await c.waitClosed();
    const d = await openClient(port, '/', ['superchat', 'chat']);
    assert.equal(d.ws.protocol, 'superchat');
    d.ws.close();
    await d.waitClosed();
    const e = await openClient(port, '/');
    assert.equal(e.ws.protocol, '');
    e.ws.close();
    await e.waitClosed();
  });
});

test('subprotocols: none configured → never a Sec-WebSocket-Protocol header', async () => {
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    const { res, conn, key } = await rawUpgrade(port, '/', { extra: [['Sec-WebSocket-Protocol', 'chat']] });
    assert101(res, key, null);
    conn.destroy();
  });
});

// ---------------------------------------------------------------------------
// 4. Bytes behind the handshake

test('frames in the same packet as the handshake are not lost', async () => {
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    const key = newKey();
    const frames = Buffer.concat([
      clientFrame(OP.TEXT, 'first'),
      clientFrame(OP.BINARY, Buffer.from([0, 1, 2, 255])),
      clientFrame(OP.PING, 'pp'),
    ]);
    const { bytes } = upgradeBytes('/', { key });
    const conn = await Conn.open(port);
    conn.write(Buffer.concat([bytes, frames])); // one write, one segment on loopback
    const res = await conn.readResponse();
    assert101(res, key);
    assert.equal(hex((await readFrame(conn)).raw), hex(serverFrameBytes(OP.TEXT, 'first')));
    assert.equal(hex((await readFrame(conn)).raw), '8204000102ff');
    assert.equal(hex((await readFrame(conn)).raw), hex(serverFrameBytes(OP.PONG, 'pp')));
    // A close in the same packet too: the answer arrives, then the end.
    conn.destroy();
    const key2 = newKey();
    const conn2 = await Conn.open(port);
    conn2.write(Buffer.concat([upgradeBytes('/ws', { key: key2 }).bytes,
      clientFrame(OP.TEXT, 'a'), clientFrame(OP.CLOSE, closePayload(1000, 'done'))]));
    assert101(await conn2.readResponse(), key2);
    assert.equal(hex((await readFrame(conn2)).raw), '810161');
    await expectClose(conn2, 1000);
    assert.equal(hex(await conn2.waitEnd()), '', 'nothing after the close frame');
    conn2.destroy();
  });
});

// ---------------------------------------------------------------------------
// 5. Echo

test('echo with the ws client: text, binary, empty, 1 MiB, fragmented, ping/pong', async () => {
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    const c = await openClient(port, '/');
    try {
      c.ws.send('héllo wörld ✓');
      let m = await c.next();
      assert.equal(m.isBinary, false);
      assert.equal(m.data.toString('utf8'), 'héllo wörld ✓');

      const bin = Buffer.from([0, 1, 2, 3, 0xfe, 0xff, 0x80]);
      c.ws.send(bin);
      m = await c.next();
      assert.equal(m.isBinary, true);
      assert.equal(hex(m.data), hex(bin));

      c.ws.send('');
      m = await c.next();
      assert.equal(m.isBinary, false);
      assert.equal(m.data.length, 0);
      c.ws.send(Buffer.alloc(0));
      m = await c.next();
      assert.equal(m.isBinary, true);
      assert.equal(m.data.length, 0);

      const big = crypto.randomBytes(1 << 20);
      c.ws.send(big);
      m = await c.next();
      assert.equal(m.isBinary, true);
      assert.equal(m.data.length, big.length);
      assert.ok(m.data.equals(big), '1 MiB echoed intact');
      const bigText = 'abcdefghijklmnopqrstuvwxyz0123456789€'.repeat(30000);
      c.ws.send(bigText);
      m = await c.next();
      assert.equal(m.isBinary, false);
      assert.equal(m.data.toString('utf8'), bigText);

      c.ws.send('hel', { fin: false });
      c.ws.send('lo, ', { fin: false });
      c.ws.send('world', { fin: true });
      m = await c.next();
      assert.equal(m.isBinary, false);
      assert.equal(m.data.toString('utf8'), 'hello, world');

      c.ws.send(Buffer.from([1, 2]), { fin: false, binary: true });
      c.ws.send(Buffer.from([3]), { fin: true, binary: true });
      m = await c.next();
      assert.equal(m.isBinary, true);
      assert.equal(hex(m.data), '010203');

      // A multi-byte character split across fragments is still valid UTF-8.
      const euro = Buffer.from('€', 'utf8');
      c.ws.send(euro.subarray(0, 1), { fin: false, binary: false });
      c.ws.send(euro.subarray(1), { fin: true, binary: false });
      m = await c.next();
      assert.equal(m.data.toString('utf8'), '€');

      const payload = Buffer.from('ping-payload-123');
      c.ws.ping(payload);
      await c.until(() => c.pongs.length === 1, 'the pong');
      assert.equal(c.pongs[0].toString(), 'ping-payload-123');
      c.ws.ping();
      await c.until(() => c.pongs.length === 2, 'the empty pong');
      assert.equal(c.pongs[1].length, 0);

      // Order is kept across many small messages.
      for (let i = 0; i < 200; i++) c.ws.send(`m${i}`);
      for (let i = 0; i < 200; i++) assert.equal((await c.next()).data.toString(), `m${i}`);
      assert.equal(c.messages.length, 0, 'no extra messages');
    } finally {
      c.ws.close();
      await c.waitClosed();
    }
  });
});

test('echo with raw frames: exact bytes for 7-bit, 16-bit and 64-bit lengths, fragments, interleaved ping', async () => {
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    const conn = await rawOpen(port, '/');
    try {
      for (const n of [0, 125, 126, 65535, 65536]) {
        const p = crypto.randomBytes(n);
        conn.write(clientFrame(OP.BINARY, p));
        const f = await readFrame(conn);
        assert.equal(f.raw.length, serverFrameBytes(OP.BINARY, p).length, `frame size for ${n}`);
        assert.ok(f.raw.equals(serverFrameBytes(OP.BINARY, p)), `exact frame for ${n} bytes`);
      }
      // Fragmented text with a ping between the fragments (§5.4).
      conn.write(Buffer.concat([
        clientFrame(OP.TEXT, 'ab', { fin: false }),
        clientFrame(OP.PING, 'mid'),
        clientFrame(OP.CONT, 'cd', { fin: false }),
        clientFrame(OP.CONT, 'e', { fin: true }),
      ]));
      assert.equal(hex((await readFrame(conn)).raw), hex(serverFrameBytes(OP.PONG, 'mid')));
      assert.equal(hex((await readFrame(conn)).raw), hex(serverFrameBytes(OP.TEXT, 'abcde')));
      // Written one byte at a time.
      const one = clientFrame(OP.TEXT, 'slow');
      for (const b of one) {
        conn.write(Buffer.from([b]));
        await sleep(2);
      }
      assert.equal(hex((await readFrame(conn)).raw), hex(serverFrameBytes(OP.TEXT, 'slow')));
      // An unsolicited pong is ignored.
      conn.write(clientFrame(OP.PONG, 'unasked'));
      conn.write(clientFrame(OP.TEXT, 'after'));
      assert.equal(hex((await readFrame(conn)).raw), hex(serverFrameBytes(OP.TEXT, 'after')));
    } finally {
      conn.destroy();
    }
  });
});

// ---------------------------------------------------------------------------
// 6. Closing

test('close: ws client close(4000) is echoed with 4000 and the TCP connection ends', async () => {
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    const c = await openClient(port, '/');
    const sock = c.ws._socket; // the underlying net.Socket
    const ended = new Promise((r) => sock.once('close', r));
    c.ws.close(4000, 'bye');
    const info = await c.waitClosed();
    assert.equal(info.code, 4000);
    await Promise.race([ended, sleep(WAIT_MS).then(() => { throw new Error('TCP not closed'); })]);
    await assertWsWorks(port);
  });
});

test('close: raw close frame → the same code back, then the server closes TCP', async () => {
  await withServer({ args: ['--echo'] }, async ({ port }) => {
    for (const [sent, code] of [[closePayload(1000, 'normal'), 1000], [closePayload(4999), 4999],
      [closePayload(1001, 'going'), 1001], [Buffer.alloc(0), null]]) {
      const conn = await rawOpen(port, '/');
      conn.write(clientFrame(OP.TEXT, 'x'));
      assert.equal(hex((await readFrame(conn)).raw), '810178');
      conn.write(clientFrame(OP.CLOSE, sent));
      const f = await readFrame(conn);
      const c = parseClose(f);
      if (code === null) {
        // §5.5.1: no status received; the answer carries none or 1000.
        assert.ok(c.code === null || c.code === 1000, `close answer to an empty close: ${hex(f.raw)}`);
      } else {
        assert.equal(c.code, code, `close code echoed (${hex(f.raw)})`);
      }
      // The server closes TCP without our FIN, and sends nothing more.
      assert.equal(hex(await conn.waitEnd()), '', 'nothing after the close frame');
      conn.destroy();
    }
    // Data after our close frame is ignored (§5.5.1).
    const conn = await rawOpen(port, '/');
    conn.write(Buffer.concat([clientFrame(OP.CLOSE, closePayload(1000)), clientFrame(OP.TEXT, 'late')]));
    await expectClose(conn, 1000);
    assert.equal(hex(await conn.waitEnd()), '', 'no echo of data after a close');
    conn.destroy();
    await assertWsWorks(port);
  });
});

// Sends bad bytes on a fresh upgraded connection, expects a close frame
// with `code`, then the server closing TCP; then the server still works.
async function assertFails(port, bytes, code, what) {
  const conn = await rawOpen(port, '/');
  try {
    conn.write(clientFrame(OP.TEXT, 'ok'));
    assert.equal(hex((await readFrame(conn)).raw), '81026f6b', `${what}: echo before`);
    conn.write(bytes);
    let f = await readFrame(conn);
    assert.equal(f.opcode, OP.CLOSE, `${what}: a close frame, got ${hex(f.raw.subarray(0, 32))}`);
    const c = parseClose(f);
    assert.equal(c.code, code, `${what}: close code (frame ${hex(f.raw)})`);
    const rest = await conn.waitEnd();
    assert.equal(hex(rest), '', `${what}: nothing after the close frame`);
  } finally {
    conn.destroy();
  }
  await assertWsWorks(port);
}

// Each bad frame on its own connection and its own server, so that one
// failure does not hide the others.
const BAD_FRAMES = [
  ['invalid UTF-8 in a text frame', 1007, () => clientFrame(OP.TEXT, Buffer.from([0x68, 0xc3, 0x28]))],
  ['a UTF-16 surrogate encoded as UTF-8', 1007, () => clientFrame(OP.TEXT, Buffer.from([0xed, 0xa0, 0x80]))],
  ['an overlong UTF-8 sequence', 1007, () => clientFrame(OP.TEXT, Buffer.from([0xc0, 0xaf]))],
  ['UTF-8 above U+10FFFF', 1007, () => clientFrame(OP.TEXT, Buffer.from([0xf4, 0x90, 0x80, 0x80]))],
  ['invalid UTF-8 across fragments', 1007, () => Buffer.concat([
    clientFrame(OP.TEXT, Buffer.from([0xe2, 0x82]), { fin: false }),
    clientFrame(OP.CONT, Buffer.from([0x28]), { fin: true }),
  ])],
  ['a close reason that is not UTF-8', 1007,
    () => clientFrame(OP.CLOSE, Buffer.concat([closePayload(1000), Buffer.from([0xff])]))],
  ['an unmasked frame', 1002, () => clientFrame(OP.TEXT, 'unmasked', { mask: false })],
  ['RSV1 without a negotiated extension', 1002, () => clientFrame(OP.TEXT, 'rsv', { rsv: 4 })],
  ['reserved opcode 0x3', 1002, () => clientFrame(0x3, 'x')],
  ['reserved opcode 0xB', 1002, () => clientFrame(0xb, 'x')],
  ['a fragmented ping', 1002, () => clientFrame(OP.PING, 'x', { fin: false })],
  ['a ping with 126 bytes of payload', 1002, () => clientFrame(OP.PING, Buffer.alloc(126))],
  ['a continuation frame with nothing to continue', 1002, () => clientFrame(OP.CONT, 'x')],
  ['a new data frame inside a fragmented message', 1002, () => Buffer.concat([
    clientFrame(OP.TEXT, 'a', { fin: false }), clientFrame(OP.TEXT, 'b'),
  ])],
  ['a close frame with a 1-byte payload', 1002, () => clientFrame(OP.CLOSE, Buffer.from([0x03]))],
  ['close code 1005 on the wire', 1002, () => clientFrame(OP.CLOSE, closePayload(1005))],
  ['close code 999', 1002, () => clientFrame(OP.CLOSE, closePayload(999))],
];

for (const [what, code, bytes] of BAD_FRAMES) {
  test(`close codes: ${what} → ${code}`, async () => {
    await withServer({ args: ['--echo'] }, async ({ port }) => {
      await assertFails(port, bytes(), code, what);
    });
  });
}

test('close codes: --max-message 1000 → a 1001-byte message gets 1009, 1000 bytes are echoed', async () => {
  await withServer({ args: ['--echo', '--max-message', '1000'] }, async ({ port }) => {
    const conn = await rawOpen(port, '/');
    const p = Buffer.alloc(1000, 'a');
    conn.write(clientFrame(OP.TEXT, p));
    assert.ok((await readFrame(conn)).raw.equals(serverFrameBytes(OP.TEXT, p)), '1000 bytes echoed');
    conn.destroy();
    await assertFails(port, clientFrame(OP.TEXT, Buffer.alloc(1001, 'a')), 1009, '1001-byte text');
    await assertFails(port, clientFrame(OP.BINARY, Buffer.alloc(1001)), 1009, '1001-byte binary');
    await assertFails(port, Buffer.concat([
      clientFrame(OP.BINARY, Buffer.alloc(600), { fin: false }),
      clientFrame(OP.CONT, Buffer.alloc(401), { fin: true }),
    ]), 1009, '1001 bytes in two fragments');
    // The ws client sees the same code.
    const c = await openClient(port, '/');
    c.ws.send(Buffer.alloc(1001));
    assert.equal((await c.waitClosed()).code, 1009);
    await assertWsWorks(port);
  });
});

// ---------------------------------------------------------------------------
// 7. Keep-alive pings

test('keep-alive: a client that never answers pings is pinged, then dropped', async () => {
  await withServer({ args: ['--echo', '--ping-interval', '0.3'] }, async ({ port }) => {
    const conn = await rawOpen(port, '/');
    try {
      const f = await readFrame(conn);
      assert.equal(f.opcode, OP.PING, `a ping frame (0x9), got ${hex(f.raw)}`);
      const rest = await conn.waitEnd();
      // Whatever else came before the end may only be more pings: no
      // data, and no close frame is needed (the browser reports 1006).
      let buf = rest;
      while (buf.length) {
        const g = parseFrame(buf);
        assert.ok(g, `a whole frame before the end: ${hex(buf)}`);
        assert.ok(g.opcode === OP.PING || g.opcode === OP.CLOSE, `only pings or a close before the drop: ${hex(g.raw)}`);
        buf = buf.subarray(g.size);
      }
    } finally {
      conn.destroy();
    }
    await assertAlive(port);
  });
});

test('keep-alive: a ws client answers pings and stays connected past several intervals', async () => {
  await withServer({ args: ['--echo', '--ping-interval', '0.3'] }, async ({ port }) => {
    const c = await openClient(port, '/');
    try {
      await sleep(1600);
      assert.ok(c.pings.length >= 1, `the server pinged (${c.pings.length})`);
      assert.equal(c.closeInfo, null, `still connected: ${JSON.stringify(c.closeInfo)}`);
      assert.equal(c.ws.readyState, WebSocket.OPEN);
      c.ws.send('still here');
      assert.equal((await c.next()).data.toString(), 'still here');
    } finally {
      c.ws.close();
      await c.waitClosed();
    }
  });
});

test('keep-alive: a raw client answering pings by hand stays connected', async () => {
  await withServer({ args: ['--echo', '--ping-interval', '0.3'] }, async ({ port }) => {
    const conn = await rawOpen(port, '/');
    try {
      let pings = 0;
      const t0 = Date.now();
      while (Date.now() - t0 < 1200) {
        const f = await readFrame(conn, 2000);
        assert.equal(f.opcode, OP.PING, hex(f.raw));
        pings++;
        conn.write(clientFrame(OP.PONG, f.payload));
      }
      assert.ok(pings >= 2, `pinged repeatedly (${pings})`);
      conn.write(clientFrame(OP.TEXT, 'alive'));
      let f = await readFrame(conn);
      while (f.opcode === OP.PING) f = await readFrame(conn);
      assert.equal(hex(f.raw), hex(serverFrameBytes(OP.TEXT, 'alive')));
    } finally {
      conn.destroy();
    }
  });
});

// ---------------------------------------------------------------------------
// 8. Shutdown and the close timeout

async function withOwnServer(args, fn) {
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  let srv;
  try {
    srv = await startServer(tree.pub, args);
    await fn(srv);
  } finally {
    if (srv && !srv.exit) await srv.stop();
    await tree.cleanup();
  }
}

test('shutdown: SIGTERM sends 1001 to a raw client that never answers, the close times out, exit 0', async () => {
  await withOwnServer(['--echo', '--close-timeout', '0.5'], async (srv) => {
    const conn = await rawOpen(srv.port, '/');
    try {
      conn.write(clientFrame(OP.TEXT, 'hi'));
      assert.equal(hex((await readFrame(conn)).raw), '81026869');
      srv.signal('SIGTERM');
      await expectClose(conn, 1001);
      // We never answer: the server must end the connection by itself.
      assert.equal(hex(await conn.waitEnd(WAIT_MS)), '', 'nothing after the close frame');
      const res = await srv.waitExit(WAIT_MS);
      assert.ok(res, `server exited after SIGTERM\n${srv.tail()}`);
      assert.deepEqual(res, { code: 0, signal: null }, srv.tail());
    } finally {
      conn.destroy();
    }
  });
});

test('shutdown: SIGTERM with a raw client that answers the close → exit 0', async () => {
  await withOwnServer(['--echo', '--close-timeout', '0.5'], async (srv) => {
    const conn = await rawOpen(srv.port, '/');
    try {
      srv.signal('SIGTERM');
      await expectClose(conn, 1001);
      conn.write(clientFrame(OP.CLOSE, closePayload(1001)));
      assert.equal(hex(await conn.waitEnd()), '', 'nothing after the close frame');
      const res = await srv.waitExit(WAIT_MS);
      assert.deepEqual(res, { code: 0, signal: null }, srv.tail());
    } finally {
      conn.destroy();
    }
  });
});

test('shutdown: SIGTERM with ws clients connected → they see 1001, exit 0', async () => {
  await withOwnServer(['--echo', '--close-timeout', '0.5'], async (srv) => {
    const a = await openClient(srv.port, '/');
    const b = await openClient(srv.port, '/ws');
    a.ws.send('x');
    assert.equal((await a.next()).data.toString(), 'x');
    srv.signal('SIGTERM');
    assert.equal((await a.waitClosed()).code, 1001);
    assert.equal((await b.waitClosed()).code, 1001);
    const res = await srv.waitExit(WAIT_MS);
    assert.deepEqual(res, { code: 0, signal: null }, srv.tail());
  });
});

// ---------------------------------------------------------------------------
// 9. Without --echo

test('non-echo mode: messages are accepted, the connection stays open, pings get pongs', async () => {
  await withServer({}, async ({ port }) => {
    const c = await openClient(port, '/');
    try {
      c.ws.send('hello room');
      c.ws.send(Buffer.from([1, 2, 3]));
      c.ws.send('{"type":"message","text":"x"}');
      c.ws.ping('np');
      await c.until(() => c.pongs.length === 1, 'the pong');
      assert.equal(c.pongs[0].toString(), 'np');
      await sleep(200);
      assert.equal(c.closeInfo, null, `still open: ${JSON.stringify(c.closeInfo)}`);
      assert.equal(c.ws.readyState, WebSocket.OPEN);
      c.ws.ping('again');
      await c.until(() => c.pongs.length === 2, 'the second pong');
      assert.equal(c.pongs[1].toString(), 'again');
    } finally {
      c.ws.close(1000);
      const info = await c.waitClosed();
      assert.equal(info.code, 1000);
    }
    await assertWsWorks(port, { echo: false });
  });
});
