//! `fluxd`, the Flux Secrets daemon, as a library: the binary only parses
//! flags, sets up logging and signals, and calls [`run`] (or
//! [`Daemon::start_with`] / [`Daemon::start_dev`]).
//!
//! Each concern has one owner, and no module imports one that imports it
//! back:
//!
//! ```text
//!  main ─► dev_command (`fluxd dev -- CMD`) ─► daemon handle, project
//!  main ─► daemon (start-up: picks the store, wires the owners)
//!            │
//!            ├─► server ──► handlers (one per request kind, each with its rule)
//!            │     │            └─► lifecycle ─► registry ─► project ─► store
//!            │     ├─► session ─► access (policy, audit, decide)
//!            │     └─► sockets
//!            ├─► store (local, dev, and their folder watcher) / fleet (etcd)
//!            └─► runtime (shutdown, tasks, systemd)
//! ```
//!
//! - [`config`]: folders, the config file and limits;
//! - [`access`]: who may do what, from the kernel's peer credentials; the
//!   audit log of every decision;
//! - [`daemon`]: start-up and shutdown; [`dev_command`]: the command
//!   `fluxd dev -- CMD` runs, restarted by `--watch` on a real change;
//! - [`server`]: sockets, sessions and one handler per request kind;
//! - [`lifecycle`]: the project lifecycle (store and sockets paired);
//! - [`registry`]: the projects served;
//! - [`project`]: in-memory snapshots and the serialized write path;
//! - [`store`]: where keys and ciphertext live, and their change feeds;
//!   [`fleet`]: etcd as a replicated store;
//! - [`metrics`]: counters and gauges, rendered for `fluxctl metrics` and
//!   an optional scrape listener;
//! - [`folders`]: the daemon's own folders; [`hardening`]: no core dumps,
//!   no ptrace, locked memory; [`systemd`]: readiness, watchdog and socket
//!   activation; [`runtime`]: shutdown and tasks.
//!
//! Keys, the vault format, `.env` files and durable writes are the
//! `flux-vault` crate's, shared with `fluxctl`. Secret values live in
//! zeroizing buffers ([`flux_protocol::SecretValue`]) and reach no log,
//! error or panic message.

#![forbid(unsafe_code)]

mod access;
pub mod config;
pub mod daemon;
pub mod dev_command;
pub mod error;
pub mod fleet;
mod folders;
pub mod hardening;
mod lifecycle;
mod metrics;
mod project;
mod registry;
mod runtime;
mod server;
pub mod store;
pub mod systemd;

pub use config::Config;
pub use daemon::{Daemon, DaemonHandle, Startup, run};
pub use error::{Error, Result};
