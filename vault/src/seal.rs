//! The vault seal: HMAC-SHA256, under the seal key derived from the
//! project identity ([`crate::keys`]), over the document's canonical form
//! (the compact JSON of the document without its `seal` field, as
//! [`crate::document`] writes it). The seal is written as the last field,
//! `"seal":"hmac-sha256:<64 hex digits>"`.
//!
//! age does not authenticate who encrypted a file, so the seal is what
//! tells a vault fluxd (or `fluxctl vault seal`) wrote from one merely
//! encrypted to the project's public recipient.
//!
//! A document as fluxd writes it is checked on its bytes as they are; one
//! re-indented or reordered is checked on its parsed document, re-encoded.
//! The canonical form is fed straight into the MAC and never held in a
//! buffer of its own.

use crate::error::VaultError;
use crate::hex;
use crate::keys::ProjectKey;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use std::io::Write;
use zeroize::Zeroizing;

/// Prefix of the `seal` field.
pub const SEAL_PREFIX: &str = "hmac-sha256:";

/// A MAC under the project's seal key.
fn new_mac(key: &ProjectKey) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key.seal_key()).expect("HMAC takes a key of any length")
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

/// The MAC of `doc` as compact JSON: of its canonical form, when `doc` is
/// a parsed document whose seal was taken out.
pub(crate) fn mac(doc: &impl Serialize, key: &ProjectKey) -> Result<Hmac<Sha256>, VaultError> {
    let mut mac = new_mac(key);
    serde_json::to_writer(MacWriter(&mut mac), doc)
        .map_err(|e| VaultError::Encode(format!("cannot encode: {e}")))?;
    Ok(mac)
}

/// Seals `out`, a document's canonical form: its closing brace becomes
/// the `seal` field, the brace and a newline.
pub(crate) fn append(out: &mut Zeroizing<Vec<u8>>, key: &ProjectKey) {
    let mut mac = new_mac(key);
    mac.update(out);
    let tag = mac.finalize().into_bytes();
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    out.extend_from_slice(
        format!(",\"seal\":\"{SEAL_PREFIX}{}\"}}\n", hex::encode(&tag)).as_bytes(),
    );
}

/// Checks a document's seal with `key`: `seal` is its `seal` field, `doc`
/// the document parsed from `plaintext` with that field taken out.
pub(crate) fn check(
    plaintext: &[u8],
    seal: Option<&str>,
    doc: &impl Serialize,
    key: &ProjectKey,
) -> Result<(), VaultError> {
    let seal = seal.ok_or_else(|| {
        VaultError::BadSeal(
            "the document is not sealed by the project key (no \"seal\" field): \
             write it with `fluxctl vault seal`, not plain `age -r`"
                .into(),
        )
    })?;
    let tag = seal
        .strip_prefix(SEAL_PREFIX)
        .and_then(hex::decode)
        .ok_or_else(|| {
            VaultError::BadSeal(format!("the seal is not {SEAL_PREFIX}<64 hex digits>"))
        })?;
    // A document as fluxd writes it is its canonical form followed by the
    // seal: check those bytes as they are, and re-encode the parsed
    // document only when they are not (a re-indented document).
    let sealed_as_is = canonical_prefix(plaintext).is_some_and(|prefix| {
        let mut mac = new_mac(key);
        mac.update(prefix);
        mac.update(b"}");
        mac.verify_slice(&tag).is_ok()
    });
    if !sealed_as_is {
        mac(doc, key)?.verify_slice(&tag).map_err(|_| {
            VaultError::BadSeal(
                "the seal does not match: the document was altered or sealed with another key"
                    .into(),
            )
        })?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::samples::{sample, versioned};
    use crate::vault::{open_document, seal_document};

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
}
