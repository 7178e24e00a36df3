//! Configuration: where the daemon keeps its state and sockets, who may do
//! what ([`crate::access::policy`]), the audit log, and the limits that keep one bad
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
//! access policy, while limits, `[vaults]`, `[server] workers` and the audit
//! path take effect at start.

mod limits;

pub use limits::{Limits, LimitsFile, MAX_PROJECT_BYTES};

use crate::access::audit::{AuditConfig, ReadAudit};
use crate::access::policy::{Id, Policy, ProjectFile, RolesFile};
use crate::error::{ConfigError, Error, Result};
use flux_protocol::paths::{self, env_path, systemd_dir};
use limits::duration;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// What vaults keep (`[vaults]`).
    pub vaults: Vaults,
    /// Where scrapers read `GET /metrics` (`[metrics] listen`); none by
    /// default.
    pub metrics_listen: Option<MetricsListen>,
    /// Threads that serve connections (`[server] workers`).
    pub workers: usize,
}

/// Most `[server] workers` accepted.
pub const MAX_WORKERS: usize = 256;

/// Default of `[server] workers`: one per CPU. Fewer trade isolation for
/// efficiency: on 2 CPUs one worker served 16 and 64 well-behaved clients
/// with a p99 of 0.79-1.07× Redis's (two: 1.02-1.56×) and less CPU per
/// request, but next to abusive clients a well-behaved one's p99 rose to
/// 1.4-3.9× its unloaded p99 (two workers: 0.87-1.07×), since one thread
/// then does everyone's work (docs/CONFIG.md, docs/BENCHMARKS.md).
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// `[server]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Threads that serve connections; default [`default_workers`].
    pub workers: Option<usize>,
}

impl ServerFile {
    fn resolve(&self) -> Result<usize> {
        match self.workers {
            None => Ok(default_workers()),
            Some(n @ 1..=MAX_WORKERS) => Ok(n),
            Some(n) => Err(ConfigError::BadValue {
                key: "[server] workers",
                value: n.to_string(),
                help: format!(
                    "give 1 to {MAX_WORKERS} threads (leave it out for one per CPU, here {})",
                    default_workers()
                ),
            }
            .into()),
        }
    }
}

/// `[vaults]`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vaults {
    /// Earlier values kept per secret (0: none).
    pub keep_versions: usize,
}

/// Default of `[vaults] keep_versions`.
pub const DEFAULT_KEEP_VERSIONS: usize = 5;
/// Largest `[vaults] keep_versions`.
pub const MAX_KEEP_VERSIONS: usize = 100;

impl Default for Vaults {
    fn default() -> Self {
        Self {
            keep_versions: DEFAULT_KEEP_VERSIONS,
        }
    }
}

/// `[vaults]`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultsFile {
    /// Earlier values kept per secret; default 5, 0 keeps none.
    pub keep_versions: Option<usize>,
}

impl VaultsFile {
    fn resolve(&self) -> Result<Vaults> {
        let keep_versions = self.keep_versions.unwrap_or(DEFAULT_KEEP_VERSIONS);
        if keep_versions > MAX_KEEP_VERSIONS {
            return Err(ConfigError::BadValue {
                key: "[vaults] keep_versions",
                value: keep_versions.to_string(),
                help: format!(
                    "at most {MAX_KEEP_VERSIONS} earlier values are kept per secret (0 keeps none)"
                ),
            }
            .into());
        }
        Ok(Vaults { keep_versions })
    }
}

/// Where the optional metrics listener listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsListen {
    /// A loopback address and port.
    Tcp(std::net::SocketAddr),
    /// A Unix socket in the runtime folder.
    Unix(PathBuf),
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    /// `"127.0.0.1:9464"` (a loopback address), or a socket file name in
    /// the runtime folder (`"metrics.sock"`, or its absolute path).
    pub listen: Option<String>,
}

impl MetricsFile {
    fn resolve(&self, runtime_dir: &Path) -> Result<Option<MetricsListen>> {
        let Some(listen) = self.listen.as_deref() else {
            return Ok(None);
        };
        if let Ok(addr) = listen.parse::<std::net::SocketAddr>() {
            if !addr.ip().is_loopback() {
                return Err(ConfigError::BadValue {
                    key: "[metrics] listen",
                    value: format!("{listen:?}"),
                    help: "only a loopback address (127.0.0.1, ::1) or a Unix socket is allowed; scrape from this host, or use node_exporter's textfile collector (docs/DEPLOY.md)".into(),
                }
                .into());
            }
            return Ok(Some(MetricsListen::Tcp(addr)));
        }
        let path = Path::new(listen);
        let in_runtime = if path.is_absolute() {
            path.parent() == Some(runtime_dir) && path.file_name().is_some()
        } else {
            path.components().count() == 1 && !listen.contains(':')
        };
        if !in_runtime {
            return Err(ConfigError::BadValue {
                key: "[metrics] listen",
                value: format!("{listen:?}"),
                help: format!(
                    "give a loopback address and port (\"127.0.0.1:9464\") or a socket file name in the runtime folder (\"metrics.sock\", or {})",
                    runtime_dir.join("metrics.sock").display()
                ),
            }
            .into());
        }
        Ok(Some(MetricsListen::Unix(
            runtime_dir.join(path.file_name().unwrap_or_default()),
        )))
    }
}

/// Name of the systemd credential holding the host key.
pub const HOST_KEY_CREDENTIAL: &str = "fluxd-host-key";

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
    /// `[vaults]`: what vaults keep.
    #[serde(default)]
    pub vaults: VaultsFile,
    /// `[metrics]`: the optional scrape listener.
    #[serde(default)]
    pub metrics: MetricsFile,
    /// `[server]`: the threads that serve connections.
    #[serde(default)]
    pub server: ServerFile,
}

/// `[audit]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    /// Default true.
    pub enabled: Option<bool>,
    /// Default `<state>/audit.log`.
    pub path: Option<PathBuf>,
    /// `"summary"` (default): reads folded per connection, then per peer
    /// and interval; `"every"`: one line per read.
    pub reads: Option<String>,
    /// Longest a read summary waits before it is written (default 60s).
    pub summary_interval: Option<String>,
    /// Size no file passes (default 64 MiB).
    pub max_bytes: Option<u64>,
    /// Rotated files kept (default 5).
    pub keep: Option<u32>,
    /// Age below which a file removed by rotation is reported as lost
    /// entries (default 7 days; `"0s"`: never).
    pub keep_for: Option<String>,
}

impl AuditFile {
    fn resolve(&self, state_dir: &Path) -> Result<AuditConfig> {
        let d = AuditConfig::default();
        let reads = match self.reads.as_deref() {
            None | Some("summary") => ReadAudit::Summary,
            Some("every") => ReadAudit::Every,
            Some(other) => {
                return Err(ConfigError::BadValue {
                    key: "[audit] reads",
                    value: format!("{other:?}"),
                    help: "use \"summary\" or \"every\"".into(),
                }
                .into());
            }
        };
        let max_bytes = self.max_bytes.unwrap_or(d.max_bytes);
        if max_bytes < 4096 {
            return Err(ConfigError::AtLeast {
                key: "[audit] max_bytes",
                min: 4096,
            }
            .into());
        }
        Ok(AuditConfig {
            path: match self.enabled {
                Some(false) => None,
                _ => {
                    Some(self.path.clone().unwrap_or_else(|| {
                        flux_vault::layout::StateDir::new(state_dir).audit_log()
                    }))
                }
            },
            reads,
            summary_interval: duration(
                "[audit] summary_interval",
                &self.summary_interval,
                d.summary_interval,
            )?,
            max_bytes,
            keep: self.keep.unwrap_or(d.keep),
            keep_for: match self.keep_for.as_deref() {
                None => d.keep_for,
                Some(text) => {
                    humantime::parse_duration(text).map_err(|source| ConfigError::NotADuration {
                        key: "[audit] keep_for",
                        text: text.to_owned(),
                        like: "\"7d\" or \"24h\" (\"0s\" turns the check off)",
                        source,
                    })?
                }
            },
        })
    }
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::CannotRead {
            what: "the config file",
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| {
            ConfigError::Syntax {
                path: path.to_owned(),
                source,
            }
            .into()
        })
    }

    /// The access policy it describes, names resolved.
    pub fn policy(&self, path: &Path) -> Result<Policy> {
        Policy::resolve(
            nix::unistd::geteuid().as_raw(),
            &self.defaults,
            &self.projects,
            self.control_group.as_ref(),
        )
        .map_err(|reason| {
            ConfigError::Policy {
                path: path.to_owned(),
                reason,
            }
            .into()
        })
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
    /// `<runtime>/control.sock`.
    pub fn control_socket(&self) -> PathBuf {
        paths::control_socket(&self.runtime_dir)
    }

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
                return Err(ConfigError::NotAbsolute {
                    what,
                    dir: dir.clone(),
                }
                .into());
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
        // A configuration error names the file it came from.
        let in_file = |e: Error| match &config_file {
            Some(path) if e.is_config() => ConfigError::InFile {
                path: path.clone(),
                error: Box::new(e),
            }
            .into(),
            _ => e,
        };
        let limits = file.limits.resolve().map_err(in_file)?;
        let audit = file.audit.resolve(&state_dir).map_err(in_file)?;
        let vaults = file.vaults.resolve().map_err(in_file)?;
        let host_key = env_path("CREDENTIALS_DIRECTORY")
            .map(|d| d.join(HOST_KEY_CREDENTIAL))
            .filter(|p| p.exists());
        let store = crate::fleet::StoreChoice::resolve(None, &[], &file.store).map_err(|e| {
            match &config_file {
                Some(path) => ConfigError::InFile {
                    path: path.clone(),
                    error: Box::new(e),
                }
                .into(),
                None => e,
            }
        })?;
        let metrics_listen = file.metrics.resolve(&runtime_dir).map_err(in_file)?;
        let workers = file.server.resolve().map_err(in_file)?;
        Ok(Self {
            state_dir,
            runtime_dir,
            config_file,
            policy,
            limits,
            audit,
            host_key,
            store,
            vaults,
            metrics_listen,
            workers,
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
            return Err(ConfigError::NotAbsolute {
                what: "runtime",
                dir: base,
            }
            .into());
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
            vaults: Vaults::default(),
            metrics_listen: None,
            workers: default_workers(),
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

    #[test]
    fn keep_versions_defaults_to_5_and_is_bounded() {
        let parse = |text: &str| toml::from_str::<FileConfig>(text).unwrap().vaults.resolve();
        assert_eq!(parse("").unwrap().keep_versions, 5);
        assert_eq!(
            parse("[vaults]\nkeep_versions = 0\n")
                .unwrap()
                .keep_versions,
            0
        );
        let e = parse("[vaults]\nkeep_versions = 1000\n").unwrap_err();
        assert!(e.to_string().contains("at most 100"), "{e}");
        assert!(toml::from_str::<FileConfig>("[vaults]\nkeep = 1\n").is_err());
    }

    #[test]
    fn audit_keep_for_defaults_to_a_week_and_zero_turns_it_off() {
        let state = Path::new("/var/lib/flux");
        let parse = |text: &str| {
            toml::from_str::<FileConfig>(text)
                .unwrap()
                .audit
                .resolve(state)
        };
        let week = std::time::Duration::from_secs(7 * 24 * 3600);
        assert_eq!(parse("").unwrap().keep_for, week);
        assert_eq!(
            parse("[audit]\nkeep_for = \"24h\"\n").unwrap().keep_for,
            std::time::Duration::from_secs(24 * 3600)
        );
        assert!(
            parse("[audit]\nkeep_for = \"0s\"\n")
                .unwrap()
                .keep_for
                .is_zero()
        );
        let e = parse("[audit]\nkeep_for = \"a week\"\n").unwrap_err();
        assert!(e.to_string().contains("[audit] keep_for"), "{e}");
    }

    #[test]
    fn workers_default_to_one_per_cpu_and_are_bounded() {
        let parse = |text: &str| toml::from_str::<FileConfig>(text).unwrap().server.resolve();
        let cpus = std::thread::available_parallelism().unwrap().get();
        assert_eq!(parse("").unwrap(), cpus);
        assert_eq!(parse("[server]\nworkers = 3\n").unwrap(), 3);
        for bad in [0, MAX_WORKERS + 1] {
            let e = parse(&format!("[server]\nworkers = {bad}\n")).unwrap_err();
            assert!(e.to_string().contains("give 1 to 256 threads"), "{e}");
        }
        assert!(toml::from_str::<FileConfig>("[server]\nthreads = 1\n").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = toml::from_str::<FileConfig>("[defaults]\nreaderz = {}\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = toml::from_str::<FileConfig>("typo = 1\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = toml::from_str::<FileConfig>("[metrics]\nlisten_on = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn the_metrics_listener_is_loopback_or_a_socket_in_the_runtime_folder() {
        let run = Path::new("/run/flux");
        let resolve = |listen: &str| {
            MetricsFile {
                listen: Some(listen.into()),
            }
            .resolve(run)
        };
        assert_eq!(
            resolve("127.0.0.1:9464").unwrap(),
            Some(MetricsListen::Tcp("127.0.0.1:9464".parse().unwrap()))
        );
        assert!(matches!(
            resolve("[::1]:9464").unwrap(),
            Some(MetricsListen::Tcp(_))
        ));
        for path in ["metrics.sock", "/run/flux/metrics.sock"] {
            assert_eq!(
                resolve(path).unwrap(),
                Some(MetricsListen::Unix(run.join("metrics.sock")))
            );
        }
        for bad in [
            "0.0.0.0:9464",
            "10.0.0.1:9464",
            "/tmp/metrics.sock",
            "../metrics.sock",
            "sub/metrics.sock",
        ] {
            assert!(resolve(bad).is_err(), "{bad} was accepted");
        }
        assert_eq!(MetricsFile::default().resolve(run).unwrap(), None);
    }

    /// Every kind of configuration error prints the sentence operators
    /// (and scripts grepping fluxd's log) have always seen, and makes
    /// fluxd exit 78.
    #[test]
    fn configuration_errors_keep_their_exact_messages_and_exit_78() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let run = dir.path().join("run");
        let file = dir.path().join("fluxd.toml");
        let config = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Config::resolve(Some(&state), Some(&run), Some(&file))
                .map(drop)
                .unwrap_err()
        };
        let in_file = |msg: &str| format!("config file {}: {msg}", file.display());
        let soon = humantime::parse_duration("soon").unwrap_err();
        let week = humantime::parse_duration("a week").unwrap_err();
        let cases: Vec<(Error, String)> = vec![
            (
                config("[limits]\nidle_timeout = \"soon\"\n"),
                in_file(&format!(
                    "[limits] idle_timeout = \"soon\" is not a duration like \"5s\" or \"15m\": {soon}"
                )),
            ),
            (
                config("[limits]\nframe_timeout = \"0s\"\n"),
                in_file("[limits] frame_timeout must be more than zero"),
            ),
            (
                config("[audit]\nsummary_interval = \"soon\"\n"),
                in_file(&format!(
                    "[audit] summary_interval = \"soon\" is not a duration like \"5s\" or \"15m\": {soon}"
                )),
            ),
            (
                config("[audit]\nkeep_for = \"a week\"\n"),
                in_file(&format!(
                    "[audit] keep_for = \"a week\" is not a duration like \"7d\" or \"24h\" (\"0s\" turns the check off): {week}"
                )),
            ),
            (
                config("[audit]\nmax_bytes = 100\n"),
                in_file("[audit] max_bytes must be at least 4096"),
            ),
            (
                config("[audit]\nreads = \"some\"\n"),
                in_file("[audit] reads = \"some\": use \"summary\" or \"every\""),
            ),
            (
                config("[limits]\nmax_value_bytes = 0\n"),
                in_file(&format!(
                    "[limits] max_value_bytes must be 1 to {MAX_VALUE} (the protocol's limit)",
                    MAX_VALUE = flux_protocol::limits::MAX_VALUE_LEN
                )),
            ),
            (
                config("[limits]\nmax_request_bytes = 100\n"),
                in_file(
                    "[limits] max_request_bytes must be at least max_value_bytes + 1024 and at most 16 MiB",
                ),
            ),
            (
                config("[limits]\nmax_project_bytes = 1\n"),
                in_file(&format!(
                    "[limits] max_project_bytes must be at least max_value_bytes and at most {MAX_PROJECT_BYTES} (40 MiB)"
                )),
            ),
            (
                config("[limits]\nmax_secrets_per_project = 5000000\n"),
                in_file(
                    "[limits] max_secrets_per_project and max_project_bytes together allow a project larger than one 64 MiB answer: lower one of them",
                ),
            ),
            (
                config("[limits]\nmax_secrets_per_project = 0\n"),
                in_file("[limits] max_secrets_per_project must be at least 1"),
            ),
            (
                config("[limits]\nmax_connections = 0\n"),
                in_file("[limits] max_connections must be at least 1"),
            ),
            (
                config("[limits]\nmax_control_connections = 0\n"),
                in_file("[limits] max_control_connections must be at least 1"),
            ),
            (
                config("[limits]\nmax_control_connections_per_peer = 0\n"),
                in_file("[limits] max_control_connections_per_peer must be at least 1"),
            ),
            (
                config("[limits]\nmax_connections_per_project = 0\n"),
                in_file("[limits] max_connections_per_project must be at least 1"),
            ),
            (
                config("[vaults]\nkeep_versions = 101\n"),
                in_file(
                    "[vaults] keep_versions = 101: at most 100 earlier values are kept per secret (0 keeps none)",
                ),
            ),
            (
                config("[server]\nworkers = 0\n"),
                in_file(&format!(
                    "[server] workers = 0: give 1 to 256 threads (leave it out for one per CPU, here {})",
                    default_workers()
                )),
            ),
            (
                config("[metrics]\nlisten = \"0.0.0.0:9464\"\n"),
                in_file(
                    "[metrics] listen = \"0.0.0.0:9464\": only a loopback address (127.0.0.1, ::1) or a Unix socket is allowed; scrape from this host, or use node_exporter's textfile collector (docs/DEPLOY.md)",
                ),
            ),
            (
                config("[metrics]\nlisten = \"sub/m.sock\"\n"),
                in_file(&format!(
                    "[metrics] listen = \"sub/m.sock\": give a loopback address and port (\"127.0.0.1:9464\") or a socket file name in the runtime folder (\"metrics.sock\", or {})",
                    run.join("metrics.sock").display()
                )),
            ),
            (
                config("[defaults]\nreaders = { users = [\"no-such-user-x\"] }\n"),
                in_file(&{
                    let f: FileConfig =
                        toml::from_str("[defaults]\nreaders = { users = [\"no-such-user-x\"] }\n")
                            .unwrap();
                    let uid = nix::unistd::geteuid().as_raw();
                    Policy::resolve(uid, &f.defaults, &f.projects, None).unwrap_err()
                }),
            ),
            (
                config("typo = 1\n"),
                in_file(
                    &toml::from_str::<FileConfig>("typo = 1\n")
                        .unwrap_err()
                        .to_string(),
                ),
            ),
            (
                FileConfig::read(&dir.path().join("missing.toml")).unwrap_err(),
                format!(
                    "cannot read the config file {}: {}",
                    dir.path().join("missing.toml").display(),
                    std::fs::read_to_string(dir.path().join("missing.toml")).unwrap_err()
                ),
            ),
            (
                Config::resolve(Some(Path::new("state")), Some(&run), None)
                    .map(drop)
                    .unwrap_err(),
                "the state folder must be an absolute path, not state".into(),
            ),
            (
                Config::dev(Some(Path::new("run")), "app")
                    .map(drop)
                    .unwrap_err(),
                "the runtime folder must be an absolute path, not run".into(),
            ),
        ];
        for (i, (error, want)) in cases.iter().enumerate() {
            assert_eq!(error.to_string(), *want, "case {i}");
            assert!(
                error.is_config(),
                "case {i}: {error} is not a configuration error"
            );
        }
    }
}
