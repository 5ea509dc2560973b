// Category 9 — limits and performance: large messages (64 KiB … 16 MiB),
// 4 MiB messages in fragments of 64 B … 4 MiB, 1 MiB frames written in small
// chops, and 1000 round trips of small messages, all echoed exactly; plus
// the message size limit (close 1009), tested on a server started with
// --max-message 1024 and on the --echo default of 64 MiB. No speed is asserted.

import { OP, buildFrame, text, binary, pong, expectThenClose, expectFail, closeAndExpect, CaseError, describeFrames, pseudoRandomBytes, fragmentFrames, WAIT_MS } from '../lib.mjs';

const KiB = 1024;
const MiB = 1024 * 1024;
const sizeName = (n) => (n >= MiB ? `${n / MiB} MiB` : n >= KiB ? `${n / KiB} KiB` : `${n} B`);
const BIG_WAIT = 60000;

function payloadFor(opcode, n) {
  return opcode === OP.TEXT ? Buffer.alloc(n, 0x2a) : Buffer.alloc(n, 0xfe);
}
const expected = (opcode, p) => (opcode === OP.TEXT ? text(p) : binary(p));
const kind = (opcode) => (opcode === OP.TEXT ? 'text' : 'binary');

export const cases = [];

// 9.1.x text, 9.2.x binary: one big frame.
[OP.TEXT, OP.BINARY].forEach((opcode, g) => {
  [64 * KiB, 256 * KiB, MiB, 4 * MiB, 8 * MiB, 16 * MiB].forEach((n, i) => {
    cases.push({
      id: `9.${g + 1}.${i + 1}`,
      desc: `${kind(opcode)} message of ${sizeName(n)} in one frame is echoed`,
      timeoutMs: 120000,
      async run(t) {
        const c = await t.connect();
        const p = payloadFor(opcode, n);
        await c.sendFrame({ opcode, payload: p });
        await expectThenClose(c, [expected(opcode, p)], { timeoutMs: BIG_WAIT });
      },
    });
  });
});

// 9.3.x text, 9.4.x binary: 4 MiB in fragments of 64 B … 4 MiB (9.x.9: 8 MiB in 2 x 4 MiB).
[OP.TEXT, OP.BINARY].forEach((opcode, g) => {
  [64, 256, KiB, 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB, 4 * MiB].forEach((frag, i) => {
    const total = frag === 4 * MiB ? 8 * MiB : 4 * MiB;
    cases.push({
      id: `9.${g + 3}.${i + 1}`,
      desc: `${kind(opcode)} message of ${sizeName(total)} in fragments of ${sizeName(frag)} is echoed as one frame`,
      timeoutMs: 120000,
      async run(t) {
        const c = await t.connect();
        const p = payloadFor(opcode, total);
        await c.sendChunked(fragmentFrames(opcode, p, frag), 256 * KiB);
        await expectThenClose(c, [expected(opcode, p)], { timeoutMs: BIG_WAIT });
      },
    });
  });
});

// 9.5.x text, 9.6.x binary: one 1 MiB frame written in chops of 64 … 2048 bytes.
[OP.TEXT, OP.BINARY].forEach((opcode, g) => {
  [64, 128, 256, 512, 1024, 2048].forEach((chop, i) => {
    cases.push({
      id: `9.${g + 5}.${i + 1}`,
      desc: `${kind(opcode)} message of 1 MiB written in chops of ${chop} bytes is echoed`,
      timeoutMs: 120000,
      async run(t) {
        const c = await t.connect();
        const p = payloadFor(opcode, MiB);
        await c.sendFrame({ opcode, payload: p }, { chunk: chop });
        await expectThenClose(c, [expected(opcode, p)], { timeoutMs: BIG_WAIT });
      },
    });
  });
});

// 9.7.x text, 9.8.x binary: 1000 sequential round trips of small messages.
[OP.TEXT, OP.BINARY].forEach((opcode, g) => {
  [0, 16, 64, 256, KiB, 4 * KiB].forEach((n, i) => {
    cases.push({
      id: `9.${g + 7}.${i + 1}`,
      desc: `1000 ${kind(opcode)} messages of ${n} bytes, one at a time, are each echoed`,
      timeoutMs: 120000,
      async run(t) {
        const c = await t.connect();
        const p = payloadFor(opcode, n);
        const frame = buildFrame({ opcode, payload: p });
        for (let k = 0; k < 1000; k++) {
          await c.send(frame);
          await c.waitFor((x) => x.frames.length > k, WAIT_MS, `echo #${k + 1}`).catch((e) => {
            throw new CaseError(`expected echo #${k + 1} got ${describeFrames(c.frames.slice(k))} (${e.message})`);
          });
          const f = c.frames[k];
          if (f.opcode !== opcode || !f.fin || !f.payload.equals(p)) {
            throw new CaseError(`echo #${k + 1}: expected ${kind(opcode)}(${n} bytes) got ${describeFrames([f])}`);
          }
        }
        await closeAndExpect(c, c.frames.slice(0, 1000).map(() => expected(opcode, p)));
      },
    });
  });
});

// 9.9.x — beyond Autobahn: many messages in flight at once, mixed kinds.
cases.push(
  {
    id: '9.9.1',
    desc: '2000 messages of mixed kinds and sizes (0..3000 bytes) in one burst are echoed in order',
    timeoutMs: 60000,
    async run(t) {
      const c = await t.connect();
      const frames = [];
      const want = [];
      const rnd = pseudoRandomBytes(4000, 7);
      for (let k = 0; k < 2000; k++) {
        const n = (rnd[k % 4000] * 13 + k) % 3001;
        const p = pseudoRandomBytes(n, k + 1);
        if (k % 2) {
          frames.push(buildFrame({ opcode: OP.BINARY, payload: p }));
          want.push(binary(p));
        } else {
          const s = Buffer.from('é'.repeat(n >> 1));
          frames.push(buildFrame({ opcode: OP.TEXT, payload: s }));
          want.push(text(s));
        }
      }
      await c.sendChunked(Buffer.concat(frames), 64 * KiB);
      await expectThenClose(c, want, { timeoutMs: BIG_WAIT });
    },
  },
  {
    id: '9.9.2',
    desc: '1 MiB of pseudo-random binary in 1 frame is echoed byte for byte',
    timeoutMs: 60000,
    async run(t) {
      const c = await t.connect();
      const p = pseudoRandomBytes(MiB, 99);
      await c.sendBinary(p);
      await expectThenClose(c, [binary(p)], { timeoutMs: BIG_WAIT });
    },
  }
);

// 9.10.x — the size limit, on a server started with --max-message 1024.
function limitCase(id, desc, send, outcome, before = []) {
  return {
    id,
    desc,
    server: 'max1024',
    async run(t) {
      const c = await t.connect();
      await send(c);
      if (outcome === 'fail') await expectFail(c, 1009, before);
      else await expectThenClose(c, outcome);
    },
  };
}
const L = 1024;
const exact = Buffer.alloc(L, 0x61);
const over = Buffer.alloc(L + 1, 0x61);
cases.push(
  limitCase('9.10.1', 'limit 1024: text message of exactly 1024 bytes is echoed', (c) => c.sendText(exact), [text(exact)]),
  limitCase('9.10.2', 'limit 1024: binary message of exactly 1024 bytes is echoed', (c) => c.sendBinary(exact), [binary(exact)]),
  limitCase('9.10.3', 'limit 1024: text of exactly 1024 bytes in 4 fragments is echoed', (c) => c.send(fragmentFrames(OP.TEXT, exact, 256)), [text(exact)]),
  limitCase('9.10.4', 'limit 1024: text message of 1025 bytes in one frame fails with 1009', (c) => c.sendText(over), 'fail'),
  limitCase('9.10.5', 'limit 1024: binary message of 1025 bytes in one frame fails with 1009', (c) => c.sendBinary(over), 'fail'),
  limitCase('9.10.6', 'limit 1024: text of 1200 bytes in 3 fragments of 400 fails with 1009', (c) => c.send(fragmentFrames(OP.TEXT, Buffer.alloc(1200, 0x62), 400)), 'fail'),
  limitCase('9.10.7', 'limit 1024: binary of 1025 bytes in 1025 one-byte fragments fails with 1009', (c) => c.send(fragmentFrames(OP.BINARY, over, 1)), 'fail'),
  limitCase(
    '9.10.8',
    'limit 1024: fragments of 600 + 600 bytes, message unfinished: 1009 without waiting for the end',
    (c) => c.send(Buffer.concat([
      buildFrame({ opcode: OP.BINARY, fin: false, payload: Buffer.alloc(600, 1) }),
      buildFrame({ opcode: OP.CONT, fin: false, payload: Buffer.alloc(600, 2) }),
    ])),
    'fail'
  ),
  limitCase(
    '9.10.9',
    'limit 1024: frame header announcing 1 MiB, only 16 payload bytes sent: 1009 without waiting for the payload',
    (c) => c.send(Buffer.concat([buildFrame({ opcode: OP.BINARY, payload: Buffer.alloc(0), length: MiB }), Buffer.alloc(16, 0x63)])),
    'fail'
  ),
  limitCase(
    '9.10.10',
    'limit 1024: the limit is per message: five 1000-byte messages are all echoed',
    (c) => c.send(Buffer.concat(Array.from({ length: 5 }, () => buildFrame({ opcode: OP.TEXT, payload: Buffer.alloc(1000, 0x64) })))),
    Array.from({ length: 5 }, () => text(Buffer.alloc(1000, 0x64)))
  ),
  limitCase(
    '9.10.11',
    'limit 1024: 1000-byte message echoed, then a 2000-byte one fails with 1009',
    (c) => c.send(Buffer.concat([buildFrame({ opcode: OP.TEXT, payload: Buffer.alloc(1000, 0x65) }), buildFrame({ opcode: OP.TEXT, payload: Buffer.alloc(2000, 0x65) })])),
    'fail',
    [text(Buffer.alloc(1000, 0x65))]
  ),
  {
    id: '9.10.12',
    server: 'max1024',
    desc: 'limit 1024: a 125-byte ping between fragments of a 1024-byte message does not count: pong, then echo',
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([
        buildFrame({ opcode: OP.BINARY, fin: false, payload: exact.subarray(0, 512) }),
        buildFrame({ opcode: OP.PING, payload: Buffer.alloc(125, 0x70) }),
        buildFrame({ opcode: OP.CONT, fin: true, payload: exact.subarray(512) }),
      ]));
      await expectThenClose(c, [pong(Buffer.alloc(125, 0x70)), binary(exact)]);
    },
  },
  {
    id: '9.11.1',
    desc: 'default limit (64 MiB): a frame announcing 64 MiB + 1 fails with 1009',
    timeoutMs: 120000,
    async run(t) {
      const c = await t.connect();
      await c.send(buildFrame({ opcode: OP.BINARY, payload: Buffer.alloc(0), length: 64 * MiB + 1 }));
      // If the server does not refuse on the header, feed it the payload until it answers.
      const piece = Buffer.alloc(MiB, 0x66);
      let sent = 0;
      while (sent < 64 * MiB + 1 && !c.closeFrame && c.writable) {
        const n = Math.min(MiB, 64 * MiB + 1 - sent);
        await c.send(n === MiB ? piece : piece.subarray(0, n));
        sent += n;
      }
      await expectFail(c, 1009, [], { timeoutMs: BIG_WAIT });
    },
  }
);
