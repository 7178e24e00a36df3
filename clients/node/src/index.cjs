// @flux/secrets, the package's whole public API. This CommonJS module is the
// one implementation: `require('@flux/secrets')` loads it directly, and
// `import ... from '@flux/secrets'` loads src/index.js, which re-exports
// this same module, so a process that does both gets one set of classes and
// one shared client, never two copies.

'use strict';

const {
  CLIENT_NAME,
  DEFAULT_RECONNECT_DELAY_MS,
  SOCKET_ENV,
  VERSION,
  createSecrets,
} = require('./client.cjs');
const { FluxSecretsError, SecretNotFoundError, UntrustedSocketError } = require('./errors.cjs');
const { defineFunction } = require('./function.cjs');
const { DAEMON_USER_ENV } = require('./trust.cjs');

module.exports = {
  CLIENT_NAME,
  DAEMON_USER_ENV,
  DEFAULT_RECONNECT_DELAY_MS,
  FluxSecretsError,
  SOCKET_ENV,
  SecretNotFoundError,
  UntrustedSocketError,
  VERSION,
  createSecrets,
  defineFunction,
};
