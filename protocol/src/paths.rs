//! Where sockets live. `fluxd` and every client find the runtime folder the
//! same way, so a bare `fluxd` and a bare `fluxctl` meet without flags:
//!
//! 1. an explicit path (`--runtime-dir`);
//! 2. `FLUX_RUNTIME_DIR`;
//! 3. `RUNTIME_DIRECTORY`, set by systemd's `RuntimeDirectory=` (its first
//!    entry when there are several, separated by `:`);
//! 4. `$XDG_RUNTIME_DIR/flux`;
//! 5. `/tmp/flux-<uid>`.
//!
//! Inside it: `control.sock`, and `projects/<project>.sock` per project.
//!
//! Clients ([`client_runtime_dir`]) add one step: when nothing names the
//! folder and the per-user default has no `control.sock`, they use the
//! system daemon's `/run/flux` if it has one, so an operator's `fluxctl`
//! finds the fluxd that systemd runs without any setting.
//! Function processes are handed their project socket's path in
//! `FLUX_SECRETS_SOCKET`.

use std::env;
use std::path::{Path, PathBuf};

/// Environment variable naming the runtime folder.
pub const RUNTIME_DIR_ENV: &str = "FLUX_RUNTIME_DIR";
/// Environment variable naming a function process's project socket.
pub const SOCKET_ENV: &str = "FLUX_SECRETS_SOCKET";
/// File name of the control socket inside the runtime folder.
pub const CONTROL_SOCKET: &str = "control.sock";
/// Folder of the project sockets inside the runtime folder.
pub const PROJECTS_DIR: &str = "projects";

/// A non-empty environment variable.
pub fn env_path(var: &str) -> Option<PathBuf> {
    env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The first entry of a systemd `*_DIRECTORY` variable.
pub fn systemd_dir(var: &str) -> Option<PathBuf> {
    let value = env::var(var).ok()?;
    value.split(':').find(|s| !s.is_empty()).map(PathBuf::from)
}

/// The runtime folder, resolved in the order the module docs give.
pub fn runtime_dir(explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| env_path(RUNTIME_DIR_ENV))
        .or_else(|| systemd_dir("RUNTIME_DIRECTORY"))
        .or_else(|| env_path("XDG_RUNTIME_DIR").map(|d| d.join("flux")))
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/flux-{}", nix::unistd::getuid())))
}

/// The system daemon's runtime folder (systemd's `RuntimeDirectory=flux`).
pub const SYSTEM_RUNTIME_DIR: &str = "/run/flux";

/// The runtime folder as a client looks for it: [`runtime_dir`], falling
/// back to [`SYSTEM_RUNTIME_DIR`] when nothing was named explicitly and
/// only the system daemon is there.
pub fn client_runtime_dir(explicit: Option<&Path>) -> PathBuf {
    client_runtime_dir_with(explicit, Path::new(SYSTEM_RUNTIME_DIR))
}

fn client_runtime_dir_with(explicit: Option<&Path>, system: &Path) -> PathBuf {
    let named = explicit.is_some()
        || env_path(RUNTIME_DIR_ENV).is_some()
        || systemd_dir("RUNTIME_DIRECTORY").is_some();
    let dir = runtime_dir(explicit);
    if !named && !control_socket(&dir).exists() && control_socket(system).exists() {
        return system.to_path_buf();
    }
    dir
}

/// The file naming a folder's project (`fluxctl init` writes it).
pub const MANIFEST: &str = "flux.json";

/// Why a `flux.json` names no usable project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestError {
    /// The file is there but cannot be read (an I/O failure).
    Unreadable(String),
    /// It reads, but is not JSON or its `name` is not a string (bad input).
    Invalid(String),
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreadable(message) | Self::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ManifestError {}

/// The project `flux.json` at `path` names: `Ok(None)` when there is no
/// such file or it names none; an error (saying why) when it cannot be
/// read, is not JSON, or its `name` is not a string. `fluxctl` and
/// `fluxd dev` both find their default project this way.
pub fn project_in_manifest(path: &Path) -> Result<Option<String>, ManifestError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ManifestError::Unreadable(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        ManifestError::Invalid(format!("{} is not valid JSON: {e}", path.display()))
    })?;
    match json.get("name") {
        Some(serde_json::Value::String(name)) => Ok(Some(name.clone())),
        Some(_) => Err(ManifestError::Invalid(format!(
            "{}: \"name\" must be a string",
            path.display()
        ))),
        None => Ok(None),
    }
}

/// `<runtime>/control.sock`.
pub fn control_socket(runtime_dir: &Path) -> PathBuf {
    runtime_dir.join(CONTROL_SOCKET)
}

/// `<runtime>/projects/<project>.sock`.
pub fn project_socket(runtime_dir: &Path, project: &str) -> PathBuf {
    runtime_dir
        .join(PROJECTS_DIR)
        .join(format!("{project}.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_fall_back_to_the_system_daemon_only_when_nothing_is_named() {
        let system = tempfile::tempdir().unwrap();
        let explicit = tempfile::tempdir().unwrap();
        // No system daemon: the usual folder.
        assert_eq!(
            client_runtime_dir_with(Some(explicit.path()), system.path()),
            explicit.path()
        );
        std::fs::write(control_socket(system.path()), "").unwrap();
        // A folder named explicitly always wins.
        assert_eq!(
            client_runtime_dir_with(Some(explicit.path()), system.path()),
            explicit.path()
        );
        // Nothing named (when the test's environment names nothing either).
        if env_path(RUNTIME_DIR_ENV).is_none() && systemd_dir("RUNTIME_DIRECTORY").is_none() {
            let default = runtime_dir(None);
            let want = if control_socket(&default).exists() {
                default
            } else {
                system.path().to_path_buf()
            };
            assert_eq!(client_runtime_dir_with(None, system.path()), want);
        }
    }
}
