//! Decisions: pure functions from a validated command, and the state it is decided against, to the
//! events it produces. No I/O here, so every rule is unit-tested without a database.
//!
//! Every rule of the service lives here, one file per kind: [`usage`] (pricing and posting a record),
//! [`policy`] (a policy change), [`admission`] (what a limit allows: the one definition of "beyond the
//! limit", a window's state, the pre-flight check, the unpriced fail-closed rule) and [`allocation`]
//! (reserving, settling, voiding, estimating). The write path (`ledger/`) and the routes call them; they
//! decide nothing themselves.

mod admission;
mod allocation;
mod policy;
mod usage;

pub use admission::*;
pub use allocation::*;
pub use policy::*;
pub use usage::*;

use uuid::Uuid;

use crate::domain::policy::{CallFacts, Policy, Window};
use crate::domain::RecordUsage;

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
        user: record.user_id.as_ref().map(|s| s.as_str()),
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
