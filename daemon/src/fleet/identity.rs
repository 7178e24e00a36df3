//! A fleet host's identity: one secret (`<state>/host.key`, the text
//! `age-keygen` writes, mode 0600, created at the host's first start in
//! fleet mode) from which come
//!
//! - its age X25519 identity, to which every project key it may serve is
//!   wrapped (its *recipient* `age1…` names the host), and
//! - its Ed25519 signing key, with which it signs what it writes to etcd:
//!
//! ```text
//! signing seed = HKDF-SHA256(salt = "flux-secrets/host-signing/v1",
//!                            ikm  = the identity line, ASCII,
//!                            info = "", length = 32)
//! ```
//!
//! A host's **join token** — `<recipient>:<signing key, base64url>` — is
//! what an operator carries to a host of the fleet (`fluxctl hosts add`):
//! both halves, so a host added under its recipient cannot be impersonated
//! by someone who wrote another signing key next to it. The **fleet id**
//! (`fleet:<key, base64url>`) is the fleet's operator key, which is no
//! host's: the trust root every host of the fleet pins, and the one key
//! that signs the host list ([`flux_vault::membership`]).

use crate::error::{Error, Location, Result};
use age::secrecy::ExposeSecret;
use age::x25519;
use ed25519_dalek::{SigningKey, VerifyingKey};
use flux_vault::keys::ProjectKey;
use hkdf::Hkdf;
use sha2::Sha256;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use tracing::info;
use zeroize::Zeroizing;

/// Salt of the HKDF that derives a host's signing key.
pub const SIGNING_KDF_SALT: &[u8] = b"flux-secrets/host-signing/v1";
pub use flux_vault::membership::{FLEET_ID_PREFIX, HostRecord, fleet_id, key_text};

/// Parses a join token (`age1…:<signing key>`), checking both halves.
pub fn parse_join_token(token: &str) -> Result<HostRecord> {
    let host = HostRecord::parse_join_token(token).map_err(Error::BadRequest)?;
    parse_recipient(&host.recipient)?;
    Ok(host)
}

/// The operator key a fleet id names.
pub fn parse_fleet_id(text: &str) -> Result<VerifyingKey> {
    flux_vault::membership::parse_fleet_id(text).map_err(Error::Config)
}

/// This host: its age identity and its signing key.
pub struct HostIdentity {
    age: ProjectKey,
    signing: SigningKey,
}

impl std::fmt::Debug for HostIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostIdentity")
            .field("recipient", &self.recipient())
            .finish_non_exhaustive()
    }
}

impl HostIdentity {
    fn from_key(age: ProjectKey) -> Self {
        let line = Zeroizing::new(age.identity().to_string().expose_secret().to_owned());
        let mut seed = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(SIGNING_KDF_SALT), line.as_bytes())
            .expand(b"", seed.as_mut())
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Self {
            signing: SigningKey::from_bytes(&seed),
            age,
        }
    }

    /// A new identity, for tests.
    pub fn generate() -> Self {
        Self::from_key(ProjectKey::generate())
    }

    /// Loads this host's identity from `path`, creating it (mode 0600)
    /// when missing.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let text = Zeroizing::new(text);
                crate::folders::check_private(path, "host key", 0o600)?;
                let key = ProjectKey::parse(&text).map_err(|reason| Error::Key {
                    location: Location::File(path.to_path_buf()),
                    reason,
                })?;
                Ok(Self::from_key(key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = ProjectKey::generate();
                let created = flux_vault::time::created_stamp();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| Error::io("create host key", path, e))?;
                file.write_all(key.to_file_contents(&created).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| Error::io("write host key", path, e))?;
                info!(path = %path.display(), recipient = %key.recipient(), "created this host's fleet identity");
                Ok(Self::from_key(key))
            }
            Err(e) => Err(Error::io("read host key", path, e)),
        }
    }

    /// This host's recipient, `age1…`.
    pub fn recipient(&self) -> String {
        self.age.recipient().to_string()
    }

    /// The age identity that unwraps project keys.
    pub fn age(&self) -> &ProjectKey {
        &self.age
    }

    /// The key this host signs with.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// This host as the host list records it.
    pub fn record(&self) -> HostRecord {
        HostRecord {
            recipient: self.recipient(),
            signing_key: key_text(&self.signing.verifying_key()),
        }
    }
}

/// Wraps a project key for one host: age-encrypted to its recipient.
pub fn wrap_for(plain: &[u8], recipient: &x25519::Recipient) -> Result<Vec<u8>> {
    flux_vault::vault::encrypt_to(plain, recipient)
        .map_err(|e| Error::Internal(format!("cannot wrap a project key: {e}")))
}

/// Parses an age recipient (`age1…`).
pub fn parse_recipient(text: &str) -> Result<x25519::Recipient> {
    x25519::Recipient::from_str(text.trim()).map_err(|e| {
        Error::BadRequest(format!(
            "{:?} is not an age X25519 recipient (age1…): {e}",
            text.trim()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signing_key_follows_from_the_host_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.key");
        let first = HostIdentity::load_or_create(&path).unwrap();
        let again = HostIdentity::load_or_create(&path).unwrap();
        assert_eq!(first.record(), again.record());
        assert_ne!(first.record(), HostIdentity::generate().record());
    }

    #[test]
    fn join_tokens_round_trip() {
        let me = HostIdentity::generate();
        let token = me.record().join_token();
        assert_eq!(parse_join_token(&token).unwrap(), me.record());
        let err = parse_join_token(&me.recipient()).unwrap_err();
        assert!(err.to_string().contains("not a join token"), "{err}");
        assert!(parse_fleet_id("nonsense").is_err());
    }
}
