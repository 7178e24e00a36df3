// The ES module entry of @flux/secrets: re-exports the CommonJS
// implementation (src/index.cjs) by name, so `import` and `require` share
// one module instance. No logic lives here.

import flux from './index.cjs';

export const {
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
} = flux;
