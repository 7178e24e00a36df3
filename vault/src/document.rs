//! The vault document's JSON shape, both ways: what a plaintext parses
//! into ([`Document`], borrowing from the plaintext) and what fluxd writes
//! ([`seal_document`]: compact JSON in canonical order, serialized once,
//! then sealed by [`crate::seal`]). [`crate::checks`] turns a parsed
//! document into secrets; [`crate::vault`] has the format's reference.
//!
//! Both shapes list the same fields in the same order, so what fluxd
//! writes and a parsed document re-encoded are the same canonical bytes:
//! keys in the order of the `format` example in [`crate::vault`], secrets
//! sorted by name, optional fields that are absent left absent.
//!
//! Errors give the JSON category and position, never the document's
//! text, which holds values.

use crate::error::VaultError;
use crate::keys::ProjectKey;
use crate::seal;
use crate::secrets::{Secrets, SetBy};
use crate::time::format_time_ms;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Deref;
use zeroize::{Zeroize, Zeroizing};

/// The `format` field of every vault document.
pub const FORMAT: &str = "flux-secrets-vault";
/// The document version this build writes.
pub const VERSION: u32 = 2;
/// The oldest document version this build reads.
pub const MIN_VERSION: u32 = 1;

/// A string of a parsed document: borrowed from the plaintext when it
/// needs no unescaping, else owned — and then wiped when dropped, since it
/// may be a value. (The plaintext itself is wiped by its owner.)
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Text<'a>(Cow<'a, str>);

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

/// A parsed document, as read: every field the format has, checked for
/// type only ([`crate::checks`] checks the rest).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document<'a> {
    #[serde(borrow)]
    pub(crate) format: Text<'a>,
    pub(crate) version: u32,
    #[serde(borrow)]
    pub(crate) project: Text<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) revision: Option<u64>,
    #[serde(borrow)]
    pub(crate) secrets: BTreeMap<Text<'a>, DocEntry<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) seal: Option<Text<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocEntry<'a> {
    #[serde(borrow)]
    pub(crate) value: Text<'a>,
    #[serde(borrow)]
    pub(crate) set_at: Text<'a>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) version: Option<u64>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) set_by: Option<DocSetBy<'a>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) history: Option<Vec<DocVersion<'a>>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocSetBy<'a> {
    pub(crate) uid: u32,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) exe: Option<Text<'a>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocVersion<'a> {
    pub(crate) version: u64,
    #[serde(borrow)]
    pub(crate) value: Text<'a>,
    #[serde(borrow)]
    pub(crate) set_at: Text<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub(crate) set_by: Option<DocSetBy<'a>>,
}

impl DocSetBy<'_> {
    /// Who set a version, owned.
    pub(crate) fn to_set_by(&self) -> SetBy {
        SetBy {
            uid: self.uid,
            exe: self.exe.as_deref().map(str::to_owned),
        }
    }
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

/// Parses a plaintext document, borrowing its strings where it can.
pub(crate) fn parse(plaintext: &[u8]) -> Result<Document<'_>, VaultError> {
    serde_json::from_slice(plaintext).map_err(|e| json_error(&e))
}

/// The project a plaintext document says it belongs to.
pub fn document_project(plaintext: &[u8]) -> Result<String, VaultError> {
    Ok(parse(plaintext)?.project.to_string())
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
    seal::append(&mut out, key);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::samples::{sample, versioned};

    #[test]
    fn a_parsed_document_re_encodes_to_what_was_written() {
        // The canonical form the seal covers is the same bytes whether
        // fluxd writes it or a parsed document is re-encoded.
        let key = ProjectKey::generate();
        for secrets in [sample(), versioned(), Secrets::new()] {
            let written = seal_document("app", &secrets, 9, &key).unwrap();
            let mut doc = parse(&written).unwrap();
            assert!(doc.seal.take().is_some());
            let canonical = serde_json::to_vec(&doc).unwrap();
            let at = written
                .windows(8)
                .rposition(|w| w == b",\"seal\":")
                .unwrap();
            assert!(
                canonical[..canonical.len() - 1] == written[..at],
                "the two shapes differ"
            );
        }
    }

    #[test]
    fn document_project_reads_the_project_and_json_errors_say_where() {
        let key = ProjectKey::generate();
        let doc = seal_document("my-app", &sample(), 1, &key).unwrap();
        assert_eq!(document_project(&doc).unwrap(), "my-app");
        let err =
            document_project(b"{\"format\": \"flux-secrets-vault\",\n \"sk-secret").unwrap_err();
        assert!(
            matches!(err, VaultError::Schema(_))
                && err
                    .to_string()
                    .starts_with("the JSON ends early at line 2 column ")
                && !err.to_string().contains("sk-secret"),
            "{err}"
        );
    }
}
