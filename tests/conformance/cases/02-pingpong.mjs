// Category 2 — ping and pong: every ping is answered by a pong with the
// identical payload, unsolicited pongs get no answer, control payloads over
// 125 bytes fail the connection; plus the server's own keep-alive pings.

import {
  OP, buildFrame, pong, text, close, expectThenClose, expectFail, closeAndExpect, checkFrames,
  expectTcpClosed, describeFrames, CaseError, sleep, WAIT_MS,
} from '../lib.mjs';

function pingCase(id, desc, payload, chunk) {
  return {
    id,
    desc,
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.PING, payload }, { chunk });
      await expectThenClose(c, [pong(payload)]);
    },
  };
}

function tenPings(id, chunk) {
  return {
    id,
    desc: `10 pings with payloads${chunk ? ', written one byte at a time' : ''} get 10 pongs in order`,
    async run(t) {
      const c = await t.connect();
      const want = [];
      for (let i = 0; i < 10; i++) {
        const p = `payload-${i}`;
        want.push(pong(p));
        await c.sendFrame({ opcode: OP.PING, payload: p }, { chunk });
      }
      await expectThenClose(c, want);
    },
  };
}

export const cases = [
  pingCase('2.1', 'ping without payload gets an empty pong', ''),
  pingCase('2.2', 'ping with a small text payload gets the same payload back', 'Hello, world!'),
  pingCase('2.3', 'ping with a small binary payload gets the same payload back', Buffer.from([0, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0, 0xff])),
  pingCase('2.4', 'ping with a 125-byte payload gets the same payload back', Buffer.alloc(125, 0xfe)),
  {
    id: '2.5',
    desc: 'ping with a 126-byte payload fails with 1002 and gets no pong',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.PING, payload: Buffer.alloc(126, 0xfe) });
      await expectFail(c, 1002);
    },
  },
  pingCase('2.6', 'ping with a 125-byte payload written one byte at a time gets its pong', Buffer.alloc(125, 0xfe), 1),
  {
    id: '2.7',
    desc: 'unsolicited empty pong gets no answer',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.PONG });
      await closeAndExpect(c, []);
    },
  },
  {
    id: '2.8',
    desc: 'unsolicited pong with payload gets no answer',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.PONG, payload: 'unsolicited pong payload' });
      await closeAndExpect(c, []);
    },
  },
  {
    id: '2.9',
    desc: 'unsolicited pong then ping: only the ping is answered',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.PONG, payload: 'unsolicited pong payload' });
      await c.sendFrame({ opcode: OP.PING, payload: 'ping payload' });
      await expectThenClose(c, [pong('ping payload')]);
    },
  },
  tenPings('2.10'),
  tenPings('2.11', 1),
  // 2.12.x — beyond Autobahn: more control-frame corner cases.
  {
    id: '2.12.1',
    desc: 'ping with a 126-byte payload in the 64-bit length form fails with 1002',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.PING, payload: Buffer.alloc(126, 0x70), lenForm: 64 });
      await expectFail(c, 1002);
    },
  },
  {
    id: '2.12.2',
    desc: 'pong with a 126-byte payload fails with 1002',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.PONG, payload: Buffer.alloc(126, 0x70) });
      await expectFail(c, 1002);
    },
  },
  {
    id: '2.12.3',
    desc: 'ping announcing 65535 bytes (header only) fails with 1002 without waiting for the payload',
    async run(t) {
      const c = await t.connect();
      const head = buildFrame({ opcode: OP.PING, payload: Buffer.alloc(0), length: 65535, lenForm: 16 });
      await c.send(head);
      await expectFail(c, 1002);
    },
  },
  {
    id: '2.12.4',
    desc: '100 pings in one TCP write get 100 pongs in order',
    async run(t) {
      const c = await t.connect();
      const frames = [];
      const want = [];
      for (let i = 0; i < 100; i++) {
        frames.push(buildFrame({ opcode: OP.PING, payload: `p${i}` }));
        want.push(pong(`p${i}`));
      }
      await c.send(Buffer.concat(frames));
      await expectThenClose(c, want);
    },
  },
  // 2.13.x — the server's keep-alive (wshub --ping-interval 0.3).
  {
    id: '2.13.1',
    server: 'keepalive',
    desc: 'idle client that answers pings stays connected through many ping intervals',
    async run(t) {
      const c = await t.connect({ autoPong: true });
      await c.waitFor((x) => x.frames.length >= 3, WAIT_MS, '3 keep-alive pings').catch((e) => {
        throw new CaseError(`expected 3 server pings got ${describeFrames(c.frames)} (${e.message})`);
      });
      await sleep(1200); // four more intervals: a client that answers must not be dropped
      for (const f of c.frames) {
        if (f.opcode !== OP.PING) throw new CaseError(`expected only pings while idle got ${describeFrames(c.frames)}`);
      }
      if (c.tcp !== 'open') throw new CaseError(`expected the connection to stay open got TCP ${c.tcp}`);
      const pings = c.frames.length;
      await c.sendText('still here');
      await c.waitFor((x) => x.frames.some((f) => f.opcode === OP.TEXT), WAIT_MS, 'the echo');
      await c.sendClose(1000);
      await c.waitFor((x) => x.closeFrame !== null, WAIT_MS, 'the close echo');
      await expectTcpClosed(c, 'fin');
      const rest = c.frames.slice(pings).filter((f) => f.opcode !== OP.PING);
      checkFrames({ frames: rest, tcp: c.tcp }, [text('still here'), close(1000)], 'after the pings: ');
    },
  },
  {
    id: '2.13.2',
    server: 'keepalive',
    timeoutMs: 15000,
    desc: 'idle client that never answers pings is disconnected',
    async run(t) {
      const c = await t.connect({ autoPong: false, autoCloseReply: false });
      await expectTcpClosed(c, 'any', 8000);
      const bad = c.frames.filter((f) => f.opcode !== OP.PING && f.opcode !== OP.CLOSE);
      if (bad.length || c.frames.filter((f) => f.opcode === OP.CLOSE).length > 1 || !c.frames.some((f) => f.opcode === OP.PING)) {
        throw new CaseError(`expected pings (and at most one close frame) before the disconnect got ${describeFrames(c.frames)}`);
      }
    },
  },
  {
    id: '2.13.3',
    server: 'keepalive',
    desc: 'keep-alive pings do not disturb a fragmented message in progress',
    async run(t) {
      const c = await t.connect({ autoPong: true });
      await c.sendFrame({ opcode: OP.TEXT, fin: false, payload: 'slow ' });
      await c.waitFor((x) => x.frames.length >= 2, WAIT_MS, '2 keep-alive pings');
      await c.sendFrame({ opcode: OP.CONT, fin: true, payload: 'message' });
      await c.waitFor((x) => x.frames.some((f) => f.opcode !== OP.PING), WAIT_MS, 'the echo');
      await c.sendClose(1000);
      await c.waitFor((x) => x.closeFrame !== null, WAIT_MS, 'the close echo');
      await expectTcpClosed(c, 'fin');
      const rest = c.frames.filter((f) => f.opcode !== OP.PING);
      checkFrames({ frames: rest, tcp: c.tcp }, [text('slow message'), close(1000)], 'besides pings: ');
    },
  },
];
