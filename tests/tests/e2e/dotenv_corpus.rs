//! The `.env` corpus (`tests/data/dotenv-corpus/`) through the real
//! binaries: for every case, `fluxd dev` serves exactly what the parser
//! reads and logs one warning per reported line, and `fluxctl secrets
//! import` refuses a file with reported lines (listing each), imports the
//! rest with `--skip-invalid`, and stores exactly what the parser reads.
//! No value reaches a log or an error; failures name cases, not values.

use crate::dev::spawn_dev_logged;
use crate::{stderr, stdout};
use flux_e2e::{TestDaemon, assert_no_secret};
use flux_protocol::blocking::Client;
use flux_vault::dotenv::{Options, Parsed, parse};
use std::collections::BTreeMap;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/dotenv-corpus/cases.json");

struct Case {
    id: String,
    input: String,
    /// What the parser serves, by name.
    want: BTreeMap<String, String>,
    /// `file:line:col: ` of each reported line, for a file named `file`.
    issues: Vec<String>,
}

fn cases(file: &str) -> Vec<Case> {
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(CORPUS).unwrap()).unwrap();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let input = c["input"].as_str().unwrap().to_owned();
            let Parsed { entries, issues } =
                parse(input.as_bytes(), file, &Options::default()).unwrap();
            Case {
                id: c["id"].as_str().unwrap().to_owned(),
                input,
                want: entries
                    .into_iter()
                    .map(|(n, v)| (n, v.expose().to_owned()))
                    .collect(),
                issues: issues
                    .iter()
                    .map(|i| format!("{}:{}:{}: ", i.file, i.line, i.column))
                    .collect(),
            }
        })
        .collect()
}

/// Values distinctive enough that finding one in a log means it leaked
/// (plain lowercase words such as `backticks` also occur in messages).
fn telltales(case: &Case) -> impl Iterator<Item = &str> {
    case.want
        .values()
        .map(String::as_str)
        .filter(|v| v.len() >= 8 && !v.chars().all(|c| c.is_ascii_lowercase() || c == ' '))
}

/// The names and values a project serves match the parser's, or why not
/// (never a value).
fn compare(id: &str, client: &mut Client, want: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names: Vec<String> = client.list().unwrap().into_iter().map(|s| s.name).collect();
    names.sort();
    let want_names: Vec<&String> = want.keys().collect();
    if names.iter().collect::<Vec<_>>() != want_names {
        problems.push(format!(
            "{id}: serves {names:?}, the parser reads {want_names:?}"
        ));
        return problems;
    }
    for (name, value) in want {
        let got = client.get(name).unwrap();
        if got.expose() != value {
            problems.push(format!(
                "{id}: {name}: {} bytes served, the parser reads {} bytes",
                got.len(),
                value.len()
            ));
        }
    }
    problems
}

#[test]
fn fluxd_dev_serves_every_corpus_case_as_the_parser_reads_it() {
    let mut problems = Vec::new();
    for case in cases(".env") {
        let tmp = tempfile::Builder::new()
            .prefix("fxc")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(tmp.path().join(".env"), &case.input).unwrap();
        let log_path = tmp.path().join("fluxd.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let (mut child, socket) = spawn_dev_logged(tmp.path(), &["--project", "app"], log);
        let mut client = Client::connect(&socket).unwrap();
        problems.extend(compare(&case.id, &mut client, &case.want));
        drop(client);
        flux_e2e::terminate(&mut child, std::time::Duration::from_secs(5));
        let log = std::fs::read_to_string(&log_path).unwrap();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") && l.contains("fluxd::store::dev"))
            .collect();
        if warnings.len() != case.issues.len() {
            problems.push(format!(
                "{}: {} warnings logged, {} lines reported by the parser",
                case.id,
                warnings.len(),
                case.issues.len()
            ));
        }
        for at in &case.issues {
            if !warnings.iter().any(|w| w.contains(at.as_str())) {
                problems.push(format!("{}: no warning at {at}", case.id));
            }
        }
        for value in telltales(&case) {
            assert_no_secret(
                log.as_bytes(),
                value,
                &format!("{}: fluxd dev's log", case.id),
            );
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn fluxctl_import_refuses_reported_lines_and_imports_the_rest_when_told() {
    let d = TestDaemon::start();
    let mut problems = Vec::new();
    for (n, case) in cases("corpus.env").into_iter().enumerate() {
        let project = format!("c{n}");
        d.create_project(&project);
        let file = d.dir().join("corpus.env");
        std::fs::write(&file, &case.input).unwrap();
        let import = |extra: &[&str]| {
            // Empty values are part of the corpus: allowed here.
            let mut args = vec![
                "secrets",
                "import",
                "corpus.env",
                "--allow-empty",
                "-p",
                project.as_str(),
            ];
            args.extend_from_slice(extra);
            d.run_ctl(&args)
        };
        let plain = import(&[]);
        let out = [stdout(&plain), stderr(&plain)].concat();
        for value in telltales(&case) {
            assert_no_secret(
                out.as_bytes(),
                value,
                &format!("{}: fluxctl's output", case.id),
            );
        }
        let imported = if !case.issues.is_empty() {
            if plain.status.code() != Some(2) {
                problems.push(format!(
                    "{}: reported lines, yet import exited {}",
                    case.id, plain.status
                ));
            }
            for at in &case.issues {
                if !stderr(&plain).contains(&format!("  {at}")) {
                    problems.push(format!("{}: the refusal does not list {at}", case.id));
                }
            }
            let skip = import(&["--skip-invalid"]);
            let out = [stdout(&skip), stderr(&skip)].concat();
            for value in telltales(&case) {
                assert_no_secret(
                    out.as_bytes(),
                    value,
                    &format!("{}: fluxctl's output", case.id),
                );
            }
            skip
        } else {
            plain
        };
        if case.want.is_empty() {
            if imported.status.code() != Some(2) || !stderr(&imported).contains("holds no secrets")
            {
                problems.push(format!(
                    "{}: nothing to import, yet: {}",
                    case.id,
                    stderr(&imported)
                ));
            }
            continue;
        }
        if !imported.status.success() {
            problems.push(format!("{}: import failed: {}", case.id, stderr(&imported)));
            continue;
        }
        problems.extend(compare(&case.id, &mut d.client(&project), &case.want));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
