// tests/e2e/static.test.mjs — wshub's static file serving, end to end:
// index files, Content-Type by extension, exact bodies (sha256 of a large
// random file), ETag / Last-Modified / conditional requests (304), HEAD,
// path safety (.., encoded dots and slashes, NUL, symlinks out of the root,
// dotfiles), non-regular and unreadable files (403).
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/static.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  withServer, Conn, reqBytes, get, assertCommon, assertError, assertAlive,
  isImfFixdate, INDEX_HTML, WAIT_MS,
} from './lib/server.mjs';

const run = promisify(execFile);
const sha256 = (b) => crypto.createHash('sha256').update(b).digest('hex');

// --- Index files and directories ---------------------------------------------

test('index files: / and /dir/ and /dir', async (t) => {
  const files = {
    'dir/index.html': '<p>dir index</p>\n',
    'dir/other.txt': 'other\n',
    'empty/.keep': '',
    'noindex/file.txt': 'file\n',
    'deep/er/index.html': '<p>deeper</p>\n',
  };
  await withServer({ files }, async ({ port }) => {
    const cases = [
      ['/', 200, INDEX_HTML],
      ['/dir/', 200, files['dir/index.html']],
      ['/dir', 200, files['dir/index.html']],
      ['/deep/er/', 200, files['deep/er/index.html']],
      ['/deep/er', 200, files['deep/er/index.html']],
      ['/dir/other.txt', 200, files['dir/other.txt']],
      ['/empty/', 404],
      ['/empty', 404],
      ['/noindex/', 404],
      ['/noindex', 404],
      ['/missing/', 404],
      ['/missing.html', 404],
    ];
    for (const [target, status, body] of cases) {
      await t.test(`GET ${target} → ${status}`, async () => {
        const res = await get(port, target);
        if (status === 200) {
          assert.equal(res.status, 200, res.raw);
          assertCommon(res);
          const type = target.endsWith('.txt') ? 'text/plain; charset=utf-8' : 'text/html; charset=utf-8';
          assert.equal(res.get('content-type'), type);
          assert.equal(res.text, body);
        } else {
          assertError(res, status);
        }
      });
    }
    await assertAlive(port);
  });
});

// --- Content-Type -----------------------------------------------------------------

const MIME = {
  'f.html': 'text/html; charset=utf-8',
  'f.js': 'text/javascript; charset=utf-8',
  'f.mjs': 'text/javascript; charset=utf-8',
  'f.css': 'text/css; charset=utf-8',
  'f.json': 'application/json',
  'f.png': 'image/png',
  'f.jpg': 'image/jpeg',
  'f.gif': 'image/gif',
  'f.svg': 'image/svg+xml',
  'f.ico': 'image/x-icon',
  'f.woff2': 'font/woff2',
  'f.otf': 'font/otf',
  'f.txt': 'text/plain; charset=utf-8',
  'f.wasm': 'application/wasm',
  'f.xyz': 'application/octet-stream',
  'noextension': 'application/octet-stream',
  'dir.d/file': 'application/octet-stream',
};

test('Content-Type by extension', async (t) => {
  const files = {};
  for (const name of Object.keys(MIME)) files[name] = Buffer.from(`content of ${name}\n\x00\xff`, 'latin1');
  await withServer({ files }, async ({ port }) => {
    for (const [name, type] of Object.entries(MIME)) {
      await t.test(`${name} → ${type}`, async () => {
        const res = await get(port, `/${name}`);
        assert.equal(res.status, 200, res.raw);
        assertCommon(res);
        assert.equal(res.get('content-type'), type);
        assert.deepEqual(res.body, files[name]);
      });
    }
  });
});

// --- Bodies -------------------------------------------------------------------------

test('empty file → 200 with Content-Length: 0', async () => {
  await withServer({ files: { 'empty.txt': '' } }, async ({ port }) => {
    const res = await get(port, '/empty.txt');
    assert.equal(res.status, 200);
    assertCommon(res);
    assert.equal(res.get('content-length'), '0');
    assert.equal(res.body.length, 0);
  });
});

test('large random file is byte-for-byte identical (sha256)', async () => {
  const data = crypto.randomBytes(3 * 1024 * 1024 + 12345);
  await withServer({ files: { 'big.bin': data } }, async ({ port }) => {
    const res = await get(port, '/big.bin', {}, { ms: 20000 });
    assert.equal(res.status, 200);
    assertCommon(res);
    assert.equal(res.get('content-length'), String(data.length));
    assert.equal(res.get('content-type'), 'application/octet-stream');
    assert.equal(sha256(res.body), sha256(data));
  });
});

test('large file twice on one keep-alive connection, then a small one', async () => {
  const data = crypto.randomBytes(2 * 1024 * 1024 + 7);
  await withServer({ files: { 'big.bin': data } }, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(Buffer.concat([reqBytes('GET', '/big.bin'), reqBytes('GET', '/big.bin'), reqBytes('GET', '/index.html')]));
    for (let i = 0; i < 2; i++) {
      const res = await conn.readResponse({ ms: 20000 });
      assert.equal(res.status, 200);
      assert.equal(sha256(res.body), sha256(data));
    }
    const last = await conn.readResponse();
    assert.equal(last.text, INDEX_HTML);
    conn.destroy();
  });
});

test('a client that disconnects mid-download does not hurt the server', async () => {
  const data = crypto.randomBytes(8 * 1024 * 1024);
  await withServer({ files: { 'big.bin': data } }, async ({ port }) => {
    for (let i = 0; i < 3; i++) {
      const conn = await Conn.open(port);
      conn.write(reqBytes('GET', '/big.bin'));
      await conn.waitFor(() => conn.len > 0, WAIT_MS, 'first bytes');
      conn.destroy();
    }
    await assertAlive(port);
  });
});

test('curl downloads a large file intact and revalidates with its ETag', async () => {
  const data = crypto.randomBytes(1024 * 1024 + 3);
  await withServer({ files: { 'big.bin': data } }, async ({ port, base }) => {
    const url = `http://127.0.0.1:${port}/big.bin`;
    const out = path.join(base, 'download.bin');
    const hdr = path.join(base, 'headers.txt');
    const r = await run('curl', ['-sS', '--http1.1', '-o', out, '-D', hdr, '-w', '%{http_code}', url]);
    assert.equal(r.stdout, '200');
    assert.equal(sha256(await fs.readFile(out)), sha256(data));
    const etag = /^etag: *(.*?)\r?$/im.exec(await fs.readFile(hdr, 'latin1'))[1];
    const r2 = await run('curl', ['-sS', '--http1.1', '-o', '/dev/null', '-w', '%{http_code} %{size_download}',
      '-H', `If-None-Match: ${etag}`, url]);
    assert.equal(r2.stdout, '304 0');
  });
});

// --- Validators and conditional requests ---------------------------------------

const MTIME = new Date('2020-01-02T03:04:05Z');
const MTIME_HTTP = 'Thu, 02 Jan 2020 03:04:05 GMT';
const DOC = 'conditional document\n';

function condFiles() {
  return { 'doc.txt': { data: DOC, mtime: MTIME } };
}

async function etagOf(port) {
  const res = await get(port, '/doc.txt');
  assert.equal(res.status, 200);
  return res.get('etag');
}

test('ETag is strong and quoted; Last-Modified is the mtime as IMF-fixdate', async () => {
  await withServer({ files: condFiles() }, async ({ port }) => {
    const res = await get(port, '/doc.txt');
    assert.equal(res.status, 200);
    assertCommon(res);
    assert.equal(res.all('etag').length, 1);
    assert.match(res.get('etag'), /^"[\x21\x23-\x7e]+"$/, 'strong, quoted entity-tag');
    assert.ok(isImfFixdate(res.get('last-modified')));
    assert.equal(res.get('last-modified'), MTIME_HTTP);
    // Stable across requests.
    assert.equal(await etagOf(port), res.get('etag'));
  });
});

test('ETag changes when the file changes', async () => {
  await withServer({ files: condFiles() }, async ({ port, pub }) => {
    const old = await etagOf(port);
    const file = path.join(pub, 'doc.txt');
    await fs.writeFile(file, 'a different, longer document\n');
    await fs.utimes(file, new Date('2021-05-06T07:08:09Z'), new Date('2021-05-06T07:08:09Z'));
    const res = await get(port, '/doc.txt', { 'If-None-Match': old });
    assert.equal(res.status, 200);
    assert.equal(res.text, 'a different, longer document\n');
    assert.notEqual(res.get('etag'), old);
    assert.equal(res.get('last-modified'), 'Thu, 06 May 2021 07:08:09 GMT');
  });
});

test('conditional GET: If-None-Match / If-Modified-Since', async (t) => {
  await withServer({ files: condFiles() }, async ({ port }) => {
    const etag = await etagOf(port);
    const cases = [
      ['If-None-Match: the ETag', { 'If-None-Match': etag }, 304],
      ['If-None-Match: a list containing the ETag', { 'If-None-Match': `"nope", ${etag} ,"other"` }, 304],
      ['If-None-Match: *', { 'If-None-Match': '*' }, 304],
      ['If-None-Match: weak form of the ETag (weak comparison)', { 'If-None-Match': `W/${etag}` }, 304],
      ['If-None-Match: another tag', { 'If-None-Match': '"not-the-etag"' }, 200],
      ['If-Modified-Since: equal to mtime', { 'If-Modified-Since': MTIME_HTTP }, 304],
      ['If-Modified-Since: later than mtime', { 'If-Modified-Since': 'Sat, 01 Jan 2022 00:00:00 GMT' }, 304],
      ['If-Modified-Since: earlier than mtime', { 'If-Modified-Since': 'Wed, 01 Jan 2020 00:00:00 GMT' }, 200],
      ['If-Modified-Since: one second earlier', { 'If-Modified-Since': 'Thu, 02 Jan 2020 03:04:04 GMT' }, 200],
      ['If-Modified-Since: not a date', { 'If-Modified-Since': 'yesterday-ish' }, 200],
      ['If-None-Match mismatch wins over a matching If-Modified-Since',
        { 'If-None-Match': '"not-the-etag"', 'If-Modified-Since': 'Sat, 01 Jan 2022 00:00:00 GMT' }, 200],
      ['If-None-Match match wins over an older If-Modified-Since',
        { 'If-None-Match': etag, 'If-Modified-Since': 'Wed, 01 Jan 2020 00:00:00 GMT' }, 304],
    ];
    for (const [name, headers, status] of cases) {
      await t.test(`${name} → ${status}`, async () => {
        const res = await get(port, '/doc.txt', headers);
        assert.equal(res.status, status, res.raw);
        assertCommon(res);
        assert.equal(res.get('etag'), etag);
        if (status === 304) {
          assert.equal(res.body.length, 0);
        } else {
          assert.equal(res.text, DOC);
        }
      });
    }
  });
});

test('304 has no body: the next pipelined response follows immediately', async () => {
  await withServer({ files: condFiles() }, async ({ port }) => {
    const etag = await etagOf(port);
    const conn = await Conn.open(port);
    conn.write(Buffer.concat([
      reqBytes('GET', '/doc.txt', { 'If-None-Match': etag }),
      reqBytes('GET', '/index.html'),
    ]));
    const r1 = await conn.readResponse();
    assert.equal(r1.status, 304);
    assert.equal(r1.get('etag'), etag);
    const r2 = await conn.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.text, INDEX_HTML);
    conn.destroy();
  });
});

// --- HEAD ---------------------------------------------------------------------------

test('HEAD: same headers as GET, no body, next pipelined request answered', async () => {
  const data = crypto.randomBytes(100000);
  await withServer({ files: { 'blob.png': data } }, async ({ port }) => {
    const g = await get(port, '/blob.png');
    assert.equal(g.status, 200);
    const conn = await Conn.open(port);
    conn.write(Buffer.concat([reqBytes('HEAD', '/blob.png'), reqBytes('GET', '/index.html')]));
    const h = await conn.readResponse({ head: true });
    assert.equal(h.status, 200);
    assertCommon(h, { expectLength: data.length });
    for (const name of ['content-length', 'content-type', 'etag', 'last-modified']) {
      assert.equal(h.get(name), g.get(name), name);
    }
    // The very next bytes are the GET's response, not a body.
    await conn.waitFor(() => conn.len >= 9, WAIT_MS, 'the next response');
    assert.equal(conn.peek().subarray(0, 9).toString('latin1'), 'HTTP/1.1 ');
    const r2 = await conn.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.text, INDEX_HTML);
    conn.destroy();
  });
});

test('HEAD of a missing file: 404 headers only, connection usable', async () => {
  await withServer({}, async ({ port }) => {
    const conn = await Conn.open(port);
    conn.write(Buffer.concat([reqBytes('HEAD', '/missing.txt'), reqBytes('GET', '/index.html')]));
    const h = await conn.readResponse({ head: true });
    assert.equal(h.status, 404);
    assert.equal(h.get('content-type'), 'text/plain; charset=utf-8');
    assert.match(h.get('content-length'), /^[1-9]\d*$/);
    await conn.waitFor(() => conn.len >= 9, WAIT_MS, 'the next response');
    assert.equal(conn.peek().subarray(0, 9).toString('latin1'), 'HTTP/1.1 ');
    const r2 = await conn.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.text, INDEX_HTML);
    conn.destroy();
  });
});

test('HEAD with If-None-Match → 304', async () => {
  await withServer({ files: condFiles() }, async ({ port }) => {
    const etag = await etagOf(port);
    const conn = await Conn.open(port);
    conn.write(reqBytes('HEAD', '/doc.txt', { 'If-None-Match': etag }));
    const res = await conn.readResponse({ head: true });
    assert.equal(res.status, 304);
    assert.equal(res.get('etag'), etag);
    conn.destroy();
  });
});

// --- Path safety ----------------------------------------------------------------

const SECRET = 'TOP-SECRET-PARENT';
const OUTSIDE = 'OUTSIDE-ROOT-DIR';
const HIDDEN = 'HIDDEN-DOTFILE';

function safetyFiles() {
  return {
    '../secret': SECRET,
    '../outdir/file.txt': OUTSIDE,
    'secret-link': { symlink: '../secret' },
    'outdir-link': { symlink: '../outdir' },
    'abs-link': { symlink: '/etc/passwd' },
    'a/b': 'A-SLASH-B',
    'a/inner.txt': 'inner\n',
    'sub/to-b': { symlink: '../a/b' },
    'link.html': { symlink: 'index.html' },
    '.hidden': HIDDEN,
    '.git/config': HIDDEN,
    'a/.env': HIDDEN,
    '.well-known/x': 'WELL-KNOWN\n',
    'sp ace.txt': 'SPACE\n',
  };
}

const NOT_FOUND_TARGETS = [
  '/../secret',
  '/a/../../secret',
  '/%2e%2e/secret',
  '/%2E%2E%2Fsecret',
  '/..%2fsecret',
  '/..%2Fsecret',
  '/a/..%2f..%2fsecret',
  '/%2e%2e%2f%2e%2e%2fsecret',
  '/a%2fb',
  '/a%2Fb',
  '/index.html%00.txt',
  '/%00',
  '/secret-link',
  '/outdir-link/file.txt',
  '/outdir-link/',
  '/abs-link',
  '/.hidden',
  '/%2ehidden',
  '/.git/config',
  '/a/.env',
  '/missing.txt',
];

test('path safety: escapes, encoded separators, NUL, symlinks out, dotfiles → 404', async (t) => {
  await withServer({ files: safetyFiles() }, async ({ port }) => {
    for (const target of NOT_FOUND_TARGETS) {
      await t.test(`GET ${target} → 404`, async () => {
        const res = await get(port, target);
        assertError(res, 404);
        for (const s of [SECRET, OUTSIDE, HIDDEN, 'root:']) assert.ok(!res.text.includes(s));
        await assertAlive(port);
      });
    }
    await t.test('absolute-form GET http://x/../secret → 404', async () => {
      const conn = await Conn.open(port);
      conn.write('GET http://x/../secret HTTP/1.1\r\nHost: x\r\n\r\n');
      const res = await conn.readResponse();
      assertError(res, 404);
      assert.ok(!res.text.includes(SECRET));
      conn.destroy();
      await assertAlive(port);
    });
    await t.test('absolute-form GET http://x/%2e%2e/secret → 404', async () => {
      const conn = await Conn.open(port);
      conn.write('GET http://x/%2e%2e/secret HTTP/1.1\r\nHost: x\r\n\r\n');
      const res = await conn.readResponse();
      assertError(res, 404);
      conn.destroy();
      await assertAlive(port);
    });
  });
});

test('path safety: malformed percent-escapes → 400', async (t) => {
  await withServer({ files: safetyFiles() }, async ({ port }) => {
    for (const target of ['/%zz', '/%4', '/%', '/index.html%g0', '/a/%4/b']) {
      await t.test(`GET ${target} → 400`, async () => {
        const res = await get(port, target);
        assertError(res, 400);
        await assertAlive(port);
      });
    }
  });
});

test('path safety: what must still be served', async (t) => {
  await withServer({ files: safetyFiles() }, async ({ port }) => {
    const cases = [
      ['/link.html', INDEX_HTML, 'symlink to a file inside the root'],
      ['/sub/to-b', 'A-SLASH-B', 'symlink inside the root via ..'],
      ['/.well-known/x', 'WELL-KNOWN\n', '.well-known'],
      ['/index.html?x=1', INDEX_HTML, 'query string ignored'],
      ['/index.html?../../secret', INDEX_HTML, 'dots in the query are ignored'],
      ['/?x=1&y=2', INDEX_HTML, 'query on /'],
      ['/a/b', 'A-SLASH-B', 'plain nested file'],
      ['/%61/%62', 'A-SLASH-B', 'percent-encoded unreserved characters'],
      ['/sp%20ace.txt', 'SPACE\n', 'percent-encoded space'],
      ['/a/./inner.txt', 'inner\n', 'single-dot segment'],
    ];
    for (const [target, body, why] of cases) {
      await t.test(`GET ${target} → 200 (${why})`, async () => {
        const res = await get(port, target);
        assert.equal(res.status, 200, res.raw);
        assertCommon(res);
        assert.equal(res.text, body);
      });
    }
    await t.test('absolute-form GET http://127.0.0.1/index.html → 200', async () => {
      const conn = await Conn.open(port);
      conn.write('GET http://127.0.0.1/index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      const res = await conn.readResponse();
      assert.equal(res.status, 200, res.raw);
      assert.equal(res.text, INDEX_HTML);
      conn.destroy();
    });
  });
});

// --- Non-regular and unreadable files: 403 ------------------------------------

test('a FIFO inside the root → 403 without hanging', async () => {
  await withServer({ files: { 'pipe': { fifo: true }, 'd/pipe.txt': { fifo: true } } }, async ({ port }) => {
    for (const target of ['/pipe', '/d/pipe.txt']) {
      const res = await get(port, target);
      assertError(res, 403);
    }
    await assertAlive(port);
  });
});

test('a file the server cannot read → 403', async () => {
  const files = { 'locked.txt': { data: 'LOCKED-CONTENT', mode: 0o000 }, 'open.txt': 'open\n' };
  await withServer({ files, asNobody: true }, async ({ port }) => {
    const res = await get(port, '/locked.txt');
    assertError(res, 403);
    assert.ok(!res.text.includes('LOCKED-CONTENT'));
    const ok = await get(port, '/open.txt');
    assert.equal(ok.status, 200);
    assert.equal(ok.text, 'open\n');
    await assertAlive(port);
  });
});
