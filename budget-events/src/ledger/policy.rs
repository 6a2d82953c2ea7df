//! Setting a policy: create, or replace the policy with the same budget, period and scope (it keeps its
//! id and accounts). Decided in pass 1, so later usage of the batch already counts against it. A policy
//! that starts counting (new, or enabled again) opens its current calendar window with the usage and
//! reservations already in it, in pass 2, after the batch's earlier commands have posted.

use crate::db::WriteTx;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Batch, CommandError, Handle, LedgerCommand, LedgerError, Step};
use crate::decide;
use crate::domain::policy::{BudgetRef, Policy, SetPolicy};
use crate::event::{BudgetCreated, Event, EventMetadata, NewEvent, PolicySet, Posting};
use crate::store::idempotency::IdempotencyKey;
use crate::store::{allocations, opening, policies};

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
    /// The policy this change replaced, as it was (outcomes stored before it was kept have none).
    #[serde(default)]
    pub previous: Option<PolicySet>,
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

    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        let mut events = Vec::new();
        let found = match &self.policy.budget {
            BudgetRef::Id(id) => policies::budget_by_id(tx.client(), *id)
                .await?
                .map(|b| (b.budget_id, b.name, b.active))
                .ok_or(CommandError::UnknownBudget(*id)),
            BudgetRef::Name(name) => Ok(match policies::budget_by_name(tx.client(), name).await? {
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
        let before = existing.map(|i| batch.policies[i].clone());
        let mut event = decide::set_policy(&self.policy, budget_id, before.as_ref());
        let policy = Policy::from_event(&event);
        let stream = decide::policy_stream(event.policy_id);
        let created = before.is_none();
        let previous = before.as_ref().map(Policy::to_event);
        let outcome = move |event: PolicySet, version| {
            Self::wrap(PolicyOutcome {
                policy: event,
                budget_name: budget_name.clone(),
                created,
                previous: previous.clone(),
                budget_created,
                version,
                replayed: false,
            })
        };
        if before.as_ref() == Some(&policy) {
            // Setting a policy to what it is (disabling a disabled one too) appends nothing.
            let version = batch.current_version(tx, &stream).await?;
            return Ok(Step::Done(Ok(outcome(event, version)), events));
        }
        policies::save(tx, &event).await?;
        match existing {
            Some(i) => batch.policies[i] = policy.clone(),
            None => batch.policies.push(policy.clone()),
        }
        let version = batch.next_version(tx, &stream).await?;
        let opening_window =
            policy.calendar_window_at(batch.now).filter(|_| decide::starts_counting(&event, before.as_ref()));
        let (Some(window), Some(start), Some(end)) =
            (opening_window.clone(), opening_window.as_ref().and_then(|w| w.start), opening_window.and_then(|w| w.end))
        else {
            events.push((stream, version, NewEvent::new(Event::PolicySet(event.clone()), self.metadata.clone())));
            return Ok(Step::Done(Ok(outcome(event, version)), events));
        };

        // The policy starts counting: its current window opens with what it already holds. Read under
        // the exclusive ledger lock, so no other batch commits usage in between.
        batch.need(policy.id, &window);
        let logged = opening::usage_between(tx, start, end, &policy.scope).await?;
        for a in allocations::lock_active_since(tx, start).await? {
            batch.allocations.entry(a.allocation_id).or_insert(a);
        }
        Ok(Step::post(move |books| {
            // Earlier commands of this batch posted already; their events are not in the log yet.
            let batched = books.events.iter().map(|(_, _, e)| &e.event);
            let opening =
                decide::opening_balance(&policy, &window, logged.iter().chain(batched), books.allocations.values());
            let account = books
                .accounts
                .get_mut(&(policy.id, window.key.clone()))
                .expect("the write path locks the account a policy opens");
            account.posted_cost = opening.posted_cost;
            account.posted_tokens = opening.posted_tokens;
            account.records = opening.records;
            account.pending_cost = opening.pending_cost;
            account.pending_tokens = opening.pending_tokens;
            let posting = Posting { policy_id: policy.id, window: window.key.clone() };
            for id in &opening.allocations {
                let a = books.allocations.get_mut(id).expect("the opening names only allocations the batch holds");
                a.reservations.push(posting.clone());
                books.touched.insert(*id);
            }
            event.opening = Some(opening);
            books.events.append(&mut events);
            books.events.push((stream, version, NewEvent::new(Event::PolicySet(event.clone()), self.metadata.clone())));
            Ok(outcome(event, version))
        }))
    }

    fn excludes_other_batches(&self) -> bool {
        true
    }

    fn mark_replayed(outcome: &mut PolicyOutcome) {
        outcome.replayed = true;
    }
}
