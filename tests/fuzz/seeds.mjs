#!/usr/bin/env node
// seeds.mjs — writes the seed corpora of the wshub fuzz targets into
// tests/fuzz/corpus/{http,ws,chat}/ (node built-ins only).
//
// The corpus files are committed; run this again after changing a seed
// here (`node tests/fuzz/seeds.mjs`). It rewrites only the files it names
// and leaves others (e.g. crash reproducers added by hand) alone. The input
// formats are described at the top of fuzz_http.c, fuzz_ws.c, fuzz_chat.c.
import { mkdirSync, writeFileSync } from "node:fs";
import zlib from "node:zlib";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

function write(target, name, data) {
  const dir = join(here, "corpus", target);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), data);
}

// ---- HTTP: raw client bytes ----

const req = (line, headers = ["Host: 127.0.0.1"], body = "") =>
  `${line}\r\n${headers.map((h) => h + "\r\n").join("")}\r\n${body}`;
const get = (path, extra = []) =>
  req(`GET ${path} HTTP/1.1`, ["Host: 127.0.0.1", ...extra]);
const upgrade = (path, extra = []) =>
  get(path, [
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    ...extra,
  ]);

// A masked client frame (key 37 fa 21 3d), for bytes after an upgrade.
const KEY = [0x37, 0xfa, 0x21, 0x3d];
const masked = (b0, payload) => {
  const p = Buffer.from(payload, "latin1");
  const out = [b0, 0x80 | p.length, ...KEY];
  p.forEach((b, i) => out.push(b ^ KEY[i % 4]));
  return Buffer.from(out).toString("latin1");
};

const http = {
  "get-root": get("/"),
  "get-pipelined": get("/a.txt") + get("/app.js") + get("/style.css") +
    get("/data.json"),
  "head-index": req("HEAD /index.html HTTP/1.1"),
  "http10-keepalive": req("GET / HTTP/1.0", ["Connection: keep-alive"]) +
    req("GET /a.txt HTTP/1.0", []),
  "post-hook-length": req("POST /hook HTTP/1.1",
    ["Host: h", "Content-Length: 11", "Content-Type: text/plain"],
    "hello world"),
  "post-hook-chunked": req("POST /hook HTTP/1.1",
    ["Host: h", "Transfer-Encoding: chunked"],
    "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n") +
    get("/a.txt"),
  "hook-none-twice": get("/hook/none") + get("/hook/twice"),
  "post-static-405": req("POST /a.txt HTTP/1.1", ["Host: h",
    "Content-Length: 2"], "ab") + req("DELETE / HTTP/1.1") +
    req("OPTIONS * HTTP/1.1"),
  "traversal": get("/../etc/passwd") + get("/%2e%2e/%2e%2e/etc/passwd") +
    get("/a%2fb") + get("/a%5cb") + get("/a%00b") + get("/.hidden") +
    get("/out/passwd") + get("/sub/../a.txt") + get("/%zz"),
  "absolute-form": get("http://example.com/sub/") +
    get("https://example.com") + get("http://example.com?x"),
  "query-fragment": get("/a.txt?x=1&y=%20#frag") + get("//sub/./index.html") +
    get("/sub/") + get("/noindex/") + get("/fifo") +
    get("/.well-known/security.txt"),
  "conditional": get("/a.txt", ['If-None-Match: W/"x", *']) +
    get("/a.txt", ["If-Modified-Since: Sun, 06 Nov 2044 08:49:37 GMT"]) +
    get("/a.txt", ["If-Modified-Since: garbage"]),
  "big-file": get("/big.bin") + req("HEAD /big.bin HTTP/1.1") +
    get("/empty.txt"),
  "upgrade-ws-frame": upgrade("/ws", ["Sec-WebSocket-Protocol: x, chat"]) +
    masked(0x81, "hello") + masked(0x88, "\x03\xe8"),
  "upgrade-bad-version": upgrade("/ws", []).replace("Version: 13",
    "Version: 12"),
  "upgrade-bad-key": upgrade("/ws").replace("dGhlIHNhbXBsZSBub25jZQ==",
    "short"),
  "upgrade-wrong-path": upgrade("/nows"),
  "upgrade-cross-origin": upgrade("/ws", ["Origin: http://evil.example"]),
  "upgrade-h2c": get("/a.txt", ["Upgrade: h2c", "Connection: Upgrade"]),
  "too-many-headers": get("/", Array.from({ length: 25 },
    (_, i) => `X-H${i}: ${i}`)),
  "header-too-large": get("/", [`X-Big: ${"a".repeat(2100)}`]),
  "body-too-large": req("POST /hook HTTP/1.1", ["Host: h",
    "Content-Length: 5000"], "x".repeat(100)),
  "host-missing-dup": req("GET / HTTP/1.1", []) + get("/", ["Host: b"]),
  "http2-preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
  "bad-method-version": "FOO / HTTP/1.1\r\nHost: h\r\n\r\n" +
    "GET / HTTP/3.0\r\nHost: h\r\n\r\n",
  "close-then-more": get("/a.txt", ["Connection: close"]) + get("/"),
  "cl-and-te": req("POST /hook HTTP/1.1", ["Host: h", "Content-Length: 3",
    "Transfer-Encoding: chunked"], "0\r\n\r\n"),
  "incomplete": "GET /index.html HTTP/1.1\r\nHost: h\r\nX-Partial: ab",
};
for (const [name, text] of Object.entries(http))
  write("http", name, Buffer.from(text, "latin1"));

// ---- WebSocket: a mode byte, then records [b0][b1][ext][payload] ----

const FIN = 0x80;
const OP = { cont: 0, text: 1, bin: 2, close: 8, ping: 9, pong: 10 };
function rec(b0, payload = Buffer.alloc(0), opts = {}) {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, "utf8");
  const hi = opts.unmasked ? 0x80 : 0;
  if (opts.len16 !== undefined || (p.length > 125 && p.length <= 0xffff)) {
    const n = opts.len16 ?? p.length;
    return Buffer.concat([Buffer.from([b0, hi | 126, n >> 8, n & 255]), p]);
  }
  if (opts.len64 !== undefined) {
    const ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(opts.len64);
    return Buffer.concat([Buffer.from([b0, hi | 127]), ext, p]);
  }
  return Buffer.concat([Buffer.from([b0, hi | p.length]), p]);
}
const close = (code, reason = "") => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return rec(FIN | OP.close, Buffer.concat([b, Buffer.from(reason)]));
};
const ws = (mode, ...records) =>
  Buffer.concat([Buffer.from([mode]), ...records]);
const joinMsg = (room) => JSON.stringify({ type: "join", room });

const wsSeeds = {
  "text-close": ws(0, rec(FIN | OP.text, "hello"), close(1000, "bye")),
  "binary": ws(0, rec(FIN | OP.bin, Buffer.from([0, 1, 2, 255])),
    close(1000)),
  "ping-pong-text": ws(0, rec(FIN | OP.ping, "p"), rec(FIN | OP.pong, "q"),
    rec(FIN | OP.text, '{"type":"message","text":"hi"}')),
  "fragmented": ws(0, rec(OP.text, "hel"), rec(OP.cont, "lo "),
    rec(FIN | OP.cont, "world"), close(1000)),
  "fragmented-ping-between": ws(0, rec(OP.text, "a"), rec(FIN | OP.ping),
    rec(FIN | OP.cont, "b")),
  "utf8-split": ws(0, rec(OP.text, Buffer.from([0xe2, 0x82])),
    rec(FIN | OP.cont, Buffer.from([0xac, 0x21]))),
  "utf8-invalid": ws(0, rec(FIN | OP.text, Buffer.from([0x61, 0xc0, 0x80]))),
  "utf8-surrogate": ws(0, rec(FIN | OP.text, Buffer.from([0xed, 0xa0, 0x80]))),
  "close-1byte": ws(0, rec(FIN | OP.close, Buffer.from([3]))),
  "close-bad-code": ws(0, close(999)),
  "close-1005": ws(0, close(1005)),
  "close-bad-utf8-reason": ws(0, rec(FIN | OP.close,
    Buffer.from([3, 0xe8, 0xff]))),
  "len16": ws(0, rec(FIN | OP.text, "x".repeat(200))),
  "len16-nonminimal": ws(0, rec(FIN | OP.text, "abcde", { len16: 5 })),
  "len64-huge": ws(0, rec(FIN | OP.bin, "abc", { len64: 1n << 40n })),
  "unmasked": ws(0, rec(FIN | OP.text, "hi", { unmasked: true })),
  "rsv-bits": ws(0, rec(FIN | 0x40 | OP.text, "hi")),
  "reserved-opcodes": ws(0, rec(FIN | 3, "x"), rec(FIN | 0xb, "y")),
  "control-fragmented": ws(0, rec(OP.ping, "p")),
  "control-too-long": ws(0, rec(FIN | OP.ping, "p".repeat(126))),
  "cont-without-start": ws(0, rec(FIN | OP.cont, "x")),
  "new-message-in-fragment": ws(0, rec(OP.text, "a"), rec(FIN | OP.text,
    "b")),
  "too-big-1009": ws(0, rec(OP.bin, Buffer.alloc(700, 7)),
    rec(FIN | OP.cont, Buffer.alloc(700, 8))),
  "raw-bytes": ws(1, Buffer.from("GET / HTTP/1.1\r\n\r\n")),
  "raw-masked-frame": ws(1, Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0x68,
    0x69])),
  "pipelined-with-upgrade": ws(2, rec(FIN | OP.text, joinMsg("room2")),
    rec(FIN | OP.text, "hello"), close(1000)),
  "chunked-writes": ws(3, rec(OP.text, "hello "), rec(FIN | OP.ping, "x"),
    rec(FIN | OP.cont, "world"), close(1001, "going")),
  "echo-text": ws(4, rec(FIN | OP.text, "echo me"),
    rec(FIN | OP.bin, "bin"), close(1000)),
  "echo-pipelined": ws(6, rec(OP.text, "a"), rec(FIN | OP.cont, "b")),
  "chat-json": ws(0, rec(FIN | OP.text, joinMsg("x")),
    rec(FIN | OP.text, '{"type":"nick","name":"ann"}'),
    rec(FIN | OP.text, '{"type":"message","text":"hi"}'),
    rec(FIN | OP.text, '{"type":"resume","room":"x","after":0}')),
};
// permessage-deflate (mode bit 3; bit 4: the client keeps its context):
// payloads are raw DEFLATE with the 00 00 ff ff cut.
const DEFLATE = 8, KEEP = 16, RSV1 = 0x40;
const zip = (s) => {
  const z = zlib.deflateRawSync(Buffer.from(s, "utf8"),
    { flush: zlib.constants.Z_SYNC_FLUSH });
  return z.subarray(0, z.length - 4);
};
// Messages through one stream (context kept), each cut at its flush.
async function kept(...texts) {
  const d = zlib.createDeflateRaw({ windowBits: 12 });
  const out = [];
  for (const t of texts) {
    const chunks = [];
    const take = (c) => chunks.push(c);
    d.on("data", take);
    d.write(Buffer.from(t, "utf8"));
    await new Promise((resolve) => d.flush(zlib.constants.Z_SYNC_FLUSH, resolve));
    d.off("data", take);
    const b = Buffer.concat(chunks);
    if (b.subarray(-4).toString("hex") !== "0000ffff")
      throw new Error("kept(): a flush did not end the output");
    out.push(b.subarray(0, b.length - 4));
  }
  d.close();
  return out;
}
const chatMsg = (text) => JSON.stringify({ type: "message", text });
Object.assign(wsSeeds, {
  "deflate-chat": ws(DEFLATE, rec(FIN | RSV1 | OP.text, zip(joinMsg("z"))),
    rec(FIN | RSV1 | OP.text, zip(chatMsg("hello ".repeat(20)))),
    rec(FIN | OP.text, chatMsg("plain in a deflate session")), close(1000)),
  "deflate-fragmented": ws(DEFLATE | 4,
    ...((z) => [rec(RSV1 | OP.text, z.subarray(0, 5)),
      rec(FIN | OP.ping, "p"), rec(OP.cont, z.subarray(5, 9)),
      rec(FIN | OP.cont, z.subarray(9))])(zip("compressed ".repeat(30)))),
  "deflate-bomb": ws(DEFLATE | 4, rec(FIN | RSV1 | OP.bin,
    zip("a".repeat(100000)))),
  "deflate-bad-data": ws(DEFLATE, rec(FIN | RSV1 | OP.text,
    Buffer.from([0xff, 0xff, 0x12, 0x34]))),
  "deflate-rsv1-cont": ws(DEFLATE | 4, rec(OP.text, "a"),
    rec(FIN | RSV1 | OP.cont, zip("b"))),
  "deflate-rsv1-ping": ws(DEFLATE | 4, rec(FIN | RSV1 | OP.ping, "p")),
  "deflate-bad-utf8": ws(DEFLATE | 4, rec(FIN | RSV1 | OP.text,
    zip("\u00e9").subarray(0, 1))),
  "deflate-kept-context": ws(DEFLATE | KEEP | 4,
    ...(await kept("repeat after me, repeat after me", "repeat after me again",
      "repeat after me")).map((z) => rec(FIN | RSV1 | OP.text, z))),
  "deflate-context-refused": ws(DEFLATE | 4,
    ...(await kept("the same words twice", "the same words twice")).map((z) =>
      rec(FIN | RSV1 | OP.text, z))),
});
for (const [name, data] of Object.entries(wsSeeds)) write("ws", name, data);

// ---- chat: text messages separated by 0x1e; a leading '?' piece is the
// query string of the upgrade ----

const RS = "\x1e";
const msg = (o) => JSON.stringify(o);
const conv = (...pieces) => Buffer.from(pieces.join(RS), "utf8");
const chat = {
  "plain-text": conv("hello everyone"),
  "message": conv(msg({ type: "message", text: "hi" })),
  "message-params": conv(msg({ type: "message", params: { value: "hi" } })),
  "message-room": conv(msg({ type: "join", room: "r1" }),
    msg({ type: "message", room: "lobby", text: "to lobby" }),
    msg({ type: "message", room: "nope", text: "x" }),
    msg({ type: "message", room: "bad room", text: "x" })),
  "direct": conv(msg({ type: "message", to: "c1", text: "psst" }),
    msg({ type: "message", to: "c2", text: "me" }),
    msg({ type: "message", to: "c9", text: "nobody" }),
    msg({ type: "message", to: 5, text: "x" })),
  "join-leave": conv(msg({ type: "join", room: "a" }),
    msg({ type: "join", room: "b" }), msg({ type: "join", room: "a" }),
    msg({ type: "leave", room: "a" }), msg({ type: "leave", room: "a" }),
    msg({ type: "leave", room: "lobby" }), msg({ type: "message",
      text: "no room" })),
  "nick": conv(msg({ type: "nick", name: "ann" }),
    msg({ type: "nick", nick: "bob" }), msg({ type: "nick" }),
    msg({ type: "nick", name: "a\u0007b" }),
    msg({ type: "nick", name: "x".repeat(40) }),
    msg({ type: "nick", name: "\u3000 \u00a0" }),
    msg({ type: "nick", name: "\u00e9t\u00e9 \u{1f600}" })),
  "resume": conv(msg({ type: "message", text: "1" }),
    msg({ type: "message", text: "2" }),
    msg({ type: "resume", room: "lobby", after: 0 }),
    msg({ type: "resume", room: "other", after: 5 }),
    msg({ type: "resume", room: "lobby", after: -1 }),
    msg({ type: "resume", room: "lobby", after: "x" }),
    msg({ type: "resume", room: "lobby", after: 1e30 })),
  "history-gap": conv(...Array.from({ length: 12 },
    (_, i) => msg({ type: "message", text: `m${i}` })),
    msg({ type: "resume", room: "lobby", after: 1 })),
  "bad-json": conv("{", "{}", '{"type":1}', '{"type":"dance"}',
    '{"type":"message","text":"a","text":"b"}', "[1,2]", "42",
    '  \t{"type":"message","text":"x\\u0000y"}', '{"type":"join"}',
    '{"type":"message","text":null,"params":{"value":"v"}}'),
  "text-limits": conv(msg({ type: "message", text: "" }),
    msg({ type: "message", text: "y".repeat(600) }), "z".repeat(600)),
  "too-many-rooms": conv(...Array.from({ length: 18 },
    (_, i) => msg({ type: "join", room: `r${i}` }))),
  "rate-limit": conv(...Array.from({ length: 220 }, () => "a")),
  "query-all": conv("?room=r1&nick=ann+lee&after=0",
    msg({ type: "message", text: "in r1" })),
  "query-bad": conv("?room=bad%20room&nick=%ZZ&after=-1", "hello"),
  "query-empty-nick": conv("?nick=&room=&after=x", "hi"),
  "query-long-nick": conv(`?nick=${"n".repeat(200)}&after=99999999999999999999`,
    "hi"),
  "query-resume": conv("?room=lobby&after=3#frag", "hey"),
  "control-chars": Buffer.from("a\u0000b\u0001c", "utf8"),
  "invalid-utf8": Buffer.from([0x68, 0xff, 0x69]),
};
for (const [name, data] of Object.entries(chat)) write("chat", name, data);
