//! Test data: synthetic values, how to describe one without showing it, and
//! state folders built in the daemon's own format.
//!
//! Values are deterministic functions of a tag and a sequence number
//! ([`value`]), so a reader can check that what it read is exactly a value
//! that was written, and which one, without sharing a table with the
//! writer. Even though they are synthetic, no message ever prints a value:
//! [`describe`] gives its length and a short SHA-256 prefix.
//!
//! [`write_projects`] fills a state folder with N projects of M secrets
//! using `fluxd`'s own code — [`flux_vault::keys::ProjectKey`] for the key file
//! (age-keygen format), [`flux_vault::vault::seal`] for the sealed, encrypted
//! vault, and [`fluxd::store::LocalStore`] for the file names and the
//! revision record (`<state>/revisions/<project>`, which every project
//! fluxd creates has) — instead of 100,000 `Set` round trips that each
//! re-seal and fsync the whole vault. The key and vault files are written
//! without fsync (a benchmark fixture needs no durability). The callers then start the daemon on the folder and check
//! with `Status` that every project loaded, with the expected number of
//! secrets and no `last_error`, so a format drift fails loudly.

use anyhow::{Context, Result};
use flux_vault::keys::ProjectKey;
use flux_vault::vault::{self, Entry, Secrets};
use fluxd::store::{LocalStore, Store};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A value of exactly `len` bytes (ASCII) that encodes `tag` and `seq`.
/// `len` must be at least 24.
pub fn value(tag: &str, seq: u64, len: usize) -> String {
    let mut v = format!("{tag}:{seq:012}:");
    let mut state = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (len as u64);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    while v.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        v.push(ALPHABET[(state % ALPHABET.len() as u64) as usize] as char);
    }
    v.truncate(len);
    v
}

/// The value the `get` benchmark serves for values of `len` bytes: the
/// same in fluxd, Redis and the floor server (a separate process, which
/// only knows `len`).
pub fn bench_value(len: usize) -> String {
    value("get", len as u64, len)
}

/// The sequence number a [`value`] with `tag` carries, if it is one.
pub fn seq_of(tag: &str, v: &str) -> Option<u64> {
    let rest = v.strip_prefix(tag)?.strip_prefix(':')?;
    rest.get(..12)?.parse().ok()
}

/// A value described without its bytes: length and a SHA-256 prefix.
pub fn describe(v: &str) -> String {
    let digest = Sha256::digest(v.as_bytes());
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{} bytes, sha256 {hex}…", v.len())
}

/// The secret name of secret `i` in a generated project.
pub fn secret_name(i: usize) -> String {
    format!("SECRET_{i:05}")
}

/// The name of generated project `i`.
pub fn project_name(i: usize) -> String {
    format!("p{i:04}")
}

/// Writes `projects` projects named [`project_name`] with `secrets`
/// secrets each (values of `value_len` bytes) into `state_dir`, in the
/// daemon's format (see the module docs).
pub fn write_projects(
    state_dir: &Path,
    projects: usize,
    secrets: usize,
    value_len: usize,
) -> Result<()> {
    let store = LocalStore::open(state_dir).context("cannot open the state folder")?;
    let now = flux_vault::time::now_ms();
    for p in 0..projects {
        let name = project_name(p);
        let key = ProjectKey::generate();
        let mut map = Secrets::new();
        for s in 0..secrets {
            map.insert(
                secret_name(s),
                Entry {
                    value: value("fx", s as u64, value_len).into(),
                    set_at_ms: now,
                },
            );
        }
        let sealed = vault::seal(&name, &map, 1, &key)
            .map_err(|e| anyhow::anyhow!("cannot seal a vault: {e}"))?;
        let key_path = store.key_path(&name);
        write_private(
            &key_path,
            key.to_file_contents("2026-01-01T00:00:00Z").as_bytes(),
        )?;
        write_private(&store.vault_path(&name), &sealed)?;
        // The revision record every project fluxd makes has from its
        // creation on (a vault of revision 1 without one is reported as a
        // deleted record).
        store
            .raise_revision_floor(&name, 1)
            .with_context(|| format!("cannot write the revision record of {name}"))?;
    }
    Ok(())
}

/// Writes a file with mode 0600, as the daemon does.
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_length_and_carry_the_sequence() {
        for len in [24, 40, 4096] {
            let v = value("rot", 123, len);
            assert_eq!(v.len(), len);
            assert_eq!(seq_of("rot", &v), Some(123));
            assert_eq!(seq_of("other", &v), None);
        }
        assert_ne!(value("a", 1, 40), value("a", 2, 40));
    }

    #[test]
    fn describe_hides_the_value() {
        let v = value("x", 7, 40);
        let d = describe(&v);
        assert!(!d.contains(&v[..10]), "{d}");
        assert!(d.starts_with("40 bytes"), "{d}");
    }

    #[test]
    fn generated_vaults_open_with_the_daemon_code() {
        let dir = tempfile::tempdir().unwrap();
        write_projects(dir.path(), 2, 3, 40).unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        assert_eq!(store.projects().unwrap(), vec!["p0000", "p0001"]);
        let key = flux_vault::keys::ProjectKey::parse(&store.load_key("p0001").unwrap()).unwrap();
        let bytes = store.load_vault("p0001").unwrap().unwrap();
        let opened = vault::open(&bytes, "p0001", &key).unwrap();
        assert_eq!(opened.secrets.len(), 3);
        assert!(!store.revision_record_missing("p0001"));
        assert_eq!(store.revision_floor("p0001").unwrap(), 1);
    }
}
