//! A real etcd member and real fluxd hosts on this machine, for the fleet
//! benches (`flux-bench fleet`, `flux-bench fleet-restart`): starting
//! them, driving the hosts with `fluxctl`, reading etcd's JSON gateway
//! (ranges, status, metrics), and the small helpers both benches share.

use crate::fluxd_process::{FluxdBinary, short_tempdir};
use anyhow::{Context, Result, bail};
use flux_e2e::launch;
use flux_protocol::blocking::Client;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a change may take to reach a host before it counts as lost.
pub(crate) const PROPAGATION_LIMIT: Duration = Duration::from_secs(20);

/// Which keys of a prefix a count takes ([`Etcd::count_where`]).
pub(crate) type KeyFilter = fn(&str) -> bool;

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub(crate) fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

pub(crate) fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// `fluxctl` beside the daemon, built first under cargo (as
/// [`FluxdBinary::locate`] does for fluxd).
pub(crate) fn locate_fluxctl(bin: &FluxdBinary) -> Result<PathBuf> {
    let dir = bin.0.parent().context("fluxd has no folder")?;
    let path = dir.join("fluxctl");
    if let Some(cargo) = std::env::var_os("CARGO") {
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "fluxctl"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .context("cannot run cargo build -p fluxctl")?;
        if !status.success() {
            bail!("cargo build -p fluxctl failed ({status})");
        }
    }
    if !path.is_file() {
        bail!(
            "{} is not built: run `cargo build --release -p fluxctl`",
            path.display()
        );
    }
    Ok(path)
}

/// One fluxd host in fleet mode, stopped on drop.
pub(crate) struct Host {
    pub(crate) dir: tempfile::TempDir,
    ctl: PathBuf,
    pub(crate) child: Child,
}

impl Host {
    pub(crate) fn start(
        bin: &FluxdBinary,
        ctl: &Path,
        etcd: &Etcd,
        fleet_id: Option<&str>,
    ) -> Result<Self> {
        Self::start_with(bin, ctl, etcd, fleet_id, None, "warn")
    }

    /// [`Host::start`] with a config file (`<dir>/fluxd.toml`, passed with
    /// `--config`) and a log level.
    pub(crate) fn start_with(
        bin: &FluxdBinary,
        ctl: &Path,
        etcd: &Etcd,
        fleet_id: Option<&str>,
        config: Option<&str>,
        level: &str,
    ) -> Result<Self> {
        let dir = short_tempdir("fxf")?;
        if let Some(toml) = config {
            std::fs::write(dir.path().join("fluxd.toml"), toml).context("write fluxd.toml")?;
        }
        let mut cmd = Self::command(bin, dir.path(), &etcd.url(), fleet_id, level);
        let (child, _) = launch::spawn_ready(
            &mut cmd,
            &dir.path().join("fluxd.log"),
            &flux_protocol::paths::control_socket(&dir.path().join("run")),
            Duration::from_secs(60),
            20,
        )?;
        Ok(Self {
            dir,
            ctl: ctl.to_path_buf(),
            child,
        })
    }

    /// The fluxd command of a host in `dir` (its config file used when
    /// there is one): what [`Host::start_with`] runs, and what a restart
    /// runs again.
    pub(crate) fn command(
        bin: &FluxdBinary,
        dir: &Path,
        etcd_url: &str,
        fleet_id: Option<&str>,
        level: &str,
    ) -> Command {
        let mut cmd = launch::fluxd_command(&bin.0, &dir.join("state"), &dir.join("run"), level);
        cmd.args(["--store", "etcd", "--etcd-endpoints", etcd_url]);
        if let Some(id) = fleet_id {
            cmd.args(["--fleet-id", id]);
        }
        let config = dir.join("fluxd.toml");
        if config.is_file() {
            cmd.arg("--config").arg(config);
        }
        cmd
    }

    pub(crate) fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// `fluxctl ARGS` against this host: its output, or an error with
    /// fluxctl's message (fluxctl never prints a value here).
    pub(crate) fn ctl(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.ctl)
            .env("FLUX_RUNTIME_DIR", self.run_dir())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("run fluxctl")?;
        if !out.status.success() {
            bail!(
                "fluxctl {} failed ({}): {}",
                args.first().copied().unwrap_or(""),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `fluxctl hosts list --json`.
    pub(crate) fn info(&self) -> Result<Value> {
        serde_json::from_str(&self.ctl(&["hosts", "list", "--json"])?)
            .context("hosts list --json is not JSON")
    }

    /// `fluxctl hosts add <other's join token>` on this host.
    pub(crate) fn add(&self, other: &Host, operator: &Path) -> Result<()> {
        let token = other.info()?["join_token"]
            .as_str()
            .context("no join token: not in fleet mode")?
            .to_owned();
        self.ctl(&[
            "hosts",
            "add",
            &token,
            "--operator-key",
            path_str(operator)?,
        ])?;
        Ok(())
    }

    /// Waits until this host sees itself in the host list.
    pub(crate) fn wait_member(&self) -> Result<()> {
        let t = Instant::now();
        while self.info()?["member"] != Value::Bool(true) {
            if t.elapsed() > PROPAGATION_LIMIT {
                bail!("a host never saw itself in the host list");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Waits until this host serves `projects` projects of `secrets`
    /// secrets each (a project's last error is read by [`Host::errors`]).
    pub(crate) fn wait_serving(&self, projects: usize, secrets: usize) -> Result<()> {
        let t = Instant::now();
        loop {
            if let Ok(status) = self.control().and_then(|mut c| Ok(c.status()?)) {
                let ready = status
                    .projects
                    .iter()
                    .filter(|p| p.secrets == secrets as u64)
                    .count();
                if ready == projects {
                    return Ok(());
                }
                if t.elapsed() > PROPAGATION_LIMIT * 3 {
                    bail!(
                        "a host serves {ready} of {projects} projects with all {secrets} secrets after {:?}; its log:\n{}",
                        t.elapsed(),
                        launch::tail(&self.dir.path().join("fluxd.log"), 20)
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The projects this host reports a last error for, with it (a path
    /// and a reason, never a value).
    pub(crate) fn errors(&self) -> Result<Vec<String>> {
        let status = self.control()?.status().context("Status")?;
        Ok(status
            .projects
            .into_iter()
            .filter_map(|p| Some(format!("{}: {}", p.name, p.last_error?)))
            .collect())
    }

    pub(crate) fn control(&self) -> Result<Client> {
        Client::connect(flux_protocol::paths::control_socket(&self.run_dir()))
            .context("connect to a host's control socket")
    }

    pub(crate) fn client(&self, project: &str) -> Result<Client> {
        let path = flux_protocol::paths::project_socket(&self.run_dir(), project);
        Client::connect(path).with_context(|| format!("connect to {project} on a host"))
    }

    /// 1 when this host does not serve exactly `entries` in `project`
    /// (retried until `limit`: a set may still be arriving), else 0.
    pub(crate) fn wrong_values(
        &self,
        project: &str,
        entries: &[(String, String)],
        limit: Duration,
    ) -> usize {
        let t = Instant::now();
        loop {
            let ok = self.client(project).is_ok_and(|mut c| {
                c.get_all().is_ok_and(|all| {
                    all.len() == entries.len()
                        && entries.iter().all(|(name, v)| {
                            all.iter()
                                .any(|nv| nv.name == *name && nv.value.expose() == v)
                        })
                })
            });
            if ok {
                return 0;
            }
            if t.elapsed() > limit {
                return 1;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        flux_e2e::terminate(&mut self.child, Duration::from_secs(10));
    }
}

/// One etcd member on loopback ports, in a temp dir, stopped on drop.
pub(crate) struct Etcd {
    _dir: tempfile::TempDir,
    pub(crate) port: u16,
    pub(crate) child: Child,
}

impl Etcd {
    pub(crate) fn start() -> Result<Self> {
        Self::start_with(&[])
    }

    /// [`Etcd::start`] with more flags (`--quota-backend-bytes`, …).
    pub(crate) fn start_with(flags: &[&str]) -> Result<Self> {
        let dir = short_tempdir("fxe")?;
        let free = || -> Result<u16> { Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port()) };
        let (port, peer) = (free()?, free()?);
        let client = format!("http://127.0.0.1:{port}");
        let peer = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new("etcd")
            .arg("--name")
            .arg("bench")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("bench={peer}")])
            .args(flags)
            .env_remove("ETCD_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn etcd")?;
        let etcd = Self {
            _dir: dir,
            port,
            child,
        };
        let t = Instant::now();
        while !http(port, "GET", "/health", "").is_ok_and(|b| b.contains("\"health\":\"true\"")) {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("etcd not healthy after 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(etcd)
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Keys under `prefix` and their total size, keys plus values, in
    /// bytes (from the base64 lengths etcd's gateway answers with).
    pub(crate) fn count(&self, prefix: &str) -> Result<(u64, u64)> {
        self.count_where(prefix, |_| true)
    }

    /// [`Self::count`] of the keys under `prefix` that `counted` keeps.
    pub(crate) fn count_where(&self, prefix: &str, counted: KeyFilter) -> Result<(u64, u64)> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let body = json!({"key": b64(prefix.as_bytes()), "range_end": b64(&end)});
        let answer: Value =
            serde_json::from_str(&http(self.port, "POST", "/v3/kv/range", &body.to_string())?)
                .context("etcd's range answer is not JSON")?;
        let kvs: Vec<Value> = answer["kvs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|kv| {
                kv["key"]
                    .as_str()
                    .and_then(unb64)
                    .is_some_and(|k| counted(&String::from_utf8_lossy(&k)))
            })
            .collect();
        let size = |v: &Value| v.as_str().map_or(0, b64_len);
        let bytes = kvs
            .iter()
            .map(|kv| size(&kv["key"]) + size(&kv["value"]))
            .sum();
        Ok((kvs.len() as u64, bytes))
    }

    /// etcd's database size and the part of it in use, in bytes.
    pub(crate) fn status(&self) -> Result<(u64, u64)> {
        let answer: Value =
            serde_json::from_str(&http(self.port, "POST", "/v3/maintenance/status", "{}")?)
                .context("etcd's status answer is not JSON")?;
        let n = |v: &Value| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok((n(&answer["dbSize"]), n(&answer["dbSizeInUse"])))
    }

    /// Watch events sent and bytes sent to clients so far.
    pub(crate) fn metrics(&self) -> Result<(f64, f64)> {
        let text = http(self.port, "GET", "/metrics", "")?;
        let sum = |name: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Ok((
            sum("etcd_debugging_mvcc_events_total"),
            sum("etcd_network_client_grpc_sent_bytes_total"),
        ))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 exchange with etcd on loopback: the body of a 200 answer.
pub(crate) fn http(port: u16, method: &str, path: &str, body: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).context("connect to etcd")?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head.split_whitespace().nth(1).unwrap_or("?");
    if code != "200" {
        bail!("etcd answered {path} with HTTP {code}");
    }
    Ok(body.to_owned())
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 (with padding), as etcd's gateway answers keys.
pub(crate) fn unb64(text: &str) -> Option<Vec<u8>> {
    let sextet = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= sextet(c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// The decoded length of base64 text.
pub(crate) fn b64_len(text: &str) -> u64 {
    let pad = text.bytes().rev().take_while(|&b| b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(pad) as u64
}

/// Keys per range request when etcd's contents are counted.
const COUNT_PAGE: usize = 16;

impl Etcd {
    /// Keys under `prefix` and their total size, keys plus values, in
    /// bytes, read [`COUNT_PAGE`] keys a request (one answer of 1 GB
    /// would not do).
    pub(crate) fn count_paged(&self, prefix: &str) -> Result<(u64, u64)> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let mut from = prefix.as_bytes().to_vec();
        let (mut keys, mut bytes) = (0u64, 0u64);
        loop {
            let body = json!({"key": b64(&from), "range_end": b64(&end), "limit": COUNT_PAGE});
            let answer: Value =
                serde_json::from_str(&http(self.port, "POST", "/v3/kv/range", &body.to_string())?)
                    .context("etcd's range answer is not JSON")?;
            let kvs = answer["kvs"].as_array().cloned().unwrap_or_default();
            let size = |v: &Value| v.as_str().map_or(0, b64_len);
            keys += kvs.len() as u64;
            bytes += kvs
                .iter()
                .map(|kv| size(&kv["key"]) + size(&kv["value"]))
                .sum::<u64>();
            let last = kvs.last().and_then(|kv| kv["key"].as_str());
            match (answer["more"].as_bool(), last) {
                (Some(true), Some(last)) => {
                    from = unb64(last).context("etcd answered a key that is not base64")?;
                    from.push(0);
                }
                _ => return Ok((keys, bytes)),
            }
        }
    }
}

/// etcd's current revision.
pub(crate) fn revision_at(port: u16) -> Result<i64> {
    let answer: Value = serde_json::from_str(&http(port, "POST", "/v3/maintenance/status", "{}")?)
        .context("etcd's status answer is not JSON")?;
    answer["header"]["revision"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .context("etcd's status answer has no revision")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_keys_decode_back() {
        for key in ["/flux/v3/fleet/vaults/p0001", "a", "ab", "abc", ""] {
            assert_eq!(unb64(&b64(key.as_bytes())).as_deref(), Some(key.as_bytes()));
        }
        assert_eq!(unb64("a*=="), None);
    }

    #[test]
    fn base64_of_prefixes_and_decoded_lengths() {
        assert_eq!(b64(b"/flux/v3/"), "L2ZsdXgvdjMv");
        assert_eq!(b64(b"/flux/v30"), "L2ZsdXgvdjMw");
        assert_eq!(b64(b"ab"), "YWI=");
        assert_eq!(b64(b"a"), "YQ==");
        assert_eq!(b64_len("YWI="), 2);
        assert_eq!(b64_len("YQ=="), 1);
        assert_eq!(b64_len("L2ZsdXgvdjMv"), 9);
    }
}
