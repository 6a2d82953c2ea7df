//! Re-pricing: correct the cost of records priced with a version other than the one now in effect at
//! their time (a price set late, a backdated correction, a model that was unpriced when used).
//!
//! Each correction is a `UsageRepriced` event; the records' own events stay as they were.

use actix_web::{post, web, HttpRequest, HttpResponse};
use budget_events::event::UsageRepriced;
use budget_events::ledger::RepriceCommand;
use budget_events::money::decimal_json;
use budget_events::store::repricing::{self, RepriceSelection};
use budget_events::ErrorCode;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::body;
use crate::error::ApiError;
use crate::request::metadata;
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RepriceRequest {
    pub provider: String,
    /// The model name records were sent with or resolved to (`gpt-4o` also selects `gpt-4o-2024-08-06`).
    pub model: String,
    /// Records that occurred at or after this time.
    pub since: DateTime<Utc>,
    /// …and before this one (default: no end).
    pub until: Option<DateTime<Utc>>,
    /// Show the corrections without appending them.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct RepriceResponse {
    pub dry_run: bool,
    /// Records corrected (or, for a dry run, that would be).
    pub records: usize,
    /// The sum of the corrections: what the selection's spend moves by.
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub total_delta: Decimal,
    #[schema(value_type = Vec<Object>)]
    pub corrections: Vec<UsageRepriced>,
    /// Records of the selection that stay unpriced: no price of their model was in effect at their
    /// time. A price takes effect from its `effective_from`; set one from `first_unpriced_at` (or
    /// earlier) and re-price again to give them a cost.
    #[serde(default)]
    pub unpriced_records: usize,
    /// The oldest of those records' time (absent when there are none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_unpriced_at: Option<DateTime<Utc>>,
    /// The write's log position, for `min_position` on reads of projections (absent on a replay or a
    /// change that wrote nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

/// Re-price records priced with an older version: appends one correction per record; rollups and
/// budget accounts follow. Records that carry the client's own cost are left as they are.
#[utoipa::path(tag = "prices", request_body = RepriceRequest, responses((status = 200, body = RepriceResponse), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["admin"])))]
#[post("/api/prices/reprice")]
pub async fn reprice(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let r: RepriceRequest = body::parse(&body::read(payload, 16 * 1024).await?)?;
    if let Some(reason) = crate::query::backwards(Some(r.since), r.until) {
        return Err(ApiError::bad_request(ErrorCode::ValidationFailed, reason));
    }
    let selection =
        RepriceSelection { provider: state.provider(&r.provider), model: r.model, since: r.since, until: r.until };
    let (corrections, unpriced, position) = if r.dry_run {
        let client = state.pool.get().await?;
        let plan = repricing::plan(&**client, &selection).await.map_err(|e| ApiError::Internal(e.to_string()))?;
        (plan.corrections.into_iter().map(|(c, _)| c).collect::<Vec<_>>(), plan.unpriced, None)
    } else {
        let (outcome, position) =
            state.writer.submit_at(RepriceCommand { selection, metadata: metadata(&req) }).await?;
        (outcome.corrections, outcome.unpriced, position)
    };
    Ok(HttpResponse::Ok().json(RepriceResponse {
        dry_run: r.dry_run,
        records: corrections.len(),
        total_delta: corrections.iter().map(|c| c.delta).sum(),
        corrections,
        unpriced_records: unpriced.records,
        first_unpriced_at: unpriced.first_occurred_at,
        position,
    }))
}
