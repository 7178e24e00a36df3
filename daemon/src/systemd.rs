//! Life under systemd: readiness notification, the watchdog, and sockets
//! passed in by socket activation. Outside systemd each of these is a
//! no-op: no `NOTIFY_SOCKET`, no `WATCHDOG_USEC`, no `LISTEN_FDS`.
//!
//! - [`Notifier`] sends `sd_notify` datagrams to `$NOTIFY_SOCKET` (a path,
//!   or `@name` in the abstract namespace): `READY=1` once every socket
//!   listens, `RELOADING=1` with `MONOTONIC_USEC=` and then `READY=1`
//!   around a SIGHUP reload (what `Type=notify-reload` expects),
//!   `STOPPING=1` on shutdown, and `WATCHDOG=1` every half of
//!   `$WATCHDOG_USEC` when the unit sets `WatchdogSec=`.
//! - [`inherited_listeners`] takes the sockets of `LISTEN_FDS` (checked
//!   against `LISTEN_PID`, via the `listenfd` crate) with their names from
//!   `LISTEN_FDNAMES`: `control` is the control socket, `project.<name>` a
//!   project's (systemd allows no `:` in a name; project names hold no `.`).
//!   A project's socket passed before the project exists is kept until
//!   `projects create` uses it. fluxd creates every other socket itself, and never removes
//!   an inherited socket's file (it belongs to the `.socket` unit).
//!   It must run before any thread starts: it clears `LISTEN_FDS`.

use std::collections::HashMap;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixListener};
use std::time::Duration;
use tracing::warn;

/// Sends state changes to systemd.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    addr: Option<String>,
}

impl Notifier {
    /// The notifier for `$NOTIFY_SOCKET`, or a silent one.
    pub fn from_env() -> Self {
        Self {
            addr: std::env::var("NOTIFY_SOCKET")
                .ok()
                .filter(|s| !s.is_empty()),
        }
    }

    /// True when systemd listens.
    pub fn enabled(&self) -> bool {
        self.addr.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` lines). Failures are
    /// logged, never fatal.
    pub fn notify(&self, state: &str) {
        let Some(addr) = &self.addr else { return };
        let sent = (|| -> std::io::Result<()> {
            let sock = UnixDatagram::unbound()?;
            let target = match addr.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
                None => SocketAddr::from_pathname(addr)?,
            };
            sock.send_to_addr(state.as_bytes(), &target)?;
            Ok(())
        })();
        if let Err(e) = sent {
            warn!(socket = %addr, error = %e, "cannot notify systemd");
        }
    }

    /// `READY=1`.
    pub fn ready(&self) {
        self.notify("READY=1\nSTATUS=serving");
    }

    /// `RELOADING=1` with the monotonic time systemd asks for.
    pub fn reloading(&self) {
        let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000)
            .unwrap_or(0);
        self.notify(&format!(
            "RELOADING=1\nMONOTONIC_USEC={usec}\nSTATUS=reloading"
        ));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping");
    }

    /// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, when it is
    /// set for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.addr.as_ref()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID")
            && pid.parse::<u32>().ok() != Some(std::process::id())
        {
            return None;
        }
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

/// Listening sockets handed over by systemd, by name.
#[derive(Debug, Default)]
pub struct Inherited {
    by_name: HashMap<String, UnixListener>,
}

impl Inherited {
    /// Takes the socket named `name`, if systemd passed one.
    pub fn take(&mut self, name: &str) -> Option<UnixListener> {
        self.by_name.remove(name)
    }

    /// Names of the sockets not taken (for a warning).
    pub fn leftover(&self) -> Vec<String> {
        let mut names: Vec<_> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// Adds a listener under `name` (for tests and embedders).
    pub fn insert(&mut self, name: &str, listener: UnixListener) {
        self.by_name.insert(name.to_owned(), listener);
    }
}

/// The sockets of `LISTEN_FDS`, named from `LISTEN_FDNAMES` (a socket
/// without a name is taken to be the control socket when it is the only
/// one). Sockets that are not Unix stream listeners are an error.
pub fn inherited_listeners() -> std::io::Result<Inherited> {
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|v| v.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    let mut fds = listenfd::ListenFd::from_env();
    let count = fds.len();
    let mut inherited = Inherited::default();
    for i in 0..count {
        let Some(listener) = fds.take_unix_listener(i)? else {
            continue;
        };
        let name = match names.get(i).map(String::as_str) {
            Some(n) if !n.is_empty() && n != "unknown" => n.to_owned(),
            _ if count == 1 => "control".to_owned(),
            _ => format!("fd{}", i + 3),
        };
        inherited.insert(&name, listener);
    }
    Ok(inherited)
}
