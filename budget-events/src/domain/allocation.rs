//! Allocations: two-phase reservations of tokens (and their estimated cost) for a task and component,
//! in the spirit of TigerBeetle's pending transfers: create (pending, with expiry) → usage settles
//! against it → release or expiry voids the rest. Each resolves at most once.

use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::names::{Component, ContextId, Model, Provider, SessionId, TaskType, UserId};
use super::policy::Tier;
use crate::event::Posting;
use crate::Money;

/// Default lifetime of an allocation.
pub const DEFAULT_TTL: Duration = Duration::hours(24);
/// Lifetime of the allocation a reserving pre-flight check creates.
pub const CHECK_TTL: Duration = Duration::minutes(5);
/// Longest lifetime an allocation may ask for.
pub const MAX_TTL: Duration = Duration::days(31);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocationState {
    Active,
    Released,
    Expired,
    Exhausted,
}

impl AllocationState {
    pub fn as_str(self) -> &'static str {
        match self {
            AllocationState::Active => "active",
            AllocationState::Released => "released",
            AllocationState::Expired => "expired",
            AllocationState::Exhausted => "exhausted",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "active" => Ok(AllocationState::Active),
            "released" => Ok(AllocationState::Released),
            "expired" => Ok(AllocationState::Expired),
            "exhausted" => Ok(AllocationState::Exhausted),
            _ => Err(format!("`{s}` is not an allocation state; use active, released, expired or exhausted")),
        }
    }
}

/// An allocation request as it arrives on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AllocationInput {
    /// The task (or session) the tokens are for.
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::context_id))]
    pub context_id: String,
    /// The component that will spend the tokens; a key bound to a component names its own when this is
    /// left out.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::component_unless_bound))]
    pub component: String,
    /// local_lightweight, local_midweight or remote_heavyweight (default: from provider/model, else remote).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_tier))]
    pub tier: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_provider))]
    pub provider: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_model))]
    pub model: Option<String>,
    /// chat, coding, analysis, embedding… (default `default`).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_task_type))]
    pub task_type: Option<String>,
    /// 1 (low) to 10 (critical); default 5. Priority never bypasses a hard limit.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_priority))]
    pub priority: Option<i64>,
    /// Tokens to reserve; default by task type and priority.
    #[serde(default, alias = "tokens_allocated")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_reserved_tokens))]
    pub tokens: Option<i64>,
    /// USD to reserve with the tokens; default: tokens at the tier's reference price.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_limit))]
    pub estimated_cost: Option<Money>,
    /// Lifetime: `90s`, `15m`, `2h`, `1d`, or seconds; default 24h.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_ttl))]
    pub ttl: Option<serde_json::Value>,
    /// Idempotency key (the `Idempotency-Key` header does the same).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_request_id))]
    pub request_id: Option<String>,
    /// The end user the task runs for: the reservation counts against that user's limits (and, without
    /// it, against no user's).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_user_id))]
    pub user_id: Option<String>,
    /// The session the task runs in: the reservation holds room under that session's per-session
    /// limits (and, without it, under none).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::optional_session_id))]
    pub session_id: Option<String>,
}

/// A validated allocation request.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateAllocation {
    pub context_id: ContextId,
    pub component: Component,
    pub tier: Tier,
    pub provider: Option<Provider>,
    pub model: Option<Model>,
    pub task_type: TaskType,
    pub priority: i16,
    pub tokens: i64,
    pub estimated_cost: Money,
    /// True when the client gave `estimated_cost`; otherwise the write path prices the tokens from the
    /// book (`decide::allocation_estimate`) and keeps the tier reference estimate only for unpriced models.
    pub estimated_by_client: bool,
    pub ttl: Duration,
    pub user_id: Option<UserId>,
    /// The session it runs in: its reservation holds room in the session's per-session windows.
    pub session_id: Option<SessionId>,
    /// Whether `context_id` names a task, whose per-task windows the reservation holds room in. False
    /// only for the hold of a check that named no task (its `context_id` is a label, not a task).
    pub context_is_task: bool,
    /// True when the request named no task type (it is then `default`): the call could be of any, so
    /// the reservation holds room under every policy scoped to one, as an open provider or model does.
    pub task_type_open: bool,
    /// True when the request named neither a tier nor a provider to derive one from (it is then
    /// `remote_heavyweight`): the reservation holds room under every tier's policies.
    pub tier_open: bool,
    /// Of `tokens`, how many are the call's input, when the caller knows (the gateway counts the prompt
    /// and takes the rest from `max_tokens`): the estimate then prices each part at its own worst rate.
    /// None over REST, where how the tokens will split is not known.
    pub input_tokens: Option<i64>,
}

/// Reference price per token of each tier, used when the request gives no estimate and the price book
/// has no price for the model (USD; local models cost nothing).
pub fn tier_reference_price(tier: Tier) -> Decimal {
    match tier {
        Tier::LocalLightweight | Tier::LocalMidweight => Decimal::ZERO,
        // $10 per million tokens: the order of a hosted frontier model's blended price.
        Tier::RemoteHeavyweight => Decimal::new(1, 5),
    }
}

/// Tokens reserved when a request names none, by task type (`default` for the others); scaled by
/// priority. Configured with `BUDGET_ALLOCATION_DEFAULTS` (JSON: `{"coding": 12000, "default": 3000}`;
/// unlisted types keep the built-in sizes).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct AllocationDefaults(std::collections::HashMap<String, i64>);

impl Default for AllocationDefaults {
    fn default() -> Self {
        let sizes = [
            ("chat", 4_000),
            ("coding", 8_000),
            ("code_generation", 8_000),
            ("analysis", 16_000),
            ("embedding", 2_000),
            ("default", 4_000),
        ];
        AllocationDefaults(sizes.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
}

impl AllocationDefaults {
    pub fn parse(json: &str) -> Result<Self, String> {
        let given: std::collections::HashMap<String, i64> = serde_json::from_str(json)
            .map_err(|e| format!("{e}; expected {{\"TASK_TYPE\": TOKENS, \"default\": TOKENS}}"))?;
        if let Some((k, v)) =
            given.iter().find(|(_, v)| !(1..=crate::domain::usage::MAX_TOKENS_PER_RECORD).contains(*v))
        {
            return Err(format!("`{k}` is {v} tokens; give each task type 1 to 1,000,000,000"));
        }
        let mut defaults = AllocationDefaults::default();
        defaults.0.extend(given);
        Ok(defaults)
    }

    pub fn tokens(&self, task_type: &str, priority: i16) -> i64 {
        let base = self.0.get(task_type).or_else(|| self.0.get("default")).copied().unwrap_or(4_000);
        scale(base, priority)
    }
}

/// Tokens reserved when the request names none, with the built-in sizes.
pub fn default_tokens(task_type: &str, priority: i16) -> i64 {
    AllocationDefaults::default().tokens(task_type, priority)
}

fn scale(base: i64, priority: i16) -> i64 {
    match priority {
        1..=3 => base / 2,
        4..=7 => base,
        8..=9 => base * 3 / 2,
        _ => base * 2,
    }
}

/// `90s`, `15m`, `2h`, `1d` or a number of seconds.
pub fn parse_ttl(value: &serde_json::Value) -> Result<Duration, String> {
    // A string is shown as given (`5y`), not as JSON (`"5y"`).
    let shown = value.as_str().map_or_else(|| value.to_string(), str::to_string);
    let bad = || format!("ttl `{shown}` is not a duration; use e.g. 90s, 15m, 2h, 1d, or a number of seconds");
    let seconds = match value {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(bad)?,
        serde_json::Value::String(s) => crate::period::parse_duration_seconds(s).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    let ttl = Duration::seconds(seconds);
    if ttl <= Duration::zero() || ttl > MAX_TTL {
        return Err(format!("ttl is {seconds}s; it must be more than 0 and at most 31 days"));
    }
    Ok(ttl)
}

impl CreateAllocation {
    /// Validates every field; reports every problem at once as (field, message).
    pub fn validate(
        input: &AllocationInput,
        tier_for: impl Fn(&str, &str) -> Tier,
        defaults: &AllocationDefaults,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut fail = |f: &str, m: String| errors.push((f.to_string(), m));
        let context_id = ContextId::parse(&input.context_id).map_err(|e| fail("context_id", e.to_string())).ok();
        let component = Component::parse(&input.component).map_err(|e| fail("component", e.to_string())).ok();
        let provider = match &input.provider {
            Some(p) => Provider::parse(p).map(Some).map_err(|e| fail("provider", e.to_string())).ok(),
            None => Some(None),
        };
        let model = match &input.model {
            Some(m) => Model::parse(m).map(Some).map_err(|e| fail("model", e.to_string())).ok(),
            None => Some(None),
        };
        let task_type = match &input.task_type {
            Some(t) => TaskType::parse(t).map_err(|e| fail("task_type", e.to_string())).ok(),
            None => Some(TaskType::default_type()),
        };
        let tier = match (&input.tier, &input.provider) {
            (Some(t), _) => t.parse::<Tier>().map_err(|e| fail("tier", e)).ok(),
            (None, Some(p)) => Some(tier_for(p, input.model.as_deref().unwrap_or(""))),
            (None, None) => Some(Tier::RemoteHeavyweight),
        };
        let priority = input.priority.unwrap_or(5);
        if !(1..=10).contains(&priority) {
            fail("priority", format!("priority is {priority}; use 1 (low) to 10 (critical), 5 is normal"));
        }
        if let Some(t) = input.tokens {
            if !(1..=crate::domain::usage::MAX_TOKENS_PER_RECORD).contains(&t) {
                fail("tokens", format!("tokens is {t}; reserve from 1 to 1,000,000,000"));
            }
        }
        let ttl = match &input.ttl {
            Some(v) => parse_ttl(v).map_err(|e| fail("ttl", e)).ok(),
            None => Some(DEFAULT_TTL),
        };
        let user_id = match &input.user_id {
            Some(u) => UserId::parse(u).map(Some).map_err(|e| fail("user_id", e.to_string())).ok().flatten(),
            None => None,
        };
        let session_id = match &input.session_id {
            Some(s) => SessionId::parse(s).map(Some).map_err(|e| fail("session_id", e.to_string())).ok().flatten(),
            None => None,
        };
        match (context_id, component, provider, model, task_type, tier, ttl) {
            (
                Some(context_id),
                Some(component),
                Some(provider),
                Some(model),
                Some(task_type),
                Some(tier),
                Some(ttl),
            ) if errors.is_empty() => {
                let priority = priority as i16;
                let tokens = input.tokens.unwrap_or_else(|| defaults.tokens(task_type.as_str(), priority));
                let estimated_cost = match input.estimated_cost {
                    Some(c) => c,
                    None => Money::new(
                        (tier_reference_price(tier) * Decimal::from(tokens)).round_dp(crate::money::MONEY_SCALE),
                    )
                    .expect("a reference estimate fits a money column"),
                };
                Ok(CreateAllocation {
                    context_id,
                    component,
                    tier,
                    provider,
                    model,
                    task_type,
                    priority,
                    tokens,
                    estimated_cost,
                    estimated_by_client: input.estimated_cost.is_some(),
                    ttl,
                    user_id,
                    session_id,
                    context_is_task: true,
                    task_type_open: input.task_type.is_none(),
                    tier_open: input.tier.is_none() && input.provider.is_none(),
                    input_tokens: None,
                })
            }
            _ => Err(errors),
        }
    }
}

/// An allocation as the write path holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub allocation_id: Uuid,
    pub context_id: String,
    pub component: String,
    pub tier: Tier,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub task_type: String,
    pub priority: i16,
    pub tokens_allocated: i64,
    pub estimated_cost: Decimal,
    pub expires_at: DateTime<Utc>,
    pub state: AllocationState,
    pub input_tokens_used: i64,
    pub output_tokens_used: i64,
    pub actual_cost: Decimal,
    /// Still reserved (pending) in each window of `reservations`.
    pub remaining_tokens: i64,
    pub remaining_cost: Decimal,
    /// The request named no task type / no tier ([`CreateAllocation::task_type_open`]).
    pub task_type_open: bool,
    pub tier_open: bool,
    pub reservations: Vec<Posting>,
    /// The end user it was reserved for.
    pub user_id: Option<String>,
    pub created_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
}

impl Allocation {
    pub fn tokens_used(&self) -> i64 {
        self.input_tokens_used + self.output_tokens_used
    }

    /// Asserted wherever an allocation changes: what is reserved never goes below zero, and only an
    /// active allocation reserves anything.
    pub fn check_invariants(&self) {
        assert!(self.remaining_tokens >= 0 && self.remaining_cost >= Decimal::ZERO, "negative reservation: {self:?}");
        assert!(
            self.state == AllocationState::Active || (self.remaining_tokens == 0 && self.remaining_cost.is_zero()),
            "a resolved allocation still reserves: {self:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_and_default_sizes() {
        assert_eq!(parse_ttl(&serde_json::json!("15m")).unwrap(), Duration::minutes(15));
        assert_eq!(parse_ttl(&serde_json::json!(90)).unwrap(), Duration::seconds(90));
        assert_eq!(parse_ttl(&serde_json::json!("1d")).unwrap(), Duration::days(1));
        assert_eq!(
            parse_ttl(&serde_json::json!("soon")).unwrap_err(),
            "ttl `soon` is not a duration; use e.g. 90s, 15m, 2h, 1d, or a number of seconds"
        );
        assert!(parse_ttl(&serde_json::json!(true)).unwrap_err().starts_with("ttl `true` is not"));
        assert!(parse_ttl(&serde_json::json!("0s")).is_err());
        assert!(parse_ttl(&serde_json::json!("40d")).is_err());
        assert_eq!(default_tokens("coding", 5), 8_000);
        assert_eq!(default_tokens("coding", 8), 12_000);
        assert_eq!(default_tokens("chat", 1), 2_000);
        assert_eq!(default_tokens("anything", 10), 8_000);
    }

    #[test]
    fn an_allocation_request_is_validated_and_sized() {
        let input: AllocationInput = serde_json::from_value(serde_json::json!({
            "context_id": "task-123", "component": "rhetor", "tokens": 10000, "tier": "remote_heavyweight"
        }))
        .unwrap();
        let a = CreateAllocation::validate(&input, Tier::derive, &AllocationDefaults::default()).unwrap();
        assert_eq!((a.tokens, a.priority, a.ttl), (10_000, 5, DEFAULT_TTL));
        assert_eq!(a.estimated_cost.to_string(), "0.1", "10,000 tokens at the remote reference price");
        let bad: AllocationInput = serde_json::from_value(serde_json::json!({
            "context_id": " ", "component": "c", "priority": 11, "tokens": 0, "ttl": "x", "tier": "huge"
        }))
        .unwrap();
        let fields: Vec<String> = CreateAllocation::validate(&bad, Tier::derive, &AllocationDefaults::default())
            .unwrap_err()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(fields, ["context_id", "tier", "priority", "tokens", "ttl"]);
        let custom = AllocationDefaults::parse(r#"{"coding": 1000, "default": 300}"#).unwrap();
        assert_eq!(
            (custom.tokens("coding", 5), custom.tokens("other", 10), custom.tokens("analysis", 5)),
            (1000, 600, 16_000)
        );
        assert!(AllocationDefaults::parse(r#"{"chat": 0}"#).is_err());
    }
}
