//! Explaining the numbers: the events behind a selection (`GET /api/events`), how a policy window's
//! figures were reached (`GET /api/policies/{id}/explain`), and usage records for finance
//! (`GET /api/export`, streamed).

use actix_web::{get, web, HttpResponse};
use budget_events::audit::{self, Contribution};
use budget_events::domain::policy::Account;
use budget_events::event::Event;
use budget_events::money::decimal_json;
use budget_events::store::{self, EventFilter};
use budget_events::ErrorCode;
use budget_events::RecordedEvent;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use budget_events::money::json_number as number;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;
use crate::query::Query;
use crate::routes::policies::parse_id;
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Events after this log position (the previous page's `next_after`).
    pub after: Option<i64>,
    /// Event types, comma-separated (UsageRecorded, PolicySet, AllocationCreated…).
    #[serde(rename = "type")]
    #[param(schema_with = crate::openapi::schemas::event_types)]
    pub event_type: Option<String>,
    pub provider: Option<String>,
    /// A model: its dated snapshots and `provider/` form included (gpt-4o also lists gpt-4o-2024-08-06
    /// and openai/gpt-4o), as a limit on the model counts them.
    pub model: Option<String>,
    pub component: Option<String>,
    pub context_id: Option<String>,
    /// A budget's id or name: its events and usage posted to its policies.
    pub budget: Option<String>,
    pub policy_id: Option<Uuid>,
    /// When the call happened (usage) or was recorded (other events): from…
    pub since: Option<DateTime<Utc>>,
    /// …to, exclusive.
    pub until: Option<DateTime<Utc>>,
    /// Page size, 1 to 5000 (default 500).
    #[param(schema_with = crate::openapi::schemas::limit_5000)]
    pub limit: Option<i64>,
}

/// One event as the audit shows it: the event whole, and the figures a person looks for.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub event_type: std::borrow::Cow<'static, str>,
    pub stream_id: String,
    pub stream_version: i64,
    pub event_id: Uuid,
    /// What the event is about, in a few words (`openai/gpt-4o by codex for task-123`).
    pub summary: String,
    /// The API key that wrote it (its name), or `X-Budget-Actor` when the service ran without keys.
    pub actor: Option<String>,
    pub key_id: Option<Uuid>,
    /// `X-Budget-Actor` sent with a key.
    pub on_behalf_of: Option<String>,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
    /// Tokens of a usage record.
    pub tokens: Option<i64>,
    /// What the event adds to spend: a record's cost, a correction's delta.
    #[serde(with = "budget_events::money::optional_decimal_json")]
    #[schema(value_type = Option<f64>)]
    pub cost: Option<Decimal>,
    pub price_version: Option<Uuid>,
    #[schema(value_type = Object)]
    pub payload: Value,
}

impl From<&RecordedEvent> for EventView {
    fn from(e: &RecordedEvent) -> Self {
        let (tokens, cost, price_version) = match &e.event {
            Event::UsageRecorded(u) => (Some(u.total_tokens()), Some(u.cost.amount()), u.price_version),
            Event::UsageRepriced(c) => (Some(0), Some(c.delta), Some(c.price_version)),
            _ => (None, None, None),
        };
        // The audit reads the log with its metadata; only the reads that fold it leave it out.
        let metadata = e.metadata.clone().unwrap_or_default();
        EventView {
            position: e.position,
            recorded_at: e.recorded_at,
            event_type: e.event.event_type().into(),
            stream_id: e.stream_id.clone(),
            stream_version: e.stream_version,
            event_id: e.event_id,
            summary: e.event.summary(),
            actor: metadata.actor,
            key_id: metadata.key_id,
            on_behalf_of: metadata.on_behalf_of,
            request_id: metadata.request_id,
            idempotency_key: metadata.idempotency_key,
            tokens,
            cost,
            price_version,
            payload: e.event.payload(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// The log, oldest first, filtered and paged by position.
#[utoipa::path(tag = "audit", params(EventQuery), responses((status = 200, body = EventPage), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/events")]
pub async fn events(state: web::Data<AppState>, q: Query<EventQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = q.limit.unwrap_or(500);
    if !(1..=5000).contains(&limit) {
        return Err(ApiError::bad_request(ErrorCode::InvalidParameter, format!("limit is {limit}; use 1 to 5000")));
    }
    if let Some(reason) = crate::query::backwards(q.since, q.until) {
        return Err(ApiError::bad_request(ErrorCode::InvalidParameter, reason));
    }
    let event_types: Vec<String> = q
        .event_type
        .as_deref()
        .map(|t| t.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    for t in &event_types {
        if !budget_events::event::EVENT_TYPES.contains(&t.as_str()) {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("type `{t}` is not an event type; use one of {}", budget_events::event::EVENT_TYPES.join(", ")),
            ));
        }
    }
    let client = state.pool.get().await?;
    let (mut policy_ids, mut budget_id) = (q.policy_id.into_iter().collect::<Vec<_>>(), None);
    if let Some(budget) = &q.budget {
        let row = match budget.parse::<Uuid>() {
            Ok(id) => budget_events::store::policies::budget_by_id(&**client, id).await?,
            Err(_) => budget_events::store::policies::budget_by_name(&**client, budget).await?,
        };
        let row = row
            .ok_or_else(|| ApiError::NotFound(format!("no budget `{budget}`; list them with `budget budgets list`")))?;
        budget_id = Some(row.budget_id);
        let all = budget_events::store::policies::list(&**client).await?;
        policy_ids.extend(all.iter().filter(|r| r.policy.budget_id == row.budget_id).map(|r| r.policy.id));
    }
    let filter = EventFilter {
        after: q.after.unwrap_or(0),
        event_types,
        provider: q.provider,
        model: q.model,
        component: q.component,
        context_id: q.context_id,
        policy_ids,
        budget_id,
        since: q.since,
        until: q.until,
        limit,
    };
    let found = store::events(&**client, &filter).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let next_after = (found.len() as i64 == limit).then(|| found.last().map(|e| e.position)).flatten();
    Ok(HttpResponse::Ok().json(EventPage { events: found.iter().map(EventView::from).collect(), next_after }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    /// The window's key (its start for calendar periods, `task:ID` or `session:ID`); default: the
    /// window containing now.
    pub window: Option<String>,
    /// `true`: list each opening balance's usage records and reservations (`openings`).
    pub opening: Option<bool>,
}

/// What an opening balance was made of: the balance a policy's window opened with when the policy
/// started counting (created, or enabled again) at log position `position`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Opening {
    pub position: i64,
    /// The usage records logged before it whose time and scope fall in the window, and their
    /// corrections, oldest first: their costs and tokens sum to the balance's used figures.
    pub usage: Vec<OpeningUsage>,
    /// The active reservations it took over (made in the window before the policy counted).
    pub allocations: Vec<Uuid>,
}

/// One usage event of an opening balance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OpeningUsage {
    pub position: i64,
    /// `UsageRecorded`, or `UsageRepriced` (its `cost` is the correction, its `tokens` 0).
    pub event_type: String,
    pub record_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub provider: String,
    pub model: String,
    pub component: String,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub cost: Decimal,
    pub tokens: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Figures {
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub posted_cost: Decimal,
    pub posted_tokens: i64,
    pub records: i64,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub pending_cost: Decimal,
    pub pending_tokens: i64,
}

/// `used $X / N tokens in R records (1 record), reserved $Y / M tokens`, as `explain` and `replay` print them.
impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use budget_events::display::{count, dollars, thousands};
        write!(
            f,
            "used {} / {} tokens in {}, reserved {} / {} tokens",
            dollars(self.posted_cost),
            thousands(self.posted_tokens),
            count(self.records, "record"),
            dollars(self.pending_cost),
            thousands(self.pending_tokens)
        )
    }
}

impl From<Account> for Figures {
    fn from(a: Account) -> Self {
        Figures {
            posted_cost: a.posted_cost.normalize(),
            posted_tokens: a.posted_tokens,
            records: a.records,
            pending_cost: a.pending_cost.normalize(),
            pending_tokens: a.pending_tokens,
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Explanation {
    pub policy_id: Uuid,
    pub window: String,
    /// Every event that moved the window's account, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub contributions: Vec<Contribution>,
    /// The sum of the contributions.
    pub folded: Figures,
    /// The account as the write path keeps it.
    pub account: Figures,
    /// Whether the two agree (they always should).
    pub matches: bool,
    /// With `opening=true`: what each opening balance among the contributions was made of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openings: Option<Vec<Opening>>,
}

/// How a policy window's used and reserved figures were reached: the events that sum to them, and the
/// check that the sum equals the account.
#[utoipa::path(tag = "audit", params(ExplainQuery), responses((status = 200, body = Explanation), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/policies/{policy_id}/explain")]
pub async fn explain(
    state: web::Data<AppState>,
    path: web::Path<String>,
    q: Query<ExplainQuery>,
) -> Result<HttpResponse, ApiError> {
    let policy_id = parse_id("policy", &path)?;
    // The log and the account are read in one snapshot: a fold that stops at the log's horizon could
    // miss an event whose effect on the account it then compares against (a false "does not match"
    // while another database's transaction held the horizon back).
    let mut client = state.pool.get().await?;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let row =
        budget_events::store::policies::list(&*tx).await?.into_iter().find(|r| r.policy.id == policy_id).ok_or_else(
            || ApiError::NotFound(format!("no policy has id {policy_id}; list them with GET /api/policies")),
        )?;
    let q = q.into_inner();
    let window = match q.window {
        Some(w) => w,
        None => match row.policy.calendar_window_at(Utc::now()) {
            Some(w) => w.key,
            None => {
                return Err(ApiError::bad_request(ErrorCode::ValidationFailed,
                    "a per-session or per-task policy has a window per session or task; give --window task:ID or session:ID",
                ))
            }
        },
    };
    let key = (policy_id, window.clone());
    let mut contributions = Vec::new();
    let mut opened = Vec::new();
    let fold = audit::fold_snapshot_each(&*tx, |e, touched| {
        let before = contributions.len();
        contributions.extend(touched.iter().filter(|(k, _)| *k == key).map(|(_, c)| c.clone()));
        if let (Event::PolicySet(set), true) = (&e.event, contributions.len() > before) {
            opened.push((e.position, set.clone()));
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let folded = fold.accounts.get(&key).copied().unwrap_or_default();
    let stored = budget_events::store::policies::accounts(&*tx, std::slice::from_ref(&key))
        .await?
        .first()
        .map(|a| a.account)
        .unwrap_or_default();
    let openings = match q.opening {
        Some(true) => {
            let mut openings = Vec::with_capacity(opened.len());
            for (position, set) in &opened {
                openings.push(opening(&*tx, *position, set).await?);
            }
            Some(openings)
        }
        _ => None,
    };
    Ok(HttpResponse::Ok().json(Explanation {
        policy_id,
        window,
        contributions,
        matches: stored == folded,
        folded: folded.into(),
        account: stored.into(),
        openings,
    }))
}

/// What the opening balance `set` carries was made of, found again by the rule that summed it
/// (`decide::opening_usage`) over the usage logged before it.
async fn opening(
    client: &impl tokio_postgres::GenericClient,
    position: i64,
    set: &budget_events::event::PolicySet,
) -> Result<Opening, ApiError> {
    let o = set.opening.as_ref().expect("only a PolicySet with an opening balance contributes to a window");
    let (Some(start), Some(end)) = (o.window_start, o.window_end) else {
        return Ok(Opening { position, usage: Vec::new(), allocations: o.allocations.clone() });
    };
    let policy = budget_events::domain::policy::Policy::from_event(set);
    let window = budget_events::domain::policy::Window { key: o.window.clone(), start: Some(start), end: Some(end) };
    let logged = store::opening::usage_logged_between(client, start, end, &policy.scope, Some(position))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let usage = budget_events::decide::opening_usage(&policy, &window, &logged, |r| &r.event)
        .into_iter()
        .filter_map(|r| match &r.event {
            Event::UsageRecorded(u) => Some(OpeningUsage {
                position: r.position,
                event_type: "UsageRecorded".into(),
                record_id: u.record_id,
                occurred_at: u.occurred_at,
                provider: u.provider.to_string(),
                model: u.model.to_string(),
                component: u.component.to_string(),
                cost: u.cost.amount(),
                tokens: u.total_tokens(),
            }),
            Event::UsageRepriced(c) => Some(OpeningUsage {
                position: r.position,
                event_type: "UsageRepriced".into(),
                record_id: c.record_id,
                occurred_at: c.occurred_at,
                provider: c.provider.to_string(),
                model: c.model.to_string(),
                component: c.component.to_string(),
                cost: c.delta,
                tokens: 0,
            }),
            _ => None,
        })
        .collect();
    Ok(Opening { position, usage, allocations: o.allocations.clone() })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Records of calls from this time…
    pub since: Option<DateTime<Utc>>,
    /// …to this one, exclusive.
    pub until: Option<DateTime<Utc>>,
    /// `csv` (default) or `jsonl`.
    #[param(schema_with = crate::openapi::schemas::export_format)]
    pub format: Option<String>,
}

const CSV_HEADER: &str = "position,occurred_at,recorded_at,kind,record_id,provider,model,resolved_model,component,task_type,context_id,session_id,input_tokens,cached_input_tokens,cache_creation_input_tokens,output_tokens,reasoning_tokens,cost,cost_source,price_version,user_id,operation_id,metadata\n";

/// Usage records for finance, oldest first: one row per record, and one per cost correction (its
/// `cost` is the change), so the `cost` column sums to the spend. Streamed page by page: a year of
/// records never sits in memory.
#[utoipa::path(tag = "audit", params(ExportQuery), responses((status = 200, description = "CSV (`format=csv`, the default) or JSON lines (`format=jsonl`)", content((String = "text/csv"), (String = "application/x-ndjson"))), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/export")]
pub async fn export(state: web::Data<AppState>, q: Query<ExportQuery>) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let csv = match q.format.as_deref().unwrap_or("csv") {
        "csv" => true,
        "jsonl" => false,
        other => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidParameter,
                format!("format `{other}` is not csv or jsonl"),
            ))
        }
    };
    if let Some(reason) = crate::query::backwards(q.since, q.until) {
        return Err(ApiError::bad_request(ErrorCode::InvalidParameter, reason));
    }
    let pool = state.pool.clone();
    let filter = EventFilter {
        event_types: vec!["UsageRecorded".into(), "UsageRepriced".into()],
        since: q.since,
        until: q.until,
        limit: 1000,
        ..Default::default()
    };
    let first = csv.then(|| web::Bytes::from_static(CSV_HEADER.as_bytes()));
    // State: the filter's next page, and whether the log is done.
    let pages = futures_util::stream::unfold(Some(filter), move |next| {
        let pool = pool.clone();
        async move {
            let mut filter = next?;
            let page = async {
                let client = pool.get().await.map_err(|e| e.to_string())?;
                store::events(&**client, &filter).await.map_err(|e| e.to_string())
            }
            .await;
            match page {
                Err(e) => {
                    tracing::error!(error = %e, "export stopped");
                    Some((Err(actix_web::error::ErrorInternalServerError(e)), None))
                }
                Ok(found) if found.is_empty() => None,
                Ok(found) => {
                    let done = (found.len() as i64) < filter.limit;
                    filter.after = found.last().map_or(filter.after, |e| e.position);
                    let mut chunk = String::new();
                    for e in &found {
                        export_line(&mut chunk, e, csv);
                    }
                    Some((Ok(web::Bytes::from(chunk)), (!done).then_some(filter)))
                }
            }
        }
    });
    let body = futures_util::stream::iter(first.map(Ok)).chain(pages);
    let content_type = if csv { "text/csv; charset=utf-8" } else { "application/x-ndjson" };
    Ok(HttpResponse::Ok().content_type(content_type).streaming(body))
}

fn export_line(out: &mut String, e: &RecordedEvent, csv: bool) {
    let row: Vec<(&str, Value)> = match &e.event {
        Event::UsageRecorded(u) => vec![
            ("position", e.position.into()),
            ("occurred_at", u.occurred_at.to_rfc3339().into()),
            ("recorded_at", e.recorded_at.to_rfc3339().into()),
            ("kind", "usage".into()),
            ("record_id", u.record_id.to_string().into()),
            ("provider", u.provider.to_string().into()),
            ("model", u.model.to_string().into()),
            ("resolved_model", u.resolved_model.clone().into()),
            ("component", u.component.to_string().into()),
            ("task_type", u.task_type.to_string().into()),
            ("context_id", u.context_id.as_ref().map(|c| c.to_string()).into()),
            ("session_id", u.session_id.as_ref().map(|c| c.to_string()).into()),
            ("input_tokens", u.input_tokens.into()),
            ("cached_input_tokens", u.cached_input_tokens.into()),
            ("cache_creation_input_tokens", u.cache_creation_input_tokens.into()),
            ("output_tokens", u.output_tokens.into()),
            ("reasoning_tokens", u.reasoning_tokens.into()),
            ("cost", number(u.cost.amount())),
            ("cost_source", serde_json::to_value(u.cost_source).expect("enums serialize")),
            ("price_version", u.price_version.map(|v| v.to_string()).into()),
            ("user_id", u.user_id.as_ref().map(|v| v.to_string()).into()),
            ("operation_id", u.operation_id.as_ref().map(|v| v.to_string()).into()),
            ("metadata", u.metadata.clone().map(Value::Object).unwrap_or(Value::Null)),
        ],
        Event::UsageRepriced(c) => vec![
            ("position", e.position.into()),
            ("occurred_at", c.occurred_at.to_rfc3339().into()),
            ("recorded_at", e.recorded_at.to_rfc3339().into()),
            ("kind", "correction".into()),
            ("record_id", c.record_id.to_string().into()),
            ("provider", c.provider.to_string().into()),
            ("model", c.model.to_string().into()),
            ("resolved_model", c.resolved_model.clone().into()),
            ("component", c.component.to_string().into()),
            ("task_type", c.task_type.to_string().into()),
            ("context_id", Value::Null),
            ("session_id", Value::Null),
            ("input_tokens", 0.into()),
            ("cached_input_tokens", 0.into()),
            ("cache_creation_input_tokens", 0.into()),
            ("output_tokens", 0.into()),
            ("reasoning_tokens", 0.into()),
            ("cost", number(c.delta)),
            ("cost_source", "price_book".into()),
            ("price_version", c.price_version.to_string().into()),
            ("user_id", Value::Null),
            ("operation_id", Value::Null),
            ("metadata", Value::Null),
        ],
        _ => return,
    };
    if csv {
        let cells: Vec<String> = row.iter().map(|(_, v)| csv_cell(v)).collect();
        out.push_str(&cells.join(","));
    } else {
        let object: serde_json::Map<String, Value> = row.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        out.push_str(&Value::Object(object).to_string());
    }
    out.push('\n');
}

fn csv_cell(v: &Value) -> String {
    let text = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}
