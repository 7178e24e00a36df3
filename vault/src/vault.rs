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

use crate::keys::ProjectKey;
pub use crate::secrets::{
    Entry, MAX_EXE_LEN, RollbackError, RolledBack, Secrets, SetBy, SetOutcome, Version, Versions,
};
use crate::time::{format_time_ms, parse_time_ms};
use flux_protocol::SecretValue;
use flux_protocol::limits::{validate_secret_name, validate_value_len};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Deref;
use zeroize::{Zeroize, Zeroizing};

/// The `format` field of every vault document.
pub const FORMAT: &str = "flux-secrets-vault";
/// The document version this build writes.
pub const VERSION: u32 = 2;
/// The oldest document version this build reads.
pub const MIN_VERSION: u32 = 1;
/// Prefix of the `seal` field.
pub const SEAL_PREFIX: &str = "hmac-sha256:";
/// Largest plaintext a vault may decrypt to (bounds memory on a hostile file).
pub const MAX_PLAINTEXT: u64 = 256 * 1024 * 1024;

/// An opened vault: its revision and its secrets (with their versions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Opened {
    /// Raised by every write; 0 for a version 1 document.
    pub revision: u64,
    pub secrets: Secrets,
}

/// Why a vault could not be opened, sealed or encrypted — by kind, so that
/// a caller can tell a wrong key from a tampered document. Every message
/// says what is wrong and where; none holds a value.
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
}

/// A string of a parsed document: borrowed from the plaintext when it
/// needs no unescaping, else owned — and then wiped when dropped, since it
/// may be a value. (The plaintext itself is wiped by its owner.)
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Text<'a>(Cow<'a, str>);

impl Drop for Text<'_> {
    fn drop(&mut self) {
        if let Cow::Owned(s) = &mut self.0 {
            s.zeroize();
        }
    }
}

impl Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Text<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document<'a> {
    #[serde(borrow)]
    format: Text<'a>,
    version: u32,
    #[serde(borrow)]
    project: Text<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(borrow)]
    secrets: BTreeMap<Text<'a>, DocEntry<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    seal: Option<Text<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocEntry<'a> {
    #[serde(borrow)]
    value: Text<'a>,
    #[serde(borrow)]
    set_at: Text<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    set_by: Option<DocSetBy<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    history: Option<Vec<DocVersion<'a>>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocSetBy<'a> {
    uid: u32,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    exe: Option<Text<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocVersion<'a> {
    version: u64,
    #[serde(borrow)]
    value: Text<'a>,
    #[serde(borrow)]
    set_at: Text<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    set_by: Option<DocSetBy<'a>>,
}

fn json_error(e: &serde_json::Error) -> VaultError {
    // serde_json's own message may quote the offending data, which can be a
    // value: report the category and position only.
    let what = match e.classify() {
        serde_json::error::Category::Io => "read error",
        serde_json::error::Category::Syntax => "JSON syntax error",
        serde_json::error::Category::Data => "wrong field or type for a vault document",
        serde_json::error::Category::Eof => "the JSON ends early",
    };
    VaultError::Schema(format!("{what} at line {} column {}", e.line(), e.column()))
}

/// Feeds what serde_json writes straight into a MAC, so the canonical
/// form is never held in a buffer.
struct MacWriter<'a>(&'a mut Hmac<Sha256>);

impl Write for MacWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn mac(doc: &Document, key: &ProjectKey) -> Result<Hmac<Sha256>, VaultError> {
    debug_assert!(doc.seal.is_none());
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.seal_key())
        .expect("HMAC takes a key of any length");
    serde_json::to_writer(MacWriter(&mut mac), doc)
        .map_err(|e| VaultError::Encode(format!("cannot encode: {e}")))?;
    Ok(mac)
}

/// For a document that ends in `,"seal":"hmac-sha256:<64 hex>"}` (and
/// perhaps a newline), what comes before the seal field: the canonical
/// form without its closing brace, if the document is in canonical form.
fn canonical_prefix(plaintext: &[u8]) -> Option<&[u8]> {
    let body = plaintext.strip_suffix(b"\n").unwrap_or(plaintext);
    let field_len = ",\"seal\":\"".len() + SEAL_PREFIX.len() + 64 + "\"}".len();
    let at = body.len().checked_sub(field_len)?;
    let field = &body[at..];
    let hex = field
        .strip_prefix(b",\"seal\":\"")?
        .strip_prefix(SEAL_PREFIX.as_bytes())?
        .strip_suffix(b"\"}")?;
    hex.iter()
        .all(|b| b.is_ascii_hexdigit())
        .then_some(&body[..at])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// The shape of [`Document`] over borrowed data, for writing: the same
/// fields in the same order, so it serializes to the same canonical bytes.
#[derive(Serialize)]
struct DocumentOut<'a> {
    format: &'a str,
    version: u32,
    project: &'a str,
    revision: u64,
    secrets: BTreeMap<&'a str, EntryOut<'a>>,
}

#[derive(Serialize)]
struct EntryOut<'a> {
    value: &'a str,
    set_at: String,
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_by: Option<SetByOut<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    history: Vec<VersionOut<'a>>,
}

#[derive(Serialize)]
struct SetByOut<'a> {
    uid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    exe: Option<&'a str>,
}

#[derive(Serialize)]
struct VersionOut<'a> {
    version: u64,
    value: &'a str,
    set_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    set_by: Option<SetByOut<'a>>,
}

fn set_by_out(by: &Option<SetBy>) -> Option<SetByOut<'_>> {
    by.as_ref().map(|b| SetByOut {
        uid: b.uid,
        exe: b.exe.as_deref(),
    })
}

/// The sealed plaintext document for `secrets`: compact JSON, serialized
/// once. The canonical form (the document without `seal`) is what the MAC
/// covers; the seal is then appended as the last field. The buffer is sized
/// up front so the plaintext is not left behind by reallocation.
pub fn seal_document(
    project: &str,
    secrets: &Secrets,
    revision: u64,
    key: &ProjectKey,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let set_by_room = |b: &Option<SetBy>| {
        b.as_ref()
            .map_or(0, |b| 48 + 6 * b.exe.as_ref().map_or(0, String::len))
    };
    let mut room = 256 + project.len() * 6;
    let doc = DocumentOut {
        format: FORMAT,
        version: VERSION,
        project,
        revision,
        secrets: secrets
            .iter_versions()
            .map(|(name, e, versions)| {
                // JSON escapes a byte as at most 6 ("\u00XX").
                room += name.len() + 6 * e.value.len() + 96 + set_by_room(&versions.set_by);
                (
                    name.as_str(),
                    EntryOut {
                        value: e.value.expose(),
                        set_at: format_time_ms(e.set_at_ms),
                        version: versions.current,
                        set_by: set_by_out(&versions.set_by),
                        history: versions
                            .previous
                            .iter()
                            .map(|p| {
                                room += 6 * p.value.len() + 96 + set_by_room(&p.set_by);
                                VersionOut {
                                    version: p.version,
                                    value: p.value.expose(),
                                    set_at: format_time_ms(p.set_at_ms),
                                    set_by: set_by_out(&p.set_by),
                                }
                            })
                            .collect(),
                    },
                )
            })
            .collect(),
    };
    let mut out = Zeroizing::new(Vec::with_capacity(room));
    serde_json::to_writer(&mut *out, &doc)
        .map_err(|e| VaultError::Encode(format!("cannot encode: {e}")))?;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.seal_key())
        .expect("HMAC takes a key of any length");
    mac.update(&out);
    let tag = mac.finalize().into_bytes();
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    out.extend_from_slice(format!(",\"seal\":\"{SEAL_PREFIX}{}\"}}\n", hex(&tag)).as_bytes());
    Ok(out)
}

fn parse(plaintext: &[u8]) -> Result<Document<'_>, VaultError> {
    serde_json::from_slice(plaintext).map_err(|e| json_error(&e))
}

/// The project a plaintext document says it belongs to.
pub fn document_project(plaintext: &[u8]) -> Result<String, VaultError> {
    Ok(parse(plaintext)?.project.to_string())
}

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

/// What an open keeps of a document besides its current values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
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

fn open_document_keeping(
    plaintext: &[u8],
    project: &str,
    key: Option<&ProjectKey>,
    keep: Keep,
) -> Result<Opened, VaultError> {
    let mut doc = parse(plaintext)?;
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
        let seal = doc.seal.take().ok_or_else(|| {
            VaultError::BadSeal(
                "the document is not sealed by the project key (no \"seal\" field): \
                 write it with `fluxctl vault seal`, not plain `age -r`"
                    .into(),
            )
        })?;
        let tag = seal
            .strip_prefix(SEAL_PREFIX)
            .and_then(unhex)
            .ok_or_else(|| {
                VaultError::BadSeal(format!("the seal is not {SEAL_PREFIX}<64 hex digits>"))
            })?;
        // A document as fluxd writes it is its canonical form followed by
        // the seal: check those bytes as they are, and re-encode the parsed
        // document only when they are not (a re-indented document).
        let sealed_as_is = canonical_prefix(plaintext).is_some_and(|prefix| {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.seal_key())
                .expect("HMAC takes a key of any length");
            mac.update(prefix);
            mac.update(b"}");
            mac.verify_slice(&tag).is_ok()
        });
        if !sealed_as_is {
            mac(&doc, key)?.verify_slice(&tag).map_err(|_| {
                VaultError::BadSeal(
                    "the seal does not match: the document was altered or sealed with another key"
                        .into(),
                )
            })?;
        }
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
                    set_by: old.set_by.as_ref().map(set_by_in),
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
                    set_by: entry.set_by.as_ref().map(set_by_in),
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

fn set_by_in(by: &DocSetBy<'_>) -> SetBy {
    SetBy {
        uid: by.uid,
        exe: by.exe.as_deref().map(str::to_owned),
    }
}

/// Encrypts a plaintext to the project's recipient (binary age format).
pub fn encrypt(plaintext: &[u8], key: &ProjectKey) -> Result<Vec<u8>, VaultError> {
    encrypt_to(plaintext, key.recipient())
}

/// Encrypts a plaintext to one age X25519 recipient (binary age format):
/// a vault to its project, a project key to a host.
pub fn encrypt_to(
    plaintext: &[u8],
    recipient: &age::x25519::Recipient,
) -> Result<Vec<u8>, VaultError> {
    let enc = age::Encryptor::with_recipients(std::iter::once(recipient as &dyn age::Recipient))
        .map_err(|e| VaultError::Encode(format!("cannot encrypt: {e}")))?;
    let mut out = Vec::with_capacity(plaintext.len() + 256);
    let mut w = enc
        .wrap_output(&mut out)
        .map_err(|e| VaultError::Encode(format!("cannot encrypt: {e}")))?;
    w.write_all(plaintext)
        .and_then(|()| w.finish().map(drop))
        .map_err(|e| VaultError::Encode(format!("cannot encrypt: {e}")))?;
    Ok(out)
}

/// Decrypts an age file (binary or armored) with the project's identity.
pub fn decrypt(ciphertext: &[u8], key: &ProjectKey) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let armored = age::armor::ArmoredReader::new(ciphertext);
    let dec = age::Decryptor::new(armored).map_err(|e| VaultError::Decrypt(decrypt_reason(&e)))?;
    let reader = dec
        .decrypt(std::iter::once(key.identity() as &dyn age::Identity))
        .map_err(|e| VaultError::Decrypt(decrypt_reason(&e)))?;
    // The plaintext is shorter than the ciphertext (binary) or its armor:
    // sized up front, the buffer never moves, leaving no copy behind.
    let room =
        usize::try_from(MAX_PLAINTEXT).map_or(ciphertext.len(), |max| ciphertext.len().min(max));
    let mut out = Zeroizing::new(Vec::with_capacity(room));
    reader
        .take(MAX_PLAINTEXT + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            VaultError::Decrypt(format!(
                "cannot decrypt: the file is truncated or corrupt ({e})"
            ))
        })?;
    if out.len() as u64 > MAX_PLAINTEXT {
        return Err(VaultError::TooLarge(format!(
            "the plaintext exceeds {MAX_PLAINTEXT} bytes"
        )));
    }
    Ok(out)
}

fn decrypt_reason(e: &age::DecryptError) -> String {
    match e {
        age::DecryptError::NoMatchingKeys => {
            "cannot decrypt: the file is not encrypted to this project's key".into()
        }
        other => format!("cannot decrypt: not a valid age file ({other})"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Secrets {
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
    fn unsealed_or_altered_documents_are_refused() {
        let key = ProjectKey::generate();
        let doc = seal_document("app", &sample(), 3, &key).unwrap();
        let mut json: serde_json::Value = serde_json::from_slice(&doc).unwrap();

        let mut older = json.clone();
        older["revision"] = 2.into();
        let err =
            open_document(&serde_json::to_vec(&older).unwrap(), "app", Some(&key)).unwrap_err();
        assert!(
            (matches!(err, VaultError::BadSeal(_)) && err.to_string().contains("does not match")),
            "the revision is sealed: {err}"
        );

        let mut altered = json.clone();
        altered["secrets"]["B_KEY"]["value"] = "attacker".into();
        let err =
            open_document(&serde_json::to_vec(&altered).unwrap(), "app", Some(&key)).unwrap_err();
        assert!(
            (matches!(err, VaultError::BadSeal(_)) && err.to_string().contains("does not match")),
            "{err}"
        );

        json.as_object_mut().unwrap().remove("seal");
        let err =
            open_document(&serde_json::to_vec(&json).unwrap(), "app", Some(&key)).unwrap_err();
        assert!(
            (matches!(err, VaultError::BadSeal(_)) && err.to_string().contains("not sealed")),
            "{err}"
        );

        let other = ProjectKey::generate();
        let err = open_document(&doc, "app", Some(&other)).unwrap_err();
        assert!(
            (matches!(err, VaultError::BadSeal(_)) && err.to_string().contains("does not match")),
            "{err}"
        );
    }

    #[test]
    fn the_seal_is_checked_on_the_bytes_as_written_and_re_encoded() {
        let key = ProjectKey::generate();
        let doc = seal_document("app", &versioned(), 3, &key).unwrap();
        assert!(
            canonical_prefix(&doc).is_some(),
            "fluxd writes the canonical form"
        );
        assert!(open_document(&doc, "app", Some(&key)).is_ok());
        // The same bytes with a value changed: neither path accepts them.
        let text = std::str::from_utf8(&doc).unwrap().replace("sk-b3", "sk-b4");
        let err = open_document(text.as_bytes(), "app", Some(&key)).unwrap_err();
        assert!(
            (matches!(err, VaultError::BadSeal(_)) && err.to_string().contains("does not match")),
            "{err}"
        );
        // A field added before the seal breaks the canonical form; the
        // re-encoded document is what the seal is checked against.
        let text =
            std::str::from_utf8(&doc)
                .unwrap()
                .replacen("\"revision\":3,", "\"revision\":3, ", 1);
        assert!(open_document(text.as_bytes(), "app", Some(&key)).is_ok());
        // A seal that is not at the end is found by the parser.
        let json: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        let mut moved = serde_json::Map::new();
        moved.insert("seal".into(), json["seal"].clone());
        for (k, v) in json.as_object().unwrap() {
            moved.insert(k.clone(), v.clone());
        }
        let moved = serde_json::to_vec(&serde_json::Value::Object(moved)).unwrap();
        assert!(canonical_prefix(&moved).is_none());
        assert!(open_document(&moved, "app", Some(&key)).is_ok());
    }

    #[test]
    fn reformatting_keeps_the_seal_valid() {
        let key = ProjectKey::generate();
        let doc = seal_document("app", &sample(), 1, &key).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&doc).unwrap();
        let compact = serde_json::to_vec(&json).unwrap();
        assert_eq!(
            open_document(&compact, "app", Some(&key)).unwrap().secrets,
            sample()
        );
    }

    #[test]
    fn version_1_documents_still_open_as_revision_0() {
        // A version 1 document as the previous release sealed it: no
        // revision field, the MAC over format, version, project, secrets.
        let key = ProjectKey::generate();
        let canonical = br#"{"format":"flux-secrets-vault","version":1,"project":"app","secrets":{"A":{"value":"1","set_at":"2026-01-01T00:00:00.000Z"}}}"#;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.seal_key()).unwrap();
        mac.update(canonical);
        let tag = hex(&mac.finalize().into_bytes());
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

    fn versioned() -> Secrets {
        let mut s = sample();
        let by = Some(SetBy::new(1000, Some("/usr/bin/fluxctl")));
        s.set("B_KEY", "sk-b2".into(), 1_700_000_001_000, by.clone(), 5);
        s.set("B_KEY", "sk-b3".into(), 1_700_000_002_000, None, 5);
        s.set("C_KEY", "c".into(), 1_700_000_003_000, by, 5);
        s
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
        let doc = parse(&bytes).unwrap();
        let canonical = serde_json::to_vec(&doc).unwrap();
        let tag = hex(&mac(&doc, key).unwrap().finalize().into_bytes());
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
