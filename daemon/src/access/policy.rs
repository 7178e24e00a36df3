//! Who may do what: roles decided from the kernel's view of the peer.
//!
//! Every connection's peer is identified by the kernel (`SO_PEERCRED`: uid,
//! gid, pid — see [`crate::peer`]); nothing a client sends is taken as its
//! identity. Which role each request needs is [`crate::access`]'s rule;
//! this module says who holds a role. No role receives a value except a
//! reader's `Get` / `GetAll`.
//!
//! Roles come from the config file: a `[defaults]` section and one
//! `[projects.<name>]` section per project, each with `readers` and
//! `admins` lists of users and groups (names or ids). A project's list,
//! when present, replaces the default one. Daemon admins are the default
//! admins. Always, whatever the file says: the daemon's own uid is reader and
//! admin everywhere (it can read the key files anyway), and root is admin.
//! With no config file, that is the whole policy.
//!
//! A peer is in a group when it is its primary gid (from the kernel) or one
//! of its user's groups in the system's group database.
//!
//! **Workloads.** Beside `users` and `groups`, a list may name what the
//! kernel says of the peer's process ([`super::workload`]): `units`
//! (systemd units, `*` matching any run of characters: `"fn-*.service"`),
//! `cgroups` (a cgroup path and everything under it) and `executables`
//! (`{ path = "/usr/bin/node", sha256 = "…" }`, either or both). A list
//! holds a peer when **every kind it names** matches: `users`/`groups`
//! together are one kind (the uid is listed or one of the peer's groups
//! is), each of the others a kind of its own. So `{ units =
//! ["billing.service"] }` is whatever runs in that unit, under any uid
//! (`DynamicUser=yes` included); `{ users = ["app"], units =
//! ["billing.service"] }` is user `app` in that unit only. A list that
//! names nothing holds no one.
//!
//! **Per secret.** `[projects.<name>.secrets.<SECRET>] readers = { … }`
//! narrows who reads one secret: a project reader must also be in that
//! list. To anyone else the secret does not exist: `get` answers it as not
//! set, `get_all` (`fluxctl run`) and `diff` leave it out, change events
//! leave its name out — and the audit log records the refusal.

use super::workload::{self, Workload};
use nix::unistd::{Gid, Group, Uid, User};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

/// A user or group, by name or by number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Id {
    Number(u32),
    Name(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Name(s) => write!(f, "{s:?}"),
        }
    }
}

/// `{ users = [...], groups = [...], units = [...], cgroups = [...],
/// executables = [...] }` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalsFile {
    #[serde(default)]
    pub users: Vec<Id>,
    #[serde(default)]
    pub groups: Vec<Id>,
    #[serde(default)]
    pub units: Vec<String>,
    #[serde(default)]
    pub cgroups: Vec<String>,
    #[serde(default)]
    pub executables: Vec<ExecutableFile>,
}

/// `{ path = "...", sha256 = "..." }`: a program, by path, by content, or
/// both.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutableFile {
    pub path: Option<String>,
    pub sha256: Option<String>,
}

/// `[projects.<name>.secrets.<SECRET>]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    pub readers: PrincipalsFile,
}

/// `[defaults]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolesFile {
    pub readers: Option<PrincipalsFile>,
    pub admins: Option<PrincipalsFile>,
}

/// `[projects.<name>]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    pub readers: Option<PrincipalsFile>,
    pub admins: Option<PrincipalsFile>,
    /// Group that owns the project's socket (mode 0660); everyone who
    /// connects — readers and admins — must be in it.
    pub socket_group: Option<Id>,
    /// Secrets whose readers are narrowed, by name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretFile>,
}

/// Resolves a user to its uid.
pub fn resolve_user(id: &Id) -> Result<u32, String> {
    match id {
        Id::Number(n) => Ok(*n),
        Id::Name(name) => match User::from_name(name) {
            Ok(Some(u)) => Ok(u.uid.as_raw()),
            Ok(None) => Err(format!("unknown user {name:?}")),
            Err(e) => Err(format!("cannot look up user {name:?}: {e}")),
        },
    }
}

/// Resolves a group to its gid.
pub fn resolve_group(id: &Id) -> Result<u32, String> {
    match id {
        Id::Number(n) => Ok(*n),
        Id::Name(name) => match Group::from_name(name) {
            Ok(Some(g)) => Ok(g.gid.as_raw()),
            Ok(None) => Err(format!("unknown group {name:?}")),
            Err(e) => Err(format!("cannot look up group {name:?}: {e}")),
        },
    }
}

/// A set of users and groups, resolved to ids, and the workloads named
/// beside them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Principals {
    pub uids: BTreeSet<u32>,
    pub gids: BTreeSet<u32>,
    pub units: Vec<String>,
    pub cgroups: Vec<String>,
    pub executables: Vec<ExecutableFile>,
}

impl Principals {
    fn resolve(file: &PrincipalsFile) -> Result<Self, String> {
        for unit in &file.units {
            if unit.is_empty() || unit.contains('/') {
                return Err(format!(
                    "units: {unit:?} is not a unit name (like \"billing.service\" or \"fn-*.service\")"
                ));
            }
        }
        for cgroup in &file.cgroups {
            if !cgroup.starts_with('/') {
                return Err(format!(
                    "cgroups: {cgroup:?} is not a cgroup path from the root (like \"/system.slice/functions.slice\")"
                ));
            }
        }
        let mut executables = Vec::new();
        for exe in &file.executables {
            if exe.path.is_none() && exe.sha256.is_none() {
                return Err("executables: an entry names neither a path nor a sha256".into());
            }
            if let Some(path) = &exe.path
                && !path.starts_with('/')
            {
                return Err(format!("executables: path {path:?} is not absolute"));
            }
            let sha256 = match &exe.sha256 {
                Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Some(h.to_ascii_lowercase())
                }
                Some(h) => {
                    return Err(format!(
                        "executables: sha256 {h:?} is not 64 hex digits (`sha256sum FILE` prints it)"
                    ));
                }
                None => None,
            };
            executables.push(ExecutableFile {
                path: exe.path.clone(),
                sha256,
            });
        }
        Ok(Self {
            uids: file
                .users
                .iter()
                .map(resolve_user)
                .collect::<Result<_, _>>()?,
            gids: file
                .groups
                .iter()
                .map(resolve_group)
                .collect::<Result<_, _>>()?,
            units: file.units.clone(),
            cgroups: file.cgroups.clone(),
            executables,
        })
    }

    /// Whether the list holds `peer`: every kind it names matches (see the
    /// module docs); a list that names nothing holds no one.
    fn contains(&self, peer: &PeerIdentity) -> bool {
        let names_who = !self.uids.is_empty() || !self.gids.is_empty();
        if !names_who
            && self.units.is_empty()
            && self.cgroups.is_empty()
            && self.executables.is_empty()
        {
            return false;
        }
        let w = &peer.workload;
        (!names_who
            || self.uids.contains(&peer.uid)
            || peer.gids.iter().any(|g| self.gids.contains(g)))
            && (self.units.is_empty()
                || w.unit
                    .as_deref()
                    .is_some_and(|u| self.units.iter().any(|p| workload::glob(p, u))))
            && (self.cgroups.is_empty()
                || w.cgroup
                    .as_deref()
                    .is_some_and(|c| self.cgroups.iter().any(|p| workload::cgroup_within(p, c))))
            && (self.executables.is_empty()
                || w.exe.as_ref().is_some_and(|e| {
                    self.executables.iter().any(|rule| {
                        rule.path.as_ref().is_none_or(|p| *p == e.path)
                            && rule
                                .sha256
                                .as_ref()
                                .is_none_or(|h| e.sha256.as_ref() == Some(h))
                    })
                }))
    }

    fn names_executables(&self) -> bool {
        !self.executables.is_empty()
    }

    fn names_hashes(&self) -> bool {
        self.executables.iter().any(|e| e.sha256.is_some())
    }
}

/// Secrets of a project a reader may not read: to that reader they do not
/// exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hidden(Vec<String>);

impl Hidden {
    /// Whether `name` is hidden.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n == name)
    }

    /// True when nothing is hidden.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Readers and admins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roles {
    pub readers: Principals,
    pub admins: Principals,
}

/// One project's resolved policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectPolicy {
    pub readers: Option<Principals>,
    pub admins: Option<Principals>,
    pub socket_group: Option<u32>,
    /// Per-secret readers, by secret name.
    pub secrets: BTreeMap<String, Principals>,
}

/// A role a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reader,
    Admin,
}

/// Who a peer is, as far as policy cares: its uid, every group it is in,
/// and its workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    pub uid: u32,
    pub gids: BTreeSet<u32>,
    pub workload: Arc<Workload>,
}

impl PeerIdentity {
    /// The peer's uid, its primary gid from the kernel, its user's groups
    /// from the group database, and `workload`.
    pub fn lookup(uid: u32, gid: u32, workload: Arc<Workload>) -> Self {
        let mut gids = BTreeSet::from([gid]);
        if let Ok(Some(user)) = User::from_uid(Uid::from_raw(uid))
            && let Ok(name) = std::ffi::CString::new(user.name.as_bytes())
            && let Ok(groups) = nix::unistd::getgrouplist(&name, user.gid)
        {
            gids.extend(groups.into_iter().map(Gid::as_raw));
        }
        Self {
            uid,
            gids,
            workload,
        }
    }
}

/// The whole access policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    daemon_uid: u32,
    defaults: Roles,
    projects: BTreeMap<String, ProjectPolicy>,
    control_group: Option<u32>,
    /// Some rule names executables / an executable's hash (kept, since
    /// every request asks).
    executables: bool,
    hashes: bool,
}

impl Policy {
    /// The policy with no config file: the daemon's uid is reader and
    /// admin, root is admin.
    pub fn default_for(daemon_uid: u32) -> Self {
        Self {
            daemon_uid,
            defaults: Roles::default(),
            projects: BTreeMap::new(),
            control_group: None,
            executables: false,
            hashes: false,
        }
    }

    /// Resolves the config file's sections (names to ids).
    pub fn resolve(
        daemon_uid: u32,
        defaults: &RolesFile,
        projects: &BTreeMap<String, ProjectFile>,
        control_group: Option<&Id>,
    ) -> Result<Self, String> {
        let principals = |f: &Option<PrincipalsFile>| -> Result<Principals, String> {
            f.as_ref()
                .map(Principals::resolve)
                .unwrap_or(Ok(Principals::default()))
        };
        let mut resolved = BTreeMap::new();
        for (name, p) in projects {
            flux_protocol::limits::validate_project_name(name)
                .map_err(|e| format!("[projects.{name}]: {e}"))?;
            let ctx = |e: String| format!("[projects.{name}]: {e}");
            resolved.insert(
                name.clone(),
                ProjectPolicy {
                    readers: p
                        .readers
                        .as_ref()
                        .map(Principals::resolve)
                        .transpose()
                        .map_err(ctx)?,
                    admins: p
                        .admins
                        .as_ref()
                        .map(Principals::resolve)
                        .transpose()
                        .map_err(ctx)?,
                    socket_group: p
                        .socket_group
                        .as_ref()
                        .map(resolve_group)
                        .transpose()
                        .map_err(ctx)?,
                    secrets: p
                        .secrets
                        .iter()
                        .map(|(secret, f)| {
                            flux_protocol::limits::validate_secret_name(secret)
                                .map_err(|e| format!("[projects.{name}.secrets.{secret}]: {e}"))?;
                            let readers = Principals::resolve(&f.readers).map_err(|e| {
                                format!("[projects.{name}.secrets.{secret}] readers: {e}")
                            })?;
                            Ok((secret.clone(), readers))
                        })
                        .collect::<Result<_, String>>()?,
                },
            );
        }
        let mut policy = Self {
            daemon_uid,
            defaults: Roles {
                readers: principals(&defaults.readers).map_err(|e| format!("[defaults]: {e}"))?,
                admins: principals(&defaults.admins).map_err(|e| format!("[defaults]: {e}"))?,
            },
            projects: resolved,
            control_group: control_group
                .map(resolve_group)
                .transpose()
                .map_err(|e| format!("control_group: {e}"))?,
            executables: false,
            hashes: false,
        };
        let executables = policy.lists().any(Principals::names_executables);
        let hashes = policy.lists().any(Principals::names_hashes);
        policy.executables = executables;
        policy.hashes = hashes;
        Ok(policy)
    }

    /// Whether `peer` has `role` on `project`.
    pub fn allows(&self, project: &str, peer: &PeerIdentity, role: Role) -> bool {
        if peer.uid == self.daemon_uid || (peer.uid == 0 && role == Role::Admin) {
            return true;
        }
        let p = self.projects.get(project);
        let list = match role {
            Role::Reader => p
                .and_then(|p| p.readers.as_ref())
                .unwrap_or(&self.defaults.readers),
            Role::Admin => p
                .and_then(|p| p.admins.as_ref())
                .unwrap_or(&self.defaults.admins),
        };
        list.contains(peer)
    }

    /// The secrets of `project` that `peer` may not read although it is a
    /// reader of the project (the daemon's own uid reads everything).
    pub fn hidden_from(&self, project: &str, peer: &PeerIdentity) -> Hidden {
        let Some(p) = self.projects.get(project) else {
            return Hidden::default();
        };
        if p.secrets.is_empty() || peer.uid == self.daemon_uid {
            return Hidden::default();
        }
        Hidden(
            p.secrets
                .iter()
                .filter(|(_, readers)| !readers.contains(peer))
                .map(|(name, _)| name.clone())
                .collect(),
        )
    }

    /// Every list of the policy.
    fn lists(&self) -> impl Iterator<Item = &Principals> {
        [&self.defaults.readers, &self.defaults.admins]
            .into_iter()
            .chain(self.projects.values().flat_map(|p| {
                p.readers
                    .iter()
                    .chain(p.admins.iter())
                    .chain(p.secrets.values())
            }))
    }

    /// True when some rule names executables: peers' programs are then
    /// read at every request (a process may `exec` another).
    pub fn names_executables(&self) -> bool {
        self.executables
    }

    /// True when some rule names an executable's hash: peers' programs
    /// are then hashed when they connect.
    pub fn names_hashes(&self) -> bool {
        self.hashes
    }

    /// Whether `peer` is an admin of some project, or of the daemon: what
    /// keeps a connection to the control socket open across a reload.
    pub fn admin_anywhere(&self, peer: &PeerIdentity) -> bool {
        self.is_daemon_admin(peer)
            || self
                .projects
                .values()
                .filter_map(|p| p.admins.as_ref())
                .any(|a| a.contains(peer))
    }

    /// Configurations that work but likely do not do what was meant, one
    /// sentence each (logged at start and reload, printed by
    /// `--check-config`).
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, p) in &self.projects {
            let readers = p.readers.as_ref().unwrap_or(&self.defaults.readers);
            if let Some(g) = p.socket_group
                && readers.gids.contains(&g)
            {
                out.push(format!(
                    "[projects.{name}]: the socket group ({g}) is also a reader group, so everyone who can reach the socket reads values — admins who join it to manage the project included; name the function's users (or a group of theirs only) as readers (docs/DEPLOY.md)"
                ));
            }
        }
        out
    }

    /// Whether `peer` may manage the daemon (projects, status, audit).
    pub fn is_daemon_admin(&self, peer: &PeerIdentity) -> bool {
        peer.uid == self.daemon_uid || peer.uid == 0 || self.defaults.admins.contains(peer)
    }

    /// The group owning a project's socket, if the policy names one.
    pub fn socket_group(&self, project: &str) -> Option<u32> {
        self.projects.get(project).and_then(|p| p.socket_group)
    }

    /// The group owning the control socket, if the policy names one.
    pub fn control_group(&self) -> Option<u32> {
        self.control_group
    }

    /// True when some socket is opened to a group, so the runtime folder
    /// must be traversable by others (mode 0711: no listing).
    pub fn opens_sockets(&self) -> bool {
        self.control_group.is_some() || self.projects.values().any(|p| p.socket_group.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gids: &[u32]) -> PeerIdentity {
        PeerIdentity {
            uid,
            gids: gids.iter().copied().collect(),
            workload: Arc::default(),
        }
    }

    fn policy() -> Policy {
        let toml = r#"
            [defaults]
            readers = { users = [2000] }
            admins = { groups = [3000] }
            [projects.app]
            readers = { users = [2001], groups = [4000] }
            socket_group = 4000
            [projects.other]
            admins = { users = [2002] }
        "#;
        #[derive(Deserialize)]
        struct F {
            defaults: RolesFile,
            projects: BTreeMap<String, ProjectFile>,
        }
        let f: F = toml::from_str(toml).unwrap();
        Policy::resolve(1000, &f.defaults, &f.projects, None).unwrap()
    }

    #[test]
    fn daemon_uid_and_root() {
        let p = Policy::default_for(1000);
        assert!(p.allows("x", &peer(1000, &[]), Role::Reader));
        assert!(p.allows("x", &peer(1000, &[]), Role::Admin));
        assert!(p.allows("x", &peer(0, &[]), Role::Admin));
        assert!(
            !p.allows("x", &peer(0, &[]), Role::Reader),
            "root is not a reader by default"
        );
        assert!(!p.allows("x", &peer(1001, &[]), Role::Reader));
        assert!(p.is_daemon_admin(&peer(0, &[])));
        assert!(!p.is_daemon_admin(&peer(1001, &[])));
    }

    #[test]
    fn project_lists_replace_defaults() {
        let p = policy();
        // app: readers replaced, admins from defaults.
        assert!(p.allows("app", &peer(2001, &[]), Role::Reader));
        assert!(p.allows("app", &peer(9, &[4000]), Role::Reader));
        assert!(
            !p.allows("app", &peer(2000, &[]), Role::Reader),
            "default reader replaced"
        );
        assert!(p.allows("app", &peer(9, &[3000]), Role::Admin));
        assert!(
            !p.allows("app", &peer(2001, &[]), Role::Admin),
            "readers are not admins"
        );
        // other: readers from defaults, admins replaced.
        assert!(p.allows("other", &peer(2000, &[]), Role::Reader));
        assert!(p.allows("other", &peer(2002, &[]), Role::Admin));
        assert!(!p.allows("other", &peer(9, &[3000]), Role::Admin));
        // Daemon admins are the default admins.
        assert!(p.is_daemon_admin(&peer(9, &[3000])));
        assert!(!p.is_daemon_admin(&peer(2002, &[])));
        assert_eq!(p.socket_group("app"), Some(4000));
        assert!(p.opens_sockets());
    }

    #[test]
    fn a_socket_group_that_reads_is_warned_about() {
        let p = policy();
        let w = p.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("[projects.app]"), "{w:?}");
        assert!(p.admin_anywhere(&peer(2002, &[])), "admin of project other");
        assert!(!p.admin_anywhere(&peer(2001, &[])), "a reader only");
    }

    fn workload_peer(uid: u32, unit: &str, cgroup: &str, exe: (&str, &str)) -> PeerIdentity {
        PeerIdentity {
            uid,
            gids: BTreeSet::new(),
            workload: Arc::new(Workload {
                cgroup: Some(cgroup.into()),
                unit: Some(unit.into()),
                slice: None,
                exe: Some(workload::Exe {
                    path: exe.0.into(),
                    file: (1, 2),
                    sha256: Some(exe.1.into()),
                }),
            }),
        }
    }

    fn list(toml: &str) -> Result<Principals, String> {
        Principals::resolve(&toml::from_str::<PrincipalsFile>(toml).unwrap())
    }

    #[test]
    fn a_list_holds_a_peer_when_every_kind_it_names_matches() {
        let hash = "ab".repeat(32);
        let node = ("/usr/bin/node", hash.as_str());
        let billing = workload_peer(
            61234,
            "billing.service",
            "/system.slice/billing.service",
            node,
        );
        let cron = workload_peer(61234, "cron.service", "/system.slice/cron.service", node);
        // A unit alone: any uid in it (DynamicUser=yes), no other unit.
        let l = list(r#"units = ["billing.service"]"#).unwrap();
        assert!(l.contains(&billing));
        assert!(!l.contains(&cron), "same uid, another unit");
        // A user and a unit: both.
        let l = list(
            r#"users = [61234]
units = ["fn-*.service"]"#,
        )
        .unwrap();
        assert!(!l.contains(&billing), "the user, outside the units");
        let fn_a = workload_peer(61234, "fn-a.service", "/system.slice/fn-a.service", node);
        assert!(l.contains(&fn_a));
        let fn_other_user = workload_peer(7, "fn-a.service", "/system.slice/fn-a.service", node);
        assert!(!l.contains(&fn_other_user), "the unit, another user");
        // A cgroup and everything under it.
        let l = list(r#"cgroups = ["/system.slice/billing.service"]"#).unwrap();
        assert!(l.contains(&billing) && !l.contains(&cron));
        // Executables: by path, by hash, both.
        let l = list(&format!(
            r#"executables = [{{ path = "/usr/bin/node", sha256 = "{hash}" }}]"#
        ))
        .unwrap();
        assert!(l.contains(&billing));
        let python = workload_peer(61234, "billing.service", "/", ("/usr/bin/python3", &hash));
        assert!(!l.contains(&python), "same content, another path");
        let l = list(&format!(
            r#"executables = [{{ sha256 = "{}" }}]"#,
            "AB".repeat(32)
        ))
        .unwrap();
        assert!(l.contains(&python), "hashes compare in any case");
        let unknown = PeerIdentity {
            uid: 61234,
            gids: BTreeSet::new(),
            workload: Arc::default(),
        };
        assert!(
            !l.contains(&unknown),
            "no program read: no executable rule holds"
        );
        // A list that names nothing holds no one.
        assert!(!list("").unwrap().contains(&billing));
    }

    #[test]
    fn workload_rules_that_cannot_match_are_config_errors() {
        for (toml, says) in [
            (r#"units = ["system.slice/a.service"]"#, "not a unit name"),
            (r#"cgroups = ["system.slice"]"#, "from the root"),
            (r#"executables = [{ }]"#, "neither a path nor a sha256"),
            (r#"executables = [{ path = "node" }]"#, "not absolute"),
            (r#"executables = [{ sha256 = "abc" }]"#, "64 hex digits"),
        ] {
            let err = list(toml).unwrap_err();
            assert!(err.contains(says), "{toml}: {err}");
        }
    }

    #[test]
    fn unknown_names_are_config_errors() {
        let f = RolesFile {
            readers: Some(PrincipalsFile {
                users: vec![Id::Name("no-such-user-here".into())],
                ..PrincipalsFile::default()
            }),
            admins: None,
        };
        let err = Policy::resolve(0, &f, &BTreeMap::new(), None).unwrap_err();
        assert!(err.contains("unknown user \"no-such-user-here\""), "{err}");
    }
}
