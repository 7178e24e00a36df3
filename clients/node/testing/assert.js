// Assertions shared by the tests. None of them ever prints a secret value.
import assert from 'node:assert/strict';

/** Asserts a value without ever printing it. */
export function assertValue(got, want, name) {
  const size = (v) => (typeof v === 'string' ? `${Buffer.byteLength(v)} bytes` : typeof v);
  assert.ok(got === want, `${name}: value mismatch (got ${size(got)}, expected ${size(want)})`);
}

/** Awaits a rejection and returns the error (fails if `promise` resolves, without printing what it resolved to). */
export async function rejection(promise, what) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  assert.fail(`${what} resolved; expected a rejection`);
}
