//! The commands the write path takes, their outcomes, and why a command can be refused.
//!
//! [`commands!`] lists each command once with its outcome type; it generates the [`Command`] and
//! [`Outcome`] enums the batch carries and the dispatch from them to each command's [`Handle`] impl,
//! so adding a command is one line here plus its module.

use std::collections::HashMap;

use crate::db::WriteTx;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Batch, Handle, LedgerError, Step};
use crate::decide;
use crate::domain::allocation::AllocationState;
use crate::error_code::ErrorCode;
use crate::store::idempotency::IdempotencyKey;

/// A command of the write path, with the outcome it is answered with. The writer's
/// [`submit`](crate::writer::Writer::submit) takes any of them and returns its own outcome type.
pub trait LedgerCommand: Sized + Send + 'static {
    type Outcome: Clone + Serialize + serde::de::DeserializeOwned + Send + 'static;
    fn into_command(self) -> Command;
    fn wrap(outcome: Self::Outcome) -> Outcome;
    /// The outcome of this command, if `outcome` is one (the write path answers each command with its own).
    fn unwrap(outcome: Outcome) -> Option<Self::Outcome>;
}

macro_rules! commands {
    ($($(#[$doc:meta])* $variant:ident($command:ty) -> $outcome:ty;)*) => {
        /// Everything the write path takes.
        #[derive(Debug, Clone)]
        pub enum Command {
            $($(#[$doc])* $variant($command),)*
        }

        /// What a command did, one variant per command.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Outcome {
            $($variant(Box<$outcome>),)*
        }

        $(
            impl LedgerCommand for $command {
                type Outcome = $outcome;
                fn into_command(self) -> Command {
                    Command::$variant(self)
                }
                fn wrap(outcome: $outcome) -> Outcome {
                    Outcome::$variant(Box::new(outcome))
                }
                fn unwrap(outcome: Outcome) -> Option<$outcome> {
                    match outcome {
                        Outcome::$variant(o) => Some(*o),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }
            }
        )*

        impl Command {
            pub(crate) fn key(&self) -> Option<&IdempotencyKey> {
                match self { $(Command::$variant(c) => c.key(),)* }
            }
            pub(crate) fn keys(&self) -> Vec<&IdempotencyKey> {
                match self { $(Command::$variant(c) => c.keys(),)* }
            }
            pub(crate) fn signer(&self) -> Option<Uuid> {
                match self { $(Command::$variant(c) => c.signer(),)* }
            }
            /// Records this command writes, for sizing batches.
            pub fn weight(&self) -> usize {
                match self { $(Command::$variant(c) => c.weight(),)* }
            }
            pub(crate) fn allocations(&self) -> Vec<Uuid> {
                match self { $(Command::$variant(c) => c.allocations(),)* }
            }
            pub(crate) fn excludes_other_batches(&self) -> bool {
                match self { $(Command::$variant(c) => c.excludes_other_batches(),)* }
            }
            pub(crate) fn reads_by_key(&self) -> bool {
                match self { $(Command::$variant(c) => c.reads_by_key(),)* }
            }
            pub(crate) fn contexts(&self) -> Vec<(&str, &str)> {
                match self { $(Command::$variant(c) => c.contexts(),)* }
            }
            pub(crate) fn priced_models(&self) -> Vec<(&str, &str)> {
                match self { $(Command::$variant(c) => c.priced_models(),)* }
            }
            pub(crate) fn foreseen_accounts(
                &self,
                policies: &[crate::domain::policy::Policy],
                now: chrono::DateTime<chrono::Utc>,
            ) -> Option<Vec<(crate::store::accounts::AccountKey, crate::store::accounts::Bounds)>> {
                match self { $(Command::$variant(c) => c.foreseen_accounts(policies, now),)* }
            }
            pub(crate) async fn plan<'a>(
                &'a self,
                tx: &WriteTx,
                batch: &mut Batch<'a>,
            ) -> Result<Step<'a>, LedgerError> {
                match self { $(Command::$variant(c) => c.plan(tx, batch).await,)* }
            }
            /// The outcome stored under this command's key by an earlier request.
            pub(crate) fn replay(
                &self,
                key: &IdempotencyKey,
                hash: &str,
                stored: &serde_json::Value,
            ) -> Result<Outcome, CommandError> {
                match self { $(Command::$variant(_) => super::idempotency::replay::<$command>(key, hash, stored),)* }
            }
            pub(crate) fn part_outcomes<'c>(
                &'c self,
                outcome: &Outcome,
                batch: &Batch<'_>,
            ) -> Vec<(&'c IdempotencyKey, String)> {
                match (self, outcome) {
                    $((Command::$variant(c), Outcome::$variant(o)) => c.part_outcomes(o, batch),)*
                    #[allow(unreachable_patterns)]
                    _ => Vec::new(),
                }
            }
        }

        impl Outcome {
            /// The same outcome, returned again to a retry.
            pub(crate) fn replayed(self) -> Outcome {
                match self { $(Outcome::$variant(mut o) => { <$command as Handle>::mark_replayed(&mut o); Outcome::$variant(o) })* }
            }
            pub(crate) fn assign_positions(&mut self, positions: &HashMap<Uuid, i64>) {
                match self { $(Outcome::$variant(o) => <$command as Handle>::assign_positions(o, positions),)* }
            }
            /// Events the outcome names without their log position (see [`Handle::unpositioned`]).
            pub(crate) fn unpositioned(&self) -> Vec<Uuid> {
                match self { $(Outcome::$variant(o) => <$command as Handle>::unpositioned(o),)* }
            }
            /// The outcome as stored under its key: JSON text, written straight from the outcome (through a
            /// `serde_json::Value`, a batch's outcomes cost the writer a tenth of its time; perf, `budget bench`).
            pub(crate) fn to_json_text(&self) -> String {
                match self { $(Outcome::$variant(o) => serde_json::to_string(o).expect("outcomes serialize"),)* }
            }
        }
    };
}

commands! {
    Usage(super::UsageCommand) -> super::UsageOutcome;
    SetPolicy(super::PolicyCommand) -> super::PolicyOutcome;
    Budget(super::BudgetCommand) -> super::BudgetOutcome;
    Allocate(super::AllocateCommand) -> super::AllocationOutcome;
    Release(super::ReleaseCommand) -> super::AllocationOutcome;
    /// Expire the active allocations whose time is up (the sweeper); the outcome is their ids.
    Expire(super::ExpireCommand) -> Vec<Uuid>;
    SetPrices(super::PricesCommand) -> super::PricesOutcome;
    Reprice(super::RepriceCommand) -> super::RepriceOutcome;
    Check(super::CheckCommand) -> super::CheckOutcome;
    Acknowledge(super::AcknowledgeCommand) -> super::AcknowledgeOutcome;
    CreateKey(super::CreateKeyCommand) -> super::KeyOutcome;
    RevokeKey(super::RevokeKeyCommand) -> super::KeyOutcome;
}

/// Why a command as a whole was refused. Stored under the command's key like an acceptance, so a
/// retry gets the same refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandError {
    #[error("the idempotency key `{0}` was already used for a different request; use a new key for a new request")]
    KeyReused(String),
    #[error("no budget has id {0}; list budgets with GET /api/budgets, or name one with `budget`")]
    UnknownBudget(Uuid),
    #[error("a budget named `{0}` already exists; choose another name or change that budget")]
    BudgetExists(String),
    #[error("budget `{0}` is archived (its policies no longer count), so it takes no new limits and cannot be brought back: set this limit in another budget, or rename the archived one (`budget budgets rename {0} NEW-NAME`, or PATCH /api/budgets/ID) and set it again to make a new `{0}`")]
    BudgetArchived(String),
    #[error("{}", refusal_message(.0))]
    BudgetExceeded(Vec<decide::Refusal>),
    #[error("{provider}/{model} has no price, so the {period} hard limit on {scope} cannot check its cost and BUDGET_UNPRICED=reject refuses it; nothing was reserved; set its price with `budget prices set` or send estimated_cost")]
    Unpriced { provider: String, model: String, period: String, scope: String },
    #[error("no allocation has id {0}; list them with GET /api/allocations")]
    UnknownAllocation(Uuid),
    #[error("allocation {id} is already {}; an allocation resolves at most once", .state.as_str())]
    AlreadyResolved { id: Uuid, state: AllocationState },
    #[error("no API key has id {0}; list them with `budget keys list`")]
    UnknownKey(Uuid),
    /// The API key that sent the command was revoked or expired before the command was decided.
    #[error("the API key {0} was revoked or has expired, so nothing was written; ask an admin for a new one (`budget keys create`)")]
    KeyInactive(Uuid),
    #[error("a different price of {name} already takes effect at {at}; give another effective_from (a later one replaces it from then on)")]
    PriceVersionExists { name: String, at: chrono::DateTime<chrono::Utc> },
    /// Revoking it would leave keys required and none able to manage keys, limits or prices.
    #[error("key {key_id} is the last active admin key: without it nobody could manage keys, limits or prices, so it was not revoked; create another admin key first (`budget keys create --scope admin`){}, or start the service with BUDGET_ADMIN_KEY", if *.others_first { ", revoke the other keys first (the service then runs open, as before its first key)" } else { "" })]
    LastAdminKey { key_id: Uuid, others_first: bool },
}

impl CommandError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CommandError::KeyReused(_) => ErrorCode::IdempotencyKeyReused,
            CommandError::UnknownBudget(_) => ErrorCode::NotFound,
            CommandError::BudgetExists(_) => ErrorCode::BudgetExists,
            CommandError::BudgetArchived(_) => ErrorCode::BudgetArchived,
            CommandError::BudgetExceeded(_) => ErrorCode::BudgetExceeded,
            CommandError::Unpriced { .. } => ErrorCode::UnpricedModel,
            CommandError::UnknownAllocation(_) => ErrorCode::UnknownAllocation,
            CommandError::AlreadyResolved { .. } => ErrorCode::AllocationResolved,
            CommandError::PriceVersionExists { .. } => ErrorCode::PriceVersionExists,
            CommandError::UnknownKey(_) => ErrorCode::NotFound,
            CommandError::KeyInactive(_) => ErrorCode::Unauthenticated,
            CommandError::LastAdminKey { .. } => ErrorCode::LastAdminKey,
        }
    }
}

fn refusal_message(refusals: &[decide::Refusal]) -> String {
    use crate::display::{dollars, thousands};
    let r = &refusals[0];
    let limit = match (r.cost_limit, r.token_limit) {
        (Some(c), Some(t)) => format!("{} / {} tokens", dollars(c.amount()), thousands(t)),
        (Some(c), None) => dollars(c.amount()),
        (None, Some(t)) => format!("{} tokens", thousands(t)),
        (None, None) => "no limit".into(),
    };
    // A per-task or per-session window is named (there is one per task or session) and never resets.
    let (whose, remedy) = match crate::domain::policy::window_owner(&r.window) {
        Some(owner) => (format!(" in {owner}'s window"), "release unused allocations or raise the limit"),
        None => (String::new(), "release unused allocations, wait for the window to reset, or raise the limit"),
    };
    format!(
        "the {} hard limit on {} ({limit}) would be exceeded{whose}: used {} / {} tokens, reserved {} / {} tokens, requested {} / {} tokens{}; {remedy}",
        r.period,
        r.scope,
        dollars(r.used_cost),
        thousands(r.used_tokens),
        dollars(r.reserved_cost),
        thousands(r.reserved_tokens),
        dollars(r.requested_cost.amount()),
        thousands(r.requested_tokens),
        r.resets_at.map_or(String::new(), |t| format!(" (window resets at {t})")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusal reads as the alert it raises does: tokens grouped by thousands.
    #[test]
    fn a_refusal_groups_its_token_counts() {
        let money = |s: &str| crate::money::Money::new(s.parse().unwrap()).unwrap();
        let r = decide::Refusal {
            policy_id: Uuid::nil(),
            period: "daily".into(),
            scope: "provider=openai".into(),
            window: "2026-12-03T00:00:00Z".into(),
            window_start: None,
            resets_at: None,
            cost_limit: Some(money("1")),
            token_limit: Some(1_000_000),
            used_cost: "0.0192".parse().unwrap(),
            used_tokens: 4620,
            reserved_cost: "0".parse().unwrap(),
            reserved_tokens: 0,
            requested_cost: money("4"),
            requested_tokens: 400_000,
        };
        let m = refusal_message(std::slice::from_ref(&r));
        assert!(m.contains("($1 / 1,000,000 tokens)"), "{m}");
        assert!(
            m.contains("used $0.0192 / 4,620 tokens, reserved $0 / 0 tokens, requested $4 / 400,000 tokens"),
            "{m}"
        );
        assert!(m.ends_with("wait for the window to reset, or raise the limit"), "{m}");
        // A session's window is named, and it never resets.
        let m = refusal_message(&[decide::Refusal { period: "per_session".into(), window: "session:s-1".into(), ..r }]);
        assert!(m.starts_with("the per_session hard limit on provider=openai ($1 / 1,000,000 tokens) would be exceeded in session s-1's window: "), "{m}");
        assert!(m.ends_with("; release unused allocations or raise the limit"), "{m}");
    }
}
