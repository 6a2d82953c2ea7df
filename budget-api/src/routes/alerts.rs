//! Alerts: list (open ones by default), read one, acknowledge (an event, so it survives a rebuild).

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use budget_events::domain::price::{self, PriceVersion};
use budget_events::ledger::AcknowledgeCommand;
use budget_events::ErrorCode;
use budget_projections::alerts::{self, AlertFilter, AlertRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::body;
use crate::error::ApiError;
use crate::query::Query;
use crate::request::metadata;
use crate::routes::policies::parse_id;
use crate::state::AppState;

/// Every alert type the alerts projection raises.
pub const ALERT_TYPES: [&str; 8] = [
    "cost_limit_approaching",
    "cost_limit_exceeded",
    "token_limit_approaching",
    "token_limit_exceeded",
    "budget_refused",
    "overage",
    "unpriced_model",
    "spend_spike",
];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// info, warning or error.
    #[param(schema_with = crate::openapi::schemas::severity)]
    pub severity: Option<String>,
    /// One of the alert types (cost_limit_exceeded, budget_refused, …).
    #[serde(rename = "type")]
    #[param(schema_with = crate::openapi::schemas::alert_type)]
    pub alert_type: Option<String>,
    pub budget_id: Option<uuid::Uuid>,
    /// false (default): open alerts; true: acknowledged ones.
    pub acknowledged: Option<bool>,
    /// true: acknowledged and open alike.
    pub all: Option<bool>,
    /// Page size, 1 to 500 (default 100).
    #[param(schema_with = crate::openapi::schemas::limit_500)]
    pub limit: Option<i64>,
    #[param(schema_with = crate::openapi::schemas::offset)]
    pub offset: Option<i64>,
    /// Answer once the alerts projection has applied this log position (a write's answer), up to 2 s.
    pub min_position: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    #[schema(value_type = Vec<Object>)]
    pub alerts: Vec<AlertView>,
    pub next_offset: Option<i64>,
}

/// An alert as the API shows it: the row the alerts projection keeps, and what the price book of now
/// adds to it. The projection folds the log, so its message cannot read today's price book: an
/// `unpriced_model` alert for `gtp-4o` advised pricing the typo at a price to be found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub alert: AlertRow,
    /// For an `unpriced_model` alert whose name looks like a typo of a priced model: that model, and
    /// the commands that give the records already counted its price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// `rows` with their hints; the price book is read once, and only when some row is an unpriced model's.
async fn with_hints(
    client: &impl tokio_postgres::GenericClient,
    rows: Vec<AlertRow>,
) -> Result<Vec<AlertView>, ApiError> {
    let unpriced: Vec<(&str, &str)> = rows.iter().filter_map(unpriced_model).collect();
    let (book, versions) = if unpriced.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let keys = price::candidate_keys(unpriced.iter().copied());
        (
            budget_events::store::prices::in_effect(client, Utc::now()).await?,
            budget_events::store::prices::versions_for(client, &keys).await?,
        )
    };
    Ok(rows.into_iter().map(|alert| AlertView { hint: unpriced_hint(&alert, &book, &versions), alert }).collect())
}

/// The provider and model an `unpriced_model` alert is about.
fn unpriced_model(alert: &AlertRow) -> Option<(&str, &str)> {
    let field = |name: &str| alert.details.get(name).and_then(|v| v.as_str());
    (alert.alert_type == "unpriced_model").then_some(())?;
    Some((field("provider")?, field("model")?))
}

/// What to do about an unpriced model's records now, with the commands filled in with a price: the
/// model has been priced since its first records (an upgrade's `budget prices update`, a price set
/// effective now), so those before the price get it from their time; or its name looks like a typo of
/// a priced model ("did you mean openai/gpt-4o?"), whose price the misspelled name's records get.
/// None when the records have a price from their first or the book has nothing like the name.
fn unpriced_hint(alert: &AlertRow, book: &[PriceVersion], versions: &[PriceVersion]) -> Option<String> {
    let (provider, model) = unpriced_model(alert)?;
    let since = alert.details.get("first_record_at").and_then(|v| v.as_str())?;
    let first: DateTime<Utc> = since.parse().ok()?;
    let reprice = format!("`budget prices reprice --provider {provider} --model {model} --since {since}`");
    if let Some((now, name)) = price::resolve(versions, provider, model, Utc::now()) {
        if price::resolve(versions, provider, model, first).is_some() {
            return None;
        }
        let from = versions
            .iter()
            .filter(|v| v.spec.provider == provider && v.spec.model == name && v.effective_from > first)
            .map(|v| v.effective_from)
            .min()
            .unwrap_or(now.effective_from);
        return Some(format!(
            "{provider}/{model} has a price since {}; give the records before it that price: `budget prices \
             set {provider} {name} {} --effective-from {since}`, then {reprice}",
            from.format("%Y-%m-%d %H:%M:%S UTC"),
            price_args(&now.spec),
        ));
    }
    let names: Vec<(&str, &str)> = book.iter().map(|v| (v.spec.provider.as_str(), v.spec.model.as_str())).collect();
    let near = price::did_you_mean(provider, model, &names)?;
    let meant = book.iter().find(|v| format!("{}/{}", v.spec.provider, v.spec.model) == near)?;
    Some(format!(
        "did you mean {near}? If so, correct the name where the calls are made, and give the records already \
         counted its price: `budget prices set {provider} {model} {} --effective-from {since}`, then {reprice}",
        price_args(&meant.spec),
    ))
}

/// A price as `budget prices set` takes it, per 1M tokens.
fn price_args(spec: &price::PriceSpec) -> String {
    let per_1m = |d: rust_decimal::Decimal| (d * rust_decimal::Decimal::from(1_000_000)).normalize();
    let mut args = format!("--input {} --output {}", per_1m(spec.input_per_token), per_1m(spec.output_per_token));
    if let Some(cached) = spec.cached_input_per_token {
        args.push_str(&format!(" --cached-input {}", per_1m(cached)));
    }
    args
}

/// Alerts, newest first; unacknowledged ones unless `acknowledged` or `all` say otherwise.
#[utoipa::path(tag = "alerts", params(AlertQuery), responses((status = 200, body = AlertList), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/alerts")]
pub async fn list(state: web::Data<AppState>, q: Query<AlertQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let (limit, offset) = super::paging::page(q.limit, q.offset, 100, 500)?;
    if let Some(s) = q.severity.as_deref().filter(|s| !["info", "warning", "error"].contains(s)) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidParameter,
            format!("severity `{s}` is not info, warning or error"),
        ));
    }
    if let Some(t) = q.alert_type.as_deref().filter(|t| !ALERT_TYPES.contains(t)) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidParameter,
            format!("type `{t}` is not an alert type; use one of {}", ALERT_TYPES.join(", ")),
        ));
    }
    let acknowledged = if q.all == Some(true) { None } else { Some(q.acknowledged.unwrap_or(false)) };
    let filter = AlertFilter {
        severity: q.severity,
        alert_type: q.alert_type,
        budget_id: q.budget_id,
        acknowledged,
        limit,
        offset,
    };
    crate::consistency::wait_for(&state, &["alerts"], q.min_position).await?;
    let client = state.pool.get().await?;
    let found = alerts::list(&**client, &filter).await?;
    let next_offset = (found.len() as i64 == limit).then_some(offset + limit);
    let alerts = with_hints(&**client, found).await?;
    Ok(HttpResponse::Ok().json(AlertList { alerts, next_offset }))
}

async fn require(state: &AppState, raw: &str) -> Result<AlertRow, ApiError> {
    let id = parse_id("alert", raw)?;
    let client = state.pool.get().await?;
    alerts::get(&**client, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no alert has id {id}; list them with GET /api/alerts?all=true")))
}

/// One alert.
#[utoipa::path(tag = "alerts", responses((status = 200, body = Object), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/alerts/{alert_id}")]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let alert = require(&state, &path).await?;
    let client = state.pool.get().await?;
    let mut one = with_hints(&**client, vec![alert]).await?;
    Ok(HttpResponse::Ok().json(one.pop().expect("one row in, one view out")))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeRequest {
    /// Who acknowledges (shown with the alert).
    #[serde(alias = "acknowledged_by")]
    #[schema(schema_with = crate::openapi::schemas::acknowledger)]
    pub by: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Acknowledged {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub alert: AlertRow,
    /// True when it had been acknowledged before; the first acknowledgement stands.
    pub already_acknowledged: bool,
    /// The acknowledgement's log position (`position` is the alert's own): pass it as `min_position`
    /// to read the alerts with it applied. Absent when it had been acknowledged before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledgement_position: Option<i64>,
}

/// Acknowledge an alert (once: a second acknowledgement returns the first).
#[utoipa::path(tag = "alerts", request_body = AcknowledgeRequest, responses((status = 200, body = Acknowledged), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["admin"])))]
#[post("/api/alerts/{alert_id}/acknowledge")]
pub async fn acknowledge(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(payload, 4096).await?;
    let request: AcknowledgeRequest =
        if bytes.iter().all(u8::is_ascii_whitespace) { AcknowledgeRequest::default() } else { body::parse(&bytes)? };
    let bad = |b: &str| b.trim().is_empty() || b.chars().count() > 200 || b.chars().any(char::is_control);
    if let Some(by) = request.by.as_deref().filter(|b| bad(b)) {
        return Err(ApiError::bad_request(
            ErrorCode::ValidationFailed,
            format!("by `{by}` must be 1 to 200 printable characters"),
        ));
    }
    let mut alert = require(&state, &path).await?;
    let by = request.by.or_else(|| req.headers().get("X-Budget-Actor").and_then(|v| v.to_str().ok()).map(String::from));
    let command = AcknowledgeCommand { alert_id: alert.id, by, metadata: metadata(&req) };
    let (outcome, position) = state.writer.submit_at(command).await?;
    // The projection applies the event shortly; the answer shows it now.
    alert.acknowledged = true;
    alert.acknowledged_by = outcome.acknowledgement.acknowledged_by;
    alert.acknowledged_at = Some(outcome.acknowledgement.acknowledged_at);
    Ok(HttpResponse::Ok().json(Acknowledged {
        alert,
        already_acknowledged: outcome.already,
        acknowledgement_position: position,
    }))
}
