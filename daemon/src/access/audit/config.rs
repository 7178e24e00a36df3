//! `[audit]` resolved: where the log is, how reads are recorded, how long
//! a summary waits, and the size and age bounds of rotation.

use std::path::PathBuf;
use std::time::Duration;

/// How reads are recorded (`[audit] reads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadAudit {
    /// Folded: per connection, then per peer and interval.
    #[default]
    Summary,
    /// One line per read.
    Every,
}

impl ReadAudit {
    /// The name in the config file and in `fluxctl status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Summary => "summary",
            Self::Every => "every",
        }
    }
}

/// Default of `[audit] keep_for`.
pub const DEFAULT_KEEP_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// `[audit]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The log file; `None` when auditing is disabled.
    pub path: Option<PathBuf>,
    pub reads: ReadAudit,
    /// Longest a summary waits before it is written.
    pub summary_interval: Duration,
    /// Size a file does not pass.
    pub max_bytes: u64,
    /// Rotated files kept.
    pub keep: u32,
    /// Age below which a file removed by rotation is reported as a loss
    /// (zero: never).
    pub keep_for: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: None,
            reads: ReadAudit::Summary,
            summary_interval: Duration::from_secs(60),
            max_bytes: 64 * 1024 * 1024,
            keep: 5,
            keep_for: DEFAULT_KEEP_FOR,
        }
    }
}
