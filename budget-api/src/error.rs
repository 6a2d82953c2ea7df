//! The API's one error type, and the JSON every error is sent as:
//! `{"error": {"code": "…", "message": "…", "details": …}}`.
//!
//! `code` is stable and machine-readable; `message` is a sentence that says what to fix.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String, details: Option<serde_json::Value> },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
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
    #[error("internal error: {0}")]
    Internal(String),
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `validation_failed`, `invalid_json`, `idempotency_key_reused`…
    pub code: String,
    /// What went wrong and how to fix it.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into(), details: None }
    }

    /// `validation_failed` with every (field, problem) in `details`, and what did not happen.
    pub fn validation(problems: impl IntoIterator<Item = (String, String)>, consequence: &str) -> Self {
        let problems: Vec<(String, String)> = problems.into_iter().collect();
        let message = problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
        let details = problems.iter().map(|(f, m)| serde_json::json!({"field": f, "message": m})).collect();
        ApiError::BadRequest {
            code: "validation_failed",
            message: format!("{message}; {consequence}"),
            details: Some(serde_json::Value::Array(details)),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Conflict { code, .. } => code,
            ApiError::NotFound(_) => "not_found",
            ApiError::BudgetExceeded { .. } => "budget_exceeded",
            ApiError::Unpriced(_) => "unpriced_model",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BudgetExceeded { .. } | ApiError::Unpriced(_) => StatusCode::PAYMENT_REQUIRED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(e) = self {
            tracing::error!(error = %e, "internal error");
        }
        let details = match self {
            ApiError::BadRequest { details, .. } => details.clone(),
            ApiError::BudgetExceeded { details, .. } => Some(details.clone()),
            _ => None,
        };
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: ErrorDetail { code: self.code().to_string(), message: self.to_string(), details },
        })
    }
}

impl From<budget_events::writer::WriteError> for ApiError {
    fn from(e: budget_events::writer::WriteError) -> Self {
        use budget_events::ledger::CommandError;
        use budget_events::writer::WriteError;
        match e {
            WriteError::Rejected(rejection @ CommandError::KeyReused(_)) => {
                ApiError::Conflict { code: "idempotency_key_reused", message: rejection.to_string() }
            }
            WriteError::Rejected(rejection @ CommandError::UnknownBudget(_)) => {
                ApiError::NotFound(rejection.to_string())
            }
            WriteError::Rejected(rejection @ CommandError::BudgetExists(_)) => {
                ApiError::Conflict { code: "budget_exists", message: rejection.to_string() }
            }
            WriteError::Rejected(rejection @ CommandError::BudgetArchived(_)) => {
                ApiError::Conflict { code: "budget_archived", message: rejection.to_string() }
            }
            WriteError::Rejected(CommandError::BudgetExceeded(refusals)) => ApiError::BudgetExceeded {
                message: CommandError::BudgetExceeded(refusals.clone()).to_string(),
                details: serde_json::to_value(&refusals).expect("refusals serialize"),
            },
            WriteError::Rejected(rejection @ CommandError::UnknownAllocation(_)) => {
                ApiError::NotFound(rejection.to_string())
            }
            WriteError::Rejected(rejection @ CommandError::AlreadyResolved { .. }) => {
                ApiError::Conflict { code: "allocation_resolved", message: rejection.to_string() }
            }
            WriteError::Unavailable(_) | WriteError::ShutDown => {
                ApiError::Unavailable(format!("{e}; nothing was written, retry with the same idempotency key"))
            }
            WriteError::Failed(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::Internal(format!("database: {e}"))
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::Unavailable(format!("the database is unavailable: {e}"))
    }
}
