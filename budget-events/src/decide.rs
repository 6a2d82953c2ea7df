//! Decisions: pure functions from a validated command, and the state it is decided against, to the
//! events it produces. No I/O here, so every rule is unit-tested without a database.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::domain::policy::{Account, CallFacts, Policy, PolicyType, SetPolicy, Window};
use crate::domain::usage::CostSource;
use crate::domain::RecordUsage;
use crate::event::{PolicySet, Posting, UsageRecorded};
use crate::money::Money;
use crate::store::accounts::AccountKey;

/// The stream a usage record lives in: one stream per record, version 1.
pub fn usage_stream(record_id: Uuid) -> String {
    format!("usage-{record_id}")
}

pub fn policy_stream(policy_id: Uuid) -> String {
    format!("policy-{policy_id}")
}

pub fn allocation_stream(allocation_id: Uuid) -> String {
    format!("allocation-{allocation_id}")
}

pub fn budget_stream(budget_id: Uuid) -> String {
    format!("budget-{budget_id}")
}

/// The facts of a record that scopes and windows look at.
pub fn call_facts(record: &RecordUsage) -> CallFacts<'_> {
    CallFacts {
        provider: record.provider.as_str(),
        model: record.model.as_str(),
        component: record.component.as_str(),
        tier: record.tier,
        task_type: record.task_type.as_str(),
        session_id: record.session_id.as_ref().map(|s| s.as_str()),
        context_id: record.context_id.as_ref().map(|s| s.as_str()),
        at: record.occurred_at,
    }
}

/// Every enabled policy the call counts against, with the window it counts in.
pub fn matching_windows<'p>(policies: &'p [Policy], call: &CallFacts<'_>) -> Vec<(&'p Policy, Window)> {
    policies
        .iter()
        .filter(|p| p.enabled && p.scope.matches(call))
        .filter_map(|p| p.period.window(p.timezone, call).map(|w| (p, w)))
        .collect()
}

/// What the price book says a record costs.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceQuote {
    pub version_id: Uuid,
    pub resolved_model: String,
    pub cost: Money,
}

/// The correction a re-price makes to a record: priced from the book (or unpriced) with a version other
/// than the one in effect at its time now. Records that carry the client's own cost are left alone.
pub fn reprice(
    priced: &crate::store::repricing::PricedRecord,
    versions: &[crate::domain::price::PriceVersion],
) -> Option<crate::event::UsageRepriced> {
    if priced.cost_source == CostSource::Client {
        return None;
    }
    let r = &priced.record;
    let (version, resolved_model) =
        crate::domain::price::resolve(versions, r.provider.as_str(), r.model.as_str(), r.occurred_at)?;
    if priced.price_version == Some(version.version_id) {
        return None;
    }
    let c = crate::domain::price::cost(&version.spec, r.input_tokens, r.cached_input_tokens, r.output_tokens);
    let cost = Money::new(c.total_cost).ok()?;
    Some(crate::event::UsageRepriced {
        record_id: r.record_id,
        provider: r.provider.clone(),
        model: r.model.clone(),
        component: r.component.clone(),
        task_type: r.task_type.clone(),
        occurred_at: r.occurred_at,
        previous_cost: priced.cost,
        previous_price_version: priced.price_version,
        cost,
        delta: cost.amount() - priced.cost.amount(),
        price_version: version.version_id,
        resolved_model,
        postings: r.postings.clone(),
    })
}

/// Moves every account a corrected record was posted to by the correction's delta.
pub fn post_correction(correction: &crate::event::UsageRepriced, accounts: &mut BTreeMap<AccountKey, Account>) {
    for posting in &correction.postings {
        let account = accounts
            .get_mut(&(posting.policy_id, posting.window.clone()))
            .expect("the write path locks every account a correction posts to");
        account.posted_cost += correction.delta;
        assert!(account.posted_cost >= rust_decimal::Decimal::ZERO, "a correction never takes an account below zero");
    }
}

/// Prices a record with the version in effect at its time, if its model has one.
pub fn quote(record: &RecordUsage, versions: &[crate::domain::price::PriceVersion]) -> Option<PriceQuote> {
    let (version, resolved_model) =
        crate::domain::price::resolve(versions, record.provider.as_str(), record.model.as_str(), record.occurred_at)?;
    let c = crate::domain::price::cost(
        &version.spec,
        record.input_tokens.get(),
        record.cached_input_tokens,
        record.output_tokens.get(),
    );
    Some(PriceQuote { version_id: version.version_id, resolved_model, cost: Money::new(c.total_cost).ok()? })
}

/// The cost a record counts with: the client's, else the price book's, else 0 while unpriced.
pub fn record_cost_with(record: &RecordUsage, quote: Option<&PriceQuote>) -> (Money, CostSource) {
    match (record.cost, quote) {
        (Some(cost), _) => (cost, CostSource::Client),
        (None, Some(q)) => (q.cost, CostSource::PriceBook),
        (None, None) => (Money::ZERO, CostSource::Unpriced),
    }
}

/// The cost a record counts with when no price book is at hand: the client's, or 0 while unpriced.
pub fn record_cost(record: &RecordUsage) -> (Money, CostSource) {
    record_cost_with(record, None)
}

/// Usage records are facts: a call that happened is always recorded. It is posted to every matching
/// window's account; a hard-limited window it leaves beyond its limit is named in `exceeded`.
pub fn record_usage(
    record: &RecordUsage,
    record_id: Uuid,
    windows: &[(&Policy, Window)],
    accounts: &mut BTreeMap<AccountKey, Account>,
    quote: Option<&PriceQuote>,
) -> UsageRecorded {
    let (cost, cost_source) = record_cost_with(record, quote);
    let tokens = record.input_tokens.get() + record.output_tokens.get();
    let mut postings = Vec::with_capacity(windows.len());
    let mut exceeded = Vec::new();
    for (policy, window) in windows {
        let account = accounts
            .get_mut(&(policy.id, window.key.clone()))
            .expect("the write path locks every account a record posts to before deciding it");
        account.posted_cost += cost.amount();
        account.posted_tokens += tokens;
        account.records += 1;
        if policy.policy_type == PolicyType::HardLimit && account.over(policy) {
            exceeded.push(policy.id);
        }
        postings.push(Posting { policy_id: policy.id, window: window.key.clone() });
    }
    UsageRecorded {
        record_id,
        provider: record.provider.clone(),
        model: record.model.clone(),
        component: record.component.clone(),
        task_type: record.task_type.clone(),
        context_id: record.context_id.clone(),
        session_id: record.session_id.clone(),
        input_tokens: record.input_tokens.get(),
        output_tokens: record.output_tokens.get(),
        cost,
        cost_source,
        occurred_at: record.occurred_at,
        tier: record.tier,
        postings,
        exceeded,
        settlement: None,
        cached_input_tokens: record.cached_input_tokens,
        price_version: quote.map(|q| q.version_id),
        resolved_model: quote.map(|q| q.resolved_model.clone()),
        computed_cost: quote.map(|q| q.cost),
    }
}

/// A policy change. The same budget, period and scope is the same policy: it keeps its id (and its
/// accounts), and the new event replaces its definition.
pub fn set_policy(command: &SetPolicy, budget_id: Uuid, existing: Option<&Policy>) -> PolicySet {
    PolicySet {
        policy_id: existing.map_or_else(Uuid::now_v7, |p| p.id),
        budget_id,
        policy_type: command.policy_type,
        period: command.period,
        scope: command.scope.clone(),
        cost_limit: command.cost_limit,
        token_limit: command.token_limit,
        warning_threshold: command.warning_threshold,
        action_threshold: command.action_threshold,
        enabled: command.enabled,
        timezone: command.timezone.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::{PolicyInput, PolicyPeriod};
    use crate::domain::UsageInput;
    use chrono::Utc;

    fn record(cost: &str) -> RecordUsage {
        let input: UsageInput = serde_json::from_value(serde_json::json!({
            "provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 10, "output_tokens": 5,
            "cost": cost
        }))
        .unwrap();
        RecordUsage::validate(&input, Utc::now()).unwrap()
    }

    fn policy(json: serde_json::Value) -> Policy {
        let input: PolicyInput = serde_json::from_value(json).unwrap();
        let set = set_policy(&SetPolicy::validate(&input).unwrap(), Uuid::nil(), None);
        Policy::from_event(&set)
    }

    #[test]
    fn usage_posts_to_matching_windows_and_flags_a_crossed_hard_limit() {
        let hard =
            policy(serde_json::json!({"period": "daily", "type": "hard_limit", "provider": "openai", "cost_limit": 1}));
        let warn = policy(serde_json::json!({"period": "monthly", "cost_limit": "0.5"}));
        let other = policy(
            serde_json::json!({"period": "daily", "type": "hard_limit", "provider": "anthropic", "cost_limit": 0}),
        );
        let policies = vec![hard.clone(), warn.clone(), other];
        let r = record("0.6");
        let windows = matching_windows(&policies, &call_facts(&r));
        assert_eq!(windows.len(), 2, "the anthropic policy does not match");
        let mut accounts: BTreeMap<AccountKey, Account> =
            windows.iter().map(|(p, w)| ((p.id, w.key.clone()), Account::default())).collect();

        let first = record_usage(&r, Uuid::nil(), &windows, &mut accounts, None);
        assert!(first.exceeded.is_empty(), "0.6 of 1.0 is within the hard limit; the warn policy never flags");
        let second = record_usage(&r, Uuid::nil(), &windows, &mut accounts, None);
        assert_eq!(second.exceeded, vec![hard.id], "1.2 of 1.0 went past the hard limit");
        assert_eq!(second.postings.len(), 2);
        let hard_account = accounts[&(hard.id, windows[0].1.key.clone())];
        assert_eq!(
            (hard_account.posted_cost, hard_account.posted_tokens, hard_account.records),
            (rust_decimal::Decimal::new(12, 1), 30, 2)
        );
    }

    #[test]
    fn policy_input_is_validated_with_every_problem_named() {
        let bad: PolicyInput = serde_json::from_value(serde_json::json!({
            "period": "yearly", "type": "strict", "tier": "giant", "token_limit": -1,
            "warning_threshold": 1.5, "timezone": "Mars/Olympus"
        }))
        .unwrap();
        let errors = SetPolicy::validate(&bad).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
        for f in ["period", "type", "tier", "token_limit", "warning_threshold", "timezone"] {
            assert!(fields.contains(&f), "{f} not reported in {errors:?}");
        }
        let neither: PolicyInput = serde_json::from_value(serde_json::json!({"period": "daily"})).unwrap();
        assert_eq!(SetPolicy::validate(&neither).unwrap_err()[0].0, "cost_limit");
        let ok: PolicyInput =
            serde_json::from_value(serde_json::json!({"period": "per_task", "token_limit": 5})).unwrap();
        let ok = SetPolicy::validate(&ok).unwrap();
        assert_eq!((ok.period, ok.policy_type), (PolicyPeriod::PerTask, PolicyType::Warn));
    }
}

/// What one policy says about spending `cost` and `tokens` more in a window with `account`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within every limit.
    Allow,
    /// Allowed, but the window is past its warning threshold or would go past its limit.
    Warn,
    /// A hard limit would be exceeded: refused.
    Refuse,
    /// An `ignore` policy: counted, never enforced.
    Track,
}

/// The pre-flight decision of one policy: a hard limit refuses what would take posted + pending past
/// the limit; soft limits and warnings allow with a warning; `ignore` only tracks.
pub fn evaluate(policy: &Policy, account: &Account, cost: rust_decimal::Decimal, tokens: i64) -> Verdict {
    let would_exceed =
        policy.cost_limit.is_some_and(|l| account.posted_cost + account.pending_cost + cost > l.amount())
            || policy.token_limit.is_some_and(|l| account.posted_tokens + account.pending_tokens + tokens > l);
    let past_warning = usage_fraction(policy, account).is_some_and(|f| f >= policy.warning_threshold);
    match policy.policy_type {
        PolicyType::Ignore => Verdict::Track,
        PolicyType::HardLimit if would_exceed => Verdict::Refuse,
        _ if would_exceed || past_warning => Verdict::Warn,
        _ => Verdict::Allow,
    }
}

/// The larger of cost used / cost limit and tokens used / token limit (posted + pending), if any limit
/// is non-zero.
pub fn usage_fraction(policy: &Policy, account: &Account) -> Option<rust_decimal::Decimal> {
    let cost = policy
        .cost_limit
        .filter(|l| !l.amount().is_zero())
        .map(|l| (account.posted_cost + account.pending_cost) / l.amount());
    let tokens = policy.token_limit.filter(|l| *l > 0).map(|l| {
        rust_decimal::Decimal::from(account.posted_tokens + account.pending_tokens) / rust_decimal::Decimal::from(l)
    });
    match (cost, tokens) {
        (Some(c), Some(t)) => Some(c.max(t)),
        (c, t) => c.or(t),
    }
}

#[cfg(test)]
mod verdict_tests {
    use super::*;
    use crate::domain::policy::PolicyInput;
    use rust_decimal_macros::dec;

    fn policy(kind: &str) -> Policy {
        let input: PolicyInput = serde_json::from_value(
            serde_json::json!({"period": "daily", "type": kind, "cost_limit": 10, "token_limit": 1000}),
        )
        .unwrap();
        Policy::from_event(&set_policy(&SetPolicy::validate(&input).unwrap(), Uuid::nil(), None))
    }

    #[test]
    fn hard_limits_refuse_what_would_exceed_counting_pending() {
        let account = Account { posted_cost: dec!(6), pending_cost: dec!(3), ..Default::default() };
        assert_eq!(
            evaluate(&policy("hard_limit"), &account, dec!(1), 0),
            Verdict::Warn,
            "exactly at the limit is allowed"
        );
        assert_eq!(evaluate(&policy("hard_limit"), &account, dec!(1.01), 0), Verdict::Refuse);
        assert_eq!(evaluate(&policy("hard_limit"), &Account::default(), dec!(0), 1001), Verdict::Refuse);
        assert_eq!(evaluate(&policy("warn"), &account, dec!(5), 0), Verdict::Warn);
        assert_eq!(evaluate(&policy("soft_limit"), &Account::default(), dec!(1), 10), Verdict::Allow);
        assert_eq!(evaluate(&policy("ignore"), &account, dec!(100), 0), Verdict::Track);
        assert_eq!(usage_fraction(&policy("warn"), &account), Some(dec!(0.9)));
    }
}

impl Refusal {
    /// The refusal of `requested` by policy `p`'s window `w`, whose account stands at `account`.
    pub fn new(p: &Policy, w: &Window, account: &Account, requested_cost: Money, requested_tokens: i64) -> Refusal {
        Refusal {
            policy_id: p.id,
            period: p.period.to_string(),
            scope: p.scope.describe(),
            window: w.key.clone(),
            window_start: w.start,
            resets_at: w.end,
            cost_limit: p.cost_limit,
            token_limit: p.token_limit,
            used_cost: account.posted_cost.normalize(),
            used_tokens: account.posted_tokens,
            reserved_cost: account.pending_cost.normalize(),
            reserved_tokens: account.pending_tokens,
            requested_cost,
            requested_tokens,
        }
    }
}

/// Why a reservation was refused, per hard-limited window: everything a person needs to see why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    pub policy_id: Uuid,
    pub period: String,
    pub scope: String,
    pub window: String,
    pub window_start: Option<chrono::DateTime<chrono::Utc>>,
    /// When the window resets (its end); none for per-task windows.
    pub resets_at: Option<chrono::DateTime<chrono::Utc>>,
    pub cost_limit: Option<Money>,
    pub token_limit: Option<i64>,
    #[serde(with = "crate::money::decimal_json")]
    pub used_cost: rust_decimal::Decimal,
    pub used_tokens: i64,
    #[serde(with = "crate::money::decimal_json")]
    pub reserved_cost: rust_decimal::Decimal,
    pub reserved_tokens: i64,
    pub requested_cost: Money,
    pub requested_tokens: i64,
}

/// The windows an allocation reserves in: every enabled policy that could count the call. A provider or
/// model the allocation leaves open could be any, so a policy scoped to one counts it (the safe side).
pub fn reservation_windows<'p>(
    policies: &'p [Policy],
    a: &crate::domain::allocation::CreateAllocation,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<(&'p Policy, Window)> {
    let call = CallFacts {
        provider: a.provider.as_ref().map_or("", |p| p.as_str()),
        model: a.model.as_ref().map_or("", |m| m.as_str()),
        component: a.component.as_str(),
        tier: a.tier,
        task_type: a.task_type.as_str(),
        session_id: None,
        context_id: Some(a.context_id.as_str()),
        at: now,
    };
    policies
        .iter()
        .filter(|p| p.enabled)
        .filter(|p| {
            let s = &p.scope;
            (a.provider.is_none() || s.provider.as_ref().is_none_or(|f| Some(f) == a.provider.as_ref()))
                && (a.model.is_none() || s.model.as_ref().is_none_or(|f| Some(f) == a.model.as_ref()))
                && s.component.as_ref().is_none_or(|f| *f == a.component)
                && s.tier.is_none_or(|t| t == a.tier)
                && s.task_type.as_ref().is_none_or(|f| *f == a.task_type)
        })
        .filter_map(|p| p.period.window(p.timezone, &call).map(|w| (p, w)))
        .collect()
}

/// Reserves an allocation in its windows, or refuses it naming every hard limit it would break.
/// Priority never bypasses a hard limit.
pub fn reserve(
    a: &crate::domain::allocation::CreateAllocation,
    allocation_id: Uuid,
    windows: &[(&Policy, Window)],
    accounts: &mut BTreeMap<AccountKey, Account>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(crate::event::AllocationCreated, crate::domain::allocation::Allocation), Vec<Refusal>> {
    let cost = a.estimated_cost.amount();
    let refusals: Vec<Refusal> = windows
        .iter()
        .filter_map(|(p, w)| {
            let account = accounts[&(p.id, w.key.clone())];
            (evaluate(p, &account, cost, a.tokens) == Verdict::Refuse)
                .then(|| Refusal::new(p, w, &account, a.estimated_cost, a.tokens))
        })
        .collect();
    if !refusals.is_empty() {
        return Err(refusals);
    }
    let mut reservations = Vec::with_capacity(windows.len());
    for (p, w) in windows {
        let account = accounts.get_mut(&(p.id, w.key.clone())).expect("reserved windows are locked");
        account.pending_cost += cost;
        account.pending_tokens += a.tokens;
        reservations.push(Posting { policy_id: p.id, window: w.key.clone() });
    }
    let event = crate::event::AllocationCreated {
        allocation_id,
        context_id: a.context_id.to_string(),
        component: a.component.to_string(),
        tier: a.tier,
        provider: a.provider.as_ref().map(ToString::to_string),
        model: a.model.as_ref().map(ToString::to_string),
        task_type: a.task_type.to_string(),
        priority: a.priority,
        tokens_allocated: a.tokens,
        estimated_cost: a.estimated_cost,
        expires_at: now + a.ttl,
        reservations,
    };
    let allocation = allocation_from_event(&event, now);
    Ok((event, allocation))
}

/// The log's record of a reservation the hard limits refused (nothing was reserved).
pub fn allocation_refused(
    a: &crate::domain::allocation::CreateAllocation,
    refusals: Vec<Refusal>,
) -> crate::event::BudgetRefused {
    crate::event::BudgetRefused {
        source: "allocation".into(),
        component: a.component.to_string(),
        context_id: Some(a.context_id.to_string()),
        provider: a.provider.as_ref().map(|p| p.to_string()),
        model: a.model.as_ref().map(|m| m.to_string()),
        refusals,
    }
}

/// The state an `AllocationCreated` starts an allocation in.
pub fn allocation_from_event(
    e: &crate::event::AllocationCreated,
    created_at: chrono::DateTime<chrono::Utc>,
) -> crate::domain::allocation::Allocation {
    crate::domain::allocation::Allocation {
        allocation_id: e.allocation_id,
        context_id: e.context_id.clone(),
        component: e.component.clone(),
        tier: e.tier,
        provider: e.provider.clone(),
        model: e.model.clone(),
        task_type: e.task_type.clone(),
        priority: e.priority,
        tokens_allocated: e.tokens_allocated,
        estimated_cost: e.estimated_cost.amount(),
        expires_at: e.expires_at,
        state: crate::domain::allocation::AllocationState::Active,
        input_tokens_used: 0,
        output_tokens_used: 0,
        actual_cost: rust_decimal::Decimal::ZERO,
        remaining_tokens: e.tokens_allocated,
        remaining_cost: e.estimated_cost.amount(),
        reservations: e.reservations.clone(),
        created_at,
        resolved_at: None,
    }
}

/// Takes `tokens` and `cost` out of the reservation in every window it is pending in.
fn unreserve(
    a: &mut crate::domain::allocation::Allocation,
    tokens: i64,
    cost: rust_decimal::Decimal,
    accounts: &mut BTreeMap<AccountKey, Account>,
) {
    a.remaining_tokens -= tokens;
    a.remaining_cost -= cost;
    for r in &a.reservations {
        let account = accounts.get_mut(&(r.policy_id, r.window.clone())).expect("reservation windows are locked");
        account.pending_tokens -= tokens;
        account.pending_cost -= cost;
        assert!(
            account.pending_tokens >= 0 && account.pending_cost >= rust_decimal::Decimal::ZERO,
            "a window's pending amount went negative: {account:?}"
        );
    }
}

/// Voids what an active allocation still reserves (release or expiry). Callers check it is active.
pub fn void(
    a: &mut crate::domain::allocation::Allocation,
    to: crate::domain::allocation::AllocationState,
    accounts: &mut BTreeMap<AccountKey, Account>,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::event::AllocationResolved {
    assert_eq!(a.state, crate::domain::allocation::AllocationState::Active, "an allocation resolves at most once");
    let (tokens, cost) = (a.remaining_tokens, a.remaining_cost);
    unreserve(a, tokens, cost, accounts);
    a.state = to;
    a.resolved_at = Some(now);
    a.check_invariants();
    crate::event::AllocationResolved {
        allocation_id: a.allocation_id,
        released_tokens: tokens,
        released_cost: Money::new(cost).expect("a reservation fits a money column"),
    }
}

/// Settles a usage record against its allocation: what is still reserved moves from pending (the
/// reservation's windows) to posted (the usage's windows, done by [`record_usage`]); the rest is overage.
/// Using up the tokens exhausts the allocation and voids its leftover estimated cost.
pub fn settle(
    a: &mut crate::domain::allocation::Allocation,
    input_tokens: i64,
    output_tokens: i64,
    cost: rust_decimal::Decimal,
    accounts: &mut BTreeMap<AccountKey, Account>,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::event::Settlement {
    use crate::domain::allocation::AllocationState;
    let tokens = input_tokens + output_tokens;
    let active = a.state == AllocationState::Active;
    let settled_tokens = if active { tokens.min(a.remaining_tokens) } else { 0 };
    let settled_cost = if active { cost.min(a.remaining_cost) } else { rust_decimal::Decimal::ZERO };
    if active {
        unreserve(a, settled_tokens, settled_cost, accounts);
    }
    a.input_tokens_used += input_tokens;
    a.output_tokens_used += output_tokens;
    a.actual_cost += cost;
    let mut voided = rust_decimal::Decimal::ZERO;
    let exhausted = active && a.remaining_tokens == 0;
    if exhausted {
        voided = a.remaining_cost;
        unreserve(a, 0, voided, accounts);
        a.state = AllocationState::Exhausted;
        a.resolved_at = Some(now);
    }
    a.check_invariants();
    let money = |d: rust_decimal::Decimal| Money::new(d).expect("settlement amounts fit a money column");
    crate::event::Settlement {
        allocation_id: a.allocation_id,
        settled_tokens,
        settled_cost: money(settled_cost),
        overage_tokens: tokens - settled_tokens,
        overage_cost: money(cost - settled_cost),
        exhausted,
        voided_cost: money(voided),
    }
}

#[cfg(test)]
mod allocation_tests {
    use super::*;
    use crate::domain::allocation::{AllocationInput, AllocationState, CreateAllocation};
    use crate::domain::policy::{PolicyInput, Tier};
    use chrono::Utc;
    use rust_decimal_macros::dec;

    fn hard(tokens: i64) -> Policy {
        let input: PolicyInput =
            serde_json::from_value(serde_json::json!({"period": "daily", "type": "hard_limit", "token_limit": tokens}))
                .unwrap();
        Policy::from_event(&set_policy(&SetPolicy::validate(&input).unwrap(), Uuid::nil(), None))
    }

    fn request(tokens: i64) -> CreateAllocation {
        let input: AllocationInput = serde_json::from_value(serde_json::json!({
            "context_id": "t", "component": "c", "tokens": tokens, "estimated_cost": "1", "priority": 10
        }))
        .unwrap();
        CreateAllocation::validate(&input, Tier::derive, &Default::default()).unwrap()
    }

    #[test]
    fn reservations_count_pending_and_priority_does_not_bypass() {
        let policies = vec![hard(1000)];
        let now = Utc::now();
        let windows = reservation_windows(&policies, &request(600), now);
        let mut accounts: BTreeMap<AccountKey, Account> =
            windows.iter().map(|(p, w)| ((p.id, w.key.clone()), Account::default())).collect();
        let (_, mut a) = reserve(&request(600), Uuid::nil(), &windows, &mut accounts, now).unwrap();
        let refused = reserve(&request(600), Uuid::nil(), &windows, &mut accounts, now).unwrap_err();
        assert_eq!(
            (refused[0].reserved_tokens, refused[0].requested_tokens),
            (600, 600),
            "critical priority is refused too"
        );

        // Settle below, then above what is left: pending moves out, the excess is overage, and the
        // allocation is exhausted with its leftover cost voided.
        let s = settle(&mut a, 300, 100, dec!(0.25), &mut accounts, now);
        assert_eq!((s.settled_tokens, s.overage_tokens, s.exhausted), (400, 0, false));
        let s = settle(&mut a, 300, 0, dec!(0.5), &mut accounts, now);
        assert_eq!(
            (s.settled_tokens, s.overage_tokens, s.exhausted, s.voided_cost.amount()),
            (200, 100, true, dec!(0.25))
        );
        assert_eq!(a.state, AllocationState::Exhausted);
        let account = accounts.values().next().unwrap();
        assert_eq!((account.pending_tokens, account.pending_cost), (0, dec!(0)));
        // Usage after the allocation resolved is all overage.
        let s = settle(&mut a, 10, 0, dec!(0), &mut accounts, now);
        assert_eq!((s.settled_tokens, s.overage_tokens), (0, 10));
    }
}
