// tests/e2e/lib/redis.mjs — a real redis-server for the tests that need
// one (cluster, ops): started on a free loopback port without persistence,
// stopped by PID (SIGTERM, SIGKILL after 5 s; a process 'exit' hook
// SIGKILLs any left over), and spoken to with raw RESP over node:net.

import net from 'node:net';
import { spawn } from 'node:child_process';
import { HOST, WAIT_MS } from './server.mjs';
import { sleep } from './chat.mjs';

// redis-server, started and stopped by the test

const redisProcs = new Set();
process.on('exit', () => {
  for (const p of redisProcs) {
    try { p.kill('SIGKILL'); } catch { /* gone */ }
  }
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, HOST, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// One raw exchange: writes bytes, resolves with what came back once
// done(buffer) says it is complete.
function rawExchange(port, bytes, done, ms = 2000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: HOST });
    let buf = Buffer.alloc(0);
    const finish = (err, v) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err); else resolve(v);
    };
    const timer = setTimeout(() => finish(new Error(`no complete reply from Redis on ${port}`)), ms);
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = done(buf);
      if (r !== undefined) finish(null, r);
    });
    sock.on('error', (e) => finish(e));
    sock.on('close', () => finish(new Error('Redis closed the connection')));
  });
}

// One RESP reply at buf[at] (simple string, error, integer, bulk string,
// array): { value, end }, or undefined while incomplete.
function parseReply(buf, at = 0) {
  const eol = buf.indexOf('\r\n', at);
  if (eol < 0) return undefined;
  const line = buf.subarray(at + 1, eol).toString('latin1');
  const n = Number(line);
  switch (String.fromCharCode(buf[at])) {
    case '+': return { value: line, end: eol + 2 };
    case '-': return { value: { error: line }, end: eol + 2 };
    case ':': return { value: n, end: eol + 2 };
    case '$':
      if (n < 0) return { value: null, end: eol + 2 };
      if (buf.length < eol + 2 + n + 2) return undefined;
      return { value: buf.subarray(eol + 2, eol + 2 + n).toString('utf8'), end: eol + 4 + n };
    case '*': {
      const value = [];
      let end = eol + 2;
      for (let i = 0; i < n; i++) {
        const r = parseReply(buf, end);
        if (r === undefined) return undefined;
        value.push(r.value);
        end = r.end;
      }
      return { value: n < 0 ? null : value, end };
    }
    default: throw new Error(`unexpected RESP reply ${JSON.stringify(buf.toString('latin1'))}`);
  }
}

// A command as a RESP array of bulk strings; resolves with its reply.
export function redisCmd(port, ...args) {
  let s = `*${args.length}\r\n`;
  for (const a of args) s += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`;
  return rawExchange(port, Buffer.from(s), (b) => parseReply(b)?.value, WAIT_MS);
}

export class Redis {
  constructor(port) {
    this.port = port;
    this.log = '';
    this.proc = spawn('redis-server', ['--port', String(port), '--bind', HOST, '--save', '',
      '--appendonly', 'no', '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    redisProcs.add(this.proc);
    this.exit = null;
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        redisProcs.delete(this.proc);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    this.proc.on('error', (e) => { this.log += `spawn: ${e.message}\n`; });
    for (const s of [this.proc.stdout, this.proc.stderr]) s.on('data', (d) => { this.log += d; });
  }

  // Starts redis-server on port and waits until a raw PING gets +PONG.
  static async start(port) {
    const r = new Redis(port);
    const until = Date.now() + 10000;
    for (;;) {
      if (r.exit) throw new Error(`redis-server exited (${JSON.stringify(r.exit)}):\n${r.log}`);
      try {
        const got = await rawExchange(port, Buffer.from('PING\r\n'),
          (b) => (b.includes('\r\n') ? b.toString('latin1') : undefined), 1000);
        if (got.startsWith('+PONG')) return r;
      } catch { /* not up yet */ }
      if (Date.now() > until) {
        await r.stop();
        throw new Error(`redis-server on ${port} did not answer PING within 10 s:\n${r.log}`);
      }
      await sleep(50);
    }
  }

  async kill() {
    if (!this.exit) this.proc.kill('SIGKILL');
    await this.exited;
  }

  // SIGTERM; SIGKILL after 5 s.
  async stop() {
    if (this.exit) return;
    this.proc.kill('SIGTERM');
    let timer;
    const t = new Promise((r) => { timer = setTimeout(() => r(null), 5000); });
    const res = await Promise.race([this.exited, t]);
    clearTimeout(timer);
    if (!res) await this.kill();
  }
}
