//! Budgets: create, rename or describe, archive (which turns off all of its policies, for later usage
//! of the same batch too).

use crate::db::WriteTx;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Batch, CommandError, Handle, LedgerCommand, LedgerError, Step};
use crate::decide;
use crate::event::{BudgetArchived, BudgetCreated, BudgetUpdated, Event, EventMetadata, NewEvent};
use crate::store::idempotency::IdempotencyKey;
use crate::store::policies;

/// Create, change or archive a budget.
#[derive(Debug, Clone)]
pub struct BudgetCommand {
    pub change: BudgetChange,
    pub key: Option<IdempotencyKey>,
    pub metadata: EventMetadata,
}

#[derive(Debug, Clone)]
pub enum BudgetChange {
    Create { name: String, description: Option<String>, owner: Option<String> },
    Update(BudgetUpdated),
    Archive(Uuid),
}

/// A budget as a [`BudgetCommand`] left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetOutcome {
    pub budget_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub active: bool,
    /// Version of the budget's stream after this change.
    pub version: i64,
    #[serde(default, skip_serializing)]
    pub replayed: bool,
}

impl Handle for BudgetCommand {
    fn key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }

    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        let refused = |e: CommandError| Ok(Step::Done(Err(e), Vec::new()));
        let (budget_id, event) = match &self.change {
            BudgetChange::Create { name, description, owner } => {
                if policies::budget_by_name(tx.client(), name).await?.is_some() {
                    return refused(CommandError::BudgetExists(name.clone()));
                }
                let created = BudgetCreated {
                    budget_id: Uuid::now_v7(),
                    name: name.clone(),
                    description: description.clone(),
                    owner: owner.clone(),
                };
                policies::insert_budget(tx, &created).await?;
                (created.budget_id, Some(Event::BudgetCreated(created)))
            }
            BudgetChange::Update(update) => {
                let Some(current) = policies::budget_by_id(tx.client(), update.budget_id).await? else {
                    return refused(CommandError::UnknownBudget(update.budget_id));
                };
                if let Some(name) = update.name.as_ref().filter(|n| **n != current.name) {
                    if policies::budget_by_name(tx.client(), name).await?.is_some() {
                        return refused(CommandError::BudgetExists(name.clone()));
                    }
                }
                // A change that changes nothing appends nothing.
                let changes = update.name.as_ref().is_some_and(|n| *n != current.name)
                    || update.description.is_some() && update.description != current.description
                    || update.owner.is_some() && update.owner != current.owner;
                if changes {
                    policies::update_budget(tx, update).await?;
                }
                (update.budget_id, changes.then(|| Event::BudgetUpdated(update.clone())))
            }
            BudgetChange::Archive(id) => {
                let Some(current) = policies::budget_by_id(tx.client(), *id).await? else {
                    return refused(CommandError::UnknownBudget(*id));
                };
                if !current.active {
                    // Archived already: nothing to append.
                    (*id, None)
                } else {
                    policies::archive_budget(tx, *id).await?;
                    // Later usage in this batch no longer counts against its policies.
                    for p in batch.policies.iter_mut().filter(|p| p.budget_id == *id) {
                        p.enabled = false;
                    }
                    (*id, Some(Event::BudgetArchived(BudgetArchived { budget_id: *id })))
                }
            }
        };
        let stream = decide::budget_stream(budget_id);
        let version = match event {
            Some(_) => batch.next_version(tx, &stream).await?,
            None => batch.current_version(tx, &stream).await?,
        };
        let row = policies::budget_by_id(tx.client(), budget_id).await?.expect("the budget was written above");
        let outcome = BudgetOutcome {
            budget_id,
            name: row.name,
            description: row.description,
            owner: row.owner,
            active: row.active,
            version,
            replayed: false,
        };
        let events = event.map(|e| (stream, version, NewEvent::new(e, self.metadata.clone()))).into_iter().collect();
        Ok(Step::Done(Ok(Self::wrap(outcome)), events))
    }

    fn mark_replayed(outcome: &mut BudgetOutcome) {
        outcome.replayed = true;
    }
}
