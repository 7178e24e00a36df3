"""The encoder and decoder against PROTOCOL.md's test vectors (read from the
file itself), the frame reader on split, merged and oversized frames,
malformed payloads, and the error code mapping. No daemon needed."""

from __future__ import annotations

import os
import pickle
import re
import struct
import unittest
from pathlib import Path
from typing import Callable, Dict

import flux_secrets
from flux_secrets import FluxSecretsError, SecretNotFound
from flux_secrets import _protocol as p
from flux_secrets._errors import error_from_reply

from fluxd_harness import REPO_ROOT


def documented_vectors() -> Dict[str, bytes]:
    """The ``name hex`` lines of PROTOCOL.md's ```vectors block."""
    doc = (REPO_ROOT / "PROTOCOL.md").read_text(encoding="utf-8")
    start = doc.find("```vectors\n")
    assert start >= 0, "PROTOCOL.md has a ```vectors block"
    body = doc[start + len("```vectors\n") :]
    end = body.find("```")
    assert end >= 0, "the ```vectors block is closed"
    vectors: Dict[str, bytes] = {}
    for line in body[:end].splitlines():
        if not line.strip():
            continue
        name, *hexes = line.split()
        joined = "".join(hexes)
        assert re.fullmatch(r"(?:[0-9a-f]{2})+", joined), f"{name}: hex"
        assert name not in vectors, f"{name}: listed once"
        vectors[name] = bytes.fromhex(joined)
    return vectors


VECTORS = documented_vectors()


def payload_of(name: str) -> bytes:
    whole = VECTORS[name]
    (n,) = struct.unpack(">I", whole[:4])
    assert n == len(whole) - 4, f"{name}: length prefix"
    return whole[4:]


def info(last_error):  # type: ignore[no-untyped-def]
    return p.ProjectInfo(
        name="my-app",
        socket="/run/flux/projects/my-app.sock",
        secrets=2,
        generation=7,
        loaded_at_ms=1764000000000,
        last_error=last_error,
    )


# The documented values (PROTOCOL.md, just above the vectors block). They
# hold no real secrets.
REQUESTS: Dict[str, Callable[[], bytes]] = {
    "request.hello": lambda: p.encode_hello("fluxctl/0.1.0", 1),
    "request.get": lambda: p.encode_get("OPENAI_API_KEY"),
    "request.list": p.encode_list,
    "request.set": lambda: p.encode_set("OPENAI_API_KEY", "sk-abc123"),
    "request.delete": lambda: p.encode_delete("OPENAI_API_KEY"),
    "request.get_all": p.encode_get_all,
    "request.create_project": lambda: p.encode_create_project("my-app"),
    "request.delete_project": lambda: p.encode_delete_project("my-app"),
    "request.list_projects": p.encode_list_projects,
    "request.status": p.encode_status,
    "request.subscribe": p.encode_subscribe,
    "request.audit": lambda: p.encode_audit("my-app", 1764000000000, 100),
    "request.set_many": lambda: p.encode_set_many([("A", "1")]),
    "request.list_hosts": p.encode_list_hosts,
    "request.add_host": lambda: p.encode_add_host("age1host"),
    "request.remove_host": lambda: p.encode_remove_host("age1host"),
    "request.audit_log": lambda: p.encode_audit_log(None, 0, 10),
    "request.health": p.encode_health,
    "request.restore_vault": p.encode_restore_vault,
    "request.fleet": p.encode_fleet,
    "request.history": lambda: p.encode_history("OPENAI_API_KEY"),
    "request.rollback": lambda: p.encode_rollback("OPENAI_API_KEY", 2),
    "request.diff": lambda: p.encode_diff([("A", "1")]),
    "request.list_digests": p.encode_list_digests,
    "request.metrics": p.encode_metrics,
    "request.hosts_head": p.encode_hosts_head,
    "request.publish_hosts": lambda: p.encode_publish_hosts(b"{}", b""),
    "request.resume_removal": p.encode_resume_removal,
    "request.rekey_project": lambda: p.encode_rekey_project("my-app"),
    "request.prepare_host_key": p.encode_prepare_host_key,
    "request.write": lambda: p.encode_write("OPENAI_API_KEY", "sk-abc123"),
    "request.write_many": lambda: p.encode_write_many([("A", "1")]),
    "request.audit_trail": lambda: p.encode_audit_trail(None, 0, 10, unit="fn-*.service"),
}

STATUS = p.DaemonStatus(
    version="0.1.0",
    pid=42,
    started_at_ms=1764000000000,
    state_dir="/var/lib/flux",
    runtime_dir="/run/flux",
    projects=[],
)

RESPONSES: Dict[str, p.Response] = {
    "response.welcome.project": p.Welcome(version=1, server="fluxd/0.1.0", project="my-app"),
    "response.welcome.control": p.Welcome(version=1, server="fluxd/0.1.0", project=None),
    "response.error": p.ErrorReply(code=1, message="secret X is not set"),
    "response.value": p.Value("sk-abc123"),
    "response.secrets": p.SecretList([p.SecretInfo("OPENAI_API_KEY", 1764000000000)]),
    "response.stored": p.Stored(created=True, generation=2),
    "response.deleted": p.Deleted(generation=3),
    "response.values": p.Values([p.NamedValue("A", "1")]),
    "response.project_created": p.ProjectCreated(info(None)),
    "response.project_deleted": p.ProjectDeleted("my-app"),
    "response.projects": p.Projects([info("bad seal")]),
    "response.status": p.Status(STATUS),
    "response.subscribed": p.Subscribed(generation=5),
    "response.event": p.Event(generation=6, kind=p.EventKind.RELOADED, names=["OPENAI_API_KEY"]),
    "response.audit_records": p.AuditRecords(
        [
            p.AuditRecord(
                time_ms=1764000000000,
                project="my-app",
                op="get",
                name="OPENAI_API_KEY",
                uid=1000,
                gid=1000,
                pid=4242,
                exe=None,
                allowed=True,
                result="ok",
            )
        ]
    ),
    "response.stored_many": p.StoredMany(created=["A"], updated=[], generation=8),
    "response.written": p.Written(outcome=p.WriteOutcome.UNCHANGED, generation=2),
    "response.written_many": p.WrittenMany(
        created=["A"], updated=["B"], unchanged=["C"], generation=8
    ),
    "response.hosts": p.Hosts(this_host="age1host", hosts=["age1host"]),
    "response.host_updated": p.HostUpdated(recipient="age1host", projects=["my-app"]),
    "response.audit_log": p.AuditLog(
        [
            p.AuditEntry(
                time_ms=1764000060000,
                first_ms=1764000000000,
                count=42,
                project="my-app",
                op="get",
                name="OPENAI_API_KEY",
                uid=1000,
                gid=1000,
                pid=4242,
                exe=None,
                allowed=True,
                result="ok",
                detail=None,
            )
        ]
    ),
    "response.audit_trail": p.AuditTrail(
        [
            p.AuditTrailEntry(
                time_ms=1764000060000,
                first_ms=1764000000000,
                count=42,
                project="my-app",
                op="get",
                name="OPENAI_API_KEY",
                uid=1000,
                gid=1000,
                pid=4242,
                exe=None,
                allowed=True,
                result="ok",
                detail=None,
                unit="fn-billing.service",
                slice="fn.slice",
                cgroup="/fn.slice/fn-billing.service",
                exe_sha256=None,
            )
        ]
    ),
    "response.health": p.Health(
        status=STATUS,
        audit=p.AuditHealth(
            path="/var/lib/flux/audit.log",
            reads="summary",
            error=None,
            dropped=0,
            writes_refused=False,
        ),
        problems=[],
    ),
    "response.restored": p.Restored(revision=43, generation=9, secrets=2),
    "response.fleet": p.Fleet(
        fleet_id="fleet:Ab",
        this_host="age1x:Cd",
        member=True,
        hosts_version=2,
        hosts=["age1x:Cd"],
        problems=[],
    ),
    "response.history": p.History(
        name="OPENAI_API_KEY",
        versions=[
            p.VersionInfo(
                version=3,
                set_at_ms=1764000060000,
                uid=1000,
                exe="/usr/bin/fluxctl",
                digest="5d41402abc4b",
            ),
            p.VersionInfo(
                version=2, set_at_ms=1764000000000, uid=None, exe=None, digest="7d793037a076"
            ),
        ],
    ),
    "response.rolled_back": p.RolledBack(from_version=2, version=4, generation=10),
    "response.diff": p.Diff(
        [
            p.Difference("A", p.DiffState.SAME),
            p.Difference("B", p.DiffState.CHANGED),
            p.Difference("C", p.DiffState.ONLY_IN_REQUEST),
            p.Difference("D", p.DiffState.ONLY_IN_PROJECT),
        ]
    ),
    "response.secret_digests": p.SecretDigests(
        [p.SecretDigest("OPENAI_API_KEY", 1764000000000, "5d41402abc4b")]
    ),
    "response.metrics": p.Metrics(text="flux_up 1\n"),
    "response.hosts_head": p.HostsHead(list=b"{}", id=b"[]"),
    "response.hosts_changed": p.HostsChanged(
        version=3,
        added=[],
        removed=["age1x"],
        projects=["api"],
        pending=["web"],
        failures=["web: etcd is unreachable"],
    ),
    "response.rekeyed": p.Rekeyed(name="my-app", revision=9, generation=12),
    "response.host_key": p.HostKey(join_token="age1x:Cd"),
}


class VectorTests(unittest.TestCase):
    def test_every_vector_is_checked_here(self) -> None:
        self.assertGreaterEqual(len(VECTORS), 30)
        for name in VECTORS:
            self.assertTrue(
                name in REQUESTS or name in RESPONSES,
                f"new vector {name} in PROTOCOL.md: check it in test_protocol.py",
            )
        for name in [*REQUESTS, *RESPONSES]:
            self.assertIn(name, VECTORS, f"{name} is no longer in PROTOCOL.md")

    def test_requests_are_encoded_byte_exact(self) -> None:
        for name, encode in REQUESTS.items():
            with self.subTest(vector=name):
                self.assertEqual(encode().hex(), VECTORS[name].hex())

    def test_responses_decode_to_the_documented_message(self) -> None:
        for name, want in RESPONSES.items():
            with self.subTest(vector=name):
                self.assertEqual(p.decode_response(payload_of(name)), want)

    def test_frame_reader_reads_every_response_whole_and_byte_by_byte(self) -> None:
        names = list(RESPONSES)
        stream = b"".join(VECTORS[n] for n in names)
        want = [RESPONSES[n] for n in names]
        merged = [p.decode_response(x) for x in p.FrameReader().push(stream)]
        self.assertEqual(merged, want)
        reader = p.FrameReader()
        split = []
        for i in range(len(stream)):
            split.extend(reader.push(stream[i : i + 1]))
        self.assertEqual([p.decode_response(x) for x in split], want)
        self.assertEqual(reader.pending, 0)

    def test_handshake_names_this_package_and_version(self) -> None:
        pyproject = (REPO_ROOT / "clients" / "python" / "pyproject.toml").read_text()
        version = re.search(r'^version = "([^"]+)"', pyproject, re.M)
        assert version is not None
        self.assertEqual(flux_secrets.__version__, version.group(1))
        self.assertEqual(flux_secrets.CLIENT_NAME, f"flux-secrets-python/{version.group(1)}")
        frame = p.encode_hello(flux_secrets.CLIENT_NAME)
        self.assertEqual(struct.unpack(">I", frame[:4])[0], len(frame) - 4)
        self.assertEqual(frame[20:], flux_secrets.CLIENT_NAME.encode())

    def test_values_never_show_in_repr(self) -> None:
        for msg in (p.Value("sk-abc123"), p.Values([p.NamedValue("A", "sk-abc123")])):
            self.assertNotIn("sk-abc123", repr(msg))
            self.assertIn("redacted", repr(msg))

    def test_the_installed_package_is_under_test(self) -> None:
        # ci.sh sets this: the tests must import the wheel installed in its
        # venv, not the source tree.
        if os.environ.get("FLUX_SECRETS_EXPECT_INSTALLED") != "1":
            self.skipTest("only when run by ci.sh against the installed wheel")
        from importlib import metadata

        where = Path(flux_secrets.__file__).resolve()
        self.assertNotIn(REPO_ROOT.resolve(), where.parents, f"imported from {where}")
        self.assertIn("site-packages", where.parts)
        self.assertEqual(metadata.version("flux-secrets"), flux_secrets.__version__)
        self.assertTrue((where.parent / "py.typed").exists(), "py.typed is shipped")


def framed(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


class FrameReaderTests(unittest.TestCase):
    def test_frames_split_at_every_offset_and_merged(self) -> None:
        stream = framed(b"first") + framed(b"") + framed(b"\x07" * 70_000)
        for cut in [0, 1, 3, 4, 5, 8, 9, 12, 13, 100, len(stream) - 1, len(stream)]:
            reader = p.FrameReader()
            out = reader.push(stream[:cut]) + reader.push(stream[cut:])
            self.assertEqual([len(x) for x in out], [5, 0, 70_000], f"cut at {cut}")
            self.assertEqual(out[0], b"first")
            self.assertEqual(reader.pending, 0)

    def test_a_length_over_64_mib_is_refused_before_any_payload(self) -> None:
        for n in (p.MAX_RESPONSE_FRAME_LEN + 1, 0xFFFFFFFF):
            with self.assertRaises(p.FrameTooLarge):
                p.FrameReader().push(struct.pack(">I", n))
            with self.assertRaises(p.FrameTooLarge):
                p.frame_length(struct.pack(">I", n))

    def test_exactly_64_mib_is_accepted(self) -> None:
        self.assertEqual(p.FrameReader().push(struct.pack(">I", p.MAX_RESPONSE_FRAME_LEN)), [])

    def test_a_prefix_split_across_chunks_is_checked_once_complete(self) -> None:
        reader = p.FrameReader()
        head = struct.pack(">I", 0xFFFFFFFF)
        self.assertEqual(reader.push(head[:2]), [])
        with self.assertRaises(p.FrameTooLarge):
            reader.push(head[2:])

    def test_requests_over_256_kib_are_refused(self) -> None:
        with self.assertRaises(ValueError):
            p.encode_set("A", "x" * (256 * 1024))


class MalformedPayloadTests(unittest.TestCase):
    value = payload_of("response.value")

    def test_trailing_bytes(self) -> None:
        with self.assertRaisesRegex(p.DecodeError, "trailing bytes"):
            p.decode_response(self.value + b"\x00")

    def test_every_truncation(self) -> None:
        for name in RESPONSES:
            whole = payload_of(name)
            for cut in range(len(whole)):
                with self.assertRaises(p.DecodeError, msg=f"{name} cut at {cut}"):
                    p.decode_response(whole[:cut])

    def test_an_unknown_variant(self) -> None:
        with self.assertRaisesRegex(p.DecodeError, "unknown response variant 33"):
            p.decode_response(struct.pack("<I", 33))

    def test_an_unknown_write_outcome(self) -> None:
        with self.assertRaisesRegex(p.DecodeError, "unknown write outcome 3"):
            p.decode_response(struct.pack("<IIQ", 30, 3, 2))

    def test_a_huge_length_is_refused_without_allocating(self) -> None:
        for variant in (2, 3, 6):
            with self.assertRaises(p.DecodeError):
                p.decode_response(struct.pack("<IQ", variant, 2**62))

    def test_invalid_utf8(self) -> None:
        with self.assertRaisesRegex(p.DecodeError, "not valid UTF-8"):
            p.decode_response(struct.pack("<IQ", 2, 2) + b"\xc3\x28")

    def test_bad_bool_option_scope_and_event_kind(self) -> None:
        cases = {
            "bool": struct.pack("<I", 4) + b"\x02" + struct.pack("<Q", 1),
            "option": struct.pack("<IB", 15, 2),
            "scope": struct.pack("<II", 0, 1) + struct.pack("<Q", 0) + struct.pack("<I", 2),
            "event kind": struct.pack("<IQI", 12, 1, 9) + struct.pack("<Q", 0),
        }
        for what, payload in cases.items():
            with self.subTest(what=what), self.assertRaises(p.DecodeError):
                p.decode_response(payload)

    def test_decode_errors_never_quote_the_payload(self) -> None:
        try:
            p.decode_response(self.value + b"zz")
        except p.DecodeError as e:
            self.assertNotIn("sk-abc123", str(e))
            self.assertNotIn("736b2d", str(e))
        else:
            self.fail("decoded a payload with trailing bytes")


class ErrorReplyTests(unittest.TestCase):
    def test_not_found_is_a_secret_not_found(self) -> None:
        err = error_from_reply(1, "secret X is not set", key="X")
        self.assertIsInstance(err, SecretNotFound)
        self.assertIsInstance(err, FluxSecretsError)
        self.assertEqual((err.code, err.code_name, err.key), (1, "not_found", "X"))

    def test_every_documented_code_maps_to_its_name(self) -> None:
        names = [
            "not_found",
            "invalid_name",
            "too_large",
            "permission_denied",
            "unknown_project",
            "bad_request",
            "internal",
            "version_mismatch",
            "already_exists",
            "limit_reached",
            "unavailable",
        ]
        for i, name in enumerate(names, start=1):
            err = error_from_reply(i, "m")
            self.assertEqual((err.code, err.code_name), (i, name))
            self.assertIsInstance(err, FluxSecretsError)
            self.assertEqual(isinstance(err, SecretNotFound), i == 1)
        self.assertEqual(flux_secrets.CODE_NAMES[11], "unavailable")

    def test_an_unknown_code_is_still_an_error(self) -> None:
        for code in (0, 12, 4242):
            err = error_from_reply(code, "something new")
            self.assertNotIsInstance(err, SecretNotFound)
            self.assertEqual((err.code, err.code_name), (code, "other"))
            self.assertIn("something new", str(err))
            self.assertIn(f"code {code}", str(err))

    def test_errors_survive_pickling(self) -> None:
        for err in (
            error_from_reply(1, "secret X is not set", key="X", socket_path="/s"),
            error_from_reply(11, "retry later", socket_path="/s"),
            flux_secrets.DaemonUnreachable("down", key="K", socket_path="/s"),
            flux_secrets.UntrustedSocket(
                "squatted", socket_path="/s", path="/s", reason="untrusted_owner"
            ),
        ):
            back = pickle.loads(pickle.dumps(err))
            self.assertIs(type(back), type(err))
            self.assertEqual(
                (str(back), back.code, back.code_name, back.key, back.socket_path),
                (str(err), err.code, err.code_name, err.key, err.socket_path),
            )
            self.assertEqual(vars(back), vars(err))


if __name__ == "__main__":
    unittest.main()
