// @flux/functions: the shape a Flux function is written in, as the product
// page writes it:
//
//   import { defineFunction } from '@flux/functions';
//
//   export default defineFunction({
//     name: 'call_openai',
//     handler: async ({ input, ctx }) => {
//       const apiKey = await ctx.secrets.get('OPENAI_API_KEY');
//       const region = ctx.env.AWS_REGION;
//       ...
//     },
//   });
//
// `defineFunction` checks the definition and returns a frozen
// `{ name, handler, invoke }`. `invoke(input, ctx?)` is what a host (or a
// test) calls: it builds the handler's ctx and returns
// `handler({ input, ctx })` as a promise. Nothing else: no registration, no
// server, no timeout, no retry, no logging.
//
// The ctx:
// - `ctx.secrets` is an @flux/secrets client for the socket named by
//   FLUX_SECRETS_SOCKET, one per socket for the whole process: every
//   function and every invocation share it, and so share its one connection.
//   It is looked up when the handler first reads `ctx.secrets`, so a
//   function that reads no secret runs without fluxd.
// - `ctx.env` is a frozen copy of the process environment, taken when the
//   handler first reads it.
// - Anything the host passes as `invoke(input, ctx)` is copied in as it is;
//   a `secrets` or `env` there replaces the default.
//
// This CommonJS module is the one implementation; src/index.js re-exports it
// for `import`, so a process that both imports and requires the package
// gets one set of shared clients.

'use strict';

const secretsPackage = require('@flux/secrets');

const { FluxSecretsError, SOCKET_ENV, createSecrets } = secretsPackage;

/** This package's version. */
const VERSION = '0.1.0';

/** The variable naming the project, as fluxctl and `fluxd dev` read it. */
const PROJECT_ENV = 'FLUX_PROJECT';

/** What a definition may hold. */
const DEFINITION_KEYS = ['name', 'handler'];

/** The shared clients, one per socket path, for every function in the process. */
const shared = new Map();

function describe(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

/**
 * The error when a handler reads `ctx.secrets` and no socket is configured:
 * it names the variable to set, and the project when FLUX_PROJECT names one.
 */
function notConfigured(fnName) {
  const project = process.env[PROJECT_ENV];
  const socket = project ? `<runtime>/projects/${project}.sock` : '<runtime>/projects/<project>.sock';
  const why = project
    ? `${SOCKET_ENV} is not set (${PROJECT_ENV}=${project} names the project, not the socket fluxd serves it on)`
    : `${SOCKET_ENV} is not set`;
  return new FluxSecretsError(
    `function ${fnName} read ctx.secrets, but ${why}: set ${SOCKET_ENV} to the project's socket, ` +
      `${socket} (\`fluxctl projects create\` prints it; \`fluxd dev\` prints the export line ` +
      'for a local .env), or run the host under `fluxd dev -- CMD` or `fluxctl run -- CMD`, which set it',
    { code: 'not_configured' },
  );
}

/** The shared client for FLUX_SECRETS_SOCKET, created on first use. */
function sharedSecrets(fnName) {
  const socketPath = process.env[SOCKET_ENV];
  if (socketPath === undefined || socketPath === '') throw notConfigured(fnName);
  let client = shared.get(socketPath);
  if (!client) {
    client = createSecrets({ socketPath });
    shared.set(socketPath, client);
  }
  return client;
}

/** The process environment as it is now, copied and frozen. */
function envSnapshot() {
  return Object.freeze({ ...process.env });
}

/**
 * Defines `ctx[key]` as computed by `make()` on first read, then a plain
 * property (writable, like every other piece of the ctx).
 */
function lazy(ctx, key, make) {
  Object.defineProperty(ctx, key, {
    configurable: true,
    enumerable: true,
    get() {
      const value = make();
      Object.defineProperty(ctx, key, { value, configurable: true, enumerable: true, writable: true });
      return value;
    },
    set(value) {
      Object.defineProperty(ctx, key, { value, configurable: true, enumerable: true, writable: true });
    },
  });
}

/**
 * The handler's ctx: the host's own pieces (`given`'s own enumerable
 * properties) plus `secrets` and `env` when the host did not pass them.
 */
function buildCtx(fnName, given) {
  if (given !== undefined && (given === null || typeof given !== 'object' || Array.isArray(given))) {
    throw new TypeError(`${fnName}.invoke(input, ctx): ctx must be an object, not ${describe(given)}`);
  }
  const ctx = { ...given };
  if (ctx.secrets === undefined) lazy(ctx, 'secrets', () => sharedSecrets(fnName));
  if (ctx.env === undefined) lazy(ctx, 'env', envSnapshot);
  return ctx;
}

/**
 * Defines a function: `{ name, handler }` in, a frozen
 * `{ name, handler, invoke(input, ctx?) }` out. Throws a TypeError that says
 * what is wrong with a definition it cannot use.
 */
function defineFunction(definition) {
  const usage = 'defineFunction({ name: "call_openai", handler: async ({ input, ctx }) => { ... } })';
  if (definition === null || typeof definition !== 'object' || Array.isArray(definition)) {
    throw new TypeError(`defineFunction expects { name, handler }, not ${describe(definition)}: ${usage}`);
  }
  const unknown = Object.keys(definition).filter((k) => !DEFINITION_KEYS.includes(k));
  if (unknown.length > 0) {
    throw new TypeError(
      `defineFunction: unknown ${unknown.length === 1 ? 'property' : 'properties'} ` +
        `${unknown.map((k) => JSON.stringify(k)).join(', ')}: a definition has only name and handler`,
    );
  }
  const { name, handler } = definition;
  if (name === undefined) {
    throw new TypeError(`defineFunction: the function has no name: ${usage}`);
  }
  if (typeof name !== 'string' || name.trim() === '') {
    throw new TypeError(
      `defineFunction: name must be a non-empty string, not ${typeof name === 'string' ? JSON.stringify(name) : describe(name)}`,
    );
  }
  if (handler === undefined) {
    throw new TypeError(
      `defineFunction: function ${name} has no handler: add handler: async ({ input, ctx }) => { ... }`,
    );
  }
  if (typeof handler !== 'function') {
    throw new TypeError(`defineFunction: the handler of ${name} must be a function, not ${describe(handler)}`);
  }
  return Object.freeze({
    name,
    handler,
    /** Calls `handler({ input, ctx })`; always returns a promise. */
    async invoke(input, ctx) {
      return handler({ input, ctx: buildCtx(name, ctx) });
    },
  });
}

module.exports = {
  FluxSecretsError,
  PROJECT_ENV,
  SOCKET_ENV,
  SecretNotFoundError: secretsPackage.SecretNotFoundError,
  UntrustedSocketError: secretsPackage.UntrustedSocketError,
  VERSION,
  defineFunction,
};
