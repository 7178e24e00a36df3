//! The real-world corpus (`tests/data/dotenv-corpus/cases.json`): parse
//! cases from the test suites of Node's dotenv, python-dotenv, dotenvy,
//! godotenv and Ruby's dotenv, each with its project's expected values and
//! what the reference parsers read. Every case runs through the parser and
//! must keep the rule of `docs/DOTENV.md`:
//!
//! - Flux serves exactly what Node's dotenv reads, less the names Flux
//!   cannot hold (each of those is reported);
//! - a value served without an issue never differs from a value that two
//!   of Node, python-dotenv and dotenvy agree on;
//! - Node's own example files load as Node reads them.
//!
//! The counts against each project's own expectations are asserted, so the
//! figures quoted in `docs/DOTENV.md` stay true. Failure messages name
//! cases and names, never values (digests and lengths instead).

use super::{Options, Parsed, parse};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/dotenv-corpus/cases.json"
);

/// What one reference or project read for a case.
fn values(v: &Value) -> BTreeMap<String, Option<String>> {
    v.get("values")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned)))
                .collect()
        })
        .unwrap_or_default()
}

/// A short fingerprint of a value for failure messages.
fn shown(v: Option<&str>) -> String {
    match v {
        None => "absent".into(),
        Some(v) => {
            let h = v.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            format!("{} bytes, fnv {:08x}", v.len(), h as u32)
        }
    }
}

/// Flux's reading of a case: served values, names served with an issue,
/// and whether any line was skipped.
struct Reading {
    served: HashMap<String, String>,
    flagged: std::collections::HashSet<String>,
    skipped: usize,
}

fn read(input: &str, expand: bool) -> Reading {
    let Parsed { entries, issues } = parse(input.as_bytes(), ".env", &Options { expand })
        .unwrap_or_else(|e| panic!("the corpus is UTF-8, yet: {e}"));
    Reading {
        served: entries
            .into_iter()
            .map(|(n, v)| (n, v.expose().to_owned()))
            .collect(),
        flagged: issues
            .iter()
            .filter(|i| !i.skipped)
            .filter_map(|i| i.name.clone())
            .collect(),
        skipped: issues.iter().filter(|i| i.skipped).count(),
    }
}

fn holdable(name: &str) -> bool {
    flux_protocol::limits::validate_secret_name(name).is_ok()
}

/// Outcomes against a project's own expected values.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    /// Same value, no issue.
    pub pass: usize,
    /// A different value, no issue: where that project and Node split and
    /// Flux reads as Node does (a row of the choices table).
    pub documented: usize,
    /// Served as Node reads it, with an issue (a warning in `fluxd dev`).
    pub warned: usize,
    /// Not served, with an issue (a name Flux cannot hold, a line that is
    /// not an assignment).
    pub refused: usize,
}

impl Counts {
    fn total(&self) -> usize {
        self.pass + self.documented + self.warned + self.refused
    }
}

fn corpus() -> Vec<Value> {
    let text = std::fs::read_to_string(CORPUS).expect("read the corpus");
    let doc: Value = serde_json::from_str(&text).expect("the corpus is JSON");
    doc["cases"].as_array().expect("cases").clone()
}

#[test]
fn corpus_follows_node_and_never_differs_silently_from_a_majority() {
    let mut failures = Vec::new();
    let mut by_source: BTreeMap<String, Counts> = BTreeMap::new();
    for case in corpus() {
        let id = case["id"].as_str().unwrap().to_owned();
        let input = case["input"].as_str().unwrap();
        let flux = read(input, false);
        let node = values(&case["refs"]["node"]);
        let python = values(&case["refs"]["python"]);
        let dotenvy = values(&case["refs"]["dotenvy"]);

        // 1. Node's reading, less what Flux cannot hold (which is reported).
        for (name, v) in &node {
            let v = v.as_deref();
            if holdable(name) {
                let got = flux.served.get(name).map(String::as_str);
                if got != v {
                    failures.push(format!(
                        "{id}: {name}: Flux serves {}, Node's dotenv reads {}",
                        shown(got),
                        shown(v)
                    ));
                }
            } else if flux.skipped == 0 {
                failures.push(format!(
                    "{id}: Node reads a name Flux cannot hold, and no line is reported"
                ));
            }
        }
        for name in flux.served.keys() {
            if !node.contains_key(name) {
                failures.push(format!(
                    "{id}: {name}: served, but Node's dotenv reads no such name"
                ));
            }
        }

        // 2. No silent difference from a value two references agree on.
        for (name, v) in &flux.served {
            if flux.flagged.contains(name) {
                continue;
            }
            let refs = [&node, &python, &dotenvy].map(|r| r.get(name).cloned().flatten());
            for (i, a) in refs.iter().enumerate() {
                for b in refs.iter().skip(i + 1) {
                    if let (Some(a), Some(b)) = (a, b)
                        && a == b
                        && a != v
                    {
                        failures.push(format!(
                            "{id}: {name}: served without an issue as {}, while two references read {}",
                            shown(Some(v)),
                            shown(Some(a))
                        ));
                    }
                }
            }
        }

        // 3. Against the project's own expectations.
        let counts = by_source
            .entry(case["source"].as_str().unwrap().to_owned())
            .or_default();
        for (name, want) in values(&case["expected"]) {
            let got = flux.served.get(&name);
            match (got, want.as_deref()) {
                _ if !holdable(&name) || (got.is_none() && want.is_none()) => {
                    if flux.skipped == 0 {
                        failures.push(format!(
                            "{id}: {name:?}: expected by the project, not served, and no line is reported"
                        ));
                    }
                    counts.refused += 1;
                }
                (Some(_), _) if flux.flagged.contains(&name) => counts.warned += 1,
                (Some(g), Some(w)) if g == w => counts.pass += 1,
                (Some(_), _) => counts.documented += 1,
                (None, _) => {
                    if flux.skipped == 0 {
                        failures.push(format!(
                            "{id}: {name}: expected by the project, not served, and no line is reported"
                        ));
                    }
                    counts.refused += 1;
                }
            }
        }
    }

    let mut table = String::from("source      pass  documented  warned  refused  total\n");
    let mut all = Counts::default();
    for (source, c) in &by_source {
        table.push_str(&format!(
            "{source:<10} {:>5} {:>11} {:>7} {:>8} {:>6}\n",
            c.pass,
            c.documented,
            c.warned,
            c.refused,
            c.total()
        ));
        all.pass += c.pass;
        all.documented += c.documented;
        all.warned += c.warned;
        all.refused += c.refused;
    }
    table.push_str(&format!(
        "{:<10} {:>5} {:>11} {:>7} {:>8} {:>6}\n",
        "all",
        all.pass,
        all.documented,
        all.warned,
        all.refused,
        all.total()
    ));
    println!("{table}");
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n{}\n{table}",
        failures.len(),
        failures.join("\n")
    );
    // docs/DOTENV.md quotes these figures.
    assert_eq!(
        all, EXPECTED,
        "the corpus counts changed: update EXPECTED and docs/DOTENV.md\n{table}"
    );
}

/// The totals `docs/DOTENV.md` reports.
const EXPECTED: Counts = Counts {
    pass: 276,
    documented: 20,
    warned: 57,
    refused: 11,
};

#[test]
fn nodes_own_example_files_load_as_node_reads_them() {
    for case in corpus() {
        if case["source"] != "node" {
            continue;
        }
        let id = case["id"].as_str().unwrap();
        let flux = read(case["input"].as_str().unwrap(), false);
        let node = values(&case["refs"]["node"]);
        assert_eq!(flux.skipped, 0, "{id}: a line is skipped");
        assert_eq!(
            flux.served.len(),
            node.len(),
            "{id}: Flux serves {} names, Node reads {}",
            flux.served.len(),
            node.len()
        );
        for (name, v) in node {
            let got = flux.served.get(&name).map(String::as_str);
            assert!(
                got == v.as_deref(),
                "{id}: {name}: {} vs Node's {}",
                shown(got),
                shown(v.as_deref())
            );
        }
    }
}

#[test]
fn expand_follows_the_projects_that_expand() {
    // The cases with a `$`, from the projects whose parsers expand; Node's
    // are literal by design (its expansion is a separate package).
    let mut counts = Counts::default();
    let mut failures = Vec::new();
    for case in corpus() {
        let input = case["input"].as_str().unwrap();
        if case["source"] == "node" || !input.contains('$') {
            continue;
        }
        let id = case["id"].as_str().unwrap();
        let flux = read(input, true);
        for (name, want) in values(&case["expected"]) {
            match (flux.served.get(&name), want.as_deref()) {
                (None, _) => counts.refused += 1,
                (Some(_), _) if flux.flagged.contains(&name) => counts.warned += 1,
                (Some(g), Some(w)) if g == w => counts.pass += 1,
                (Some(g), w) => {
                    counts.documented += 1;
                    // A difference without an issue is only allowed where
                    // another reference reads the same (e.g. `$NAME`, which
                    // python-dotenv keeps and godotenv expands).
                    let refs = ["node", "python", "godotenv"].map(|r| values(&case["refs"][r]));
                    let agrees = refs
                        .iter()
                        .any(|r| r.get(&name).cloned().flatten().as_deref() == Some(g.as_str()));
                    if !agrees && !SHELL_NAMES.contains(&(id, name.as_str())) {
                        failures.push(format!(
                            "{id}: {name}: --expand serves {} without an issue; the project expects {}",
                            shown(Some(g)),
                            shown(w)
                        ));
                    }
                }
            }
        }
    }
    println!("--expand: {counts:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        counts, EXPECTED_EXPAND,
        "update EXPECTED_EXPAND and docs/DOTENV.md"
    );
}

/// `$NAME` runs over letters, digits and `_`, and a `}` with no `${` is
/// text, as in a POSIX shell: dotenvy stops a name at `_` and godotenv
/// eats a stray `}` (docs/DOTENV.md, "Expansion").
const SHELL_NAMES: [(&str, &str); 1] = [("dotenvy-014", "KEY")];

/// `--expand` against the expanding projects' cases with a `$`.
const EXPECTED_EXPAND: Counts = Counts {
    pass: 51,
    documented: 3,
    warned: 17,
    refused: 1,
};
