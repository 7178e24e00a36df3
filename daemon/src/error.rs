//! [`Error`]: everything the daemon's library can fail with, each variant
//! carrying its context (the path or etcd key, the project, the name, the
//! limit) and mapping to a wire [`ErrorCode`]. No variant holds a secret
//! value.
//!
//! Configuration and environment problems (exit 78) are
//! [`Error::Configuration`], typed by kind in [`ConfigError`] (a bad
//! duration, a number out of range, a key's bad value, a file that cannot
//! be read, a folder or key file someone else could change or is using),
//! or [`Error::Config`] in words for the rarer ones.

use flux_protocol::ErrorCode;
use flux_protocol::limits::NameError;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// What a missing secret's message tells the user to do: set it with
/// `fluxctl`, or, when the store is a `.env` file (`fluxd dev`, which
/// refuses `fluxctl secrets set`), add it to that file. The store says
/// which ([`crate::store::Store::not_found_hint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotFoundHint {
    /// `fluxctl secrets set` (production and fleet mode).
    Fluxctl,
    /// A line of this `.env` file (`fluxd dev`).
    EnvFile(PathBuf),
}

/// [`Error::NotFound`]'s message, with the remedy `hint` gives.
fn not_found(project: &str, name: &str, hint: &NotFoundHint) -> String {
    match hint {
        NotFoundHint::EnvFile(file) => format!(
            "secret {name} is not set in {file} (fluxd dev, project {project}): add it to {file} as {name}=…; edits are live at once",
            file = file.display()
        ),
        NotFoundHint::Fluxctl => format!(
            "secret {name} is not set in project {project}; set it with `fluxctl secrets set {name} --project {project}`"
        ),
    }
}

/// Where a key or vault is kept, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A file (the local store, a `.env` file in dev mode).
    File(PathBuf),
    /// A key in etcd (fleet mode).
    Etcd(String),
    /// Held in memory only (dev mode's key).
    Memory(&'static str),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Etcd(key) => write!(f, "etcd:{key}"),
            Self::Memory(what) => write!(f, "({what})"),
        }
    }
}

/// Which limit a request reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// `[limits] requests_per_second` on one connection.
    Rate { per_second: u32 },
    /// `[limits] max_secrets_per_project`.
    Secrets {
        project: String,
        would_hold: usize,
        limit: usize,
    },
    /// `[limits] max_project_bytes`.
    ProjectBytes {
        project: String,
        would_hold: usize,
        limit: usize,
    },
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rate { per_second } => write!(
                f,
                "slow down: at most {per_second} requests per second per connection"
            ),
            Self::Secrets {
                project,
                would_hold,
                limit,
            } => write!(
                f,
                "project {project} would hold {would_hold} secrets, over the limit of {limit} ([limits] max_secrets_per_project); nothing was changed"
            ),
            Self::ProjectBytes {
                project,
                would_hold,
                limit,
            } => write!(
                f,
                "project {project} would hold {would_hold} bytes of names and values, over the limit of {limit} ([limits] max_project_bytes); nothing was changed: delete secrets or raise the limit"
            ),
        }
    }
}

/// What is wrong with the configuration or the environment, by kind: the
/// key or file at fault and what was found, printed as one sentence that
/// says what to do. `fluxd` exits 78 on any of them ([`Error::is_config`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A duration key whose text is not a duration; `like` gives examples
    /// (and what a special value means, if any).
    #[error("{key} = {text:?} is not a duration like {like}: {source}")]
    NotADuration {
        key: &'static str,
        text: String,
        like: &'static str,
        source: humantime::DurationError,
    },
    /// A duration key set to zero where zero would mean "never".
    #[error("{key} must be more than zero")]
    ZeroDuration { key: &'static str },
    /// A number below the least that works.
    #[error("{key} must be at least {min}")]
    AtLeast { key: &'static str, min: u64 },
    /// A number outside the bounds that `must_be` states (which may name
    /// other keys).
    #[error("{key} must be {must_be}")]
    OutOfRange { key: &'static str, must_be: String },
    /// `[limits] max_secrets_per_project` and `max_project_bytes` that
    /// together allow a project larger than one answer may carry.
    #[error(
        "[limits] max_secrets_per_project and max_project_bytes together allow a project larger than one 64 MiB answer: lower one of them"
    )]
    ProjectOverAnswer,
    /// A key set to a value it does not take: `value` as written in TOML
    /// (strings quoted), `help` what to give instead.
    #[error("{key} = {value}: {help}")]
    BadValue {
        key: &'static str,
        value: String,
        help: String,
    },
    /// A file named by the configuration that cannot be read (`what`:
    /// "the config file", "the host key").
    #[error("cannot read {what} {}: {source}", path.display())]
    CannotRead {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A config file that is not valid TOML or has an unknown key.
    #[error("config file {}: {source}", path.display())]
    Syntax {
        path: PathBuf,
        source: toml::de::Error,
    },
    /// A config file whose access policy cannot be resolved (an unknown
    /// user or group, a role that is not one).
    #[error("config file {}: {reason}", path.display())]
    Policy { path: PathBuf, reason: String },
    /// A problem with a setting of the config file at `path`.
    #[error("config file {}: {error}", path.display())]
    InFile { path: PathBuf, error: Box<Error> },
    /// A folder of the daemon that is not absolute (`what`: "state",
    /// "runtime").
    #[error("the {what} folder must be an absolute path, not {}", dir.display())]
    NotAbsolute { what: &'static str, dir: PathBuf },
    /// A folder of the daemon that someone else could change.
    #[error(
        "{what} {} {problem}; remove it (fluxd creates it) or choose another folder",
        dir.display()
    )]
    NotOwnFolder {
        what: String,
        dir: PathBuf,
        problem: FolderProblem,
    },
    /// A folder of the daemon under a folder another user could swap
    /// ([`flux_protocol::trust`]).
    #[error("{what} {}: {reason}", dir.display())]
    UntrustedParent {
        what: String,
        dir: PathBuf,
        reason: String,
    },
    /// A folder whose mode fluxd would set but that is not its own.
    #[error("{} is not owned by fluxd's uid: its mode is left alone", dir.display())]
    NotOwned { dir: PathBuf },
    /// A folder or key file that group or others may read or write;
    /// `want` is the mode the message suggests.
    #[error(
        "{what} {} has mode {mode:04o}: it must not be readable or writable by group or others; fix it with: chmod {want:o} {}",
        path.display(),
        path.display()
    )]
    NotPrivate {
        what: String,
        path: PathBuf,
        mode: u32,
        want: u32,
    },
    /// The state folder's lock (`lock`) is held by another process.
    #[error(
        "another fluxd is using the state folder {} ({}: {errno}); stop it, or pass another --state-dir",
        state_dir.display(),
        lock.display()
    )]
    StateFolderInUse {
        state_dir: PathBuf,
        lock: PathBuf,
        errno: nix::errno::Errno,
    },
}

/// Why a folder of the daemon is refused ([`ConfigError::NotOwnFolder`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderProblem {
    /// A symbolic link or a file.
    NotAFolder,
    /// Owned by `owner`, not by fluxd's uid `me`.
    OwnedBy { owner: u32, me: u32 },
    /// Writable by group or others (`mode`: its permission bits).
    WritableByOthers { mode: u32 },
}

impl fmt::Display for FolderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAFolder => write!(f, "is not a folder (a symbolic link or a file)"),
            Self::OwnedBy { owner, me } => write!(
                f,
                "is owned by uid {owner}, not by fluxd's uid {me}: another user may have created it"
            ),
            Self::WritableByOthers { mode } => {
                write!(f, "can be written by other users (mode {mode:04o})")
            }
        }
    }
}

/// A daemon failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad configuration or environment, said in words: `fluxd` exits 78
    /// (EX_CONFIG) so systemd does not restart it in a loop. The kinds
    /// that recur are [`Error::Configuration`]'s.
    #[error("{0}")]
    Config(String),
    /// Bad configuration or environment, by kind (exit 78 too).
    #[error(transparent)]
    Configuration(#[from] ConfigError),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot listen on {}: {reason}", path.display())]
    Bind { path: PathBuf, reason: String },
    #[error(transparent)]
    InvalidName(#[from] NameError),
    #[error("secret {name}: value is {len} bytes; {limit_text}")]
    TooLarge {
        name: String,
        len: usize,
        /// Names the limit and where it comes from.
        limit_text: String,
    },
    /// A secret that is not set; `hint` says how to set it.
    #[error("{}", not_found(project, name, hint))]
    NotFound {
        project: String,
        name: String,
        hint: NotFoundHint,
    },
    /// A secret whose own readers leave the peer out: to the peer, word
    /// for word a name that is not set; to the audit log, a denial. Only
    /// a config file's policy names per-secret readers, and `fluxd dev`
    /// reads none, so the hint is always `fluxctl`'s.
    #[error("{}", not_found(project, name, &NotFoundHint::Fluxctl))]
    Hidden { project: String, name: String },
    #[error(
        "unknown project {0}: list projects with `fluxctl projects list`, create it with `fluxctl projects create {0}`"
    )]
    UnknownProject(String),
    #[error("project {0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    LimitReached(Limit),
    #[error("permission denied: {op} on {} is not allowed for this user", match project { Some(p) => format!("project {p}"), None => "this daemon".to_owned() })]
    PermissionDenied {
        op: &'static str,
        project: Option<String>,
    },
    #[error("vault {location}: {reason}")]
    Vault { location: Location, reason: String },
    #[error("key {location}: {reason}")]
    Key { location: Location, reason: String },
    /// The project's vault could not be read when it was loaded: it is
    /// served as unreadable until a good one is.
    #[error("project {project} cannot be served: {reason}")]
    Unreadable { project: String, reason: String },
    /// `fluxd dev`'s `.env` file cannot be read at all (not UTF-8, too
    /// large, not a regular file): answered `unavailable` until it is
    /// fixed. The reason names `file:line:col`, never a value.
    #[error(
        "project {project} cannot be served: {reason}; fix the file: it is read again as soon as it is saved"
    )]
    EnvFile { project: String, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
    /// Nothing was done and a retry may work.
    #[error("{0}")]
    Unavailable(Unavailable),
}

/// Why the daemon cannot do something right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unavailable {
    /// The replicated store (etcd) cannot be reached or refused: nothing
    /// was changed.
    Store(String),
    /// etcd took a write and did not answer in time: it may or may not
    /// have been applied.
    Unknown(String),
    /// The audit log cannot be written: writes are refused.
    Audit(String),
    /// Other writers kept winning the race for a project's vault.
    Contended { project: String },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Store(reason) => write!(f, "{reason}; nothing was changed"),
            Self::Unknown(reason) => write!(
                f,
                "{reason}: the change may or may not have been applied; check with `fluxctl secrets list` or `fluxctl status` before trying again"
            ),
            Self::Audit(reason) => write!(
                f,
                "{reason}: writes are refused until it can be written (reads are served); nothing was changed"
            ),
            Self::Contended { project } => write!(
                f,
                "project {project} is being written by other hosts; nothing was changed: try again"
            ),
        }
    }
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The code a client sees for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidName(_) => ErrorCode::InvalidName,
            Self::TooLarge { .. } => ErrorCode::TooLarge,
            Self::NotFound { .. } | Self::Hidden { .. } => ErrorCode::NotFound,
            Self::UnknownProject(_) => ErrorCode::UnknownProject,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::LimitReached(_) => ErrorCode::LimitReached,
            Self::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            Self::Unavailable(_) | Self::EnvFile { .. } => ErrorCode::Unavailable,
            // Storage that cannot take a write right now: nothing was
            // changed, and the same write succeeds once space returns.
            Self::Io { source, .. } if storage_refuses(source) => ErrorCode::Unavailable,
            Self::Config(_)
            | Self::Configuration(_)
            | Self::Io { .. }
            | Self::Bind { .. }
            | Self::Vault { .. }
            | Self::Key { .. }
            | Self::Unreadable { .. }
            | Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// True for errors that `fluxd` reports with exit status 78.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_) | Self::Configuration(_))
    }

    /// True for an I/O error that says the file is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// A full disk, an exceeded quota or a read-only file system: conditions
/// of the storage, not of fluxd, that an operator can clear.
fn storage_refuses(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull
            | io::ErrorKind::QuotaExceeded
            | io::ErrorKind::ReadOnlyFilesystem
    )
}

impl Error {
    /// True for an I/O error the operating system reported (an errno), as
    /// opposed to a file fluxd refused for what it is (a FIFO, too large).
    pub fn os_error(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.raw_os_error().is_some())
    }
}

impl From<flux_vault::FileError> for Error {
    fn from(e: flux_vault::FileError) -> Self {
        Self::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_secret_reads_as_one_not_set() {
        let hidden = Error::Hidden {
            project: "app".into(),
            name: "K".into(),
        };
        let not_set = Error::NotFound {
            project: "app".into(),
            name: "K".into(),
            hint: NotFoundHint::Fluxctl,
        };
        assert_eq!(hidden.to_string(), not_set.to_string());
        assert_eq!(hidden.code(), not_set.code());
    }

    #[test]
    fn an_errno_is_the_disk_and_a_refused_file_is_not() {
        let io = |source| Error::Io {
            action: "read",
            path: "/x".into(),
            source,
        };
        assert!(io(std::io::Error::from_raw_os_error(5)).os_error(), "EIO");
        assert!(!io(std::io::Error::other("not a regular file")).os_error());
        assert!(!Error::BadRequest("x".into()).os_error());
    }
    use nix::errno::Errno;

    #[test]
    fn a_full_or_read_only_disk_is_unavailable_and_other_io_errors_internal() {
        for (errno, code) in [
            (Errno::ENOSPC, ErrorCode::Unavailable),
            (Errno::EDQUOT, ErrorCode::Unavailable),
            (Errno::EROFS, ErrorCode::Unavailable),
            (Errno::EIO, ErrorCode::Internal),
            (Errno::EACCES, ErrorCode::Internal),
        ] {
            let e = Error::io(
                "write",
                "/state/vaults/app.age",
                io::Error::from_raw_os_error(errno as i32),
            );
            assert_eq!(e.code(), code, "{errno}");
        }
    }
}
