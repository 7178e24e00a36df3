//! Fleet mode end to end: a real etcd (started here, on loopback ports in a
//! temp dir) and several `fluxd --store etcd` processes, each on its own
//! state and runtime folders, as the hosts of one fleet.
//!
//! Without an `etcd` binary every test prints `SKIPPED` and passes
//! (`.ci/run` installs etcd-server). Assertion messages never quote a
//! secret value.

#![forbid(unsafe_code)]

mod assigned;
mod attacks;
mod big_reads;
mod certificates;
mod cluster;
mod measure;
mod moving;
mod recovery;
mod replication;
mod stolen;
mod support;
mod transport;
mod versions;
