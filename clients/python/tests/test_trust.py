"""Refusing a squatted runtime folder: the socket, the folders above it and
the process serving it must belong to you, root or the daemon's user.

These tests make files owned by another uid (65534), so they need root; run
as another user they print SKIPPED. The "squatter" sockets here are plain
listening sockets that must never see a byte; the accepted cases use the
real fluxd.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest
from typing import Callable, Dict, Optional
from unittest import mock

from flux_secrets import AsyncSecrets, FluxSecretsError, Secrets, UntrustedSocket
from flux_secrets._trust import Trust, check_socket_path

from fluxd_harness import TestDaemon, skip_without_binaries
from secret_asserts import assert_value

OTHER_UID = 65534


def _other_user() -> str:
    try:
        import pwd

        return pwd.getpwuid(OTHER_UID).pw_name
    except (ImportError, KeyError):
        return str(OTHER_UID)


OTHER_USER = _other_user()


def needs_root(test: type) -> type:
    if os.geteuid() == 0:
        return test
    why = "needs root (to make files owned by another uid); run the tests as root"
    print(f"\nSKIPPED: {test.__module__}.{test.__name__}: {why}", file=sys.stderr, flush=True)
    return unittest.skip(f"SKIPPED: {why}")(test)


def env_with(daemon_user: Optional[str]) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "FLUX_DAEMON_USER"}
    if daemon_user is not None:
        env["FLUX_DAEMON_USER"] = daemon_user
    return env


class Squatter:
    """A listening socket at `path` that the client must never connect to."""

    def __init__(self, path: str, owner: int = 0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.setblocking(False)
        os.chown(path, owner, owner)

    def connections(self) -> int:
        n = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return n
            conn.close()
            n += 1

    def close(self) -> None:
        self.sock.close()


def refusal(test: unittest.TestCase, path: str, which: str, **kw: object) -> UntrustedSocket:
    """The UntrustedSocket a get on `path` raises (with a default, which must not hide it)."""
    with test.assertRaises(UntrustedSocket) as cm:
        if which == "sync":
            Secrets(path, reconnect_delay=0, **kw).get("TOKEN", "default")  # type: ignore[arg-type]
        else:
            asyncio.run(AsyncSecrets(path, reconnect_delay=0, **kw).get("TOKEN", "default"))  # type: ignore[arg-type]
    err = cm.exception
    test.assertIsInstance(err, FluxSecretsError)
    test.assertEqual((err.code, err.code_name), (None, "untrusted_socket"))
    test.assertEqual(err.socket_path, path)
    test.assertIn(path, str(err))
    return err


@needs_root
class SquattedPathTests(unittest.TestCase):
    def setUp(self) -> None:
        self.base = tempfile.mkdtemp(prefix="fxt", dir="/tmp")  # root-owned, 0700
        self.addCleanup(shutil.rmtree, self.base, True)

    def folder(self, name: str, owner: int, mode: int, parent: Optional[str] = None) -> str:
        d = os.path.join(parent or self.base, name)
        os.mkdir(d)
        os.chown(d, owner, owner)
        os.chmod(d, mode)
        return d

    def squatter(self, folder: str, owner: int = 0) -> Squatter:
        s = Squatter(os.path.join(folder, "app.sock"), owner)
        self.addCleanup(s.close)
        return s

    def each_client(self, fn: Callable[[str], None]) -> None:
        for which in ("sync", "async"):
            with self.subTest(client=which):
                fn(which)

    def test_a_folder_owned_by_another_user_is_refused(self) -> None:
        d = self.folder("squat", OTHER_UID, 0o755)
        s = self.squatter(d)

        def check(which: str) -> None:
            with mock.patch.dict(os.environ, env_with(None), clear=True):
                err = refusal(self, s.path, which)
            text = str(err)
            self.assertTrue(text.startswith(f"refusing to use the fluxd socket {s.path}: "), text)
            self.assertIn(f"the folder {d} is owned by uid {OTHER_UID}", text)
            self.assertEqual((err.path, err.reason), (d, "untrusted_owner"))
            self.assertIn(f"not by you (uid {os.geteuid()}), root or the fluxd user", text)
            self.assertIn("another user may have created it", text)
            self.assertIn("FLUX_DAEMON_USER", text)
            self.assertEqual(s.connections(), 0, "nothing was sent to the squatted socket")

        self.each_client(check)

    def test_a_folder_writable_by_group_or_others_is_refused(self) -> None:
        for mode, who in ((0o777, "group and others"), (0o757, "others"), (0o775, "group")):
            d = self.folder(f"open{mode:o}", OTHER_UID, mode)
            s = self.squatter(d)

            def check(which: str) -> None:
                # 65534 is trusted here (the daemon's user), yet the mode is not.
                with mock.patch.dict(os.environ, env_with(OTHER_USER), clear=True):
                    err = refusal(self, s.path, which)
                self.assertIn(
                    f"the folder {d} is writable by {who} (mode 0{mode:o}): another user could "
                    "replace the socket",
                    str(err),
                )
                self.assertEqual((err.path, err.reason), (d, "writable_folder"))
                self.assertIn(f"chmod go-w {d}", str(err))
                self.assertEqual(s.connections(), 0)

            self.each_client(check)

    def test_a_sticky_world_writable_folder_of_a_trusted_user_passes(self) -> None:
        # Like /tmp: others may add entries, but only an entry's owner can
        # move it, and the socket itself must be a trusted one's.
        d = self.folder("sticky", OTHER_UID, 0o1777)
        s = self.squatter(d)
        with mock.patch.dict(os.environ, env_with(OTHER_USER), clear=True):
            check_socket_path(s.path, Trust())
        other = self.squatter(self.folder("sticky2", OTHER_UID, 0o1777), owner=OTHER_UID)
        with mock.patch.dict(os.environ, env_with(None), clear=True):
            err = refusal(self, other.path, "sync")
        self.assertIn(f"is owned by uid {OTHER_UID}", str(err))

    def test_a_socket_owned_by_another_user_is_refused(self) -> None:
        s = self.squatter(self.folder("ok", 0, 0o755), owner=OTHER_UID)

        def check(which: str) -> None:
            with mock.patch.dict(os.environ, env_with(None), clear=True):
                err = refusal(self, s.path, which)
            self.assertIn(
                f"refusing to use the fluxd socket {s.path}: it is owned by uid {OTHER_UID}, "
                f"not by you (uid {os.geteuid()}), root or the fluxd user",
                str(err),
            )
            self.assertEqual((err.path, err.reason), (s.path, "untrusted_owner"))
            self.assertEqual(s.connections(), 0)

        self.each_client(check)

    def test_a_symlink_in_a_squatted_folder_is_refused(self) -> None:
        target = self.squatter(self.folder("real", 0, 0o755))
        link_dir = self.folder("links", OTHER_UID, 0o755)
        link = os.path.join(link_dir, "app.sock")
        os.symlink(target.path, link)
        with mock.patch.dict(os.environ, env_with(None), clear=True):
            err = refusal(self, link, "sync")
        self.assertIn(f"the folder {link_dir}", str(err))
        # And a folder reached through a link is judged by what it points to.
        squat = self.folder("squat", OTHER_UID, 0o755)
        hidden = self.squatter(squat)
        os.symlink(squat, os.path.join(self.base, "innocent"))
        via = os.path.join(self.base, "innocent", "app.sock")
        with mock.patch.dict(os.environ, env_with(None), clear=True):
            err = refusal(self, via, "sync")
        self.assertIn(f"the folder {squat}", str(err))
        self.assertEqual(target.connections() + hidden.connections(), 0)

    def test_the_walk_goes_up_to_the_root_folder(self) -> None:
        # A root-owned folder inside a squatted one is no refuge: the
        # squatter can rename it away and put their own in its place.
        outer = self.folder("outer", OTHER_UID, 0o755)
        inner = self.folder("inner", 0, 0o755, parent=outer)
        s = self.squatter(inner)
        with mock.patch.dict(os.environ, env_with(None), clear=True):
            with self.assertRaises(UntrustedSocket) as cm:
                check_socket_path(s.path, Trust())
        self.assertIn(f"the folder {outer} is owned by uid {OTHER_UID}", str(cm.exception))
        self.assertEqual(s.connections(), 0)
        # The daemon's user, by name or by number, is trusted.
        mine = self.folder("mine", OTHER_UID, 0o711)
        s2 = self.squatter(mine, owner=OTHER_UID)
        for user in (OTHER_USER, str(OTHER_UID)):
            with mock.patch.dict(os.environ, env_with(user), clear=True):
                check_socket_path(s2.path, Trust())
        with mock.patch.dict(os.environ, env_with("no-such-user-here"), clear=True):
            with self.assertRaises(UntrustedSocket) as cm:
                check_socket_path(s2.path, Trust())
        self.assertIn("FLUX_DAEMON_USER=no-such-user-here names no user here", str(cm.exception))


class AnyUserTests(unittest.TestCase):
    """The checks that need no other uid (these run as any user)."""

    def setUp(self) -> None:
        self.base = tempfile.mkdtemp(prefix="fxt", dir="/tmp")
        self.addCleanup(shutil.rmtree, self.base, True)

    def test_a_folder_writable_by_others_is_refused_unless_sticky(self) -> None:
        d = os.path.join(self.base, "open")
        os.mkdir(d)
        os.chmod(d, 0o777)
        s = Squatter(os.path.join(d, "app.sock"), owner=os.geteuid())
        self.addCleanup(s.close)
        err = refusal(self, s.path, "sync")
        self.assertIn("is writable by group and others (mode 0777)", str(err))
        self.assertEqual(s.connections(), 0)
        # Sticky, like /tmp: only an entry's owner can move the entry.
        os.chmod(d, 0o1777)
        check_socket_path(s.path, Trust())

    def test_a_file_that_is_not_a_socket_is_refused(self) -> None:
        path = os.path.join(self.base, "app.sock")
        with open(path, "w"):
            pass
        err = refusal(self, path, "sync")
        self.assertIn("it is not a socket but a regular file", str(err))
        self.assertEqual((err.path, err.reason), (path, "not_a_socket"))

    def test_a_missing_folder_is_a_failure_to_connect_not_a_refusal(self) -> None:
        path = os.path.join(self.base, "nope", "app.sock")
        with self.assertRaises(FluxSecretsError) as cm:
            Secrets(path, reconnect_delay=0).get("TOKEN")
        self.assertEqual(cm.exception.code_name, "unreachable")


# Binds as root in a root-owned folder, then becomes uid 65534 before
# listen(): the kernel records the listener's credentials at listen(), so the
# socket file and its folders pass and only SO_PEERCRED tells.
PEER_SCRIPT = r"""
import os, socket, sys
path, uid, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.setgroups([])
os.setgid(uid)
os.setuid(uid)
s.listen(8)
s.settimeout(20)
print("ready", flush=True)
for _ in range(count):
    conn, _ = s.accept()
    conn.settimeout(20)
    n = 0
    while True:
        b = conn.recv(4096)
        if not b:
            break
        n += len(b)
    print(n, flush=True)
"""


@needs_root
class PeerCredentialTests(unittest.TestCase):
    def test_a_server_running_as_another_user_is_refused_before_anything_is_sent(self) -> None:
        base = tempfile.mkdtemp(prefix="fxc", dir="/tmp")
        self.addCleanup(shutil.rmtree, base, True)
        os.chmod(base, 0o755)
        path = os.path.join(base, "app.sock")
        child = subprocess.Popen(
            [sys.executable, "-c", PEER_SCRIPT, path, str(OTHER_UID), "2"],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(child.kill)
        assert child.stdout is not None
        self.addCleanup(child.stdout.close)
        self.assertEqual(child.stdout.readline().strip(), "ready")
        self.assertEqual(os.stat(path).st_uid, 0, "the socket file itself passes")
        for which in ("sync", "async"):
            with mock.patch.dict(os.environ, env_with(None), clear=True):
                err = refusal(self, path, which)
            text = str(err)
            self.assertIn(
                f"refusing to use the fluxd socket {path}: the process serving it "
                f"(pid {child.pid}) runs as uid {OTHER_UID}, not as you (uid {os.geteuid()}), "
                "root or the fluxd user",
                text,
            )
            self.assertEqual(err.reason, "untrusted_peer")
            self.assertIn("another user may have bound the socket", text)
            self.assertEqual(
                child.stdout.readline().strip(), "0", f"{which}: bytes the squatter received"
            )
        self.assertEqual(child.wait(10), 0)


@needs_root
@skip_without_binaries
class DaemonUserTests(unittest.TestCase):
    """The real fluxd, with its projects folder given to uid 65534 as if
    fluxd ran as that user."""

    daemon: TestDaemon

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = TestDaemon.start()
        try:
            cls.daemon.create_project("app")
            cls.daemon.set_secret("app", "TOKEN", "tok-trusted")
        except BaseException:
            cls.daemon.cleanup()
            raise
        cls.projects = os.path.join(cls.daemon.runtime_dir, "projects")
        cls.mode = os.stat(cls.projects).st_mode & 0o7777

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.cleanup()

    def setUp(self) -> None:
        os.chown(self.projects, OTHER_UID, OTHER_UID)
        self.addCleanup(os.chmod, self.projects, self.mode)
        self.addCleanup(os.chown, self.projects, 0, 0)
        self.path = self.daemon.project_socket("app")

    def test_the_daemons_user_is_trusted_by_name_or_number(self) -> None:
        for user in (OTHER_USER, str(OTHER_UID)):
            with mock.patch.dict(os.environ, env_with(user), clear=True):
                c = Secrets(self.path)
                self.addCleanup(c.close)
                assert_value(c.get("TOKEN"), "tok-trusted", "TOKEN")
                assert_value(
                    asyncio.run(AsyncSecrets(self.path).get("TOKEN")), "tok-trusted", "TOKEN"
                )

    def test_without_flux_daemon_user_the_folder_is_refused(self) -> None:
        with mock.patch.dict(os.environ, env_with(None), clear=True):
            err = refusal(self, self.path, "sync")
        self.assertIn(f"the folder {self.projects}", str(err))
        self.assertIn(f"owned by uid {OTHER_UID}", str(err))

    def test_the_daemons_folder_writable_by_others_is_refused(self) -> None:
        os.chmod(self.projects, 0o777)
        with mock.patch.dict(os.environ, env_with(OTHER_USER), clear=True):
            err = refusal(self, self.path, "async")
        self.assertIn("writable by group and others (mode 0777)", str(err))

    def test_a_symlink_in_a_trusted_folder_reaches_the_daemon(self) -> None:
        link = os.path.join(self.daemon.dir, "app-link.sock")
        os.symlink(self.path, link)
        self.addCleanup(os.unlink, link)
        with mock.patch.dict(os.environ, env_with(OTHER_USER), clear=True):
            c = Secrets(link)
            self.addCleanup(c.close)
            assert_value(c.get("TOKEN"), "tok-trusted", "TOKEN")


if __name__ == "__main__":
    unittest.main()
