"""Behaviour the real fluxd cannot be made to show on demand: a peer that
drops every connection, refuses the handshake, answers with an error code
this client does not know, sends an oversized frame, dribbles its answers
byte by byte, pushes events first, or never answers. A small in-process
Unix-socket peer plays that part, speaking the documented frames; everything
fluxd does do is tested against the real daemon in the other files."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import struct
import tempfile
import threading
import time
import unittest
from typing import Callable, List, Optional
from unittest import mock

from flux_secrets import AsyncSecrets, DaemonUnreachable, FluxSecretsError, SecretNotFound, Secrets
from flux_secrets import _async, _sync
from flux_secrets import _protocol as proto

from secret_asserts import assert_value


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def framed(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def welcome(version: int = 1) -> bytes:
    return framed(u32(0) + u32(version) + string("stub/0") + u32(1) + string("app"))


def error_reply(code: int, message: str) -> bytes:
    return framed(u32(1) + u32(code) + string(message))


def value(v: str) -> bytes:
    return framed(u32(2) + string(v))


def event(generation: int, names: List[str]) -> bytes:
    return framed(
        u32(12)
        + struct.pack("<Q", generation)
        + u32(0)
        + struct.pack("<Q", len(names))
        + b"".join(string(n) for n in names)
    )


def read_frame(conn: socket.socket) -> Optional[bytes]:
    buf = b""
    while len(buf) < 4:
        b = conn.recv(4 - len(buf))
        if not b:
            return None
        buf += b
    (n,) = struct.unpack(">I", buf)
    payload = b""
    while len(payload) < n:
        b = conn.recv(n - len(payload))
        if not b:
            return None
        payload += b
    return payload


class Request:
    def __init__(self, payload: bytes) -> None:
        self.index = struct.unpack("<I", payload[:4])[0]
        self.name = payload[12:].decode() if self.index == 1 else None


Handler = Callable[[socket.socket, Request, int], None]


class Stub:
    """A peer on a fresh socket: `on_connect(conn)` per connection, then
    `on_request(conn, request, connection_number)` per request."""

    def __init__(
        self,
        path: str,
        on_request: Optional[Handler] = None,
        on_connect: Optional[Callable[[socket.socket], bool]] = None,
    ) -> None:
        self.path = path
        self.on_request = on_request
        self.on_connect = on_connect
        self.connections = 0
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen(16)
        self.conns: List[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            self.conns.append(conn)
            threading.Thread(
                target=self._handle, args=(conn, self.connections), daemon=True
            ).start()

    def _handle(self, conn: socket.socket, number: int) -> None:
        try:
            if self.on_connect is not None and not self.on_connect(conn):
                conn.close()
                return
            while True:
                payload = read_frame(conn)
                if payload is None:
                    return
                if self.on_request is not None:
                    self.on_request(conn, Request(payload), number)
        except OSError:
            return

    def close(self) -> None:
        try:
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        self.thread.join(5)


def welcoming(answer: Callable[[socket.socket, Request, int], None]) -> Handler:
    """A handler that answers Hello with Welcome and the rest with `answer`."""

    def handle(conn: socket.socket, req: Request, number: int) -> None:
        if req.index == 0:
            conn.sendall(welcome())
        else:
            answer(conn, req, number)

    return handle


class StubPeerTests(unittest.TestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="fxs", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def stub(self, name: str, **kw: object) -> Stub:
        s = Stub(os.path.join(self.dir, f"{name}.sock"), **kw)  # type: ignore[arg-type]
        self.addCleanup(s.close)
        return s

    def both(self, path: str, call: Callable[[object], object], **kw: object) -> List[object]:
        """Runs `call(client)` with a sync and an async client; returns the results or errors."""
        out: List[object] = []
        for which in ("sync", "async"):
            try:
                if which == "sync":
                    with Secrets(path, **kw) as c:  # type: ignore[arg-type]
                        out.append(call(c))
                else:

                    async def run() -> object:
                        c = AsyncSecrets(path, **kw)  # type: ignore[arg-type]
                        try:
                            return await call(c)  # type: ignore[misc]
                        finally:
                            await c.close()

                    out.append(asyncio.run(run()))
            except FluxSecretsError as e:
                out.append(e)
        return out

    def test_a_peer_that_drops_every_connection_gets_exactly_one_retry(self) -> None:
        peer = self.stub("drops", on_connect=lambda conn: False)
        started = time.monotonic()
        err = self.both(peer.path, lambda c: c.get("K", "fb"), reconnect_delay=0.05)
        for e in err:
            self.assertIsInstance(e, DaemonUnreachable)
            self.assertIn(peer.path, str(e))
            self.assertIn("also after one reconnect", str(e))
        self.assertEqual(peer.connections, 4, "per client: one connection, then one reconnect")
        time.sleep(0.2)
        self.assertEqual(peer.connections, 4, "no reconnect loop")
        self.assertLess(time.monotonic() - started, 5)

    def test_async_callers_waiting_on_a_dropped_connection_share_one_reconnect(self) -> None:
        peer = self.stub("drops2", on_connect=lambda conn: False)

        async def run() -> List[BaseException]:
            c = AsyncSecrets(peer.path, reconnect_delay=0.05)
            return await asyncio.gather(
                *(c.get(f"K{i}", "fb") for i in range(5)), return_exceptions=True
            )

        errs = asyncio.run(run())
        self.assertTrue(all(isinstance(e, DaemonUnreachable) for e in errs))
        self.assertEqual(peer.connections, 2)

    def test_a_refused_handshake_is_not_retried_and_never_a_default(self) -> None:
        def refuse(code: int, message: str) -> Handler:
            def handle(conn: socket.socket, req: Request, number: int) -> None:
                conn.sendall(error_reply(code, message))
                conn.close()

            return handle

        peer = self.stub(
            "refuses",
            on_request=refuse(
                8, "this fluxd speaks protocol version 2: upgrade the older of the two"
            ),
        )
        for err in self.both(peer.path, lambda c: c.get("A", "fb"), reconnect_delay=0):
            self.assertIsInstance(err, FluxSecretsError)
            assert isinstance(err, FluxSecretsError)
            self.assertEqual((err.code, err.code_name), (8, "version_mismatch"))
            self.assertIn("refused the handshake", str(err))
            self.assertIn("upgrade the older", str(err))
        self.assertEqual(peer.connections, 2, "one connection per client, no retry")
        odd = self.stub("odd", on_request=refuse(1, "strange"))
        for err in self.both(odd.path, lambda c: c.get("A", "fb"), reconnect_delay=0):
            self.assertIsInstance(err, FluxSecretsError)
            self.assertNotIsInstance(err, SecretNotFound)

    def test_a_welcome_with_another_version_is_refused(self) -> None:
        def handle(conn: socket.socket, req: Request, number: int) -> None:
            conn.sendall(welcome(version=2))

        peer = self.stub("v2", on_request=handle)
        for err in self.both(peer.path, lambda c: c.get("A", "fb")):
            assert isinstance(err, FluxSecretsError)
            self.assertEqual(err.code_name, "version_mismatch")
            self.assertIn("speaks protocol version 2, this client speaks version 1", str(err))

    def test_unavailable_and_unknown_codes_raise_even_with_a_default(self) -> None:
        for code, name in (
            (11, "unavailable"),
            (77, "other"),
            (4, "permission_denied"),
            (5, "unknown_project"),
        ):
            peer = self.stub(
                f"code{code}",
                on_request=welcoming(
                    lambda conn, req, n, code=code: conn.sendall(
                        error_reply(code, "a failure from fluxd")
                    )
                ),  # type: ignore[misc]
            )
            for err in self.both(peer.path, lambda c: c.get("A", "fb")):
                assert isinstance(err, FluxSecretsError), f"code {code}: {type(err).__name__}"
                self.assertNotIsInstance(err, SecretNotFound)
                self.assertEqual((err.code, err.code_name, err.key), (code, name, "A"))
                self.assertIn("a failure from fluxd", str(err))

    def test_an_oversized_frame_is_refused_and_the_connection_dropped(self) -> None:
        peer = self.stub(
            "huge",
            on_request=welcoming(
                lambda conn, req, n: conn.sendall(
                    struct.pack(">I", proto.MAX_RESPONSE_FRAME_LEN + 1)
                )
            ),
        )
        for err in self.both(peer.path, lambda c: c.get("A", "fb")):
            assert isinstance(err, FluxSecretsError)
            self.assertEqual((err.code, err.code_name), (3, "too_large"))
            self.assertIn("over the 67108864-byte limit", str(err))
        self.assertEqual(peer.connections, 2, "not retried")

    def test_the_answer_to_a_hello_that_could_not_be_sent_is_still_read(self) -> None:
        # fluxd may answer a connection and close it before reading anything
        # (a limit reached): whatever it sent is the answer, even though
        # writing the Hello then fails. Both clients read that frame the same
        # way: here one over the limit, so too_large, not a lost connection.
        answered = threading.Event()

        def answer_and_close(conn: socket.socket) -> bool:
            conn.sendall(struct.pack(">I", proto.MAX_RESPONSE_FRAME_LEN + 1))
            conn.close()
            answered.set()
            return False

        peer = self.stub("answers-first", on_connect=answer_and_close)
        real_check_peer = _sync.check_peer

        def once_the_peer_closed(sock: socket.socket, path: str, trust: object) -> None:
            # Holds the Hello back until the peer is gone, so writing it fails.
            self.assertTrue(answered.wait(5), "the peer answered")
            answered.clear()
            real_check_peer(sock, path, trust)  # type: ignore[arg-type]

        with mock.patch.object(_sync, "check_peer", once_the_peer_closed), mock.patch.object(
            _async, "check_peer", once_the_peer_closed
        ):
            errs = self.both(peer.path, lambda c: c.get("A", "fb"), reconnect_delay=0)
        for which, err in zip(("sync", "async"), errs):
            assert isinstance(err, FluxSecretsError), f"{which}: {type(err).__name__}"
            self.assertEqual((err.code, err.code_name), (3, "too_large"), which)
            self.assertIn("over the 67108864-byte limit", str(err))
        self.assertEqual(peer.connections, 2, "one connection per client, not retried")

    def test_answers_split_byte_by_byte_and_events_first(self) -> None:
        def dribble(conn: socket.socket, req: Request, number: int) -> None:
            data = event(7, [req.name or ""]) + event(8, []) + value(f"v-{req.name}")
            for i in range(len(data)):
                conn.sendall(data[i : i + 1])

        peer = self.stub("dribble", on_request=welcoming(dribble))
        c = Secrets(peer.path)
        self.addCleanup(c.close)
        assert_value(c.get("A"), "v-A", "A")
        assert_value(c.get("B"), "v-B", "B")
        self.assertEqual(
            [(e.generation, e.names) for e in c._events], [(7, ["A"]), (8, []), (7, ["B"]), (8, [])]
        )

        async def run() -> None:
            a = AsyncSecrets(peer.path)
            got = await asyncio.gather(*(a.get(f"K{i}") for i in range(20)))
            for i, v in enumerate(got):
                assert_value(v, f"v-K{i}", f"K{i}")
            self.assertEqual(len(a._events), 40)
            await a.close()

        asyncio.run(run())

    def test_an_answer_nobody_asked_for_drops_the_connection(self) -> None:
        # Each get is answered twice: the second answer must never be taken
        # for the next get's.
        def twice(conn: socket.socket, req: Request, number: int) -> None:
            conn.sendall(value(f"v-{req.name}") + value("stray"))

        peer = self.stub("twice", on_request=welcoming(twice))
        c = Secrets(peer.path)
        self.addCleanup(c.close)
        assert_value(c.get("A"), "v-A", "A")
        assert_value(c.get("B"), "v-B", "B")
        self.assertEqual(peer.connections, 2, "the connection out of step was dropped")

        async def run() -> None:
            a = AsyncSecrets(peer.path)
            self.addCleanup(asyncio.run, a.close())
            assert_value(await a.get("A"), "v-A", "A")
            for _ in range(100):
                if a._conn is None:
                    break
                await asyncio.sleep(0.01)
            self.assertIsNone(a._conn, "the connection out of step was dropped")
            assert_value(await a.get("B"), "v-B", "B")

        asyncio.run(run())
        self.assertEqual(peer.connections, 4)

    def test_a_peer_that_never_answers_times_out(self) -> None:
        peer = self.stub("silent", on_request=welcoming(lambda conn, req, n: None))
        started = time.monotonic()
        for err in self.both(peer.path, lambda c: c.get("A", "fb"), timeout=0.2):
            assert isinstance(err, FluxSecretsError), type(err).__name__
            self.assertEqual((err.code_name, err.key), ("timeout", "A"))
            self.assertIn("did not answer get A within 0.2 s", str(err))
        self.assertLess(time.monotonic() - started, 3)
        self.assertEqual(peer.connections, 2, "a timeout is not retried")

    def test_the_timeout_bounds_the_whole_answer_not_each_read(self) -> None:
        # An answer trickling in a byte at a time, each byte well within the
        # timeout, the whole answer well past it.
        def trickle(conn: socket.socket, req: Request, number: int) -> None:
            data = value(f"v-{req.name}")
            for i in range(len(data)):
                time.sleep(0.1)
                try:
                    conn.sendall(data[i : i + 1])
                except OSError:
                    return

        peer = self.stub("trickle", on_request=welcoming(trickle))
        started = time.monotonic()
        for which, err in zip(
            ("sync", "async"), self.both(peer.path, lambda c: c.get("A", "fb"), timeout=0.3)
        ):
            assert isinstance(err, FluxSecretsError), f"{which}: {type(err).__name__}"
            self.assertEqual((err.code_name, err.key), ("timeout", "A"), which)
            self.assertIn("did not answer get A within 0.3 s", str(err))
        self.assertLess(time.monotonic() - started, 2.5, "the whole answer takes 1.9 s")

    def test_close_from_another_thread_ends_a_waiting_get(self) -> None:
        peer = self.stub("silent2", on_request=welcoming(lambda conn, req, n: None))
        c = Secrets(peer.path)
        errors: List[BaseException] = []

        def waiting() -> None:
            try:
                c.get("A", "fb")
            except BaseException as e:
                errors.append(e)

        t = threading.Thread(target=waiting)
        t.start()
        while c._conn is None:
            time.sleep(0.005)
        time.sleep(0.05)  # the get is written and waits for its answer
        c.close()
        t.join(5)
        self.assertFalse(t.is_alive())
        self.assertEqual(len(errors), 1)
        err = errors[0]
        assert isinstance(err, FluxSecretsError)
        self.assertEqual((err.code_name, err.key), ("closed", "A"))
        self.assertEqual(peer.connections, 1, "a closed call is not retried")

    def test_a_malformed_answer_is_a_bad_response(self) -> None:
        peer = self.stub(
            "garbage", on_request=welcoming(lambda conn, req, n: conn.sendall(framed(u32(99))))
        )
        for err in self.both(peer.path, lambda c: c.get("A")):
            assert isinstance(err, FluxSecretsError)
            self.assertEqual(err.code_name, "bad_response")
            self.assertIn("unknown response variant 99", str(err))


if __name__ == "__main__":
    unittest.main()
