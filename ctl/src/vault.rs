//! `fluxctl vault open / seal`: offline break-glass for operators who hold
//! a project key. No daemon is involved. `fluxctl vault restore` asks the
//! daemon to serve a vault file put back on purpose.
//!
//! - `open --identity KEY VAULT` decrypts a vault and prints its plaintext
//!   document (docs/VAULT.md), indented. A seal that does not verify is reported on
//!   stderr; the document is still printed, since recovering from a bad
//!   file is what break-glass is for.
//! - `seal --identity KEY [--output VAULT] < doc.json` checks a document,
//!   seals it with the key and encrypts it to the key's recipient: a vault
//!   fluxd accepts. `--output` replaces the file atomically (temp file,
//!   fsync, rename), so a running fluxd never sees half a vault; without it
//!   the vault goes to stdout, which must not be a terminal. The vault gets
//!   the revision after the document's, so fluxd takes it as newer than the
//!   vault it was opened from.
//! - `restore`: fluxd refuses a vault older than the newest it served (a
//!   rollback); after copying a backup into place on purpose, this tells
//!   the project's daemon to serve it (it is sealed again at a new
//!   revision). Project admins only; audited.

use crate::failure::{Failure, Result};
use crate::style::{done, done_stderr};
use crate::{out, out_json};
use flux_protocol::client::io_reason;
use flux_vault::keys::ProjectKey;
use flux_vault::vault;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use zeroize::Zeroizing;

pub(crate) fn restore(target: &crate::target::Target, json: bool) -> Result<()> {
    let (project, mut client) = target.project_client()?;
    let restored = client.restore_vault()?;
    if json {
        return out_json(&serde_json::json!({
            "project": project,
            "restored": true,
            "secrets": restored.secrets,
            "revision": restored.revision,
            "generation": restored.generation,
        }));
    }
    out(&format!(
        "{}\n",
        done(&format!(
            "Vault restored: project {project} serves the vault file now in place ({} secrets), sealed again at revision {}",
            restored.secrets, restored.revision
        ))
    ))
}

fn load_identity(path: &Path) -> Result<ProjectKey> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        Failure::general(format!(
            "cannot read key {}: {}",
            path.display(),
            io_reason(&e)
        ))
    })?);
    ProjectKey::parse(&text).map_err(|e| Failure::usage(format!("key {}: {e}", path.display())))
}

pub(crate) fn open(identity: &Path, vault_path: &Path) -> Result<()> {
    let key = load_identity(identity)?;
    let bytes = std::fs::read(vault_path).map_err(|e| {
        Failure::general(format!(
            "cannot read {}: {}",
            vault_path.display(),
            io_reason(&e)
        ))
    })?;
    let plaintext = vault::decrypt(&bytes, &key)
        .map_err(|e| Failure::general(format!("{}: {e}", vault_path.display())))?;
    match vault::document_project(&plaintext)
        .and_then(|project| vault::open_document(&plaintext, &project, Some(&key)))
    {
        Ok(_) => {}
        Err(e) => eprintln!("fluxctl: warning: {}: {e}", vault_path.display()),
    }
    // Shown indented for people; any formatting keeps the seal valid.
    let text = match serde_json::from_slice::<serde_json::Value>(&plaintext) {
        Ok(doc) => Zeroizing::new(serde_json::to_string_pretty(&doc).expect("JSON") + "\n"),
        Err(_) => Zeroizing::new(
            std::str::from_utf8(&plaintext)
                .map_err(|_| Failure::general("the vault's plaintext is not UTF-8"))?
                .to_owned(),
        ),
    };
    out(&text)
}

pub(crate) fn seal(identity: &Path, output: Option<&Path>) -> Result<()> {
    let key = load_identity(identity)?;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Err(Failure::usage(
            "pipe the vault document in: fluxctl vault seal --identity KEY --output VAULT < doc.json",
        ));
    }
    let mut doc = Zeroizing::new(Vec::new());
    stdin
        .lock()
        .read_to_end(&mut doc)
        .map_err(|e| Failure::general(format!("cannot read the document from stdin: {e}")))?;
    let (project, sealed) = vault::reseal_document(&doc, &key)
        .map_err(|e| Failure::usage(format!("the document cannot be sealed: {e}")))?;
    let bytes = vault::encrypt(&sealed, &key).map_err(|e| Failure::general(e.to_string()))?;
    match output {
        Some(path) => {
            flux_vault::files::write_atomic(path, &bytes, 0o600)
                .map_err(|e| Failure::general(e.to_string()))?;
            eprintln!(
                "{}",
                done_stderr(&format!(
                    "Vault sealed for project {project}: {}",
                    path.display()
                ))
            );
            Ok(())
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            if stdout.is_terminal() {
                return Err(Failure::usage(
                    "refusing to write a binary vault to a terminal: redirect stdout or pass --output VAULT",
                ));
            }
            stdout
                .write_all(&bytes)
                .and_then(|()| stdout.flush())
                .map_err(|e| Failure::general(format!("cannot write the vault: {e}")))
        }
    }
}
