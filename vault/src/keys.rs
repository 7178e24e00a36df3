//! Project keys: one age X25519 identity per project.
//!
//! A key file is exactly what `age-keygen` writes — two comment lines and
//! the `AGE-SECRET-KEY-1…` line — so the stock `age -d -i <key>` opens the
//! project's vault. From the identity we also derive the vault seal key (see
//! `docs/VAULT.md`):
//!
//! ```text
//! seal_key   = HKDF-SHA256(salt = "flux-secrets/vault-seal/v1",
//!                          ikm  = the identity line, ASCII, as in the key file,
//!                          info = "", length = 32)
//! digest_key = HKDF-SHA256(salt = "flux-secrets/value-digest/v1",
//!                          ikm  = the identity line, info = "", length = 32)
//! ```
//!
//! The digest key gives each value a short keyed digest
//! ([`ProjectKey::digest`]) that operators can compare without seeing
//! values: equal values in one project have equal digests, and nothing
//! about a value can be learned from its digest without the project key.
//!
//! Everything secret here lives in zeroizing buffers, and `Debug` shows only
//! the public recipient.

use age::secrecy::ExposeSecret;
use age::x25519;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// Salt of the HKDF that derives the seal key from the identity.
pub const SEAL_KDF_SALT: &[u8] = b"flux-secrets/vault-seal/v1";
/// Salt of the HKDF that derives the value digest key from the identity.
pub const DIGEST_KDF_SALT: &[u8] = b"flux-secrets/value-digest/v1";
/// Hex digits in a value digest ([`ProjectKey::digest`]): 48 bits.
pub const DIGEST_HEX_LEN: usize = 12;

/// A project's identity, its public recipient and its derived seal and
/// digest keys.
pub struct ProjectKey {
    identity: x25519::Identity,
    recipient: x25519::Recipient,
    seal_key: Zeroizing<[u8; 32]>,
    digest_key: Zeroizing<[u8; 32]>,
}

impl ProjectKey {
    /// A new random identity.
    pub fn generate() -> Self {
        Self::from_identity(x25519::Identity::generate())
    }

    fn from_identity(identity: x25519::Identity) -> Self {
        let recipient = identity.to_public();
        let line = identity.to_string();
        let derive = |salt: &[u8]| {
            let mut key = Zeroizing::new([0u8; 32]);
            Hkdf::<Sha256>::new(Some(salt), line.expose_secret().as_bytes())
                .expand(b"", key.as_mut())
                .expect("32 bytes is a valid HKDF-SHA256 output length");
            key
        };
        Self {
            identity,
            recipient,
            seal_key: derive(SEAL_KDF_SALT),
            digest_key: derive(DIGEST_KDF_SALT),
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

    /// A value's keyed digest: the first [`DIGEST_HEX_LEN`] lowercase hex
    /// digits of HMAC-SHA256 under the digest key. Equal values of one
    /// project have equal digests; another project's key gives another.
    pub fn digest(&self, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.digest_key.as_ref())
            .expect("HMAC takes a key of any length");
        mac.update(value.as_bytes());
        let tag = mac.finalize().into_bytes();
        crate::hex::encode(&tag[..DIGEST_HEX_LEN / 2])
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
    fn digests_are_short_keyed_and_stable() {
        let key = ProjectKey::generate();
        let d = key.digest("sk-123");
        assert_eq!(d.len(), DIGEST_HEX_LEN);
        assert!(
            d.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(key.digest("sk-123"), d, "equal values, equal digests");
        assert_ne!(key.digest("sk-124"), d);
        let again = ProjectKey::parse(&key.to_file_contents("now")).unwrap();
        assert_eq!(again.digest("sk-123"), d, "derived from the identity alone");
        assert_ne!(
            ProjectKey::generate().digest("sk-123"),
            d,
            "another project"
        );
        assert_ne!(
            key.digest_key.as_ref(),
            key.seal_key().as_ref(),
            "a key of its own"
        );
    }

    /// The derivation as docs/VAULT.md states it, from an identity line.
    #[test]
    fn digest_matches_the_documented_derivation() {
        let key = ProjectKey::generate();
        let text = key.to_file_contents("now");
        let line = text.lines().nth(2).unwrap();
        let mut dk = [0u8; 32];
        Hkdf::<Sha256>::new(Some(b"flux-secrets/value-digest/v1"), line.as_bytes())
            .expand(b"", &mut dk)
            .unwrap();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&dk).unwrap();
        mac.update(b"value");
        let hex: String = mac.finalize().into_bytes()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(key.digest("value"), hex);
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
