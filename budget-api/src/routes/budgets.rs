//! Budgets: create, list, get (with its policies' current windows), rename, archive; a budget's policies
//! and status. A budget is also created by the first `set_limit` (or `POST /api/policies`) naming it.

use actix_web::http::StatusCode;
use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use budget_events::event::BudgetUpdated;
use budget_events::ledger::{BudgetChange, BudgetCommand, BudgetOutcome};
use budget_events::store::policies::{self, BudgetRow, PolicyRow};
use budget_events::ErrorCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::body;
use crate::error::ApiError;
use crate::query::Query;
use crate::request::{self, metadata};
use crate::routes::policies::{parse_id, PolicyView};
use crate::routes::status::WindowStatus;
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BudgetView {
    pub budget_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub policies: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BudgetList {
    pub budgets: Vec<BudgetView>,
    /// Budgets in all (for paging).
    pub total: usize,
    /// Pass as `offset` for the next page; absent on the last page.
    pub next_offset: Option<usize>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Page size, 1 to 500 (default 100).
    #[param(schema_with = crate::openapi::schemas::limit_500)]
    pub limit: Option<i64>,
    #[param(schema_with = crate::openapi::schemas::offset)]
    pub offset: Option<i64>,
    /// Include archived budgets (default: only active ones).
    pub all: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BudgetDetail {
    #[serde(flatten)]
    pub budget: BudgetView,
    /// Each enabled policy's current window.
    pub status: Vec<WindowStatus>,
    /// Its per-task and per-session policies with no window yet (as in `GET /api/status`).
    #[serde(default)]
    pub waiting: Vec<PolicyView>,
    /// Its per-task and per-session policies with more windows than listed (as in `GET /api/status`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_windows: Vec<crate::routes::status::MoreWindows>,
}

fn view(b: BudgetRow, policies: usize) -> BudgetView {
    BudgetView {
        budget_id: b.budget_id,
        name: b.name,
        description: b.description,
        owner: b.owner,
        active: b.active,
        created_at: b.created_at,
        updated_at: b.updated_at,
        policies,
    }
}

/// Budgets by name, paged.
#[utoipa::path(tag = "policies", params(Page), responses((status = 200, body = BudgetList), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/budgets")]
pub async fn list(state: web::Data<AppState>, page: Query<Page>) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = super::paging::page(page.limit, page.offset, 100, 500)?;
    let (limit, offset) = (limit as usize, offset as usize);
    let client = state.pool.get().await?;
    let all = policies::list(&**client).await?;
    let budgets: Vec<BudgetRow> = policies::list_budgets(&**client)
        .await?
        .into_iter()
        .filter(|b| b.active || page.all.unwrap_or(false))
        .collect();
    let total = budgets.len();
    let budgets = budgets
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|b| {
            let n = all.iter().filter(|p| p.policy.budget_id == b.budget_id).count();
            view(b, n)
        })
        .collect();
    let next_offset = (offset + limit < total).then_some(offset + limit);
    Ok(HttpResponse::Ok().json(BudgetList { budgets, total, next_offset }))
}

/// One budget, with its policies' current windows.
#[utoipa::path(tag = "policies", responses((status = 200, body = BudgetDetail), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/budgets/{budget_id}")]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id("budget", &path)?;
    let client = state.pool.get().await?;
    let budget = require_budget(&**client, id).await?;
    let rows = budget_rows(&**client, id).await?;
    let enabled: Vec<PolicyRow> = rows.iter().filter(|r| r.policy.enabled).cloned().collect();
    let at = Utc::now();
    let crate::routes::status::StatusResponse { windows: status, waiting, more_windows, .. } =
        crate::routes::status::StatusResponse::read(&**client, &enabled, at, true).await?;
    Ok(HttpResponse::Ok().json(BudgetDetail { budget: view(budget, rows.len()), status, waiting, more_windows }))
}

/// The budget with this id, or a 404 that says how to find one.
async fn require_budget(client: &impl tokio_postgres::GenericClient, id: Uuid) -> Result<BudgetRow, ApiError> {
    policies::budget_by_id(client, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no budget has id {id}; list them with GET /api/budgets")))
}

/// All policies of one budget.
async fn budget_rows(client: &impl tokio_postgres::GenericClient, id: Uuid) -> Result<Vec<PolicyRow>, ApiError> {
    Ok(policies::list(client).await?.into_iter().filter(|r| r.policy.budget_id == id).collect())
}

/// A budget's new name, description or owner: at least one of them.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetInput {
    #[schema(schema_with = crate::openapi::schemas::budget_name)]
    pub name: Option<String>,
    #[schema(schema_with = crate::openapi::schemas::budget_description)]
    pub description: Option<String>,
    #[schema(schema_with = crate::openapi::schemas::budget_owner)]
    pub owner: Option<String>,
}

/// A new budget.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBudget {
    /// Unique: 1 to 128 printable characters.
    #[schema(schema_with = crate::openapi::schemas::required_budget_name)]
    pub name: String,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::budget_description)]
    pub description: Option<String>,
    #[serde(default)]
    #[schema(schema_with = crate::openapi::schemas::budget_owner)]
    pub owner: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BudgetChanged {
    pub success: bool,
    pub budget_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub active: bool,
    pub version: i64,
    /// The write's log position, for `min_position` on reads of projections (absent on a replay or a
    /// change that wrote nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl From<(BudgetOutcome, Option<i64>)> for BudgetChanged {
    fn from((b, position): (BudgetOutcome, Option<i64>)) -> Self {
        BudgetChanged {
            success: true,
            budget_id: b.budget_id,
            name: b.name,
            description: b.description,
            owner: b.owner,
            active: b.active,
            version: b.version,
            position,
        }
    }
}

fn text(field: &str, value: &Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value.as_deref().map(str::trim) {
        None => Ok(None),
        Some(v) if v.is_empty() || v.chars().count() > max || v.chars().any(char::is_control) => {
            Err(ApiError::bad_request(
                ErrorCode::ValidationFailed,
                format!("{field} must be 1 to {max} printable characters"),
            ))
        }
        Some(v) => Ok(Some(v.to_string())),
    }
}

async fn change(
    state: &AppState,
    req: &HttpRequest,
    change: BudgetChange,
    scope: &str,
    body: &impl Serialize,
) -> Result<(BudgetOutcome, Option<i64>), ApiError> {
    let key = request::keyed(req, None, scope, body)?;
    Ok(state.writer.submit_at(BudgetCommand { change, key, metadata: metadata(req) }).await?)
}

/// Create a budget (a container of policies).
#[utoipa::path(params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry with the same key returns the first outcome")), tag = "policies", request_body = NewBudget, responses((status = 201, body = BudgetChanged), (status = 200, description = "Idempotent retry", body = BudgetChanged), (status = 400, body = crate::error::ErrorBody), (status = 409, description = "Name taken", body = crate::error::ErrorBody)), security(("api_key" = ["admin"])))]
#[post("/api/budgets")]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let input: NewBudget = body::parse(&body::read(payload, 16 * 1024).await?)?;
    let name = text("name", &Some(input.name.clone()), 128)?.expect("a given name is checked or refused");
    let change_ = BudgetChange::Create {
        name,
        description: text("description", &input.description, 1000)?,
        owner: text("owner", &input.owner, 200)?,
    };
    let outcome = change(&state, &req, change_, "budget-create", &input).await?;
    Ok(request::answer(StatusCode::CREATED, outcome.0.replayed).json(BudgetChanged::from(outcome)))
}

/// Rename a budget or change its description or owner.
#[utoipa::path(params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry with the same key returns the first outcome")), tag = "policies", request_body = BudgetInput, responses((status = 200, body = BudgetChanged), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("api_key" = ["admin"])))]
#[patch("/api/budgets/{budget_id}")]
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let budget_id = parse_id("budget", &path)?;
    let input: BudgetInput = body::parse(&body::read(payload, 16 * 1024).await?)?;
    let update = BudgetUpdated {
        budget_id,
        name: text("name", &input.name, 128)?,
        description: text("description", &input.description, 1000)?,
        owner: text("owner", &input.owner, 200)?,
    };
    if update.name.is_none() && update.description.is_none() && update.owner.is_none() {
        return Err(ApiError::bad_request(
            ErrorCode::ValidationFailed,
            "nothing to change: give name, description or owner",
        ));
    }
    let outcome = change(&state, &req, BudgetChange::Update(update), "budget-update", &(budget_id, &input)).await?;
    Ok(request::answer(StatusCode::OK, outcome.0.replayed).json(BudgetChanged::from(outcome)))
}

/// Archive a budget: its policies stop counting new usage. The log keeps everything.
#[utoipa::path(params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry with the same key returns the first outcome")), tag = "policies", responses((status = 200, body = BudgetChanged), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["admin"])))]
#[post("/api/budgets/{budget_id}/archive")]
pub async fn archive(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let budget_id = parse_id("budget", &path)?;
    let outcome = change(&state, &req, BudgetChange::Archive(budget_id), "budget-archive", &budget_id).await?;
    Ok(request::answer(StatusCode::OK, outcome.0.replayed).json(BudgetChanged::from(outcome)))
}

/// A budget's policies.
#[utoipa::path(tag = "policies", responses((status = 200, body = crate::routes::policies::PolicyList), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/budgets/{budget_id}/policies")]
pub async fn budget_policies(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id("budget", &path)?;
    let client = state.pool.get().await?;
    require_budget(&**client, id).await?;
    let views = budget_rows(&**client, id).await?.iter().map(PolicyView::of).collect();
    Ok(HttpResponse::Ok().json(crate::routes::policies::PolicyList { policies: views }))
}

/// A budget's policies' current windows.
#[utoipa::path(tag = "policies", responses((status = 200, body = crate::routes::status::StatusResponse), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/budgets/{budget_id}/status")]
pub async fn budget_status(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id("budget", &path)?;
    let client = state.pool.get().await?;
    require_budget(&**client, id).await?;
    let enabled: Vec<PolicyRow> = budget_rows(&**client, id).await?.into_iter().filter(|r| r.policy.enabled).collect();
    let at = Utc::now();
    Ok(HttpResponse::Ok().json(crate::routes::status::StatusResponse::read(&**client, &enabled, at, true).await?))
}
