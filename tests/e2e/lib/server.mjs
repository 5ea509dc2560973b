// tests/e2e/lib/server.mjs — shared helpers for the end-to-end tests.
//
// What lives here: building a throw-away public directory (mkdtemp) with the
// fixture files a test needs, starting the real wshub binary on a free
// loopback port (--port 0, real port read from its stderr), stopping it by
// PID (SIGTERM, then SIGKILL after a timeout), and a raw-socket client that
// writes exact bytes and parses exact responses (status line, header fields,
// Content-Length / chunked bodies) so tests can assert on bytes rather than
// on what a forgiving client library makes of them.
//
// Ownership: every process started here is tracked and SIGKILLed on exit if
// a test forgot it; every temporary directory is removed by its cleanup().

import { spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

export const BIN = process.env.WSHUB_BIN || '/work/main/build/wshub';
export const HOST = '127.0.0.1';

// Whether the binary under test is built with AddressSanitizer (whose
// allocator keeps freed memory in quarantine, so RSS only grows).
export const BIN_IS_ASAN = (() => {
  try {
    return readFileSync(BIN).includes('__asan_init');
  } catch {
    return false;
  }
})();

// Generous bounds on waiting (never assertions of speed): a test that waits
// longer than this for something that must happen fails instead of hanging.
export const WAIT_MS = 5000;

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try { p.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------
// Fixture trees

// Creates base/ and base/public/ and fills them. `files` maps paths relative
// to public/ ("../secret" lands in base/) to one of:
//   string | Buffer                 file contents
//   { data, mode, mtime }           file with mode and/or mtime (Date)
//   { dir: true }                   empty directory
//   { symlink: target }             symlink (target written as given)
//   { fifo: true }                  named pipe made with mkfifo
// World-readable (0755 dirs) so that a server running as nobody can read it.
export async function makeTree(files = {}) {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'wshub-e2e-'));
  await fs.chmod(base, 0o755);
  const pub = path.join(base, 'public');
  await fs.mkdir(pub, { mode: 0o755 });
  await fs.chmod(pub, 0o755);
  for (const [rel, spec] of Object.entries(files)) {
    const full = path.join(pub, rel);
    await fs.mkdir(path.dirname(full), { recursive: true, mode: 0o755 });
    if (typeof spec === 'string' || Buffer.isBuffer(spec)) {
      await fs.writeFile(full, spec);
      await fs.chmod(full, 0o644);
    } else if (spec.dir) {
      await fs.mkdir(full, { recursive: true, mode: 0o755 });
    } else if (spec.symlink !== undefined) {
      await fs.symlink(spec.symlink, full);
    } else if (spec.fifo) {
      execFileSync('mkfifo', ['-m', '0644', full]);
    } else {
      await fs.writeFile(full, spec.data ?? '');
      await fs.chmod(full, spec.mode ?? 0o644);
      if (spec.mtime) await fs.utimes(full, spec.mtime, spec.mtime);
    }
  }
  // Make every directory we created world-traversable (mkdir honours umask).
  await chmodDirs(base);
  return {
    base,
    pub,
    cleanup: () => fs.rm(base, { recursive: true, force: true }),
  };
}

async function chmodDirs(dir) {
  await fs.chmod(dir, 0o755);
  for (const ent of await fs.readdir(dir, { withFileTypes: true })) {
    if (ent.isDirectory()) await chmodDirs(path.join(dir, ent.name));
  }
}

// ---------------------------------------------------------------------------
// The server process

export class Server {
  constructor(proc) {
    this.proc = proc;
    this.pid = proc.pid;
    this.stdout = '';
    this.stderr = '';
    this.exit = null; // { code, signal } once exited
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        live.delete(proc);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    // 'exit' can come before the last output: closed waits for that too.
    this.closed = new Promise((resolve) => proc.on('close', resolve));
    proc.stdout.on('data', (d) => { this.stdout += d; });
    proc.stderr.on('data', (d) => { this.stderr += d; });
  }

  // Waits up to ms for exit; returns { code, signal } or null on timeout.
  async waitExit(ms = WAIT_MS) {
    let timer;
    const t = new Promise((r) => { timer = setTimeout(() => r(null), ms); });
    const res = await Promise.race([this.exited, t]);
    clearTimeout(timer);
    return res;
  }

  signal(sig) {
    if (!this.exit) this.proc.kill(sig);
  }

  // Stops the server: SIGTERM, SIGKILL after a timeout. Returns
  // { code, signal, wasRunning } — wasRunning false means it had already
  // exited (crashed) before we asked it to stop.
  async stop(ms = WAIT_MS) {
    const wasRunning = this.exit === null;
    if (wasRunning) this.proc.kill('SIGTERM');
    let res = await this.waitExit(ms);
    let killed = false;
    if (!res) {
      killed = true;
      this.proc.kill('SIGKILL');
      res = await this.exited;
    }
    return { ...res, wasRunning, killed };
  }

  tail() {
    return this.stderr.length > 4000 ? this.stderr.slice(-4000) : this.stderr;
  }
}

// WSHUB_WRAPPER (e.g. "valgrind --leak-check=full --error-exitcode=99")
// runs every server under a tool; a report then fails the exit-0 checks.
const WRAPPER = (process.env.WSHUB_WRAPPER || '').split(' ').filter(Boolean);

// Spawns the binary with raw argv, no waiting for readiness. env: variables
// added to (or, as undefined, removed from) this process's environment.
export function spawnRaw(args, { asNobody = false, env = undefined } = {}) {
  let cmd = WRAPPER.length ? WRAPPER[0] : BIN;
  let argv = WRAPPER.length ? [...WRAPPER.slice(1), BIN, ...args] : args;
  if (asNobody && process.getuid && process.getuid() === 0) {
    argv = ['--reuid=65534', '--regid=65534', '--clear-groups', cmd, ...argv];
    cmd = 'setpriv';
  }
  const proc = spawn(cmd, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: env === undefined ? undefined : { ...process.env, ...env },
  });
  live.add(proc);
  return new Server(proc);
}

// Runs the binary to completion (for --help, --version, bad options).
export async function runToExit(args, ms = WAIT_MS, { env = undefined } = {}) {
  const srv = spawnRaw(args, { env });
  const res = await srv.waitExit(ms);
  if (!res) {
    await srv.stop();
    throw new Error(`wshub ${args.join(' ')} did not exit within ${ms} ms`);
  }
  await srv.closed;
  return { code: res.code, signal: res.signal, stdout: srv.stdout, stderr: srv.stderr };
}

const LISTEN_RE = /listening on http:\/\/[^\s]*:(\d+)/;

// Starts wshub on 127.0.0.1:0 serving `pub` and resolves once its stderr
// says where it listens; srv.port is the real port.
// Stops srv (SIGTERM; SIGKILL after ms) and asserts that it was still
// running, exited by itself and with status 0. Returns stop()'s result.
export async function stopAndCheck(srv, ms = WAIT_MS) {
  const r = await srv.stop(ms);
  assert.equal(r.wasRunning, true, `the server was still running at the end\n${srv.tail()}`);
  assert.equal(r.killed, false, `the server exited on SIGTERM\n${srv.tail()}`);
  assert.equal(r.code, 0, `exit status 0 on SIGTERM\n${srv.tail()}`);
  return r;
}

export async function startServer(pub, args = [], { asNobody = false } = {}) {
  const srv = spawnRaw(['--host', HOST, '--port', '0', '--public', pub, ...args], { asNobody });
  return waitListening(srv);
}

// Resolves with srv once its stderr says where it listens (srv.port is the
// real port); rejects if it exits first or says nothing within 10 s.
export async function waitListening(srv) {
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`wshub did not report its port within 10 s; stderr:\n${srv.tail()}`));
    }, 10000);
    const check = () => {
      const m = LISTEN_RE.exec(srv.stderr);
      if (m) {
        clearTimeout(timer);
        srv.proc.stderr.off('data', check);
        resolve(Number(m[1]));
      }
    };
    srv.proc.stderr.on('data', check);
    srv.exited.then((r) => {
      clearTimeout(timer);
      reject(new Error(`wshub exited early (${JSON.stringify(r)}); stderr:\n${srv.tail()}`));
    });
    check();
  });
  srv.port = port;
  return srv;
}

// Fixture + server around fn(ctx); always stops the server and removes the
// tree. Unless opts.expectCrash, asserts the server was still running at the
// end and exited 0 on SIGTERM (catches crashes and sanitizer reports).
export async function withServer(opts, fn) {
  const { files = {}, args = [], asNobody = false } = opts;
  const tree = await makeTree({ 'index.html': INDEX_HTML, ...files });
  let srv;
  try {
    srv = await startServer(tree.pub, args, { asNobody });
    await fn({ srv, port: srv.port, pub: tree.pub, base: tree.base });
    const res = await srv.stop();
    assert.ok(res.wasRunning, `server died during the test: ${JSON.stringify(res)}\n${srv.tail()}`);
    assert.equal(res.killed, false, `server ignored SIGTERM\n${srv.tail()}`);
    assert.equal(res.code, 0, `server exit code on SIGTERM\n${srv.tail()}`);
  } finally {
    if (srv && !srv.exit) await srv.stop();
    await tree.cleanup();
  }
}

export const INDEX_HTML = '<!doctype html><title>wshub e2e</title><p>index</p>\n';

// ---------------------------------------------------------------------------
// Raw client

export class Conn {
  constructor(sock) {
    this.sock = sock;
    this.chunks = [];
    this.len = 0;
    this.ended = false;
    this.error = null;
    this.wakers = new Set();
    sock.on('data', (d) => {
      this.chunks.push(d);
      this.len += d.length;
      this.wake();
    });
    sock.on('end', () => { this.ended = true; this.wake(); });
    sock.on('close', () => { this.ended = true; this.wake(); });
    sock.on('error', (e) => { this.error = e; this.ended = true; this.wake(); });
  }

  static open(port, host = HOST) {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host });
      sock.setNoDelay(true);
      const onErr = (e) => reject(e);
      sock.once('error', onErr);
      sock.once('connect', () => {
        sock.off('error', onErr);
        resolve(new Conn(sock));
      });
    });
  }

  wake() {
    for (const w of this.wakers) w();
  }

  // Resolves when pred() is true; rejects if the connection ends first
  // (unless pred is satisfied) or after ms.
  waitFor(pred, ms, what) {
    return new Promise((resolve, reject) => {
      let timer;
      const check = () => {
        if (pred()) {
          done();
          resolve();
        } else if (this.ended) {
          done();
          reject(new Error(`connection ended while waiting for ${what}` +
            (this.error ? ` (${this.error.code || this.error.message})` : '') +
            `; buffered: ${JSON.stringify(this.peek().toString('latin1').slice(0, 300))}`));
        }
      };
      const done = () => {
        clearTimeout(timer);
        this.wakers.delete(check);
      };
      timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; buffered: ` +
          JSON.stringify(this.peek().toString('latin1').slice(0, 300))));
      }, ms);
      this.wakers.add(check);
      check();
    });
  }

  peek() {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  take(n) {
    const b = this.peek();
    const out = b.subarray(0, n);
    const rest = b.subarray(n);
    this.chunks = rest.length ? [rest] : [];
    this.len = rest.length;
    return Buffer.from(out);
  }

  write(data) {
    if (!this.sock.destroyed) this.sock.write(data);
  }

  // Reads one response. head: it answers a HEAD (no body whatever the
  // headers say).
  async readResponse({ head = false, ms = WAIT_MS } = {}) {
    let end = -1;
    await this.waitFor(() => {
      if (this.len === 0) return false;
      end = this.peek().indexOf('\r\n\r\n');
      return end >= 0;
    }, ms, 'a response header section');
    const rawHead = this.take(end + 4).toString('latin1');
    const res = parseHead(rawHead);
    let body = Buffer.alloc(0);
    const noBody = head || res.status === 304 || res.status === 204 || res.status < 200;
    if (!noBody) {
      const te = res.get('transfer-encoding');
      const cl = res.get('content-length');
      if (te && /chunked/i.test(te)) {
        body = await this.readChunked(ms);
      } else if (cl !== undefined) {
        assert.match(cl, /^\d+$/, `bad Content-Length ${JSON.stringify(cl)}`);
        const n = Number(cl);
        await this.waitFor(() => this.len >= n, ms, `${n} body bytes`);
        body = this.take(n);
      } else {
        // Close-delimited (not expected from wshub; assertCommon flags it).
        await this.waitFor(() => this.ended, ms, 'close-delimited body');
        body = this.take(this.len);
      }
    }
    res.body = body;
    res.text = body.toString('utf8');
    return res;
  }

  async readChunked(ms) {
    const parts = [];
    for (;;) {
      let eol = -1;
      await this.waitFor(() => (eol = this.peek().indexOf('\r\n')) >= 0, ms, 'chunk size');
      const line = this.take(eol + 2).toString('latin1').trim();
      const size = parseInt(line, 16);
      assert.ok(Number.isFinite(size), `bad chunk size line ${JSON.stringify(line)}`);
      if (size === 0) {
        let t = -1;
        await this.waitFor(() => (t = this.peek().indexOf('\r\n')) >= 0, ms, 'trailer');
        // Skip trailer fields until the empty line.
        while (t !== 0) {
          this.take(t + 2);
          await this.waitFor(() => (t = this.peek().indexOf('\r\n')) >= 0, ms, 'trailer');
        }
        this.take(2);
        return Buffer.concat(parts);
      }
      await this.waitFor(() => this.len >= size + 2, ms, 'chunk data');
      parts.push(this.take(size));
      this.take(2);
    }
  }

  // Waits until the peer closes (FIN or RST); returns whatever bytes were
  // still unread. Rejects after ms.
  async waitEnd(ms = WAIT_MS) {
    await this.waitFor(() => this.ended, ms, 'the server to close the connection');
    return this.take(this.len);
  }

  // True if the connection is still open after ms (nothing received).
  async staysOpen(ms) {
    await sleep(ms);
    return !this.ended;
  }

  destroy() {
    this.sock.destroy();
  }
}

export function parseHead(raw) {
  const lines = raw.slice(0, -4).split('\r\n');
  const m = /^HTTP\/(\d)\.(\d) (\d{3}) (.*)$/.exec(lines[0]);
  assert.ok(m, `bad status line ${JSON.stringify(lines[0])}`);
  const headers = new Map();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    assert.ok(i > 0 && !/[\s]/.test(line.slice(0, i)), `bad header line ${JSON.stringify(line)}`);
    const name = line.slice(0, i).toLowerCase();
    const value = line.slice(i + 1).trim();
    if (!headers.has(name)) headers.set(name, []);
    headers.get(name).push(value);
  }
  return {
    raw,
    version: `${m[1]}.${m[2]}`,
    status: Number(m[3]),
    reason: m[4],
    headers,
    get(name) {
      const v = headers.get(name.toLowerCase());
      return v === undefined ? undefined : v.join(', ');
    },
    all(name) {
      return headers.get(name.toLowerCase()) ?? [];
    },
  };
}

// ---------------------------------------------------------------------------
// Requests

export function reqBytes(method, target, headers = {}, body = '', version = '1.1') {
  let s = `${method} ${target} HTTP/${version}\r\n`;
  const hs = { Host: '127.0.0.1', ...headers };
  for (const [k, v] of Object.entries(hs)) {
    if (v === null) continue;
    s += `${k}: ${v}\r\n`;
  }
  s += '\r\n';
  return Buffer.concat([Buffer.from(s, 'latin1'), Buffer.from(body)]);
}

// One request on a fresh connection; returns { res, conn } (conn still open
// unless the server closed it).
export async function exchange(port, bytes, opts = {}) {
  const conn = await Conn.open(port);
  conn.write(bytes);
  const res = await conn.readResponse(opts);
  return { res, conn };
}

// GET on a fresh connection that is closed afterwards.
export async function get(port, target, headers = {}, opts = {}) {
  const { res, conn } = await exchange(port, reqBytes('GET', target, headers), opts);
  conn.destroy();
  return res;
}

// ---------------------------------------------------------------------------
// Assertions

const IMF_FIXDATE =
  /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

export function isImfFixdate(s) {
  return IMF_FIXDATE.test(s);
}

// Headers every response carries. expectLength: the Content-Length a HEAD
// response must carry (defaults to the body length read).
export function assertCommon(res, { expectLength } = {}) {
  const ctx = `\n${res.raw}`;
  assert.equal(res.all('date').length, 1, `one Date header${ctx}`);
  assert.match(res.get('date'), IMF_FIXDATE, `Date is an IMF-fixdate${ctx}`);
  assert.equal(res.all('server').length, 1, `one Server header${ctx}`);
  assert.match(res.get('server'), /^wshub\/\d+\.\d+\.\d+$/, `Server header${ctx}`);
  assert.equal(res.get('transfer-encoding'), undefined, `no Transfer-Encoding${ctx}`);
  if (res.status !== 304) {
    assert.equal(res.all('content-length').length, 1, `one Content-Length${ctx}`);
    const want = expectLength ?? res.body.length;
    assert.equal(res.get('content-length'), String(want), `Content-Length${ctx}`);
  } else {
    assert.equal(res.body.length, 0);
  }
}

// An error response: status, text/plain, short body starting with the code.
export function assertError(res, status) {
  assert.equal(res.status, status, `status (want ${status})\n${res.raw}${res.text}`);
  assertCommon(res);
  assert.equal(res.get('content-type'), 'text/plain; charset=utf-8', `Content-Type\n${res.raw}`);
  assert.ok(res.text.startsWith(`${status} `), `body starts with "${status} ": ${JSON.stringify(res.text)}`);
  assert.ok(res.body.length > 4 && res.body.length <= 512, `short body: ${JSON.stringify(res.text)}`);
}

export function hasToken(value, token) {
  if (value === undefined) return false;
  return value.split(',').some((t) => t.trim().toLowerCase() === token.toLowerCase());
}

// The server still serves a normal request on a NEW connection.
export async function assertAlive(port) {
  const res = await get(port, '/index.html');
  assert.equal(res.status, 200, `server still serves GET /index.html\n${res.raw}`);
  assert.equal(res.text, INDEX_HTML);
  assertCommon(res);
}

// Reads the rest of the connection after an error response and asserts the
// server closed it (and sent nothing more).
export async function assertClosedAfter(conn) {
  const rest = await conn.waitEnd();
  assert.equal(rest.toString('latin1'), '', 'nothing after the final response');
}
