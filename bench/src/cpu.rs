//! CPU time of a process, from `/proc/<pid>/stat`: no extra tools.
//!
//! Fields 14 and 15 of `/proc/<pid>/stat` are the user and system time of
//! the whole process — every thread, the ones that already exited included —
//! in clock ticks (`sysconf(_SC_CLK_TCK)`, 100 per second on Linux). A tick
//! is 10 ms, so a figure is only as good as the number of ticks it spans:
//! the `get` benchmark sums them over every slice of a cell (hundreds of
//! ticks for a full run) before dividing by the requests served.

use anyhow::{Context, Result};

/// utime + stime of `pid`, in clock ticks.
pub fn ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat(&stat).with_context(|| format!("unexpected format of {path}"))
}

/// utime + stime of this process, in clock ticks.
pub fn own_ticks() -> Result<u64> {
    ticks(std::process::id())
}

/// Clock ticks per second.
pub fn ticks_per_sec() -> u64 {
    use nix::unistd::{SysconfVar, sysconf};
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as u64,
        _ => 100,
    }
}

/// Microseconds of CPU per request for `ticks` over `requests`.
pub fn us_per_request(ticks: u64, requests: u64) -> f64 {
    if requests == 0 {
        return f64::NAN;
    }
    ticks as f64 * 1e6 / ticks_per_sec() as f64 / requests as f64
}

/// utime (field 14) + stime (field 15). The command name (field 2) is in
/// parentheses and may itself hold spaces or parentheses, so fields are
/// counted from the last `)`: field 3 is the first after it.
fn parse_stat(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utime_and_stime_past_an_odd_command_name() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    1234 56 0 0 20 0 3 0 100 1000 200";
        assert_eq!(parse_stat(stat), Some(1234 + 56));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        own_ticks().unwrap();
        assert!(ticks_per_sec() >= 100);
        assert!(us_per_request(0, 0).is_nan());
        assert_eq!(
            us_per_request(100, 1_000_000),
            1e6 / ticks_per_sec() as f64 / 10_000.0
        );
    }
}
