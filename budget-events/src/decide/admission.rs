//! What a limit admits: the verdict of one policy on a window, and why a request was refused.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::policy::{Account, Policy, PolicyType, Window};
use crate::money::Money;

/// What one policy says about spending `cost` and `tokens` more in a window with `account`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// The one definition of "beyond the limit", used by every decision and every display: what the
/// window holds (posted plus pending) plus `extra` is more than its cost or token limit. Exactly at the
/// limit is within it.
pub fn beyond_limit(policy: &Policy, account: &Account, extra_cost: Decimal, extra_tokens: i64) -> bool {
    let (cost, tokens) = account.held();
    policy.cost_limit.is_some_and(|l| cost + extra_cost > l.amount())
        || policy.token_limit.is_some_and(|l| tokens + extra_tokens > l)
}

/// The pre-flight decision of one policy: a hard limit refuses what would take the window beyond its
/// limit; soft limits and warnings allow with a warning; `ignore` only tracks. A warning is for a call
/// that leaves the window at or past its warning threshold, itself counted: the one that crosses it is
/// the one to hear of it.
pub fn evaluate(policy: &Policy, account: &Account, cost: Decimal, tokens: i64) -> Verdict {
    let would_exceed = beyond_limit(policy, account, cost, tokens);
    let with_it = Account {
        pending_cost: account.pending_cost + cost,
        pending_tokens: account.pending_tokens + tokens,
        ..*account
    };
    let past_warning = usage_fraction(policy, &with_it).is_some_and(|f| f >= policy.warning_threshold);
    match policy.policy_type {
        PolicyType::Ignore => Verdict::Track,
        PolicyType::HardLimit if would_exceed => Verdict::Refuse,
        _ if would_exceed || past_warning => Verdict::Warn,
        _ => Verdict::Allow,
    }
}

/// A window's state as status, alerts and the dashboard show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowState {
    Ok,
    /// At or past the warning threshold.
    Warning,
    /// At or past the action threshold.
    Critical,
    /// Beyond the limit ([`beyond_limit`]).
    Exceeded,
}

impl WindowState {
    pub fn as_str(self) -> &'static str {
        match self {
            WindowState::Ok => "ok",
            WindowState::Warning => "warning",
            WindowState::Critical => "critical",
            WindowState::Exceeded => "exceeded",
        }
    }
}

pub fn window_state(policy: &Policy, account: &Account) -> WindowState {
    match usage_fraction(policy, account) {
        _ if beyond_limit(policy, account, Decimal::ZERO, 0) => WindowState::Exceeded,
        Some(f) if f >= policy.action_threshold => WindowState::Critical,
        Some(f) if f >= policy.warning_threshold => WindowState::Warning,
        _ => WindowState::Ok,
    }
}

/// What limits may do with a model that has no price (`BUDGET_UNPRICED`): `record` (default) lets calls
/// count tokens only; `reject` fails closed: a check or allocation for such a model is refused wherever a
/// cost-limited hard policy applies, since that limit could not see what the call spends. Usage itself
/// is always recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnpricedPolicy {
    #[default]
    Record,
    Reject,
}

impl UnpricedPolicy {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "record" => Ok(UnpricedPolicy::Record),
            "reject" => Ok(UnpricedPolicy::Reject),
            other => Err(format!("`{other}` is not a choice; use record or reject")),
        }
    }

    /// Whether `policy` must refuse a call whose cost it cannot see (no price, no client cost).
    pub fn fails_closed(self, policy: &Policy, cost_known: bool) -> bool {
        self == UnpricedPolicy::Reject
            && !cost_known
            && policy.policy_type == PolicyType::HardLimit
            && policy.cost_limit.is_some()
    }
}

/// One matching window's answer to a pre-flight check, against the account as it stood when decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowCheck {
    pub policy_id: Uuid,
    pub window: String,
    pub window_start: Option<chrono::DateTime<chrono::Utc>>,
    pub window_end: Option<chrono::DateTime<chrono::Utc>>,
    pub account: Account,
    pub verdict: Verdict,
    /// Refused because the call's cost is unknown and `BUDGET_UNPRICED=reject` ([`UnpricedPolicy`]).
    pub unpriced: bool,
    /// What is left after the call, if it goes ahead (negative: by how much it would exceed).
    pub remaining_cost_after: Option<Decimal>,
    pub remaining_tokens_after: Option<i64>,
}

impl WindowCheck {
    /// One window's verdict on spending `cost` and `tokens` more; `unpriced` refuses (see
    /// [`UnpricedPolicy::fails_closed`]).
    pub fn of(policy: &Policy, window: &Window, account: &Account, cost: Decimal, tokens: i64, unpriced: bool) -> Self {
        let verdict = if unpriced { Verdict::Refuse } else { evaluate(policy, account, cost, tokens) };
        let (held_cost, held_tokens) = account.held();
        WindowCheck {
            policy_id: policy.id,
            window: window.key.clone(),
            window_start: window.start,
            window_end: window.end,
            account: *account,
            verdict,
            unpriced,
            remaining_cost_after: policy.cost_limit.map(|l| l.amount() - held_cost - cost),
            remaining_tokens_after: policy.token_limit.map(|l| l - held_tokens - tokens),
        }
    }
}

/// The pre-flight decision on an intended call: each matching window's verdict, whether the call may go
/// ahead, and whether a soft limit is pressed (so cheaper models should be offered).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preflight {
    pub windows: Vec<WindowCheck>,
    pub allowed: bool,
    pub soft_pressed: bool,
}

/// Decides a pre-flight check of a call costing `cost` (`cost_known`: priced or given by the client)
/// and `tokens` against each matching window's account. Reserves nothing.
pub fn preflight(
    policies: &[(&Policy, Window, Account)],
    cost: Decimal,
    tokens: i64,
    cost_known: bool,
    unpriced: UnpricedPolicy,
) -> Preflight {
    let windows: Vec<WindowCheck> = policies
        .iter()
        .map(|(policy, window, account)| {
            let unpriced = unpriced.fails_closed(policy, cost_known);
            WindowCheck::of(policy, window, account, cost, tokens, unpriced)
        })
        .collect();
    let allowed = windows.iter().all(|w| w.verdict != Verdict::Refuse);
    let soft_pressed = windows
        .iter()
        .zip(policies)
        .any(|(w, (p, _, _))| p.policy_type == PolicyType::SoftLimit && w.verdict == Verdict::Warn);
    Preflight { windows, allowed, soft_pressed }
}

/// The larger of cost used / cost limit and tokens used / token limit (posted + pending), if any limit
/// is non-zero.
pub fn usage_fraction(policy: &Policy, account: &Account) -> Option<Decimal> {
    Fill::of(policy, account).committed()
}

/// The log's record of a pre-flight check the hard limits refused (none when it was allowed): one
/// refusal per refusing window, with the account as the check saw it.
pub fn check_refused(
    call: &crate::domain::RecordUsage,
    windows: &[(&Policy, Window, Account)],
    preflight: &Preflight,
    cost: Money,
    tokens: i64,
) -> Option<crate::event::BudgetRefused> {
    if preflight.allowed {
        return None;
    }
    let refusals = windows
        .iter()
        .zip(&preflight.windows)
        .filter(|(_, c)| c.verdict == Verdict::Refuse)
        .map(|((p, w, a), _)| Refusal::new(p, w, a, cost, tokens))
        .collect();
    Some(crate::event::BudgetRefused {
        source: "check".into(),
        component: call.component.to_string(),
        context_id: call.context_id.as_ref().map(|c| c.to_string()),
        provider: Some(call.provider.to_string()),
        model: Some(call.model.to_string()),
        refusals,
    })
}

/// How full a window is, each figure a fraction of its limit (none when the limit is absent or zero).
/// `used` counts posted usage only: what was spent. `committed` adds what is reserved: what the window
/// state and admission look at. Every reader (status, WebSocket, dashboard) shows these two, so a
/// percentage means the same wherever it appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fill {
    pub cost_used: Option<Decimal>,
    pub tokens_used: Option<Decimal>,
    pub cost_committed: Option<Decimal>,
    pub tokens_committed: Option<Decimal>,
}

impl Fill {
    pub fn of(policy: &Policy, account: &Account) -> Fill {
        let cost = |amount: Decimal| policy.cost_limit.filter(|l| !l.amount().is_zero()).map(|l| amount / l.amount());
        let tokens = |n: i64| policy.token_limit.filter(|l| *l > 0).map(|l| Decimal::from(n) / Decimal::from(l));
        let (held_cost, held_tokens) = account.held();
        Fill {
            cost_used: cost(account.posted_cost),
            tokens_used: tokens(account.posted_tokens),
            cost_committed: cost(held_cost),
            tokens_committed: tokens(held_tokens),
        }
    }

    /// The larger of the cost and token fractions spent.
    pub fn used(&self) -> Option<Decimal> {
        larger(self.cost_used, self.tokens_used)
    }

    /// The larger of the cost and token fractions spent or reserved ([`usage_fraction`]).
    pub fn committed(&self) -> Option<Decimal> {
        larger(self.cost_committed, self.tokens_committed)
    }
}

fn larger(a: Option<Decimal>, b: Option<Decimal>) -> Option<Decimal> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    pub used_cost: Decimal,
    pub used_tokens: i64,
    #[serde(with = "crate::money::decimal_json")]
    pub reserved_cost: Decimal,
    pub reserved_tokens: i64,
    pub requested_cost: Money,
    pub requested_tokens: i64,
}

#[cfg(test)]
mod verdict_tests {
    use super::*;
    use crate::decide::set_policy;
    use crate::domain::policy::{PolicyInput, SetPolicy};
    use rust_decimal_macros::dec;

    fn policy_with(kind: &str, limits: serde_json::Value) -> Policy {
        let mut input = serde_json::json!({"period": "daily", "type": kind});
        input.as_object_mut().unwrap().extend(limits.as_object().unwrap().clone());
        let input: PolicyInput = serde_json::from_value(input).unwrap();
        Policy::from_event(&set_policy(&SetPolicy::validate(&input).unwrap(), Uuid::now_v7(), None))
    }

    fn policy(kind: &str) -> Policy {
        policy_with(kind, serde_json::json!({"cost_limit": 10, "token_limit": 1000}))
    }

    fn window(p: &Policy) -> Window {
        p.calendar_window_at(chrono::Utc::now()).unwrap()
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

    /// A call is warned of when it takes a window past its warning threshold, not only once the window
    /// was past it: a check of a call that took a $1 soft limit from 0 to 90% said "allow" and nothing
    /// else, and a reservation likewise, though their answers word a warning "with it, … would hold".
    #[test]
    fn a_call_that_takes_a_window_past_its_threshold_is_warned_of() {
        let empty = Account::default();
        for kind in ["warn", "soft_limit", "hard_limit"] {
            assert_eq!(evaluate(&policy(kind), &empty, dec!(7.99), 0), Verdict::Allow, "{kind}: 79.9% with it");
            assert_eq!(evaluate(&policy(kind), &empty, dec!(8), 0), Verdict::Warn, "{kind}: 80% with it");
            assert_eq!(evaluate(&policy(kind), &empty, dec!(0), 800), Verdict::Warn, "{kind}: tokens too");
        }
        assert_eq!(evaluate(&policy("ignore"), &empty, dec!(9), 0), Verdict::Track);
    }

    /// Status, usage flags and refusals all use [`beyond_limit`]: at the limit is within it, one cent or
    /// token more (posted or pending) is beyond.
    #[test]
    fn a_window_is_beyond_its_limit_by_one_definition() {
        let p = policy("hard_limit");
        let at_limit = Account { posted_cost: dec!(6), pending_cost: dec!(4), ..Default::default() };
        assert!(!beyond_limit(&p, &at_limit, Decimal::ZERO, 0));
        assert_eq!(window_state(&p, &at_limit), WindowState::Critical);
        let over = Account { pending_cost: dec!(4.01), ..at_limit };
        assert!(beyond_limit(&p, &over, Decimal::ZERO, 0));
        assert_eq!(window_state(&p, &over), WindowState::Exceeded);
        assert_eq!(evaluate(&p, &at_limit, dec!(0.01), 0), Verdict::Refuse);
        let tokens = Account { posted_tokens: 700, pending_tokens: 301, ..Default::default() };
        assert_eq!(window_state(&p, &tokens), WindowState::Exceeded);
        let warned = Account { posted_cost: dec!(8), ..Default::default() };
        assert_eq!(window_state(&p, &warned), WindowState::Warning);
        assert_eq!(window_state(&p, &Account::default()), WindowState::Ok);
        for state in [WindowState::Ok, WindowState::Warning, WindowState::Critical, WindowState::Exceeded] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str(), "as_str is the wire form");
        }
    }

    #[test]
    fn preflight_refuses_on_a_hard_limit_and_fails_closed_on_unpriced_calls_only_when_asked() {
        let hard = policy("hard_limit");
        let tokens_only = policy_with("hard_limit", serde_json::json!({"token_limit": 1000}));
        let soft = policy("soft_limit");
        let near = Account { posted_cost: dec!(9.5), ..Default::default() };
        let windows = vec![
            (&hard, window(&hard), Account::default()),
            (&tokens_only, window(&tokens_only), Account::default()),
            (&soft, window(&soft), near),
        ];

        let priced = preflight(&windows, dec!(1), 100, true, UnpricedPolicy::Reject);
        assert!(priced.allowed, "a priced call within the hard limits is allowed");
        assert!(priced.soft_pressed, "the soft limit would go past 10: cheaper models are offered");
        assert_eq!(priced.windows[0].remaining_cost_after, Some(dec!(9)));
        assert_eq!(priced.windows[1].remaining_tokens_after, Some(900));

        let unpriced = preflight(&windows, Decimal::ZERO, 100, false, UnpricedPolicy::Reject);
        assert!(!unpriced.allowed);
        let refused: Vec<bool> = unpriced.windows.iter().map(|w| w.unpriced).collect();
        assert_eq!(refused, [true, false, false], "only the cost-limited hard policy cannot see the cost");
        assert!(preflight(&windows, Decimal::ZERO, 100, false, UnpricedPolicy::Record).allowed);

        let too_big = preflight(&windows, dec!(10.01), 100, true, UnpricedPolicy::Record);
        assert!(!too_big.allowed);
        assert_eq!(too_big.windows[0].verdict, Verdict::Refuse);
        assert_eq!(too_big.windows[0].remaining_cost_after, Some(dec!(-0.01)));
    }
}
