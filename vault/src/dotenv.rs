//! `.env` files, as `fluxd dev` and `fluxctl secrets import` read them.
//!
//! Users bring `.env` files written for other tools: Node's dotenv (the
//! ecosystem functions are written in), python-dotenv, Rust's dotenvy, Go's
//! godotenv, Ruby's dotenv. The rule, documented case by case with the
//! choices table in `docs/DOTENV.md`:
//!
//! - **Where those parsers agree, Flux agrees; where they split, Flux reads
//!   the file as Node's dotenv does** (its `parse`, not its optional
//!   expansion).
//! - **No silent surprises.** Every line whose value other parsers read
//!   differently — where python-dotenv and dotenvy agree against Node —,
//!   every expansion-looking `${…}` or `$(…)`, and every line Flux cannot
//!   serve at all comes back as an [`Issue`] with its `file:line:col`,
//!   never a value. `fluxd dev` serves the rest
//!   and logs one warning per issue; `fluxctl secrets import` refuses
//!   unless told `--skip-invalid`.
//!
//! ```text
//! # a comment
//! OPENAI_API_KEY=sk-local-dev-key
//! export STRIPE_SECRET_KEY = sk_test_xyz   # `export`, spaces, inline comment
//! GREETING="hello\nworld"                  # \n and \r in double quotes
//! LITERAL='no $expansion, no \escapes'     # single quotes are literal
//! PEM="-----BEGIN KEY-----
//! abc
//! -----END KEY-----"                       # quoted values may span lines
//! YAML_STYLE: value                        # `NAME: value` is read too
//! ```
//!
//! In short (the reasons and references are in `docs/DOTENV.md`):
//!
//! - Line ends are LF, CRLF or a bare CR. Whitespace (a BOM included) at
//!   the start of a line is skipped.
//! - Names are what Node reads (`[A-Za-z0-9_.-]+`); the ones that are not
//!   secret names (`^[A-Za-z_][A-Za-z0-9_]{0,127}$`, since they become
//!   environment variables) are skipped with an issue ([`Issue::skipped`]).
//!   A line Node's dotenv does not read at all is skipped with an issue
//!   naming the cause.
//! - Values: single, double and backtick quotes; quoted values may span
//!   lines. Unquoted values end at `#` and are trimmed. Double quotes turn
//!   `\n` and `\r` into line breaks and keep every other backslash as it
//!   is; single quotes and backticks take everything literally.
//! - When a name appears twice, the later line wins.
//! - No `$VAR` expansion unless [`Options::expand`] is set: then `$NAME`,
//!   `${NAME}`, `${NAME:-default}` and `${NAME-default}` take the values of
//!   lines above, outside single quotes, and `\$` is a literal `$`. The
//!   process environment is never read and no command is ever run.
//!
//! This module depends only on `flux-protocol`, `zeroize` and `std`.

use flux_protocol::SecretValue;
use flux_protocol::limits::{validate_secret_name, validate_value_len};
use std::fmt;
use std::path::Path;
use zeroize::{Zeroize, Zeroizing};

/// Why a `.env` file could not be read at all (unreadable, not UTF-8).
/// Holds no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.reason
        )
    }
}

impl std::error::Error for ParseError {}

/// How to read a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Expand `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME-default}`
    /// from the lines above (off by default: values are literal).
    pub expand: bool,
}

/// One line Flux does not serve as the file's author probably means.
/// Holds no value: only where it is, the name, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The name the line sets, when it has one Flux can show.
    pub name: Option<String>,
    /// True when the line is left out (a name Flux cannot hold, a line that
    /// is not an assignment, a value too large); false when it is served
    /// as Node's dotenv reads it.
    pub skipped: bool,
    pub reason: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(name) = &self.name {
            write!(f, "{name}: ")?;
        }
        f.write_str(&self.reason)?;
        if self.skipped {
            f.write_str(" (line skipped)")?;
        }
        Ok(())
    }
}

/// A parsed file: what Flux serves, and the lines it flags.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Names and values in first-appearance order; a later line for the
    /// same name replaces the value.
    pub entries: Vec<(String, SecretValue)>,
    /// Issues in line order, at most one per line.
    pub issues: Vec<Issue>,
}

/// Reads and parses a `.env` file.
pub fn read(path: &Path, options: &Options) -> Result<Parsed, ParseError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| ParseError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        reason: format!("cannot read: {e}"),
    })?);
    parse(&bytes, &path.display().to_string(), options)
}

/// Parses `.env` text; `file` names it in errors and issues.
pub fn parse(bytes: &[u8], file: &str, options: &Options) -> Result<Parsed, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let before = &bytes[..e.valid_up_to()];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..])
            .chars()
            .count()
            + 1;
        ParseError {
            file: file.to_owned(),
            line,
            column,
            reason: "not UTF-8 text".into(),
        }
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Line ends as Node reads them: CRLF and a bare CR are LF.
    let mut chars: Vec<char> = Vec::with_capacity(text.len());
    let mut it = text.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\r' {
            if it.peek() == Some(&'\n') {
                it.next();
            }
            chars.push('\n');
        } else {
            chars.push(c);
        }
    }
    let mut scanner = Scanner::new(chars, file);
    let parsed = scanner.run(options);
    scanner.t.iter_mut().for_each(|c| *c = '\0');
    Ok(parsed)
}

/// JavaScript's `\s` (what Node's pattern and `trim()` skip).
fn js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// A line terminator for JavaScript's `$` and `.`.
fn js_terminator(c: char) -> bool {
    matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}')
}

/// Node's name characters, `[\w.-]`.
fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

const QUOTES: [char; 3] = ['\'', '"', '`'];

/// Which branch of Node's value pattern matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    /// `'…'`, `"…"` or `` `…` ``, closed, with only blanks or a comment after.
    Quoted(char),
    /// Anything else up to `#` or the end of the line.
    Bare,
    /// Nothing after the separator.
    Empty,
}

/// One assignment as Node's `LINE` pattern matches it (character indexes).
#[derive(Debug)]
struct Match {
    key: (usize, usize),
    branch: Branch,
    /// The matched value text, leading blanks included.
    value: (usize, usize),
    /// Where the bare branch stopped: a `#` or the end of the line.
    bare_end: usize,
    /// Just after the match (the end of its last line).
    end: usize,
}

struct Scanner<'a> {
    t: Vec<char>,
    file: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Scanner<'a> {
    fn new(t: Vec<char>, file: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            t.iter()
                .enumerate()
                .filter(|(_, c)| **c == '\n')
                .map(|(i, _)| i + 1),
        );
        Self {
            t,
            file,
            line_starts,
        }
    }

    fn at(&self, i: usize) -> Option<char> {
        self.t.get(i).copied()
    }

    fn starts_with(&self, i: usize, s: &str) -> bool {
        s.chars()
            .enumerate()
            .all(|(k, c)| self.at(i + k) == Some(c))
    }

    /// 1-based line and column of a character index.
    fn position(&self, i: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|s| *s <= i);
        (line, i - self.line_starts[line - 1] + 1)
    }

    fn issue(&self, at: usize, name: Option<&str>, skipped: bool, reason: String) -> Issue {
        let (line, column) = self.position(at);
        Issue {
            file: self.file.to_owned(),
            line,
            column,
            name: name.map(str::to_owned),
            skipped,
            reason,
        }
    }

    /// `\s*(?:#.*)?$` from `x`: where the match ends, if it can.
    fn tail(&self, x: usize) -> Option<usize> {
        let mut w = x;
        while self.at(w).is_some_and(js_space) {
            w += 1;
        }
        for pos in (x..=w).rev() {
            match self.at(pos) {
                Some('#') => {
                    let mut e = pos;
                    while self.at(e).is_some_and(|c| !js_terminator(c)) {
                        e += 1;
                    }
                    return Some(e);
                }
                None => return Some(pos),
                Some(c) if js_terminator(c) => return Some(pos),
                _ => {}
            }
        }
        None
    }

    /// Node's value group and tail from `v`, in the pattern's order.
    fn value_at(&self, key: (usize, usize), v: usize) -> Match {
        let mut s = v;
        while self.at(s).is_some_and(js_space) {
            s += 1;
        }
        if let Some(q) = self.at(s).filter(|c| QUOTES.contains(c)) {
            // (?:\\q|[^q])* greedy, then q: the first unescaped quote, then
            // (backtracking) each escaped one from the last.
            let mut escaped = Vec::new();
            let mut i = s + 1;
            let mut first = None;
            while let Some(c) = self.at(i) {
                if c == '\\' && self.at(i + 1) == Some(q) {
                    escaped.push(i + 1);
                    i += 2;
                } else if c == q {
                    first = Some(i);
                    break;
                } else {
                    i += 1;
                }
            }
            for close in first.into_iter().chain(escaped.into_iter().rev()) {
                if let Some(end) = self.tail(close + 1) {
                    return Match {
                        key,
                        branch: Branch::Quoted(q),
                        value: (v, close + 1),
                        bare_end: close + 1,
                        end,
                    };
                }
            }
        }
        let mut r = v;
        while self.at(r).is_some_and(|c| !matches!(c, '#' | '\r' | '\n')) {
            r += 1;
        }
        if r > v {
            let end = self.tail(r).unwrap_or(r);
            return Match {
                key,
                branch: Branch::Bare,
                value: (v, r),
                bare_end: r,
                end,
            };
        }
        let end = self.tail(v).unwrap_or(v);
        Match {
            key,
            branch: Branch::Empty,
            value: (v, v),
            bare_end: v,
            end,
        }
    }

    /// Node's `LINE` pattern anchored at line start `p`.
    fn match_at(&self, p: usize) -> Option<Match> {
        let mut i = p;
        while self.at(i).is_some_and(js_space) {
            i += 1;
        }
        if self.starts_with(i, "export") && self.at(i + 6).is_some_and(js_space) {
            let mut j = i + 6;
            while self.at(j).is_some_and(js_space) {
                j += 1;
            }
            if let Some(m) = self.after_export(j) {
                return Some(m);
            }
        }
        self.after_export(i)
    }

    fn after_export(&self, k: usize) -> Option<Match> {
        let mut e = k;
        while self.at(e).is_some_and(key_char) {
            e += 1;
        }
        if e == k {
            return None;
        }
        let mut j = e;
        while self.at(j).is_some_and(js_space) {
            j += 1;
        }
        if self.at(j) == Some('=') {
            return Some(self.value_at((k, e), j + 1));
        }
        if self.at(e) == Some(':') && self.at(e + 1).is_some_and(js_space) {
            return Some(self.value_at((k, e), e + 2));
        }
        None
    }

    fn text(&self, (a, b): (usize, usize)) -> String {
        self.t[a..b].iter().collect()
    }

    fn run(&mut self, options: &Options) -> Parsed {
        let mut out = Parsed::default();
        let mut values: Vec<(String, Zeroizing<String>)> = Vec::new();
        let mut line = 0;
        while line < self.line_starts.len() {
            let p = self.line_starts[line];
            if p >= self.t.len() && line > 0 {
                break;
            }
            match self.match_at(p) {
                Some(m) => {
                    self.assignment(&m, options, &mut values, &mut out);
                    // Resume at the first line after the match.
                    line = self.line_starts.partition_point(|s| *s <= m.end);
                }
                None => {
                    self.not_an_assignment(p, &values, &mut out);
                    line += 1;
                }
            }
        }
        for (name, mut value) in values {
            out.entries
                .push((name, SecretValue::new(std::mem::take(&mut *value))));
        }
        out
    }

    /// One assignment: Node's value, then the checks.
    fn assignment(
        &self,
        m: &Match,
        options: &Options,
        values: &mut Vec<(String, Zeroizing<String>)>,
        out: &mut Parsed,
    ) {
        let name = self.text(m.key);
        let raw = Zeroizing::new(self.text(m.value));
        let trimmed = raw.trim_matches(js_space);
        let first = trimmed.chars().next();
        let stripped = trimmed.chars().count() >= 2
            && first.is_some_and(|q| QUOTES.contains(&q))
            && trimmed.ends_with(first.unwrap_or(' '));
        let mut value = Zeroizing::new(if stripped {
            let q = first.unwrap_or(' ').len_utf8();
            trimmed[q..trimmed.len() - q].to_owned()
        } else {
            trimmed.to_owned()
        });
        if first == Some('"') {
            value = Zeroizing::new(value.replace("\\n", "\n"));
            value = Zeroizing::new(value.replace("\\r", "\r"));
        }
        let style = match (stripped, first) {
            (true, Some(q)) => q,
            _ => ' ',
        };

        // Where the references read this line differently (first reason
        // wins the column; all reasons are listed).
        let mut reasons: Vec<(usize, String)> = Vec::new();
        let value_start = {
            let mut s = m.value.0;
            while s < m.value.1 && self.at(s).is_some_and(js_space) {
                s += 1;
            }
            s
        };
        match m.branch {
            Branch::Quoted('`') => reasons.push((
                value_start,
                "backticks quote the value here, as in Node's dotenv; python-dotenv and dotenvy keep them in the value".into(),
            )),
            Branch::Quoted('\'') => {
                if let Some(k) = self.find_in(m.value, |a, b| a == '\\' && b == '\'') {
                    reasons.push((
                        k,
                        "\\' inside single quotes stays \\' (Node's dotenv); python-dotenv reads ' and dotenvy refuses it: use double quotes around a value holding '".into(),
                    ));
                }
            }
            Branch::Quoted(_) => {}
            Branch::Bare if first.is_some_and(|q| QUOTES.contains(&q)) => {
                let q = first.unwrap_or('"');
                let closes = trimmed.chars().skip(1).any(|c| c == q);
                let reason = if closes {
                    format!("text after the closing {q} quote: Node's dotenv serves the whole line as written, quotes included; python-dotenv and dotenvy refuse it")
                } else {
                    format!("the {q} quote opened here is never closed: Node's dotenv serves the text as written, quote included; python-dotenv and dotenvy refuse it")
                };
                reasons.push((value_start, reason));
            }
            Branch::Bare | Branch::Empty => {}
        }
        if m.branch == Branch::Bare
            && self.at(m.bare_end) == Some('#')
            && !self.at(m.bare_end - 1).is_some_and(js_space)
        {
            reasons.push((
                m.bare_end,
                "# with no space before it starts a comment here (Node's dotenv); python-dotenv and dotenvy keep it in the value: quote the value, or put a space before #".into(),
            ));
        }
        if style == '"' {
            if let Some(k) = self.find_in(m.value, |a, b| {
                a == '\\' && matches!(b, '"' | '\\' | '\'' | 't' | 'a' | 'b' | 'f' | 'v')
            }) {
                let seq: String = self.t[k..k + 2].iter().collect();
                reasons.push((
                    k,
                    format!("{seq} in double quotes stays {seq}, as in Node's dotenv (which knows only the escapes \\n and \\r); python-dotenv and dotenvy read it as an escape or refuse it"),
                ));
            }
        }
        let expanded = if options.expand && style != '\'' {
            let (v, notes) = expand(&value, values);
            for (offset, note) in notes {
                let at = self.offset_in(m.value, style, offset);
                reasons.push((at, note));
            }
            v
        } else {
            if style != '\'' {
                if let Some(k) = self.find_in(m.value, |a, b| a == '$' && matches!(b, '{' | '(')) {
                    let what = if self.at(k + 1) == Some('(') {
                        "$( ) is served as written: Flux never runs a command (Ruby's dotenv does)"
                    } else {
                        "${…} is served as written: python-dotenv, dotenvy, godotenv and Ruby's dotenv expand it; pass --expand to expand it from the lines above"
                    };
                    reasons.push((k, what.into()));
                }
            }
            value
        };

        let held = validate_secret_name(&name);
        let too_large = validate_value_len(expanded.len());
        let skipped = held.is_err() || too_large.is_err();
        if let Err(e) = held {
            // Shown through NameError's escaping: names may hold anything.
            out.issues.push(self.issue(
                m.key.0,
                None,
                true,
                format!("{e}: Flux cannot hold this name (secrets become environment variables)"),
            ));
            return;
        }
        if let Err(e) = too_large {
            out.issues
                .push(self.issue(value_start, Some(&name), true, e.to_string()));
            return;
        }
        if !reasons.is_empty() {
            reasons.sort_by_key(|(at, _)| *at);
            let at = reasons[0].0;
            let mut shown: Vec<String> = Vec::new();
            for (_, r) in reasons {
                if !shown.contains(&r) {
                    shown.push(r);
                }
            }
            let reason = shown.join("; ");
            out.issues
                .push(self.issue(at, Some(&name), skipped, reason));
        }
        match values.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = expanded,
            None => values.push((name, expanded)),
        }
    }

    /// The first `a b` pair inside the value span.
    fn find_in(&self, (a, b): (usize, usize), f: impl Fn(char, char) -> bool) -> Option<usize> {
        (a..b.saturating_sub(1)).find(|&i| f(self.t[i], self.t[i + 1]))
    }

    /// The file index of a character offset into the final value (an
    /// approximation for `\n` escapes; exact otherwise).
    fn offset_in(&self, (a, b): (usize, usize), style: char, offset: usize) -> usize {
        let mut s = a;
        while s < b && self.at(s).is_some_and(js_space) {
            s += 1;
        }
        if style != ' ' {
            s += 1;
        }
        (s + offset).min(b.saturating_sub(1)).max(a)
    }

    /// A line Node's pattern does not match: blank lines and comments are
    /// fine; anything else is reported with its cause.
    fn not_an_assignment(
        &self,
        p: usize,
        values: &[(String, Zeroizing<String>)],
        out: &mut Parsed,
    ) {
        let mut i = p;
        while self.at(i).is_some_and(|c| js_space(c) && c != '\n') {
            i += 1;
        }
        match self.at(i) {
            None | Some('\n' | '#') => return,
            _ => {}
        }
        let skip_blanks = |mut j: usize| {
            while self.at(j).is_some_and(|c| js_space(c) && c != '\n') {
                j += 1;
            }
            j
        };
        let word_end = |j: usize| {
            let mut e = j;
            while self.at(e).is_some_and(key_char) {
                e += 1;
            }
            e
        };
        let eol = |j: usize| self.at(j).is_none_or(|c| c == '\n' || c == '#');
        // `export NAME`: fine when NAME is set above (it changes nothing).
        if self.starts_with(i, "export") && self.at(i + 6).is_some_and(|c| c == ' ' || c == '\t') {
            let n = skip_blanks(i + 6);
            let e = word_end(n);
            if e > n && eol(skip_blanks(e)) {
                let name = self.text((n, e));
                if values.iter().any(|(v, _)| *v == name) {
                    return;
                }
                let shown = validate_secret_name(&name).is_ok().then_some(name.as_str());
                out.issues.push(
                    self.issue(
                        n,
                        shown,
                        true,
                        "`export NAME` with no '=' sets nothing, and no line above sets this name"
                            .into(),
                    ),
                );
                return;
            }
        }
        let e = word_end(i);
        let (at, reason) = if e == i {
            match self.at(i) {
                Some(q @ ('\'' | '"' | '`')) => (
                    i,
                    format!("a name in {q} quotes: write names unquoted (NAME=value)"),
                ),
                Some('=') => (i, "a value with no name before '='".into()),
                Some(c) => (
                    i,
                    format!(
                        "{} cannot start a name (names are letters, digits and _)",
                        shown_char(c)
                    ),
                ),
                None => return,
            }
        } else {
            let after = skip_blanks(e);
            match self.at(after) {
                _ if eol(after) => (after, "no '=' after the name: the line sets nothing".into()),
                Some(':') => (
                    after,
                    "':' must be followed by a space (NAME: value) or be '=' (NAME=value)".into(),
                ),
                Some(c) if after == e && self.line_has('=', e) => (
                    e,
                    format!(
                        "{} cannot be part of a name (names are letters, digits and _)",
                        shown_char(c)
                    ),
                ),
                _ => (
                    after,
                    "expected '=' after the name (quote a value that holds spaces)".into(),
                ),
            }
        };
        out.issues
            .push(self.issue(at, None, true, format!("not an assignment: {reason}")));
    }

    fn line_has(&self, c: char, from: usize) -> bool {
        self.t[from..]
            .iter()
            .take_while(|x| **x != '\n')
            .any(|x| *x == c)
    }
}

/// A character as an error may show it: printable ASCII punctuation as
/// itself, anything else as its code point.
fn shown_char(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("'{c}'")
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// Why an expansion gave nothing (the name is not shown: `${…}` may be
/// part of a value that only looks like an expansion).
const UNSET: &str = "refers to a name no line above sets: expanded to an empty string (add a default: ${NAME:-default})";

/// `--expand`: `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`
/// from the values above; `\$` is a literal `$`; `$(…)` is never run.
/// The expanded value and notes (offset into `value`, reason).
fn expand(
    value: &str,
    above: &[(String, Zeroizing<String>)],
) -> (Zeroizing<String>, Vec<(usize, String)>) {
    let c: Vec<char> = value.chars().collect();
    let mut out = Zeroizing::new(String::with_capacity(value.len()));
    let mut notes = Vec::new();
    let lookup = |name: &str| {
        above
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let is_start = |ch: char| ch.is_ascii_alphabetic() || ch == '_';
    let is_name = |ch: char| ch.is_ascii_alphanumeric() || ch == '_';
    let mut i = 0;
    while i < c.len() {
        match (c[i], c.get(i + 1).copied()) {
            ('\\', Some('$')) => {
                out.push('$');
                i += 2;
            }
            ('$', Some('{')) => {
                let n0 = i + 2;
                let mut n1 = n0;
                while n1 < c.len()
                    && (if n1 == n0 {
                        is_start(c[n1])
                    } else {
                        is_name(c[n1])
                    })
                {
                    n1 += 1;
                }
                let close = c[n1..].iter().position(|x| *x == '}').map(|k| n1 + k);
                let (op, default) = match (n1 > n0, close) {
                    (true, Some(cl)) if cl == n1 => (None, None),
                    (true, Some(cl)) if c[n1] == ':' && c.get(n1 + 1) == Some(&'-') => (
                        Some(":-"),
                        Some(Zeroizing::new(c[n1 + 2..cl].iter().collect::<String>())),
                    ),
                    (true, Some(cl)) if c[n1] == '-' => (
                        Some("-"),
                        Some(Zeroizing::new(c[n1 + 1..cl].iter().collect::<String>())),
                    ),
                    _ => {
                        notes.push((
                            i,
                            "${ with no valid NAME} after it is served as written".into(),
                        ));
                        out.push('$');
                        i += 1;
                        continue;
                    }
                };
                let name: String = c[n0..n1].iter().collect();
                let found = lookup(&name);
                match (found, op, default) {
                    (Some(""), Some(":-"), Some(d)) => out.push_str(&d),
                    (Some(v), _, _) => out.push_str(v),
                    (None, Some(_), Some(d)) => out.push_str(&d),
                    (None, _, _) => notes.push((i, UNSET.into())),
                }
                i = close.unwrap_or(c.len()) + 1;
            }
            ('$', Some('(')) => {
                // Copied as written, up to the matching `)`: nothing in
                // it is expanded, and it is never run.
                notes.push((
                    i,
                    "$( ) is served as written: Flux never runs a command".into(),
                ));
                out.push('$');
                i += 1;
                let mut depth = 0;
                while i < c.len() {
                    out.push(c[i]);
                    match c[i] {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    i += 1;
                    if depth == 0 {
                        break;
                    }
                }
            }
            ('$', Some(ch)) if is_start(ch) => {
                let mut e = i + 1;
                while e < c.len() && is_name(c[e]) {
                    e += 1;
                }
                let name: String = c[i + 1..e].iter().collect();
                match lookup(&name) {
                    Some(v) => out.push_str(v),
                    None => notes.push((i, UNSET.into())),
                }
                i = e;
            }
            (ch, _) => {
                out.push(ch);
                i += 1;
            }
        }
    }
    let mut c = c;
    c.zeroize();
    (out, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_with(text: &str, expand: bool) -> (Vec<(String, String)>, Vec<Issue>) {
        let parsed = parse(text.as_bytes(), ".env", &Options { expand }).unwrap();
        let entries = parsed
            .entries
            .into_iter()
            .map(|(n, v)| (n, v.expose().to_owned()))
            .collect();
        (entries, parsed.issues)
    }

    /// Entries of a file that must have no issue.
    fn clean(text: &str) -> Vec<(String, String)> {
        let (entries, issues) = read_with(text, false);
        assert!(issues.is_empty(), "{text:?}: {issues:?}");
        entries
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// (line, column, skipped, part of the reason) of each issue.
    fn where_(issues: &[Issue]) -> Vec<(usize, usize, bool)> {
        issues
            .iter()
            .map(|i| (i.line, i.column, i.skipped))
            .collect()
    }

    #[test]
    fn the_syntax_users_expect() {
        let text = "\u{feff}# comment\r\nA=1\r\n\nexport B = two words  # note\nC=\"line\\nnext 'q' $HOME\"\nD='lit $HOME \\n'\nE=\nF=a #b\nG=\"multi\nline\"\n  H=spaced\nI: yaml\nJ=  # only a comment\nK=\"x\" # c\n";
        assert_eq!(
            clean(text),
            pairs(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "line\nnext 'q' $HOME"),
                ("D", "lit $HOME \\n"),
                ("E", ""),
                ("F", "a"),
                ("G", "multi\nline"),
                ("H", "spaced"),
                ("I", "yaml"),
                ("J", ""),
                ("K", "x"),
            ])
        );
    }

    #[test]
    fn every_line_end_is_a_line_end() {
        let want = pairs(&[("A", "b"), ("B", "c"), ("C", "d")]);
        assert_eq!(clean("A=b\rB=c\rC=d\r"), want);
        assert_eq!(clean("A=b\r\nB=c\nC=d"), want);
        // Inside quotes too, as Node reads them.
        assert_eq!(clean("A=\"x\ry\"\n"), pairs(&[("A", "x\ny")]));
    }

    #[test]
    fn a_bom_anywhere_at_a_line_start_is_skipped() {
        assert_eq!(
            clean("A=1\n\u{feff}B=2\n"),
            pairs(&[("A", "1"), ("B", "2")])
        );
    }

    #[test]
    fn later_duplicates_win() {
        assert_eq!(clean("A=1\nB=2\nA=3\n"), pairs(&[("A", "3"), ("B", "2")]));
    }

    #[test]
    fn export_of_a_name_set_above_changes_nothing() {
        assert_eq!(clean("A=2\nexport A\n"), pairs(&[("A", "2")]));
        let (entries, issues) = read_with("export NEVER_SET\nB=1\n", false);
        assert_eq!(entries, pairs(&[("B", "1")]));
        assert_eq!(where_(&issues), [(1, 8, true)]);
        assert!(issues[0].reason.contains("sets nothing"), "{}", issues[0]);
    }

    #[test]
    fn constructs_other_parsers_read_differently_are_served_as_node_reads_them_and_flagged() {
        let cases = [
            // (file, value served, column, what the reason says)
            ("A=`tick`\n", "tick", 3, "backticks"),
            ("A=b#c\n", "b", 4, "# with no space"),
            ("A=\"b\\\"c\"\n", "b\\\"c", 5, "\\\" in double quotes"),
            ("A=\"b\\\\c\"\n", "b\\\\c", 5, "\\\\ in double quotes"),
            ("A=\"b\\tc\"\n", "b\\tc", 5, "\\t in double quotes"),
            ("A='b\\'c'\n", "b\\'c", 5, "\\' inside single quotes"),
            ("A=\"unclosed\n", "\"unclosed", 3, "never closed"),
            (
                "A=\"x\" trailing\n",
                "\"x\" trailing",
                3,
                "text after the closing",
            ),
            ("A=${B}\n", "${B}", 3, "pass --expand"),
            ("A=$(whoami)\n", "$(whoami)", 3, "never runs a command"),
        ];
        for (text, value, column, reason) in cases {
            let (entries, issues) = read_with(&format!("OK=1\n{text}"), false);
            assert_eq!(entries, pairs(&[("OK", "1"), ("A", value)]), "{text:?}");
            assert_eq!(
                where_(&issues),
                [(2, column, false)],
                "{text:?}: {issues:?}"
            );
            assert_eq!(issues[0].name.as_deref(), Some("A"));
            assert!(issues[0].reason.contains(reason), "{text:?}: {}", issues[0]);
        }
        // No expansion warning inside single quotes: nobody but
        // python-dotenv expands there.
        assert_eq!(clean("A='${B}'\n"), pairs(&[("A", "${B}")]));
    }

    #[test]
    fn names_flux_cannot_hold_are_skipped_and_the_rest_is_served() {
        let (entries, issues) = read_with("FOO.BAR=x\nOPTION-B=y\n1ST=z\nOK=1\n", false);
        assert_eq!(entries, pairs(&[("OK", "1")]));
        assert_eq!(where_(&issues), [(1, 1, true), (2, 1, true), (3, 1, true)]);
        let shown = issues[0].to_string();
        assert!(shown.contains("\"FOO.BAR\""), "{shown}");
        assert!(shown.contains("cannot hold"), "{shown}");
        assert!(!shown.contains("expected '='"), "{shown}");
    }

    #[test]
    fn lines_that_are_not_assignments_name_the_cause_never_the_text() {
        let cases = [
            ("BAD LINE secretvalue\n", 5, "expected '='"),
            ("secretvalue\n", 12, "no '='"),
            ("=secretvalue\n", 1, "no name"),
            ("'A'=secretvalue\n", 1, "name in ' quotes"),
            ("A+B=secretvalue\n", 2, "'+' cannot be part of a name"),
            ("<secretvalue>\n", 1, "'<' cannot start a name"),
            ("A:secretvalue\n", 2, "':' must be followed"),
        ];
        for (text, column, reason) in cases {
            let (entries, issues) = read_with(&format!("OK=1\n{text}NEXT=2\n"), false);
            assert_eq!(entries, pairs(&[("OK", "1"), ("NEXT", "2")]), "{text:?}");
            assert_eq!(where_(&issues), [(2, column, true)], "{text:?}: {issues:?}");
            let shown = issues[0].to_string();
            assert!(shown.starts_with(&format!(".env:2:{column}: ")), "{shown}");
            assert!(shown.contains(reason), "{text:?}: {shown}");
            assert!(!shown.contains("secretvalue"), "{shown}");
        }
    }

    #[test]
    fn issues_never_show_a_value() {
        let text = "A=secretvalue#x\nB=\"secretvalue\\\"\"\nC=`secretvalue`\nD=\"secretvalue\nE='secretvalue\\''\nF=${secretvalue}\nG.H=secretvalue\n";
        for expand in [false, true] {
            let (_, issues) = read_with(text, expand);
            assert_eq!(issues.len(), 7, "{issues:?}");
            for issue in issues {
                assert!(!issue.to_string().contains("secretvalue"), "{issue}");
            }
        }
    }

    #[test]
    fn a_value_too_large_is_skipped() {
        let big = "x".repeat(flux_protocol::limits::MAX_VALUE_LEN + 1);
        let (entries, issues) = read_with(&format!("A={big}\nB=1\n"), false);
        assert_eq!(entries, pairs(&[("B", "1")]));
        assert_eq!(where_(&issues), [(1, 3, true)]);
    }

    #[test]
    fn not_utf8_is_an_error_for_the_whole_file() {
        let e = parse(b"A=1\nB=\xff\n", ".env", &Options::default()).unwrap_err();
        assert_eq!((e.line, e.column), (2, 3));
        assert_eq!(e.to_string(), ".env:2:3: not UTF-8 text");
    }

    #[test]
    fn expand_follows_the_common_rules_and_never_reads_the_environment() {
        let text = concat!(
            "A=x\n",
            "B=${A}-$A-${A:-d}-${A-d}\n",
            "C=${UNSET:-dflt}/${UNSET-dflt}\n",
            "E=\n",
            "F=${E:-empty}/${E-set}\n",
            "G='${A}'\n",
            "H=\"\\${A} \\$A\"\n",
            "I=$(echo $A)\n",
            "A=y\n",
            "J=${A}\n",
        );
        let (entries, issues) = read_with(text, true);
        assert_eq!(
            entries,
            pairs(&[
                ("A", "y"),
                ("B", "x-x-x-x"),
                ("C", "dflt/dflt"),
                ("E", ""),
                ("F", "empty/"),
                ("G", "${A}"),
                ("H", "${A} $A"),
                ("I", "$(echo $A)"),
                ("J", "y"),
            ])
        );
        assert_eq!(where_(&issues), [(8, 3, false)], "{issues:?}");
        assert!(issues[0].reason.contains("never runs a command"));

        // An unset name expands to nothing, with an issue; the process
        // environment is never read.
        assert!(std::env::var_os("PATH").is_some());
        let (entries, issues) = read_with("P=[${PATH}]\nQ=[$PATH]\n", true);
        assert_eq!(entries, pairs(&[("P", "[]"), ("Q", "[]")]));
        assert_eq!(where_(&issues), [(1, 4, false), (2, 4, false)]);
        assert!(issues[0].reason.contains("no line above sets"));
    }
}

#[cfg(test)]
#[path = "dotenv_corpus.rs"]
mod corpus;
