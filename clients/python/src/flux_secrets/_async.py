"""The asyncio client: one pipelined connection shared by every coroutine."""

from __future__ import annotations

import asyncio
import collections
import os
import socket
from types import TracebackType
from typing import Callable, Deque, Dict, Optional, Tuple, Type, TypeVar, Union, overload

from . import _protocol as p
from ._common import (
    CLIENT_NAME,
    DEFAULT_RECONNECT_DELAY,
    MAX_SET_ASIDE_EVENTS,
    MISSING,
    Missing,
    PathArg,
    bad_response,
    check_delay,
    check_name,
    check_timeout,
    check_welcome,
    closed_error,
    socket_path_from,
    timed_out,
    too_large,
    value_of,
    values_of,
)
from ._errors import ConnectionLost, FluxSecretsError, SecretNotFound, unreachable
from ._trust import Trust, check_peer, check_socket_path

D = TypeVar("D")
A = TypeVar("A", bound="AsyncSecrets")

_Waiter = Tuple["asyncio.Future[p.Response]", Optional[str]]


class _AsyncConn:
    """One connection after the trust checks and the handshake. Requests are
    written at once; a reader task hands each answer to the oldest waiter,
    since fluxd answers one response per request, in order."""

    def __init__(
        self,
        owner: "AsyncSecrets",
        sock: socket.socket,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        welcome: p.Welcome,
    ) -> None:
        self.owner = owner
        self.sock = sock
        self.reader = reader
        self.writer = writer
        self.welcome = welcome
        self.loop = asyncio.get_running_loop()
        self.pid = os.getpid()
        self.pending: Deque[_Waiter] = collections.deque()
        self.dead = False
        self.task = self.loop.create_task(self._read_loop())

    def submit(self, frame: bytes, key: Optional[str]) -> "asyncio.Future[p.Response]":
        if self.dead:
            raise ConnectionLost(None, connecting=False)
        fut: asyncio.Future[p.Response] = self.loop.create_future()
        self.pending.append((fut, key))
        try:
            self.writer.write(frame)
        except (OSError, RuntimeError) as e:
            self.lost(e if isinstance(e, OSError) else None)
        return fut

    async def _read_loop(self) -> None:
        path = self.owner.socket_path
        try:
            while True:
                header = await self.reader.readexactly(4)
                n = p.frame_length(header)
                payload = await self.reader.readexactly(n) if n else b""
                msg = p.decode_response(payload)
                del payload
                if isinstance(msg, p.Event):
                    self.owner._events.append(msg)
                    continue
                if not self.pending:
                    self.fail(
                        lambda key: bad_response(
                            path, f"a {p.kind_of(msg)} message nobody asked for", key
                        )
                    )
                    return
                fut, _key = self.pending.popleft()
                if not fut.done():
                    fut.set_result(msg)
        except asyncio.IncompleteReadError:
            self.lost(None)
        except OSError as e:
            self.lost(e)
        except p.FrameTooLarge as e:
            oversized = e
            self.fail(lambda key: _with_key(too_large(path, oversized), key))
        except p.DecodeError as e:
            reason = str(e)
            self.fail(lambda key: bad_response(path, reason, key))
        except asyncio.CancelledError:
            self.fail(lambda key: closed_error(path, key))
            raise

    def _shut(self) -> None:
        self.dead = True
        if self.owner._conn is self:
            self.owner._conn = None
        try:
            self.writer.transport.abort()
        except Exception:  # the loop may be closed already
            self.sock.close()

    def lost(self, cause: Optional[OSError]) -> None:
        """The connection broke: every waiter retries once."""
        self.fail(lambda key: ConnectionLost(cause, connecting=False))

    def fail(self, make: Callable[[Optional[str]], BaseException]) -> None:
        self._shut()
        while self.pending:
            fut, key = self.pending.popleft()
            if not fut.done():
                fut.set_exception(make(key))

    def close_by_user(self) -> None:
        path = self.owner.socket_path
        self.fail(lambda key: closed_error(path, key))
        if not self.task.done() and self.task.get_loop() is _running_loop():
            self.task.cancel()


def _with_key(err: FluxSecretsError, key: Optional[str]) -> FluxSecretsError:
    err.key = key
    return err


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = await loop.sock_recv(sock, n - len(buf))
        if not chunk:
            raise ConnectionLost(None, connecting=False)
        buf += chunk
    return bytes(buf)


async def _handshake(loop: asyncio.AbstractEventLoop, sock: socket.socket, path: str) -> p.Welcome:
    """Hello, then the Welcome, on the raw socket: a refusal that fluxd sent
    before reading anything (a connection limit) is still read and reported."""
    lost: Optional[ConnectionLost] = None
    try:
        await loop.sock_sendall(sock, p.encode_hello(CLIENT_NAME))
    except OSError as e:
        lost = ConnectionLost(e, connecting=False)
    try:
        header = await _recv_exactly(loop, sock, 4)
        n = p.frame_length(header)
        payload = await _recv_exactly(loop, sock, n) if n else b""
    except OSError as e:
        raise lost or ConnectionLost(e, connecting=False) from None
    except ConnectionLost as e:
        raise lost or e from None
    except p.FrameTooLarge as e:
        raise too_large(path, e) from None
    try:
        msg = p.decode_response(payload)
    except p.DecodeError as e:
        raise bad_response(path, str(e)) from None
    return check_welcome(msg, path)


class AsyncSecrets:
    """A project's secrets for asyncio code, read from fluxd over the project's
    Unix socket.

    ``AsyncSecrets()`` uses the socket in ``FLUX_SECRETS_SOCKET``;
    ``AsyncSecrets("/run/flux/projects/my-app.sock")`` an explicit one.
    Nothing connects until the first :meth:`get`.

    One connection, opened on first use after checking that the socket and
    its folders belong to you, root or fluxd's user, is shared by every
    coroutine: each request is written at once and answers are matched in
    order. Nothing is cached: every :meth:`get` asks fluxd, so a rotated
    value is seen by the next call. When the connection breaks (fluxd
    restarted), the calls waiting on it are sent again once on a new
    connection, after `reconnect_delay` seconds; a call whose retry fails too
    raises :class:`DaemonUnreachable`.

    `timeout` (seconds, default none) bounds each call's wait for fluxd; a
    call that runs out raises a :class:`FluxSecretsError` with code_name
    ``"timeout"`` and the connection is closed (calls sharing it retry once).

    A client may be used from one event loop after another (e.g. across
    ``asyncio.run`` calls): a connection made on another loop is dropped.
    """

    def __init__(
        self,
        socket_path: PathArg = None,
        *,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        timeout: Optional[float] = None,
    ) -> None:
        self._path = socket_path_from(socket_path)
        self._reconnect_delay = check_delay(reconnect_delay)
        self._timeout = check_timeout(timeout)
        self._conn: Optional[_AsyncConn] = None
        self._opening: Optional["asyncio.Task[_AsyncConn]"] = None
        self._project: Optional[str] = None
        self._events: Deque[p.Event] = collections.deque(maxlen=MAX_SET_ASIDE_EVENTS)

    @classmethod
    def from_env(
        cls: Type[A],
        *,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        timeout: Optional[float] = None,
    ) -> A:
        """The secrets served on the socket named by ``FLUX_SECRETS_SOCKET``."""
        return cls(None, reconnect_delay=reconnect_delay, timeout=timeout)

    @property
    def socket_path(self) -> str:
        """The project socket this client talks to."""
        return self._path

    @property
    def project(self) -> Optional[str]:
        """The project fluxd said this socket serves, once connected."""
        return self._project

    @overload
    async def get(self, key: str) -> str: ...

    @overload
    async def get(self, key: str, default: D) -> Union[str, D]: ...

    async def get(self, key: str, default: Union[D, Missing] = MISSING) -> Union[str, D]:
        """The secret's current value.

        Raises :class:`SecretNotFound` when it is not set, unless `default` is
        given: then `default` is returned, when (and only when) the secret is
        not set. Every other failure (an invalid name, a denied request, an
        unreachable daemon) raises a :class:`FluxSecretsError` all the same.
        """
        check_name(key)
        msg = await self._call(p.encode_get(key), key)
        try:
            return value_of(msg, key, self._path)
        except SecretNotFound:
            if isinstance(default, Missing):
                raise
            return default

    async def get_all(self) -> Dict[str, str]:
        """Every secret of the project with its value (fluxd's policy may refuse it)."""
        return values_of(await self._call(p.encode_get_all(), None), self._path)

    async def close(self) -> None:
        """Closes the connection. Calls waiting on it fail with code_name
        ``"closed"``. The client stays usable: a later call connects again."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        conn.close_by_user()
        if conn.loop is _running_loop():
            await asyncio.wait({conn.task}, timeout=5)

    aclose = close

    async def __aenter__(self: A) -> A:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        conn = self._conn
        if conn is not None and not conn.dead:
            state = "connected"
        elif self._opening is not None and not self._opening.done():
            state = "connecting"
        else:
            state = "idle"
        pending = len(conn.pending) if conn is not None else 0
        return (
            f"<flux_secrets.AsyncSecrets socket_path={self._path!r} project={self._project!r} "
            f"state={state!r} pending={pending}>"
        )

    # ------------------------------------------------------------ internals

    async def _call(self, frame: bytes, key: Optional[str]) -> p.Response:
        """Sends one request and returns its answer, retrying once on a new
        connection when the connection could not be made or broke."""
        lost: Optional[ConnectionLost] = None
        for attempt in (0, 1):
            if attempt:
                await asyncio.sleep(self._reconnect_delay)
            try:
                if self._timeout is None:
                    conn = await self._connected()
                    return await conn.submit(frame, key)
                return await self._call_within(frame, key, self._timeout)
            except ConnectionLost as e:
                lost = e
        raise unreachable(self._path, lost, key=key, retried=True)

    async def _call_within(self, frame: bytes, key: Optional[str], timeout: float) -> p.Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            conn = await asyncio.wait_for(self._connected(), timeout)
        except asyncio.TimeoutError:
            raise timed_out(self._path, timeout, key) from None
        fut = conn.submit(frame, key)
        try:
            return await asyncio.wait_for(fut, max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            # The answer may still come: the stream can no longer be trusted.
            conn.lost(None)
            raise timed_out(self._path, timeout, key) from None

    async def _connected(self) -> _AsyncConn:
        loop = asyncio.get_running_loop()
        conn = self._conn
        if conn is not None:
            if conn.pid != os.getpid():
                # Inherited from a parent process: never shared with it.
                self._conn = None
                conn.dead = True
                conn.sock.close()
            elif conn.loop is not loop:
                # Made on another event loop (e.g. an earlier asyncio.run).
                self._conn = None
                conn._shut()
            elif not conn.dead:
                return conn
            else:
                self._conn = None
        task = self._opening
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(self._open())
            self._opening = task
            task.add_done_callback(self._opened)
        return await asyncio.shield(task)

    def _opened(self, task: "asyncio.Task[_AsyncConn]") -> None:
        if self._opening is task:
            self._opening = None
        if not task.cancelled():
            task.exception()  # retrieved: the callers awaiting it raise it

    async def _open(self) -> _AsyncConn:
        path = self._path
        loop = asyncio.get_running_loop()
        trust = Trust()
        try:
            target = check_socket_path(path, trust)
        except OSError as e:
            raise ConnectionLost(e, connecting=True) from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, target)
            except OSError as e:
                raise ConnectionLost(e, connecting=True) from None
            check_peer(sock, path, trust)
            welcome = await _handshake(loop, sock, path)
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except BaseException:
            sock.close()
            raise
        conn = _AsyncConn(self, sock, reader, writer, welcome)
        self._conn = conn
        self._project = welcome.project
        return conn
