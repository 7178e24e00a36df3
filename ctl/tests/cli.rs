//! fluxctl on its own, with no daemon: usage errors and the messages that
//! tell an operator what to do next.

use std::process::{Command, Output};

fn fluxctl(args: &[&str], runtime: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(args)
        .env("FLUX_RUNTIME_DIR", runtime)
        .env_remove("FLUX_PROJECT")
        .current_dir(runtime)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn unreachable_daemon_exits_4_and_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let out = fluxctl(&["projects", "list"], dir.path());
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.starts_with("fluxctl: error: cannot connect to "),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}/control.sock", dir.path().display())),
        "{err}"
    );
    assert!(
        err.contains("is fluxd running? start it with `fluxd`"),
        "{err}"
    );
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn missing_project_is_a_usage_error_that_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = fluxctl(&["secrets", "list"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("pass --project NAME, set FLUX_PROJECT"),
        "{err}"
    );

    std::fs::write(dir.path().join("flux.json"), "{not json").unwrap();
    let out = fluxctl(&["secrets", "list"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("flux.json is not valid JSON"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_names_are_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["secrets", "set", "-p", "app", "A-B", "v"][..],
        &["secrets", "delete", "-p", "app", "9X"],
        &["projects", "create", "a.b"],
    ] {
        let out = fluxctl(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("invalid"), "{}", stderr(&out));
    }
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["secrets"][..], &["bogus"], &["run"], &["secrets", "set"]] {
        let out = fluxctl(args, dir.path());
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// True when `tool` is on PATH; otherwise says SKIPPED for `test`.
fn have_tool(tool: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if !found {
        eprintln!("SKIPPED: {test}: `{tool}` is not installed");
    }
    found
}

/// `fluxctl ARGS` with `stdin` as its standard input.
fn fluxctl_with_stdin(args: &[&str], runtime: &std::path::Path, stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(args)
        .env("FLUX_RUNTIME_DIR", runtime)
        .env_remove("FLUX_PROJECT")
        .current_dir(runtime)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn with_nothing_named_both_places_are_searched_and_named() {
    if std::path::Path::new("/run/flux/control.sock").exists() {
        eprintln!(
            "SKIPPED: with_nothing_named_both_places_are_searched_and_named: a system fluxd serves /run/flux on this machine"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .args(["projects", "list"])
        .env_remove("FLUX_RUNTIME_DIR")
        .env_remove("RUNTIME_DIRECTORY")
        .env("XDG_RUNTIME_DIR", dir.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let err = stderr(&out);
    let mine = format!("{}/flux/control.sock", dir.path().display());
    let at = |s: &str| err.find(s).unwrap_or_else(|| panic!("no {s:?} in {err}"));
    assert!(at(&mine) < at("/run/flux/control.sock"), "in order: {err}");
    for hint in ["--runtime-dir", "FLUX_RUNTIME_DIR", "`fluxd`", "systemctl"] {
        assert!(err.contains(hint), "{hint}: {err}");
    }
    assert!(!err.contains("os error"), "{err}");

    // A folder named explicitly is the only one tried, and the error says
    // where the name came from.
    let out = fluxctl(&["projects", "list"], dir.path());
    assert!(
        stderr(&out).contains("named by FLUX_RUNTIME_DIR"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("/run/flux"), "{}", stderr(&out));
}

#[test]
fn empty_values_are_refused_before_connecting() {
    let dir = tempfile::tempdir().unwrap();
    let set = ["secrets", "set", "-p", "app", "API_KEY"];
    // `echo $UNSET |`, `</dev/null`, an empty argument, an empty file.
    let cases: Vec<(Output, &str)> = vec![
        (
            fluxctl_with_stdin(&set, dir.path(), b"\n"),
            "stdin was empty",
        ),
        (fluxctl_with_stdin(&set, dir.path(), b""), "stdin was empty"),
        (
            fluxctl(&["secrets", "set", "-p", "app", "API_KEY", ""], dir.path()),
            "the value argument is empty",
        ),
        (
            {
                std::fs::write(dir.path().join("empty"), "").unwrap();
                fluxctl(
                    &[
                        "secrets",
                        "set",
                        "-p",
                        "app",
                        "API_KEY",
                        "--from-file",
                        "empty",
                    ],
                    dir.path(),
                )
            },
            "empty is empty",
        ),
    ];
    for (out, why) in cases {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("refusing to set API_KEY to an empty value"),
            "{err}"
        );
        assert!(err.contains(why), "{why}: {err}");
        assert!(err.contains("--allow-empty"), "{err}");
        assert!(!err.contains("cannot connect"), "refused first: {err}");
    }
    // With --allow-empty the value goes on to fluxd (absent here: 4).
    let out = fluxctl_with_stdin(
        &["secrets", "set", "-p", "app", "API_KEY", "--allow-empty"],
        dir.path(),
        b"",
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
}

#[test]
fn a_file_that_cannot_be_read_is_an_io_failure() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &[
            "secrets",
            "set",
            "-p",
            "app",
            "K",
            "--from-file",
            "missing.pem",
        ][..],
        &["secrets", "import", "missing.env", "-p", "app"],
        &["vault", "open", "-i", "missing.key", "missing.age"],
    ] {
        let out = fluxctl(args, dir.path());
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("cannot read") && err.contains("missing."),
            "{err}"
        );
        assert!(err.contains("No such file or directory"), "{err}");
        assert!(!err.contains("os error"), "{err}");
    }
}

#[test]
fn seal_writes_to_a_relative_output_path() {
    // The current folder is the temp dir: a bare file name's parent is "",
    // which must be fsynced as ".", not refused after the file is written.
    let dir = tempfile::tempdir().unwrap();
    let key = flux_vault::keys::ProjectKey::generate();
    std::fs::write(
        dir.path().join("app.key"),
        key.to_file_contents("2026-01-01T00:00:00Z").as_bytes(),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let doc =
        br#"{"format":"flux-secrets-vault","version":2,"project":"app","revision":3,"secrets":{}}"#;
    for output in ["app.age", "./dot.age", "out/app.age"] {
        let out = fluxctl_with_stdin(
            &["vault", "seal", "-i", "app.key", "-o", output],
            dir.path(),
            doc,
        );
        let err = stderr(&out);
        assert!(out.status.success(), "{output}: {err}");
        assert!(err.contains("Vault sealed for project app"), "{err}");
        assert!(!err.contains("fsync"), "{err}");
        let bytes = std::fs::read(dir.path().join(output)).unwrap();
        let opened = flux_vault::vault::open(&bytes, "app", &key).unwrap();
        assert_eq!(opened.revision, 4, "{output}");
    }
    let mut left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["app.age", "app.key", "dot.age", "out"],
        "no temp file left"
    );
}

/// What bash completes for `line` (its last word the one completed),
/// with the script `fluxctl completions bash` prints loaded.
fn bash_completes(script: &std::path::Path, line: &[&str]) -> Vec<String> {
    let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let code = format!(
        "source {}\nCOMP_WORDS=({}); COMP_CWORD={}; COMP_TYPE=9\n_clap_complete_fluxctl fluxctl {} {}\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.join(" "),
        line.len() - 1,
        words[line.len() - 1],
        words[line.len() - 2],
    );
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_fluxctl"))
        .parent()
        .unwrap();
    let out = Command::new("bash")
        .args(["-c", &code])
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("FLUX_RUNTIME_DIR", script.parent().unwrap())
        .output()
        .unwrap();
    assert!(out.stderr.is_empty(), "{}", stderr(&out));
    stdout(&out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = fluxctl(&["completions", shell], dir.path());
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        // The script calls fluxctl back for every completion.
        assert!(script.contains("COMPLETE"), "{shell}: {script}");
        assert!(script.contains("fluxctl"), "{shell}: {script}");
        // Each script parses in its own shell, where that shell is here.
        if have_tool(shell, &format!("completions_{shell}_parse")) {
            let path = dir.path().join(format!("fluxctl.{shell}"));
            std::fs::write(&path, &script).unwrap();
            let check = Command::new(shell).arg("-n").arg(&path).output().unwrap();
            assert!(check.status.success(), "{shell} -n: {}", stderr(&check));
        }
    }
    if have_tool("bash", "completions_complete_in_bash") {
        let script = dir.path().join("fluxctl.bash");
        assert_eq!(
            bash_completes(&script, &["fluxctl", "secrets", "im"]),
            ["import"]
        );
        assert_eq!(
            bash_completes(&script, &["fluxctl", "secrets", "set", "--allow"]),
            ["--allow-empty"]
        );
        // No `get`: it is not a command (it only explains why).
        assert!(bash_completes(&script, &["fluxctl", "secrets", "g"]).is_empty());
    }
    // Only its own variable makes fluxctl answer as a completer: a
    // COMPLETE exported for another program changes nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
        .arg("--version")
        .env("COMPLETE", "bash")
        .output()
        .unwrap();
    assert!(stdout(&out).starts_with("fluxctl "), "{}", stdout(&out));
    let out = fluxctl(&["completions", "tcsh"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_for_fluxctl_and_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = fluxctl(&["man"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(page.contains(".TH fluxctl 1 "), "{page}");
    assert!(page.contains("Flux Secrets"), "the manual: {page}");
    for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH EXAMPLES"] {
        assert!(page.contains(section), "{section}: {page}");
    }
    assert!(
        !page.contains(".SH EXTRA"),
        "exit codes have their own section: {page}"
    );
    assert!(
        page.contains("\\fB7\\fR"),
        "status's unhealthy exit: {page}"
    );
    assert!(
        page.contains("fluxctl secrets set OPENAI_API_KEY"),
        "{page}"
    );

    let man = dir.path().join("man");
    let out = fluxctl(&["man", "--out-dir", man.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let mut pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for want in [
        "fluxctl.1",
        "fluxctl-secrets.1",
        "fluxctl-secrets-set.1",
        "fluxctl-secrets-list.1",
        "fluxctl-secrets-delete.1",
        "fluxctl-secrets-import.1",
        "fluxctl-projects-create.1",
        "fluxctl-projects-list.1",
        "fluxctl-projects-delete.1",
        "fluxctl-run.1",
        "fluxctl-init.1",
        "fluxctl-audit.1",
        "fluxctl-status.1",
        "fluxctl-hosts-list.1",
        "fluxctl-hosts-add.1",
        "fluxctl-hosts-remove.1",
        "fluxctl-vault-open.1",
        "fluxctl-vault-seal.1",
        "fluxctl-vault-restore.1",
        "fluxctl-completions.1",
    ] {
        assert!(pages.iter().any(|p| p == want), "{want} in {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("help")), "{pages:?}");
    let set = std::fs::read_to_string(man.join("fluxctl-secrets-set.1")).unwrap();
    assert!(set.contains("allow\\-empty"), "{set}");
    let top = std::fs::read_to_string(man.join("fluxctl.1")).unwrap();
    assert_eq!(top, page, "the same top page, printed or written");

    // Every page formats without a warning, where groff is here.
    if have_tool("groff", "man_pages_format_cleanly") {
        for page in &pages {
            let out = Command::new("groff")
                // -k: through preconv, as man renders pages.
                .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
                .arg(man.join(page))
                .output()
                .unwrap();
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{page}: {}",
                stderr(&out)
            );
        }
    }
}

#[test]
fn init_keeps_every_env_file_out_of_git_in_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".gitignore"), "target/\n.env\n").unwrap();
    let out = fluxctl(&["init", "my-app"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(".gitignore: added .env.* *.env !.env.example"),
        "{text}"
    );
    assert!(!text.contains('✔'), "piped output is plain: {text}");
    let ignore = std::fs::read_to_string(dir.path().join(".gitignore")).unwrap();
    assert!(ignore.starts_with("target/\n.env\n"), "{ignore:?}");
    assert!(
        ignore.ends_with("\n.env.*\n*.env\n!.env.example\n"),
        "{ignore:?}"
    );
    if have_tool("git", "init_patterns_match_in_git") {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap()
        };
        assert!(git(&["init", "-q"]).status.success());
        for (file, ignored) in [
            (".env", true),
            (".env.local", true),
            (".env.production", true),
            ("prod.env", true),
            (".env.example", false),
            ("flux.json", false),
        ] {
            let out = git(&["check-ignore", "-q", file]);
            assert_eq!(out.status.success(), ignored, "{file}");
        }
    }

    // Again, as JSON: one document, nothing added.
    let out = fluxctl(&["init", "my-app", "--json"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["project"], "my-app");
    assert_eq!(doc["flux_json_written"], false);
    assert_eq!(doc["gitignore_added"], serde_json::json!([]));
}

/// `fluxctl ARGS` on a terminal (through `script`), with `env` set;
/// returns what the terminal showed.
fn on_a_terminal(args: &str, dir: &std::path::Path, env: &[(&str, &str)]) -> String {
    let out = Command::new("script")
        .args(["-qec"])
        .arg(format!("{} {args}", env!("CARGO_BIN_EXE_fluxctl")))
        .arg("/dev/null")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .envs(env.iter().copied())
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn marks_on_a_terminal_and_none_with_no_color() {
    if !have_tool("script", "marks_on_a_terminal_and_none_with_no_color") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let screen = on_a_terminal("init my-app", dir.path(), &[]);
    assert!(
        screen.contains("✔ Wrote flux.json: project my-app"),
        "{screen}"
    );
    let screen = on_a_terminal("init my-app", dir.path(), &[("NO_COLOR", "1")]);
    assert!(
        screen.contains("flux.json already names project my-app"),
        "{screen}"
    );
    assert!(!screen.contains('✔'), "NO_COLOR: {screen}");
    // NO_COLOR set but empty does not count (no-color.org).
    let screen = on_a_terminal("init my-app", dir.path(), &[("NO_COLOR", "")]);
    assert!(screen.contains('✔'), "{screen}");
}

#[test]
fn flux_is_the_same_cli_under_the_product_pages_name() {
    let dir = tempfile::tempdir().unwrap();
    let flux = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flux"))
            .args(args)
            .env("FLUX_RUNTIME_DIR", dir.path())
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = flux(&["--version"]);
    assert!(stdout(&out).starts_with("flux "), "{}", stdout(&out));
    let out = flux(&["projects", "list"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        stderr(&out).starts_with("flux: error: cannot connect to "),
        "{}",
        stderr(&out)
    );

    // Its own man pages: flux.1, a page per command, the page's examples.
    let out = flux(&["man"]);
    let page = stdout(&out);
    assert!(page.contains(".TH flux 1 "), "{page}");
    assert!(page.contains("flux secrets set OPENAI_API_KEY"), "{page}");
    assert!(page.contains("flux dev \\-\\- node server.js"), "{page}");
    let man = dir.path().join("man");
    let out = flux(&["man", "--out-dir", man.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for want in [
        "flux.1",
        "flux-secrets-set.1",
        "flux-dev.1",
        "flux-status.1",
    ] {
        assert!(man.join(want).exists(), "{want}");
    }

    // Its own completion scripts, registered for `flux`.
    let out = flux(&["completions", "bash"]);
    let script = stdout(&out);
    assert!(script.contains("_clap_complete_flux "), "{script}");
    assert!(
        script.contains("COMPLETE=\"bash\"") && script.contains("\"flux\" -- "),
        "{script}"
    );
    let out = flux(&["completions", "zsh"]);
    assert!(
        stdout(&out).starts_with("#compdef flux\n"),
        "{}",
        stdout(&out)
    );
}
