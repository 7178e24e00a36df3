//! The vault: a project's secrets as one sealed JSON document, encrypted
//! with age to the project's recipient. `docs/VAULT.md` is the reference.
//!
//! ```json
//! {
//!   "format": "flux-secrets-vault",
//!   "version": 2,
//!   "project": "my-app",
//!   "revision": 42,
//!   "secrets": {
//!     "OPENAI_API_KEY": {
//!       "value": "…", "set_at": "2026-11-27T21:49:25.123Z", "version": 3,
//!       "set_by": { "uid": 1000, "exe": "/usr/bin/fluxctl" },
//!       "history": [
//!         { "version": 2, "value": "…", "set_at": "…", "set_by": { "uid": 1000 } }
//!       ]
//!     }
//!   },
//!   "seal": "hmac-sha256:<64 hex digits>"
//! }
//! ```
//!
//! age does not authenticate who encrypted a file: anyone who knows the
//! public recipient can write a vault that decrypts. The seal closes that
//! gap: it is HMAC-SHA256, under a key derived from the project identity
//! ([`crate::keys`]), over the document without its `seal` field, serialized
//! as compact JSON with keys in the order above and secrets sorted by name
//! (what serde_json writes for these types). Optional fields that are
//! absent stay absent. Only a holder of the identity
//! can produce it, so a vault that is merely encrypted to the recipient is
//! refused like a corrupt one.
//!
//! `revision` is raised by every write. fluxd refuses a vault whose
//! revision is lower than the highest it has served for the project (a
//! rollback to an older copy), and remembers that highest revision outside
//! `vaults/` so a restart does not forget it. Version 1 documents (no
//! revision, revision 0) still open, and are written as version 2.
//!
//! Each entry also carries its version number, who set it (`set_by`: uid
//! and executable) and its earlier values (`history`, newest first, absent
//! when empty) — see [`crate::secrets`]. All of it is inside the sealed,
//! encrypted document, like the current value.
//!
//! Errors describe the failure (line and column for JSON) and never quote
//! the document, which holds values.
//!
//! This module is the vault's public face: it composes the parts, each in
//! a file of its own, and re-exports what callers use from them:
//!
//! - `document.rs`: the JSON shape, parsed and written ([`seal_document`],
//!   [`document_project`], [`FORMAT`], [`VERSION`]);
//! - `checks.rs`: what opening a document checks and keeps
//!   ([`open_document`], [`Opened`]);
//! - `seal.rs`: the HMAC seal ([`SEAL_PREFIX`]);
//! - `crypt.rs`: age encryption ([`encrypt`], [`encrypt_to`], [`decrypt`],
//!   [`MAX_PLAINTEXT`]);
//! - `error.rs`: [`VaultError`].
//!
//! Here: a vault file's bytes from secrets ([`seal`]) and back ([`open`],
//! [`open_current`]), and an operator-written document re-sealed
//! ([`reseal_document`]).

pub use crate::checks::{Opened, open_document};
pub use crate::crypt::{MAX_PLAINTEXT, decrypt, encrypt, encrypt_to};
pub use crate::document::{FORMAT, MIN_VERSION, VERSION, document_project, seal_document};
pub use crate::error::VaultError;
pub use crate::seal::SEAL_PREFIX;
pub use crate::secrets::{
    Entry, MAX_EXE_LEN, RollbackError, RolledBack, Secrets, SetBy, SetOutcome, Version, Versions,
};

use crate::checks::{Keep, open_document_keeping};
use crate::keys::ProjectKey;
use zeroize::Zeroizing;

/// Checks an operator-written document (all but the seal, which it may
/// lack) and returns its project and the document sealed with `key` at the
/// next revision: what `fluxctl vault seal` encrypts. (The next revision,
/// so a running fluxd takes the edited vault as newer than the one it was
/// opened from.)
pub fn reseal_document(
    plaintext: &[u8],
    key: &ProjectKey,
) -> Result<(String, Zeroizing<Vec<u8>>), VaultError> {
    let project = document_project(plaintext)?;
    let opened = open_document(plaintext, &project, None)?;
    let sealed = seal_document(&project, &opened.secrets, opened.revision + 1, key)?;
    Ok((project, sealed))
}

/// Seals and encrypts `secrets` at `revision`: the bytes of a vault file.
pub fn seal(
    project: &str,
    secrets: &Secrets,
    revision: u64,
    key: &ProjectKey,
) -> Result<Vec<u8>, VaultError> {
    let doc = seal_document(project, secrets, revision, key)?;
    // What fluxd writes, fluxd (and `fluxctl vault open`) can read back.
    if doc.len() as u64 > MAX_PLAINTEXT {
        return Err(VaultError::TooLarge(format!(
            "the vault document would be {} bytes, over the {MAX_PLAINTEXT} bytes a vault may hold",
            doc.len()
        )));
    }
    encrypt(&doc, key)
}

/// Decrypts and checks a vault file (the seal included).
pub fn open(ciphertext: &[u8], project: &str, key: &ProjectKey) -> Result<Opened, VaultError> {
    let plaintext = decrypt(ciphertext, key)?;
    open_document(&plaintext, project, Some(key))
}

/// [`open`], keeping only the current values: every version is checked
/// (and covered by the seal) but no earlier value is copied out — what a
/// server that serves current values from memory loads.
pub fn open_current(
    ciphertext: &[u8],
    project: &str,
    key: &ProjectKey,
) -> Result<Opened, VaultError> {
    let plaintext = decrypt(ciphertext, key)?;
    open_document_keeping(&plaintext, project, Some(key), Keep::Current)
}

/// Secrets the unit tests of the vault's files share.
#[cfg(test)]
pub(crate) mod samples {
    use super::*;

    /// Two secrets with one version each, one of them multi-line.
    pub(crate) fn sample() -> Secrets {
        let mut s = Secrets::new();
        s.insert(
            "B_KEY".into(),
            Entry {
                value: "sk-b".into(),
                set_at_ms: 1_700_000_000_123,
            },
        );
        s.insert(
            "A_KEY".into(),
            Entry {
                value: "line1\nline2 \"quoted\" ✓".into(),
                set_at_ms: 1_600_000_000_000,
            },
        );
        s
    }

    /// [`sample`] with earlier versions and who set them.
    pub(crate) fn versioned() -> Secrets {
        let mut s = sample();
        let by = Some(SetBy::new(1000, Some("/usr/bin/fluxctl")));
        s.set("B_KEY", "sk-b2".into(), 1_700_000_001_000, by.clone(), 5);
        s.set("B_KEY", "sk-b3".into(), 1_700_000_002_000, None, 5);
        s.set("C_KEY", "c".into(), 1_700_000_003_000, by, 5);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::samples::{sample, versioned};
    use super::*;
    use crate::{document, hex, seal as seal_field};
    use hmac::Mac;

    #[test]
    fn seal_and_open_round_trip() {
        let key = ProjectKey::generate();
        let file = seal("app", &sample(), 7, &key).unwrap();
        assert!(file.starts_with(b"age-encryption.org/v1\n"));
        assert!(!file.windows(4).any(|w| w == b"sk-b"), "value in the clear");
        let opened = open(&file, "app", &key).unwrap();
        assert_eq!((opened.revision, opened.secrets), (7, sample()));
    }

    #[test]
    fn versions_are_sealed_with_the_document() {
        let key = ProjectKey::generate();
        let file = seal("app", &versioned(), 4, &key).unwrap();
        assert!(!file.windows(4).any(|w| w == b"sk-b"), "value in the clear");
        let opened = open(&file, "app", &key).unwrap();
        assert_eq!(opened.secrets, versioned());
        let b: Vec<(u64, String)> = opened
            .secrets
            .versions_of("B_KEY")
            .unwrap()
            .into_iter()
            .map(|v| (v.version, v.value.expose().to_owned()))
            .collect();
        assert_eq!(
            b,
            [(3, "sk-b3".into()), (2, "sk-b2".into()), (1, "sk-b".into())]
        );

        // The history is covered by the seal.
        let doc = seal_document("app", &versioned(), 4, &key).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(json["secrets"]["B_KEY"]["version"], 3);
        assert_eq!(json["secrets"]["B_KEY"]["history"][0]["version"], 2);
        assert_eq!(
            json["secrets"]["B_KEY"]["history"][0]["set_by"]["uid"],
            1000
        );
        assert!(
            json["secrets"]["A_KEY"].get("history").is_none(),
            "absent when empty"
        );
        assert!(
            json["secrets"]["A_KEY"].get("set_by").is_none(),
            "absent when unknown"
        );
        let mut altered = json.clone();
        altered["secrets"]["B_KEY"]["history"][1]["value"] = "attacker".into();
        let err =
            open_document(&serde_json::to_vec(&altered).unwrap(), "app", Some(&key)).unwrap_err();
        assert!(
            (matches!(err, VaultError::BadSeal(_)) && err.to_string().contains("does not match")),
            "{err}"
        );
        let mut dropped = json.clone();
        dropped["secrets"]["B_KEY"]
            .as_object_mut()
            .unwrap()
            .remove("history");
        let err =
            open_document(&serde_json::to_vec(&dropped).unwrap(), "app", Some(&key)).unwrap_err();
        assert!(
            (matches!(err, VaultError::BadSeal(_)) && err.to_string().contains("does not match")),
            "{err}"
        );
        // Re-indented, it still opens; re-sealed, the history is kept.
        let pretty = serde_json::to_vec_pretty(&json).unwrap();
        assert_eq!(
            open_document(&pretty, "app", Some(&key)).unwrap().secrets,
            versioned()
        );
        let (_, resealed) = reseal_document(&pretty, &key).unwrap();
        assert_eq!(
            open_document(&resealed, "app", Some(&key)).unwrap().secrets,
            versioned()
        );
    }

    /// Seals any document (even one fluxd would refuse) with `key`.
    fn seal_anything(json: &serde_json::Value, key: &ProjectKey) -> Vec<u8> {
        let bytes = serde_json::to_vec(json).unwrap();
        let doc = document::parse(&bytes).unwrap();
        let canonical = serde_json::to_vec(&doc).unwrap();
        let tag = hex::encode(&seal_field::mac(&doc, key).unwrap().finalize().into_bytes());
        let text = std::str::from_utf8(&canonical).unwrap();
        format!(
            "{},\"seal\":\"{SEAL_PREFIX}{tag}\"}}",
            &text[..text.len() - 1]
        )
        .into_bytes()
    }

    #[test]
    fn open_current_checks_everything_and_keeps_current_values() {
        let key = ProjectKey::generate();
        let file = seal("app", &versioned(), 4, &key).unwrap();
        let current = open_current(&file, "app", &key).unwrap();
        assert!(!current.secrets.has_versions());
        assert_eq!(current.secrets, versioned().without_versions());
        assert_eq!(current.revision, 4);
        // A history out of order is refused here too, even when sealed.
        let doc = seal_document("app", &versioned(), 4, &key).unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        json.as_object_mut().unwrap().remove("seal");
        json["secrets"]["B_KEY"]["history"][0]["version"] = 7.into();
        let bad = encrypt(&seal_anything(&json, &key), &key).unwrap();
        let err = open_current(&bad, "app", &key).unwrap_err();
        assert!(
            (matches!(err, VaultError::Schema(_)) && err.to_string().contains("out of order")),
            "{err}"
        );
        let err = open(&bad, "app", &key).unwrap_err();
        assert!(
            (matches!(err, VaultError::Schema(_)) && err.to_string().contains("out of order")),
            "{err}"
        );
    }

    #[test]
    fn wrong_key_and_garbage_are_clear_errors() {
        let key = ProjectKey::generate();
        let file = seal("app", &sample(), 1, &key).unwrap();
        let err = open(&file, "app", &ProjectKey::generate()).unwrap_err();
        assert!(
            (matches!(err, VaultError::Decrypt(_))
                && err
                    .to_string()
                    .contains("not encrypted to this project's key")),
            "{err}"
        );
        let err = open(&file[..file.len() / 2], "app", &key).unwrap_err();
        assert!(
            (matches!(err, VaultError::Decrypt(_)) && err.to_string().contains("cannot decrypt")),
            "{err}"
        );
        assert!(open(b"garbage", "app", &key).is_err());
        let err = open(&file, "other", &key).unwrap_err();
        assert!(
            (matches!(err, VaultError::WrongProject { .. })
                && err.to_string().contains("belongs to project")),
            "{err}"
        );
    }
}
