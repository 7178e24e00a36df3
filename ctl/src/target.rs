//! Finding the daemon and the project.
//!
//! The runtime folder is the one `--runtime-dir`, `FLUX_RUNTIME_DIR` or
//! systemd's `RUNTIME_DIRECTORY` names. When none does, fluxctl searches
//! two places in order: the per-user default a bare `fluxd` uses
//! (`$XDG_RUNTIME_DIR/flux`, else `/tmp/flux-$UID`), then the system
//! service's `/run/flux`. The first whose socket answers is used; when
//! none does, the error names every socket tried and how to name the
//! folder. A socket that refuses the user (permission denied, or one that
//! fails the trust check) ends the search with that error: it is fluxd
//! answering, not a missing one.
//!
//! The project comes from `--project`, else `FLUX_PROJECT`, else the `name`
//! in `./flux.json`. A project socket that cannot be reached is told apart
//! from a daemon that is not running by trying the control socket, so the
//! message names the real problem.

use crate::failure::{EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE, Failure, Result};
use flux_protocol::ClientError;
use flux_protocol::blocking::Client;
use flux_protocol::limits::validate_project_name;
use flux_protocol::paths::{self, RUNTIME_DIR_ENV, SYSTEM_RUNTIME_DIR};
use std::path::{Path, PathBuf};

/// Where a candidate runtime folder comes from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--runtime-dir`.
    Flag,
    /// `FLUX_RUNTIME_DIR`.
    Env,
    /// systemd's `RUNTIME_DIRECTORY`.
    Systemd,
    /// The per-user default of a bare `fluxd`.
    UserDefault,
    /// The system service's `/run/flux`.
    System,
}

impl Origin {
    fn describe(self) -> &'static str {
        match self {
            Self::Flag => "named by --runtime-dir",
            Self::Env => "named by FLUX_RUNTIME_DIR",
            Self::Systemd => "named by RUNTIME_DIRECTORY",
            Self::UserDefault => "your own fluxd's default",
            Self::System => "the system service's",
        }
    }
}

/// Where to find fluxd and which project to act on.
#[derive(Debug, Clone)]
pub struct Target {
    /// Runtime folders to try, in order, and where each comes from.
    pub candidates: Vec<(PathBuf, Origin)>,
    /// `--project`, when given.
    pub project: Option<String>,
}

/// True for a connect error that means "nothing listens there".
fn nobody_there(e: &ClientError) -> bool {
    match e {
        ClientError::Connect { source, .. } => matches!(
            source.kind(),
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
        ),
        _ => false,
    }
}

impl Target {
    pub fn new(runtime_dir: Option<&Path>, project: Option<String>) -> Self {
        let candidates = if let Some(dir) = runtime_dir {
            vec![(dir.to_path_buf(), Origin::Flag)]
        } else if let Some(dir) = paths::env_path(RUNTIME_DIR_ENV) {
            vec![(dir, Origin::Env)]
        } else if let Some(dir) = paths::systemd_dir("RUNTIME_DIRECTORY") {
            vec![(dir, Origin::Systemd)]
        } else {
            let mine = paths::runtime_dir(None);
            let system = PathBuf::from(SYSTEM_RUNTIME_DIR);
            let mut list = vec![(mine.clone(), Origin::UserDefault)];
            if mine != system {
                list.push((system, Origin::System));
            }
            list
        };
        Self {
            candidates,
            project,
        }
    }

    /// The project named by `--project` alone (no environment, no
    /// flux.json).
    pub fn project_flag(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// The project to act on, from the flag, the environment or `flux.json`.
    pub fn project(&self) -> Result<String> {
        let from_env = || std::env::var("FLUX_PROJECT").ok().filter(|p| !p.is_empty());
        let name = match self.project.clone().or_else(from_env) {
            Some(p) => p,
            None => project_from_flux_json(Path::new("flux.json"))?.ok_or_else(|| {
                Failure::usage(
                    "no project given: pass --project NAME, set FLUX_PROJECT, or run where flux.json names it (`fluxctl init NAME` writes one)",
                )
            })?,
        };
        validate_project_name(&name).map_err(|e| Failure::usage(e.to_string()))?;
        Ok(name)
    }

    /// Connects to the socket `socket(dir)` in the first candidate folder
    /// where one answers. Returns the folder too. When nothing listens in
    /// any of them, the error names every socket tried.
    fn connect_first(&self, socket: impl Fn(&Path) -> PathBuf) -> Result<(PathBuf, Client)> {
        let mut tried = Vec::new();
        for (dir, origin) in &self.candidates {
            let path = socket(dir);
            match Client::connect(&path) {
                Ok(client) => return Ok((dir.clone(), client)),
                Err(e) if nobody_there(&e) => tried.push((path, *origin, e)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(self.unreachable(tried))
    }

    /// The error for sockets where nothing listens.
    fn unreachable(&self, mut tried: Vec<(PathBuf, Origin, ClientError)>) -> Failure {
        if tried.len() == 1 {
            let (_, origin, e) = tried.pop().expect("one");
            let mut failure = Failure::from(e);
            failure.message.push_str(&format!(
                " (the folder was {}; name another with --runtime-dir DIR or {RUNTIME_DIR_ENV}=DIR)",
                origin.describe()
            ));
            return failure;
        }
        let places: Vec<String> = tried
            .iter()
            .map(|(path, origin, e)| {
                let reason = match e {
                    ClientError::Connect { source, .. } => flux_protocol::client::io_reason(source),
                    other => other.to_string(),
                };
                format!("{} ({}: {reason})", path.display(), origin.describe())
            })
            .collect();
        Failure::new(
            EXIT_UNREACHABLE,
            format!(
                "cannot connect to fluxd: searched {}. Is fluxd running? Start your own with `fluxd`, or the system service with `systemctl start fluxd`; if it serves another folder, name it with --runtime-dir DIR or {RUNTIME_DIR_ENV}=DIR",
                places.join(", then ")
            ),
        )
    }

    /// A connection to the control socket.
    pub fn control(&self) -> Result<Client> {
        self.connect_first(paths::control_socket)
            .map(|(_, client)| client)
    }

    /// The runtime folder of the fluxd that answers: the one serving the
    /// named project, else the one whose control socket answers, else (no
    /// fluxd answers) the first folder searched. Blocking: call it outside
    /// an async runtime.
    pub fn runtime_dir(&self) -> PathBuf {
        if let Some(project) = &self.project
            && let Ok((dir, _)) = self.connect_first(|d| paths::project_socket(d, project))
        {
            return dir;
        }
        match self.connect_first(paths::control_socket) {
            Ok((dir, _)) => dir,
            Err(_) => self.candidates[0].0.clone(),
        }
    }

    /// A connection to `project`'s socket.
    pub fn client_of(&self, project: &str) -> Result<Client> {
        self.connect_first(|dir| paths::project_socket(dir, project))
            .map(|(_, client)| client)
    }

    /// A connection to the project's socket.
    pub fn project_client(&self) -> Result<(String, Client)> {
        let project = self.project()?;
        match self.connect_first(|dir| paths::project_socket(dir, &project)) {
            Ok((_, client)) => Ok((project, client)),
            Err(e) if e.exit == EXIT_UNREACHABLE => {
                // Is fluxd down, or is there no such project? When no
                // control socket answers either, the project socket's
                // error is the one to show.
                let Ok(mut control) = self.control() else {
                    return Err(e);
                };
                let known = control.list_projects()?.iter().any(|p| p.name == project);
                if known {
                    Err(e)
                } else {
                    Err(Failure::new(
                        EXIT_NOT_FOUND,
                        format!(
                            "unknown project {project}: list projects with `fluxctl projects list`, create it with `fluxctl projects create {project}`"
                        ),
                    ))
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// The `name` field of a `flux.json`, if the file exists.
pub fn project_from_flux_json(path: &Path) -> Result<Option<String>> {
    // A file that cannot be read is an I/O failure (1); one that reads but
    // does not name a project properly is bad input (2).
    paths::project_in_manifest(path).map_err(|e| match e {
        paths::ManifestError::Unreadable(message) => Failure::general(message),
        paths::ManifestError::Invalid(message) => Failure::new(EXIT_USAGE, message),
    })
}
