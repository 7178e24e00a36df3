// Test harness: runs the real `fluxd` and `fluxctl` binaries on a fresh temp
// folder. (It lives outside test/ because `node --test test/` runs every .js
// file under test/ as a test file.)
//
// Binaries come from $FLUX_BIN_DIR, else <repo>/target/debug/ (built by
// `cargo build --workspace`). The daemon is ready when its control socket
// completes a handshake; the harness polls for that instead of sleeping.
// Nothing here prints a secret value: fluxctl's output never holds one, and
// failures name the command and the secret, never the value argument.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { FrameReader, decodeResponse, encodeHello } from '../src/protocol.cjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/** The repository root (clients/node/testing/ is three levels down). */
export const REPO_ROOT = path.resolve(HERE, '..', '..', '..');

const READY_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 10_000;

/** The folder holding fluxd and fluxctl. */
export function binDir() {
  return process.env.FLUX_BIN_DIR || path.join(REPO_ROOT, 'target', 'debug');
}

/** The path of a built binary; throws a clear message when it is missing. */
export function bin(name) {
  const file = path.join(binDir(), name);
  if (!fs.existsSync(file)) {
    throw new Error(
      `${file} does not exist: run \`cargo build --workspace\` in ${REPO_ROOT} first ` +
        '(or set FLUX_BIN_DIR to the folder holding fluxd and fluxctl)',
    );
  }
  return file;
}

// Daemons still running when the process exits (a crashed test) are killed.
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * One handshake on `socketPath`; resolves to the Welcome, rejects on any
 * failure. Used to poll for readiness.
 */
export function probe(socketPath, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const reader = new FrameReader();
    const socket = net.createConnection({ path: socketPath });
    const done = (err, msg) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(msg);
    };
    const timer = setTimeout(() => done(new Error(`no handshake answer on ${socketPath}`)), timeoutMs);
    socket.on('error', (err) => done(err));
    socket.on('close', () => done(new Error(`${socketPath} closed before answering`)));
    socket.on('data', (chunk) => {
      try {
        const [payload] = reader.push(chunk);
        if (!payload) return;
        const msg = decodeResponse(payload);
        if (msg.type !== 'welcome') throw new Error(`handshake answered with ${msg.type}`);
        done(null, msg);
      } catch (err) {
        done(err);
      }
    });
    socket.write(encodeHello('flux-node-test-harness/0'));
  });
}

/** A fluxd process on its own temp folders: `<dir>/state`, `<dir>/run`, `<dir>/fluxd.log`. */
export class TestDaemon {
  #child = null;
  #exited = null;

  constructor(dir) {
    this.dir = dir;
    this.stateDir = path.join(dir, 'state');
    this.runtimeDir = path.join(dir, 'run');
    this.controlSocket = path.join(this.runtimeDir, 'control.sock');
    this.logPath = path.join(dir, 'fluxd.log');
  }

  /** Starts fluxd on a fresh short temp folder and waits until it is ready. */
  static async start() {
    bin('fluxd');
    bin('fluxctl');
    // Short: Unix socket paths are limited to 107 bytes.
    const dir = await fsp.mkdtemp('/tmp/fxn');
    const daemon = new TestDaemon(dir);
    await daemon.restart();
    return daemon;
  }

  /** `<runtime>/projects/<project>.sock`. */
  projectSocket(project) {
    return path.join(this.runtimeDir, 'projects', `${project}.sock`);
  }

  get pid() {
    return this.#child?.pid;
  }

  /** Everything fluxd wrote to stderr so far, across restarts. */
  log() {
    try {
      return fs.readFileSync(this.logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** Starts fluxd (again) on the same folders and waits until it is ready. */
  async restart() {
    if (this.#child) throw new Error('fluxd is already running');
    const logFd = fs.openSync(this.logPath, 'a');
    const env = { ...process.env };
    delete env.RUST_LOG;
    let child;
    try {
      child = spawn(
        bin('fluxd'),
        ['--state-dir', this.stateDir, '--runtime-dir', this.runtimeDir, '--log-level', 'debug'],
        { stdio: ['ignore', 'ignore', logFd], env },
      );
    } finally {
      fs.closeSync(logFd);
    }
    this.#child = child;
    running.add(child);
    this.#exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        running.delete(child);
        resolve({ code, signal });
      });
    });
    child.once('error', () => {}); // surfaced through 'exit' / readiness
    await this.#waitReady(child);
  }

  async #waitReady(child) {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let exit = null;
    this.#exited.then((e) => {
      exit = e;
    });
    let lastError;
    for (;;) {
      if (exit) {
        this.#child = null;
        throw new Error(
          `fluxd exited (code ${exit.code}, signal ${exit.signal}) before it was ready:\n${this.log()}`,
        );
      }
      try {
        const welcome = await probe(this.controlSocket);
        if (welcome.scope.type !== 'control') throw new Error('control socket has a project scope');
        return;
      } catch (err) {
        lastError = err;
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        this.#child = null;
        throw new Error(
          `fluxd not ready after ${READY_TIMEOUT_MS} ms (last: ${lastError?.message}):\n${this.log()}`,
        );
      }
      await delay(10); // poll interval
    }
  }

  /** SIGTERM, then waits for fluxd to exit; resolves to `{ code, signal }`. */
  async stop() {
    const child = this.#child;
    if (!child) throw new Error('fluxd is not running');
    this.#child = null;
    child.kill('SIGTERM');
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(() => resolve(null), STOP_TIMEOUT_MS);
    });
    const exit = await Promise.race([this.#exited, timeout]);
    clearTimeout(timer);
    if (!exit) {
      child.kill('SIGKILL');
      await this.#exited;
      throw new Error(`fluxd did not stop within ${STOP_TIMEOUT_MS} ms of SIGTERM`);
    }
    return exit;
  }

  /** Stops fluxd if it runs and removes the temp folder. */
  async cleanup() {
    if (this.#child) await this.stop();
    await fsp.rm(this.dir, { recursive: true, force: true });
  }

  /**
   * Runs `fluxctl ARGS` against this daemon; resolves to
   * `{ status, stdout, stderr }`.
   */
  ctl(args, { input } = {}) {
    const env = { ...process.env, FLUX_RUNTIME_DIR: this.runtimeDir };
    delete env.FLUX_PROJECT;
    return new Promise((resolve, reject) => {
      const child = spawn(bin('fluxctl'), args, { cwd: this.dir, env, stdio: ['pipe', 'pipe', 'pipe'] });
      const out = [];
      const err = [];
      child.stdout.on('data', (c) => out.push(c));
      child.stderr.on('data', (c) => err.push(c));
      child.on('error', reject);
      child.on('close', (status) =>
        resolve({
          status,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
        }),
      );
      child.stdin.end(input ?? '');
    });
  }

  /** Runs fluxctl and throws, naming `what` (never a value), when it fails. */
  async ctlOk(args, what) {
    const res = await this.ctl(args);
    if (res.status !== 0) {
      throw new Error(`fluxctl ${what} failed with status ${res.status}: ${res.stderr.trim()}`);
    }
    return res.stdout;
  }

  /** `fluxctl projects create NAME`. */
  createProject(name) {
    return this.ctlOk(['projects', 'create', name], `projects create ${name}`);
  }

  /** `fluxctl projects delete NAME --yes`. */
  deleteProject(name) {
    return this.ctlOk(['projects', 'delete', name, '--yes'], `projects delete ${name}`);
  }

  /** `fluxctl secrets set NAME VALUE --project PROJECT` (with
   * `--allow-empty` for an empty value, which fluxctl refuses otherwise). */
  setSecret(project, name, value) {
    const allowEmpty = value === '' ? ['--allow-empty'] : [];
    return this.ctlOk(
      ['secrets', 'set', name, value, '--project', project, ...allowEmpty],
      `secrets set ${name} --project ${project}`,
    );
  }

  /** `fluxctl secrets delete NAME --project PROJECT`. */
  deleteSecret(project, name) {
    return this.ctlOk(
      ['secrets', 'delete', name, '--project', project],
      `secrets delete ${name} --project ${project}`,
    );
  }
}
