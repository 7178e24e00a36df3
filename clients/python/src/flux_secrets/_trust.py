"""Refusing a squatted socket: the checks made before anything is sent.

The rule, the same for every Flux Secrets client:

1. The socket file must be a socket owned by a trusted uid.
2. Every folder above it, up to ``/``, must be owned by a trusted uid or
   root, and not writable by group or others — unless it has the sticky bit
   (like ``/tmp``), where only an entry's owner can move the entry.
3. Once connected, the peer's uid (``SO_PEERCRED``) must be trusted.

Trusted uids: the current effective uid, root (0), and the uid of the
daemon's user: the user named by ``FLUX_DAEMON_USER`` when set (a name, or a
number), else the system user ``fluxd`` if it exists.

Symbolic links are resolved, and the client connects to the resolved path,
so the socket checked is the socket reached. The folders of the path as
given are checked as well as those of the real path: whoever may write a
folder holding a link could point it elsewhere for the next connection.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from typing import Optional, Set

from ._errors import UntrustedSocket

DAEMON_USER_ENV = "FLUX_DAEMON_USER"
DEFAULT_DAEMON_USER = "fluxd"

#: Longest usable Unix socket path, in bytes.
MAX_SOCKET_PATH_LEN = 107

# struct ucred: pid_t pid; uid_t uid; gid_t gid.
_UCRED = struct.Struct("iII")


class Trust:
    """The uids a socket, its folders and its server may belong to."""

    def __init__(self) -> None:
        self.euid = os.geteuid()
        configured = os.environ.get(DAEMON_USER_ENV, "")
        self.daemon_user = configured or DEFAULT_DAEMON_USER
        self.from_env = bool(configured)
        self.daemon_uid: Optional[int] = _lookup_uid(self.daemon_user)
        self.uids: Set[int] = {self.euid, 0}
        if self.daemon_uid is not None:
            self.uids.add(self.daemon_uid)

    def owners(self, verb: str = "by") -> str:
        """ "not by you (uid 1000), root or the fluxd user (fluxd, uid 998)", for messages."""
        shown = f"{DAEMON_USER_ENV}={self.daemon_user}" if self.from_env else self.daemon_user
        if self.daemon_uid is not None:
            daemon = f"the fluxd user ({shown}, uid {self.daemon_uid})"
        elif self.from_env:
            daemon = f"the fluxd user ({shown} names no user here)"
        else:
            daemon = (
                f"the fluxd user (there is no user {self.daemon_user} here; set "
                f"{DAEMON_USER_ENV} to the user fluxd runs as)"
            )
        return f"not {verb} you (uid {self.euid}), root or {daemon}"


def _lookup_uid(user: str) -> Optional[int]:
    try:
        import pwd
    except ImportError:  # not a Unix system
        return None
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        pass
    if user.isdigit():
        return int(user)
    return None


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a socket"


def _refuse(shown: str, path: str, what: str, reason: str, where: str) -> UntrustedSocket:
    return UntrustedSocket(
        f"refusing to use the fluxd socket {shown}: {what}",
        socket_path=path,
        path=where,
        reason=reason,
    )


def check_socket_path(path: str, trust: Trust) -> str:
    """Checks the socket at `path` and the folders above it; returns the path
    to connect to: the socket with every symlink resolved, so the socket
    checked is the socket reached (`path` itself when the resolved path is
    too long for a socket address).

    Raises :class:`UntrustedSocket` when a check fails, and the underlying
    ``OSError`` (e.g. ``FileNotFoundError``) when a part of the path does not
    exist or cannot be looked at, which the caller reports as a failure to
    connect.
    """
    absolute = os.path.abspath(path)
    real = os.path.realpath(absolute)
    shown = path if real == absolute else f"{path}, which leads to {real}"
    seen: Set[str] = set()
    _check_folders(os.path.dirname(absolute), path, shown, trust, seen)
    if real != absolute:
        _check_folders(os.path.dirname(real), path, shown, trust, seen)
    st = os.lstat(real)
    if not stat.S_ISSOCK(st.st_mode):
        raise _refuse(
            shown, path, f"it is not a socket but {_kind(st.st_mode)}", "not_a_socket", real
        )
    if st.st_uid not in trust.uids:
        raise _refuse(
            shown,
            path,
            f"it is owned by uid {st.st_uid}, {trust.owners()}: another user may have created "
            "it; check that the path is the socket fluxd created, and if fluxd runs as uid "
            f"{st.st_uid}, set {DAEMON_USER_ENV} to that user",
            "untrusted_owner",
            real,
        )
    return real if len(os.fsencode(real)) <= MAX_SOCKET_PATH_LEN else path


def _check_folders(folder: str, path: str, shown: str, trust: Trust, seen: Set[str]) -> None:
    d = folder
    while d not in seen:
        seen.add(d)
        st = os.lstat(d)
        if stat.S_ISLNK(st.st_mode):
            # The folder it points to (and the folders above that) must pass;
            # the link itself can be replaced by whoever may write its own
            # folder, which the walk checks next.
            _check_folders(os.path.realpath(d), path, shown, trust, seen)
        else:
            if st.st_uid not in trust.uids:
                raise _refuse(
                    shown,
                    path,
                    f"the folder {d} is owned by uid {st.st_uid}, {trust.owners()}: another "
                    "user may have created it and could put their own socket in it; use a "
                    "runtime folder owned by you or by fluxd, and if fluxd runs as uid "
                    f"{st.st_uid}, set {DAEMON_USER_ENV} to that user",
                    "untrusted_owner",
                    d,
                )
            if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
                mode = stat.S_IMODE(st.st_mode)
                writable = " and ".join(
                    w for w, bit in (("group", 0o020), ("others", 0o002)) if st.st_mode & bit
                )
                raise _refuse(
                    shown,
                    path,
                    f"the folder {d} is writable by {writable} (mode {mode:04o}): another user "
                    f"could replace the socket; fix it with `chmod go-w {d}`",
                    "writable_folder",
                    d,
                )
        parent = os.path.dirname(d)
        if parent == d:
            return
        d = parent


def check_peer(sock: socket.socket, path: str, trust: Trust) -> None:
    """Checks the uid of the process that serves the connected `sock`."""
    opt = getattr(socket, "SO_PEERCRED", None)
    if opt is None:
        raise UntrustedSocket(
            f"refusing to use the fluxd socket {path}: this system has no SO_PEERCRED, so the "
            "user serving it cannot be checked",
            socket_path=path,
            path=path,
            reason="untrusted_peer",
        )
    raw = sock.getsockopt(socket.SOL_SOCKET, opt, _UCRED.size)
    pid, uid, _gid = _UCRED.unpack(raw)
    if uid not in trust.uids:
        raise UntrustedSocket(
            f"refusing to use the fluxd socket {path}: the process serving it (pid {pid}) runs "
            f"as uid {uid}, {trust.owners('as')}: another user may have bound the socket; "
            f"check that the path is the socket fluxd created, and if fluxd runs as uid {uid}, "
            f"set {DAEMON_USER_ENV} to that user",
            socket_path=path,
            path=path,
            reason="untrusted_peer",
        )
