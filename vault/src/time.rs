//! Times as Flux Secrets writes and reads them: milliseconds since the
//! epoch in memory and on the wire, RFC 3339 UTC with milliseconds in vault
//! documents, the audit log and `--json` output ([`format_time_ms`], and
//! `parse_time_ms` inside this crate), and the `# created:` stamp of a key
//! file ([`created_stamp`]). fluxd and `fluxctl` both take their times
//! from here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// RFC 3339 with milliseconds, UTC.
pub fn format_time_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// A time in RFC 3339, as milliseconds since the epoch: the canonical
/// form quickly, any other through the general parser.
pub(crate) fn parse_time_ms(s: &str) -> Option<u64> {
    if let Some(ms) = parse_canonical_time_ms(s) {
        return Some(ms);
    }
    let t = humantime::parse_rfc3339(s).ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64)
}

/// The form fluxd writes, `YYYY-MM-DDTHH:MM:SS.mmmZ`, read without the
/// general parser (a vault holds one time per version, and every start
/// reads them all). `None` for anything else, or a field out of range: the
/// general parser decides those.
fn parse_canonical_time_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 24 || [b[4], b[7], b[10], b[13], b[16], b[19], b[23]] != *b"--T::.Z" {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u64> {
        b[from..to].iter().try_fold(0u64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second, milli) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 23)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1970 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days since the epoch (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let (era, yoe) = (y / 400, y % 400);
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

/// Now, as the `# created:` line of a key file states it: RFC 3339 UTC to
/// the second.
pub fn created_stamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_times_read_like_the_general_parser() {
        let mut ms: u64 = 0;
        for i in 0..20_000u64 {
            ms = (ms + i * 7_919_993_311 + 123) % 8_000_000_000_000;
            let text = format_time_ms(ms);
            assert_eq!(parse_canonical_time_ms(&text), Some(ms), "{text}");
            let general = humantime::parse_rfc3339(&text).unwrap();
            assert_eq!(
                general.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64,
                ms
            );
        }
        for (text, fast) in [
            ("2024-02-29T23:59:59.999Z", true),
            ("2023-02-29T00:00:00.000Z", false),
            ("2026-13-01T00:00:00.000Z", false),
            ("2026-01-01T24:00:00.000Z", false),
            ("1969-12-31T23:59:59.999Z", false),
            ("2026-01-01T00:00:00Z", false),
            ("2026-01-01T00:00:00.000+01:00", false),
            ("２026-01-01T00:00:00.00Z", false),
        ] {
            assert_eq!(parse_canonical_time_ms(text).is_some(), fast, "{text}");
        }
        assert_eq!(
            parse_time_ms("2026-01-01T00:00:00Z"),
            Some(1_767_225_600_000),
            "other forms go to the general parser"
        );
        assert_eq!(parse_time_ms("2023-02-29T00:00:00.000Z"), None);
    }

    #[test]
    fn created_stamps_are_rfc3339_seconds() {
        let stamp = created_stamp();
        let b = stamp.as_bytes();
        assert_eq!(b.len(), 20, "{stamp}");
        assert_eq!(
            [b[4], b[7], b[10], b[13], b[16], b[19]],
            *b"--T::Z",
            "{stamp}"
        );
        let at = humantime::parse_rfc3339(&stamp).unwrap();
        let ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        assert!(now_ms().abs_diff(ms) < 5_000, "{stamp}");
    }
}
