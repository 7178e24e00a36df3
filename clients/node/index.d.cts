// Types for @flux/secrets: the declarations of the CommonJS implementation
// (src/index.cjs), used by `require`; index.d.ts re-exports them for `import`.

/** The protocol's error names, plus the client's own. */
export type FluxSecretsErrorCode =
  | 'not_found'
  | 'invalid_name'
  | 'too_large'
  | 'permission_denied'
  | 'unknown_project'
  | 'bad_request'
  | 'internal'
  | 'version_mismatch'
  | 'already_exists'
  | 'limit_reached'
  /** The daemon cannot do this right now; retry later. */
  | 'unavailable'
  /** A wire error code this client does not know; see `codeNumber`. */
  | 'other'
  /** fluxd could not be reached, or the connection broke and its one retry failed too. */
  | 'unreachable'
  /** `close()` was called while the request waited. */
  | 'closed'
  /** fluxd answered something this client cannot use. */
  | 'bad_response'
  /** No usable socket path: neither `socketPath` nor `FLUX_SECRETS_SOCKET` is set, or the path is too long for a Unix socket. */
  | 'not_configured'
  /** The socket, or a folder on the way to it, could have been put there by another user; nothing was sent. */
  | 'untrusted_socket';

/** Every failure of the client. Messages never contain a secret value. */
export class FluxSecretsError extends Error {
  /** The protocol's error name (`not_found`, ...) or one of the client's own. */
  readonly code: FluxSecretsErrorCode;
  /** The wire number of a protocol error code; `null` for the client's own codes. */
  readonly codeNumber: number | null;
  /** The secret name the failed request asked for, when there was one. */
  readonly key?: string;
  /** The socket the client talks to, when the failure involved it. */
  readonly socketPath?: string;
}

/** The secret is not set. */
export class SecretNotFoundError extends FluxSecretsError {
  readonly code: 'not_found';
  readonly codeNumber: 1;
  readonly key: string;
}

/**
 * The socket, or a folder on the way to it, failed the ownership checks made
 * before connecting; nothing was sent. Retrying does not help: fix the
 * ownership or mode the message names, or point at fluxd's own socket.
 */
export class UntrustedSocketError extends FluxSecretsError {
  readonly code: 'untrusted_socket';
  readonly codeNumber: null;
  readonly socketPath: string;
  /** The file or folder that failed the check. */
  readonly path: string;
  /**
   * `not_a_socket`: the path is not a socket; `untrusted_owner`: the socket
   * or a folder is owned by a uid other than yours, root's or the fluxd
   * user's; `writable_folder`: a folder is writable by group or others.
   */
  readonly reason: 'not_a_socket' | 'untrusted_owner' | 'writable_folder';
}

/** A client usable as `ctx.secrets`. */
export interface FluxSecrets {
  /** The project socket this client talks to. */
  readonly socketPath: string;
  /**
   * The secret's current value. Rejects with `SecretNotFoundError` when it
   * is not set, and with `FluxSecretsError` for any other failure.
   */
  get(key: string): Promise<string>;
  /**
   * The secret's current value, or `fallback` when (and only when) the
   * secret is not set. An invalid name, a refused request or an unreachable
   * daemon still rejects.
   */
  get<T>(key: string, fallback: T): Promise<string | T>;
  /**
   * Closes the connection; waiting requests reject with code `closed`. The
   * client stays usable: a later `get` connects again.
   */
  close(): Promise<void>;
}

export interface CreateSecretsOptions {
  /** The project socket; defaults to `process.env.FLUX_SECRETS_SOCKET`. */
  socketPath?: string;
  /** Wait before the single reconnect after a broken connection (default 250). */
  reconnectDelayMs?: number;
}

/**
 * Creates a client for one project socket. Throws a `FluxSecretsError` with
 * code `not_configured` when no socket path is given and
 * `FLUX_SECRETS_SOCKET` is not set (or the path cannot be a Unix socket).
 * Nothing connects until the first `get`.
 */
export function createSecrets(options?: CreateSecretsOptions): FluxSecrets;

/** This package's version. */
export const VERSION: string;
/** The client string sent in the handshake, `@flux/secrets/<version>`. */
export const CLIENT_NAME: string;
/** `"FLUX_SECRETS_SOCKET"`. */
export const SOCKET_ENV: 'FLUX_SECRETS_SOCKET';
/** Default wait before the single reconnect, in milliseconds. */
export const DEFAULT_RECONNECT_DELAY_MS: number;
/** `"FLUX_DAEMON_USER"`: the user fluxd runs as, trusted to own the socket and its folders. */
export const DAEMON_USER_ENV: 'FLUX_DAEMON_USER';

/** The `ctx` a handler gets from `invoke`. */
export interface FunctionContext {
  /**
   * The runtime's client when it passed one, else the client for
   * `FLUX_SECRETS_SOCKET`, shared by every function in the process and
   * created when the handler first reads `ctx.secrets` (which throws
   * `not_configured` when the variable is not set).
   */
  secrets: FluxSecrets;
  /** Any other piece the runtime passed to `invoke(input, ctx)`, as given. */
  [piece: string]: unknown;
}

/** What `defineFunction` takes. */
export interface FunctionDefinition<Input = unknown, Output = unknown> {
  /** The function's name, e.g. `"call_openai"`. */
  name: string;
  /** The function's code: called by `invoke` with the input and a ctx. */
  handler(args: { input: Input; ctx: FunctionContext }): Output | Promise<Output>;
}

/** What `defineFunction` returns (frozen). */
export interface FluxFunction<Input = unknown, Output = unknown> {
  /** The name given to `defineFunction`. */
  readonly name: string;
  /** The handler given to `defineFunction`, unchanged. */
  readonly handler: FunctionDefinition<Input, Output>['handler'];
  /**
   * Calls `handler({ input, ctx })` and returns its result as a promise.
   * `ctx`'s own properties are copied into the handler's ctx; its `secrets`,
   * when given, replaces the shared client.
   */
  invoke(input: Input, ctx?: Partial<FunctionContext>): Promise<Output>;
}

/**
 * Defines a function the way a Flux function is written:
 * `export default defineFunction({ name, handler: async ({ input, ctx }) => ... })`.
 * Throws a `TypeError` when `name` is not a non-empty string or `handler` is
 * not a function.
 */
export function defineFunction<Input = unknown, Output = unknown>(
  definition: FunctionDefinition<Input, Output>,
): FluxFunction<Input, Output>;
