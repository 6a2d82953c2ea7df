//! Reading usage: `GET /api/usage` (totals, a series per period, groups), `POST /api/usage/summary`
//! (the shape Tekton clients use) and `GET /api/usage/records` (the records themselves, from the log).

use budget_events::ErrorCode;
use std::collections::BTreeMap;

use actix_web::{get, post, web, HttpResponse};
use budget_events::event::Event;
use budget_events::period::Period;
use budget_events::store::{usage_records, UsageRecordFilter};
use budget_events::Money;
use budget_projections::usage_rollups::{report, split_series, Totals, UsageFilter, DIMENSIONS};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::body;
use crate::error::ApiError;
use crate::query::Query;
use crate::state::AppState;

/// Longest range a usage query may cover.
pub const MAX_DAYS: u32 = 3660;
const DEFAULT_DAYS: u32 = 7;

#[derive(Debug, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct UsageTotals {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    /// A sum of records' costs: exact, and not bound like one amount.
    #[schema(value_type = f64)]
    #[serde(with = "budget_events::money::decimal_json")]
    pub cost: Decimal,
    pub count: i64,
}

impl From<Totals> for UsageTotals {
    fn from(t: Totals) -> Self {
        UsageTotals {
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            total_tokens: t.total_tokens(),
            cost: t.cost,
            count: t.count,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageBucket {
    /// Start of the period (UTC).
    pub start: DateTime<Utc>,
    #[serde(flatten)]
    pub totals: UsageTotals,
    /// With `split_by`: name -> this bucket's totals for that name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parts: Option<BTreeMap<String, UsageTotals>>,
}

type Groups = BTreeMap<String, BTreeMap<String, UsageTotals>>;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// hourly, daily (default), weekly or monthly: the size of each bucket of `series`.
    #[param(schema_with = budget_events::openapi::optional_usage_period)]
    pub period: Option<String>,
    /// How many days back, counting today (default 7).
    #[param(schema_with = crate::openapi::schemas::days)]
    // Read as any whole number, so that one out of range is refused with the range.
    pub days: Option<i64>,
    pub provider: Option<String>,
    /// A model: its dated snapshots and `provider/` form included (gpt-4o also lists gpt-4o-2024-08-06
    /// and openai/gpt-4o), as a limit on the model counts them.
    pub model: Option<String>,
    pub component: Option<String>,
    pub task_type: Option<String>,
    /// Only this end user's usage.
    pub user: Option<String>,
    /// Comma-separated dimensions to group by: provider, model, component, task_type, user (default all).
    #[param(schema_with = crate::openapi::schemas::dimensions)]
    pub group_by: Option<String>,
    /// One dimension (provider, model, component, task_type or user) to split each bucket of `series` by:
    /// every bucket then has `parts`, name -> totals.
    #[param(schema_with = crate::openapi::schemas::dimension)]
    pub split_by: Option<String>,
    /// Inclusive, rounded down to the hour: with it, the range is `start_time` to `end_time` (or now)
    /// instead of the last `days`.
    pub start_time: Option<DateTime<Utc>>,
    /// Exclusive, rounded up to the hour (default now); only with `start_time`.
    pub end_time: Option<DateTime<Utc>>,
    /// Answer once the usage rollups have applied this log position (a write's answer), up to 2 s.
    pub min_position: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageResponse {
    #[schema(value_type = String)]
    pub period: Period,
    pub days: u32,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub totals: UsageTotals,
    /// One entry per period that had usage, oldest first.
    pub series: Vec<UsageBucket>,
    /// dimension -> name -> totals.
    #[schema(value_type = Object)]
    pub groups: Groups,
}

/// Usage over the last N days: totals, a series per period, and groups.
#[utoipa::path(
    tag = "usage",
    params(UsageQuery),
    responses(
        (status = 200, body = UsageResponse),
        (status = 400, description = "Bad parameter", body = crate::error::ErrorBody),
    ), security(("api_key" = ["read"])))]
#[get("/api/usage")]
pub async fn usage(state: web::Data<AppState>, query: Query<UsageQuery>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let period = parse_period(q.period.as_deref().unwrap_or("daily"))?;
    let group_by = parse_group_by(q.group_by.as_deref())?;
    let split_by =
        q.split_by.as_deref().filter(|d| !d.trim().is_empty()).map(|d| parse_group_by(Some(d))).transpose()?;
    let split_by = match split_by.as_deref() {
        None => None,
        Some([one]) => Some(*one),
        Some(_) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("split_by takes one dimension: one of {}", DIMENSIONS.join(", ")),
            ))
        }
    };
    let (start, end, days) = range(&q, period)?;
    crate::consistency::wait_for(&state, &["usage_rollups"], q.min_position).await?;
    let filter = UsageFilter {
        start: Some(start),
        end: q.start_time.is_some().then_some(end),
        provider: non_empty(q.provider),
        model: non_empty(q.model),
        component: non_empty(q.component),
        task_type: non_empty(q.task_type),
        user: non_empty(q.user),
    };
    let mut client = state.pool.get().await?;
    let tx = crate::routes::snapshot::snapshot(&mut client).await?;
    let r = report(&*tx, &filter, period, &group_by).await?;
    let mut parts: BTreeMap<DateTime<Utc>, BTreeMap<String, UsageTotals>> = BTreeMap::new();
    if let Some(dimension) = split_by {
        for (start, name, totals) in split_series(&*tx, &filter, period, dimension).await? {
            parts.entry(start).or_default().insert(name, totals.into());
        }
    }
    tx.commit().await?;
    let series = r
        .series
        .into_iter()
        .map(|b| UsageBucket {
            parts: split_by.map(|_| parts.remove(&b.start).unwrap_or_default()),
            start: b.start,
            totals: b.totals.into(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(UsageResponse {
        period,
        days,
        start_time: start,
        end_time: end,
        totals: r.totals.into(),
        series,
        groups: groups(r.groups),
    }))
}

#[derive(Debug, Deserialize, Serialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SummaryRequest {
    /// hourly, daily, weekly or monthly. Without start_time, the summary covers the current period.
    #[schema(schema_with = budget_events::openapi::usage_period)]
    #[param(schema_with = budget_events::openapi::usage_period)]
    pub period: String,
    pub provider: Option<String>,
    pub component: Option<String>,
    /// A model: its dated snapshots and `provider/` form included (gpt-4o also lists gpt-4o-2024-08-06
    /// and openai/gpt-4o), as a limit on the model counts them.
    pub model: Option<String>,
    pub task_type: Option<String>,
    /// Only this end user's usage.
    #[serde(default)]
    pub user: Option<String>,
    /// Inclusive; rounded down to the hour.
    pub start_time: Option<DateTime<Utc>>,
    /// Exclusive; rounded up to the hour. Default: now.
    pub end_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryResponse {
    pub period: String,
    pub total_input_tokens: i64,
    pub total_output_tokens: i64,
    pub total_tokens: i64,
    #[schema(value_type = f64)]
    #[serde(with = "budget_events::money::decimal_json")]
    pub total_cost: Decimal,
    pub count: i64,
    /// The hour-aligned range the figures cover.
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    /// provider|model|component|task_type -> name -> totals.
    #[schema(value_type = Object)]
    pub groups: Groups,
}

/// Usage summary for a period or a time range (the Tekton client shape).
#[utoipa::path(
    tag = "usage",
    request_body = SummaryRequest,
    responses(
        (status = 200, body = SummaryResponse),
        (status = 400, description = "Bad request", body = crate::error::ErrorBody),
    ), security(("api_key" = ["read"])))]
#[post("/api/usage/summary")]
pub async fn summary(state: web::Data<AppState>, payload: web::Payload) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(payload, 16 * 1024).await?;
    summarize(&state, body::parse(&bytes)?).await
}

/// The same as `POST /api/usage/summary`, with the fields as query parameters.
#[utoipa::path(
    tag = "usage",
    params(SummaryRequest),
    responses(
        (status = 200, body = SummaryResponse),
        (status = 400, description = "Bad request", body = crate::error::ErrorBody),
    ), security(("api_key" = ["read"])))]
#[get("/api/usage/summary")]
pub async fn summary_query(state: web::Data<AppState>, query: Query<SummaryRequest>) -> Result<HttpResponse, ApiError> {
    summarize(&state, query.into_inner()).await
}

async fn summarize(state: &AppState, req: SummaryRequest) -> Result<HttpResponse, ApiError> {
    let period = parse_period(&req.period)?;
    let now = Utc::now();
    let start = Period::Hourly.start_of(req.start_time.unwrap_or_else(|| period.start_of(now)));
    let end = ceil_hour(req.end_time.unwrap_or(now));
    if start >= end {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidTimeRange,
            format!("start_time {start} is not before end_time {end}; send an earlier start_time"),
        ));
    }
    let filter = UsageFilter {
        start: Some(start),
        end: Some(end),
        provider: non_empty(req.provider),
        model: non_empty(req.model),
        component: non_empty(req.component),
        task_type: non_empty(req.task_type),
        user: non_empty(req.user),
    };
    let mut client = state.pool.get().await?;
    let tx = crate::routes::snapshot::snapshot(&mut client).await?;
    let r = report(&*tx, &filter, period, &DIMENSIONS).await?;
    tx.commit().await?;
    Ok(HttpResponse::Ok().json(SummaryResponse {
        period: period.to_string(),
        total_input_tokens: r.totals.input_tokens,
        total_output_tokens: r.totals.output_tokens,
        total_tokens: r.totals.total_tokens(),
        total_cost: r.totals.cost,
        count: r.totals.count,
        start_time: start,
        end_time: end,
        groups: groups(r.groups),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub component: Option<String>,
    pub task_type: Option<String>,
    pub context_id: Option<String>,
    /// Only records older than this log position (`next_before` of the previous page).
    pub before: Option<i64>,
    /// Page size, 1 to 1000 (default 50).
    #[param(schema_with = crate::openapi::schemas::limit_1000)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRecordView {
    pub position: i64,
    pub record_id: uuid::Uuid,
    pub event_id: uuid::Uuid,
    pub provider: String,
    pub model: String,
    pub component: String,
    pub task_type: String,
    pub context_id: Option<String>,
    pub session_id: Option<String>,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    #[schema(value_type = f64)]
    pub cost: Money,
    #[schema(value_type = String)]
    pub cost_source: budget_events::domain::usage::CostSource,
    /// When the call happened.
    pub timestamp: DateTime<Utc>,
    /// When the record was written to the log.
    pub recorded_at: DateTime<Utc>,
    pub idempotency_key: Option<String>,
    /// The end user the call was made for.
    pub user_id: Option<String>,
    pub operation_id: Option<String>,
    /// The caller's JSON object, as given.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordsResponse {
    pub records: Vec<UsageRecordView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<i64>,
}

/// Usage records from the log, newest first, paged.
#[utoipa::path(
    tag = "usage",
    params(RecordsQuery),
    responses((status = 200, body = RecordsResponse), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/usage/records")]
pub async fn records(state: web::Data<AppState>, query: Query<RecordsQuery>) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(ErrorCode::InvalidParameter, format!("limit is {limit}; use 1 to 1000")));
    }
    let filter = UsageRecordFilter {
        provider: non_empty(q.provider),
        model: non_empty(q.model),
        component: non_empty(q.component),
        task_type: non_empty(q.task_type),
        context_id: non_empty(q.context_id),
        before: q.before,
        limit,
    };
    let client = state.pool.get().await?;
    let events = usage_records(&**client, &filter).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let next_before = (events.len() as i64 == limit).then(|| events.last().map(|e| e.position)).flatten();
    let records = events
        .into_iter()
        .filter_map(|e| {
            let Event::UsageRecorded(u) = e.event else { return None };
            Some(UsageRecordView {
                position: e.position,
                record_id: u.record_id,
                event_id: e.event_id,
                total_tokens: u.total_tokens(),
                provider: u.provider.into(),
                model: u.model.into(),
                component: u.component.into(),
                task_type: u.task_type.into(),
                context_id: u.context_id.map(Into::into),
                session_id: u.session_id.map(Into::into),
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                cost: u.cost,
                cost_source: u.cost_source,
                timestamp: u.occurred_at,
                recorded_at: e.recorded_at,
                idempotency_key: e.metadata.and_then(|m| m.idempotency_key),
                user_id: u.user_id.map(Into::into),
                operation_id: u.operation_id.map(Into::into),
                metadata: u.metadata,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(RecordsResponse { records, next_before }))
}

/// The range a usage query covers: `start_time` to `end_time` (hour-aligned), or the last `days`
/// (the default 7), with its length in days.
fn range(q: &UsageQuery, period: Period) -> Result<(DateTime<Utc>, DateTime<Utc>, u32), ApiError> {
    match q.start_time {
        Some(start_time) => {
            if q.days.is_some() {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidParameter,
                    "give either days or start_time (with end_time), not both",
                ));
            }
            let start = Period::Hourly.start_of(start_time);
            let end = ceil_hour(q.end_time.unwrap_or_else(Utc::now));
            let days = ((end - start).num_hours() + 23) / 24;
            if end <= start || days > i64::from(MAX_DAYS) {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidParameter,
                    format!(
                        "start_time {start_time} to end_time {end} is not a range of 1 hour to {MAX_DAYS} days; put start_time before end_time"
                    ),
                ));
            }
            Ok((start, end, days as u32))
        }
        None => {
            if q.end_time.is_some() {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidParameter,
                    "end_time needs start_time; give both, or days",
                ));
            }
            let days = q.days.unwrap_or(DEFAULT_DAYS.into());
            let Some(days) = u32::try_from(days).ok().filter(|d| (1..=MAX_DAYS).contains(d)) else {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidParameter,
                    format!("days is {days}; use 1 to {MAX_DAYS}"),
                ));
            };
            let (start, end) = period.range_for_days(Utc::now(), days);
            Ok((start, end, days))
        }
    }
}

fn parse_period(s: &str) -> Result<Period, ApiError> {
    s.parse().map_err(|e: budget_events::period::UnknownPeriod| {
        ApiError::bad_request(ErrorCode::InvalidPeriod, e.to_string())
    })
}

fn parse_group_by(s: Option<&str>) -> Result<Vec<&'static str>, ApiError> {
    let Some(s) = s.filter(|s| !s.trim().is_empty()) else {
        return Ok(DIMENSIONS.to_vec());
    };
    s.split(',')
        .map(|d| {
            DIMENSIONS.iter().copied().find(|known| *known == d.trim()).ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidParameter,
                    format!("group_by `{}` is not a dimension; use {}", d.trim(), DIMENSIONS.join(", ")),
                )
            })
        })
        .collect()
}

fn groups(g: BTreeMap<String, BTreeMap<String, Totals>>) -> Groups {
    g.into_iter().map(|(d, names)| (d, names.into_iter().map(|(n, t)| (n, t.into())).collect())).collect()
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn ceil_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = Period::Hourly.start_of(t);
    if floor == t {
        t
    } else {
        floor + Duration::hours(1)
    }
}
