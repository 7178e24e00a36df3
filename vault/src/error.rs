//! [`VaultError`]: what this crate's vault and key functions fail with, by
//! kind, so that a caller can tell a wrong key from a tampered document.
//! Every message says what is wrong and where; none holds a value or a
//! key.

/// Why a vault could not be opened, sealed or encrypted, or a key file
/// not read. The message alone is what users see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The file does not decrypt with the project's key: another key, not
    /// an age file, truncated or corrupt.
    #[error("{0}")]
    Decrypt(String),
    /// The document is not sealed by the project's key, or its seal does
    /// not match: written by hand, altered, or sealed with another key.
    #[error("{0}")]
    BadSeal(String),
    /// The document is another project's.
    #[error("the document belongs to project {found:?}, not {expected:?}")]
    WrongProject { found: String, expected: String },
    /// Not a vault document this version reads: its format, version,
    /// JSON or fields.
    #[error("{0}")]
    Schema(String),
    /// Over the size a vault may hold.
    #[error("{0}")]
    TooLarge(String),
    /// Cannot encode or encrypt.
    #[error("{0}")]
    Encode(String),
    /// A key file does not hold the key it should (the audit key's
    /// length).
    #[error("{0}")]
    Key(String),
}
