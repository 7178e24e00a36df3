//! The one table: rows of figures for fluxd, Redis and the floor, their
//! ratios, the run-to-run spread, and the targets judged PASS or MISS.
//!
//! Benchmarks append [`Row`]s to a [`Report`]; correctness problems (a
//! wrong value, a stale read, a failed request) go to
//! [`Report::failures`], which is what makes the process exit non-zero. A
//! missed speed target never does: it is a MISS in the table, not a
//! failure. The same report is written as JSON with `--json PATH`.

use crate::stats::Measure;
use serde::Serialize;
use std::fmt::Write as _;

/// A comparison column that may be absent.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    Value(Measure),
    Skipped(String),
    None,
}

impl Cell {
    fn median(&self) -> Option<f64> {
        match self {
            Self::Value(m) => Some(m.median),
            _ => None,
        }
    }
}

/// Whether a target was met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Miss,
    /// Not judged: smoke counts, or the comparison point is missing.
    NotJudged,
}

/// A target and its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub text: String,
    pub verdict: Verdict,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub section: &'static str,
    pub metric: String,
    pub unit: &'static str,
    pub fluxd: Measure,
    pub redis: Cell,
    pub floor: Cell,
    pub goal: Option<Goal>,
}

impl Row {
    /// A row with fluxd only.
    pub fn fluxd(
        section: &'static str,
        metric: impl Into<String>,
        unit: &'static str,
        m: Measure,
    ) -> Self {
        Self {
            section,
            metric: metric.into(),
            unit,
            fluxd: m,
            redis: Cell::None,
            floor: Cell::None,
            goal: None,
        }
    }

    pub fn with_goal(mut self, text: impl Into<String>, verdict: Verdict) -> Self {
        self.goal = Some(Goal {
            text: text.into(),
            verdict,
        });
        self
    }

    /// fluxd's median over Redis's.
    pub fn vs_redis(&self) -> Option<f64> {
        self.redis.median().map(|r| self.fluxd.median / r)
    }

    /// fluxd's median over the floor's.
    pub fn vs_floor(&self) -> Option<f64> {
        self.floor.median().map(|f| self.fluxd.median / f)
    }
}

/// Judges `ok` unless `smoke` (then not judged).
pub fn verdict(ok: Option<bool>, smoke: bool) -> Verdict {
    match (smoke, ok) {
        (true, _) | (_, None) => Verdict::NotJudged,
        (false, Some(true)) => Verdict::Pass,
        (false, Some(false)) => Verdict::Miss,
    }
}

/// Everything one invocation measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub command: String,
    pub smoke: bool,
    pub runs: usize,
    pub machine: Machine,
    pub rows: Vec<Row>,
    /// Notes printed under the table (skips, caveats).
    pub notes: Vec<String>,
    /// Correctness failures: any makes the exit status non-zero.
    pub failures: Vec<String>,
}

/// What the machine says about itself.
#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_mib: u64,
}

impl Machine {
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_mib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib / 1024)
            .unwrap_or(0);
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            mem_total_mib,
        }
    }
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if (v == v.trunc() && v.abs() < 1e15) || v.abs() >= 10_000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn measure(m: &Measure) -> String {
    if m.runs > 1 {
        format!("{} ±{:.0}%", num(m.median), m.spread_pct() / 2.0)
    } else {
        num(m.median)
    }
}

fn cell(c: &Cell) -> String {
    match c {
        Cell::Value(m) => measure(m),
        Cell::Skipped(_) => "SKIPPED".into(),
        Cell::None => String::new(),
    }
}

fn ratio(r: Option<f64>) -> String {
    // No ratio over a zero (a CPU figure under one clock tick) or NaN.
    r.filter(|r| r.is_finite())
        .map(|r| format!("{r:.2}×"))
        .unwrap_or_default()
}

impl Report {
    /// The table as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let header = [
            "metric", "unit", "fluxd", "redis", "floor", "f/redis", "f/floor", "target",
        ];
        let mut lines: Vec<[String; 8]> = Vec::new();
        let mut section = "";
        let mut breaks = Vec::new();
        for row in &self.rows {
            if row.section != section {
                breaks.push(lines.len());
                section = row.section;
            }
            let goal = row
                .goal
                .as_ref()
                .map(|g| {
                    let v = match g.verdict {
                        Verdict::Pass => "PASS",
                        Verdict::Miss => "MISS",
                        Verdict::NotJudged => "n/j",
                    };
                    format!("{v} {}", g.text)
                })
                .unwrap_or_default();
            lines.push([
                row.metric.clone(),
                row.unit.into(),
                measure(&row.fluxd),
                cell(&row.redis),
                cell(&row.floor),
                ratio(row.vs_redis()),
                ratio(row.vs_floor()),
                goal,
            ]);
        }
        let mut widths = header.map(|h| h.chars().count());
        for l in &lines {
            for (w, c) in widths.iter_mut().zip(l.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let fmt_line = |cells: &[String; 8]| {
            let mut s = String::new();
            for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
                let pad = w - c.chars().count();
                if i == 0 || i == 1 || i == 7 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
                if i < 7 {
                    s.push_str(" | ");
                }
            }
            s.trim_end().to_owned()
        };
        let rule: String = widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-|-");
        let _ = writeln!(out, "{}", fmt_line(&header.map(String::from)));
        for (i, l) in lines.iter().enumerate() {
            if breaks.contains(&i) {
                let _ = writeln!(out, "{rule}");
            }
            let _ = writeln!(out, "{}", fmt_line(l));
        }
        let _ = writeln!(
            out,
            "\nmedian of {} run(s); ±x% is half the min–max range over the median; n/j = not judged{}",
            self.runs,
            if self.smoke {
                " (smoke: tiny counts, targets are not judged)"
            } else {
                ""
            }
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let missed: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.goal.as_ref().is_some_and(|g| g.verdict == Verdict::Miss))
            .collect();
        let judged = self
            .rows
            .iter()
            .filter(|r| {
                r.goal
                    .as_ref()
                    .is_some_and(|g| g.verdict != Verdict::NotJudged)
            })
            .count();
        let _ = writeln!(
            out,
            "targets: {} judged, {} met, {} missed",
            judged,
            judged - missed.len(),
            missed.len()
        );
        for r in missed {
            let _ = writeln!(
                out,
                "  MISS: {} ({})",
                r.metric,
                r.goal.as_ref().map_or("", |g| g.text.as_str())
            );
        }
        if self.failures.is_empty() {
            let _ = writeln!(
                out,
                "correctness: OK (no wrong value, stale read or failed request)"
            );
        } else {
            let _ = writeln!(out, "correctness: {} FAILURE(S)", self.failures.len());
            for f in &self.failures {
                let _ = writeln!(out, "  FAIL: {f}");
            }
        }
        out
    }
}
