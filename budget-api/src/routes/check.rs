//! `POST /api/usage/check`: may this call go ahead? A pre-flight that reserves nothing: every matching
//! policy's window is evaluated against the call's estimated tokens and cost.

use actix_web::{post, web, HttpRequest, HttpResponse};
use budget_events::decide::{Verdict, WindowCheck};
use budget_events::display::{dollars, thousands};
use budget_events::domain::alternatives::{Alternative, CallShape};
use budget_events::domain::{RecordUsage, UsageInput};
use budget_events::ledger::{CheckCommand, CheckOutcome};
use budget_events::money::decimal_json;
use budget_events::store::policies::{self, PolicyRow};
use budget_events::ErrorCode;
use budget_events::Money;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::body;
use crate::error::ApiError;
use crate::request::metadata;
use crate::routes::policies::PolicyView;
use crate::state::AppState;

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    #[schema(schema_with = budget_events::openapi::provider)]
    pub provider: String,
    #[schema(schema_with = budget_events::openapi::model)]
    pub model: String,
    /// The calling component; a key bound to a component names its own when this is left out.
    #[serde(default)]
    #[schema(schema_with = budget_events::openapi::component_unless_bound)]
    pub component: String,
    #[schema(schema_with = budget_events::openapi::optional_tier)]
    pub tier: Option<String>,
    #[schema(schema_with = budget_events::openapi::optional_task_type)]
    pub task_type: Option<String>,
    #[schema(schema_with = budget_events::openapi::optional_context_id)]
    pub context_id: Option<String>,
    #[schema(schema_with = budget_events::openapi::optional_session_id)]
    pub session_id: Option<String>,
    /// The end user the call is for: that user's limits decide too.
    #[serde(default)]
    #[schema(schema_with = budget_events::openapi::optional_user_id)]
    pub user_id: Option<String>,
    #[schema(schema_with = crate::openapi::schemas::tokens)]
    pub input_tokens: i64,
    /// The most output the call may produce (counts fully against limits).
    #[schema(schema_with = budget_events::openapi::optional_tokens)]
    pub max_output_tokens: Option<i64>,
    /// The output expected, when there is no maximum.
    #[schema(schema_with = budget_events::openapi::optional_tokens)]
    pub estimated_output_tokens: Option<i64>,
    /// The call's estimated cost in USD; until the price book lands, calls without it count tokens only.
    #[schema(schema_with = budget_events::openapi::optional_record_cost)]
    pub cost: Option<Money>,
    /// Reserve exactly this call (an allocation that lives 5 minutes) when it is allowed; record the
    /// usage with the returned `allocation_id`. Refused with 402 when a hard limit would be exceeded.
    pub reserve: Option<bool>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PolicyCheck {
    #[serde(flatten)]
    pub policy: PolicyView,
    pub window: String,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub used_cost: Decimal,
    pub used_tokens: i64,
    #[serde(with = "decimal_json")]
    #[schema(value_type = f64)]
    pub reserved_cost: Decimal,
    pub reserved_tokens: i64,
    /// What is left after this call, if it goes ahead (negative: by how much it would exceed).
    #[serde(with = "budget_events::money::optional_decimal_json")]
    #[schema(value_type = Option<f64>)]
    pub remaining_cost_after: Option<Decimal>,
    pub remaining_tokens_after: Option<i64>,
    /// allow, warn, refuse (hard limit would be exceeded) or track (ignore policies).
    #[schema(value_type = String)]
    pub decision: Verdict,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckResponse {
    /// False when any hard limit would be exceeded.
    pub allowed: bool,
    pub estimated_tokens: i64,
    #[schema(value_type = f64)]
    pub estimated_cost: Money,
    /// `client` (the request's cost), `price_book` (the model's price now) or `unpriced` (cost not known:
    /// only token limits can decide).
    #[schema(value_type = String)]
    pub cost_source: budget_events::domain::usage::CostSource,
    pub policies: Vec<PolicyCheck>,
    /// One sentence per policy that warns or refuses, one for a call the price book cannot price, and
    /// one when the model is retired or retiring within 90 days (the day its price's source gives).
    pub messages: Vec<String>,
    /// With `"reserve": true`: the allocation holding this call's tokens and cost.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation_id: Option<uuid::Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When a soft limit is near or over: cheaper models for this call (capable of its task type),
    /// largest saving first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub alternatives: Vec<Alternative>,
}

/// Pre-flight check of an intended call against every matching policy. Reserves nothing, unless
/// `reserve` asks for exactly this call to be held.
#[utoipa::path(tag = "usage", request_body = CheckRequest, responses((status = 200, body = CheckResponse), (status = 400, body = crate::error::ErrorBody)), security(("api_key" = ["write"])))]
#[post("/api/usage/check")]
pub async fn check(
    state: web::Data<AppState>,
    http: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let mut req: CheckRequest = body::parse(&body::read(payload, 64 * 1024).await?)?;
    crate::auth::caller(&http).speak_for(&mut req.component, || "component".into())?;
    let reserve = req.reserve.unwrap_or(false);
    let record = validate(&state, req)?;
    // Decided by the writer against the locked accounts, like a reservation; a refusal is logged there.
    let command = CheckCommand { call: record.clone(), unpriced: state.unpriced, metadata: metadata(&http) };
    let CheckOutcome { cost, cost_source, tokens, preflight, .. } = state.writer.submit(command).await?;
    let client = state.pool.get().await?;
    let rows = policies::list(&**client).await?;
    let (checks, mut messages) = describe((&record.provider, &record.model), &preflight.windows, &rows);
    // A soft limit recommends cheaper models rather than refusing.
    let mut alternatives = Vec::new();
    if preflight.soft_pressed {
        let call = Call {
            provider: record.provider.as_str(),
            model: record.model.as_str(),
            shape: CallShape {
                task_type: record.task_type.as_str(),
                input_tokens: record.input_tokens.get(),
                output_tokens: record.output_tokens.get(),
                calls: 1,
                include_local: false,
            },
            at: record.occurred_at,
        };
        alternatives = cheaper(&**client, &call).await?;
        messages.extend(offer(&alternatives, cost.amount(), "this call"));
    }
    let (provider, model) = (record.provider.as_str(), record.model.as_str());
    if cost_source == budget_events::domain::usage::CostSource::Unpriced {
        let fix = crate::routes::prices::or_else(
            crate::routes::prices::misspelled(&**client, provider, model, record.occurred_at).await?,
            format!("send its `cost`, or price it (`budget prices set {provider} {model} --input … --output …`)"),
        );
        messages.push(format!(
            "{provider}/{model} has no price, so its cost is unknown and cost limits cannot weigh this call (token limits still do); {fix}"
        ));
    }
    messages.extend(crate::routes::prices::retirement_note(&**client, provider, model, record.occurred_at).await?);
    let (mut allocation_id, mut expires_at) = (None, None);
    if reserve && preflight.allowed && tokens > 0 {
        let allocation = hold(&state, &http, &record, tokens, cost).await?;
        allocation_id = Some(allocation.allocation_id);
        expires_at = Some(allocation.expires_at);
    } else if reserve && !preflight.allowed {
        let refusing: Vec<&PolicyCheck> = checks.iter().filter(|c| c.decision == Verdict::Refuse).collect();
        return Err(ApiError::BudgetExceeded {
            message: format!("{}; nothing was reserved", messages.join("; ")),
            details: serde_json::json!(refusing),
        });
    }
    Ok(HttpResponse::Ok().json(CheckResponse {
        allowed: preflight.allowed,
        estimated_tokens: tokens,
        estimated_cost: cost,
        cost_source,
        policies: checks,
        messages,
        allocation_id,
        expires_at,
        alternatives,
    }))
}

/// The intended call, validated exactly like the record it would become.
fn validate(state: &AppState, req: CheckRequest) -> Result<RecordUsage, ApiError> {
    if req.max_output_tokens.is_some() && req.estimated_output_tokens.is_some() {
        return Err(ApiError::bad_request(
            ErrorCode::ValidationFailed,
            "give max_output_tokens or estimated_output_tokens, not both",
        ));
    }
    let mut as_record = UsageInput {
        provider: req.provider,
        model: req.model,
        component: req.component,
        task_type: req.task_type,
        context_id: req.context_id,
        session_id: req.session_id,
        tier: req.tier,
        input_tokens: req.input_tokens,
        output_tokens: req.max_output_tokens.or(req.estimated_output_tokens).unwrap_or(0),
        cached_input_tokens: None,
        cache_creation_input_tokens: None,
        reasoning_tokens: None,
        cost: req.cost,
        timestamp: None,
        request_id: None,
        allocation_id: None,
        user_id: req.user_id,
        operation_id: None,
        metadata: None,
    };
    state.fill_tier(&mut as_record);
    RecordUsage::validate_with(&as_record, Utc::now(), state.max_record_cost).map_err(|e| {
        let details = e.errors.iter().map(|f| serde_json::json!({"field": f.field, "message": f.message})).collect();
        ApiError::BadRequest {
            code: ErrorCode::ValidationFailed,
            message: e.to_string().replace("output_tokens", "max_output_tokens"),
            details: Some(serde_json::Value::Array(details)),
        }
    })
}

/// Each decided window as the API shows it, and a sentence for each that warns or refuses; `call` is
/// the provider and model, named when a window refuses it for having no price.
pub(crate) fn describe(
    call: (&impl std::fmt::Display, &impl std::fmt::Display),
    windows: &[WindowCheck],
    rows: &[PolicyRow],
) -> (Vec<PolicyCheck>, Vec<String>) {
    let mut checks = Vec::new();
    let mut messages = Vec::new();
    for window in windows {
        let Some(row) = rows.iter().find(|r| r.policy.id == window.policy_id) else { continue };
        let (policy, name) = (&row.policy, row.budget_name.as_str());
        let decision = window.verdict;
        if window.unpriced {
            messages.push(format!(
                "{} hard limit on {} (budget {name}): {}/{} has no price, so its cost cannot be checked against the limit and BUDGET_UNPRICED=reject refuses it; set its price with `budget prices set` or send the call's cost",
                policy.period,
                policy.scope.describe(),
                call.0,
                call.1,
            ));
        } else if matches!(decision, Verdict::Warn | Verdict::Refuse) {
            // What the window would hold with the call, against each of its limits.
            let mut with_call = Vec::new();
            let mut over = false;
            if let (Some(limit), Some(left)) = (policy.cost_limit, window.remaining_cost_after) {
                let limit = limit.amount();
                over |= left < Decimal::ZERO;
                with_call.push(format!(
                    "{} of {}{}",
                    dollars(limit - left),
                    dollars(limit),
                    percent(limit - left, limit)
                ));
            }
            if let (Some(limit), Some(left)) = (policy.token_limit, window.remaining_tokens_after) {
                over |= left < 0;
                with_call.push(format!(
                    "{} of {} tokens{}",
                    thousands(limit - left),
                    thousands(limit),
                    percent(Decimal::from(limit - left), Decimal::from(limit))
                ));
            }
            let (head, tail) = match decision {
                Verdict::Refuse => (" refuses this call", ""),
                _ if over => ("", ", over the limit"),
                _ => ("", ", near the limit"),
            };
            messages.push(format!(
                "{} {} policy on {} (budget {name}){head}: with it, {} would hold {}{tail}",
                policy.period,
                policy.policy_type,
                policy.scope.describe(),
                window_in_words(&window.window),
                with_call.join(" and "),
            ));
        }
        checks.push(PolicyCheck {
            policy: PolicyView::new(policy, name),
            window: window.window.clone(),
            window_start: window.window_start,
            window_end: window.window_end,
            used_cost: window.account.posted_cost,
            used_tokens: window.account.posted_tokens,
            reserved_cost: window.account.pending_cost,
            reserved_tokens: window.account.pending_tokens,
            remaining_cost_after: window.remaining_cost_after,
            remaining_tokens_after: window.remaining_tokens_after,
            decision,
        });
    }
    (checks, messages)
}

/// "its window starting 2026-12-04T00:00:00Z" for a calendar window; "task t-1's window" for a
/// per-task one, whose key names its task instead of a start.
fn window_in_words(key: &str) -> String {
    match budget_events::domain::policy::window_owner(key) {
        Some(owner) => format!("{owner}'s window"),
        None => format!("its window starting {key}"),
    }
}

/// " (110%)": `part` of a non-zero `whole`, to one decimal place; nothing for a zero limit.
fn percent(part: Decimal, whole: Decimal) -> String {
    if whole.is_zero() {
        return String::new();
    }
    format!(" ({}%)", (part * Decimal::ONE_HUNDRED / whole).round_dp(1).normalize())
}

/// What a reservation's warn and soft-limit windows say ([`budget_events::decide::Reserved::warnings`]).
pub(crate) struct Pressed {
    pub checks: Vec<PolicyCheck>,
    /// A sentence per window, and one naming the best cheaper model when a soft limit is pressed.
    pub messages: Vec<String>,
    pub alternatives: Vec<Alternative>,
}

/// Puts a reservation's `warnings` into a check's words; when a soft limit is among them and the
/// reservation names its model (`call`), adds the cheaper models for it, against its estimate `cost`.
pub(crate) async fn pressed(
    client: &impl tokio_postgres::GenericClient,
    warnings: &[WindowCheck],
    call: Option<Call<'_>>,
    cost: Decimal,
    what: &str,
) -> Result<Pressed, ApiError> {
    let rows = policies::list(client).await?;
    let named = call.as_ref().map_or(("(any)", "(any)"), |c| (c.provider, c.model));
    let (checks, mut messages) = describe((&named.0, &named.1), warnings, &rows);
    let mut alternatives = Vec::new();
    if let Some(call) = call.filter(|_| checks.iter().any(|c| c.policy.policy_type == "soft_limit")) {
        alternatives = cheaper(client, &call).await?;
        messages.extend(offer(&alternatives, cost, what));
    }
    Ok(Pressed { checks, messages, alternatives })
}

/// A call a soft limit presses, for [`cheaper`]: its model, its tokens and when it is made.
pub(crate) struct Call<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub shape: CallShape<'a>,
    pub at: DateTime<Utc>,
}

/// Up to three cheaper models able to do the call's task, largest saving first; none when the call's
/// model has no price.
async fn cheaper(client: &impl tokio_postgres::GenericClient, call: &Call<'_>) -> Result<Vec<Alternative>, ApiError> {
    let versions = budget_events::store::prices::versions_for_model(client, call.provider, call.model).await?;
    let Some((current, _)) = budget_events::domain::price::resolve(&versions, call.provider, call.model, call.at)
    else {
        return Ok(Vec::new());
    };
    let in_effect = crate::offers::offers(client, call.at).await?;
    let mut alternatives = budget_events::domain::alternatives::cheaper_alternatives(&in_effect, current, &call.shape);
    alternatives.truncate(3);
    Ok(alternatives)
}

/// The sentence that points a soft limit's caller at the best of `alternatives` for `what` (which
/// costs `cost` as asked).
fn offer(alternatives: &[Alternative], cost: Decimal, what: &str) -> Option<String> {
    let best = alternatives.first()?;
    Some(format!(
        "soft limit: {}/{} would cost {} instead of {} for {what} (saves {}); see alternatives",
        best.provider,
        best.model,
        dollars(best.cost),
        dollars(cost),
        dollars(best.savings),
    ))
}

/// Reserves exactly the checked call for a few minutes. Decided again by the writer against the locked
/// accounts: a concurrent call may have taken the room since the check, and then this is a 402 like any
/// refused reservation.
async fn hold(
    state: &AppState,
    http: &HttpRequest,
    record: &RecordUsage,
    tokens: i64,
    cost: Money,
) -> Result<budget_events::domain::allocation::Allocation, ApiError> {
    let input = budget_events::domain::allocation::AllocationInput {
        context_id: record.context_id.as_ref().map_or_else(|| "pre-flight".into(), |c| c.to_string()),
        component: record.component.to_string(),
        tier: Some(record.tier.to_string()),
        provider: Some(record.provider.to_string()),
        model: Some(record.model.to_string()),
        task_type: Some(record.task_type.to_string()),
        priority: None,
        tokens: Some(tokens),
        estimated_cost: Some(cost),
        ttl: Some(serde_json::json!(budget_events::domain::allocation::CHECK_TTL.num_seconds())),
        request_id: None,
        user_id: record.user_id.as_ref().map(ToString::to_string),
        session_id: record.session_id.as_ref().map(ToString::to_string),
    };
    let mut allocation = crate::routes::allocations::validate(state, &input)?;
    // A call that names no task falls under no per-task limit; nor does its hold, whose context is only
    // a label (before, the holds of such checks shared one made-up task's window).
    allocation.context_is_task = record.context_id.is_some();
    let metadata = metadata(http);
    let command = budget_events::ledger::AllocateCommand {
        allocation,
        unpriced: state.unpriced,
        key: None,
        signer: metadata.key_id,
        metadata,
    };
    Ok(state.writer.submit(command).await?.allocation)
}
