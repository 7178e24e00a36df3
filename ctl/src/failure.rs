//! [`Failure`]: an error on its way to the terminal, with the exit status it
//! ends the process with. Statuses are part of the interface scripts rely on
//! (README, "Exit status"):
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | failure (daemon error; a file or stream that cannot be read or written) |
//! | 2 | usage: bad flags or arguments, invalid name, value too large or empty (without `--allow-empty`), input that does not parse, missing confirmation |
//! | 3 | not found: the secret or the project does not exist |
//! | 4 | fluxd is not reachable (the message names every socket tried) |
//! | 5 | permission denied |
//! | 6 | unavailable: nothing was changed, retry later (etcd unreachable, audit log not writable, disk full or read-only) |
//! | 7 | `status` only: a project cannot be served as stored, or fluxd reports a problem ([`crate::status`]) |

use flux_protocol::message::RequestKind;
use flux_protocol::{ClientError, ErrorCode};
use std::fmt;

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_FOUND: u8 = 3;
pub const EXIT_UNREACHABLE: u8 = 4;
pub const EXIT_DENIED: u8 = 5;
pub const EXIT_UNAVAILABLE: u8 = 6;

/// An error message and the exit status it maps to.
#[derive(Debug)]
pub struct Failure {
    pub exit: u8,
    pub message: String,
}

impl Failure {
    pub fn new(exit: u8, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(EXIT_USAGE, message)
    }

    pub fn general(message: impl Into<String>) -> Self {
        Self::new(EXIT_FAILURE, message)
    }

    /// fluxd answered a request of `kind` with a message of another kind.
    pub fn unexpected(kind: RequestKind) -> Self {
        Self::general(format!(
            "fluxd answered {} with an unexpected message",
            kind.op()
        ))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        if let ClientError::Connect { path, source } = &e
            && source.kind() == std::io::ErrorKind::PermissionDenied
        {
            return Self::new(
                EXIT_DENIED,
                format!(
                    "permission denied connecting to {}: ask an admin to add you to the group that owns that socket (socket_group in fluxd's config)",
                    path.display()
                ),
            );
        }
        let exit = match e.code() {
            Some(ErrorCode::NotFound | ErrorCode::UnknownProject) => EXIT_NOT_FOUND,
            Some(ErrorCode::PermissionDenied) => EXIT_DENIED,
            Some(ErrorCode::InvalidName | ErrorCode::TooLarge) => EXIT_USAGE,
            Some(ErrorCode::Unavailable) => EXIT_UNAVAILABLE,
            Some(_) => EXIT_FAILURE,
            None if e.is_unreachable() || matches!(e, ClientError::Untrusted(_)) => {
                EXIT_UNREACHABLE
            }
            None => EXIT_FAILURE,
        };
        Self::new(exit, e.to_string())
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unexpected_answer_names_the_request_by_its_op() {
        let f = Failure::unexpected(RequestKind::PrepareHostKey);
        assert_eq!(f.exit, EXIT_FAILURE);
        assert_eq!(
            f.message,
            "fluxd answered prepare_host_key with an unexpected message"
        );
    }
}
