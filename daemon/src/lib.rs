//! `fluxd`, the Flux Secrets daemon, as a library: the binary only parses
//! flags, sets up logging and signals, and calls [`run`].
//!
//! ```text
//!  fluxctl ──► <runtime>/control.sock ──┐
//!                                        ├─► Daemon ─► Project (snapshot) ─► Store
//!  function ─► <runtime>/projects/p.sock ┘                                   ├─ keys/p.key
//!                                                                            └─ vaults/p.age
//! ```
//!
//! - [`config`]: folders, the config file and limits;
//! - [`policy`]: who may do what, from the kernel's peer credentials
//!   ([`peer`]); [`audit`]: the log of every decision;
//! - [`hardening`]: no core dumps, no ptrace, locked memory;
//! - [`daemon`]: start-up, the project registry, shutdown;
//! - [`server`]: socket files and accept loops; `session`: one connection;
//! - [`project`]: in-memory snapshots and the serialized write path;
//! - [`vault`]: the sealed JSON document and its age encryption;
//! - [`keys`]: project identities and the seal key derived from them;
//! - [`store`]: where keys and ciphertext live; [`fsutil`]: durable writes;
//! - `watch`: the file watcher that makes outside changes live;
//! - [`fleet`]: etcd as a replicated store (fleet mode);
//! - [`systemd`]: readiness, watchdog and socket activation.
//!
//! Secret values live in zeroizing buffers ([`flux_protocol::SecretValue`])
//! and reach no log, error or panic message.

#![forbid(unsafe_code)]

pub mod access;
pub mod audit;
pub mod config;
pub mod daemon;
pub mod dev;
pub mod dotenv;
pub mod error;
pub mod fleet;
pub mod fsutil;
pub mod hardening;
pub mod keys;
pub mod peer;
pub mod policy;
pub mod project;
pub mod server;
mod session;
pub mod sockets;
pub mod store;
pub mod systemd;
pub mod vault;
mod watch;

pub use config::Config;
pub use daemon::{Daemon, DaemonHandle, Startup, run};
pub use error::{Error, Result};
