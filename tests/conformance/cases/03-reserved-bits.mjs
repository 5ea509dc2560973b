// Category 3 — reserved bits: with no extension negotiated, a frame with any
// of RSV1..RSV3 set fails the connection with 1002, whatever its opcode and
// however it is cut into TCP writes; nothing sent after it is answered.

import { OP, buildFrame, text, expectFail } from '../lib.mjs';

// text "Hello", the bad frame, then a ping that must not be answered
function afterValid(id, rsv, how) {
  const desc = { one: '', frame: ', each frame its own write', byte: ', written one byte at a time' }[how];
  return {
    id,
    desc: `text echoed, then text with RSV=${rsv} fails with 1002 and the following ping gets no pong${desc}`,
    async run(t) {
      const c = await t.connect();
      const frames = [
        buildFrame({ opcode: OP.TEXT, payload: 'Hello, world!' }),
        buildFrame({ opcode: OP.TEXT, payload: 'Hello, world!', rsv }),
        buildFrame({ opcode: OP.PING, payload: 'no pong for me' }),
      ];
      if (how === 'one') await c.send(Buffer.concat(frames));
      else if (how === 'frame') for (const f of frames) await c.send(f);
      else await c.sendChunked(Buffer.concat(frames), 1);
      await expectFail(c, 1002, [text('Hello, world!')]);
    },
  };
}

function single(id, desc, opts) {
  return {
    id,
    desc,
    async run(t) {
      const c = await t.connect();
      await c.sendFrame(opts);
      await expectFail(c, 1002);
    },
  };
}

export const cases = [
  single('3.1', 'small text message with RSV=1 fails with 1002', { opcode: OP.TEXT, payload: 'Hello, world!', rsv: 1 }),
  afterValid('3.2', 2, 'one'),
  afterValid('3.3', 3, 'frame'),
  afterValid('3.4', 4, 'byte'),
  single('3.5', 'small binary message with RSV=5 fails with 1002', { opcode: OP.BINARY, payload: Buffer.from([0, 0xff, 0xfe, 0xfd]), rsv: 5 }),
  single('3.6', 'ping with RSV=6 fails with 1002 and gets no pong', { opcode: OP.PING, payload: 'ping', rsv: 6 }),
  single('3.7', 'close with RSV=7 fails with 1002', { opcode: OP.CLOSE, payload: Buffer.from([0x03, 0xe8]), rsv: 7 }),
  // 3.8.x — beyond Autobahn: each bit alone on more frame types.
  single('3.8.1', 'empty text frame with RSV1 (0x40) fails with 1002', { opcode: OP.TEXT, payload: '', rsv: 4 }),
  single('3.8.2', 'pong with RSV2 (0x20) fails with 1002', { opcode: OP.PONG, payload: 'x', rsv: 2 }),
  single('3.8.3', 'binary 70000-byte frame with RSV3 (0x10) fails with 1002', { opcode: OP.BINARY, payload: Buffer.alloc(70000, 1), rsv: 1 }),
  {
    id: '3.8.4',
    desc: 'continuation frame with RSV1 inside a fragmented message fails with 1002, no echo',
    async run(t) {
      const c = await t.connect();
      await c.send(
        Buffer.concat([
          buildFrame({ opcode: OP.TEXT, fin: false, payload: 'fragment1' }),
          buildFrame({ opcode: OP.CONT, fin: true, payload: 'fragment2', rsv: 4 }),
        ])
      );
      await expectFail(c, 1002);
    },
  },
];
