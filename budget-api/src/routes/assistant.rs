//! The assistant's routes: `POST /api/assistant/analyze`, `/optimize` and `/recommend-model`. Each
//! answers `{"success", "analysis" | "recommendations", "raw_data"?, "narrative"?, "narrative_error"?}`.

use actix_web::{post, web, HttpResponse};
use budget_events::store::prices;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::assistant::recommend::{self, RecommendRequest};
use crate::assistant::{analyze, narrative, optimize, Range};
use crate::body;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeRequest {
    /// hourly, daily (default), weekly or monthly.
    #[serde(default = "daily")]
    pub period: String,
    /// The last this many days, 1 to 365 (default 30).
    #[serde(default = "thirty")]
    pub days: i64,
    /// Add the figures behind the answer.
    #[serde(default)]
    pub include_raw_data: bool,
    /// Ask the configured LLM for a narrative (default: when one is configured).
    pub narrative: Option<bool>,
}

fn daily() -> String {
    "daily".into()
}

fn thirty() -> i64 {
    30
}

async fn answer(
    state: &AppState,
    key: &str,
    body: Value,
    raw: Value,
    include_raw: bool,
    narrate: Option<bool>,
) -> HttpResponse {
    let mut out = json!({ "success": true, key: body });
    if include_raw {
        out["raw_data"] = raw;
    }
    if narrate.unwrap_or(state.assistant_llm.is_some()) {
        match narrative::narrate(state, key, &out[key]).await {
            Ok(text) => out["narrative"] = json!(text),
            Err(e) => out["narrative_error"] = json!(e),
        }
    }
    HttpResponse::Ok().json(out)
}

async fn range(payload: web::Payload) -> Result<(RangeRequest, Range), ApiError> {
    let bytes = body::read(payload, 16 * 1024).await?;
    let r: RangeRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_str("{}").expect("defaults")
    } else {
        body::parse(&bytes)?
    };
    let range = Range::new(&r.period, r.days, chrono::Utc::now())?;
    Ok((r, range))
}

/// Totals and breakdowns, series, trend, burn rate and exhaustion of every window, spikes, top cost
/// drivers and allocation efficiency, each finding a sentence with its numbers.
#[utoipa::path(tag = "assistant", request_body = RangeRequest, responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
#[post("/api/assistant/analyze")]
pub async fn analyze_route(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let (r, range) = range(payload).await?;
    let client = state.pool.get().await?;
    let (analysis, raw) = analyze::analyze(&**client, range).await?;
    drop(client);
    Ok(answer(&state, "analysis", analysis, raw, r.include_raw_data, r.narrative).await)
}

/// Ranked recommendations (model substitution, allocation sizing, prompt caching, policy adjustment)
/// with savings per period computed from the token mix in the log.
#[utoipa::path(tag = "assistant", request_body = RangeRequest, responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
#[post("/api/assistant/optimize")]
pub async fn optimize_route(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let (r, range) = range(payload).await?;
    let client = state.pool.get().await?;
    let (recommendations, raw) = optimize::optimize(&**client, range, &state.allocation_defaults).await?;
    drop(client);
    Ok(answer(&state, "recommendations", recommendations, raw, r.include_raw_data, r.narrative).await)
}

/// Every priced model ranked for a described task.
#[utoipa::path(tag = "assistant", request_body = RecommendRequest, responses((status = 200, body = Object), (status = 400, body = crate::error::ErrorBody)))]
#[post("/api/assistant/recommend-model")]
pub async fn recommend_route(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let r: RecommendRequest = body::parse(&body::read(payload, 16 * 1024).await?)?;
    r.validate()?;
    let client = state.pool.get().await?;
    let in_effect = prices::in_effect(&**client, chrono::Utc::now()).await?;
    drop(client);
    let (recommendations, raw) = recommend::rank(&r, &in_effect);
    Ok(answer(&state, "recommendations", recommendations, raw, r.include_raw_data, None).await)
}
