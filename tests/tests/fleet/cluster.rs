//! A real etcd for the fleet tests: members on loopback ports in a temp
//! dir, plain or with TLS and client certificates (made here), and a raw
//! HTTP client of etcd's JSON gateway — the attacker's tool, which holds
//! no host key and shares no code with fluxd's client.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn have_etcd(test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("etcd").is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!(
            "SKIPPED: {test}: `etcd` is not installed (.ci/run installs etcd-server: apt-get install -y etcd-server)"
        );
    }
    found
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Certificates made for one test: a CA, etcd's server certificate (for
/// 127.0.0.1) and a client certificate, all PEM files in `dir`.
pub struct Tls {
    dir: tempfile::TempDir,
}

impl Tls {
    pub fn make() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fx-tls")
            .tempdir_in("/tmp")
            .expect("temp dir");
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            SanType,
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "flux fleet test CA");
        let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
        let issue = |name: &str, usage: &[ExtendedKeyUsagePurpose]| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = usage.to_vec();
            let cert = params
                .signed_by(&key, &ca_cert, &ca_key)
                .expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        // etcd's HTTP gateway connects to etcd itself with the server
        // certificate, so with --client-cert-auth it must be a client
        // certificate too.
        let (server, server_key) = issue(
            "etcd",
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client, client_key) = issue("fluxd", &[ExtendedKeyUsagePurpose::ClientAuth]);
        for (name, pem) in [
            ("ca.pem", ca_cert.pem()),
            ("server.pem", server),
            ("server-key.pem", server_key),
            ("client.pem", client),
            ("client-key.pem", client_key),
        ] {
            std::fs::write(dir.path().join(name), pem).expect("write a PEM file");
        }
        Self { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// One etcd member on loopback.
pub struct EtcdMember {
    pub name: String,
    dir: PathBuf,
    client: u16,
    peer: u16,
    cluster: String,
    tls: Option<PathBuf>,
    extra: Vec<String>,
    child: Option<Child>,
}

impl EtcdMember {
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client)
    }

    /// Watch events this member has sent so far
    /// (`etcd_debugging_mvcc_events_total` of its `/metrics`).
    pub fn watch_events_sent(&self) -> u64 {
        let (_, text) = http(self.client, "GET", "/metrics", None, None).expect("etcd's /metrics");
        text.lines()
            .filter_map(|l| l.strip_prefix("etcd_debugging_mvcc_events_total"))
            .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}.log", self.name))
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "etcd member already running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log");
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(self.url())
            .arg("--advertise-client-urls")
            .arg(self.url())
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", self.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", self.peer))
            .arg("--initial-cluster")
            .arg(&self.cluster)
            .arg("--initial-cluster-token")
            .arg("flux-fleet-test");
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file")
                .arg(tls.join("server.pem"))
                .arg("--key-file")
                .arg(tls.join("server-key.pem"))
                .arg("--trusted-ca-file")
                .arg(tls.join("ca.pem"))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(&self.extra)
            .env_remove("ETCD_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Freezes the member (SIGSTOP): it keeps its connections open and
    /// answers nothing, as an overloaded member or a stalled link does.
    pub fn pause(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a paused member go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let child = self.child.as_ref().expect("etcd member running");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a pid"));
        nix::sys::signal::kill(pid, signal).expect("signal etcd");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// True once the member answers `/health` with `"health":"true"` (with
    /// TLS: once its log says it serves clients).
    fn healthy(&self) -> bool {
        if self.tls.is_some() {
            return self.log().contains("ready to serve client requests");
        }
        match http(self.client, "GET", "/health", None, None) {
            Ok((_, body)) => body.contains("\"health\":\"true\""),
            Err(_) => false,
        }
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An etcd cluster of `n` members on loopback, in a temp dir.
pub struct Etcd {
    dir: tempfile::TempDir,
    pub members: Vec<EtcdMember>,
}

impl Etcd {
    pub fn start(n: usize) -> Self {
        Self::start_with(n, None, &[])
    }

    /// `n` members started with `extra` etcd flags.
    pub fn start_args(n: usize, extra: &[&str]) -> Self {
        Self::start_with(n, None, extra)
    }

    /// One member serving clients over TLS only, with client
    /// certificates required (`--client-cert-auth`).
    pub fn start_tls() -> (Self, Tls) {
        let tls = Tls::make();
        let etcd = Self::start_with(1, Some(tls.dir.path().to_path_buf()), &[]);
        (etcd, tls)
    }

    fn start_with(n: usize, tls: Option<PathBuf>, extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fx-etcd")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let cluster = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| EtcdMember {
                name: format!("m{i}"),
                dir: dir.path().to_path_buf(),
                client: *client,
                peer: *peer,
                cluster: cluster.clone(),
                tls: tls.clone(),
                extra: extra.iter().map(|s| s.to_string()).collect(),
                child: None,
            })
            .collect();
        let mut etcd = Self { dir, members };
        for m in &mut etcd.members {
            m.start();
        }
        etcd.wait_healthy();
        etcd
    }

    /// Waits (polling, bounded) until every running member is healthy.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for m in self.members.iter().filter(|m| m.running()) {
            while !m.healthy() {
                assert!(
                    Instant::now() < deadline,
                    "etcd member {} not healthy after 30 s:\n{}",
                    m.name,
                    m.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(EtcdMember::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn stop(&mut self) {
        for m in &mut self.members {
            m.stop();
        }
    }

    pub fn restart(&mut self) {
        for m in &mut self.members {
            m.start();
        }
        self.wait_healthy();
    }

    /// A cold copy of a stopped single-member cluster's data: what a backup
    /// taken now holds.
    pub fn backup(&self, name: &str) -> PathBuf {
        assert!(self.members.iter().all(|m| !m.running()), "stop etcd first");
        let to = self.dir.path().join(name);
        copy_dir(&self.members[0].data_dir(), &to);
        to
    }

    /// Puts a backup back in place of the (stopped) member's data.
    pub fn restore(&self, backup: &Path) {
        assert!(self.members.iter().all(|m| !m.running()), "stop etcd first");
        let data = self.members[0].data_dir();
        std::fs::remove_dir_all(&data).expect("remove the member's data");
        copy_dir(backup, &data);
    }

    /// The attacker's client: etcd's HTTP API on the first member, no host
    /// key.
    pub fn raw(&self) -> EtcdHttp {
        EtcdHttp {
            port: self.members[0].client,
            token: None,
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("cp");
    assert!(status.success(), "copying etcd's data failed");
}

/// One HTTP/1.0 exchange on loopback: the status code and the body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_owned()))
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| B64.decode(s).ok())
        .unwrap_or_default()
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    let last = end.pop().expect("a non-empty prefix");
    end.push(last + 1);
    end
}

fn num(v: &Value) -> i64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_i64())
        .unwrap_or(0)
}

/// etcd's JSON gateway over plain HTTP, as anyone on its client port can
/// use it.
pub struct EtcdHttp {
    pub port: u16,
    pub token: Option<String>,
}

impl EtcdHttp {
    pub fn call(&self, path: &str, body: Value) -> Result<Value, String> {
        let (code, text) = http(
            self.port,
            "POST",
            path,
            Some(&body.to_string()),
            self.token.as_deref(),
        )?;
        if code != 200 {
            return Err(format!("HTTP {code}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("not JSON ({e}): {text}"))
    }

    fn ok(&self, path: &str, body: Value) -> Value {
        self.call(path, body)
            .unwrap_or_else(|e| panic!("etcd {path} failed: {e}"))
    }

    /// Puts `value` at `key`; returns the revision.
    pub fn put(&self, key: &str, value: &[u8]) -> i64 {
        let v = self.ok(
            "/v3/kv/put",
            json!({"key": b64(key.as_bytes()), "value": b64(value)}),
        );
        num(&v["header"]["revision"])
    }

    pub fn delete(&self, key: &str) {
        self.ok("/v3/kv/deleterange", json!({"key": b64(key.as_bytes())}));
    }

    /// Deletes every key under `prefix`; returns how many went.
    pub fn delete_prefix(&self, prefix: &str) -> i64 {
        let v = self.ok(
            "/v3/kv/deleterange",
            json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix))}),
        );
        num(&v["deleted"])
    }

    /// Every key and value under `prefix` now.
    pub fn list(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.list_at(prefix, 0)
            .unwrap_or_else(|e| panic!("reading {prefix} failed: {e}"))
    }

    /// Every key and value under `prefix` at `revision` (0: now), as
    /// `etcdctl get --rev` reads history.
    pub fn list_at(&self, prefix: &str, revision: i64) -> Result<Vec<(String, Vec<u8>)>, String> {
        let v = self.call(
            "/v3/kv/range",
            json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)), "revision": revision.to_string()}),
        )?;
        Ok(v["kvs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(&unb64(&kv["key"])).into_owned(),
                            unb64(&kv["value"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.list(key)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The store's current revision.
    pub fn revision(&self) -> i64 {
        let v = self.ok("/v3/kv/range", json!({"key": b64(b"/flux/")}));
        num(&v["header"]["revision"])
    }

    /// Turns on etcd authentication with a `root` user and a `flux` user
    /// allowed `/flux/` only; returns the password file of `flux`.
    pub fn enable_auth(&self, dir: &Path) -> PathBuf {
        let range = json!({"key": b64(b"/flux/"), "range_end": b64(&prefix_end("/flux/"))});
        self.ok("/v3/auth/role/add", json!({"name": "flux"}));
        let mut perm = range;
        perm["permType"] = json!("READWRITE");
        self.ok("/v3/auth/role/grant", json!({"name": "flux", "perm": perm}));
        self.ok(
            "/v3/auth/user/add",
            json!({"name": "flux", "password": "flux-etcd-pw"}),
        );
        self.ok(
            "/v3/auth/user/grant",
            json!({"user": "flux", "role": "flux"}),
        );
        self.ok(
            "/v3/auth/user/add",
            json!({"name": "root", "password": "root-etcd-pw"}),
        );
        self.ok(
            "/v3/auth/user/grant",
            json!({"user": "root", "role": "root"}),
        );
        self.ok("/v3/auth/enable", json!({}));
        let file = dir.join("etcd-password");
        std::fs::write(&file, "flux-etcd-pw\n").expect("password file");
        file
    }

    /// A client authenticated as `name`.
    pub fn login(&self, name: &str, password: &str) -> Result<Self, String> {
        let v = self.call(
            "/v3/auth/authenticate",
            json!({"name": name, "password": password}),
        )?;
        Ok(Self {
            port: self.port,
            token: v["token"].as_str().map(str::to_owned),
        })
    }
}
