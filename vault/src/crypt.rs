//! age encryption of vaults and keys: a plaintext encrypted to one X25519
//! recipient (binary age format), and decrypted with a project's identity
//! into a zeroizing buffer that never moves, bounded by [`MAX_PLAINTEXT`].
//!
//! Errors say why a file does not decrypt (another key, not an age file,
//! truncated) and never quote it.

use crate::error::VaultError;
use crate::keys::ProjectKey;
use std::io::{Read, Write};
use zeroize::Zeroizing;

/// Largest plaintext a vault may decrypt to (bounds memory on a hostile file).
pub const MAX_PLAINTEXT: u64 = 256 * 1024 * 1024;

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
