// tests/e2e/config.test.mjs — options from a configuration file (--config
// FILE, JSON) and from WSHUB_* environment variables: a file alone runs a
// server that behaves as it says (port, host, threads, public, echo,
// max-message, a list of origins) over real connections; the environment
// beats the file and the command line beats both, lists replaced whole;
// WSHUB_CONFIG; every mistake (unreadable file, bad JSON, unknown key, wrong
// type, bad value, bad variable) exits 2 with its exact message; and every
// option that --help lists is accepted as a file key and as a variable with
// the same verdict as on the command line.
//
// Run alone: WSHUB_BIN=/path/to/wshub node --test tests/e2e/config.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  makeTree, spawnRaw, waitListening, runToExit, get, stopAndCheck, HOST, INDEX_HTML,
} from './lib/server.mjs';
import {
  rawUpgrade, rawOpen, clientFrame, readFrame, expectClose, serverFrameBytes, closePayload, OP,
} from './lib/ws.mjs';

const TRY = "Try 'wshub --help'.\n";
const CONTRIB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../contrib');

// A fixture tree with the file config.json holding `settings` (an object,
// written as JSON, or a string written as it is); fn({ pub, file, base }).
async function withConfig(settings, fn) {
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  const file = path.join(tree.base, 'config.json');
  const text = typeof settings === 'string' ? settings
    : JSON.stringify(typeof settings === 'function' ? settings(tree.pub) : settings);
  await fs.writeFile(file, text);
  try {
    await fn({ pub: tree.pub, file, base: tree.base });
  } finally {
    await tree.cleanup();
  }
}

// Starts wshub with exactly these arguments and environment additions,
// runs fn(srv) and stops it (exit 0 asserted).
async function withRunning(args, env, fn) {
  const srv = await waitListening(spawnRaw(args, { env }));
  try {
    await fn(srv);
    await stopAndCheck(srv);
  } finally {
    if (!srv.exit) await srv.stop();
  }
}

async function upgradeStatus(port, origin) {
  const { res, conn } = await rawUpgrade(port, '/', {
    extra: [['Origin', origin]], host: `127.0.0.1:${port}`,
  });
  conn.destroy();
  return res.status;
}

// A text message of n bytes on a WebSocket from an allowed origin (null:
// no Origin, as from a program): echoed
// byte for byte when n <= limit, else the connection is closed with 1009.
async function assertMessageLimit(port, origin, n, limit) {
  const conn = await rawOpen(port, '/', { extra: origin ? [['Origin', origin]] : [] });
  try {
    const text = 'x'.repeat(n);
    conn.write(clientFrame(OP.TEXT, text));
    if (n <= limit) {
      const f = await readFrame(conn);
      assert.equal(f.raw.toString('latin1'), serverFrameBytes(OP.TEXT, text).toString('latin1'),
        `a ${n}-byte message is echoed (limit ${limit})`);
      conn.write(clientFrame(OP.CLOSE, closePayload(1000)));
      await expectClose(conn, 1000);
    } else {
      await expectClose(conn, 1009);
    }
    await conn.waitEnd();
  } finally {
    conn.destroy();
  }
}

const A = 'https://a.example';
const B = 'https://b.example';
const C = 'https://c.example';
const D = 'https://d.example';

test('a file alone: host, port, threads, public, echo, max-message and a list of origins', async () => {
  await withConfig((pub) => ({
    host: HOST, port: 0, threads: 2, public: pub, echo: true, 'max-message': 100,
    'allow-origin': [A, B], 'log-level': 'warn',
  }), async ({ pub, file }) => {
    await withRunning(['--config', file], {}, async (srv) => {
      assert.ok(srv.stderr.includes(`wshub: options read from ${file}\n`), srv.stderr);
      assert.match(srv.stderr,
        new RegExp(`listening on http://127\\.0\\.0\\.1:${srv.port} \\(public ${pub}, echo mode, 2 threads\\)`));
      const res = await get(srv.port, '/index.html');
      assert.equal(res.status, 200);
      assert.equal(res.text, INDEX_HTML);
      await assertMessageLimit(srv.port, A, 100, 100);
      await assertMessageLimit(srv.port, A, 101, 100);
      assert.equal(await upgradeStatus(srv.port, A), 101, A);
      assert.equal(await upgradeStatus(srv.port, B), 101, B);
      assert.equal(await upgradeStatus(srv.port, C), 403, C);
    });
  });
});

test('the environment beats the file, the command line beats both; lists are replaced whole', async () => {
  const settings = (pub) => ({
    host: HOST, port: 0, threads: 1, public: pub, echo: true, 'max-message': 100,
    'allow-origin': [A, B], 'deflate-level': 'bad but overridden',
  });
  await withConfig(settings, async ({ file }) => {
    const env = {
      WSHUB_MAX_MESSAGE: '200', WSHUB_ALLOW_ORIGIN: ` ${C}, ${D} `, WSHUB_DEFLATE_LEVEL: '9',
    };
    await withRunning(['--config', file], env, async (srv) => {
      await assertMessageLimit(srv.port, C, 200, 200);
      await assertMessageLimit(srv.port, C, 201, 200);
      assert.equal(await upgradeStatus(srv.port, A), 403, `${A}: the file's list is gone`);
      assert.equal(await upgradeStatus(srv.port, B), 403, `${B}: the file's list is gone`);
      assert.equal(await upgradeStatus(srv.port, C), 101, C);
      assert.equal(await upgradeStatus(srv.port, D), 101, D);
    });
    await withRunning(['--config', file, '--max-message', '300', '--allow-origin', B], env, async (srv) => {
      await assertMessageLimit(srv.port, B, 300, 300);
      await assertMessageLimit(srv.port, B, 301, 300);
      assert.equal(await upgradeStatus(srv.port, A), 403, A);
      assert.equal(await upgradeStatus(srv.port, B), 101, B);
      assert.equal(await upgradeStatus(srv.port, C), 403, `${C}: the environment's list is gone`);
    });
  });
});

test('WSHUB_CONFIG names the file, --config beats it; WSHUB_ECHO=false undoes the file\'s echo', async () => {
  await withConfig((pub) => ({ host: HOST, port: 0, threads: 1, public: pub, echo: true }),
    async ({ file, base }) => {
      const other = path.join(base, 'other.json');
      await fs.writeFile(other, JSON.stringify({ port: 'not this file' }));
      await withRunning([], { WSHUB_CONFIG: other, WSHUB_NOT_AN_OPTION: 'x' }, async () => {
        assert.fail('the other file has a bad port');
      }).catch((e) => assert.match(e.message, /exited early \(\{"code":2/));
      await withRunning([], { WSHUB_CONFIG: file, WSHUB_NOT_AN_OPTION: 'x' }, async (srv) => {
        assert.match(srv.stderr, /echo mode, 1 thread\)/);
        await assertMessageLimit(srv.port, null, 5, 64 * 1024 * 1024);
      });
      await withRunning(['--config', file], { WSHUB_CONFIG: other }, async (srv) => {
        assert.match(srv.stderr, /echo mode, 1 thread\)/);
      });
      await withRunning([], { WSHUB_CONFIG: file, WSHUB_ECHO: 'false' }, async (srv) => {
        assert.match(srv.stderr, /\(public [^,]*, 1 thread\)/, 'no echo mode');
        // The chat greets a new WebSocket client with its welcome.
        const conn = await rawOpen(srv.port);
        const f = await readFrame(conn);
        assert.equal(f.opcode, OP.TEXT);
        assert.equal(JSON.parse(f.payload.toString('utf8')).type, 'welcome');
        conn.destroy();
      });
    });
});

// [what, file contents (undefined: no file), environment, arguments
// (FILE: the file's path), the stderr line]
const ERRORS = [
  ['missing file', undefined, {}, ['--config', '/nonexistent-wshub/c.json'],
    'wshub: /nonexistent-wshub/c.json: cannot read: No such file or directory'],
  ['a directory', undefined, {}, ['--config', '/'], 'wshub: /: cannot read: Is a directory'],
  ['missing file named by WSHUB_CONFIG', undefined, { WSHUB_CONFIG: '/nonexistent-wshub/e.json' }, [],
    'wshub: /nonexistent-wshub/e.json: cannot read: No such file or directory'],
  ['truncated JSON', '{"port": 1,', {}, ['--config', 'FILE'],
    "wshub: FILE:1:11: string or '}' expected near end of file"],
  ['JSON syntax', '{"port": 1 "echo": true}', {}, ['--config', 'FILE'],
    "wshub: FILE:1:17: '}' expected near '\"echo\"'"],
  ['duplicate key', '{"port": 1, "port": 2}', {}, ['--config', 'FILE'],
    "wshub: FILE:1:18: duplicate object key near '\"port\"'"],
  ['not an object', '["--port", "1"]', {}, ['--config', 'FILE'],
    'wshub: FILE: expected a JSON object of option names and values'],
  ['unknown key', '{"prot": 8080}', {}, ['--config', 'FILE'], 'wshub: FILE: unknown option "prot"'],
  ['help in the file', '{"help": true}', {}, ['--config', 'FILE'],
    'wshub: FILE: "help" belongs on the command line, not in a file'],
  ['config in the file', '{"config": "/etc/x.json"}', {}, ['--config', 'FILE'],
    'wshub: FILE: "config" belongs on the command line, not in a file'],
  ['boolean for a value', '{"port": true}', {}, ['--config', 'FILE'],
    'wshub: FILE: "port" must be a string or a number'],
  ['null for a value', '{"redis": null}', {}, ['--config', 'FILE'],
    'wshub: FILE: "redis" must be a string or a number'],
  ['list for a single value', '{"port": [1, 2]}', {}, ['--config', 'FILE'],
    'wshub: FILE: "port" takes one value, not a list'],
  ['object for a list', '{"allow-origin": {"a": 1}}', {}, ['--config', 'FILE'],
    'wshub: FILE: "allow-origin" must be a string or a list of strings'],
  ['null in a list', `{"ws-path": ["/a", null]}`, {}, ['--config', 'FILE'],
    'wshub: FILE: "ws-path" must be a string or a list of strings'],
  ['string for a flag', '{"echo": "yes"}', {}, ['--config', 'FILE'],
    'wshub: FILE: "echo" must be true or false'],
  ['bad port value', '{"port": 70000}', {}, ['--config', 'FILE'],
    'wshub: FILE: invalid value \'70000\' for "port": expected a port number 0-65535'],
  ['bad size', '{"max-message": "1Q"}', {}, ['--config', 'FILE'],
    'wshub: FILE: invalid value \'1Q\' for "max-message": expected a positive size'],
  ['bad item in a list', `{"allow-origin": ["${A}", "ftp"]}`, {}, ['--config', 'FILE'],
    'wshub: FILE: invalid value \'ftp\' for "allow-origin": expected an origin like https://host[:port] or *'],
  ['bad real number', '{"ping-interval": -0.5}', {}, ['--config', 'FILE'],
    'wshub: FILE: invalid value \'-0.5\' for "ping-interval": expected seconds'],
  ['bad variable', undefined, { WSHUB_PORT: 'abc' }, [],
    "wshub: invalid value 'abc' for WSHUB_PORT: expected a port number 0-65535"],
  ['bad variable beside a good file', '{"port": 0}', { WSHUB_LOG_LEVEL: 'loud' }, ['--config', 'FILE'],
    "wshub: invalid value 'loud' for WSHUB_LOG_LEVEL: expected error, warn, info or debug"],
  ['bad flag variable', undefined, { WSHUB_ECHO: 'yes' }, [],
    "wshub: invalid value 'yes' for WSHUB_ECHO: expected true or false"],
  ['bad item in a variable list', undefined, { WSHUB_WS_PATH: '/a,b' }, [],
    "wshub: invalid value 'b' for WSHUB_WS_PATH: must start with /"],
  ['command-line mistakes come first', '{"port": "abc"}', { WSHUB_PORT: 'abc' }, ['--config', 'FILE', '--bogus'],
    "wshub: unknown option '--bogus'"],
];

for (const [what, contents, env, args, line] of ERRORS) {
  test(`error: ${what} → exit 2, "${line.slice(7, 60)}…"`, async () => {
    await withConfig(contents ?? {}, async ({ file }) => {
      const argv = args.map((a) => (a === 'FILE' ? file : a));
      const r = await runToExit(argv, undefined, { env: { WSHUB_CONFIG: undefined, ...env } });
      assert.equal(r.signal, null, r.stderr);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `${line.replaceAll('FILE', file)}\n${TRY}`);
      assert.equal(r.stdout, '');
    });
  });
}

test('--help and --version answer even with a bad file and variable', async () => {
  await withConfig('{"port": "abc"}', async ({ file }) => {
    const env = { WSHUB_CONFIG: file, WSHUB_PORT: 'abc' };
    const h = await runToExit(['--config', file, '--help'], undefined, { env });
    assert.equal(h.code, 0, h.stderr);
    assert.match(h.stdout, /^Usage: wshub \[options\]/);
    const v = await runToExit(['-V'], undefined, { env });
    assert.equal(v.code, 0, v.stderr);
    assert.match(v.stdout, /^wshub \d+\.\d+\.\d+\n$/);
  });
});

// Every option --help lists, but --config, --help and --version: set to
// "1" (or true, for a flag) in a file, in a variable and on the command
// line, each followed by a bad --backlog on the command line. The verdict
// must be the same everywhere: the option's own complaint about "1" (naming
// the file and key or the variable), or, having accepted it, the complaint
// about the backlog (or whatever else the program answers). An option that
// reached the parser from only some of the three would differ.
test('every option --help lists is accepted in the file and the environment, with the command line\'s verdict', async () => {
  const help = (await runToExit(['--help'])).stdout;
  const opts = [...help.matchAll(/^ {2}(?:-[A-Za-z], )?--([a-z][a-z0-9-]*)(?: ([^ \n]+))?/gm)]
    .map((m) => ({ name: m[1], flag: m[2] === undefined }))
    .filter((o) => !['config', 'help', 'version'].includes(o.name));
  assert.ok(opts.length >= 30, `options found in --help: ${opts.map((o) => o.name)}`);
  assert.ok(opts.some((o) => o.name === 'echo' && o.flag), 'echo is a flag');
  assert.ok(opts.some((o) => o.name === 'port' && !o.flag), 'port takes a value');
  await withConfig({}, async ({ base }) => {
    const run = async (o) => {
      const last = o.name === 'backlog' ? ['--port', 'bad'] : ['--backlog', 'bad'];
      const file = path.join(base, `${o.name}.json`);
      await fs.writeFile(file, JSON.stringify({ [o.name]: o.flag ? true : '1' }));
      const variable = `WSHUB_${o.name.toUpperCase().replaceAll('-', '_')}`;
      const noEnv = { WSHUB_CONFIG: undefined };
      const [cli, viaFile, viaEnv] = await Promise.all([
        runToExit([o.flag ? `--${o.name}` : `--${o.name}=1`, ...last], undefined, { env: noEnv }),
        runToExit(['--config', file, ...last], undefined, { env: noEnv }),
        runToExit(last, undefined, { env: { ...noEnv, [variable]: o.flag ? 'true' : '1' } }),
      ]);
      assert.notEqual(cli.code, 0, `--${o.name}: ${cli.stderr}`);
      // The option's own complaint in the usual words names where the value
      // came from; any other answer must be the same from all three.
      const m = /^wshub: invalid value '(.*)' for --([a-z0-9-]+): (.*)\n/.exec(cli.stderr);
      const own = m !== null && m[2] === o.name;
      let wantFile = cli.stderr;
      let wantEnv = cli.stderr;
      if (own) {
        const [, val, name, why] = m;
        wantFile = `wshub: ${file}: invalid value '${val}' for "${name}": ${why}\n${TRY}`;
        wantEnv = `wshub: invalid value '${val}' for ${variable}: ${why}\n${TRY}`;
      }
      const fileErr = viaFile.stderr.replace(`wshub: options read from ${file}\n`, '');
      assert.equal(viaFile.code, cli.code, `"${o.name}" in a file: ${viaFile.stderr}`);
      assert.equal(fileErr, wantFile, `"${o.name}" in a file`);
      assert.equal(viaEnv.code, cli.code, `${variable}: ${viaEnv.stderr}`);
      assert.equal(viaEnv.stderr, wantEnv, variable);
      return own;
    };
    let refused = 0;
    for (let i = 0; i < opts.length; i += 2) {
      const verdicts = await Promise.all(opts.slice(i, i + 2).map(run));
      refused += verdicts.filter(Boolean).length;
    }
    // "1" is no ws-path, origin, log level, on|off, client window or URL:
    // those options answered themselves, the others passed it on.
    assert.ok(refused >= 6 && refused < opts.length, `options that refused "1": ${refused}`);
  });
});

test('contrib/wshub.json, the example configuration, runs a chat', async () => {
  const file = path.join(CONTRIB, 'wshub.json');
  const tree = await makeTree({ 'index.html': INDEX_HTML });
  try {
    await withRunning(['--config', file, '--host', HOST, '--port', '0', '--public', tree.pub], {},
      async (srv) => {
        assert.ok(srv.stderr.includes(`wshub: options read from ${file}\n`), srv.stderr);
        const res = await get(srv.port, '/index.html');
        assert.equal(res.status, 200);
        assert.equal(res.text, INDEX_HTML);
        const example = JSON.parse(await fs.readFile(file, 'utf8'));
        for (const origin of example['allow-origin']) {
          assert.equal(await upgradeStatus(srv.port, origin), 101, origin);
        }
        assert.equal(await upgradeStatus(srv.port, 'https://elsewhere.example'), 403);
      });
  } finally {
    await tree.cleanup();
  }
});

// The unit as shipped, but starting the binary under test (systemd-analyze
// verify wants ExecStart's program to exist). Skipped where systemd is not
// installed.
function systemdAnalyze() {
  try {
    execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('contrib/wshub.service passes systemd-analyze verify and outlasts --shutdown-timeout',
  { skip: !systemdAnalyze() && 'systemd-analyze is not installed' }, async () => {
    const unit = await fs.readFile(path.join(CONTRIB, 'wshub.service'), 'utf8');
    assert.match(unit, /^ExecStart=\/usr\/local\/bin\/wshub --config \/etc\/wshub\/wshub\.json$/m);
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    assert.match(unit, /^KillSignal=SIGTERM$/m);
    assert.match(unit, /^CapabilityBoundingSet=$/m);
    assert.match(unit, /^SystemCallFilter=@system-service$/m);
    const stop = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]);
    const example = JSON.parse(await fs.readFile(path.join(CONTRIB, 'wshub.json'), 'utf8'));
    assert.ok(stop > Number(example['shutdown-timeout']),
      `TimeoutStopSec ${stop} > shutdown-timeout ${example['shutdown-timeout']}`);
    const tree = await makeTree({});
    try {
      const bin = path.resolve(process.env.WSHUB_BIN || '/work/main/build/wshub');
      const copy = path.join(tree.base, 'wshub.service');
      await fs.writeFile(copy, unit.replace('/usr/local/bin/wshub', bin));
      // An unknown or misspelt directive is only a warning (status 0):
      // nothing may be said about this unit at all.
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, '');
      const about = r.stderr.split('\n').filter((l) => l.includes('wshub'));
      assert.deepEqual(about, [], r.stderr);
    } finally {
      await tree.cleanup();
    }
  });
