// Category 1 — framing: text and binary messages of every payload-length
// encoding (7-bit, 16-bit, 64-bit and their boundaries), sent whole or cut
// into many TCP writes; plus framing errors a server must reject.

import { OP, buildFrame, text, binary, expectThenClose, expectFail } from '../lib.mjs';

const LENGTHS = [0, 125, 126, 127, 128, 65535, 65536];

function echoCase(id, opcode, fill, len, chop) {
  const kind = opcode === OP.TEXT ? 'text' : 'binary';
  const how = chop ? `, written in chops of ${chop} bytes` : '';
  return {
    id,
    desc: `${kind} message of ${len} bytes${how} is echoed`,
    async run(t) {
      const c = await t.connect();
      const payload = Buffer.alloc(len, fill);
      await c.sendFrame({ opcode, payload }, { chunk: chop });
      await expectThenClose(c, [opcode === OP.TEXT ? text(payload) : binary(payload)]);
    },
  };
}

export const cases = [];
LENGTHS.forEach((len, i) => cases.push(echoCase(`1.1.${i + 1}`, OP.TEXT, 0x2a, len)));
cases.push(echoCase('1.1.8', OP.TEXT, 0x2a, 65536, 997));
LENGTHS.forEach((len, i) => cases.push(echoCase(`1.2.${i + 1}`, OP.BINARY, 0xfe, len)));
cases.push(echoCase('1.2.8', OP.BINARY, 0xfe, 65536, 997));

// 1.3.x — beyond Autobahn: framing details of the client-to-server direction;
// 1.4.x — the opening handshake as the echo server must answer it.
cases.push(
  {
    id: '1.3.1',
    desc: 'unmasked text frame from the client fails with 1002',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.TEXT, payload: 'not masked', mask: false });
      await expectFail(c, 1002);
    },
  },
  {
    id: '1.3.2',
    desc: 'valid text echoed, then an unmasked ping fails with 1002 and gets no pong',
    async run(t) {
      const c = await t.connect();
      await c.send(
        Buffer.concat([
          buildFrame({ opcode: OP.TEXT, payload: 'Hello' }),
          buildFrame({ opcode: OP.PING, payload: 'unmasked', mask: false }),
        ])
      );
      await expectFail(c, 1002, [text('Hello')]);
    },
  },
  {
    id: '1.3.3',
    desc: 'frame with a 64-bit length whose most significant bit is set fails with 1002',
    async run(t) {
      const c = await t.connect();
      const head = buildFrame({ opcode: OP.BINARY, payload: Buffer.alloc(0), length: 1n << 63n, lenForm: 64 });
      await c.send(Buffer.concat([head, Buffer.alloc(16, 0x41)]));
      await expectFail(c, 1002);
    },
  },
  {
    id: '1.3.4',
    desc: 'frame masked with the all-zero key is echoed',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.TEXT, payload: 'zero key', maskKey: [0, 0, 0, 0] });
      await expectThenClose(c, [text('zero key')]);
    },
  },
  {
    id: '1.3.5',
    desc: 'several messages in one TCP write are echoed in order',
    async run(t) {
      const c = await t.connect();
      const bin = Buffer.from([0, 1, 2, 0xff, 0xfe]);
      await c.send(
        Buffer.concat([
          buildFrame({ opcode: OP.TEXT, payload: 'first' }),
          buildFrame({ opcode: OP.BINARY, payload: bin }),
          buildFrame({ opcode: OP.TEXT, payload: '' }),
          buildFrame({ opcode: OP.TEXT, payload: 'last' }),
        ])
      );
      await expectThenClose(c, [text('first'), binary(bin), text(''), text('last')]);
    },
  },
  {
    id: '1.3.6',
    desc: 'small text frame written one byte at a time with pauses is echoed',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.TEXT, payload: 'slowly' }, { chunk: 1, delayMs: 5 });
      await expectThenClose(c, [text('slowly')]);
    },
  },
  {
    id: '1.3.7',
    desc: '16-bit-length frame (300 bytes) with its header cut at every byte is echoed',
    async run(t) {
      const c = await t.connect();
      const payload = Buffer.alloc(300, 0x61);
      const bytes = buildFrame({ opcode: OP.TEXT, payload });
      for (let i = 0; i < 8; i++) await c.send(bytes.subarray(i, i + 1));
      await c.send(bytes.subarray(8));
      await expectThenClose(c, [text(payload)]);
    },
  },
  {
    id: '1.3.8',
    desc: '64-bit-length frame (70000 bytes) with its header cut at every byte is echoed',
    async run(t) {
      const c = await t.connect();
      const payload = Buffer.alloc(70000, 0xfe);
      const bytes = buildFrame({ opcode: OP.BINARY, payload });
      for (let i = 0; i < 14; i++) await c.send(bytes.subarray(i, i + 1));
      await c.send(bytes.subarray(14));
      await expectThenClose(c, [binary(payload)]);
    },
  },
  {
    id: '1.4.1',
    desc: 'upgrade on a deep path with a query string is accepted and echoes',
    async run(t) {
      const c = await t.connect({ path: '/some/deep/path?room=a&x=%20' });
      await c.sendText('any path');
      await expectThenClose(c, [text('any path')]);
    },
  },
  {
    id: '1.4.2',
    desc: 'an offered unknown extension is not answered (no Sec-WebSocket-Extensions in the 101), frames stay RSV=0',
    async run(t) {
      // permessage-deflate itself is category 12-14; this one wshub does not know
      const c = await t.connect({ headers: ['Sec-WebSocket-Extensions: x-webkit-deflate-frame; no_context_takeover'], expectExtensions: null });
      const p = Buffer.alloc(4096, 0x61);
      await c.sendText(p);
      await expectThenClose(c, [text(p)]);
    },
  },
  {
    id: '1.3.9',
    desc: 'binary message with all 256 byte values is echoed unchanged',
    async run(t) {
      const c = await t.connect();
      const payload = Buffer.from(Array.from({ length: 512 }, (_, i) => i & 0xff));
      await c.sendFrame({ opcode: OP.BINARY, payload });
      await expectThenClose(c, [binary(payload)]);
    },
  }
);
