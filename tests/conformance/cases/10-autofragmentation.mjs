// Category 10 — auto-fragmentation: a message that the client fragments
// on its own (as a browser may) comes back as one unfragmented frame with
// the whole payload.

import { OP, buildFrame, text, binary, pong, expectThenClose, fragmentFrames } from '../lib.mjs';

export const cases = [
  {
    id: '10.1.1',
    desc: '64 KiB text message auto-fragmented into 1300-byte frames is echoed as one frame',
    async run(t) {
      const c = await t.connect();
      const p = Buffer.alloc(65536, 0x2a);
      await c.send(fragmentFrames(OP.TEXT, p, 1300));
      await expectThenClose(c, [text(p)]);
    },
  },
  {
    id: '10.1.2',
    desc: '64 KiB binary message auto-fragmented into 1300-byte frames is echoed as one frame',
    async run(t) {
      const c = await t.connect();
      const p = Buffer.alloc(65536, 0xfe);
      await c.send(fragmentFrames(OP.BINARY, p, 1300));
      await expectThenClose(c, [binary(p)]);
    },
  },
  {
    id: '10.1.3',
    desc: '64 KiB multi-byte UTF-8 text in 1300-byte frames (splitting characters), written in 997-byte chops, is echoed',
    async run(t) {
      const c = await t.connect();
      const p = Buffer.from('€κ\u{1F600}a'.repeat(6554)).subarray(0, 65536);
      // cut on a character boundary so the whole message is valid
      let end = p.length;
      while ((p[end - 1] & 0xc0) === 0x80 || p[end - 1] >= 0xc0) end--;
      const msg = p.subarray(0, end);
      await c.sendChunked(fragmentFrames(OP.TEXT, msg, 1300), 997);
      await expectThenClose(c, [text(msg)]);
    },
  },
  {
    id: '10.1.4',
    desc: '1 MiB binary in 4096-byte frames with a ping after every 16th frame: pongs, then one echo',
    async run(t) {
      const c = await t.connect();
      const p = Buffer.alloc(1 << 20);
      for (let i = 0; i < p.length; i++) p[i] = (i * 31) & 0xff;
      const out = [];
      const want = [];
      const n = p.length / 4096;
      for (let k = 0; k < n; k++) {
        out.push(buildFrame({ opcode: k === 0 ? OP.BINARY : OP.CONT, fin: k === n - 1, payload: p.subarray(k * 4096, (k + 1) * 4096) }));
        if (k % 16 === 0 && k !== n - 1) {
          out.push(buildFrame({ opcode: OP.PING, payload: `frame ${k}` }));
          want.push(pong(`frame ${k}`));
        }
      }
      await c.send(Buffer.concat(out));
      await expectThenClose(c, [...want, binary(p)]);
    },
  },
];
