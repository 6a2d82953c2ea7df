//! Recording usage: `POST /api/usage` (one record) and `POST /api/usage/batch` (up to 10,000 in one
//! transaction). Both validate everything before writing anything, and both are idempotent.

use actix_web::http::StatusCode;
use actix_web::{post, web, HttpRequest, HttpResponse};
use budget_events::domain::usage::CanonicalUsageInput;
use budget_events::domain::usage::FieldError;
use budget_events::domain::{RecordUsage, UsageInput};
use budget_events::ledger::{ItemOutcome, ItemStatus, UsageCommand, UsageItem};
use budget_events::store::idempotency::Canonical;
use budget_events::ErrorCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::body;
use crate::error::ApiError;
use crate::request::{self, metadata};
use crate::state::AppState;

/// Largest body of a single-record request.
pub const MAX_RECORD_BODY: usize = 64 * 1024;
/// Largest body of a batch request.
pub const MAX_BATCH_BODY: usize = 16 * 1024 * 1024;
/// Most records in one batch.
pub const MAX_BATCH_RECORDS: usize = 10_000;

#[derive(Serialize, ToSchema)]
pub struct UsageRecordedResponse {
    pub success: bool,
    /// `recorded`, or `duplicate` when an earlier request with the same key recorded it.
    #[schema(value_type = String, example = "recorded")]
    pub status: ItemStatus,
    pub record_id: Option<uuid::Uuid>,
    pub event_id: Option<uuid::Uuid>,
    /// Position of the `UsageRecorded` event in the log.
    pub position: Option<i64>,
    #[schema(value_type = Option<f64>, example = 0.0064)]
    pub cost: Option<budget_events::Money>,
    /// `price_book` (priced with the version in effect at its time), `client` (the request's own cost)
    /// or `unpriced` (no price in effect at its time: cost 0, tokens counted).
    #[schema(value_type = Option<String>)]
    pub cost_source: Option<budget_events::domain::usage::CostSource>,
    pub timestamp: Option<chrono::DateTime<Utc>>,
    /// True when a hard-limited window this record was posted to is beyond its limit with it (this
    /// record took it there, or an earlier one had). It is recorded all the same (it happened); new
    /// reservations and checks in that window are refused.
    pub over_limit: bool,
    /// The hard-limited policies whose windows are beyond their limit with this record.
    pub exceeded: Vec<uuid::Uuid>,
    /// How the record settled against its allocation (`allocation_id`), overage included.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub settlement: Option<budget_events::event::Settlement>,
    /// Why a record that named its context but no allocation settled against none
    /// (`ambiguous_context`: several active allocations share its context and component).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement_skipped: Option<String>,
    /// For an unpriced record: what that means and how to price it, naming the model its name looks
    /// like a typo of when the price book has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl From<ItemOutcome> for UsageRecordedResponse {
    fn from(o: ItemOutcome) -> Self {
        UsageRecordedResponse {
            success: o.status != ItemStatus::Rejected,
            status: o.status,
            record_id: o.record_id,
            event_id: o.event_id,
            position: o.position,
            cost: o.cost,
            cost_source: o.cost_source,
            timestamp: o.timestamp,
            over_limit: !o.exceeded.is_empty(),
            exceeded: o.exceeded,
            settlement: o.settlement,
            settlement_skipped: o.settlement_skipped,
            message: None,
        }
    }
}

/// What an unpriced record's answer says: recorded at $0, and how to price it (a typo of a priced
/// model is the usual cause, so the model it misspells is named when there is one). Unpriced records
/// are the exception an alert asks to fix, so reading the price book for the hint is affordable.
async fn unpriced_message(
    state: &AppState,
    provider: &str,
    model: &str,
    at: DateTime<Utc>,
) -> Result<String, ApiError> {
    let client = state.pool.get().await?;
    let fix = crate::routes::prices::or_else(
        crate::routes::prices::misspelled(&**client, provider, model, at).await?,
        format!("send its `cost`, or price it (`budget prices set {provider} {model} --input … --output …`)"),
    );
    Ok(format!(
        "{provider}/{model} has no price at its time: recorded with cost 0 (its tokens count, cost limits do not see it); {fix}"
    ))
}

/// Record one LLM call.
#[utoipa::path(
    tag = "usage",
    request_body = UsageInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry returns the first outcome")),
    responses(
        (status = 201, description = "Recorded", body = UsageRecordedResponse),
        (status = 200, description = "Already recorded under this idempotency key; nothing new written", body = UsageRecordedResponse),
        (status = 400, description = "Invalid record; nothing written", body = crate::error::ErrorBody),
        (status = 404, description = "No allocation has the record's allocation_id; nothing written", body = crate::error::ErrorBody),
        (status = 409, description = "Idempotency key used for a different request", body = crate::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::error::ErrorBody),
    ), security(("api_key" = ["write"])))]
#[post("/api/usage")]
pub async fn record_one(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    record(state, req, payload).await
}

/// The original Budget's component route: the same as `POST /api/usage`.
#[utoipa::path(
    tag = "usage",
    path = "/api/usage/record",
    request_body = UsageInput,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry returns the first outcome")),
    responses(
        (status = 201, description = "Recorded", body = UsageRecordedResponse),
        (status = 200, description = "Already recorded under this idempotency key; nothing new written", body = UsageRecordedResponse),
        (status = 400, description = "Invalid record; nothing written", body = crate::error::ErrorBody),
        (status = 404, description = "No allocation has the record's allocation_id; nothing written", body = crate::error::ErrorBody),
        (status = 409, description = "Idempotency key used for a different request", body = crate::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::error::ErrorBody),
    ), security(("api_key" = ["write"])))]
#[post("/api/usage/record")]
pub async fn record_one_as_component(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    record(state, req, payload).await
}

async fn record(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(payload, MAX_RECORD_BODY).await?;
    let mut input: UsageInput = body::parse(&bytes)?;
    crate::auth::caller(&req).speak_for(&mut input.component, || "component".into())?;
    // The key's request hash is of the request as sent; the tier the server fills in is not part of it.
    let key = request::keyed_canonical(&req, input.request_id.as_deref(), "usage", &input.canonical())?;
    state.fill_tier(&mut input);
    let record = RecordUsage::validate_with(&input, Utc::now(), state.max_record_cost)
        .map_err(|e| validation_error(e.errors))?;
    let metadata = metadata(&req);
    let command = UsageCommand { items: vec![UsageItem { record, key }], key: None, signer: metadata.key_id, metadata };
    let mut outcome = state.writer.submit(command).await?;
    let item = outcome.items.pop().expect("one outcome per record");
    match item.status {
        ItemStatus::Recorded | ItemStatus::Duplicate => {
            let replayed = item.status == ItemStatus::Duplicate;
            let unpriced = (item.cost_source == Some(budget_events::domain::usage::CostSource::Unpriced))
                .then(|| item.timestamp.unwrap_or_else(Utc::now));
            let mut answer = UsageRecordedResponse::from(item);
            if let Some(at) = unpriced {
                answer.message = Some(unpriced_message(&state, &input.provider, &input.model, at).await?);
            }
            Ok(request::answer(StatusCode::CREATED, replayed).json(answer))
        }
        ItemStatus::Rejected => {
            let error = item.error.expect("a rejection says why");
            match error.code {
                ErrorCode::UnknownAllocation => {
                    Err(ApiError::NotFound(format!("{}; nothing was recorded", error.message)))
                }
                code => Err(ApiError::Conflict { code, message: error.message }),
            }
        }
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 10,000 usage records; each may carry its own `request_id`.
    #[schema(min_items = 1, max_items = 10000)]
    pub records: Vec<UsageInput>,
}

/// [`BatchRequest`] as its idempotency key hashes it: one key, `records`, each record canonical.
#[derive(Serialize)]
pub struct CanonicalBatch<'a> {
    records: Vec<CanonicalUsageInput<'a>>,
}

impl Canonical for CanonicalBatch<'_> {}

impl BatchRequest {
    pub fn canonical(&self) -> CanonicalBatch<'_> {
        let BatchRequest { records } = self;
        CanonicalBatch { records: records.iter().map(UsageInput::canonical).collect() }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BatchItemResponse {
    pub index: usize,
    #[serde(flatten)]
    pub outcome: UsageRecordedResponse,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<budget_events::ledger::OutcomeError>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResponse {
    pub success: bool,
    pub recorded: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub results: Vec<BatchItemResponse>,
}

/// Record many LLM calls in one transaction, with an outcome per record.
#[utoipa::path(
    tag = "usage",
    request_body = BatchRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Key for the whole batch")),
    responses(
        (status = 200, description = "Per-record outcomes", body = BatchResponse),
        (status = 400, description = "A record is invalid; nothing written. `details` lists every problem by index", body = crate::error::ErrorBody),
        (status = 409, description = "Idempotency key used for a different batch", body = crate::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::error::ErrorBody),
    ), security(("api_key" = ["write"])))]
#[post("/api/usage/batch")]
pub async fn record_batch(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(payload, MAX_BATCH_BODY).await?;
    let mut batch: BatchRequest = body::parse(&bytes)?;
    let caller = crate::auth::caller(&req);
    for (index, record) in batch.records.iter_mut().enumerate() {
        caller.speak_for(&mut record.component, || format!("records[{index}].component"))?;
    }
    if batch.records.is_empty() {
        return Err(ApiError::bad_request(ErrorCode::ValidationFailed, "records is empty; send 1 to 10,000 records"));
    }
    if batch.records.len() > MAX_BATCH_RECORDS {
        return Err(ApiError::bad_request(
            ErrorCode::TooManyRecords,
            format!("the batch has {} records; send at most {MAX_BATCH_RECORDS} per request", batch.records.len()),
        ));
    }
    let now = Utc::now();
    let mut items = Vec::with_capacity(batch.records.len());
    let mut problems = Vec::new();
    for (index, input) in batch.records.iter().enumerate() {
        let mut filled = input.clone();
        state.fill_tier(&mut filled);
        match RecordUsage::validate_with(&filled, now, state.max_record_cost) {
            Ok(record) => {
                let key = match &input.request_id {
                    Some(k) => Some(request::key_canonical("usage", k, &input.canonical())?),
                    None => None,
                };
                items.push(UsageItem { record, key });
            }
            Err(e) => problems.extend(e.errors.into_iter().map(|f| (index, f))),
        }
    }
    if !problems.is_empty() {
        let count = problems.len();
        let details: Vec<_> = problems
            .iter()
            .map(|(i, f)| serde_json::json!({"index": i, "field": f.field, "message": f.message}))
            .collect();
        let (first_index, first) = &problems[0];
        return Err(ApiError::BadRequest {
            code: ErrorCode::ValidationFailed,
            message: format!(
                "records[{first_index}].{}: {} ({} in all, listed in details); nothing was recorded",
                first.field,
                first.message,
                budget_events::display::count(count as i64, "problem")
            ),
            details: Some(serde_json::Value::Array(details)),
        });
    }
    let key = request::keyed_canonical(&req, None, "usage-batch", &batch.canonical())?;
    let metadata = metadata(&req);
    let outcome = state.writer.submit(UsageCommand { items, key, signer: metadata.key_id, metadata }).await?;
    let count = |s: ItemStatus| outcome.items.iter().filter(|i| i.status == s).count();
    let response = BatchResponse {
        success: true,
        recorded: count(ItemStatus::Recorded),
        duplicates: count(ItemStatus::Duplicate),
        rejected: count(ItemStatus::Rejected),
        results: outcome
            .items
            .iter()
            .cloned()
            .enumerate()
            .map(|(index, mut item)| BatchItemResponse { index, error: item.error.take(), outcome: item.into() })
            .collect(),
    };
    Ok(request::answer(StatusCode::OK, outcome.replayed).json(response))
}

fn validation_error(errors: Vec<FieldError>) -> ApiError {
    ApiError::validation(errors.into_iter().map(|e| (e.field, e.message)), "nothing was recorded")
}

#[cfg(test)]
mod tests {
    use budget_events::store::idempotency::{canonical_hash, request_hash};

    use super::BatchRequest;

    #[test]
    fn a_batch_hashes_canonically_like_the_generic_path() {
        let batch: BatchRequest = serde_json::from_str(
            r#"{"records": [
                {"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 1, "output_tokens": 2},
                {"provider": "anthropic", "model": "claude-sonnet-4-5", "component": "rhetor", "input_tokens": 3,
                 "output_tokens": 4, "cost": 0.25, "request_id": "r-2", "metadata": {"b": 1, "a": [true]}}
            ]}"#,
        )
        .unwrap();
        assert_eq!(canonical_hash(&batch.canonical()), request_hash(&batch));
    }
}
