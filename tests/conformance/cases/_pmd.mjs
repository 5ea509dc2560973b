// _pmd.mjs — what the permessage-deflate categories (12, 13, 14) share.
//
// Why it exists: the Autobahn-style echo loop (send one compressed message,
// wait for its echo, compare SHA-1, repeat), the offers Autobahn's client
// makes and the answers wshub owes them, and a rule for when an echo must
// come compressed. Not a category of its own (the leading underscore keeps
// the runner from loading it as one).
//
// Ownership: stateless helpers; a loop owns nothing but the client it is given.

import crypto from 'node:crypto';
import { OP, CaseError, waitFrames, closeAndExpect, describeFrame } from '../lib.mjs';
import { deflateMessage } from '../pmd.mjs';

/** Autobahn's default client offer (PerMessageDeflateOffer()). */
export const DEFAULT_OFFER = 'permessage-deflate; client_no_context_takeover; client_max_window_bits';

/** wshub's answer to DEFAULT_OFFER, and to it + server_no_context_takeover. */
export const DEFAULT_ANSWER = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';

export const sha1 = (b) => crypto.createHash('sha1').update(b).digest('hex');

/**
 * Whether the server owes a compressed echo of `msg`: never below the
 * threshold (it must come plain), always when zlib at the server's level and
 * window makes it clearly smaller (to 90 % or less), else either way (the
 * contract sends plain whatever compression does not shrink).
 */
export function mustCompress(msg, { threshold = 64, windowBits = 15, level = 6 } = {}) {
  if (msg.length < threshold) return false;
  const z = deflateMessage(msg, { windowBits, level });
  return z.length <= msg.length * 0.9 ? true : undefined;
}

/** The k-th message of a loop: LEN bytes of the data set from where the previous one ended, wrapping (as Autobahn). */
export function sliceAt(data, ptr, len) {
  if (ptr + len <= data.length) return data.subarray(ptr, ptr + len);
  const out = Buffer.alloc(len);
  let off = 0;
  let p = ptr;
  while (off < len) {
    const k = Math.min(len - off, data.length - p);
    data.copy(out, off, p, p + k);
    off += k;
    p = (p + k) % data.length;
  }
  return out;
}

/**
 * Autobahn 12.x/13.x: `count` messages of `size` bytes from `set`, each sent
 * compressed (cut into frames of `fragment` bytes of compressed payload,
 * RSV1 on the first), each echo awaited and compared (type, length, SHA-1,
 * plain/compressed as mustCompress says) before the next goes out; then the
 * closing handshake. `server`: the server's { threshold, level }.
 */
export async function echoLoop(c, { set, size, fragment, count, server = {} }) {
  if (!c.pmd) throw new CaseError(`expected permessage-deflate to be negotiated, got no Sec-WebSocket-Extensions (${c.extensionsAnswer?.join(' + ') || 'none'})`);
  const windowBits = c.pmd.serverMaxWindowBits;
  let ptr = 0;
  let compressedEchoes = 0;
  for (let k = 0; k < count; k++) {
    const msg = sliceAt(set.data, ptr, size);
    ptr = (ptr + size) % set.data.length;
    const want = sha1(msg);
    const z = mustCompress(msg, { threshold: server.threshold ?? 64, windowBits, level: server.level ?? 6 });
    await c.sendCompressed(set.opcode, msg, { fragment });
    await waitFrames(c, 1, 10000, [{ opcode: set.opcode, payload: msg }]);
    const f = c.frames[0];
    const at = `message ${k + 1} of ${count} (${size} bytes from offset ${(ptr - size + set.data.length) % set.data.length})`;
    if (c.violations.length) throw new CaseError(`${at}: ${c.violations[0]}`);
    if (c.frames.length !== 1 || f.opcode !== set.opcode || !f.fin)
      throw new CaseError(`${at}: expected one ${set.opcode === OP.TEXT ? 'text' : 'binary'} frame with FIN, got ${c.frames.map(describeFrame).join(', ')}`);
    if (!f.data) throw new CaseError(`${at}: echo does not inflate: ${describeFrame(f)}`);
    if (f.data.length !== size) throw new CaseError(`${at}: expected an echo of ${size} bytes, got ${f.data.length} bytes (${describeFrame(f)})`);
    const got = sha1(f.data);
    if (got !== want) throw new CaseError(`${at}: expected echo SHA-1 ${want}, got ${got} (${describeFrame(f)})`);
    if (z !== undefined && f.compressed !== z)
      throw new CaseError(`${at}: expected the echo ${z ? 'compressed (RSV1=1): zlib shrinks it to 90 % or less' : 'plain (RSV1=0): below the threshold'}, got ${describeFrame(f)}`);
    if (f.compressed) compressedEchoes++;
    c.forgetFrames();
  }
  await closeAndExpect(c, []);
  return { compressedEchoes };
}

/** Per-case limit for an echo loop: generous, growing with the message count (--full). */
export const loopTimeout = (opts) => 30000 + opts.messages * 500;
