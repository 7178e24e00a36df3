//! Messages: one [`Request`] enum a client sends and one [`Response`] enum
//! the daemon answers, each variant with its own payload struct.
//!
//! bincode encodes an enum variant by its position (a `u32`), so variants are
//! only ever appended — never reordered or removed — and a payload struct is
//! never changed without raising [`PROTOCOL_VERSION`]. `protocol/tests/`
//! holds golden bytes for every message; `PROTOCOL.md` documents them.
//!
//! Which project a request is about is decided by the socket it arrived on,
//! never by a field in the request: project sockets serve the secret
//! requests (`Get`, `GetAll`, `List`, `Write`, `Delete`, `History`, …); the
//! control socket serves the project and status requests.
//!
//! The request kinds are declared once, in the `request_kinds!` list below:
//! each kind's doc, variant, payload and operation name, from which
//! [`Request`], [`RequestKind`] (with [`RequestKind::ALL`] and
//! [`RequestKind::op`]) and [`Request::kind`] are made. A new kind is one
//! entry appended to that list (and its payload struct, if new); what else
//! it needs does not compile or fails its tests until it is there: a sample
//! in `samples.rs`, golden bytes in `protocol/tests/golden.rs` and
//! `PROTOCOL.md`, the daemon's handler and rule
//! (`daemon/src/server/handlers/`), the names its audit line records
//! (`daemon/src/server/session/names.rs`) and a row of the authorization
//! matrix; then the client calls (`client.rs`, `blocking.rs`, the Python
//! and Node clients).

use crate::error::ErrorCode;
use crate::secret::SecretValue;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks. A daemon answers a `Hello` with a
/// different version with [`ErrorCode::VersionMismatch`] and closes.
pub const PROTOCOL_VERSION: u32 = 1;

/// Declares the request kinds, once each, in protocol order: every kind's
/// doc, variant, payload (if any) and operation name. From that one list it
/// makes the wire enum [`Request`], the payload-free [`RequestKind`], its
/// [`RequestKind::ALL`] and [`RequestKind::op`], and [`Request::kind`].
macro_rules! request_kinds {
    ($(
        $(#[$doc:meta])*
        $variant:ident $(($payload:ty))? => $op:literal,
    )*) => {
        /// Everything a client can ask. The first request on a connection
        /// must be `Hello`.
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub enum Request {
            $(
                $(#[$doc])*
                $variant $(($payload))?,
            )*
        }

        impl Request {
            /// The request's kind.
            pub fn kind(&self) -> RequestKind {
                match self {
                    $(Self::$variant { .. } => RequestKind::$variant,)*
                }
            }
        }

        /// Every request kind, in protocol order: what `op()` names, what
        /// the daemon's per-kind counters and authorization matrix iterate.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RequestKind {
            $(
                #[doc = concat!("A [`Request::", stringify!($variant), "`], named `", $op, "`.")]
                $variant,
            )*
        }

        impl RequestKind {
            /// Every kind, in protocol order (a kind's index is its
            /// variant's).
            pub const ALL: [RequestKind; [$(stringify!($variant)),*].len()] =
                [$(Self::$variant),*];

            /// The operation's name, for logs, audit lines and the `op`
            /// label.
            pub fn op(self) -> &'static str {
                match self {
                    $(Self::$variant => $op,)*
                }
            }
        }
    };
}

request_kinds! {
    /// 0: opens the conversation.
    Hello(Hello) => "hello",
    /// 1: a secret's value (project socket).
    Get(Get) => "get",
    /// 2: names and set times, never values (project socket).
    List => "list",
    /// 3: create or replace a secret (project socket).
    Set(Set) => "set",
    /// 4: remove a secret (project socket).
    Delete(Delete) => "delete",
    /// 5: every name with its value, for `fluxctl run` (project socket).
    GetAll => "get_all",
    /// 6: create a project with a new key and an empty vault (control socket).
    CreateProject(ProjectName) => "create_project",
    /// 7: delete a project: key, vault and socket (control socket).
    DeleteProject(ProjectName) => "delete_project",
    /// 8: the projects this daemon serves (control socket).
    ListProjects => "list_projects",
    /// 9: daemon and per-project health (control socket).
    Status => "status",
    /// 10: push an [`Event`] on this connection whenever the project's
    /// secrets change (project socket).
    Subscribe => "subscribe",
    /// 11: audit records, newest last (control socket).
    Audit(AuditQuery) => "audit",
    /// 12: set several secrets in one vault write, all or nothing (project
    /// socket).
    SetMany(Vec<NamedValue>) => "set_many",
    /// 13: the hosts of the fleet and this host's recipient (control
    /// socket).
    ListHosts => "list_hosts",
    /// 14: let a host serve every project this daemon holds a key for
    /// (control socket, fleet mode).
    AddHost(HostRecipient) => "add_host",
    /// 15: remove a host from the fleet: its wrapped keys are deleted and
    /// its projects get new keys (control socket, fleet mode).
    RemoveHost(HostRecipient) => "remove_host",
    /// 16: audit entries, read summaries included, newest last (control
    /// socket). Supersedes `Audit`, whose records cannot carry a count.
    AuditLog(AuditQuery) => "audit_log",
    /// 17: daemon status with the health of what every project depends on:
    /// the audit log, the store (control socket).
    Health => "health",
    /// 18: serve the vault now in the store although it is older than the
    /// one served — a backup put back on purpose — re-sealed at a new
    /// revision (project socket).
    RestoreVault => "restore_vault",
    /// 19: the fleet as this host sees it: its id, this host's join token,
    /// the host list (control socket).
    Fleet => "fleet",
    /// 20: every version kept of a secret — number, when, who, digest —
    /// never a value (project socket).
    History(SecretName) => "history",
    /// 21: make an earlier version of a secret current again, as a new
    /// version (project socket).
    Rollback(Rollback) => "rollback",
    /// 22: compare names and values with the project's; the answer says
    /// per name whether they match, never a value (project socket).
    Diff(Vec<NamedValue>) => "diff",
    /// 23: names, set times and keyed value digests, never values (project
    /// socket).
    ListDigests => "list_digests",
    /// 24: the daemon's counters and gauges in the Prometheus text
    /// exposition format (control socket). Names and numbers, never a
    /// value.
    Metrics => "metrics",
    /// 25: the signed host list this host holds, and the fleet id, for a
    /// client to check against the operator key and sign the next version
    /// over (control socket, fleet mode).
    HostsHead => "hosts_head",
    /// 26: publish a host list signed by the operator key (or found a
    /// fleet with version 1 and the signed fleet id); keys are wrapped for
    /// added hosts and projects re-keyed away from removed ones (control
    /// socket, fleet mode). Supersedes `AddHost` and `RemoveHost`.
    PublishHosts(SignedHosts) => "publish_hosts",
    /// 27: re-key the projects still keyed from before the newest host
    /// removal: finishes an interrupted removal (control socket, fleet
    /// mode).
    ResumeRemoval => "resume_removal",
    /// 28: give a project a new key: its vault, current values and kept
    /// versions, re-sealed with it; the old key destroyed (control
    /// socket).
    RekeyProject(ProjectName) => "rekey_project",
    /// 29: this host's next host key, created when there is none, for
    /// `fluxctl hosts rotate-key` (control socket, fleet mode).
    PrepareHostKey => "prepare_host_key",
    /// 30: `Set`, answered with what the write did — created, updated or
    /// unchanged (the same value: no new version) — which `Stored` cannot
    /// say (project socket). Supersedes `Set`.
    Write(Set) => "write",
    /// 31: `SetMany`, answered with the names created, updated and
    /// unchanged (project socket). Supersedes `SetMany`.
    WriteMany(Vec<NamedValue>) => "write_many",
    /// 32: audit entries with the workload of each peer — its systemd
    /// unit, slice and cgroup, and its executable's SHA-256 when a rule
    /// checked it — newest last, optionally only those of units matching
    /// a pattern (control socket). Supersedes `AuditLog`, whose entries
    /// cannot carry a workload.
    AuditTrail(AuditTrailQuery) => "audit_trail",
}

impl Request {
    /// The operation's name, for logs and audit lines (never a value).
    pub fn op(&self) -> &'static str {
        self.kind().op()
    }
}

impl RequestKind {
    /// The kind's position in [`Self::ALL`] (its variant index).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Everything the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// 0: the handshake succeeded.
    Welcome(Welcome),
    /// 1: the request failed; the connection stays usable unless the
    /// handshake failed.
    Error(ErrorReply),
    /// 2: answer to `Get`.
    Value(SecretValue),
    /// 3: answer to `List`, sorted by name.
    Secrets(Vec<SecretInfo>),
    /// 4: answer to `Set`.
    Stored(Stored),
    /// 5: answer to `Delete`.
    Deleted(Deleted),
    /// 6: answer to `GetAll`, sorted by name.
    Values(Vec<NamedValue>),
    /// 7: answer to `CreateProject`.
    ProjectCreated(ProjectInfo),
    /// 8: answer to `DeleteProject`.
    ProjectDeleted(ProjectName),
    /// 9: answer to `ListProjects`, sorted by name.
    Projects(Vec<ProjectInfo>),
    /// 10: answer to `Status`.
    Status(DaemonStatus),
    /// 11: answer to `Subscribe`: events follow from this generation on.
    Subscribed(Subscribed),
    /// 12: pushed, unasked, to a subscribed connection between answers.
    Event(Event),
    /// 13: answer to `Audit`, oldest first.
    AuditRecords(Vec<AuditRecord>),
    /// 14: answer to `SetMany`.
    StoredMany(StoredMany),
    /// 15: answer to `ListHosts`.
    Hosts(HostList),
    /// 16: answer to `AddHost` and `RemoveHost`.
    HostUpdated(HostUpdate),
    /// 17: answer to `AuditLog`, oldest first.
    AuditLog(Vec<AuditEntry>),
    /// 18: answer to `Health` (boxed: it is the largest answer by far).
    Health(Box<Health>),
    /// 19: answer to `RestoreVault`.
    Restored(Restored),
    /// 20: answer to `Fleet`.
    Fleet(FleetInfo),
    /// 21: answer to `History`.
    History(SecretHistory),
    /// 22: answer to `Rollback`.
    RolledBack(RolledBack),
    /// 23: answer to `Diff`, sorted by name.
    Diff(Vec<Difference>),
    /// 24: answer to `ListDigests`, sorted by name.
    SecretDigests(Vec<SecretDigest>),
    /// 25: answer to `Metrics`: the Prometheus text exposition (format
    /// 0.0.4), one sample per line.
    Metrics(String),
    /// 26: answer to `HostsHead`.
    HostsHead(SignedHosts),
    /// 27: answer to `PublishHosts` and `ResumeRemoval`.
    HostsChanged(HostsReport),
    /// 28: answer to `RekeyProject`.
    Rekeyed(Rekeyed),
    /// 29: answer to `PrepareHostKey`: the next host key's join token.
    HostKey(HostKeyToken),
    /// 30: answer to `Write`.
    Written(Written),
    /// 31: answer to `WriteMany`.
    WrittenMany(WrittenMany),
    /// 32: answer to `AuditTrail`, oldest first.
    AuditTrail(Vec<AuditTrailEntry>),
}

/// A secret's name: payload of [`Request::History`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretName {
    pub name: String,
}

/// Payload of [`Request::Rollback`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub name: String,
    /// The earlier version to make current again; `None`: the newest
    /// earlier one.
    pub to: Option<u64>,
}

/// Payload of [`Response::History`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretHistory {
    pub name: String,
    /// The current version first, then the earlier ones kept, newest
    /// first.
    pub versions: Vec<VersionInfo>,
}

/// One version of a secret, in [`SecretHistory`]. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    /// From 1, raised by every new value of the name.
    pub version: u64,
    /// When it was set, ms since the Unix epoch.
    pub set_at_ms: u64,
    /// Who set it: the peer's uid and executable, when known.
    pub uid: Option<u32>,
    pub exe: Option<String>,
    /// The value's keyed digest (12 hex digits, see [`SecretDigest`]).
    pub digest: String,
}

/// Payload of [`Response::RolledBack`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    /// The earlier version whose value is current again.
    pub from: u64,
    /// The new version holding it.
    pub version: u64,
    /// The project's snapshot generation that serves it.
    pub generation: u64,
}

/// One name of a [`Response::Diff`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub name: String,
    pub state: DiffState,
}

/// How a name given in a `Diff` compares with the project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiffState {
    /// 0: set in the project to the same value.
    Same,
    /// 1: set in the project to another value.
    Changed,
    /// 2: given, not set in the project.
    OnlyInRequest,
    /// 3: set in the project, not given.
    OnlyInProject,
}

/// One secret in a [`Response::SecretDigests`] listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretDigest {
    pub name: String,
    /// When the value was set, ms since the Unix epoch.
    pub set_at_ms: u64,
    /// The value's keyed digest: 12 lowercase hex digits of HMAC-SHA256
    /// under a key derived from the project key. Equal values in one
    /// project have equal digests; it says nothing about a value without
    /// the project key.
    pub digest: String,
}

/// Payload of [`Response::HostKey`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKeyToken {
    /// The next host key's join token (`age1…:…`).
    pub join_token: String,
}

/// Payload of [`Response::Rekeyed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rekeyed {
    /// The project.
    pub name: String,
    /// The revision the vault was re-sealed at.
    pub revision: u64,
    /// The snapshot generation that serves it.
    pub generation: u64,
}

/// Payload of [`Response::Fleet`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetInfo {
    /// The fleet's id (`fleet:…`), which a joining host is started with;
    /// none outside fleet mode or before this host knows it.
    pub fleet_id: Option<String>,
    /// This host's join token (`age1…:…`), which an operator passes to
    /// `fluxctl hosts add` on a host of the fleet.
    pub this_host: Option<String>,
    /// True when this host is in the fleet's host list.
    pub member: bool,
    /// The version of the host list this host holds.
    pub hosts_version: u64,
    /// The hosts' join tokens, in list order.
    pub hosts: Vec<String>,
    /// What keeps this host from serving the fleet, one sentence each.
    pub problems: Vec<String>,
}

/// Payload of [`Response::Restored`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restored {
    /// The revision the restored vault was sealed at.
    pub revision: u64,
    /// The project's snapshot generation that serves it.
    pub generation: u64,
    /// How many secrets it holds.
    pub secrets: u64,
}

/// One line of the audit log: a single decision, or a summary of `count`
/// identical ones on one connection (reads, and repeated denials past the
/// first ones) between `first_ms` and `time_ms`. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When (the last of them, for a summary), ms since the epoch.
    pub time_ms: u64,
    /// When the first of them was decided; equals `time_ms` when `count`
    /// is 1.
    pub first_ms: u64,
    /// How many decisions the entry stands for (at least 1).
    pub count: u64,
    /// The project (none for daemon-wide requests).
    pub project: Option<String>,
    /// The operation, as [`Request::op`] names it.
    pub op: String,
    /// The secret, project or host the request named. An invalid name is
    /// recorded shortened (at most 64 characters, escaped, ending in `…`),
    /// with `detail` giving its length.
    pub name: Option<String>,
    /// The peer's uid, gid and pid, from the kernel.
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<u32>,
    /// The peer's executable, when it could be read.
    pub exe: Option<String>,
    /// Whether the policy allowed the request.
    pub allowed: bool,
    /// `ok`, or the error code's name.
    pub result: String,
    /// More about the decision, for people: never a value.
    pub detail: Option<String>,
}

impl AuditEntry {
    /// The entry as a [`Response::AuditRecords`] record: the count and the
    /// detail are dropped, the time is the last decision's.
    pub fn to_record(&self) -> AuditRecord {
        AuditRecord {
            time_ms: self.time_ms,
            project: self.project.clone(),
            op: self.op.clone(),
            name: self.name.clone(),
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            exe: self.exe.clone(),
            allowed: self.allowed,
            result: self.result.clone(),
        }
    }
}

/// One line of the audit log with the peer's workload: an [`AuditEntry`]'s
/// fields, in its order, then the unit, slice, cgroup and executable hash.
/// Answer of [`Request::AuditTrail`]. Never holds a value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTrailEntry {
    /// When (the last of them, for a summary), ms since the epoch.
    pub time_ms: u64,
    /// When the first of them was decided; equals `time_ms` when `count`
    /// is 1.
    pub first_ms: u64,
    /// How many decisions the entry stands for (at least 1).
    pub count: u64,
    /// The project (none for daemon-wide requests).
    pub project: Option<String>,
    /// The operation, as [`Request::op`] names it.
    pub op: String,
    /// The secret, project or host the request named (shortened as in
    /// [`AuditEntry::name`]).
    pub name: Option<String>,
    /// The peer's uid, gid and pid, from the kernel.
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<u32>,
    /// The peer's executable, when it could be read.
    pub exe: Option<String>,
    /// Whether the policy allowed the request.
    pub allowed: bool,
    /// `ok`, or the error code's name.
    pub result: String,
    /// More about the decision, for people: never a value.
    pub detail: Option<String>,
    /// The peer's systemd unit (`billing.service`), from its cgroup; none
    /// when it is in no unit, or for entries recorded before fluxd read
    /// workloads.
    pub unit: Option<String>,
    /// The slice the unit is in (`functions.slice`).
    pub slice: Option<String>,
    /// The peer's cgroup path (`/system.slice/billing.service`).
    pub cgroup: Option<String>,
    /// The SHA-256 of the peer's executable, hex, when a policy rule
    /// naming a hash had it checked.
    pub exe_sha256: Option<String>,
}

impl AuditTrailEntry {
    /// The entry as a [`Response::AuditLog`] entry: the workload dropped.
    pub fn to_entry(&self) -> AuditEntry {
        AuditEntry {
            time_ms: self.time_ms,
            first_ms: self.first_ms,
            count: self.count,
            project: self.project.clone(),
            op: self.op.clone(),
            name: self.name.clone(),
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            exe: self.exe.clone(),
            allowed: self.allowed,
            result: self.result.clone(),
            detail: self.detail.clone(),
        }
    }
}

impl From<AuditEntry> for AuditTrailEntry {
    /// An [`AuditEntry`] (from a daemon that predates `AuditTrail`), its
    /// workload unknown.
    fn from(e: AuditEntry) -> Self {
        Self {
            time_ms: e.time_ms,
            first_ms: e.first_ms,
            count: e.count,
            project: e.project,
            op: e.op,
            name: e.name,
            uid: e.uid,
            gid: e.gid,
            pid: e.pid,
            exe: e.exe,
            allowed: e.allowed,
            result: e.result,
            detail: e.detail,
            ..Self::default()
        }
    }
}

/// Payload of [`Request::AuditTrail`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTrailQuery {
    /// Only this project's entries.
    pub project: Option<String>,
    /// Only entries at or after this time, ms since the epoch (0: all).
    pub since_ms: u64,
    /// At most this many entries, the newest that match (0: the daemon's
    /// default).
    pub limit: u32,
    /// Only entries of peers in a unit this pattern matches (`*` matches
    /// any run of characters: `fn-*.service`).
    pub unit: Option<String>,
}

/// Payload of [`Response::Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// What `Status` answers.
    pub status: DaemonStatus,
    pub audit: AuditHealth,
    /// Daemon-wide problems, one sentence each, saying what to do; empty
    /// when all is well.
    pub problems: Vec<String>,
}

/// The audit log's state, in [`Health`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHealth {
    /// The log file; none when auditing is disabled.
    pub path: Option<String>,
    /// How reads are recorded: `summary` or `every`.
    pub reads: String,
    /// Why the log cannot be written right now, if it cannot.
    pub error: Option<String>,
    /// Entries lost since the daemon started: while the log could not be
    /// written, and entries younger than `[audit] keep_for` in files that
    /// rotation removed.
    pub dropped: u64,
    /// True while writes are refused because they could not be audited.
    pub writes_refused: bool,
}

/// Payload of [`Request::AddHost`] and [`Request::RemoveHost`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecipient {
    /// The host's age recipient (`age1…`).
    pub recipient: String,
}

/// Payload of [`Request::PublishHosts`] and [`Response::HostsHead`]: signed
/// envelopes, as fleet mode keeps them in etcd (`docs/FLEET.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHosts {
    /// A host list envelope; empty when there is none.
    pub list: Vec<u8>,
    /// The fleet id envelope: only when founding a fleet (and in
    /// `HostsHead`'s answer once known), else empty.
    pub id: Vec<u8>,
}

/// Payload of [`Response::HostsChanged`]: what a host list change did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostsReport {
    /// The host list version now held.
    pub version: u64,
    /// Recipients the change added, and removed.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Projects wrapped for the added hosts or re-keyed away from the
    /// removed ones by this request, sorted.
    pub projects: Vec<String>,
    /// Projects whose key a removed host may still open (re-keying them
    /// failed or was not reached), sorted: empty when every removed host
    /// is locked out of every later value.
    pub pending: Vec<String>,
    /// One sentence per project that failed, naming it and why.
    pub failures: Vec<String>,
}

/// Payload of [`Response::Hosts`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostList {
    /// This daemon's own recipient; `None` when it does not run in fleet
    /// mode.
    pub this_host: Option<String>,
    /// The recipients of the fleet's hosts, sorted.
    pub hosts: Vec<String>,
}

/// Payload of [`Response::HostUpdated`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostUpdate {
    /// The host added or removed.
    pub recipient: String,
    /// The projects whose keys were wrapped for it (added) or rotated away
    /// from it (removed), sorted.
    pub projects: Vec<String>,
}

/// Payload of [`Response::StoredMany`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMany {
    /// Names that were new, sorted.
    pub created: Vec<String>,
    /// Names whose value was replaced, sorted.
    pub updated: Vec<String>,
    /// The project's snapshot generation that holds them all.
    pub generation: u64,
}

/// Payload of [`Request::Audit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditQuery {
    /// Only this project's records.
    pub project: Option<String>,
    /// Only records at or after this time, ms since the epoch (0: all).
    pub since_ms: u64,
    /// At most this many records, the newest (0: the daemon's default).
    pub limit: u32,
}

/// One access decision. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, ms since the epoch.
    pub time_ms: u64,
    /// The project (none for daemon-wide requests).
    pub project: Option<String>,
    /// The operation, as [`Request::op`] names it.
    pub op: String,
    /// The secret or project name the request named, if any.
    pub name: Option<String>,
    /// The peer's uid, gid and pid, from the kernel.
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<u32>,
    /// The peer's executable, when it could be read.
    pub exe: Option<String>,
    /// Whether the policy allowed the request.
    pub allowed: bool,
    /// `ok`, or the error code's name.
    pub result: String,
}

/// Payload of [`Response::Subscribed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The generation being served when the subscription started.
    pub generation: u64,
}

/// A change to a project's secrets. Names only, never values: a client that
/// caches values drops the named entries (or all of them when `names` is
/// empty) and reads again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The generation now being served.
    pub generation: u64,
    pub kind: EventKind,
    /// The names whose value changed, appeared or disappeared, sorted. Empty
    /// means "anything may have changed" (events were missed).
    pub names: Vec<String>,
}

/// What caused an [`Event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// 0: a `Set`.
    Set,
    /// 1: a `Delete`.
    Deleted,
    /// 2: the vault file was replaced from outside, or re-read on SIGHUP.
    Reloaded,
    /// 3: the project was deleted; no more events follow.
    ProjectDeleted,
}

/// Payload of [`Request::Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal the daemon's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Free text naming the client (`fluxctl/0.1.0`), for logs.
    pub client: String,
}

/// Payload of [`Response::Welcome`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The daemon's [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Free text naming the daemon (`fluxd/0.1.0`).
    pub server: String,
    /// What this socket serves.
    pub scope: Scope,
}

/// What a socket serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// 0: the control socket.
    Control,
    /// 1: one project's socket.
    Project(String),
}

/// Payload of [`Request::Get`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Get {
    pub name: String,
}

/// Payload of [`Request::Set`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Set {
    pub name: String,
    pub value: SecretValue,
}

/// Payload of [`Request::Delete`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delete {
    pub name: String,
}

/// A project's name, payload of the project requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectName {
    pub name: String,
}

/// Payload of [`Response::Error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub code: ErrorCode,
    /// Human-readable, names what failed and what to do; never a value.
    pub message: String,
}

/// One secret in a [`Response::Secrets`] listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretInfo {
    pub name: String,
    /// When the value was last set, in milliseconds since the Unix epoch.
    pub set_at_ms: u64,
}

/// Payload of [`Response::Stored`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// True when the name was new, false when an existing value was replaced.
    pub created: bool,
    /// The project's snapshot generation that holds the new value.
    pub generation: u64,
}

/// Payload of [`Response::Written`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// What the write did to the name.
    pub outcome: WriteOutcome,
    /// The project's snapshot generation that holds the value.
    pub generation: u64,
}

/// What a write did to one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOutcome {
    /// 0: the name was new (version 1).
    Created,
    /// 1: the name held another value: the new one is a new version.
    Updated,
    /// 2: the name already held this value: no new version.
    Unchanged,
}

/// Payload of [`Response::WrittenMany`]: every name given, in exactly one
/// list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenMany {
    /// Names that were new, sorted.
    pub created: Vec<String>,
    /// Names whose value changed (a new version each), sorted.
    pub updated: Vec<String>,
    /// Names that already held the value given (no new version), sorted.
    pub unchanged: Vec<String>,
    /// The project's snapshot generation that holds them all.
    pub generation: u64,
}

/// Payload of [`Response::Deleted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// The project's snapshot generation without the name.
    pub generation: u64,
}

/// One entry of [`Response::Values`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedValue {
    pub name: String,
    pub value: SecretValue,
}

/// A project as the control socket describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectInfo {
    pub name: String,
    /// Absolute path of the project's socket.
    pub socket: String,
    /// Number of secrets in the served snapshot.
    pub secrets: u64,
    /// Snapshot generation: raised by every set, delete and reload.
    pub generation: u64,
    /// When the served snapshot was loaded or written, ms since the epoch.
    pub loaded_at_ms: u64,
    /// The last failed load of the vault file, if the served snapshot is
    /// older than the file on disk. Names a path and a reason, never a value.
    pub last_error: Option<String>,
}

/// Payload of [`Response::Status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// `fluxd`'s version.
    pub version: String,
    pub pid: u32,
    /// When the daemon started, ms since the epoch.
    pub started_at_ms: u64,
    pub state_dir: String,
    pub runtime_dir: String,
    pub projects: Vec<ProjectInfo>,
}
