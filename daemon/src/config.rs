//! Configuration: where the daemon keeps its state and sockets, and the
//! limits that keep one bad client from hurting the others.
//!
//! Folders resolve in this order (the first that is set wins):
//!
//! | folder  | flag            | env                | systemd              | default                                            |
//! |---------|-----------------|--------------------|----------------------|----------------------------------------------------|
//! | state   | `--state-dir`   | `FLUX_STATE_DIR`   | `STATE_DIRECTORY`    | `$XDG_STATE_HOME/flux`, else `~/.local/state/flux` |
//! | runtime | `--runtime-dir` | `FLUX_RUNTIME_DIR` | `RUNTIME_DIRECTORY`  | `$XDG_RUNTIME_DIR/flux`, else `/tmp/flux-$UID`     |
//!
//! No root and no config file are needed to try fluxd.

use crate::error::{Error, Result};
use flux_protocol::paths::{self, env_path, systemd_dir};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the state folder.
pub const STATE_DIR_ENV: &str = "FLUX_STATE_DIR";

/// Everything the daemon needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub limits: Limits,
}

/// Bounds on what clients may cost the daemon.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections across all sockets; further clients wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// Time a new connection has to complete the handshake.
    pub handshake_timeout: Duration,
    /// Time a client has to finish a frame it started sending.
    pub frame_timeout: Duration,
    /// Time an idle connection (no partial frame) is kept open.
    pub idle_timeout: Duration,
    /// Time in-flight requests get to finish on shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(5),
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15 * 60),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl Config {
    /// Resolves the folders from explicit values, the environment and the
    /// defaults (see the module docs). Both folders must be absolute.
    pub fn resolve(state_dir: Option<&Path>, runtime_dir: Option<&Path>) -> Result<Self> {
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
        Ok(Self {
            state_dir,
            runtime_dir,
            limits: Limits::default(),
        })
    }
}
