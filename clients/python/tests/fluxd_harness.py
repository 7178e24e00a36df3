"""Test harness: runs the real ``fluxd`` and ``fluxctl`` on a fresh temp folder.

Binaries come from ``$FLUX_BIN_DIR``, else ``<repo>/target/debug/`` (built by
``cargo build -p fluxd -p fluxctl``). When they are missing the tests that
need them print ``SKIPPED: ...`` and skip. The daemon is ready when its
control socket completes a handshake; the harness polls for that instead of
sleeping a fixed time. Nothing here prints a secret value: values go to
fluxctl on stdin, and failures name the command and the secret, never the
value.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
from typing import Dict, List, Optional, Set

from flux_secrets import _protocol as proto

HERE = Path(__file__).resolve().parent

#: The repository root (clients/python/tests/ is three levels down).
REPO_ROOT = Path(os.environ.get("FLUX_REPO_ROOT") or HERE.parents[2])

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0

_running: Set["subprocess.Popen[bytes]"] = set()


@atexit.register
def _kill_leftovers() -> None:
    for child in list(_running):
        try:
            child.kill()
        except OSError:
            pass


def bin_dir() -> Path:
    """The folder holding fluxd and fluxctl."""
    return Path(os.environ.get("FLUX_BIN_DIR") or REPO_ROOT / "target" / "debug")


def missing_binaries() -> Optional[str]:
    """Why the daemon tests cannot run, or None when they can."""
    missing = [n for n in ("fluxd", "fluxctl") if not os.access(bin_dir() / n, os.X_OK)]
    if not missing:
        return None
    return (
        f"{', '.join(str(bin_dir() / n) for n in missing)} not found: run "
        f"`cargo build -p fluxd -p fluxctl` in {REPO_ROOT} first (or set FLUX_BIN_DIR to the "
        "folder holding fluxd and fluxctl)"
    )


def skip_without_binaries(test: type) -> type:
    """Class decorator: skips (loudly) when fluxd or fluxctl is missing."""
    why = missing_binaries()
    if why is None:
        return test
    print(f"\nSKIPPED: {test.__module__}.{test.__name__}: {why}", file=sys.stderr, flush=True)
    return unittest.skip(f"SKIPPED: {why}")(test)


def probe(socket_path: str, timeout: float = 2.0) -> proto.Welcome:
    """One handshake on `socket_path`; raises on any failure."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(socket_path)
        s.sendall(proto.encode_hello("flux-python-test-harness/0"))
        reader = proto.FrameReader()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError(f"{socket_path} closed before answering")
            payloads = reader.push(chunk)
            if payloads:
                msg = proto.decode_response(payloads[0])
                if not isinstance(msg, proto.Welcome):
                    raise ConnectionError(f"handshake answered with {proto.kind_of(msg)}")
                return msg


class CtlError(AssertionError):
    pass


class TestDaemon:
    """A fluxd process on its own temp folders: ``<dir>/state``, ``<dir>/run``,
    ``<dir>/fluxd.log``."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.state_dir = os.path.join(directory, "state")
        self.runtime_dir = os.path.join(directory, "run")
        self.control_socket = os.path.join(self.runtime_dir, "control.sock")
        self.log_path = os.path.join(directory, "fluxd.log")
        self.config_path: Optional[str] = None
        self.child: Optional["subprocess.Popen[bytes]"] = None

    @classmethod
    def start(cls, config: Optional[str] = None) -> "TestDaemon":
        """Starts fluxd on a fresh short temp folder and waits until it is
        ready; `config` is the text of a config file (``--config``)."""
        # Short: Unix socket paths are limited to 107 bytes.
        daemon = cls(tempfile.mkdtemp(prefix="fxp", dir="/tmp"))
        if config is not None:
            daemon.config_path = os.path.join(daemon.dir, "fluxd.toml")
            with open(daemon.config_path, "w", encoding="utf-8") as f:
                f.write(config)
        try:
            daemon.restart()
        except BaseException:
            shutil.rmtree(daemon.dir, ignore_errors=True)
            raise
        return daemon

    def project_socket(self, project: str) -> str:
        """``<runtime>/projects/<project>.sock``."""
        return os.path.join(self.runtime_dir, "projects", f"{project}.sock")

    @property
    def pid(self) -> Optional[int]:
        return self.child.pid if self.child else None

    def log(self) -> str:
        """Everything fluxd wrote to stderr so far, across restarts."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def handshakes(self, client_prefix: str) -> int:
        """Handshakes logged so far from clients whose name starts with `client_prefix`."""
        return sum(
            1
            for line in self.log().splitlines()
            if "handshake" in line and f"client={client_prefix}" in line
        )

    def restart(self) -> None:
        """Starts fluxd (again) on the same folders and waits until it is ready."""
        if self.child is not None:
            raise RuntimeError("fluxd is already running")
        env = dict(os.environ)
        env.pop("RUST_LOG", None)
        env.pop("FLUX_CONFIG", None)
        with open(self.log_path, "ab") as log:
            child = subprocess.Popen(
                [
                    str(bin_dir() / "fluxd"),
                    "--state-dir",
                    self.state_dir,
                    "--runtime-dir",
                    self.runtime_dir,
                    "--log-level",
                    "debug",
                    *(["--config", self.config_path] if self.config_path else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )
        self.child = child
        _running.add(child)
        self._wait_ready(child)

    def _wait_ready(self, child: "subprocess.Popen[bytes]") -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        last: Optional[BaseException] = None
        while True:
            code = child.poll()
            if code is not None:
                _running.discard(child)
                self.child = None
                raise RuntimeError(
                    f"fluxd exited with status {code} before it was ready:\n{self.log()}"
                )
            try:
                welcome = probe(self.control_socket)
                if welcome.project is not None:
                    raise RuntimeError("the control socket has a project scope")
                return
            except (OSError, ValueError) as e:
                last = e
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"fluxd not ready after {READY_TIMEOUT} s (last: {last}):\n{self.log()}"
                )
            time.sleep(0.01)  # poll interval

    def stop(self) -> int:
        """SIGTERM, then waits for fluxd to exit; returns its exit status."""
        child = self._take()
        child.send_signal(signal.SIGTERM)
        try:
            return child.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise RuntimeError(f"fluxd did not stop within {STOP_TIMEOUT} s of SIGTERM") from None

    def kill(self) -> int:
        """SIGKILL, as a crash would; returns the wait status."""
        child = self._take()
        child.kill()
        return child.wait()

    def _take(self) -> "subprocess.Popen[bytes]":
        child = self.child
        if child is None:
            raise RuntimeError("fluxd is not running")
        self.child = None
        _running.discard(child)
        return child

    def cleanup(self) -> None:
        """Stops fluxd if it runs and removes the temp folder."""
        try:
            if self.child is not None:
                self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ fluxctl

    def ctl(self, args: List[str], stdin: str = "") -> "subprocess.CompletedProcess[str]":
        """Runs ``fluxctl --runtime-dir <run> ARGS``."""
        env: Dict[str, str] = dict(os.environ)
        env.pop("FLUX_PROJECT", None)
        env.pop("FLUX_RUNTIME_DIR", None)
        return subprocess.run(
            [str(bin_dir() / "fluxctl"), "--runtime-dir", self.runtime_dir, *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.dir,
            env=env,
            timeout=60,
        )

    def ctl_ok(self, args: List[str], what: str, stdin: str = "") -> str:
        """Runs fluxctl and raises, naming `what` (never a value), when it fails."""
        res = self.ctl(args, stdin)
        if res.returncode != 0:
            raise CtlError(
                f"fluxctl {what} failed with status {res.returncode}: {res.stderr.strip()}"
            )
        return res.stdout

    def create_project(self, name: str) -> None:
        self.ctl_ok(["projects", "create", name], f"projects create {name}")

    def delete_project(self, name: str) -> None:
        self.ctl_ok(["projects", "delete", name, "--yes"], f"projects delete {name}")

    def set_secret(self, project: str, name: str, value: str) -> None:
        """``fluxctl -p PROJECT secrets set NAME`` with the value on stdin
        (fluxctl strips the one newline added here; an empty value needs
        ``--allow-empty``)."""
        if value.endswith("\r"):
            raise ValueError(f"{name}: a value ending in CR cannot go through stdin exactly")
        allow_empty = ["--allow-empty"] if value == "" else []
        self.ctl_ok(
            ["-p", project, "secrets", "set", name, *allow_empty],
            f"-p {project} secrets set {name}",
            stdin=value + "\n",
        )

    def delete_secret(self, project: str, name: str) -> None:
        self.ctl_ok(
            ["-p", project, "secrets", "delete", name], f"-p {project} secrets delete {name}"
        )
