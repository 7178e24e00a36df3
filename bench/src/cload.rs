//! The C load client, `bench/c/getload.c`: built at run time with `cc`,
//! run as a child process, its output read into a [`LoadResult`].
//!
//! It is the yardstick for flux-bench's own client ([`crate::load`]): the
//! same blocking thread per connection, the same frames (built from
//! PROTOCOL.md, not from `flux_protocol`), the same fixed duration and
//! warm-up, one `write` and one `recv` per request and no allocation per
//! request, in a language with no runtime at all. `flux-bench
//! client-check` ([`crate::bench_client`]) loads the floor server with
//! both and compares.
//!
//! The source is compiled into the bench binary (`include_str!`), written
//! to a temp dir and compiled there with `$CC` (default `cc`): the bench
//! needs no build script and runs from any folder. Without a C compiler
//! [`CClient::build`] says why, and the caller prints SKIPPED.

use crate::fluxd_process::short_tempdir;
use crate::load::LoadResult;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// `bench/c/getload.c`.
const SOURCE: &str = include_str!("../c/getload.c");

/// The compiled C client.
#[derive(Debug)]
pub struct CClient {
    _dir: tempfile::TempDir,
    exe: PathBuf,
    /// The compiler command line, for the report.
    pub compiler: String,
}

impl CClient {
    /// Compiles `getload.c`; `Err` says why it could not (no compiler, or
    /// the compiler failed).
    pub fn build() -> std::result::Result<Self, String> {
        let dir = short_tempdir("fxc").map_err(|e| format!("no temp dir: {e:#}"))?;
        let src = dir.path().join("getload.c");
        let exe = dir.path().join("getload");
        std::fs::write(&src, SOURCE).map_err(|e| format!("cannot write {}: {e}", src.display()))?;
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let flags = [
            "-O2",
            "-std=c11",
            "-D_GNU_SOURCE",
            "-pthread",
            "-Wall",
            "-Wextra",
        ];
        let output = Command::new(&cc)
            .args(flags)
            .arg("-o")
            .arg(&exe)
            .arg(&src)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run `{cc}` (no C compiler?): {e}"))?;
        if !output.status.success() {
            let err = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = err.lines().rev().take(5).collect();
            return Err(format!(
                "`{cc}` failed to compile bench/c/getload.c ({}): {}",
                output.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
            ));
        }
        Ok(Self {
            _dir: dir,
            exe,
            compiler: format!("{cc} {}", flags.join(" ")),
        })
    }

    /// One fixed-duration run: `clients` connections to `socket`, each
    /// warmed up with `warmup` rounds, then `Get key` answered with `value`
    /// for `duration`. A wrong answer or a failed request is an error.
    pub fn run(
        &self,
        socket: &Path,
        key: &str,
        value: &str,
        clients: usize,
        duration: Duration,
        warmup: u64,
    ) -> Result<LoadResult> {
        let output = Command::new(&self.exe)
            .arg(socket)
            .arg(key)
            .arg(value)
            .arg(clients.to_string())
            .arg(format!("{:.6}", duration.as_secs_f64()))
            .arg(warmup.to_string())
            .stdin(Stdio::null())
            .output()
            .context("cannot run the C client")?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!(
                "the C client failed ({}): {}",
                output.status,
                stderr.lines().take(3).collect::<Vec<_>>().join(" / ")
            );
        }
        parse(&String::from_utf8_lossy(&output.stdout))
    }
}

/// Reads the C client's `name value` lines (see getload.c).
fn parse(text: &str) -> Result<LoadResult> {
    let mut r = LoadResult::default();
    let mut wall = None;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let num = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("bad line from the C client: {line:?}"))
        };
        match fields.first().copied() {
            Some("wall_ns") => wall = Some(num(1)?),
            Some("requests") => r.requests = num(1)?,
            Some("client") => {
                let (requests, ns) = (num(2)?, num(3)?);
                r.client_rps.push(if ns > 0 {
                    requests as f64 * 1e9 / ns as f64
                } else {
                    0.0
                });
            }
            // The histogram, as (bucket floor, count): expanded to samples
            // so slices merge like the Rust client's.
            Some("hist") => {
                let (floor, count) = (num(1)?, num(2)?);
                r.samples.extend(std::iter::repeat_n(floor, count as usize));
            }
            _ => {}
        }
    }
    r.wall_secs = wall.context("the C client printed no wall_ns")? as f64 / 1e9;
    if r.samples.len() as u64 != r.requests {
        bail!(
            "the C client's histogram holds {} rounds for {} requests",
            r.samples.len(),
            r.requests
        );
    }
    // No CPU readings: merge sums None as unknown.
    Ok(LoadResult::merge(vec![r]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_c_clients_output() {
        let text = "clients 2\nwall_ns 2000000000\nrequests 6\nclient 0 2 1000000000\n\
                    client 1 4 2000000000\nhist 1000 5\nhist 64000 1\np50_ns 1000\n";
        let r = parse(text).unwrap();
        assert_eq!(r.requests, 6);
        assert_eq!(r.throughput_rps, 3.0);
        assert_eq!(r.client_rps, vec![2.0, 2.0]);
        assert_eq!(r.latency.p50_us, 1.0);
        assert_eq!(r.latency.max_us, 64.0);
        assert!(parse("requests 1\n").is_err());
    }
}
