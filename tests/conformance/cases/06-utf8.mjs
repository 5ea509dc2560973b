// Category 6 — UTF-8 handling: text messages (whole, fragmented at every
// byte, even inside a character) must be valid UTF-8 (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF, no 5/6-byte forms); invalid
// ones fail the connection with 1007, and the server must fail fast: as soon
// as it has seen the first byte that cannot start or continue a valid
// sequence, even in an early fragment or in the middle of one frame.
//
// The test vectors follow the sections of Markus Kuhn's "UTF-8 decoder
// capability and stress test" (the same grouping Autobahn uses for 6.5-6.23),
// generated here from code points where possible.

import { OP, buildFrame, text, binary, pong, expectThenClose, expectFail, expectFrames, CaseError, describeFrames, hex } from '../lib.mjs';
import { utf8FirstError } from '../wsclient.mjs';

const B = (...bytes) => Buffer.from(bytes.flat(Infinity));

/** Encode any integer up to 2^31-1 with the original (pre-RFC 3629) UTF-8 scheme, 1..6 bytes. */
function encodeWide(cp, forceLen) {
  const len = forceLen ?? (cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : cp < 0x200000 ? 4 : cp < 0x4000000 ? 5 : 6);
  if (len === 1) return B(cp);
  const out = new Array(len);
  let v = cp;
  for (let i = len - 1; i > 0; i--) {
    out[i] = 0x80 | (v & 0x3f);
    v = Math.floor(v / 64);
  }
  const lead = [0, 0, 0xc0, 0xe0, 0xf0, 0xf8, 0xfc][len];
  out[0] = lead | v;
  return B(out);
}

// "κόσμε" with U+1F79 (GREEK SMALL LETTER OMICRON WITH OXIA), so it holds 2- and 3-byte characters
const KOSME = B(0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5);

function prefixes(buf) {
  const out = [];
  for (let i = 1; i <= buf.length; i++) out.push(buf.subarray(0, i));
  return out;
}

// [section title, [[valid?, bytes], ...]] — the order fixes the ids 6.5.x … 6.23.x
const GROUPS = [
  ['some valid UTF-8 text', [
    [true, Buffer.from('hello$world')],
    [true, Buffer.from('hello¢world')],
    [true, Buffer.from('hello€world')],
    [true, Buffer.from('hello\u{24b62}world')],
    [true, KOSME],
  ]],
  ['every prefix of a multi-byte UTF-8 string', prefixes(KOSME).map((p) => [utf8FirstError(p, true) === -1, p])],
  ['first code point of each sequence length', [0x0, 0x80, 0x800, 0x10000].map((cp) => [true, encodeWide(cp)])],
  ['first 5- and 6-byte sequences (beyond U+10FFFF)', [0x200000, 0x4000000].map((cp) => [false, encodeWide(cp)])],
  ['last code point of each sequence length', [0x7f, 0x7ff, 0xffff, 0x10ffff].map((cp) => [true, encodeWide(cp)])],
  ['last 4-, 5- and 6-byte sequences (beyond U+10FFFF)', [0x1fffff, 0x3ffffff, 0x7fffffff].map((cp) => [false, encodeWide(cp)])],
  ['other boundaries: U+D7FF, U+E000, U+FFFD, U+10FFFF, U+110000', [
    [true, encodeWide(0xd7ff)],
    [true, encodeWide(0xe000)],
    [true, encodeWide(0xfffd)],
    [true, encodeWide(0x10ffff)],
    [false, encodeWide(0x110000)],
  ]],
  ['unexpected continuation bytes', [
    [false, B(0x80)],
    [false, B(0xbf)],
    [false, B(0x80, 0xbf)],
    [false, B(0x80, 0xbf, 0x80)],
    [false, B(0x80, 0xbf, 0x80, 0xbf)],
    [false, B(0x80, 0xbf, 0x80, 0xbf, 0x80)],
    [false, B(0x80, 0xbf, 0x80, 0xbf, 0x80, 0xbf)],
    [false, B(Array.from({ length: 0x3f }, (_, i) => 0x80 + i))],
  ]],
  ['lonely start bytes, each followed by a space', [
    [0xc0, 0xdf], [0xe0, 0xef], [0xf0, 0xf7], [0xf8, 0xfb], [0xfc, 0xfd],
  ].map(([lo, hi]) => [false, B(Array.from({ length: hi - lo }, (_, i) => [lo + i, 0x20]))])],
  ['sequences with the last continuation byte missing', [
    B(0xc0), B(0xe0, 0x80), B(0xf0, 0x80, 0x80), B(0xf8, 0x80, 0x80, 0x80), B(0xfc, 0x80, 0x80, 0x80, 0x80),
    B(0xdf), B(0xef, 0xbf), B(0xf7, 0xbf, 0xbf), B(0xfb, 0xbf, 0xbf, 0xbf), B(0xfd, 0xbf, 0xbf, 0xbf, 0xbf),
  ].map((b) => [false, b])],
  ['concatenation of all the incomplete sequences', [[false, B(
    0xc0, 0xe0, 0x80, 0xf0, 0x80, 0x80, 0xf8, 0x80, 0x80, 0x80, 0xfc, 0x80, 0x80, 0x80, 0x80,
    0xdf, 0xef, 0xbf, 0xf7, 0xbf, 0xbf, 0xfb, 0xbf, 0xbf, 0xbf, 0xfd, 0xbf, 0xbf, 0xbf, 0xbf)]]],
  ['impossible bytes 0xFE and 0xFF', [[false, B(0xfe)], [false, B(0xff)], [false, B(0xfe, 0xfe, 0xff, 0xff)]]],
  ['overlong forms of "/" (U+002F)', [2, 3, 4, 5, 6].map((n) => [false, encodeWide(0x2f, n)])],
  ['maximum overlong forms', [[2, 0x7f], [3, 0x7ff], [4, 0xffff], [5, 0x1fffff], [6, 0x3ffffff]].map(([n, cp]) => [false, encodeWide(cp, n)])],
  ['overlong forms of NUL', [2, 3, 4, 5, 6].map((n) => [false, encodeWide(0, n)])],
  ['single UTF-16 surrogates', [0xd800, 0xdb7f, 0xdb80, 0xdbff, 0xdc00, 0xdf80, 0xdfff].map((cp) => [false, encodeWide(cp)])],
  ['paired UTF-16 surrogates', [
    [0xd800, 0xdc00], [0xd800, 0xdfff], [0xdb7f, 0xdc00], [0xdb7f, 0xdfff],
    [0xdb80, 0xdc00], [0xdb80, 0xdfff], [0xdbff, 0xdc00], [0xdbff, 0xdfff],
  ].map(([a, b]) => [false, Buffer.concat([encodeWide(a), encodeWide(b)])])],
  ['noncharacters (valid UTF-8)', (() => {
    const out = [[true, encodeWide(0xfffe)], [true, encodeWide(0xffff)]];
    for (let plane = 1; plane <= 0x10; plane++) {
      out.push([true, encodeWide(plane * 0x10000 + 0xfffe)], [true, encodeWide(plane * 0x10000 + 0xffff)]);
    }
    return out;
  })()],
  ['Unicode specials U+FFF9..U+FFFF (valid UTF-8)', [0xfff9, 0xfffa, 0xfffb, 0xfffc, 0xfffd, 0xfffe, 0xffff].map((cp) => [true, encodeWide(cp)])],
];

function checkVectors() {
  for (const [title, list] of GROUPS) {
    for (const [valid, bytes] of list) {
      if ((utf8FirstError(bytes, true) === -1) !== valid) throw new Error(`06-utf8: vector ${hex(bytes)} in "${title}" is mislabelled`);
    }
  }
}
checkVectors();

const wantValid = (v) => (v ? 'is echoed' : 'fails with 1007');

export const cases = [
  {
    id: '6.1.1',
    desc: 'empty text message is echoed',
    async run(t) {
      const c = await t.connect();
      await c.sendText('');
      await expectThenClose(c, [text('')]);
    },
  },
  {
    id: '6.1.2',
    desc: 'text message of 3 empty fragments is echoed as an empty message',
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([
        buildFrame({ opcode: OP.TEXT, fin: false, payload: '' }),
        buildFrame({ opcode: OP.CONT, fin: false, payload: '' }),
        buildFrame({ opcode: OP.CONT, fin: true, payload: '' }),
      ]));
      await expectThenClose(c, [text('')]);
    },
  },
  {
    id: '6.1.3',
    desc: 'text message of 3 fragments, first and last empty, is echoed',
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([
        buildFrame({ opcode: OP.TEXT, fin: false, payload: '' }),
        buildFrame({ opcode: OP.CONT, fin: false, payload: 'middle frame payload' }),
        buildFrame({ opcode: OP.CONT, fin: true, payload: '' }),
      ]));
      await expectThenClose(c, [text('middle frame payload')]);
    },
  },
  {
    id: '6.2.1',
    desc: 'valid multi-byte UTF-8 text in one frame is echoed',
    async run(t) {
      const c = await t.connect();
      await c.sendText('Hello-µ@ßöäüàá-UTF-8!!');
      await expectThenClose(c, [text('Hello-µ@ßöäüàá-UTF-8!!')]);
    },
  },
  {
    id: '6.2.2',
    desc: 'valid UTF-8 text in 2 fragments split on a code point boundary is echoed',
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([
        buildFrame({ opcode: OP.TEXT, fin: false, payload: 'Hello-µ@ßöä' }),
        buildFrame({ opcode: OP.CONT, fin: true, payload: 'üàá-UTF-8!!' }),
      ]));
      await expectThenClose(c, [text('Hello-µ@ßöäüàá-UTF-8!!')]);
    },
  },
  ...[['6.2.3', Buffer.from('Hello-µ@ßöäüàá-UTF-8!!')], ['6.2.4', KOSME]].map(([id, s]) => ({
    id,
    desc: `valid UTF-8 text "${s}" in 1-byte fragments (splitting characters) is echoed`,
    async run(t) {
      const c = await t.connect();
      await c.send(oneByteFragments(s, true));
      await expectThenClose(c, [text(s)]);
    },
  })),
  {
    id: '6.3.1',
    desc: 'text with a surrogate (ED A0 80) inside, in one frame, fails with 1007',
    async run(t) {
      const c = await t.connect();
      await c.sendText(Buffer.concat([KOSME, B(0xed, 0xa0, 0x80), Buffer.from('edited')]));
      await expectFail(c, 1007);
    },
  },
  {
    id: '6.3.2',
    desc: 'text with a surrogate (ED A0 80) inside, in 1-byte fragments, fails with 1007',
    async run(t) {
      const c = await t.connect();
      await c.sendChunked(oneByteFragments(Buffer.concat([KOSME, B(0xed, 0xa0, 0x80), Buffer.from('edited')]), true), 4096);
      await expectFail(c, 1007);
    },
  },
  ...failFastCases(),
];

function oneByteFragments(bytes, fin) {
  const out = [];
  for (let i = 0; i < bytes.length; i++) {
    out.push(buildFrame({ opcode: i === 0 ? OP.TEXT : OP.CONT, fin: fin && i === bytes.length - 1, payload: bytes.subarray(i, i + 1) }));
  }
  if (bytes.length === 0) out.push(buildFrame({ opcode: OP.TEXT, fin, payload: '' }));
  return Buffer.concat(out);
}

/** Wait for 1007 while sending nothing more: the message is unfinished, so only fail-fast can answer. */
async function expectFailFast(c, what, before = []) {
  try {
    await expectFail(c, 1007, before, { timeoutMs: 3000 });
  } catch (err) {
    throw new CaseError(`after ${what} (message unfinished, nothing more sent): ${err.message}`);
  }
}

function failFastCases() {
  const P1 = KOSME; // valid
  const P2 = B(0xf4, 0x90, 0x80, 0x80); // U+110000: invalid at its 2nd byte (0x90)
  const P3 = Buffer.from('edited');
  const all = Buffer.concat([P1, P2, P3]);
  const bad = P1.length + 1; // index of the first invalid byte
  return [
    {
      id: '6.4.1',
      desc: '3 fragments, the 2nd makes the text invalid (F4 90 80 80): 1007 before the 3rd is sent',
      async run(t) {
        const c = await t.connect();
        await c.sendFrame({ opcode: OP.TEXT, fin: false, payload: P1 });
        await c.sendFrame({ opcode: OP.PING, payload: 'valid so far' });
        await expectFrames(c, [pong('valid so far')]);
        await c.sendFrame({ opcode: OP.CONT, fin: false, payload: P2 });
        await expectFailFast(c, 'fragment 2', [pong('valid so far')]);
      },
    },
    {
      id: '6.4.2',
      desc: 'like 6.4.1, but the 2nd fragment is just the one invalid byte (0x90): 1007 before the rest is sent',
      async run(t) {
        const c = await t.connect();
        await c.sendFrame({ opcode: OP.TEXT, fin: false, payload: all.subarray(0, bad) });
        await c.sendFrame({ opcode: OP.PING, payload: 'valid so far' });
        await expectFrames(c, [pong('valid so far')]);
        await c.sendFrame({ opcode: OP.CONT, fin: false, payload: all.subarray(bad, bad + 1) });
        await expectFailFast(c, 'the invalid byte', [pong('valid so far')]);
      },
    },
    {
      id: '6.4.3',
      desc: 'one frame written in 3 parts, the 2nd makes it invalid: 1007 before the 3rd part is sent',
      async run(t) {
        const c = await t.connect();
        const frame = buildFrame({ opcode: OP.TEXT, payload: all });
        const head = frame.length - all.length;
        await c.send(frame.subarray(0, head + P1.length));
        if (!(await c.quietFor(100))) throw new CaseError(`expected no answer to a valid partial frame got ${describeFrames(c.frames)}`);
        await c.send(frame.subarray(head + P1.length, head + P1.length + P2.length));
        await expectFailFast(c, 'part 2');
      },
    },
    {
      id: '6.4.4',
      desc: 'like 6.4.3, but the 2nd part is just the one invalid byte (0x90): 1007 before the rest is sent',
      async run(t) {
        const c = await t.connect();
        const frame = buildFrame({ opcode: OP.TEXT, payload: all });
        const head = frame.length - all.length;
        await c.send(frame.subarray(0, head + bad));
        if (!(await c.quietFor(100))) throw new CaseError(`expected no answer to a valid partial frame got ${describeFrames(c.frames)}`);
        await c.send(frame.subarray(head + bad, head + bad + 1));
        await expectFailFast(c, 'the invalid byte');
      },
    },
  ];
}

// 6.5.x … 6.23.x: every vector in one unfragmented text frame.
GROUPS.forEach(([title, list], g) => {
  list.forEach(([valid, bytes], k) => {
    cases.push({
      id: `6.${g + 5}.${k + 1}`,
      desc: `${title}: ${hex(bytes, 16)} in one frame ${wantValid(valid)}`,
      async run(t) {
        const c = await t.connect();
        await c.sendText(bytes);
        if (valid) await expectThenClose(c, [text(bytes)]);
        else await expectFail(c, 1007);
      },
    });
  });
});

// 6.24.x — every valid multi-byte vector split into 2 fragments at every
// byte boundary (one message per split on one connection), then in 1-byte fragments.
const VALID = GROUPS.flatMap(([, list]) => list.filter(([v, b]) => v && b.length > 1).map(([, b]) => b));
VALID.forEach((bytes, k) => {
  cases.push({
    id: `6.24.${k + 1}`,
    desc: `valid ${hex(bytes, 16)} split in 2 fragments at each of its ${bytes.length - 1} inner byte boundaries, then in 1-byte fragments: all echoed`,
    async run(t) {
      const c = await t.connect();
      const want = [];
      const out = [];
      for (let i = 1; i < bytes.length; i++) {
        out.push(buildFrame({ opcode: OP.TEXT, fin: false, payload: bytes.subarray(0, i) }));
        out.push(buildFrame({ opcode: OP.CONT, fin: true, payload: bytes.subarray(i) }));
        want.push(text(bytes));
      }
      out.push(oneByteFragments(bytes, true));
      want.push(text(bytes));
      await c.send(Buffer.concat(out));
      await expectThenClose(c, want);
    },
  });
});

// 6.25.x — fail fast across fragments: every invalid vector, prefixed by valid
// text, sent up to and including its first invalid byte as a non-final
// fragment (the message stays unfinished). Vectors that are only truncated
// (every byte could still continue validly) are sent in 1-byte fragments
// and then finished with an empty final fragment.
const INVALID = GROUPS.flatMap(([, list]) => list.filter(([v]) => !v).map(([, b]) => b));
INVALID.forEach((vec, k) => {
  const bytes = Buffer.concat([Buffer.from('ok-'), vec]);
  const at = utf8FirstError(bytes, false);
  cases.push({
    id: `6.25.${k + 1}`,
    desc: at >= 0
      ? `"ok-" + ${hex(vec, 16)} sent only up to its first invalid byte (#${at + 1}) in an unfinished message: 1007 at once`
      : `"ok-" + truncated ${hex(vec, 16)} in 1-byte fragments, then an empty final fragment: 1007`,
    async run(t) {
      const c = await t.connect();
      if (at >= 0) {
        await c.send(Buffer.concat([
          buildFrame({ opcode: OP.TEXT, fin: false, payload: bytes.subarray(0, 3) }),
          buildFrame({ opcode: OP.CONT, fin: false, payload: bytes.subarray(3, at + 1) }),
        ]));
        await expectFailFast(c, `byte #${at + 1}`);
      } else {
        await c.send(oneByteFragments(bytes, false));
        await c.sendFrame({ opcode: OP.CONT, fin: true, payload: '' });
        await expectFail(c, 1007);
      }
    },
  });
});

// 6.26.x — fail fast inside one frame: a frame announcing more payload than is
// sent, cut right after the first invalid byte, one vector per Kuhn section.
const SEEN = new Set();
let n26 = 0;
GROUPS.forEach(([title, list]) => {
  for (const [valid, vec] of list) {
    const bytes = Buffer.concat([Buffer.from('ok-'), vec]);
    const at = utf8FirstError(bytes, false);
    if (valid || at < 0 || SEEN.has(title)) continue;
    SEEN.add(title);
    const id = `6.26.${++n26}`;
    cases.push({
      id,
      desc: `${title}: one frame of 64+ bytes cut after the first invalid byte of ${hex(vec, 16)}: 1007 at once`,
      async run(t) {
        const c = await t.connect();
        const full = Buffer.concat([bytes, Buffer.alloc(Math.max(64 - bytes.length, 16), 0x20)]);
        const frame = buildFrame({ opcode: OP.TEXT, payload: full });
        await c.send(frame.subarray(0, frame.length - full.length + at + 1));
        await expectFailFast(c, `byte #${at + 1} of the frame's payload`);
      },
    });
  }
});

// 6.27.x — the whole Unicode range.
function allScalars() {
  const parts = [];
  let chunk = [];
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    chunk.push(cp);
    if (chunk.length === 4096) {
      parts.push(Buffer.from(String.fromCodePoint(...chunk), 'utf8'));
      chunk = [];
    }
  }
  parts.push(Buffer.from(String.fromCodePoint(...chunk), 'utf8'));
  return Buffer.concat(parts);
}
let SCALARS = null;
cases.push(
  {
    id: '6.27.1',
    desc: 'every Unicode scalar value U+0000..U+10FFFF in one text message (4.3 MB) is echoed',
    timeoutMs: 60000,
    async run(t) {
      SCALARS ??= allScalars();
      const c = await t.connect();
      await c.sendText(SCALARS);
      await expectThenClose(c, [text(SCALARS)], { timeoutMs: 30000 });
    },
  },
  {
    id: '6.27.2',
    desc: 'every Unicode scalar value in fragments of 1001 bytes (splitting characters) is echoed',
    timeoutMs: 60000,
    async run(t) {
      SCALARS ??= allScalars();
      const c = await t.connect();
      const out = [];
      for (let off = 0; off < SCALARS.length; off += 1001) {
        const end = Math.min(off + 1001, SCALARS.length);
        out.push(buildFrame({ opcode: off === 0 ? OP.TEXT : OP.CONT, fin: end === SCALARS.length, payload: SCALARS.subarray(off, end) }));
      }
      await c.send(Buffer.concat(out));
      await expectThenClose(c, [text(SCALARS)], { timeoutMs: 30000 });
    },
  },
  {
    id: '6.27.3',
    desc: 'binary message that is not UTF-8 (FF FE ED A0 80 C0 AF) is echoed unchanged',
    async run(t) {
      const c = await t.connect();
      const b = B(0xff, 0xfe, 0xed, 0xa0, 0x80, 0xc0, 0xaf);
      await c.sendBinary(b);
      await expectThenClose(c, [binary(b)]);
    },
  },
  {
    id: '6.27.4',
    desc: 'invalid UTF-8 in a ping payload is fine: the pong carries it back',
    async run(t) {
      const c = await t.connect();
      const b = B(0xed, 0xa0, 0x80, 0xff);
      await c.sendFrame({ opcode: OP.PING, payload: b });
      await expectThenClose(c, [pong(b)]);
    },
  }
);
