//! The workload behind a connection: its cgroup, the systemd unit and
//! slice that cgroup belongs to, and — when a rule asks — its executable
//! (path and SHA-256), read from the kernel for the process that connected,
//! never from anything the client says.
//!
//! **Race-free.** A pid names a process only while it lives: once the peer
//! exits, the pid can come back as another program, and what `/proc/<pid>`
//! says then is that program's. So the peer is pinned by a pidfd — the
//! kernel's `SO_PEERPIDFD`, which refers to the very process that called
//! `connect` — and everything is read through `/proc/<pid>` first and
//! trusted only if the pidfd says afterwards that the process is still
//! alive under that pid. A peer that exited before it could be identified
//! is refused, never guessed at. On a kernel without `SO_PEERPIDFD` (before
//! 6.5) fluxd opens a pidfd on the pid and requires the process to have
//! started before the connection was accepted; the window between the
//! client's `connect` and fluxd's `accept` is then not covered, which the
//! log says once.
//!
//! **The unit** is read from the cgroup path: cgroup v2's (`0::/…`) when
//! the process is placed there, else the v1 `name=systemd` hierarchy's (the
//! hybrid layout). The unit is the deepest `.service` or `.scope`
//! component (a service's sub-cgroups belong to it), the slice the deepest
//! `.slice` above it.
//!
//! **The executable** is what `/proc/<pid>/exe` opens (the file the process
//! runs, even if renamed or deleted since), hashed only when a policy rule
//! names executables, and cached by file identity (device, inode, size,
//! modification time), so a connection costs a hash once per binary, not
//! per connection. A process that calls `exec` after it connected runs
//! another program: executable rules are checked against the program the
//! peer runs at each request ([`Workload::exe_changed`]), so the new
//! program is decided on its own.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, OnceLock};

/// What the kernel says of the process behind a connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// The cgroup path, from the cgroup root (`/system.slice/app.service`).
    pub cgroup: Option<String>,
    /// The systemd unit (`app.service`, `run-u12.scope`).
    pub unit: Option<String>,
    /// The slice the unit is in (`functions.slice`).
    pub slice: Option<String>,
    /// The executable, when it could be read.
    pub exe: Option<Exe>,
}

/// A program a process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exe {
    pub path: String,
    /// (device, inode) of the file: tells an `exec` of another program.
    pub file: (u64, u64),
    /// SHA-256 of the file, hex; filled only when a rule names a hash.
    pub sha256: Option<String>,
}

/// Why a peer could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum Unidentified {
    #[error("the peer exited before it could be identified")]
    Gone,
    #[error("cannot identify the peer: {0}")]
    Io(#[from] std::io::Error),
}

impl Workload {
    /// Identifies process `pid`, pinned by `pidfd` (the peer itself, from
    /// `SO_PEERPIDFD`, or one from [`pin`]).
    pub fn identify(pid: u32, pidfd: &OwnedFd, with_hash: bool) -> Result<Self, Unidentified> {
        let cgroup_text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok();
        let exe = Exe::of(pid, with_hash);
        // Trusted only if the pidfd's process still holds this pid now:
        // then everything above was read from it.
        if live_pid(pidfd.as_fd()) != Some(pid) {
            return Err(Unidentified::Gone);
        }
        let cgroup = cgroup_text.as_deref().and_then(cgroup_path);
        let (unit, slice) = cgroup.as_deref().map(unit_of).unwrap_or_default();
        Ok(Self {
            cgroup,
            unit,
            slice,
            exe,
        })
    }

    /// True when process `pid` (pinned by `pidfd`) runs another file than
    /// the one it ran when identified: it called `exec` since.
    pub fn exe_changed(&self, pid: u32, pidfd: &OwnedFd) -> bool {
        let now = std::fs::metadata(format!("/proc/{pid}/exe"))
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if live_pid(pidfd.as_fd()) != Some(pid) {
            return true;
        }
        now != self.exe.as_ref().map(|e| e.file)
    }
}

impl Exe {
    /// The program process `pid` runs; hashed when `with_hash`.
    fn of(pid: u32, with_hash: bool) -> Option<Self> {
        let link = format!("/proc/{pid}/exe");
        let path = std::fs::read_link(&link).ok()?.display().to_string();
        // Opened through the link: the file the process runs, not whatever
        // is at that path now.
        let file = std::fs::File::open(&link).ok()?;
        let meta = file.metadata().ok()?;
        let sha256 = if with_hash {
            Some(hash_cached(file, &meta)?)
        } else {
            None
        };
        Some(Self {
            path,
            file: (meta.dev(), meta.ino()),
            sha256,
        })
    }
}

/// A pidfd on process `pid`, for a kernel without `SO_PEERPIDFD`: the
/// process must have started before `accepted_ticks` (clock ticks since
/// boot, as `/proc/<pid>/stat` counts them), else it is not the peer.
pub fn pin(pid: u32, accepted_ticks: u64) -> Result<OwnedFd, Unidentified> {
    let pidfd = pidfd_open(pid)?;
    let started = start_ticks(pid).ok_or(Unidentified::Gone)?;
    if started > accepted_ticks {
        return Err(Unidentified::Gone);
    }
    Ok(pidfd)
}

/// SHA-256 of an executable, cached by file identity.
fn hash_cached(mut file: std::fs::File, meta: &std::fs::Metadata) -> Option<String> {
    type Key = (u64, u64, u64, i64, i64);
    static CACHE: OnceLock<Mutex<HashMap<Key, String>>> = OnceLock::new();
    let key = (
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
    );
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hex) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Some(hex.clone());
    }
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() > 1024 {
        cache.clear();
    }
    cache.insert(key, hex.clone());
    Some(hex)
}

/// The pid the pidfd's process holds now; `None` once it exited.
fn live_pid(pidfd: BorrowedFd<'_>) -> Option<u32> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", pidfd.as_raw_fd())).ok()?;
    let pid = info
        .lines()
        .find_map(|l| l.strip_prefix("Pid:"))?
        .trim()
        .parse::<i64>()
        .ok()?;
    u32::try_from(pid).ok().filter(|&p| p > 0)
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| std::io::Error::other("pid 0 names no process"))?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).map_err(Into::into)
}

/// When process `pid` started, in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`).
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted
    // after its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Clock ticks since boot now, in the unit of [`start_ticks`].
pub fn now_ticks() -> u64 {
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| t.tv_sec() as u64 * ticks + t.tv_nsec() as u64 * ticks / 1_000_000_000)
        .unwrap_or(u64::MAX);
    // One tick of slack: the stat figure is rounded down.
    boot.saturating_add(1)
}

/// The process's cgroup path from `/proc/<pid>/cgroup`: the v2 entry when
/// the process is placed in the v2 tree, else the v1 `name=systemd` one.
pub fn cgroup_path(text: &str) -> Option<String> {
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "name=systemd") {
            v1 = Some(path);
        }
    }
    match (v2, v1) {
        (Some(p), _) if p != "/" => Some(p.to_owned()),
        (_, Some(p)) => Some(p.to_owned()),
        (Some(p), None) => Some(p.to_owned()),
        (None, None) => None,
    }
}

/// The unit (deepest `.service` or `.scope`) and its slice (deepest
/// `.slice` above it) of a cgroup path.
pub fn unit_of(cgroup: &str) -> (Option<String>, Option<String>) {
    let parts: Vec<&str> = cgroup.split('/').filter(|p| !p.is_empty()).collect();
    let Some(at) = parts
        .iter()
        .rposition(|p| p.ends_with(".service") || p.ends_with(".scope"))
    else {
        let slice = parts.iter().rev().find(|p| p.ends_with(".slice"));
        return (None, slice.map(|s| s.to_string()));
    };
    let slice = parts[..at].iter().rev().find(|p| p.ends_with(".slice"));
    (Some(parts[at].to_owned()), slice.map(|s| s.to_string()))
}

/// Whether `text` matches `pattern`, where `*` stands for any run of
/// characters (none included) and everything else for itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Whether cgroup `path` is `pattern` or inside it (component by
/// component; `*` matches within a component).
pub fn cgroup_within(pattern: &str, path: &str) -> bool {
    let want: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
    let have: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    want.len() <= have.len() && want.iter().zip(&have).all(|(w, h)| glob(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup_path_prefers_v2_and_falls_back_to_the_systemd_hierarchy() {
        let hybrid = "9:name=systemd:/system.slice/billing.service\n4:memory:/x\n0::/\n";
        assert_eq!(
            cgroup_path(hybrid).as_deref(),
            Some("/system.slice/billing.service")
        );
        let unified = "0::/system.slice/functions.slice/fn-a.service\n";
        assert_eq!(
            cgroup_path(unified).as_deref(),
            Some("/system.slice/functions.slice/fn-a.service")
        );
        let both = "1:name=systemd:/user.slice\n0::/system.slice/a.service\n";
        assert_eq!(
            cgroup_path(both).as_deref(),
            Some("/system.slice/a.service")
        );
        assert_eq!(cgroup_path("0::/\n").as_deref(), Some("/"));
        assert_eq!(cgroup_path("garbage"), None);
    }

    #[test]
    fn the_unit_is_the_deepest_service_or_scope_and_the_slice_above_it() {
        assert_eq!(
            unit_of("/system.slice/functions.slice/fn-a.service"),
            (Some("fn-a.service".into()), Some("functions.slice".into()))
        );
        assert_eq!(
            unit_of("/system.slice/billing.service/payload"),
            (Some("billing.service".into()), Some("system.slice".into()))
        );
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/user@1000.service/app.slice/app-x.scope"),
            (Some("app-x.scope".into()), Some("app.slice".into()))
        );
        assert_eq!(unit_of("/"), (None, None));
        assert_eq!(
            unit_of("/machine.slice"),
            (None, Some("machine.slice".into()))
        );
    }

    #[test]
    fn globs_and_cgroup_prefixes() {
        assert!(glob("fn-*.service", "fn-a.service"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("fn-*.service", "fn-a.scope"));
        assert!(!glob("billing.service", "billing.service2"));
        assert!(cgroup_within(
            "/system.slice/functions.slice",
            "/system.slice/functions.slice/fn-a.service"
        ));
        assert!(cgroup_within(
            "/system.slice/fn-*.service",
            "/system.slice/fn-b.service/sub"
        ));
        assert!(!cgroup_within(
            "/system.slice/functions.slice",
            "/system.slice/functions.slice2/x"
        ));
        assert!(!cgroup_within("/system.slice/a.service", "/system.slice"));
    }

    #[test]
    fn this_process_is_identified_and_a_stale_start_time_is_refused() {
        let pid = std::process::id();
        let pidfd = pin(pid, now_ticks()).unwrap();
        let w = Workload::identify(pid, &pidfd, true).unwrap();
        assert!(w.cgroup.is_some());
        let exe = w.exe.expect("the test's own executable");
        assert_eq!(exe.sha256.as_deref().map(str::len), Some(64));
        // A process that started after the connection was accepted is not
        // the peer.
        assert!(matches!(pin(pid, 0), Err(Unidentified::Gone)));
    }
}
