//! Process hygiene, applied once at start: no core dumps, no ptrace by
//! other processes of the same uid, and no secret in swap.
//!
//! - `PR_SET_DUMPABLE` 0: the kernel refuses core dumps and ptrace from
//!   non-root processes, and `/proc/<pid>/` entries become root-owned.
//! - `RLIMIT_CORE` 0: belt and braces against core files.
//! - `mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`: every page fluxd
//!   touches stays in RAM. With `MCL_FUTURE`, any allocation fails once
//!   `RLIMIT_MEMLOCK` is reached — thread stacks included — so fluxd locks
//!   everything only when the limit is unlimited or at least
//!   [`FULL_LOCK_MIN`] (or it runs with `CAP_IPC_LOCK`); otherwise it locks
//!   only what is mapped now (`MCL_CURRENT`, which cannot make a later
//!   allocation fail) when that fits, and warns with the fix. `MCL_ONFAULT`
//!   keeps untouched reservations (thread stacks) out of resident memory.
//! - `RLIMIT_NOFILE` raised to its hard limit: every connection is a
//!   descriptor, and the default soft limit (1024) is below what the
//!   default connection limits can open.

use nix::sys::mman::{MlockAllFlags, mlockall};
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// Smallest `RLIMIT_MEMLOCK` under which fluxd locks all its memory.
pub const FULL_LOCK_MIN: u64 = 256 * 1024 * 1024;

/// `MCL_ONFAULT` (Linux ≥ 4.4); nix does not name it.
const MCL_ONFAULT: i32 = 4;

/// How memory locking went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lock {
    /// Everything, now and later.
    All,
    /// What was mapped at start only.
    Current,
    /// Nothing.
    None,
}

/// What [`harden`] did, and warnings for the log.
#[derive(Debug)]
pub struct Report {
    pub lock: Lock,
    pub warnings: Vec<String>,
}

fn has_ipc_lock() -> bool {
    // CapEff in /proc/self/status; CAP_IPC_LOCK is bit 14.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 14) != 0)
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kb| kb * 1024)
}

fn lock_all() -> nix::Result<()> {
    let onfault = MlockAllFlags::from_bits_retain(MCL_ONFAULT);
    let flags = MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE;
    mlockall(flags | onfault).or_else(|_| mlockall(flags))
}

/// The open-file limit now (soft), for start-up checks.
pub fn open_file_limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft)
}

/// Applies the process hygiene described in the module docs. Never fails:
/// what cannot be done is reported as a warning.
pub fn harden() -> Report {
    let mut warnings = Vec::new();
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        warnings.push(format!("cannot mark the process non-dumpable: {e}"));
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        warnings.push(format!("cannot disable core dumps: {e}"));
    }
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                warnings.push(format!(
                    "cannot raise the open-file limit from {soft} to {hard}: {e}; connections past it are refused"
                ));
            }
        }
        _ => {}
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_MEMLOCK).unwrap_or((0, 0));
    let unlimited = soft == nix::sys::resource::RLIM_INFINITY;
    let lock = if unlimited || soft >= FULL_LOCK_MIN || has_ipc_lock() {
        match lock_all() {
            Ok(()) => Lock::All,
            Err(e) => {
                warnings.push(format!("cannot lock memory ({e}); values may reach swap"));
                Lock::None
            }
        }
    } else {
        let fix = format!(
            "RLIMIT_MEMLOCK is {} KiB, below the {} MiB fluxd needs to lock all its memory; values loaded later may reach swap. Grant it with LimitMEMLOCK=infinity in the unit (or `ulimit -l unlimited`)",
            soft / 1024,
            FULL_LOCK_MIN / (1024 * 1024)
        );
        if resident_bytes() < soft && mlockall(MlockAllFlags::MCL_CURRENT).is_ok() {
            warnings.push(format!("memory locked at start only: {fix}"));
            Lock::Current
        } else {
            warnings.push(format!("memory not locked: {fix}"));
            Lock::None
        }
    };
    Report { lock, warnings }
}
