"""The client without its I/O, shared by :class:`Secrets` (``_sync.py``) and
:class:`AsyncSecrets` (``_async.py``), which only move bytes around it.

It owns:

- a client's state and calls (:class:`ClientCore`): its socket, reconnect
  delay and timeout, the project fluxd named, the events set aside, the
  frame each call sends and what its answer means;
- where to connect (:func:`socket_target`), after the trust checks;
- the handshake (:class:`Greeting`): Hello out, then the one frame that
  answers it;
- a connection's conversation after that (:class:`Exchange`): the calls
  waiting for an answer, in order, and what each frame from fluxd means for
  them: the answer to the oldest, an event to set aside, or a stream that
  can no longer be used (:class:`Broken`) and the error each waiting call
  raises then;
- the retry rule: one retry on a new connection after the reconnect delay
  (``ClientCore._pauses``), then :class:`DaemonUnreachable`.
"""

from __future__ import annotations

import collections
from typing import (
    Callable,
    Deque,
    Dict,
    Generic,
    List,
    Optional,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from . import _protocol as p
from ._common import (
    CLIENT_NAME,
    DEFAULT_RECONNECT_DELAY,
    MAX_SET_ASIDE_EVENTS,
    Missing,
    PathArg,
    bad_response,
    check_delay,
    check_name,
    check_timeout,
    check_welcome,
    socket_path_from,
    timed_out,
    too_large,
    value_of,
    values_of,
)
from ._errors import (
    ConnectionLost,
    DaemonUnreachable,
    FluxSecretsError,
    SecretNotFound,
    unreachable,
)
from ._trust import Trust, check_socket_path

#: Bytes in a frame's length prefix.
HEADER_LEN = 4

#: The handshake request every connection starts with.
HELLO = p.encode_hello(CLIENT_NAME)

#: The request frame of ``get_all``.
GET_ALL = p.encode_get_all()

D = TypeVar("D")
W = TypeVar("W")
C = TypeVar("C", bound="ClientCore")

#: Makes the error a waiting call raises, from the key it asked for.
MakeError = Callable[[Optional[str]], BaseException]

Payload = Union[bytes, bytearray]


class ClientCore:
    """What :class:`Secrets` and :class:`AsyncSecrets` share, apart from how
    they wait: the configuration checked in the constructor, the project
    fluxd named, the events set aside, and the calls on either side of the
    I/O (the frame a call sends, what its answer means)."""

    #: The public class name shown by ``repr()``.
    _api_name = "ClientCore"

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
        # The retry rule: a call is sent at most twice, the second time on a
        # new connection after the reconnect delay, and only when connecting
        # failed or the connection broke before the answer (ConnectionLost);
        # when that fails too, the call raises _unreachable(): no retry loop.
        # What to do before each attempt: nothing, then pause this long.
        self._pauses: Tuple[Optional[float], ...] = (None, self._reconnect_delay)
        self._project: Optional[str] = None
        self._events: Deque[p.Event] = collections.deque(maxlen=MAX_SET_ASIDE_EVENTS)

    @classmethod
    def from_env(
        cls: Type[C],
        *,
        reconnect_delay: float = DEFAULT_RECONNECT_DELAY,
        timeout: Optional[float] = None,
    ) -> C:
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

    def _describe(self, state: str, more: str = "") -> str:
        """The ``repr()``: the socket, the project and the connection state, never a value."""
        return (
            f"<flux_secrets.{self._api_name} socket_path={self._path!r} "
            f"project={self._project!r} state={state!r}{more}>"
        )

    # ------------------------------------------------------------- the calls

    def _get_request(self, key: str) -> bytes:
        """The frame of ``get(key)``; the name is checked before anything is sent."""
        check_name(key)
        return p.encode_get(key)

    def _get_answer(self, msg: p.Response, key: str, default: Union[D, Missing]) -> Union[str, D]:
        """The value answering ``get(key)``; `default` when, and only when, it is not set."""
        try:
            return value_of(msg, key, self._path)
        except SecretNotFound:
            if isinstance(default, Missing):
                raise
            return default

    def _get_all_answer(self, msg: p.Response) -> Dict[str, str]:
        """The values answering ``get_all()``."""
        return values_of(msg, self._path)

    # ----------------------------------------------------------- the rules

    def _unreachable(self, lost: Optional[ConnectionLost], key: Optional[str]) -> DaemonUnreachable:
        """The error once every attempt failed, the last one this way."""
        return unreachable(self._path, lost, key=key, retried=True)

    def _timed_out(self, key: Optional[str]) -> FluxSecretsError:
        return timed_out(self._path, self._timeout, key)

    def _welcomed(self, welcome: p.Welcome) -> None:
        """A handshake on a new connection succeeded."""
        self._project = welcome.project


def socket_target(socket_path: str) -> Tuple[str, Trust]:
    """The path to connect to, once the socket and its folders pass the trust
    checks, and what those checks learned (for checking the peer once
    connected). A socket that cannot be looked at counts as a failed
    connection: it is retried once."""
    trust = Trust()
    try:
        return check_socket_path(socket_path, trust), trust
    except OSError as e:
        raise ConnectionLost(e, connecting=True) from None


def _decode(payload: Payload) -> p.Response:
    """One response; a payload that is not one raises :class:`p.DecodeError`.
    A bytearray payload is zeroed once decoded: the bytes of a value do not
    linger in it."""
    try:
        return p.decode_response(payload)
    finally:
        if isinstance(payload, bytearray):
            payload[:] = bytes(len(payload))


class Greeting:
    """The handshake on a new connection: send :data:`HELLO`, read the one
    frame that answers it, and take it for a :class:`p.Welcome` or the error
    that refuses the connection.

    A Hello that could not be sent is no failure yet: fluxd may have refused
    the connection (a limit reached) with an error and closed it before
    reading anything, and that error is the answer. Only when no frame can be
    read either is the connection lost, for the reason sending failed. The
    frame read is the answer whatever happened to the Hello: one over the
    size limit is ``too_large``, one that does not decode ``bad_response``.
    """

    hello = HELLO

    def __init__(self, socket_path: str) -> None:
        self._path = socket_path
        self._unsent: Optional[ConnectionLost] = None

    def send_failed(self, lost: ConnectionLost) -> None:
        """Sending the Hello failed: read the answer all the same."""
        self._unsent = lost

    def read_failed(self, lost: ConnectionLost) -> ConnectionLost:
        """Reading the answer failed: the failure the connection counts as."""
        return self._unsent or lost

    def length(self, header: Payload) -> int:
        """The answer's payload length, checked before anything is allocated."""
        try:
            return p.frame_length(header)
        except p.FrameTooLarge as e:
            raise too_large(self._path, e) from None

    def welcome(self, payload: Payload) -> p.Welcome:
        """The Welcome in the answer, or the error that refuses the connection."""
        try:
            msg = _decode(payload)
        except p.DecodeError as e:
            raise bad_response(self._path, str(e)) from None
        return check_welcome(msg, self._path)


class Broken(Exception):
    """The stream from fluxd can no longer be used (a frame over the limit, a
    payload that does not decode, an answer nobody asked for): the connection
    is dropped, and each call waiting on it raises ``error_for(its key)``."""

    def __init__(self, error_for: MakeError) -> None:
        super().__init__("the connection to fluxd is out of step")
        self.error_for = error_for


def _oversized(socket_path: str, err: p.FrameTooLarge) -> Broken:
    return Broken(lambda key: too_large(socket_path, err, key))


def _undecodable(socket_path: str, reason: str) -> Broken:
    return Broken(lambda key: bad_response(socket_path, reason, key))


def _unasked(socket_path: str, msg: p.Response) -> Broken:
    what = f"a {p.kind_of(msg)} message nobody asked for"
    return Broken(lambda key: bad_response(socket_path, what, key))


class Exchange(Generic[W]):
    """One connection's conversation after the handshake. fluxd answers one
    response per request, in order, and may push events between them: each
    answer goes to the oldest call still waiting, each event is set aside.

    A waiter (``W``) is whatever the I/O side resumes a call with (a future
    for asyncio); :meth:`sent` records it with the key the call asked for.
    """

    def __init__(self, socket_path: str, events: Deque[p.Event]) -> None:
        self._path = socket_path
        self._events = events
        self.pending: Deque[Tuple[W, Optional[str]]] = collections.deque()

    def sent(self, waiter: W, key: Optional[str]) -> None:
        """A request was written: its answer comes after those before it."""
        self.pending.append((waiter, key))

    def length(self, header: Payload) -> int:
        """The next payload's length, checked before anything is allocated;
        :class:`Broken` over the limit."""
        try:
            return p.frame_length(header)
        except p.FrameTooLarge as e:
            raise _oversized(self._path, e) from None

    def receive(self, payload: Payload) -> Optional[Tuple[W, p.Response]]:
        """What a payload means: None for an event (set aside), else the
        oldest waiting call and its answer. :class:`Broken` when it does not
        decode or nobody waits for an answer."""
        try:
            msg = _decode(payload)
        except p.DecodeError as e:
            raise _undecodable(self._path, str(e)) from None
        if isinstance(msg, p.Event):
            self._events.append(msg)
            return None
        if not self.pending:
            raise _unasked(self._path, msg)
        waiter, _key = self.pending.popleft()
        return waiter, msg

    def fail(self, error_for: MakeError) -> List[Tuple[W, BaseException]]:
        """The connection is gone: every waiting call, with the error it raises."""
        failed = [(waiter, error_for(key)) for waiter, key in self.pending]
        self.pending.clear()
        return failed
