//! Every machine-readable error code the service sends, in one enum.
//!
//! Outcomes stored under idempotency keys and the API's error bodies both carry these, serialised to the
//! snake_case strings clients already match on; comparing codes is comparing enum values, so a typo is
//! a compile error rather than a branch that never runs.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // 400: the request itself is wrong.
    ValidationFailed,
    InvalidJson,
    InvalidBody,
    InvalidParameter,
    InvalidPeriod,
    InvalidId,
    InvalidIdempotencyKey,
    InvalidPriceFile,
    InvalidTimeRange,
    ConflictingIdempotencyKeys,
    TooManyRecords,
    WebsocketRequired,
    // 401, 403, 421: who may call, and from where.
    Unauthenticated,
    Forbidden,
    OriginRefused,
    MisdirectedRequest,
    // 402: a limit refuses.
    BudgetExceeded,
    UnpricedModel,
    // 404
    NotFound,
    UnknownAllocation,
    // 405: the path exists, the method does not.
    MethodNotAllowed,
    // 409: the request conflicts with what is already there.
    IdempotencyKeyReused,
    BudgetExists,
    BudgetArchived,
    AllocationResolved,
    PriceVersionExists,
    LastAdminKey,
    // 413, 415, 429, 503, 500
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    Unavailable,
    /// 503: a projection has not applied the position a read asked for (`min_position`) in time.
    ProjectionLag,
    InternalError,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 33] = [
        ErrorCode::ValidationFailed,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidParameter,
        ErrorCode::InvalidPeriod,
        ErrorCode::InvalidId,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::InvalidPriceFile,
        ErrorCode::InvalidTimeRange,
        ErrorCode::ConflictingIdempotencyKeys,
        ErrorCode::TooManyRecords,
        ErrorCode::WebsocketRequired,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::OriginRefused,
        ErrorCode::MisdirectedRequest,
        ErrorCode::BudgetExceeded,
        ErrorCode::UnpricedModel,
        ErrorCode::NotFound,
        ErrorCode::UnknownAllocation,
        ErrorCode::MethodNotAllowed,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::BudgetExists,
        ErrorCode::BudgetArchived,
        ErrorCode::AllocationResolved,
        ErrorCode::PriceVersionExists,
        ErrorCode::LastAdminKey,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::ProjectionLag,
        ErrorCode::InternalError,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::InvalidPeriod => "invalid_period",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::InvalidPriceFile => "invalid_price_file",
            ErrorCode::InvalidTimeRange => "invalid_time_range",
            ErrorCode::ConflictingIdempotencyKeys => "conflicting_idempotency_keys",
            ErrorCode::TooManyRecords => "too_many_records",
            ErrorCode::WebsocketRequired => "websocket_required",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::OriginRefused => "origin_refused",
            ErrorCode::MisdirectedRequest => "misdirected_request",
            ErrorCode::BudgetExceeded => "budget_exceeded",
            ErrorCode::UnpricedModel => "unpriced_model",
            ErrorCode::NotFound => "not_found",
            ErrorCode::UnknownAllocation => "unknown_allocation",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::BudgetExists => "budget_exists",
            ErrorCode::BudgetArchived => "budget_archived",
            ErrorCode::AllocationResolved => "allocation_resolved",
            ErrorCode::PriceVersionExists => "price_version_exists",
            ErrorCode::LastAdminKey => "last_admin_key",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ProjectionLag => "projection_lag",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_is_the_serde_form_and_each_code_is_distinct() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
            assert_eq!(serde_json::from_value::<ErrorCode>(code.as_str().into()).unwrap(), code);
            assert!(seen.insert(code.as_str()), "{code} is listed twice");
        }
    }
}
