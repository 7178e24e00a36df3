"""Surviving fluxd restarts, and failing cleanly when fluxd is gone, against
the real daemon (killed or stopped, then started again on the same folders)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import time
import unittest
from typing import List

from flux_secrets import AsyncSecrets, DaemonUnreachable, FluxSecretsError, Secrets

from fluxd_harness import TestDaemon, skip_without_binaries
from secret_asserts import assert_value

CLIENT_PREFIX = "flux-secrets-python/"

# Longer than a restart takes here (tens of ms), so a get caught by the
# restart is retried once fluxd is back. The default is 0.25 s.
RECONNECT_DELAY = 1.0


@skip_without_binaries
class RestartTests(unittest.TestCase):
    daemon: TestDaemon
    socket_path: str

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = TestDaemon.start()
        try:
            cls.daemon.create_project("app")
            cls.daemon.set_secret("app", "TOKEN", "tok-before-restart")
        except BaseException:
            cls.daemon.cleanup()
            raise
        cls.socket_path = cls.daemon.project_socket("app")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.cleanup()

    def setUp(self) -> None:
        if self.daemon.child is None:
            self.daemon.restart()

    def test_sync_client_survives_kill_and_restart_with_one_reconnect(self) -> None:
        c = Secrets(self.socket_path, reconnect_delay=RECONNECT_DELAY)
        self.addCleanup(c.close)
        self.daemon.set_secret("app", "TOKEN", "tok-1")
        assert_value(c.get("TOKEN"), "tok-1", "TOKEN")
        old_pid = self.daemon.pid
        self.daemon.kill()
        self.daemon.restart()
        self.assertNotEqual(self.daemon.pid, old_pid)
        before = self.daemon.handshakes(CLIENT_PREFIX)
        started = time.monotonic()
        assert_value(c.get("TOKEN"), "tok-1", "TOKEN")
        # fluxd's end of the idle connection closed with it: the client sees
        # that before sending and connects at once, without waiting.
        self.assertLess(time.monotonic() - started, RECONNECT_DELAY)
        self.assertEqual(self.daemon.handshakes(CLIENT_PREFIX) - before, 1, "exactly one reconnect")
        self.daemon.set_secret("app", "TOKEN", "tok-1b")
        assert_value(c.get("TOKEN"), "tok-1b", "TOKEN")
        self.assertEqual(self.daemon.handshakes(CLIENT_PREFIX) - before, 1)

    def test_sync_gets_in_flight_across_a_restart_all_succeed(self) -> None:
        c = Secrets(self.socket_path, reconnect_delay=RECONNECT_DELAY)
        self.addCleanup(c.close)
        self.daemon.set_secret("app", "TOKEN", "tok-2")
        assert_value(c.get("TOKEN"), "tok-2", "TOKEN")
        stop = threading.Event()
        counts = [0] * 4
        failures: List[str] = []

        def loop(i: int) -> None:
            while not stop.is_set():
                try:
                    assert_value(c.get("TOKEN"), "tok-2", "TOKEN")
                    assert_value(c.get("NOPE", i), i, "NOPE")
                    counts[i] += 1
                except BaseException as e:
                    failures.append(f"{type(e).__name__}: {e}")
                    return

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        while sum(counts) < 40:
            time.sleep(0.005)
        self.daemon.kill()
        self.daemon.restart()
        target = sum(counts) + 40
        deadline = time.monotonic() + 20
        while sum(counts) < target and not failures and time.monotonic() < deadline:
            time.sleep(0.005)
        stop.set()
        for t in threads:
            t.join(30)
        self.assertEqual(failures, [])
        self.assertGreaterEqual(sum(counts), target)

    def test_async_gets_in_flight_when_fluxd_stops_complete_after_the_restart(self) -> None:
        self.daemon.set_secret("app", "TOKEN", "tok-3")

        async def main() -> None:
            c = AsyncSecrets(self.socket_path, reconnect_delay=RECONNECT_DELAY)
            try:
                assert_value(await c.get("TOKEN"), "tok-3", "TOKEN")
                loop = asyncio.get_running_loop()
                # Each get writes its frame at once; SIGTERM goes out right
                # behind them, so fluxd answers some and drops the rest.
                burst = [
                    asyncio.ensure_future(c.get("NOPE", i) if i % 4 == 3 else c.get("TOKEN"))
                    for i in range(200)
                ]
                await asyncio.sleep(0)
                await loop.run_in_executor(None, self.daemon.stop)
                await loop.run_in_executor(None, self.daemon.restart)
                results = await asyncio.gather(*burst)
                for i, v in enumerate(results):
                    if i % 4 == 3:
                        assert_value(v, i, f"NOPE #{i}")
                    else:
                        assert_value(v, "tok-3", f"TOKEN #{i}")
                # And once more after a kill, on the same client object.
                await loop.run_in_executor(None, self.daemon.kill)
                await loop.run_in_executor(None, self.daemon.restart)
                assert_value(await c.get("TOKEN"), "tok-3", "TOKEN")
            finally:
                await c.close()

        asyncio.run(main())

    def test_when_fluxd_stays_down_get_raises_unreachable_after_one_retry(self) -> None:
        self.daemon.set_secret("app", "TOKEN", "tok-4")
        c = Secrets(self.socket_path, reconnect_delay=0.1)
        a = AsyncSecrets(self.socket_path, reconnect_delay=0.1)
        self.addCleanup(c.close)
        assert_value(c.get("TOKEN"), "tok-4", "TOKEN")
        self.daemon.stop()
        try:
            for which in ("sync", "async"):
                started = time.monotonic()
                with self.assertRaises(DaemonUnreachable) as cm:
                    if which == "sync":
                        c.get("TOKEN", "default")
                    else:
                        asyncio.run(a.get("TOKEN", "default"))
                took = time.monotonic() - started
                err = cm.exception
                self.assertIsInstance(err, FluxSecretsError)
                self.assertEqual((err.code, err.code_name), (None, "unreachable"))
                self.assertEqual(err.socket_path, self.socket_path)
                self.assertEqual(err.key, "TOKEN")
                self.assertIn(self.socket_path, str(err))
                self.assertIn("is fluxd running?", str(err))
                self.assertGreaterEqual(took, 0.1, f"{which}: the retry waits for the delay")
                self.assertLess(took, 5, f"{which}: no retry loop")
        finally:
            self.daemon.restart()
        # The same clients recover once fluxd is back.
        assert_value(c.get("TOKEN"), "tok-4", "TOKEN")
        assert_value(asyncio.run(a.get("TOKEN")), "tok-4", "TOKEN")


class MissingDaemonTests(unittest.TestCase):
    def test_a_socket_path_with_no_daemon_names_the_path_and_the_reason(self) -> None:
        d = tempfile.mkdtemp(prefix="fxu", dir="/tmp")
        self.addCleanup(shutil.rmtree, d, True)
        missing = os.path.join(d, "projects", "app.sock")
        for which in ("sync", "async"):
            with self.assertRaises(DaemonUnreachable) as cm:
                if which == "sync":
                    Secrets(missing, reconnect_delay=0.01).get("TOKEN", "default")
                else:
                    asyncio.run(AsyncSecrets(missing, reconnect_delay=0.01).get("TOKEN", "default"))
            text = str(cm.exception)
            self.assertTrue(
                text.startswith(f"cannot connect to {missing} (No such file or directory)"), text
            )
            self.assertIn("is fluxd running?", text)
            self.assertIn("systemctl status fluxd", text)
            self.assertIsInstance(cm.exception.__cause__, FileNotFoundError)

    def test_a_socket_nobody_listens_on_is_connection_refused(self) -> None:
        import socket

        d = tempfile.mkdtemp(prefix="fxu", dir="/tmp")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "app.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.close()  # the file stays, nobody listens: what a crashed fluxd leaves
        with self.assertRaises(DaemonUnreachable) as cm:
            Secrets(path, reconnect_delay=0.01).get("TOKEN")
        self.assertIn(f"cannot connect to {path} (Connection refused)", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
