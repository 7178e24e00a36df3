// The encoder and decoder against PROTOCOL.md's test vectors, and the frame
// reader on split, merged and oversized frames. No daemon needed.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { errorFromReply, FluxSecretsError, SecretNotFoundError } from '../src/errors.cjs';
import {
  DecodeError,
  FrameReader,
  FrameTooLargeError,
  MAX_RESPONSE_FRAME_LEN,
  decodeResponse,
  encodeGet,
  encodeHello,
} from '../src/protocol.cjs';
import { CLIENT_NAME, VERSION } from '../src/index.js';
import { REPO_ROOT } from '../testing/fluxd.js';

/** The `name hex` lines of PROTOCOL.md's ```vectors block, as name → Buffer. */
function documentedVectors() {
  const doc = fs.readFileSync(path.join(REPO_ROOT, 'PROTOCOL.md'), 'utf8');
  const start = doc.indexOf('```vectors\n');
  assert.ok(start >= 0, 'PROTOCOL.md has a ```vectors block');
  const body = doc.slice(start + '```vectors\n'.length);
  const end = body.indexOf('```');
  assert.ok(end >= 0, 'the ```vectors block is closed');
  const vectors = new Map();
  for (const line of body.slice(0, end).split('\n')) {
    if (!line.trim()) continue;
    const [name, ...hex] = line.trim().split(/\s+/);
    const joined = hex.join('');
    assert.match(joined, /^([0-9a-f]{2})+$/, `${name}: hex`);
    assert.ok(!vectors.has(name), `${name}: listed once`);
    vectors.set(name, Buffer.from(joined, 'hex'));
  }
  return vectors;
}

const vectors = documentedVectors();

/** A vector's payload, after checking its length prefix. */
function payloadOf(name) {
  const whole = vectors.get(name);
  assert.ok(whole, `PROTOCOL.md has a ${name} vector`);
  assert.equal(whole.readUInt32BE(0), whole.length - 4, `${name}: length prefix`);
  return whole.subarray(4);
}

const info = (lastError) => ({
  name: 'my-app',
  socket: '/run/flux/projects/my-app.sock',
  secrets: 2,
  generation: 7,
  loadedAtMs: 1764000000000,
  lastError,
});

// The documented values (PROTOCOL.md, just above the vectors block). The
// vectors hold no real secrets, so comparing them with deepEqual is fine.
const RESPONSES = {
  'response.welcome.project': {
    type: 'welcome',
    version: 1,
    server: 'fluxd/0.1.0',
    scope: { type: 'project', name: 'my-app' },
  },
  'response.welcome.control': {
    type: 'welcome',
    version: 1,
    server: 'fluxd/0.1.0',
    scope: { type: 'control' },
  },
  'response.error': { type: 'error', code: 1, codeName: 'not_found', message: 'secret X is not set' },
  'response.value': { type: 'value', value: 'sk-abc123' },
  'response.secrets': {
    type: 'secrets',
    secrets: [{ name: 'OPENAI_API_KEY', setAtMs: 1764000000000 }],
  },
  'response.stored': { type: 'stored', created: true, generation: 2 },
  'response.deleted': { type: 'deleted', generation: 3 },
  'response.values': { type: 'values', values: [{ name: 'A', value: '1' }] },
  'response.project_created': { type: 'project_created', project: info(null) },
  'response.project_deleted': { type: 'project_deleted', name: 'my-app' },
  'response.projects': { type: 'projects', projects: [info('bad seal')] },
  'response.status': {
    type: 'status',
    status: {
      version: '0.1.0',
      pid: 42,
      startedAtMs: 1764000000000,
      stateDir: '/var/lib/flux',
      runtimeDir: '/run/flux',
      projects: [],
    },
  },
};

// Requests this client encodes, and the ones it never sends.
const REQUESTS = {
  'request.hello': () => encodeHello('fluxctl/0.1.0', 1),
  'request.get': () => encodeGet('OPENAI_API_KEY'),
};
const NOT_ENCODED = new Set([
  'request.list',
  'request.set',
  'request.delete',
  'request.get_all',
  'request.create_project',
  'request.delete_project',
  'request.list_projects',
  'request.status',
  'request.audit',
  'request.set_many',
  'response.stored_many',
  // Writes are an operator's (fluxctl secrets set / import), never a
  // function's: this client reads.
  'request.write',
  'request.write_many',
  'response.written',
  'response.written_many',
  // Fleet hosts are managed with fluxctl, not from functions.
  'request.list_hosts',
  'request.add_host',
  'request.remove_host',
  'response.hosts',
  'response.host_updated',
  'request.hosts_head',
  'request.publish_hosts',
  'request.resume_removal',
  'response.hosts_head',
  'response.hosts_changed',
  // Key rotation is an operator's (fluxctl projects rekey).
  'request.rekey_project',
  'response.rekeyed',
  'request.prepare_host_key',
  'response.host_key',
  // This client does not cache values, so it never subscribes to change
  // events: every get asks the daemon.
  'request.subscribe',
  'response.subscribed',
  'response.event',
  'response.audit_records',
  // Daemon administration, done with fluxctl.
  'request.audit_log',
  'response.audit_log',
  'request.audit_trail',
  'response.audit_trail',
  'request.health',
  'response.health',
  'request.restore_vault',
  'response.restored',
  'request.fleet',
  'response.fleet',
  // Versions, digests and drift checks are operator tools (fluxctl
  // secrets history / rollback / diff / list), never a function's.
  'request.history',
  'response.history',
  'request.rollback',
  'response.rolled_back',
  'request.diff',
  'response.diff',
  'request.list_digests',
  'response.secret_digests',
  'request.metrics',
  'response.metrics',
]);

describe('PROTOCOL.md test vectors', () => {
  test('every vector is checked here or knowingly skipped', () => {
    for (const name of vectors.keys()) {
      const known = name in REQUESTS || name in RESPONSES || NOT_ENCODED.has(name);
      assert.ok(known, `new vector ${name}: check it in protocol.test.js`);
    }
  });

  for (const [name, encode] of Object.entries(REQUESTS)) {
    test(`encoder produces ${name} exactly`, () => {
      assert.ok(vectors.has(name), `PROTOCOL.md has ${name}`);
      assert.equal(encode().toString('hex'), vectors.get(name).toString('hex'));
    });
  }

  for (const [name, want] of Object.entries(RESPONSES)) {
    test(`decoder reads ${name}`, () => {
      assert.deepEqual(decodeResponse(payloadOf(name)), want);
    });
  }

  test('the frame reader reads every response vector, whole and byte by byte', () => {
    const names = Object.keys(RESPONSES);
    const stream = Buffer.concat(names.map((n) => vectors.get(n)));
    // All merged in one chunk.
    const merged = new FrameReader().push(stream).map(decodeResponse);
    assert.deepEqual(merged, names.map((n) => RESPONSES[n]));
    // One byte at a time.
    const reader = new FrameReader();
    const split = [];
    for (let i = 0; i < stream.length; i++) {
      split.push(...reader.push(stream.subarray(i, i + 1)));
    }
    assert.deepEqual(split.map(decodeResponse), names.map((n) => RESPONSES[n]));
    assert.equal(reader.pending, 0);
  });

  test('the handshake names this package and its version', () => {
    const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    assert.equal(VERSION, pkg.version);
    assert.equal(CLIENT_NAME, `@flux/secrets/${pkg.version}`);
    const frame = encodeHello(CLIENT_NAME);
    assert.equal(frame.readUInt32BE(0), frame.length - 4);
    assert.ok(frame.subarray(20).equals(Buffer.from(CLIENT_NAME)));
  });
});

describe('frame reader', () => {
  const frame = (payload) => {
    const head = Buffer.alloc(4);
    head.writeUInt32BE(payload.length);
    return Buffer.concat([head, payload]);
  };

  test('frames split at every offset and merged in any grouping', () => {
    const a = frame(Buffer.from('first'));
    const b = frame(Buffer.alloc(0));
    const c = frame(Buffer.alloc(70_000, 7));
    const stream = Buffer.concat([a, b, c]);
    for (const cut of [0, 1, 3, 4, 5, 8, 9, 12, 13, 100, stream.length - 1, stream.length]) {
      const reader = new FrameReader();
      const out = [...reader.push(stream.subarray(0, cut)), ...reader.push(stream.subarray(cut))];
      assert.equal(out.length, 3, `cut at ${cut}`);
      assert.equal(out[0].toString(), 'first');
      assert.equal(out[1].length, 0);
      assert.equal(out[2].length, 70_000);
      assert.ok(out[2].every((x) => x === 7));
      assert.equal(reader.pending, 0);
    }
  });

  test('a length prefix over 64 MiB is refused before any payload arrives', () => {
    const reader = new FrameReader();
    const head = Buffer.alloc(4);
    head.writeUInt32BE(MAX_RESPONSE_FRAME_LEN + 1);
    assert.throws(() => reader.push(head), FrameTooLargeError);
    head.writeUInt32BE(0xffffffff);
    assert.throws(() => new FrameReader().push(head), FrameTooLargeError);
  });

  test('a length prefix of exactly 64 MiB is accepted', () => {
    const reader = new FrameReader();
    const head = Buffer.alloc(4);
    head.writeUInt32BE(MAX_RESPONSE_FRAME_LEN);
    assert.deepEqual(reader.push(head), []);
  });

  test('a prefix split across chunks is checked once complete', () => {
    const reader = new FrameReader();
    const head = Buffer.alloc(4);
    head.writeUInt32BE(0xffffffff);
    assert.deepEqual(reader.push(head.subarray(0, 2)), []);
    assert.throws(() => reader.push(head.subarray(2)), FrameTooLargeError);
  });
});

describe('decoder refuses malformed payloads', () => {
  const value = payloadOf('response.value');

  test('trailing bytes', () => {
    assert.throws(() => decodeResponse(Buffer.concat([value, Buffer.from([0])])), DecodeError);
  });

  test('every truncation', () => {
    for (let cut = 0; cut < value.length; cut++) {
      assert.throws(() => decodeResponse(value.subarray(0, cut)), DecodeError, `cut at ${cut}`);
    }
  });

  test('an unknown variant', () => {
    assert.throws(() => decodeResponse(Buffer.from([11, 0, 0, 0])), /unknown response variant 11/);
  });

  test('a string length past the end, without allocating it', () => {
    const p = Buffer.alloc(12);
    p.writeUInt32LE(2, 0);
    p.writeBigUInt64LE(2n ** 62n, 4);
    assert.throws(() => decodeResponse(p), DecodeError);
  });

  test('invalid UTF-8', () => {
    const p = Buffer.concat([Buffer.from([2, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0xc3, 0x28])]);
    assert.throws(() => decodeResponse(p), /not valid UTF-8/);
  });

  test('decode errors never quote the payload', () => {
    const p = Buffer.concat([value, Buffer.from('zz')]);
    try {
      decodeResponse(p);
      assert.fail('decoded a payload with trailing bytes');
    } catch (err) {
      assert.ok(!err.message.includes('sk-abc123'), 'the error message holds the value');
    }
  });
});

describe('error replies', () => {
  test('not_found is a SecretNotFoundError', () => {
    const err = errorFromReply({ code: 1, message: 'secret X is not set' }, { key: 'X' });
    assert.ok(err instanceof SecretNotFoundError);
    assert.ok(err instanceof FluxSecretsError);
    assert.equal(err.code, 'not_found');
    assert.equal(err.codeNumber, 1);
    assert.equal(err.key, 'X');
  });

  test('every documented code maps to its name', () => {
    const names = [
      'not_found',
      'invalid_name',
      'too_large',
      'permission_denied',
      'unknown_project',
      'bad_request',
      'internal',
      'version_mismatch',
      'already_exists',
      'limit_reached',
      'unavailable',
    ];
    names.forEach((name, i) => {
      const err = errorFromReply({ code: i + 1, message: 'm' });
      assert.equal(err.code, name);
      assert.equal(err.codeNumber, i + 1);
      assert.ok(err instanceof FluxSecretsError);
    });
  });

  test('an unknown code is still an error', () => {
    for (const code of [0, 12, 4242]) {
      const err = errorFromReply({ code, message: 'something new' });
      assert.ok(err instanceof FluxSecretsError);
      assert.ok(!(err instanceof SecretNotFoundError));
      assert.equal(err.code, 'other');
      assert.equal(err.codeNumber, code);
      assert.match(err.message, /something new/);
    }
  });
});
