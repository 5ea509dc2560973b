#!/usr/bin/env node
// run.mjs — runs the WebSocket conformance cases against `wshub --echo`.
//
//   node tests/conformance/run.mjs --bin build/wshub [--cases 1,2,6.4] [--jobs N] [--verbose]
//                                  [--full | --messages N]
//
// Why it exists: the real Autobahn TestSuite cannot run in CI here, so this
// runner plays its part. It starts the server itself on a free loopback port
// (`--port 0`, port read from the "listening on http://host:port" line on
// stderr), starts extra instances with special options when a case needs
// one, runs every case on a fresh connection, checks after each case that
// the server is still alive and accepts a new connection, prints one line
// per case and a final "N passed, N failed" line, and stops every server it
// started by PID (SIGTERM, then SIGKILL after 5 s). Exit status 0 only if
// every case passed.
//
// Ownership: the runner owns the server processes it spawns and every client
// a case opens through `t.connect()` (destroyed when the case ends).

import { spawn } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import { WsClient, OP } from './wsclient.mjs';
import { CaseError, describeFrames } from './lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

// Server flavours a case may ask for with `server: '<name>'`.
export const SERVERS = {
  default: [],
  max1024: ['--max-message', '1024'],
  closeTimeout: ['--close-timeout', '0.5'],
  keepalive: ['--ping-interval', '0.3'],
  // permessage-deflate (categories 12-14)
  max64k: ['--max-message', '65536'],
  deflateOff: ['--deflate', 'off'],
  clientWindow10: ['--deflate-client-window', '10'],
  clientWindow15: ['--deflate-client-window', '15'],
  threshold1000: ['--deflate-threshold', '1000'],
  level1: ['--deflate-level', '1'],
};

/** What a server started with `extra` does with permessage-deflate (for the client's checks). */
export function deflateModel(extra) {
  const m = { deflate: true, clientWindow: 0, threshold: 64 };
  for (let i = 0; i + 1 < extra.length; i++) {
    if (extra[i] === '--deflate') m.deflate = extra[i + 1] !== 'off';
    else if (extra[i] === '--deflate-client-window') m.clientWindow = Number(extra[i + 1]);
    else if (extra[i] === '--deflate-threshold') m.threshold = Number(extra[i + 1]);
  }
  return m;
}

/** Messages per case in 12.x / 13.x: a CI-sized sample, or Autobahn's 1000 with --full. */
const CI_MESSAGES = 50;

const SANITIZER_RE = /(AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|ThreadSanitizer|runtime error:)/;

function usage(msg) {
  if (msg) process.stderr.write(`run.mjs: ${msg}\n`);
  process.stderr.write('usage: node tests/conformance/run.mjs --bin <wshub> [--cases 1,2,6.4] [--jobs N] [--verbose] [--full | --messages N]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const o = { bin: null, cases: null, jobs: 1, verbose: false, messages: CI_MESSAGES };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--bin') o.bin = val();
    else if (a === '--cases') o.cases = val().split(',').map((s) => s.trim()).filter(Boolean);
    else if (a === '--jobs') o.jobs = Math.max(1, Number.parseInt(val(), 10) || 1);
    else if (a === '--verbose' || a === '-v') o.verbose = true;
    else if (a === '--full') o.messages = 1000;
    else if (a === '--messages') {
      o.messages = Number.parseInt(val(), 10);
      if (!(o.messages >= 1)) usage('--messages needs a positive count');
    }
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  if (!o.bin) usage('--bin is required');
  return o;
}

/** "6" matches 6, 6.1, 6.4.2 but not 60; "6.4" matches 6.4 and 6.4.x. */
export function idMatches(id, prefix) {
  return id === prefix || id.startsWith(`${prefix}.`);
}

function compareIds(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? -1) - (pb[i] ?? -1);
    if (d) return d;
  }
  return 0;
}

async function loadCases() {
  const dir = path.join(HERE, 'cases');
  const files = (await readdir(dir)).filter((f) => f.endsWith('.mjs') && !f.startsWith('_')).sort();
  const all = [];
  const seen = new Set();
  for (const f of files) {
    const mod = await import(pathToFileURL(path.join(dir, f)).href);
    for (const c of mod.cases ?? []) {
      if (!c.id || !c.desc || typeof c.run !== 'function') throw new Error(`${f}: malformed case ${c.id}`);
      if (seen.has(c.id)) throw new Error(`${f}: duplicate case id ${c.id}`);
      if (c.server && !SERVERS[c.server]) throw new Error(`${f}: case ${c.id} asks for unknown server ${c.server}`);
      seen.add(c.id);
      all.push(c);
    }
  }
  all.sort((a, b) => compareIds(a.id, b.id));
  return all;
}

// ---- server processes ---------------------------------------------------------

class ServerProc {
  constructor(name, bin, extra, verbose) {
    this.name = name;
    this.bin = bin;
    this.model = deflateModel(extra);
    this.args = ['--echo', '--host', '127.0.0.1', '--port', '0', ...extra];
    this.verbose = verbose;
    this.tail = [];
    this.sanitizer = [];
    this.port = null;
    this.exit = null;
  }

  start() {
    return new Promise((resolve, reject) => {
      const child = spawn(this.bin, this.args, { stdio: ['ignore', 'ignore', 'pipe'] });
      this.child = child;
      this.exited = new Promise((r) => {
        child.once('exit', (code, signal) => {
          this.exit = { code, signal };
          r(this.exit);
        });
        // spawn failures (ENOENT, EACCES) emit 'error' and never 'exit'
        child.once('error', () => {
          if (child.pid === undefined) {
            this.exit = { code: null, signal: null };
            r(this.exit);
          }
        });
      });
      let buf = '';
      const timer = setTimeout(() => reject(new Error(`server ${this.name}: no "listening on" line within 15 s`)), 15000);
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`server ${this.name}: cannot start ${this.bin}: ${err.message}`));
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (this.port === null)
          reject(new Error(`server ${this.name} exited (code ${code}, signal ${signal}) before listening:\n${this.tail.join('\n')}`));
      });
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (d) => {
        buf += d;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          this.tail.push(line);
          if (this.tail.length > 200) this.tail.shift();
          if (SANITIZER_RE.test(line)) this.sanitizer.push(line);
          if (this.verbose) process.stderr.write(`  [${this.name}] ${line}\n`);
          const m = /listening on http:\/\/[^\s]*:(\d+)/.exec(line);
          if (m && this.port === null) {
            this.port = Number(m[1]);
            clearTimeout(timer);
            resolve(this);
          }
        }
      });
    });
  }

  signal(sig) {
    if (this.alive && this.child) this.child.kill(sig);
  }

  get alive() {
    return this.exit === null;
  }

  async stop() {
    if (!this.child || this.exit) return this.exit;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => {
      if (!this.exit) {
        this.killed = true;
        this.child.kill('SIGKILL');
      }
    }, 5000);
    await this.exited;
    clearTimeout(t);
    return this.exit;
  }
}

// ---- one case -------------------------------------------------------------------

async function liveness(server) {
  if (!server.alive) return `server ${server.name} is not running (exit code ${server.exit.code}, signal ${server.exit.signal})`;
  let c;
  try {
    c = await WsClient.connect({ port: server.port, timeoutMs: 5000 });
    await c.sendFrame({ opcode: OP.PING, payload: 'alive?' });
    await c.waitFor((x) => x.frames.length >= 1, 5000, 'a pong');
    const f = c.frames[0];
    if (f.opcode !== OP.PONG || f.payload.toString() !== 'alive?') return `liveness ping answered with ${describeFrames(c.frames)}`;
    await c.sendClose(1000);
    await c.waitTcpClose(5000);
    return null;
  } catch (err) {
    return `server ${server.name} no longer accepts connections: ${err.message}`;
  } finally {
    c?.destroy();
  }
}

async function runCase(kase, getServer, opts) {
  const clients = [];
  const privates = [];
  const server = await getServer(kase.server ?? 'default');
  const t = {
    server,
    port: server.port,
    // messages per case for the 12.x / 13.x echo loops (--full: 1000, as Autobahn)
    messages: opts.messages,
    async connect(o = {}) {
      const port = o.port ?? server.port;
      const target = [server, ...privates].find((s) => s.port === port);
      const c = await WsClient.connect({ port, server: target ? target.model : undefined, ...o });
      clients.push(c);
      return c;
    },
    // A server of the case's own (e.g. to signal it); stopped when the case ends.
    async startServer(extra = []) {
      const s = new ServerProc(`${kase.id}#${privates.length + 1}`, opts.bin, extra, opts.verbose);
      privates.push(s);
      return s.start();
    },
  };
  const limit = (typeof kase.timeoutMs === 'function' ? kase.timeoutMs(opts) : kase.timeoutMs) ?? 30000;
  let timer;
  let error = null;
  try {
    await Promise.race([
      kase.run(t),
      new Promise((_, rej) => {
        timer = setTimeout(() => rej(new CaseError(`case did not finish within ${limit} ms`)), limit);
      }),
    ]);
    for (const [i, c] of clients.entries()) {
      if (c.violations.length) {
        error = new CaseError(`server broke RFC 6455 on connection ${i + 1}: ${c.violations.slice(0, 3).join('; ')}`);
        break;
      }
    }
  } catch (err) {
    error = err;
    const v = clients.flatMap((c) => c.violations);
    if (v.length) error.message += ` [also: ${v.slice(0, 2).join('; ')}]`;
  } finally {
    clearTimeout(timer);
    for (const c of clients) c.destroy();
    await Promise.all(privates.map((p) => p.stop()));
  }
  for (const p of privates) {
    if (p.sanitizer.length && !error) error = new CaseError(`server ${p.name}: sanitizer report: ${p.sanitizer.slice(0, 3).join(' | ')}`);
  }
  if (!error) {
    const dead = await liveness(server);
    if (dead) error = new CaseError(dead);
  } else {
    await new Promise((r) => setTimeout(r, 50)); // let a crash be noticed
    if (!server.alive) error.message += ` [server ${server.name} died: exit code ${server.exit.code}, signal ${server.exit.signal}]`;
  }
  return error;
}

// ---- main -----------------------------------------------------------------------

async function main() {
  process.exitCode = 2; // until the summary says otherwise (a stalled run must not look green)
  const opts = parseArgs(process.argv.slice(2));
  let cases = await loadCases();
  if (opts.cases) cases = cases.filter((k) => opts.cases.some((p) => idMatches(k.id, p)));
  if (cases.length === 0) usage(`no case matches ${opts.cases?.join(',')}`);

  const servers = new Map();
  const starting = new Map();
  const retired = [];
  const getServer = (name) => {
    const old = servers.get(name);
    if (old && old.exit && old.port !== null) {
      // it died during an earlier case (already reported there): start a fresh one
      retired.push(old);
      starting.delete(name);
    }
    if (!starting.has(name)) {
      const s = new ServerProc(name, opts.bin, SERVERS[name], opts.verbose);
      servers.set(name, s);
      starting.set(name, s.start());
    }
    return starting.get(name);
  };
  const stopAll = () => Promise.all([...servers.values(), ...retired].map((s) => s.stop()));
  let interrupted = false;
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, async () => {
      interrupted = true;
      await stopAll();
      process.exit(130);
    });
  }

  const t0 = Date.now();
  let passed = 0;
  let failed = 0;
  const failures = [];
  let next = 0;
  const results = new Array(cases.length);
  let printed = 0;
  const flush = () => {
    while (printed < cases.length && results[printed]) {
      const { kase, err, ms } = results[printed];
      const time = opts.verbose ? ` (${ms} ms)` : '';
      if (err) process.stdout.write(`FAIL ${kase.id} ${kase.desc}${time}: ${err.message}\n`);
      else process.stdout.write(`ok ${kase.id} ${kase.desc}${time}\n`);
      printed++;
    }
  };
  const worker = async () => {
    while (next < cases.length && !interrupted) {
      const i = next++;
      const kase = cases[i];
      const start = Date.now();
      let err;
      try {
        err = await runCase(kase, getServer, opts);
      } catch (e) {
        err = e;
      }
      if (err && !(err instanceof CaseError) && opts.verbose) process.stderr.write(`${err.stack}\n`);
      results[i] = { kase, err, ms: Date.now() - start };
      if (err) {
        failed++;
        failures.push(kase.id);
      } else passed++;
      flush();
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.min(opts.jobs, cases.length) }, worker));
  } finally {
    await stopAll();
  }
  for (const s of [...retired, ...servers.values()]) {
    if (s.sanitizer.length) {
      failed++;
      failures.push(`server:${s.name}`);
      process.stdout.write(`FAIL server ${s.name}: sanitizer report:\n${s.tail.slice(-60).join('\n')}\n`);
    } else if (s.killed) {
      process.stdout.write(`# warning: server ${s.name} needed SIGKILL (did not exit within 5 s of SIGTERM)\n`);
    } else if (opts.verbose && s.exit) {
      process.stdout.write(`# server ${s.name} exited with code ${s.exit.code} signal ${s.exit.signal}\n`);
    }
  }
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (failures.length) process.stdout.write(`# failed: ${failures.join(' ')}\n`);
  process.stdout.write(`# ${cases.length} cases in ${secs} s\n`);
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  process.exitCode = failed === 0 ? 0 : 1;
}

main().catch((err) => {
  process.stderr.write(`run.mjs: ${err.stack ?? err}\n`);
  process.exit(2);
});
