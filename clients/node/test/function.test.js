// defineFunction against the real fluxd: what invoke() builds as ctx, the
// one shared client, a runtime's own ctx pieces, and one module instance
// whether the package is imported or required.

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, describe, test } from 'node:test';
import { FluxSecretsError, SecretNotFoundError, createSecrets, defineFunction } from '../src/index.js';
import { TestDaemon } from '../testing/fluxd.js';
import { assertValue, rejection } from '../testing/assert.js';

const VALUES = { OPENAI_API_KEY: 'sk-fn-test-0a7c3e91', OTHER_KEY: 'other-project-value-44' };

let daemon;
let savedSocket;

/** Handshakes made by this package so far, from fluxd's debug log. */
const ourHandshakes = () =>
  daemon.log().split('\n').filter((l) => l.includes('handshake') && l.includes('client=@flux/secrets/')).length;

before(async () => {
  daemon = await TestDaemon.start();
  await daemon.createProject('app');
  await daemon.createProject('other');
  await daemon.setSecret('app', 'OPENAI_API_KEY', VALUES.OPENAI_API_KEY);
  await daemon.setSecret('other', 'OTHER_KEY', VALUES.OTHER_KEY);
  savedSocket = process.env.FLUX_SECRETS_SOCKET;
  process.env.FLUX_SECRETS_SOCKET = daemon.projectSocket('app');
});

after(async () => {
  if (savedSocket === undefined) delete process.env.FLUX_SECRETS_SOCKET;
  else process.env.FLUX_SECRETS_SOCKET = savedSocket;
  await daemon?.cleanup();
});

/** The product page's function, as written there. */
const callOpenai = defineFunction({
  name: 'call_openai',
  handler: async ({ input, ctx }) => {
    const apiKey = await ctx.secrets.get('OPENAI_API_KEY');
    // (A test may compare; a real function never returns or logs the key.)
    return { prompt: input.prompt, keyLength: apiKey.length, keyMatches: apiKey === VALUES.OPENAI_API_KEY };
  },
});

describe('defineFunction', () => {
  test('returns a frozen { name, handler, invoke }', () => {
    const handler = async () => 1;
    const fn = defineFunction({ name: 'f', handler });
    assert.deepEqual(Object.keys(fn).sort(), ['handler', 'invoke', 'name']);
    assert.equal(fn.name, 'f');
    assert.equal(fn.handler, handler);
    assert.equal(typeof fn.invoke, 'function');
    assert.ok(Object.isFrozen(fn));
  });

  test('refuses a definition without a name or a handler', () => {
    for (const bad of [undefined, null, 'f', {}, { name: '', handler() {} }, { name: 7, handler() {} }, { name: 'f' }, { name: 'f', handler: 'x' }]) {
      assert.throws(() => defineFunction(bad), TypeError, JSON.stringify(bad));
    }
  });

  test('invoke reads a secret from fluxd through ctx.secrets, as the product page writes it', async () => {
    const out = await callOpenai.invoke({ prompt: 'Say hello.' });
    assert.equal(out.prompt, 'Say hello.');
    assert.equal(out.keyLength, VALUES.OPENAI_API_KEY.length);
    assert.equal(out.keyMatches, true, 'OPENAI_API_KEY: value mismatch');
  });

  test('every invocation of every function shares one client and one connection', async () => {
    const seen = new Set();
    const peek = defineFunction({
      name: 'peek',
      handler: async ({ ctx }) => {
        seen.add(ctx.secrets);
        return ctx.secrets.get('OPENAI_API_KEY');
      },
    });
    await peek.invoke(null); // connects, if no earlier test did
    const before = ourHandshakes();
    const results = await Promise.all([
      ...Array.from({ length: 20 }, () => peek.invoke(null)),
      ...Array.from({ length: 5 }, () => callOpenai.invoke({ prompt: 'x' })),
    ]);
    assert.equal(seen.size, 1, 'ctx.secrets is one client');
    assert.equal([...seen][0].socketPath, daemon.projectSocket('app'));
    assert.equal(ourHandshakes(), before, 'no new connection for 25 invocations');
    for (const r of results.slice(0, 20)) assertValue(r, VALUES.OPENAI_API_KEY, 'OPENAI_API_KEY');
  });

  test("a runtime's own ctx pieces are passed through, and its secrets replace the shared client", async () => {
    const other = createSecrets({ socketPath: daemon.projectSocket('other') });
    try {
      let got;
      const fn = defineFunction({
        name: 'pieces',
        handler: async ({ input, ctx }) => {
          got = { input, requestId: ctx.requestId, secrets: ctx.secrets };
          return ctx.secrets.get('OTHER_KEY');
        },
      });
      const given = { requestId: 'req-1', secrets: other };
      const value = await fn.invoke({ n: 1 }, given);
      assertValue(value, VALUES.OTHER_KEY, 'OTHER_KEY');
      assert.deepEqual(got.input, { n: 1 });
      assert.equal(got.requestId, 'req-1');
      assert.equal(got.secrets, other);
      assert.deepEqual(Object.keys(given), ['requestId', 'secrets'], "the runtime's ctx is not changed");

      // Pieces without secrets: the shared client is added.
      const fn2 = defineFunction({ name: 'p2', handler: ({ ctx }) => ({ id: ctx.requestId, socket: ctx.secrets.socketPath }) });
      assert.deepEqual(await fn2.invoke(undefined, { requestId: 'req-2' }), {
        id: 'req-2',
        socket: daemon.projectSocket('app'),
      });
      await assert.rejects(fn2.invoke(1, 'not an object'), TypeError);
    } finally {
      await other.close();
    }
  });

  test('a handler that reads no secret runs without FLUX_SECRETS_SOCKET; one that does gets not_configured', async () => {
    const saved = process.env.FLUX_SECRETS_SOCKET;
    delete process.env.FLUX_SECRETS_SOCKET;
    try {
      const plain = defineFunction({ name: 'plain', handler: ({ input }) => input * 2 });
      assert.equal(await plain.invoke(21), 42);
      const err = await rejection(callOpenai.invoke({ prompt: 'x' }), 'invoke without a socket');
      assert.ok(err instanceof FluxSecretsError);
      assert.equal(err.code, 'not_configured');
    } finally {
      process.env.FLUX_SECRETS_SOCKET = saved;
    }
  });

  test("the handler's errors reach the caller as they are, and invoke always returns a promise", async () => {
    const missing = defineFunction({ name: 'missing', handler: ({ ctx }) => ctx.secrets.get('NOT_SET_HERE') });
    const err = await rejection(missing.invoke({}), 'get NOT_SET_HERE');
    assert.ok(err instanceof SecretNotFoundError);
    assert.match(err.message, /fluxctl secrets set NOT_SET_HERE/);

    const boom = new Error('sync throw');
    const thrower = defineFunction({
      name: 'thrower',
      handler: () => {
        throw boom;
      },
    });
    const p = thrower.invoke({});
    assert.ok(p instanceof Promise);
    assert.equal(await rejection(p, 'thrower'), boom);
  });
});

describe('one module instance for import and require', () => {
  test('the package name gives the same exports, classes and shared client either way', async () => {
    const required = createRequire(import.meta.url)('@flux/secrets');
    const imported = await import('@flux/secrets');
    assert.deepEqual(Object.keys(imported).sort(), Object.keys(required).sort());
    for (const name of Object.keys(required)) {
      assert.equal(imported[name], required[name], `${name} is the same object`);
    }
    assert.equal(imported.createSecrets, createSecrets, 'the tests load the same instance too');

    const clients = [];
    const grab = ({ ctx }) => clients.push(ctx.secrets);
    await required.defineFunction({ name: 'cjs', handler: grab }).invoke();
    await imported.defineFunction({ name: 'esm', handler: grab }).invoke();
    assert.equal(clients[0], clients[1], 'one shared client');

    const err = await rejection(
      required.createSecrets({ socketPath: daemon.projectSocket('app') }).get('NOPE'),
      'get NOPE',
    );
    assert.ok(err instanceof imported.SecretNotFoundError);
  });
});
