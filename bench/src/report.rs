//! The one table: rows of figures for fluxd, Redis and the floor, their
//! ratios, the run-to-run spread, and the targets, each judged `ok` or
//! `MISS` on its own (a row may carry several); and under it the client
//! check's table, flux-bench's load client against the C one on the floor.
//!
//! Benchmarks append [`Row`]s (and [`CheckRow`]s) to a [`Report`];
//! correctness problems (a wrong value, a stale read, a failed request) go
//! to [`Report::failures`], which is what makes the process exit non-zero.
//! A missed speed target never does: it is a MISS in the table, not a
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
    /// Whether the f/redis and f/floor columns mean something for this row
    /// (not for a figure that is already a ratio within each target).
    pub ratios: bool,
    /// fluxd's figure over Redis's and over the floor's, run by run: the
    /// targets were measured in the same minutes of each run, so the
    /// median of these is what the ratio columns show and the targets
    /// judge (`None`: the ratio of the medians).
    pub redis_ratio: Option<Measure>,
    pub floor_ratio: Option<Measure>,
    /// The targets of this row, each judged on its own.
    pub goals: Vec<Goal>,
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
            ratios: true,
            redis_ratio: None,
            floor_ratio: None,
            goals: Vec::new(),
        }
    }

    /// Adds a target (several may be added, each judged on its own).
    pub fn with_goal(mut self, text: impl Into<String>, verdict: Verdict) -> Self {
        self.goals.push(Goal {
            text: text.into(),
            verdict,
        });
        self
    }

    /// fluxd over Redis: the median of the run-by-run ratios when known,
    /// else fluxd's median over Redis's.
    pub fn vs_redis(&self) -> Option<f64> {
        paired(&self.redis_ratio, self.fluxd.median, &self.redis)
    }

    /// fluxd over the floor, like [`Row::vs_redis`].
    pub fn vs_floor(&self) -> Option<f64> {
        paired(&self.floor_ratio, self.fluxd.median, &self.floor)
    }
}

fn paired(runs: &Option<Measure>, median: f64, other: &Cell) -> Option<f64> {
    match runs {
        Some(m) if m.runs > 0 => Some(m.median),
        _ => other.median().map(|o| median / o),
    }
}

/// The ratio of `a` to `b` run by run (`None` when `b` is missing or the
/// runs do not pair up).
pub fn run_ratios(a: &[f64], b: Option<&[f64]>) -> Option<Measure> {
    let b = b?;
    if a.len() != b.len() || a.is_empty() {
        return None;
    }
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    Some(Measure::of(&r))
}

/// One line of the client check: a figure of the floor server as
/// flux-bench's load client measured it and as the C client did.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRow {
    pub metric: String,
    pub unit: &'static str,
    /// flux-bench's client (`bench/src/load.rs`).
    pub bench: Measure,
    /// The C client (`bench/c/getload.c`), or why it did not run.
    pub c: Cell,
    /// flux-bench's figure over the C client's, run by run (see
    /// [`Row::redis_ratio`]).
    pub c_ratio: Option<Measure>,
    pub goals: Vec<Goal>,
}

impl CheckRow {
    /// flux-bench over C: the median of the run-by-run ratios when known,
    /// else the ratio of the medians.
    pub fn vs_c(&self) -> Option<f64> {
        paired(&self.c_ratio, self.bench.median, &self.c)
    }
}

/// One line of `flux-bench floors`: a figure of Redis and of each floor
/// design ([`crate::bench_floors::COLUMNS`]).
#[derive(Debug, Clone, Serialize)]
pub struct DesignRow {
    pub metric: String,
    pub unit: &'static str,
    /// Redis, then each design.
    pub cells: Vec<Cell>,
    /// Each design's figure over Redis's, run by run.
    pub vs_redis: Vec<Option<Measure>>,
    /// Run by run, the best design's figure over Redis's (totals: the
    /// highest; latency and CPU: the lowest).
    pub best_vs_redis: Option<Measure>,
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
    /// The client check (`flux-bench client-check`), when it ran.
    pub client_check: Vec<CheckRow>,
    /// The floor designs beside Redis (`flux-bench floors`), when it ran.
    pub designs: Vec<DesignRow>,
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
    // Three decimals where two would show 1.00 for what is not 1, so a
    // target at "≤ redis" never reads "1.00× MISS".
    r.filter(|r| r.is_finite())
        .map(|r| {
            if format!("{r:.2}") == "1.00" && r != 1.0 {
                format!("{r:.3}×")
            } else {
                format!("{r:.2}×")
            }
        })
        .unwrap_or_default()
}

fn verdict_text(goals: &[Goal]) -> String {
    goals
        .iter()
        .map(|g| {
            let v = match g.verdict {
                Verdict::Pass => "ok",
                Verdict::Miss => "MISS",
                Verdict::NotJudged => "n/j",
            };
            format!("{v} {}", g.text)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Aligned columns: the first two and the last left-aligned, the others
/// right-aligned; a rule before every line index in `breaks`.
fn table<const N: usize>(
    out: &mut String,
    header: [&str; N],
    lines: &[[String; N]],
    breaks: &[usize],
) {
    let mut widths = header.map(|h| h.chars().count());
    for l in lines {
        for (w, c) in widths.iter_mut().zip(l.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt_line = |cells: &[String; N]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
            let pad = w - c.chars().count();
            if i == 0 || i == 1 || i == N - 1 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
            if i < N - 1 {
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
}

impl Report {
    /// The table as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut lines: Vec<[String; 8]> = Vec::new();
        let mut section = "";
        let mut breaks = Vec::new();
        for row in &self.rows {
            if row.section != section {
                breaks.push(lines.len());
                section = row.section;
            }
            let (vs_redis, vs_floor) = if row.ratios {
                (ratio(row.vs_redis()), ratio(row.vs_floor()))
            } else {
                (String::new(), String::new())
            };
            lines.push([
                row.metric.clone(),
                row.unit.into(),
                measure(&row.fluxd),
                cell(&row.redis),
                cell(&row.floor),
                vs_redis,
                vs_floor,
                verdict_text(&row.goals),
            ]);
        }
        if !lines.is_empty() {
            table(
                &mut out,
                [
                    "metric", "unit", "fluxd", "redis", "floor", "f/redis", "f/floor", "target",
                ],
                &lines,
                &breaks,
            );
        }
        if !self.client_check.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            let lines: Vec<[String; 6]> = self
                .client_check
                .iter()
                .map(|r| {
                    [
                        r.metric.clone(),
                        r.unit.into(),
                        measure(&r.bench),
                        cell(&r.c),
                        ratio(r.vs_c()),
                        verdict_text(&r.goals),
                    ]
                })
                .collect();
            table(
                &mut out,
                [
                    "client check (the floor server)",
                    "unit",
                    "flux-bench",
                    "C client",
                    "bench/C",
                    "target",
                ],
                &lines,
                &[0],
            );
        }
        if !self.designs.is_empty() {
            if !out.is_empty() {
                out.push('\n');
            }
            let runs = |m: &Option<Measure>| ratio(m.as_ref().map(|m| m.median));
            let lines: Vec<[String; 10]> = self
                .designs
                .iter()
                .map(|r| {
                    let c = |i: usize| r.cells.get(i).map_or(String::new(), cell);
                    let v = |i: usize| r.vs_redis.get(i).map_or(String::new(), runs);
                    [
                        r.metric.clone(),
                        r.unit.into(),
                        c(0),
                        c(1),
                        c(2),
                        c(3),
                        v(0),
                        v(1),
                        v(2),
                        runs(&r.best_vs_redis),
                    ]
                })
                .collect();
            table(
                &mut out,
                [
                    "floors (do-nothing servers)",
                    "unit",
                    "redis",
                    "threads",
                    "event loop",
                    "loop per CPU",
                    "thr/redis",
                    "loop/redis",
                    "per-CPU/redis",
                    "best/redis",
                ],
                &lines,
                &[0],
            );
        }
        let _ = writeln!(
            out,
            "\nmedian of {} run(s); ±x% is half the min–max range over the median; n/j = not judged{}",
            self.runs,
            if self.smoke {
                " (smoke: tiny cells, targets are not judged)"
            } else {
                ""
            }
        );
        for n in &self.notes {
            let _ = writeln!(out, "note: {n}");
        }
        let goals = self
            .rows
            .iter()
            .flat_map(|r| r.goals.iter().map(move |g| (r.metric.as_str(), g)))
            .chain(
                self.client_check
                    .iter()
                    .flat_map(|r| r.goals.iter().map(move |g| (r.metric.as_str(), g))),
            );
        let judged: Vec<(&str, &Goal)> = goals
            .filter(|(_, g)| g.verdict != Verdict::NotJudged)
            .collect();
        let missed: Vec<&(&str, &Goal)> = judged
            .iter()
            .filter(|(_, g)| g.verdict == Verdict::Miss)
            .collect();
        let _ = writeln!(
            out,
            "targets: {} judged, {} met, {} missed",
            judged.len(),
            judged.len() - missed.len(),
            missed.len()
        );
        for (metric, g) in missed {
            let _ = writeln!(out, "  MISS: {metric} ({})", g.text);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_target_is_judged_and_counted_on_its_own() {
        let mut row = Row::fluxd(
            "get",
            "get 40 B ×16 total",
            "req/s",
            Measure::of(&[90.0, 110.0]),
        );
        row.floor = Cell::Value(Measure::of(&[100.0, 200.0]));
        row.redis = Cell::Skipped("redis-server not installed".into());
        // Run by run 0.9 and 0.55: the median of those, not 100 / 150.
        row.floor_ratio = run_ratios(&[90.0, 110.0], Some(&[100.0, 200.0]));
        assert!((row.vs_floor().unwrap() - 0.725).abs() < 1e-9);
        assert_eq!(row.vs_redis(), None);
        let row = row
            .with_goal("≥ 0.8× floor", verdict(Some(false), false))
            .with_goal("≥ 1.5× redis", verdict(None, false));
        let report = Report {
            runs: 2,
            rows: vec![row],
            client_check: vec![CheckRow {
                metric: "floor 40 B ×16 total".into(),
                unit: "req/s",
                bench: Measure::one(95.0),
                c: Cell::Value(Measure::one(100.0)),
                c_ratio: None,
                goals: vec![Goal {
                    text: "within 10 % of C".into(),
                    verdict: Verdict::Pass,
                }],
            }],
            ..Report::default()
        };
        let text = report.render();
        assert!(
            text.contains("MISS ≥ 0.8× floor; n/j ≥ 1.5× redis"),
            "{text}"
        );
        assert!(text.contains("SKIPPED"), "{text}");
        assert!(text.contains("0.95× | ok within 10 % of C"), "{text}");
        assert!(
            text.contains("targets: 2 judged, 1 met, 1 missed"),
            "{text}"
        );
        assert!(
            text.contains("MISS: get 40 B ×16 total (≥ 0.8× floor)"),
            "{text}"
        );
    }
}
