// Category 7 — close handling: the closing handshake (the server echoes the
// client's status code as a bare 2-byte payload, or an empty close for an
// empty one, then closes TCP), nothing answered after a close frame, close
// payload rules (1 byte, > 125 bytes, reason not UTF-8), valid and invalid
// status codes, and the server's close timeout.

import { OP, buildFrame, closePayload, text, close, closeAndExpect, expectFail, expectThenClose, expectFrames, expectTcpClosed, checkFrames, CaseError } from '../lib.mjs';

export const cases = [
  {
    id: '7.1.1',
    desc: 'text message, then close 1000: echo, then close 1000',
    async run(t) {
      const c = await t.connect();
      await c.sendText('Hello World');
      await closeAndExpect(c, [text('Hello World')]);
    },
  },
  {
    id: '7.1.2',
    desc: 'two close frames: one close 1000 back, the second is ignored',
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([
        buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }),
        buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }),
      ]));
      c.sentClose = true;
      await expectFrames(c, [close(1000)]);
      await expectTcpClosed(c, 'any');
      checkFrames(c, [close(1000)]);
    },
  },
  ...[
    ['7.1.3', 'ping after the close frame gets no pong', buildFrame({ opcode: OP.PING, payload: 'after close' })],
    ['7.1.4', 'text message after the close frame is not echoed', buildFrame({ opcode: OP.TEXT, payload: 'after close' })],
    ['7.1.7', 'binary message after the close frame is not echoed', buildFrame({ opcode: OP.BINARY, payload: Buffer.from([1, 2, 3]) })],
  ].map(([id, desc, after]) => ({
    id,
    desc,
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }), after]));
      c.sentClose = true;
      await expectFrames(c, [close(1000)]);
      await expectTcpClosed(c, 'any');
      checkFrames(c, [close(1000)]);
    },
  })),
  {
    id: '7.1.5',
    desc: 'fragment 1, close 1000, last fragment: only close 1000 comes back',
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([
        buildFrame({ opcode: OP.TEXT, fin: false, payload: 'fragment1' }),
        buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }),
        buildFrame({ opcode: OP.CONT, fin: true, payload: 'fragment2' }),
      ]));
      c.sentClose = true;
      await expectFrames(c, [close(1000)]);
      await expectTcpClosed(c, 'any');
      checkFrames(c, [close(1000)]);
    },
  },
  {
    id: '7.1.6',
    desc: '256 KiB text, close 1000, ping, back to back: the echo, then close 1000, no pong',
    async run(t) {
      const c = await t.connect();
      const big = Buffer.alloc(256 * 1024, 0x42);
      await c.send(Buffer.concat([
        buildFrame({ opcode: OP.TEXT, payload: big }),
        buildFrame({ opcode: OP.CLOSE, payload: closePayload(1000) }),
        buildFrame({ opcode: OP.PING, payload: 'after close' }),
      ]));
      c.sentClose = true;
      await expectFrames(c, [text(big), close(1000)]);
      await expectTcpClosed(c, 'any');
      checkFrames(c, [text(big), close(1000)]);
    },
  },
  {
    id: '7.3.1',
    desc: 'close with an empty payload gets an empty close back',
    async run(t) {
      const c = await t.connect();
      await closeAndExpect(c, [], undefined);
    },
  },
  {
    id: '7.3.2',
    desc: 'close with a 1-byte payload fails with 1002',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.CLOSE, payload: Buffer.from([0x03]) });
      await expectFail(c, 1002);
    },
  },
  {
    id: '7.3.3',
    desc: 'close 1000 without a reason gets close 1000 back',
    async run(t) {
      const c = await t.connect();
      await closeAndExpect(c, [], 1000);
    },
  },
  {
    id: '7.3.4',
    desc: 'close 1000 with a reason gets close 1000 back (2-byte payload)',
    async run(t) {
      const c = await t.connect();
      await closeAndExpect(c, [], 1000, { reason: 'Hello World!' });
    },
  },
  {
    id: '7.3.5',
    desc: 'close 1000 with a 123-byte reason (125-byte payload) gets close 1000 back',
    async run(t) {
      const c = await t.connect();
      await closeAndExpect(c, [], 1000, { reason: '*'.repeat(123) });
    },
  },
  {
    id: '7.3.6',
    desc: 'close 1000 with a 124-byte reason (126-byte payload) fails with 1002',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.CLOSE, payload: closePayload(1000, '*'.repeat(124)) });
      await expectFail(c, 1002);
    },
  },
  {
    id: '7.5.1',
    desc: 'close 1000 with a reason that is not UTF-8 fails with 1007',
    async run(t) {
      const c = await t.connect();
      const kosme = Buffer.from([0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5]);
      const reason = Buffer.concat([kosme, Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('edited')]);
      await c.sendFrame({ opcode: OP.CLOSE, payload: closePayload(1000, reason) });
      await expectFail(c, 1007);
    },
  },
  {
    id: '7.5.2',
    desc: 'close 1000 with a truncated UTF-8 reason (ends in E2 82) fails with 1007',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.CLOSE, payload: closePayload(1000, Buffer.from([0x61, 0xe2, 0x82])) });
      await expectFail(c, 1007);
    },
  },
  {
    id: '7.5.3',
    desc: 'close 1000 with a multi-byte UTF-8 reason gets close 1000 back',
    async run(t) {
      const c = await t.connect();
      await closeAndExpect(c, [], 1000, { reason: 'Grüße, κόσμε \u{1F600}' });
    },
  },
];

// 7.7.x — status codes a client may send: echoed as they are.
[1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999].forEach((code, i) => {
  cases.push({
    id: `7.7.${i + 1}`,
    desc: `close with valid code ${code} gets close ${code} back`,
    async run(t) {
      const c = await t.connect();
      await closeAndExpect(c, [], code);
    },
  });
});

// 7.9.x — codes that must never appear on the wire: 1002.
function invalidCode(id, code, note = '') {
  return {
    id,
    desc: `close with invalid code ${code}${note} fails with 1002`,
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.CLOSE, payload: closePayload(code) });
      await expectFail(c, 1002);
    },
  };
}
[0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999].forEach((code, i) => cases.push(invalidCode(`7.9.${i + 1}`, code)));
// 7.9.10+ — beyond Autobahn's list: more codes outside every registered range.
[1, 1015, 1999, 2500, 2998].forEach((code, i) => cases.push(invalidCode(`7.9.${10 + i}`, code)));

// 7.13.x — codes whose treatment RFC 6455 leaves open; wshub's contract (as
// wslay) is: above 4999 is invalid, and so are 1012-1014, which IANA later
// registered (Service Restart, Try Again Later, Bad Gateway) and the Autobahn
// TestSuite does not test either way.
[[5000, ''], [65535, ''], [1012, ' (IANA: Service Restart; wshub contract)'], [1013, ' (IANA: Try Again Later; wshub contract)'], [1014, ' (IANA: Bad Gateway; wshub contract)']].forEach(
  ([code, note], i) => cases.push(invalidCode(`7.13.${i + 1}`, code, note))
);

// 7.14.x — the server's close timeout (wshub --close-timeout 0.5).
cases.push(
  {
    id: '7.14.1',
    server: 'closeTimeout',
    desc: 'after a protocol error, a client that never answers the close frame is disconnected (close timeout 0.5 s)',
    async run(t) {
      const c = await t.connect({ autoCloseReply: false });
      await c.sendFrame({ opcode: OP.TEXT, payload: 'x', rsv: 4 });
      await expectFrames(c, [close(1002, { exact: false })]);
      try {
        await expectTcpClosed(c, 'any', 3000);
      } catch (err) {
        throw new CaseError(`expected TCP closed within 3 s of the close frame (close timeout 0.5 s), ${err.message}`);
      }
      checkFrames(c, [close(1002, { exact: false })]);
    },
  },
  {
    id: '7.14.2',
    server: 'closeTimeout',
    desc: 'with a short close timeout, a normal closing handshake still echoes the code',
    async run(t) {
      const c = await t.connect();
      await c.sendText('before close');
      await expectThenClose(c, [text('before close')]);
    },
  },
  {
    id: '7.14.4',
    timeoutMs: 20000,
    desc: 'SIGTERM: the server sends close 1001 and, when the client never answers, closes TCP after the close timeout (0.5 s)',
    async run(t) {
      const s = await t.startServer(['--close-timeout', '0.5', '--shutdown-timeout', '10']);
      const c = await t.connect({ port: s.port, autoCloseReply: false });
      await c.sendText('before shutdown');
      await expectFrames(c, [text('before shutdown')]);
      s.signal('SIGTERM');
      await expectFrames(c, [text('before shutdown'), close(1001, { exact: false })]);
      try {
        await expectTcpClosed(c, 'any', 3000);
      } catch (err) {
        throw new CaseError(`expected TCP closed within 3 s of close 1001 (close timeout 0.5 s, shutdown timeout 10 s), ${err.message}`);
      }
      checkFrames(c, [text('before shutdown'), close(1001, { exact: false })]);
    },
  },
  {
    id: '7.14.5',
    timeoutMs: 20000,
    desc: 'SIGTERM: the server sends close 1001; a client that answers it gets TCP closed with a FIN at once',
    async run(t) {
      const s = await t.startServer(['--close-timeout', '8', '--shutdown-timeout', '10']);
      const c = await t.connect({ port: s.port });
      s.signal('SIGTERM');
      await expectFrames(c, [close(1001, { exact: false })]);
      try {
        await expectTcpClosed(c, 'fin', 4000);
      } catch (err) {
        throw new CaseError(`expected TCP closed once the close frame was answered (close timeout 8 s), ${err.message}`);
      }
      checkFrames(c, [close(1001, { exact: false })]);
    },
  },
  {
    id: '7.14.3',
    desc: 'client answers the server close frame, then the server closes TCP cleanly',
    async run(t) {
      const c = await t.connect({ autoCloseReply: false });
      await c.sendFrame({ opcode: 3, payload: '' });
      await expectFrames(c, [close(1002, { exact: false })]);
      await c.sendClose(1002);
      await expectTcpClosed(c, 'fin');
      checkFrames(c, [close(1002, { exact: false })]);
    },
  }
);
