//! The time options (`--since`, `--until`, `--at`, `--as-of`, `--window`) as people type them: RFC 3339,
//! a date, `now` / `today` / `yesterday`, or an age (`7d`, `2h`, `30m`, `2w`: that long ago), all UTC.
//! Each becomes the RFC 3339 instant the API takes; a bad value is refused by clap naming the option.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, Utc};

const FORMS: &str = "use RFC 3339 (2026-11-30T10:00:00Z), a date (2026-11-30, midnight UTC), now, today, yesterday, or an age such as 7d, 2h, 30m, 2w";

/// Reads a time option relative to `now`.
pub fn parse_at(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let s = raw.trim();
    let midnight = |d: NaiveDate| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc();
    match s.to_ascii_lowercase().as_str() {
        "now" => return Ok(now),
        "today" => return Ok(midnight(now.date_naive())),
        "yesterday" => return Ok(midnight(now.date_naive() - Duration::days(1))),
        _ => {}
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(t.and_utc());
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(midnight(d));
    }
    // An age: the service's own durations (`30m`, `2h`, `7d`), and weeks; a bare number is refused
    // (seconds or days? say which).
    let seconds = match s.strip_suffix('w') {
        Some(weeks) => weeks.parse::<i64>().ok().and_then(|w| w.checked_mul(7 * 86_400)),
        None if s.ends_with(|c: char| c.is_ascii_alphabetic()) => budget_events::period::parse_duration_seconds(s),
        None => None,
    };
    let age = seconds.and_then(Duration::try_seconds).ok_or_else(|| format!("`{raw}` is not a time; {FORMS}"))?;
    Ok(now - age)
}

/// clap's parser for a time option: the RFC 3339 text the API takes.
pub fn instant(raw: &str) -> Result<String, String> {
    parse_at(raw, Utc::now()).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// clap's parser for `--as-of`: a time not in the future (the log has none to recompute), with the
/// service's allowance for a clock running a little ahead.
pub fn past_instant(raw: &str) -> Result<String, String> {
    let now = Utc::now();
    let t = parse_at(raw, now)?;
    if t > now + budget_events::domain::usage::MAX_CLOCK_SKEW {
        return Err(format!(
            "{} is in the future: the log stands as of now; leave --as-of out for now, or use --at for a window to come",
            t.format("%Y-%m-%d %H:%M:%S UTC")
        ));
    }
    Ok(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// clap's parser for `--window`: a per-task or per-session key as given, else a time.
pub fn window(raw: &str) -> Result<String, String> {
    if raw.starts_with("task:") || raw.starts_with("session:") {
        return Ok(raw.to_string());
    }
    instant(raw).map_err(|e| format!("{e}; or task:ID / session:ID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn every_documented_form_reads_as_utc() {
        let now = t("2026-11-30T15:45:10Z");
        for (given, expected) in [
            ("2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z"),
            ("2026-11-28T11:00:00+01:00", "2026-11-28T10:00:00Z"),
            ("2026-11-28T10:00:00", "2026-11-28T10:00:00Z"),
            ("2026-11-28", "2026-11-28T00:00:00Z"),
            ("now", "2026-11-30T15:45:10Z"),
            ("today", "2026-11-30T00:00:00Z"),
            ("Yesterday", "2026-11-29T00:00:00Z"),
            ("7d", "2026-11-23T15:45:10Z"),
            ("2h", "2026-11-30T13:45:10Z"),
            ("30m", "2026-11-30T15:15:10Z"),
            ("2w", "2026-11-16T15:45:10Z"),
        ] {
            assert_eq!(parse_at(given, now), Ok(t(expected)), "{given}");
        }
    }

    #[test]
    fn a_bad_value_lists_the_forms() {
        for bad in ["last tuesday", "7y", "2026-13-01", ""] {
            let e = parse_at(bad, Utc::now()).unwrap_err();
            assert!(e.contains("is not a time") && e.contains("yesterday") && e.contains("7d"), "{e}");
        }
        assert_eq!(window("task:t-9").unwrap(), "task:t-9");
        assert!(window("soon").unwrap_err().contains("task:ID"));
        let e = past_instant("2999-01-01").unwrap_err();
        assert!(e.starts_with("2999-01-01 00:00:00 UTC is in the future") && e.contains("--at"), "{e}");
        assert!(past_instant("now").is_ok() && past_instant("2h").is_ok());
    }
}
