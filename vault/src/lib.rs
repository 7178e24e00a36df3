//! Flux Secrets at rest: what the daemon, `fluxctl` and the benchmarks
//! share, so that `fluxctl` reads and writes vaults without linking the
//! daemon.
//!
//! - [`keys`]: a project's age X25519 identity and the seal key derived
//!   from it;
//! - [`vault`]: the sealed, versioned JSON document and its age
//!   encryption (`docs/VAULT.md` is the reference);
//! - [`secrets`]: a project's secrets in memory, with the earlier versions
//!   of each;
//! - [`dotenv`]: `.env` files as `fluxd dev` and `fluxctl secrets import`
//!   read them (`docs/DOTENV.md`);
//! - [`chain`]: the audit log's MAC chain (fluxd writes it, `fluxctl audit
//!   verify` checks it);
//! - [`membership`]: fleet mode's signed envelopes, host lists and the
//!   operator key that alone changes them (`docs/FLEET.md`);
//! - [`files`]: the durability rules every write follows (atomic replace,
//!   atomic create, bounded reads of regular files only);
//! - [`layout`]: the state folder's layout ([`layout::StateDir`]), the one
//!   place its file names are spelled;
//! - [`time`]: times as fluxd and `fluxctl` write and read them.
//!
//! Secret values live in zeroizing buffers ([`flux_protocol::SecretValue`])
//! and reach no error message: errors name paths, lines and reasons.

#![forbid(unsafe_code)]

pub mod chain;
pub mod dotenv;
pub mod files;
pub mod keys;
pub mod layout;
pub mod membership;
pub mod secrets;
pub mod time;
pub mod vault;

pub use files::FileError;
pub use keys::ProjectKey;
pub use time::{format_time_ms, now_ms};
pub use vault::{Entry, Opened, Secrets, SetBy, VaultError};
