//! Policies: `POST /api/policies` (create, or replace the one with the same budget, period and scope),
//! `GET /api/policies`, `GET /api/policies/{id}`. Every change is a `PolicySet` event.

use actix_web::http::StatusCode;
use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use budget_events::domain::policy::{Policy, PolicyInput, SetPolicy};
use budget_events::ledger::{PolicyCommand, PolicyOutcome};
use budget_events::money::decimal_json;
use budget_events::store::policies::{self, PolicyRow};
use budget_events::ErrorCode;
use budget_events::Money;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::body;
use crate::error::ApiError;
use crate::query::Query;
use crate::request::{self, metadata};
use crate::state::AppState;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PolicyView {
    pub policy_id: Uuid,
    pub budget_id: Uuid,
    pub budget_name: String,
    /// ignore, warn, soft_limit or hard_limit.
    #[serde(rename = "type")]
    pub policy_type: String,
    pub period: String,
    /// The scope in words: `provider=openai, component=codex` or `all usage`.
    pub scope: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub component: Option<String>,
    pub tier: Option<String>,
    pub task_type: Option<String>,
    /// The end user of a per-user limit.
    pub user: Option<String>,
    #[schema(value_type = Option<f64>)]
    pub cost_limit: Option<Money>,
    pub token_limit: Option<i64>,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub warning_threshold: Decimal,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub action_threshold: Decimal,
    pub enabled: bool,
    /// Its budget is archived: the policy counts nothing, even enabled.
    #[serde(default)]
    pub budget_archived: bool,
    pub timezone: String,
}

impl PolicyView {
    /// A listed policy, with whether its budget is archived.
    pub fn of(row: &PolicyRow) -> Self {
        PolicyView { budget_archived: !row.budget_active, ..PolicyView::new(&row.policy, &row.budget_name) }
    }

    /// A policy of an active budget (one just set or checked against).
    pub fn new(p: &Policy, budget_name: &str) -> Self {
        PolicyView {
            policy_id: p.id,
            budget_id: p.budget_id,
            budget_name: budget_name.to_string(),
            policy_type: p.policy_type.to_string(),
            period: p.period.to_string(),
            scope: p.scope.describe(),
            provider: p.scope.provider.as_ref().map(ToString::to_string),
            model: p.scope.model.as_ref().map(ToString::to_string),
            component: p.scope.component.as_ref().map(ToString::to_string),
            tier: p.scope.tier.map(|t| t.to_string()),
            task_type: p.scope.task_type.as_ref().map(ToString::to_string),
            user: p.scope.user.as_ref().map(ToString::to_string),
            cost_limit: p.cost_limit,
            token_limit: p.token_limit,
            warning_threshold: p.warning_threshold,
            action_threshold: p.action_threshold,
            enabled: p.enabled,
            budget_archived: false,
            timezone: p.timezone.name().to_string(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicySetResponse {
    pub success: bool,
    /// True for a new policy; false when it replaced the policy with the same budget, period and scope.
    pub created: bool,
    pub budget_created: bool,
    /// The policy's version (1 for a new policy).
    pub version: i64,
    pub policy: PolicyView,
    /// The policy this change replaced, as it was before (absent for a new one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PolicyView>,
    /// When the policy starts counting (created, or enabled again): what its current window already
    /// held — the matching usage recorded in it (`posted_cost`, `posted_tokens`, `records`) and the
    /// matching active reservations made in it (`pending_cost`, `pending_tokens`, `allocations`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub opening: Option<budget_events::event::OpeningBalance>,
    /// The change's log position: pass it as `min_position` to read projections with it applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// What the scope names that looks like a typo: a provider or model the price book does not know,
    /// a component, task type or user no call of the last 90 days named (see `scope_notes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl PolicySetResponse {
    fn new(outcome: PolicyOutcome, position: Option<i64>) -> Self {
        PolicySetResponse {
            success: true,
            created: outcome.created,
            budget_created: outcome.budget_created,
            version: outcome.version,
            policy: PolicyView::new(&Policy::from_event(&outcome.policy), &outcome.budget_name),
            previous: outcome.previous.as_ref().map(|p| PolicyView::new(&Policy::from_event(p), &outcome.budget_name)),
            opening: outcome.policy.opening,
            position,
            notes: Vec::new(),
        }
    }
}

/// Set a limit: create a policy, or replace the one with the same budget, period and scope.
#[utoipa::path(params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry with the same key returns the first outcome")), 
    tag = "policies",
    request_body = PolicyInput,
    responses(
        (status = 201, description = "Created", body = PolicySetResponse),
        (status = 200, description = "Replaced the existing policy, or an idempotent retry", body = PolicySetResponse),
        (status = 400, description = "Invalid policy; nothing written", body = crate::error::ErrorBody),
        (status = 404, description = "Unknown budget_id", body = crate::error::ErrorBody),
    ), security(("api_key" = ["admin"])))]
#[post("/api/policies")]
pub async fn set_policy(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(payload, 64 * 1024).await?;
    let input: PolicyInput = body::parse(&bytes)?;
    let mut named = input.clone();
    named.provider = named.provider.map(|p| state.provider(&p));
    let policy = SetPolicy::validate(&named).map_err(validation_error)?;
    let key = request::keyed(&req, None, "policy", &input)?;
    let (outcome, position) = state.writer.submit_at(PolicyCommand { policy, key, metadata: metadata(&req) }).await?;
    // A new policy is 201; one that replaced the policy in its slot is 200.
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    let replayed = outcome.replayed;
    let mut response = PolicySetResponse::new(outcome, position);
    // Read after the write's commit, never inside it.
    response.notes = crate::scope_notes::notes(&**state.pool.get().await?, &response.policy).await?;
    Ok(request::answer(status, replayed).json(response))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PolicyFilter {
    pub budget_id: Option<Uuid>,
    pub period: Option<String>,
    pub provider: Option<String>,
    pub component: Option<String>,
    pub tier: Option<String>,
    /// ignore, warn, soft_limit or hard_limit.
    #[serde(rename = "type")]
    pub policy_type: Option<String>,
    /// Include disabled policies and those of archived budgets (default: only those that count).
    pub all: Option<bool>,
}

impl PolicyFilter {
    pub fn keeps(&self, row: &PolicyRow) -> bool {
        let p = &row.policy;
        let eq = |filter: &Option<String>, value: Option<&str>| filter.as_deref().is_none_or(|f| Some(f) == value);
        (self.all.unwrap_or(false) || row.counts())
            && self.budget_id.is_none_or(|b| b == p.budget_id)
            && eq(&self.period, Some(p.period.as_str()))
            && eq(&self.provider, p.scope.provider.as_ref().map(|v| v.as_str()))
            && eq(&self.component, p.scope.component.as_ref().map(|v| v.as_str()))
            && eq(&self.tier, p.scope.tier.map(|t| t.as_str()))
            && eq(&self.policy_type, Some(p.policy_type.as_str()))
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct PolicyList {
    pub policies: Vec<PolicyView>,
}

/// Policies, filtered.
#[utoipa::path(tag = "policies", params(PolicyFilter), responses((status = 200, body = PolicyList)), security(("api_key" = ["read"])))]
#[get("/api/policies")]
pub async fn list(state: web::Data<AppState>, filter: Query<PolicyFilter>) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let rows = policies::list(&**client).await?;
    let policies = rows.iter().filter(|r| filter.keeps(r)).map(PolicyView::of).collect();
    Ok(HttpResponse::Ok().json(PolicyList { policies }))
}

/// One policy.
#[utoipa::path(tag = "policies", responses((status = 200, body = PolicyView), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/policies/{policy_id}")]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id("policy", &path)?;
    let client = state.pool.get().await?;
    let row = policies::list(&**client).await?.into_iter().find(|r| r.policy.id == id);
    match row {
        Some(r) => Ok(HttpResponse::Ok().json(PolicyView::of(&r))),
        None => Err(ApiError::NotFound(format!("no policy has id {id}; list them with GET /api/policies"))),
    }
}

pub fn parse_id(what: &str, raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| ApiError::bad_request(ErrorCode::InvalidId, format!("`{raw}` is not a {what} id (a UUID)")))
}

/// The fields of a policy that can change in place; its budget, period and scope are its identity.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    #[serde(default, rename = "type", alias = "policy_type")]
    #[schema(schema_with = budget_events::openapi::optional_policy_type)]
    pub policy_type: Option<String>,
    #[schema(schema_with = budget_events::openapi::optional_limit)]
    pub cost_limit: Option<Money>,
    #[schema(schema_with = budget_events::openapi::optional_token_limit)]
    pub token_limit: Option<i64>,
    #[serde(default, with = "budget_events::money::optional_decimal_json")]
    #[schema(schema_with = budget_events::openapi::optional_threshold)]
    pub warning_threshold: Option<Decimal>,
    #[serde(default, with = "budget_events::money::optional_decimal_json")]
    #[schema(schema_with = budget_events::openapi::optional_threshold)]
    pub action_threshold: Option<Decimal>,
    pub enabled: Option<bool>,
    #[schema(schema_with = budget_events::openapi::optional_timezone)]
    pub timezone: Option<String>,
}

/// Change a policy's type, limits, thresholds, timezone or enabled flag (a new `PolicySet` event).
#[utoipa::path(params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry with the same key returns the first outcome")), tag = "policies", request_body = PolicyPatch, responses((status = 200, body = PolicySetResponse), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["admin"])))]
#[patch("/api/policies/{policy_id}")]
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("policy", &path)?;
    let patch: PolicyPatch = body::parse(&body::read(payload, 16 * 1024).await?)?;
    apply(&state, &req, id, patch).await
}

/// Disable a policy: it stops counting new usage and checks (a `PolicySet` with `enabled: false`).
#[utoipa::path(params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry with the same key returns the first outcome")), tag = "policies", responses((status = 200, body = PolicySetResponse), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["admin"])))]
#[post("/api/policies/{policy_id}/disable")]
pub async fn disable(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("policy", &path)?;
    let patch = PolicyPatch {
        policy_type: None,
        cost_limit: None,
        token_limit: None,
        warning_threshold: None,
        action_threshold: None,
        enabled: Some(false),
        timezone: None,
    };
    apply(&state, &req, id, patch).await
}

/// Merges `patch` into the current policy and sets it again in the same slot.
async fn apply(state: &AppState, req: &HttpRequest, id: Uuid, patch: PolicyPatch) -> Result<HttpResponse, ApiError> {
    let client = state.pool.get().await?;
    let Some(row) = policies::list(&**client).await?.into_iter().find(|r| r.policy.id == id) else {
        return Err(ApiError::NotFound(format!("no policy has id {id}; list them with GET /api/policies")));
    };
    drop(client);
    let p = &row.policy;
    let input = PolicyInput {
        budget_id: Some(p.budget_id),
        budget: None,
        policy_type: Some(patch.policy_type.clone().unwrap_or_else(|| p.policy_type.to_string())),
        period: p.period.to_string(),
        provider: p.scope.provider.as_ref().map(ToString::to_string),
        model: p.scope.model.as_ref().map(ToString::to_string),
        component: p.scope.component.as_ref().map(ToString::to_string),
        tier: p.scope.tier.map(|t| t.to_string()),
        task_type: p.scope.task_type.as_ref().map(ToString::to_string),
        user: p.scope.user.as_ref().map(ToString::to_string),
        cost_limit: patch.cost_limit.or(p.cost_limit),
        token_limit: patch.token_limit.or(p.token_limit),
        warning_threshold: Some(patch.warning_threshold.unwrap_or(p.warning_threshold)),
        action_threshold: Some(patch.action_threshold.unwrap_or(p.action_threshold)),
        enabled: Some(patch.enabled.unwrap_or(p.enabled)),
        timezone: Some(patch.timezone.clone().unwrap_or_else(|| p.timezone.name().to_string())),
    };
    let policy = SetPolicy::validate(&input).map_err(validation_error)?;
    let key = request::keyed(req, None, "policy-update", &(id, &patch))?;
    let (outcome, position) = state.writer.submit_at(PolicyCommand { policy, key, metadata: metadata(req) }).await?;
    let replayed = outcome.replayed;
    Ok(request::answer(StatusCode::OK, replayed).json(PolicySetResponse::new(outcome, position)))
}

fn validation_error(errors: Vec<(String, String)>) -> ApiError {
    ApiError::validation(errors, "nothing was changed")
}
