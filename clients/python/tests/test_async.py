"""The asyncio client against the real fluxd, with secrets set through the
real fluxctl. Values are compared with assert_value(), which never prints
them."""

from __future__ import annotations

import asyncio
import os
import unittest
from typing import List
from unittest import mock

from flux_secrets import AsyncSecrets, FluxSecretsError, SecretNotFound
from flux_secrets import _protocol as proto

from fluxd_harness import TestDaemon, skip_without_binaries
from secret_asserts import assert_no_value, assert_value, error_text

VALUES = {
    "OPENAI_API_KEY": "sk-test-async-9b1e77c2d4",
    "UTF8_MIXED": "ключ 秘密 🔑 é",
    "EMPTY": "",
    "BIG": "𝄞" * (16 * 1024),  # 65536 bytes
}

CLIENT_PREFIX = "flux-secrets-python/"


@skip_without_binaries
class AsyncClientTests(unittest.IsolatedAsyncioTestCase):
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

    def client(self, **kw: object) -> AsyncSecrets:
        c = AsyncSecrets(kw.pop("socket_path", self.socket_path), **kw)  # type: ignore[arg-type]
        self.addAsyncCleanup(c.close)
        return c

    async def ctl(self, fn, *args):  # type: ignore[no-untyped-def]
        """Runs a blocking harness call off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)

    async def test_get_default_and_not_found(self) -> None:
        c = self.client()
        for name, want in VALUES.items():
            assert_value(await c.get(name), want, name)
        assert_value(await c.get("NOT_SET", "default"), "default", "NOT_SET")
        assert_value(await c.get("EMPTY", "default"), "", "EMPTY")
        self.assertIsNone(await c.get("NOT_SET", None))
        with self.assertRaises(SecretNotFound) as cm:
            await c.get("NOT_SET")
        self.assertEqual(
            (cm.exception.code, cm.exception.code_name, cm.exception.key),
            (1, "not_found", "NOT_SET"),
        )
        self.assertIn("fluxctl secrets set NOT_SET", str(cm.exception))
        self.assertEqual(c.project, "app")

    async def test_get_all(self) -> None:
        got = await self.client().get_all()
        for name, want in VALUES.items():
            assert_value(got[name], want, name)

    async def test_invalid_names_raise_even_with_a_default(self) -> None:
        offline = AsyncSecrets("/nonexistent/flux/app.sock")
        for c in (self.client(), offline):
            for name in ("", "1A", "A-B", "A\n", "A" * 129):
                with self.assertRaises(FluxSecretsError) as cm:
                    await c.get(name, "default")
                self.assertEqual((cm.exception.code, cm.exception.code_name), (2, "invalid_name"))

    async def test_an_open_connection_sees_a_rotated_value(self) -> None:
        c = self.client()
        await self.ctl(self.daemon.set_secret, "app", "ROTATED", "a-old")
        assert_value(await c.get("ROTATED"), "a-old", "ROTATED")
        before = self.daemon.handshakes(CLIENT_PREFIX)
        await self.ctl(self.daemon.set_secret, "app", "ROTATED", "a-new")
        assert_value(await c.get("ROTATED"), "a-new", "ROTATED")
        await self.ctl(self.daemon.delete_secret, "app", "ROTATED")
        assert_value(await c.get("ROTATED", "gone"), "gone", "ROTATED")
        self.assertEqual(self.daemon.handshakes(CLIENT_PREFIX), before, "the same connection")

    async def test_events_pushed_on_a_subscribed_connection_are_set_aside(self) -> None:
        c = self.client()
        await self.ctl(self.daemon.set_secret, "app", "WATCHED", "e-1")
        sub = await c._call(proto.encode_subscribe(), None)  # internal API
        self.assertIsInstance(sub, proto.Subscribed)
        await self.ctl(self.daemon.set_secret, "app", "WATCHED", "e-2")
        assert_value(await c.get("WATCHED"), "e-2", "WATCHED")
        await self.ctl(self.daemon.set_secret, "app", "WATCHED", "e-3")
        results = await asyncio.gather(*(c.get("WATCHED") for _ in range(20)))
        for r in results:
            assert_value(r, "e-3", "WATCHED")
        # Events may arrive after the answer they follow: wait for the second.
        for _ in range(200):
            if len([e for e in c._events if e.names == ["WATCHED"]]) >= 2:
                break
            await asyncio.sleep(0.01)
        kinds = [e.kind for e in c._events if e.names == ["WATCHED"]]
        self.assertEqual(kinds[:2], [proto.EventKind.SET, proto.EventKind.SET])

    async def test_many_coroutines_share_one_pipelined_connection(self) -> None:
        names = [f"ACONC_{i}" for i in range(10)]
        expected = {n: f"async-{i}-" + "y" * (i * 50) for i, n in enumerate(names)}
        for n, v in expected.items():
            await self.ctl(self.daemon.set_secret, "app", n, v)
        c = self.client()
        before = self.daemon.handshakes(CLIENT_PREFIX)

        async def one(i: int) -> None:
            kind = i % 4
            if kind == 0:
                n = names[i % len(names)]
                assert_value(await c.get(n), expected[n], n)
            elif kind == 1:
                assert_value(await c.get(f"ABSENT_{i}", i), i, f"ABSENT_{i}")
            elif kind == 2:
                with self.assertRaises(SecretNotFound) as cm:
                    await c.get(f"ABSENT_{i}")
                self.assertEqual(cm.exception.key, f"ABSENT_{i}")
            else:
                assert_value(await c.get("BIG"), VALUES["BIG"], "BIG")

        await asyncio.gather(*(one(i) for i in range(400)))
        self.assertEqual(
            self.daemon.handshakes(CLIENT_PREFIX) - before, 1, "one connection for 400 gets"
        )
        self.assertIn("state='connected'", repr(c))
        self.assertIn("pending=0", repr(c))

    async def test_a_cancelled_get_does_not_disturb_the_others(self) -> None:
        c = self.client()
        await c.get("OPENAI_API_KEY")
        tasks = [asyncio.ensure_future(c.get("OPENAI_API_KEY")) for _ in range(30)]
        for t in tasks[::3]:
            t.cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        for i, r in enumerate(done):
            if i % 3 == 0:
                self.assertIsInstance(r, asyncio.CancelledError)
            else:
                assert_value(r, VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        assert_value(await c.get("UTF8_MIXED"), VALUES["UTF8_MIXED"], "UTF8_MIXED")

    async def test_close_fails_waiting_gets_and_the_client_stays_usable(self) -> None:
        c = self.client()
        await c.get("OPENAI_API_KEY")
        waiting = [asyncio.ensure_future(c.get("OPENAI_API_KEY")) for _ in range(5)]
        await asyncio.sleep(0)  # written, not answered yet
        await c.close()
        results = await asyncio.gather(*waiting, return_exceptions=True)
        closed = [r for r in results if isinstance(r, FluxSecretsError)]
        for r in closed:
            self.assertEqual(r.code_name, "closed")
        for r in results:
            if not isinstance(r, FluxSecretsError):
                assert_value(r, VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        self.assertIn("state='idle'", repr(c))
        assert_value(await c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")

    async def test_async_context_manager(self) -> None:
        async with AsyncSecrets(self.socket_path) as c:
            assert_value(await c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        self.assertIn("state='idle'", repr(c))

    async def test_the_control_socket_is_refused(self) -> None:
        c = self.client(socket_path=self.daemon.control_socket)
        with self.assertRaises(FluxSecretsError) as cm:
            await c.get("A", "default")
        self.assertEqual(cm.exception.code_name, "bad_request")
        self.assertIn("control socket, not a project socket", str(cm.exception))

    async def test_no_value_in_repr_or_errors(self) -> None:
        c = self.client()
        pending = asyncio.ensure_future(c.get("OPENAI_API_KEY"))
        during = repr(c)
        assert_value(await pending, VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        assert_no_value(during + repr(c) + repr(vars(c)), VALUES.values(), "repr of a client")
        errors: List[BaseException] = []
        for coro in (
            c.get("NOPE"),
            c.get(VALUES["OPENAI_API_KEY"]),
            AsyncSecrets(self.socket_path + ".missing", reconnect_delay=0).get("OPENAI_API_KEY"),
        ):
            try:
                await coro
            except FluxSecretsError as e:
                errors.append(e)
        self.assertEqual(len(errors), 3)
        for err in errors:
            assert_no_value(error_text(err), VALUES.values(), f"a {err.code_name} error")

    async def test_flux_secrets_socket_is_the_default(self) -> None:
        with mock.patch.dict(os.environ, {"FLUX_SECRETS_SOCKET": self.socket_path}):
            c = AsyncSecrets.from_env()
        self.addAsyncCleanup(c.close)
        assert_value(await c.get("OPENAI_API_KEY"), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")


@skip_without_binaries
class EventLoopTests(unittest.TestCase):
    """One client used from one asyncio.run() after another, as a function
    handler that runs each invocation in a fresh loop does."""

    def test_a_client_outlives_its_event_loop(self) -> None:
        daemon = TestDaemon.start()
        self.addCleanup(daemon.cleanup)
        daemon.create_project("app")
        daemon.set_secret("app", "K", "loop-value")
        c = AsyncSecrets(daemon.project_socket("app"))
        for _ in range(3):
            got = asyncio.run(c.get("K"))
            assert_value(got, "loop-value", "K")
        asyncio.run(c.close())


if __name__ == "__main__":
    unittest.main()
