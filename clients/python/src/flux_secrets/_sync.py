"""The blocking client, safe to share between threads: the socket I/O, the
lock and the timeouts around the shared core (``_core.py``), which builds
the requests and reads the answers."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import weakref
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
    socket_target,
)
from ._errors import ConnectionLost
from ._trust import check_peer

D = TypeVar("D")
S = TypeVar("S", bound="Secrets")

_PEEK_FLAGS = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


class _Timeout(Exception):
    pass


#: How far a socket's own timeout may stray from an attempt's deadline
#: before it is set again (setting it costs a system call).
_TIMEOUT_SLACK = 0.001


def _bound(sock: socket.socket, deadline: float) -> None:
    """Gives the next socket operation what is left of the attempt's time
    (`deadline` is a time of the monotonic clock)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Timeout()
    current = sock.gettimeout()
    if current is None or abs(current - left) > _TIMEOUT_SLACK:
        sock.settimeout(left)


def _send(sock: socket.socket, data: bytes, deadline: Optional[float]) -> None:
    try:
        if deadline is not None:
            _bound(sock, deadline)
        sock.sendall(data)
    except socket.timeout:
        raise _Timeout() from None
    except OSError as e:
        raise ConnectionLost(e, connecting=False) from None


def _recv(sock: socket.socket, n: int, deadline: Optional[float]) -> bytearray:
    """Exactly `n` bytes, in a buffer the core zeroes once it has decoded it."""
    buf = bytearray(n)
    view = memoryview(buf)
    while len(view):
        try:
            if deadline is not None:
                _bound(sock, deadline)
            got = sock.recv_into(view)
        except socket.timeout:
            raise _Timeout() from None
        except OSError as e:
            raise ConnectionLost(e, connecting=False) from None
        if got == 0:
            raise ConnectionLost(None, connecting=False)
        view = view[got:]
    return buf


class _Conn:
    """One connection: the socket, after the trust checks and the handshake."""

    def __init__(self, sock: socket.socket, exchange: "Exchange[None]") -> None:
        self.sock = sock
        self.exchange = exchange
        self.pid = os.getpid()
        self.closed_by_user = False

    def ask(self, frame: bytes, key: Optional[str], deadline: Optional[float]) -> p.Response:
        """Sends one request and returns its answer; events pushed first are set aside."""
        _send(self.sock, frame, deadline)
        exchange = self.exchange
        exchange.sent(None, key)
        while True:
            length = exchange.length(_recv(self.sock, HEADER_LEN, deadline))
            answered = exchange.receive(_recv(self.sock, length, deadline))
            if answered is not None:
                return answered[1]

    def usable(self, deadline: Optional[float]) -> bool:
        """Whether this idle connection can carry the next request, checked
        before it is sent. Not when fluxd closed it (a restart, or its idle
        timeout), nor when the stream is out of step (a frame that is no
        event arrived unasked: it would be taken for the next answer). Events
        that arrived meanwhile are set aside."""
        while self._readable():
            # Readable: fluxd closed it, or a frame waits to be read.
            try:
                if self.sock.recv(1, _PEEK_FLAGS) == b"":
                    return False
            except (BlockingIOError, InterruptedError, socket.timeout):
                return True
            except OSError:
                return False
            try:
                length = self.exchange.length(_recv(self.sock, HEADER_LEN, deadline))
                self.exchange.receive(_recv(self.sock, length, deadline))
            except (Broken, ConnectionLost):
                return False
        return True

    def _readable(self) -> bool:
        """Without blocking: whether a read would return at once."""
        fd = self.sock.fileno()
        if fd < 0:
            return True
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


_clients: "weakref.WeakSet[Secrets]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A fork taken while another thread held a client's lock must not leave
    # the child waiting for it forever. (The connection itself is replaced
    # on the child's first call: see _connected.)
    for client in list(_clients):
        client._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Secrets(ClientCore):
    """A project's secrets, read from fluxd over the project's Unix socket.

    ``Secrets()`` uses the socket in ``FLUX_SECRETS_SOCKET``;
    ``Secrets("/run/flux/projects/my-app.sock")`` an explicit one. Nothing
    connects until the first :meth:`get`.

    One connection, opened on first use after checking that the socket and
    its folders belong to you, root or fluxd's user, is shared by every
    thread (calls take turns on it). Nothing is cached: every :meth:`get`
    asks fluxd, so a rotated value is seen by the next call. When the
    connection breaks (fluxd restarted), a call reconnects once and retries,
    after `reconnect_delay` seconds; if that fails too it raises
    :class:`DaemonUnreachable`.

    `timeout` (seconds, default none) bounds each call's wait for fluxd; a
    call that runs out raises a :class:`FluxSecretsError` with code_name
    ``"timeout"`` and the connection is closed.
    """

    _api_name = "Secrets"

    def __init__(
        self,
        socket_path: PathArg = None,
        *,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        timeout: Optional[float] = None,
    ) -> None:
        super().__init__(socket_path, reconnect_delay=reconnect_delay, timeout=timeout)
        self._lock = threading.Lock()
        self._conn: Optional[_Conn] = None
        _clients.add(self)

    @overload
    def get(self, key: str) -> str: ...

    @overload
    def get(self, key: str, default: D) -> Union[str, D]: ...

    def get(self, key: str, default: Union[D, Missing] = MISSING) -> Union[str, D]:
        """The secret's current value.

        Raises :class:`SecretNotFound` when it is not set, unless `default` is
        given: then `default` is returned, when (and only when) the secret is
        not set. Every other failure (an invalid name, a denied request, an
        unreachable daemon) raises a :class:`FluxSecretsError` all the same.
        """
        frame = self._get_request(key)
        return self._get_answer(self._call(frame, key), key, default)

    def get_all(self) -> Dict[str, str]:
        """Every secret of the project with its value (fluxd's policy may refuse it)."""
        return self._get_all_answer(self._call(GET_ALL, None))

    def close(self) -> None:
        """Closes the connection. A call waiting on it in another thread fails
        with code_name ``"closed"``. The client stays usable: a later call
        connects again."""
        conn = self._conn
        if conn is not None:
            # Wakes a thread blocked reading this connection, without the lock.
            conn.closed_by_user = True
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self._lock:
            if self._conn is conn:
                self._drop()

    def __enter__(self: S) -> S:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return self._describe("connected" if self._conn is not None else "idle")

    # ------------------------------------------------------------ internals

    def _call(self, frame: bytes, key: Optional[str]) -> p.Response:
        """Sends one request and returns its answer, retrying once on a new
        connection when the connection could not be made or broke."""
        with self._lock:
            lost: Optional[ConnectionLost] = None
            for pause in self._pauses:
                if pause is not None:
                    time.sleep(pause)
                conn: Optional[_Conn] = None
                # Each attempt, connecting included, has `timeout` seconds.
                deadline = None if self._timeout is None else time.monotonic() + self._timeout
                try:
                    conn = self._connected(deadline)
                    return conn.ask(frame, key, deadline)
                except ConnectionLost as e:
                    self._drop()
                    if conn is not None and conn.closed_by_user:
                        raise closed_error(self._path, key) from None
                    lost = e
                except Broken as e:
                    self._drop()
                    raise e.error_for(key) from None
                except _Timeout:
                    self._drop()
                    raise self._timed_out(key) from None
            raise self._unreachable(lost, key)

    def _connected(self, deadline: Optional[float]) -> _Conn:
        conn = self._conn
        if conn is not None:
            if conn.pid != os.getpid():
                # A forked child must not share its parent's connection.
                self._conn = None
                conn.close()
            elif conn.closed_by_user or not conn.usable(deadline):
                self._drop()
            else:
                return conn
        conn = self._open(deadline)
        self._conn = conn
        return conn

    def _open(self, deadline: Optional[float]) -> _Conn:
        path = self._path
        target, trust = socket_target(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(None)
            try:
                if deadline is not None:
                    _bound(sock, deadline)
                sock.connect(target)
            except socket.timeout:
                raise _Timeout() from None
            except OSError as e:
                raise ConnectionLost(e, connecting=True) from None
            check_peer(sock, path, trust)
            greeting = Greeting(path)
            try:
                _send(sock, greeting.hello, deadline)
            except ConnectionLost as lost:
                greeting.send_failed(lost)
            try:
                length = greeting.length(_recv(sock, HEADER_LEN, deadline))
                payload = _recv(sock, length, deadline)
            except ConnectionLost as lost:
                raise greeting.read_failed(lost) from None
            welcome = greeting.welcome(payload)
        except BaseException:
            sock.close()
            raise
        self._welcomed(welcome)
        return _Conn(sock, Exchange(path, self._events))

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
