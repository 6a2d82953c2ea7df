//! Page size and offset of the listings that page by offset, checked in one place so that no
//! listing can be asked for a page that overflows.

use budget_events::ErrorCode;

use crate::error::ApiError;

/// The largest offset a listing accepts.
pub const MAX_OFFSET: i64 = 1_000_000_000;

/// `limit` (default `default`, 1 to `max`) and `offset` (default 0, 0 to [`MAX_OFFSET`]).
pub fn page(limit: Option<i64>, offset: Option<i64>, default: i64, max: i64) -> Result<(i64, i64), ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(ErrorCode::InvalidParameter, format!("limit is {limit}; use 1 to {max}")));
    }
    let offset = offset.unwrap_or(0);
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidParameter,
            format!("offset is {offset}; use 0 to {MAX_OFFSET} (the next_offset of the previous page)"),
        ));
    }
    Ok((limit, offset))
}
