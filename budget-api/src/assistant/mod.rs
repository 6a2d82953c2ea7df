//! The Budget assistant: findings computed from the log's projections and the price book, each a
//! sentence with its numbers; useful without any LLM. With one configured
//! (`BUDGET_ASSISTANT_LLM_URL`), the findings are also narrated ([`narrative`]).

pub mod analyze;
pub mod narrative;
pub mod optimize;
pub mod recommend;

use budget_events::period::Period;
use budget_events::ErrorCode;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;

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

impl Range {
    /// Validates `period` (hourly, daily, weekly, monthly) and `days` (1 to 365).
    pub fn new(period: &str, days: i64, now: DateTime<Utc>) -> Result<Range, ApiError> {
        let period: Period = period.parse().map_err(|e: budget_events::period::UnknownPeriod| {
            ApiError::bad_request(ErrorCode::ValidationFailed, e.to_string())
        })?;
        if !(1..=365).contains(&days) {
            return Err(ApiError::bad_request(ErrorCode::ValidationFailed, format!("days is {days}; use 1 to 365")));
        }
        Ok(Range { period, days, start: now - Duration::days(days), end: now })
    }

    /// How many of `period` the range holds (for "per period" figures).
    pub fn periods(&self) -> Decimal {
        let hours = Decimal::from(self.days * 24);
        let per = Decimal::from(match self.period {
            Period::Hourly => 1,
            Period::Daily => 24,
            Period::Weekly => 24 * 7,
            Period::Monthly => 24 * 30,
        });
        (hours / per).max(Decimal::ONE)
    }
}

/// Money rounded for a sentence: to a hundredth of a cent, or, for a smaller amount that is not
/// zero, to its first two significant digits (a saving of $0.000025 is not "$0").
pub fn usd(d: Decimal) -> String {
    let rounded = d.round_dp(4);
    let shown = if rounded.is_zero() && !d.is_zero() { d.round_sf(2).unwrap_or(d) } else { rounded };
    format!("${}", shown.normalize())
}
