//! Project keys: one age X25519 identity per project.
//!
//! A key file is exactly what `age-keygen` writes — two comment lines and
//! the `AGE-SECRET-KEY-1…` line — so the stock `age -d -i <key>` opens the
//! project's vault. From the identity we also derive the vault seal key (see
//! `docs/VAULT.md`):
//!
//! ```text
//! seal_key = HKDF-SHA256(salt = "flux-secrets/vault-seal/v1",
//!                        ikm  = the identity line, ASCII, as in the key file,
//!                        info = "", length = 32)
//! ```
//!
//! Everything secret here lives in zeroizing buffers, and `Debug` shows only
//! the public recipient.

use age::secrecy::ExposeSecret;
use age::x25519;
use hkdf::Hkdf;
use sha2::Sha256;
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// Salt of the HKDF that derives the seal key from the identity.
pub const SEAL_KDF_SALT: &[u8] = b"flux-secrets/vault-seal/v1";

/// A project's identity, its public recipient and its derived seal key.
pub struct ProjectKey {
    identity: x25519::Identity,
    recipient: x25519::Recipient,
    seal_key: Zeroizing<[u8; 32]>,
}

impl ProjectKey {
    /// A new random identity.
    pub fn generate() -> Self {
        Self::from_identity(x25519::Identity::generate())
    }

    fn from_identity(identity: x25519::Identity) -> Self {
        let recipient = identity.to_public();
        let line = identity.to_string();
        let mut seal_key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(SEAL_KDF_SALT), line.expose_secret().as_bytes())
            .expand(b"", seal_key.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            identity,
            recipient,
            seal_key,
        }
    }

    /// Parses a key file: comment lines (`#`) and blank lines are skipped,
    /// the first other line must be an `AGE-SECRET-KEY-1…` identity. The
    /// error never quotes the file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or("no identity line (AGE-SECRET-KEY-1…) in the key file")?;
        let identity = x25519::Identity::from_str(line).map_err(
            |_| "the identity line is not a valid age X25519 identity (AGE-SECRET-KEY-1…)",
        )?;
        Ok(Self::from_identity(identity))
    }

    /// The key file's contents, in `age-keygen`'s format.
    pub fn to_file_contents(&self, created: &str) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "# created: {created}\n# public key: {}\n{}\n",
            self.recipient,
            self.identity.to_string().expose_secret()
        ))
    }

    /// The identity, to decrypt vaults.
    pub fn identity(&self) -> &x25519::Identity {
        &self.identity
    }

    /// The public recipient, to encrypt vaults.
    pub fn recipient(&self) -> &x25519::Recipient {
        &self.recipient
    }

    /// The HMAC key that seals vault documents.
    pub fn seal_key(&self) -> &[u8; 32] {
        &self.seal_key
    }
}

impl fmt::Debug for ProjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectKey")
            .field("recipient", &self.recipient.to_string())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trips_and_derives_the_same_seal_key() {
        let key = ProjectKey::generate();
        let text = key.to_file_contents("2026-01-01T00:00:00Z");
        assert!(text.starts_with("# created: 2026-01-01T00:00:00Z\n# public key: age1"));
        let again = ProjectKey::parse(&text).unwrap();
        assert_eq!(again.recipient().to_string(), key.recipient().to_string());
        assert_eq!(again.seal_key(), key.seal_key());
        assert_ne!(
            ProjectKey::generate().seal_key(),
            key.seal_key(),
            "keys are independent"
        );
    }

    #[test]
    fn debug_shows_only_the_recipient() {
        let key = ProjectKey::generate();
        let text = key.to_file_contents("now");
        let secret_line = text.lines().nth(2).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(secret_line));
        assert!(shown.contains("age1"));
    }

    #[test]
    fn parse_errors_do_not_quote_the_file() {
        let err = ProjectKey::parse("# c\nAGE-SECRET-KEY-1NOTAKEY\n").unwrap_err();
        assert!(!err.contains("NOTAKEY"), "{err}");
        assert!(ProjectKey::parse("# only comments\n").is_err());
    }
}
