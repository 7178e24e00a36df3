"""fluxd refusing a client, against the real daemon started with a config
file: a request the peer's role does not allow, and a connection over the
per-project limit. Both are errors even with a default."""

from __future__ import annotations

import asyncio
import grp
import os
import time
import unittest
from typing import Callable

from flux_secrets import AsyncSecrets, FluxSecretsError, SecretNotFound, Secrets

from fluxd_harness import TestDaemon, skip_without_binaries
from secret_asserts import assert_value

OTHER_UID = 65534


def once_a_slot_frees(attempt: Callable[[], None]) -> None:
    """Runs ``attempt`` until fluxd stops refusing it with
    ``limit_reached``: fluxd frees a connection's slot once it has seen the
    close, which can come after the next client's handshake."""
    deadline = time.monotonic() + 10
    while True:
        try:
            attempt()
            return
        except FluxSecretsError as e:
            if e.code != 10 or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@skip_without_binaries
class ConnectionLimitTests(unittest.TestCase):
    daemon: TestDaemon

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = TestDaemon.start("[limits]\nmax_connections_per_project = 1\n")
        try:
            cls.daemon.create_project("app")
            cls.daemon.set_secret("app", "TOKEN", "tok-limit")
        except BaseException:
            cls.daemon.cleanup()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.cleanup()

    def test_a_connection_over_the_limit_is_refused_even_with_a_default(self) -> None:
        path = self.daemon.project_socket("app")
        holder = Secrets(path, reconnect_delay=0)
        self.addCleanup(holder.close)
        # Holds the one connection, once fluxctl's (from setUpClass) is gone.
        once_a_slot_frees(lambda: assert_value(holder.get("TOKEN"), "tok-limit", "TOKEN"))
        for which in ("sync", "async"):
            with self.subTest(client=which), self.assertRaises(FluxSecretsError) as cm:
                if which == "sync":
                    with Secrets(path, reconnect_delay=0) as c:
                        c.get("TOKEN", "default")
                else:
                    asyncio.run(AsyncSecrets(path, reconnect_delay=0).get("TOKEN", "default"))
            err = cm.exception
            self.assertNotIsInstance(err, SecretNotFound)
            self.assertEqual((err.code, err.code_name), (10, "limit_reached"), str(err))
            self.assertIn(f"fluxd refused the handshake on {path}", str(err))
        holder.close()

        def served_again() -> None:
            with Secrets(path, reconnect_delay=0) as c:
                assert_value(c.get("TOKEN"), "tok-limit", "TOKEN")

        once_a_slot_frees(served_again)


@skip_without_binaries
class DeniedRequestTests(unittest.TestCase):
    def test_a_peer_that_is_no_reader_is_denied_even_with_a_default(self) -> None:
        if os.geteuid() != 0:
            self.skipTest("SKIPPED: needs root (to run a client as another uid)")
        group = grp.getgrgid(OTHER_UID).gr_name
        # The socket is given to the group, so uid 65534 can connect; only
        # the daemon's own user (root) is a reader.
        daemon = TestDaemon.start(f'[projects.app]\nsocket_group = "{group}"\n')
        self.addCleanup(daemon.cleanup)
        os.chmod(daemon.dir, 0o711)  # a folder uid 65534 may pass through
        daemon.create_project("app")
        daemon.set_secret("app", "TOKEN", "tok-denied")
        path = daemon.project_socket("app")
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a function running as uid 65534
            status = 1
            try:
                os.close(read_end)
                os.setgroups([])
                os.setgid(OTHER_UID)
                os.setuid(OTHER_UID)
                results = []
                for which in ("sync", "async"):
                    try:
                        if which == "sync":
                            with Secrets(path) as c:
                                c.get("TOKEN", "default")
                        else:
                            asyncio.run(AsyncSecrets(path).get("TOKEN", "default"))
                        results.append("no error")
                    except FluxSecretsError as e:
                        results.append(f"{e.code} {e.code_name} {type(e).__name__}: {e}")
                os.write(write_end, "\n".join(results).encode())
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end) as r:
            lines = r.read().splitlines()
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(len(lines), 2, lines)
        for line in lines:
            self.assertTrue(line.startswith("4 permission_denied FluxSecretsError: "), line)
        # Root, the daemon's own user, reads it.
        with Secrets(path) as c:
            assert_value(c.get("TOKEN"), "tok-denied", "TOKEN")


if __name__ == "__main__":
    unittest.main()
