//! Timestamps as clients send them: RFC 3339 (converted to UTC), or without a zone, which is read as
//! UTC (what Python's `datetime.isoformat()` writes for a naive time, and what the original Budget's
//! clients send). Anything else stays a clear error.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer};

/// Parses one timestamp.
pub fn parse(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    Err(format!(
        "`{text}` is not a timestamp; send RFC 3339 (2026-11-30T10:00:00Z, or with an offset), or a time without a zone, read as UTC"
    ))
}

/// `#[serde(deserialize_with = "crate::timestamp::optional")]` for `Option<DateTime<Utc>>` fields.
pub fn optional<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) => parse(&text).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoned_and_naive_times_are_read_as_utc() {
        let utc: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
        assert_eq!(parse("2026-11-30T10:00:00Z"), Ok(utc));
        assert_eq!(parse("2026-11-30T11:00:00+01:00"), Ok(utc));
        assert_eq!(parse("2026-11-30T10:00:00"), Ok(utc));
        assert_eq!(parse("2026-11-30T10:00:00.000000"), Ok(utc));
        assert!(parse("yesterday").unwrap_err().contains("not a timestamp"));
    }
}
