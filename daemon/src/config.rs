//! Configuration: where the daemon keeps its state and sockets, who may do
//! what ([`crate::policy`]), the audit log, and the limits that keep one bad
//! client from hurting the others.
//!
//! Folders resolve in this order (the first that is set wins):
//!
//! | folder  | flag            | env                | systemd              | default                                            |
//! |---------|-----------------|--------------------|----------------------|----------------------------------------------------|
//! | state   | `--state-dir`   | `FLUX_STATE_DIR`   | `STATE_DIRECTORY`    | `$XDG_STATE_HOME/flux`, else `~/.local/state/flux` |
//! | runtime | `--runtime-dir` | `FLUX_RUNTIME_DIR` | `RUNTIME_DIRECTORY`  | `$XDG_RUNTIME_DIR/flux`, else `/tmp/flux-$UID`     |
//!
//! The config file is `--config`, else `FLUX_CONFIG`, else
//! `$CONFIGURATION_DIRECTORY/fluxd.toml` when it exists; none is needed. It
//! is TOML and unknown keys are errors (a typo must not silently open or
//! close access). `docs/CONFIG.md` documents every key; SIGHUP re-reads the
//! access policy, while limits and the audit path take effect at start.

use crate::audit::{AuditConfig, ReadAudit};
use crate::error::{Error, Result};
use crate::policy::{Id, Policy, ProjectFile, RolesFile};
use flux_protocol::limits::{MAX_REQUEST_FRAME_LEN, MAX_RESPONSE_FRAME_LEN, MAX_VALUE_LEN};
use flux_protocol::paths::{self, env_path, systemd_dir};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the state folder.
pub const STATE_DIR_ENV: &str = "FLUX_STATE_DIR";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "FLUX_CONFIG";

/// Everything the daemon needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    /// The config file read, if any (re-read on SIGHUP).
    pub config_file: Option<PathBuf>,
    pub policy: Policy,
    pub limits: Limits,
    /// The audit log: where, how reads are recorded, rotation.
    pub audit: AuditConfig,
    /// The host key that wraps project keys at rest:
    /// `$CREDENTIALS_DIRECTORY/fluxd-host-key` when systemd provides it.
    pub host_key: Option<PathBuf>,
    /// Where keys and vaults are kept (`[store]`, `--store`).
    pub store: crate::fleet::StoreChoice,
}

/// Name of the systemd credential holding the host key.
pub const HOST_KEY_CREDENTIAL: &str = "fluxd-host-key";

/// Largest `[limits] max_project_bytes`: even if every byte of a value
/// were escaped six-fold in the vault's JSON, the document stays under the
/// 256 MiB a vault may decrypt to.
pub const MAX_PROJECT_BYTES: usize = 40 * 1024 * 1024;

/// Bounds on what clients may cost the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request frame, checked before allocation.
    pub max_request_bytes: usize,
    /// Largest secret value.
    pub max_value_bytes: usize,
    /// Most secrets one project may hold.
    pub max_secrets_per_project: usize,
    /// Most bytes of names and values one project may hold. Bounded so a
    /// project's `GetAll` answer always fits the 64 MiB answer limit and
    /// its vault the 256 MiB a vault may decrypt to.
    pub max_project_bytes: usize,
    /// Open connections across all sockets; further clients wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// Open connections on the control socket, counted apart from the
    /// project sockets' so neither can crowd out the other; further
    /// clients wait in the listen backlog.
    pub max_control_connections: usize,
    /// Open connections on one project's socket; further ones are refused
    /// with `limit_reached`, so one project cannot starve the others.
    pub max_connections_per_project: usize,
    /// Requests per second one connection may make (0: no limit).
    pub requests_per_second: u32,
    /// Time a new connection has to complete the handshake.
    pub handshake_timeout: Duration,
    /// Time a client has to finish a frame it started sending.
    pub frame_timeout: Duration,
    /// Time a client has to take an answer (or event) off the socket; a
    /// client that stops reading is cut off after it.
    pub write_timeout: Duration,
    /// Time an idle connection (no partial frame) is kept open.
    pub idle_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: MAX_REQUEST_FRAME_LEN,
            max_value_bytes: MAX_VALUE_LEN,
            max_secrets_per_project: 100_000,
            max_project_bytes: 32 * 1024 * 1024,
            max_connections: 1024,
            max_control_connections: 64,
            max_connections_per_project: 512,
            requests_per_second: 100_000,
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15 * 60),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The config file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Group owning the control socket (mode 0660).
    pub control_group: Option<Id>,
    #[serde(default)]
    pub defaults: RolesFile,
    #[serde(default)]
    pub projects: BTreeMap<String, ProjectFile>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub audit: AuditFile,
    /// `[store]`: the local folder (default) or etcd (fleet mode).
    #[serde(default)]
    pub store: crate::fleet::StoreFile,
}

/// `[limits]`: each key overrides the default.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_request_bytes: Option<usize>,
    pub max_value_bytes: Option<usize>,
    pub max_secrets_per_project: Option<usize>,
    pub max_project_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub max_control_connections: Option<usize>,
    pub max_connections_per_project: Option<usize>,
    pub requests_per_second: Option<u32>,
    pub handshake_timeout: Option<String>,
    pub frame_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub shutdown_grace: Option<String>,
}

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// Default true.
    pub enabled: Option<bool>,
    /// Default `<state>/audit.log`.
    pub path: Option<PathBuf>,
    /// `"summary"` (default): one line per connection, name and result
    /// for reads; `"every"`: one line per read.
    pub reads: Option<String>,
    /// Longest a read summary waits before it is written (default 60s).
    pub summary_interval: Option<String>,
    /// Size at which the log is rotated (default 64 MiB).
    pub max_bytes: Option<u64>,
    /// Rotated files kept (default 5).
    pub keep: Option<u32>,
}

impl AuditFile {
    fn resolve(&self, state_dir: &Path) -> Result<AuditConfig> {
        let d = AuditConfig::default();
        let reads = match self.reads.as_deref() {
            None | Some("summary") => ReadAudit::Summary,
            Some("every") => ReadAudit::Every,
            Some(other) => {
                return Err(Error::Config(format!(
                    "[audit] reads = {other:?}: use \"summary\" or \"every\""
                )));
            }
        };
        let max_bytes = self.max_bytes.unwrap_or(d.max_bytes);
        if max_bytes < 4096 {
            return Err(Error::Config(
                "[audit] max_bytes must be at least 4096".into(),
            ));
        }
        Ok(AuditConfig {
            path: match self.enabled {
                Some(false) => None,
                _ => Some(
                    self.path
                        .clone()
                        .unwrap_or_else(|| state_dir.join("audit.log")),
                ),
            },
            reads,
            summary_interval: duration(
                "[audit] summary_interval",
                &self.summary_interval,
                d.summary_interval,
            )?,
            max_bytes,
            keep: self.keep.unwrap_or(d.keep),
        })
    }
}

fn duration(key: &str, value: &Option<String>, default: Duration) -> Result<Duration> {
    match value {
        None => Ok(default),
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(Error::Config(format!("{key} must be more than zero"))),
            Err(e) => Err(Error::Config(format!(
                "{key} = {text:?} is not a duration like \"5s\" or \"15m\": {e}"
            ))),
        },
    }
}

impl LimitsFile {
    fn resolve(&self) -> Result<Limits> {
        let d = Limits::default();
        let limits = Limits {
            max_request_bytes: self.max_request_bytes.unwrap_or(d.max_request_bytes),
            max_value_bytes: self.max_value_bytes.unwrap_or(d.max_value_bytes),
            max_secrets_per_project: self
                .max_secrets_per_project
                .unwrap_or(d.max_secrets_per_project),
            max_project_bytes: self.max_project_bytes.unwrap_or(d.max_project_bytes),
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            max_control_connections: self
                .max_control_connections
                .unwrap_or(d.max_control_connections),
            max_connections_per_project: self
                .max_connections_per_project
                .unwrap_or(d.max_connections_per_project),
            requests_per_second: self.requests_per_second.unwrap_or(d.requests_per_second),
            handshake_timeout: duration(
                "[limits] handshake_timeout",
                &self.handshake_timeout,
                d.handshake_timeout,
            )?,
            frame_timeout: duration(
                "[limits] frame_timeout",
                &self.frame_timeout,
                d.frame_timeout,
            )?,
            write_timeout: duration(
                "[limits] write_timeout",
                &self.write_timeout,
                d.write_timeout,
            )?,
            idle_timeout: duration("[limits] idle_timeout", &self.idle_timeout, d.idle_timeout)?,
            shutdown_grace: duration(
                "[limits] shutdown_grace",
                &self.shutdown_grace,
                d.shutdown_grace,
            )?,
        };
        let check = |ok: bool, msg: String| if ok { Ok(()) } else { Err(Error::Config(msg)) };
        check(
            (1..=MAX_VALUE_LEN).contains(&limits.max_value_bytes),
            format!("[limits] max_value_bytes must be 1 to {MAX_VALUE_LEN} (the protocol's limit)"),
        )?;
        check(
            limits.max_request_bytes >= limits.max_value_bytes + 1024
                && limits.max_request_bytes <= 16 * 1024 * 1024,
            "[limits] max_request_bytes must be at least max_value_bytes + 1024 and at most 16 MiB"
                .into(),
        )?;
        check(
            limits.max_secrets_per_project >= 1,
            "[limits] max_secrets_per_project must be at least 1".into(),
        )?;
        check(
            limits.max_project_bytes >= limits.max_value_bytes
                && limits.max_project_bytes <= MAX_PROJECT_BYTES,
            format!(
                "[limits] max_project_bytes must be at least max_value_bytes and at most {MAX_PROJECT_BYTES} (40 MiB)"
            ),
        )?;
        // A whole project's GetAll answer: 12 bytes, then 16 per secret
        // (two lengths) plus its name and value.
        check(
            12 + 16 * limits.max_secrets_per_project + limits.max_project_bytes
                <= MAX_RESPONSE_FRAME_LEN,
            "[limits] max_secrets_per_project and max_project_bytes together allow a project larger than one 64 MiB answer: lower one of them".into(),
        )?;
        check(
            limits.max_connections >= 1,
            "[limits] max_connections must be at least 1".into(),
        )?;
        check(
            limits.max_control_connections >= 1,
            "[limits] max_control_connections must be at least 1".into(),
        )?;
        check(
            limits.max_connections_per_project >= 1,
            "[limits] max_connections_per_project must be at least 1".into(),
        )?;
        Ok(limits)
    }
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the config file {}: {e}",
                path.display()
            ))
        })?;
        toml::from_str(&text)
            .map_err(|e| Error::Config(format!("config file {}: {e}", path.display())))
    }

    /// The access policy it describes, names resolved.
    pub fn policy(&self, path: &Path) -> Result<Policy> {
        Policy::resolve(
            nix::unistd::geteuid().as_raw(),
            &self.defaults,
            &self.projects,
            self.control_group.as_ref(),
        )
        .map_err(|e| Error::Config(format!("config file {}: {e}", path.display())))
    }
}

/// The config file to read: explicit, `FLUX_CONFIG`, or systemd's
/// configuration folder when it holds `fluxd.toml`.
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| env_path(CONFIG_ENV))
        .or_else(|| {
            systemd_dir("CONFIGURATION_DIRECTORY")
                .map(|d| d.join("fluxd.toml"))
                .filter(|p| p.exists())
        })
}

impl Config {
    /// Resolves the folders and reads the config file, if any (see the
    /// module docs). Both folders must be absolute.
    pub fn resolve(
        state_dir: Option<&Path>,
        runtime_dir: Option<&Path>,
        config_file: Option<&Path>,
    ) -> Result<Self> {
        let state_dir = state_dir
            .map(Path::to_path_buf)
            .or_else(|| env_path(STATE_DIR_ENV))
            .or_else(|| systemd_dir("STATE_DIRECTORY"))
            .or_else(|| env_path("XDG_STATE_HOME").map(|d| d.join("flux")))
            .or_else(|| env_path("HOME").map(|h| h.join(".local/state/flux")))
            .ok_or_else(|| {
                Error::Config(
                    "cannot choose a state folder: HOME is not set; pass --state-dir or set FLUX_STATE_DIR".into(),
                )
            })?;
        let runtime_dir = paths::runtime_dir(runtime_dir);
        for (what, dir) in [("state", &state_dir), ("runtime", &runtime_dir)] {
            if !dir.is_absolute() {
                return Err(Error::Config(format!(
                    "the {what} folder must be an absolute path, not {}",
                    dir.display()
                )));
            }
        }
        // Unix socket paths are limited to 107 bytes; leave room for a
        // project socket with a 64-byte name.
        let longest = paths::project_socket(&runtime_dir, &"p".repeat(64));
        if longest.as_os_str().len() > 107 {
            return Err(Error::Config(format!(
                "the runtime folder {} is too long for Unix socket paths (at most {} bytes); choose a shorter --runtime-dir",
                runtime_dir.display(),
                107 - (longest.as_os_str().len() - runtime_dir.as_os_str().len())
            )));
        }
        let config_file = config_path(config_file);
        let file = match &config_file {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let policy = match &config_file {
            Some(path) => file.policy(path)?,
            None => Policy::default_for(nix::unistd::geteuid().as_raw()),
        };
        let limits = file.limits.resolve().map_err(|e| match (e, &config_file) {
            (Error::Config(msg), Some(p)) => {
                Error::Config(format!("config file {}: {msg}", p.display()))
            }
            (e, _) => e,
        })?;
        let audit = file
            .audit
            .resolve(&state_dir)
            .map_err(|e| match (e, &config_file) {
                (Error::Config(msg), Some(p)) => {
                    Error::Config(format!("config file {}: {msg}", p.display()))
                }
                (e, _) => e,
            })?;
        let host_key = env_path("CREDENTIALS_DIRECTORY")
            .map(|d| d.join(HOST_KEY_CREDENTIAL))
            .filter(|p| p.exists());
        let store = crate::fleet::StoreChoice::resolve(None, &[], &file.store).map_err(|e| {
            match &config_file {
                Some(p) => Error::Config(format!("config file {}: {e}", p.display())),
                None => e,
            }
        })?;
        Ok(Self {
            state_dir,
            runtime_dir,
            config_file,
            policy,
            limits,
            audit,
            host_key,
            store,
        })
    }

    /// The configuration of `fluxd dev` for `project`: sockets under
    /// `<runtime>/dev/<project>/`, the built-in policy and limits, no state
    /// folder, no audit log.
    pub fn dev(runtime_dir: Option<&Path>, project: &str) -> Result<Self> {
        flux_protocol::limits::validate_project_name(project)
            .map_err(|e| Error::Config(e.to_string()))?;
        let base = paths::runtime_dir(runtime_dir);
        if !base.is_absolute() {
            return Err(Error::Config(format!(
                "the runtime folder must be an absolute path, not {}",
                base.display()
            )));
        }
        let runtime_dir = base.join("dev").join(project);
        let socket = paths::project_socket(&runtime_dir, project);
        if socket.as_os_str().len() > 107 {
            return Err(Error::Config(format!(
                "the socket path {} is too long for a Unix socket (107 bytes at most); choose a shorter --runtime-dir or project name",
                socket.display()
            )));
        }
        Ok(Self {
            state_dir: runtime_dir.clone(),
            runtime_dir,
            config_file: None,
            policy: Policy::default_for(nix::unistd::geteuid().as_raw()),
            limits: Limits::default(),
            audit: AuditConfig::default(),
            host_key: None,
            store: crate::fleet::StoreChoice::Local,
        })
    }

    /// Re-reads the access policy from the config file (SIGHUP).
    pub fn reload_policy(&self) -> Result<Policy> {
        match &self.config_file {
            Some(path) => FileConfig::read(path)?.policy(path),
            None => Ok(Policy::default_for(nix::unistd::geteuid().as_raw())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Limits> {
        let f: FileConfig = toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        f.limits.resolve()
    }

    #[test]
    fn limits_parse_and_are_checked() {
        let l = parse("[limits]\nidle_timeout = \"2m\"\nmax_secrets_per_project = 10\n").unwrap();
        assert_eq!(l.idle_timeout, Duration::from_secs(120));
        assert_eq!(l.max_secrets_per_project, 10);
        assert!(parse("[limits]\nmax_value_bytes = 70000\n").is_err());
        assert!(
            parse("[limits]\nidle_timeout = \"soon\"\n")
                .unwrap_err()
                .to_string()
                .contains("not a duration")
        );
        assert!(parse("[limits]\nframe_timeout = \"0s\"\n").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<FileConfig>("[defaults]\nreaderz = {}\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = toml::from_str::<FileConfig>("typo = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
