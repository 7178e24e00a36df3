// Refuses a squatted runtime folder. Before the client sends anything, the
// project socket and the folders leading to it must belong to someone it
// trusts; otherwise another local user could have created them (say
// /tmp/flux-<uid> on a shared machine, before fluxd did) and would receive
// the client's requests, or answer them with values of their choosing.
//
// Node.js cannot ask the kernel who listens on a Unix socket (there is no
// SO_PEERCRED for the connecting side), so these checks on the file system
// are the whole defense. The rule, the same in every Flux client:
//
// - trusted uids: this process's effective uid, root (0), and the daemon's
//   user: the one named by FLUX_DAEMON_USER when it is set, else the system
//   user `fluxd` when /etc/passwd has one;
// - the socket, once every symlink is resolved, is a socket owned by a
//   trusted uid;
// - every folder above the socket, up to /, is owned by a trusted uid or
//   root and is not writable by group or others, unless it has the sticky
//   bit (like /tmp), where only an entry's owner can move the entry.
//
// The client then connects to the resolved path, so the socket it checked is
// the socket it reaches even when FLUX_SECRETS_SOCKET goes through a symlink
// someone else controls.

'use strict';

const fs = require('node:fs');
const nodePath = require('node:path');
const { UntrustedSocketError } = require('./errors.cjs');

/** The environment variable naming the user fluxd runs as. */
const DAEMON_USER_ENV = 'FLUX_DAEMON_USER';

/** The daemon's user when FLUX_DAEMON_USER is not set (systemd/fluxd.sysusers). */
const DEFAULT_DAEMON_USER = 'fluxd';

/** Longest usable Unix socket path, in bytes. */
const MAX_SOCKET_PATH_LEN = 107;

/** The uid of user `name` in passwd(5) text (`name:x:uid:gid:...` lines), or null. */
function uidInPasswd(text, name) {
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length >= 3 && fields[0] === name && /^\d+$/.test(fields[2])) {
      return Number(fields[2]);
    }
  }
  return null;
}

/**
 * The daemon's user: `{ name, uid, fromEnv }`. `name` is FLUX_DAEMON_USER
 * when set, else `fluxd`; `uid` is its uid from /etc/passwd, or null when
 * /etc/passwd has no such user. (Node's os.userInfo() only describes the
 * current user, so /etc/passwd is read directly; users known only to NSS
 * services such as LDAP are not found.) A FLUX_DAEMON_USER made of digits
 * that names no user is taken as a uid, for containers whose /etc/passwd
 * does not list the daemon's user.
 */
function daemonUser(env = process.env, passwdPath = '/etc/passwd') {
  const set = env[DAEMON_USER_ENV];
  const name = set || DEFAULT_DAEMON_USER;
  let text = '';
  try {
    text = fs.readFileSync(passwdPath, 'utf8');
  } catch {
    // No readable /etc/passwd: no daemon user beyond a numeric FLUX_DAEMON_USER.
  }
  let uid = uidInPasswd(text, name);
  if (uid === null && set && /^\d+$/.test(set)) uid = Number(set);
  return { name, uid, fromEnv: Boolean(set) };
}

function describeDaemon({ name, uid, fromEnv }) {
  const shown = fromEnv ? `${DAEMON_USER_ENV}=${name}` : name;
  if (uid !== null) return `the fluxd user (${shown}, uid ${uid})`;
  if (fromEnv) return `the fluxd user (${shown} names no user in /etc/passwd)`;
  return `the fluxd user (/etc/passwd has no user ${name}; set ${DAEMON_USER_ENV} to the user fluxd runs as)`;
}

const KINDS = [
  ['isFile', 'a regular file'],
  ['isDirectory', 'a folder'],
  ['isFIFO', 'a named pipe'],
  ['isCharacterDevice', 'a character device'],
  ['isBlockDevice', 'a block device'],
];

function kindOf(stat) {
  for (const [test, name] of KINDS) if (stat[test]()) return name;
  return 'another kind of file';
}

/**
 * Checks `socketPath` against the rule above and returns the path to connect
 * to: the socket with every symlink resolved (or `socketPath` itself when the
 * resolved path is too long for a Unix socket address).
 *
 * Throws an UntrustedSocketError when a check fails. A missing socket, or a
 * folder this process may not search, throws the file system error (ENOENT,
 * EACCES, ...) for the caller to report as "cannot reach fluxd".
 *
 * `options` exist for the tests: `euid` (default `process.geteuid()`) and
 * `daemon` (default `daemonUser()`).
 */
function checkSocket(socketPath, { euid = process.geteuid(), daemon = daemonUser() } = {}) {
  const real = fs.realpathSync.native(socketPath);
  const isTrusted = (uid) => uid === euid || uid === 0 || (daemon.uid !== null && uid === daemon.uid);
  const shown = real === socketPath ? socketPath : `${socketPath}, which leads to ${real}`;
  const refuse = (what, reason, path) =>
    new UntrustedSocketError(`refusing to use the fluxd socket ${shown}: ${what}`, {
      socketPath,
      path,
      reason,
    });
  const owners = `not by you (uid ${euid}), root or ${describeDaemon(daemon)}`;

  const stat = fs.statSync(real);
  if (!stat.isSocket()) {
    throw refuse(`it is not a socket but ${kindOf(stat)}`, 'not_a_socket', real);
  }
  if (!isTrusted(stat.uid)) {
    throw refuse(
      `it is owned by uid ${stat.uid}, ${owners}: another user may have created it; ` +
        `check that the path is the socket fluxd created, and if fluxd runs as uid ${stat.uid}, ` +
        `set ${DAEMON_USER_ENV} to that user`,
      'untrusted_owner',
      real,
    );
  }

  let dir = nodePath.dirname(real);
  for (;;) {
    const st = fs.statSync(dir);
    if (!isTrusted(st.uid)) {
      throw refuse(
        `the folder ${dir} is owned by uid ${st.uid}, ${owners}: another user may have created it ` +
          'and could put their own socket in it; use a runtime folder owned by you or by fluxd, ' +
          `and if fluxd runs as uid ${st.uid}, set ${DAEMON_USER_ENV} to that user`,
        'untrusted_owner',
        dir,
      );
    }
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
      const who = (st.mode & 0o022) === 0o022 ? 'group and others' : st.mode & 0o020 ? 'group' : 'others';
      const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
      throw refuse(
        `the folder ${dir} is writable by ${who} (mode ${mode}): another user could replace the socket; ` +
          `fix it with \`chmod go-w ${dir}\``,
        'writable_folder',
        dir,
      );
    }
    const up = nodePath.dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  return Buffer.byteLength(real) <= MAX_SOCKET_PATH_LEN ? real : socketPath;
}

module.exports = {
  DAEMON_USER_ENV,
  DEFAULT_DAEMON_USER,
  MAX_SOCKET_PATH_LEN,
  checkSocket,
  daemonUser,
  uidInPasswd,
};
