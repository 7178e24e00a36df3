//! `fluxctl secrets diff FILE|-`: a drift check. The `.env` file is read
//! as `secrets import` reads it; its names and values go to the daemon over
//! the project socket (an admin request), which answers per name same /
//! changed / only in the file / only in the project. No value is printed,
//! logged or audited — only names.
//!
//! Exit status, for CI (like `diff`, and `terraform plan
//! -detailed-exitcode` with drift as 1): 0 when the file and the project
//! hold the same names with the same values, 1 when they differ, 2 or more
//! when they could not be compared (2: usage or a failure; 3 to 6 as for
//! every command — see [`crate::failure`]).

use crate::failure::{EXIT_FAILURE, EXIT_USAGE, Failure, Result};
use crate::import::{EnvFile, Refusal, one_request, plural, read_env, request};
use crate::style::done;
use crate::target::Target;
use crate::{out, out_json};
use flux_protocol::message::DiffState;
use std::path::Path;

/// Exit status when the file and the project differ.
pub const EXIT_DIFFERENT: u8 = 1;

/// `fluxctl secrets diff`'s flags.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flags {
    pub skip_invalid: bool,
    pub expand: bool,
    pub json: bool,
}

/// Runs the comparison; returns 0 (same) or 1 (different). A failure to
/// compare never exits 1.
pub(crate) fn run(target: &Target, file: &Path, flags: Flags) -> Result<u8> {
    compare(target, file, flags).map_err(|f| {
        if f.exit == EXIT_FAILURE {
            Failure::new(EXIT_USAGE, f.message)
        } else {
            f
        }
    })
}

fn state_name(state: DiffState) -> &'static str {
    match state {
        DiffState::Same => "same",
        DiffState::Changed => "changed",
        DiffState::OnlyInRequest => "only_in_file",
        DiffState::OnlyInProject => "only_in_project",
    }
}

fn compare(target: &Target, file: &Path, flags: Flags) -> Result<u8> {
    let refusal = Refusal {
        nothing: "nothing was compared",
        skip_invalid: "compare the rest (lines Flux cannot hold are left out; the others are compared as fluxd dev serves them)",
    };
    let env = read_env(file, flags.expand, flags.skip_invalid, &refusal)?;
    let size = env.size();
    let EnvFile { label, entries, .. } = env;
    let (project, mut client) = target.project_client()?;
    let differences = client
        .diff(request(entries))
        .map_err(|e| one_request(e, &label, size))?;
    let count = |s: DiffState| differences.iter().filter(|d| d.state == s).count();
    let same = count(DiffState::Same);
    let equal = same == differences.len();
    if flags.json {
        let names: Vec<serde_json::Value> = differences
            .iter()
            .map(|d| serde_json::json!({ "name": d.name, "state": state_name(d.state) }))
            .collect();
        let doc = serde_json::json!({
            "project": project,
            "file": label,
            "equal": equal,
            "names": names,
        });
        out_json(&doc)?;
    } else if equal {
        out(&format!(
            "{}\n",
            done(&format!(
                "{label} matches project {project}: {same} {}, same values",
                plural(same, "secret", "secrets")
            ))
        ))?;
    } else {
        let mut rows = Vec::new();
        for d in differences.iter().filter(|d| d.state != DiffState::Same) {
            let (mark, what) = match d.state {
                DiffState::Changed => ("~", "changed"),
                DiffState::OnlyInRequest => ("+", "only in the file"),
                DiffState::OnlyInProject => ("-", "only in the project"),
                DiffState::Same => unreachable!("filtered out"),
            };
            rows.push(vec![mark.to_owned(), d.name.clone(), what.to_owned()]);
        }
        let mut text = crate::columns(&rows);
        text.push_str(&format!(
            "{label} differs from project {project}: {} changed, {} only in the file, {} only in the project, {same} the same\n",
            count(DiffState::Changed),
            count(DiffState::OnlyInRequest),
            count(DiffState::OnlyInProject),
        ));
        out(&text)?;
    }
    Ok(if equal { 0 } else { EXIT_DIFFERENT })
}
