// Category 4 — opcodes: the reserved non-control opcodes 3-7 and control
// opcodes 0xB-0xF fail the connection with 1002; frames after them are not
// answered.

import { OP, buildFrame, text, expectFail } from '../lib.mjs';

function reserved(id, opcode, variant) {
  const kind = opcode < 8 ? 'non-control' : 'control';
  if (variant === 'after') {
    return {
      id,
      desc: `text echoed, then reserved ${kind} opcode ${opcode} with payload fails with 1002, following ping unanswered`,
      async run(t) {
        const c = await t.connect();
        await c.send(
          Buffer.concat([
            buildFrame({ opcode: OP.TEXT, payload: 'Hello, world!' }),
            buildFrame({ opcode, payload: 'reserved opcode payload' }),
            buildFrame({ opcode: OP.PING, payload: 'no pong for me' }),
          ])
        );
        await expectFail(c, 1002, [text('Hello, world!')]);
      },
    };
  }
  const payload = variant === 'payload' ? 'reserved opcode payload' : '';
  return {
    id,
    desc: `frame with reserved ${kind} opcode ${opcode}${payload ? ' and a payload' : ''} fails with 1002`,
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode, payload });
      await expectFail(c, 1002);
    },
  };
}

export const cases = [
  reserved('4.1.1', 3, 'empty'),
  reserved('4.1.2', 4, 'payload'),
  reserved('4.1.3', 5, 'after'),
  reserved('4.1.4', 6, 'after'),
  reserved('4.1.5', 7, 'after'),
  reserved('4.2.1', 11, 'empty'),
  reserved('4.2.2', 12, 'payload'),
  reserved('4.2.3', 13, 'after'),
  reserved('4.2.4', 14, 'after'),
  reserved('4.2.5', 15, 'after'),
  // 4.3.x — beyond Autobahn: reserved opcodes inside a fragmented message.
  {
    id: '4.3.1',
    desc: 'reserved non-control opcode 3 inside a fragmented text message fails with 1002, no echo',
    async run(t) {
      const c = await t.connect();
      await c.send(
        Buffer.concat([
          buildFrame({ opcode: OP.TEXT, fin: false, payload: 'fragment1' }),
          buildFrame({ opcode: 3, fin: true, payload: 'fragment2' }),
        ])
      );
      await expectFail(c, 1002);
    },
  },
  {
    id: '4.3.2',
    desc: 'reserved control opcode 11 between fragments fails with 1002, no echo',
    async run(t) {
      const c = await t.connect();
      await c.send(
        Buffer.concat([
          buildFrame({ opcode: OP.TEXT, fin: false, payload: 'fragment1' }),
          buildFrame({ opcode: 11, payload: 'x' }),
          buildFrame({ opcode: OP.CONT, fin: true, payload: 'fragment2' }),
        ])
      );
      await expectFail(c, 1002);
    },
  },
];
