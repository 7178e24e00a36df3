//! The peer of a connection, as the kernel reports it.
//!
//! `SO_PEERCRED` gives the uid, gid and pid of the process that connected;
//! a client cannot choose them. Authorization uses only the uid and the
//! groups ([`super::policy::PeerIdentity`]). The pid and executable path are
//! recorded for the audit log; where the kernel has `SO_PEERPIDFD`, the
//! executable is read only if the pidfd confirms the pid still names the
//! peer, so a recycled pid cannot put another program's name in the log.

use super::policy::PeerIdentity;
use nix::sys::socket::getsockopt;
use nix::sys::socket::sockopt::{PeerCredentials, PeerPidfd};
use std::os::fd::{AsFd, AsRawFd};

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<u32>,
    pub exe: Option<String>,
    pub identity: PeerIdentity,
}

impl Peer {
    /// Asks the kernel who connected to `stream`, a connected Unix socket
    /// (the blocking or the async kind).
    pub fn of(stream: &impl AsFd) -> std::io::Result<Self> {
        let cred = getsockopt(stream, PeerCredentials).map_err(std::io::Error::from)?;
        let pid = u32::try_from(cred.pid()).ok().filter(|&p| p > 0);
        let exe = pid.and_then(|pid| exe_of(stream, pid));
        Ok(Self {
            uid: cred.uid(),
            gid: cred.gid(),
            pid,
            exe,
            identity: PeerIdentity::lookup(cred.uid(), cred.gid()),
        })
    }
}

fn exe_of(stream: &impl AsFd, pid: u32) -> Option<String> {
    let pidfd = getsockopt(stream, PeerPidfd).ok();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    if let Some(fd) = pidfd {
        // The pidfd refers to the peer process itself; its fdinfo shows the
        // pid it has now (-1 once it exited).
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).ok()?;
        let live = info
            .lines()
            .find_map(|l| l.strip_prefix("Pid:"))
            .and_then(|v| v.trim().parse::<i64>().ok());
        if live != Some(i64::from(pid)) {
            return None;
        }
    }
    Some(exe.display().to_string())
}
