// @flux/functions against the real fluxd: the definitions it refuses, the
// ctx that invoke() builds (secrets, env, the host's own pieces), the one
// shared client and connection, and the error when no socket is set.
//
// The packages are loaded from a temp project's node_modules
// (testing/install.js), the way a function's code finds them.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TestDaemon } from '../../node/testing/fluxd.js';
import { assertValue, rejection } from '../../node/testing/assert.js';
import { installedProject } from '../testing/install.js';

const VALUES = { OPENAI_API_KEY: 'sk-functions-test-5d1f0b7e', OTHER_KEY: 'other-project-value-91' };

let daemon;
let project;
let fx; // import('@flux/functions')
let sx; // import('@flux/secrets')
const saved = {};

/** Handshakes made by @flux/secrets clients so far, from fluxd's debug log. */
const handshakes = () =>
  daemon.log().split('\n').filter((l) => l.includes('handshake') && l.includes('client=@flux/secrets/')).length;

/** Runs `fn` with the given variables set (undefined: unset), then puts them back. */
async function withEnv(vars, fn) {
  const before = {};
  for (const [k, v] of Object.entries(vars)) {
    before[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

before(async () => {
  daemon = await TestDaemon.start();
  await daemon.createProject('app');
  await daemon.createProject('other');
  await daemon.setSecret('app', 'OPENAI_API_KEY', VALUES.OPENAI_API_KEY);
  await daemon.setSecret('other', 'OTHER_KEY', VALUES.OTHER_KEY);
  project = await installedProject();
  fx = await project.load('@flux/functions');
  sx = await project.load('@flux/secrets');
  for (const k of ['FLUX_SECRETS_SOCKET', 'FLUX_PROJECT']) saved[k] = process.env[k];
  process.env.FLUX_SECRETS_SOCKET = daemon.projectSocket('app');
  delete process.env.FLUX_PROJECT;
});

after(async () => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  await project?.cleanup();
  await daemon?.cleanup();
});

describe('defineFunction', () => {
  test('returns a frozen { name, handler, invoke }', () => {
    const handler = async () => 1;
    const fn = fx.defineFunction({ name: 'f', handler });
    assert.deepEqual(Object.keys(fn).sort(), ['handler', 'invoke', 'name']);
    assert.equal(fn.name, 'f');
    assert.equal(fn.handler, handler);
    assert.ok(Object.isFrozen(fn));
  });

  test('refuses a definition it cannot use, saying what is wrong', () => {
    const cases = [
      [undefined, /expects \{ name, handler \}, not a undefined/],
      [null, /expects \{ name, handler \}, not null/],
      ['call_openai', /expects \{ name, handler \}, not a string/],
      [[], /not an array/],
      [{ handler() {} }, /the function has no name: defineFunction\(\{ name: "call_openai"/],
      [{ name: '', handler() {} }, /name must be a non-empty string, not ""/],
      [{ name: '  ', handler() {} }, /name must be a non-empty string, not " {2}"/],
      [{ name: 7, handler() {} }, /name must be a non-empty string, not a number/],
      [{ name: 'call_openai' }, /function call_openai has no handler: add handler: async \(\{ input, ctx \}\) =>/],
      [{ name: 'call_openai', handler: 'x' }, /the handler of call_openai must be a function, not a string/],
      [{ name: 'f', handle() {} }, /unknown property "handle": a definition has only name and handler/],
      [{ name: 'f', handler() {}, timeout: 1, retries: 2 }, /unknown properties "timeout", "retries"/],
    ];
    for (const [bad, message] of cases) {
      assert.throws(() => fx.defineFunction(bad), (err) => err instanceof TypeError && message.test(err.message), String(message));
    }
  });
});

describe('invoke', () => {
  test('ctx.secrets.get(key) and get(key, fallback) read from fluxd', async () => {
    const fn = fx.defineFunction({
      name: 'reader',
      handler: async ({ input, ctx }) => ({
        input,
        key: await ctx.secrets.get('OPENAI_API_KEY'),
        region: await ctx.secrets.get('AWS_REGION', 'us-east-1'),
      }),
    });
    const out = await fn.invoke({ prompt: 'hi' });
    assert.deepEqual(out.input, { prompt: 'hi' });
    assertValue(out.key, VALUES.OPENAI_API_KEY, 'OPENAI_API_KEY');
    assert.equal(out.region, 'us-east-1');

    const missing = fx.defineFunction({ name: 'missing', handler: ({ ctx }) => ctx.secrets.get('NOT_SET_HERE') });
    const err = await rejection(missing.invoke({}), 'get NOT_SET_HERE');
    assert.ok(err instanceof fx.SecretNotFoundError, 'a SecretNotFoundError');
    assert.equal(fx.SecretNotFoundError, sx.SecretNotFoundError, "the class is @flux/secrets' own");
    assert.match(err.message, /fluxctl secrets set NOT_SET_HERE/);
  });

  test('ctx.env is a frozen copy of the environment, taken when first read', async () => {
    const fn = fx.defineFunction({ name: 'env', handler: ({ ctx }) => ctx.env });
    const env = await withEnv({ FLUX_FN_TEST_TIER: 'gold' }, () => fn.invoke(null));
    assert.equal(env.FLUX_FN_TEST_TIER, 'gold');
    assert.equal(env.FLUX_SECRETS_SOCKET, daemon.projectSocket('app'));
    assert.ok(Object.isFrozen(env), 'frozen');
    assert.throws(() => {
      env.FLUX_FN_TEST_TIER = 'x'; // modules are strict: a frozen object throws
    }, TypeError);
    assert.equal(process.env.FLUX_FN_TEST_TIER, undefined, 'a copy: the process environment is not the ctx');
    assert.equal((await fn.invoke(null)).FLUX_FN_TEST_TIER, undefined, 'the next invocation sees the change');

    // Taken at the first read, not when invoke was called.
    const late = fx.defineFunction({
      name: 'late',
      handler: async ({ ctx }) => {
        process.env.FLUX_FN_TEST_LATE = 'yes';
        try {
          return ctx.env.FLUX_FN_TEST_LATE;
        } finally {
          delete process.env.FLUX_FN_TEST_LATE;
        }
      },
    });
    assert.equal(await late.invoke(null), 'yes');
  });

  test("a host's own pieces are passed through; its secrets and env replace the defaults", async () => {
    const other = sx.createSecrets({ socketPath: daemon.projectSocket('other') });
    try {
      let got;
      const fn = fx.defineFunction({
        name: 'pieces',
        handler: async ({ input, ctx }) => {
          got = { input, requestId: ctx.requestId, secrets: ctx.secrets, env: ctx.env };
          return ctx.secrets.get('OTHER_KEY');
        },
      });
      const env = { TIER: 'free' };
      const given = { requestId: 'req-1', secrets: other, env };
      assertValue(await fn.invoke({ n: 1 }, given), VALUES.OTHER_KEY, 'OTHER_KEY');
      assert.deepEqual(got.input, { n: 1 });
      assert.equal(got.requestId, 'req-1');
      assert.equal(got.secrets, other);
      assert.equal(got.env, env);
      assert.deepEqual(Object.keys(given), ['requestId', 'secrets', 'env'], "the host's ctx is not changed");

      for (const bad of [null, 'x', 7, []]) {
        const err = await rejection(fn.invoke(1, bad), `invoke with ctx ${typeof bad}`);
        assert.ok(err instanceof TypeError);
        assert.match(err.message, /^pieces\.invoke\(input, ctx\): ctx must be an object/);
      }
    } finally {
      await other.close();
    }
  });

  test('every invocation of every function shares one client and one connection', async () => {
    const seen = new Set();
    const peek = fx.defineFunction({
      name: 'peek',
      handler: async ({ ctx }) => {
        seen.add(ctx.secrets);
        return ctx.secrets.get('OPENAI_API_KEY');
      },
    });
    const peek2 = fx.defineFunction({ name: 'peek2', handler: peek.handler });
    await peek.invoke(null); // connects, if no earlier test did
    const before = handshakes();
    const results = await Promise.all([
      ...Array.from({ length: 20 }, () => peek.invoke(null)),
      ...Array.from({ length: 5 }, () => peek2.invoke(null)),
    ]);
    for (const r of results) assertValue(r, VALUES.OPENAI_API_KEY, 'OPENAI_API_KEY');
    assert.equal(seen.size, 1, 'ctx.secrets is one client');
    assert.equal([...seen][0].socketPath, daemon.projectSocket('app'));
    assert.equal(handshakes(), before, 'no new connection for 25 invocations');

    // import and require give one module, and so the same shared client.
    const required = project.require('@flux/functions');
    assert.equal(required.defineFunction, fx.defineFunction, 'one module instance');
    const viaRequire = await required.defineFunction({ name: 'cjs', handler: ({ ctx }) => ctx.secrets }).invoke();
    assert.equal(viaRequire, [...seen][0]);
  });

  test('without FLUX_SECRETS_SOCKET a handler runs until it reads ctx.secrets, which says what to set', async () => {
    const plain = fx.defineFunction({ name: 'plain', handler: ({ input, ctx }) => `${input * 2} ${ctx.env.HOME !== undefined}` });
    const reads = fx.defineFunction({ name: 'call_openai', handler: ({ ctx }) => ctx.secrets.get('OPENAI_API_KEY', 'fallback') });
    await withEnv({ FLUX_SECRETS_SOCKET: undefined, FLUX_PROJECT: undefined }, async () => {
      assert.equal(await plain.invoke(21), `42 ${process.env.HOME !== undefined}`);
      const err = await rejection(reads.invoke({}), 'invoke without a socket');
      assert.ok(err instanceof fx.FluxSecretsError);
      assert.equal(err.code, 'not_configured');
      assert.match(err.message, /^function call_openai read ctx\.secrets, but FLUX_SECRETS_SOCKET is not set: /);
      assert.match(err.message, /set FLUX_SECRETS_SOCKET to the project's socket, <runtime>\/projects\/<project>\.sock/);
      assert.match(err.message, /`fluxd dev -- CMD` or `fluxctl run -- CMD`/);
    });
    await withEnv({ FLUX_SECRETS_SOCKET: '', FLUX_PROJECT: 'my-app' }, async () => {
      const err = await rejection(reads.invoke({}), 'invoke with an empty socket variable');
      assert.equal(err.code, 'not_configured');
      assert.match(err.message, /FLUX_PROJECT=my-app names the project, not the socket/);
      assert.match(err.message, /<runtime>\/projects\/my-app\.sock/);
    });
  });

  test("the handler's errors reach the caller as they are; invoke always returns a promise", async () => {
    const boom = new Error('sync throw');
    const thrower = fx.defineFunction({
      name: 'thrower',
      handler: () => {
        throw boom;
      },
    });
    const p = thrower.invoke({});
    assert.ok(p instanceof Promise);
    assert.equal(await rejection(p, 'thrower'), boom);
    const sync = fx.defineFunction({ name: 'sync', handler: ({ input }) => input + 1 });
    const q = sync.invoke(1);
    assert.ok(q instanceof Promise);
    assert.equal(await q, 2);
  });
});
