// Category 5 — fragmentation: fragmented messages are reassembled and echoed
// as one frame; control frames may be interleaved (and are answered at
// once); fragmented control frames, continuation frames with no message to
// continue, and new data frames inside a fragmented message fail with 1002.

import { OP, buildFrame, text, binary, pong, expectThenClose, expectFail, closeAndExpect, expectFrames, sleep } from '../lib.mjs';

const frag = (opcode, fin, payload) => buildFrame({ opcode, fin, payload });

/** Send `frames` as one write ('one'), one write per frame ('frame'), or byte by byte ('byte'). */
async function sendAs(c, frames, how) {
  if (how === 'one') await c.send(Buffer.concat(frames));
  else if (how === 'frame') {
    for (const f of frames) {
      await c.send(f);
      await sleep(2);
    }
  } else await c.sendChunked(Buffer.concat(frames), 1);
}

const HOW = { one: '', frame: ', each frame its own write', byte: ', written one byte at a time' };

function fragControl(id, opcode) {
  return {
    id,
    desc: `${opcode === OP.PING ? 'ping' : 'pong'} fragmented into 2 frames fails with 1002`,
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([frag(opcode, false, 'fragment1'), frag(OP.CONT, true, 'fragment2')]));
      await expectFail(c, 1002);
    },
  };
}

function twoFragments(id, how) {
  return {
    id,
    desc: `text message in 2 fragments${HOW[how]} is echoed as one message`,
    async run(t) {
      const c = await t.connect();
      await sendAs(c, [frag(OP.TEXT, false, 'fragment1'), frag(OP.CONT, true, 'fragment2')], how);
      await expectThenClose(c, [text('fragment1fragment2')]);
    },
  };
}

function pingBetween(id, how) {
  return {
    id,
    desc: `text message in 2 fragments with a ping in between${HOW[how]}: pong, then the echo`,
    async run(t) {
      const c = await t.connect();
      await sendAs(
        c,
        [frag(OP.TEXT, false, 'fragment1'), frag(OP.PING, true, 'ping payload'), frag(OP.CONT, true, 'fragment2')],
        how
      );
      await expectThenClose(c, [pong('ping payload'), text('fragment1fragment2')]);
    },
  };
}

function nothingToContinue(id, fin, how) {
  return {
    id,
    desc: `continuation frame (FIN=${fin ? 1 : 0}) with nothing to continue, then a text message${HOW[how]}: 1002, no echo`,
    async run(t) {
      const c = await t.connect();
      await sendAs(c, [frag(OP.CONT, fin, 'non-continuation payload'), frag(OP.TEXT, true, 'Hello, world!')], how);
      await expectFail(c, 1002);
    },
  };
}

function pingPongDuringFragments(id, how) {
  return {
    id,
    desc: `fragmented text with pings in flight; the first pong arrives before the last fragment is sent${how === 'frame' ? ' (each frame its own write)' : ''}`,
    async run(t) {
      const c = await t.connect();
      const first = [frag(OP.TEXT, false, 'fragment1'), frag(OP.CONT, false, 'fragment2'), frag(OP.PING, true, 'pongme 1!')];
      await sendAs(c, first, how);
      // The pong is owed now: the message is unfinished, and we send nothing more until it arrives.
      await expectFrames(c, [pong('pongme 1!')]);
      const second = [
        frag(OP.CONT, false, 'fragment3'),
        frag(OP.CONT, false, 'fragment4'),
        frag(OP.PING, true, 'pongme 2!'),
        frag(OP.CONT, true, 'fragment5'),
      ];
      await sendAs(c, second, how);
      await expectThenClose(c, [pong('pongme 1!'), pong('pongme 2!'), text('fragment1fragment2fragment3fragment4fragment5')]);
    },
  };
}

export const cases = [
  fragControl('5.1', OP.PING),
  fragControl('5.2', OP.PONG),
  twoFragments('5.3', 'one'),
  twoFragments('5.4', 'frame'),
  twoFragments('5.5', 'byte'),
  pingBetween('5.6', 'one'),
  pingBetween('5.7', 'frame'),
  pingBetween('5.8', 'byte'),
  nothingToContinue('5.9', true, 'one'),
  nothingToContinue('5.10', true, 'frame'),
  nothingToContinue('5.11', true, 'byte'),
  nothingToContinue('5.12', false, 'one'),
  nothingToContinue('5.13', false, 'frame'),
  nothingToContinue('5.14', false, 'byte'),
  {
    id: '5.15',
    desc: 'complete 2-fragment message echoed, then a continuation with nothing to continue fails with 1002',
    async run(t) {
      const c = await t.connect();
      await c.send(
        Buffer.concat([
          frag(OP.TEXT, false, 'fragment1'),
          frag(OP.CONT, true, 'fragment2'),
          frag(OP.CONT, false, 'fragment3'),
          frag(OP.TEXT, true, 'fragment4'),
        ])
      );
      await expectFail(c, 1002, [text('fragment1fragment2')]);
    },
  },
  ...[false, true].map((fin, i) => ({
    id: `5.${16 + i}`,
    desc: `twice: continuation (FIN=${fin ? 1 : 0}) with nothing to continue, then a 2-fragment text: 1002, no echo`,
    async run(t) {
      const c = await t.connect();
      const once = [frag(OP.CONT, fin, 'fragment1'), frag(OP.TEXT, false, 'fragment2'), frag(OP.CONT, true, 'fragment3')];
      await c.send(Buffer.concat([...once, ...once]));
      await expectFail(c, 1002);
    },
  })),
  {
    id: '5.18',
    desc: 'text fragment followed by a second text frame (not a continuation) fails with 1002, no echo',
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([frag(OP.TEXT, false, 'fragment1'), frag(OP.TEXT, true, 'fragment2')]));
      await expectFail(c, 1002);
    },
  },
  pingPongDuringFragments('5.19', 'one'),
  pingPongDuringFragments('5.20', 'frame'),
  // 5.21.x — beyond Autobahn.
  {
    id: '5.21.1',
    desc: 'binary message in 3 fragments is echoed as one binary message',
    async run(t) {
      const c = await t.connect();
      const parts = [Buffer.from([0, 1, 2]), Buffer.from([0xff]), Buffer.from([0xfe, 0xfd])];
      await c.send(Buffer.concat([frag(OP.BINARY, false, parts[0]), frag(OP.CONT, false, parts[1]), frag(OP.CONT, true, parts[2])]));
      await expectThenClose(c, [binary(Buffer.concat(parts))]);
    },
  },
  {
    id: '5.21.2',
    desc: 'binary fragment followed by a text frame fails with 1002, no echo',
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([frag(OP.BINARY, false, 'fragment1'), frag(OP.TEXT, true, 'fragment2')]));
      await expectFail(c, 1002);
    },
  },
  {
    id: '5.21.3',
    desc: 'text fragment followed by a non-final binary frame fails with 1002, no echo',
    async run(t) {
      const c = await t.connect();
      await c.send(Buffer.concat([frag(OP.TEXT, false, 'fragment1'), frag(OP.BINARY, false, 'fragment2')]));
      await expectFail(c, 1002);
    },
  },
  {
    id: '5.21.4',
    desc: 'fragmented text with a ping, an unsolicited pong and a ping between fragments: 2 pongs, then the echo',
    async run(t) {
      const c = await t.connect();
      await c.send(
        Buffer.concat([
          frag(OP.TEXT, false, 'a'),
          frag(OP.PING, true, 'one'),
          frag(OP.CONT, false, 'b'),
          frag(OP.PONG, true, 'unsolicited'),
          frag(OP.CONT, false, 'c'),
          frag(OP.PING, true, 'two'),
          frag(OP.CONT, true, 'd'),
        ])
      );
      await expectThenClose(c, [pong('one'), pong('two'), text('abcd')]);
    },
  },
  {
    id: '5.21.5',
    desc: '200 one-byte fragments, each followed by a ping: 200 pongs, then one echo',
    async run(t) {
      const c = await t.connect();
      const bytes = [];
      const want = [];
      let msg = '';
      for (let i = 0; i < 200; i++) {
        const ch = String.fromCharCode(0x41 + (i % 26));
        msg += ch;
        bytes.push(frag(i === 0 ? OP.TEXT : OP.CONT, i === 199, ch), frag(OP.PING, true, `${i}`));
        want.push(pong(`${i}`));
      }
      // the last ping comes after the final fragment, so its pong follows the echo
      const last = want.pop();
      await c.send(Buffer.concat(bytes));
      await expectThenClose(c, [...want, text(msg), last]);
    },
  },
  {
    id: '5.21.6',
    desc: 'close frame in the middle of a fragmented message: close echoed, partial message dropped',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.TEXT, fin: false, payload: 'fragment1' });
      await closeAndExpect(c, []);
    },
  },
  {
    id: '5.21.7',
    desc: 'two fragmented messages back to back, then an unfragmented one: three echoes in order',
    async run(t) {
      const c = await t.connect();
      await c.send(
        Buffer.concat([
          frag(OP.TEXT, false, 'one-'),
          frag(OP.CONT, true, 'a'),
          frag(OP.BINARY, false, 'two-'),
          frag(OP.CONT, false, 'b'),
          frag(OP.CONT, true, ''),
          frag(OP.TEXT, true, 'three'),
        ])
      );
      await expectThenClose(c, [text('one-a'), binary('two-b'), text('three')]);
    },
  },
  {
    id: '5.21.8',
    desc: 'close frame fragmented (FIN=0) fails with 1002',
    async run(t) {
      const c = await t.connect();
      await c.sendFrame({ opcode: OP.CLOSE, fin: false, payload: Buffer.from([0x03, 0xe8]) });
      await expectFail(c, 1002);
    },
  },
];
