//! The API's one error type, and the JSON every error is sent as:
//! `{"error": {"code": "…", "message": "…", "details": …}}`.
//!
//! `code` is stable and machine-readable; `message` is a sentence that says what to fix.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use budget_events::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String, details: Option<serde_json::Value> },
    #[error("{message}")]
    Conflict { code: ErrorCode, message: String },
    #[error("{0}")]
    NotFound(String),
    /// No key, or one that is unknown, revoked or expired: 401 with `WWW-Authenticate`.
    #[error("{0}")]
    Unauthenticated(String),
    /// A key without the scope, a component-bound key acting for another component, a foreign origin.
    #[error("{message}")]
    Forbidden { code: ErrorCode, message: String },
    /// A `Host` that is not one of the service's names (DNS rebinding).
    #[error("{0}")]
    Misdirected(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("too many requests for this key; retry after {retry_after} s (BUDGET_RATE_LIMIT)")]
    RateLimited { retry_after: u64 },
    /// The path exists with other methods, listed in `allow` (sent as the `Allow` header).
    #[error("{message}")]
    MethodNotAllowed { message: String, allow: String },
    /// A reservation a hard limit refuses: 402 with the windows that refused it.
    #[error("{message}")]
    BudgetExceeded { message: String, details: serde_json::Value },
    /// `BUDGET_UNPRICED=reject`: a call to a model without a price, where a cost limit applies.
    #[error("{0}")]
    Unpriced(String),
    #[error("the request body is larger than {limit} bytes; send fewer records per request")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Unavailable(String),
    /// A read's `min_position` was not applied in time.
    #[error("{0}")]
    ProjectionLag(String),
    /// Something that should not happen. The cause is logged, never sent: the client gets
    /// `internal_error` with the request id the log line carries.
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `validation_failed`, `invalid_json`, `idempotency_key_reused`…
    pub code: String,
    /// What went wrong and how to fix it.
    pub message: String,
    /// The request's id (`X-Request-Id`): name it when asking about this answer; the server's log lines
    /// of the request carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// A list of `{field, message}` (and `index` in a batch) for `validation_failed`, one entry per
    /// refusing window for `budget_exceeded`; an object (such as `{path}` for `invalid_json`) elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = details_schema)]
    pub details: Option<serde_json::Value>,
}

fn details_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Object)))
        .item(ObjectBuilder::new().schema_type(Type::Object))
        .build()
        .into()
}

impl ApiError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into(), details: None }
    }

    /// `validation_failed` with every (field, problem) in `details`, and what did not happen.
    pub fn validation(problems: impl IntoIterator<Item = (String, String)>, consequence: &str) -> Self {
        let problems: Vec<(String, String)> = problems.into_iter().collect();
        let message = problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
        let details = problems.iter().map(|(f, m)| serde_json::json!({"field": f, "message": m})).collect();
        ApiError::BadRequest {
            code: ErrorCode::ValidationFailed,
            message: format!("{message}; {consequence}"),
            details: Some(serde_json::Value::Array(details)),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Conflict { code, .. } => *code,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::Forbidden { code, .. } => *code,
            ApiError::Misdirected(_) => ErrorCode::MisdirectedRequest,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::BudgetExceeded { .. } => ErrorCode::BudgetExceeded,
            ApiError::Unpriced(_) => ErrorCode::UnpricedModel,
            ApiError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::ProjectionLag(_) => ErrorCode::ProjectionLag,
            ApiError::Internal(_) => ErrorCode::InternalError,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Misdirected(_) => StatusCode::MISDIRECTED_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BudgetExceeded { .. } | ApiError::Unpriced(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) | ApiError::ProjectionLag(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let (message, details) = match self {
            ApiError::Internal(cause) => {
                let request_id = crate::request_id::current().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                tracing::error!(%request_id, cause = %cause, "internal error");
                let message = format!(
                    "the server failed to handle this request (request id {request_id}); nothing is known to be wrong with the request: retry it, and if it fails again report the request id"
                );
                (message, Some(serde_json::json!({ "request_id": request_id })))
            }
            ApiError::BadRequest { details, .. } => (self.to_string(), details.clone()),
            ApiError::BudgetExceeded { details, .. } => (self.to_string(), Some(details.clone())),
            _ => (self.to_string(), None),
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header((actix_web::http::header::ALLOW, allow.as_str()));
            }
            ApiError::Unauthenticated(_) => {
                response.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer realm=\"budget\""));
            }
            ApiError::RateLimited { retry_after } => {
                response.insert_header((actix_web::http::header::RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
        let request_id = crate::request_id::current();
        response.json(ErrorBody { error: ErrorDetail { code: self.code().to_string(), message, request_id, details } })
    }
}

impl From<budget_events::writer::WriteError> for ApiError {
    fn from(e: budget_events::writer::WriteError) -> Self {
        use budget_events::ledger::CommandError;
        use budget_events::writer::WriteError;
        match e {
            WriteError::Rejected(CommandError::BudgetExceeded(refusals)) => ApiError::BudgetExceeded {
                message: CommandError::BudgetExceeded(refusals.clone()).to_string(),
                details: serde_json::to_value(&refusals).expect("refusals serialize"),
            },
            WriteError::Rejected(rejection @ CommandError::KeyInactive(_)) => {
                ApiError::Unauthenticated(rejection.to_string())
            }
            WriteError::Rejected(rejection @ CommandError::Unpriced { .. }) => {
                ApiError::Unpriced(rejection.to_string())
            }
            WriteError::Rejected(
                rejection @ (CommandError::UnknownBudget(_)
                | CommandError::UnknownAllocation(_)
                | CommandError::UnknownKey(_)),
            ) => ApiError::NotFound(rejection.to_string()),
            WriteError::Rejected(
                rejection @ (CommandError::KeyReused(_)
                | CommandError::BudgetExists(_)
                | CommandError::PriceVersionExists { .. }
                | CommandError::BudgetArchived(_)
                | CommandError::AlreadyResolved { .. }
                | CommandError::LastAdminKey { .. }),
            ) => ApiError::Conflict { code: rejection.code(), message: rejection.to_string() },
            WriteError::Unavailable(_) | WriteError::ShutDown => {
                ApiError::Unavailable(format!("{e}; nothing was written, retry with the same idempotency key"))
            }
            WriteError::Unknown(_) => ApiError::Unavailable(format!(
                "{e}; retry with the same idempotency key: you get the stored answer if it was written"
            )),
            WriteError::Failed(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    /// Logged with the server's own message (`db error` alone says nothing).
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        // A NUL character cannot be stored in or compared with PostgreSQL text: the request's fault.
        if matches!(e.code(), Some(c) if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE || *c == SqlState::UNTRANSLATABLE_CHARACTER)
        {
            return ApiError::bad_request(
                ErrorCode::InvalidParameter,
                "a parameter contains a NUL character (\\0 or %00), which text cannot hold; remove it",
            );
        }
        ApiError::Internal(format!("database: {}", budget_events::db::error_message(&e)))
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable(format!("the database is unavailable: {e}"))
    }
}
