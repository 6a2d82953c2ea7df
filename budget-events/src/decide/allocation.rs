//! Allocations: which windows a reservation holds room in, reserving, settling and voiding.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;
use crate::domain::policy::{Account, Policy, Window};
use crate::event::Posting;
use crate::money::Money;
use crate::store::accounts::AccountKey;

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
        session_id: a.session_id.as_ref().map(|s| s.as_str()),
        context_id: a.context_is_task.then(|| a.context_id.as_str()),
        user: a.user_id.as_ref().map(|u| u.as_str()),
        at: now,
    };
    policies
        .iter()
        .filter(|p| p.enabled)
        .filter(|p| reserves_under(p, &call, Named::new(&a.provider, &a.model, a.task_type_open, a.tier_open)))
        .filter_map(|p| p.period.window(p.timezone, &call).map(|w| (p, w)))
        .collect()
}

/// Which of an allocation's facts its request named. One it left open could be any value, so a policy
/// scoped to one value counts it (the safe side: the call it reserves for may turn out to be of it).
#[derive(Debug, Clone, Copy)]
pub struct Named {
    pub provider: bool,
    pub model: bool,
    pub task_type: bool,
    pub tier: bool,
}

impl Named {
    /// From a request's (or its allocation's) `provider` and `model`, open when absent, and its
    /// `task_type_open` / `tier_open` flags.
    pub fn new<P, M>(provider: &Option<P>, model: &Option<M>, task_type_open: bool, tier_open: bool) -> Self {
        Named { provider: provider.is_some(), model: model.is_some(), task_type: !task_type_open, tier: !tier_open }
    }
}

/// Whether a reservation with these facts counts against `policy`'s scope; `named` says which facts
/// the request gave ([`Named`]).
pub fn reserves_under(policy: &Policy, call: &CallFacts<'_>, named: Named) -> bool {
    let s = &policy.scope;
    (!named.provider || s.provider.as_ref().is_none_or(|f| f.as_str() == call.provider))
        && (!named.model
            || s.model.as_ref().is_none_or(|f| crate::domain::price::is_model(call.provider, call.model, f.as_str())))
        && s.component.as_ref().is_none_or(|f| f.as_str() == call.component)
        && (!named.tier || s.tier.is_none_or(|t| t == call.tier))
        && (!named.task_type || s.task_type.as_ref().is_none_or(|f| f.as_str() == call.task_type))
        // An allocation for no user in particular reserves under no user's limit (it would otherwise
        // hold back every user's window at once).
        && s.user.as_ref().is_none_or(|f| call.user == Some(f.as_str()))
}

/// The estimate from the model's price, when the allocation names a priced model. Without a known
/// split every token is priced at the higher of its input and output rates; with one
/// ([`CreateAllocation::input_tokens`]) each part is priced at the highest rate it could be billed at
/// (input: plain, cached or cache-write; output: plain or reasoning; the tier its input reaches) plus
/// the per-request fee, so a call that stays within its tokens never costs more than its estimate.
///
/// [`CreateAllocation::input_tokens`]: crate::domain::allocation::CreateAllocation::input_tokens
pub fn allocation_estimate(
    a: &crate::domain::allocation::CreateAllocation,
    versions: &[crate::domain::price::PriceVersion],
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Money> {
    use rust_decimal::Decimal;
    let (provider, model) = (a.provider.as_ref()?, a.model.as_ref()?);
    let (version, _) = crate::domain::price::resolve(versions, provider.as_str(), model.as_str(), now)?;
    let spec = &version.spec;
    let cost = match a.input_tokens {
        None => spec.input_per_token.max(spec.output_per_token) * Decimal::from(a.tokens),
        Some(input) => {
            let input = input.clamp(0, a.tokens);
            let rates = spec.rates_for(input);
            let input_rate = rates.input.max(rates.cached_input).max(rates.cache_creation);
            let output_rate = rates.output.max(rates.reasoning);
            input_rate * Decimal::from(input)
                + output_rate * Decimal::from(a.tokens - input)
                + spec.per_request.map_or(Decimal::ZERO, Money::amount)
        }
    };
    Money::new(cost.round_dp_with_strategy(crate::money::MONEY_SCALE, rust_decimal::RoundingStrategy::AwayFromZero))
        .ok()
}

/// `BUDGET_UNPRICED=reject`: the first cost-limited hard policy among an allocation's windows, which
/// must refuse it when its model has no price and the client gave no estimate.
pub fn unpriced_refusal<'p>(windows: &[(&'p Policy, Window)], unpriced: super::UnpricedPolicy) -> Option<&'p Policy> {
    windows.iter().map(|(p, _)| *p).find(|p| unpriced.fails_closed(p, false))
}

/// A reservation made: its event, the allocation it starts, and the windows that warned.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub event: crate::event::AllocationCreated,
    pub allocation: crate::domain::allocation::Allocation,
    /// The windows of warn and soft-limit policies that the reservation takes past their warning
    /// threshold or limit, as they stood before it (what a pre-flight check of it would have said).
    pub warnings: Vec<WindowCheck>,
}

/// Reserves an allocation in its windows, or refuses it naming every hard limit it would break.
/// Priority never bypasses a hard limit; a soft limit or a warning only says so ([`Reserved::warnings`]).
pub fn reserve(
    a: &crate::domain::allocation::CreateAllocation,
    allocation_id: Uuid,
    windows: &[(&Policy, Window)],
    accounts: &mut BTreeMap<AccountKey, Account>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Reserved, Vec<Refusal>> {
    let cost = a.estimated_cost.amount();
    let mut refusals = Vec::new();
    let mut warnings = Vec::new();
    for (p, w) in windows {
        let account = accounts[&(p.id, w.key.clone())];
        let check = WindowCheck::of(p, w, &account, cost, a.tokens, false);
        match check.verdict {
            Verdict::Refuse => refusals.push(Refusal::new(p, w, &account, a.estimated_cost, a.tokens)),
            // A hard limit near its limit refuses the next one; only warn and soft-limit policies say
            // anything about a reservation they let through.
            Verdict::Warn if p.policy_type != crate::domain::policy::PolicyType::HardLimit => warnings.push(check),
            Verdict::Warn => {}
            Verdict::Allow | Verdict::Track => {}
        }
    }
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
        user_id: a.user_id.as_ref().map(ToString::to_string),
        task_type_open: a.task_type_open,
        tier_open: a.tier_open,
    };
    let allocation = allocation_from_event(&event, now);
    Ok(Reserved { event, allocation, warnings })
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
        task_type_open: e.task_type_open,
        tier_open: e.tier_open,
        reservations: e.reservations.clone(),
        user_id: e.user_id.clone(),
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
    use crate::domain::policy::SetPolicy;
    use crate::domain::policy::{PolicyInput, Tier};
    use chrono::Utc;
    use rust_decimal_macros::dec;

    fn hard(tokens: i64) -> Policy {
        limit("hard_limit", tokens)
    }

    fn limit(policy_type: &str, tokens: i64) -> Policy {
        let input: PolicyInput =
            serde_json::from_value(serde_json::json!({"period": "daily", "type": policy_type, "token_limit": tokens}))
                .unwrap();
        Policy::from_event(&set_policy(&SetPolicy::validate(&input).unwrap(), Uuid::now_v7(), None))
    }

    /// A reservation a warn or soft limit lets past its threshold says so, the one that crosses it
    /// included; a hard limit near its limit, which refuses the next one instead, says nothing.
    #[test]
    fn a_reservation_warns_of_warn_and_soft_limits_only() {
        let policies = vec![hard(1000), limit("soft_limit", 1000), limit("warn", 10_000)];
        let now = Utc::now();
        let windows = reservation_windows(&policies, &request(700), now);
        let mut accounts: BTreeMap<AccountKey, Account> =
            windows.iter().map(|(p, w)| ((p.id, w.key.clone()), Account::default())).collect();
        let first = reserve(&request(700), Uuid::nil(), &windows, &mut accounts, now).unwrap();
        assert!(first.warnings.is_empty(), "70% with it: under every threshold");
        let second = reserve(&request(200), Uuid::nil(), &windows, &mut accounts, now).unwrap();
        let warned: Vec<Uuid> = second.warnings.iter().map(|w| w.policy_id).collect();
        assert_eq!(warned, [policies[1].id], "the soft limit at 90% with it; the hard limit too, but it only refuses");
        assert_eq!(second.warnings[0].remaining_tokens_after, Some(100));
        let third = reserve(&request(100), Uuid::nil(), &windows, &mut accounts, now).unwrap();
        assert_eq!(third.warnings.iter().map(|w| w.policy_id).collect::<Vec<_>>(), [policies[1].id]);
        assert_eq!(third.warnings[0].remaining_tokens_after, Some(0));
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
        let mut a = reserve(&request(600), Uuid::nil(), &windows, &mut accounts, now).unwrap().allocation;
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

    /// The estimate when the client gives none: the book's higher per-token rate for every token; an
    /// unpriced model keeps the reference estimate unless a cost-limited hard policy must fail closed.
    #[test]
    fn allocations_are_estimated_from_the_book_or_fail_closed_when_asked() {
        let input: AllocationInput = serde_json::from_value(serde_json::json!({
            "context_id": "t", "component": "c", "provider": "openai", "model": "gpt-4o", "tokens": 1000
        }))
        .unwrap();
        let a = CreateAllocation::validate(&input, Tier::derive, &Default::default()).unwrap();
        assert!(!a.estimated_by_client);
        let spec: crate::domain::price::PriceSpec = serde_json::from_value(serde_json::json!({
            "provider": "openai", "model": "gpt-4o", "input_per_token": "0.0000025", "output_per_token": "0.00001"
        }))
        .unwrap();
        let now = Utc::now();
        let version = crate::domain::price::PriceVersion {
            version_id: Uuid::now_v7(),
            spec,
            effective_from: now - chrono::Duration::days(1),
            effective_to: None,
            source: crate::domain::price::PriceSource::Manual,
        };
        assert_eq!(
            allocation_estimate(&a, std::slice::from_ref(&version), now).unwrap().amount(),
            dec!(0.01),
            "1000 × $0.00001"
        );
        assert_eq!(allocation_estimate(&a, &[], now), None);

        // A known split (the gateway's): 600 input at the highest input rate (a cache write here), 400
        // output at the reasoning rate, plus the per-request fee; the tier the input reaches sets them.
        let mut priced = version.clone();
        priced.spec.cache_creation_per_token = Some(dec!(0.000003));
        priced.spec.reasoning_per_token = Some(dec!(0.00002));
        priced.spec.per_request = Some(crate::Money::new(dec!(0.001)).unwrap());
        let split = CreateAllocation { input_tokens: Some(600), ..a.clone() };
        let expected = dec!(600) * dec!(0.000003) + dec!(400) * dec!(0.00002) + dec!(0.001);
        assert_eq!(allocation_estimate(&split, &[priced.clone()], now).unwrap().amount(), expected);
        priced.spec.tiers = serde_json::from_value(serde_json::json!([
            {"above_input_tokens": 500, "input_per_token": "0.00001", "output_per_token": "0.00004"}
        ]))
        .unwrap();
        let tiered = dec!(600) * dec!(0.00001) + dec!(400) * dec!(0.00004) + dec!(0.001);
        assert_eq!(allocation_estimate(&split, &[priced], now).unwrap().amount(), tiered, "the tier prices both parts");

        let input: PolicyInput = serde_json::from_value(
            serde_json::json!({"period": "daily", "type": "hard_limit", "provider": "openai", "cost_limit": 5}),
        )
        .unwrap();
        let cost_limited = Policy::from_event(&set_policy(&SetPolicy::validate(&input).unwrap(), Uuid::nil(), None));
        let policies = vec![hard(100_000), cost_limited.clone()];
        let windows = reservation_windows(&policies, &a, now);
        assert_eq!(windows.len(), 2);
        assert_eq!(unpriced_refusal(&windows, UnpricedPolicy::Reject).map(|p| p.id), Some(cost_limited.id));
        assert!(unpriced_refusal(&windows, UnpricedPolicy::Record).is_none());
        assert!(unpriced_refusal(&windows[..1], UnpricedPolicy::Reject).is_none(), "a token limit still decides");
    }
}
