//! The Budget assistant: findings computed from the log's projections and the price book, each a
//! sentence with its numbers; useful without any LLM. With one configured
//! (`BUDGET_ASSISTANT_LLM_URL`), the findings are also narrated ([`narrative`]).

pub mod analyze;
pub mod narrative;
pub mod optimize;
pub mod recommend;

use budget_events::display::count;
use budget_events::period::Period;
use budget_events::ErrorCode;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::error::ApiError;

pub use budget_events::money::json_number as number;

/// The range an analysis covers: the last `days` days up to now, bucketed by `period`.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub period: Period,
    pub days: i64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The most days an analysis looks back.
pub const MAX_DAYS: i64 = 365;

impl Range {
    /// Validates `period` (hourly, daily, weekly, monthly) and `days` (1 to [`MAX_DAYS`]).
    pub fn new(period: &str, days: i64, now: DateTime<Utc>) -> Result<Range, ApiError> {
        let period: Period = period.parse().map_err(|e: budget_events::period::UnknownPeriod| {
            ApiError::bad_request(ErrorCode::ValidationFailed, e.to_string())
        })?;
        if !(1..=MAX_DAYS).contains(&days) {
            return Err(ApiError::bad_request(
                ErrorCode::ValidationFailed,
                format!("days is {days}; use 1 to {MAX_DAYS}"),
            ));
        }
        Ok(Range { period, days, start: now - Duration::days(days), end: now })
    }

    /// How many of `period` there are in `hours` of the range (for "per period" figures), at least
    /// one: what a shorter span saved is not stretched to a whole period.
    pub fn periods(&self, hours: i64) -> Decimal {
        let hours = Decimal::from(hours);
        let per = Decimal::from(match self.period {
            Period::Hourly => 1,
            Period::Daily => 24,
            Period::Weekly => 24 * 7,
            Period::Monthly => 24 * 30,
        });
        (hours / per).max(Decimal::ONE)
    }
}

/// How many hours of the range the log holds: all of them, or, when its first record falls inside
/// the range (a deployment younger than the range), the hours from that record's hour to the range's
/// end, a started hour counting as one.
pub fn hours_recorded(range: &Range, first_hour: Option<DateTime<Utc>>) -> i64 {
    let all = range.days * 24;
    match first_hour {
        Some(first) if first > range.start => started_hours(range.end - first).clamp(1, all),
        _ => all,
    }
}

/// The hours `d` spans, a started hour counting as one.
pub fn started_hours(d: Duration) -> i64 {
    (d.num_seconds().max(0) + 3_599) / 3_600
}

/// A duration in words, to the nearest day from a day on ("5 days"), else in hours ("7 hours").
pub fn span(d: Duration) -> String {
    let hours = d.num_hours();
    if hours >= 24 {
        count((hours + 12) / 24, "day")
    } else {
        count(hours, "hour")
    }
}

/// Money rounded for a sentence: from a cent up to a hundredth of a cent, and under a cent to its first
/// three significant digits (a saving of $0.000025 is not "$0", and $0.000225 a call is not "$0.00023"
/// beside a table that says 0.000225). Halves round up, as people round.
pub fn usd(d: Decimal) -> String {
    let half_up = RoundingStrategy::MidpointAwayFromZero;
    let shown = if d.abs() < Decimal::new(1, 2) {
        d.round_sf_with_strategy(3, half_up).unwrap_or(d)
    } else {
        d.round_dp_with_strategy(4, half_up)
    };
    budget_events::display::dollars(shown)
}

#[cfg(test)]
mod tests {
    use super::usd;
    use rust_decimal_macros::dec;

    #[test]
    fn money_in_sentences_keeps_what_a_table_beside_it_shows() {
        // Under a cent, three significant digits: the table beside the sentence says 0.00045, not
        // 0.0004, and 0.000225 (gemini-1.5-flash's call in `recommend`), not 0.00023.
        assert_eq!(usd(dec!(0.00045)), "$0.00045");
        assert_eq!(usd(dec!(0.00054)), "$0.00054");
        assert_eq!(usd(dec!(0.000225)), "$0.000225");
        assert_eq!(usd(dec!(0.0006208)), "$0.000621");
        assert_eq!(usd(dec!(0.00164)), "$0.00164");
        assert_eq!(usd(dec!(0.000000833)), "$0.000000833");
        // A half rounds up, as people round.
        assert_eq!(usd(dec!(0.0001255)), "$0.000126");
        assert_eq!(usd(dec!(0.01235)), "$0.0124");
        // From a cent up, to a hundredth of a cent.
        assert_eq!(usd(dec!(0.0192)), "$0.0192");
        assert_eq!(usd(dec!(19.84083)), "$19.8408");
        assert_eq!(usd(dec!(20)), "$20");
        // Thousands grouped, as the tables beside them are ("$1222.2916 projected" beside "$1,000").
        assert_eq!(usd(dec!(1222.29163)), "$1,222.2916");
        assert_eq!(usd(dec!(-1234567)), "-$1,234,567");
        assert_eq!(usd(dec!(0)), "$0");
    }
}
