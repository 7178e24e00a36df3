//! A fleet host's identity: its own age X25519 key (`<state>/host.key`,
//! mode 0600, created at its first start), to which every project key it
//! may serve is wrapped; and recipients, the public half other hosts wrap
//! for.

use crate::error::{Error, Location, Result};
use age::x25519;
use flux_vault::keys::ProjectKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use tracing::info;
use zeroize::Zeroizing;

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

/// Loads this host's identity from `path`, creating it (mode 0600) when
/// missing.
pub fn host_identity(path: &Path) -> Result<ProjectKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let text = Zeroizing::new(text);
            crate::folders::check_private(path, "host key", 0o600)?;
            ProjectKey::parse(&text).map_err(|reason| Error::Key {
                location: Location::File(path.to_path_buf()),
                reason,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ProjectKey::generate();
            let created =
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
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
            Ok(key)
        }
        Err(e) => Err(Error::io("read host key", path, e)),
    }
}
