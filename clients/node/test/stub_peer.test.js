// Behaviour the real fluxd cannot be made to show on demand: a peer that
// drops every connection, refuses the handshake, sends an oversized frame,
// or dribbles its answers byte by byte. A small in-process Unix-socket stub
// plays that peer; it speaks the documented frames from src/protocol.cjs.

import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createSecrets } from '../src/index.js';
import { FrameReader, MAX_RESPONSE_FRAME_LEN, Request } from '../src/protocol.cjs';
import { rejection } from '../testing/assert.js';

let dir;
before(async () => {
  dir = await fsp.mkdtemp('/tmp/fxs');
});
after(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

// Response payload builders (bincode legacy layout, see PROTOCOL.md).
const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const str = (s) => {
  const bytes = Buffer.from(s);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(bytes.length));
  return Buffer.concat([len, bytes]);
};
const framed = (payload) => {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(payload.length);
  return Buffer.concat([head, payload]);
};
const welcome = () => framed(Buffer.concat([u32(0), u32(1), str('stub/0'), u32(1), str('app')]));
const errorReply = (code, message) => framed(Buffer.concat([u32(1), u32(code), str(message)]));
const value = (v) => framed(Buffer.concat([u32(2), str(v)]));

/**
 * A stub peer on a fresh socket. `onRequest(socket, request, conn)` is
 * called for each decoded request `{ index, name }`; `onConnect(socket)`
 * for each connection. Resolves to `{ path, connections, close }`.
 */
async function stub(name, { onConnect, onRequest } = {}) {
  const socketPath = path.join(dir, `${name}.sock`);
  const state = { path: socketPath, connections: 0 };
  const sockets = new Set();
  const server = net.createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const reader = new FrameReader();
    const conn = { requests: 0 };
    socket.on('data', (chunk) => {
      for (const p of reader.push(chunk)) {
        const index = p.readUInt32LE(0);
        const req = { index };
        if (index === Request.Get) req.name = p.subarray(12).toString();
        if (index === Request.Hello) req.version = p.readUInt32LE(4);
        conn.requests++;
        onRequest?.(socket, req, conn);
      }
    });
    onConnect?.(socket);
  });
  await new Promise((resolve) => server.listen(socketPath, resolve));
  state.close = () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return state;
}

test('a peer that drops every connection: exactly one retry, then unreachable', async () => {
  const peer = await stub('drops', { onConnect: (s) => s.destroy() });
  try {
    const c = createSecrets({ socketPath: peer.path, reconnectDelayMs: 20 });
    const errs = await Promise.all([1, 2, 3].map((i) => rejection(c.get(`K${i}`, 'fb'), `get K${i}`)));
    for (const err of errs) {
      assert.equal(err.code, 'unreachable');
      assert.ok(err.message.includes(peer.path));
    }
    assert.equal(peer.connections, 2, 'one connection, then one reconnect');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(peer.connections, 2, 'no reconnect loop');
  } finally {
    await peer.close();
  }
});

test('a handshake Error rejects every waiting caller with that error', async () => {
  const peer = await stub('refuses', {
    onRequest: (s, req) => {
      if (req.index === Request.Hello) {
        s.end(errorReply(8, 'this fluxd speaks protocol version 2: upgrade the older of the two'));
      }
    },
  });
  try {
    const c = createSecrets({ socketPath: peer.path, reconnectDelayMs: 20 });
    const errs = await Promise.all(['A', 'B', 'C'].map((k) => rejection(c.get(k, 'fb'), `get ${k}`)));
    for (const err of errs) {
      assert.equal(err.code, 'version_mismatch');
      assert.equal(err.codeNumber, 8);
      assert.match(err.message, /upgrade the older/);
    }
    assert.equal(peer.connections, 1, 'a refused handshake is not retried');
  } finally {
    await peer.close();
  }
  // Even a not_found code on the handshake is no reason to use a fallback.
  const odd = await stub('odd', {
    onRequest: (s, req) => {
      if (req.index === Request.Hello) s.end(errorReply(1, 'strange'));
    },
  });
  try {
    const err = await rejection(createSecrets({ socketPath: odd.path }).get('A', 'fb'), 'get A');
    assert.equal(err.code, 'not_found');
    assert.match(err.message, /refused the handshake/);
  } finally {
    await odd.close();
  }
});

test('an unknown error code still rejects, and never resolves to the fallback', async () => {
  const peer = await stub('newcode', {
    onRequest: (s, req) => {
      if (req.index === Request.Hello) s.write(welcome());
      else s.write(errorReply(77, 'a failure from the future'));
    },
  });
  try {
    const c = createSecrets({ socketPath: peer.path });
    const err = await rejection(c.get('A', 'fb'), 'get A');
    assert.equal(err.code, 'other');
    assert.equal(err.codeNumber, 77);
    assert.match(err.message, /a failure from the future/);
    for (const [code, name] of [[4, 'permission_denied'], [7, 'internal'], [10, 'limit_reached']]) {
      const peer2 = await stub(`code${code}`, {
        onRequest: (s, req) => s.write(req.index === Request.Hello ? welcome() : errorReply(code, 'no')),
      });
      try {
        const e = await rejection(createSecrets({ socketPath: peer2.path }).get('A', 'fb'), `get A (${name})`);
        assert.equal(e.code, name);
        assert.equal(e.codeNumber, code);
      } finally {
        await peer2.close();
      }
    }
    await c.close();
  } finally {
    await peer.close();
  }
});

test('a response length prefix over 64 MiB is refused without waiting for the payload', async () => {
  const peer = await stub('huge', {
    onRequest: (s, req) => {
      if (req.index === Request.Hello) {
        s.write(welcome());
      } else {
        const head = Buffer.alloc(4);
        head.writeUInt32BE(MAX_RESPONSE_FRAME_LEN + 1);
        s.write(head); // and never the payload
      }
    },
  });
  try {
    const c = createSecrets({ socketPath: peer.path });
    const err = await rejection(c.get('A'), 'get A');
    assert.equal(err.code, 'too_large');
    assert.match(err.message, /67108865 bytes/);
  } finally {
    await peer.close();
  }
});

test('answers split byte by byte and merged into one write are both read', async () => {
  const answers = { A: 'alpha-ü', B: '' };
  const trickle = async (s, bytes) => {
    for (const b of bytes) {
      s.write(Buffer.from([b]));
      await new Promise((r) => setImmediate(r));
    }
  };
  let queue = Promise.resolve();
  let batch = [];
  const peer = await stub('trickle', {
    onRequest: (s, req, conn) => {
      const frame = req.index === Request.Hello ? welcome() : value(answers[req.name] ?? 'x');
      if (conn.requests <= 3) {
        // Hello and the first two answers: one byte per write.
        queue = queue.then(() => trickle(s, frame));
      } else {
        // The rest: all merged into one write once the last request is in.
        batch.push(frame);
        if (conn.requests === 7) {
          const merged = Buffer.concat(batch);
          batch = [];
          queue = queue.then(() => s.write(merged));
        }
      }
    },
  });
  try {
    const c = createSecrets({ socketPath: peer.path });
    const got = await Promise.all(['A', 'B', 'A', 'B', 'A', 'B'].map((k) => c.get(k)));
    got.forEach((v, i) => {
      const k = i % 2 ? 'B' : 'A';
      assert.ok(v === answers[k], `${k}: value mismatch`);
    });
    assert.equal(peer.connections, 1);
    await c.close();
  } finally {
    await peer.close();
  }
});
