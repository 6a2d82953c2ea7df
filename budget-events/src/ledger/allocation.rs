//! Allocations, two-phase: a reservation is decided against the locked accounts (refused when a hard
//! limit would be passed, counting what is already reserved); a release or an expiry voids what is left.
//! Every allocation resolves at most once: its row is locked while the batch decides.

use crate::db::WriteTx;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Batch, CommandError, Handle, LedgerCommand, LedgerError, Step};
use crate::decide::{self, UnpricedPolicy};
use crate::domain::allocation::{Allocation, AllocationState, CreateAllocation};
use crate::domain::policy::{Policy, Window};
use crate::event::{Event, EventMetadata, NewEvent};
use crate::store::accounts::{AccountKey, Bounds};
use crate::store::idempotency::IdempotencyKey;
use crate::store::{allocations, prices};

/// Reserve tokens for a task.
#[derive(Debug, Clone)]
pub struct AllocateCommand {
    pub allocation: CreateAllocation,
    /// What to do when the model has no price and the client gave no estimate (`BUDGET_UNPRICED`).
    pub unpriced: UnpricedPolicy,
    pub key: Option<IdempotencyKey>,
    pub metadata: EventMetadata,
    /// The API key whose holder sends this now: checked again in the transaction, and refused if it
    /// was revoked or expired meanwhile (see `Handle::signer`). `None` for what needs no key, or for
    /// a record of a call already admitted on a reservation (the gateway's settlement must be kept
    /// even if its key is revoked while the call runs).
    pub signer: Option<Uuid>,
}

/// Void what an allocation still reserves.
#[derive(Debug, Clone)]
pub struct ReleaseCommand {
    pub allocation_id: Uuid,
    pub key: Option<IdempotencyKey>,
    pub metadata: EventMetadata,
}

/// Expire the active allocations whose time is up at this instant (the sweeper), up to 1000 a batch.
#[derive(Debug, Clone)]
pub struct ExpireCommand {
    pub at: DateTime<Utc>,
}

/// An allocation as a command left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationOutcome {
    pub allocation: Allocation,
    /// A new reservation's warn and soft-limit windows ([`decide::Reserved::warnings`]); kept with the
    /// stored outcome so that a retry gets them too. Empty for a release.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<decide::WindowCheck>,
    #[serde(default, skip_serializing)]
    pub replayed: bool,
}

/// Allocations a sweep expires in one batch.
const EXPIRE_PER_SWEEP: i64 = 1000;

impl Handle for AllocateCommand {
    fn key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }
    fn reads_by_key(&self) -> bool {
        true
    }
    fn signer(&self) -> Option<Uuid> {
        self.signer
    }

    fn priced_models(&self) -> Vec<(&str, &str)> {
        match (&self.allocation.provider, &self.allocation.model) {
            (Some(p), Some(m)) => vec![(p.as_str(), m.as_str())],
            _ => Vec::new(),
        }
    }

    /// The windows [`Self::plan`] reserves in; none when the provider is still to be looked up.
    fn foreseen_accounts(&self, policies: &[Policy], now: DateTime<Utc>) -> Option<Vec<(AccountKey, Bounds)>> {
        if self.allocation.provider.is_none() && self.allocation.model.is_some() {
            return None;
        }
        let windows = decide::reservation_windows(policies, &self.allocation, now);
        Some(windows.into_iter().map(|(p, w)| ((p.id, w.key), (w.start, w.end))).collect())
    }

    /// Prices the reservation from the book (unless the client estimated it), refuses an unpriced model
    /// where `BUDGET_UNPRICED=reject` says so, and asks for the windows it reserves in.
    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        let mut allocation = self.allocation.clone();
        // A model without a provider reserves where the call will be counted: under the one provider
        // the price book has it for (several or none: every provider's policies, the safe side).
        let mut resolved_versions = None;
        if let (None, Some(model)) = (&allocation.provider, &allocation.model) {
            if let [only] = prices::providers_of(tx.client(), model.as_str(), batch.now).await?.as_slice() {
                allocation.provider = crate::domain::names::Provider::parse(only).ok();
                resolved_versions = Some(prices::versions_for_model(tx.client(), only, model.as_str()).await?);
            }
        }
        let versions = resolved_versions.as_deref().unwrap_or(&batch.price_versions);
        let matched = decide::reservation_windows(&batch.policies, &allocation, batch.now);
        if !allocation.estimated_by_client {
            match decide::allocation_estimate(&allocation, versions, batch.now) {
                Some(cost) => allocation.estimated_cost = cost,
                None if allocation.model.is_some() => {
                    if let Some(p) = decide::unpriced_refusal(&matched, self.unpriced) {
                        let refusal = CommandError::Unpriced {
                            provider: allocation.provider.as_ref().map_or("?".into(), |p| p.to_string()),
                            model: allocation.model.as_ref().map_or("?".into(), |m| m.to_string()),
                            period: p.period.to_string(),
                            scope: p.scope.describe(),
                        };
                        return Ok(Step::Done(Err(refusal), Vec::new()));
                    }
                }
                None => {}
            }
        }
        let windows: Vec<(Policy, Window)> = matched.into_iter().map(|(p, w)| (p.clone(), w)).collect();
        for (p, w) in &windows {
            batch.need(p.id, w);
        }
        let id = Uuid::now_v7();
        Ok(Step::post(move |books| {
            let windows: Vec<(&Policy, Window)> = windows.iter().map(|(p, w)| (p, w.clone())).collect();
            match decide::reserve(&allocation, id, &windows, &mut books.accounts, books.now) {
                Ok(decide::Reserved { event, allocation, warnings }) => {
                    let new = NewEvent::new(Event::AllocationCreated(event), self.metadata.clone());
                    books.events.push((decide::allocation_stream(id), 1, new));
                    books.allocations.insert(id, allocation.clone());
                    books.touched.insert(id);
                    Ok(Self::wrap(AllocationOutcome { allocation, warnings, replayed: false }))
                }
                Err(refusals) => {
                    // Kept in the log (nothing was reserved) so that refusals can be counted and explained.
                    let refused = decide::allocation_refused(&allocation, refusals.clone());
                    let new = NewEvent::new(Event::BudgetRefused(refused), self.metadata.clone());
                    books.events.push((format!("refusal-{id}"), 1, new));
                    Err(CommandError::BudgetExceeded(refusals))
                }
            }
        }))
    }

    fn mark_replayed(outcome: &mut AllocationOutcome) {
        outcome.replayed = true;
    }
}

impl Handle for ReleaseCommand {
    fn key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }
    fn reads_by_key(&self) -> bool {
        true
    }

    fn allocations(&self) -> Vec<Uuid> {
        vec![self.allocation_id]
    }

    async fn plan<'a>(&'a self, _tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        if let Some(a) = batch.allocations.get(&self.allocation_id).cloned() {
            batch.need_reserved(&a);
        }
        Ok(Step::post(move |books| {
            let a = books
                .allocations
                .get_mut(&self.allocation_id)
                .ok_or(CommandError::UnknownAllocation(self.allocation_id))?;
            if a.state != AllocationState::Active {
                return Err(CommandError::AlreadyResolved { id: a.allocation_id, state: a.state });
            }
            let event = decide::void(a, AllocationState::Released, &mut books.accounts, books.now);
            books.touched.insert(a.allocation_id);
            // Created is version 1; an allocation resolves once, so this is version 2.
            let new = NewEvent::new(Event::AllocationReleased(event), self.metadata.clone());
            books.events.push((decide::allocation_stream(a.allocation_id), 2, new));
            Ok(Self::wrap(AllocationOutcome { allocation: a.clone(), warnings: Vec::new(), replayed: false }))
        }))
    }

    fn mark_replayed(outcome: &mut AllocationOutcome) {
        outcome.replayed = true;
    }
}

impl Handle for ExpireCommand {
    /// Locks the due allocations (`SKIP LOCKED`: two sweepers never take the same one).
    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        let due = allocations::lock_due(tx, self.at, EXPIRE_PER_SWEEP).await?;
        let ids: Vec<Uuid> = due.iter().map(|a| a.allocation_id).collect();
        for a in due {
            batch.need_reserved(&a);
            batch.allocations.entry(a.allocation_id).or_insert(a);
        }
        Ok(Step::post(move |books| {
            let mut expired = Vec::new();
            for id in ids {
                let a = books.allocations.get_mut(&id).expect("due allocations were locked in pass 1");
                if a.state != AllocationState::Active {
                    continue; // released or used up earlier in this batch
                }
                let event = decide::void(a, AllocationState::Expired, &mut books.accounts, books.now);
                books.touched.insert(id);
                let new = NewEvent::new(Event::AllocationExpired(event), EventMetadata::default());
                books.events.push((decide::allocation_stream(id), 2, new));
                expired.push(id);
            }
            Ok(Self::wrap(expired))
        }))
    }
}
