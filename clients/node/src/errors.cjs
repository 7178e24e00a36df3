// Error classes. Messages name secrets, sockets and reasons, never a value.

'use strict';

const { errorCodeName } = require('./protocol.cjs');

/**
 * Every failure of the client. `.code` is the protocol's error name
 * (`not_found`, `invalid_name`, `permission_denied`, ...) or one of the
 * client's own: `unreachable` (fluxd could not be reached), `closed`
 * (`close()` was called while the request waited), `bad_response` (fluxd
 * answered something this client cannot use), `untrusted_socket` (the
 * socket failed the ownership checks), `not_configured` (no socket path).
 * `.codeNumber` is the wire number when the daemon sent one, else `null`.
 */
class FluxSecretsError extends Error {
  constructor(message, { code, codeNumber = null, key, socketPath, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'FluxSecretsError';
    this.code = code;
    this.codeNumber = codeNumber;
    if (key !== undefined) this.key = key;
    if (socketPath !== undefined) this.socketPath = socketPath;
  }
}

/** The secret is not set (`.code === 'not_found'`). */
class SecretNotFoundError extends FluxSecretsError {
  constructor(message, opts = {}) {
    super(message, { ...opts, code: 'not_found', codeNumber: 1 });
    this.name = 'SecretNotFoundError';
  }
}

/**
 * The socket, or a folder on the way to it, could have been put there by
 * another user (`.code === 'untrusted_socket'`); nothing was sent. `.path`
 * is the file or folder that failed the check, `.reason` one of
 * `not_a_socket`, `untrusted_owner`, `writable_folder`.
 */
class UntrustedSocketError extends FluxSecretsError {
  constructor(message, { socketPath, path, reason } = {}) {
    super(message, { code: 'untrusted_socket', socketPath });
    this.name = 'UntrustedSocketError';
    this.path = path;
    this.reason = reason;
  }
}

/** The error for an `Error { code, message }` answer from fluxd. */
function errorFromReply({ code, message }, extra = {}) {
  if (code === 1) return new SecretNotFoundError(message, extra);
  const name = errorCodeName(code);
  const text = name === 'other' ? `${message} (fluxd error code ${code})` : message;
  return new FluxSecretsError(text, { ...extra, code: name, codeNumber: code });
}

const REASONS = {
  ENOENT: 'no socket at that path',
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection broken',
  EACCES: 'permission denied',
  ENOTSOCK: 'not a socket',
  ENAMETOOLONG: 'path too long for a Unix socket',
};

/** A short reason for a Node socket error, without a stack or address dump. */
function reason(cause) {
  if (!cause) return 'fluxd closed the connection before answering';
  const known = cause.code && REASONS[cause.code];
  if (known) return `${known} (${cause.code})`;
  return cause.code ? `${cause.message} (${cause.code})` : cause.message;
}

/** fluxd could not be reached at `socketPath`, or the connection broke twice. */
function unreachableError(socketPath, cause, key) {
  return new FluxSecretsError(
    `cannot reach fluxd at ${socketPath}: ${reason(cause)}. Is fluxd running? ` +
      'Start it with `fluxd` or check `systemctl status fluxd`, and check that the path is ' +
      "the project's socket, `<runtime>/projects/<project>.sock`.",
    { code: 'unreachable', socketPath, key, cause },
  );
}

module.exports = {
  FluxSecretsError,
  SecretNotFoundError,
  UntrustedSocketError,
  errorFromReply,
  unreachableError,
};
