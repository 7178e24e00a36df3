//! Finding the daemon and the project.
//!
//! The runtime folder resolves as fluxd's does, falling back to the system
//! daemon's `/run/flux` ([`flux_protocol::paths::client_runtime_dir`]).
//! The project comes from `--project`, else `FLUX_PROJECT`, else the `name`
//! in `./flux.json`. A project socket that cannot be reached is told apart
//! from a daemon that is not running by trying the control socket, so the
//! message names the real problem.

use crate::failure::{EXIT_NOT_FOUND, EXIT_USAGE, Failure, Result};
use flux_protocol::blocking::Client;
use flux_protocol::limits::validate_project_name;
use flux_protocol::paths;
use std::path::{Path, PathBuf};

/// Where to find fluxd and which project to act on.
#[derive(Debug, Clone)]
pub struct Target {
    pub runtime_dir: PathBuf,
    pub project: Option<String>,
}

impl Target {
    pub fn new(runtime_dir: Option<&Path>, project: Option<String>) -> Self {
        Self {
            runtime_dir: paths::client_runtime_dir(runtime_dir),
            project,
        }
    }

    pub fn control_socket(&self) -> PathBuf {
        paths::control_socket(&self.runtime_dir)
    }

    /// The project to act on, from the flag, the environment or `flux.json`.
    pub fn project(&self) -> Result<String> {
        let name = match &self.project {
            Some(p) => p.clone(),
            None => project_from_flux_json(Path::new("flux.json"))?.ok_or_else(|| {
                Failure::usage(
                    "no project given: pass --project NAME, set FLUX_PROJECT, or run where flux.json names it (`fluxctl init NAME` writes one)",
                )
            })?,
        };
        validate_project_name(&name).map_err(|e| Failure::usage(e.to_string()))?;
        Ok(name)
    }

    /// A connection to the control socket.
    pub fn control(&self) -> Result<Client> {
        Ok(Client::connect(self.control_socket())?)
    }

    /// A connection to `project`'s socket.
    pub fn client_of(&self, project: &str) -> Result<Client> {
        Ok(Client::connect(paths::project_socket(
            &self.runtime_dir,
            project,
        ))?)
    }

    /// A connection to the project's socket.
    pub fn project_client(&self) -> Result<(String, Client)> {
        let project = self.project()?;
        let socket = paths::project_socket(&self.runtime_dir, &project);
        match Client::connect(&socket) {
            Ok(client) => Ok((project, client)),
            Err(flux_protocol::ClientError::Connect { path, source })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Err(flux_protocol::ClientError::Connect { path, source }.into())
            }
            Err(e) if e.is_unreachable() => {
                // Is fluxd down, or is there no such project? When the
                // control socket is unreachable too, the project socket's
                // error is the one to show.
                let Ok(mut control) = self.control() else {
                    return Err(e.into());
                };
                let known = control.list_projects()?.iter().any(|p| p.name == project);
                if known {
                    Err(e.into())
                } else {
                    Err(Failure::new(
                        EXIT_NOT_FOUND,
                        format!(
                            "unknown project {project}: list projects with `fluxctl projects list`, create it with `fluxctl projects create {project}`"
                        ),
                    ))
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The `name` field of a `flux.json`, if the file exists.
pub fn project_from_flux_json(path: &Path) -> Result<Option<String>> {
    paths::project_in_manifest(path).map_err(|e| Failure::new(EXIT_USAGE, e))
}
