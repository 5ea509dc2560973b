// tests/e2e/backpressure.test.mjs — a client that stops reading while its
// room is busy is dropped as a slow consumer once its queue passes
// --max-backlog; the healthy members of the same room keep receiving every
// message, in order, and the server keeps serving new clients.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/backpressure.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { makeTree, startServer, HOST } from './lib/server.mjs';
import { upgradeBytes } from './lib/ws.mjs';
import { ChatClient } from './lib/chat.mjs';

const MSGS = 1000;
const WINDOW = 16; // messages the sender may be ahead of the reader
const TEXT = 'x'.repeat(15000);

// A raw WebSocket client that sends its upgrade and then never reads.
function stalledClient(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, HOST, () => {
      sock.write(upgradeBytes('/?room=busy').bytes);
      sock.pause(); // bytes pile up in the kernel, then in wshub's queue
      resolve(sock);
    });
    sock.on('error', reject);
  });
}

// Reads everything left and resolves with the byte count once the server
// has ended the connection (FIN or reset), or rejects after ms.
function drainUntilClosed(sock, ms) {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    const timer = setTimeout(() => reject(new Error(`still open after ${ms} ms (${bytes} bytes read)`)), ms);
    sock.on('data', (d) => { bytes += d.length; });
    sock.on('error', () => {}); // a reset is an ending too
    sock.on('close', () => { clearTimeout(timer); resolve(bytes); });
    sock.resume();
  });
}

test('a client that stops reading is dropped; the room keeps every message', async () => {
  const tree = await makeTree({ 'index.html': 'x' });
  const srv = await startServer(tree.pub, ['--threads', '1', '--max-backlog', '1M', '--msg-rate', '0',
    '--max-text', '16000', '--log-level', 'warn']);
  try {
    const slow = await stalledClient(srv.port);
    const sender = await ChatClient.open(srv.port, { room: 'busy' });
    await sender.welcome();
    const reader = await ChatClient.open(srv.port, { room: 'busy' });
    await reader.welcome();
    // The sender keeps at most WINDOW messages ahead of the healthy reader
    // (a room busy at the pace its readers keep up with); ~15 MB in all, far
    // more than the stalled client's kernel buffers and its 1 MiB backlog.
    // Every healthy member gets every message, once, in order.
    let sent = 0;
    const top = () => { while (sent < MSGS && sent < received + WINDOW) sender.send({ type: 'message', text: `${sent++} ${TEXT}` }); };
    let received = 0;
    let last = 0;
    top();
    for (let i = 0; i < MSGS; i++) {
      const m = await reader.next({ type: 'message' }, 20000);
      received++;
      top();
      assert.equal(m.text.split(' ')[0], String(i), 'messages in order');
      if (last) assert.equal(m.id, last + 1, 'ids without a gap');
      last = m.id;
    }
    // The stalled client was cut off: the server ended its connection, and it
    // got far less than the ~15 MB the room produced.
    // Memory stayed bounded: the stalled client's queue was capped at its
    // backlog, not the ~15 MB the room produced.
    const rss = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${srv.pid}/status`, 'utf8'))[1]);
    // (Under valgrind or ASan the RSS is the tool's, not wshub's: the plain
    // build's run is the one that measures.)
    if (!process.env.WSHUB_WRAPPER && !/asan/.test(process.env.WSHUB_BIN || ''))
      assert.ok(rss < 64 * 1024, `server RSS ${rss} KiB stays bounded`);
    const got = await drainUntilClosed(slow, 20000);
    assert.ok(got < MSGS * TEXT.length, `a dropped slow consumer got only part (${got} bytes)`);
    assert.match(srv.stderr, /slow consumer/, 'the drop is logged');
    // Everyone else is unaffected: a new client still gets in and chats.
    const fresh = await ChatClient.open(srv.port, { room: 'busy' });
    const w = await fresh.welcome();
    assert.equal(w.type, 'welcome');
    fresh.send('still here');
    await reader.next({ type: 'message', text: 'still here' });
    for (const c of [sender, reader, fresh]) await c.close();
  } finally {
    const r = await srv.stop();
    await tree.cleanup?.();
    assert.equal(r.wasRunning, true, 'the server was still running');
    assert.equal(r.code, 0, `exit 0; stderr:\n${srv.tail()}`);
  }
});
