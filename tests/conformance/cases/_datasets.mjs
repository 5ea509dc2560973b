// _datasets.mjs — the five data sets of categories 12 and 13, made in code.
//
// Why it exists: Autobahn's 12.x/13.x echo slices of five files (a JSON
// document, a 512x512 black-and-white bitmap, Goethe's Faust as text, an
// HTML page, a PDF). This suite downloads nothing: each set is generated
// here, deterministically (a fixed xorshift seed), with the same kind of
// content, the same size as Autobahn's file, and the same message type
// (text for JSON and HTML, which are ASCII so that any slice is valid UTF-8;
// binary for the others). Each set is built once, on first use.
//
// Ownership: the Buffers returned are cached and shared; callers must not
// modify them.

import { OP } from '../wsclient.mjs';

/** Deterministic xorshift32 generator: next() → uint32, int(n) → 0..n-1, pick(list). */
function rng(seed) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  return { next, int: (n) => next() % n, pick: (l) => l[next() % l.length] };
}

/** Exactly `size` bytes: `make(r)` yields strings/Buffers until there are enough. */
function fill(size, seed, make) {
  const r = rng(seed);
  const parts = [];
  let n = 0;
  while (n < size) {
    const p = make(r);
    const b = Buffer.isBuffer(p) ? p : Buffer.from(p, 'utf8');
    parts.push(b);
    n += b.length;
  }
  return Buffer.concat(parts).subarray(0, size);
}

const LOREM = ('lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore ' +
  'magna aliqua enim ad minim veniam quis nostrud exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute ' +
  'irure in reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident sunt ' +
  'culpa qui officia deserunt mollit anim id est laborum').split(' ');
const FIRST = ['Anna', 'Bruno', 'Clara', 'David', 'Elif', 'Farid', 'Greta', 'Hugo', 'Ines', 'Jonas', 'Kira', 'Lars', 'Mila', 'Noah', 'Olga', 'Paul'];
const LAST = ['Albers', 'Brandt', 'Cruz', 'Dahl', 'Eriksen', 'Fischer', 'Garcia', 'Hansen', 'Ivanova', 'Jensen', 'Kowalski', 'Lund'];
const sentence = (r, min, max) => {
  const n = min + r.int(max - min + 1);
  const w = Array.from({ length: n }, () => r.pick(LOREM));
  return `${w[0][0].toUpperCase()}${w.join(' ').slice(1)}.`;
};

function makeJson(size) {
  let id = 0;
  let first = true;
  const body = fill(size - 4, 12001, (r) => {
    const rec = {
      _id: r.next().toString(16).padStart(8, '0') + r.next().toString(16).padStart(8, '0'),
      index: id++,
      guid: [8, 4, 4, 4, 12].map((k) => Array.from({ length: k }, () => '0123456789abcdef'[r.int(16)]).join('')).join('-'),
      isActive: r.int(2) === 1,
      balance: `$${(r.int(400000) / 100).toFixed(2)}`,
      age: 18 + r.int(60),
      eyeColor: r.pick(['blue', 'brown', 'green', 'grey']),
      name: `${r.pick(FIRST)} ${r.pick(LAST)}`,
      company: r.pick(LAST).toUpperCase() + r.pick(['CORP', 'TECH', 'LABS', 'WORKS']),
      email: `${r.pick(FIRST).toLowerCase()}.${r.pick(LAST).toLowerCase()}@example.com`,
      phone: `+1 (${100 + r.int(900)}) ${100 + r.int(900)}-${1000 + r.int(9000)}`,
      about: Array.from({ length: 2 + r.int(4) }, () => sentence(r, 6, 14)).join(' '),
      registered: `20${10 + r.int(15)}-${String(1 + r.int(12)).padStart(2, '0')}-${String(1 + r.int(28)).padStart(2, '0')}T0${r.int(10)}:1${r.int(10)}:2${r.int(10)} -01:00`,
      latitude: (r.int(180000000) / 1e6 - 90).toFixed(6) * 1,
      longitude: (r.int(360000000) / 1e6 - 180).toFixed(6) * 1,
      tags: Array.from({ length: 3 + r.int(5) }, () => r.pick(LOREM)),
      friends: Array.from({ length: 1 + r.int(3) }, (_, k) => ({ id: k, name: `${r.pick(FIRST)} ${r.pick(LAST)}` })),
    };
    const s = (first ? '' : ',\n') + JSON.stringify(rec, null, 2).replace(/^/gm, '  ');
    first = false;
    return s;
  });
  return Buffer.concat([Buffer.from('[\n'), body, Buffer.from('\n]')]);
}

// 512x512 pixels, 8 bits per pixel, a two-entry-looking palette (0 = black,
// 255 = white): a smooth "photo" (rings and waves) dithered to black and white
// with an ordered 4x4 Bayer matrix, as a BMP file (54 + 1024 + 262144 bytes).
function makeBitmap() {
  const W = 512;
  const H = 512;
  const head = Buffer.alloc(54 + 1024);
  head.write('BM', 0, 'latin1');
  head.writeUInt32LE(head.length + W * H, 2);
  head.writeUInt32LE(head.length, 10);
  head.writeUInt32LE(40, 14);
  head.writeInt32LE(W, 18);
  head.writeInt32LE(H, 22);
  head.writeUInt16LE(1, 26);
  head.writeUInt16LE(8, 28);
  head.writeUInt32LE(W * H, 34);
  head.writeUInt32LE(2835, 38);
  head.writeUInt32LE(2835, 42);
  head.writeUInt32LE(256, 46);
  for (let i = 0; i < 256; i++) head.writeUInt32LE(i * 0x010101, 54 + 4 * i);
  const bayer = [0, 8, 2, 10, 12, 4, 14, 6, 3, 11, 1, 9, 15, 7, 13, 5];
  const px = Buffer.alloc(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const dx = x - 200;
      const dy = y - 300;
      const rings = Math.cos(Math.sqrt(dx * dx + dy * dy) / 9);
      const wave = Math.sin(x / 37 + Math.sin(y / 53) * 2);
      const v = (rings * 0.45 + wave * 0.35 + (y / H) * 0.6) / 1.4 + 0.2; // ~0..1
      const level = Math.max(0, Math.min(16, Math.round(v * 16)));
      px[y * W + x] = level > bayer[(y & 3) * 4 + (x & 3)] ? 255 : 0;
    }
  }
  return Buffer.concat([head, px]);
}

// Verse drama text in German, with umlauts and ß (UTF-8), speaker headings and
// stage directions, like a Project Gutenberg play. Sent as binary, as
// Autobahn sends Faust.
const DE = ('und der die das ist nicht ich ein zu sich mit auf dem den des wie so was auch noch nun wohl mir mich dir dich ' +
  'Herz Geist Welt Nacht Licht Himmel Erde Seele Natur Liebe Zeit Gott Teufel Buch Wissen Kunst Leben Tag Traum ' +
  'für über schön hören möchte wäre größer Mächte Flügel Glück Früh Gefühl täglich Tür weiß heißt süß müssen ' +
  'schweben lieben wandeln streben sinnen schauen rufen fühlen sehen steigen').split(' ');
const SPEAKERS = ['FAUST', 'MEPHISTOPHELES', 'WAGNER', 'MARGARETE', 'MARTHE', 'CHOR', 'DER HERR', 'SCHÜLER'];
function makeText(size) {
  return fill(size, 31337, (r) => {
    if (r.int(9) === 0) return `\n${r.pick(SPEAKERS)} (${r.pick(['tritt auf', 'für sich', 'leise', 'am Fenster', 'ab'])}).\n\n`;
    let s = `${r.pick(SPEAKERS)}:\n`;
    for (let l = 1 + r.int(6); l > 0; l--) {
      const words = Array.from({ length: 4 + r.int(5) }, () => r.pick(DE));
      words[0] = words[0][0].toUpperCase() + words[0].slice(1);
      s += `${words.join(' ')}${r.pick([',', ';', '!', '?', '.', ''])}\n`;
    }
    return `${s}\n`;
  });
}

function makeHtml(size) {
  const prologue = '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>Report</title>\n' +
    '<link rel="stylesheet" href="/static/site.css">\n</head>\n<body>\n<nav class="top"><ul>' +
    ['Home', 'News', 'Archive', 'About', 'Contact'].map((n) => `<li><a href="/${n.toLowerCase()}.html">${n}</a></li>`).join('') +
    '</ul></nav>\n<main>\n';
  let k = 0;
  const body = fill(size - prologue.length - 24, 4242, (r) => {
    k++;
    let s = `<section id="s${k}" class="${r.pick(['news', 'item', 'note'])}">\n<h2>${sentence(r, 3, 7)}</h2>\n`;
    for (let p = 1 + r.int(3); p > 0; p--) s += `<p>${sentence(r, 8, 20)} <a href="/item/${r.int(10000)}">${r.pick(LOREM)}</a> ${sentence(r, 5, 15)}</p>\n`;
    if (r.int(3) === 0) {
      s += '<table class="data">\n<tr><th>Name</th><th>Value</th><th>Date</th></tr>\n';
      for (let row = 2 + r.int(5); row > 0; row--)
        s += `<tr><td>${r.pick(FIRST)}</td><td align="right">${r.int(100000)}</td><td>2024-0${1 + r.int(9)}-1${r.int(10)}</td></tr>\n`;
      s += '</table>\n';
    }
    if (r.int(3) === 0) s += `<ul>\n${Array.from({ length: 2 + r.int(4), }, () => `  <li>${sentence(r, 2, 6)}</li>`).join('\n')}\n</ul>\n`;
    return `${s}</section>\n`;
  });
  return Buffer.concat([Buffer.from(prologue), body, Buffer.from('</main>\n</body>\n</html>\n')]).subarray(0, size);
}

// A PDF-shaped file whose streams hold already-compressed (random) bytes:
// nearly incompressible, with a little plain-text structure between streams.
function makePdf(size) {
  let obj = 0;
  const head = Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1');
  const body = fill(size - head.length, 777, (r) => {
    obj++;
    const n = 2000 + r.int(30000);
    const words = Buffer.alloc(n + 3 - ((n + 3) % 4));
    for (let i = 0; i < words.length; i += 4) words.writeUInt32LE(r.next(), i);
    const stream = words.subarray(0, n);
    return Buffer.concat([
      Buffer.from(`${obj} 0 obj\n<< /Length ${n} /Filter /FlateDecode >>\nstream\n`, 'latin1'),
      stream,
      Buffer.from('\nendstream\nendobj\n', 'latin1'),
    ]);
  });
  return Buffer.concat([head, body]);
}

// The ids follow Autobahn's 12.1-12.5 order.
const SETS = [
  { sub: 1, key: 'json', desc: 'large JSON document (text, ASCII)', opcode: OP.TEXT, size: 194056, make: makeJson },
  { sub: 2, key: 'bitmap', desc: '512x512 black-and-white bitmap (binary, BMP)', opcode: OP.BINARY, size: 263222, make: makeBitmap },
  { sub: 3, key: 'text', desc: 'human readable German verse text (binary, UTF-8)', opcode: OP.BINARY, size: 222218, make: makeText },
  { sub: 4, key: 'html', desc: 'large HTML document (text, ASCII)', opcode: OP.TEXT, size: 83894, make: makeHtml },
  { sub: 5, key: 'pdf', desc: 'PDF-like binary with random streams (incompressible)', opcode: OP.BINARY, size: 1042328, make: makePdf },
];

const cache = new Map();

/** The data set with key `key`: { sub, key, desc, opcode, size, data }. */
export function dataset(key) {
  const s = SETS.find((x) => x.key === key);
  if (!s) throw new Error(`no data set ${key}`);
  if (!cache.has(key)) {
    const data = s.make(s.size);
    if (data.length !== s.size) throw new Error(`data set ${key}: made ${data.length} bytes, not ${s.size}`);
    cache.set(key, data);
  }
  return { ...s, data: cache.get(key) };
}

export const DATASETS = SETS.map((s) => s.key);

/** A data set's description without building it: { sub, key, desc, opcode, size }. */
export function datasetInfo(key) {
  const s = SETS.find((x) => x.key === key);
  if (!s) throw new Error(`no data set ${key}`);
  return { ...s };
}

/**
 * Autobahn's message sizes for 12.x / 13.x: [payload length, auto-fragment
 * size (0: one frame)], cases .1 to .18 in this order.
 */
export const MSG_SIZES = [
  [16, 0], [64, 0], [256, 0], [1024, 0], [4096, 0], [8192, 0], [16384, 0], [32768, 0], [65536, 0], [131072, 0],
  [8192, 256], [16384, 256], [32768, 256], [65536, 256], [131072, 256],
  [131072, 1024], [131072, 4096], [131072, 32768],
];
