//! Typed error codes carried in [`crate::message::ErrorReply`].
//!
//! A code is a `u32` on the wire, so a client maps it to an exception or an
//! exit code without matching strings, and a code this build does not know
//! (from a newer daemon) still decodes, as [`ErrorCode::Other`].

use serde::{Deserialize, Serialize};
use std::fmt;

/// What went wrong, as a number every client can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u32", into = "u32")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 1: the secret is not set.
    NotFound,
    /// 2: a secret or project name does not match the grammar.
    InvalidName,
    /// 3: a value, frame or list exceeds its limit.
    TooLarge,
    /// 4: the peer may not do this on this socket.
    PermissionDenied,
    /// 5: the project does not exist (or was deleted).
    UnknownProject,
    /// 6: the request is malformed, out of order, or sent to the wrong socket.
    BadRequest,
    /// 7: the daemon failed (disk, crypto); the message says what.
    Internal,
    /// 8: the client speaks another protocol version.
    VersionMismatch,
    /// 9: the project already exists.
    AlreadyExists,
    /// 10: a limit on connections, requests or secrets was reached.
    LimitReached,
    /// 11: the daemon cannot do this right now (its store is unreachable,
    /// the audit log cannot be written); nothing was changed: retry later.
    Unavailable,
    /// A code this build does not know.
    Other(u32),
}

impl ErrorCode {
    /// The number on the wire.
    pub fn as_u32(self) -> u32 {
        match self {
            Self::NotFound => 1,
            Self::InvalidName => 2,
            Self::TooLarge => 3,
            Self::PermissionDenied => 4,
            Self::UnknownProject => 5,
            Self::BadRequest => 6,
            Self::Internal => 7,
            Self::VersionMismatch => 8,
            Self::AlreadyExists => 9,
            Self::LimitReached => 10,
            Self::Unavailable => 11,
            Self::Other(n) => n,
        }
    }

    /// A short stable name, as used in `--json` output and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::InvalidName => "invalid_name",
            Self::TooLarge => "too_large",
            Self::PermissionDenied => "permission_denied",
            Self::UnknownProject => "unknown_project",
            Self::BadRequest => "bad_request",
            Self::Internal => "internal",
            Self::VersionMismatch => "version_mismatch",
            Self::AlreadyExists => "already_exists",
            Self::LimitReached => "limit_reached",
            Self::Unavailable => "unavailable",
            Self::Other(_) => "other",
        }
    }
}

impl From<u32> for ErrorCode {
    fn from(n: u32) -> Self {
        match n {
            1 => Self::NotFound,
            2 => Self::InvalidName,
            3 => Self::TooLarge,
            4 => Self::PermissionDenied,
            5 => Self::UnknownProject,
            6 => Self::BadRequest,
            7 => Self::Internal,
            8 => Self::VersionMismatch,
            9 => Self::AlreadyExists,
            10 => Self::LimitReached,
            11 => Self::Unavailable,
            n => Self::Other(n),
        }
    }
}

impl From<ErrorCode> for u32 {
    fn from(code: ErrorCode) -> u32 {
        code.as_u32()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_u32() {
        for n in 0..20 {
            assert_eq!(ErrorCode::from(n).as_u32(), n);
        }
    }
}
