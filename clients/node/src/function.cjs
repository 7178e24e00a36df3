// defineFunction: the shape a Flux function is written in.
//
//   export default defineFunction({
//     name: 'call_openai',
//     handler: async ({ input, ctx }) => {
//       const apiKey = await ctx.secrets.get('OPENAI_API_KEY');
//       ...
//     },
//   });
//
// It returns a frozen `{ name, handler, invoke }`. `invoke(input, ctx)` is
// what a runtime (or a test) calls: it builds the handler's ctx and returns
// `handler({ input, ctx })` as a promise. That is all it does: no
// registration, no server, no timeout, no retry, no logging.

'use strict';

const { SOCKET_ENV, createSecrets } = require('./client.cjs');

/** The shared clients, one per socket path, for every function in the process. */
const shared = new Map();

/**
 * The client for the socket in FLUX_SECRETS_SOCKET, created on first use
 * and shared from then on. Throws `not_configured` when it is not set.
 */
function sharedSecrets() {
  const socketPath = process.env[SOCKET_ENV];
  let client = shared.get(socketPath);
  if (!client) {
    client = createSecrets({ socketPath });
    shared.set(socketPath, client);
  }
  return client;
}

/**
 * The handler's ctx: a copy of the runtime's own pieces (`given`'s own
 * enumerable properties), plus `secrets` when the runtime did not pass one:
 * the shared client, looked up when the handler first reads `ctx.secrets`,
 * so a function that reads no secret runs without FLUX_SECRETS_SOCKET.
 */
function buildCtx(given) {
  if (given !== undefined && (given === null || typeof given !== 'object')) {
    throw new TypeError(`invoke(input, ctx): ctx must be an object, not ${given === null ? 'null' : typeof given}`);
  }
  const ctx = { ...given };
  if (ctx.secrets === undefined) {
    Object.defineProperty(ctx, 'secrets', {
      configurable: true,
      enumerable: true,
      get() {
        const secrets = sharedSecrets();
        Object.defineProperty(ctx, 'secrets', {
          value: secrets,
          configurable: true,
          enumerable: true,
          writable: true,
        });
        return secrets;
      },
    });
  }
  return ctx;
}

/**
 * Defines a function: `{ name, handler }` in, a frozen
 * `{ name, handler, invoke(input, ctx?) }` out.
 */
function defineFunction(definition) {
  if (definition === null || typeof definition !== 'object') {
    throw new TypeError('defineFunction expects { name, handler }');
  }
  const { name, handler } = definition;
  if (typeof name !== 'string' || name === '') {
    throw new TypeError('defineFunction: name must be a non-empty string');
  }
  if (typeof handler !== 'function') {
    throw new TypeError(`defineFunction: the handler of ${name} must be a function`);
  }
  return Object.freeze({
    name,
    handler,
    /** Calls `handler({ input, ctx })`; always returns a promise. */
    async invoke(input, ctx) {
      return handler({ input, ctx: buildCtx(ctx) });
    },
  });
}

module.exports = { defineFunction };
