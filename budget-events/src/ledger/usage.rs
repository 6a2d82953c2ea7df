//! Recording usage: each record is posted to every matching window, priced from the book when it
//! carries no cost, and settled against its allocation. A record is a fact and is never refused for
//! a limit; it is flagged `exceeded` when it takes a hard-limited window past its limit.

use std::collections::HashMap;

use crate::db::WriteTx;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{idempotency, Batch, Books, CommandError, Handle, LedgerCommand, LedgerError, Step};
use crate::decide;
use crate::domain::policy::{Policy, Window};
use crate::domain::usage::CostSource;
use crate::domain::RecordUsage;
use crate::error_code::ErrorCode;
use crate::event::{Event, EventMetadata, NewEvent};
use crate::money::Money;
use crate::store::accounts::{AccountKey, Bounds};
use crate::store::idempotency::IdempotencyKey;

/// Record one or more usage records, atomically.
#[derive(Debug, Clone)]
pub struct UsageCommand {
    pub items: Vec<UsageItem>,
    /// A key for the whole command (the `Idempotency-Key` of a batch request).
    pub key: Option<IdempotencyKey>,
    pub metadata: EventMetadata,
    /// The API key whose holder sends this now: checked again in the transaction, and refused if it
    /// was revoked or expired meanwhile (see `Handle::signer`). `None` for what needs no key, or for
    /// a record of a call already admitted on a reservation (the gateway's settlement must be kept
    /// even if its key is revoked while the call runs).
    pub signer: Option<Uuid>,
}

#[derive(Debug, Clone)]
pub struct UsageItem {
    pub record: RecordUsage,
    /// A key for this record alone (its `request_id`, or the header of a single-record request).
    pub key: Option<IdempotencyKey>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Written by this request.
    Recorded,
    /// Written by an earlier request with the same key; nothing new was written.
    Duplicate,
    /// Refused; `error` says why.
    Rejected,
}

/// What happened to one usage record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemOutcome {
    pub status: ItemStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// Position of the event in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_source: Option<CostSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<DateTime<Utc>>,
    /// Hard-limited policies whose window this record took past its limit (the record is kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceeded: Vec<Uuid>,
    /// How the record settled against its allocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<crate::event::Settlement>,
    /// Why a record that names its context but no allocation settled against none:
    /// `ambiguous_context` when several active allocations share its context and component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement_skipped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OutcomeError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeError {
    pub code: ErrorCode,
    pub message: String,
}

/// The outcome of a [`UsageCommand`]: one entry per item, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageOutcome {
    pub items: Vec<ItemOutcome>,
    /// True when the whole outcome was stored by an earlier request with the same key.
    #[serde(default, skip_serializing)]
    pub replayed: bool,
}

/// A usage item's plan between deciding its windows and posting it.
struct PlannedItem {
    outcome: ItemOutcome,
    /// For a record to write: what pass 1 decided about it.
    write: Option<RecordPlan>,
}

/// A new record's id, the allocation it settles against, the windows it posts to, and its price.
struct RecordPlan {
    record_id: Uuid,
    allocation: Option<Uuid>,
    windows: Vec<(Policy, Window)>,
    quote: Option<decide::PriceQuote>,
}

impl Handle for UsageCommand {
    fn key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }
    fn reads_by_key(&self) -> bool {
        true
    }
    fn signer(&self) -> Option<Uuid> {
        self.signer
    }

    fn keys(&self) -> Vec<&IdempotencyKey> {
        self.key.iter().chain(self.items.iter().filter_map(|i| i.key.as_ref())).collect()
    }

    fn weight(&self) -> usize {
        self.items.len()
    }

    fn allocations(&self) -> Vec<Uuid> {
        self.items.iter().filter_map(|i| i.record.allocation_id).collect()
    }

    fn contexts(&self) -> Vec<(&str, &str)> {
        self.items
            .iter()
            .filter(|i| i.record.allocation_id.is_none())
            .filter_map(|i| i.record.context_id.as_ref().map(|c| (c.as_str(), i.record.component.as_str())))
            .collect()
    }

    fn priced_models(&self) -> Vec<(&str, &str)> {
        self.items.iter().map(|i| (i.record.provider.as_str(), i.record.model.as_str())).collect()
    }

    /// The windows of the policies each record matches, as [`Self::plan`] asks for them; none for a
    /// record that may settle against an allocation (its accounts are the allocation's, read in the
    /// batch).
    fn foreseen_accounts(&self, policies: &[Policy], _now: DateTime<Utc>) -> Option<Vec<(AccountKey, Bounds)>> {
        let mut accounts = Vec::new();
        for item in &self.items {
            if item.record.allocation_id.is_some() || item.record.context_id.is_some() {
                return None;
            }
            let windows = decide::matching_windows(policies, &decide::call_facts(&item.record));
            accounts.extend(windows.into_iter().map(|(p, w)| ((p.id, w.key), (w.start, w.end))));
        }
        Some(accounts)
    }

    /// Replays items seen before, rejects items naming an unknown allocation, and works out the windows
    /// and price of each new record.
    async fn plan<'a>(&'a self, _tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        let mut items = Vec::with_capacity(self.items.len());
        for item in &self.items {
            if let Some(key) = &item.key {
                if let Some((hash, stored)) = batch.known.get(&key.key) {
                    items.push(PlannedItem { outcome: replay_item(key, hash, stored), write: None });
                    continue;
                }
                if let Some((hash, record_id)) = batch.item_keys.get(key.key.as_str()) {
                    let first = serde_json::to_value(ItemOutcome::recorded(*record_id)).expect("outcomes serialize");
                    items.push(PlannedItem { outcome: replay_item(key, hash, &first), write: None });
                    continue;
                }
            }
            let (allocation, skipped) = match item.record.allocation_id {
                Some(id) => (Some(id), None),
                None => settles_by_context(&item.record, batch),
            };
            if let Some(id) = allocation {
                match batch.allocations.get(&id).cloned() {
                    Some(a) => batch.need_reserved(&a),
                    None => {
                        let error = CommandError::UnknownAllocation(id);
                        items.push(PlannedItem { outcome: ItemOutcome::rejected(&error), write: None });
                        continue;
                    }
                }
            }
            let record_id = Uuid::now_v7();
            let windows: Vec<(Policy, Window)> =
                decide::matching_windows(&batch.policies, &decide::call_facts(&item.record))
                    .into_iter()
                    .map(|(p, w)| (p.clone(), w))
                    .collect();
            for (p, w) in &windows {
                batch.need(p.id, w);
            }
            if let Some(key) = &item.key {
                batch.item_keys.insert(&key.key, (&key.request_hash, record_id));
            }
            let quote = decide::quote(&item.record, &batch.price_versions);
            let outcome = ItemOutcome { settlement_skipped: skipped, ..ItemOutcome::recorded(record_id) };
            items.push(PlannedItem { outcome, write: Some(RecordPlan { record_id, allocation, windows, quote }) });
        }
        Ok(Step::post(move |books| Ok(Self::wrap(self.post(items, books)))))
    }

    fn mark_replayed(outcome: &mut UsageOutcome) {
        outcome.replayed = true;
    }

    fn assign_positions(outcome: &mut UsageOutcome, positions: &HashMap<Uuid, i64>) {
        for item in outcome.items.iter_mut().filter(|i| i.lacks_position()) {
            item.position = item.event_id.map(|id| positions[&id]);
        }
    }

    fn unpositioned(outcome: &UsageOutcome) -> Vec<Uuid> {
        outcome.items.iter().filter(|i| i.lacks_position()).filter_map(|i| i.event_id).collect()
    }

    /// Recorded items, and items refused for a reason that will not change on retry, under their own
    /// keys (unless an earlier transaction stored them).
    fn part_outcomes<'a>(&'a self, outcome: &UsageOutcome, batch: &Batch<'_>) -> Vec<(&'a IdempotencyKey, String)> {
        self.items
            .iter()
            .zip(&outcome.items)
            .filter(|(_, o)| match o.status {
                ItemStatus::Recorded => true,
                ItemStatus::Rejected => o.error.as_ref().is_some_and(|e| e.code != ErrorCode::IdempotencyKeyReused),
                ItemStatus::Duplicate => false,
            })
            .filter_map(|(item, o)| item.key.as_ref().map(|k| (k, o)))
            .filter(|(k, _)| !batch.known.contains_key(&k.key))
            .map(|(k, o)| (k, serde_json::to_string(o).expect("outcomes serialize")))
            .collect()
    }
}

impl UsageCommand {
    /// Pass 2: settles each new record against its allocation and posts it to its windows, in order.
    fn post(&self, items: Vec<PlannedItem>, books: &mut Books) -> UsageOutcome {
        let mut outcome = UsageOutcome { items: Vec::with_capacity(items.len()), replayed: false };
        for (planned, item) in items.into_iter().zip(&self.items) {
            let mut item_outcome = planned.outcome;
            if let Some(RecordPlan { record_id, allocation, windows, quote }) = planned.write {
                let record = &item.record;
                let settlement = allocation.map(|id| {
                    let a = books.allocations.get_mut(&id).expect("named allocations were locked in pass 1");
                    books.touched.insert(id);
                    let cost = decide::record_cost_with(record, quote.as_ref()).0.amount();
                    let (i, o) = (record.input_tokens.get(), record.output_tokens.get());
                    decide::settle(a, i, o, cost, &mut books.accounts, books.now)
                });
                let windows: Vec<(&Policy, Window)> = windows.iter().map(|(p, w)| (p, w.clone())).collect();
                let mut recorded =
                    decide::record_usage(record, record_id, &windows, &mut books.accounts, quote.as_ref());
                recorded.settlement = settlement;
                item_outcome.settlement = recorded.settlement.clone();
                item_outcome.cost = Some(recorded.cost);
                item_outcome.cost_source = Some(recorded.cost_source);
                item_outcome.timestamp = Some(recorded.occurred_at);
                item_outcome.exceeded = recorded.exceeded.clone();
                let mut metadata = self.metadata.clone();
                metadata.idempotency_key = item.key.as_ref().or(self.key.as_ref()).map(|k| k.key.clone());
                let new = NewEvent::new(Event::UsageRecorded(recorded), metadata);
                item_outcome.event_id = Some(new.event_id);
                books.events.push((decide::usage_stream(record_id), 1, new));
            }
            outcome.items.push(item_outcome);
        }
        outcome
    }
}

/// The allocation a record that names its context but no allocation settles against: the one active
/// allocation of its context and component, as if its id had been sent. Several: none, and the answer
/// says why (settling against an arbitrary one would move another task's reservation).
fn settles_by_context(record: &RecordUsage, batch: &Batch<'_>) -> (Option<Uuid>, Option<String>) {
    let Some(context) = &record.context_id else { return (None, None) };
    let key = (context.to_string(), record.component.to_string());
    let active: Vec<Uuid> = batch
        .by_context
        .get(&key)
        .into_iter()
        .flatten()
        .copied()
        .filter(|id| {
            batch.allocations.get(id).is_some_and(|a| a.state == crate::domain::allocation::AllocationState::Active)
        })
        .collect();
    match active.as_slice() {
        [] => (None, None),
        [one] => (Some(*one), None),
        _ => (None, Some("ambiguous_context".into())),
    }
}

/// The outcome stored for an item's key, returned to a retry as a duplicate.
fn replay_item(key: &IdempotencyKey, hash: &str, stored: &serde_json::Value) -> ItemOutcome {
    if hash != key.request_hash {
        return ItemOutcome::rejected(&CommandError::KeyReused(idempotency::client_key(key)));
    }
    let mut original: ItemOutcome = serde_json::from_value(stored.clone()).expect("stored outcomes decode");
    if original.status == ItemStatus::Recorded {
        original.status = ItemStatus::Duplicate;
    }
    original
}

impl ItemOutcome {
    /// A record written (now or by an earlier request) whose answer does not carry its log position
    /// yet: outcomes are stored without it (those stored before 2026-12-01 carry it).
    fn lacks_position(&self) -> bool {
        self.status != ItemStatus::Rejected && self.position.is_none()
    }

    fn empty() -> Self {
        ItemOutcome {
            status: ItemStatus::Recorded,
            record_id: None,
            event_id: None,
            position: None,
            cost: None,
            cost_source: None,
            timestamp: None,
            exceeded: Vec::new(),
            settlement: None,
            settlement_skipped: None,
            error: None,
        }
    }

    fn recorded(record_id: Uuid) -> Self {
        ItemOutcome { record_id: Some(record_id), ..Self::empty() }
    }

    fn rejected(error: &CommandError) -> Self {
        ItemOutcome {
            status: ItemStatus::Rejected,
            error: Some(OutcomeError { code: error.code(), message: error.to_string() }),
            ..Self::empty()
        }
    }
}
