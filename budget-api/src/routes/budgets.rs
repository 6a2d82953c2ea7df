//! Budgets: `GET /api/budgets`, `GET /api/budgets/{id}` (with its policies and their current windows).
//! A budget is created by its first `set_limit` (or `POST /api/policies` naming it).

use actix_web::{get, web, HttpResponse};
use budget_events::store::policies::{self, BudgetRow};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::routes::policies::parse_id;
use crate::routes::status::{windows, WindowStatus};
use crate::state::AppState;

#[derive(Debug, Serialize, ToSchema)]
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

#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetList {
    pub budgets: Vec<BudgetView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BudgetDetail {
    #[serde(flatten)]
    pub budget: BudgetView,
    /// Each enabled policy's current window.
    pub status: Vec<WindowStatus>,
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

/// All budgets.
#[utoipa::path(tag = "policies", responses((status = 200, body = BudgetList)))]
#[get("/api/budgets")]
pub async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let all = policies::list(&**client).await?;
    let budgets = policies::list_budgets(&**client)
        .await?
        .into_iter()
        .map(|b| {
            let n = all.iter().filter(|p| p.policy.budget_id == b.budget_id).count();
            view(b, n)
        })
        .collect();
    Ok(HttpResponse::Ok().json(BudgetList { budgets }))
}

/// One budget, with its policies' current windows.
#[utoipa::path(tag = "policies", responses((status = 200, body = BudgetDetail), (status = 404, body = crate::error::ErrorBody)))]
#[get("/api/budgets/{budget_id}")]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id("budget", &path)?;
    let client = state.pool.get().await?;
    let Some(budget) = policies::budget_by_id(&**client, id).await? else {
        return Err(ApiError::NotFound(format!("no budget has id {id}; list them with GET /api/budgets")));
    };
    let rows: Vec<_> =
        policies::list(&**client).await?.into_iter().filter(|p| p.policy.budget_id == id && p.policy.enabled).collect();
    let now = Utc::now();
    let status = windows(&**client, &rows, now, true).await?;
    Ok(HttpResponse::Ok().json(BudgetDetail { budget: view(budget, rows.len()), status }))
}
