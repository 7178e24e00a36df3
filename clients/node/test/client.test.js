// The client against the real fluxd, with secrets set through the real
// fluxctl. Secret values are compared with assertValue(), which never prints
// them.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FluxSecretsError, SecretNotFoundError, createSecrets } from '../src/index.js';
import { TestDaemon } from '../testing/fluxd.js';
import { assertValue, rejection } from '../testing/assert.js';

const PKG_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const VALUES = {
  OPENAI_API_KEY: 'sk-test-3f9a1c7e5b2d4f60',
  UTF8_MIXED: 'héllo wörld — ключ 秘密 🔑 \u{1F600}',
  WITH_NEWLINES: 'line one\nline two\r\n\ttabbed',
  EMPTY: '',
  // 65536 bytes, the largest value fluxd stores, of 2-byte characters.
  BIG_UTF8: 'é'.repeat(32 * 1024),
  // 65536 bytes mixing 1-, 2-, 3- and 4-byte characters.
  BIG_MIXED: ('a' + 'é' + '€' + '𝄞').repeat(6553) + 'abcdef',
};

let daemon;
let socketPath;
const clients = [];

/** A client for the `app` project, closed at the end. */
function client(opts = {}) {
  const c = createSecrets({ socketPath, ...opts });
  clients.push(c);
  return c;
}

/** Handshakes made by this package so far, from fluxd's debug log. */
function ourHandshakes() {
  return daemon.log().split('\n').filter((l) => l.includes('handshake') && l.includes('client=@flux/secrets/'))
    .length;
}

before(async () => {
  daemon = await TestDaemon.start();
  await daemon.createProject('app');
  for (const [name, value] of Object.entries(VALUES)) await daemon.setSecret('app', name, value);
  socketPath = daemon.projectSocket('app');
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await daemon?.cleanup();
});

describe('get', () => {
  test('returns the value set with fluxctl', async () => {
    const c = client();
    assertValue(await c.get('OPENAI_API_KEY'), VALUES.OPENAI_API_KEY, 'OPENAI_API_KEY');
  });

  test('multi-byte UTF-8, newlines, the empty string and 64 KiB values round-trip', async () => {
    const c = client();
    assert.equal(Buffer.byteLength(VALUES.BIG_UTF8), 65536);
    assert.equal(Buffer.byteLength(VALUES.BIG_MIXED), 65536);
    for (const [name, want] of Object.entries(VALUES)) {
      assertValue(await c.get(name), want, name);
    }
  });

  test('an unset secret rejects with SecretNotFoundError saying how to set it', async () => {
    const c = client();
    const err = await rejection(c.get('NOT_SET_ANYWHERE'), 'get(NOT_SET_ANYWHERE)');
    assert.ok(err instanceof SecretNotFoundError, `expected SecretNotFoundError, got ${err?.name}`);
    assert.ok(err instanceof FluxSecretsError);
    assert.equal(err.code, 'not_found');
    assert.equal(err.codeNumber, 1);
    assert.equal(err.key, 'NOT_SET_ANYWHERE');
    assert.match(err.message, /secret NOT_SET_ANYWHERE is not set/);
    assert.match(err.message, /set it with `fluxctl secrets set NOT_SET_ANYWHERE/);
  });

  test('the connection stays usable after an error answer', async () => {
    const c = client();
    await rejection(c.get('MISSING_ONE'), 'get(MISSING_ONE)');
    assertValue(await c.get('OPENAI_API_KEY'), VALUES.OPENAI_API_KEY, 'OPENAI_API_KEY');
  });
});

describe('get with a fallback', () => {
  test('resolves to the fallback when the secret is not set', async () => {
    const c = client();
    assertValue(await c.get('NOT_SET', 'the-fallback'), 'the-fallback', 'NOT_SET');
    assertValue(await c.get('NOT_SET', null), null, 'NOT_SET');
    const obj = {};
    assertValue(await c.get('NOT_SET', obj), obj, 'NOT_SET');
  });

  test('an explicit undefined counts as a fallback', async () => {
    const c = client();
    assertValue(await c.get('NOT_SET', undefined), undefined, 'NOT_SET');
  });

  test('returns the value when the secret is set, even an empty one', async () => {
    const c = client();
    assertValue(await c.get('OPENAI_API_KEY', 'fallback'), VALUES.OPENAI_API_KEY, 'OPENAI_API_KEY');
    assertValue(await c.get('EMPTY', 'fallback'), '', 'EMPTY');
  });
});

describe('invalid names', () => {
  const bad = ['', '1A', 'A-B', 'A B', 'A.B', 'Ä', 'A\n', '../x', 'A'.repeat(129), 'a\u0000b'];

  test('reject with invalid_name, with or without a fallback, before reaching fluxd', async () => {
    // A socket that does not exist: the name must fail first.
    const offline = createSecrets({ socketPath: '/nonexistent/flux/app.sock' });
    for (const c of [client(), offline]) {
      for (const name of bad) {
        for (const args of [[name], [name, 'fallback']]) {
          const err = await rejection(c.get(...args), `get(${JSON.stringify(name)})`);
          assert.ok(err instanceof FluxSecretsError, `${JSON.stringify(name)}: ${err}`);
          assert.equal(err.code, 'invalid_name', JSON.stringify(name));
          assert.equal(err.codeNumber, 2);
          assert.match(err.message, /invalid secret name/);
          assert.match(err.message, /start with a letter or '_'/);
        }
      }
    }
    assert.match(inspect(offline), /state: 'idle'/);
  });

  test('non-string names reject with invalid_name', async () => {
    const c = client();
    for (const name of [undefined, null, 42, {}, Symbol('x')]) {
      const err = await rejection(c.get(name, 'fallback'), `get(${String(name)})`);
      assert.equal(err.code, 'invalid_name');
    }
  });

  test('the longest valid name (128 characters) is accepted', async () => {
    const c = client();
    assertValue(await c.get('A'.repeat(128), 'fb'), 'fb', 'A x 128');
    assertValue(await c.get('_', 'fb'), 'fb', '_');
  });
});

describe('rotation and deletion', () => {
  test('an already-open client sees a rotated value on its next get', async () => {
    const c = client();
    await daemon.setSecret('app', 'ROTATED', 'old-value-1');
    assertValue(await c.get('ROTATED'), 'old-value-1', 'ROTATED');
    await daemon.setSecret('app', 'ROTATED', 'new-value-2');
    assertValue(await c.get('ROTATED'), 'new-value-2', 'ROTATED');
    await daemon.deleteSecret('app', 'ROTATED');
    assertValue(await c.get('ROTATED', 'gone'), 'gone', 'ROTATED');
    const err = await rejection(c.get('ROTATED'), 'get(ROTATED) after delete');
    assert.equal(err.code, 'not_found');
  });
});

describe('concurrency', () => {
  test('100 concurrent gets on one client share one connection and all get their own answer', async () => {
    const names = Array.from({ length: 10 }, (_, i) => `CONC_${i}`);
    for (const [i, name] of names.entries()) await daemon.setSecret('app', name, `value-${i}-${'x'.repeat(i * 100)}`);
    const c = client();
    const before = ourHandshakes();
    const jobs = [];
    for (let i = 0; i < 100; i++) {
      const kind = i % 5;
      if (kind <= 1) {
        const name = names[i % names.length];
        const n = names.indexOf(name);
        jobs.push(c.get(name).then((v) => assertValue(v, `value-${n}-${'x'.repeat(n * 100)}`, name)));
      } else if (kind === 2) {
        jobs.push(c.get(`ABSENT_${i}`, i).then((v) => assertValue(v, i, `ABSENT_${i}`)));
      } else if (kind === 3) {
        jobs.push(
          rejection(c.get(`ABSENT_${i}`), `get(ABSENT_${i})`).then((e) => {
            assert.equal(e.code, 'not_found');
            assert.equal(e.key, `ABSENT_${i}`);
          }),
        );
      } else {
        jobs.push(c.get('BIG_MIXED').then((v) => assertValue(v, VALUES.BIG_MIXED, 'BIG_MIXED')));
      }
    }
    await Promise.all(jobs);
    assert.equal(ourHandshakes() - before, 1, 'one connection (one handshake) for 100 gets');
    assert.match(inspect(c), /state: 'connected'/);
    assert.match(inspect(c), /pending: 0/);
  });
});

describe('project socket errors', () => {
  test('a deleted project rejects even with a fallback', async () => {
    await daemon.createProject('doomed');
    await daemon.setSecret('doomed', 'K', 'v');
    const c = client({ socketPath: daemon.projectSocket('doomed'), reconnectDelayMs: 50 });
    assertValue(await c.get('K'), 'v', 'K');
    await daemon.deleteProject('doomed');
    const err = await rejection(c.get('K', 'fallback'), 'get(K) on a deleted project');
    assert.ok(err instanceof FluxSecretsError);
    assert.notEqual(err.code, 'not_found');
  });

  test("fluxd's control socket is refused with a clear message", async () => {
    const c = client({ socketPath: daemon.controlSocket });
    const err = await rejection(c.get('A', 'fallback'), 'get on the control socket');
    assert.equal(err.code, 'bad_request');
    assert.match(err.message, /control socket, not a project socket/);
  });
});

describe('no value leaks', () => {
  test('inspect shows the socket and state, never a value', async () => {
    const c = client();
    const pending = c.get('OPENAI_API_KEY');
    const during = inspect(c, { depth: Infinity, showHidden: true });
    assertValue(await pending, VALUES.OPENAI_API_KEY, 'OPENAI_API_KEY');
    const shown = during + inspect(c, { depth: Infinity, showHidden: true }) + JSON.stringify(c) + String(c);
    assert.ok(!shown.includes(VALUES.OPENAI_API_KEY), 'inspect output holds a value');
    assert.ok(shown.includes(socketPath));
    assert.match(shown, /project: 'app'/);
  });

  test('error messages never hold a value', async () => {
    const c = client();
    const errors = [
      await rejection(c.get('NOPE'), 'get(NOPE)'),
      await rejection(c.get('bad-name'), 'get(bad-name)'),
      await rejection(createSecrets({ socketPath: `${socketPath}.missing` }).get('OPENAI_API_KEY'), 'get offline'),
    ];
    for (const err of errors) {
      const text = `${err.message} ${err.stack} ${inspect(err)}`;
      for (const value of Object.values(VALUES).filter((v) => v.length > 0)) {
        assert.ok(!text.includes(value), `an error (${err.code}) holds a value`);
      }
    }
  });
});

describe('configuration', () => {
  test('FLUX_SECRETS_SOCKET is the default socket', async () => {
    const saved = process.env.FLUX_SECRETS_SOCKET;
    process.env.FLUX_SECRETS_SOCKET = socketPath;
    try {
      const c = createSecrets();
      clients.push(c);
      assert.equal(c.socketPath, socketPath);
      assertValue(await c.get('OPENAI_API_KEY'), VALUES.OPENAI_API_KEY, 'OPENAI_API_KEY');
    } finally {
      if (saved === undefined) delete process.env.FLUX_SECRETS_SOCKET;
      else process.env.FLUX_SECRETS_SOCKET = saved;
    }
  });

  test('an unusable socket path is refused up front', () => {
    for (const bad of [`/tmp/${'x'.repeat(120)}.sock`, '/tmp/a\0b.sock']) {
      assert.throws(
        () => createSecrets({ socketPath: bad }),
        (err) => err instanceof FluxSecretsError && err.code === 'not_configured' && /not usable/.test(err.message),
      );
    }
  });

  test('without a socket path, createSecrets says to set FLUX_SECRETS_SOCKET', () => {
    const saved = process.env.FLUX_SECRETS_SOCKET;
    try {
      for (const value of [undefined, '']) {
        if (value === undefined) delete process.env.FLUX_SECRETS_SOCKET;
        else process.env.FLUX_SECRETS_SOCKET = value;
        assert.throws(
          () => createSecrets(),
          (err) => err instanceof FluxSecretsError && err.code === 'not_configured' && /set FLUX_SECRETS_SOCKET/.test(err.message),
        );
      }
    } finally {
      if (saved === undefined) delete process.env.FLUX_SECRETS_SOCKET;
      else process.env.FLUX_SECRETS_SOCKET = saved;
    }
  });
});

describe('lifecycle', () => {
  test('close() rejects waiting gets with code closed; a later get reconnects', async () => {
    const c = client();
    assertValue(await c.get('OPENAI_API_KEY'), VALUES.OPENAI_API_KEY, 'OPENAI_API_KEY');
    const waiting = rejection(c.get('OPENAI_API_KEY'), 'get during close()');
    await c.close();
    const err = await waiting;
    assert.equal(err.code, 'closed');
    assertValue(await c.get('OPENAI_API_KEY'), VALUES.OPENAI_API_KEY, 'OPENAI_API_KEY');
    await c.close();
    await c.close();
  });

  /** Runs `node ARGS` with FLUX_SECRETS_SOCKET set; resolves to { status, stdout, stderr, ms }. */
  function runNode(args, timeoutMs = 15_000) {
    return new Promise((resolve, reject) => {
      const started = Date.now();
      const child = spawn(process.execPath, args, {
        cwd: PKG_DIR,
        env: { ...process.env, FLUX_SECRETS_SOCKET: socketPath },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const out = [];
      const err = [];
      child.stdout.on('data', (c) => out.push(c));
      child.stderr.on('data', (c) => err.push(c));
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`node ${args[0]} did not exit within ${timeoutMs} ms (an idle client kept it alive?)`));
      }, timeoutMs);
      child.on('error', reject);
      child.on('close', (status) => {
        clearTimeout(timer);
        resolve({
          status,
          stdout: Buffer.concat(out).toString(),
          stderr: Buffer.concat(err).toString(),
          ms: Date.now() - started,
        });
      });
    });
  }

  test('an idle client does not keep the process alive', async () => {
    const script = `
      import { createSecrets } from '@flux/secrets';
      const secrets = createSecrets();
      const v = await secrets.get('OPENAI_API_KEY');
      const [a, b] = await Promise.all([secrets.get('EMPTY'), secrets.get('NOPE', 'fb')]);
      console.log(v.length, a.length, b);
      // no close(): the process must still exit
    `;
    const res = await runNode(['--input-type=module', '-e', script]);
    assert.equal(res.status, 0, res.stderr);
    assert.equal(res.stdout.trim(), `${VALUES.OPENAI_API_KEY.length} 0 fb`);
  });

  test('example/call_openai.js runs under example/run.js and exits on its own', async () => {
    const res = await runNode(['example/run.js', 'example/call_openai.js', '{"prompt":"Hi."}']);
    assert.equal(res.status, 0, res.stderr);
    assert.ok(!res.stdout.includes(VALUES.OPENAI_API_KEY), 'the example printed the key');
    const out = JSON.parse(res.stdout);
    assert.equal(out.function, 'call_openai');
    assert.equal(out.result.statusCode, 200);
    assert.equal(out.result.body.keyLength, VALUES.OPENAI_API_KEY.length);
    assert.equal(out.result.body.model, 'gpt-4o-mini');
  });
});
