//! A gateway call through the write path: reserve its worst case before forwarding, settle what the
//! upstream reported (or, when it reported nothing, the worst case) and release the rest. Every call is
//! an ordinary allocation and an ordinary usage record, so audit, alerts, the dashboard and the
//! assistant see it like any other.

use budget_events::domain::allocation::{Allocation, CreateAllocation};
use budget_events::domain::names::{Component, ContextId, Model, Provider, SessionId, TaskType, UserId};
use budget_events::domain::usage::RecordUsage;
use budget_events::domain::UsageInput;
use budget_events::ledger::{
    AllocateCommand, AllocationOutcome, CommandError, ReleaseCommand, UsageCommand, UsageItem,
};
use budget_events::store::idempotency::IdempotencyKey;
use budget_events::writer::WriteError;
use budget_events::{EventMetadata, Money};
use rust_decimal::Decimal;

use crate::error::ApiError;
use crate::state::AppState;

/// Who a call is for and what it may cost at most.
#[derive(Debug, Clone)]
pub struct CallFacts {
    pub provider: String,
    pub model: String,
    pub component: String,
    pub context_id: String,
    pub task_type: String,
    pub user_id: Option<String>,
    /// `X-Budget-Session-Id`: the session whose per-session limits the call counts under.
    pub session_id: Option<String>,
    /// The input bound ([`super::estimate`]).
    pub input_tokens: i64,
    /// The most the answer can take: `max_tokens` (× `n` choices).
    pub output_tokens: i64,
    pub metadata: EventMetadata,
}

/// The tokens an upstream reported for a call, in Budget's terms (cached and cache-written tokens are
/// parts of the input, reasoning tokens part of the output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: i64,
    pub cached_input: i64,
    pub cache_creation: i64,
    pub output: i64,
    pub reasoning: i64,
}

/// What a settled call cost and what is left.
#[derive(Debug, Clone)]
pub struct Settled {
    pub cost: Option<Money>,
    pub remaining: Remaining,
}

/// USD left under the tightest hard cost limit a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remaining {
    Unlimited,
    Usd(Decimal),
}

impl std::fmt::Display for Remaining {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Remaining::Unlimited => f.write_str("unlimited"),
            Remaining::Usd(d) => write!(f, "{}", d.normalize()),
        }
    }
}

/// Longest a gateway reservation lives if its call never settles (the process died mid-call): the
/// sweeper then returns it. Calls that run longer are settled all the same (the usage is a fact).
pub const RESERVATION_TTL: chrono::Duration = chrono::Duration::minutes(15);

/// Reserves the call's worst case: refused (402, with each refusing window) when a hard limit would be
/// passed. The outcome's warnings are the warn and soft-limit windows it presses ([`warnings`]).
pub async fn reserve(state: &AppState, facts: &CallFacts) -> Result<AllocationOutcome, ApiError> {
    let invalid = |field: &str, e: String| {
        ApiError::validation(vec![(field.to_string(), e)], "nothing was reserved and nothing was forwarded")
    };
    let provider = Provider::parse(&facts.provider).map_err(|e| invalid("provider", e.to_string()))?;
    let model = Model::parse(&facts.model).map_err(|e| invalid("model", e.to_string()))?;
    let tokens = facts.input_tokens + facts.output_tokens;
    if tokens > budget_events::domain::usage::MAX_TOKENS_PER_RECORD {
        return Err(invalid(
            "max_tokens",
            format!("the call could take {} tokens; ask for fewer", budget_events::display::thousands(tokens)),
        ));
    }
    let allocation = CreateAllocation {
        context_id: ContextId::parse(&facts.context_id).map_err(|e| invalid("context_id", e.to_string()))?,
        component: Component::parse(&facts.component).map_err(|e| invalid("component", e.to_string()))?,
        tier: state.tiers.resolve(provider.as_str(), model.as_str()),
        provider: Some(provider),
        model: Some(model),
        task_type: TaskType::parse(&facts.task_type).map_err(|e| invalid("task_type", e.to_string()))?,
        priority: 5,
        tokens: tokens.max(1),
        // Replaced by the price book's worst case in the write path; kept only for an unpriced model,
        // where the tier's reference price is the estimate, as for any allocation.
        estimated_cost: Money::new(
            (budget_events::domain::allocation::tier_reference_price(
                state.tiers.resolve(&facts.provider, &facts.model),
            ) * Decimal::from(tokens.max(1)))
            .round_dp(budget_events::money::MONEY_SCALE),
        )
        .map_err(|e| invalid("max_tokens", e.to_string()))?,
        estimated_by_client: false,
        ttl: RESERVATION_TTL,
        user_id: match &facts.user_id {
            Some(u) => Some(UserId::parse(u).map_err(|e| invalid("user_id", e.to_string()))?),
            None => None,
        },
        session_id: match &facts.session_id {
            Some(s) => Some(SessionId::parse(s).map_err(|e| invalid("X-Budget-Session-Id", e.to_string()))?),
            None => None,
        },
        context_is_task: true,
        // The gateway knows both: the task type (its header or the API's) and the tier of the provider.
        task_type_open: false,
        tier_open: false,
        input_tokens: Some(facts.input_tokens),
    };
    let command = AllocateCommand {
        allocation,
        unpriced: state.unpriced,
        key: None,
        metadata: facts.metadata.clone(),
        signer: facts.metadata.key_id,
    };
    Ok(state.writer.submit(command).await?)
}

/// What the call's warn and soft-limit windows say, a sentence each, and the cheaper model a pressed
/// soft limit recommends: the answer's `x-budget-warning` headers. The call is reserved by then, so a
/// failure to read the policies loses the sentences, not the call.
pub async fn warnings(state: &AppState, outcome: &AllocationOutcome, facts: &CallFacts) -> Vec<String> {
    if outcome.warnings.is_empty() {
        return Vec::new();
    }
    let a = &outcome.allocation;
    let call = crate::routes::check::Call {
        provider: &facts.provider,
        model: &facts.model,
        shape: budget_events::domain::alternatives::CallShape {
            task_type: &facts.task_type,
            input_tokens: facts.input_tokens,
            output_tokens: facts.output_tokens,
            calls: 1,
            include_local: false,
        },
        at: a.created_at,
    };
    let pressed = match state.pool.get().await {
        Ok(client) => {
            crate::routes::check::pressed(&**client, &outcome.warnings, Some(call), a.estimated_cost, "this call").await
        }
        Err(e) => Err(e.into()),
    };
    match pressed {
        // A header carries visible ASCII only; names are free text.
        Ok(p) => p
            .messages
            .into_iter()
            .map(|m| m.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect())
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the gateway could not word a call's limit warnings");
            Vec::new()
        }
    }
}

/// Records the call's usage against its reservation, releases what is left, and reads what remains.
pub async fn settle(
    state: &AppState,
    allocation: &Allocation,
    facts: &CallFacts,
    usage: Usage,
    source: &'static str,
) -> Result<Settled, ApiError> {
    let mut metadata = serde_json::Map::new();
    metadata.insert("gateway".into(), true.into());
    metadata.insert("usage_source".into(), source.into());
    let mut input = UsageInput {
        provider: facts.provider.clone(),
        model: facts.model.clone(),
        component: facts.component.clone(),
        task_type: Some(facts.task_type.clone()),
        context_id: Some(facts.context_id.clone()),
        session_id: facts.session_id.clone(),
        tier: None,
        input_tokens: usage.input,
        output_tokens: usage.output,
        cached_input_tokens: (usage.cached_input > 0).then_some(usage.cached_input),
        cache_creation_input_tokens: (usage.cache_creation > 0).then_some(usage.cache_creation),
        reasoning_tokens: (usage.reasoning > 0).then_some(usage.reasoning),
        cost: None,
        timestamp: None,
        request_id: None,
        allocation_id: Some(allocation.allocation_id),
        user_id: facts.user_id.clone(),
        operation_id: None,
        metadata: Some(metadata),
    };
    state.fill_tier(&mut input);
    let record = RecordUsage::validate_with(&input, chrono::Utc::now(), state.max_record_cost)
        .map_err(|e| ApiError::Internal(format!("the gateway's usage record is invalid: {:?}", e.errors)))?;
    // One settlement per allocation, even if this ran twice.
    let key =
        IdempotencyKey::new_canonical("gateway-settle", &allocation.allocation_id.to_string(), &input.canonical())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    let command = UsageCommand {
        items: vec![UsageItem { record, key: Some(key) }],
        key: None,
        metadata: facts.metadata.clone(),
        // Settles a call admitted on its reservation: kept even if the key is revoked meanwhile.
        signer: None,
    };
    // The release goes right behind the record: one commit for both, and always after it.
    let release =
        ReleaseCommand { allocation_id: allocation.allocation_id, key: None, metadata: facts.metadata.clone() };
    let (recorded, released) = state.writer.submit_then(command, release).await;
    let item = recorded?.items.pop().expect("one outcome per record");
    if let Some(error) = item.error {
        return Err(ApiError::Internal(format!("the gateway's usage record was refused: {}", error.message)));
    }
    released_or_resolved(released)?;
    Ok(Settled { cost: item.cost, remaining: remaining(state, allocation).await? })
}

/// A release that found the allocation already resolved (used up by its record) did its job.
fn released_or_resolved<T>(released: Result<T, WriteError>) -> Result<(), ApiError> {
    match released {
        Ok(_) | Err(WriteError::Rejected(CommandError::AlreadyResolved { .. })) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Voids what the reservation still holds; a reservation already used up (exhausted) is left as it is.
pub async fn release(state: &AppState, allocation: &Allocation, metadata: &EventMetadata) -> Result<(), ApiError> {
    let command = ReleaseCommand { allocation_id: allocation.allocation_id, key: None, metadata: metadata.clone() };
    released_or_resolved(state.writer.submit(command).await)
}

/// The room left under the tightest hard cost limit among the windows the call reserved in.
pub async fn remaining(state: &AppState, allocation: &Allocation) -> Result<Remaining, ApiError> {
    if allocation.reservations.is_empty() {
        return Ok(Remaining::Unlimited);
    }
    let client = state.pool.get().await?;
    let keys: Vec<(uuid::Uuid, String)> =
        allocation.reservations.iter().map(|p| (p.policy_id, p.window.clone())).collect();
    let tightest = budget_events::store::policies::tightest_hard_cost_room(&**client, &keys).await?;
    Ok(tightest.map_or(Remaining::Unlimited, |room| Remaining::Usd(room.max(Decimal::ZERO))))
}
