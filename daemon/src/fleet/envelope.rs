//! Signed envelopes: every value fleet mode writes to etcd is one, and a
//! host acts on nothing that is not a valid one.
//!
//! ```json
//! {"kind":"vault","key":"/flux/v2/fleet/vaults/app","version":42,
//!  "signer":"age1…","payload":"<base64>","sig":"<base64>"}
//! ```
//!
//! The Ed25519 signature covers, in this order, the bytes
//!
//! ```text
//! "flux-secrets/fleet-envelope/v1" 0x00 kind 0x00 key 0x00
//! version (8 bytes, big-endian) SHA-256(payload)
//! ```
//!
//! so an envelope is bound to its kind, to the etcd key it was written
//! under (a vault moved to another project's key does not verify), and to
//! its version, which only ever goes up for a given key: a host keeps the
//! highest version it accepted (on disk, with its sealed copy) and refuses
//! anything older, so putting an earlier envelope back — a rollback — is
//! refused like a forgery. Who may sign is the host list's business
//! ([`super::cache`]).

use super::identity::HostIdentity;
use super::layout::EtcdKey;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Domain of every envelope signature.
const DOMAIN: &[u8] = b"flux-secrets/fleet-envelope/v1";

/// What an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The fleet's id (payload: the id text).
    Fleet,
    /// The host list (payload: JSON list of host records).
    Hosts,
    /// A project's sealed vault (payload: the age file).
    Vault,
    /// A project key wrapped for one host (payload: the age file).
    Key,
    /// A project's deletion (payload: empty).
    Deleted,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Fleet => "fleet",
            Self::Hosts => "hosts",
            Self::Vault => "vault",
            Self::Key => "key",
            Self::Deleted => "deleted",
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    kind: Kind,
    key: String,
    version: u64,
    signer: String,
    payload: String,
    sig: String,
}

/// An envelope read from etcd, its signature not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Kind,
    pub key: String,
    pub version: u64,
    /// The recipient of the host that signed it.
    pub signer: String,
    pub payload: Vec<u8>,
    sig: Vec<u8>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Envelope")
            .field("kind", &self.kind)
            .field("key", &self.key)
            .field("version", &self.version)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

fn signed_bytes(kind: Kind, key: &str, version: u64, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(128);
    m.extend_from_slice(DOMAIN);
    m.push(0);
    m.extend_from_slice(kind.name().as_bytes());
    m.push(0);
    m.extend_from_slice(key.as_bytes());
    m.push(0);
    m.extend_from_slice(&version.to_be_bytes());
    m.extend_from_slice(&Sha256::digest(payload));
    m
}

/// Signs `payload` as `kind` under `key` at `version`: the bytes to put.
pub fn seal(kind: Kind, key: &EtcdKey, version: u64, payload: &[u8], by: &HostIdentity) -> Vec<u8> {
    let key = key.to_string();
    let sig = by
        .signing_key()
        .sign(&signed_bytes(kind, &key, version, payload));
    let wire = Wire {
        kind,
        key,
        version,
        signer: by.recipient(),
        payload: B64.encode(payload),
        sig: B64.encode(sig.to_bytes()),
    };
    serde_json::to_vec(&wire).expect("JSON of strings and numbers")
}

impl Envelope {
    /// Parses what etcd holds at `key`, expecting `kind`: an envelope
    /// written for another key or kind is refused here.
    pub fn parse(bytes: &[u8], kind: Kind, key: &EtcdKey) -> Result<Self, String> {
        let wire: Wire =
            serde_json::from_slice(bytes).map_err(|_| "not a signed envelope".to_owned())?;
        let key = key.to_string();
        if wire.kind != kind {
            return Err(format!(
                "a {} envelope where a {} one belongs",
                wire.kind.name(),
                kind.name()
            ));
        }
        if wire.key != key {
            return Err(format!(
                "an envelope signed for {} put under {key}",
                wire.key
            ));
        }
        let payload = B64
            .decode(&wire.payload)
            .map_err(|_| "the payload is not base64".to_owned())?;
        let sig = B64
            .decode(&wire.sig)
            .map_err(|_| "the signature is not base64".to_owned())?;
        Ok(Self {
            kind,
            key,
            version: wire.version,
            signer: wire.signer,
            payload,
            sig,
        })
    }

    /// True when `by` signed exactly this envelope.
    pub fn signed_by(&self, by: &VerifyingKey) -> bool {
        let Ok(sig) = Signature::from_slice(&self.sig) else {
            return false;
        };
        by.verify(
            &signed_bytes(self.kind, &self.key, self.version, &self.payload),
            &sig,
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_verifies_only_as_it_was_signed() {
        let host = HostIdentity::generate();
        let key = EtcdKey::vault("app");
        let bytes = seal(Kind::Vault, &key, 7, b"ciphertext", &host);
        let env = Envelope::parse(&bytes, Kind::Vault, &key).unwrap();
        assert_eq!(
            (env.version, env.payload.as_slice()),
            (7, &b"ciphertext"[..])
        );
        let me = host.signing_key().verifying_key();
        assert!(env.signed_by(&me));
        assert!(!env.signed_by(&HostIdentity::generate().signing_key().verifying_key()));
        // Moved to another project, or read as another kind: refused.
        assert!(Envelope::parse(&bytes, Kind::Vault, &EtcdKey::vault("other")).is_err());
        assert!(Envelope::parse(&bytes, Kind::Key, &key).is_err());
        // A changed version or payload breaks the signature.
        let mut wire: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        wire["version"] = 8.into();
        let bumped =
            Envelope::parse(&serde_json::to_vec(&wire).unwrap(), Kind::Vault, &key).unwrap();
        assert!(!bumped.signed_by(&me));
        assert!(Envelope::parse(b"raw age file", Kind::Vault, &key).is_err());
    }
}
