//! The peer of a connection, as the kernel reports it.
//!
//! `SO_PEERCRED` gives the uid, gid and pid of the process that connected;
//! a client cannot choose them. `SO_PEERPIDFD` pins that very process, so
//! what is read of it afterwards — its cgroup, systemd unit and program
//! ([`super::workload`]) — is read of the peer and not of a later process
//! that reused its pid: a peer that cannot be made sure of is refused.
//! Authorization uses the uid, the groups and the workload
//! ([`super::policy::PeerIdentity`]); the pid and executable path are also
//! recorded for the audit log.
//!
//! A connected socket passed to another process (`SCM_RIGHTS`) keeps the
//! identity of the process that connected: the kernel reports the
//! connector, and so does fluxd. Handing a connection over is handing over
//! the right to use it, as with any open file.

use super::policy::{PeerIdentity, Policy};
use super::workload::{Unidentified, Workload, now_ticks, pin};
use nix::sys::socket::getsockopt;
use nix::sys::socket::sockopt::{PeerCredentials, PeerPidfd};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Once};
use tracing::warn;

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    pub identity: PeerIdentity,
    /// The peer process, pinned (none when the kernel gave no pid).
    pidfd: Option<Arc<OwnedFd>>,
}

impl Peer {
    /// Asks the kernel who connected to `stream`, a connected Unix socket
    /// (the blocking or the async kind), and identifies its workload;
    /// executables are hashed when `policy` names a hash. Fails when the
    /// peer exited before it could be identified.
    pub fn of(stream: &impl AsFd, policy: &Policy) -> std::io::Result<Self> {
        let accepted = now_ticks();
        let cred = getsockopt(stream, PeerCredentials).map_err(std::io::Error::from)?;
        let pid = u32::try_from(cred.pid()).ok().filter(|&p| p > 0);
        let gone = || std::io::Error::other(Unidentified::Gone.to_string());
        let identified = |e: Unidentified| match e {
            Unidentified::Gone => gone(),
            Unidentified::Io(e) => e,
        };
        let (workload, pidfd) = match pid {
            Some(pid) => {
                let pidfd = match getsockopt(stream, PeerPidfd) {
                    Ok(fd) => fd,
                    // The peer exited (its pid may already be another
                    // process's): nothing read of that pid is the peer's.
                    Err(nix::errno::Errno::ESRCH) => return Err(gone()),
                    Err(_) => {
                        static ONCE: Once = Once::new();
                        ONCE.call_once(|| {
                            warn!("this kernel has no SO_PEERPIDFD (Linux 6.5 and later): a peer's workload is pinned by its start time, which leaves the moment between its connect and fluxd's accept uncovered");
                        });
                        pin(pid, accepted).map_err(identified)?
                    }
                };
                let workload =
                    Workload::identify(pid, &pidfd, policy.names_hashes()).map_err(identified)?;
                (workload, Some(pidfd))
            }
            None => (Workload::default(), None),
        };
        let exe = workload.exe.as_ref().map(|e| e.path.clone());
        Ok(Self {
            uid: cred.uid(),
            gid: cred.gid(),
            pid,
            exe,
            identity: PeerIdentity::lookup(cred.uid(), cred.gid(), Arc::new(workload)),
            pidfd: pidfd.map(Arc::new),
        })
    }

    /// When `policy` names executables: reads the program the peer runs
    /// now, and identifies it again if it called `exec` since (a process
    /// that exited is left with no program, which no executable rule
    /// matches).
    pub fn recheck_program(&mut self, policy: &Policy) {
        let (Some(pid), Some(pidfd)) = (self.pid, self.pidfd.as_ref()) else {
            return;
        };
        if !policy.names_executables() || !self.identity.workload.exe_changed(pid, pidfd) {
            return;
        }
        let mut workload =
            Workload::identify(pid, pidfd, policy.names_hashes()).unwrap_or_default();
        if workload.cgroup.is_none() {
            workload.cgroup = self.identity.workload.cgroup.clone();
            workload.unit = self.identity.workload.unit.clone();
            workload.slice = self.identity.workload.slice.clone();
        }
        self.exe = workload.exe.as_ref().map(|e| e.path.clone());
        self.identity.workload = Arc::new(workload);
    }

    /// The groups looked up again (after a policy reload), the workload
    /// kept.
    pub fn refresh_groups(&mut self) {
        self.identity = PeerIdentity::lookup(self.uid, self.gid, self.identity.workload.clone());
    }
}
