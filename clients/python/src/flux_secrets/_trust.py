"""Refusing a squatted socket: the checks made before anything is sent.

The rule, the same for every Flux Secrets client:

1. The socket file must be a socket owned by a trusted uid.
2. Walking up from the socket's folder, every folder until (excluding) the
   first one owned by root must be owned by a trusted uid and not writable by
   group or others. A root-owned folder ends the walk: it is trusted.
3. Once connected, the peer's uid (``SO_PEERCRED``) must be trusted.

Trusted uids: the current effective uid, root (0), and the uid of the
daemon's user: the user named by ``FLUX_DAEMON_USER`` when set (a name, or a
number), else the system user ``fluxd`` if it exists.

Symbolic links are followed: the folders of the path as given and those of
the real path it resolves to are all checked, since whoever may write either
could redirect the client.
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

    def who(self) -> str:
        """ "you (uid 1000), root or the fluxd user (uid 999)", for messages."""
        if self.daemon_uid is not None:
            daemon = f"the {self.daemon_user} user (uid {self.daemon_uid}"
            daemon += f", from {DAEMON_USER_ENV})" if self.from_env else ")"
        elif self.from_env:
            daemon = f"the daemon's user ({DAEMON_USER_ENV}={self.daemon_user} names no user here)"
        else:
            daemon = f"the {DEFAULT_DAEMON_USER} user (there is no {DEFAULT_DAEMON_USER} user here)"
        return f"you (uid {self.euid}), root or {daemon}"

    def advice(self) -> str:
        return f"if fluxd runs as another user, set {DAEMON_USER_ENV} to that user's name"


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


def check_socket_path(path: str, trust: Trust) -> None:
    """Checks the socket at `path` and the folders above it.

    Raises :class:`UntrustedSocket` when one fails the rule, and the
    underlying ``OSError`` (e.g. ``FileNotFoundError``) when a part of the path
    does not exist or cannot be looked at, which the caller reports as a
    failure to connect.
    """
    absolute = os.path.abspath(path)
    real = os.path.realpath(absolute)
    seen: Set[str] = set()
    _check_folders(os.path.dirname(absolute), path, trust, seen)
    if real != absolute:
        _check_folders(os.path.dirname(real), path, trust, seen)
    st = os.lstat(real)
    shown = path if real == absolute else f"{path} (really {real})"
    if not stat.S_ISSOCK(st.st_mode):
        raise UntrustedSocket(
            f"{shown} is {_kind(st.st_mode)}, not a socket: refusing to use it; "
            "FLUX_SECRETS_SOCKET must be the project's socket, `<runtime>/projects/<project>.sock`",
            socket_path=path,
        )
    if st.st_uid not in trust.uids:
        raise UntrustedSocket(
            f"{shown} is owned by uid {st.st_uid}, not by {trust.who()}: another user may have "
            f"created it; refusing to send anything to it. Check the path; {trust.advice()}",
            socket_path=path,
        )


def _check_folders(folder: str, path: str, trust: Trust, seen: Set[str]) -> None:
    d = folder
    while d not in seen:
        seen.add(d)
        st = os.lstat(d)
        if stat.S_ISLNK(st.st_mode):
            # The folder it points to (and the folders above that) must pass;
            # the link itself can be replaced by whoever may write its own
            # folder, which the walk checks next.
            _check_folders(os.path.realpath(d), path, trust, seen)
        else:
            if st.st_uid == 0:
                return
            if st.st_uid not in trust.uids:
                raise UntrustedSocket(
                    f"the folder {d} (holding {path}) is owned by uid {st.st_uid}, not by "
                    f"{trust.who()}: another user may have created it, and could replace the "
                    f"socket; refusing to use it. Check the path; {trust.advice()}",
                    socket_path=path,
                )
            if st.st_mode & 0o022:
                mode = stat.S_IMODE(st.st_mode)
                writable = " and ".join(
                    w for w, bit in (("group", 0o020), ("others", 0o002)) if st.st_mode & bit
                )
                raise UntrustedSocket(
                    f"the folder {d} (holding {path}) is writable by {writable} (mode {mode:04o}): "
                    "another user could replace the socket; refusing to use it. "
                    f"Fix it with `chmod go-w {d}`",
                    socket_path=path,
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
            f"cannot check which user serves {path}: this system has no SO_PEERCRED; "
            "refusing to send anything to it",
            socket_path=path,
        )
    raw = sock.getsockopt(socket.SOL_SOCKET, opt, _UCRED.size)
    pid, uid, _gid = _UCRED.unpack(raw)
    if uid not in trust.uids:
        raise UntrustedSocket(
            f"the process serving {path} (pid {pid}) runs as uid {uid}, not as {trust.who()}: "
            f"another user may have bound the socket; refusing to send anything to it. "
            f"{trust.advice()[0].upper()}{trust.advice()[1:]}",
            socket_path=path,
        )
