// tests/e2e/chat.test.mjs — the chat protocol of docs/PROTOCOL.md, end to
// end, through the `ws` client: the welcome, room messages and their ids,
// fan-out to many clients and ordering, the four addressing modes (whole
// room, the actor only, everyone but the actor, one client by id), rooms
// (join/leave, isolation, the current room, limits, names), history and
// resume (gap, ring size, resume on connect), nicknames and their rules,
// errors for bad input (to the offender only, connection kept), and the
// cleanup of members that close, vanish or miss their pings.
//
// One server per group (--port 0); tests sharing a server use their own
// rooms (?room=) so their notices never cross. Every client a test opens is
// closed in afterEach; every server is stopped (and must exit 0) in after.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/chat.test.mjs

import { describe, test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import {
  Tracker, chatServer, uniqueRoom, assertCommon, assertMember, assertMessageObject,
  assertHistory,
} from './lib/chat.mjs';
import { rawOpen, readFrame, parseFrame, OP } from './lib/ws.mjs';

const COMMON = ['params', 'text', 'timestamp', 'type'];

// Exactly the common fields plus `extra`.
function assertKeys(m, extra) {
  assert.deepEqual(Object.keys(m).sort(), [...COMMON, ...extra].sort(),
    `fields of a ${m.type}: ${JSON.stringify(m)}`);
}

// PROTOCOL.md: `nick` goes to "everyone in each room the client is in (one
// per room, `room` set), and the client itself (one, without `room`)". Read
// literally, "everyone" would include the client (as for `message`); the
// reading tested is the one "and the client itself (one …)" suggests: the
// others in each room get one per room, the client exactly one, without
// `room`. Flip this to test the literal reading.
const SELF_ROOM_COPIES = false;

const idNum = (id) => Number(id.slice(1));
const byId = (a, b) => idNum(a.id) - idNum(b.id);
const sortMembers = (list) => [...list].sort(byId);

// The next message of c must be an error with this code (strict order).
async function expectError(c, code, sent = '') {
  const m = await c.shift();
  assert.equal(m.type, 'error', `an error for ${JSON.stringify(sent)}, got ${JSON.stringify(m)}`);
  assertKeys(m, ['code']);
  assert.equal(m.code, code, `error code for ${JSON.stringify(sent)}: ${JSON.stringify(m)}`);
  return m;
}

// Opens n clients in `room` (via ?room=), reads each welcome, and lets each
// client consume the `join` notices of the ones opened after it.
async function openRoom(tr, port, n, room, query = {}) {
  const cs = [];
  for (let i = 0; i < n; i++) {
    const c = await tr.join(port, { room, ...query });
    assert.equal(c.welcomeMsg.room, room, 'welcome.room is the ?room= one');
    cs.push(c);
  }
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const m = await cs[i].next({ type: 'join', room, member: cs[j].member });
      assertKeys(m, ['member', 'room']);
    }
  }
  return cs;
}

// c sends a plain message and every client in `all` receives it; returns
// the id (asserting all copies agree and `own` is right).
async function sendAndCollect(c, all, room, text) {
  c.send(text);
  let id = null;
  for (const r of all) {
    const m = await r.next({ type: 'message', text });
    assertMessageObject(m, { room, from: c.member, text, own: r === c });
    if (id === null) id = m.id;
    assert.equal(m.id, id, `every copy has the same id (${r.id})`);
  }
  return id;
}

// c joins room and reads its `joined`.
async function joinRoom(c, room) {
  c.send({ type: 'join', room });
  const m = await c.next({ type: 'joined', room });
  assertKeys(m, ['history', 'last_id', 'member_count', 'members', 'room']);
  return m;
}

// ===========================================================================
describe('chat (default options)', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer([]); });
  after(async () => { await tr.closeAll(); await server.stop(); });
  afterEach(() => tr.closeAll());

  // -------------------------------------------------------------------------
  // Welcome

  test('welcome: the first message, exact fields; the next client sees both members', async () => {
    const { port } = server;
    const a = await tr.open(port);
    const w = await a.welcome();
    assertKeys(w, ['history', 'id', 'last_id', 'member_count', 'members', 'nick', 'room', 'rooms']);
    assert.match(w.id, /^c\d+$/);
    assert.match(w.nick, /^guest-\d+$/);
    assert.equal(w.room, 'lobby');
    assert.deepEqual(w.rooms, ['lobby']);
    assert.deepEqual(w.members, [{ id: w.id, nick: w.nick }], 'alone in the lobby');
    assert.deepEqual(w.history, []);
    assert.equal(w.last_id, 0);

    const b = await tr.open(port);
    const wb = await b.welcome();
    assert.notEqual(wb.id, w.id);
    assert.deepEqual(wb.rooms, ['lobby']);
    assert.deepEqual(sortMembers(wb.members), sortMembers([a.member, b.member]));
    wb.members.forEach((m) => assertMember(m));
    // The others get `join`; the joiner does not.
    const j = await a.next('join');
    assertKeys(j, ['member', 'room']);
    assert.deepEqual(j, { ...j, room: 'lobby', member: b.member });
    await b.expectNothing('join');

    // After a message, a newcomer's welcome carries it and last_id.
    a.send('hello lobby');
    const m = await a.next('message');
    assertMessageObject(m, { id: 1, room: 'lobby', from: a.member, text: 'hello lobby', own: true });
    const c = await tr.join(port);
    assert.equal(c.welcomeMsg.last_id, 1);
    assertHistory(c.welcomeMsg.history, { room: 'lobby', ids: [1], selfId: c.id, texts: ['hello lobby'] });
    assert.equal(c.welcomeMsg.history[0].own, false);
    assert.deepEqual(c.welcomeMsg.history[0].from, a.member);
  });

  test('welcome: client ids are unique, also after others disconnect', async () => {
    const room = uniqueRoom('ids');
    const seen = new Set();
    for (let round = 0; round < 3; round++) {
      const cs = await openRoom(tr, server.port, 5, room);
      for (const c of cs) {
        assert.ok(!seen.has(c.id), `id ${c.id} never given out before`);
        seen.add(c.id);
        assert.match(c.nick, /^guest-\d+$/);
      }
      await tr.closeAll();
    }
    assert.equal(seen.size, 15);
  });

  // -------------------------------------------------------------------------
  // Room messages

  test('message: a raw text frame (lecture page 1) reaches both, own only for the sender', async () => {
    const room = uniqueRoom('raw');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    a.send('hello there');
    const ma = await a.next('message');
    const mb = await b.next('message');
    assertMessageObject(ma, { id: 1, room, from: a.member, text: 'hello there', own: true });
    assertMessageObject(mb, { id: 1, room, from: a.member, text: 'hello there', own: false });
    assert.deepEqual(mb.params, { value: 'hello there' });
    assert.equal(mb.timestamp, ma.timestamp, 'one message, one timestamp');
    await a.expectNothing('message');
    await b.expectNothing('message');
  });

  test('message: {"type":"message","params":{"value":…}} (lecture page 2) and {"text":…} both work', async () => {
    const room = uniqueRoom('json');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    a.send({ type: 'message', params: { value: 'from page two' } });
    b.send({ type: 'message', text: 'from json text' });
    for (const r of [a, b]) {
      const m1 = await r.next({ type: 'message', text: 'from page two' });
      assertMessageObject(m1, { room, from: a.member, own: r === a });
      assert.deepEqual(m1.params, { value: 'from page two' });
      const m2 = await r.next({ type: 'message', text: 'from json text' });
      assertMessageObject(m2, { room, from: b.member, own: r === b });
      assert.deepEqual(m2.params, { value: 'from json text' });
      assert.deepEqual([m1.id, m2.id].sort(), [1, 2]);
    }
  });

  test('message: 20 clients each send one; every member gets all 20 exactly once, same ids', async () => {
    const room = uniqueRoom('many');
    const cs = await openRoom(tr, server.port, 20, room);
    cs.forEach((c, i) => c.send(`msg from #${i}`));
    let reference = null;
    for (const r of cs) {
      const got = await r.nextN('message', 20);
      const map = new Map();
      for (const m of got) {
        const from = cs.find((c) => c.id === m.from.id);
        assert.ok(from, `from a member of the room: ${JSON.stringify(m)}`);
        assertMessageObject(m, { room, text: `msg from #${cs.indexOf(from)}`, own: from === r });
        assert.deepEqual(m.from, from.member);
        assert.ok(!map.has(m.id), `id ${m.id} once at ${r.id}`);
        map.set(m.id, m.text);
      }
      assert.deepEqual([...map.keys()].sort((x, y) => x - y),
        Array.from({ length: 20 }, (_, i) => i + 1), 'ids 1..20');
      if (reference) assert.deepEqual(map, reference, `${r.id} agrees on which id is which`);
      else reference = map;
    }
    await Promise.all(cs.map((c) => c.expectNothing('message')));
  });

  test('message: a burst of 100 from one sender arrives in order, ids +1 each, at every receiver', async () => {
    const room = uniqueRoom('burst');
    const cs = await openRoom(tr, server.port, 4, room);
    const [s] = cs;
    for (let i = 0; i < 100; i++) s.send(i % 2 ? `burst ${i}` : { type: 'message', text: `burst ${i}` });
    for (const r of cs) {
      const got = await r.nextN('message', 100);
      got.forEach((m, i) => {
        assertMessageObject(m, { id: i + 1, room, from: s.member, text: `burst ${i}`, own: r === s },
          `${r.id} #${i}: `);
      });
    }
    await Promise.all(cs.map((c) => c.expectNothing('message')));
  });

  test('message: ids count per room, independently', async () => {
    const ra = uniqueRoom('cnt-a');
    const rb = uniqueRoom('cnt-b');
    const [a] = await openRoom(tr, server.port, 1, ra);
    const jb = await joinRoom(a, rb);
    assert.equal(jb.last_id, 0);
    const ids = [];
    for (const [room, text] of [[ra, 'a1'], [rb, 'b1'], [ra, 'a2'], [ra, 'a3'], [rb, 'b2']]) {
      a.send({ type: 'message', room, text });
      const m = await a.next({ type: 'message', text });
      assertMessageObject(m, { room, own: true });
      ids.push(m.id);
    }
    assert.deepEqual(ids, [1, 1, 2, 3, 2]);
    const b = await tr.join(server.port, { room: ra });
    assert.equal(b.welcomeMsg.last_id, 3);
    const j = await joinRoom(b, rb);
    assert.equal(j.last_id, 2);
  });

  test('message: text is data — HTML, quotes, escapes, non-ASCII come back exactly', async () => {
    const room = uniqueRoom('data');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    const texts = [
      '<img src=x onerror=alert(1)>',
      '<script>alert("x")</script>&amp;&lt;',
      'quote " backslash \\ slash / tab\tnewline\nend',
      'unicode é 한국어 😀 \u2028 \u00a0',
      '{not json but starts with a space? no: this one starts with a letter',
    ];
    for (const t of texts) a.send({ type: 'message', text: t });
    for (const r of [a, b]) {
      const got = await r.nextN('message', texts.length);
      got.forEach((m, i) => {
        assertMessageObject(m, { room, text: texts[i], own: r === a });
        assert.equal(m.params.value, texts[i]);
      });
    }
    // The same through a raw text frame.
    a.send('<img src=x onerror=alert(1)>');
    const m = await b.next('message');
    assert.equal(m.text, '<img src=x onerror=alert(1)>');
    assert.equal(m.params.value, '<img src=x onerror=alert(1)>');
  });

  test('message: blanks before "{" still mean JSON; a frame not starting with "{" is plain text', async () => {
    const room = uniqueRoom('plain');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    a.send(' \t\r\n {"type":"message","text":"padded json"}');
    let m = await b.next('message');
    assertMessageObject(m, { id: 1, room, from: a.member, text: 'padded json', own: false });
    // PROTOCOL.md: plain text is a frame whose first non-blank character
    // is not "{" — so these are chat messages, verbatim.
    for (const [i, t] of ['[1,2]', '"{"', 'hi {"type":"dance"}', '42', 'null'].entries()) {
      a.send(t);
      m = await b.next('message');
      assertMessageObject(m, { id: i + 2, room, from: a.member, text: t, own: false });
    }
    await a.expectNothing('error');
  });

  // -------------------------------------------------------------------------
  // Addressing

  test('addressing: joined, left and error go only to the acting client', async () => {
    const room = uniqueRoom('self');
    const other = uniqueRoom('self-other');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    a.send({ type: 'join', room: other });
    const j = await a.shift();
    assert.equal(j.type, 'joined');
    assertKeys(j, ['history', 'last_id', 'member_count', 'members', 'room']);
    assert.equal(j.room, other);
    assert.deepEqual(j.members, [a.member]);
    assert.deepEqual(j.history, []);
    assert.equal(j.last_id, 0);
    a.send({ type: 'leave', room: other });
    const l = await a.shift();
    assert.equal(l.type, 'left');
    assertKeys(l, ['room']);
    assert.equal(l.room, other);
    a.send('{oops');
    await expectError(a, 'bad_json', '{oops');
    await b.expectNothing();
  });

  test('addressing: join and leave notices go to the others in the room, not the actor', async () => {
    const room = uniqueRoom('notice');
    const cs = await openRoom(tr, server.port, 3, room);
    const d = await tr.join(server.port, { room: uniqueRoom('notice-elsewhere') });
    const jd = await joinRoom(d, room);
    assert.deepEqual(sortMembers(jd.members), sortMembers([...cs, d].map((c) => c.member)));
    assert.deepEqual(jd.history, []);
    assert.equal(jd.last_id, 0);
    for (const c of cs) {
      const m = await c.next('join');
      assertKeys(m, ['member', 'room']);
      assert.equal(m.room, room);
      assert.deepEqual(m.member, d.member);
    }
    d.send({ type: 'leave', room });
    const l = await d.shift();
    assert.equal(l.type, 'left');
    assert.equal(l.room, room);
    for (const c of cs) {
      const m = await c.next('leave');
      assertKeys(m, ['member', 'room']);
      assert.equal(m.room, room);
      assert.deepEqual(m.member, d.member);
    }
    await d.expectNothing();
    await Promise.all(cs.map((c) => c.expectNothing()));
  });

  test('direct: the recipient gets own:false, the sender own:true, nobody else anything', async () => {
    const room = uniqueRoom('dm');
    const [a, b, c] = await openRoom(tr, server.port, 3, room);
    const d = await tr.join(server.port, { room: uniqueRoom('dm-elsewhere') });
    for (const to of [b, d]) {
      const text = `psst ${to.id}`;
      a.send({ type: 'message', to: to.id, text });
      const mine = await a.shift();
      const theirs = await to.shift();
      for (const [m, own] of [[mine, true], [theirs, false]]) {
        assertKeys(m, ['from', 'own', 'to']);
        assert.equal(m.type, 'direct');
        assert.deepEqual(m.from, a.member);
        assert.deepEqual(m.to, to.member);
        assert.equal(m.text, text);
        assert.deepEqual(m.params, { value: text });
        assert.equal(m.own, own);
      }
    }
    await Promise.all([a, b, c, d].map((x) => x.expectNothing()));
  });

  test('direct: an id that is not connected gives unknown_client to the sender only', async () => {
    const room = uniqueRoom('dm-unknown');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    const gone = await tr.join(server.port, { room: uniqueRoom('dm-gone') });
    await gone.close();
    for (const to of ['c999999', gone.id, 'nobody', '']) {
      a.send({ type: 'message', to, text: 'hello?' });
      await expectError(a, 'unknown_client', to);
    }
    await b.expectNothing();
    a.send('still here');
    assert.equal((await b.next('message')).text, 'still here');
  });

  // -------------------------------------------------------------------------
  // Rooms

  test('rooms: a message in room A never reaches a client only in room B', async () => {
    const ra = uniqueRoom('iso-a');
    const rb = uniqueRoom('iso-b');
    const [a] = await openRoom(tr, server.port, 1, ra);
    const [b] = await openRoom(tr, server.port, 1, rb);
    const both = await tr.join(server.port, { room: ra });
    await a.next({ type: 'join', member: both.member });
    await joinRoom(both, rb);
    await b.next({ type: 'join', member: both.member });
    a.send('only in A');
    b.send('only in B');
    const inA = await both.next({ type: 'message', text: 'only in A' });
    const inB = await both.next({ type: 'message', text: 'only in B' });
    assertMessageObject(inA, { id: 1, room: ra, from: a.member, own: false });
    assertMessageObject(inB, { id: 1, room: rb, from: b.member, own: false });
    assert.equal((await a.next('message')).text, 'only in A');
    assert.equal((await b.next('message')).text, 'only in B');
    await a.expectNothing();
    await b.expectNothing();
  });

  test('rooms: "room" picks one of the client\'s rooms; the current room is the latest joined still held', async () => {
    const r0 = uniqueRoom('cur0');
    const r1 = uniqueRoom('cur1');
    const r2 = uniqueRoom('cur2');
    const [w0] = await openRoom(tr, server.port, 1, r0);
    const [w1] = await openRoom(tr, server.port, 1, r1);
    const [w2] = await openRoom(tr, server.port, 1, r2);
    const x = await tr.join(server.port, { room: r0 });
    await joinRoom(x, r1);
    await joinRoom(x, r2);
    await w0.next('join');
    await w1.next('join');
    await w2.next('join');
    const watchers = [w0, w1, w2];
    const rooms = [r0, r1, r2];
    // Sends `text` (as raw or JSON) and asserts only watcher k got it.
    const expectIn = async (k, text) => {
      const m = await watchers[k].next('message');
      assertMessageObject(m, { room: rooms[k], from: x.member, text, own: false });
      const mine = await x.next('message');
      assertMessageObject(mine, { room: rooms[k], text, own: true });
      await Promise.all(watchers.filter((_, i) => i !== k).map((w) => w.expectNothing('message', 50)));
    };
    x.send('plain goes to the latest');
    await expectIn(2, 'plain goes to the latest');
    x.send({ type: 'message', room: r1, text: 'picked r1' });
    await expectIn(1, 'picked r1');
    x.send({ type: 'message', room: r0, params: { value: 'picked r0' } });
    await expectIn(0, 'picked r0');
    x.send({ type: 'message', text: 'json goes to the latest' });
    await expectIn(2, 'json goes to the latest');
    x.send({ type: 'leave', room: r2 });
    await x.next({ type: 'left', room: r2 });
    x.send('now r1 is current');
    await expectIn(1, 'now r1 is current');
    x.send({ type: 'leave', room: r1 });
    await x.next({ type: 'left', room: r1 });
    x.send('now r0 is current');
    await expectIn(0, 'now r0 is current');
  });

  test('rooms: not_in_room for a message to or a leave of a room the client is not in', async () => {
    const room = uniqueRoom('nir');
    const elsewhere = uniqueRoom('nir-else');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    const [w] = await openRoom(tr, server.port, 1, elsewhere);
    a.send({ type: 'message', room: elsewhere, text: 'sneak' });
    await expectError(a, 'not_in_room', 'message to a room not joined');
    a.send({ type: 'leave', room: elsewhere });
    await expectError(a, 'not_in_room', 'leave of a room not joined');
    await joinRoom(a, elsewhere);
    await w.next('join');
    a.send({ type: 'leave', room: elsewhere });
    await a.next({ type: 'left', room: elsewhere });
    a.send({ type: 'message', room: elsewhere, text: 'after leaving' });
    await expectError(a, 'not_in_room', 'message to a room just left');
    a.send({ type: 'leave', room: elsewhere });
    await expectError(a, 'not_in_room', 'second leave');
    await w.next('leave');
    await w.expectNothing();
    await b.expectNothing();
  });

  test('rooms: 16 rooms are fine, the 17th join is too_many_rooms', async () => {
    const base = uniqueRoom('many-rooms');
    const [a] = await openRoom(tr, server.port, 1, `${base}-0`);
    for (let i = 1; i < 16; i++) {
      const j = await joinRoom(a, `${base}-${i}`);
      assert.deepEqual(j.members, [a.member]);
    }
    const extra = `${base}-16`;
    const [w] = await openRoom(tr, server.port, 1, extra);
    a.send({ type: 'join', room: extra });
    await expectError(a, 'too_many_rooms', 'the 17th join');
    await w.expectNothing();
    a.send({ type: 'message', room: extra, text: 'not a member' });
    await expectError(a, 'not_in_room', 'message to the refused room');
    // Still in all 16; the current room is still the 16th.
    a.send('current');
    assertMessageObject(await a.shift(), { room: `${base}-15`, text: 'current', own: true });
    // Leaving one makes room for another.
    a.send({ type: 'leave', room: `${base}-3` });
    await a.next({ type: 'left', room: `${base}-3` });
    const j = await joinRoom(a, extra);
    assert.deepEqual(sortMembers(j.members), sortMembers([w.member, a.member]));
    assert.deepEqual((await w.next('join')).member, a.member);
  });

  test('rooms: bad_room for names outside 1–64 of [A-Za-z0-9._-]', async () => {
    const room = uniqueRoom('badroom');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    const bad = ['', 'x'.repeat(65), 'a b', 'a/b', 'café', '한국', 'tab\there', 'semi;colon', 'a\u0001b'];
    for (const name of bad) {
      a.send({ type: 'join', room: name });
      await expectError(a, 'bad_room', `join ${JSON.stringify(name)}`);
    }
    a.send({ type: 'join', room: 5 });
    await expectError(a, 'missing_field', 'join with a numeric room');
    await b.expectNothing();
    // The edges that are fine: 64 characters, every allowed class, one char.
    const long = `${'Az09._-'.repeat(9)}${'q'.repeat(1)}`;
    assert.equal(long.length, 64);
    for (const name of [long, 'Z', `-._${process.pid}`]) {
      const j = await joinRoom(a, name);
      assert.equal(j.room, name);
      a.send({ type: 'leave', room: name });
      await a.next({ type: 'left', room: name });
    }
    a.send('still works');
    assertMessageObject(await b.next('message'), { room, text: 'still works', own: false });
  });

  test('rooms: a disconnecting client causes a leave in each of its rooms', async () => {
    const rs = [uniqueRoom('bye0'), uniqueRoom('bye1'), uniqueRoom('bye2')];
    const ws = [];
    for (const r of rs) ws.push((await openRoom(tr, server.port, 1, r))[0]);
    const w01 = await tr.join(server.port, { room: rs[0] });
    await ws[0].next('join');
    await joinRoom(w01, rs[1]);
    await ws[1].next('join');
    const x = await tr.join(server.port, { room: rs[0] });
    await joinRoom(x, rs[1]);
    await joinRoom(x, rs[2]);
    for (const [k, w] of ws.entries()) await w.next({ type: 'join', room: rs[k], member: x.member });
    await w01.nextN({ type: 'join', member: x.member }, 2);
    await x.close();
    for (const [k, w] of ws.entries()) {
      const m = await w.next('leave');
      assertKeys(m, ['member', 'room']);
      assert.equal(m.room, rs[k]);
      assert.deepEqual(m.member, x.member);
    }
    const two = await w01.nextN('leave', 2);
    assert.deepEqual(two.map((m) => m.room).sort(), [rs[0], rs[1]].sort(), 'one leave per shared room');
    two.forEach((m) => assert.deepEqual(m.member, x.member));
    await Promise.all([...ws, w01].map((w) => w.expectNothing()));
  });

  test('rooms: joined lists the members and carries the room\'s history', async () => {
    const room = uniqueRoom('joined');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    // Two connections (possibly on two server threads): 'second' is sent
    // only once 'first' has its id, so the order is defined.
    a.send('first');
    await b.next({ type: 'message', text: 'first' });
    b.send({ type: 'message', text: 'second' });
    await a.nextN('message', 2);
    await b.next({ type: 'message', text: 'second' });
    const c = await tr.join(server.port, { room: uniqueRoom('joined-else') });
    const j = await joinRoom(c, room);
    assert.deepEqual(sortMembers(j.members), sortMembers([a.member, b.member, c.member]));
    assertHistory(j.history, { room, ids: [1, 2], selfId: c.id, texts: ['first', 'second'] });
    assert.deepEqual(j.history.map((m) => m.from), [a.member, b.member]);
    assert.equal(j.last_id, 2);
  });

  // -------------------------------------------------------------------------
  // Nicknames

  test('nick: one notice per room to the others in it, one to the client without room; then from.nick', async () => {
    const r0 = uniqueRoom('nick0');
    const r1 = uniqueRoom('nick1');
    const [a, b] = await openRoom(tr, server.port, 2, r0);
    const [c] = await openRoom(tr, server.port, 1, r1);
    const d = await tr.join(server.port, { room: r0 });
    await a.next('join');
    await b.next('join');
    await joinRoom(d, r1);
    await c.next('join');
    await joinRoom(a, r1);
    await c.next('join');
    await d.next('join');
    const old = a.nick;
    a.send({ type: 'nick', name: 'ann' });
    const member = { id: a.id, nick: 'ann' };
    const check = (m, room) => {
      if (room === undefined) {
        assertKeys(m, ['member', 'old']);
      } else {
        assertKeys(m, ['member', 'old', 'room']);
        assert.equal(m.room, room);
      }
      assert.deepEqual(m.member, member);
      assert.equal(m.old, old);
    };
    check(await b.next('nick'), r0);
    check(await c.next('nick'), r1);
    const dn = await d.nextN('nick', 2);
    assert.deepEqual(dn.map((m) => m.room).sort(), [r0, r1].sort());
    dn.forEach((m) => check(m, m.room));
    // The client itself: exactly one, without room (see SELF_ROOM_COPIES).
    const an = await a.nextN('nick', SELF_ROOM_COPIES ? 3 : 1);
    const selfCopies = an.filter((m) => !('room' in m));
    assert.equal(selfCopies.length, 1, `exactly one nick without room to the client: ${JSON.stringify(an)}`);
    check(selfCopies[0]);
    an.filter((m) => 'room' in m).forEach((m) => check(m, m.room));
    assert.deepEqual(an.filter((m) => 'room' in m).map((m) => m.room).sort(),
      SELF_ROOM_COPIES ? [r0, r1].sort() : []);
    await Promise.all([a, b, c, d].map((x) => x.expectNothing('nick')));

    a.send({ type: 'message', room: r0, text: 'as ann' });
    for (const r of [a, b]) assert.deepEqual((await r.next('message')).from, member);
    const e = await tr.join(server.port, { room: r0 });
    assert.ok(e.welcomeMsg.members.some((m) => m.id === a.id && m.nick === 'ann'));
    assert.deepEqual(e.welcomeMsg.history[0].from, member);
  });

  test('nick: the 32-character limit counts characters, not bytes', async () => {
    const room = uniqueRoom('nicklen');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    const good = ['한'.repeat(32), 'é'.repeat(32), 'x'.repeat(32), 'y'];
    for (const name of good) {
      a.send({ type: 'nick', name });
      const mine = await a.nextN('nick', SELF_ROOM_COPIES ? 2 : 1);
      assert.equal(mine.filter((m) => !('room' in m)).length, 1, JSON.stringify(mine));
      mine.forEach((m) => assert.equal(m.member.nick, name));
      assert.equal((await b.next('nick')).member.nick, name);
    }
    for (const name of ['é'.repeat(33), 'x'.repeat(33), '한'.repeat(33)]) {
      a.send({ type: 'nick', name });
      await expectError(a, 'bad_nick', name);
    }
    await b.expectNothing();
    a.send('unchanged');
    assert.equal((await b.next('message')).from.nick, 'y');
  });

  test('nick: bad_nick for empty, all-blank and control characters; a non-string name is missing_field', async () => {
    const room = uniqueRoom('nickbad');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    const bad = ['', ' ', '     ', 'a\u0001b', 'a\u001fb', 'a\u007fb', 'a\u0085b', 'a\u009fb', 'tab\tname', 'line\nbreak'];
    for (const name of bad) {
      a.send({ type: 'nick', name });
      await expectError(a, 'bad_nick', name);
    }
    for (const name of [5, null, ['ann'], { v: 'ann' }]) {
      a.send({ type: 'nick', name });
      await expectError(a, 'missing_field', name);
    }
    a.send({ type: 'nick' });
    await expectError(a, 'missing_field', 'nick without name');
    await b.expectNothing();
    a.send('same nick');
    assert.deepEqual((await b.next('message')).from, a.member);
  });

  test('U+0000 escaped in a JSON string is still a JSON object: bad_nick, bad_room, and text relayed as data', async () => {
    // JSON allows "\u0000" in strings, so these frames are JSON objects and
    // must not be bad_json; the nick and room rules then refuse them, and a
    // message text is "stored and relayed as data".
    const room = uniqueRoom('nul');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    a.send({ type: 'nick', name: 'a\u0000b' });
    await expectError(a, 'bad_nick', 'nick "a\\u0000b"');
    a.send({ type: 'join', room: 'a\u0000b' });
    await expectError(a, 'bad_room', 'join "a\\u0000b"');
    await b.expectNothing();
    a.send({ type: 'message', text: 'nul\u0000inside' });
    assertMessageObject(await b.shift(), { id: 1, room, from: a.member, text: 'nul\u0000inside', own: false });
  });

  test('nick: ?nick= on connect; a bad one is ignored with an error after the welcome', async () => {
    const room = uniqueRoom('nickq');
    const [a] = await openRoom(tr, server.port, 1, room);
    const z = await tr.open(server.port, { room, nick: 'zoë 한' });
    const wz = await z.welcome();
    assert.equal(wz.nick, 'zoë 한');
    assert.ok(wz.members.some((m) => m.id === wz.id && m.nick === 'zoë 한'));
    assert.deepEqual((await a.next('join')).member, { id: wz.id, nick: 'zoë 한' });
    await z.expectNothing('error');
    // (An empty ?nick= is left out: "absent" or "bad" is not specified.)
    for (const nick of ['x'.repeat(33), 'a\u0001b', '   ', '\u007f']) {
      const q = await tr.open(server.port, { room, nick });
      const wq = await q.welcome();
      assert.match(wq.nick, /^guest-\d+$/, `bad ?nick=${JSON.stringify(nick)} ignored`);
      await expectError(q, 'bad_nick', `?nick=${nick}`);
      const j = await a.next('join');
      assert.deepEqual(j.member, q.member);
      await a.expectNothing('error');
    }
  });
});

// ===========================================================================
describe('chat history and resume (--history 5)', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer(['--history', '5']); });
  after(async () => { await tr.closeAll(); await server.stop(); });
  afterEach(() => tr.closeAll());

  // A room with 8 messages from its writer; returns { room, writer }.
  async function eight() {
    const room = uniqueRoom('hist');
    const [writer] = await openRoom(tr, server.port, 1, room);
    for (let i = 1; i <= 8; i++) writer.send(`m${i}`);
    const got = await writer.nextN('message', 8);
    assert.deepEqual(got.map((m) => m.id), [1, 2, 3, 4, 5, 6, 7, 8]);
    return { room, writer };
  }
  const textsFor = (ids) => ids.map((i) => `m${i}`);

  test('history: after 8 messages a newcomer\'s welcome has the last 5 (ids 4..8)', async () => {
    const { room, writer } = await eight();
    const c = await tr.join(server.port, { room });
    assert.equal(c.welcomeMsg.last_id, 8);
    assertHistory(c.welcomeMsg.history, { room, ids: [4, 5, 6, 7, 8], selfId: c.id, texts: textsFor([4, 5, 6, 7, 8]) });
    c.welcomeMsg.history.forEach((m) => {
      assert.deepEqual(m.from, writer.member);
      assert.equal(m.own, false);
    });
    await c.expectNothing('gap');
  });

  test('resume: after=6 → 7,8; after=3 → 4..8 without gap; after=2 and 1 → gap then 4..8; after ≥ last → empty', async () => {
    const { room, writer } = await eight();
    const c = await tr.join(server.port, { room });
    assert.deepEqual((await writer.next('join')).member, c.member);
    const cases = [
      { after: 6, ids: [7, 8], gap: false },
      { after: 3, ids: [4, 5, 6, 7, 8], gap: false },
      { after: 2, ids: [4, 5, 6, 7, 8], gap: true },
      { after: 1, ids: [4, 5, 6, 7, 8], gap: true },
      { after: 0, ids: [4, 5, 6, 7, 8], gap: true },
      { after: 7, ids: [8], gap: false },
      { after: 8, ids: [], gap: false },
      { after: 100, ids: [], gap: false },
    ];
    for (const { after: n, ids, gap } of cases) {
      c.send({ type: 'resume', room, after: n });
      if (gap) {
        const g = await c.shift();
        assert.equal(g.type, 'gap', `after=${n}: a gap first, got ${JSON.stringify(g)}`);
        assertKeys(g, ['after', 'oldest', 'room']);
        assert.equal(g.room, room);
        assert.equal(g.after, n);
        assert.equal(g.oldest, 4);
      }
      const h = await c.shift();
      assert.equal(h.type, 'history', `after=${n}: ${gap ? 'history after the gap' : 'history, no gap'}, got ${JSON.stringify(h)}`);
      assertKeys(h, ['after', 'messages', 'room']);
      assert.equal(h.room, room);
      assert.equal(h.after, n);
      assertHistory(h.messages, { room, ids, selfId: c.id, texts: textsFor(ids) });
    }
    await writer.expectNothing();
  });

  test('resume: a room the client is not in is joined first', async () => {
    const { room, writer } = await eight();
    const c = await tr.join(server.port, { room: uniqueRoom('hist-else') });
    c.send({ type: 'resume', room, after: 6 });
    const j = await c.shift();
    assert.equal(j.type, 'joined', `joined first, got ${JSON.stringify(j)}`);
    assert.equal(j.room, room);
    assert.deepEqual(sortMembers(j.members), sortMembers([writer.member, c.member]));
    assert.equal(j.last_id, 8);
    const h = await c.shift();
    assert.equal(h.type, 'history', `then history, got ${JSON.stringify(h)}`);
    assert.equal(h.after, 6);
    assertHistory(h.messages, { room, ids: [7, 8], selfId: c.id, texts: textsFor([7, 8]) });
    assert.deepEqual((await writer.next('join')).member, c.member);
    // It is a member now, and the room is its current one.
    c.send('back');
    assertMessageObject(await writer.next('message'), { id: 9, room, from: c.member, text: 'back', own: false });
  });

  test('resume: own is true in history for the client\'s own messages', async () => {
    const room = uniqueRoom('hist-own');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    a.send('mine 1');
    await a.next('message');
    b.send('theirs');
    await a.next('message');
    a.send('mine 2');
    await a.next('message');
    await b.nextN('message', 3);
    a.send({ type: 'resume', room, after: 0 });
    const h = await a.next('history');
    assertHistory(h.messages, { room, ids: [1, 2, 3], selfId: a.id, texts: ['mine 1', 'theirs', 'mine 2'] });
    assert.deepEqual(h.messages.map((m) => m.own), [true, false, true]);
    b.send({ type: 'resume', room, after: 0 });
    const hb = await b.next('history');
    assert.deepEqual(hb.messages.map((m) => m.own), [false, true, false]);
    await a.expectNothing('gap');
  });

  test('resume on connect: ?room=x&after=N fills the welcome, with a gap message after it when needed', async () => {
    const { room } = await eight();
    const cases = [
      { after: 6, ids: [7, 8], gap: false },
      { after: 3, ids: [4, 5, 6, 7, 8], gap: false },
      { after: 1, ids: [4, 5, 6, 7, 8], gap: true },
      { after: 8, ids: [], gap: false },
      { after: 50, ids: [], gap: false },
    ];
    for (const { after: n, ids, gap } of cases) {
      const c = await tr.open(server.port, { room, after: String(n) });
      const w = await c.welcome();
      assert.equal(w.room, room);
      assert.deepEqual(w.rooms, [room]);
      assert.equal(w.last_id, 8);
      assertHistory(w.history, { room, ids, selfId: c.id, texts: textsFor(ids) });
      if (gap) {
        const g = await c.shift();
        assert.equal(g.type, 'gap', `?after=${n}: a gap after the welcome, got ${JSON.stringify(g)}`);
        assertKeys(g, ['after', 'oldest', 'room']);
        assert.deepEqual([g.room, g.after, g.oldest], [room, n, 4]);
      }
      await c.expectNothing((m) => m.type === 'gap' || m.type === 'history');
      await c.close();
    }
  });
});

// ===========================================================================
describe('chat bad input (--max-text 100)', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer(['--max-text', '100']); });
  after(async () => { await tr.closeAll(); await server.stop(); });
  afterEach(() => tr.closeAll());

  // [label, frame to send, error code]
  const cases = [
    ['a lone "{"', '{', 'bad_json'],
    ['truncated JSON', '{"type":"message","text":"x"', 'bad_json'],
    ['trailing garbage after the object', '{"type":"message","text":"x"} trailing', 'bad_json'],
    ['two objects in one frame', '{"type":"message","text":"x"}{"type":"message","text":"y"}', 'bad_json'],
    ['single quotes', "{'type':'message'}", 'bad_json'],
    ['{"type":"dance"}', '{"type":"dance"}', 'unknown_type'],
    ['{}', '{}', 'unknown_type'],
    ['a numeric type', '{"type":5,"text":"x"}', 'unknown_type'],
    ['a type of the wrong case', '{"type":"MESSAGE","text":"x"}', 'unknown_type'],
    ['{"type":"message"}', '{"type":"message"}', 'missing_field'],
    ['a numeric text', '{"type":"message","text":5}', 'missing_field'],
    ['a numeric params.value', '{"type":"message","params":{"value":5}}', 'missing_field'],
    ['params without value', '{"type":"message","params":{}}', 'missing_field'],
    ['{"type":"join"}', '{"type":"join"}', 'missing_field'],
    ['{"type":"leave"}', '{"type":"leave"}', 'missing_field'],
    ['a resume without after', '{"type":"resume","room":"lobby"}', 'missing_field'],
    ['a resume without room', '{"type":"resume","after":1}', 'missing_field'],
    ['a resume with after -1', '{"type":"resume","room":"lobby","after":-1}', 'missing_field'],
    ['a resume with a string after', '{"type":"resume","room":"lobby","after":"3"}', 'missing_field'],
    ['a resume with a fractional after', '{"type":"resume","room":"lobby","after":1.5}', 'missing_field'],
    ['text of 101 bytes', JSON.stringify({ type: 'message', text: 'x'.repeat(101) }), 'text_too_long'],
    ['params.value of 101 bytes', JSON.stringify({ type: 'message', params: { value: 'x'.repeat(101) } }), 'text_too_long'],
    ['a raw text frame of 101 bytes', 'y'.repeat(101), 'text_too_long'],
    ['34 × "한" (34 characters, 102 bytes)', JSON.stringify({ type: 'message', text: '한'.repeat(34) }), 'text_too_long'],
    ['an empty text', '{"type":"message","text":""}', 'empty_text'],
    ['an empty params.value', '{"type":"message","params":{"value":""}}', 'empty_text'],
    ['an empty raw text frame', '', 'empty_text'],
    ['a binary frame', Buffer.from('{"type":"message","text":"bin"}'), 'binary_unsupported'],
  ];

  for (const [label, frame, code] of cases) {
    test(`bad input: ${label} → ${code}, to the sender only, connection kept`, async () => {
      const room = uniqueRoom('bad');
      const [a, b] = await openRoom(tr, server.port, 2, room);
      a.send(frame);
      await expectError(a, code, frame);
      await b.expectNothing();
      assert.equal(a.closeInfo, null, 'the connection stays open');
      a.send('fine after that');
      assertMessageObject(await a.shift(), { id: 1, room, from: a.member, text: 'fine after that', own: true });
      assertMessageObject(await b.shift(), { id: 1, room, from: a.member, text: 'fine after that', own: false });
    });
  }

  test('text limit: exactly 100 bytes is accepted (ASCII, 2-byte and 3-byte UTF-8, raw and JSON)', async () => {
    const room = uniqueRoom('limit');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    const texts = ['x'.repeat(100), 'é'.repeat(50), `${'한'.repeat(33)}z`];
    texts.forEach((t) => assert.equal(Buffer.byteLength(t), 100));
    a.send(texts[0]);
    a.send({ type: 'message', text: texts[1] });
    a.send({ type: 'message', params: { value: texts[2] } });
    for (const r of [a, b]) {
      const got = await r.nextN('message', 3);
      got.forEach((m, i) => assertMessageObject(m, { id: i + 1, room, text: texts[i], own: r === a }));
    }
    await a.expectNothing('error');
  });

  test('text limit: a direct message over the limit is text_too_long and not delivered', async () => {
    const room = uniqueRoom('limit-dm');
    const [a, b] = await openRoom(tr, server.port, 2, room);
    a.send({ type: 'message', to: b.id, text: 'z'.repeat(101) });
    await expectError(a, 'text_too_long', 'direct of 101 bytes');
    await b.expectNothing();
  });
});

// ===========================================================================
describe('chat membership cleanup (--ping-interval 0.3)', () => {
  let server;
  const tr = new Tracker();
  const raws = [];
  before(async () => { server = await chatServer(['--ping-interval', '0.3']); });
  after(async () => {
    for (const r of raws) r.destroy();
    await tr.closeAll();
    await server.stop();
  });
  afterEach(() => tr.closeAll());

  // A raw WebSocket client that reads its welcome and then never answers
  // a ping; returns { conn, id }.
  async function silentClient(port) {
    const conn = await rawOpen(port, '/');
    raws.push(conn);
    const f = await readFrame(conn);
    assert.equal(f.opcode, OP.TEXT, 'the welcome is a text frame');
    const w = JSON.parse(f.payload.toString('utf8'));
    assert.equal(w.type, 'welcome');
    assertCommon(w);
    return { conn, id: w.id, member: { id: w.id, nick: w.nick } };
  }

  test('cleanup: closed, dropped and ping-timed-out clients leave the members; direct to them is unknown_client', async () => {
    const { port } = server;
    const w = await tr.join(port);
    const gone = [];
    const closers = [];
    const droppers = [];
    for (let i = 0; i < 3; i++) closers.push(await tr.join(port));
    for (let i = 0; i < 3; i++) droppers.push(await tr.join(port));
    const silent = [await silentClient(port), await silentClient(port)];
    for (const c of [...closers, ...droppers]) gone.push(c.member);
    for (const s of silent) gone.push(s.member);
    for (const m of gone) await w.next({ type: 'join', room: 'lobby', member: m });

    // A live member that stays: answers pings (the ws client does).
    const stay = await tr.join(port);
    await w.next({ type: 'join', member: stay.member });

    await Promise.all(closers.map((c) => c.close()));
    await Promise.all(droppers.map((c) => c.terminate()));
    // The silent ones are dropped by the server for missing pongs.
    for (const s of silent) {
      const rest = await s.conn.waitEnd();
      let buf = rest;
      while (buf.length) {
        const f = parseFrame(buf);
        assert.ok(f, `whole frames before the drop: ${buf.toString('hex')}`);
        assert.ok(f.opcode === OP.PING || f.opcode === OP.CLOSE || f.opcode === OP.TEXT,
          `pings, a close or chat frames before the drop, got opcode ${f.opcode}`);
        buf = buf.subarray(f.size);
      }
    }
    for (const m of gone) {
      const l = await w.next({ type: 'leave', member: m });
      assert.equal(l.room, 'lobby');
    }
    const fresh = await tr.join(port);
    await w.next({ type: 'join', member: fresh.member });
    await stay.next({ type: 'join', member: fresh.member });
    assert.deepEqual(sortMembers(fresh.welcomeMsg.members),
      sortMembers([w.member, stay.member, fresh.member]), 'only live clients are members');
    for (const m of gone) {
      w.send({ type: 'message', to: m.id, text: 'are you there?' });
      await expectError(w, 'unknown_client', `direct to gone ${m.id}`);
    }
    // The live ones still get messages; nobody got a second leave.
    w.send('roll call');
    for (const c of [w, stay, fresh]) assertMessageObject(await c.next('message'), { text: 'roll call', own: c === w });
    await w.expectNothing('leave');
    assert.equal(stay.closeInfo, null, 'a client answering pings stays connected');
  });
});

describe('chat large rooms (--presence-limit 2)', () => {
  let server;
  const tr = new Tracker();
  before(async () => { server = await chatServer(['--presence-limit', '2']); });
  after(async () => {
    await tr.closeAll();
    await server.stop();
  });

  test('no join/leave/nick notices past the limit; member lists are cut, member_count is true', async () => {
    const { port } = server;
    const room = uniqueRoom('big');
    const a = await tr.join(port, { room });
    assert.equal(a.welcomeMsg.member_count, 1);
    const b = await tr.join(port, { room });
    // Two members: still within the limit, so a hears about b.
    await a.next({ type: 'join', room, member: { id: b.welcomeMsg.id, nick: b.welcomeMsg.nick } });
    assert.equal(b.welcomeMsg.member_count, 2);
    assert.equal(b.welcomeMsg.members.length, 2);
    const c = await tr.join(port, { room });
    // Three members: over the limit, no notice; the list holds 2 of 3.
    assert.equal(c.welcomeMsg.member_count, 3);
    assert.equal(c.welcomeMsg.members.length, 2);
    await a.expectNothing((m) => m.type === 'join');
    await b.expectNothing((m) => m.type === 'join');
    c.send({ type: 'nick', name: 'carol' });
    const self = await c.next({ type: 'nick' });
    assert.equal(self.member.nick, 'carol', 'the client still gets its own nick notice');
    await a.expectNothing((m) => m.type === 'nick');
    // Messages still reach everyone.
    c.send('hello big room');
    for (const x of [a, b, c]) {
      const m = await x.next({ type: 'message', text: 'hello big room' });
      assert.equal(m.own, x === c);
    }
    await c.close();
    await a.expectNothing((m) => m.type === 'leave');
    // Back at the limit: b leaving is announced to a again.
    await b.close();
    const l = await a.next({ type: 'leave', room });
    assert.equal(l.member.id, b.welcomeMsg.id);
  });
});
