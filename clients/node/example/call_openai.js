// A serverless function that reads its OpenAI key from Flux Secrets through
// ctx.secrets. It prepares the API request but does not send it, so the
// example runs without network access.
//
// Try it against a running fluxd:
//
//   fluxctl projects create my-app
//   fluxctl secrets set OPENAI_API_KEY --project my-app     # typed at a hidden prompt
//   FLUX_SECRETS_SOCKET=<runtime>/projects/my-app.sock node example/call_openai.js

import { pathToFileURL } from 'node:url';
import { createSecrets } from '@flux/secrets';

/** The function: the platform calls it with an event and a ctx holding `secrets`. */
export default async function handler(event, ctx) {
  // Required: rejects (SecretNotFoundError) with a message saying how to set it.
  const apiKey = await ctx.secrets.get('OPENAI_API_KEY');
  // Optional: the fallback applies only when the secret is not set.
  const model = await ctx.secrets.get('OPENAI_MODEL', 'gpt-4o-mini');

  const request = {
    url: 'https://api.openai.com/v1/chat/completions',
    method: 'POST',
    headers: {
      authorization: `Bearer ${apiKey}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({
      model,
      messages: [{ role: 'user', content: event.prompt ?? 'Say hello.' }],
    }),
  };
  // A real function would now do: const res = await fetch(request.url, request);

  // Never return or log the key itself.
  return {
    statusCode: 200,
    body: { model, prepared: request.url, keyLength: apiKey.length },
  };
}

// Run directly: play the platform, with ctx.secrets from FLUX_SECRETS_SOCKET.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const ctx = { secrets: createSecrets() };
  try {
    const result = await handler({ prompt: 'Say hello.' }, ctx);
    console.log(JSON.stringify(result, null, 2));
  } catch (err) {
    console.error(`${err.name} [${err.code}]: ${err.message}`);
    process.exitCode = 1;
  }
  // No ctx.secrets.close() needed: an idle client does not keep node alive.
}
