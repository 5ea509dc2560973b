// Category 14 (extra, not Autobahn's) — permessage-deflate negotiation,
// compressed framing, errors and limits, as wshub's contract states them.
//
//   14.1.x  negotiation: which offers are taken, declined or rejected (400),
//           and the exact answer
//   14.2.x  compressed echoes: RFC 7692's own examples, fragments, pings in
//           between, empty messages, plain messages in a deflate session,
//           the threshold, identical echoes of identical messages
//   14.3.x  failures: RSV bits (1002), bad DEFLATE data, data after a final
//           block, invalid UTF-8, context the server did not allow (1007)
//   14.4.x  limits: inflated and compressed size against --max-message,
//           zip bombs (1009, without the server's memory growing)
//   14.5.x  a server started with --deflate off
//   14.6.x  client context takeover (--deflate-client-window 10 and 15)
//
// Every connection that negotiates is checked by wsclient.mjs as well:
// the answer must be exactly wshub's, and every compressed server message
// must inflate on its own and be smaller than the message.

import net from 'node:net';
import { readFileSync } from 'node:fs';
import {
  OP, CaseError, buildFrame, text, binary, pong, expectThenClose, expectFail, expectFrames, closeAndExpect,
  pseudoRandomBytes, expect, hex,
} from '../lib.mjs';
import { frameMessage } from '../wsclient.mjs';
import { deflateMessage, inflateMessage } from '../pmd.mjs';
import { dataset } from './_datasets.mjs';
import { DEFAULT_OFFER, DEFAULT_ANSWER } from './_pmd.mjs';

const PMD = 'permessage-deflate';
const ANSWER = `${PMD}; server_no_context_takeover`;

// RFC 7692 section 7.2.3 examples (payloads without the frame header)
const HELLO_Z = Buffer.from('f248cdc9c90700', 'hex'); // 7.2.3.1 "Hello"
const HELLO_Z_CTX = Buffer.from('f200110000', 'hex'); // 7.2.3.2 the second "Hello", referring back to the first
const HELLO_STORED = Buffer.from('0005 00faff 48656c6c6f 00'.replace(/ /g, ''), 'hex'); // 7.2.3.3 stored block
const EMPTY_Z = Buffer.from([0x00]); // 7.2.3.6 an empty message

/** ASCII text that compresses well: the JSON data set from `off`. */
const json = (n, off = 0) => Buffer.from(dataset('json').data.subarray(off, off + n));

const pmdConnect = (t, o = {}) => t.connect({ extensions: DEFAULT_OFFER, expectExtensions: DEFAULT_ANSWER, ...o });

/** A frame with RSV1 whose payload is `z` (already compressed, or not DEFLATE at all). */
const zframe = (opcode, z, o = {}) => buildFrame({ opcode, payload: z, rsv: 4, ...o });

function mustNotInflateAlone(z, what) {
  try {
    inflateMessage(z);
  } catch {
    return;
  }
  throw new CaseError(`test setup: ${what} inflates without the earlier message, so it does not test context takeover`);
}

// ---- raw HTTP for the 400 cases --------------------------------------------------

/** Send an upgrade request with the given Sec-WebSocket-Extensions lines; resolve to { status, head, body }. */
function rawUpgrade(port, extLines, timeoutMs = 5000) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      if (err) return reject(err);
      const text = buf.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const head = end >= 0 ? text.slice(0, end) : text;
      resolve({ status: head.split('\r\n')[0], head, body: end >= 0 ? buf.subarray(end + 4).toString('utf8') : '' });
    };
    const timer = setTimeout(() => finish(new CaseError(`no complete HTTP response within ${timeoutMs} ms (got ${JSON.stringify(buf.toString('latin1').slice(0, 200))})`)), timeoutMs);
    const complete = () => {
      const text = buf.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return false;
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(text.slice(0, end));
      if (/^HTTP\/1\.1 101/.test(text)) return true;
      return m !== null && buf.length >= end + 4 + Number(m[1]);
    };
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (complete()) finish(null);
    });
    s.on('end', () => finish(null));
    s.on('error', (e) => (buf.length ? finish(null) : finish(e)));
    s.on('connect', () => {
      s.write([
        'GET / HTTP/1.1', `Host: 127.0.0.1:${port}`, 'Upgrade: websocket', 'Connection: Upgrade',
        'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13',
        ...extLines.map((v) => `Sec-WebSocket-Extensions: ${v}`), '', '',
      ].join('\r\n'));
    });
  });
}

// ---- 14.1 negotiation --------------------------------------------------------------

/**
 * Offer `offers` (one header line each); the 101 must carry exactly `answer`
 * (null: none). Then the session must behave accordingly: with deflate, a
 * compressed 4 KiB text comes back compressed; without, a plain text is
 * echoed and a frame with RSV1 fails with 1002.
 */
function negotiation(id, desc, offers, answer, server) {
  return {
    id,
    desc,
    server,
    async run(t) {
      const c = await t.connect({ extensions: offers, expectExtensions: answer });
      if (answer === null) {
        await c.sendText('plain');
        await c.send(zframe(OP.TEXT, HELLO_Z));
        await expectFail(c, 1002, [text('plain')]);
      } else {
        const m = json(4096);
        await c.sendCompressed(OP.TEXT, m);
        await expectThenClose(c, [text(m, { compressed: true })]);
      }
    },
  };
}

const DECLINED = [
  ['unknown parameter', `${PMD}; foo`],
  ['unknown parameter with a value', `${PMD}; foo=1`],
  ['repeated server_no_context_takeover', `${PMD}; server_no_context_takeover; server_no_context_takeover`],
  ['repeated client_no_context_takeover', `${PMD}; client_no_context_takeover; client_no_context_takeover`],
  ['repeated server_max_window_bits', `${PMD}; server_max_window_bits=10; server_max_window_bits=10`],
  ['repeated client_max_window_bits', `${PMD}; client_max_window_bits; client_max_window_bits=10`],
  ['server_no_context_takeover with a value', `${PMD}; server_no_context_takeover=1`],
  ['client_no_context_takeover with a value', `${PMD}; client_no_context_takeover=true`],
  ['server_no_context_takeover with an empty quoted value', `${PMD}; server_no_context_takeover=""`],
  ['server_max_window_bits without a value', `${PMD}; server_max_window_bits`],
  ['server_max_window_bits=7', `${PMD}; server_max_window_bits=7`],
  ['server_max_window_bits=16', `${PMD}; server_max_window_bits=16`],
  ['server_max_window_bits=010', `${PMD}; server_max_window_bits=010`],
  ['server_max_window_bits=08', `${PMD}; server_max_window_bits=08`],
  ['server_max_window_bits=1x', `${PMD}; server_max_window_bits=1x`],
  ['server_max_window_bits=0', `${PMD}; server_max_window_bits=0`],
  ['server_max_window_bits=-1', `${PMD}; server_max_window_bits=-1`],
  ['server_max_window_bits="7"', `${PMD}; server_max_window_bits="7"`],
  ['server_max_window_bits="016"', `${PMD}; server_max_window_bits="016"`],
  ['server_max_window_bits=""', `${PMD}; server_max_window_bits=""`],
  ['client_max_window_bits=7', `${PMD}; client_max_window_bits=7`],
  ['client_max_window_bits=16', `${PMD}; client_max_window_bits=16`],
  ['client_max_window_bits=010', `${PMD}; client_max_window_bits=010`],
  ['client_max_window_bits=1x', `${PMD}; client_max_window_bits=1x`],
  ['client_max_window_bits="16"', `${PMD}; client_max_window_bits="16"`],
];

const MALFORMED = [
  ['a parameter list ending in ";"', [`${PMD};`]],
  ['an empty parameter (";;")', [`${PMD};; server_no_context_takeover`]],
  ['"=" with no value', [`${PMD}; server_max_window_bits=`]],
  ['a value with no parameter name', [`${PMD}; =10`]],
  ['parameters separated by a space, not ";"', [`${PMD} server_no_context_takeover`]],
  ['a quoted extension name', ['"permessage-deflate"']],
  ['an unterminated quoted-string', [`${PMD}; server_max_window_bits="10`]],
  ['a parameter name with "@"', [`${PMD}; a@b`]],
  ['a list starting with ";"', [`;${PMD}`]],
  ['a value on the extension name', [`${PMD}=1`]],
  ['two tokens as one value', [`${PMD}; server_max_window_bits=1 0`]],
  ['a valid offer followed by a malformed one', [`${PMD}, foo;;`]],
  ['a malformed second header line', [`${PMD}`, `${PMD}; client_max_window_bits=`]],
];

const negotiationCases = [
  {
    id: '14.1.1',
    desc: 'no offer: no Sec-WebSocket-Extensions, a 4 KiB compressible text echoed plain, then RSV1 fails with 1002',
    async run(t) {
      const c = await t.connect({ expectExtensions: null });
      const m = json(4096);
      await c.sendText(m);
      await c.send(zframe(OP.TEXT, HELLO_Z));
      await expectFail(c, 1002, [text(m, { compressed: false })]);
    },
  },
  negotiation('14.1.2', 'only an unknown extension offered (x-webkit-deflate-frame): not answered, RSV1 fails with 1002',
    ['x-webkit-deflate-frame'], null),
  negotiation('14.1.3', 'an unknown extension, then permessage-deflate: the second is taken',
    ['foo; bar=1; baz="q,u;o=t\\"e", permessage-deflate'], `${ANSWER}; client_no_context_takeover`),
  negotiation('14.1.4', 'plain "permessage-deflate": answered with server_no_context_takeover; client_no_context_takeover',
    [PMD], `${ANSWER}; client_no_context_takeover`),
  negotiation('14.1.5', 'client_max_window_bits without a value is accepted (answer: client_no_context_takeover)',
    [`${PMD}; client_max_window_bits`], `${ANSWER}; client_no_context_takeover`),
  negotiation('14.1.6', 'quoted value server_max_window_bits="10" is accepted and answered unquoted',
    [`${PMD}; server_max_window_bits="10"`], `${ANSWER}; server_max_window_bits=10; client_no_context_takeover`),
  negotiation('14.1.7', 'quoted value client_max_window_bits="12" is accepted',
    [`${PMD}; client_max_window_bits="12"`], `${ANSWER}; client_no_context_takeover`),
  negotiation('14.1.8', 'quoted-string with a quoted-pair, server_max_window_bits="1\\1", means 11',
    [`${PMD}; server_max_window_bits="1\\1"`], `${ANSWER}; server_max_window_bits=11; client_no_context_takeover`),
  negotiation('14.1.9', 'spaces and tabs around ";" and "=" are allowed',
    [`${PMD} ;\tserver_max_window_bits = 11 ;client_max_window_bits\t; server_no_context_takeover`],
    `${ANSWER}; server_max_window_bits=11; client_no_context_takeover`),
  negotiation('14.1.10', 'empty list elements are tolerated (", ,permessage-deflate , ,")',
    [', ,permessage-deflate , ,'], `${ANSWER}; client_no_context_takeover`),
  negotiation('14.1.11', 'two header lines: an unknown extension, then permessage-deflate with server_max_window_bits=13',
    ['foo', `${PMD}; server_max_window_bits=13`], `${ANSWER}; server_max_window_bits=13; client_no_context_takeover`),
  negotiation('14.1.12', 'two header lines: a declined offer, then an acceptable one',
    [`${PMD}; bogus`, `${PMD}; server_max_window_bits=14`], `${ANSWER}; server_max_window_bits=14; client_no_context_takeover`),
  negotiation('14.1.13', 'two acceptable offers: the first is taken',
    [`${PMD}; server_max_window_bits=12, ${PMD}; server_max_window_bits=13`],
    `${ANSWER}; server_max_window_bits=12; client_no_context_takeover`),
  negotiation('14.1.14', 'parameters in any order: the answer keeps its own order',
    [`${PMD}; client_max_window_bits; server_max_window_bits=10; client_no_context_takeover; server_no_context_takeover`],
    `${ANSWER}; server_max_window_bits=10; client_no_context_takeover`),
  negotiation('14.1.15', 'three declined offers (7, 16, "1x"): no extension, RSV1 fails with 1002',
    [`${PMD}; server_max_window_bits=7, ${PMD}; server_max_window_bits=16`, `${PMD}; client_max_window_bits=1x`], null),
];

DECLINED.forEach(([what, offer], i) => {
  negotiationCases.push(negotiation(`14.1.${20 + 2 * i}`, `declined offer (${what}) alone: no extension, RSV1 fails with 1002`, [offer], null));
  negotiationCases.push(negotiation(`14.1.${21 + 2 * i}`, `declined offer (${what}), then one with server_max_window_bits=12: the second is taken`,
    [`${offer}, ${PMD}; server_max_window_bits=12`], `${ANSWER}; server_max_window_bits=12; client_no_context_takeover`));
});

MALFORMED.forEach(([what, lines], i) => {
  negotiationCases.push({
    id: `14.1.${80 + i}`,
    desc: `malformed header (${what}): 400 with "malformed Sec-WebSocket-Extensions" in the body`,
    async run(t) {
      const r = await rawUpgrade(t.port, lines);
      expect(/^HTTP\/1\.1 400( |$)/.test(r.status), `HTTP/1.1 400 for ${JSON.stringify(lines)}`, `"${r.status}" (body ${JSON.stringify(r.body.slice(0, 200))})`);
      expect(r.body.includes('malformed Sec-WebSocket-Extensions'), 'a body mentioning "malformed Sec-WebSocket-Extensions"', JSON.stringify(r.body.slice(0, 200)));
    },
  });
});

// every window size the client may ask of the server, each with a large compressible echo
for (let bits = 8; bits <= 15; bits++) {
  negotiationCases.push({
    id: `14.1.${100 + bits - 8}`,
    desc: `server_max_window_bits=${bits} is answered with ${bits}; a 64 KiB JSON echo refers back no further than ${1 << bits} bytes`,
    async run(t) {
      const c = await t.connect({
        extensions: `${PMD}; server_max_window_bits=${bits}`,
        expectExtensions: `${ANSWER}; server_max_window_bits=${bits}; client_no_context_takeover`,
      });
      const m = json(65536, 1000);
      await c.sendCompressed(OP.TEXT, m);
      await c.sendBinary(m); // sent plain, comes back compressed
      // wsclient decodes each echo with its own decoder and checks every distance against the window
      await expectThenClose(c, [text(m, { compressed: true }), binary(m, { compressed: true })]);
    },
  });
}

// ---- 14.2 compressed echoes ----------------------------------------------------------

const echoCases = [
  {
    id: '14.2.1',
    desc: 'compressed 16 KiB text is echoed compressed',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(16384);
      await c.sendCompressed(OP.TEXT, m);
      await expectThenClose(c, [text(m, { compressed: true })]);
    },
  },
  {
    id: '14.2.2',
    desc: 'compressed 16 KiB binary (bitmap) is echoed compressed',
    async run(t) {
      const c = await pmdConnect(t);
      const m = Buffer.from(dataset('bitmap').data.subarray(5000, 5000 + 16384));
      await c.sendCompressed(OP.BINARY, m);
      await expectThenClose(c, [binary(m, { compressed: true })]);
    },
  },
  {
    id: '14.2.3',
    desc: 'empty compressed text and binary messages (payload 00, RFC 7692 7.2.3.6) are echoed as empty plain messages',
    async run(t) {
      const c = await pmdConnect(t);
      await c.send(zframe(OP.TEXT, EMPTY_Z));
      await c.send(zframe(OP.BINARY, EMPTY_Z));
      await c.sendCompressed(OP.TEXT, ''); // zlib's own empty message
      await expectThenClose(c, [text('', { compressed: false }), binary('', { compressed: false }), text('', { compressed: false })]);
    },
  },
  {
    id: '14.2.4',
    desc: 'RFC 7692 examples: "Hello" compressed (7.2.3.1), in two fragments, and as a stored block (7.2.3.3) are echoed',
    async run(t) {
      const c = await pmdConnect(t);
      await c.send(zframe(OP.TEXT, HELLO_Z));
      await c.send(Buffer.concat([
        zframe(OP.TEXT, HELLO_Z.subarray(0, 3), { fin: false }),
        buildFrame({ opcode: OP.CONT, payload: HELLO_Z.subarray(3) }),
      ]));
      await c.send(zframe(OP.TEXT, HELLO_STORED));
      await expectThenClose(c, [text('Hello', { compressed: false }), text('Hello', { compressed: false }), text('Hello', { compressed: false })]);
    },
  },
  {
    id: '14.2.5',
    desc: '64 KiB text compressed, in 100 frames with a ping after every 10th: ten pongs, then one compressed echo',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(65536, 3000);
      const z = c.compressMessage(m);
      const size = Math.ceil(z.length / 100);
      const out = [];
      const want = [];
      for (let k = 0; k * size < z.length; k++) {
        const part = z.subarray(k * size, (k + 1) * size);
        const last = (k + 1) * size >= z.length;
        out.push(buildFrame({ opcode: k === 0 ? OP.TEXT : OP.CONT, rsv: k === 0 ? 4 : 0, fin: last, payload: part }));
        if (k % 10 === 9 && !last) {
          out.push(buildFrame({ opcode: OP.PING, payload: `after ${k + 1}` }));
          want.push(pong(`after ${k + 1}`));
        }
      }
      expect(want.length >= 9, 'at least 9 pings in the test', want.length);
      await c.send(Buffer.concat(out));
      await expectThenClose(c, [...want, text(m, { compressed: true })]);
    },
  },
  {
    id: '14.2.6',
    desc: 'compressed 4 KiB text sent one compressed byte per frame, each frame its own write, is echoed',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(4096, 777);
      const z = c.compressMessage(m);
      const frames = frameMessage(OP.TEXT, z, 1, 4);
      let off = 0;
      for (let k = 0; k < z.length; k++) {
        const len = 6 + 1; // 2-byte header, 4-byte mask, 1 payload byte
        await c.send(frames.subarray(off, off + len));
        off += len;
      }
      await expectThenClose(c, [text(m, { compressed: true })]);
    },
  },
  {
    id: '14.2.7',
    desc: 'compressed message with an empty first frame (RSV1) and empty continuation frames in between is echoed',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(2000, 50);
      const z = c.compressMessage(m);
      const half = z.length >> 1;
      await c.send(Buffer.concat([
        zframe(OP.TEXT, Buffer.alloc(0), { fin: false }),
        buildFrame({ opcode: OP.CONT, fin: false, payload: z.subarray(0, half) }),
        buildFrame({ opcode: OP.CONT, fin: false, payload: Buffer.alloc(0) }),
        buildFrame({ opcode: OP.CONT, fin: false, payload: z.subarray(half) }),
        buildFrame({ opcode: OP.CONT, fin: true, payload: Buffer.alloc(0) }),
      ]));
      await expectThenClose(c, [text(m, { compressed: true })]);
    },
  },
  {
    id: '14.2.8',
    desc: 'plain messages in a deflate session: short ones come back plain, a compressible 4 KiB one comes back compressed',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(4096, 9000);
      await c.sendText('plain text');
      await c.sendBinary(Buffer.from([1, 2, 3]));
      await c.sendText(m);
      await expectThenClose(c, [text('plain text', { compressed: false }), binary([1, 2, 3], { compressed: false }), text(m, { compressed: true })]);
    },
  },
  {
    id: '14.2.9',
    desc: 'threshold (64): 63 compressible bytes come back plain, 64 come back compressed, whether sent plain or compressed',
    async run(t) {
      const c = await pmdConnect(t);
      const a63 = 'a'.repeat(63);
      const a64 = 'a'.repeat(64);
      await c.sendText(a63);
      await c.sendText(a64);
      await c.sendCompressed(OP.BINARY, a63);
      await c.sendCompressed(OP.BINARY, a64);
      await expectThenClose(c, [
        text(a63, { compressed: false }), text(a64, { compressed: true }),
        binary(a63, { compressed: false }), binary(a64, { compressed: true }),
      ]);
    },
  },
  {
    id: '14.2.10',
    desc: '--deflate-threshold 1000: 999 compressible bytes come back plain, 1000 compressed',
    server: 'threshold1000',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(1000, 123);
      await c.sendCompressed(OP.TEXT, m.subarray(0, 999));
      await c.sendCompressed(OP.TEXT, m);
      await expectThenClose(c, [text(m.subarray(0, 999), { compressed: false }), text(m, { compressed: true })]);
    },
  },
  {
    id: '14.2.11',
    desc: 'incompressible payloads (4 KiB and 1 MiB of random bytes) come back intact, plain or smaller',
    async run(t) {
      const c = await pmdConnect(t);
      const a = pseudoRandomBytes(4096, 7);
      const b = pseudoRandomBytes(1 << 20, 8);
      await c.sendCompressed(OP.BINARY, a);
      await c.sendBinary(b);
      await expectThenClose(c, [binary(a), binary(b)]);
    },
  },
  {
    id: '14.2.12',
    desc: 'the same 8 KiB text three times: three compressed echoes, byte-identical on the wire, each inflating on its own',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(8192, 4321);
      for (let k = 0; k < 3; k++) await c.sendCompressed(OP.TEXT, m);
      await expectFrames(c, [text(m, { compressed: true }), text(m, { compressed: true }), text(m, { compressed: true })]);
      const [a, b, d] = c.frames.map((f) => f.payload);
      expect(a.equals(b) && a.equals(d), 'identical compressed payloads (no context kept between messages)',
        `${hex(a, 16)} / ${hex(b, 16)} / ${hex(d, 16)}`);
      await closeAndExpect(c, [text(m), text(m), text(m)]);
    },
  },
  {
    id: '14.2.13',
    desc: 'compressed and plain, text and binary, small and large, interleaved: all echoed in order',
    async run(t) {
      const c = await pmdConnect(t);
      const want = [];
      for (let k = 0; k < 24; k++) {
        const size = [10, 100, 1000, 10000, 70000, 0][k % 6];
        const m = k % 4 === 3 ? pseudoRandomBytes(size, k + 1) : json(size, k * 1000);
        const op = k % 4 === 3 || k % 5 === 0 ? OP.BINARY : OP.TEXT;
        if (k % 2 === 0) await c.sendCompressed(op, m, { fragment: k % 3 === 0 ? 333 : 0 });
        else await c.sendFrame({ opcode: op, payload: m });
        want.push(op === OP.TEXT ? text(m) : binary(m));
      }
      await expectThenClose(c, want);
    },
  },
  {
    id: '14.2.14',
    desc: 'compressed payloads flushed with Z_FULL_FLUSH, at level 0 (stored blocks), 1 and 9 are all valid',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(5000, 2500);
      await c.sendCompressed(OP.TEXT, m, { flush: 'full' });
      await c.sendCompressed(OP.TEXT, m, { level: 0 });
      await c.sendCompressed(OP.TEXT, m, { level: 1 });
      await c.sendCompressed(OP.TEXT, m, { level: 9 });
      await expectThenClose(c, [1, 2, 3, 4].map(() => text(m, { compressed: true })));
    },
  },
  {
    id: '14.2.15',
    desc: 'a message compressed in several flushed pieces (two sync-flushed blocks) is one message',
    async run(t) {
      const c = await pmdConnect(t);
      const a = json(3000, 0);
      const b = json(3000, 60000);
      const za = deflateMessage(a, { keepTrailer: true }); // ends with an empty stored block, not a message end
      const zb = deflateMessage(b, { dictionary: a });
      await c.send(zframe(OP.TEXT, Buffer.concat([za, zb])));
      await expectThenClose(c, [text(Buffer.concat([a, b]), { compressed: true })]);
    },
  },
  {
    id: '14.2.16',
    desc: '4 MiB of JSON compressed in 64 KiB frames, and 16 MiB of zeros compressed, are echoed (64 MiB limit)',
    timeoutMs: 60000,
    async run(t) {
      const c = await pmdConnect(t);
      const parts = [];
      for (let k = 0; k < 22; k++) parts.push(dataset('json').data);
      const m = Buffer.concat(parts).subarray(0, 4 << 20);
      const zeros = Buffer.alloc(16 << 20);
      await c.sendCompressed(OP.TEXT, m, { fragment: 65536 });
      await c.sendCompressed(OP.BINARY, zeros);
      await expectThenClose(c, [text(m, { compressed: true }), binary(zeros, { compressed: true })], { timeoutMs: 30000 });
    },
  },
  {
    id: '14.2.17',
    desc: 'multi-byte UTF-8 text stored (level 0) and cut into 5-byte frames that split characters is echoed',
    async run(t) {
      const c = await pmdConnect(t);
      const m = Buffer.from('κόσμε €uro 😀 ü ß '.repeat(40));
      await c.sendCompressed(OP.TEXT, m, { level: 0, fragment: 5 });
      await expectThenClose(c, [text(m, { compressed: true })]);
    },
  },
  {
    id: '14.2.19',
    desc: 'RFC 7692 7.2.3.4: "Hello" as one final (BFINAL) block, f3 48 cd c9 c9 07 00, is echoed',
    async run(t) {
      const c = await pmdConnect(t);
      await c.send(zframe(OP.TEXT, Buffer.from('f348cdc9c90700', 'hex')));
      await expectThenClose(c, [text('Hello')]);
    },
  },
  {
    id: '14.2.18',
    desc: '--deflate-level 1: compressible text comes back compressed and intact',
    server: 'level1',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(32768, 100);
      await c.sendCompressed(OP.TEXT, m);
      await expectThenClose(c, [text(m, { compressed: true })]);
    },
  },
];

// ---- 14.3 failures ---------------------------------------------------------------------

/** Connect with deflate, send `bytes` (a function of the client), expect `before` then a close `code`. */
function failure(id, desc, code, make, before = []) {
  return {
    id,
    desc,
    async run(t) {
      const c = await pmdConnect(t);
      await c.send(make(c));
      await expectFail(c, code, before);
    },
  };
}

const badUtf8 = Buffer.concat([Buffer.from('valid text, then '), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from(' a surrogate')]);

const failureCases = [
  failure('14.3.1', 'RSV1 on the continuation frame of a compressed message: 1002', 1002, (c) => {
    const z = c.compressMessage(json(2000));
    return Buffer.concat([zframe(OP.TEXT, z.subarray(0, 100), { fin: false }), zframe(OP.CONT, z.subarray(100))]);
  }),
  failure('14.3.2', 'RSV1 on the continuation frame of a plain message: 1002', 1002, () =>
    Buffer.concat([buildFrame({ opcode: OP.TEXT, fin: false, payload: 'plain ' }), zframe(OP.CONT, HELLO_Z)])),
  failure('14.3.3', 'RSV1 on a ping: 1002 (no pong)', 1002, () => zframe(OP.PING, Buffer.from('ping'))),
  failure('14.3.4', 'RSV1 on a pong: 1002', 1002, () => zframe(OP.PONG, Buffer.from('pong'))),
  failure('14.3.5', 'RSV1 on a close frame: 1002', 1002, () => zframe(OP.CLOSE, Buffer.from([0x03, 0xe8]))),
  failure('14.3.6', 'RSV1 on a ping between the fragments of a compressed message: 1002', 1002, (c) => {
    const z = c.compressMessage(json(2000));
    return Buffer.concat([zframe(OP.TEXT, z.subarray(0, 50), { fin: false }), zframe(OP.PING, Buffer.alloc(0)),
      buildFrame({ opcode: OP.CONT, payload: z.subarray(50) })]);
  }),
  failure('14.3.7', 'RSV2 on a text frame with deflate negotiated: 1002', 1002, () => buildFrame({ opcode: OP.TEXT, rsv: 2, payload: 'Hello' })),
  failure('14.3.8', 'RSV3 on a binary frame with deflate negotiated: 1002', 1002, () => buildFrame({ opcode: OP.BINARY, rsv: 1, payload: 'Hello' })),
  failure('14.3.9', 'RSV1+RSV2 on a compressed text frame: 1002', 1002, () => buildFrame({ opcode: OP.TEXT, rsv: 6, payload: HELLO_Z })),
  failure('14.3.10', 'RSV2 on the continuation of a compressed message: 1002', 1002, () =>
    Buffer.concat([zframe(OP.TEXT, HELLO_Z.subarray(0, 3), { fin: false }), buildFrame({ opcode: OP.CONT, rsv: 2, payload: HELLO_Z.subarray(3) })])),
  failure('14.3.11', 'valid echo, then a block of reserved type 3 (invalid DEFLATE): 1007', 1007,
    () => Buffer.concat([zframe(OP.TEXT, HELLO_Z), zframe(OP.TEXT, Buffer.from('07ffffffff', 'hex'))]), [text('Hello')]),
  failure('14.3.12', 'stored block whose LEN and NLEN do not match: 1007', 1007, () => zframe(OP.TEXT, Buffer.from('000500000048656c6c6f00', 'hex'))),
  failure('14.3.13', 'dynamic block with an over-subscribed code (random-looking bytes): 1007', 1007, () =>
    zframe(OP.BINARY, Buffer.from('ecffffffffffffffffffffffffffffff', 'hex'))),
  failure('14.3.14', 'first message refers back 5 bytes into nothing (RFC 7692 7.2.3.2 second "Hello" alone): 1007', 1007,
    () => zframe(OP.TEXT, HELLO_Z_CTX)),
  failure('14.3.15', 'data after a final (BFINAL) block in one message: 1007', 1007, () => {
    const fin = deflateMessage(Buffer.from('Hello'), { flush: 'final' });
    const more = deflateMessage(Buffer.from(', World'));
    return zframe(OP.TEXT, Buffer.concat([fin, more]));
  }),
  failure('14.3.16', 'compressed text whose inflated bytes are not UTF-8 (a surrogate): 1007', 1007, (c) => zframe(OP.TEXT, c.compressMessage(badUtf8))),
  failure('14.3.17', 'compressed text, invalid UTF-8 split across 3-byte fragments of a stored block: 1007', 1007, (c) =>
    frameMessage(OP.TEXT, c.compressMessage(Buffer.concat([Buffer.from('ok '), Buffer.from([0xf0, 0x9f, 0x98]), Buffer.from('x end')]), { level: 0 }), 3, 4)),
  failure('14.3.18', 'compressed text with invalid UTF-8 in 64 fragments of compressed bytes: 1007', 1007, (c) => {
    const m = Buffer.concat([json(20000), Buffer.from([0xc0, 0xaf]), json(20000, 20000)]);
    const z = c.compressMessage(m);
    return frameMessage(OP.TEXT, z, Math.ceil(z.length / 64), 4);
  }),
  {
    id: '14.3.19',
    desc: 'compressed binary with the same non-UTF-8 bytes is echoed (binary is not checked)',
    async run(t) {
      const c = await pmdConnect(t);
      await c.sendCompressed(OP.BINARY, badUtf8);
      await expectThenClose(c, [binary(badUtf8)]);
    },
  },
  failure('14.3.20', 'RFC 7692 7.2.3.2: "Hello", then the second "Hello" that reuses the first one\'s context (client_no_context_takeover answered): echo, then 1007', 1007,
    () => Buffer.concat([zframe(OP.TEXT, HELLO_Z), zframe(OP.TEXT, HELLO_Z_CTX)]), [text('Hello')]),
  {
    id: '14.3.21',
    desc: 'client keeps its context although client_no_context_takeover was answered: first 2 KiB echoed, the second message (refers back) fails with 1007',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(2048, 5555);
      const z1 = c.compressMessage(m, { takeover: true });
      const z2 = c.compressMessage(m, { takeover: true });
      mustNotInflateAlone(z2, 'the second message');
      await c.send(Buffer.concat([zframe(OP.TEXT, z1), zframe(OP.TEXT, z2), buildFrame({ opcode: OP.PING, payload: 'no pong' })]));
      await expectFail(c, 1007, [text(m, { compressed: true })]);
    },
  },
];

// ---- 14.4 limits -------------------------------------------------------------------------

/**
 * A compressed message made of one stored block per byte (6 bytes on the
 * wire per byte of message), ending as RFC 7692 7.2.1 says: with the first
 * byte of an empty stored block, which the receiver's 00 00 ff ff completes.
 */
function storedPerByte(m) {
  const out = [];
  for (const b of m) out.push(Buffer.from([0x00, 0x01, 0x00, 0xfe, 0xff, b]));
  out.push(Buffer.from([0x00]));
  return Buffer.concat(out);
}

function vmHwmKiB(pid) {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new CaseError(`no VmHWM in /proc/${pid}/status`);
  return Number(m[1]);
}

const limitCases = [
  {
    id: '14.4.1',
    desc: '--max-message 1024: a compressed message inflating to exactly 1024 bytes is echoed',
    server: 'max1024',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(1024, 10);
      await c.sendCompressed(OP.TEXT, m);
      await expectThenClose(c, [text(m, { compressed: true })]);
    },
  },
  {
    id: '14.4.2',
    desc: '--max-message 1024: a compressed message inflating to 1025 bytes fails with 1009',
    server: 'max1024',
    async run(t) {
      const c = await pmdConnect(t);
      await c.sendCompressed(OP.TEXT, json(1025, 10));
      await expectFail(c, 1009);
    },
  },
  {
    id: '14.4.3',
    desc: '--max-message 1024: 150 bytes as one stored block per byte (901 compressed bytes) are echoed',
    server: 'max1024',
    async run(t) {
      const c = await pmdConnect(t);
      const m = json(150, 99);
      await c.send(zframe(OP.TEXT, storedPerByte(m)));
      await expectThenClose(c, [text(m)]);
    },
  },
  {
    id: '14.4.4',
    desc: '--max-message 1024: 200 bytes as one stored block per byte (1201 compressed bytes > 1024) fail with 1009',
    server: 'max1024',
    async run(t) {
      const c = await pmdConnect(t);
      await c.send(zframe(OP.TEXT, storedPerByte(json(200, 99))));
      await expectFail(c, 1009);
    },
  },
  {
    id: '14.4.5',
    desc: '--max-message 1024: the same 1201 compressed bytes in 100-byte fragments fail with 1009',
    server: 'max1024',
    async run(t) {
      const c = await pmdConnect(t);
      await c.send(frameMessage(OP.TEXT, storedPerByte(json(200, 99)), 100, 4));
      await expectFail(c, 1009);
    },
  },
  {
    id: '14.4.6',
    desc: 'zip bomb: 10 MiB of zeros compressed to ~10 KB, against --max-message 65536: 1009, then a new connection works',
    server: 'max64k',
    async run(t) {
      const c = await pmdConnect(t);
      const z = deflateMessage(Buffer.alloc(10 << 20), { level: 9 });
      expect(z.length < 65536, 'a bomb smaller than the limit', `${z.length} bytes`);
      await c.send(zframe(OP.BINARY, z));
      await expectFail(c, 1009);
      const d = await pmdConnect(t);
      const m = json(30000);
      await d.sendCompressed(OP.TEXT, m);
      await expectThenClose(d, [text(m, { compressed: true })]);
    },
  },
  {
    id: '14.4.7',
    desc: 'zip bomb in 1 KiB fragments (10 MiB of zeros) against --max-message 65536: 1009',
    server: 'max64k',
    async run(t) {
      const c = await pmdConnect(t);
      const z = deflateMessage(Buffer.alloc(10 << 20), { level: 9 });
      await c.send(frameMessage(OP.TEXT, z, 1024, 4));
      await expectFail(c, 1009);
    },
  },
  {
    id: '14.4.8',
    desc: 'zip bomb of 48 MiB of zeros (~47 KB) against a fresh --max-message 65536 server: 1009, peak memory grows < 16 MiB (Linux /proc)',
    async run(t) {
      const s = await t.startServer(['--max-message', '65536']);
      const c = await t.connect({ port: s.port, extensions: DEFAULT_OFFER, expectExtensions: DEFAULT_ANSWER });
      const m = json(30000);
      await c.sendCompressed(OP.TEXT, m); // warm up the inflater and deflater
      await expectFrames(c, [text(m, { compressed: true })]);
      const before = vmHwmKiB(s.child.pid);
      const z = deflateMessage(Buffer.alloc(48 << 20), { level: 9 });
      expect(z.length < 65536, 'a bomb smaller than the limit', `${z.length} bytes`);
      await c.send(zframe(OP.BINARY, z));
      await expectFail(c, 1009, [text(m)]);
      const after = vmHwmKiB(s.child.pid);
      expect(after - before < 16 * 1024, 'peak RSS (VmHWM) to grow by less than 16 MiB', `${before} kB before, ${after} kB after`);
      const d = await t.connect({ port: s.port, extensions: DEFAULT_OFFER, expectExtensions: DEFAULT_ANSWER });
      await d.sendCompressed(OP.TEXT, m);
      await expectThenClose(d, [text(m, { compressed: true })]);
    },
  },
];

// ---- 14.5 --deflate off ------------------------------------------------------------------

const offCases = [
  {
    id: '14.5.1',
    desc: '--deflate off: Autobahn\'s offer is not answered; a compressible 4 KiB text is echoed plain',
    server: 'deflateOff',
    async run(t) {
      const c = await t.connect({ extensions: DEFAULT_OFFER, expectExtensions: null });
      const m = json(4096);
      await c.sendText(m);
      await expectThenClose(c, [text(m, { compressed: false })]);
    },
  },
  {
    id: '14.5.2',
    desc: '--deflate off: a compressed frame (RSV1) after the offer fails with 1002',
    server: 'deflateOff',
    async run(t) {
      const c = await t.connect({ extensions: DEFAULT_OFFER, expectExtensions: null });
      await c.sendText('plain');
      await c.send(zframe(OP.TEXT, HELLO_Z));
      await expectFail(c, 1002, [text('plain')]);
    },
  },
  {
    id: '14.5.3',
    desc: '--deflate off: a malformed Sec-WebSocket-Extensions is ignored (101, no answer)',
    server: 'deflateOff',
    async run(t) {
      const c = await t.connect({ extensions: [`${PMD};;`, '"x"'], expectExtensions: null });
      await c.sendText('still fine');
      await expectThenClose(c, [text('still fine')]);
    },
  },
];

// ---- 14.6 client context takeover -------------------------------------------------------

/**
 * Send `n` compressed messages keeping the context; each repeats much of the
 * previous one, so (checked) later ones refer back into earlier messages.
 */
async function takeoverEchoes(c, n, windowBits) {
  const want = [];
  let leaning = 0;
  for (let k = 0; k < n; k++) {
    const m = Buffer.concat([json(300 + 50 * k, 100 * k), Buffer.from(` #${k}`)]);
    const z = c.compressMessage(m, { takeover: true });
    try {
      inflateMessage(z);
    } catch {
      leaning++;
    }
    await c.send(zframe(OP.TEXT, z));
    want.push(text(m));
  }
  if (leaning < n / 2) throw new CaseError(`test setup: only ${leaning} of ${n} messages refer back into earlier ones (window ${windowBits})`);
  return want;
}

const takeoverCases = [
  {
    id: '14.6.1',
    desc: '--deflate-client-window 10: offer client_max_window_bits gets client_max_window_bits=10; 20 messages sharing context with a 10-bit window are echoed',
    server: 'clientWindow10',
    async run(t) {
      const c = await t.connect({ extensions: `${PMD}; client_max_window_bits`, expectExtensions: `${ANSWER}; client_max_window_bits=10` });
      expect(c.pmd.clientMaxWindowBits === 10 && !c.pmd.clientNoContextTakeover, 'client context takeover with window 10', JSON.stringify(c.pmd));
      const want = await takeoverEchoes(c, 20, 10);
      await expectThenClose(c, want);
    },
  },
  {
    id: '14.6.2',
    desc: '--deflate-client-window 10: client_max_window_bits=12 is answered with 10, =9 with 9; 9 bits then work with context takeover',
    server: 'clientWindow10',
    async run(t) {
      const a = await t.connect({ extensions: `${PMD}; client_max_window_bits=12`, expectExtensions: `${ANSWER}; client_max_window_bits=10` });
      await closeAndExpect(a, []);
      const c = await t.connect({ extensions: `${PMD}; client_max_window_bits=9`, expectExtensions: `${ANSWER}; client_max_window_bits=9` });
      const want = await takeoverEchoes(c, 12, 9);
      await expectThenClose(c, want);
    },
  },
  {
    id: '14.6.3',
    desc: '--deflate-client-window 10: offers with client_no_context_takeover, or without client_max_window_bits, get client_no_context_takeover',
    server: 'clientWindow10',
    async run(t) {
      const a = await t.connect({ extensions: `${PMD}; client_no_context_takeover; client_max_window_bits`, expectExtensions: `${ANSWER}; client_no_context_takeover` });
      await closeAndExpect(a, []);
      const b = await t.connect({ extensions: `${PMD}; server_max_window_bits=11`, expectExtensions: `${ANSWER}; server_max_window_bits=11; client_no_context_takeover` });
      const m = json(900, 4);
      await b.sendCompressed(OP.TEXT, m);
      await expectThenClose(b, [text(m, { compressed: true })]);
    },
  },
  {
    id: '14.6.4',
    desc: '--deflate-client-window 10: plain and fresh-context messages mixed with context-sharing ones are all echoed',
    server: 'clientWindow10',
    async run(t) {
      const c = await t.connect({ extensions: `${PMD}; client_max_window_bits=10`, expectExtensions: `${ANSWER}; client_max_window_bits=10` });
      const want = [];
      for (let k = 0; k < 12; k++) {
        const m = json(700, 37 * k);
        if (k % 3 === 0) await c.sendText(m); // plain: not part of the compression context
        else if (k % 3 === 1) await c.sendCompressed(OP.TEXT, m, { takeover: true });
        else await c.sendCompressed(OP.TEXT, m, { takeover: true, fragment: 40 });
        want.push(text(m));
      }
      await expectThenClose(c, want);
    },
  },
  {
    id: '14.6.5',
    desc: '--deflate-client-window 15: a bare offer gets only server_no_context_takeover; RFC 7692 7.2.3.2 (two "Hello"s sharing context) is echoed twice',
    server: 'clientWindow15',
    async run(t) {
      const c = await t.connect({ extensions: PMD, expectExtensions: ANSWER });
      expect(!c.pmd.clientNoContextTakeover && c.pmd.clientMaxWindowBits === 15, 'client context takeover with window 15', JSON.stringify(c.pmd));
      await c.send(Buffer.concat([zframe(OP.TEXT, HELLO_Z), zframe(OP.TEXT, HELLO_Z_CTX)]));
      const want = await takeoverEchoes(c, 10, 15);
      await expectThenClose(c, [text('Hello'), text('Hello'), ...want]);
    },
  },
  {
    id: '14.6.6',
    desc: '--deflate-client-window 15: client_max_window_bits without a value is answered with client_max_window_bits=15',
    server: 'clientWindow15',
    async run(t) {
      const c = await t.connect({ extensions: `${PMD}; client_max_window_bits`, expectExtensions: `${ANSWER}; client_max_window_bits=15` });
      const want = await takeoverEchoes(c, 6, 15);
      await expectThenClose(c, want);
    },
  },
];

export const cases = [...negotiationCases, ...echoCases, ...failureCases, ...limitCases, ...offCases, ...takeoverCases];
