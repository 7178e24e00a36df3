// Surviving fluxd restarts, and failing cleanly when fluxd is gone, against
// the real daemon (stopped with SIGTERM and started again on the same
// folders).

import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { FluxSecretsError, createSecrets } from '../src/index.js';
import { TestDaemon } from '../testing/fluxd.js';
import { assertValue, rejection } from '../testing/assert.js';

// Longer than a restart takes here (tens of ms), so a get caught by the
// restart is retried once fluxd is back. The default is 250 ms.
const RECONNECT_DELAY_MS = 1000;

let daemon;
let socketPath;
const clients = [];

function client(opts = {}) {
  const c = createSecrets({ socketPath, reconnectDelayMs: RECONNECT_DELAY_MS, ...opts });
  clients.push(c);
  return c;
}

before(async () => {
  daemon = await TestDaemon.start();
  await daemon.createProject('app');
  await daemon.setSecret('app', 'TOKEN', 'tok-before-restart');
  socketPath = daemon.projectSocket('app');
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await daemon?.cleanup();
});

test('the same client object survives a daemon restart', async () => {
  const c = client();
  assertValue(await c.get('TOKEN'), 'tok-before-restart', 'TOKEN');
  const exit = await daemon.stop();
  assert.equal(exit.code, 0, 'fluxd exits 0 on SIGTERM');
  await daemon.restart();
  assertValue(await c.get('TOKEN'), 'tok-before-restart', 'TOKEN');
  await daemon.setSecret('app', 'TOKEN', 'tok-after-restart');
  assertValue(await c.get('TOKEN'), 'tok-after-restart', 'TOKEN');
});

test('a get made while fluxd is down is retried once it is back', async () => {
  const c = client();
  await daemon.setSecret('app', 'TOKEN', 'tok-2');
  assertValue(await c.get('TOKEN'), 'tok-2', 'TOKEN');
  await daemon.stop();
  // The socket is gone: the first connect fails (ENOENT) and one reconnect
  // is scheduled, which finds the restarted fluxd.
  const started = Date.now();
  const during = [c.get('TOKEN'), c.get('MISSING', 'fb'), c.get('TOKEN')];
  await daemon.restart();
  const [a, b, d] = await Promise.all(during);
  assertValue(a, 'tok-2', 'TOKEN');
  assertValue(b, 'fb', 'MISSING');
  assertValue(d, 'tok-2', 'TOKEN');
  assert.ok(Date.now() - started < RECONNECT_DELAY_MS + 5000, 'retried once, after the delay');
});

test('gets in flight when fluxd is stopped all complete after the restart', async () => {
  const c = client();
  await daemon.setSecret('app', 'TOKEN', 'tok-3');
  assertValue(await c.get('TOKEN'), 'tok-3', 'TOKEN');
  // Each get writes its frame at once; SIGTERM goes out right behind them,
  // so fluxd answers some and drops the connection under the rest.
  const burst = Array.from({ length: 200 }, (_, i) => (i % 4 === 3 ? c.get('NOPE', i) : c.get('TOKEN')));
  const stopped = daemon.stop();
  await stopped;
  await daemon.restart();
  const results = await Promise.all(burst);
  results.forEach((v, i) => {
    if (i % 4 === 3) assertValue(v, i, `NOPE #${i}`);
    else assertValue(v, 'tok-3', `TOKEN #${i}`);
  });
  // Then a steady stream of gets across another restart.
  let stop = false;
  let count = 0;
  const loop = (async () => {
    while (!stop) {
      assertValue(await c.get('TOKEN'), 'tok-3', 'TOKEN');
      count++;
    }
  })();
  while (count < 20) await new Promise((r) => setImmediate(r));
  await daemon.stop();
  await daemon.restart();
  const target = count + 20;
  while (count < target) await new Promise((r) => setTimeout(r, 5));
  stop = true;
  await loop;
});

test('when fluxd stays down, get rejects as unreachable after one retry', async () => {
  const c = client({ reconnectDelayMs: 100 });
  assertValue(await c.get('TOKEN'), 'tok-3', 'TOKEN');
  await daemon.stop();
  try {
    const started = Date.now();
    const err = await rejection(c.get('TOKEN', 'fallback'), 'get with fluxd stopped');
    const ms = Date.now() - started;
    assert.ok(err instanceof FluxSecretsError);
    assert.equal(err.code, 'unreachable');
    assert.equal(err.codeNumber, null);
    assert.equal(err.socketPath, socketPath);
    assert.ok(err.message.includes(socketPath), 'the message names the socket');
    assert.match(err.message, /is fluxd running\?/i);
    assert.ok(ms >= 100, `rejected after ${ms} ms: the retry waits for the delay`);
    assert.ok(ms < 5000, `rejected after ${ms} ms: no retry loop`);
  } finally {
    await daemon.restart();
  }
  // And the same client recovers once fluxd is back.
  assertValue(await c.get('TOKEN'), 'tok-3', 'TOKEN');
});

test('a socket path with no daemon behind it: unreachable, naming the path', async () => {
  const dir = await fsp.mkdtemp('/tmp/fxu');
  try {
    const missing = path.join(dir, 'projects', 'app.sock');
    const c = createSecrets({ socketPath: missing, reconnectDelayMs: 10 });
    const err = await rejection(c.get('TOKEN'), 'get on a missing socket');
    assert.equal(err.code, 'unreachable');
    assert.ok(err.message.includes(missing), 'the message names the socket');
    assert.match(err.message, /ENOENT/);
    assert.match(err.message, /is fluxd running\?/i);
    assert.equal(err.cause?.code, 'ENOENT');
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});
