"""The core both clients share, without a socket: the handshake's rules, a
connection's conversation (answers in order, events set aside, a stream out
of step, each waiting call failing with its own key). No daemon needed."""

from __future__ import annotations

import collections
import struct
import unittest
from typing import Deque, List

from flux_secrets import FluxSecretsError
from flux_secrets import _protocol as p
from flux_secrets._core import Broken, Exchange, Greeting
from flux_secrets._errors import ConnectionLost

from secret_asserts import assert_value

PATH = "/run/flux/projects/app.sock"


def u32(n: int) -> bytes:
    return struct.pack("<I", n)


def string(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def header(n: int) -> bytes:
    return struct.pack(">I", n)


WELCOME = u32(0) + u32(1) + string("fluxd/0") + u32(1) + string("app")
EVENT = u32(12) + struct.pack("<Q", 3) + u32(0) + struct.pack("<Q", 1) + string("A")


def value(v: str) -> bytes:
    return u32(2) + string(v)


def error_reply(code: int, message: str) -> bytes:
    return u32(1) + u32(code) + string(message)


class GreetingTests(unittest.TestCase):
    def test_a_welcome_names_the_project(self) -> None:
        g = Greeting(PATH)
        self.assertEqual(g.hello, p.encode_hello("flux-secrets-python/0.1.0"))
        self.assertEqual(g.length(header(len(WELCOME))), len(WELCOME))
        self.assertEqual(g.welcome(WELCOME).project, "app")

    def test_the_answer_is_read_even_when_the_hello_could_not_be_sent(self) -> None:
        g = Greeting(PATH)
        g.send_failed(ConnectionLost(BrokenPipeError(32, "Broken pipe"), connecting=False))
        with self.assertRaises(FluxSecretsError) as refused:
            g.welcome(error_reply(10, "too many connections"))
        self.assertEqual(
            (refused.exception.code_name, refused.exception.code), ("limit_reached", 10)
        )
        with self.assertRaises(FluxSecretsError) as huge:
            g.length(header(p.MAX_RESPONSE_FRAME_LEN + 1))
        self.assertEqual((huge.exception.code_name, huge.exception.key), ("too_large", None))
        with self.assertRaises(FluxSecretsError) as garbage:
            g.welcome(u32(99))
        self.assertEqual(garbage.exception.code_name, "bad_response")

    def test_a_connection_lost_both_ways_counts_for_why_sending_failed(self) -> None:
        g = Greeting(PATH)
        read = ConnectionLost(None, connecting=False)
        self.assertIs(g.read_failed(read), read)
        sent = ConnectionLost(BrokenPipeError(32, "Broken pipe"), connecting=False)
        g.send_failed(sent)
        self.assertIs(g.read_failed(read), sent)


class ExchangeTests(unittest.TestCase):
    def setUp(self) -> None:
        self.events: Deque[p.Event] = collections.deque()
        self.ex: Exchange[str] = Exchange(PATH, self.events)

    def test_answers_go_to_the_oldest_call_and_events_are_set_aside(self) -> None:
        self.ex.sent("first", "A")
        self.ex.sent("second", "B")
        self.assertIsNone(self.ex.receive(EVENT))
        got: List[object] = []
        for v in ("v-A", "v-B"):
            answered = self.ex.receive(value(v))
            assert answered is not None
            got.append(answered[0])
            assert isinstance(answered[1], p.Value)
            assert_value(answered[1].value, v, v)
        self.assertEqual(got, ["first", "second"])
        self.assertEqual([e.names for e in self.events], [["A"]])
        self.assertEqual(len(self.ex.pending), 0)

    def test_a_payload_is_zeroed_once_decoded(self) -> None:
        self.ex.sent("first", "A")
        payload = bytearray(value("s3cret"))
        self.ex.receive(payload)
        self.assertEqual(payload, bytearray(len(payload)))

    def test_an_answer_nobody_asked_for_breaks_the_stream(self) -> None:
        with self.assertRaises(Broken) as broken:
            self.ex.receive(value("stray"))
        err = broken.exception.error_for("K")
        assert isinstance(err, FluxSecretsError)
        self.assertEqual((err.code_name, err.key), ("bad_response", "K"))
        self.assertIn("a value message nobody asked for", str(err))
        self.assertNotIn("stray", str(err))

    def test_an_oversized_or_malformed_frame_fails_each_call_with_its_key(self) -> None:
        self.ex.sent("first", "A")
        self.ex.sent("second", None)
        with self.assertRaises(Broken) as huge:
            self.ex.length(header(p.MAX_RESPONSE_FRAME_LEN + 1))
        failed = self.ex.fail(huge.exception.error_for)
        self.assertEqual([w for w, _ in failed], ["first", "second"])
        for (_, err), key in zip(failed, ("A", None)):
            assert isinstance(err, FluxSecretsError)
            self.assertEqual((err.code_name, err.code, err.key), ("too_large", 3, key))
        self.assertEqual(self.ex.fail(huge.exception.error_for), [])
        with self.assertRaises(Broken) as garbage:
            self.ex.receive(u32(99))
        err = garbage.exception.error_for("A")
        assert isinstance(err, FluxSecretsError)
        self.assertEqual(err.code_name, "bad_response")
        self.assertIn("unknown response variant 99", str(err))


if __name__ == "__main__":
    unittest.main()
