//! Calendar periods in UTC: hour, day, ISO week (from Monday), calendar month.
//!
//! Usage queries bucket by these, and budget windows will too; both must agree on where a period starts.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Duration, Months, NaiveDate, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a period; use hourly, daily, weekly or monthly")]
pub struct UnknownPeriod(pub String);

impl FromStr for Period {
    type Err = UnknownPeriod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hourly" | "hour" => Ok(Period::Hourly),
            "daily" | "day" => Ok(Period::Daily),
            "weekly" | "week" => Ok(Period::Weekly),
            "monthly" | "month" => Ok(Period::Monthly),
            _ => Err(UnknownPeriod(s.to_string())),
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }

    /// The period's unit of time: "day" for daily. It is also the field PostgreSQL's `date_trunc`
    /// takes (whose `week` is ISO, from Monday), and the noun of a sentence's "per day".
    pub fn unit(self) -> &'static str {
        match self {
            Period::Hourly => "hour",
            Period::Daily => "day",
            Period::Weekly => "week",
            Period::Monthly => "month",
        }
    }

    /// The start of the period that contains `t`.
    pub fn start_of(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"));
        match self {
            Period::Hourly => {
                t.with_minute(0).and_then(|t| t.with_second(0)).and_then(|t| t.with_nanosecond(0)).expect("valid")
            }
            Period::Daily => day(t.date_naive()),
            Period::Weekly => day(t.date_naive() - Duration::days(t.weekday().num_days_from_monday() as i64)),
            Period::Monthly => day(t.date_naive().with_day(1).expect("day 1 exists")),
        }
    }

    /// The start of the period after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Period::Hourly => start + Duration::hours(1),
            Period::Daily => start + Duration::days(1),
            Period::Weekly => start + Duration::weeks(1),
            Period::Monthly => start.checked_add_months(Months::new(1)).expect("in range"),
        }
    }

    /// The range `[start, now]` covering the last `days` days, widened to whole periods: the first
    /// bucket is the period containing `now - days + 1 day` (for daily, today and the 6 days before).
    pub fn range_for_days(self, now: DateTime<Utc>, days: u32) -> (DateTime<Utc>, DateTime<Utc>) {
        let from = now - Duration::days(days.saturating_sub(1) as i64);
        let start = match self {
            Period::Hourly => Period::Daily.start_of(from),
            other => other.start_of(from),
        };
        (start, now)
    }
}

/// `90s`, `15m`, `2h`, `1d` or a bare number of seconds, as seconds.
pub fn parse_duration_seconds(s: &str) -> Option<i64> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits.parse().ok()?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn periods_start_where_the_calendar_says() {
        let now = t("2026-11-28T15:42:10Z"); // a Saturday
        assert_eq!(Period::Hourly.start_of(now), t("2026-11-28T15:00:00Z"));
        assert_eq!(Period::Daily.start_of(now), t("2026-11-28T00:00:00Z"));
        assert_eq!(Period::Weekly.start_of(now), t("2026-11-23T00:00:00Z"));
        assert_eq!(Period::Monthly.start_of(now), t("2026-11-01T00:00:00Z"));
        assert_eq!(Period::Monthly.next(t("2026-12-01T00:00:00Z")), t("2027-01-01T00:00:00Z"));
        assert_eq!(Period::Daily.range_for_days(now, 7).0, t("2026-11-22T00:00:00Z"));
        assert_eq!("Weekly".parse::<Period>().unwrap(), Period::Weekly);
        assert!("yearly".parse::<Period>().is_err());
    }
}
