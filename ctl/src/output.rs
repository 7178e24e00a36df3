//! What fluxctl writes to stdout: one JSON document, plain text with no
//! control character from outside, aligned columns, a project as `--json`
//! shows it; and an error message cleaned for the terminal.

use crate::failure::{self, Result};
use crate::style;
use std::io::Write;

/// An error message as fluxctl prints it: no control character but its
/// own line breaks (a daemon's message may quote a hostile name or path).
pub fn clean_error(message: &str) -> String {
    style::clean_but(message, &['\n']).into_owned()
}

/// Prints `value` as one JSON document (indented, newline-terminated).
pub(crate) fn out_json(value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("JSON of plain values");
    out(&format!("{text}\n"))
}

/// Writes to stdout; a closed pipe (`fluxctl secrets list | head`) is not
/// an error.
pub(crate) fn out(text: &str) -> Result<()> {
    // Whatever a field that came from outside still carries, the terminal
    // gets no control character but the output's own newlines and tabs.
    let text = style::clean_but(text, &['\n', '\t']);
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(failure::Failure::general(
            format!("cannot write to stdout: {e}"),
        )),
        _ => Ok(()),
    }
}

/// A project as `--json` output shows it (never a value).
pub(crate) fn project_json(p: &flux_protocol::message::ProjectInfo) -> serde_json::Value {
    serde_json::json!({
        "name": p.name,
        "socket": p.socket,
        "secrets": p.secrets,
        "generation": p.generation,
        "loaded_at": flux_vault::time::format_time_ms(p.loaded_at_ms),
        "last_error": p.last_error,
    })
}

/// Pads `rows` into aligned columns separated by two spaces.
pub(crate) fn columns(rows: &[Vec<String>]) -> String {
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..width)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| style::clean(c).chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let cell = style::clean(cell);
            if i + 1 == row.len() {
                line.push_str(&cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}
