"""What the sync and asyncio clients share: configuration, name checks and
the reading of answers."""

from __future__ import annotations

import os
import re
from typing import Dict, Optional, Union

from . import _protocol as p
from ._errors import FluxSecretsError, error_from_reply

VERSION = "0.1.0"

#: The client string sent in the handshake.
CLIENT_NAME = f"flux-secrets-python/{VERSION}"

#: The environment variable naming the project socket.
SOCKET_ENV = "FLUX_SECRETS_SOCKET"

#: Longest usable Unix socket path, in bytes.
MAX_SOCKET_PATH_LEN = 107

#: Wait before the single reconnect after a broken connection, in seconds.
DEFAULT_RECONNECT_DELAY = 0.25

#: Events pushed on a connection and not yet taken are kept up to this many.
MAX_SET_ASIDE_EVENTS = 1024

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_NAME_RULE = (
    "use letters, digits and '_', start with a letter or '_', at most 128 characters "
    "(e.g. OPENAI_API_KEY)"
)


class Missing:
    """The type of the "no default given" marker."""

    _instance: Optional["Missing"] = None

    def __new__(cls) -> "Missing":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<no default>"


MISSING = Missing()

PathArg = Union[str, "os.PathLike[str]", None]


def socket_path_from(socket_path: PathArg) -> str:
    """The socket path to use: the argument, else ``FLUX_SECRETS_SOCKET``."""
    if socket_path is None:
        env = os.environ.get(SOCKET_ENV, "")
        if not env:
            raise FluxSecretsError(
                f"no fluxd socket given: set {SOCKET_ENV} to the project's socket "
                "(`<runtime>/projects/<project>.sock`, printed by `fluxctl projects create`), "
                "or pass the socket path",
                code_name="not_configured",
            )
        path = env
    else:
        path = os.fspath(socket_path)
        if not isinstance(path, str):
            raise TypeError(f"the socket path must be a str, not {type(path).__name__}")
    if "\0" in path:
        raise FluxSecretsError(
            f"the fluxd socket path {path!r} is not usable: it contains a NUL byte",
            code_name="not_configured",
            socket_path=path,
        )
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH_LEN:
        raise FluxSecretsError(
            f"the fluxd socket path {path!r} is not usable: it is {size} bytes and Unix "
            f"socket paths are limited to {MAX_SOCKET_PATH_LEN}",
            code_name="not_configured",
            socket_path=path,
        )
    if path == "":
        raise FluxSecretsError(
            "the fluxd socket path is empty", code_name="not_configured", socket_path=path
        )
    return path


def check_delay(reconnect_delay: float) -> float:
    delay = float(reconnect_delay)
    if not delay >= 0 or delay == float("inf"):
        raise ValueError(f"reconnect_delay must be a finite number >= 0, not {reconnect_delay!r}")
    return delay


def check_timeout(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    t = float(timeout)
    if not t > 0:
        raise ValueError(f"timeout must be a number > 0 or None, not {timeout!r}")
    return t


def check_name(key: object) -> str:
    """The secret name, checked against the daemon's grammar before anything is sent."""
    if not isinstance(key, str):
        raise FluxSecretsError(
            f"invalid secret name: expected a str, got {type(key).__name__}",
            code_name="invalid_name",
            code=2,
        )
    if _NAME_RE.fullmatch(key) is None:
        # The name itself is not quoted: a value passed by mistake as a name
        # must not end up in a log.
        raise FluxSecretsError(
            f"invalid secret name ({_what_is_wrong(key)}): {_NAME_RULE}",
            code_name="invalid_name",
            code=2,
            key=key,
        )
    return key


def _what_is_wrong(key: str) -> str:
    if key == "":
        return "it is empty"
    if len(key) > 128:
        return f"it has {len(key)} characters"
    if not (key[0].isascii() and (key[0].isalpha() or key[0] == "_")):
        return f"it starts with {ascii(key[0])}"
    for i, ch in enumerate(key):
        if not (ch.isascii() and (ch.isalnum() or ch == "_")):
            return f"character {i + 1} of {len(key)} is {ascii(ch)}"
    return "it does not match the grammar"


def bad_response(socket_path: str, what: str, key: Optional[str] = None) -> FluxSecretsError:
    return FluxSecretsError(
        f"unexpected answer from fluxd at {socket_path}: {what}",
        code_name="bad_response",
        key=key,
        socket_path=socket_path,
    )


def too_large(
    socket_path: str, err: p.FrameTooLarge, key: Optional[str] = None
) -> FluxSecretsError:
    return FluxSecretsError(
        f"{err}; closing the connection to {socket_path}",
        code_name="too_large",
        code=3,
        key=key,
        socket_path=socket_path,
    )


def timed_out(socket_path: str, timeout: Optional[float], key: Optional[str]) -> FluxSecretsError:
    what = f"get {key}" if key else "a request"
    return FluxSecretsError(
        f"fluxd at {socket_path} did not answer {what} within {timeout:g} s; "
        "the connection was closed (is fluxd overloaded or stuck? check its log)",
        code_name="timeout",
        key=key,
        socket_path=socket_path,
    )


def closed_error(socket_path: str, key: Optional[str]) -> FluxSecretsError:
    return FluxSecretsError(
        "the client was closed before fluxd answered",
        code_name="closed",
        key=key,
        socket_path=socket_path,
    )


def check_welcome(msg: p.Response, socket_path: str) -> p.Welcome:
    """The handshake answer, or the error that refuses this connection.

    A refused handshake is never a :class:`SecretNotFound`, whatever its code:
    it must not turn into a caller's default.
    """
    if isinstance(msg, p.ErrorReply):
        name = error_from_reply(msg.code, msg.message).code_name
        raise FluxSecretsError(
            f"fluxd refused the handshake on {socket_path}: {msg.message}",
            code_name=name,
            code=msg.code,
            socket_path=socket_path,
        )
    if not isinstance(msg, p.Welcome):
        raise bad_response(socket_path, f"a {p.kind_of(msg)} message answered the handshake")
    if msg.version != p.PROTOCOL_VERSION:
        raise FluxSecretsError(
            f"fluxd at {socket_path} speaks protocol version {msg.version}, this client speaks "
            f"version {p.PROTOCOL_VERSION}: upgrade the older of the two",
            code_name="version_mismatch",
            code=8,
            socket_path=socket_path,
        )
    if msg.project is None:
        raise FluxSecretsError(
            f"{socket_path} is fluxd's control socket, not a project socket: set {SOCKET_ENV} "
            "to <runtime>/projects/<project>.sock",
            code_name="bad_request",
            code=6,
            socket_path=socket_path,
        )
    return msg


def value_of(msg: p.Response, key: str, socket_path: str) -> str:
    """The value in the answer to ``Get``, or the error it carries."""
    if isinstance(msg, p.Value):
        return msg.value
    if isinstance(msg, p.ErrorReply):
        raise error_from_reply(msg.code, msg.message, key=key, socket_path=socket_path)
    raise bad_response(socket_path, f"a {p.kind_of(msg)} message answered get {key}", key)


def values_of(msg: p.Response, socket_path: str) -> Dict[str, str]:
    """The values in the answer to ``GetAll``, or the error it carries."""
    if isinstance(msg, p.Values):
        return {nv.name: nv.value for nv in msg.values}
    if isinstance(msg, p.ErrorReply):
        raise error_from_reply(msg.code, msg.message, socket_path=socket_path)
    raise bad_response(socket_path, f"a {p.kind_of(msg)} message answered get_all")
