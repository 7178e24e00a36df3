// A Flux function that reads its OpenAI key through ctx.secrets, written
// the way the product page writes it. It prepares the API request but does
// not send it, so the example runs without network access.
//
// Try it against a running fluxd, with example/run.js playing the runtime:
//
//   fluxctl projects create my-app
//   fluxctl secrets set OPENAI_API_KEY --project my-app     # typed at a hidden prompt
//   FLUX_SECRETS_SOCKET=<runtime>/projects/my-app.sock node example/run.js example/call_openai.js

import { defineFunction } from '@flux/secrets';

export default defineFunction({
  name: 'call_openai',
  handler: async ({ input, ctx }) => {
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
        messages: [{ role: 'user', content: input?.prompt ?? 'Say hello.' }],
      }),
    };
    // A real function would now do: const res = await fetch(request.url, request);

    // Never return or log the key itself.
    return {
      statusCode: 200,
      body: { model, prepared: request.url, keyLength: apiKey.length },
    };
  },
});
