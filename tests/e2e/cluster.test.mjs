// tests/e2e/cluster.test.mjs — `wshub --redis URL`: several nodes sharing
// their chat rooms through a real Redis (issue 10, first slice), end to
// end: bad URLs (exit 2) and an unreachable Redis (the node chats alone),
// one room across three nodes and across a --threads 2 node (every message
// exactly once, the same order and ids everywhere, ids consecutive, own
// right, client ids unique), Redis killed mid-chat (each node chats alone,
// nothing crosses) and restarted empty (the nodes come back by themselves;
// the node that saw fewer ids speaks first: nothing lost, no id given
// again, ids keep increasing), and POST /messages (202 without "id")
// reaching a WebSocket client of another node.
//
// Ownership: each test starts its own redis-server (a free loopback port,
// no persistence) and stops it by PID (SIGTERM, SIGKILL after 5 s), also
// when the test fails; a process.on('exit') hook SIGKILLs any left over.
// The wshub nodes come from lib/server.mjs (--port 0, stopped by PID, must
// exit 0); every WebSocket client is opened through a Tracker and closed
// before the nodes stop. Redis is spoken to with raw RESP over node:net.
// Nothing asserts speed: waits are bounded so that what must happen fails
// instead of hanging; the reconnection waits poll with probe messages.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/cluster.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  HOST, WAIT_MS, INDEX_HTML, makeTree, startServer, runToExit, stopAndCheck, Conn, reqBytes,
} from './lib/server.mjs';
import { Tracker, uniqueRoom, assertMessageObject, sleep, QUIET_MS } from './lib/chat.mjs';
import { freePort, redisCmd, Redis } from './lib/redis.mjs';

// Bounds on waiting for deliveries across nodes (generous: valgrind, CI).
const DELIVERY_MS = 4 * WAIT_MS;
// How long a node may take to find a (restarted) Redis (the spec says ~5 s;
// its backoff tops out at 5 s; this bounds the polling, it is not a speed
// assertion).
const RECOVER_MS = 15000;
const PROBE_EVERY_MS = 400;

// ---------------------------------------------------------------------------
// A cluster: Redis instances, nodes and clients of one test, all stopped at
// the end (nodes must exit 0 on SIGTERM when the test body succeeded).

async function withCluster(fn) {
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  const nodes = [];
  const redises = [];
  const tr = new Tracker();
  const ctx = {
    tr,
    async redis(port) {
      const r = await Redis.start(port ?? await freePort());
      redises.push(r);
      return r;
    },
    async node(redisPort, args = []) {
      const srv = await startServer(tree.pub, ['--redis', `redis://${HOST}:${redisPort}`, ...args]);
      nodes.push(srv);
      return srv;
    },
    // SIGKILL: a node that stops without a word (not checked at the end).
    async crash(srv) {
      srv.signal('SIGKILL');
      await srv.waitExit(WAIT_MS);
      nodes.splice(nodes.indexOf(srv), 1);
    },
  };
  let ok = false;
  try {
    await fn(ctx);
    ok = true;
  } finally {
    await tr.closeAll();
    let err = null;
    for (const n of nodes) {
      if (ok && !err) {
        try { await stopAndCheck(n); } catch (e) { err = e; }
      }
      if (!n.exit) await n.stop();
    }
    for (const r of redises) await r.stop();
    await tree.cleanup();
    if (err) throw err;
  }
}

// ---------------------------------------------------------------------------
// Chat helpers (everything is read from c.received, in arrival order)

const roomMsgs = (list) => list.filter((m) => m.type === 'message');
const hasText = (c, text) => c.received.some((m) => m.type === 'message' && m.text === text);
const textOf = (c, text) => c.received.find((m) => m.type === 'message' && m.text === text);
const maxId = (cs) => Math.max(0, ...cs.flatMap((c) => roomMsgs(c.received).map((m) => m.id)));

// Polls check() (async) until it returns something other than undefined.
async function until(check, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    let r;
    try { r = await check(); } catch { /* not yet */ }
    if (r !== undefined) return r;
    if (Date.now() > end) throw new Error(`gave up after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

// `sender` sends a probe message every PROBE_EVERY_MS until one has
// reached every client of `to` (a node hears a room only once Redis
// confirmed its subscription). Every later probe then reaches them too:
// waits for the last one sent, so none is still on its way, and returns
// the copy the last of `to` got. Bounded by `ms`.
async function probeUntil(sender, to, tag, ms) {
  const end = Date.now() + ms;
  const atAll = (text) => to.every((c) => hasText(c, text));
  const sent = [];
  for (;;) {
    const text = `${tag} probe ${sent.length}`;
    sent.push(text);
    sender.send(text);
    const next = Date.now() + PROBE_EVERY_MS;
    while (Date.now() < next && !sent.some(atAll)) await sleep(25);
    if (sent.some(atAll)) {
      for (const c of to) {
        await c.waitUntil(() => (hasText(c, text) || undefined), DELIVERY_MS,
          `probe ${JSON.stringify(text)} (an earlier one reached every client)`);
      }
      return textOf(to[to.length - 1], text);
    }
    if (Date.now() > end) {
      throw new Error(`${tag}: no probe of ${sender.label()} reached ` +
        `${to.map((c) => c.label()).join(', ')} within ${ms} ms (${sent.length} sent)\n` +
        to.map((c) => c.dump()).join('\n'));
    }
  }
}

// Every sender sends `per` messages, interleaved (round robin); every
// client of `clients` must receive each exactly once, in the same order
// with the same ids everywhere, ids consecutive and above `above`, own
// true exactly on the sender's copy, from = the sender, and each sender's
// messages in the order sent. Returns the common list.
async function exchangeAll(clients, senders, room, tag, per, above) {
  const start = clients.map((c) => c.received.length);
  const texts = [];
  for (let k = 0; k < per; k++) {
    senders.forEach((s, i) => {
      const text = `${tag} ${i} ${k}`;
      texts.push(text);
      s.send(text);
    });
  }
  for (const c of clients) {
    await c.waitUntil(() => (texts.every((t) => hasText(c, t)) || undefined), DELIVERY_MS,
      `all ${texts.length} "${tag}" messages at ${c.label()}`);
  }
  await sleep(QUIET_MS); // duplicates would land here
  let reference = null;
  clients.forEach((c, j) => {
    const list = roomMsgs(c.received.slice(start[j]));
    const where = `${c.label()} (${tag})`;
    assert.equal(list.length, texts.length,
      `${where}: exactly ${texts.length} room messages, got ${list.length}: ` +
      `${JSON.stringify(list.map((m) => [m.id, m.text]))}`);
    assert.deepEqual([...list.map((m) => m.text)].sort(), [...texts].sort(),
      `${where}: each message exactly once`);
    for (const m of list) {
      const [, i, k] = m.text.split(' ').map(Number);
      assertMessageObject(m, { room, from: senders[i].member, own: senders[i] === c }, `${where} `);
      assert.ok(Number.isInteger(k));
    }
    list.forEach((m, x) => {
      assert.equal(m.id, list[0].id + x, `${where}: ids consecutive: ${list.map((n) => n.id)}`);
    });
    assert.ok(list[0].id > above, `${where}: first id ${list[0].id} above ${above}`);
    senders.forEach((s, i) => {
      const ks = list.filter((m) => m.text.startsWith(`${tag} ${i} `)).map((m) => Number(m.text.split(' ')[2]));
      assert.deepEqual(ks, [...Array(per).keys()], `${where}: ${s.label()}'s messages in the order sent`);
    });
    const seq = list.map((m) => `${m.id} ${m.from.id} ${m.text}`);
    if (reference === null) reference = seq;
    else assert.deepEqual(seq, reference, `${where}: the same order and ids as ${clients[0].label()}`);
  });
  return roomMsgs(clients[0].received.slice(start[0]));
}

function assertUniqueIds(clients) {
  const ids = clients.map((c) => c.id);
  ids.forEach((id) => assert.match(id, /^c\d+$/, `client id ${id}`));
  assert.equal(new Set(ids).size, ids.length, `client ids unique across nodes: ${ids}`);
}

// n clients per node in room (welcome read); flat list, node by node.
async function openClients(tr, nodes, n, room) {
  const cs = [];
  for (const node of nodes) {
    for (let i = 0; i < n; i++) cs.push(await tr.join(node.port, { room }));
  }
  return cs;
}

// ===========================================================================

test('--redis: a bad URL exits 2 naming --redis; an unreachable Redis still chats locally', async () => {
  for (const url of ['http://x', 'redis://h:0', 'redis://h:65536', 'redis://', 'redis://h:12x',
    'redis://h/db', '']) {
    const r = await runToExit(['--host', HOST, '--port', '0', '--redis', url]);
    assert.equal(r.signal, null, `--redis ${JSON.stringify(url)}: exited normally\n${r.stderr}`);
    assert.equal(r.code, 2, `--redis ${JSON.stringify(url)}: exit status 2\n${r.stderr}`);
    assert.ok(r.stderr.includes('--redis'), `--redis ${JSON.stringify(url)}: stderr names --redis: ` +
      JSON.stringify(r.stderr));
    assert.ok(!/listening on/.test(r.stderr), `--redis ${JSON.stringify(url)}: did not listen`);
  }

  await withCluster(async ({ tr, node }) => {
    const nowhere = await freePort(); // nothing listens there
    const srv = await node(nowhere);
    const room = uniqueRoom('alone');
    const [a, b] = await openClients(tr, [srv], 2, room);
    assertUniqueIds([a, b]);
    a.send('alone 1');
    await b.waitUntil(() => hasText(b, 'alone 1') || undefined, DELIVERY_MS, 'alone 1');
    b.send('alone 2');
    for (const c of [a, b]) {
      await c.waitUntil(() => hasText(c, 'alone 2') || undefined, DELIVERY_MS, 'alone 2');
      const list = roomMsgs(c.received);
      assert.deepEqual(list.map((m) => [m.id, m.text]), [[1, 'alone 1'], [2, 'alone 2']],
        `${c.label()}: ids 1 and 2, in order`);
      assertMessageObject(list[0], { room, from: a.member, own: c === a });
      assertMessageObject(list[1], { room, from: b.member, own: c === b });
    }
  });
});

test('three nodes (--threads 1), two clients each: 60 messages exactly once, one order, consecutive ids', async () => {
  await withCluster(async ({ tr, redis, node }) => {
    const r = await redis();
    const nodes = [await node(r.port, ['--threads', '1']), await node(r.port, ['--threads', '1']),
      await node(r.port, ['--threads', '1'])];
    const room = uniqueRoom('three');
    const cs = await openClients(tr, nodes, 2, room);
    assertUniqueIds(cs);
    await probeUntil(cs[0], cs, 'three', RECOVER_MS);
    // Interleaved across nodes: node 0, 1, 2, 0, 1, 2 for each round.
    const senders = [cs[0], cs[2], cs[4], cs[1], cs[3], cs[5]];
    const list = await exchangeAll(cs, senders, room, 'm', 10, maxId(cs));
    assert.equal(list.length, 60);
    // The ids came from Redis: the room's counter is the last one.
    const seq = await redisCmd(r.port, 'GET', `wshub:room:${room}:seq`);
    assert.equal(seq, String(list[59].id), `Redis's counter for ${room} is the last id`);
  });
});

test('a --threads 2 node and a --threads 1 node: exactly once, one order, consecutive ids', async () => {
  await withCluster(async ({ tr, redis, node }) => {
    const r = await redis();
    const nodes = [await node(r.port, ['--threads', '2']), await node(r.port, ['--threads', '1'])];
    const room = uniqueRoom('threads');
    const cs = await openClients(tr, nodes, 3, room);
    assertUniqueIds(cs);
    await probeUntil(cs[3], cs, 'threads', RECOVER_MS);
    const senders = [cs[0], cs[3], cs[1], cs[4], cs[2], cs[5]];
    const list = await exchangeAll(cs, senders, room, 't', 10, maxId(cs));
    assert.equal(list.length, 60);
  });
});

test('Redis killed: each node chats alone; restarted empty: the nodes come back, ids keep increasing', async () => {
  await withCluster(async ({ tr, redis, node }) => {
    const r1 = await redis();
    const A = await node(r1.port, ['--threads', '1']);
    const B = await node(r1.port, ['--threads', '1']);
    const room = uniqueRoom('down');
    const [a1, a2] = await openClients(tr, [A], 2, room);
    const [b1] = await openClients(tr, [B], 1, room);
    const all = [a1, a2, b1];
    await probeUntil(a1, all, 'before', RECOVER_MS);
    await exchangeAll(all, all, room, 'before', 3, maxId(all));
    const before = maxId(all);

    // Redis dies. Node A keeps chatting between its own clients.
    await r1.kill();
    const probe = await probeUntil(a1, [a1, a2], 'down', RECOVER_MS);
    assert.ok(probe.id > before, `ids continue above ${before} while Redis is down: ${probe.id}`);
    const down = await exchangeAll([a1, a2], [a1, a2], room, 'down', 3, probe.id);
    assert.equal(down[0].id, probe.id + 1, 'the ids go on from the probe\'s');
    await b1.expectNothing((m) => m.type === 'message' && m.text.startsWith('down'), QUIET_MS);
    assert.equal(roomMsgs(b1.received).filter((m) => m.id > before).length, 0,
      `${b1.label()} on the other node gets nothing while Redis is down`);
    const seen = maxId(all);

    // Redis is back on the same port, empty. Once it holds both nodes'
    // subscriptions to the room again (channel name: src/cluster.h), node B,
    // whose clients saw the fewer ids, speaks first: its probes must reach
    // node A, and every id Redis gives from now on must be above every id
    // any client saw (none reused, none dropped as old by node A).
    const r2 = await redis(r1.port);
    await until(async () => {
      const v = await redisCmd(r2.port, 'PUBSUB', 'NUMSUB', `wshub:room:${room}`);
      return v[1] === 2 || undefined;
    }, RECOVER_MS, `both nodes subscribed to ${room} on the restarted Redis`);
    const aStart = a1.received.length;
    const up = await probeUntil(b1, all, 'up', RECOVER_MS);
    const aIds = roomMsgs(a1.received.slice(aStart)).map((m) => m.id);
    const log = await redisCmd(r2.port, 'XRANGE', `wshub:room:${room}:log`, '-', '+');
    const logIds = log.map((e) => Number(e[0].split('-')[0]));
    const ctx = `Redis's Stream since its restart: ${logIds}; node A got ${aIds}; ` +
      `ids before the outage up to ${before}, highest seen by any client ${seen}`;
    assert.deepEqual(logIds.filter((id) => !aIds.includes(id)), [],
      `every message Redis numbered reached ${a1.label()} on node A (${ctx})`);
    assert.deepEqual(logIds.filter((id) => id <= seen), [],
      `no id at or below ${seen} given again (${ctx})`);
    assert.ok(up.id > seen, `the first id heard across nodes again (${up.id}) is above ${seen}`);
    const back = await probeUntil(a1, all, 'back', RECOVER_MS);
    assert.ok(back.id > up.id, `ids keep increasing: ${back.id} after ${up.id}`);
    const after = await exchangeAll(all, all, room, 'after', 3, maxId(all));
    assert.ok(after[0].id > seen);
  });
});

test('POST /messages with Redis up: 202 {"type":"accepted"} without id; a client of another node gets it', async () => {
  await withCluster(async ({ tr, redis, node }) => {
    const r = await redis();
    const A = await node(r.port, ['--threads', '1']);
    const B = await node(r.port, ['--threads', '1']);
    const room = uniqueRoom('post');
    const [a1] = await openClients(tr, [A], 1, room);
    const [b1] = await openClients(tr, [B], 1, room);
    const probe = await probeUntil(b1, [a1, b1], 'post', RECOVER_MS);

    const text = 'posted over HTTP';
    const body = JSON.stringify({ type: 'message', text });
    const conn = await Conn.open(A.port);
    let res;
    try {
      conn.write(reqBytes('POST', `/messages?room=${room}`,
        { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) },
        body));
      res = await conn.readResponse();
    } finally {
      conn.destroy();
    }
    const what = `POST /messages → ${res.status}\n${res.raw}${res.text}`;
    assert.equal(res.status, 202, `202 Accepted: ${what}`);
    assert.equal((res.get('content-type') || '').split(';')[0].trim(), 'application/json',
      `Content-Type: ${what}`);
    assert.deepEqual(JSON.parse(res.text), { type: 'accepted' }, `the body, without "id": ${what}`);
    const token = res.get('x-wshub-session');
    assert.match(token ?? '', /^[0-9a-f]{32}$/, `a session token: ${what}`);

    const mb = await b1.next({ type: 'message', text }, DELIVERY_MS);
    const ma = await a1.next({ type: 'message', text }, DELIVERY_MS);
    assertMessageObject(mb, { room, text, own: false, id: probe.id + 1 }, `${b1.label()} on node B: `);
    assertMessageObject(ma, { room, text, own: false, id: probe.id + 1 }, `${a1.label()} on node A: `);
    assert.deepEqual(mb.from, ma.from, 'the same sender on both nodes');
    assert.ok(![a1.id, b1.id].includes(mb.from.id), `from is the HTTP session: ${JSON.stringify(mb.from)}`);
    await b1.expectNothing({ type: 'message', text });
  });
});

test('direct messages across nodes: delivered to the client on the other node, the sender gets its own copy; an unknown id there → unknown_client', async () => {
  await withCluster(async ({ tr, redis, node }) => {
    const r = await redis();
    const A = await node(r.port, ['--threads', '2']);
    const B = await node(r.port, ['--threads', '1']);
    const room = uniqueRoom('dm');
    const [a1] = await openClients(tr, [A], 1, room);
    const [b1] = await openClients(tr, [B], 1, room);
    await probeUntil(b1, [a1, b1], 'dm', RECOVER_MS); // both nodes up and subscribed
    assert.notEqual(a1.id, b1.id);

    const text = 'psst, bob\nacross nodes ✓';
    a1.send({ type: 'message', to: b1.id, text });
    const got = await b1.next({ type: 'direct', text }, DELIVERY_MS);
    assert.deepEqual(got.from, a1.member, 'from: the sender as its node knows it');
    assert.deepEqual(got.to, b1.member, 'to: the recipient');
    assert.equal(got.own, false);
    assert.deepEqual(got.params, { value: text });
    const mine = await a1.next({ type: 'direct', text }, DELIVERY_MS);
    assert.deepEqual(mine.to, b1.member, "the sender's copy names the recipient with its nick");
    assert.deepEqual(mine.from, a1.member);
    assert.equal(mine.own, true);

    // And back, from the --threads 1 node to the --threads 2 one.
    b1.send({ type: 'message', to: a1.id, text: 'hi ann' });
    const back = await a1.next({ type: 'direct', text: 'hi ann' }, DELIVERY_MS);
    assert.deepEqual(back.from, b1.member);
    assert.equal(back.own, false);
    assert.equal((await b1.next({ type: 'direct', text: 'hi ann' }, DELIVERY_MS)).own, true);

    // An id that names B's node but no client there.
    const n = BigInt(b1.id.slice(1));
    const ghost = `c${n + 1000n}`;
    a1.send({ type: 'message', to: ghost, text: 'anyone?' });
    const err = await a1.next({ type: 'error' }, DELIVERY_MS);
    assert.equal(err.code, 'unknown_client');
    // Nothing reached b1 from it.
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(b1.received.filter((m) => m.text === 'anyone?').length, 0);
  });
});

// ---------------------------------------------------------------------------
// History, resume and presence across nodes; a node cut off from Redis.

// A TCP relay on loopback between one node and Redis, which the test can
// cut (every connection dropped, new ones refused) and restore: one node
// loses Redis while the others keep it.
class Relay {
  static async start(target) {
    const r = new Relay();
    r.target = target;
    r.socks = new Set();
    r.port = await freePort();
    await r.listen();
    return r;
  }

  listen() {
    this.server = net.createServer((s) => {
      const up = net.connect({ port: this.target, host: HOST });
      for (const x of [s, up]) {
        this.socks.add(x);
        x.on('close', () => this.socks.delete(x));
        x.on('error', () => {});
      }
      s.pipe(up);
      up.pipe(s);
      s.on('close', () => up.destroy());
      up.on('close', () => s.destroy());
    });
    return new Promise((res, rej) => {
      this.server.once('error', rej);
      this.server.listen(this.port, HOST, res);
    });
  }

  async cut() {
    const closed = new Promise((res) => this.server.close(res));
    for (const s of this.socks) s.destroy();
    await closed;
  }

  restore() { return this.listen(); }

  async stop() {
    for (const s of this.socks) s.destroy();
    if (this.server.listening) await new Promise((res) => this.server.close(res));
  }
}

// Messages of the room after `after`, as one client received them live.
const liveAfter = (c, after) => roomMsgs(c.received).filter((m) => m.id > after);

test('resume on another node: the Stream gives the history a node never heard; welcome and resume', async () => {
  await withCluster(async ({ tr, redis, node }) => {
    const r = await redis();
    const A = await node(r.port, ['--threads', '1']);
    const B = await node(r.port, ['--threads', '2']);
    const room = uniqueRoom('resume');
    const [a1] = await openClients(tr, [A], 1, room);
    await probeUntil(a1, [a1], 'resume', RECOVER_MS); // A subscribed: ids come from Redis
    const sent = await exchangeAll([a1], [a1], room, 'hist', 6, maxId([a1]));
    const ids = sent.map((m) => m.id);

    // A client of node B, whose node has no member of the room yet,
    // resumes after the second message: the rest, from Redis' Stream.
    const after = ids[1];
    const c = await tr.join(B.port, { room, after: String(after) });
    const w = c.welcomeMsg;
    assert.equal(w.room, room);
    assert.equal(w.last_id, ids[5], `welcome.last_id is the room's last id: ${JSON.stringify(w)}`);
    assert.deepEqual(w.history.map((m) => [m.id, m.text]), sent.slice(2).map((m) => [m.id, m.text]),
      `the welcome resumes after ${after} with what node A sent (node B never heard it)`);
    for (const m of w.history) {
      assertMessageObject(m, { room, from: a1.member, own: false }, 'history on node B: ');
    }
    await c.expectNothing((m) => m.type === 'gap');

    // A plain welcome on B (room now followed there) has the whole history.
    const d = await tr.join(B.port, { room });
    assert.deepEqual(d.welcomeMsg.history.filter((m) => m.text.startsWith('hist'))
      .map((m) => m.id), ids, 'a plain welcome on node B lists every message');

    // And live chat goes on across both, ids consecutive after the history.
    const live = await exchangeAll([a1, c, d], [c, a1], room, 'live', 2, ids[5]);
    assert.equal(live[0].id, ids[5] + 1, 'the next id follows the history');

    // A third node: {"type":"resume"} of a room its client joins there.
    // (Once node C is linked: a probe of its client reaches node A.)
    const C = await node(r.port, ['--threads', '1']);
    const elsewhere = uniqueRoom('elsewhere');
    const e = await tr.join(C.port, { room: elsewhere });
    a1.send({ type: 'join', room: elsewhere });
    await a1.next({ type: 'joined', room: elsewhere }, DELIVERY_MS);
    await probeUntil(e, [a1], 'linked', RECOVER_MS);
    e.send({ type: 'resume', room, after: ids[3] });
    const joined = await e.next({ type: 'joined', room }, DELIVERY_MS);
    assert.equal(joined.last_id, live[live.length - 1].id, `joined.last_id: ${JSON.stringify(joined)}`);
    const h = await e.next({ type: 'history', room }, DELIVERY_MS);
    assert.deepEqual(h.messages.map((m) => m.id),
      [...ids.slice(4), ...live.map((m) => m.id)], 'resume on node C after message 4');
    assert.equal(h.after, ids[3]);
  });
});

test('presence across nodes: members lists, join, nick and leave notices, member_count', async () => {
  await withCluster(async ({ tr, redis, node }) => {
    const r = await redis();
    const A = await node(r.port, ['--threads', '1']);
    const B = await node(r.port, ['--threads', '1']);
    const C = await node(r.port, ['--threads', '2']);
    const room = uniqueRoom('who');
    const a1 = await tr.join(A.port, { room, nick: 'ann' });
    await probeUntil(a1, [a1], 'who', RECOVER_MS);

    const b1 = await tr.join(B.port, { room, nick: 'bob' });
    const wb = b1.welcomeMsg;
    assert.deepEqual(wb.members.map((m) => m.id).sort(), [a1.id, b1.id].sort(),
      `node B's welcome lists ann of node A: ${JSON.stringify(wb.members)}`);
    assert.equal(wb.member_count, 2);
    const j = await a1.next({ type: 'join', room }, DELIVERY_MS);
    assert.deepEqual(j.member, b1.member, 'ann hears that bob joined on node B');

    const c1 = await tr.join(C.port, { room, nick: 'cy' });
    assert.deepEqual(c1.welcomeMsg.members.map((m) => m.nick).sort(), ['ann', 'bob', 'cy']);
    assert.equal(c1.welcomeMsg.member_count, 3);
    for (const x of [a1, b1]) {
      const n = await x.next({ type: 'join', room }, DELIVERY_MS);
      assert.deepEqual(n.member, c1.member, `${x.label()} hears cy join`);
    }

    b1.send({ type: 'nick', name: 'robert' });
    for (const x of [a1, c1]) {
      const n = await x.next({ type: 'nick', room }, DELIVERY_MS);
      assert.deepEqual(n.member, { id: b1.id, nick: 'robert' }, `${x.label()}: the new nick`);
      assert.equal(n.old, 'bob');
    }
    const d1 = await tr.join(A.port, { room });
    assert.deepEqual(d1.welcomeMsg.members.find((m) => m.id === b1.id), { id: b1.id, nick: 'robert' },
      'a later welcome has the new nick');
    assert.equal(d1.welcomeMsg.member_count, 4);

    await b1.close();
    for (const x of [a1, c1, d1]) {
      const n = await x.next({ type: 'leave', room }, DELIVERY_MS);
      assert.equal(n.member.id, b1.id, `${x.label()} hears robert leave`);
    }
    const e1 = await tr.join(C.port, { room });
    assert.deepEqual(e1.welcomeMsg.members.map((m) => m.id).sort(),
      [a1.id, c1.id, d1.id, e1.id].sort(), 'the member list no longer has robert');
    // Each notice once: no second join of anyone.
    await sleep(QUIET_MS);
    for (const x of [a1, c1]) {
      const joins = x.received.filter((m) => m.type === 'join').map((m) => m.member.id);
      assert.equal(new Set(joins).size, joins.length, `${x.label()}: each join once: ${joins}`);
    }
    // Redis holds the three live members.
    const hash = await redisCmd(r.port, 'HKEYS', `wshub:room:${room}:members`);
    assert.deepEqual(hash.sort(), [a1.id, c1.id, d1.id, e1.id].sort());
  });
});

test('one node cut off from Redis: it chats alone, then catches up with what it missed, exactly once', async () => {
  await withCluster(async ({ tr, redis, node }) => {
    const r = await redis();
    const relay = await Relay.start(r.port);
    try {
      const A = await node(relay.port, ['--threads', '1']);
      const B = await node(r.port, ['--threads', '1']);
      const room = uniqueRoom('cut');
      const [a1] = await openClients(tr, [A], 1, room);
      const [b1] = await openClients(tr, [B], 1, room);
      await probeUntil(a1, [a1, b1], 'cut', RECOVER_MS);
      const before = maxId([a1, b1]);

      await relay.cut();
      // Node A notices (its own messages stop coming back through Redis
      // and go local): a probe reaches a1 alone.
      await probeUntil(a1, [a1], 'alone', RECOVER_MS);
      const missed = [];
      for (let k = 0; k < 3; k++) {
        missed.push(`while cut ${k}`);
        b1.send(`while cut ${k}`);
      }
      for (const t of missed) await b1.next({ type: 'message', text: t }, DELIVERY_MS);
      assert.ok(!missed.some((t) => hasText(a1, t)), 'nothing crosses while cut');

      await relay.restore();
      for (const t of missed) {
        await a1.waitUntil(() => (hasText(a1, t) || undefined), RECOVER_MS, `${t} caught up at a1`);
      }
      await probeUntil(b1, [a1, b1], 'rejoined', RECOVER_MS);
      const got = roomMsgs(a1.received).filter((m) => missed.includes(m.text));
      assert.deepEqual(got.map((m) => m.text), missed, 'each missed message once, in order');
      const bIds = missed.map((t) => textOf(b1, t).id);
      assert.deepEqual(got.map((m) => m.id), bIds, 'with the ids node B gave them');
      assert.ok(bIds[0] > before);
      await a1.expectNothing((m) => m.type === 'gap');
    } finally {
      await relay.stop();
    }
  });
});

test('a node cut off for longer than the Stream keeps: its clients get a gap, then what is left', async () => {
  await withCluster(async ({ tr, redis, node }) => {
    const r = await redis();
    const relay = await Relay.start(r.port);
    try {
      const opts = ['--threads', '1', '--history', '5', '--msg-rate', '0'];
      const A = await node(relay.port, opts);
      const B = await node(r.port, opts);
      const room = uniqueRoom('gap');
      const [a1] = await openClients(tr, [A], 1, room);
      const [b1] = await openClients(tr, [B], 1, room);
      await probeUntil(b1, [a1, b1], 'gap', RECOVER_MS);
      const seen = maxId([a1]);

      await relay.cut();
      await probeUntil(a1, [a1], 'alone', RECOVER_MS);
      const n = 400; // well past MAXLEN ~ 5 (Redis trims whole nodes of 100)
      for (let k = 0; k < n; k++) b1.send(`flood ${k}`);
      await b1.waitUntil(() => (hasText(b1, `flood ${n - 1}`) || undefined), DELIVERY_MS, 'the flood at b1');
      const len = await redisCmd(r.port, 'XLEN', `wshub:room:${room}:log`);
      assert.ok(len < n, `the Stream was trimmed (${len} entries)`);

      await relay.restore();
      await a1.waitUntil(() => (hasText(a1, `flood ${n - 1}`) || undefined), RECOVER_MS, 'the flood caught up');
      const gap = await a1.next({ type: 'gap', room }, DELIVERY_MS);
      const last = roomMsgs(a1.received).filter((m) => m.text.startsWith('flood'));
      assert.equal(gap.after, seen, `gap.after is the last id node A heard: ${JSON.stringify(gap)}`);
      assert.equal(gap.oldest, last[0].id, 'gap.oldest is the first message delivered after it');
      const gi = a1.received.indexOf(gap);
      assert.ok(gi < a1.received.indexOf(last[0]), 'the gap comes before what is left');
      last.forEach((m, i) => assert.equal(m.id, last[0].id + i, 'what is left: consecutive ids'));
      assert.equal(last[last.length - 1].text, `flood ${n - 1}`);
      assert.ok(last.length <= Number(len), `no more than the Stream held (${last.length} of ${len})`);
    } finally {
      await relay.stop();
    }
  });
});

test('a node killed without a word: its members leave the other nodes\' rooms once its key expires', async () => {
  await withCluster(async ({ tr, redis, node, crash }) => {
    const r = await redis();
    const A = await node(r.port, ['--threads', '1']);
    const B = await node(r.port, ['--threads', '1']);
    const room = uniqueRoom('crash');
    const a1 = await tr.join(A.port, { room });
    await probeUntil(a1, [a1], 'crash', RECOVER_MS);
    const b1 = await tr.join(B.port, { room });
    const b2 = await tr.join(B.port, { room });
    for (const b of [b1, b2]) {
      assert.deepEqual((await a1.next({ type: 'join', room }, DELIVERY_MS)).member, b.member);
    }
    await crash(B);
    // The key lives 15 s after its last refresh; checks run every 5 s.
    const gone = [];
    for (let i = 0; i < 2; i++) gone.push((await a1.next({ type: 'leave', room }, 30000)).member.id);
    assert.deepEqual(gone.sort(), [b1.id, b2.id].sort(), 'both members of the killed node leave');
    const c = await tr.join(A.port, { room });
    assert.deepEqual(c.welcomeMsg.members.map((m) => m.id).sort(), [a1.id, c.id].sort(),
      'a later welcome lists only live members');
    assert.equal(c.welcomeMsg.member_count, 2);
    const hash = await redisCmd(r.port, 'HKEYS', `wshub:room:${room}:members`);
    assert.deepEqual(hash.sort(), [a1.id, c.id].sort(), 'and the hash no longer holds them');
    await a1.expectNothing({ type: 'leave' });
  });
});
