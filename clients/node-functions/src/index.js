// The ES module entry of @flux/functions: re-exports the CommonJS
// implementation (src/index.cjs) by name, so `import` and `require` share
// one module instance and one set of shared clients. No logic lives here.

import functions from './index.cjs';

export const {
  FluxSecretsError,
  PROJECT_ENV,
  SOCKET_ENV,
  SecretNotFoundError,
  UntrustedSocketError,
  VERSION,
  defineFunction,
} = functions;
