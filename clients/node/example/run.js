// Plays the runtime for one call: loads a function module written with
// defineFunction, invokes it once with a JSON input, prints the result.
// ctx.secrets is the client for FLUX_SECRETS_SOCKET.
//
//   FLUX_SECRETS_SOCKET=<runtime>/projects/my-app.sock \
//     node example/run.js example/call_openai.js '{"prompt":"Say hello."}'

import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [file, json = '{}'] = process.argv.slice(2);
if (!file) {
  console.error('usage: node example/run.js FUNCTION_FILE [JSON_INPUT]');
  process.exit(2);
}
const fn = (await import(pathToFileURL(path.resolve(file)).href)).default;
try {
  const result = await fn.invoke(JSON.parse(json), { requestId: `local-${Date.now()}` });
  console.log(JSON.stringify({ function: fn.name, result }, null, 2));
} catch (err) {
  console.error(`${fn.name} failed: ${err.name} [${err.code}]: ${err.message}`);
  process.exitCode = 1;
}
// No close() needed: an idle client does not keep node alive.
