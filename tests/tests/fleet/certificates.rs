//! Two etcd certificate set-ups that etcd's JSON gateway cannot serve,
//! against a real etcd with `--client-cert-auth`: fluxd's error names the
//! certificate to change, not only what etcd answered. Each etcd also
//! listens on plain HTTP on loopback, for the test's own set-up calls.

use crate::cluster::{EtcdHttp, free_port, have_etcd};
use flux_e2e::TestDaemon;
use serde_json::Value;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A CA, two etcd server certificates (`server-only`: serverAuth;
/// `server-both`: serverAuth and clientAuth) and two client certificates
/// (`client-cn`: CommonName "fluxd"; `client-no-cn`: none), as
/// `<name>.pem` and `<name>-key.pem` in a temp dir.
fn certificates() -> tempfile::TempDir {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, SanType,
    };
    let dir = tempfile::Builder::new()
        .prefix("fx-certs")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "flux certificate test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).expect("write ca.pem");
    let issue = |name: &str, common_name: Option<&str>, usage: &[ExtendedKeyUsagePurpose]| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        // rcgen's default subject has a CommonName: start from none.
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "flux test");
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.extended_key_usages = usage.to_vec();
        let cert = params
            .signed_by(&key, &ca_cert, &ca_key)
            .expect("certificate");
        std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).expect("write cert");
        std::fs::write(
            dir.path().join(format!("{name}-key.pem")),
            key.serialize_pem(),
        )
        .expect("write key");
    };
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    issue("server-only", Some("etcd"), &[ServerAuth]);
    issue("server-both", Some("etcd"), &[ServerAuth, ClientAuth]);
    issue("client-cn", Some("fluxd"), &[ClientAuth]);
    issue("client-no-cn", None, &[ClientAuth]);
    dir
}

/// One etcd member: clients over TLS (client certificates required) on
/// one port, plain HTTP on another for the test's set-up.
struct TlsEtcd {
    dir: tempfile::TempDir,
    http: u16,
    https: u16,
    child: Child,
}

impl TlsEtcd {
    /// Starts etcd with the server certificate `server` (a name in
    /// [`certificates`]) and waits until it answers.
    fn start(certs: &Path, server: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("fx-etcd")
            .tempdir_in("/tmp")
            .expect("temp dir");
        let (http, https, peer) = (free_port(), free_port(), free_port());
        let log = File::create(dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .arg("--name=m0")
            .arg(format!("--data-dir={}", dir.path().join("m0").display()))
            .arg(format!(
                "--listen-client-urls=http://127.0.0.1:{http},https://127.0.0.1:{https}"
            ))
            .arg(format!("--advertise-client-urls=https://127.0.0.1:{https}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=m0=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--cert-file={}",
                certs.join(format!("{server}.pem")).display()
            ))
            .arg(format!(
                "--key-file={}",
                certs.join(format!("{server}-key.pem")).display()
            ))
            .arg(format!(
                "--trusted-ca-file={}",
                certs.join("ca.pem").display()
            ))
            .arg("--client-cert-auth")
            .env_remove("ETCD_NAME")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        let etcd = Self {
            dir,
            http,
            https,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !crate::cluster::http(etcd.http, "GET", "/health", None, None)
            .is_ok_and(|(_, body)| body.contains("\"health\":\"true\""))
        {
            assert!(
                Instant::now() < deadline,
                "etcd not healthy after 30 s:\n{}",
                etcd.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        etcd
    }

    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.https)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    /// A set-up call on the plain port that must succeed.
    fn ok(&self, path: &str, body: Value) {
        let plain = EtcdHttp {
            port: self.http,
            token: None,
        };
        if let Err(e) = plain.call(path, body) {
            panic!("etcd set-up call {path}: {e}");
        }
    }

    /// `etcdctl user add flux`, `user add root` (with the root role) and
    /// `auth enable`; returns the password file of `flux`.
    fn enable_auth(&self, dir: &Path) -> std::path::PathBuf {
        use serde_json::json;
        self.ok(
            "/v3/auth/user/add",
            json!({"name": "flux", "password": "flux-etcd-pw"}),
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
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `[store]` for `etcd` over TLS with the client certificate `client`.
fn store(etcd: &TlsEtcd, certs: &Path, client: &str, extra: &str) -> String {
    format!(
        "[store]\nkind = \"etcd\"\nendpoints = [\"{}\"]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n{extra}",
        etcd.endpoint(),
        certs.join("ca.pem").display(),
        certs.join(format!("{client}.pem")).display(),
        certs.join(format!("{client}-key.pem")).display(),
    )
}

/// Waits until `fluxctl status --json` lists a problem containing
/// `needle`; returns the problems.
fn wait_status_problem(host: &TestDaemon, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = crate::support::status_json(host);
        let problems = status["problems"].to_string();
        if problems.contains(needle) {
            return problems;
        }
        assert!(
            Instant::now() < deadline,
            "fluxd's problems never said {needle:?}: {problems}\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_certificate_without_client_auth_is_named() {
    if !have_etcd("a_server_certificate_without_client_auth_is_named") {
        return;
    }
    let certs = certificates();
    let etcd = TlsEtcd::start(certs.path(), "server-only");
    let host = TestDaemon::start_with_config(&store(&etcd, certs.path(), "client-no-cn", ""));
    // etcd answers every call with HTTP 503 "connection closed": its
    // gateway's own connection to etcd is refused.
    let problems = wait_status_problem(&host, "etcd's JSON gateway could not reach etcd itself");
    assert!(problems.contains(&etcd.endpoint()), "{problems}");
    assert!(problems.contains("HTTP 503"), "{problems}");
    assert!(
        problems.contains(
            "etcd's server certificate must carry the clientAuth extended key usage as well as serverAuth"
        ),
        "{problems}"
    );
    assert!(
        etcd.log().contains("incompatible key usage"),
        "etcd refused its own certificate for another reason:\n{}",
        etcd.log()
    );
}

#[test]
fn a_client_certificate_common_name_with_etcd_auth_is_named() {
    if !have_etcd("a_client_certificate_common_name_with_etcd_auth_is_named") {
        return;
    }
    let certs = certificates();
    let etcd = TlsEtcd::start(certs.path(), "server-both");
    let password = etcd.enable_auth(certs.path());
    let login = format!(
        "username = \"flux\"\npassword_file = \"{}\"\n",
        password.display()
    );
    // With a CommonName etcd refuses the request whatever the login: HTTP
    // 400, and fluxd says which certificate to issue.
    for extra in [login.as_str(), ""] {
        let host = TestDaemon::start_with_config(&store(&etcd, certs.path(), "client-cn", extra));
        let problems = wait_status_problem(&host, "CommonName of client sending a request");
        assert!(problems.contains("HTTP 400"), "{problems}");
        assert!(
            problems.contains("issue fluxd's client certificate without a CommonName"),
            "{problems}"
        );
        assert!(
            !problems.contains("flux-etcd-pw"),
            "the problem quotes the password"
        );
    }
    // Without one, the gateway takes the login: what is left is etcd's
    // own answer (the flux user has no role here), with no hint.
    let host = TestDaemon::start_with_config(&store(&etcd, certs.path(), "client-no-cn", &login));
    let problems = wait_status_problem(&host, "permission denied");
    assert!(!problems.contains("CommonName"), "{problems}");
}
