// tests/load/node-chat/server.js — the lecture's Node.js chat (ws@8), as a
// baseline for tests/load/compare.sh.
//
// Behaviour follows the lecture (shared/seeds, first note): one HTTP server;
// every WebSocket upgrade on any path is accepted by a WebSocketServer
// sharing it; a new client gets a welcome {"text":…,"timestamp":…}; every
// text a client sends goes to every client as {"text":"me: …"} (to the
// sender) or {"text":"other: …"} (to the others) with a timestamp, built and
// JSON-encoded once per receiving client, as the lecture's loop does.
//
// Departures from the lecture, both needed to run it as a benchmark: the
// port comes from PORT (0 = any free one; the real port is printed as
// "listening on http://HOST:PORT"), the address from HOST, and a client is
// removed from the list when it closes (the lecture's second note does this;
// the first one never removes clients, so a long benchmark would keep
// sending to thousands of dead sockets). Plain HTTP requests get a short
// text page instead of the lecture's static files: load tests never ask
// for them.
'use strict';

const http = require('node:http');
const { WebSocketServer } = require('ws');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT ?? 3000);

function chatLine(text) {
  return JSON.stringify({ text, timestamp: Date.now() });
}

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
  res.end('lecture chat (ws@8) for load tests\n');
});

const wss = new WebSocketServer({ server });
const clients = [];

wss.on('connection', (socket) => {
  socket.send(chatLine('서버와 연결되었습니다.'));
  clients.push(socket);

  socket.on('message', (data) => {
    const text = data.toString('utf-8');
    for (const client of clients) {
      const who = client === socket ? 'me:' : 'other:';
      client.send(chatLine(`${who} ${text}`));
    }
  });

  socket.on('close', () => {
    const i = clients.indexOf(socket);
    if (i >= 0) clients.splice(i, 1);
  });
});

server.listen(port, host, () => {
  const a = server.address();
  const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  console.error(`listening on http://${h}:${a.port}`);
});

function stop() {
  for (const client of clients) client.terminate();
  wss.close();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
