//! End-to-end tests: the real `fluxd` and `fluxctl` on temp dirs, talking
//! over real sockets. One test binary, one module per area.

mod access;
mod audit_flood;
mod authorization;
mod bad_input;
mod browser;
mod cli;
mod clients;
mod dashboard;
mod dev;
mod docs;
mod dotenv_corpus;
mod durability;
mod flux;
mod hardening;
mod metrics;
mod protocol_contract;
mod render;
mod rotation;
mod run_watch;
mod serving;
mod systemd;
mod versions;
mod walkthrough;
mod workload;

use flux_protocol::blocking::Client;

/// A read that saw the daemon close the connection: end of stream or a
/// reset, not a read timeout running out.
pub fn cut_off(read: &std::io::Result<usize>) -> bool {
    match read {
        Ok(n) => *n == 0,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// The problem `status` reports for `project`, if any.
pub fn last_error(d: &flux_e2e::TestDaemon, project: &str) -> Option<String> {
    d.control()
        .status()
        .unwrap()
        .projects
        .into_iter()
        .find(|p| p.name == project)
        .and_then(|p| p.last_error)
}

/// Asserts a secret's value without ever printing it.
pub fn assert_value(client: &mut Client, name: &str, want: &str) {
    let got = client
        .get(name)
        .unwrap_or_else(|e| panic!("get {name}: {e}"));
    assert!(
        got.expose() == want,
        "{name}: value differs from the one set ({} bytes, expected {} bytes)",
        got.len(),
        want.len()
    );
}

/// stdout of a finished command as text.
/// The project's key, as its (plain) key file holds it.
pub fn key_of(d: &flux_e2e::TestDaemon, project: &str) -> flux_vault::keys::ProjectKey {
    flux_vault::keys::ProjectKey::parse(&std::fs::read_to_string(d.key_path(project)).unwrap())
        .unwrap()
}

/// Secrets holding `pairs`, set now.
pub fn secrets(pairs: &[(&str, &str)]) -> flux_vault::vault::Secrets {
    pairs
        .iter()
        .map(|(n, v)| {
            (
                n.to_string(),
                flux_vault::vault::Entry {
                    value: flux_protocol::SecretValue::from(*v),
                    set_at_ms: flux_vault::time::now_ms(),
                },
            )
        })
        .collect()
}

pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a finished command as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
