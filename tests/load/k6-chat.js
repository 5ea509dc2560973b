// tests/load/k6-chat.js — a k6 scenario for the chat: connect, chat, measure.
//
// Each virtual user opens one WebSocket to URL, expects the server's first
// message to be a welcome (a JSON object with `text` and `timestamp`, which
// both wshub and the lecture's Node chat send), then sends a chat message
// every INTERVAL_MS for SESSION_S seconds (the last second is left for the
// replies to arrive) and closes. Every message carries a marker
// "k6:<vu>.<iteration>:<seq>:<Date.now()>"; when a user receives a message with
// its own marker back (the chat relays to everyone, the sender too), the
// difference to now goes into the chat_delivery_ms Trend. Messages of other
// users are counted in chat_messages_received.
//
// Run (see tests/load/README.md):
//   k6 run -e URL=ws://127.0.0.1:3000/ -e VUS=100 -e DURATION=30s tests/load/k6-chat.js
//
// Environment: URL (default ws://127.0.0.1:3000/), VUS (50), DURATION (30s),
// INTERVAL_MS (1000), SESSION_S (10), FORMAT (raw | chat-json | lecture2).
// Latency resolution is a millisecond: k6's Date.now() is all there is.

import ws from 'k6/ws';
import exec from 'k6/execution';
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';

const URL = __ENV.URL || 'ws://127.0.0.1:3000/';
const VUS = parseInt(__ENV.VUS || '50', 10);
const DURATION = __ENV.DURATION || '30s';
const INTERVAL_MS = parseInt(__ENV.INTERVAL_MS || '1000', 10);
const SESSION_S = parseFloat(__ENV.SESSION_S || '10');
const FORMAT = __ENV.FORMAT || 'raw';

const deliveryMs = new Trend('chat_delivery_ms', true);
const sentCount = new Counter('chat_messages_sent');
const receivedCount = new Counter('chat_messages_received');
const ownDelivered = new Rate('chat_own_delivered');
const welcomed = new Rate('chat_welcomed');

export const options = {
  scenarios: {
    chat: {
      executor: 'constant-vus',
      vus: VUS,
      duration: DURATION,
      gracefulStop: '5s',
    },
  },
  thresholds: {
    checks: ['rate>0.99'],
    chat_welcomed: ['rate>0.99'],
    chat_own_delivered: ['rate>0.99'],
    chat_delivery_ms: ['p(50)<100', 'p(99)<500'],
    ws_connecting: ['p(95)<1000'],
  },
};

function encode(text) {
  if (FORMAT === 'chat-json') return JSON.stringify({ type: 'message', text });
  if (FORMAT === 'lecture2') return JSON.stringify({ type: 'message', params: { value: text } });
  return text;
}

// The first k6 marker in a received frame: { who, seq, ms } or null.
function findMarker(data) {
  const m = /k6:(\d+\.\d+):(\d+):(\d+)/.exec(data);
  return m ? { who: m[1], seq: Number(m[2]), ms: Number(m[3]) } : null;
}

function isWelcome(data) {
  try {
    const msg = JSON.parse(data);
    return msg !== null && typeof msg === 'object' &&
      typeof msg.text === 'string' && typeof msg.timestamp === 'number';
  } catch (e) {
    return false;
  }
}

export default function () {
  const me = `${exec.vu.idInTest}.${exec.vu.iterationInScenario}`;
  const sendUntil = SESSION_S * 1000 - 1000;
  let openedAt = 0;
  let seq = 0;
  let first = true;
  const pending = new Set();

  const res = ws.connect(URL, {}, function (socket) {
    socket.on('open', function () {
      openedAt = Date.now();
      socket.setInterval(function () {
        if (Date.now() - openedAt > sendUntil) return;
        seq += 1;
        pending.add(seq);
        socket.send(encode(`k6:${me}:${seq}:${Date.now()}`));
        sentCount.add(1);
      }, INTERVAL_MS);
      socket.setTimeout(function () {
        socket.close();
      }, SESSION_S * 1000);
    });

    socket.on('message', function (data) {
      if (first) {
        first = false;
        const ok = isWelcome(data);
        welcomed.add(ok);
        check(data, { 'welcome first': () => ok });
        // A welcome may carry history with older markers: never counted.
        return;
      }
      const m = findMarker(data);
      if (m === null) return;
      receivedCount.add(1);
      if (m.who === me && pending.delete(m.seq)) {
        deliveryMs.add(Date.now() - m.ms);
        ownDelivered.add(true);
      }
    });

    socket.on('error', function (e) {
      check(e, { 'no websocket error': () => false });
    });

    socket.on('close', function () {
      // Whatever of ours never came back before the close was not delivered.
      for (let i = 0; i < pending.size; i++) ownDelivered.add(false);
      pending.clear();
    });
  });

  check(res, { 'upgraded (101)': (r) => r && r.status === 101 });
}
