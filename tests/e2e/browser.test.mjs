// tests/e2e/browser.test.mjs — the chat page and the lecture pages in a real
// browser (headless Debian chromium driven by playwright-core) against the
// real wshub binary on a free loopback port.
//
// What is covered: public/ (nicknames, messages, own/other, member lists,
// rooms and their isolation, unread counts, direct messages, markup shown
// as text, reconnect with backoff after a drop, resume of every room, a
// server restarted on the same port, a phone-sized screen) and the two
// lecture pages from tests/e2e/fixtures/, which must work unchanged; and the
// chat page over the HTTP transports: forced to ?transport=sse and
// ?transport=poll next to a WebSocket page, across a server restart, and
// falling back by itself when upgrades are refused (--ws-path) or a proxy
// breaks WebSockets and event streams.
// A screenshot of two users chatting goes to $WSHUB_BUILD_DIR/chat.png.
//
// Run: node --test tests/e2e/browser.test.mjs (WSHUB_BIN picks the binary,
// default /work/main/build/wshub). Every wait is bounded (UI_WAIT_MS); the
// browser and every server are closed in after hooks, failures included.

import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './lib/server.mjs';
import {
  launchBrowser, openPage, until, waitForFrame, jsonFrames, startServerOnPort,
} from './lib/browser.mjs';
import { UI_WAIT_MS } from './lib/browser.mjs';
import http from 'node:http';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PUBLIC = path.resolve(HERE, '../../public');
const LECTURE1 = path.join(HERE, 'fixtures', 'lecture1');
const LECTURE2 = path.join(HERE, 'fixtures', 'lecture2');
const SHOT_DIR = process.env.WSHUB_BUILD_DIR || '/tmp';

// ---------------------------------------------------------------------------
// Page helpers (the chat page's stable ids and data attributes)

const statusIs = (page, text, what) =>
  until(page, (t) => document.querySelector('#status').textContent === t, text,
    what ?? `#status to read ${JSON.stringify(text)}`);

// The chat/direct messages on screen as [{type, id, own, from, text}].
const shownMessages = (page) => page.$$eval('#messages > li.msg', (lis) => lis.map((li) => ({
  type: li.dataset.type,
  id: li.dataset.id,
  own: li.dataset.own,
  from: li.querySelector('.from').textContent,
  text: li.querySelector('.body').textContent,
})));

// Waits until a message whose body is exactly `text` is on screen; returns it.
async function waitMessage(page, text, what) {
  await until(page, (t) => [...document.querySelectorAll('#messages > li.msg .body')]
    .some((b) => b.textContent === t), text, what ?? `message ${JSON.stringify(text)} on screen`);
  const all = await shownMessages(page);
  const hits = all.filter((m) => m.text === text);
  assert.equal(hits.length, 1, `message ${JSON.stringify(text)} shown exactly once: ${JSON.stringify(all)}`);
  return hits[0];
}

const memberNicks = (page) => page.$$eval('#members > li', (lis) => lis.map((li) => li.dataset.nick));

async function waitMembers(page, nicks, what) {
  await until(page, (want) => {
    const got = [...document.querySelectorAll('#members > li')].map((li) => li.dataset.nick).sort();
    return JSON.stringify(got) === JSON.stringify([...want].sort());
  }, nicks, what ?? `members ${nicks.join(', ')}`);
}

const systemLines = (page, type) => page.$$eval(`#messages > li.line[data-type="${type}"]`,
  (lis) => lis.map((li) => li.querySelector('.line-text').textContent));

async function setNick(user, nick) {
  await user.page.fill('#nick', nick);
  await user.page.press('#nick', 'Enter');
  await waitForFrame(user.log, (m) => m.type === 'nick' && m.room === undefined &&
    m.member?.nick === nick, `nick confirmation for ${nick}`);
  await until(user.page, (n) => document.querySelector('#members li[data-self="true"]')?.dataset.nick === n,
    nick, `own entry in #members renamed to ${nick}`);
}

async function sendText(user, text, how = 'click') {
  await user.page.fill('#text-field', text);
  if (how === 'enter') await user.page.press('#text-field', 'Enter');
  else await user.page.click('#send-button');
}

const sentJson = (user) => jsonFrames(user.log.sent);

function welcomeOf(user, nth = 0) {
  const w = jsonFrames(user.log.received).filter((m) => m.type === 'welcome');
  assert.ok(w.length > nth, `welcome #${nth + 1} received`);
  return w[nth];
}

function noPageErrors(...users) {
  for (const u of users) {
    assert.deepEqual(u.log.errors.map((e) => String(e)), [], 'no uncaught errors in the page');
  }
}

// ---------------------------------------------------------------------------
// The chat page

describe('chat page (public/)', () => {
  let browser;
  let srv;
  let url;
  let ann;
  let bob;
  let annId;
  let bobId;

  before(async () => {
    browser = await launchBrowser();
    srv = await startServer(PUBLIC);
    url = `http://127.0.0.1:${srv.port}/`;
  });

  after(async () => {
    if (browser) await browser.close();
    if (srv) {
      const res = await srv.stop();
      assert.ok(res.wasRunning, `server died during the test\n${srv.tail()}`);
      assert.equal(res.code, 0, `server exit code on SIGTERM\n${srv.tail()}`);
    }
  });

  test('two users: nicknames, messages both ways, own flag, member lists', async () => {
    ann = await openPage(browser, url);
    await statusIs(ann.page, 'open');
    bob = await openPage(browser, url);
    await statusIs(bob.page, 'open');
    for (const u of [ann, bob]) {
      assert.equal(await u.page.textContent('#transport'), 'WebSocket');
      assert.equal(u.log.sockets[0], url.replace('http:', 'ws:'), 'first connect: no query');
    }
    annId = welcomeOf(ann).id;
    bobId = welcomeOf(bob).id;
    assert.match(annId, /^c\d+$/);
    assert.match(bobId, /^c\d+$/);

    await setNick(ann, 'ann');
    await setNick(bob, 'bob');
    assert.deepEqual(sentJson(ann).filter((m) => m.type === 'nick'), [{ type: 'nick', name: 'ann' }]);
    assert.equal(await ann.page.evaluate(() => localStorage.getItem('wshub.nick')), 'ann');
    assert.equal(await bob.page.evaluate(() => localStorage.getItem('wshub.nick')), 'bob');

    await waitMembers(ann.page, ['ann', 'bob']);
    await waitMembers(bob.page, ['ann', 'bob']);
    assert.equal(await ann.page.getAttribute(`#members li[data-nick="bob"]`, 'data-id'), bobId);
    assert.equal(await bob.page.getAttribute(`#members li[data-nick="ann"]`, 'data-id'), annId);
    await until(ann.page, () => [...document.querySelectorAll('#messages li.line[data-type="nick"]')]
      .some((li) => li.textContent.includes('is now known as bob')), null, 'bob\'s rename shown to ann');

    await sendText(ann, 'hello from ann', 'click');
    const a1 = await waitMessage(ann.page, 'hello from ann');
    assert.deepEqual(a1, { type: 'message', id: '1', own: 'true', from: 'ann (you)', text: 'hello from ann' });
    const b1 = await waitMessage(bob.page, 'hello from ann');
    assert.deepEqual(b1, { type: 'message', id: '1', own: 'false', from: 'ann', text: 'hello from ann' });
    assert.deepEqual(sentJson(ann).at(-1), { type: 'message', room: 'lobby', text: 'hello from ann' });

    // Enter sends; Shift+Enter is a newline inside the message.
    await bob.page.fill('#text-field', 'hi ann');
    await bob.page.press('#text-field', 'Shift+Enter');
    await bob.page.type('#text-field', 'bob here');
    assert.equal(await bob.page.inputValue('#text-field'), 'hi ann\nbob here');
    await bob.page.press('#text-field', 'Enter');
    const b2 = await waitMessage(bob.page, 'hi ann\nbob here');
    assert.deepEqual(b2, { type: 'message', id: '2', own: 'true', from: 'bob (you)', text: 'hi ann\nbob here' });
    const a2 = await waitMessage(ann.page, 'hi ann\nbob here');
    assert.deepEqual(a2, { type: 'message', id: '2', own: 'false', from: 'bob', text: 'hi ann\nbob here' });
    assert.equal(await bob.page.inputValue('#text-field'), '', 'field cleared after sending');

    // Markup typed by a user is shown as text, never interpreted.
    const evil = '<img src=x onerror="window.__owned=1"><b>bold?</b>';
    await sendText(ann, evil);
    await waitMessage(bob.page, evil);
    assert.equal(await bob.page.evaluate(() => window.__owned), undefined);
    assert.equal(await bob.page.$$eval('#messages img, #messages b', (n) => n.length), 0);

    await sendText(bob, 'ok, it is just text — ça marche');
    await waitMessage(ann.page, 'ok, it is just text — ça marche');

    await ann.page.screenshot({ path: path.join(SHOT_DIR, 'chat.png') });
    noPageErrors(ann, bob);
  });

  test('rooms: join, isolation, unread count, switch, leave', async () => {
    await ann.page.fill('#room-input', 'side-room');
    await ann.page.press('#room-input', 'Enter');
    await until(ann.page, () => document.querySelector('#rooms li[data-room="side-room"]')
      ?.classList.contains('current'), null, 'side-room tab current');
    assert.deepEqual(sentJson(ann).at(-1), { type: 'join', room: 'side-room' });
    const joined = await waitForFrame(ann.log, (m) => m.type === 'joined' && m.room === 'side-room', 'joined side-room');
    assert.equal(joined.last_id, 0);
    assert.deepEqual(joined.members, [{ id: annId, nick: 'ann' }]);
    await waitMembers(ann.page, ['ann'], 'only ann in side-room');
    assert.equal(await ann.page.textContent('#conv-title'), '#side-room');

    await sendText(ann, 'only in side-room');
    const s1 = await waitMessage(ann.page, 'only in side-room');
    assert.equal(s1.id, '1', 'ids are per room');
    assert.deepEqual(sentJson(ann).at(-1), { type: 'message', room: 'side-room', text: 'only in side-room' });

    // bob, in the lobby only, writes there; by the time his own copy is
    // back, a leak of ann's side-room message would have reached him first.
    await sendText(bob, 'lobby news');
    await waitMessage(bob.page, 'lobby news');
    assert.ok(!(await shownMessages(bob.page)).some((m) => m.text === 'only in side-room'),
      'side-room message not shown in the lobby');
    assert.ok(!jsonFrames(bob.log.received).some((m) => m.text === 'only in side-room'),
      'side-room message never sent to bob');
    await waitMembers(bob.page, ['ann', 'bob'], 'ann still in the lobby for bob');

    // ann is looking at side-room: the lobby tab counts one unread.
    await until(ann.page, () => document.querySelector('#rooms li[data-room="lobby"]')?.dataset.unread === '1',
      null, 'lobby unread = 1');
    assert.equal(await ann.page.textContent('#rooms li[data-room="lobby"] .unread'), '1');
    assert.ok(!(await shownMessages(ann.page)).some((m) => m.text === 'lobby news'));
    assert.equal(await ann.page.title(), '(1) wshub chat');

    await ann.page.click('#rooms li[data-room="lobby"] .tab-pick');
    const ln = await waitMessage(ann.page, 'lobby news');
    assert.equal(ln.id, '5');
    assert.equal(await ann.page.getAttribute('#rooms li[data-room="lobby"]', 'data-unread'), '0');
    assert.equal(await ann.page.title(), 'wshub chat');
    await waitMembers(ann.page, ['ann', 'bob']);

    // Leave side-room with its tab's close button.
    await ann.page.click('#rooms li[data-room="side-room"] .tab-close');
    await waitForFrame(ann.log, (m) => m.type === 'left' && m.room === 'side-room', 'left side-room');
    assert.deepEqual(sentJson(ann).at(-1), { type: 'leave', room: 'side-room' });
    await until(ann.page, () => !document.querySelector('#rooms li[data-room="side-room"]'), null,
      'side-room tab removed');
    assert.deepEqual(await ann.page.$$eval('#rooms > li', (l) => l.map((li) => li.dataset.room)), ['lobby']);
    noPageErrors(ann, bob);
  });

  test('direct messages: click a member, shown distinctly on both sides', async () => {
    await ann.page.click('#members li[data-nick="bob"] button');
    await until(ann.page, (id) => document.querySelector(`#dms li[data-peer="${id}"]`)?.classList.contains('current'),
      bobId, 'DM tab with bob current');
    assert.equal(await ann.page.textContent('#conv-title'), '@bob');
    await sendText(ann, 'psst, bob');
    assert.deepEqual(sentJson(ann).at(-1), { type: 'message', to: bobId, text: 'psst, bob' });
    const mine = await waitMessage(ann.page, 'psst, bob');
    assert.equal(mine.type, 'direct');
    assert.equal(mine.own, 'true');
    const frame = await waitForFrame(bob.log, (m) => m.type === 'direct' && m.text === 'psst, bob', 'direct to bob');
    assert.deepEqual(frame.from, { id: annId, nick: 'ann' });
    assert.deepEqual(frame.to, { id: bobId, nick: 'bob' });
    assert.equal(frame.own, false);

    // bob is in the lobby: the DM shows up as its own conversation, unread.
    await until(bob.page, (id) => document.querySelector(`#dms li[data-peer="${id}"]`)?.dataset.unread === '1',
      annId, 'bob has one unread DM from ann');
    assert.ok(!(await shownMessages(bob.page)).some((m) => m.text === 'psst, bob'), 'DM not in the lobby');
    await bob.page.click(`#dms li[data-peer="${annId}"] .tab-pick`);
    const theirs = await waitMessage(bob.page, 'psst, bob');
    assert.deepEqual(theirs, { type: 'direct', id: '', own: 'false', from: 'ann', text: 'psst, bob' });
    assert.equal(await bob.page.textContent('#conv-title'), '@ann');
    await bob.page.click('#rooms li[data-room="lobby"] .tab-pick');
    await ann.page.click('#rooms li[data-room="lobby"] .tab-pick');
    noPageErrors(ann, bob);
  });

  test('a dropped connection: backoff, reconnect, and resume of every room', async () => {
    // 1. The socket closes under the page: it shows the countdown, then
    //    reconnects on its own into the same room with ?after=.
    const socketsBefore = ann.log.sockets.length;
    await ann.page.evaluate(() => window.wshubChat.socket.close());
    await until(ann.page, () => /^closed · reconnecting in \d+s$/.test(document.querySelector('#status').textContent),
      null, '#status "closed · reconnecting in Ns"');
    assert.equal(await ann.page.getAttribute('#status', 'data-state'), 'reconnecting');
    assert.equal(await ann.page.isDisabled('#send-button'), true, 'cannot send while closed');
    await statusIs(ann.page, 'open', '#status open again after the drop');
    await waitForFrame(bob.log, (m) => m.type === 'leave' && m.member?.id === annId, 'bob told ann left');
    const reUrl = new URL(ann.log.sockets[socketsBefore]);
    assert.equal(reUrl.searchParams.get('nick'), 'ann');
    assert.equal(reUrl.searchParams.get('room'), 'lobby');
    assert.equal(reUrl.searchParams.get('after'), '5', 'resume after the last lobby id seen');
    const w2 = welcomeOf(ann, 1);
    assert.equal(w2.nick, 'ann');
    assert.equal(w2.room, 'lobby');
    assert.equal(w2.last_id, 5);
    const annId2 = w2.id;
    assert.notEqual(annId2, annId, 'a new connection gets a new client id');
    await waitMembers(bob.page, ['ann', 'bob'], 'ann back in bob\'s member list');
    // bob's DM with ann follows her to her new client id.
    await until(bob.page, (id) => document.querySelector(`#dms li[data-peer="${id}"]`) !== null, annId2,
      'bob\'s DM tab rebound to ann\'s new id');
    assert.equal(await bob.page.$$eval('#dms > li', (l) => l.length), 1);

    // 2. ann in two rooms, looking at the lobby; bob in both too.
    await ann.page.fill('#room-input', 'second');
    await ann.page.press('#room-input', 'Enter');
    await until(ann.page, () => document.querySelector('#rooms li[data-room="second"]')?.classList.contains('current'),
      null, 'second joined');
    await bob.page.fill('#room-input', 'second');
    await bob.page.press('#room-input', 'Enter');
    await until(bob.page, () => document.querySelector('#rooms li[data-room="second"]')?.classList.contains('current'),
      null, 'bob joined second');
    await sendText(ann, 'second, before the gap');
    await waitMessage(bob.page, 'second, before the gap');
    await ann.page.click('#rooms li[data-room="lobby"] .tab-pick');
    await bob.page.click('#rooms li[data-room="lobby"] .tab-pick');

    // 3. ann goes offline (the page waits for the network instead of
    //    retrying) and her socket drops; bob writes in both rooms meanwhile.
    await ann.context.setOffline(true);
    const socketsGap = ann.log.sockets.length;
    await ann.page.evaluate(() => window.wshubChat.socket.close());
    await statusIs(ann.page, 'closed · offline, waiting for the network');
    await waitForFrame(bob.log, (m) => m.type === 'leave' && m.room === 'second' && m.member?.id === annId2,
      'bob told ann left second');
    await sendText(bob, 'lobby, during the gap');
    const gap1 = await waitMessage(bob.page, 'lobby, during the gap');
    await bob.page.click('#rooms li[data-room="second"] .tab-pick');
    await sendText(bob, 'second, during the gap');
    const gap2 = await waitMessage(bob.page, 'second, during the gap');
    assert.equal(gap1.id, '6');
    assert.equal(gap2.id, '2');
    assert.equal(ann.log.sockets.length, socketsGap, 'no reconnect attempt while offline');

    // 4. Back online: reconnect at once, lobby resumed through the URL,
    //    second through a resume message; nothing missed, nothing twice.
    await ann.context.setOffline(false);
    await statusIs(ann.page, 'open', '#status open after coming back online');
    const u3 = new URL(ann.log.sockets[socketsGap]);
    assert.equal(u3.searchParams.get('room'), 'lobby');
    assert.equal(u3.searchParams.get('after'), '5');
    await waitForFrame(ann.log, (m) => m.type === 'history' && m.room === 'second', 'history of second');
    assert.deepEqual(sentJson(ann).filter((m) => m.type === 'resume').at(-1), { type: 'resume', room: 'second', after: 1 });
    const h2 = jsonFrames(ann.log.received).filter((m) => m.type === 'history' && m.room === 'second').at(-1);
    assert.equal(h2.after, 1);
    assert.deepEqual(h2.messages.map((m) => [m.id, m.text, m.own]), [[2, 'second, during the gap', false]]);

    const back = await waitMessage(ann.page, 'lobby, during the gap', 'lobby message from the gap shown after reconnect');
    assert.deepEqual(back, { type: 'message', id: '6', own: 'false', from: 'bob', text: 'lobby, during the gap' });
    const lobbyIds = (await shownMessages(ann.page)).map((m) => m.id);
    assert.deepEqual(lobbyIds, ['1', '2', '3', '4', '5', '6'], 'every lobby message once, in order');
    await until(ann.page, () => document.querySelector('#rooms li[data-room="second"]')?.dataset.unread === '1',
      null, 'second shows one unread after the resume');
    await ann.page.click('#rooms li[data-room="second"] .tab-pick');
    const back2 = await waitMessage(ann.page, 'second, during the gap');
    assert.deepEqual(back2, { type: 'message', id: '2', own: 'false', from: 'bob', text: 'second, during the gap' });
    assert.deepEqual((await shownMessages(ann.page)).map((m) => m.id), ['1', '2']);
    await waitMembers(ann.page, ['ann', 'bob'], 'second lists both again');
    noPageErrors(ann, bob);
  });

  test('the server restarts on the same port: pages reconnect and chat again', async () => {
    const port = srv.port;
    const old = srv;
    srv = null;
    const res = await old.stop();
    assert.equal(res.wasRunning, true, `server alive before the restart\n${old.tail()}`);
    assert.equal(res.code, 0, `exit code on SIGTERM\n${old.tail()}`);
    for (const u of [ann, bob]) {
      await until(u.page, () => /^closed( · reconnecting in \d+s)?$/.test(document.querySelector('#status').textContent),
        null, '#status closed/reconnecting while the server is down');
    }
    srv = await startServerOnPort(PUBLIC, port);
    await statusIs(ann.page, 'open', 'ann reconnected to the new server');
    await statusIs(bob.page, 'open', 'bob reconnected to the new server');
    // A new process starts its ids again at 1: the page notices and says so.
    await until(ann.page, () => [...document.querySelectorAll('#messages li.line[data-type="info"]')]
      .some((li) => li.textContent.includes('server was restarted')), null, 'restart noticed');
    // Both were looking at second; both come back into it and the lobby.
    await waitMembers(ann.page, ['ann', 'bob'], 'both in second on the new server');
    await waitForFrame(ann.log, (f) => f.type === 'joined' && f.room === 'lobby' && f.last_id === 0,
      'lobby rejoined on the new server');
    assert.deepEqual(await ann.page.$$eval('#rooms > li', (l) => l.map((li) => li.dataset.room)),
      ['lobby', 'second']);
    await sendText(bob, 'hello, new server');
    const m = await waitMessage(bob.page, 'hello, new server');
    assert.deepEqual(m, { type: 'message', id: '1', own: 'true', from: 'bob (you)', text: 'hello, new server' });
    const a = await waitMessage(ann.page, 'hello, new server');
    assert.deepEqual(a, { type: 'message', id: '1', own: 'false', from: 'bob', text: 'hello, new server' });
    noPageErrors(ann, bob);
  });

  test('a phone-sized screen (375×667): usable, nothing overflows', async () => {
    const phone = await openPage(browser, url, {
      viewport: { width: 375, height: 667 }, isMobile: true, deviceScaleFactor: 2,
    });
    await statusIs(phone.page, 'open');
    await setNick(phone, 'pat');
    const width = await phone.page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 375, `no horizontal scrolling (scrollWidth ${width})`);
    for (const sel of ['#status', '#nick', '#rooms', '#room-input', '#text-field', '#send-button', '#messages']) {
      const box = await phone.page.locator(sel).boundingBox();
      assert.ok(box, `${sel} is displayed`);
      assert.ok(box.x >= 0 && box.x + box.width <= 375.5 && box.y >= 0 && box.y + box.height <= 667.5,
        `${sel} inside the screen: ${JSON.stringify(box)}`);
    }
    // The member list is one tap away.
    assert.equal(await phone.page.isVisible('#members'), false);
    await phone.page.click('#members-toggle');
    await until(phone.page, () => {
      const r = document.querySelector('#member-panel').getBoundingClientRect();
      return r.right <= 375.5 && r.left >= 0 && getComputedStyle(document.querySelector('#member-panel')).visibility === 'visible';
    }, null, 'member panel slid in');
    await waitMembers(phone.page, ['ann', 'bob', 'pat'], 'lobby members seen from the phone');
    await phone.page.click('#members-close');
    await until(phone.page, () => getComputedStyle(document.querySelector('#member-panel')).visibility === 'hidden',
      null, 'member panel hidden again');
    await sendText(phone, 'typed on a phone', 'enter');
    await waitMessage(phone.page, 'typed on a phone');
    await phone.page.screenshot({ path: path.join(SHOT_DIR, 'chat-phone.png') });
    await phone.context.close();
    noPageErrors(phone);
  });

  test('permessage-deflate: the page\'s WebSocket negotiates it; a long message arrives intact', async () => {
    const want = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
    const kim = await openPage(browser, url);
    await statusIs(kim.page, 'open');
    const lee = await openPage(browser, url);
    await statusIs(lee.page, 'open');
    for (const u of [kim, lee]) {
      assert.equal(await u.page.evaluate(() => window.wshubChat.transport), 'ws');
      assert.equal(await u.page.evaluate(() => window.wshubChat.socket.extensions), want,
        'the page\'s own socket: extensions as the server answered');
    }
    // A socket of the page's origin opened by hand says the same.
    assert.equal(await kim.page.evaluate(() => new Promise((resolve, reject) => {
      const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/?room=deflate-probe`);
      ws.onopen = () => { resolve(ws.extensions); ws.close(); };
      ws.onerror = () => reject(new Error('probe socket failed'));
    })), want, 'a fresh WebSocket from the page');
    await setNick(kim, 'kim');
    await setNick(lee, 'lee');
    // Long (compressed both ways: over the server's 64-byte threshold and
    // Chromium deflates what it sends), with newlines and non-ASCII.
    const lines = [];
    for (let i = 0; lines.join('\n').length < 3000; i++) {
      lines.push(`line ${i}: the quick brown fox — ça va? ✓ ${'jumps over the lazy dog '.repeat(1 + (i % 3))}`);
    }
    const long = lines.join('\n').slice(0, 3000).trimEnd();
    await sendText(kim, long);
    const shown = await waitMessage(lee.page, long, 'the long message on lee\'s page');
    assert.equal(shown.own, 'false');
    assert.equal(shown.from, 'kim');
    assert.equal((await waitMessage(kim.page, long, 'the long message on kim\'s own page')).own, 'true');
    const frame = await waitForFrame(lee.log, (m) => m.type === 'message' && m.text === long,
      'the long message frame at lee');
    assert.deepEqual(frame.params, { value: long });
    noPageErrors(kim, lee);
    await kim.context.close();
    await lee.context.close();
  });
});

// ---------------------------------------------------------------------------
// The lecture pages, unchanged, against wshub

describe('lecture pages (tests/e2e/fixtures)', () => {
  let browser;
  const servers = [];

  before(async () => {
    browser = await launchBrowser();
  });

  after(async () => {
    if (browser) await browser.close();
    for (const s of servers) await s.stop();
  });

  test('lecture 1: raw text in, "text (time)" lines out, on two pages', async () => {
    const srv = await startServer(LECTURE1);
    servers.push(srv);
    const url = `http://127.0.0.1:${srv.port}/`;
    const one = await openPage(browser, url);
    const two = await openPage(browser, url);
    for (const u of [one, two]) {
      const w = await waitForFrame(u.log, (m) => m.type === 'welcome', 'welcome');
      const when = await u.page.evaluate((ts) => new Date(ts).toLocaleTimeString(), w.timestamp);
      await until(u.page, (t) => document.querySelector('body > div')?.textContent === t,
        `${w.text} (${when})`, 'the welcome line rendered first');
    }
    assert.equal(one.log.sockets[0], `ws://127.0.0.1:${srv.port}/`);

    await one.page.fill('#text-field', 'hello from the lecture page');
    await one.page.click('#send-button');
    assert.equal(await one.page.inputValue('#text-field'), '');
    for (const u of [one, two]) {
      const m = await waitForFrame(u.log, (f) => f.type === 'message' && f.text === 'hello from the lecture page',
        'the relayed message');
      const when = await u.page.evaluate((ts) => new Date(ts).toLocaleTimeString(), m.timestamp);
      const line = `hello from the lecture page (${when})`;
      await until(u.page, (t) => [...document.querySelectorAll('body > div')].some((d) => d.textContent === t),
        line, `line ${JSON.stringify(line)}`);
    }
    assert.deepEqual(one.log.sent.map((f) => f.data), ['hello from the lecture page'], 'sent as raw text');
    assert.equal(jsonFrames(one.log.received).find((m) => m.type === 'message').own, true);
    assert.equal(jsonFrames(two.log.received).find((m) => m.type === 'message').own, false);
    noPageErrors(one, two);
    await one.context.close();
    await two.context.close();
  });

  test('lecture 2: {"type":"message","params":{"value"}} over /ws, params.value shown', async () => {
    const srv = await startServer(LECTURE2);
    servers.push(srv);
    const url = `http://127.0.0.1:${srv.port}/`;
    const one = await openPage(browser, url);
    const two = await openPage(browser, url);
    for (const u of [one, two]) {
      const w = await waitForFrame(u.log, (m) => m.type === 'welcome', 'welcome');
      assert.equal(u.log.sockets[0], `ws://127.0.0.1:${srv.port}/ws`);
      await until(u.page, (t) => [...document.querySelectorAll('#messages > div')].some((d) => d.textContent === t),
        w.params.value, 'the welcome shown through params.value');
    }
    await one.page.fill('input[name="message"]', 'hello via params');
    await one.page.click('input[type="submit"]');
    for (const u of [one, two]) {
      await until(u.page, () => document.querySelector('#messages > div')?.textContent === 'hello via params',
        null, 'newest message on top');
    }
    assert.deepEqual(one.log.sent.map((f) => f.data),
      ['{"type":"message","params":{"value":"hello via params"}}']);
    const mine = jsonFrames(one.log.received).find((m) => m.type === 'message');
    assert.deepEqual(mine.params, { value: 'hello via params' });
    assert.equal(mine.text, 'hello via params');
    // Every frame the server sent carried params.value (the page would
    // have thrown on one that did not).
    for (const u of [one, two]) {
      for (const m of jsonFrames(u.log.received)) {
        assert.equal(typeof m.params?.value, 'string', `params.value in ${JSON.stringify(m)}`);
      }
    }
    noPageErrors(one, two);
    await one.context.close();
    await two.context.close();
  });
});

// ---------------------------------------------------------------------------
// The chat page over the HTTP transports (docs/PROTOCOL.md, "HTTP
// transports"): forced with ?transport=sse / ?transport=poll, and the
// fallback to Server-Sent Events when WebSocket upgrades are refused.

// Like openPage, but the context also records every HTTP request the page
// makes (method, path, query, headers, body) and the session tokens the
// server hands out, so a test can tell which transport was really used.
async function openTracked(browser, url) {
  const context = await browser.newContext({
    viewport: { width: 1200, height: 760 },
    deviceScaleFactor: 1,
    locale: 'en-US',
    timezoneId: 'UTC',
    colorScheme: 'light',
  });
  context.setDefaultTimeout(UI_WAIT_MS);
  context.setDefaultNavigationTimeout(UI_WAIT_MS);
  const page = await context.newPage();
  const log = { sockets: [], sent: [], received: [], errors: [], console: [], requests: [], tokens: new Set() };
  page.on('websocket', (ws) => log.sockets.push(ws.url()));
  page.on('request', (req) => {
    const u = new URL(req.url());
    log.requests.push({
      method: req.method(), path: u.pathname, query: u.searchParams, headers: req.headers(),
      body: req.postData(),
    });
  });
  page.on('response', (res) => {
    const t = res.headers()['x-wshub-session'];
    if (t) log.tokens.add(t);
  });
  page.on('pageerror', (e) => log.errors.push(e));
  page.on('console', (m) => log.console.push(`${m.type()}: ${m.text()}`));
  await page.goto(url, { waitUntil: 'load' });
  return { context, page, log };
}

const TOKEN_RE = /^[0-9a-f]{32}$/;
const RECOVER_MS = 20000; // bound on coming back after a server restart

// waitMembers with a longer bound (after a server restart).
async function waitMembersWithin(page, nicks, what, ms) {
  await until(page, (want) => {
    const got = [...document.querySelectorAll('#members > li')].map((li) => li.dataset.nick).sort();
    return JSON.stringify(got) === JSON.stringify([...want].sort());
  }, nicks, what, ms);
}

const requestsTo = (user, method, p) => user.log.requests.filter((r) => r.method === method && r.path === p);
const postedJson = (user) => requestsTo(user, 'POST', '/messages').map((r) => JSON.parse(r.body));

// Sets the nickname through the form on a page that has no WebSocket:
// waits for the page to say it took.
async function setNickHttp(user, nick) {
  await user.page.fill('#nick', nick);
  await user.page.press('#nick', 'Enter');
  await until(user.page, (n) => [...document.querySelectorAll('#messages li.line[data-type="nick"]')]
    .some((li) => li.querySelector('.line-text').textContent === `You are now known as ${n}`),
  nick, `"You are now known as ${nick}" shown`);
  assert.equal(await user.page.inputValue('#nick'), nick);
}

// Every POST /messages carried a session token the server had issued, in
// the X-Wshub-Session header.
function assertPostsCarryToken(user) {
  const posts = requestsTo(user, 'POST', '/messages');
  assert.ok(posts.length > 0, 'the page sent with POST /messages');
  for (const r of posts) {
    const t = r.headers['x-wshub-session'];
    assert.match(t ?? '', TOKEN_RE, `X-Wshub-Session on ${r.body}`);
    assert.ok(user.log.tokens.has(t), `token ${t} was issued by the server`);
    assert.match(r.headers['content-type'] ?? '', /^application\/json/);
  }
}

// A reverse proxy on a free loopback port in front of wshub that breaks what
// some proxies break: it refuses every WebSocket upgrade (502) and answers
// /events with 404; every other request is passed through unchanged.
function startBreakingProxy(targetPort) {
  const server = http.createServer((req, res) => {
    if (new URL(req.url, 'http://proxy').pathname === '/events') {
      res.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': '15' });
      res.end('no streams here');
      return;
    }
    const up = http.request({
      host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers,
    }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  server.on('upgrade', (req, socket) => {
    socket.end('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve({
      port: server.address().port,
      stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
    }));
  });
}

describe('chat page over the HTTP transports (SSE, long polling, fallback)', () => {
  let browser;
  let srv;
  let url;
  let wendy;
  let sam;
  let pia;
  const extra = [];

  before(async () => {
    browser = await launchBrowser();
    srv = await startServer(PUBLIC);
    url = `http://127.0.0.1:${srv.port}/`;
  });

  after(async () => {
    if (browser) await browser.close();
    for (const s of extra) await s.stop();
    if (srv) {
      const res = await srv.stop();
      assert.ok(res.wasRunning, `server died during the test\n${srv.tail()}`);
      assert.equal(res.code, 0, `server exit code on SIGTERM\n${srv.tail()}`);
    }
  });

  test('?transport=sse and ?transport=poll pages chat with a WebSocket page', async () => {
    wendy = await openPage(browser, url);
    await statusIs(wendy.page, 'open');
    await setNick(wendy, 'wendy');
    await sendText(wendy, 'before the others came');
    await waitMessage(wendy.page, 'before the others came');

    // The SSE page: no WebSocket at all, history on arrival, a nickname.
    sam = await openTracked(browser, `${url}?transport=sse`);
    await statusIs(sam.page, 'open');
    assert.equal(await sam.page.textContent('#transport'), 'Server-Sent Events');
    assert.equal(await sam.page.getAttribute('#transport', 'data-transport'), 'sse');
    assert.deepEqual(await waitMessage(sam.page, 'before the others came'),
      { type: 'message', id: '1', own: 'false', from: 'wendy', text: 'before the others came' });
    await setNickHttp(sam, 'sam');
    await until(sam.page, () => document.querySelector('#members li[data-self="true"]')?.dataset.nick === 'sam',
      null, 'sam\'s own entry in #members renamed');

    // The long-polling page.
    pia = await openTracked(browser, `${url}?transport=poll`);
    await statusIs(pia.page, 'open');
    assert.equal(await pia.page.textContent('#transport'), 'long polling');
    assert.equal(await pia.page.getAttribute('#transport', 'data-transport'), 'poll');
    assert.deepEqual(await waitMessage(pia.page, 'before the others came'),
      { type: 'message', id: '1', own: 'false', from: 'wendy', text: 'before the others came' });
    await setNickHttp(pia, 'pia');

    // Presence: the WebSocket and SSE pages list all three; the polling
    // page says it cannot know.
    await waitMembers(wendy.page, ['wendy', 'sam', 'pia'], 'wendy lists the HTTP sessions too');
    await waitMembers(sam.page, ['wendy', 'sam', 'pia'], 'the SSE page lists everyone');
    assert.equal(await pia.page.isVisible('#members-note'), true, 'polling page explains the missing member list');
    assert.equal(await pia.page.textContent('#member-count'), '?');
    assert.equal(await sam.page.isVisible('#members-note'), false);

    // One message from each, seen by all three with the right nick and own flag.
    await sendText(sam, 'hello from sse');
    assert.deepEqual(await waitMessage(sam.page, 'hello from sse'),
      { type: 'message', id: '2', own: 'true', from: 'sam (you)', text: 'hello from sse' });
    for (const u of [wendy, pia]) {
      assert.deepEqual(await waitMessage(u.page, 'hello from sse'),
        { type: 'message', id: '2', own: 'false', from: 'sam', text: 'hello from sse' });
    }
    await sendText(pia, 'hello from poll', 'enter');
    assert.deepEqual(await waitMessage(pia.page, 'hello from poll'),
      { type: 'message', id: '3', own: 'true', from: 'pia (you)', text: 'hello from poll' });
    for (const u of [wendy, sam]) {
      assert.deepEqual(await waitMessage(u.page, 'hello from poll'),
        { type: 'message', id: '3', own: 'false', from: 'pia', text: 'hello from poll' });
    }
    await sendText(wendy, 'hello from ws');
    assert.deepEqual(await waitMessage(wendy.page, 'hello from ws'),
      { type: 'message', id: '4', own: 'true', from: 'wendy (you)', text: 'hello from ws' });
    for (const u of [sam, pia]) {
      assert.deepEqual(await waitMessage(u.page, 'hello from ws'),
        { type: 'message', id: '4', own: 'false', from: 'wendy', text: 'hello from ws' });
    }
    for (const u of [wendy, sam, pia]) {
      assert.deepEqual((await shownMessages(u.page)).map((m) => m.id), ['1', '2', '3', '4'],
        'every lobby message once, in order');
    }
    // Once its own message came back, the polling page knows who it is.
    await until(pia.page, () => document.querySelector('#members li[data-self="true"]')?.dataset.nick === 'pia',
      null, 'the polling page lists itself');

    // What went over the wire.
    for (const u of [sam, pia]) {
      assert.deepEqual(u.log.sockets, [], 'no WebSocket opened');
      assertPostsCarryToken(u);
    }
    assert.deepEqual(postedJson(sam), [
      { type: 'nick', name: 'sam' },
      { type: 'message', room: 'lobby', text: 'hello from sse' },
    ]);
    assert.deepEqual(postedJson(pia), [
      { type: 'nick', name: 'pia' },
      { type: 'message', room: 'lobby', text: 'hello from poll' },
    ]);
    const streams = requestsTo(sam, 'GET', '/events');
    assert.ok(streams.length >= 1);
    for (const r of streams) {
      assert.equal(r.query.get('room'), 'lobby');
      assert.ok(sam.log.tokens.has(r.query.get('session')), 'the stream names the session in its query');
    }
    assert.equal(requestsTo(pia, 'GET', '/events').length, 0, 'the polling page opens no event stream');
    const longPolls = requestsTo(pia, 'GET', '/poll').filter((r) => r.query.get('wait') === '25');
    assert.ok(longPolls.length >= 1, 'long polls with wait=25');
    for (const r of longPolls) {
      assert.equal(r.query.get('room'), 'lobby');
      assert.match(r.query.get('after') ?? '', /^\d+$/);
      assert.match(r.headers['x-wshub-session'] ?? '', TOKEN_RE);
    }
    noPageErrors(wendy, sam, pia);
  });

  test('SSE page: a second room (its own stream), unread count, direct messages both ways, leave', async () => {
    await sam.page.fill('#room-input', 'side');
    await sam.page.press('#room-input', 'Enter');
    await until(sam.page, () => document.querySelector('#rooms li[data-room="side"]')?.classList.contains('current'),
      null, 'side joined and current on the SSE page');
    assert.deepEqual(postedJson(sam).at(-1), { type: 'join', room: 'side' });
    await until(sam.page, () => !document.querySelector('#send-button').disabled, null, 'can send in side');
    await sendText(sam, 'sse in side');
    assert.deepEqual(await waitMessage(sam.page, 'sse in side'),
      { type: 'message', id: '1', own: 'true', from: 'sam (you)', text: 'sse in side' });
    assert.ok(requestsTo(sam, 'GET', '/events').some((r) => r.query.get('room') === 'side'), 'a stream for side');
    await waitMembers(sam.page, ['sam'], 'only sam in side');

    // The lobby stream keeps running: a lobby message counts as unread.
    await sendText(wendy, 'lobby while sam is away');
    await waitMessage(wendy.page, 'lobby while sam is away');
    await until(sam.page, () => document.querySelector('#rooms li[data-room="lobby"]')?.dataset.unread === '1',
      null, 'lobby unread = 1 on the SSE page');
    assert.ok(!(await shownMessages(sam.page)).some((m) => m.text === 'lobby while sam is away'));

    // A direct message reaches the SSE page once, though it has two streams.
    const wendyId = welcomeOf(wendy).id;
    await wendy.page.click('#members li[data-nick="sam"] button');
    await sendText(wendy, 'psst, sam');
    await waitMessage(wendy.page, 'psst, sam');
    await until(sam.page, (id) => document.querySelector(`#dms li[data-peer="${id}"]`)?.dataset.unread === '1',
      wendyId, 'one unread DM from wendy');
    await sam.page.click(`#dms li[data-peer="${wendyId}"] .tab-pick`);
    assert.deepEqual(await waitMessage(sam.page, 'psst, sam'),
      { type: 'direct', id: '', own: 'false', from: 'wendy', text: 'psst, sam' });
    await sendText(sam, 'psst back');
    assert.deepEqual(postedJson(sam).at(-1), { type: 'message', to: wendyId, text: 'psst back' });
    assert.deepEqual(await waitMessage(sam.page, 'psst back'),
      { type: 'direct', id: '', own: 'true', from: 'sam (you)', text: 'psst back' });
    assert.deepEqual(await waitMessage(wendy.page, 'psst back'),
      { type: 'direct', id: '', own: 'false', from: 'sam', text: 'psst back' });
    await wendy.page.click('#rooms li[data-room="lobby"] .tab-pick');

    // Leave side with its tab's close button.
    await sam.page.click('#rooms li[data-room="side"] .tab-close');
    await until(sam.page, () => !document.querySelector('#rooms li[data-room="side"]'), null, 'side tab removed');
    assert.deepEqual(postedJson(sam).at(-1), { type: 'leave', room: 'side' });
    assert.deepEqual(await sam.page.$$eval('#rooms > li', (l) => l.map((li) => li.dataset.room)), ['lobby']);
    await sam.page.click('#rooms li[data-room="lobby"] .tab-pick');
    await waitMessage(sam.page, 'lobby while sam is away');
    assertPostsCarryToken(sam);
    noPageErrors(wendy, sam);
  });

  test('the server restarts: the SSE and polling pages come back, renamed, and chat again', async () => {
    const port = srv.port;
    const old = srv;
    srv = null;
    const res = await old.stop();
    assert.equal(res.wasRunning, true, `server alive before the restart\n${old.tail()}`);
    assert.equal(res.code, 0, `exit code on SIGTERM\n${old.tail()}`);
    srv = await startServerOnPort(PUBLIC, port);
    for (const u of [wendy, sam, pia]) {
      await until(u.page, () => [...document.querySelectorAll('#messages li.line[data-type="info"]')]
        .some((li) => li.textContent.includes('server was restarted')), null, 'restart noticed', RECOVER_MS);
      await until(u.page, () => document.querySelector('#status').textContent === 'open', null,
        '#status open again after the restart', RECOVER_MS);
    }
    // The new sessions got their nicknames back.
    await waitMembersWithin(wendy.page, ['wendy', 'sam', 'pia'], 'all three back in the lobby', RECOVER_MS);
    await waitMembersWithin(sam.page, ['wendy', 'sam', 'pia'], 'the SSE page lists all three again', RECOVER_MS);

    await sendText(wendy, 'after the restart');
    for (const u of [sam, pia]) {
      assert.deepEqual(await waitMessage(u.page, 'after the restart'),
        { type: 'message', id: '1', own: 'false', from: 'wendy', text: 'after the restart' });
    }
    await sendText(sam, 'sse is back');
    await sendText(pia, 'poll is back');
    assert.equal((await waitMessage(sam.page, 'sse is back')).own, 'true');
    assert.equal((await waitMessage(pia.page, 'poll is back')).own, 'true');
    for (const u of [wendy, pia]) {
      const m = await waitMessage(u.page, 'sse is back');
      assert.equal(m.from, 'sam');
      assert.equal(m.own, 'false');
    }
    for (const u of [wendy, sam]) {
      const m = await waitMessage(u.page, 'poll is back');
      assert.equal(m.from, 'pia');
      assert.equal(m.own, 'false');
    }
    noPageErrors(wendy, sam, pia);
  });

  test('WebSocket upgrades refused (--ws-path /nowhere): the page falls back to SSE and chats', async () => {
    const s2 = await startServer(PUBLIC, ['--ws-path', '/nowhere']);
    extra.push(s2);
    const u = `http://127.0.0.1:${s2.port}/`;
    const ann = await openTracked(browser, u);
    await statusIs(ann.page, 'open', 'open after falling back');
    assert.equal(await ann.page.textContent('#transport'), 'Server-Sent Events');
    assert.match(await ann.page.getAttribute('#transport', 'title'), /the WebSocket failed 2 times in a row/);
    assert.deepEqual(ann.log.sockets, [u.replace('http:', 'ws:'), u.replace('http:', 'ws:')],
      'two WebSocket attempts, then the fallback');
    const bob = await openTracked(browser, u);
    await statusIs(bob.page, 'open');
    assert.equal(await bob.page.textContent('#transport'), 'Server-Sent Events');
    await setNickHttp(ann, 'ann');
    await setNickHttp(bob, 'bob');
    await waitMembers(ann.page, ['ann', 'bob']);
    await waitMembers(bob.page, ['ann', 'bob']);
    await sendText(ann, 'no websocket, no problem');
    assert.deepEqual(await waitMessage(ann.page, 'no websocket, no problem'),
      { type: 'message', id: '1', own: 'true', from: 'ann (you)', text: 'no websocket, no problem' });
    assert.deepEqual(await waitMessage(bob.page, 'no websocket, no problem'),
      { type: 'message', id: '1', own: 'false', from: 'ann', text: 'no websocket, no problem' });
    await sendText(bob, 'indeed');
    assert.deepEqual(await waitMessage(ann.page, 'indeed'),
      { type: 'message', id: '2', own: 'false', from: 'bob', text: 'indeed' });
    for (const x of [ann, bob]) assertPostsCarryToken(x);
    noPageErrors(ann, bob);
    await ann.context.close();
    await bob.context.close();
  });

  test('behind a proxy that breaks WebSockets and event streams: the page ends on long polling', async () => {
    const proxy = await startBreakingProxy(srv.port);
    extra.push(proxy);
    const u = `http://127.0.0.1:${proxy.port}/`;
    const pat = await openTracked(browser, u);
    await until(pat.page, () => document.querySelector('#transport').dataset.transport === 'poll', null,
      'fallen back to long polling', 20000);
    await statusIs(pat.page, 'open', 'open on long polling');
    assert.equal(await pat.page.textContent('#transport'), 'long polling');
    assert.match(await pat.page.getAttribute('#transport', 'title'), /event streams failed 2 times in a row/);
    assert.equal(pat.log.sockets.length, 2, 'two WebSocket attempts');
    assert.equal(requestsTo(pat, 'GET', '/events').length, 2, 'two event streams tried');
    await setNickHttp(pat, 'pat');

    // A WebSocket page straight on the server, in the same room.
    const wes = await openPage(browser, url);
    await statusIs(wes.page, 'open');
    await setNick(wes, 'wes');
    await waitMembers(wes.page, ['wendy', 'sam', 'pia', 'pat', 'wes'], 'the proxied session is a member');
    await sendText(pat, 'through the proxy');
    const mine = await waitMessage(pat.page, 'through the proxy');
    assert.equal(mine.own, 'true');
    assert.equal(mine.from, 'pat (you)');
    const theirs = await waitMessage(wes.page, 'through the proxy');
    assert.equal(theirs.own, 'false');
    assert.equal(theirs.from, 'pat');
    await sendText(wes, 'straight from the server');
    const back = await waitMessage(pat.page, 'straight from the server');
    assert.equal(back.own, 'false');
    assert.equal(back.from, 'wes');
    assertPostsCarryToken(pat);
    noPageErrors(pat, wes);
    await pat.context.close();
    await wes.context.close();
  });
});
