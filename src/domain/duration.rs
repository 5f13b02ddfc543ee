//! Human durations as the settings write them: `500ms`, `5s`, `2m`, `1h`,
//! `30d`; and the instants a filter is given (`2026-11-24`, `…T10:30`).

use std::time::Duration;

/// Parses `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{text}` has no unit (use ms, s, m, h or d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("`{text}` does not start with a whole number"))?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!("`{text}` has an unknown unit `{unit}` (use ms, s, m, h or d)"));
        }
    };
    n.checked_mul(millis_per_unit).map(Duration::from_millis).ok_or_else(|| format!("`{text}` is too long"))
}

/// A date (`2026-11-24`), a date and time (`2026-11-24T10:30`, seconds
/// optional) in UTC, or RFC 3339 with an offset. A bare date as the `end` of
/// a range means the end of that day. Blank is `None`.
pub fn parse_instant(text: &str, end: bool) -> Result<Option<chrono::NaiveDateTime>, String> {
    use chrono::{NaiveDate, NaiveDateTime};
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.naive_utc()));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(Some(t));
        }
    }
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) if end => Ok(d.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0))),
        Ok(d) => Ok(d.and_hms_opt(0, 0, 0)),
        Err(_) => Err(format!("`{text}` is not a date: use 2026-11-24 or 2026-11-24T10:30 (UTC).")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3h"), Ok(Duration::from_secs(3 * 3600)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86400)));
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in ["", "5", "s", "-1s", "1.5s", "5 minutes", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
