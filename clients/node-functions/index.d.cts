// Types for @flux/functions: the declarations of the CommonJS implementation
// (src/index.cjs), used by `require`; index.d.ts re-exports them for `import`.
//
// `input` is typed `any` unless you say otherwise. It is whatever JSON the
// host passes, and nothing checks it before the handler runs: `unknown`
// would make the product page's `input.messages` a compile error under
// `--strict`, and a made-up JSON type would too. This is the choice of the
// function types TypeScript users already know (AWS Lambda's
// `Handler<TEvent = any>`, Express's `req.body`). To type it, annotate the
// handler's argument, and `Input` is inferred from it:
//
//   handler: async ({ input, ctx }: { input: ChatRequest; ctx: FunctionContext }) => ...
//
// or give it explicitly: `defineFunction<ChatRequest>({ ... })`. Then
// `fn.invoke(input)` takes only a `ChatRequest`.

import type { FluxSecrets } from '@flux/secrets';

export { FluxSecretsError, SecretNotFoundError, UntrustedSocketError } from '@flux/secrets';
export type { FluxSecrets, FluxSecretsErrorCode } from '@flux/secrets';

/** The environment a handler sees as `ctx.env`: names to values, read-only. */
export type FunctionEnv = Readonly<Record<string, string | undefined>>;

/** The `ctx` a handler gets from `invoke`. */
export interface FunctionContext {
  /**
   * The project's secrets. Unless the host passed its own client, this is
   * the client for `FLUX_SECRETS_SOCKET`, shared by every function in the
   * process and created when the handler first reads `ctx.secrets`, which
   * throws a `FluxSecretsError` (code `not_configured`) naming the variable
   * to set when it is not set.
   */
  secrets: FluxSecrets;
  /**
   * Non-secret configuration: a frozen copy of `process.env` taken when the
   * handler first reads it, unless the host passed its own `env`.
   */
  env: FunctionEnv;
  /** Any other piece the host passed to `invoke(input, ctx)`, as given. */
  [piece: string]: unknown;
}

/** What a handler gets. */
export interface HandlerArgs<Input = any> {
  /** The JSON value the host passed to `invoke`. */
  input: Input;
  ctx: FunctionContext;
}

/** What `defineFunction` takes: exactly a name and a handler. */
export interface FunctionDefinition<Input = any, Output = unknown> {
  /** The function's name, e.g. `"call_openai"`. */
  name: string;
  /** The function's code, called by `invoke` with the input and a ctx. */
  handler(args: HandlerArgs<Input>): Output | Promise<Output>;
}

/** What `defineFunction` returns (frozen). */
export interface FluxFunction<Input = any, Output = unknown> {
  /** The name given to `defineFunction`. */
  readonly name: string;
  /** The handler given to `defineFunction`, unchanged. */
  readonly handler: FunctionDefinition<Input, Output>['handler'];
  /**
   * Calls `handler({ input, ctx })` and returns its result as a promise.
   * `ctx`'s own properties are copied into the handler's ctx; a `secrets`
   * or `env` there replaces the default.
   */
  invoke(input: Input, ctx?: Partial<FunctionContext>): Promise<Awaited<Output>>;
}

/**
 * Defines a function the way a Flux function is written:
 * `export default defineFunction({ name, handler: async ({ input, ctx }) => ... })`.
 * Throws a `TypeError` saying what is wrong when the name or the handler is
 * missing or of the wrong type, or the definition has other properties.
 */
export function defineFunction<Input = any, Output = unknown>(
  definition: FunctionDefinition<Input, Output>,
): FluxFunction<Input, Output>;

/** This package's version. */
export const VERSION: string;
/** `"FLUX_SECRETS_SOCKET"`: the project's socket, which `ctx.secrets` reads from. */
export const SOCKET_ENV: 'FLUX_SECRETS_SOCKET';
/** `"FLUX_PROJECT"`: named in the error when the socket is not set. */
export const PROJECT_ENV: 'FLUX_PROJECT';
