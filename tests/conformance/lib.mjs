// lib.mjs — expectations shared by the conformance cases.
//
// Why it exists: almost every case is "send these bytes, then the server's
// complete answer must be exactly this list of frames, then TCP must end
// like this". These helpers wait for that answer and throw a CaseError whose
// message says what was expected and what came instead, with payloads shown
// in hex, so a failure line in the runner's output is enough to reproduce it.
// Helpers never sleep to decide an outcome when an ordering argument will do.

import { OP, opName, buildFrame, closePayload, toBuf, sleep } from './wsclient.mjs';

export { OP, buildFrame, closePayload, toBuf, sleep };

export class CaseError extends Error {}

/** Default time to wait for an answer the server owes us (generous for ASan builds). */
export const WAIT_MS = 5000;

export function hex(buf, max = 48) {
  const b = toBuf(buf);
  const h = b.subarray(0, max).toString('hex');
  return b.length > max ? `${h}…(${b.length} bytes)` : h;
}

function showPayload(p) {
  if (p.length === 0) return 'empty';
  return `${p.length} bytes ${hex(p, 24)}`;
}

export function describeFrame(f) {
  if (!f) return 'nothing';
  const flags = `${f.fin ? '' : ' FIN=0'}${f.rsv ? ` RSV=${f.rsv}` : ''}${f.masked ? ' MASKED' : ''}`;
  if (f.opcode === OP.CLOSE) {
    const p = f.payload;
    if (p.length >= 2) {
      const reason = p.length > 2 ? ` reason ${JSON.stringify(p.subarray(2).toString('utf8'))}` : '';
      return `close(${p.readUInt16BE(0)}${reason})${flags}`;
    }
    return `close(${p.length ? hex(p) : 'empty'})${flags}`;
  }
  if (f.compressed) {
    const inner = f.data ? `inflated ${showPayload(f.data)}` : 'does not inflate';
    return `${opName(f.opcode)}(${inner}; ${f.payload.length} bytes on the wire)${flags}`;
  }
  return `${opName(f.opcode)}(${showPayload(f.payload)})${flags}`;
}

export function describeFrames(frames) {
  if (frames.length === 0) return 'no frames';
  if (frames.length > 8) {
    return `${frames.length} frames: ${frames.slice(0, 4).map(describeFrame).join(', ')}, …, ${frames
      .slice(-3)
      .map(describeFrame)
      .join(', ')}`;
  }
  return frames.map(describeFrame).join(', ');
}

// ---- expected-frame constructors --------------------------------------------

// Data messages match the message as the application sees it (inflated when
// it came compressed). `compressed`: true = must have come with RSV1
// (permessage-deflate), false = must have come plain, undefined = either.
export const text = (payload, { compressed } = {}) => ({ opcode: OP.TEXT, payload: toBuf(payload), compressed });
export const binary = (payload, { compressed } = {}) => ({ opcode: OP.BINARY, payload: toBuf(payload), compressed });
export const pong = (payload) => ({ opcode: OP.PONG, payload: toBuf(payload) });
export const ping = (payload) => ({ opcode: OP.PING, payload: toBuf(payload) });
/**
 * A server close frame. `code` undefined = empty payload; `exact` = payload must be just
 * the code, or the code followed by exactly `reason` when one is given (wshub, like wslay,
 * echoes the peer's code and reason).
 */
export const close = (code, { exact = true, reason } = {}) => ({ opcode: OP.CLOSE, code, exact, reason });

function describeExpected(e) {
  if (!e) return 'nothing';
  if (e.opcode === OP.CLOSE) {
    if (e.code === undefined) return 'close(empty)';
    if (e.reason) return `close(${e.code} reason ${JSON.stringify(e.reason)})`;
    return `close(${e.code}${e.exact ? '' : ' + any reason'})`;
  }
  const z = e.compressed === true ? ' compressed' : e.compressed === false ? ' plain' : '';
  return `${opName(e.opcode)}(${showPayload(e.payload)})${z}`;
}

function describeExpectedList(list) {
  if (list.length === 0) return 'no frames';
  if (list.length > 8) return `${list.length} frames: ${list.slice(0, 3).map(describeExpected).join(', ')}, …, ${list.slice(-2).map(describeExpected).join(', ')}`;
  return list.map(describeExpected).join(', ');
}

function frameMatches(f, e) {
  if (!f || f.opcode !== e.opcode || !f.fin || f.masked) return false;
  // RSV1 only as the client validated it: a compressed data message of a deflate session
  if (f.rsv && !(f.rsv === 4 && f.compressed)) return false;
  if (e.opcode === OP.CLOSE) {
    if (e.code === undefined) return f.payload.length === 0;
    if (f.payload.length < 2 || f.payload.readUInt16BE(0) !== e.code) return false;
    if (!e.exact) return true;
    return f.payload.subarray(2).equals(Buffer.from(e.reason ?? '', 'utf8'));
  }
  if (e.opcode === OP.TEXT || e.opcode === OP.BINARY) {
    if (e.compressed !== undefined && Boolean(f.compressed) !== e.compressed) return false;
    return Boolean(f.data) && f.data.equals(e.payload);
  }
  return f.payload.equals(e.payload);
}

/** Compare the whole list of frames received so far to `expected`; throw on mismatch. */
export function checkFrames(c, expected, context = '') {
  const got = c.frames;
  const n = Math.max(got.length, expected.length);
  for (let i = 0; i < n; i++) {
    if (!frameMatches(got[i], expected[i] ?? { opcode: -1 })) {
      throw new CaseError(
        `${context}frame #${i + 1}: expected ${describeExpected(expected[i])} got ${describeFrame(got[i])}` +
          ` (expected sequence: ${describeExpectedList(expected)}; got: ${describeFrames(got)}; TCP ${c.tcp})`
      );
    }
  }
}

async function waitOrThrow(c, pred, what, timeoutMs, expected) {
  try {
    await c.waitFor(pred, timeoutMs, what);
  } catch (err) {
    const exp = expected ? `expected ${describeExpectedList(expected)} ` : `expected ${what} `;
    throw new CaseError(`${exp}got ${describeFrames(c.frames)} (${err.message})`);
  }
}

/** Wait until at least `n` frames have arrived. */
export function waitFrames(c, n, timeoutMs = WAIT_MS, expected) {
  return waitOrThrow(c, (x) => x.frames.length >= n, `${n} frame(s)`, timeoutMs, expected);
}

/** Wait until the frames so far equal `expected` exactly (checked as soon as enough arrived). */
export async function expectFrames(c, expected, timeoutMs = WAIT_MS) {
  await waitFrames(c, expected.length, timeoutMs, expected);
  checkFrames(c, expected);
}

/** Wait for the TCP connection to end; `want`: 'fin' (clean) or 'any' (FIN or RST). */
export async function expectTcpClosed(c, want = 'fin', timeoutMs = WAIT_MS) {
  let state;
  try {
    state = await c.waitTcpClose(timeoutMs);
  } catch (err) {
    throw new CaseError(`expected the server to close TCP, got ${err.message} (frames: ${describeFrames(c.frames)})`);
  }
  if (want === 'fin' && state !== 'fin') {
    throw new CaseError(`expected TCP to end with FIN, got ${state}${c.tcpError ? ` (${c.tcpError.code})` : ''}`);
  }
  return state;
}

/**
 * Client-initiated closing handshake at the end of a case: send close(code)
 * (no payload when code is undefined), then the complete answer must be
 * `expectedBefore` followed by the server's close echo, and TCP must end.
 */
export async function closeAndExpect(c, expectedBefore, code = 1000, opts = {}) {
  const { reason, tcp = 'fin', timeoutMs = WAIT_MS, echoCode = code } = opts;
  await c.sendClose(code, reason);
  // The close is echoed with its reason; a different code (an error) has none of ours.
  const all = [...expectedBefore, close(echoCode, { reason: echoCode === code ? reason : undefined })];
  await waitOrThrow(c, (x) => x.closeFrame !== null, 'a close frame', timeoutMs, all);
  await expectTcpClosed(c, tcp, timeoutMs);
  checkFrames(c, all);
}

/**
 * The usual success case: wait for `expected` (the echoes/pongs owed for what
 * the case sent), then close normally; nothing else may have arrived.
 */
export async function expectThenClose(c, expected, opts = {}) {
  await expectFrames(c, expected, opts.timeoutMs ?? WAIT_MS);
  await closeAndExpect(c, expected, 1000, opts);
}

/**
 * The usual failure case: the server must send `expectedBefore` (e.g. echoes
 * of valid messages sent earlier), then one close frame with `code` (a
 * reason may follow the code), then close TCP (FIN or RST: after a protocol
 * error it may have unread bytes of ours). The client answers the close
 * frame automatically.
 */
export async function expectFail(c, code, expectedBefore = [], opts = {}) {
  const { timeoutMs = WAIT_MS, tcp = 'any' } = opts;
  const all = [...expectedBefore, close(code, { exact: false })];
  await waitOrThrow(c, (x) => x.closeFrame !== null, `close ${code}`, timeoutMs, all);
  await expectTcpClosed(c, tcp, timeoutMs);
  checkFrames(c, all);
}

export function expect(cond, expected, got) {
  if (!cond) throw new CaseError(`expected ${expected} got ${got}`);
}

/** Deterministic pseudo-random bytes (so failures reproduce). */
export function pseudoRandomBytes(n, seed = 1) {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** Split `buf` into frames of at most `size` bytes: first with `opcode`, rest continuation. */
export function fragmentFrames(opcode, buf, size, frameOpts = {}) {
  const b = toBuf(buf);
  const out = [];
  if (b.length === 0) return buildFrame({ opcode, payload: b, ...frameOpts });
  for (let off = 0; off < b.length; off += size) {
    const end = Math.min(off + size, b.length);
    out.push(buildFrame({ opcode: off === 0 ? opcode : OP.CONT, fin: end === b.length, payload: b.subarray(off, end), ...frameOpts }));
  }
  return Buffer.concat(out);
}
