//! Gateway mode: OpenAI's and Anthropic's APIs under `/v1`, in front of the upstreams of
//! `BUDGET_UPSTREAMS`, with every call reserved before it is forwarded and settled after.
//!
//! A call: the guard authenticates the Budget key (`Authorization: Bearer bgt_…` or `x-api-key`, which
//! the SDKs send); [`call`] picks the upstream through the price book, bounds the call's cost
//! ([`estimate`] for the input, the request's cap for the answer, which the gateway sets when the client
//! did not), reserves it ([`ledger::reserve`], 402 in the provider's error shape when a hard limit
//! refuses); [`forward`] forwards it and settles the usage the upstream reports ([`ledger::settle`]),
//! releasing the rest. The forwarding runs in its own task, so a client that goes away mid-stream does
//! not stop the settlement: the gateway reads the upstream to its end and settles what it bills.

pub mod anthropic;
pub mod call;
pub mod estimate;
pub mod forward;
pub mod ledger;
pub mod models;
pub mod openai;
pub mod sse;
pub mod upstreams;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use budget_events::ErrorCode;

use crate::error::ApiError;

/// The three wire APIs the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    ChatCompletions,
    Embeddings,
    Messages,
}

impl Api {
    pub fn dialect(self) -> upstreams::Dialect {
        match self {
            Api::ChatCompletions | Api::Embeddings => upstreams::Dialect::Openai,
            Api::Messages => upstreams::Dialect::Anthropic,
        }
    }

    /// The path under the upstream's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Api::ChatCompletions => "/chat/completions",
            Api::Embeddings => "/embeddings",
            Api::Messages => "/messages",
        }
    }

    /// The task type calls are recorded under unless `X-Budget-Task-Type` says otherwise.
    pub fn task_type(self) -> &'static str {
        match self {
            Api::ChatCompletions | Api::Messages => "chat",
            Api::Embeddings => "embedding",
        }
    }
}

/// A call the gateway answers itself (refused, or the upstream unreachable), in the client's API's
/// error shape.
#[derive(Debug)]
pub struct GatewayError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Seconds until the refusing window resets (402).
    pub retry_after: Option<i64>,
}

impl GatewayError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        GatewayError { status, code: code.to_string(), message: message.into(), retry_after: None }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidParameter, message)
    }

    pub fn respond(&self, api: Api) -> HttpResponse {
        let body = match api.dialect() {
            upstreams::Dialect::Openai => openai::error_body(self.status.as_u16(), &self.code, &self.message),
            upstreams::Dialect::Anthropic => anthropic::error_body(self.status.as_u16(), &self.message),
        };
        let mut response = HttpResponse::build(self.status);
        if self.status == StatusCode::PAYMENT_REQUIRED {
            // Both SDKs honour it: a refused call is not retried blindly.
            response.insert_header(("x-should-retry", "false"));
        }
        if let Some(seconds) = self.retry_after {
            response.insert_header(("Retry-After", seconds.max(1).to_string()));
        }
        response.json(body)
    }
}

impl From<ApiError> for GatewayError {
    fn from(e: ApiError) -> Self {
        use actix_web::ResponseError;
        let retry_after = match &e {
            // The soonest reset among the refusing windows: a per-task window never resets.
            ApiError::BudgetExceeded { details, .. } => details
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["resets_at"].as_str()?.parse::<chrono::DateTime<chrono::Utc>>().ok())
                .min()
                .map(|at| (at - chrono::Utc::now()).num_seconds() + 1),
            _ => None,
        };
        let message = match &e {
            ApiError::BudgetExceeded { .. } => format!("{e}; the call was not forwarded"),
            // The envelope logs an internal cause and sends only the request id.
            ApiError::Internal(_) => "the gateway failed to handle this call; retry it".to_string(),
            _ => e.to_string(),
        };
        if let ApiError::Internal(cause) = &e {
            tracing::error!(cause = %cause, "gateway call failed");
        }
        GatewayError { status: e.status_code(), code: e.code().to_string(), message, retry_after }
    }
}

/// `BUDGET_UPSTREAMS` and `BUDGET_GATEWAY_MAX_TOKENS`.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub upstreams: upstreams::Upstreams,
    /// The cap the gateway sets on an answer whose request names none, so that the upstream cannot
    /// spend more than was reserved.
    pub default_max_tokens: i64,
}

/// The cap set when neither the request nor `BUDGET_GATEWAY_MAX_TOKENS` gives one.
pub const DEFAULT_MAX_TOKENS: i64 = 4096;

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings { upstreams: Default::default(), default_max_tokens: DEFAULT_MAX_TOKENS }
    }
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(call::chat_completions))
        .route("/v1/embeddings", web::post().to(call::embeddings))
        .route("/v1/messages", web::post().to(call::messages))
        .route("/v1/models", web::get().to(models::list));
}
