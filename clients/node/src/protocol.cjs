// Internal: the Flux Secrets wire protocol, version 1 (see PROTOCOL.md at the
// repository root). Not part of the package's public API; exported so the
// tests can check the encoder and decoder against the documented vectors.
//
// A frame is a u32 big-endian payload length, then the payload. Payloads are
// bincode 1 ("legacy") layout: little-endian fixed-width integers, u64 byte
// lengths for strings, u64 element counts for vectors, a u32 variant index
// for enums, one byte for bool and for the Option tag.
//
// Nothing in this module ever puts a decoded value into an error message.

'use strict';

const PROTOCOL_VERSION = 1;

/** Largest response frame a client accepts (64 MiB), per PROTOCOL.md. */
const MAX_RESPONSE_FRAME_LEN = 64 * 1024 * 1024;

/** Largest request frame the daemon accepts (256 KiB). */
const MAX_REQUEST_FRAME_LEN = 256 * 1024;

/** Request variant indexes. */
const Request = Object.freeze({
  Hello: 0,
  Get: 1,
  List: 2,
  Set: 3,
  Delete: 4,
  GetAll: 5,
  CreateProject: 6,
  DeleteProject: 7,
  ListProjects: 8,
  Status: 9,
});

/** Response variant indexes and the names the decoder gives them. */
const RESPONSE_TYPES = [
  'welcome',
  'error',
  'value',
  'secrets',
  'stored',
  'deleted',
  'values',
  'project_created',
  'project_deleted',
  'projects',
  'status',
];

/** Wire error codes and their names (PROTOCOL.md, "Error codes"). */
const ERROR_CODES = Object.freeze({
  1: 'not_found',
  2: 'invalid_name',
  3: 'too_large',
  4: 'permission_denied',
  5: 'unknown_project',
  6: 'bad_request',
  7: 'internal',
  8: 'version_mismatch',
  9: 'already_exists',
  10: 'limit_reached',
  11: 'unavailable',
});

/** The name of a wire error code; `other` for a code this build does not know. */
function errorCodeName(n) {
  return Object.hasOwn(ERROR_CODES, n) ? ERROR_CODES[n] : 'other';
}

/** Thrown for a payload that does not decode. Says what, never which bytes. */
class DecodeError extends Error {
  constructor(message) {
    super(`malformed message from fluxd: ${message}`);
    this.name = 'DecodeError';
  }
}

/** Thrown by FrameReader for a length prefix over the limit. */
class FrameTooLargeError extends Error {
  constructor(len, max) {
    super(`fluxd sent a frame of ${len} bytes, over the ${max}-byte limit`);
    this.name = 'FrameTooLargeError';
    this.len = len;
    this.max = max;
  }
}

// ---------------------------------------------------------------- encoding

function u32le(n) {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
}

function str(s) {
  const bytes = Buffer.from(s, 'utf8');
  const len = Buffer.allocUnsafe(8);
  len.writeBigUInt64LE(BigInt(bytes.length), 0);
  return [len, bytes];
}

/** Prefixes a payload with its u32 big-endian length. */
function frame(parts) {
  const payload = Buffer.concat(parts);
  if (payload.length > MAX_REQUEST_FRAME_LEN) {
    throw new RangeError(
      `request of ${payload.length} bytes exceeds the daemon's ${MAX_REQUEST_FRAME_LEN}-byte limit`,
    );
  }
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(payload.length, 0);
  return Buffer.concat([head, payload]);
}

/** The whole frame of `Hello { version, client }`. */
function encodeHello(client, version = PROTOCOL_VERSION) {
  return frame([u32le(Request.Hello), u32le(version), ...str(client)]);
}

/** The whole frame of `Get { name }`. */
function encodeGet(name) {
  return frame([u32le(Request.Get), ...str(name)]);
}

// ---------------------------------------------------------------- decoding

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** A bounds-checked cursor over one payload. */
class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
  }

  need(n, what) {
    if (this.buf.length - this.pos < n) {
      throw new DecodeError(`truncated ${what} at byte ${this.pos}`);
    }
  }

  u8(what) {
    this.need(1, what);
    return this.buf[this.pos++];
  }

  u32(what) {
    this.need(4, what);
    const n = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return n;
  }

  /** A u64 as a number; as a bigint when it is over 2^53 - 1. */
  u64(what) {
    this.need(8, what);
    const n = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n;
  }

  /** A u64 length, checked against the bytes left so a hostile prefix cannot allocate. */
  len(what, minItemSize = 1) {
    const n = this.u64(`${what} length`);
    if (typeof n !== 'number' || n * minItemSize > this.buf.length - this.pos) {
      throw new DecodeError(`${what} length ${n} exceeds the ${this.buf.length - this.pos} bytes left`);
    }
    return n;
  }

  bool(what) {
    const b = this.u8(what);
    if (b > 1) throw new DecodeError(`invalid bool ${b} for ${what}`);
    return b === 1;
  }

  string(what) {
    const n = this.len(what);
    const bytes = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    try {
      return utf8.decode(bytes);
    } catch {
      throw new DecodeError(`${what} is not valid UTF-8`);
    }
  }

  option(what, inner) {
    const tag = this.u8(`${what} tag`);
    if (tag === 0) return null;
    if (tag === 1) return inner();
    throw new DecodeError(`invalid option tag ${tag} for ${what}`);
  }

  vec(what, minItemSize, item) {
    const n = this.len(what, minItemSize);
    const out = [];
    for (let i = 0; i < n; i++) out.push(item());
    return out;
  }

  end() {
    if (this.pos !== this.buf.length) {
      throw new DecodeError(
        `${this.buf.length - this.pos} trailing bytes after a ${this.pos}-byte message`,
      );
    }
  }
}

function projectInfo(r) {
  return {
    name: r.string('project name'),
    socket: r.string('socket'),
    secrets: r.u64('secrets'),
    generation: r.u64('generation'),
    loadedAtMs: r.u64('loaded_at_ms'),
    lastError: r.option('last_error', () => r.string('last_error')),
  };
}

// Smallest encodings, to bound vector counts before looping.
const MIN_PROJECT_INFO = 8 + 8 + 8 + 8 + 8 + 1;

/**
 * Decodes one response payload (without its length prefix) into
 * `{ type, ... }`. Throws DecodeError for a payload that is not exactly one
 * response.
 *
 * - welcome: `{ version, server, scope: { type: 'control' } | { type: 'project', name } }`
 * - error: `{ code, codeName, message }`
 * - value: `{ value }`
 * - secrets: `{ secrets: [{ name, setAtMs }] }`
 * - stored: `{ created, generation }`; deleted: `{ generation }`
 * - values: `{ values: [{ name, value }] }`
 * - project_created: `{ project }`; project_deleted: `{ name }`
 * - projects: `{ projects }`; status: `{ status }`
 */
function decodeResponse(payload) {
  const r = new Reader(payload);
  const index = r.u32('variant');
  const type = RESPONSE_TYPES[index];
  let msg;
  switch (type) {
    case 'welcome': {
      const version = r.u32('version');
      const server = r.string('server');
      const scopeIndex = r.u32('scope');
      let scope;
      if (scopeIndex === 0) scope = { type: 'control' };
      else if (scopeIndex === 1) scope = { type: 'project', name: r.string('scope project') };
      else throw new DecodeError(`unknown scope variant ${scopeIndex}`);
      msg = { type, version, server, scope };
      break;
    }
    case 'error': {
      const code = r.u32('error code');
      msg = { type, code, codeName: errorCodeName(code), message: r.string('error message') };
      break;
    }
    case 'value':
      msg = { type, value: r.string('value') };
      break;
    case 'secrets':
      msg = {
        type,
        secrets: r.vec('secrets', 16, () => ({ name: r.string('name'), setAtMs: r.u64('set_at_ms') })),
      };
      break;
    case 'stored':
      msg = { type, created: r.bool('created'), generation: r.u64('generation') };
      break;
    case 'deleted':
      msg = { type, generation: r.u64('generation') };
      break;
    case 'values':
      msg = {
        type,
        values: r.vec('values', 16, () => ({ name: r.string('name'), value: r.string('value') })),
      };
      break;
    case 'project_created':
      msg = { type, project: projectInfo(r) };
      break;
    case 'project_deleted':
      msg = { type, name: r.string('project name') };
      break;
    case 'projects':
      msg = { type, projects: r.vec('projects', MIN_PROJECT_INFO, () => projectInfo(r)) };
      break;
    case 'status':
      msg = {
        type,
        status: {
          version: r.string('version'),
          pid: r.u32('pid'),
          startedAtMs: r.u64('started_at_ms'),
          stateDir: r.string('state_dir'),
          runtimeDir: r.string('runtime_dir'),
          projects: r.vec('projects', MIN_PROJECT_INFO, () => projectInfo(r)),
        },
      };
      break;
    default:
      throw new DecodeError(`unknown response variant ${index}`);
  }
  r.end();
  return msg;
}

// ---------------------------------------------------------------- framing

/**
 * Reassembles frames from a byte stream: feed it every `data` chunk; it
 * returns the payloads completed by that chunk (none, one or several). The
 * length prefix is checked against `maxLen` before any payload is buffered,
 * and a frame's bytes are joined once, when the frame is complete.
 */
class FrameReader {
  constructor(maxLen = MAX_RESPONSE_FRAME_LEN) {
    this.maxLen = maxLen;
    this.chunks = [];
    this.buffered = 0;
    this.want = -1; // payload length of the frame in progress; -1 while reading a prefix
  }

  /** Bytes received and not yet returned as a payload. */
  get pending() {
    return this.buffered;
  }

  push(chunk) {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const payloads = [];
    for (;;) {
      if (this.want < 0) {
        if (this.buffered < 4) break;
        const len = this.take(4).readUInt32BE(0);
        if (len > this.maxLen) {
          this.reset();
          throw new FrameTooLargeError(len, this.maxLen);
        }
        this.want = len;
      }
      if (this.buffered < this.want) break;
      payloads.push(this.take(this.want));
      this.want = -1;
    }
    return payloads;
  }

  /** Removes and returns the first `n` buffered bytes. */
  take(n) {
    this.buffered -= n;
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0];
      const use = Math.min(c.length, n - at);
      c.copy(out, at, 0, use);
      at += use;
      if (use === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(use);
    }
    return out;
  }

  /** Drops everything buffered (the stream is no longer in sync). */
  reset() {
    for (const c of this.chunks) c.fill(0);
    this.chunks = [];
    this.buffered = 0;
    this.want = -1;
  }
}

module.exports = {
  PROTOCOL_VERSION,
  MAX_RESPONSE_FRAME_LEN,
  MAX_REQUEST_FRAME_LEN,
  Request,
  ERROR_CODES,
  errorCodeName,
  DecodeError,
  FrameTooLargeError,
  frame,
  encodeHello,
  encodeGet,
  decodeResponse,
  FrameReader,
};
