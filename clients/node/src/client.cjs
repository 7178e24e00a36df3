// @flux/secrets: the Node.js client for Flux Secrets, usable as `ctx.secrets`.
//
// One Unix-socket connection to the project's fluxd socket, opened on first
// use and shared by every caller. Before each connection the socket and the
// folders leading to it are checked (trust.cjs): a socket another user could
// have planted is refused before anything is sent. Requests are pipelined: each `get` writes
// its frame at once and waits in a FIFO, because fluxd answers one response
// per request, strictly in order. Nothing is cached; every `get` asks fluxd,
// so a rotated value is seen by the next call.
//
// When the connection breaks (fluxd restarted, crashed, or closed an idle
// connection), the requests still waiting are sent again once on a new
// connection, after a short delay that lets a restarting fluxd come back;
// a request whose retry also fails rejects with an `unreachable` error.
//
// While no request is waiting the socket is unref'd, so an idle client never
// keeps the process alive.

'use strict';

const net = require('node:net');
const { inspect } = require('node:util');
const {
  FrameReader,
  PROTOCOL_VERSION,
  decodeResponse,
  encodeGet,
  encodeHello,
} = require('./protocol.cjs');
const {
  FluxSecretsError,
  SecretNotFoundError,
  UntrustedSocketError,
  errorFromReply,
  unreachableError,
} = require('./errors.cjs');
const { MAX_SOCKET_PATH_LEN, checkSocket } = require('./trust.cjs');

/** This package's version. */
const VERSION = '0.1.0';

/** The client string sent in the handshake. */
const CLIENT_NAME = `@flux/secrets/${VERSION}`;

/** The environment variable naming the project socket. */
const SOCKET_ENV = 'FLUX_SECRETS_SOCKET';

/** How long to wait before the single reconnect after a broken connection. */
const DEFAULT_RECONNECT_DELAY_MS = 250;

// The daemon's secret-name grammar (an environment variable name). JS `$`
// without the `m` flag matches only at the very end, so "A\n" is refused.
const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const NAME_RULE =
  "use letters, digits and '_', start with a letter or '_', at most 128 characters (e.g. OPENAI_API_KEY)";

function checkName(key) {
  if (typeof key !== 'string') {
    throw new FluxSecretsError(`invalid secret name: expected a string, got ${typeof key}`, {
      code: 'invalid_name',
      codeNumber: 2,
    });
  }
  if (!NAME_RE.test(key)) {
    const chars = [...key];
    const shown = JSON.stringify(chars.slice(0, 80).join(''));
    const more = chars.length > 80 ? '…' : '';
    throw new FluxSecretsError(`invalid secret name ${shown}${more}: ${NAME_RULE}`, {
      code: 'invalid_name',
      codeNumber: 2,
      key,
    });
  }
}

function badResponse(socketPath, what) {
  return new FluxSecretsError(`unexpected answer from fluxd at ${socketPath}: ${what}`, {
    code: 'bad_response',
    socketPath,
  });
}

/**
 * A Flux Secrets client bound to one project socket. Create it with
 * `createSecrets()`.
 */
class FluxSecrets {
  #socketPath;
  #reconnectDelayMs;
  /** The live connection, or null. Never set while #retryTimer is. */
  #conn = null;
  /** The pending reconnect, while requests wait for it in #waiting. */
  #retryTimer = null;
  #waiting = [];
  /** The last handshake answer, for inspection. */
  #welcome = null;

  constructor(socketPath, reconnectDelayMs) {
    this.#socketPath = socketPath;
    this.#reconnectDelayMs = reconnectDelayMs;
  }

  /** The project socket this client talks to. */
  get socketPath() {
    return this.#socketPath;
  }

  /**
   * A secret's value. With a second argument, that fallback is returned
   * when (and only when) the secret is not set; every other failure still
   * rejects.
   */
  async get(key, fallback) {
    const hasFallback = arguments.length >= 2;
    checkName(key);
    try {
      return await new Promise((resolve, reject) => {
        this.#submit({ key, resolve, reject, retried: false });
      });
    } catch (err) {
      if (hasFallback && err instanceof SecretNotFoundError) return fallback;
      throw err;
    }
  }

  /**
   * Closes the connection. Requests still waiting reject with code
   * `closed`. The client stays usable: a later `get` connects again.
   */
  close() {
    const closed = (key) =>
      new FluxSecretsError('the client was closed before fluxd answered', {
        code: 'closed',
        key,
        socketPath: this.#socketPath,
      });
    if (this.#retryTimer) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = null;
    }
    for (const e of this.#waiting.splice(0)) e.reject(closed(e.key));
    const conn = this.#conn;
    if (!conn) return Promise.resolve();
    this.#conn = null;
    for (const e of conn.pending.splice(0)) if (!e.hello) e.reject(closed(e.key));
    conn.reader.reset();
    const socket = conn.socket;
    if (!socket || socket.closed) return Promise.resolve();
    return new Promise((resolve) => {
      socket.once('close', () => resolve());
      socket.destroy();
    });
  }

  #submit(entry) {
    if (this.#retryTimer) {
      this.#waiting.push(entry);
      return;
    }
    this.#send(this.#conn ?? this.#open(), entry);
  }

  #send(conn, entry) {
    conn.pending.push(entry);
    if (conn.socket) {
      conn.socket.ref();
      conn.socket.write(encodeGet(entry.key));
    }
  }

  /** Opens a connection and queues the handshake ahead of any request. */
  #open() {
    const conn = {
      socket: null,
      reader: new FrameReader(),
      pending: [{ hello: true }],
      welcome: null,
      error: undefined,
    };
    this.#conn = conn;
    let socket;
    try {
      // Nothing is sent to a socket that another user could have planted
      // (see trust.cjs); the connection goes to the path that was checked.
      const target = checkSocket(this.#socketPath);
      socket = net.createConnection({ path: target });
    } catch (err) {
      // Refused by the checks: no retry, the waiting gets reject with it.
      // A missing socket or an unusable path: fail like a refused connect.
      if (err instanceof UntrustedSocketError) setImmediate(() => this.#abort(conn, err));
      else setImmediate(() => this.#lost(conn, err));
      return conn;
    }
    conn.socket = socket;
    socket.on('data', (chunk) => this.#onData(conn, chunk));
    socket.on('error', (err) => {
      conn.error ??= err;
    });
    socket.on('close', () => this.#lost(conn, conn.error));
    socket.write(encodeHello(CLIENT_NAME));
    return conn;
  }

  #onData(conn, chunk) {
    if (conn !== this.#conn) return;
    let payloads;
    try {
      payloads = conn.reader.push(chunk);
    } catch (err) {
      // An oversized frame: the stream cannot be trusted any more.
      this.#abort(
        conn,
        new FluxSecretsError(`${err.message}; closing the connection to ${this.#socketPath}`, {
          code: 'too_large',
          codeNumber: 3,
          socketPath: this.#socketPath,
        }),
      );
      return;
    }
    for (const payload of payloads) {
      if (conn !== this.#conn) return;
      this.#onFrame(conn, payload);
    }
    if (conn === this.#conn && conn.pending.length === 0) conn.socket.unref();
  }

  #onFrame(conn, payload) {
    let msg;
    try {
      msg = decodeResponse(payload);
    } catch (err) {
      this.#abort(conn, badResponse(this.#socketPath, err.message));
      return;
    } finally {
      payload.fill(0);
    }
    const head = conn.pending.shift();
    if (!head) {
      this.#abort(conn, badResponse(this.#socketPath, `a ${msg.type} message nobody asked for`));
      return;
    }
    if (head.hello) {
      this.#onHandshake(conn, msg);
      return;
    }
    const extra = { key: head.key, socketPath: this.#socketPath };
    if (msg.type === 'value') head.resolve(msg.value);
    else if (msg.type === 'error') head.reject(errorFromReply(msg, extra));
    else head.reject(badResponse(this.#socketPath, `a ${msg.type} message answered get ${head.key}`));
  }

  #onHandshake(conn, msg) {
    const path = this.#socketPath;
    if (msg.type === 'error') {
      // Never a SecretNotFoundError, whatever the code: a refused handshake
      // must not turn into a caller's fallback.
      this.#abort(
        conn,
        new FluxSecretsError(`fluxd refused the handshake on ${path}: ${msg.message}`, {
          code: msg.codeName,
          codeNumber: msg.code,
          socketPath: path,
        }),
      );
    } else if (msg.type !== 'welcome') {
      this.#abort(conn, badResponse(path, `a ${msg.type} message answered the handshake`));
    } else if (msg.version !== PROTOCOL_VERSION) {
      this.#abort(
        conn,
        new FluxSecretsError(
          `fluxd at ${path} speaks protocol version ${msg.version}, this client speaks version ${PROTOCOL_VERSION}: upgrade the older of the two`,
          { code: 'version_mismatch', codeNumber: 8, socketPath: path },
        ),
      );
    } else if (msg.scope.type !== 'project') {
      this.#abort(
        conn,
        new FluxSecretsError(
          `${path} is fluxd's control socket, not a project socket: set ${SOCKET_ENV} to <runtime>/projects/<project>.sock`,
          { code: 'bad_request', codeNumber: 6, socketPath: path },
        ),
      );
    } else {
      conn.welcome = msg;
      this.#welcome = msg;
    }
  }

  /** Rejects everything waiting on `conn` with `err` and drops it (no retry). */
  #abort(conn, err) {
    if (conn !== this.#conn) return;
    this.#conn = null;
    conn.reader.reset();
    conn.socket?.destroy();
    for (const e of conn.pending.splice(0)) if (!e.hello) e.reject(err);
  }

  /**
   * The connection closed or failed. Requests on it that were not retried
   * yet are sent again, once, on a new connection after a short delay; the
   * others reject as unreachable.
   */
  #lost(conn, cause) {
    if (conn !== this.#conn) return;
    this.#conn = null;
    conn.reader.reset();
    conn.socket?.destroy();
    const retry = [];
    for (const e of conn.pending.splice(0)) {
      if (e.hello) continue;
      if (e.retried) {
        e.reject(unreachableError(this.#socketPath, cause, e.key));
      } else {
        e.retried = true;
        retry.push(e);
      }
    }
    if (retry.length === 0) return;
    this.#waiting = retry.concat(this.#waiting);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = null;
      const entries = this.#waiting.splice(0);
      const next = this.#open();
      for (const e of entries) this.#send(next, e);
    }, this.#reconnectDelayMs);
  }

  get [Symbol.toStringTag]() {
    return 'FluxSecrets';
  }

  // Shows where the client points and its state; never a value.
  [inspect.custom](depth, options, inspectFn = inspect) {
    const conn = this.#conn;
    let state = 'idle';
    if (conn) state = conn.welcome ? 'connected' : 'connecting';
    else if (this.#retryTimer) state = 'reconnecting';
    const pending = (conn ? conn.pending.filter((e) => !e.hello).length : 0) + this.#waiting.length;
    const shown = {
      socketPath: this.#socketPath,
      project: this.#welcome?.scope.name ?? null,
      state,
      pending,
    };
    return `FluxSecrets ${inspectFn(shown, { ...options, depth: 1 })}`;
  }

  toJSON() {
    return { socketPath: this.#socketPath };
  }
}

/**
 * Creates a client usable as `ctx.secrets`.
 *
 * @param {object} [options]
 * @param {string} [options.socketPath] the project socket; defaults to
 *   `process.env.FLUX_SECRETS_SOCKET`.
 * @param {number} [options.reconnectDelayMs] wait before the single
 *   reconnect after a broken connection (default 250).
 */
function createSecrets({ socketPath, reconnectDelayMs = DEFAULT_RECONNECT_DELAY_MS } = {}) {
  const path = socketPath ?? process.env[SOCKET_ENV];
  if (path === undefined || path === '') {
    throw new FluxSecretsError(
      `no fluxd socket given: set ${SOCKET_ENV} to the project's socket ` +
        '(`<runtime>/projects/<project>.sock`, printed by `fluxctl projects create`), ' +
        'or pass createSecrets({ socketPath })',
      { code: 'not_configured' },
    );
  }
  if (typeof path !== 'string') {
    throw new TypeError(`socketPath must be a string, not ${typeof path}`);
  }
  // The kernel limit on a Unix socket path (sun_path, less its NUL); a longer
  // path would be truncated, possibly to another socket.
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_LEN || path.includes('\0')) {
    throw new FluxSecretsError(
      `the fluxd socket path ${JSON.stringify(path)} is not usable: ` +
        (bytes > MAX_SOCKET_PATH_LEN
          ? `it is ${bytes} bytes and Unix socket paths are limited to ${MAX_SOCKET_PATH_LEN}`
          : 'it contains a NUL byte'),
      { code: 'not_configured', socketPath: path },
    );
  }
  if (!Number.isFinite(reconnectDelayMs) || reconnectDelayMs < 0) {
    throw new TypeError('reconnectDelayMs must be a number of milliseconds, 0 or more');
  }
  return new FluxSecrets(path, reconnectDelayMs);
}

module.exports = {
  CLIENT_NAME,
  DEFAULT_RECONNECT_DELAY_MS,
  SOCKET_ENV,
  VERSION,
  createSecrets,
};
