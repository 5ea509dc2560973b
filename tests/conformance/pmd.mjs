// pmd.mjs — permessage-deflate (RFC 7692) pieces for the conformance client.
//
// Why it exists: the suite must check a server's Sec-WebSocket-Extensions
// answer and its compressed frames strictly, and must be able to send
// compressed data that no well-behaved library would (context the server did
// not allow, data after a final block, a window too large). This module
// holds what that needs and nothing that touches a socket:
//   - parseExtensionList: the RFC 6455 §9.1 grammar of the header, strict
//     (null when a header value does not match it);
//   - wshubAnswer: what wshub must answer to an offer, as its contract says
//     (first acceptable permessage-deflate offer, exact response string);
//   - checkResponse: RFC 7692 rules a response must follow whatever the
//     server (parameters allowed by the offer, values in range);
//   - deflateMessage / inflateMessage: node:zlib raw deflate with
//     Z_SYNC_FLUSH and the 00 00 ff ff trailer handled as RFC 7692 §7.2 says;
//   - inflateRawJs: a small independent DEFLATE decoder that also reports the
//     largest back-reference distance, so a server's declared window can be
//     checked exactly (zlib itself does not enforce a raw window).
//
// Ownership: pure functions; every Buffer returned is a fresh one owned by
// the caller.

import zlib from 'node:zlib';

export const TRAILER = Buffer.from([0x00, 0x00, 0xff, 0xff]);
export const PMD = 'permessage-deflate';
const Z_SYNC = zlib.constants.Z_SYNC_FLUSH;

// ---- header grammar ------------------------------------------------------------

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const isOws = (ch) => ch === ' ' || ch === '\t';

/**
 * Parse one Sec-WebSocket-Extensions header value. Returns a list of
 * { name, params: [{ name, value }] } (value: null when absent, the unquoted
 * string otherwise, with `quoted` set when it was a quoted-string), or null
 * when the value does not match
 *   list = [elem] *( OWS "," OWS [elem] )
 *   elem = token *( OWS ";" OWS token [ OWS "=" OWS ( token / quoted-string ) ] )
 */
export function parseExtensionValue(s) {
  let i = 0;
  const n = s.length;
  const ows = () => {
    while (i < n && isOws(s[i])) i++;
  };
  const token = () => {
    const st = i;
    while (i < n && TCHAR.test(s[i])) i++;
    return i > st ? s.slice(st, i) : null;
  };
  const quoted = () => {
    if (s[i] !== '"') return null;
    i++;
    let out = '';
    while (i < n) {
      const ch = s[i];
      const code = ch.charCodeAt(0);
      if (ch === '"') {
        i++;
        return out;
      }
      if (ch === '\\') {
        if (i + 1 >= n) return null;
        const nx = s.charCodeAt(i + 1);
        if (!(nx === 9 || nx === 32 || (nx >= 0x21 && nx <= 0x7e) || nx >= 0x80)) return null;
        out += s[i + 1];
        i += 2;
        continue;
      }
      if (!(code === 9 || code === 32 || code === 0x21 || (code >= 0x23 && code <= 0x5b) || (code >= 0x5d && code <= 0x7e) || code >= 0x80)) return null;
      out += ch;
      i++;
    }
    return null; // unterminated
  };
  const list = [];
  ows();
  for (;;) {
    if (i >= n) break;
    if (s[i] === ',') {
      i++;
      ows();
      continue;
    }
    const name = token();
    if (name === null) return null;
    const elem = { name, params: [] };
    for (;;) {
      ows();
      if (s[i] !== ';') break;
      i++;
      ows();
      const pname = token();
      if (pname === null) return null;
      const save = i;
      ows();
      if (s[i] === '=') {
        i++;
        ows();
        if (s[i] === '"') {
          const v = quoted();
          if (v === null) return null;
          elem.params.push({ name: pname, value: v, quoted: true });
        } else {
          const v = token();
          if (v === null) return null;
          elem.params.push({ name: pname, value: v, quoted: false });
        }
      } else {
        i = save;
        elem.params.push({ name: pname, value: null, quoted: false });
      }
    }
    list.push(elem);
    ows();
    if (i >= n) break;
    if (s[i] !== ',') return null;
    i++;
    ows();
  }
  return list;
}

/** Parse several header values (one per header line) into one list, or null if any is malformed. */
export function parseExtensionList(values) {
  const all = [];
  for (const v of values) {
    const l = parseExtensionValue(v.trim());
    if (l === null) return null;
    all.push(...l);
  }
  return all;
}

/** A window-bits value as RFC 7692 writes it: 8..15, no leading zero. */
export function bitsValue(v) {
  return typeof v === 'string' && /^(8|9|1[0-5])$/.test(v) ? Number(v) : null;
}

const KNOWN = new Set(['server_no_context_takeover', 'client_no_context_takeover', 'server_max_window_bits', 'client_max_window_bits']);

/**
 * An offer's parameters if RFC 7692 lets a server accept it (known
 * parameters, each once, values where they belong and in range), else null.
 * Result: { snct, cnct, smwb (number|null), cmwb (number|null|undefined: absent) }.
 */
export function acceptableOffer(elem) {
  if (elem.name !== PMD) return null;
  const seen = new Set();
  const o = { snct: false, cnct: false, smwb: null, cmwb: undefined };
  for (const p of elem.params) {
    if (!KNOWN.has(p.name) || seen.has(p.name)) return null;
    seen.add(p.name);
    if (p.name === 'server_no_context_takeover' || p.name === 'client_no_context_takeover') {
      if (p.value !== null) return null;
      if (p.name === 'server_no_context_takeover') o.snct = true;
      else o.cnct = true;
    } else if (p.name === 'server_max_window_bits') {
      const b = bitsValue(p.value);
      if (b === null) return null;
      o.smwb = b;
    } else {
      if (p.value === null) o.cmwb = null;
      else {
        const b = bitsValue(p.value);
        if (b === null) return null;
        o.cmwb = b;
      }
    }
  }
  return o;
}

/**
 * What wshub must answer (its contract, /tmp/pmd-spec.md in the brief; see
 * tests/conformance/README.md): { status: 400 } for a malformed header,
 * else { status: 101, response: string | null }.
 * server: { deflate: bool, clientWindow: 0 | 8..15 }.
 */
export function wshubAnswer(values, server) {
  if (!server.deflate || values.length === 0) return { status: 101, response: null };
  const list = parseExtensionList(values);
  if (list === null) return { status: 400 };
  for (const elem of list) {
    const o = acceptableOffer(elem);
    if (!o) continue;
    let r = `${PMD}; server_no_context_takeover`;
    if (o.smwb !== null) r += `; server_max_window_bits=${o.smwb}`;
    const bits = server.clientWindow;
    if (bits === 0 || o.cnct) r += '; client_no_context_takeover';
    else if (o.cmwb !== undefined) r += `; client_max_window_bits=${Math.min(bits, o.cmwb ?? 15)}`;
    else if (bits !== 15) r += '; client_no_context_takeover';
    return { status: 101, response: r };
  }
  return { status: 101, response: null };
}

/**
 * Check a server's response header values against the offer (RFC 7692 §5,
 * §7.1). Returns { error } or { params: { serverNoContextTakeover,
 * serverMaxWindowBits, clientNoContextTakeover, clientMaxWindowBits } }.
 */
export function checkResponse(offerValues, responseValues) {
  const show = responseValues.map((v) => JSON.stringify(v)).join(', ');
  if (responseValues.length !== 1) return { error: `expected one Sec-WebSocket-Extensions line, got ${responseValues.length}: ${show}` };
  const list = parseExtensionList(responseValues);
  if (list === null) return { error: `Sec-WebSocket-Extensions ${show} does not match the RFC 6455 grammar` };
  if (list.length !== 1) return { error: `expected exactly one extension in the response, got ${list.length}: ${show}` };
  const r = list[0];
  const offers = parseExtensionList(offerValues) ?? [];
  if (!offers.some((o) => o.name === r.name)) return { error: `the server answered extension "${r.name}", which was not offered` };
  if (r.name !== PMD) return { error: `the server answered extension "${r.name}" (the client only knows ${PMD})` };
  const seen = new Set();
  const got = { snct: false, cnct: false, smwb: null, cmwb: null };
  for (const p of r.params) {
    if (!KNOWN.has(p.name)) return { error: `response parameter ${p.name} is not a ${PMD} parameter (${show})` };
    if (seen.has(p.name)) return { error: `response repeats ${p.name} (${show})` };
    seen.add(p.name);
    if (p.name.endsWith('no_context_takeover')) {
      if (p.value !== null) return { error: `response parameter ${p.name} must have no value (${show})` };
      got[p.name.startsWith('server') ? 'snct' : 'cnct'] = true;
    } else {
      const b = bitsValue(p.value);
      if (b === null) return { error: `response parameter ${p.name} needs a value 8..15 without leading zeros, got ${JSON.stringify(p.value)} (${show})` };
      got[p.name.startsWith('server') ? 'smwb' : 'cmwb'] = b;
    }
  }
  // It must accept one of the offers as RFC 7692 §7.1 allows.
  const fits = offers.map(acceptableOffer).filter(Boolean).some((o) => {
    if (o.snct && !got.snct) return false; // §7.1.1.1: accepted only by including it
    if (o.smwb !== null && (got.smwb === null || got.smwb > o.smwb)) return false; // §7.1.2.1
    if (o.smwb === null && got.smwb !== null) return false;
    if (got.cmwb !== null && (o.cmwb === undefined || (o.cmwb !== null && got.cmwb > o.cmwb))) return false; // §7.1.2.2
    return true;
  });
  if (!fits) return { error: `response ${show} accepts none of the offers (${offerValues.map((v) => JSON.stringify(v)).join(', ')})` };
  return {
    params: {
      serverNoContextTakeover: got.snct,
      serverMaxWindowBits: got.smwb ?? 15,
      clientNoContextTakeover: got.cnct,
      clientMaxWindowBits: got.cmwb ?? 15,
    },
  };
}

// ---- compression ---------------------------------------------------------------

/**
 * Compress one message as RFC 7692 §7.2.1 does: raw DEFLATE, flushed, the
 * trailing 00 00 ff ff removed. opts:
 *   windowBits  8..15 (zlib raises 8 to 9; with 9 no distance exceeds 250)
 *   level       0..9 (default 6)
 *   dictionary  earlier data the peer's window holds (context takeover)
 *   flush       'sync' (default), 'full' (Z_FULL_FLUSH), 'final' (BFINAL=1, nothing removed)
 *   keepTrailer leave the 00 00 ff ff on (breaks RFC 7692 7.2.1 step 3: a
 *               receiver's own 00 00 ff ff then leaves a stored block unfinished)
 */
export function deflateMessage(data, opts = {}) {
  const { windowBits = 15, level = 6, dictionary, flush = 'sync', keepTrailer = false } = opts;
  const zo = { windowBits: Math.max(9, windowBits), level };
  if (dictionary && dictionary.length) zo.dictionary = dictionary;
  if (flush === 'final') return zlib.deflateRawSync(data, zo);
  zo.finishFlush = flush === 'full' ? zlib.constants.Z_FULL_FLUSH : Z_SYNC;
  const out = zlib.deflateRawSync(data, zo);
  if (keepTrailer) return out;
  if (out.length < 4 || !out.subarray(out.length - 4).equals(TRAILER)) throw new Error('zlib flush did not end with 00 00 ff ff');
  return out.subarray(0, out.length - 4);
}

/**
 * Inflate one received message (RFC 7692 §7.2.2): append 00 00 ff ff and
 * inflate raw with the given window (and the earlier window content when the
 * sender keeps its context). Returns { data, consumed, total } where
 * consumed < total means the input held a final (BFINAL) block and bytes
 * after it. Throws on invalid DEFLATE data.
 */
export function inflateMessage(payload, { windowBits = 15, dictionary, maxOutputLength } = {}) {
  const input = Buffer.concat([payload, TRAILER]);
  const zo = { windowBits, finishFlush: Z_SYNC, info: true };
  if (dictionary && dictionary.length) zo.dictionary = dictionary;
  if (maxOutputLength) zo.maxOutputLength = maxOutputLength;
  const r = zlib.inflateRawSync(input, zo);
  return { data: r.buffer, consumed: r.engine.bytesWritten, total: input.length };
}

// ---- an independent DEFLATE decoder (RFC 1951) ---------------------------------

const LEN_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163, 195, 227, 258];
const LEN_EXTRA = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0];
const DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577];
const DIST_EXTRA = [0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13];
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

class DeflateError extends Error {}

/** Decoding table for canonical code lengths: entry = symbol << 4 | length, 0 = no code. */
function huffTable(lengths) {
  let max = 0;
  for (const l of lengths) if (l > max) max = l;
  if (max === 0) return { bits: 1, table: new Int32Array(2) };
  const count = new Array(16).fill(0);
  for (const l of lengths) if (l) count[l]++;
  let left = 1;
  for (let l = 1; l <= 15; l++) {
    left = left * 2 - count[l];
    if (left < 0) throw new DeflateError('over-subscribed Huffman code');
  }
  const next = new Array(16).fill(0);
  let code = 0;
  for (let l = 1; l <= 15; l++) {
    code = (code + count[l - 1]) << 1;
    next[l] = code;
  }
  const size = 1 << max;
  const table = new Int32Array(size);
  for (let sym = 0; sym < lengths.length; sym++) {
    const l = lengths[sym];
    if (!l) continue;
    const c = next[l]++;
    let rev = 0;
    for (let k = 0; k < l; k++) rev |= ((c >> k) & 1) << (l - 1 - k);
    for (let j = rev; j < size; j += 1 << l) table[j] = (sym << 4) | l;
  }
  return { bits: max, table };
}

let FIXED = null;
function fixedTables() {
  if (!FIXED) {
    const ll = new Array(288);
    for (let i = 0; i < 288; i++) ll[i] = i < 144 ? 8 : i < 256 ? 9 : i < 280 ? 7 : 8;
    FIXED = { lit: huffTable(ll), dist: huffTable(new Array(30).fill(5)) };
  }
  return FIXED;
}

/**
 * Decode raw DEFLATE data that may end in the middle of the stream (as a
 * flushed message does). Returns { data, maxDist, final, end } where end is
 * the byte offset just after the last complete block (the input must end
 * there) and maxDist the largest back-reference distance used. `history` is
 * earlier window content a distance may reach into. Throws on bad data.
 */
export function inflateRawJs(input, { history } = {}) {
  const hist = history ?? Buffer.alloc(0);
  let out = Buffer.alloc(Math.max(1024, input.length * 4));
  let olen = 0;
  let pos = 0;
  let bitbuf = 0;
  let bitcnt = 0;
  let maxDist = 0;
  const need = (n) => {
    while (bitcnt < n) {
      if (pos >= input.length) throw new DeflateError('input ends inside a block');
      bitbuf |= input[pos++] << bitcnt;
      bitcnt += 8;
    }
  };
  const bits = (n) => {
    if (n === 0) return 0;
    need(n);
    const v = bitbuf & ((1 << n) - 1);
    bitbuf >>>= n;
    bitcnt -= n;
    return v;
  };
  const decode = (h) => {
    // fill as many bits as possible up to h.bits, zero-padding at the end of input
    while (bitcnt < h.bits && pos < input.length) {
      bitbuf |= input[pos++] << bitcnt;
      bitcnt += 8;
    }
    const e = h.table[bitbuf & ((1 << h.bits) - 1)];
    const l = e & 15;
    if (l === 0) throw new DeflateError('invalid Huffman code');
    if (l > bitcnt) throw new DeflateError('input ends inside a block');
    bitbuf >>>= l;
    bitcnt -= l;
    return e >> 4;
  };
  const grow = (n) => {
    if (olen + n <= out.length) return;
    const nb = Buffer.alloc(Math.max(out.length * 2, olen + n));
    out.copy(nb, 0, 0, olen);
    out = nb;
  };
  let final = false;
  let end = 0;
  while (!final) {
    if (pos >= input.length && bitcnt < 8) break; // only padding bits left
    final = bits(1) === 1;
    const hdr = bits(2);
    if (hdr === 0) {
      pos -= bitcnt >> 3; // give back whole bytes already pulled, drop the partial one
      bitbuf = 0;
      bitcnt = 0;
      if (pos + 4 > input.length) throw new DeflateError('input ends inside a stored block header');
      const len = input[pos] | (input[pos + 1] << 8);
      const nlen = input[pos + 2] | (input[pos + 3] << 8);
      if ((len ^ 0xffff) !== nlen) throw new DeflateError('stored block length check failed');
      pos += 4;
      if (pos + len > input.length) throw new DeflateError('input ends inside a stored block');
      grow(len);
      input.copy(out, olen, pos, pos + len);
      olen += len;
      pos += len;
    } else if (hdr === 3) {
      throw new DeflateError('reserved block type 3');
    } else {
      let lit;
      let dist;
      if (hdr === 1) ({ lit, dist } = fixedTables());
      else {
        const hlit = bits(5) + 257;
        const hdist = bits(5) + 1;
        const hclen = bits(4) + 4;
        const cl = new Array(19).fill(0);
        for (let k = 0; k < hclen; k++) cl[CL_ORDER[k]] = bits(3);
        const clt = huffTable(cl);
        const lens = [];
        while (lens.length < hlit + hdist) {
          const sym = decode(clt);
          if (sym < 16) lens.push(sym);
          else if (sym === 16) {
            if (!lens.length) throw new DeflateError('repeat with no previous length');
            const prev = lens[lens.length - 1];
            for (let r = 3 + bits(2); r > 0; r--) lens.push(prev);
          } else if (sym === 17) for (let r = 3 + bits(3); r > 0; r--) lens.push(0);
          else for (let r = 11 + bits(7); r > 0; r--) lens.push(0);
        }
        if (lens.length > hlit + hdist) throw new DeflateError('code lengths overflow');
        if (!lens[256]) throw new DeflateError('no end-of-block code');
        lit = huffTable(lens.slice(0, hlit));
        dist = huffTable(lens.slice(hlit));
      }
      for (;;) {
        const sym = decode(lit);
        if (sym < 256) {
          grow(1);
          out[olen++] = sym;
        } else if (sym === 256) break;
        else {
          const li = sym - 257;
          if (li >= 29) throw new DeflateError('invalid length symbol');
          const len = LEN_BASE[li] + bits(LEN_EXTRA[li]);
          const ds = decode(dist);
          if (ds >= 30) throw new DeflateError('invalid distance symbol');
          const d = DIST_BASE[ds] + bits(DIST_EXTRA[ds]);
          if (d > olen + hist.length) throw new DeflateError('distance too far back');
          if (d > maxDist) maxDist = d;
          grow(len);
          for (let k = 0; k < len; k++) {
            const from = olen - d;
            out[olen] = from >= 0 ? out[from] : hist[hist.length + from];
            olen++;
          }
        }
      }
    }
    end = pos - (bitcnt >> 3);
  }
  return { data: out.subarray(0, olen), maxDist, final, end };
}

export { DeflateError };
