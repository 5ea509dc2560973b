// tests/e2e/ops.test.mjs — running wshub for real (issue 11, observability):
// GET /healthz and /readyz (200; 503 during a graceful shutdown, and while
// the Redis link of --redis is down: a real redis-server killed and
// restarted), GET /metrics in the Prometheus text format 0.0.4 (parsed here
// by a small exposition-format parser, every family checked) against
// traffic the test made itself — connections by transport, upgrades,
// handshake failures by reason after known-bad handshakes, messages in,
// deliveries to N clients, close frames by code, bytes in/out at least what
// was exchanged — with --threads 2 (a scrape on either thread reports the
// same totals); --metrics-port (a separate listener; 404 on the main port),
// --metrics off and --health off; --log-format json (every line an object
// with ts, level, msg), --access-log (one line per response, right status),
// and chat texts never appearing in the log at info level.
//
// Ownership: servers come from lib/server.mjs (--port 0, stopped by PID,
// must exit 0 on SIGTERM); the test's redis-server is stopped by PID, also
// on failure (a process.on('exit') hook SIGKILLs any left over); every chat
// client is opened through a Tracker and closed before its server stops.
// Nothing asserts speed: waits are bounded so that what must happen fails
// instead of hanging.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/ops.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import {
  HOST, WAIT_MS, INDEX_HTML, makeTree, startServer, stopAndCheck, runToExit, Conn, reqBytes,
  get, exchange, withServer,
} from './lib/server.mjs';
import { Tracker, uniqueRoom, sleep } from './lib/chat.mjs';
import { freePort, Redis } from './lib/redis.mjs';

const METRICS_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
// Bound on polling for a state the server must reach (not a speed claim).
const SETTLE_MS = 4 * WAIT_MS;
const RECOVER_MS = 20000;

// ---------------------------------------------------------------------------
// The exposition format (text 0.0.4), parsed strictly

const NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function parseLabels(s, line) {
  const labels = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
  let at = 0;
  while (at < s.length) {
    re.lastIndex = at;
    const m = re.exec(s);
    assert.ok(m, `bad label set in ${JSON.stringify(line)}`);
    assert.ok(!(m[1] in labels), `label ${m[1]} twice in ${JSON.stringify(line)}`);
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
    at = re.lastIndex;
  }
  return labels;
}

// Returns { types, help, samples, value(name, labels), has(name, labels) }.
// Every sample's family has HELP and TYPE before it, each family's samples
// are contiguous, counters end in _total, values are numbers.
export function parseMetrics(text) {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a newline');
  const types = new Map();
  const help = new Map();
  const samples = [];
  const done = new Set();
  let current = null;
  for (const line of text.slice(0, -1).split('\n')) {
    let m;
    if ((m = /^# HELP (\S+) (.+)$/.exec(line))) {
      assert.ok(NAME_RE.test(m[1]) && !help.has(m[1]), `HELP line ${JSON.stringify(line)}`);
      help.set(m[1], m[2]);
      continue;
    }
    if ((m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      assert.ok(NAME_RE.test(m[1]) && !types.has(m[1]), `TYPE line ${JSON.stringify(line)}`);
      assert.ok(help.has(m[1]), `HELP before TYPE for ${m[1]}`);
      if (m[2] === 'counter') assert.match(m[1], /_total$/, `counter ${m[1]} ends in _total`);
      types.set(m[1], m[2]);
      if (current) done.add(current);
      current = m[1];
      continue;
    }
    assert.ok(!line.startsWith('#') && line !== '', `unexpected line ${JSON.stringify(line)}`);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `bad sample line ${JSON.stringify(line)}`);
    const [, name, rawLabels, rawValue] = m;
    assert.ok(types.has(name), `TYPE declared before sample ${name}`);
    assert.equal(name, current, `samples of ${name} are together, after its TYPE`);
    assert.ok(!done.has(name));
    const value = Number(rawValue);
    assert.ok(Number.isFinite(value) || /^[+-]Inf$|^NaN$/.test(rawValue), `value in ${line}`);
    samples.push({ name, labels: rawLabels ? parseLabels(rawLabels, line) : {}, value });
  }
  const find = (name, labels = {}) => samples.filter((s) => s.name === name &&
    Object.keys(s.labels).length === Object.keys(labels).length &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return {
    types,
    help,
    samples,
    has(name, labels) { return find(name, labels).length > 0; },
    // The one sample with exactly these labels (must exist).
    value(name, labels = {}) {
      const hits = find(name, labels);
      assert.equal(hits.length, 1, `one sample ${name}${JSON.stringify(labels)} in:\n${text}`);
      return hits[0].value;
    },
    // A counter sample that appears only once non-zero: 0 when absent.
    count(name, labels = {}) {
      const hits = find(name, labels);
      assert.ok(hits.length <= 1);
      return hits.length ? hits[0].value : 0;
    },
    text,
  };
}

test('the parser itself: a valid exposition parses, broken ones do not', () => {
  const ok = parseMetrics('# HELP a_total A.\n# TYPE a_total counter\na_total{x="1",y="a\\"b"} 3\n' +
    '# HELP g G.\n# TYPE g gauge\ng 0.5\n');
  assert.equal(ok.value('a_total', { x: '1', y: 'a"b' }), 3);
  assert.equal(ok.value('g'), 0.5);
  assert.throws(() => parseMetrics('a 1\n'));
  assert.throws(() => parseMetrics('# HELP a A.\n# TYPE a counter\na 1\n'));
  assert.throws(() => parseMetrics('# HELP a A.\n# TYPE a gauge\na{x=1} 1\n'));
  assert.throws(() => parseMetrics('# HELP a A.\n# TYPE a gauge\na one\n'));
});

async function scrape(port) {
  const res = await get(port, '/metrics');
  assert.equal(res.status, 200, `GET /metrics\n${res.raw}${res.text}`);
  assert.equal(res.get('content-type'), METRICS_TYPE);
  return parseMetrics(res.text);
}

// Polls /metrics until pred(metrics) holds; returns those metrics.
async function scrapeUntil(port, pred, what, ms = SETTLE_MS) {
  const deadline = Date.now() + ms;
  let m;
  for (;;) {
    m = await scrape(port);
    if (pred(m)) return m;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last scrape:\n${m.text}`);
    await sleep(50);
  }
}

async function statusUntil(port, path, status, ms = RECOVER_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const res = await get(port, path);
    if (res.status === status) return res;
    if (Date.now() > deadline) throw new Error(`${path} never answered ${status} (last ${res.status})`);
    await sleep(100);
  }
}

function upgradeHeaders(extra = {}) {
  return {
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
    'Sec-WebSocket-Version': '13',
    ...extra,
  };
}

// The server frames of a raw connection (unmasked), as { op, payload }.
function takeFrames(conn) {
  const out = [];
  for (;;) {
    const b = conn.peek();
    if (b.length < 2) return out;
    let len = b[1] & 0x7f;
    let at = 2;
    if (len === 126) {
      if (b.length < 4) return out;
      len = b.readUInt16BE(2);
      at = 4;
    } else if (len === 127) {
      if (b.length < 10) return out;
      len = Number(b.readBigUInt64BE(2));
      at = 10;
    }
    if (b.length < at + len) return out;
    const f = conn.take(at + len);
    out.push({ op: f[0] & 0x0f, payload: f.subarray(at) });
  }
}

// ---------------------------------------------------------------------------
// Health and readiness

test('/healthz and /readyz: 200 on the main port; HEAD; other methods 405', async () => {
  await withServer({ args: ['--threads', '1'] }, async ({ port }) => {
    let res = await get(port, '/healthz');
    assert.equal(res.status, 200);
    assert.equal(res.text, 'ok\n');
    assert.equal(res.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(res.get('cache-control'), 'no-store');
    res = await get(port, '/readyz?verbose=1');
    assert.equal(res.status, 200);
    assert.equal(res.text, 'ready\n');
    const { res: head, conn } = await exchange(port, reqBytes('HEAD', '/healthz'), { head: true });
    conn.destroy();
    assert.equal(head.status, 200);
    assert.equal(head.get('content-length'), '3');
    const { res: post, conn: c2 } = await exchange(port, reqBytes('POST', '/metrics', { 'Content-Length': '0' }));
    c2.destroy();
    assert.equal(post.status, 405);
    assert.equal(post.get('allow'), 'GET, HEAD');
    const m = await scrape(port);
    assert.equal(m.value('wshub_ready'), 1);
    assert.equal(m.value('wshub_threads'), 1);
    assert.ok(m.value('process_resident_memory_bytes') > 1024 * 1024);
    const start = m.value('process_start_time_seconds');
    assert.ok(start > Date.now() / 1000 - 3600 && start <= Date.now() / 1000 + 1, `start time ${start}`);
    assert.ok(m.value('wshub_event_loop_lag_seconds', { thread: '0' }) >= 0);
    // Every family has its HELP and TYPE; the documented ones are there.
    for (const name of ['wshub_connections', 'wshub_connections_accepted_total',
      'wshub_connections_refused_total', 'wshub_http_responses_total',
      'wshub_websocket_upgrades_total', 'wshub_websocket_handshake_failures_total',
      'wshub_received_bytes_total', 'wshub_sent_bytes_total',
      'wshub_websocket_messages_received_total', 'wshub_deliveries_total',
      'wshub_slow_consumer_closes_total', 'wshub_websocket_close_frames_total',
      'wshub_queued_bytes', 'wshub_hub_rooms', 'wshub_event_loop_lag_seconds', 'wshub_ready',
      'wshub_chat_rooms', 'wshub_chat_users', 'wshub_chat_messages_total',
      'process_cpu_seconds_total']) {
      assert.ok(m.types.has(name), `family ${name} in\n${m.text}`);
    }
  });
});

// GET on a fresh connection, again (a few times) if the connection fails:
// with --threads N each thread has its own SO_REUSEPORT socket on the
// metrics port, and one that has finished its shutdown closes it, which
// resets a connection the kernel had just queued on it.
async function getRetry(port, path) {
  for (let i = 0; ; i++) {
    try {
      return await get(port, path);
    } catch (e) {
      if (i >= 4) throw e;
      await sleep(50);
    }
  }
}

test('readiness during a graceful shutdown: the metrics port answers /readyz 503 until the end', async () => {
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  const mport = await freePort();
  const srv = await startServer(tree.pub, ['--metrics-port', String(mport), '--close-timeout', '3']);
  try {
    assert.equal((await get(mport, '/readyz')).status, 200);
    // A WebSocket client that will not answer the server's close frame keeps
    // the shutdown going for --close-timeout.
    const ws = await Conn.open(srv.port);
    ws.write(reqBytes('GET', '/', upgradeHeaders()));
    const res = await ws.readResponse();
    assert.equal(res.status, 101);
    srv.signal('SIGTERM');
    const frames = [];
    await ws.waitFor(() => {
      frames.push(...takeFrames(ws));
      return frames.some((f) => f.op === 8);
    }, WAIT_MS, 'the close frame of the shutdown');
    const close = frames.find((f) => f.op === 8);
    assert.equal(close.payload.readUInt16BE(0), 1001);
    let r = await getRetry(mport, '/readyz');
    assert.equal(r.status, 503);
    assert.equal(r.text, 'not ready\n');
    assert.equal(r.get('connection'), 'close');
    r = await getRetry(mport, '/healthz');
    assert.equal(r.status, 200);
    r = await getRetry(mport, '/metrics');
    const m = parseMetrics(r.text);
    assert.equal(m.value('wshub_ready'), 0);
    assert.equal(m.value('wshub_connections', { transport: 'websocket' }), 1);
    ws.destroy();
    const exit = await srv.waitExit(SETTLE_MS);
    assert.deepEqual(exit, { code: 0, signal: null }, srv.tail());
  } finally {
    if (!srv.exit) await srv.stop();
    await tree.cleanup();
  }
});

test('--redis: /readyz is 503 while the link is down, 200 once it is up again', async () => {
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  const rport = await freePort();
  let redis = await Redis.start(rport);
  const srv = await startServer(tree.pub, ['--redis', `redis://${HOST}:${rport}`]);
  try {
    await statusUntil(srv.port, '/readyz', 200);
    let m = await scrape(srv.port);
    assert.equal(m.value('wshub_redis_up'), 1);
    assert.equal(m.value('wshub_ready'), 1);

    await redis.kill();
    const down = await statusUntil(srv.port, '/readyz', 503);
    assert.equal(down.text, 'not ready\n');
    assert.equal((await get(srv.port, '/healthz')).status, 200, 'alive all the same');
    m = await scrape(srv.port);
    assert.equal(m.value('wshub_redis_up'), 0);
    assert.equal(m.value('wshub_ready'), 0);

    redis = await Redis.start(rport);
    await statusUntil(srv.port, '/readyz', 200);
    m = await scrape(srv.port);
    assert.equal(m.value('wshub_redis_up'), 1);
    await stopAndCheck(srv);
  } finally {
    if (!srv.exit) await srv.stop();
    await redis.kill();
    await tree.cleanup();
  }
});

// ---------------------------------------------------------------------------
// Metrics against known traffic

test('--threads 2: every scrape reports the exact totals of the traffic the test made', async () => {
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  const srv = await startServer(tree.pub, ['--threads', '2', '--ws-path', '/']);
  const port = srv.port;
  const tr = new Tracker();
  let sent = 0; // raw bytes the test wrote
  let got = 0;  // raw bytes the test read
  try {
    // Known-bad handshakes, one of each reason.
    const bad = [
      ['version', 426, upgradeHeaders({ 'Sec-WebSocket-Version': '12' })],
      ['key', 400, upgradeHeaders({ 'Sec-WebSocket-Key': 'c2hvcnQ=' })],
      ['origin', 403, upgradeHeaders({ Origin: 'http://elsewhere.example' })],
      ['request', 400, upgradeHeaders({ Connection: 'keep-alive' })],
      ['extensions', 400, upgradeHeaders({ 'Sec-WebSocket-Extensions': 'permessage-deflate;;' })],
      ['path', 404, upgradeHeaders(), '/not-a-ws-path'],
    ];
    for (const [reason, status, headers, path = '/'] of bad) {
      const bytes = reqBytes('GET', path, headers);
      const { res, conn } = await exchange(port, bytes);
      conn.destroy();
      sent += bytes.length;
      got += res.raw.length + res.body.length;
      assert.equal(res.status, status, `${reason}: ${res.raw}${res.text}`);
    }
    const room = uniqueRoom('ops');
    const [a, b, c] = [await tr.join(port, { room }), await tr.join(port, { room }),
      await tr.join(port, { room })];
    // Everything owed so far (presence notices) has arrived once a first
    // message has reached everyone.
    a.send('sync');
    for (const x of [a, b, c]) await x.next({ type: 'message', text: 'sync' });
    sent += 4;

    const before = await scrape(port);
    assert.equal(before.value('wshub_connections', { transport: 'websocket' }), 3);
    assert.equal(before.value('wshub_websocket_upgrades_total'), 3);
    assert.equal(before.value('wshub_threads'), 2);
    for (const [reason] of bad) {
      assert.equal(before.value('wshub_websocket_handshake_failures_total', { reason }), 1, reason);
    }
    assert.equal(before.value('wshub_websocket_handshake_failures_total', { reason: 'refused' }), 0);
    assert.equal(before.value('wshub_chat_messages_total', { kind: 'room' }), 1);
    assert.equal(before.value('wshub_chat_rooms_occupied'), 1);

    const texts = ['one', 'two', 'three', 'four'].map((t) => `${t}-${crypto.randomBytes(8).toString('hex')}`);
    for (const t of texts) a.send(t);
    for (const x of [a, b, c]) {
      for (const t of texts) await x.next({ type: 'message', text: t });
    }
    const textBytes = texts.reduce((n, t) => n + t.length, 0);
    sent += textBytes;

    // Four scrapes: they land on either thread and must agree.
    const after = [];
    for (let i = 0; i < 4; i++) after.push(await scrape(port));
    for (const m of after) {
      const d = (name, labels) => m.value(name, labels) - before.value(name, labels);
      assert.equal(d('wshub_websocket_messages_received_total'), 4);
      assert.equal(d('wshub_chat_messages_total', { kind: 'room' }), 4);
      assert.equal(d('wshub_deliveries_total'), 12, 'four messages to three members');
      assert.equal(m.value('wshub_websocket_upgrades_total'), 3);
      assert.equal(m.value('wshub_connections', { transport: 'websocket' }), 3);
      assert.equal(m.value('wshub_slow_consumer_closes_total'), 0);
      assert.ok(m.value('wshub_received_bytes_total') >= sent,
        `bytes in ${m.value('wshub_received_bytes_total')} >= ${sent}`);
      assert.ok(m.value('wshub_sent_bytes_total') >= got + 3 * textBytes,
        `bytes out ${m.value('wshub_sent_bytes_total')} >= ${got + 3 * textBytes}`);
      assert.ok(m.value('wshub_connections_accepted_total') >= bad.length + 3);
      assert.equal(m.value('wshub_http_responses_total', { code: '1xx' }), 3);
      assert.ok(m.value('wshub_http_responses_total', { code: '4xx' }) >= bad.length);
    }

    // An event stream counts as an sse connection while it is open.
    const sse = await Conn.open(port);
    sse.write(reqBytes('GET', `/events?room=${room}`));
    await sse.waitFor(() => sse.peek().includes('\r\n\r\n'), WAIT_MS, 'the stream head');
    await scrapeUntil(port, (m) => m.value('wshub_connections', { transport: 'sse' }) === 1, 'sse 1');
    sse.destroy();
    await scrapeUntil(port, (m) => m.value('wshub_connections', { transport: 'sse' }) === 0, 'sse 0');

    // Closes: a with 1000, b with 4001 (answered with the same code), c
    // without a close frame.
    tr.clients.delete(a);
    tr.clients.delete(b);
    tr.clients.delete(c);
    assert.equal((await a.close()).code, 1000);
    b.ws.close(4001, 'bye');
    assert.equal((await b.closed).code, 4001);
    await c.terminate();
    const m = await scrapeUntil(port,
      (x) => x.value('wshub_connections', { transport: 'websocket' }) === 0, 'no websocket left');
    const closes = (direction, code) => m.count('wshub_websocket_close_frames_total', { direction, code });
    assert.equal(closes('received', '1000'), 1);
    assert.equal(closes('sent', '1000'), 1);
    assert.equal(closes('received', 'other'), 1);
    assert.equal(closes('sent', 'other'), 1);
    assert.equal(m.samples.filter((s) => s.name === 'wshub_websocket_close_frames_total').length, 4,
      m.text);
    assert.equal(m.value('wshub_queued_bytes'), 0);
    await stopAndCheck(srv);
  } finally {
    await tr.closeAll();
    if (!srv.exit) await srv.stop();
    await tree.cleanup();
  }
});

test('--echo: echoes count as messages in and deliveries; no chat lines', async () => {
  await withServer({ args: ['--echo', '--threads', '1'] }, async ({ port }) => {
    const tr = new Tracker();
    try {
      const c = await tr.open(port);
      c.send('ping one');
      c.send(Buffer.from([1, 2, 3]));
      const deadline = Date.now() + WAIT_MS;
      while (c.received.length < 2 && Date.now() < deadline) await sleep(20);
      assert.deepEqual(c.received, [{ type: '<not JSON>', raw: 'ping one' },
        { type: '<binary frame>', hex: '010203' }]);
      const m = await scrape(port);
      assert.equal(m.value('wshub_websocket_messages_received_total'), 2);
      assert.equal(m.value('wshub_deliveries_total'), 2);
      assert.equal(m.types.has('wshub_chat_messages_total'), false);
      assert.equal(m.value('wshub_ready'), 1);
    } finally {
      await tr.closeAll();
    }
  });
});

test('--metrics-port: /metrics, /healthz, /readyz there only; 404 on the main port', async () => {
  const mport = await freePort();
  await withServer({ args: ['--metrics-port', String(mport)] }, async ({ port, srv }) => {
    assert.match(srv.stderr, new RegExp(`operations \\(/metrics, /healthz, /readyz\\) on http://[^ ]*:${mport}`));
    for (const path of ['/metrics', '/healthz', '/readyz']) {
      assert.equal((await get(port, path)).status, 404, `${path} on the main port`);
      assert.equal((await get(mport, path)).status, 200, `${path} on the metrics port`);
    }
    assert.equal((await get(mport, '/index.html')).status, 404, 'no files on the metrics port');
    const { res, conn } = await exchange(mport, reqBytes('GET', '/', upgradeHeaders()));
    conn.destroy();
    assert.equal(res.status, 404, 'no WebSocket on the metrics port');
    assert.equal((await get(port, '/index.html')).status, 200);
  });
  // Its port in use: exit 1, saying so.
  const blocker = net.createServer();
  await new Promise((r) => blocker.listen(0, HOST, r));
  try {
    const tree = await makeTree({ 'index.html': INDEX_HTML });
    const r = await runToExit(['--host', HOST, '--port', '0', '--public', tree.pub,
      '--metrics-port', String(blocker.address().port)]);
    await tree.cleanup();
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /metrics-port.*address already in use/);
  } finally {
    blocker.close();
  }
});

test('--metrics off / --health off: the other endpoints stay, the ones turned off are 404', async () => {
  await withServer({ args: ['--metrics', 'off'] }, async ({ port }) => {
    assert.equal((await get(port, '/metrics')).status, 404);
    assert.equal((await get(port, '/healthz')).status, 200);
    assert.equal((await get(port, '/readyz')).status, 200);
  });
  await withServer({ args: ['--health', 'off'] }, async ({ port }) => {
    assert.equal((await get(port, '/healthz')).status, 404);
    assert.equal((await get(port, '/readyz')).status, 404);
    assert.equal((await get(port, '/metrics')).status, 200);
  });
  for (const bad of [['--metrics', 'no'], ['--health', '1'], ['--metrics-port', '70000'],
    ['--log-format', 'xml'], ['--access-log', 'yes'], ['--port', '3001', '--metrics-port', '3001']]) {
    const r = await runToExit(['--port', '0', ...bad]);
    assert.equal(r.code, 2, `${bad.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.includes(`for ${bad.at(-2)}:`), r.stderr);
  }
});

// ---------------------------------------------------------------------------
// Logs

const SECRET = `secret-${crypto.randomBytes(8).toString('hex')}`;

// Traffic for the log tests: a file, a 404, and chat texts holding SECRET
// over WebSocket and POST /messages.
async function logTraffic(port) {
  assert.equal((await get(port, '/index.html')).status, 200);
  assert.equal((await get(port, '/nope')).status, 404);
  const tr = new Tracker();
  try {
    const room = uniqueRoom('log');
    const a = await tr.join(port, { room });
    const b = await tr.join(port, { room });
    a.send(`${SECRET} as text`);
    a.send({ type: 'message', text: `${SECRET} as json` });
    a.send({ type: 'message', to: b.id, text: `${SECRET} direct` });
    a.send({ type: 'message', text: `${SECRET} ${'x'.repeat(5000)}` }); // too long: an error
    await b.next({ type: 'direct' });
    const body = JSON.stringify({ type: 'message', text: `${SECRET} posted` });
    const { res, conn } = await exchange(port, reqBytes('POST', `/messages?room=${room}`,
      { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(body)) }, body));
    conn.destroy();
    assert.equal(res.status, 202, res.text);
    await b.next({ type: 'message', text: `${SECRET} posted` });
  } finally {
    await tr.closeAll();
  }
}

// A server with args that serves logTraffic and stops cleanly; its stderr
// is then complete.
async function loggedRun(args) {
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  const srv = await startServer(tree.pub, args);
  try {
    await logTraffic(srv.port);
    await stopAndCheck(srv);
  } finally {
    if (!srv.exit) await srv.stop();
    await tree.cleanup();
  }
  return srv;
}

test('--log-format json --access-log on: one JSON object per line; access lines; no chat text', async () => {
  const srv = await loggedRun(['--log-format', 'json', '--access-log', 'on']);
  const lines = srv.stderr.split('\n').filter((l) => l !== '');
  const objs = lines.map((l) => {
    let o;
    assert.doesNotThrow(() => { o = JSON.parse(l); }, `a JSON line: ${l}`);
    assert.equal(typeof o, 'object');
    assert.ok(['error', 'warn', 'info', 'debug'].includes(o.level), l);
    assert.equal(typeof o.msg, 'string', l);
    assert.match(o.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, l);
    return o;
  });
  assert.ok(objs.some((o) => /listening on http:\/\//.test(o.msg)), 'the banner is a JSON line too');
  const access = objs.filter((o) => o.msg === 'access');
  const one = (path, status) => {
    const hit = access.find((o) => o.path === path && o.status === status);
    assert.ok(hit, `an access line for ${path} ${status} in\n${srv.stderr}`);
    assert.match(hit.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.match(hit.remote, /^127\.0\.0\.1:\d+$/);
    assert.ok(hit.bytes > 0 && hit.duration_ms >= 0, JSON.stringify(hit));
    return hit;
  };
  assert.equal(one('/index.html', 200).method, 'GET');
  assert.ok(one('/index.html', 200).bytes > INDEX_HTML.length);
  one('/nope', 404);
  assert.equal(access.filter((o) => o.status === 101).length, 2, 'two upgrades');
  assert.equal(one(access.find((o) => o.method === 'POST')?.path, 202).method, 'POST');
  assert.ok(!srv.stderr.includes(SECRET), `no chat text in the log:\n${srv.stderr}`);
});

test('text logs at info with the access log: one line per response, no chat text', async () => {
  const srv = await loggedRun(['--access-log', 'on', '--log-level', 'info']);
  assert.match(srv.stderr, /Z info access method=GET path=\/index\.html status=200 bytes=\d+ duration_ms=[\d.e-]+ remote=127\.0\.0\.1:\d+\n/);
  assert.match(srv.stderr, /access method=GET path=\/nope status=404 /);
  assert.ok(!srv.stderr.includes(SECRET), `no chat text in the log:\n${srv.stderr}`);
  // Without --access-log: no access lines.
  await withServer({}, async ({ port, srv: quiet }) => {
    assert.equal((await get(port, '/index.html')).status, 200);
    assert.ok(!quiet.stderr.includes('access '), quiet.stderr);
  });
});
