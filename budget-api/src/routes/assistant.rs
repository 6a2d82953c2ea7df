//! The assistant's routes: `POST /api/assistant/analyze`, `/optimize` and `/recommend-model`. Each
//! answers `{"success", "analysis" | "recommendations", "raw_data"?, "narrative"?, "narrative_error"?}`.

use actix_web::{post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
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
    #[schema(schema_with = budget_events::openapi::usage_period)]
    pub period: String,
    /// The last this many days, 1 to 365 (default 30).
    #[serde(default = "thirty")]
    #[schema(schema_with = crate::openapi::schemas::assistant_days)]
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

macro_rules! answer_type {
    ($(#[$doc:meta])* $name:ident { $key:ident: $body:ty }) => {
        $(#[$doc])*
        #[derive(Debug, Serialize, Deserialize, ToSchema)]
        pub struct $name {
            pub success: bool,
            #[schema(value_type = Object)]
            pub $key: $body,
            /// With `include_raw_data`: the figures behind the answer.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schema(value_type = Option<Object>)]
            pub raw_data: Option<Value>,
            /// The configured LLM's narrative of the answer.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub narrative: Option<String>,
            /// Why the narrative could not be had (the answer stands without it).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub narrative_error: Option<String>,
        }

        impl $name {
            async fn new(state: &AppState, body: $body, raw: Value, include_raw: bool, narrate: Option<bool>) -> Self {
                let (narrative, narrative_error) = narration(state, stringify!($key), &body, narrate).await;
                $name { success: true, $key: body, raw_data: include_raw.then_some(raw), narrative, narrative_error }
            }
        }
    };
}

answer_type!(
    /// `POST /api/assistant/analyze`.
    AnalyzeResponse { analysis: analyze::Analysis }
);
answer_type!(
    /// `POST /api/assistant/optimize`.
    OptimizeResponse { recommendations: optimize::Savings }
);
answer_type!(
    /// `POST /api/assistant/recommend-model`.
    RecommendResponse { recommendations: recommend::ModelRanking }
);

/// The LLM's narrative of an answer, when one is configured (or asked for), or why there is none.
async fn narration(
    state: &AppState,
    key: &str,
    body: &impl Serialize,
    narrate: Option<bool>,
) -> (Option<String>, Option<String>) {
    if !narrate.unwrap_or(state.assistant_llm.is_some()) {
        return (None, None);
    }
    let body = serde_json::to_value(body).expect("answers serialize");
    match narrative::narrate(state, key, &body).await {
        Ok(text) => (Some(text), None),
        Err(e) => (None, Some(e)),
    }
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
#[utoipa::path(tag = "assistant", request_body = Option<RangeRequest>, responses((status = 200, body = AnalyzeResponse), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[post("/api/assistant/analyze")]
pub async fn analyze_route(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let (r, range) = range(payload).await?;
    let mut client = state.pool.get().await?;
    let tx = crate::routes::snapshot::snapshot(&mut client).await?;
    let (analysis, raw) = analyze::analyze(&*tx, range).await?;
    tx.commit().await?;
    drop(client);
    Ok(HttpResponse::Ok().json(AnalyzeResponse::new(&state, analysis, raw, r.include_raw_data, r.narrative).await))
}

/// Ranked recommendations (model substitution, allocation sizing, prompt caching, policy adjustment)
/// with savings per period computed from the token mix in the log.
#[utoipa::path(tag = "assistant", request_body = Option<RangeRequest>, responses((status = 200, body = OptimizeResponse), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[post("/api/assistant/optimize")]
pub async fn optimize_route(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let (r, range) = range(payload).await?;
    let mut client = state.pool.get().await?;
    let tx = crate::routes::snapshot::snapshot(&mut client).await?;
    let (recommendations, raw) = optimize::optimize(&*tx, range, &state.allocation_defaults).await?;
    tx.commit().await?;
    drop(client);
    let answer = OptimizeResponse::new(&state, recommendations, raw, r.include_raw_data, r.narrative).await;
    Ok(HttpResponse::Ok().json(answer))
}

/// Every priced model ranked for a described task.
#[utoipa::path(tag = "assistant", request_body = RecommendRequest, responses((status = 200, body = RecommendResponse), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[post("/api/assistant/recommend-model")]
pub async fn recommend_route(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let r: RecommendRequest = body::parse(&body::read(payload, 16 * 1024).await?)?;
    r.validate()?;
    let client = state.pool.get().await?;
    let now = chrono::Utc::now();
    let in_effect = crate::offers::offers(&**client, now).await?;
    drop(client);
    let (recommendations, raw) = recommend::rank(&r, &in_effect);
    Ok(HttpResponse::Ok().json(RecommendResponse::new(&state, recommendations, raw, r.include_raw_data, None).await))
}
