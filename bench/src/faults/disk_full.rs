//! Disk full and read-only: a `set` that cannot be written must fail
//! clearly and leave the previous vault intact and served.
//!
//! The state folder lives on a small tmpfs mounted for this suite (root
//! only; otherwise the suite is SKIPPED, loudly, with the reason). Phases:
//!
//! 1. **full**: set `KEEP` to v1; fill the tmpfs with a filler file until
//!    `ENOSPC`; `set KEEP` to a larger v2 must fail with an error that says
//!    the disk is full; v1 must still be served on the open connection and
//!    on a new one; the vault file on disk must still open (checked with the
//!    daemon's own key and vault code) and hold v1; a restarted daemon
//!    (still on the full disk) must load it with no `last_error` and serve
//!    v1. Then the filler is removed and `set` v2 must succeed.
//! 2. **read-only**: `vaults/` becomes a read-only bind mount of itself
//!    (remounting the whole tmpfs read-only is refused while fluxd holds
//!    its lock file open for writing); `set` v3 must fail with an error that
//!    says so, v2 must still be served and still be what the file holds.
//!    Once unmounted, `set` v3 must succeed.
//!
//! The mount is always undone: the [`Mount`] guard stops nothing but
//! unmounts on drop (lazily if busy), and the daemon is stopped before it.

use super::Outcome;
use crate::fixture::{describe, value};
use crate::fluxd_process::{Fluxd, FluxdBinary, short_tempdir};
use anyhow::{Context, Result, bail};
use flux_protocol::ErrorCode;
use flux_protocol::blocking::Client;
use fluxd::store::{LocalStore, Store};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROJECT: &str = "disk";
const SECRET: &str = "KEEP";
const TAG: &str = "disk";

/// A mount made for the suite; unmounted on drop.
#[derive(Debug)]
struct Mount {
    path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Mount {
    /// Mounts a tmpfs of `size` at a fresh temp dir, or says why not.
    fn tmpfs(size: &str) -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root: cannot mount a small tmpfs".into());
        }
        let dir = short_tempdir("fxd").map_err(|e| e.to_string())?;
        let path = dir.path().join("m");
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self {
            path,
            _dir: Some(dir),
        })
    }

    /// Makes `dir` read-only with a read-only bind mount over itself.
    /// (Remounting the whole tmpfs read-only is refused while fluxd holds
    /// its lock file open for writing, so the vault folder is the unit.)
    fn read_only_bind(dir: &Path) -> Result<Self> {
        run_mount(&["--bind"], dir, dir)?;
        let guard = Self {
            path: dir.to_path_buf(),
            _dir: None,
        };
        run_mount(&["-o", "remount,bind,ro"], dir, dir)?;
        Ok(guard)
    }
}

fn run_mount(opts: &[&str], source: &Path, target: &Path) -> Result<()> {
    let mut cmd = Command::new("mount");
    cmd.args(opts);
    if !opts.iter().any(|o| o.starts_with("remount")) {
        cmd.arg(source);
    }
    let out = cmd.arg(target).output().context("cannot run mount")?;
    if !out.status.success() {
        bail!(
            "mount {} failed: {}",
            opts.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        println!("disk-full: unmounted {}", self.path.display());
    }
}

/// Runs the disk-full suite.
pub fn run(bin: &FluxdBinary, smoke: bool) -> Result<Outcome> {
    let _ = smoke; // already quick: the same steps in both modes
    let mount = match Mount::tmpfs("1m") {
        Ok(m) => m,
        Err(why) => {
            println!("disk-full: SKIPPED: {why}");
            return Ok(Outcome {
                summary: format!("SKIPPED: {why}"),
                failures: Vec::new(),
                skipped: Some(why),
            });
        }
    };
    println!(
        "disk-full: state folder on a 1 MiB tmpfs at {}",
        mount.path.display()
    );
    let state = mount.path.join("state");
    let mut failures = Vec::new();
    let mut fluxd = Fluxd::with_state_dir(bin, &state)?;
    let result = phases(&mut fluxd, &mount, &mut failures);
    fluxd.stop();
    drop(fluxd);
    drop(mount);
    let summary = result?;
    Ok(Outcome {
        summary,
        failures,
        skipped: None,
    })
}

fn phases(fluxd: &mut Fluxd, mount: &Mount, failures: &mut Vec<String>) -> Result<String> {
    let v1 = value(TAG, 1, 1000);
    let v2 = value(TAG, 2, 60_000);
    let v3 = value(TAG, 3, 2000);
    fluxd.start()?;
    fluxd.control()?.create_project(PROJECT)?;
    let mut client = fluxd.client(PROJECT)?;
    client.set(SECRET, v1.as_str().into())?;

    // Phase 1: full.
    let filler = mount.path.join("filler");
    let filled = fill(&filler)?;
    println!("disk-full: filled the tmpfs with {filled} bytes");
    let full_err = expect_refused(&mut client, &v2, "disk full", failures);
    if let Some(msg) = &full_err {
        let lower = msg.to_lowercase();
        if !(lower.contains("space") || lower.contains("full")) {
            failures.push(format!(
                "disk full: the error does not say the disk is full: {msg}"
            ));
        }
    }
    expect_served(fluxd, &mut client, &v1, "disk full", failures)?;
    expect_on_disk(fluxd.state_dir(), &v1, "disk full", failures);
    fluxd.stop();
    match fluxd.start() {
        Ok(_) => {
            let status = fluxd.control()?.status()?;
            if let Some(p) = status.projects.iter().find(|p| p.last_error.is_some()) {
                failures.push(format!(
                    "disk full: after a restart, {} reports {:?}",
                    p.name, p.last_error
                ));
            }
            client = fluxd.client(PROJECT)?;
            expect_served(
                fluxd,
                &mut client,
                &v1,
                "disk full, after a restart",
                failures,
            )?;
            println!("disk-full: restarted on the full disk: vault loads and v1 is served");
        }
        Err(e) => failures.push(format!(
            "disk full: fluxd does not restart on a full disk: {e:#}"
        )),
    }
    std::fs::remove_file(&filler).context("remove the filler")?;
    match client.set(SECRET, v2.as_str().into()) {
        Ok(_) => println!("disk-full: space freed: set succeeds again"),
        Err(e) => failures.push(format!(
            "disk full: set still fails after freeing space: {e}"
        )),
    }
    expect_served(fluxd, &mut client, &v2, "after freeing space", failures)?;

    // Phase 2: read-only.
    let vaults = fluxd.layout().vaults_dir();
    let ro = Mount::read_only_bind(&vaults)?;
    println!(
        "disk-full: {} is now a read-only bind mount",
        vaults.display()
    );
    let ro_err = expect_refused(&mut client, &v3, "read-only", failures);
    if let Some(msg) = &ro_err
        && !msg.to_lowercase().contains("read-only")
    {
        failures.push(format!(
            "read-only: the error does not say the folder is read-only: {msg}"
        ));
    }
    expect_served(fluxd, &mut client, &v2, "read-only", failures)?;
    expect_on_disk(fluxd.state_dir(), &v2, "read-only", failures);
    drop(ro);
    match client.set(SECRET, v3.as_str().into()) {
        Ok(_) => println!("disk-full: writable again: set succeeds"),
        Err(e) => failures.push(format!(
            "read-only: set still fails once writable again: {e}"
        )),
    }
    expect_served(fluxd, &mut client, &v3, "writable again", failures)?;
    if !fluxd.is_running() {
        failures.push("fluxd exited during the disk-full suite".into());
    }
    let said = |e: &Option<String>| match e {
        Some(_) => "refused",
        None => "NOT refused",
    };
    Ok(format!(
        "set on a full disk {}, on a read-only vault folder {}; the previous value stayed served and on disk",
        said(&full_err),
        said(&ro_err)
    ))
}

/// Writes zeros to `path` until the file system is full; returns the size.
fn fill(path: &Path) -> Result<u64> {
    let mut f = std::fs::File::create(path).context("create the filler")?;
    let chunk = vec![0u8; 4096];
    let mut written = 0u64;
    for _ in 0..1_000_000 {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(_) => break,
        }
    }
    let _ = f.sync_all();
    Ok(written)
}

/// Sets `v`, expecting a refusal; returns the daemon's message.
fn expect_refused(
    client: &mut Client,
    v: &str,
    phase: &str,
    failures: &mut Vec<String>,
) -> Option<String> {
    match client.set(SECRET, v.into()) {
        Ok(_) => {
            failures.push(format!(
                "{phase}: set succeeded on a file system that cannot take it"
            ));
            None
        }
        Err(e) => {
            let msg = e.to_string();
            let code = e.code();
            println!(
                "disk-full: {phase}: set refused with code {}: {msg}",
                code.map_or("(none)".into(), |c| c.name().to_owned())
            );
            // Nothing was changed and the same set succeeds once the
            // storage can take it: `unavailable`, not `internal`.
            if code != Some(ErrorCode::Unavailable) {
                failures.push(format!(
                    "{phase}: set refused with {code:?}, expected unavailable"
                ));
            }
            Some(msg)
        }
    }
}

/// Checks that `expected` is served on `client` and on a new connection.
fn expect_served(
    fluxd: &Fluxd,
    client: &mut Client,
    expected: &str,
    phase: &str,
    failures: &mut Vec<String>,
) -> Result<()> {
    let mut fresh = fluxd.client(PROJECT)?;
    for (which, c) in [("open connection", client), ("new connection", &mut fresh)] {
        match c.get(SECRET) {
            Ok(v) if v.expose() == expected => {}
            Ok(v) => failures.push(format!(
                "{phase}: {which} reads {} instead of {}",
                describe(v.expose()),
                describe(expected)
            )),
            Err(e) => failures.push(format!("{phase}: {which}: get failed: {e}")),
        }
    }
    Ok(())
}

/// Opens the vault file with the daemon's own code and checks its value.
fn expect_on_disk(state: &Path, expected: &str, phase: &str, failures: &mut Vec<String>) {
    let check = || -> Result<bool> {
        let store = LocalStore::open(state)?;
        let key = flux_vault::keys::ProjectKey::parse(&store.load_key(PROJECT)?)
            .map_err(|e| anyhow::anyhow!("the key does not parse: {e}"))?;
        let bytes = store.load_vault(PROJECT)?.context("no vault file")?;
        let secrets = flux_vault::vault::open(&bytes, PROJECT, &key)
            .map_err(|e| anyhow::anyhow!("the vault does not open: {e}"))?;
        Ok(secrets
            .secrets
            .get(SECRET)
            .is_some_and(|e| e.value.expose() == expected))
    };
    match check() {
        Ok(true) => {
            println!("disk-full: {phase}: the vault on disk opens and holds the previous value")
        }
        Ok(false) => failures.push(format!(
            "{phase}: the vault on disk does not hold the previous value"
        )),
        Err(e) => failures.push(format!("{phase}: {e:#}")),
    }
}
