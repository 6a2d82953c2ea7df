//! A policy change.

use uuid::Uuid;

use crate::domain::policy::{Policy, SetPolicy};
use crate::event::PolicySet;

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
