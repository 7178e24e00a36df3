// The product page's function, copied from the page at test time
// (testing/seed.js) into a project's file as it is, byte for byte, and run
// against the real fluxd. Its `fetch` to OpenAI is answered here: the test
// checks that the secret reached the request's Authorization header and
// that the answer came back, without ever printing the value.
//
// Without the page the tests print SKIPPED (on stderr, and as the reason
// node:test shows) and do not fail.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { TestDaemon } from '../../node/testing/fluxd.js';
import { rejection } from '../../node/testing/assert.js';
import { PACKAGES, installedProject } from '../testing/install.js';
import { pageExample } from '../testing/seed.js';

/** The lines of `text` without their indentation, blank lines dropped. */
const shape = (text) => text.split('\n').map((l) => l.trim()).filter(Boolean);

const example = pageExample();
const skip = example.skipped ? `SKIPPED: the product page's example: ${example.skipped}` : false;
if (skip) console.error(`\n${skip}\n`);

let daemon;
let project;
let fn; // the page's default export
let apiKey;
const savedSocket = process.env.FLUX_SECRETS_SOCKET;

/**
 * Replaces global fetch for the duration of `body`, answering every call
 * with `reply`; resolves to `{ result, calls }`.
 */
async function withFetch(reply, body) {
  const real = globalThis.fetch;
  const calls = [];
  globalThis.fetch = async (url, init) => {
    calls.push({ url: String(url), init });
    return new Response(JSON.stringify(reply), { status: 200, headers: { 'content-type': 'application/json' } });
  };
  try {
    return { result: await body(), calls };
  } finally {
    globalThis.fetch = real;
  }
}

describe("the product page's function, as printed", { skip }, () => {
  before(async () => {
    daemon = await TestDaemon.start();
    await daemon.createProject('my-app');
    apiKey = `sk-${randomBytes(24).toString('hex')}`;
    await daemon.setSecret('my-app', 'OPENAI_API_KEY', apiKey);
    process.env.FLUX_SECRETS_SOCKET = daemon.projectSocket('my-app');
    project = await installedProject();
    const file = path.join(project.dir, 'call_openai.mjs');
    fs.writeFileSync(file, example.source);
    fn = (await import(pathToFileURL(file).href)).default;
  });

  after(async () => {
    if (savedSocket === undefined) delete process.env.FLUX_SECRETS_SOCKET;
    else process.env.FLUX_SECRETS_SOCKET = savedSocket;
    await project?.cleanup();
    await daemon?.cleanup();
  });

  test('the file written is the page text, unchanged', () => {
    assert.ok(example.source.startsWith('import { defineFunction } from "@flux/functions";'));
    assert.equal(fs.readFileSync(path.join(project.dir, 'call_openai.mjs'), 'utf8'), example.source);
    assert.equal(fn.name, 'call_openai');
  });

  test('invoke sends the secret from fluxd as the bearer token and returns the answer', async () => {
    const reply = { id: 'chatcmpl-1', choices: [{ message: { role: 'assistant', content: 'Hello!' } }] };
    const messages = [{ role: 'user', content: 'Say hello.' }];
    const { result, calls } = await withFetch(reply, () => fn.invoke({ messages }));
    assert.deepEqual(result, reply);
    assert.equal(calls.length, 1);
    const [{ url, init }] = calls;
    assert.equal(url, 'https://api.openai.com/v1/chat/completions');
    assert.equal(init.method, 'POST');
    assert.equal(init.headers['Content-Type'], 'application/json');
    const auth = init.headers.Authorization;
    assert.ok(typeof auth === 'string', 'an Authorization header');
    assert.ok(auth === `Bearer ${apiKey}`, "Authorization is not `Bearer <the project's OPENAI_API_KEY>`");
    assert.deepEqual(JSON.parse(init.body), { model: 'gpt-4o', messages });
  });

  test('a rotated key is sent by the next invocation, on the same connection', async () => {
    const rotated = `sk-${randomBytes(24).toString('hex')}`;
    await daemon.setSecret('my-app', 'OPENAI_API_KEY', rotated);
    const { calls } = await withFetch({}, () => fn.invoke({ messages: [] }));
    assert.ok(calls[0].init.headers.Authorization === `Bearer ${rotated}`, 'the rotated key was not sent');
    apiKey = rotated;
  });

  test('an unset key fails with how to set it, and nothing is sent', async () => {
    await daemon.deleteSecret('my-app', 'OPENAI_API_KEY');
    const outcome = await withFetch({}, () => rejection(fn.invoke({ messages: [] }), 'invoke without the key'));
    assert.equal(outcome.calls.length, 0, 'fetch was not called');
    assert.equal(outcome.result.code, 'not_found');
    assert.match(outcome.result.message, /fluxctl secrets set OPENAI_API_KEY/);
    assert.ok(!outcome.result.message.includes(apiKey));
  });

  test("the READMEs show the page's example (indented, nothing else changed)", () => {
    const readmes = [
      path.join(PACKAGES['@flux/functions'], 'README.md'),
      path.resolve(PACKAGES['@flux/secrets'], '..', '..', 'README.md'),
    ];
    for (const file of readmes) {
      const shown = pageExample(file);
      assert.ok(shown.source, `${file} shows no example importing @flux/functions`);
      assert.deepEqual(shape(shown.source), shape(example.source), `${file}: the example differs from the page's`);
    }
  });
});
