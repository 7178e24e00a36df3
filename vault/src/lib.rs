//! Flux Secrets at rest: what the daemon, `fluxctl` and the benchmarks
//! share, so that `fluxctl` reads and writes vaults without linking the
//! daemon.
//!
//! - [`keys`]: a project's age X25519 identity and the seal key derived
//!   from it;
//! - [`vault`]: the sealed, versioned JSON document and its age
//!   encryption (`docs/VAULT.md` is the reference), split by concern into
//!   private files it re-exports from: the document's JSON shape
//!   (`document.rs`), the checks of an open (`checks.rs`), the HMAC seal
//!   (`seal.rs`), age encryption (`crypt.rs`) and [`VaultError`]
//!   (`error.rs`), which key files' errors share;
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
//! - [`time`]: times as fluxd and `fluxctl` write and read them;
//! - `hex.rs` (private): bytes as hex, for the seal and the audit chain.
//!
//! Secret values live in zeroizing buffers ([`flux_protocol::SecretValue`])
//! and reach no error message: errors name paths, lines and reasons.

#![forbid(unsafe_code)]

pub mod chain;
mod checks;
mod crypt;
mod document;
pub mod dotenv;
mod error;
pub mod files;
mod hex;
pub mod keys;
pub mod layout;
pub mod membership;
mod seal;
pub mod secrets;
pub mod time;
pub mod vault;

pub use error::VaultError;
pub use files::FileError;
pub use keys::ProjectKey;
pub use time::{format_time_ms, now_ms};
pub use vault::{Entry, Opened, Secrets, SetBy};
