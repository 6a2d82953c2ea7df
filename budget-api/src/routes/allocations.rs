//! Allocations: reserve tokens for a task (`POST /api/allocations`, 402 when a hard limit refuses),
//! list and read them, release what is left. Usage with `allocation_id` settles against them.

use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use budget_events::decide::WindowCheck;
use budget_events::domain::allocation::{Allocation, AllocationInput, AllocationState, CreateAllocation};
use budget_events::domain::alternatives::{Alternative, CallShape};
use budget_events::ledger::{AllocateCommand, ReleaseCommand};
use budget_events::money::decimal_json;
use budget_events::store::allocations::{self, AllocationFilter};
use budget_events::ErrorCode;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::body;
use crate::error::ApiError;
use crate::query::Query;
use crate::request::{self, metadata};
use crate::routes::check::{self, PolicyCheck};
use crate::routes::policies::parse_id;
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AllocationView {
    pub allocation_id: Uuid,
    pub context_id: String,
    pub component: String,
    pub tier: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub task_type: String,
    /// The request named no task type (`task_type` is then `default`): it holds room under every task
    /// type's limits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub task_type_open: bool,
    /// The request named neither a tier nor a provider (`tier` is then the estimate's): it holds room
    /// under every tier's limits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tier_open: bool,
    /// The end user it was reserved for.
    pub user_id: Option<String>,
    pub priority: i16,
    /// active, released, expired or exhausted.
    pub state: String,
    /// True while the allocation still reserves tokens.
    pub is_active: bool,
    pub tokens_allocated: i64,
    pub input_tokens_used: i64,
    pub output_tokens_used: i64,
    pub tokens_used: i64,
    /// Tokens still reserved (0 once resolved).
    pub remaining_tokens: i64,
    /// tokens_used / tokens_allocated, in percent (above 100 with overage).
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub usage_percentage: Decimal,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub estimated_cost: Decimal,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub actual_cost: Decimal,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub remaining_cost: Decimal,
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The policy windows the reservation is pending in.
    #[schema(value_type = Vec<Object>)]
    pub reservations: Vec<budget_events::event::Posting>,
    /// In a write's answer: its log position, for `min_position` on reads of projections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    /// In a new reservation's answer: the windows of warn and soft-limit policies it takes past their
    /// warning threshold or limit (reserved all the same; only hard limits refuse), as a check shows them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<PolicyCheck>,
    /// One sentence per warning, the best cheaper model when a soft limit is pressed, and one when the
    /// model is retired or retiring within 90 days (the day its price's source gives).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<String>,
    /// When a soft limit is pressed: up to three cheaper models able to do the task, largest saving first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub alternatives: Vec<Alternative>,
}

impl From<&Allocation> for AllocationView {
    fn from(a: &Allocation) -> Self {
        AllocationView {
            allocation_id: a.allocation_id,
            context_id: a.context_id.clone(),
            component: a.component.clone(),
            tier: a.tier.to_string(),
            provider: a.provider.clone(),
            model: a.model.clone(),
            task_type: a.task_type.clone(),
            task_type_open: a.task_type_open,
            tier_open: a.tier_open,
            user_id: a.user_id.clone(),
            priority: a.priority,
            state: a.state.as_str().to_string(),
            is_active: a.state == AllocationState::Active,
            tokens_allocated: a.tokens_allocated,
            input_tokens_used: a.input_tokens_used,
            output_tokens_used: a.output_tokens_used,
            tokens_used: a.tokens_used(),
            remaining_tokens: a.remaining_tokens,
            usage_percentage: (Decimal::from(a.tokens_used() * 100) / Decimal::from(a.tokens_allocated)).round_dp(2),
            estimated_cost: a.estimated_cost,
            actual_cost: a.actual_cost,
            remaining_cost: a.remaining_cost,
            expires_at: a.expires_at,
            created_at: a.created_at,
            resolved_at: a.resolved_at,
            reservations: a.reservations.clone(),
            position: None,
            warnings: Vec::new(),
            messages: Vec::new(),
            alternatives: Vec::new(),
        }
    }
}

/// Validates an allocation request, with the tier map filling a missing tier.
pub fn validate(state: &AppState, input: &AllocationInput) -> Result<CreateAllocation, ApiError> {
    let mut input = input.clone();
    input.provider = input.provider.map(|p| state.provider(&p));
    CreateAllocation::validate(&input, |p, m| state.tiers.resolve(p, m), &state.allocation_defaults)
        .map_err(|errors| ApiError::validation(errors, "nothing was reserved"))
}

/// Reserve tokens (and their estimated cost) for a task. Refused with 402 when a hard limit would be
/// exceeded; priority never bypasses a hard limit.
#[utoipa::path(params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry with the same key returns the first outcome")), 
    tag = "allocations",
    request_body = AllocationInput,
    responses(
        (status = 201, body = AllocationView),
        (status = 200, description = "Idempotent retry", body = AllocationView),
        (status = 400, body = crate::error::ErrorBody),
        (status = 402, description = "budget_exceeded: details list each refusing window", body = crate::error::ErrorBody),
    ), security(("api_key" = ["write"])))]
#[post("/api/allocations")]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mut input: AllocationInput = body::parse(&body::read(payload, 16 * 1024).await?)?;
    crate::auth::caller(&req).speak_for(&mut input.component, || "component".into())?;
    let allocation = validate(&state, &input)?;
    let key = request::keyed(&req, input.request_id.as_deref(), "allocate", &input)?;
    let metadata = metadata(&req);
    // A model sent without its provider: the writer looks the provider up, and may find none.
    let unaimed_model = allocation.provider.is_none().then(|| allocation.model.clone()).flatten();
    let estimated = allocation.estimated_by_client;
    let command = AllocateCommand { allocation, unpriced: state.unpriced, key, signer: metadata.key_id, metadata };
    let (outcome, position) = match (state.writer.submit_at(command).await.map_err(ApiError::from), unaimed_model) {
        // Refused by a limit it may have counted under only because its model named no provider: say so.
        (Err(ApiError::BudgetExceeded { message, details }), Some(model)) => {
            let message = match unaimed(&state, model.as_str()).await? {
                Some(why) => format!("{message}; {why}"),
                None => message,
            };
            return Err(ApiError::BudgetExceeded { message, details });
        }
        (answer, _) => answer?,
    };
    let mut view = AllocationView { position, ..AllocationView::from(&outcome.allocation) };
    if !outcome.warnings.is_empty() {
        warn(&state, &mut view, &outcome.warnings).await?;
    }
    if let (Some(provider), Some(model)) = (&view.provider, &view.model) {
        let client = state.pool.get().await?;
        let note = crate::routes::prices::retirement_note(&**client, provider, model, view.created_at).await?;
        view.messages.extend(note);
    }
    if let (None, Some(model)) = (&view.provider, &view.model) {
        let priced = if estimated { String::new() } else { format!(", at the {} tier's reference price", view.tier) };
        let why = unaimed(&state, model).await?.map(|why| why.replacen(" limits:", &format!(" limits{priced}:"), 1));
        view.messages.extend(why);
    }
    Ok(request::answer(StatusCode::CREATED, outcome.replayed).json(view))
}

/// Why a reservation of `model` (sent without a provider) counts under every provider's limits, and
/// how to aim it; `None` when the price book names the model's one provider (the writer then used it).
async fn unaimed(state: &AppState, model: &str) -> Result<Option<String>, ApiError> {
    let client = state.pool.get().await?;
    let providers = budget_events::store::prices::providers_of(&**client, model, Utc::now()).await?;
    Ok(match providers.as_slice() {
        [_] => None,
        [] => {
            let book = budget_events::store::prices::in_effect(&**client, Utc::now()).await?;
            let near = budget_events::domain::price::closest(model, book.iter().map(|v| v.spec.model.as_str()))
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default();
            Some(format!(
                "`{model}` is not in the price book{near}, so it names no provider and the reservation counts under every provider's limits: send its provider, or a model the price book has (`budget prices list`)"
            ))
        }
        [first @ .., last] => Some(format!(
            "`{model}` is in the price book of {} and {last}, so it names no one provider and the reservation counts under every provider's limits: send its provider",
            first.join(", ")
        )),
    })
}

/// Puts into a new reservation's answer what its warn and soft-limit windows say, in the words of a
/// check, and the cheaper models a pressed soft limit recommends.
async fn warn(state: &AppState, view: &mut AllocationView, warnings: &[WindowCheck]) -> Result<(), ApiError> {
    // Its estimate prices every token at the model's higher rate; so do the alternatives'.
    let call = view.provider.as_deref().zip(view.model.as_deref()).map(|(provider, model)| check::Call {
        provider,
        model,
        shape: CallShape {
            task_type: &view.task_type,
            input_tokens: 0,
            output_tokens: view.tokens_allocated,
            calls: 1,
            include_local: false,
        },
        at: view.created_at,
    });
    let client = state.pool.get().await?;
    let pressed = check::pressed(&**client, warnings, call, view.estimated_cost, "this reservation").await?;
    (view.warnings, view.messages, view.alternatives) = (pressed.checks, pressed.messages, pressed.alternatives);
    Ok(())
}

/// Release what an allocation still reserves. 409 when it is already released, expired or exhausted.
#[utoipa::path(params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: a retry with the same key returns the first outcome")), tag = "allocations", responses((status = 200, body = AllocationView), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)), security(("api_key" = ["write"])))]
#[post("/api/allocations/{allocation_id}/release")]
pub async fn release(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let allocation_id = parse_id("allocation", &path)?;
    let key = request::keyed(&req, None, "release", &allocation_id)?;
    let (outcome, position) =
        state.writer.submit_at(ReleaseCommand { allocation_id, key, metadata: metadata(&req) }).await?;
    Ok(request::answer(StatusCode::OK, outcome.replayed)
        .json(AllocationView { position, ..AllocationView::from(&outcome.allocation) }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AllocationQuery {
    pub context_id: Option<String>,
    pub component: Option<String>,
    pub tier: Option<String>,
    pub provider: Option<String>,
    /// A model: its dated snapshots and `provider/` form included (gpt-4o also lists gpt-4o-2024-08-06
    /// and openai/gpt-4o), as a limit on the model counts them.
    pub model: Option<String>,
    /// active (default), released, expired, exhausted, or `all`.
    #[param(schema_with = crate::openapi::schemas::allocation_state)]
    pub state: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(schema_with = crate::openapi::schemas::limit_500)]
    pub limit: Option<i64>,
    #[param(schema_with = crate::openapi::schemas::offset)]
    pub offset: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AllocationList {
    pub allocations: Vec<AllocationView>,
    pub next_offset: Option<i64>,
}

async fn list_with(state: &AppState, q: AllocationQuery, context_id: Option<String>) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = super::paging::page(q.limit, q.offset, 100, 500)?;
    let states = match q.state.as_deref() {
        None => None,
        Some("all") => Some(["active", "released", "expired", "exhausted"].map(String::from).to_vec()),
        Some(s) => Some(vec![AllocationState::parse(s)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidParameter, format!("{e}, or all")))?
            .as_str()
            .to_string()]),
    };
    let filter = AllocationFilter {
        context_id: context_id.or(q.context_id),
        component: q.component,
        tier: q.tier,
        provider: q.provider,
        model: q.model,
        states,
        limit,
        offset,
    };
    let client = state.pool.get().await?;
    let found = allocations::list(&**client, &filter).await?;
    let next_offset = (found.len() as i64 == limit).then_some(offset + limit);
    Ok(HttpResponse::Ok()
        .json(AllocationList { allocations: found.iter().map(AllocationView::from).collect(), next_offset }))
}

/// Allocations, newest first (active only unless `state` says otherwise).
#[utoipa::path(tag = "allocations", params(AllocationQuery), responses((status = 200, body = AllocationList), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/allocations")]
pub async fn list(state: web::Data<AppState>, query: Query<AllocationQuery>) -> Result<HttpResponse, ApiError> {
    list_with(&state, query.into_inner(), None).await
}

/// A task's allocations, newest first.
#[utoipa::path(tag = "allocations", params(AllocationQuery), responses((status = 200, body = AllocationList)), security(("api_key" = ["read"])))]
#[get("/api/allocations/context/{context_id}")]
pub async fn by_context(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: Query<AllocationQuery>,
) -> Result<HttpResponse, ApiError> {
    let mut q = query.into_inner();
    q.state = q.state.or(Some("all".into()));
    list_with(&state, q, Some(path.into_inner())).await
}

/// One allocation.
#[utoipa::path(tag = "allocations", responses((status = 200, body = AllocationView), (status = 404, body = crate::error::ErrorBody)), security(("api_key" = ["read"])))]
#[get("/api/allocations/{allocation_id}")]
pub async fn get(state: web::Data<AppState>, path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = parse_id("allocation", &path)?;
    let client = state.pool.get().await?;
    match allocations::get(&**client, id).await? {
        Some(a) => Ok(HttpResponse::Ok().json(AllocationView::from(&a))),
        None => Err(ApiError::NotFound(format!("no allocation has id {id}; list them with GET /api/allocations"))),
    }
}
