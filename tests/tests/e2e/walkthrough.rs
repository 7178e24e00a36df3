//! The product page's walk-through, through the real binaries: create a
//! project, set, list, rotate, run, delete, delete the project.

use crate::{assert_value, stderr, stdout};
use flux_e2e::{TestDaemon, assert_no_secret, have_tool};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Stdio};

const KEY_V1: &str = "sk-abc123-first-value-do-not-leak";
const KEY_V2: &str = "sk-newkey456-rotated-value-do-not-leak";
const STRIPE: &str = "sk_test_stripe_value_do_not_leak";

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn seed_walkthrough() {
    let d = TestDaemon::start();

    // Create a project: key, vault and socket, all private. Piped output
    // is plain text: no ✔ marks (those are for a terminal).
    let out = d.ctl_ok(&["projects", "create", "my-app"]);
    assert!(out.starts_with("Project created: my-app\n"), "{out}");
    assert!(out.contains("FLUX_SECRETS_SOCKET="), "{out}");
    assert_eq!(mode(&d.key_path("my-app")), 0o600);
    assert_eq!(mode(&d.vault_path("my-app")), 0o600);
    assert_eq!(mode(&d.project_socket("my-app")), 0o600);
    assert_eq!(mode(&d.control_socket()), 0o600);
    assert_eq!(mode(&d.state_dir()), 0o700);
    assert_eq!(mode(&d.runtime_dir()), 0o700);
    let key = std::fs::read_to_string(d.key_path("my-app")).unwrap();
    assert!(key.starts_with("# created: "), "age-keygen format");
    assert!(key.contains("\n# public key: age1"), "age-keygen format");

    // Set: from the argument, and from stdin with one newline stripped.
    let out = d.ctl_ok(&["secrets", "set", "OPENAI_API_KEY", KEY_V1, "-p", "my-app"]);
    assert_eq!(out, "Secret set: OPENAI_API_KEY\n");
    let mut child = d
        .ctl()
        .args(["secrets", "set", "STRIPE_SECRET_KEY", "--project", "my-app"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{STRIPE}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(stdout(&out), "Secret set: STRIPE_SECRET_KEY\n");

    // A function's long-lived connection.
    let mut function = d.client("my-app");
    assert_value(&mut function, "OPENAI_API_KEY", KEY_V1);
    assert_value(&mut function, "STRIPE_SECRET_KEY", STRIPE);

    // List: names, value digests and "set … ago", sorted, never values;
    // the project comes from FLUX_PROJECT here.
    let project_key = flux_vault::keys::ProjectKey::parse(&key).unwrap();
    let (d1, ds) = (project_key.digest(KEY_V1), project_key.digest(STRIPE));
    let out = d
        .ctl()
        .args(["secrets", "list"])
        .env("FLUX_PROJECT", "my-app")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let listing = stdout(&out);
    assert_eq!(
        listing,
        format!("OPENAI_API_KEY     {d1}  set just now\nSTRIPE_SECRET_KEY  {ds}  set just now\n")
    );
    let out = d.ctl_ok(&["secrets", "list", "--json", "-p", "my-app"]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items = json.as_array().unwrap();
    assert_eq!(items.len(), 2);
    for item in items {
        let obj = item.as_object().unwrap();
        let mut keys: Vec<_> = obj.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["digest", "name", "set_at"]);
        let set_at = obj["set_at"].as_str().unwrap();
        assert!(
            set_at.ends_with('Z') && set_at.contains('T'),
            "RFC 3339: {set_at}"
        );
    }
    assert_eq!(items[0]["name"], "OPENAI_API_KEY");
    for v in [KEY_V1, STRIPE] {
        assert_no_secret(listing.as_bytes(), v, "secrets list");
        assert_no_secret(out.as_bytes(), v, "secrets list --json");
    }

    // flux.json names the project when no flag or env does.
    std::fs::write(d.dir().join("flux.json"), r#"{"name": "my-app"}"#).unwrap();
    assert_eq!(d.ctl_ok(&["secrets", "list"]), listing);

    // Rotate: "updated", and the open connection sees it on its next get.
    let out = d.ctl_ok(&["secrets", "set", "OPENAI_API_KEY", KEY_V2]);
    assert_eq!(
        out,
        "Secret updated: OPENAI_API_KEY\nNew value is live immediately — no redeploy needed.\n"
    );
    assert_value(&mut function, "OPENAI_API_KEY", KEY_V2);

    // Run: the secrets in CMD's environment, CMD's exit status.
    let out = d
        .ctl()
        .args(["run", "--", "sh", "-c", "test \"$OPENAI_API_KEY\" = \"$EXPECT\" && test \"$STRIPE_SECRET_KEY\" = \"$EXPECT2\" && echo same"])
        .env("EXPECT", KEY_V2)
        .env("EXPECT2", STRIPE)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "same\n");
    let out = d.run_ctl(&["run", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "CMD's exit status");
    let out = d.run_ctl(&["run", "--", "/nonexistent/cmd"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("cannot run /nonexistent/cmd"),
        "{}",
        stderr(&out)
    );

    // At rest: the vault holds no value in the clear, and the stock age
    // CLI opens it with the project key.
    let vault = std::fs::read(d.vault_path("my-app")).unwrap();
    for v in [KEY_V1, KEY_V2, STRIPE] {
        assert_no_secret(&vault, v, "the vault file");
    }
    if have_tool("age", "seed_walkthrough (stock age decrypts the vault)") {
        let out = Command::new("age")
            .arg("-d")
            .arg("-i")
            .arg(d.key_path("my-app"))
            .arg(d.vault_path("my-app"))
            .output()
            .unwrap();
        assert!(out.status.success(), "age -d: {}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["format"], "flux-secrets-vault");
        assert_eq!(doc["project"], "my-app");
        assert!(
            doc["secrets"]["OPENAI_API_KEY"]["value"] == KEY_V2,
            "age -d shows the current value"
        );
        assert!(doc["seal"].as_str().unwrap().starts_with("hmac-sha256:"));
    }

    // Delete a secret.
    let out = d.ctl_ok(&["secrets", "delete", "STRIPE_SECRET_KEY"]);
    assert_eq!(
        out,
        "Secret deleted: STRIPE_SECRET_KEY\nIts earlier versions were deleted with it.\n"
    );
    let err = function.get("STRIPE_SECRET_KEY").unwrap_err();
    assert_eq!(err.code(), Some(flux_protocol::ErrorCode::NotFound));
    let out = d.run_ctl(&["secrets", "delete", "STRIPE_SECRET_KEY"]);
    assert_eq!(out.status.code(), Some(3), "not found");

    // Delete the project: needs confirmation, then key, vault and socket go.
    let out = d.run_ctl(&["projects", "delete", "my-app"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("pass --yes"), "{}", stderr(&out));
    assert!(d.key_path("my-app").exists());
    let out = d.ctl_ok(&["projects", "delete", "my-app", "--yes"]);
    assert!(out.starts_with("Project deleted: my-app"), "{out}");
    assert!(!d.key_path("my-app").exists());
    assert!(!d.vault_path("my-app").exists());
    assert!(!d.project_socket("my-app").exists());
    // An open connection is told the project is gone, not just dropped.
    let err = function.get("OPENAI_API_KEY").unwrap_err();
    assert_eq!(
        err.code(),
        Some(flux_protocol::ErrorCode::UnknownProject),
        "{err}"
    );
    assert!(err.to_string().contains("unknown project my-app"), "{err}");
    let out = d.run_ctl(&["secrets", "list"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("unknown project my-app"),
        "{}",
        stderr(&out)
    );

    // fluxd never logged a value, even at trace level.
    let log = d.log();
    for v in [KEY_V1, KEY_V2, STRIPE] {
        assert_no_secret(log.as_bytes(), v, "fluxd's log");
    }
}

#[test]
fn projects_list_and_status() {
    let d = TestDaemon::start();
    d.create_project("alpha");
    d.create_project("beta");
    d.ctl_ok(&["secrets", "set", "A", "1", "-p", "beta"]);
    let out = d.ctl_ok(&["projects", "list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{out}");
    assert!(
        lines[1].starts_with("alpha  ") && lines[1].contains(" 0 "),
        "{out}"
    );
    assert!(
        lines[2].starts_with("beta  ") && lines[2].contains(" 1 "),
        "{out}"
    );
    let out = d.ctl_ok(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pid"], d.pid());
    let projects = status["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 2);
    assert_eq!(projects[1]["name"], "beta");
    assert_eq!(projects[1]["secrets"], 1);
    assert!(projects[1]["generation"].as_u64().unwrap() >= 2);
    assert!(projects[1]["last_error"].is_null());
    let out = d.ctl_ok(&["status"]);
    assert!(out.contains("PROJECT") && out.contains("beta"), "{out}");

    let out = d.run_ctl(&["projects", "create", "alpha"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("project alpha already exists"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn set_from_file_keeps_bytes_exact() {
    let d = TestDaemon::start();
    d.create_project("app");
    let path = d.dir().join("pem");
    let pem = "-----BEGIN TEST-----\nabc\n-----END TEST-----\n\n";
    std::fs::write(&path, pem).unwrap();
    d.ctl_ok(&[
        "secrets",
        "set",
        "PEM",
        "--from-file",
        path.to_str().unwrap(),
        "-p",
        "app",
    ]);
    assert_value(&mut d.client("app"), "PEM", pem);
    let meta = std::fs::metadata(d.vault_path("app")).unwrap();
    assert_eq!(meta.uid(), nix::unistd::getuid().as_raw());
}

/// Runs `fluxctl ARGS` on a terminal (a pty from `script`), typing `input`
/// once the screen shows `prompt` (typed earlier, the terminal would echo
/// it before fluxctl turned echo off). Returns the status and the screen.
fn on_a_terminal(d: &TestDaemon, args: &str, prompt: &str, input: &str) -> (Option<i32>, String) {
    use std::io::Read;
    let command = format!("{} {args}", flux_e2e::bin("fluxctl").display());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("FLUX_RUNTIME_DIR", d.runtime_dir())
        .env_remove("FLUX_PROJECT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut screen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !String::from_utf8_lossy(&screen).contains(prompt) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(chunk) => screen.extend(chunk),
            Err(_) => panic!(
                "no prompt {prompt:?} on the terminal: {}",
                String::from_utf8_lossy(&screen)
            ),
        }
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    screen.extend(rx.try_iter().flatten());
    (status.code(), String::from_utf8_lossy(&screen).into_owned())
}

#[test]
fn at_a_terminal_values_are_prompted_without_echo_and_deletes_are_confirmed() {
    if !have_tool("script", "at_a_terminal_values_are_prompted_without_echo") {
        return;
    }
    let d = TestDaemon::start();
    d.create_project("app");
    let (status, screen) = on_a_terminal(
        &d,
        "secrets set TYPED -p app",
        "(input hidden): ",
        "typed-secret-value\n",
    );
    assert_eq!(status, Some(0), "{screen}");
    assert!(
        screen.contains("Value for TYPED (input hidden): "),
        "{screen}"
    );
    assert!(screen.contains("✔ Secret set: TYPED"), "{screen}");
    assert_no_secret(
        screen.as_bytes(),
        "typed-secret-value",
        "the terminal (no echo)",
    );
    assert_value(&mut d.client("app"), "TYPED", "typed-secret-value");

    // Deleting a project at a terminal asks for its name.
    let confirm = "Type the project name to confirm: ";
    let (status, _) = on_a_terminal(&d, "projects delete app", confirm, "wrong-name\n");
    assert_eq!(status, Some(2));
    assert!(d.key_path("app").exists(), "not confirmed: nothing deleted");
    let (status, screen) = on_a_terminal(&d, "projects delete app", confirm, "app\n");
    assert_eq!(status, Some(0), "{screen}");
    assert!(!d.key_path("app").exists());
}
