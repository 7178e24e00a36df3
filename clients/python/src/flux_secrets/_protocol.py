"""The Flux Secrets wire protocol, version 1 (PROTOCOL.md at the repository root).

Internal: the public API is :class:`flux_secrets.Secrets` and
:class:`flux_secrets.AsyncSecrets`. The tests check this module against the
documented test vectors.

A frame is a u32 big-endian payload length, then the payload. Payloads use
bincode's legacy layout: little-endian fixed-width integers, u64 byte lengths
for strings, u64 element counts for vectors, a u32 variant index for enums,
one byte for a bool and for an Option's tag.

Nothing in this module ever puts a decoded value, or payload bytes, into an
error message or a ``repr()``.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional, Tuple, TypeVar, Union

PROTOCOL_VERSION = 1

#: Largest response frame a client accepts (64 MiB).
MAX_RESPONSE_FRAME_LEN = 64 * 1024 * 1024

#: Largest request frame the daemon accepts (256 KiB).
MAX_REQUEST_FRAME_LEN = 256 * 1024

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_BE32 = struct.Struct(">I")

T = TypeVar("T")


class RequestKind(enum.IntEnum):
    """Request variant indexes."""

    HELLO = 0
    GET = 1
    LIST = 2
    SET = 3
    DELETE = 4
    GET_ALL = 5
    CREATE_PROJECT = 6
    DELETE_PROJECT = 7
    LIST_PROJECTS = 8
    STATUS = 9
    SUBSCRIBE = 10
    AUDIT = 11
    SET_MANY = 12
    LIST_HOSTS = 13
    ADD_HOST = 14
    REMOVE_HOST = 15
    AUDIT_LOG = 16
    HEALTH = 17
    RESTORE_VAULT = 18
    FLEET = 19
    HISTORY = 20
    ROLLBACK = 21
    DIFF = 22
    LIST_DIGESTS = 23
    METRICS = 24
    HOSTS_HEAD = 25
    PUBLISH_HOSTS = 26
    RESUME_REMOVAL = 27
    REKEY_PROJECT = 28
    PREPARE_HOST_KEY = 29
    #: ``Set``, answered with what the write did (``Written``).
    WRITE = 30
    #: ``SetMany``, answered with the names created, updated and unchanged
    #: (``WrittenMany``).
    WRITE_MANY = 31
    #: ``AuditLog`` with each peer's workload (``AuditTrail``).
    AUDIT_TRAIL = 32


class EventKind(enum.IntEnum):
    """What an :class:`Event` reports."""

    SET = 0
    DELETED = 1
    RELOADED = 2
    PROJECT_DELETED = 3


class WriteOutcome(enum.IntEnum):
    """What a ``Write`` did to its name."""

    #: The name was new.
    CREATED = 0
    #: It held another value: the new one is a new version.
    UPDATED = 1
    #: It already held this value: no new version.
    UNCHANGED = 2


class DiffState(enum.IntEnum):
    """How a name of a ``Diff`` compares with the project."""

    SAME = 0
    CHANGED = 1
    ONLY_IN_REQUEST = 2
    ONLY_IN_PROJECT = 3


class DecodeError(ValueError):
    """A payload that is not exactly one response. Says what, never which bytes."""

    def __init__(self, what: str) -> None:
        super().__init__(f"malformed message from fluxd: {what}")


class FrameTooLarge(ValueError):
    """A length prefix over the limit, refused before anything is allocated."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"fluxd sent a frame of {length} bytes, over the {limit}-byte limit")
        self.length = length
        self.limit = limit


# ---------------------------------------------------------------- messages


def _redacted(value: str) -> str:
    return f"<redacted, {len(value.encode('utf-8', 'surrogatepass'))} bytes>"


@dataclass(frozen=True)
class Welcome:
    version: int
    server: str
    #: The project this socket serves; None for the control socket.
    project: Optional[str]


@dataclass(frozen=True)
class ErrorReply:
    code: int
    message: str


@dataclass(frozen=True)
class Value:
    value: str = field(repr=False)

    def __repr__(self) -> str:
        return f"Value(value={_redacted(self.value)})"


@dataclass(frozen=True)
class SecretInfo:
    name: str
    set_at_ms: int


@dataclass(frozen=True)
class SecretList:
    """The ``Secrets`` response: names and set times, sorted by name."""

    secrets: List[SecretInfo]


@dataclass(frozen=True)
class Stored:
    created: bool
    generation: int


@dataclass(frozen=True)
class Deleted:
    generation: int


@dataclass(frozen=True)
class NamedValue:
    name: str
    value: str = field(repr=False)

    def __repr__(self) -> str:
        return f"NamedValue(name={self.name!r}, value={_redacted(self.value)})"


@dataclass(frozen=True)
class Values:
    values: List[NamedValue]


@dataclass(frozen=True)
class ProjectInfo:
    name: str
    socket: str
    secrets: int
    generation: int
    loaded_at_ms: int
    last_error: Optional[str]


@dataclass(frozen=True)
class ProjectCreated:
    project: ProjectInfo


@dataclass(frozen=True)
class ProjectDeleted:
    name: str


@dataclass(frozen=True)
class Projects:
    projects: List[ProjectInfo]


@dataclass(frozen=True)
class DaemonStatus:
    version: str
    pid: int
    started_at_ms: int
    state_dir: str
    runtime_dir: str
    projects: List[ProjectInfo]


@dataclass(frozen=True)
class Status:
    status: DaemonStatus


@dataclass(frozen=True)
class Subscribed:
    generation: int


@dataclass(frozen=True)
class Event:
    generation: int
    kind: EventKind
    #: The names that changed; empty means "anything may have changed".
    names: List[str]


@dataclass(frozen=True)
class AuditRecord:
    time_ms: int
    project: Optional[str]
    op: str
    name: Optional[str]
    uid: int
    gid: int
    pid: Optional[int]
    exe: Optional[str]
    allowed: bool
    result: str


@dataclass(frozen=True)
class AuditRecords:
    records: List[AuditRecord]


@dataclass(frozen=True)
class StoredMany:
    created: List[str]
    updated: List[str]
    generation: int


@dataclass(frozen=True)
class Hosts:
    this_host: Optional[str]
    hosts: List[str]


@dataclass(frozen=True)
class HostUpdated:
    recipient: str
    projects: List[str]


@dataclass(frozen=True)
class AuditEntry:
    """One audit decision (``count`` 1), or a summary of ``count`` identical
    decisions on one connection between ``first_ms`` and ``time_ms``."""

    time_ms: int
    first_ms: int
    count: int
    project: Optional[str]
    op: str
    name: Optional[str]
    uid: int
    gid: int
    pid: Optional[int]
    exe: Optional[str]
    allowed: bool
    result: str
    detail: Optional[str]


@dataclass(frozen=True)
class AuditLog:
    entries: List[AuditEntry]


@dataclass(frozen=True)
class AuditTrailEntry:
    """An :class:`AuditEntry` with the peer's workload, from the kernel:
    its systemd unit, slice and cgroup, and its executable's SHA-256 (only
    when a policy rule naming a hash had it checked). Each is ``None`` when
    unknown."""

    time_ms: int
    first_ms: int
    count: int
    project: Optional[str]
    op: str
    name: Optional[str]
    uid: int
    gid: int
    pid: Optional[int]
    exe: Optional[str]
    allowed: bool
    result: str
    detail: Optional[str]
    unit: Optional[str]
    slice: Optional[str]
    cgroup: Optional[str]
    exe_sha256: Optional[str]


@dataclass(frozen=True)
class AuditTrail:
    """The ``AuditTrail`` response, oldest first."""

    entries: List[AuditTrailEntry]


@dataclass(frozen=True)
class AuditHealth:
    path: Optional[str]
    reads: str
    error: Optional[str]
    dropped: int
    writes_refused: bool


@dataclass(frozen=True)
class Health:
    status: DaemonStatus
    audit: AuditHealth
    problems: List[str]


@dataclass(frozen=True)
class Restored:
    revision: int
    generation: int
    secrets: int


@dataclass(frozen=True)
class Fleet:
    fleet_id: Optional[str]
    this_host: Optional[str]
    member: bool
    hosts_version: int
    hosts: List[str]
    problems: List[str]


@dataclass(frozen=True)
class VersionInfo:
    """One version of a secret: never its value, its keyed digest."""

    version: int
    set_at_ms: int
    uid: Optional[int]
    exe: Optional[str]
    digest: str


@dataclass(frozen=True)
class History:
    """The ``History`` response: the current version first, then the
    earlier ones kept, newest first."""

    name: str
    versions: List[VersionInfo]


@dataclass(frozen=True)
class RolledBack:
    from_version: int
    version: int
    generation: int


@dataclass(frozen=True)
class Difference:
    name: str
    state: DiffState


@dataclass(frozen=True)
class Diff:
    """The ``Diff`` response, sorted by name."""

    differences: List[Difference]


@dataclass(frozen=True)
class SecretDigest:
    name: str
    set_at_ms: int
    digest: str


@dataclass(frozen=True)
class SecretDigests:
    """The ``SecretDigests`` response: names, set times and keyed value
    digests, sorted by name."""

    secrets: List[SecretDigest]


@dataclass(frozen=True)
class Metrics:
    """The daemon's counters and gauges, Prometheus text format."""

    text: str


@dataclass(frozen=True)
class HostsHead:
    """The ``HostsHead`` response (a ``SignedHosts``): the signed host list
    envelope and the signed fleet id envelope this host holds, each empty
    when none."""

    list: bytes
    id: bytes

    def __repr__(self) -> str:
        return f"HostsHead(list=<{len(self.list)} bytes>, id=<{len(self.id)} bytes>)"


@dataclass(frozen=True)
class HostsChanged:
    """The ``HostsChanged`` response to ``PublishHosts`` and ``ResumeRemoval``."""

    #: The host list version held.
    version: int
    #: Recipients added and removed.
    added: List[str]
    removed: List[str]
    #: Projects wrapped or re-keyed by this request, sorted.
    projects: List[str]
    #: Projects a removed host may still open, sorted; while not empty the
    #: removal is not complete (``ResumeRemoval`` finishes it).
    pending: List[str]
    #: One sentence per project that failed.
    failures: List[str]


@dataclass(frozen=True)
class Rekeyed:
    """The ``Rekeyed`` response to ``RekeyProject``."""

    name: str
    #: The revision the vault was re-sealed at.
    revision: int
    #: The snapshot generation that serves it.
    generation: int


@dataclass(frozen=True)
class Written:
    """The ``Written`` response to ``Write``."""

    outcome: WriteOutcome
    #: The snapshot generation that holds the value.
    generation: int


@dataclass(frozen=True)
class WrittenMany:
    """The ``WrittenMany`` response to ``WriteMany``: every name given is in
    exactly one list, each sorted."""

    created: List[str]
    updated: List[str]
    #: Names that already held the value given (no new version).
    unchanged: List[str]
    generation: int


@dataclass(frozen=True)
class HostKey:
    """The ``HostKey`` response to ``PrepareHostKey``."""

    #: The next host key's join token.
    join_token: str


Response = Union[
    Welcome,
    ErrorReply,
    Value,
    SecretList,
    Stored,
    Deleted,
    Values,
    ProjectCreated,
    ProjectDeleted,
    Projects,
    Status,
    Subscribed,
    Event,
    AuditRecords,
    StoredMany,
    Hosts,
    HostUpdated,
    AuditLog,
    Health,
    Restored,
    Fleet,
    History,
    RolledBack,
    Diff,
    SecretDigests,
    Metrics,
    HostsHead,
    HostsChanged,
    Rekeyed,
    HostKey,
    Written,
    WrittenMany,
    AuditTrail,
]

#: A short name per response type, for error messages.
RESPONSE_NAMES = {
    Welcome: "welcome",
    ErrorReply: "error",
    Value: "value",
    SecretList: "secrets",
    Stored: "stored",
    Deleted: "deleted",
    Values: "values",
    ProjectCreated: "project created",
    ProjectDeleted: "project deleted",
    Projects: "projects",
    Status: "status",
    Subscribed: "subscribed",
    Event: "event",
    AuditRecords: "audit records",
    StoredMany: "stored many",
    Hosts: "hosts",
    HostUpdated: "host updated",
    AuditLog: "audit log",
    Health: "health",
    Restored: "restored",
    Fleet: "fleet",
    History: "history",
    RolledBack: "rolled back",
    Diff: "diff",
    SecretDigests: "secret digests",
    Metrics: "metrics",
    HostsHead: "hosts head",
    HostsChanged: "hosts changed",
    Rekeyed: "rekeyed",
    HostKey: "host key",
    Written: "written",
    WrittenMany: "written many",
    AuditTrail: "audit trail",
}


def kind_of(msg: object) -> str:
    """The response's short name ("value", "error", ...)."""
    return RESPONSE_NAMES.get(type(msg), type(msg).__name__)


# ---------------------------------------------------------------- encoding


def _u32(n: int) -> bytes:
    return _U32.pack(n)


def _u64(n: int) -> bytes:
    return _U64.pack(n)


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return _U64.pack(len(b)) + b


def _bytes(b: bytes) -> bytes:
    return _U64.pack(len(b)) + bytes(b)


def _opt_str(s: Optional[str]) -> bytes:
    return b"\x00" if s is None else b"\x01" + _str(s)


def frame(payload: bytes) -> bytes:
    """Prefixes a request payload with its u32 big-endian length."""
    if len(payload) > MAX_REQUEST_FRAME_LEN:
        raise ValueError(
            f"a request of {len(payload)} bytes exceeds the daemon's "
            f"{MAX_REQUEST_FRAME_LEN}-byte limit"
        )
    return _BE32.pack(len(payload)) + payload


def _request(kind: RequestKind, *parts: bytes) -> bytes:
    return frame(b"".join((_u32(kind), *parts)))


def encode_hello(client: str, version: int = PROTOCOL_VERSION) -> bytes:
    return _request(RequestKind.HELLO, _u32(version), _str(client))


def encode_get(name: str) -> bytes:
    return _request(RequestKind.GET, _str(name))


def encode_list() -> bytes:
    return _request(RequestKind.LIST)


def encode_set(name: str, value: str) -> bytes:
    return _request(RequestKind.SET, _str(name), _str(value))


def encode_delete(name: str) -> bytes:
    return _request(RequestKind.DELETE, _str(name))


def encode_get_all() -> bytes:
    return _request(RequestKind.GET_ALL)


def encode_create_project(name: str) -> bytes:
    return _request(RequestKind.CREATE_PROJECT, _str(name))


def encode_delete_project(name: str) -> bytes:
    return _request(RequestKind.DELETE_PROJECT, _str(name))


def encode_list_projects() -> bytes:
    return _request(RequestKind.LIST_PROJECTS)


def encode_status() -> bytes:
    return _request(RequestKind.STATUS)


def encode_subscribe() -> bytes:
    return _request(RequestKind.SUBSCRIBE)


def encode_audit(project: Optional[str], since_ms: int = 0, limit: int = 0) -> bytes:
    return _request(RequestKind.AUDIT, _opt_str(project), _u64(since_ms), _u32(limit))


def encode_set_many(entries: Iterable[Tuple[str, str]]) -> bytes:
    items = list(entries)
    parts = [_u64(len(items))]
    for name, value in items:
        parts.append(_str(name))
        parts.append(_str(value))
    return _request(RequestKind.SET_MANY, *parts)


def encode_write(name: str, value: str) -> bytes:
    return _request(RequestKind.WRITE, _str(name), _str(value))


def encode_write_many(entries: Iterable[Tuple[str, str]]) -> bytes:
    items = list(entries)
    parts = [_u64(len(items))]
    for name, value in items:
        parts.append(_str(name))
        parts.append(_str(value))
    return _request(RequestKind.WRITE_MANY, *parts)


def encode_list_hosts() -> bytes:
    return _request(RequestKind.LIST_HOSTS)


def encode_add_host(recipient: str) -> bytes:
    return _request(RequestKind.ADD_HOST, _str(recipient))


def encode_remove_host(recipient: str) -> bytes:
    return _request(RequestKind.REMOVE_HOST, _str(recipient))


def encode_audit_log(project: Optional[str], since_ms: int = 0, limit: int = 0) -> bytes:
    return _request(RequestKind.AUDIT_LOG, _opt_str(project), _u64(since_ms), _u32(limit))


def encode_audit_trail(
    project: Optional[str], since_ms: int = 0, limit: int = 0, unit: Optional[str] = None
) -> bytes:
    """``AuditTrail``: as :func:`encode_audit_log`, the entries with each
    peer's workload; ``unit`` keeps only entries of units it matches (``*``
    matches any run of characters). A daemon that predates it answers
    ``bad_request``: ask ``AuditLog`` then."""
    return _request(
        RequestKind.AUDIT_TRAIL, _opt_str(project), _u64(since_ms), _u32(limit), _opt_str(unit)
    )


def encode_health() -> bytes:
    return _request(RequestKind.HEALTH)


def encode_restore_vault() -> bytes:
    return _request(RequestKind.RESTORE_VAULT)


def encode_fleet() -> bytes:
    return _request(RequestKind.FLEET)


def encode_history(name: str) -> bytes:
    return _request(RequestKind.HISTORY, _str(name))


def encode_rollback(name: str, to: Optional[int] = None) -> bytes:
    return _request(
        RequestKind.ROLLBACK, _str(name), b"\x00" if to is None else b"\x01" + _u64(to)
    )


def encode_diff(entries: Iterable[Tuple[str, str]]) -> bytes:
    items = list(entries)
    parts = [_u64(len(items))]
    for name, value in items:
        parts.append(_str(name))
        parts.append(_str(value))
    return _request(RequestKind.DIFF, *parts)


def encode_list_digests() -> bytes:
    return _request(RequestKind.LIST_DIGESTS)


def encode_metrics() -> bytes:
    return _request(RequestKind.METRICS)


def encode_hosts_head() -> bytes:
    return _request(RequestKind.HOSTS_HEAD)


def encode_publish_hosts(list: bytes, id: bytes) -> bytes:
    """A ``PublishHosts`` (``SignedHosts``): `list` the signed host list
    envelope, `id` the signed fleet id envelope when founding a fleet, else
    empty."""
    return _request(RequestKind.PUBLISH_HOSTS, _bytes(list), _bytes(id))


def encode_resume_removal() -> bytes:
    return _request(RequestKind.RESUME_REMOVAL)


def encode_rekey_project(name: str) -> bytes:
    return _request(RequestKind.REKEY_PROJECT, _str(name))


def encode_prepare_host_key() -> bytes:
    return _request(RequestKind.PREPARE_HOST_KEY)


# ---------------------------------------------------------------- decoding


class _Reader:
    """Reads bincode-legacy fields from one payload; every length is checked
    against what is left before anything is sliced or allocated."""

    __slots__ = ("buf", "pos")

    def __init__(self, payload: Union[bytes, bytearray, memoryview]) -> None:
        self.buf = memoryview(payload)
        self.pos = 0

    def _take(self, n: int, what: str) -> memoryview:
        end = self.pos + n
        if end > len(self.buf):
            raise DecodeError(f"{what} needs {n} bytes, {len(self.buf) - self.pos} left")
        out = self.buf[self.pos : end]
        self.pos = end
        return out

    def u8(self, what: str) -> int:
        return self._take(1, what)[0]

    def u32(self, what: str) -> int:
        n: int = _U32.unpack(self._take(4, what))[0]
        return n

    def u64(self, what: str) -> int:
        n: int = _U64.unpack(self._take(8, what))[0]
        return n

    def bool(self, what: str) -> bool:
        b = self.u8(what)
        if b > 1:
            raise DecodeError(f"invalid bool {b} for {what}")
        return b == 1

    def length(self, what: str, min_item_size: int = 1) -> int:
        n = self.u64(f"{what} length")
        left = len(self.buf) - self.pos
        if n * min_item_size > left:
            raise DecodeError(f"{what} length {n} runs past the end ({left} bytes left)")
        return n

    def string(self, what: str) -> str:
        n = self.length(what)
        raw = self._take(n, what)
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"{what} is not valid UTF-8") from None

    def blob(self, what: str) -> bytes:
        n = self.length(what)
        return bytes(self._take(n, what))

    def option(self, what: str, inner: Callable[[], T]) -> Optional[T]:
        tag = self.u8(f"{what} tag")
        if tag == 0:
            return None
        if tag == 1:
            return inner()
        raise DecodeError(f"invalid option tag {tag} for {what}")

    def vec(self, what: str, min_item_size: int, item: Callable[[], T]) -> List[T]:
        n = self.length(what, min_item_size)
        return [item() for _ in range(n)]

    def strings(self, what: str) -> List[str]:
        return self.vec(what, 8, lambda: self.string(what))

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise DecodeError(
                f"{len(self.buf) - self.pos} trailing bytes after a {self.pos}-byte message"
            )


# Smallest encodings, to bound vector counts before looping.
_MIN_PROJECT_INFO = 8 + 8 + 8 + 8 + 8 + 1
_MIN_AUDIT_RECORD = 8 + 1 + 8 + 1 + 4 + 4 + 1 + 1 + 1 + 8


def _project_info(r: _Reader) -> ProjectInfo:
    return ProjectInfo(
        name=r.string("project name"),
        socket=r.string("socket"),
        secrets=r.u64("secrets"),
        generation=r.u64("generation"),
        loaded_at_ms=r.u64("loaded_at_ms"),
        last_error=r.option("last_error", lambda: r.string("last_error")),
    )


def _audit_record(r: _Reader) -> AuditRecord:
    return AuditRecord(
        time_ms=r.u64("time_ms"),
        project=r.option("project", lambda: r.string("project")),
        op=r.string("op"),
        name=r.option("name", lambda: r.string("name")),
        uid=r.u32("uid"),
        gid=r.u32("gid"),
        pid=r.option("pid", lambda: r.u32("pid")),
        exe=r.option("exe", lambda: r.string("exe")),
        allowed=r.bool("allowed"),
        result=r.string("result"),
    )


_MIN_AUDIT_ENTRY = 8 + 8 + 8 + 1 + 8 + 1 + 4 + 4 + 1 + 1 + 1 + 8 + 1


def _audit_entry(r: _Reader) -> AuditEntry:
    return AuditEntry(
        time_ms=r.u64("time_ms"),
        first_ms=r.u64("first_ms"),
        count=r.u64("count"),
        project=r.option("project", lambda: r.string("project")),
        op=r.string("op"),
        name=r.option("name", lambda: r.string("name")),
        uid=r.u32("uid"),
        gid=r.u32("gid"),
        pid=r.option("pid", lambda: r.u32("pid")),
        exe=r.option("exe", lambda: r.string("exe")),
        allowed=r.bool("allowed"),
        result=r.string("result"),
        detail=r.option("detail", lambda: r.string("detail")),
    )


_MIN_AUDIT_TRAIL_ENTRY = _MIN_AUDIT_ENTRY + 4


def _audit_trail_entry(r: _Reader) -> AuditTrailEntry:
    e = _audit_entry(r)
    return AuditTrailEntry(
        time_ms=e.time_ms,
        first_ms=e.first_ms,
        count=e.count,
        project=e.project,
        op=e.op,
        name=e.name,
        uid=e.uid,
        gid=e.gid,
        pid=e.pid,
        exe=e.exe,
        allowed=e.allowed,
        result=e.result,
        detail=e.detail,
        unit=r.option("unit", lambda: r.string("unit")),
        slice=r.option("slice", lambda: r.string("slice")),
        cgroup=r.option("cgroup", lambda: r.string("cgroup")),
        exe_sha256=r.option("exe_sha256", lambda: r.string("exe_sha256")),
    )


def _daemon_status(r: _Reader) -> DaemonStatus:
    return DaemonStatus(
        version=r.string("version"),
        pid=r.u32("pid"),
        started_at_ms=r.u64("started_at_ms"),
        state_dir=r.string("state_dir"),
        runtime_dir=r.string("runtime_dir"),
        projects=r.vec("projects", _MIN_PROJECT_INFO, lambda: _project_info(r)),
    )


def _health(r: _Reader) -> Health:
    return Health(
        status=_daemon_status(r),
        audit=AuditHealth(
            path=r.option("audit path", lambda: r.string("audit path")),
            reads=r.string("audit reads"),
            error=r.option("audit error", lambda: r.string("audit error")),
            dropped=r.u64("audit dropped"),
            writes_refused=r.bool("audit writes_refused"),
        ),
        problems=r.strings("problems"),
    )


def _welcome(r: _Reader) -> Welcome:
    version = r.u32("version")
    server = r.string("server")
    scope = r.u32("scope")
    if scope == 0:
        project = None
    elif scope == 1:
        project = r.string("scope project")
    else:
        raise DecodeError(f"unknown scope variant {scope}")
    return Welcome(version=version, server=server, project=project)


def _event(r: _Reader) -> Event:
    generation = r.u64("generation")
    k = r.u32("event kind")
    try:
        kind = EventKind(k)
    except ValueError:
        raise DecodeError(f"unknown event kind {k}") from None
    return Event(generation=generation, kind=kind, names=r.strings("names"))


_MIN_VERSION_INFO = 8 + 8 + 1 + 1 + 8


def _version_info(r: _Reader) -> VersionInfo:
    return VersionInfo(
        version=r.u64("version"),
        set_at_ms=r.u64("set_at_ms"),
        uid=r.option("uid", lambda: r.u32("uid")),
        exe=r.option("exe", lambda: r.string("exe")),
        digest=r.string("digest"),
    )


def _difference(r: _Reader) -> Difference:
    name = r.string("name")
    k = r.u32("diff state")
    try:
        state = DiffState(k)
    except ValueError:
        raise DecodeError(f"unknown diff state {k}") from None
    return Difference(name=name, state=state)


def _written(r: _Reader) -> Written:
    k = r.u32("write outcome")
    try:
        outcome = WriteOutcome(k)
    except ValueError:
        raise DecodeError(f"unknown write outcome {k}") from None
    return Written(outcome=outcome, generation=r.u64("generation"))


_DECODERS: List[Callable[[_Reader], Response]] = [
    _welcome,
    lambda r: ErrorReply(code=r.u32("error code"), message=r.string("error message")),
    lambda r: Value(value=r.string("value")),
    lambda r: SecretList(
        secrets=r.vec(
            "secrets", 16, lambda: SecretInfo(name=r.string("name"), set_at_ms=r.u64("set_at_ms"))
        )
    ),
    lambda r: Stored(created=r.bool("created"), generation=r.u64("generation")),
    lambda r: Deleted(generation=r.u64("generation")),
    lambda r: Values(
        values=r.vec(
            "values", 16, lambda: NamedValue(name=r.string("name"), value=r.string("value"))
        )
    ),
    lambda r: ProjectCreated(project=_project_info(r)),
    lambda r: ProjectDeleted(name=r.string("project name")),
    lambda r: Projects(projects=r.vec("projects", _MIN_PROJECT_INFO, lambda: _project_info(r))),
    lambda r: Status(status=_daemon_status(r)),
    lambda r: Subscribed(generation=r.u64("generation")),
    _event,
    lambda r: AuditRecords(records=r.vec("records", _MIN_AUDIT_RECORD, lambda: _audit_record(r))),
    lambda r: StoredMany(
        created=r.strings("created"), updated=r.strings("updated"), generation=r.u64("generation")
    ),
    lambda r: Hosts(
        this_host=r.option("this_host", lambda: r.string("this_host")), hosts=r.strings("hosts")
    ),
    lambda r: HostUpdated(recipient=r.string("recipient"), projects=r.strings("projects")),
    lambda r: AuditLog(entries=r.vec("entries", _MIN_AUDIT_ENTRY, lambda: _audit_entry(r))),
    _health,
    lambda r: Restored(
        revision=r.u64("revision"), generation=r.u64("generation"), secrets=r.u64("secrets")
    ),
    lambda r: Fleet(
        fleet_id=r.option("fleet_id", lambda: r.string("fleet_id")),
        this_host=r.option("this_host", lambda: r.string("this_host")),
        member=r.bool("member"),
        hosts_version=r.u64("hosts_version"),
        hosts=r.strings("hosts"),
        problems=r.strings("problems"),
    ),
    lambda r: History(
        name=r.string("name"),
        versions=r.vec("versions", _MIN_VERSION_INFO, lambda: _version_info(r)),
    ),
    lambda r: RolledBack(
        from_version=r.u64("from"), version=r.u64("version"), generation=r.u64("generation")
    ),
    lambda r: Diff(differences=r.vec("differences", 12, lambda: _difference(r))),
    lambda r: SecretDigests(
        secrets=r.vec(
            "secrets",
            24,
            lambda: SecretDigest(
                name=r.string("name"), set_at_ms=r.u64("set_at_ms"), digest=r.string("digest")
            ),
        )
    ),
    lambda r: Metrics(text=r.string("metrics text")),
    lambda r: HostsHead(list=r.blob("hosts list"), id=r.blob("fleet id")),
    lambda r: HostsChanged(
        version=r.u64("version"),
        added=r.strings("added"),
        removed=r.strings("removed"),
        projects=r.strings("projects"),
        pending=r.strings("pending"),
        failures=r.strings("failures"),
    ),
    lambda r: Rekeyed(
        name=r.string("name"), revision=r.u64("revision"), generation=r.u64("generation")
    ),
    lambda r: HostKey(join_token=r.string("join token")),
    _written,
    lambda r: WrittenMany(
        created=r.strings("created"),
        updated=r.strings("updated"),
        unchanged=r.strings("unchanged"),
        generation=r.u64("generation"),
    ),
    lambda r: AuditTrail(
        entries=r.vec("entries", _MIN_AUDIT_TRAIL_ENTRY, lambda: _audit_trail_entry(r))
    ),
]


def decode_response(payload: Union[bytes, bytearray, memoryview]) -> Response:
    """Decodes one response payload (without its length prefix).

    Raises :class:`DecodeError` for a payload that is not exactly one response.
    """
    r = _Reader(payload)
    index = r.u32("variant")
    if index >= len(_DECODERS):
        raise DecodeError(f"unknown response variant {index}")
    msg = _DECODERS[index](r)
    r.end()
    return msg


# ---------------------------------------------------------------- framing


def frame_length(
    header: Union[bytes, bytearray, memoryview], limit: int = MAX_RESPONSE_FRAME_LEN
) -> int:
    """The payload length in a 4-byte prefix; :class:`FrameTooLarge` over `limit`."""
    n: int = _BE32.unpack(header)[0]
    if n > limit:
        raise FrameTooLarge(n, limit)
    return n


class FrameReader:
    """Reassembles frames from a byte stream: :meth:`push` each chunk and get
    the payloads it completed. The length prefix is checked against the limit
    before any payload is kept."""

    def __init__(self, limit: int = MAX_RESPONSE_FRAME_LEN) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._want = -1

    @property
    def pending(self) -> int:
        """Bytes received and not yet returned as a payload."""
        return len(self._buf)

    def push(self, chunk: Union[bytes, bytearray, memoryview]) -> List[bytes]:
        self._buf += chunk
        out: List[bytes] = []
        while True:
            if self._want < 0:
                if len(self._buf) < 4:
                    break
                try:
                    self._want = frame_length(self._buf[:4], self.limit)
                except FrameTooLarge:
                    self.reset()
                    raise
                del self._buf[:4]
            if len(self._buf) < self._want:
                break
            out.append(bytes(self._buf[: self._want]))
            del self._buf[: self._want]
            self._want = -1
        return out

    def reset(self) -> None:
        """Drops everything buffered (the stream is no longer in sync)."""
        self._buf[:] = bytes(len(self._buf))
        self._buf.clear()
        self._want = -1
