// The checks made before connecting: the socket and the folders leading to
// it must belong to this process's user, root or fluxd's user, and those
// folders must not be writable by group or others. Node.js has no
// SO_PEERCRED for the connecting side, so these checks are the client's only
// defense against a socket another user planted.
//
// The real fluxd's layout (<runtime>/projects/<project>.sock) is tampered
// with the way a squatter would leave it: a folder owned by another uid
// (65534), a folder writable by all (0777), a socket owned by another uid.
// That needs root (to chown); without it those tests print SKIPPED.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FluxSecretsError, UntrustedSocketError, createSecrets } from '../src/index.js';
import { checkSocket, daemonUser, uidInPasswd } from '../src/trust.cjs';
import { TestDaemon } from '../testing/fluxd.js';
import { assertValue, rejection } from '../testing/assert.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const IS_ROOT = process.geteuid() === 0;
const OTHER_UID = 65534; // nobody
const SECRET = 'trust-test-value-5d1c';
/** checkSocket's options as root, with no daemon user. */
const NO_DAEMON = { euid: 0, daemon: { name: 'fluxd', uid: null, fromEnv: false } };

function skip(t, why) {
  console.log(`SKIPPED: ${t.name}: ${why}`);
  t.skip(why);
}

/** Runs `fn` with FLUX_DAEMON_USER set to `value` (or unset for undefined). */
async function withDaemonUser(value, fn) {
  const saved = process.env.FLUX_DAEMON_USER;
  if (value === undefined) delete process.env.FLUX_DAEMON_USER;
  else process.env.FLUX_DAEMON_USER = value;
  try {
    return await fn();
  } finally {
    if (saved === undefined) delete process.env.FLUX_DAEMON_USER;
    else process.env.FLUX_DAEMON_USER = saved;
  }
}

/** Whether every file in `dir`, and every folder down to it, can be read by any user. */
function readableByOthers(dir) {
  for (let d = dir; ; d = path.dirname(d)) {
    if ((fs.statSync(d).mode & 0o005) !== 0o005) return false;
    if (path.dirname(d) === d) break;
  }
  return fs.readdirSync(dir).every((f) => (fs.statSync(path.join(dir, f)).mode & 0o004) !== 0);
}

/** A listening Unix socket at `file` that counts the connections it gets. */
async function listener(file) {
  const state = { connections: 0 };
  const server = net.createServer((s) => {
    state.connections++;
    s.destroy();
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, resolve);
  });
  state.close = () => new Promise((resolve) => server.close(() => resolve()));
  return state;
}

describe('the daemon user', () => {
  const passwd = [
    '# a comment',
    'root:x:0:0:root:/root:/bin/bash',
    '+nis::::::',
    'fluxd:x:998:998:Flux Secrets:/nonexistent:/usr/sbin/nologin',
    'svc:x:1234:1234::/home/svc:/bin/sh',
    'broken:x:notanumber:1::/:/bin/sh',
    '',
  ].join('\n');
  let file;
  before(async () => {
    file = path.join(await fsp.mkdtemp('/tmp/fxp'), 'passwd');
    await fsp.writeFile(file, passwd);
  });
  after(() => fsp.rm(path.dirname(file), { recursive: true, force: true }));

  test('passwd lines are parsed by name', () => {
    assert.equal(uidInPasswd(passwd, 'root'), 0);
    assert.equal(uidInPasswd(passwd, 'fluxd'), 998);
    assert.equal(uidInPasswd(passwd, 'svc'), 1234);
    assert.equal(uidInPasswd(passwd, 'broken'), null);
    assert.equal(uidInPasswd(passwd, 'absent'), null);
    assert.equal(uidInPasswd(passwd, '# a comment'), null);
    assert.equal(uidInPasswd(passwd, ''), null);
  });

  test('FLUX_DAEMON_USER when set, else the fluxd user', () => {
    assert.deepEqual(daemonUser({}, file), { name: 'fluxd', uid: 998, fromEnv: false });
    assert.deepEqual(daemonUser({ FLUX_DAEMON_USER: '' }, file), { name: 'fluxd', uid: 998, fromEnv: false });
    assert.deepEqual(daemonUser({ FLUX_DAEMON_USER: 'svc' }, file), { name: 'svc', uid: 1234, fromEnv: true });
    assert.deepEqual(daemonUser({ FLUX_DAEMON_USER: 'nosuch' }, file), { name: 'nosuch', uid: null, fromEnv: true });
    // A number that names no user is a uid (a container without the user).
    assert.deepEqual(daemonUser({ FLUX_DAEMON_USER: '4242' }, file), { name: '4242', uid: 4242, fromEnv: true });
    // No fluxd user and no passwd file: only you and root are trusted.
    assert.deepEqual(daemonUser({}, path.join(path.dirname(file), 'missing')), {
      name: 'fluxd',
      uid: null,
      fromEnv: false,
    });
  });
});

describe('checks on a stub socket', () => {
  let dir;
  before(async () => {
    dir = await fsp.mkdtemp('/tmp/fxt');
  });
  after(() => fsp.rm(dir, { recursive: true, force: true }));

  test('a folder owned by another user is refused before anything connects', async (t) => {
    if (!IS_ROOT) return skip(t, 'chown needs root');
    const squat = path.join(dir, 'squat');
    await fsp.mkdir(squat, { mode: 0o700 });
    const stub = await listener(path.join(squat, 'app.sock'));
    try {
      await fsp.chown(squat, OTHER_UID, OTHER_UID);
      const err = await withDaemonUser('4242', () =>
        rejection(createSecrets({ socketPath: path.join(squat, 'app.sock') }).get('A', 'fb'), 'get A'),
      );
      assert.ok(err instanceof UntrustedSocketError, `expected UntrustedSocketError, got ${err?.name}`);
      assert.ok(err instanceof FluxSecretsError);
      assert.equal(err.code, 'untrusted_socket');
      assert.equal(err.reason, 'untrusted_owner');
      assert.equal(err.path, squat);
      assert.equal(stub.connections, 0, 'the client connected to a socket it refused');
    } finally {
      await stub.close();
    }
  });

  test('what is checked is the resolved path, and that is where the client connects', async (t) => {
    if (!IS_ROOT) return skip(t, 'chown needs root');
    const good = path.join(dir, 'good');
    const evil = path.join(dir, 'evil');
    await fsp.mkdir(good, { mode: 0o700 });
    await fsp.mkdir(evil, { mode: 0o700 });
    const stub = await listener(path.join(good, 'app.sock'));
    try {
      // A link in a folder another user owns, to a socket in a good folder.
      await fsp.symlink(path.join(good, 'app.sock'), path.join(evil, 'link.sock'));
      await fsp.chown(evil, OTHER_UID, OTHER_UID);
      assert.equal(checkSocket(path.join(evil, 'link.sock'), NO_DAEMON), path.join(good, 'app.sock'));
      // And the other way round: a link in a good folder to a socket in a bad one.
      const planted = await listener(path.join(evil, 'planted.sock'));
      try {
        await fsp.symlink(path.join(evil, 'planted.sock'), path.join(good, 'link.sock'));
        assert.throws(
          () => checkSocket(path.join(good, 'link.sock'), NO_DAEMON),
          (e) => e.code === 'untrusted_socket' && e.path === evil && e.message.includes(`${path.join(good, 'link.sock')}, which leads to ${path.join(evil, 'planted.sock')}: the folder ${evil} is owned by uid 65534`),
        );
        const err = await rejection(createSecrets({ socketPath: path.join(good, 'link.sock') }).get('A'), 'get A');
        assert.equal(err.code, 'untrusted_socket');
        assert.equal(planted.connections, 0);
      } finally {
        await planted.close();
      }
    } finally {
      await stub.close();
    }
  });

  test('a path that is not a socket is refused, a missing one is unreachable', async () => {
    const file = path.join(dir, 'plain.sock');
    await fsp.writeFile(file, '');
    const err = await rejection(createSecrets({ socketPath: file, reconnectDelayMs: 0 }).get('A', 'fb'), 'get A');
    assert.equal(err.code, 'untrusted_socket');
    assert.equal(err.reason, 'not_a_socket');
    assert.match(err.message, /: it is not a socket but a regular file$/);
    const gone = await rejection(
      createSecrets({ socketPath: path.join(dir, 'gone.sock'), reconnectDelayMs: 0 }).get('A', 'fb'),
      'get A',
    );
    assert.equal(gone.code, 'unreachable');
  });

  test('a process that is not root trusts its own folders and refuses another user', async (t) => {
    if (!IS_ROOT) return skip(t, 'starting a process as another user needs root');
    // The child runs as uid 65534: it must be able to read this package.
    if (!readableByOthers(path.join(HERE, '..', 'src'))) {
      return skip(t, 'the package is not readable by uid 65534');
    }
    const base = path.join(dir, 'users');
    const mine = path.join(base, 'mine'); // the child's own runtime folder
    const theirs = path.join(base, 'theirs'); // another user's, readable by all
    await fsp.mkdir(mine, { recursive: true, mode: 0o755 });
    await fsp.mkdir(theirs, { mode: 0o755 });
    await fsp.chmod(base, 0o755);
    await fsp.chmod(dir, 0o755);
    const a = await listener(path.join(mine, 'a.sock'));
    const b = await listener(path.join(theirs, 'b.sock'));
    try {
      await fsp.chown(mine, OTHER_UID, OTHER_UID);
      await fsp.chmod(mine, 0o700);
      await fsp.chown(theirs, 4242, 4242);
      const script = `
        const { checkSocket } = require(${JSON.stringify(path.join(HERE, '..', 'src', 'trust.cjs'))});
        const out = {};
        for (const p of process.argv.slice(1)) {
          try { checkSocket(p); out[p] = 'ok'; } catch (e) { out[p] = e.code + ': ' + e.message; }
        }
        console.log(JSON.stringify(out));
      `;
      const env = { PATH: process.env.PATH };
      const res = spawnSync(process.execPath, ['-e', script, path.join(mine, 'a.sock'), path.join(theirs, 'b.sock')], {
        uid: OTHER_UID,
        gid: OTHER_UID,
        env,
        cwd: '/',
        encoding: 'utf8',
      });
      assert.equal(res.status, 0, res.stderr);
      const out = JSON.parse(res.stdout);
      assert.equal(out[path.join(mine, 'a.sock')], 'ok');
      assert.match(
        out[path.join(theirs, 'b.sock')],
        /^untrusted_socket: .*the folder .*theirs is owned by uid 4242, not by you \(uid 65534\), root or the fluxd user/,
      );
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe("the real fluxd's runtime folder, tampered with", () => {
  let daemon;
  let socketPath;
  let projectsDir;

  /** Handshakes made by this package so far, from fluxd's debug log. */
  const ourHandshakes = () =>
    daemon.log().split('\n').filter((l) => l.includes('handshake') && l.includes('client=@flux/secrets/')).length;

  before(async () => {
    daemon = await TestDaemon.start();
    await daemon.createProject('app');
    await daemon.setSecret('app', 'API_KEY', SECRET);
    socketPath = daemon.projectSocket('app');
    projectsDir = path.dirname(socketPath);
  });

  after(() => daemon?.cleanup());

  /** Undoes every test's tampering: fluxd's own layout, root-owned 0700. */
  async function restore() {
    for (const p of [daemon.runtimeDir, projectsDir]) {
      await fsp.chown(p, 0, 0);
      await fsp.chmod(p, 0o700);
    }
    await fsp.chown(socketPath, 0, 0);
  }

  test("fluxd's own layout passes", async () => {
    const c = createSecrets({ socketPath });
    assertValue(await c.get('API_KEY'), SECRET, 'API_KEY');
    await c.close();
  });

  test('a folder owned by uid 65534 is refused: nothing is sent, a fallback does not hide it', async (t) => {
    if (!IS_ROOT) return skip(t, 'chown needs root');
    try {
      await fsp.chown(projectsDir, OTHER_UID, OTHER_UID);
      const before = ourHandshakes();
      const c = createSecrets({ socketPath, reconnectDelayMs: 0 });
      const err = await withDaemonUser('4242', () => rejection(c.get('API_KEY', 'fallback'), 'get API_KEY'));
      assert.ok(err instanceof UntrustedSocketError, `expected UntrustedSocketError, got ${err?.name}: ${err?.message}`);
      assert.equal(err.code, 'untrusted_socket');
      assert.equal(err.codeNumber, null);
      assert.equal(err.reason, 'untrusted_owner');
      assert.equal(err.path, projectsDir);
      assert.equal(err.socketPath, socketPath);
      assert.equal(
        err.message,
        `refusing to use the fluxd socket ${socketPath}: the folder ${projectsDir} is owned by uid 65534, ` +
          'not by you (uid 0), root or the fluxd user (FLUX_DAEMON_USER=4242, uid 4242): another user may ' +
          'have created it and could put their own socket in it; use a runtime folder owned by you or by ' +
          'fluxd, and if fluxd runs as uid 65534, set FLUX_DAEMON_USER to that user',
      );
      assert.ok(!`${err.message} ${err.stack}`.includes(SECRET));
      assert.equal(ourHandshakes(), before, 'a handshake reached fluxd through a refused socket');

      // Once it is fixed, the same client works again: the check runs at every connect.
      await fsp.chown(projectsDir, 0, 0);
      assertValue(await c.get('API_KEY'), SECRET, 'API_KEY');
      await c.close();
    } finally {
      await restore();
    }
  });

  test('the same folder owned by the fluxd user (FLUX_DAEMON_USER) passes', async (t) => {
    if (!IS_ROOT) return skip(t, 'chown needs root');
    try {
      // The systemd layout: /run/flux and its projects/ owned by fluxd.
      await fsp.chown(daemon.runtimeDir, OTHER_UID, OTHER_UID);
      await fsp.chown(projectsDir, OTHER_UID, OTHER_UID);
      await withDaemonUser('nobody', async () => {
        assert.equal(daemonUser().uid, OTHER_UID, '/etc/passwd has nobody as 65534');
        const c = createSecrets({ socketPath });
        assertValue(await c.get('API_KEY'), SECRET, 'API_KEY');
        await c.close();
      });
      // Without FLUX_DAEMON_USER (and no fluxd user with that uid) it is refused.
      if (daemonUser({}).uid !== OTHER_UID) {
        const err = await withDaemonUser(undefined, () =>
          rejection(createSecrets({ socketPath }).get('API_KEY'), 'get API_KEY'),
        );
        assert.equal(err.code, 'untrusted_socket');
        assert.equal(err.path, projectsDir);
      }
    } finally {
      await restore();
    }
  });

  test('a folder writable by others (0777) or by group (0770) is refused', async (t) => {
    if (!IS_ROOT) return skip(t, 'chown needs root');
    try {
      await fsp.chown(projectsDir, OTHER_UID, OTHER_UID);
      await withDaemonUser('nobody', async () => {
        for (const [mode, who] of [
          [0o777, 'group and others'],
          [0o770, 'group'],
          [0o703, 'others'],
        ]) {
          await fsp.chmod(projectsDir, mode);
          const before = ourHandshakes();
          const err = await rejection(createSecrets({ socketPath }).get('API_KEY', 'fb'), 'get API_KEY');
          assert.equal(err.code, 'untrusted_socket', `mode ${mode.toString(8)}: ${err.message}`);
          assert.equal(err.reason, 'writable_folder');
          assert.equal(err.path, projectsDir);
          const shown = mode.toString(8).padStart(4, '0');
          assert.match(err.message, new RegExp(`the folder ${projectsDir} is writable by ${who} \\(mode ${shown}\\)`));
          assert.match(err.message, /another user could replace the socket; fix it with `chmod go-w /);
          assert.equal(ourHandshakes(), before);
        }
      });
    } finally {
      await restore();
    }
  });

  test('the walk goes up to /: a root folder inside another user\'s is refused; a sticky one passes', async (t) => {
    if (!IS_ROOT) return skip(t, 'chown needs root');
    try {
      // The folder above is another user's: they could swap the root-owned one.
      await fsp.chown(daemon.runtimeDir, OTHER_UID, OTHER_UID);
      const err = await withDaemonUser('4242', () => rejection(createSecrets({ socketPath }).get('API_KEY'), 'get'));
      assert.equal(err.reason, 'untrusted_owner');
      assert.equal(err.path, daemon.runtimeDir);
      await restore();
      // Like /tmp: owned by root, writable by all, sticky.
      await fsp.chmod(projectsDir, 0o1777);
      await withDaemonUser('4242', async () => {
        const c = createSecrets({ socketPath });
        assertValue(await c.get('API_KEY'), SECRET, 'API_KEY');
        await c.close();
      });
    } finally {
      await restore();
    }
  });

  test('the socket owned by uid 65534 is refused', async (t) => {
    if (!IS_ROOT) return skip(t, 'chown needs root');
    try {
      await fsp.chown(socketPath, OTHER_UID, OTHER_UID);
      const err = await withDaemonUser('4242', () => rejection(createSecrets({ socketPath }).get('API_KEY'), 'get'));
      assert.equal(err.code, 'untrusted_socket');
      assert.equal(err.reason, 'untrusted_owner');
      assert.equal(err.path, socketPath);
      assert.match(err.message, /: it is owned by uid 65534, not by you \(uid 0\), root or the fluxd user .*another user may have created it/);
    } finally {
      await restore();
    }
  });
});
