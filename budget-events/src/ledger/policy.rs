//! Setting a policy: create, or replace the policy with the same budget, period and scope (it keeps its
//! id and accounts). Decided in pass 1, so later usage of the batch already counts against it.

use serde::{Deserialize, Serialize};
use tokio_postgres::Transaction;
use uuid::Uuid;

use super::{Batch, CommandError, Handle, LedgerCommand, LedgerError, Step};
use crate::decide;
use crate::domain::policy::{BudgetRef, Policy, SetPolicy};
use crate::event::{BudgetCreated, Event, EventMetadata, NewEvent, PolicySet};
use crate::store::idempotency::IdempotencyKey;
use crate::store::policies;

/// Set (create or replace) a policy.
#[derive(Debug, Clone)]
pub struct PolicyCommand {
    pub policy: SetPolicy,
    pub key: Option<IdempotencyKey>,
    pub metadata: EventMetadata,
}

/// The outcome of a [`PolicyCommand`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyOutcome {
    pub policy: PolicySet,
    pub budget_name: String,
    /// False when an existing policy (same budget, period and scope) was replaced.
    pub created: bool,
    pub budget_created: bool,
    /// Version of the policy's stream after this change (1 for a new policy).
    pub version: i64,
    #[serde(default, skip_serializing)]
    pub replayed: bool,
}

impl Handle for PolicyCommand {
    fn key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }

    async fn plan<'a>(&'a self, tx: &Transaction<'_>, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        let mut events = Vec::new();
        let found = match &self.policy.budget {
            BudgetRef::Id(id) => policies::budget_by_id(tx, *id)
                .await?
                .map(|b| (b.budget_id, b.name, b.active))
                .ok_or(CommandError::UnknownBudget(*id)),
            BudgetRef::Name(name) => Ok(match policies::budget_by_name(tx, name).await? {
                Some(b) => (b.budget_id, b.name, b.active),
                None => {
                    // A budget named for the first time is created with its first policy.
                    let created =
                        BudgetCreated { budget_id: Uuid::now_v7(), name: name.clone(), description: None, owner: None };
                    policies::insert_budget(tx, &created).await?;
                    let stream = decide::budget_stream(created.budget_id);
                    batch.stream_versions.insert(stream.clone(), 1);
                    let budget = (created.budget_id, created.name.clone(), true);
                    events.push((stream, 1, NewEvent::new(Event::BudgetCreated(created), self.metadata.clone())));
                    budget
                }
            }),
        };
        let (budget_id, budget_name) = match found {
            Ok((_, name, false)) => return Ok(Step::Done(Err(CommandError::BudgetArchived(name)), Vec::new())),
            Ok((id, name, true)) => (id, name),
            Err(e) => return Ok(Step::Done(Err(e), Vec::new())),
        };
        let budget_created = !events.is_empty();
        let slot = self.policy.scope.key();
        let existing = batch
            .policies
            .iter()
            .position(|p| p.budget_id == budget_id && p.period == self.policy.period && p.scope.key() == slot);
        let event = decide::set_policy(&self.policy, budget_id, existing.map(|i| &batch.policies[i]));
        let policy = Policy::from_event(&event);
        let stream = decide::policy_stream(event.policy_id);
        let unchanged = existing.is_some_and(|i| batch.policies[i] == policy);
        let version = if unchanged {
            // Setting a policy to what it is (disabling a disabled one too) appends nothing.
            batch.current_version(tx, &stream).await?
        } else {
            policies::save(tx, &event).await?;
            match existing {
                Some(i) => batch.policies[i] = policy,
                None => batch.policies.push(policy),
            }
            let version = batch.next_version(tx, &stream).await?;
            events.push((stream, version, NewEvent::new(Event::PolicySet(event.clone()), self.metadata.clone())));
            version
        };
        let outcome = PolicyOutcome {
            policy: event,
            budget_name,
            created: existing.is_none(),
            budget_created,
            version,
            replayed: false,
        };
        Ok(Step::Done(Ok(Self::wrap(outcome)), events))
    }

    fn mark_replayed(outcome: &mut PolicyOutcome) {
        outcome.replayed = true;
    }
}
