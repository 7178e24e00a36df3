"""The asyncio client: one pipelined connection shared by every coroutine.
This module owns the socket I/O, the reader task and the timeouts around the
shared core (``_core.py``), which builds the requests and reads the
answers."""

from __future__ import annotations

import asyncio
import os
import socket
from types import TracebackType
from typing import Dict, Optional, Type, TypeVar, Union, overload

from . import _protocol as p
from ._common import DEFAULT_RECONNECT_DELAY, MISSING, Missing, PathArg, closed_error
from ._core import (
    GET_ALL,
    HEADER_LEN,
    Broken,
    ClientCore,
    Exchange,
    Greeting,
    MakeError,
    socket_target,
)
from ._errors import ConnectionLost
from ._trust import check_peer

D = TypeVar("D")
A = TypeVar("A", bound="AsyncSecrets")


class _AsyncConn:
    """One connection after the trust checks and the handshake. Requests are
    written at once; a reader task hands each frame to the core's exchange,
    which gives each answer to the oldest waiting call."""

    def __init__(
        self,
        owner: "AsyncSecrets",
        sock: socket.socket,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.owner = owner
        self.sock = sock
        self.reader = reader
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.pid = os.getpid()
        self.exchange: Exchange["asyncio.Future[p.Response]"] = Exchange(
            owner.socket_path, owner._events
        )
        self.dead = False
        self.task = self.loop.create_task(self._read_loop())

    def submit(self, frame: bytes, key: Optional[str]) -> "asyncio.Future[p.Response]":
        if self.dead:
            raise ConnectionLost(None, connecting=False)
        fut: asyncio.Future[p.Response] = self.loop.create_future()
        self.exchange.sent(fut, key)
        try:
            self.writer.write(frame)
        except (OSError, RuntimeError) as e:
            self.lost(e if isinstance(e, OSError) else None)
        return fut

    async def _read_loop(self) -> None:
        exchange = self.exchange
        try:
            while True:
                length = exchange.length(await self.reader.readexactly(HEADER_LEN))
                payload = await self.reader.readexactly(length) if length else b""
                answered = exchange.receive(payload)
                if answered is not None:
                    fut, msg = answered
                    if not fut.done():
                        fut.set_result(msg)
        except asyncio.IncompleteReadError:
            self.lost(None)
        except OSError as e:
            self.lost(e)
        except Broken as e:
            self.fail(e.error_for)
        except asyncio.CancelledError:
            path = self.owner.socket_path
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

    def fail(self, error_for: MakeError) -> None:
        self._shut()
        for fut, err in self.exchange.fail(error_for):
            if not fut.done():
                fut.set_exception(err)

    def close_by_user(self) -> None:
        path = self.owner.socket_path
        self.fail(lambda key: closed_error(path, key))
        if not self.task.done() and self.task.get_loop() is _running_loop():
            self.task.cancel()


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = await loop.sock_recv(sock, n - len(buf))
        except OSError as e:
            raise ConnectionLost(e, connecting=False) from None
        if not chunk:
            raise ConnectionLost(None, connecting=False)
        buf += chunk
    return bytes(buf)


async def _handshake(loop: asyncio.AbstractEventLoop, sock: socket.socket, path: str) -> p.Welcome:
    """Hello, then the Welcome, on the raw socket (see :class:`Greeting`)."""
    greeting = Greeting(path)
    try:
        await loop.sock_sendall(sock, greeting.hello)
    except OSError as e:
        greeting.send_failed(ConnectionLost(e, connecting=False))
    try:
        length = greeting.length(await _recv_exactly(loop, sock, HEADER_LEN))
        payload = await _recv_exactly(loop, sock, length) if length else b""
    except ConnectionLost as e:
        raise greeting.read_failed(e) from None
    return greeting.welcome(payload)


class AsyncSecrets(ClientCore):
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

    _api_name = "AsyncSecrets"

    def __init__(
        self,
        socket_path: PathArg = None,
        *,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        timeout: Optional[float] = None,
    ) -> None:
        super().__init__(socket_path, reconnect_delay=reconnect_delay, timeout=timeout)
        self._conn: Optional[_AsyncConn] = None
        self._opening: Optional["asyncio.Task[_AsyncConn]"] = None

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
        frame = self._get_request(key)
        return self._get_answer(await self._call(frame, key), key, default)

    async def get_all(self) -> Dict[str, str]:
        """Every secret of the project with its value (fluxd's policy may refuse it)."""
        return self._get_all_answer(await self._call(GET_ALL, None))

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
        pending = len(conn.exchange.pending) if conn is not None else 0
        return self._describe(state, f" pending={pending}")

    # ------------------------------------------------------------ internals

    async def _call(self, frame: bytes, key: Optional[str]) -> p.Response:
        """Sends one request and returns its answer, retrying once on a new
        connection when the connection could not be made or broke."""
        lost: Optional[ConnectionLost] = None
        for pause in self._pauses:
            if pause is not None:
                await asyncio.sleep(pause)
            try:
                if self._timeout is None:
                    conn = await self._connected()
                    return await conn.submit(frame, key)
                return await self._call_within(frame, key, self._timeout)
            except ConnectionLost as e:
                lost = e
        raise self._unreachable(lost, key)

    async def _call_within(self, frame: bytes, key: Optional[str], timeout: float) -> p.Response:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            conn = await asyncio.wait_for(self._connected(), timeout)
        except asyncio.TimeoutError:
            raise self._timed_out(key) from None
        fut = conn.submit(frame, key)
        try:
            return await asyncio.wait_for(fut, max(deadline - loop.time(), 0))
        except asyncio.TimeoutError:
            # The answer may still come: the stream can no longer be trusted.
            conn.lost(None)
            raise self._timed_out(key) from None

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
        target, trust = socket_target(path)
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
        conn = _AsyncConn(self, sock, reader, writer)
        self._conn = conn
        self._welcomed(welcome)
        return conn
