//! A policy change, and the opening balance of the window a policy starts counting in.

use std::collections::HashSet;

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::allocation::{Allocation, AllocationState};
use crate::domain::policy::{CallFacts, Policy, SetPolicy, Window};
use crate::event::{Event, OpeningBalance, PolicySet, Posting, UsageRecorded};

/// A policy change. The same budget, period and scope is the same policy: it keeps its id (and its
/// accounts), and the new event replaces its definition.
pub fn set_policy(command: &SetPolicy, budget_id: Uuid, existing: Option<&Policy>) -> PolicySet {
    let kept = command.kept;
    let (policy_type, (warning_threshold, action_threshold), timezone) = match existing {
        Some(p) => (
            if kept.policy_type { p.policy_type } else { command.policy_type },
            if kept.thresholds {
                (p.warning_threshold, p.action_threshold)
            } else {
                (command.warning_threshold, command.action_threshold)
            },
            if kept.timezone { p.timezone.name().to_string() } else { command.timezone.clone() },
        ),
        None => (command.policy_type, (command.warning_threshold, command.action_threshold), command.timezone.clone()),
    };
    PolicySet {
        policy_id: existing.map_or_else(Uuid::now_v7, |p| p.id),
        budget_id,
        policy_type,
        period: command.period,
        scope: command.scope.clone(),
        cost_limit: command.cost_limit,
        token_limit: command.token_limit,
        warning_threshold,
        action_threshold,
        enabled: command.enabled,
        timezone,
        opening: None,
    }
}

/// Whether this change makes the policy start counting (new, or enabled again), so that its current
/// window opens with what it already holds.
pub fn starts_counting(event: &PolicySet, before: Option<&Policy>) -> bool {
    event.enabled && before.is_none_or(|p| !p.enabled)
}

/// The facts of a recorded call that scopes and windows look at (as [`super::call_facts`] for a new one).
pub fn recorded_facts(u: &UsageRecorded) -> CallFacts<'_> {
    CallFacts {
        provider: u.provider.as_str(),
        model: u.model.as_str(),
        component: u.component.as_str(),
        tier: u.tier,
        task_type: u.task_type.as_str(),
        session_id: u.session_id.as_ref().map(|s| s.as_str()),
        context_id: u.context_id.as_ref().map(|s| s.as_str()),
        user: u.user_id.as_ref().map(|s| s.as_str()),
        at: u.occurred_at,
    }
}

/// The usage events of an opening balance: each record (in log order) that `policy` would have posted
/// into `window` had it counted all along, and the corrections that follow one of them. `budget
/// explain --opening` lists them with the same rule that summed them.
/// `event` reads the event out of an item (the items may be events, or events as logged).
pub fn opening_usage<'e, T>(
    policy: &Policy,
    window: &Window,
    usage: impl IntoIterator<Item = &'e T>,
    event: impl Fn(&T) -> &Event,
) -> Vec<&'e T> {
    let in_window =
        |call: &CallFacts<'_>| policy.period.window(policy.timezone, call).is_some_and(|w| w.key == window.key);
    let mut counted = HashSet::new();
    usage
        .into_iter()
        .filter(|item| match event(item) {
            Event::UsageRecorded(u) => {
                let call = recorded_facts(u);
                let counts = policy.scope.matches(&call) && in_window(&call);
                if counts {
                    counted.insert(u.record_id);
                }
                counts
            }
            Event::UsageRepriced(c) => counted.contains(&c.record_id),
            _ => false,
        })
        .collect()
}

/// What `policy`'s calendar `window` already holds when the policy starts counting: every usage record
/// (in log order, with the corrections that follow it) that the policy would have posted into this
/// window had it counted all along, and every active allocation made in the window that it would have
/// reserved under. The same rules as posting and reserving, so the account equals what it would be.
pub fn opening_balance<'e>(
    policy: &Policy,
    window: &Window,
    usage: impl IntoIterator<Item = &'e Event>,
    allocations: impl IntoIterator<Item = &'e Allocation>,
) -> OpeningBalance {
    let in_window =
        |call: &CallFacts<'_>| policy.period.window(policy.timezone, call).is_some_and(|w| w.key == window.key);
    let mut opening = OpeningBalance {
        window: window.key.clone(),
        window_start: window.start,
        window_end: window.end,
        posted_cost: Decimal::ZERO,
        posted_tokens: 0,
        records: 0,
        pending_cost: Decimal::ZERO,
        pending_tokens: 0,
        allocations: Vec::new(),
    };
    for event in opening_usage(policy, window, usage, |e| e) {
        match event {
            Event::UsageRecorded(u) => {
                opening.posted_cost += u.cost.amount();
                opening.posted_tokens += u.total_tokens();
                opening.records += 1;
            }
            Event::UsageRepriced(c) => opening.posted_cost += c.delta,
            _ => unreachable!("opening_usage keeps usage events only"),
        }
    }
    let posting = Posting { policy_id: policy.id, window: window.key.clone() };
    for a in allocations {
        if a.state != AllocationState::Active {
            continue;
        }
        let call = CallFacts {
            provider: a.provider.as_deref().unwrap_or(""),
            model: a.model.as_deref().unwrap_or(""),
            component: &a.component,
            tier: a.tier,
            task_type: &a.task_type,
            session_id: None,
            context_id: Some(&a.context_id),
            user: a.user_id.as_deref(),
            at: a.created_at,
        };
        let named = super::Named::new(&a.provider, &a.model, a.task_type_open, a.tier_open);
        if super::reserves_under(policy, &call, named) && in_window(&call) {
            opening.pending_cost += a.remaining_cost;
            opening.pending_tokens += a.remaining_tokens;
            if !a.reservations.contains(&posting) {
                opening.allocations.push(a.allocation_id);
            }
        }
    }
    opening.allocations.sort();
    opening
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{Duration, Utc};
    use rust_decimal_macros::dec;

    use super::*;
    use crate::decide::{record_usage, reservation_windows, reserve};
    use crate::domain::allocation::{AllocationInput, CreateAllocation};
    use crate::domain::policy::{PolicyInput, Tier};
    use crate::domain::{RecordUsage, UsageInput};
    use crate::event::UsageRepriced;
    use crate::money::Money;

    fn policy(json: serde_json::Value) -> Policy {
        let input: PolicyInput = serde_json::from_value(json).unwrap();
        Policy::from_event(&set_policy(&SetPolicy::validate(&input).unwrap(), Uuid::nil(), None))
    }

    fn recorded(provider: &str, cost: &str, days_ago: i64) -> UsageRecorded {
        let input: UsageInput = serde_json::from_value(serde_json::json!({
            "provider": provider, "model": "m", "component": "c", "input_tokens": 10, "output_tokens": 5, "cost": cost,
            "timestamp": Utc::now() - Duration::days(days_ago),
        }))
        .unwrap();
        let r = RecordUsage::validate(&input, Utc::now()).unwrap();
        record_usage(&r, Uuid::now_v7(), &[], &mut BTreeMap::new(), None)
    }

    fn repriced(u: &UsageRecorded, cost: &str) -> UsageRepriced {
        let cost = Money::new(cost.parse().unwrap()).unwrap();
        UsageRepriced {
            record_id: u.record_id,
            provider: u.provider.clone(),
            model: u.model.clone(),
            component: u.component.clone(),
            task_type: u.task_type.clone(),
            occurred_at: u.occurred_at,
            previous_cost: u.cost,
            previous_price_version: None,
            cost,
            delta: cost.amount() - u.cost.amount(),
            price_version: Uuid::nil(),
            resolved_model: "m".into(),
            postings: Vec::new(),
            user_id: None,
        }
    }

    fn allocation(provider: &str, policies: &[Policy]) -> Allocation {
        let input: AllocationInput = serde_json::from_value(serde_json::json!({
            "context_id": "t", "component": "c", "provider": provider, "model": "m", "tokens": 100,
            "estimated_cost": "0.5"
        }))
        .unwrap();
        let request = CreateAllocation::validate(&input, Tier::derive, &Default::default()).unwrap();
        let windows = reservation_windows(policies, &request, Utc::now());
        let mut accounts = windows.iter().map(|(p, w)| ((p.id, w.key.clone()), Default::default())).collect();
        reserve(&request, Uuid::now_v7(), &windows, &mut accounts, Utc::now()).unwrap().allocation
    }

    /// Exactly what posting and reserving would have put in the window: matching records in it (with
    /// their corrections), matching active reservations made in it; nothing of another scope or window.
    #[test]
    fn the_opening_balance_is_what_the_window_would_hold_had_the_policy_always_counted() {
        let p = policy(
            serde_json::json!({"period": "daily", "type": "hard_limit", "provider": "openai", "cost_limit": 10}),
        );
        let window = p.calendar_window_at(Utc::now()).unwrap();
        let (today, other_scope, yesterday) =
            (recorded("openai", "8", 0), recorded("anthropic", "5", 0), recorded("openai", "4", 1));
        let log = [
            Event::UsageRecorded(today.clone()),
            Event::UsageRecorded(other_scope.clone()),
            Event::UsageRecorded(yesterday.clone()),
            Event::UsageRepriced(repriced(&today, "7.5")),
            Event::UsageRepriced(repriced(&other_scope, "1")),
        ];
        let other = policy(serde_json::json!({"period": "daily", "provider": "openai", "cost_limit": 1}));
        let already = allocation("openai", std::slice::from_ref(&p));
        let fresh = allocation("openai", &[other]);
        let mut released = allocation("openai", &[]);
        released.state = AllocationState::Released;
        let elsewhere = allocation("anthropic", &[]);

        let o = opening_balance(&p, &window, &log, [&already, &fresh, &released, &elsewhere]);
        assert_eq!((o.posted_cost, o.posted_tokens, o.records), (dec!(7.5), 15, 1));
        assert_eq!((o.pending_cost, o.pending_tokens), (dec!(1.0), 200), "both active openai reservations");
        assert_eq!(o.allocations, vec![fresh.allocation_id], "the one already reserving here is not added twice");
        assert_eq!(o.window, window.key);
    }

    #[test]
    fn only_a_policy_that_starts_counting_opens_its_window() {
        let on = policy(serde_json::json!({"period": "daily", "cost_limit": 1}));
        let mut off = on.clone();
        off.enabled = false;
        let event = |p: &Policy, enabled: bool| {
            let mut e = set_policy(
                &SetPolicy::validate(
                    &serde_json::from_value(
                        serde_json::json!({"period": "daily", "cost_limit": 2, "enabled": enabled}),
                    )
                    .unwrap(),
                )
                .unwrap(),
                Uuid::nil(),
                Some(p),
            );
            e.enabled = enabled;
            e
        };
        assert!(starts_counting(&event(&on, true), None), "created");
        assert!(starts_counting(&event(&off, true), Some(&off)), "enabled again");
        assert!(!starts_counting(&event(&on, true), Some(&on)), "a new limit on a counting policy");
        assert!(!starts_counting(&event(&on, false), Some(&on)), "disabled");
    }
}
