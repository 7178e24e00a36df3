//! [`Error`]: everything the daemon's library can fail with, each variant
//! carrying its context (the path, the project, the name) and mapping to a
//! wire [`ErrorCode`]. No variant holds a secret value.

use flux_protocol::ErrorCode;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `.env` file `fluxd dev` serves, set once when it starts
/// ([`crate::dev::DevStore::new`]). A process serves either a dev store or
/// the production one, never both; with it set, a missing secret's hint
/// says to add it to that file, since dev mode refuses `fluxctl secrets
/// set`.
static DEV_ENV_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Makes [`Error::NotFound`]'s hint point to `env_file` (`fluxd dev`).
pub(crate) fn hint_env_file(env_file: &Path) {
    let _ = DEV_ENV_FILE.set(env_file.to_path_buf());
}

/// [`Error::NotFound`]'s message, with the remedy that works here.
fn not_found(project: &str, name: &str) -> String {
    match DEV_ENV_FILE.get() {
        Some(file) => format!(
            "secret {name} is not set in {file} (fluxd dev, project {project}): add it to {file} as {name}=…; edits are live at once",
            file = file.display()
        ),
        None => format!(
            "secret {name} is not set in project {project}; set it with `fluxctl secrets set {name} --project {project}`"
        ),
    }
}

/// A daemon failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad configuration or environment: `fluxd` exits 78 (EX_CONFIG) so
    /// systemd does not restart it in a loop.
    #[error("{0}")]
    Config(String),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot listen on {}: {reason}", path.display())]
    Bind { path: PathBuf, reason: String },
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{}", not_found(project, name))]
    NotFound { project: String, name: String },
    #[error(
        "unknown project {0}: list projects with `fluxctl projects list`, create it with `fluxctl projects create {0}`"
    )]
    UnknownProject(String),
    #[error("project {0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    LimitReached(String),
    #[error("permission denied: {op} on {} is not allowed for this user", match project { Some(p) => format!("project {p}"), None => "this daemon".to_owned() })]
    PermissionDenied {
        op: &'static str,
        project: Option<String>,
    },
    #[error("vault {}: {reason}", path.display())]
    Vault { path: PathBuf, reason: String },
    #[error("key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
    /// Nothing was done and a retry may work: the replicated store cannot
    /// be reached (fleet mode), or the audit log cannot be written.
    #[error("{0}")]
    Unavailable(String),
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
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::UnknownProject(_) => ErrorCode::UnknownProject,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::LimitReached(_) => ErrorCode::LimitReached,
            Self::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Config(_)
            | Self::Io { .. }
            | Self::Bind { .. }
            | Self::Vault { .. }
            | Self::Key { .. }
            | Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// True for errors that `fluxd` reports with exit status 78.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_))
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
