"""The blocking client, safe to share between threads."""

from __future__ import annotations

import collections
import os
import select
import socket
import threading
import time
import weakref
from types import TracebackType
from typing import Deque, Dict, Optional, Type, TypeVar, Union, overload

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
S = TypeVar("S", bound="Secrets")

_PEEK_FLAGS = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


class _Timeout(Exception):
    pass


class _Conn:
    """One connection: the socket, after the trust checks and the handshake."""

    def __init__(self, sock: socket.socket, welcome: p.Welcome) -> None:
        self.sock = sock
        self.welcome = welcome
        self.pid = os.getpid()
        self.closed_by_user = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except socket.timeout:
            raise _Timeout() from None
        except OSError as e:
            raise ConnectionLost(e, connecting=False) from None

    def _recv_into(self, view: memoryview) -> None:
        while len(view):
            try:
                n = self.sock.recv_into(view)
            except socket.timeout:
                raise _Timeout() from None
            except OSError as e:
                raise ConnectionLost(e, connecting=False) from None
            if n == 0:
                raise ConnectionLost(None, connecting=False)
            view = view[n:]

    def read_frame(self) -> bytearray:
        """One payload. The length is checked before the payload is allocated."""
        header = bytearray(4)
        self._recv_into(memoryview(header))
        n = p.frame_length(header)
        payload = bytearray(n)
        self._recv_into(memoryview(payload))
        return payload

    def peer_closed(self) -> bool:
        """True when fluxd closed this idle connection (a restart, or its idle
        timeout): checked without blocking before a request is sent on it."""
        fd = self.sock.fileno()
        if fd < 0:
            return True
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(0):
                return False
        elif not select.select([fd], [], [], 0)[0]:
            return False
        # Readable: either fluxd closed it, or an event waits to be read.
        try:
            return self.sock.recv(1, _PEEK_FLAGS) == b""
        except (BlockingIOError, InterruptedError, socket.timeout):
            return False
        except OSError:
            return True

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


class Secrets:
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
        self._lock = threading.Lock()
        self._conn: Optional[_Conn] = None
        self._project: Optional[str] = None
        self._events: Deque[p.Event] = collections.deque(maxlen=MAX_SET_ASIDE_EVENTS)
        _clients.add(self)

    @classmethod
    def from_env(
        cls: Type[S],
        *,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        timeout: Optional[float] = None,
    ) -> S:
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
        check_name(key)
        msg = self._call(p.encode_get(key), key)
        try:
            return value_of(msg, key, self._path)
        except SecretNotFound:
            if isinstance(default, Missing):
                raise
            return default

    def get_all(self) -> Dict[str, str]:
        """Every secret of the project with its value (fluxd's policy may refuse it)."""
        return values_of(self._call(p.encode_get_all(), None), self._path)

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
        state = "connected" if self._conn is not None else "idle"
        return (
            f"<flux_secrets.Secrets socket_path={self._path!r} project={self._project!r} "
            f"state={state!r}>"
        )

    # ------------------------------------------------------------ internals

    def _call(self, frame: bytes, key: Optional[str]) -> p.Response:
        """Sends one request and returns its answer, retrying once on a new
        connection when the connection could not be made or broke."""
        with self._lock:
            lost: Optional[ConnectionLost] = None
            for attempt in (0, 1):
                if attempt:
                    time.sleep(self._reconnect_delay)
                conn: Optional[_Conn] = None
                try:
                    conn = self._connected()
                    conn.send(frame)
                    return self._receive(conn, key)
                except ConnectionLost as e:
                    self._drop()
                    if conn is not None and conn.closed_by_user:
                        raise closed_error(self._path, key) from None
                    lost = e
                except _Timeout:
                    self._drop()
                    raise timed_out(self._path, self._timeout, key) from None
            raise unreachable(self._path, lost, key=key, retried=True)

    def _connected(self) -> _Conn:
        conn = self._conn
        if conn is not None:
            if conn.pid != os.getpid():
                # A forked child must not share its parent's connection.
                self._conn = None
                conn.close()
            elif conn.closed_by_user or conn.peer_closed():
                self._drop()
            else:
                return conn
        conn = self._open()
        self._conn = conn
        self._project = conn.welcome.project
        return conn

    def _open(self) -> _Conn:
        path = self._path
        trust = Trust()
        try:
            target = check_socket_path(path, trust)
        except OSError as e:
            raise ConnectionLost(e, connecting=True) from None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self._timeout)
            try:
                sock.connect(target)
            except socket.timeout:
                raise _Timeout() from None
            except OSError as e:
                raise ConnectionLost(e, connecting=True) from None
            check_peer(sock, path, trust)
            probe = _Conn(sock, p.Welcome(0, "", None))
            try:
                probe.send(p.encode_hello(CLIENT_NAME))
            except ConnectionLost as lost:
                # fluxd may have refused the connection (a limit) with an
                # error and closed it before reading: that error is the answer.
                try:
                    payload = probe.read_frame()
                except (ConnectionLost, p.FrameTooLarge):
                    raise lost from None
            else:
                payload = self._read(probe, None)
            try:
                msg = p.decode_response(payload)
            except p.DecodeError as e:
                raise bad_response(path, str(e)) from None
            finally:
                payload[:] = bytes(len(payload))
            return _Conn(sock, check_welcome(msg, path))
        except BaseException:
            sock.close()
            raise

    def _read(self, conn: _Conn, key: Optional[str]) -> bytearray:
        try:
            return conn.read_frame()
        except p.FrameTooLarge as e:
            err = too_large(self._path, e)
            err.key = key
            raise err from None

    def _receive(self, conn: _Conn, key: Optional[str]) -> p.Response:
        """The answer to the request just sent; events pushed first are set aside."""
        while True:
            try:
                payload = self._read(conn, key)
            except FluxSecretsError:
                self._drop()
                raise
            try:
                msg = p.decode_response(payload)
            except p.DecodeError as e:
                self._drop()
                raise bad_response(self._path, str(e), key) from None
            finally:
                payload[:] = bytes(len(payload))
            if isinstance(msg, p.Event):
                self._events.append(msg)
                continue
            return msg

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
