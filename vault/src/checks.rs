//! Opening a plaintext vault document: every check an open makes — its
//! format and version, that it is the project's, its seal (with the key),
//! every name, value, version number and time — and what it keeps of it
//! ([`Opened`]: the current values, and the versions unless the caller
//! serves current values only).
//!
//! Every error names the secret and the field at fault, never a value.

use crate::document::{self, DocSetBy, FORMAT, MIN_VERSION, VERSION};
use crate::error::VaultError;
use crate::keys::ProjectKey;
use crate::seal;
use crate::secrets::{Entry, Secrets, Version, Versions};
use crate::time::parse_time_ms;
use flux_protocol::SecretValue;
use flux_protocol::limits::{validate_secret_name, validate_value_len};

/// An opened vault: its revision and its secrets (with their versions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Opened {
    /// Raised by every write; 0 for a version 1 document.
    pub revision: u64,
    pub secrets: Secrets,
}

/// What an open keeps of a document besides its current values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// The versions too: version numbers, who set them, earlier values.
    Versions,
    /// Current values only (everything is still checked, seal included).
    Current,
}

/// Parses and checks a plaintext document: its format and version, that it
/// belongs to `project`, every name and value, its versions, and — when
/// `key` is given — its seal.
pub fn open_document(
    plaintext: &[u8],
    project: &str,
    key: Option<&ProjectKey>,
) -> Result<Opened, VaultError> {
    open_document_keeping(plaintext, project, key, Keep::Versions)
}

/// [`open_document`], keeping what `keep` says.
pub(crate) fn open_document_keeping(
    plaintext: &[u8],
    project: &str,
    key: Option<&ProjectKey>,
    keep: Keep,
) -> Result<Opened, VaultError> {
    let mut doc = document::parse(plaintext)?;
    if *doc.format != *FORMAT {
        return Err(VaultError::Schema(format!(
            "not a Flux Secrets vault document (format is {:?}, expected {FORMAT:?})",
            &*doc.format
        )));
    }
    if !(MIN_VERSION..=VERSION).contains(&doc.version) {
        return Err(VaultError::Schema(format!(
            "vault document version {} is not supported (this fluxd reads versions {MIN_VERSION} to {VERSION})",
            doc.version
        )));
    }
    match (doc.version, doc.revision) {
        (1, Some(_)) => {
            return Err(VaultError::Schema(
                "a version 1 document has no \"revision\" field".into(),
            ));
        }
        (2.., None) => {
            return Err(VaultError::Schema(format!(
                "a version {} document needs a \"revision\" field",
                doc.version
            )));
        }
        _ => {}
    }
    if *doc.project != *project {
        return Err(VaultError::WrongProject {
            found: doc.project.to_string(),
            expected: project.to_owned(),
        });
    }
    if let Some(key) = key {
        // The canonical form is the document without its seal.
        let sealed = doc.seal.take();
        seal::check(plaintext, sealed.as_deref(), &doc, key)?;
    }
    let version = doc.version;
    let mut entries = Vec::with_capacity(doc.secrets.len());
    let mut all_versions = Vec::new();
    for (name, entry) in &doc.secrets {
        let name: &str = name;
        validate_secret_name(name).map_err(|e| VaultError::Schema(e.to_string()))?;
        validate_value_len(entry.value.len())
            .map_err(|e| VaultError::Schema(format!("secret {name}: {e}")))?;
        let set_at_ms = parse_time(name, "set_at", &entry.set_at)?;
        if version == 1
            && (entry.version.is_some() || entry.set_by.is_some() || entry.history.is_some())
        {
            return Err(VaultError::Schema(format!(
                "secret {name}: a version 1 document has no \"version\", \"set_by\" or \"history\" field"
            )));
        }
        let current = entry.version.unwrap_or(1);
        if current == 0 {
            return Err(VaultError::Schema(format!(
                "secret {name}: version numbers start at 1"
            )));
        }
        let mut previous = Vec::new();
        let mut below = current;
        for old in entry.history.iter().flatten() {
            if old.version == 0 || old.version >= below {
                return Err(VaultError::Schema(format!(
                    "secret {name}: history version {} is out of order (each earlier version must be below the one before it, the current one is {current}, and numbers start at 1)",
                    old.version
                )));
            }
            below = old.version;
            validate_value_len(old.value.len()).map_err(|e| {
                VaultError::Schema(format!(
                    "secret {name}: history version {}: {e}",
                    old.version
                ))
            })?;
            let set_at_ms = parse_time(name, "history set_at", &old.set_at)?;
            if keep == Keep::Versions {
                previous.push(Version {
                    version: old.version,
                    set_at_ms,
                    value: SecretValue::from(&*old.value),
                    set_by: old.set_by.as_ref().map(DocSetBy::to_set_by),
                });
            }
        }
        entries.push((
            name.to_owned(),
            Entry {
                value: SecretValue::from(&*entry.value),
                set_at_ms,
            },
        ));
        if keep == Keep::Versions {
            all_versions.push((
                name.to_owned(),
                Versions {
                    current,
                    set_by: entry.set_by.as_ref().map(DocSetBy::to_set_by),
                    previous,
                },
            ));
        }
    }
    Ok(Opened {
        revision: doc.revision.unwrap_or(0),
        secrets: Secrets::from_sorted(entries, all_versions),
    })
}

fn parse_time(name: &str, field: &str, text: &str) -> Result<u64, VaultError> {
    parse_time_ms(text).ok_or_else(|| {
        VaultError::Schema(format!(
            "secret {name}: {field} is not an RFC 3339 UTC time like 2026-01-31T12:00:00Z"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hex;
    use crate::seal::SEAL_PREFIX;
    use crate::vault::reseal_document;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    #[test]
    fn version_1_documents_still_open_as_revision_0() {
        // A version 1 document as the previous release sealed it: no
        // revision field, the MAC over format, version, project, secrets.
        let key = ProjectKey::generate();
        let canonical = br#"{"format":"flux-secrets-vault","version":1,"project":"app","secrets":{"A":{"value":"1","set_at":"2026-01-01T00:00:00.000Z"}}}"#;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.seal_key()).unwrap();
        mac.update(canonical);
        let tag = hex::encode(&mac.finalize().into_bytes());
        let doc = format!(
            "{},\"seal\":\"{SEAL_PREFIX}{tag}\"}}",
            std::str::from_utf8(&canonical[..canonical.len() - 1]).unwrap()
        );
        let opened = open_document(doc.as_bytes(), "app", Some(&key)).unwrap();
        assert_eq!(opened.revision, 0);
        assert_eq!(opened.secrets["A"].value.expose(), "1");
        // Written again, it is version 2 at the next revision.
        let (_, resealed) = reseal_document(doc.as_bytes(), &key).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&resealed).unwrap();
        assert_eq!(
            (json["version"].as_u64(), json["revision"].as_u64()),
            (Some(2), Some(1))
        );
    }

    #[test]
    fn history_out_of_order_or_in_version_1_is_refused() {
        let bad = |doc: &str| {
            open_document(doc.as_bytes(), "app", None)
                .unwrap_err()
                .to_string()
        };
        let t = "2026-01-01T00:00:00Z";
        let err = bad(&format!(
            r#"{{"format":"flux-secrets-vault","version":2,"project":"app","revision":1,"secrets":{{"A":{{"value":"3","set_at":"{t}","version":3,"history":[{{"version":1,"value":"1","set_at":"{t}"}},{{"version":2,"value":"2","set_at":"{t}"}}]}}}}}}"#
        ));
        assert!(err.contains("out of order"), "{err}");
        let err = bad(&format!(
            r#"{{"format":"flux-secrets-vault","version":2,"project":"app","revision":1,"secrets":{{"A":{{"value":"3","set_at":"{t}","history":[{{"version":1,"value":"1","set_at":"{t}"}}]}}}}}}"#
        ));
        assert!(err.contains("out of order"), "no version means 1: {err}");
        let err = bad(&format!(
            r#"{{"format":"flux-secrets-vault","version":1,"project":"app","secrets":{{"A":{{"value":"3","set_at":"{t}","version":3}}}}}}"#
        ));
        assert!(err.contains("version 1 document"), "{err}");
        let err = bad(&format!(
            r#"{{"format":"flux-secrets-vault","version":2,"project":"app","revision":1,"secrets":{{"A":{{"value":"3","set_at":"{t}","version":2,"history":[{{"version":1,"value":"1","set_at":"{t}","set_by":{{"uid":1,"pid":2}}}}]}}}}}}"#
        ));
        assert!(
            err.contains("wrong field"),
            "unknown fields are refused: {err}"
        );
    }

    #[test]
    fn errors_never_quote_values() {
        let key = ProjectKey::generate();
        let bad = br#"{"format":"flux-secrets-vault","version":1,"project":"app",
            "secrets":{"A":{"value":12345678,"set_at":"2026-01-01T00:00:00Z"}}}"#;
        let err = open_document(bad, "app", Some(&key)).unwrap_err();
        assert!(!err.to_string().contains("12345678"), "{err}");
        assert!(
            (matches!(err, VaultError::Schema(_)) && err.to_string().contains("line")),
            "{err}"
        );
    }
}
