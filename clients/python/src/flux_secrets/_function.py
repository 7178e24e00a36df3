"""``define_function``: the shape a Flux function is written in, in Python.

The same shape as the Node.js ``defineFunction`` of ``@flux/functions``::

    from flux_secrets import define_function

    @define_function(name="call_openai")
    def call_openai(input, ctx):
        api_key = ctx.secrets.get("OPENAI_API_KEY")            # raises SecretNotFound if not set
        region = ctx.secrets.get("AWS_REGION", "us-east-1")    # the default if not set
        tier = ctx.env.get("TIER", "free")                     # not a secret: config
        ...

    call_openai.invoke({"messages": [...]})                    # what a host (or a test) calls

An ``async def`` handler gets the asyncio client, and ``invoke`` then
returns a coroutine: ``await call_openai.invoke(input)``.

``invoke(input, **pieces)`` builds the handler's ``ctx`` and calls
``handler(input, ctx)``; nothing else: no registration, no server, no
timeout, no retry, no logging. ``ctx.secrets`` is the client for
``FLUX_SECRETS_SOCKET``, one per socket (one ``Secrets`` for plain
handlers, one ``AsyncSecrets`` for ``async def`` ones) for the whole
process: every function and invocation shares it and its connection. It is
looked up when the handler first reads ``ctx.secrets``, so a function that
reads no secret runs without fluxd. ``ctx.env`` is a read-only copy of
``os.environ`` taken when the handler first reads it. A host's own pieces
(``request_id=...``) become attributes of ``ctx``; ``secrets=`` and
``env=`` replace the defaults.
"""

from __future__ import annotations

import inspect
import os
import threading
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Dict,
    Generic,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
    overload,
)

from ._async import AsyncSecrets
from ._common import SOCKET_ENV
from ._errors import FluxSecretsError
from ._sync import Secrets

#: The variable naming the project, as fluxctl and ``fluxd dev`` read it.
PROJECT_ENV = "FLUX_PROJECT"

I = TypeVar("I")  # noqa: E741 - the input
R = TypeVar("R")  # what the handler returns (a coroutine for ``async def``)
C = TypeVar("C", Secrets, AsyncSecrets)

_USAGE = '@define_function(name="call_openai") above def call_openai(input, ctx): ...'

# The shared clients: one per (socket path, kind) for the whole process.
_shared: Dict[Tuple[str, bool], Union[Secrets, AsyncSecrets]] = {}
_shared_lock = threading.Lock()


def _not_configured(function: str) -> FluxSecretsError:
    project = os.environ.get(PROJECT_ENV, "")
    socket = f"<runtime>/projects/{project or '<project>'}.sock"
    why = f"{SOCKET_ENV} is not set"
    if project:
        why += f" ({PROJECT_ENV}={project} names the project, not the socket fluxd serves it on)"
    return FluxSecretsError(
        f"function {function} read ctx.secrets, but {why}: set {SOCKET_ENV} to the project's "
        f"socket, {socket} (`fluxctl projects create` prints it; `fluxd dev` prints the export "
        "line for a local .env), or run the host under `fluxd dev -- CMD` or "
        "`fluxctl run -- CMD`, which set it",
        code_name="not_configured",
    )


def _shared_client(function: str, is_async: bool) -> Union[Secrets, AsyncSecrets]:
    socket_path = os.environ.get(SOCKET_ENV, "")
    if not socket_path:
        raise _not_configured(function)
    with _shared_lock:
        client = _shared.get((socket_path, is_async))
        if client is None:
            client = AsyncSecrets(socket_path) if is_async else Secrets(socket_path)
            _shared[(socket_path, is_async)] = client
        return client


class _Context(Generic[C]):
    """What ``ctx`` holds: ``secrets``, ``env`` and the host's pieces."""

    def __init__(self, function: str, is_async: bool, pieces: Dict[str, Any]) -> None:
        self.__function = function
        self.__async = is_async
        self.__secrets: Optional[C] = pieces.pop("secrets", None)
        env = pieces.pop("env", None)
        if env is not None and not isinstance(env, Mapping):
            raise TypeError(
                f"{function}.invoke(input, env=...): env must be a mapping of names to values, "
                f"not {type(env).__name__}"
            )
        self.__env: Optional[Mapping[str, str]] = env
        self.__pieces = tuple(pieces)
        for name, value in pieces.items():
            setattr(self, name, value)

    @property
    def secrets(self) -> C:
        """The project's secrets: the host's client, else the shared one for
        ``FLUX_SECRETS_SOCKET`` (raises ``not_configured`` when it is not set)."""
        if self.__secrets is None:
            self.__secrets = _shared_client(self.__function, self.__async)  # type: ignore[assignment]
        return self.__secrets  # type: ignore[return-value]

    @property
    def env(self) -> Mapping[str, str]:
        """Non-secret configuration: a read-only copy of ``os.environ`` taken
        at the first read, else the host's ``env``."""
        if self.__env is None:
            self.__env = MappingProxyType(dict(os.environ))
        return self.__env

    def __repr__(self) -> str:
        # Names only: a piece may hold anything.
        names = ", ".join(("secrets", "env") + self.__pieces)
        return f"<{type(self).__name__} of {self.__function}: {names}>"


class FunctionContext(_Context[Secrets]):
    """The ``ctx`` of a plain (``def``) handler: ``ctx.secrets`` is a ``Secrets``."""


class AsyncFunctionContext(_Context[AsyncSecrets]):
    """The ``ctx`` of an ``async def`` handler: ``ctx.secrets`` is an ``AsyncSecrets``."""


class FluxFunction(Generic[I, R]):
    """A function defined with ``define_function``: ``name``, ``handler``,
    ``invoke(input, **pieces)``."""

    __slots__ = ("_name", "_handler", "_is_async")

    def __init__(self, name: str, handler: Callable[[I, Any], R]) -> None:
        self._name = name
        self._handler = handler
        self._is_async = inspect.iscoroutinefunction(handler)

    @property
    def name(self) -> str:
        return self._name

    @property
    def handler(self) -> Callable[[I, Any], R]:
        """The handler as it was written."""
        return self._handler

    @property
    def is_async(self) -> bool:
        """True for an ``async def`` handler: ``invoke`` returns a coroutine."""
        return self._is_async

    def invoke(self, input: I, **pieces: Any) -> R:
        """Calls ``handler(input, ctx)`` and returns what it returns (for an
        ``async def`` handler, the coroutine to await). ``pieces`` become
        attributes of ``ctx``; ``secrets=`` and ``env=`` replace the defaults.
        The handler's exceptions reach the caller as they are."""
        bad = sorted(k for k in pieces if k.startswith("_"))
        if bad:
            raise TypeError(
                f"{self._name}.invoke: ctx pieces are public names; {', '.join(bad)} starts with '_'"
            )
        ctx: _Context[Any]
        if self._is_async:
            ctx = AsyncFunctionContext(self._name, True, dict(pieces))
        else:
            ctx = FunctionContext(self._name, False, dict(pieces))
        return self._handler(input, ctx)

    def __repr__(self) -> str:
        kind = "async " if self._is_async else ""
        return f"<FluxFunction {self._name!r} ({kind}handler {self._handler.__qualname__})>"


def _check_name(name: object) -> str:
    if name is None:
        raise TypeError(f"define_function: the function has no name: {_USAGE}")
    if callable(name):
        raise TypeError(
            "define_function needs a name: write @define_function(name=\"...\"), "
            f"not a bare @define_function ({_USAGE})"
        )
    if not isinstance(name, str) or not name.strip():
        shown = repr(name) if isinstance(name, str) else f"a {type(name).__name__}"
        raise TypeError(f"define_function: name must be a non-empty string, not {shown}")
    return name


def _check_handler(name: str, handler: object) -> None:
    if not callable(handler):
        raise TypeError(
            f"define_function: the handler of {name} must be a function, "
            f"not a {type(handler).__name__}"
        )
    try:
        inspect.signature(handler).bind(None, None)
    except ValueError:  # no signature to read (some builtins): let the call decide
        return
    except TypeError:
        raise TypeError(
            f"define_function: the handler of {name} must take (input, ctx), "
            f"not {handler.__name__ if hasattr(handler, '__name__') else handler}"
            f"{inspect.signature(handler)}"
        ) from None


@overload
def define_function(
    name: str, handler: Callable[[I, Any], R]
) -> FluxFunction[I, R]: ...


@overload
def define_function(
    name: str, handler: None = None
) -> Callable[[Callable[[I, Any], R]], FluxFunction[I, R]]: ...


def define_function(
    name: Optional[str] = None, handler: Optional[Callable[[I, Any], R]] = None
) -> Union[FluxFunction[I, R], Callable[[Callable[[I, Any], R]], FluxFunction[I, R]]]:
    """Defines a Flux function: ``define_function(name=..., handler=...)``,
    or as a decorator, ``@define_function(name=...)``. Raises a ``TypeError``
    that says what is wrong when the name or the handler is missing or
    unusable."""
    checked = _check_name(name)
    if handler is not None:
        _check_handler(checked, handler)
        return FluxFunction(checked, handler)

    def decorate(fn: Callable[[I, Any], R]) -> FluxFunction[I, R]:
        _check_handler(checked, fn)
        return FluxFunction(checked, fn)

    return decorate


__all__ = [
    "AsyncFunctionContext",
    "FluxFunction",
    "FunctionContext",
    "PROJECT_ENV",
    "define_function",
]
