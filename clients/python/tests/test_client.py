"""The blocking client against the real fluxd, with secrets set through the
real fluxctl. Values are compared with assert_value(), which never prints
them."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import unittest
from typing import Dict, List
from unittest import mock

from flux_secrets import FluxSecretsError, SecretNotFound, Secrets
from flux_secrets import _protocol as proto

from fluxd_harness import TestDaemon, skip_without_binaries
from secret_asserts import assert_no_value, assert_value, error_text

VALUES: Dict[str, str] = {
    "OPENAI_API_KEY": "sk-test-3f9a1c7e5b2d4f60",
    "UTF8_MIXED": "héllo wörld — ключ 秘密 🔑 \U0001f600",
    "WITH_NEWLINES": "line one\nline two\r\n\ttabbed",
    "EMPTY": "",
    # 65536 bytes, the largest value fluxd stores, of 2-byte characters.
    "BIG_UTF8": "é" * (32 * 1024),
    # 65536 bytes mixing 1-, 2-, 3- and 4-byte characters.
    "BIG_MIXED": ("a" + "é" + "€" + "𝄞") * 6553 + "abcdef",
}

BAD_NAMES = ["", "1A", "A-B", "A B", "A.B", "Ä", "A\n", "../x", "A" * 129, "a\x00b"]

CLIENT_PREFIX = "flux-secrets-python/"


@skip_without_binaries
class SyncClientTests(unittest.TestCase):
    daemon: TestDaemon
    socket_path: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = TestDaemon.start()
        try:
            cls.daemon.create_project("app")
            for name, value in VALUES.items():
                cls.daemon.set_secret("app", name, value)
        except BaseException:
            cls.daemon.cleanup()
            raise
        cls.socket_path = cls.daemon.project_socket("app")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.cleanup()

    def client(self, **kw: object) -> Secrets:
        c = Secrets(kw.pop("socket_path", self.socket_path), **kw)  # type: ignore[arg-type]
        self.addCleanup(c.close)
        return c

    # ---------------------------------------------------------------- get

    def test_get_returns_the_value_set_with_fluxctl(self) -> None:
        c = self.client()
        assert_value(c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        self.assertEqual(c.project, "app")

    def test_utf8_newlines_empty_and_64_kib_values_round_trip(self) -> None:
        c = self.client()
        self.assertEqual(len(VALUES["BIG_UTF8"].encode()), 65536)
        self.assertEqual(len(VALUES["BIG_MIXED"].encode()), 65536)
        for name, want in VALUES.items():
            assert_value(c.get(name), want, name)

    def test_an_unset_secret_raises_secret_not_found_saying_how_to_set_it(self) -> None:
        c = self.client()
        with self.assertRaises(SecretNotFound) as cm:
            c.get("NOT_SET_ANYWHERE")
        err = cm.exception
        self.assertIsInstance(err, FluxSecretsError)
        self.assertEqual((err.code, err.code_name), (1, "not_found"))
        self.assertEqual(err.key, "NOT_SET_ANYWHERE")
        self.assertEqual(err.socket_path, self.socket_path)
        self.assertIn("secret NOT_SET_ANYWHERE is not set", str(err))
        self.assertIn("fluxctl secrets set NOT_SET_ANYWHERE", str(err))

    def test_the_connection_stays_usable_after_an_error_answer(self) -> None:
        c = self.client()
        with self.assertRaises(SecretNotFound):
            c.get("MISSING_ONE")
        assert_value(c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")

    def test_get_all_returns_every_value(self) -> None:
        c = self.client()
        got = c.get_all()
        self.assertTrue(set(VALUES) <= set(got), "every secret is listed")
        for name, want in VALUES.items():
            assert_value(got[name], want, name)

    # ------------------------------------------------------------ defaults

    def test_get_with_a_default_returns_it_only_when_not_set(self) -> None:
        c = self.client()
        assert_value(c.get("NOT_SET", "the-default"), "the-default", "NOT_SET")
        assert_value(c.get("NOT_SET", None), None, "NOT_SET")
        marker = object()
        self.assertIs(c.get("NOT_SET", marker), marker)
        assert_value(c.get("OPENAI_API_KEY", "default"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        # The empty string is a value, not a missing secret.
        assert_value(c.get("EMPTY", "default"), "", "EMPTY")

    # --------------------------------------------------------- invalid names

    def test_invalid_names_raise_before_reaching_fluxd_even_with_a_default(self) -> None:
        offline = Secrets("/nonexistent/flux/app.sock")
        for c in (self.client(), offline):
            for name in BAD_NAMES:
                for args in ((name,), (name, "default")):
                    with self.subTest(name=name, default=len(args) == 2):
                        with self.assertRaises(FluxSecretsError) as cm:
                            c.get(*args)
                        err = cm.exception
                        self.assertNotIsInstance(err, SecretNotFound)
                        self.assertEqual((err.code, err.code_name), (2, "invalid_name"))
                        self.assertIn("invalid secret name (", str(err))
                        self.assertIn("start with a letter or '_'", str(err))
        self.assertIn("state='idle'", repr(offline))

    def test_non_str_names_raise_invalid_name(self) -> None:
        c = self.client()
        for name in (None, 42, b"A", ["A"]):
            with self.assertRaises(FluxSecretsError) as cm:
                c.get(name, "default")  # type: ignore[call-overload]
            self.assertEqual(cm.exception.code_name, "invalid_name")

    def test_the_longest_valid_name_is_accepted(self) -> None:
        c = self.client()
        assert_value(c.get("A" * 128, "fb"), "fb", "A x 128")
        assert_value(c.get("_", "fb"), "fb", "_")

    # ------------------------------------------------------------- rotation

    def test_an_open_connection_sees_a_rotated_value_on_its_next_get(self) -> None:
        c = self.client()
        self.daemon.set_secret("app", "ROTATED", "old-value-1")
        assert_value(c.get("ROTATED"), "old-value-1", "ROTATED")
        before = self.daemon.handshakes(CLIENT_PREFIX)
        self.daemon.set_secret("app", "ROTATED", "new-value-2")
        assert_value(c.get("ROTATED"), "new-value-2", "ROTATED")
        self.daemon.delete_secret("app", "ROTATED")
        assert_value(c.get("ROTATED", "gone"), "gone", "ROTATED")
        with self.assertRaises(SecretNotFound):
            c.get("ROTATED")
        self.assertEqual(self.daemon.handshakes(CLIENT_PREFIX), before, "the same connection")

    def test_events_pushed_on_a_subscribed_connection_are_set_aside(self) -> None:
        c = self.client()
        self.daemon.set_secret("app", "WATCHED", "w-1")
        assert_value(c.get("WATCHED"), "w-1", "WATCHED")
        # Subscribe the client's own connection (internal API): fluxd then
        # pushes an Event, unasked, after every change to the project.
        sub = c._call(proto.encode_subscribe(), None)
        self.assertIsInstance(sub, proto.Subscribed)
        self.daemon.set_secret("app", "WATCHED", "w-2")
        self.daemon.delete_secret("app", "WATCHED")
        assert_value(c.get("WATCHED", "deleted"), "deleted", "WATCHED")
        self.daemon.set_secret("app", "WATCHED", "w-3")
        assert_value(c.get("WATCHED"), "w-3", "WATCHED")
        kinds = [e.kind for e in c._events if e.names == ["WATCHED"]]
        self.assertEqual(
            kinds[:2], [proto.EventKind.SET, proto.EventKind.DELETED], "events set aside in order"
        )
        self.assertNotIn("w-", repr(list(c._events)))

    # ---------------------------------------------------------- concurrency

    def test_many_threads_share_one_connection(self) -> None:
        names = [f"CONC_{i}" for i in range(10)]
        expected = {n: f"value-{i}-" + "x" * (i * 100) for i, n in enumerate(names)}
        for n, v in expected.items():
            self.daemon.set_secret("app", n, v)
        c = self.client()
        c.get(names[0])
        before = self.daemon.handshakes(CLIENT_PREFIX)
        failures: List[str] = []
        barrier = threading.Barrier(16)

        def worker(t: int) -> None:
            try:
                barrier.wait()
                for i in range(50):
                    kind = (t + i) % 4
                    if kind == 0:
                        n = names[(t + i) % len(names)]
                        assert_value(c.get(n), expected[n], n)
                    elif kind == 1:
                        assert_value(c.get(f"ABSENT_{t}_{i}", i), i, f"ABSENT_{t}_{i}")
                    elif kind == 2:
                        try:
                            c.get(f"ABSENT_{t}_{i}")
                            failures.append(f"ABSENT_{t}_{i}: no error")
                        except SecretNotFound as e:
                            if e.key != f"ABSENT_{t}_{i}":
                                failures.append(f"ABSENT_{t}_{i}: error for {e.key}")
                    else:
                        assert_value(c.get("BIG_MIXED"), VALUES["BIG_MIXED"], "BIG_MIXED")
            except BaseException as e:  # reported below, without values
                failures.append(f"thread {t}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        self.assertEqual(failures, [])
        self.assertEqual(
            self.daemon.handshakes(CLIENT_PREFIX), before, "one connection for 800 gets"
        )

    # -------------------------------------------------- project socket errors

    def test_a_deleted_project_raises_even_with_a_default(self) -> None:
        self.daemon.create_project("doomed")
        self.daemon.set_secret("doomed", "K", "v")
        c = self.client(socket_path=self.daemon.project_socket("doomed"), reconnect_delay=0.05)
        assert_value(c.get("K"), "v", "K")
        self.daemon.delete_project("doomed")
        with self.assertRaises(FluxSecretsError) as cm:
            c.get("K", "default")
        self.assertNotIsInstance(cm.exception, SecretNotFound)

    def test_the_control_socket_is_refused_with_a_clear_message(self) -> None:
        c = self.client(socket_path=self.daemon.control_socket)
        with self.assertRaises(FluxSecretsError) as cm:
            c.get("A", "default")
        self.assertEqual(cm.exception.code_name, "bad_request")
        self.assertIn("control socket, not a project socket", str(cm.exception))

    # ------------------------------------------------------- no value leaks

    def test_repr_shows_the_socket_and_state_never_a_value(self) -> None:
        c = self.client()
        self.assertIn("state='idle'", repr(c))
        assert_value(c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        shown = repr(c) + str(c) + repr(vars(c))
        assert_no_value(shown, VALUES.values(), "repr of a client")
        self.assertIn(self.socket_path, repr(c))
        self.assertIn("project='app'", repr(c))
        self.assertIn("state='connected'", repr(c))

    def test_error_messages_never_hold_a_value(self) -> None:
        c = self.client()
        errors: List[BaseException] = []
        for call in (
            lambda: c.get("NOPE"),
            lambda: c.get("bad-name"),
            lambda: c.get(VALUES["OPENAI_API_KEY"]),  # a value passed as a name
            lambda: Secrets(self.socket_path + ".missing", reconnect_delay=0).get("OPENAI_API_KEY"),
        ):
            try:
                call()
            except FluxSecretsError as e:
                errors.append(e)
        self.assertEqual(len(errors), 4)
        for err in errors:
            assert_no_value(error_text(err), VALUES.values(), f"a {err.code_name} error")

    # -------------------------------------------------------- configuration

    def test_flux_secrets_socket_is_the_default_socket(self) -> None:
        with mock.patch.dict(os.environ, {"FLUX_SECRETS_SOCKET": self.socket_path}):
            for c in (Secrets(), Secrets.from_env()):
                self.addCleanup(c.close)
                self.assertEqual(c.socket_path, self.socket_path)
                assert_value(c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")

    def test_without_a_socket_the_error_says_to_set_flux_secrets_socket(self) -> None:
        for env in ({}, {"FLUX_SECRETS_SOCKET": ""}):
            with mock.patch.dict(os.environ):
                os.environ.pop("FLUX_SECRETS_SOCKET", None)
                os.environ.update(env)
                with self.assertRaises(FluxSecretsError) as cm:
                    Secrets()
                self.assertEqual(cm.exception.code_name, "not_configured")
                self.assertIn("set FLUX_SECRETS_SOCKET", str(cm.exception))

    def test_an_unusable_socket_path_is_refused_up_front(self) -> None:
        for bad in ("/tmp/" + "x" * 120 + ".sock", "/tmp/a\x00b.sock"):
            with self.assertRaises(FluxSecretsError) as cm:
                Secrets(bad)
            self.assertEqual(cm.exception.code_name, "not_configured")
            self.assertIn("not usable", str(cm.exception))

    # ------------------------------------------------------------ lifecycle

    def test_close_and_context_manager_and_reuse(self) -> None:
        with Secrets(self.socket_path) as c:
            assert_value(c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        self.assertIn("state='idle'", repr(c))
        # Still usable: the next get connects again.
        assert_value(c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        c.close()
        c.close()

    def test_a_forked_child_does_not_share_the_parents_connection(self) -> None:
        c = self.client()
        assert_value(c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        before = self.daemon.handshakes(CLIENT_PREFIX)
        pid = os.fork()
        if pid == 0:  # the child: its own connection
            code = 1
            try:
                code = 0 if c.get("OPENAI_API_KEY") == VALUES["OPENAI_API_KEY"] else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        assert_value(c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        self.assertEqual(
            self.daemon.handshakes(CLIENT_PREFIX), before + 1, "the child connected on its own"
        )

    def test_a_script_reads_its_secrets_and_exits(self) -> None:
        script = (
            "from flux_secrets import Secrets\n"
            "s = Secrets()\n"
            "v = s.get('OPENAI_API_KEY')\n"
            "print(len(v), len(s.get('EMPTY')), s.get('NOPE', 'fb'))\n"
        )
        env = dict(os.environ, FLUX_SECRETS_SOCKET=self.socket_path)
        res = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
        )
        self.assertEqual(res.returncode, 0, res.stderr[-2000:])
        self.assertEqual(res.stdout.strip(), f"{len(VALUES['OPENAI_API_KEY'])} 0 fb")


if __name__ == "__main__":
    unittest.main()
