//! `POST /api/prices/recommendations`: cheaper models for a call of a given shape, each with its cost
//! and what it saves, from the price book in effect now.

use actix_web::{post, web, HttpResponse};
use budget_events::domain::alternatives::{self, Alternative, CallShape};
use budget_events::money::decimal_json;
use budget_events::ErrorCode;
use chrono::Utc;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::body;
use crate::error::ApiError;
use crate::routes::prices::resolve_at;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendationRequest {
    pub provider: String,
    pub model: String,
    /// What the call is for (`coding` needs the `code` capability, `analysis` `reasoning`…).
    #[serde(default = "default_task")]
    pub task_type: String,
    /// Input tokens of the call.
    #[schema(schema_with = crate::openapi::schemas::tokens)]
    pub context_size: i64,
    /// Output tokens expected.
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::tokens)]
    pub output_size: i64,
    /// Offer local models (price 0) too.
    #[serde(default)]
    pub include_local: bool,
    /// At most this many (default 10).
    #[schema(schema_with = crate::openapi::schemas::count)]
    pub limit: Option<usize>,
}

fn default_task() -> String {
    "default".into()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationResponse {
    pub provider: String,
    pub model: String,
    pub resolved_model: String,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub current_cost: Decimal,
    /// The capability the task type needs, if any.
    pub required_capability: Option<&'static str>,
    /// Cheaper models, largest saving first.
    #[schema(value_type = Vec<Object>)]
    pub alternatives: Vec<Alternative>,
}

/// Cheaper alternatives for a call, sorted by savings, each with its cost.
#[utoipa::path(tag = "prices", request_body = RecommendationRequest, responses((status = 200, body = RecommendationResponse), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[post("/api/prices/recommendations")]
pub async fn recommendations(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let r: RecommendationRequest = body::parse(&body::read(payload, 16 * 1024).await?)?;
    let max = budget_events::domain::usage::MAX_TOKENS_PER_RECORD;
    for (field, v) in [("context_size", r.context_size), ("output_size", r.output_size)] {
        if !(0..=max).contains(&v) {
            return Err(ApiError::bad_request(
                ErrorCode::ValidationFailed,
                format!("{field} is {v}; use 0 to {max} tokens"),
            ));
        }
    }
    if let Some(n) = r.limit.filter(|n| !(1..=crate::openapi::schemas::MAX_COUNT).contains(n)) {
        let max = crate::openapi::schemas::MAX_COUNT;
        return Err(ApiError::bad_request(
            ErrorCode::ValidationFailed,
            format!("limit is {n}; ask for 1 to {max} alternatives"),
        ));
    }
    let now = Utc::now();
    let (current, resolved_model) = resolve_at(&state, &r.provider, &r.model, now).await?;
    let client = state.pool.get().await?;
    let in_effect = crate::offers::offers(&**client, now).await?;
    let call = CallShape {
        task_type: &r.task_type,
        input_tokens: r.context_size,
        output_tokens: r.output_size,
        calls: 1,
        include_local: r.include_local,
    };
    let mut found = alternatives::cheaper_alternatives(&in_effect, &current, &call);
    found.truncate(r.limit.unwrap_or(10));
    Ok(HttpResponse::Ok().json(RecommendationResponse {
        current_cost: budget_events::domain::price::cost(&current.spec, r.context_size, 0, r.output_size).total_cost,
        required_capability: alternatives::required_capability(&r.task_type),
        provider: r.provider,
        model: r.model,
        resolved_model,
        alternatives: found,
    }))
}
