"""Error classes. Messages name secrets, sockets and reasons, never a value."""

from __future__ import annotations

import errno as _errno
import os
from typing import Any, Dict, Optional, Type

#: Wire error codes and their names (PROTOCOL.md, "Error codes").
CODE_NAMES: Dict[int, str] = {
    1: "not_found",
    2: "invalid_name",
    3: "too_large",
    4: "permission_denied",
    5: "unknown_project",
    6: "bad_request",
    7: "internal",
    8: "version_mismatch",
    9: "already_exists",
    10: "limit_reached",
    11: "unavailable",
}


def code_name(code: int) -> str:
    """The name of a wire error code; ``"other"`` for a code this client does not know."""
    return CODE_NAMES.get(code, "other")


class FluxSecretsError(Exception):
    """Every failure of the client.

    ``code`` is the wire error number when fluxd sent one (``1`` … ``11``, or a
    newer one), else ``None``. ``code_name`` is that code's name
    (``"not_found"``, ``"invalid_name"``, ``"permission_denied"``, …,
    ``"other"`` for a code newer than this client), or one of the client's
    own: ``"unreachable"``, ``"untrusted_socket"``, ``"closed"``,
    ``"timeout"``, ``"bad_response"``, ``"not_configured"``.
    ``key`` is the secret the request asked for, when there was one;
    ``socket_path`` the socket, when the failure involved it.
    """

    def __init__(
        self,
        message: str,
        *,
        code_name: str,
        code: Optional[int] = None,
        key: Optional[str] = None,
        socket_path: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.code_name = code_name
        self.key = key
        self.socket_path = socket_path

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, code_name={self.code_name!r}, "
            f"code={self.code!r})"
        )

    def _fields(self) -> Dict[str, Any]:
        return {
            "code_name": self.code_name,
            "code": self.code,
            "key": self.key,
            "socket_path": self.socket_path,
        }

    # Keyword-only arguments need help to survive pickling (multiprocessing).
    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.message, self._fields()))


def _rebuild(cls: Type[FluxSecretsError], message: str, fields: Dict[str, Any]) -> FluxSecretsError:
    return cls(message, **fields)


class SecretNotFound(FluxSecretsError):
    """The secret is not set (``code == 1``, ``code_name == "not_found"``)."""

    def __init__(
        self,
        message: str,
        *,
        key: Optional[str] = None,
        socket_path: Optional[str] = None,
        **_: Any,
    ) -> None:
        super().__init__(message, code_name="not_found", code=1, key=key, socket_path=socket_path)


class DaemonUnreachable(FluxSecretsError):
    """fluxd could not be reached at the socket, even after the one reconnect
    (``code_name == "unreachable"``)."""

    def __init__(
        self,
        message: str,
        *,
        key: Optional[str] = None,
        socket_path: Optional[str] = None,
        **_: Any,
    ) -> None:
        super().__init__(message, code_name="unreachable", key=key, socket_path=socket_path)


class UntrustedSocket(FluxSecretsError):
    """The socket, a folder above it, or the process serving it belongs to a
    user other than you, root and the daemon's user, or a folder is writable
    by others (``code_name == "untrusted_socket"``). Nothing was sent.

    ``path`` is the file or folder that failed; ``reason`` is
    ``"not_a_socket"``, ``"untrusted_owner"``, ``"writable_folder"`` or
    ``"untrusted_peer"``.
    """

    def __init__(
        self,
        message: str,
        *,
        key: Optional[str] = None,
        socket_path: Optional[str] = None,
        path: Optional[str] = None,
        reason: Optional[str] = None,
        **_: Any,
    ) -> None:
        super().__init__(message, code_name="untrusted_socket", key=key, socket_path=socket_path)
        self.path = path
        self.reason = reason

    def _fields(self) -> Dict[str, Any]:
        return {**super()._fields(), "path": self.path, "reason": self.reason}


def error_from_reply(
    code: int, message: str, *, key: Optional[str] = None, socket_path: Optional[str] = None
) -> FluxSecretsError:
    """The exception for an ``Error { code, message }`` answer from fluxd."""
    if code == 1:
        return SecretNotFound(message, key=key, socket_path=socket_path)
    name = code_name(code)
    text = f"{message} (fluxd error code {code})" if name == "other" else message
    return FluxSecretsError(text, code_name=name, code=code, key=key, socket_path=socket_path)


def os_reason(err: Optional[BaseException]) -> str:
    """A short reason for a socket error: "No such file or directory"."""
    if err is None:
        return "fluxd closed the connection before answering"
    if isinstance(err, OSError):
        if err.strerror:
            return err.strerror
        if err.errno:
            try:
                return os.strerror(err.errno)
            except ValueError:
                pass
    text = str(err)
    return text or type(err).__name__


class ConnectionLost(Exception):
    """Internal: the connection could not be made or broke before the answer.

    ``connecting`` is true when connecting failed (nothing was ever sent on
    it). The caller retries once, then raises :class:`DaemonUnreachable`.
    """

    def __init__(self, cause: Optional[BaseException], *, connecting: bool) -> None:
        super().__init__(os_reason(cause))
        self.cause = cause
        self.connecting = connecting


def unreachable(
    socket_path: str, lost: Optional[ConnectionLost], *, key: Optional[str] = None, retried: bool
) -> DaemonUnreachable:
    """The error for a get whose connection failed (after its one retry)."""
    again = ", also after one reconnect" if retried else ""
    if lost is None or lost.connecting:
        cause = lost.cause if lost is not None else None
        reason = os_reason(cause)
        hint = ""
        if isinstance(cause, OSError) and cause.errno == _errno.EACCES:
            hint = (
                "; this user may not open the socket: fluxd gives each project socket to the "
                "project's socket group, so run the function as a member of it"
            )
        text = (
            f"cannot connect to {socket_path} ({reason}){again}: is fluxd running? "
            "start it with `fluxd`, or check `systemctl status fluxd`; and check that "
            "FLUX_SECRETS_SOCKET is the project's socket, `<runtime>/projects/<project>.sock`"
            f"{hint}"
        )
    elif lost.cause is None:
        text = (
            f"fluxd closed the connection on {socket_path} before answering{again}: "
            "is fluxd restarting or crashing? check `systemctl status fluxd` or its log"
        )
    else:
        text = (
            f"connection to {socket_path} failed ({os_reason(lost.cause)}){again}: "
            "is fluxd restarting or crashing? check `systemctl status fluxd` or its log"
        )
    err = DaemonUnreachable(text, key=key, socket_path=socket_path)
    if lost is not None and lost.cause is not None:
        err.__cause__ = lost.cause
    return err
