//! Times in words, as operators read them in listings: "set 2 hours ago".
//! The clock and RFC 3339 (for `--json`) are [`flux_vault::time`]'s.

/// How long before `now_ms` the time `then_ms` was, in words: `just now`
/// under a minute (and for times in the future, from clock skew), then
/// minutes, hours, days, weeks, months and years, rounded down.
pub fn ago(then_ms: u64, now_ms: u64) -> String {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    const MIN: u64 = 60;
    const HOUR: u64 = 60 * MIN;
    const DAY: u64 = 24 * HOUR;
    let (n, unit) = match secs {
        s if s < MIN => return "just now".into(),
        s if s < HOUR => (s / MIN, "minute"),
        s if s < DAY => (s / HOUR, "hour"),
        s if s < 7 * DAY => (s / DAY, "day"),
        s if s < 30 * DAY => (s / (7 * DAY), "week"),
        s if s < 365 * DAY => (s / (30 * DAY), "month"),
        s => (s / (365 * DAY), "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{plural} ago")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago_in_words() {
        let now = 1_000_000_000_000;
        let cases = [
            (0, "just now"),
            (59, "just now"),
            (60, "1 minute ago"),
            (2 * 3600 + 5, "2 hours ago"),
            (3 * 86400, "3 days ago"),
            (7 * 86400, "1 week ago"),
            (40 * 86400, "1 month ago"),
            (800 * 86400, "2 years ago"),
        ];
        for (secs, want) in cases {
            assert_eq!(ago(now - secs * 1000, now), want, "{secs}s");
        }
        assert_eq!(ago(now + 5000, now), "just now", "future times");
    }
}
