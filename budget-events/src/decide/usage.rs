//! Usage: pricing a record from the book, posting it to its windows, and correcting its cost.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::*;
use crate::domain::policy::{Account, Policy, PolicyType, Window};
use crate::domain::usage::CostSource;
use crate::domain::RecordUsage;
use crate::event::{Posting, UsageRecorded};
use crate::money::Money;
use crate::store::accounts::AccountKey;

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
    let c = crate::domain::price::cost_of(&version.spec, recorded_tokens(r));
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
        user_id: r.user_id.clone(),
    })
}

/// The token mix a recorded call is priced by.
fn recorded_tokens(r: &UsageRecorded) -> crate::domain::price::Tokens {
    crate::domain::price::Tokens {
        input: r.input_tokens,
        cached_input: r.cached_input_tokens,
        cache_creation_input: r.cache_creation_input_tokens,
        output: r.output_tokens,
        reasoning: r.reasoning_tokens,
    }
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
    let c = crate::domain::price::cost_of(
        &version.spec,
        crate::domain::price::Tokens {
            input: record.input_tokens.get(),
            cached_input: record.cached_input_tokens,
            cache_creation_input: record.cache_creation_input_tokens,
            output: record.output_tokens.get(),
            reasoning: record.reasoning_tokens,
        },
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
        if policy.policy_type == PolicyType::HardLimit && beyond_limit(policy, account, rust_decimal::Decimal::ZERO, 0)
        {
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
        cache_creation_input_tokens: record.cache_creation_input_tokens,
        reasoning_tokens: record.reasoning_tokens,
        price_version: quote.map(|q| q.version_id),
        resolved_model: quote.map(|q| q.resolved_model.clone()),
        computed_cost: quote.map(|q| q.cost),
        user_id: record.user_id.clone(),
        operation_id: record.operation_id.clone(),
        metadata: record.metadata.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::policy::SetPolicy;
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
