//! The write path, in one place: decide each command in order against the locked account rows, append
//! the events, write back the accounts and store the idempotency outcomes, all in the caller's one
//! transaction.
//!
//! The [`crate::writer`] feeds it batches of concurrent commands so that one commit (one fsync) serves
//! many callers. Everything a command needs to be decided is read inside the transaction, so the
//! outcome stored under an idempotency key is exactly what was committed.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::decide;
use crate::domain::allocation::{Allocation, AllocationState, CreateAllocation};
use crate::domain::policy::{BudgetRef, Policy, SetPolicy, Window};
use crate::domain::usage::CostSource;
use crate::domain::RecordUsage;
use crate::event::{BudgetArchived, BudgetCreated, BudgetUpdated, Event, EventMetadata, NewEvent, PolicySet};
use crate::money::Money;
use crate::store::accounts::{self, AccountKey, Bounds};
use crate::store::allocations;
use crate::store::idempotency::{self, IdempotencyKey};
use crate::store::{current_versions, insert_events, policies, prices, AppendError};

/// Record one or more usage records, atomically.
#[derive(Debug, Clone)]
pub struct UsageCommand {
    pub items: Vec<UsageItem>,
    /// A key for the whole command (the `Idempotency-Key` of a batch request).
    pub key: Option<IdempotencyKey>,
    pub metadata: EventMetadata,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<OutcomeError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeError {
    pub code: String,
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

/// Reserve tokens for a task.
#[derive(Debug, Clone)]
pub struct AllocateCommand {
    pub allocation: CreateAllocation,
    pub key: Option<IdempotencyKey>,
    pub metadata: EventMetadata,
}

/// Void what an allocation still reserves.
#[derive(Debug, Clone)]
pub struct ReleaseCommand {
    pub allocation_id: Uuid,
    pub key: Option<IdempotencyKey>,
    pub metadata: EventMetadata,
}

/// Set prices (a manual price, the bundled table, an import).
#[derive(Debug, Clone)]
pub struct PricesCommand {
    pub prices: Vec<crate::domain::price::PriceSpec>,
    pub effective_from: DateTime<Utc>,
    pub source: crate::domain::price::PriceSource,
    pub key: Option<IdempotencyKey>,
    pub metadata: EventMetadata,
}

/// What a [`PricesCommand`] changed, by `provider/model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricesOutcome {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
    #[serde(default, skip_serializing)]
    pub replayed: bool,
}

/// Correct the cost of records priced with a version other than the one now in effect at their time.
#[derive(Debug, Clone)]
pub struct RepriceCommand {
    pub selection: crate::store::repricing::RepriceSelection,
    pub metadata: EventMetadata,
}

/// The corrections a [`RepriceCommand`] appended (or, for a dry run, would append).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepriceOutcome {
    pub corrections: Vec<crate::event::UsageRepriced>,
}

/// Record a refusal decided outside the write path (a pre-flight check that read the accounts).
#[derive(Debug, Clone)]
pub struct RefusalCommand {
    pub refusal: crate::event::BudgetRefused,
    pub metadata: EventMetadata,
}

/// Acknowledge an alert.
#[derive(Debug, Clone)]
pub struct AcknowledgeCommand {
    pub alert_id: Uuid,
    pub by: Option<String>,
    pub metadata: EventMetadata,
}

/// The acknowledgement in the log: this command's, or the earlier one (`already`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcknowledgeOutcome {
    pub acknowledgement: crate::event::AlertAcknowledged,
    pub already: bool,
}

/// Everything the write path takes.
#[derive(Debug, Clone)]
pub enum Command {
    Usage(UsageCommand),
    SetPolicy(PolicyCommand),
    Budget(BudgetCommand),
    Allocate(AllocateCommand),
    Release(ReleaseCommand),
    /// Expire the active allocations whose time is up at this instant (the sweeper).
    Expire(DateTime<Utc>),
    SetPrices(PricesCommand),
    Reprice(RepriceCommand),
    Refused(RefusalCommand),
    Acknowledge(AcknowledgeCommand),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Usage(UsageOutcome),
    Policy(Box<PolicyOutcome>),
    Budget(Box<BudgetOutcome>),
    Allocation(Box<AllocationOutcome>),
    /// The allocations a sweep expired.
    Expired(Vec<Uuid>),
    Prices(Box<PricesOutcome>),
    Repriced(RepriceOutcome),
    Refused,
    Acknowledged(AcknowledgeOutcome),
}

/// An allocation as a command left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationOutcome {
    pub allocation: Allocation,
    #[serde(default, skip_serializing)]
    pub replayed: bool,
}

impl Command {
    fn key(&self) -> Option<&IdempotencyKey> {
        match self {
            Command::Usage(c) => c.key.as_ref(),
            Command::SetPolicy(c) => c.key.as_ref(),
            Command::Budget(c) => c.key.as_ref(),
            Command::Allocate(c) => c.key.as_ref(),
            Command::Release(c) => c.key.as_ref(),
            Command::Expire(_) | Command::Reprice(_) | Command::Refused(_) | Command::Acknowledge(_) => None,
            Command::SetPrices(c) => c.key.as_ref(),
        }
    }

    /// Records this command writes, for sizing batches.
    pub fn weight(&self) -> usize {
        match self {
            Command::Usage(c) => c.items.len(),
            _ => 1,
        }
    }
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
    #[error("budget `{0}` is archived; its policies no longer count, so it takes no new limits")]
    BudgetArchived(String),
    #[error("{}", refusal_message(.0))]
    BudgetExceeded(Vec<decide::Refusal>),
    #[error("no allocation has id {0}; list them with GET /api/allocations")]
    UnknownAllocation(Uuid),
    #[error("allocation {id} is already {}; an allocation resolves at most once", .state.as_str())]
    AlreadyResolved { id: Uuid, state: AllocationState },
}

fn refusal_message(refusals: &[decide::Refusal]) -> String {
    let r = &refusals[0];
    let limit = match (r.cost_limit, r.token_limit) {
        (Some(c), Some(t)) => format!("${c} / {t} tokens"),
        (Some(c), None) => format!("${c}"),
        (None, Some(t)) => format!("{t} tokens"),
        (None, None) => "no limit".into(),
    };
    format!(
        "the {} hard limit on {} ({limit}) would be exceeded: used ${} / {} tokens, reserved ${} / {} tokens, requested ${} / {} tokens{}; release unused allocations, wait for the window to reset, or raise the limit",
        r.period,
        r.scope,
        r.used_cost,
        r.used_tokens,
        r.reserved_cost,
        r.reserved_tokens,
        r.requested_cost,
        r.requested_tokens,
        r.resets_at.map_or(String::new(), |t| format!(" (window resets at {t})")),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process stored one of the batch's keys or appended to one of its streams meanwhile.
    /// Roll back and run the batch again: the retry sees what the other process committed.
    #[error("a concurrent writer committed a key or stream of this batch; retry")]
    Race,
    #[error(transparent)]
    Append(AppendError),
    #[error("database error in the write path: {}", crate::db::error_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error(transparent)]
    Read(#[from] crate::store::ReadError),
}

impl From<AppendError> for LedgerError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::ConcurrentAppend(_) => LedgerError::Race,
            other => LedgerError::Append(other),
        }
    }
}

/// Serialises price changes and re-prices across processes, until the transaction ends.
const PRICE_BOOK_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('budget:price-book'))";

/// A usage item's plan between deciding its windows and posting it.
struct PlannedItem {
    outcome: ItemOutcome,
    /// For a record to write: what pass 1 decided about it.
    write: Option<RecordPlan>,
}

/// A new record's id, the windows it posts to, and its price.
struct RecordPlan {
    record_id: Uuid,
    windows: Vec<(Policy, Window)>,
    quote: Option<decide::PriceQuote>,
}

/// A command's progress through the batch.
enum Planned {
    /// Decided without the accounts: a replay, a refusal or a policy change (with its events).
    Done(Result<Outcome, CommandError>, Vec<VersionedEvent>),
    /// Usage: posted once the accounts are locked.
    Usage(Vec<PlannedItem>),
    /// A reservation, decided once the accounts are locked.
    Allocate(Uuid, Vec<(Policy, Window)>),
    Release,
    /// The allocations a sweep found due.
    Expire(Vec<Uuid>),
    /// Corrections, each with the version it appends at in its record's stream.
    Reprice(Vec<(crate::event::UsageRepriced, i64)>),
    /// The same key and request as an earlier command of this batch: gets its outcome.
    CopyOf(usize),
}

/// An event with the stream and version it is appended at.
type VersionedEvent = (String, i64, NewEvent);

/// Decides and writes `commands` in order in `tx`. The caller commits.
pub async fn process(
    tx: &Transaction<'_>,
    commands: &[Command],
) -> Result<Vec<Result<Outcome, CommandError>>, LedgerError> {
    let keys: Vec<&str> = commands
        .iter()
        .flat_map(|c| {
            let items: Vec<&IdempotencyKey> = match c {
                Command::Usage(u) => u.items.iter().filter_map(|i| i.key.as_ref()).collect(),
                _ => Vec::new(),
            };
            c.key().into_iter().chain(items)
        })
        .map(|k| k.key.as_str())
        .collect();
    // Keys stored by earlier transactions.
    let known: HashMap<String, (String, serde_json::Value)> =
        idempotency::lookup(tx, &keys).await?.into_iter().map(|(k, v)| (k, (v.request_hash, v.outcome))).collect();
    let mut policies = policies::load_all(tx).await?;
    let now = Utc::now();
    // Every allocation the batch names, locked up front (one query, in id order).
    let named: Vec<Uuid> = commands
        .iter()
        .flat_map(|c| match c {
            Command::Release(r) => vec![r.allocation_id],
            Command::Usage(u) => u.items.iter().filter_map(|i| i.record.allocation_id).collect(),
            _ => Vec::new(),
        })
        .collect();
    let mut allocs: HashMap<Uuid, Allocation> = allocations::lock(tx, &named).await?;
    // The price versions every record of the batch could resolve to (one query).
    let price_keys = crate::domain::price::candidate_keys(
        commands
            .iter()
            .filter_map(|c| if let Command::Usage(u) = c { Some(u) } else { None })
            .flat_map(|u| u.items.iter())
            .map(|i| (i.record.provider.as_str(), i.record.model.as_str())),
    );
    let mut price_versions = prices::versions_for(tx, &price_keys).await?;
    let mut touched: std::collections::BTreeSet<Uuid> = std::collections::BTreeSet::new();
    let mut stream_versions: HashMap<String, i64> = HashMap::new();
    // Keys taken by an earlier command or item of this same batch.
    let mut batch_commands: HashMap<&str, (&str, usize)> = HashMap::new();
    let mut batch_items: HashMap<&str, (&str, Uuid)> = HashMap::new();
    // Records corrected by an earlier re-price of this batch (the log does not show them yet).
    let mut repriced: std::collections::HashSet<Uuid> = std::collections::HashSet::new();

    // Pass 1, in order: replays, policy changes (later usage in the batch already counts against
    // them), and the windows each new usage record posts to.
    let mut plans: Vec<Planned> = Vec::with_capacity(commands.len());
    let mut needed: BTreeMap<AccountKey, Bounds> = BTreeMap::new();
    for (index, command) in commands.iter().enumerate() {
        if let Some(key) = command.key() {
            if let Some((hash, outcome)) = known.get(&key.key) {
                plans.push(Planned::Done(replay(command, key, hash, outcome), Vec::new()));
                continue;
            }
            if let Some((hash, original)) = batch_commands.get(key.key.as_str()) {
                plans.push(if *hash == key.request_hash {
                    Planned::CopyOf(*original)
                } else {
                    Planned::Done(Err(CommandError::KeyReused(client_key(key))), Vec::new())
                });
                continue;
            }
            batch_commands.insert(&key.key, (&key.request_hash, index));
        }
        match command {
            Command::SetPolicy(c) => {
                let (result, events) = set_policy(tx, c, &mut policies, &mut stream_versions).await?;
                plans.push(Planned::Done(result.map(|p| Outcome::Policy(Box::new(p))), events));
            }
            Command::Budget(c) => {
                let (result, events) = change_budget(tx, c, &mut policies, &mut stream_versions).await?;
                plans.push(Planned::Done(result.map(|b| Outcome::Budget(Box::new(b))), events));
            }
            Command::Allocate(c) => {
                let windows: Vec<(Policy, Window)> = decide::reservation_windows(&policies, &c.allocation, now)
                    .into_iter()
                    .map(|(p, w)| (p.clone(), w))
                    .collect();
                for (p, w) in &windows {
                    needed.insert((p.id, w.key.clone()), (w.start, w.end));
                }
                plans.push(Planned::Allocate(Uuid::now_v7(), windows));
            }
            Command::Release(c) => {
                if let Some(a) = allocs.get(&c.allocation_id) {
                    reserve_keys(a, &mut needed);
                }
                plans.push(Planned::Release);
            }
            Command::SetPrices(c) => {
                let (outcome, events) = set_prices(tx, c).await?;
                // Later records of the batch are priced with the new versions.
                price_versions = prices::versions_for(tx, &price_keys).await?;
                plans.push(Planned::Done(Ok(Outcome::Prices(Box::new(outcome))), events));
            }
            Command::Reprice(c) => {
                // One re-price or price change at a time across processes (one lock for both, so two
                // batches cannot take them in opposite orders): no record is corrected twice.
                tx.execute(PRICE_BOOK_LOCK, &[]).await?;
                let mut corrections = crate::store::repricing::plan(tx, &c.selection).await?;
                corrections.retain(|(k, _)| repriced.insert(k.record_id));
                for (k, _) in &corrections {
                    for p in &k.postings {
                        needed.entry((p.policy_id, p.window.clone())).or_insert((None, None));
                    }
                }
                plans.push(Planned::Reprice(corrections));
            }
            Command::Refused(c) => {
                let new = NewEvent::new(Event::BudgetRefused(c.refusal.clone()), c.metadata.clone());
                let events = vec![(format!("refusal-{}", Uuid::now_v7()), 1, new)];
                plans.push(Planned::Done(Ok(Outcome::Refused), events));
            }
            Command::Acknowledge(c) => {
                let (outcome, events) = acknowledge(tx, c, &mut stream_versions).await?;
                plans.push(Planned::Done(Ok(Outcome::Acknowledged(outcome)), events));
            }
            Command::Expire(at) => {
                let due = allocations::lock_due(tx, *at, 1000).await?;
                let ids = due.iter().map(|a| a.allocation_id).collect();
                for a in due {
                    reserve_keys(&a, &mut needed);
                    allocs.entry(a.allocation_id).or_insert(a);
                }
                plans.push(Planned::Expire(ids));
            }
            Command::Usage(c) => {
                let mut items = Vec::with_capacity(c.items.len());
                for item in &c.items {
                    if let Some(key) = &item.key {
                        if let Some((hash, outcome)) = known.get(&key.key) {
                            items.push(PlannedItem { outcome: replay_item(key, hash, outcome), write: None });
                            continue;
                        }
                        if let Some((hash, record_id)) = batch_items.get(key.key.as_str()) {
                            let first =
                                serde_json::to_value(ItemOutcome::recorded(*record_id)).expect("outcomes serialize");
                            items.push(PlannedItem { outcome: replay_item(key, hash, &first), write: None });
                            continue;
                        }
                    }
                    if let Some(id) = item.record.allocation_id {
                        match allocs.get(&id) {
                            Some(a) => reserve_keys(a, &mut needed),
                            None => {
                                let message = CommandError::UnknownAllocation(id).to_string();
                                items.push(PlannedItem {
                                    outcome: ItemOutcome::rejected("unknown_allocation", message),
                                    write: None,
                                });
                                continue;
                            }
                        }
                    }
                    let record_id = Uuid::now_v7();
                    let call = decide::call_facts(&item.record);
                    let windows: Vec<(Policy, Window)> =
                        decide::matching_windows(&policies, &call).into_iter().map(|(p, w)| (p.clone(), w)).collect();
                    for (p, w) in &windows {
                        needed.insert((p.id, w.key.clone()), (w.start, w.end));
                    }
                    if let Some(key) = &item.key {
                        batch_items.insert(&key.key, (&key.request_hash, record_id));
                    }
                    let quote = decide::quote(&item.record, &price_versions);
                    items.push(PlannedItem {
                        outcome: ItemOutcome::recorded(record_id),
                        write: Some(RecordPlan { record_id, windows, quote }),
                    });
                }
                plans.push(Planned::Usage(items));
            }
        }
    }

    // Pass 2: lock every account the batch posts to (in key order), then post each record in order.
    let mut accounts = accounts::lock(tx, &needed).await?;
    let mut results: Vec<Result<Outcome, CommandError>> = Vec::with_capacity(commands.len());
    let mut events: Vec<VersionedEvent> = Vec::new();
    let mut copies: Vec<(usize, usize)> = Vec::new();
    for (index, (command, plan)) in commands.iter().zip(plans).enumerate() {
        match plan {
            Planned::Done(result, mut new) => {
                events.append(&mut new);
                results.push(result);
            }
            Planned::Reprice(corrections) => {
                let Command::Reprice(c) = command else { unreachable!("re-price plans come from re-price commands") };
                for (correction, version) in &corrections {
                    decide::post_correction(correction, &mut accounts);
                    events.push((
                        decide::usage_stream(correction.record_id),
                        *version,
                        NewEvent::new(Event::UsageRepriced(correction.clone()), c.metadata.clone()),
                    ));
                }
                let corrections = corrections.into_iter().map(|(k, _)| k).collect();
                results.push(Ok(Outcome::Repriced(RepriceOutcome { corrections })));
            }
            Planned::CopyOf(original) => {
                copies.push((index, original));
                results.push(Err(CommandError::KeyReused(String::new()))); // replaced below
            }
            Planned::Usage(items) => {
                let Command::Usage(c) = command else { unreachable!("usage plans come from usage commands") };
                let mut outcome = UsageOutcome { items: Vec::with_capacity(items.len()), replayed: false };
                for (planned, item) in items.into_iter().zip(&c.items) {
                    let mut item_outcome = planned.outcome;
                    if let Some(RecordPlan { record_id, windows, quote }) = planned.write {
                        let windows: Vec<(&Policy, Window)> = windows.iter().map(|(p, w)| (p, w.clone())).collect();
                        let settlement = item.record.allocation_id.map(|id| {
                            let a = allocs.get_mut(&id).expect("named allocations were locked in pass 1");
                            touched.insert(id);
                            let cost = decide::record_cost_with(&item.record, quote.as_ref()).0.amount();
                            let (i, o) = (item.record.input_tokens.get(), item.record.output_tokens.get());
                            decide::settle(a, i, o, cost, &mut accounts, now)
                        });
                        let mut event =
                            decide::record_usage(&item.record, record_id, &windows, &mut accounts, quote.as_ref());
                        if let Event::UsageRecorded(u) = &mut event {
                            u.settlement = settlement;
                        }
                        let Event::UsageRecorded(u) = &event else { unreachable!("record_usage records usage") };
                        item_outcome.settlement = u.settlement.clone();
                        item_outcome.cost = Some(u.cost);
                        item_outcome.cost_source = Some(u.cost_source);
                        item_outcome.timestamp = Some(u.occurred_at);
                        item_outcome.exceeded = u.exceeded.clone();
                        let mut metadata = c.metadata.clone();
                        metadata.idempotency_key = item.key.as_ref().or(c.key.as_ref()).map(|k| k.key.clone());
                        let new = NewEvent::new(event, metadata);
                        item_outcome.event_id = Some(new.event_id);
                        events.push((decide::usage_stream(record_id), 1, new));
                    }
                    outcome.items.push(item_outcome);
                }
                results.push(Ok(Outcome::Usage(outcome)));
            }
            Planned::Allocate(id, windows) => {
                let Command::Allocate(c) = command else { unreachable!("allocate plans come from allocate commands") };
                let windows: Vec<(&Policy, Window)> = windows.iter().map(|(p, w)| (p, w.clone())).collect();
                match decide::reserve(&c.allocation, id, &windows, &mut accounts, now) {
                    Ok((event, allocation)) => {
                        let new = NewEvent::new(Event::AllocationCreated(event), c.metadata.clone());
                        events.push((decide::allocation_stream(id), 1, new));
                        let outcome = AllocationOutcome { allocation: allocation.clone(), replayed: false };
                        results.push(Ok(Outcome::Allocation(Box::new(outcome))));
                        allocs.insert(id, allocation);
                        touched.insert(id);
                    }
                    Err(refusals) => {
                        // Kept in the log (nothing was reserved) so that refusals can be counted and explained.
                        let refused = crate::event::BudgetRefused {
                            source: "allocation".into(),
                            component: c.allocation.component.to_string(),
                            context_id: Some(c.allocation.context_id.to_string()),
                            provider: c.allocation.provider.as_ref().map(|p| p.to_string()),
                            model: c.allocation.model.as_ref().map(|m| m.to_string()),
                            refusals: refusals.clone(),
                        };
                        let new = NewEvent::new(Event::BudgetRefused(refused), c.metadata.clone());
                        events.push((format!("refusal-{id}"), 1, new));
                        results.push(Err(CommandError::BudgetExceeded(refusals)));
                    }
                }
            }
            Planned::Release => {
                let Command::Release(c) = command else { unreachable!("release plans come from release commands") };
                results.push(match allocs.get_mut(&c.allocation_id) {
                    None => Err(CommandError::UnknownAllocation(c.allocation_id)),
                    Some(a) if a.state != AllocationState::Active => {
                        Err(CommandError::AlreadyResolved { id: a.allocation_id, state: a.state })
                    }
                    Some(a) => {
                        let event = decide::void(a, AllocationState::Released, &mut accounts, now);
                        touched.insert(a.allocation_id);
                        // Created is version 1; an allocation resolves once, so this is version 2.
                        let new = NewEvent::new(Event::AllocationReleased(event), c.metadata.clone());
                        events.push((decide::allocation_stream(a.allocation_id), 2, new));
                        Ok(Outcome::Allocation(Box::new(AllocationOutcome { allocation: a.clone(), replayed: false })))
                    }
                });
            }
            Planned::Expire(ids) => {
                let mut expired = Vec::new();
                for id in ids {
                    let a = allocs.get_mut(&id).expect("due allocations were locked in pass 1");
                    if a.state != AllocationState::Active {
                        continue; // released or used up earlier in this batch
                    }
                    let event = decide::void(a, AllocationState::Expired, &mut accounts, now);
                    touched.insert(id);
                    let new = NewEvent::new(Event::AllocationExpired(event), EventMetadata::default());
                    events.push((decide::allocation_stream(id), 2, new));
                    expired.push(id);
                }
                results.push(Ok(Outcome::Expired(expired)));
            }
        }
    }

    let rows: Vec<(&str, i64, &NewEvent)> = events.iter().map(|(s, v, e)| (s.as_str(), *v, e)).collect();
    let appended = insert_events(tx, &rows).await?;
    assert_eq!(appended.len(), events.len(), "every event of the batch is appended exactly once");
    let positions: HashMap<Uuid, i64> = appended.iter().map(|a| (a.event_id, a.position)).collect();
    accounts::save(tx, &accounts).await?;
    let changed: Vec<&Allocation> = touched.iter().map(|id| &allocs[id]).collect();
    allocations::save(tx, &changed).await?;

    for result in results.iter_mut() {
        if let Ok(Outcome::Usage(u)) = result {
            // Items written now; replayed ones already carry their positions.
            for item in u.items.iter_mut().filter(|i| i.status == ItemStatus::Recorded && i.position.is_none()) {
                item.position = item.event_id.map(|id| positions[&id]);
            }
        }
    }
    for (copy, original) in copies {
        results[copy] = results[original].clone().map(mark_replayed);
    }

    // Store every new keyed outcome, in the transaction that wrote its effects.
    let mut to_store: Vec<(&IdempotencyKey, serde_json::Value)> = Vec::new();
    for (index, (command, result)) in commands.iter().zip(&results).enumerate() {
        // Only the command that first used its key in this batch stores it; replays and copies do not.
        let first_use =
            command.key().is_some_and(|k| batch_commands.get(k.key.as_str()).is_some_and(|(_, i)| *i == index));
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(rejection) => {
                if let (true, Some(key)) = (first_use, command.key()) {
                    to_store.push((key, serde_json::json!({ "rejection": rejection })));
                }
                continue;
            }
        };
        match (command, outcome) {
            (Command::Usage(c), Outcome::Usage(u)) if !u.replayed => {
                for (item, item_outcome) in c.items.iter().zip(&u.items) {
                    // Recorded items, and items refused for a reason that will not change on retry.
                    let keep = match item_outcome.status {
                        ItemStatus::Recorded => true,
                        ItemStatus::Rejected => {
                            item_outcome.error.as_ref().is_some_and(|e| e.code != "idempotency_key_reused")
                        }
                        ItemStatus::Duplicate => false,
                    };
                    if let (Some(key), true) =
                        (&item.key, keep && !item.key.as_ref().is_some_and(|k| known.contains_key(&k.key)))
                    {
                        to_store.push((key, serde_json::to_value(item_outcome).expect("outcomes serialize")));
                    }
                }
                if let Some(key) = &c.key {
                    to_store.push((key, serde_json::to_value(u).expect("outcomes serialize")));
                }
            }
            (Command::SetPolicy(c), Outcome::Policy(p)) if !p.replayed => {
                if let Some(key) = &c.key {
                    to_store.push((key, serde_json::to_value(p).expect("outcomes serialize")));
                }
            }
            (Command::Budget(c), Outcome::Budget(b)) if !b.replayed => {
                if let Some(key) = &c.key {
                    to_store.push((key, serde_json::to_value(b).expect("outcomes serialize")));
                }
            }
            (Command::SetPrices(PricesCommand { key: Some(key), .. }), Outcome::Prices(p)) if !p.replayed => {
                to_store.push((key, serde_json::to_value(p).expect("outcomes serialize")));
            }
            (Command::Allocate(AllocateCommand { key: Some(key), .. }), Outcome::Allocation(a))
            | (Command::Release(ReleaseCommand { key: Some(key), .. }), Outcome::Allocation(a))
                if !a.replayed =>
            {
                to_store.push((key, serde_json::to_value(a).expect("outcomes serialize")));
            }
            _ => {}
        }
    }
    let stored = idempotency::store(tx, &to_store).await?;
    if stored != to_store.len() {
        return Err(LedgerError::Race);
    }
    Ok(results)
}

/// Adds the windows an allocation reserves in to the accounts to lock.
fn reserve_keys(a: &Allocation, needed: &mut BTreeMap<AccountKey, Bounds>) {
    for r in &a.reservations {
        needed.entry((r.policy_id, r.window.clone())).or_insert((None, None));
    }
}

fn mark_replayed(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Usage(u) => Outcome::Usage(UsageOutcome { replayed: true, ..u }),
        Outcome::Policy(p) => Outcome::Policy(Box::new(PolicyOutcome { replayed: true, ..*p })),
        Outcome::Budget(b) => Outcome::Budget(Box::new(BudgetOutcome { replayed: true, ..*b })),
        Outcome::Allocation(a) => Outcome::Allocation(Box::new(AllocationOutcome { replayed: true, ..*a })),
        Outcome::Prices(p) => Outcome::Prices(Box::new(PricesOutcome { replayed: true, ..*p })),
        other @ (Outcome::Expired(_) | Outcome::Repriced(_) | Outcome::Refused | Outcome::Acknowledged(_)) => other,
    }
}

/// Decides a policy change and writes its rows; returns its events. Later commands of the batch see
/// the change through `policies`.
async fn set_policy(
    tx: &Transaction<'_>,
    command: &PolicyCommand,
    policies: &mut Vec<Policy>,
    stream_versions: &mut HashMap<String, i64>,
) -> Result<(Result<PolicyOutcome, CommandError>, Vec<VersionedEvent>), LedgerError> {
    let mut events = Vec::new();
    let (budget_id, budget_name, budget_created) = match &command.policy.budget {
        BudgetRef::Id(id) => match policies::budget_by_id(tx, *id).await? {
            Some(b) if !b.active => return Ok((Err(CommandError::BudgetArchived(b.name)), events)),
            Some(b) => (b.budget_id, b.name, false),
            None => return Ok((Err(CommandError::UnknownBudget(*id)), events)),
        },
        BudgetRef::Name(name) => match policies::budget_by_name(tx, name).await? {
            Some(b) if !b.active => return Ok((Err(CommandError::BudgetArchived(b.name)), events)),
            Some(b) => (b.budget_id, b.name, false),
            None => {
                let created =
                    BudgetCreated { budget_id: Uuid::now_v7(), name: name.clone(), description: None, owner: None };
                policies::insert_budget(tx, &created).await?;
                let stream = decide::budget_stream(created.budget_id);
                stream_versions.insert(stream.clone(), 1);
                events.push((
                    stream,
                    1,
                    NewEvent::new(Event::BudgetCreated(created.clone()), command.metadata.clone()),
                ));
                (created.budget_id, created.name, true)
            }
        },
    };
    let slot = command.policy.scope.key();
    let existing = policies
        .iter()
        .position(|p| p.budget_id == budget_id && p.period == command.policy.period && p.scope.key() == slot);
    let event = decide::set_policy(&command.policy, budget_id, existing.map(|i| &policies[i]));
    policies::save(tx, &event).await?;
    let policy = Policy::from_event(&event);
    match existing {
        Some(i) => policies[i] = policy,
        None => policies.push(policy),
    }
    let stream = decide::policy_stream(event.policy_id);
    let version = match stream_versions.get(&stream) {
        Some(v) => v + 1,
        None => current_versions(tx, &[stream.as_str()]).await?.get(&stream).copied().unwrap_or(0) + 1,
    };
    stream_versions.insert(stream.clone(), version);
    events.push((stream, version, NewEvent::new(Event::PolicySet(event.clone()), command.metadata.clone())));
    let outcome = PolicyOutcome {
        policy: event,
        budget_name,
        created: existing.is_none(),
        budget_created,
        version,
        replayed: false,
    };
    Ok((Ok(outcome), events))
}

/// Decides a budget change and writes its row; returns its events.
async fn change_budget(
    tx: &Transaction<'_>,
    command: &BudgetCommand,
    policies: &mut [Policy],
    stream_versions: &mut HashMap<String, i64>,
) -> Result<(Result<BudgetOutcome, CommandError>, Vec<VersionedEvent>), LedgerError> {
    let (budget_id, event) = match &command.change {
        BudgetChange::Create { name, description, owner } => {
            if policies::budget_by_name(tx, name).await?.is_some() {
                return Ok((Err(CommandError::BudgetExists(name.clone())), Vec::new()));
            }
            let created = BudgetCreated {
                budget_id: Uuid::now_v7(),
                name: name.clone(),
                description: description.clone(),
                owner: owner.clone(),
            };
            policies::insert_budget(tx, &created).await?;
            (created.budget_id, Event::BudgetCreated(created))
        }
        BudgetChange::Update(update) => {
            let Some(current) = policies::budget_by_id(tx, update.budget_id).await? else {
                return Ok((Err(CommandError::UnknownBudget(update.budget_id)), Vec::new()));
            };
            if let Some(name) = update.name.as_ref().filter(|n| **n != current.name) {
                if policies::budget_by_name(tx, name).await?.is_some() {
                    return Ok((Err(CommandError::BudgetExists(name.clone())), Vec::new()));
                }
            }
            policies::update_budget(tx, update).await?;
            (update.budget_id, Event::BudgetUpdated(update.clone()))
        }
        BudgetChange::Archive(id) => {
            if policies::budget_by_id(tx, *id).await?.is_none() {
                return Ok((Err(CommandError::UnknownBudget(*id)), Vec::new()));
            }
            policies::archive_budget(tx, *id).await?;
            // Later usage in this batch no longer counts against its policies.
            for p in policies.iter_mut().filter(|p| p.budget_id == *id) {
                p.enabled = false;
            }
            (*id, Event::BudgetArchived(BudgetArchived { budget_id: *id }))
        }
    };
    let stream = decide::budget_stream(budget_id);
    let version = match stream_versions.get(&stream) {
        Some(v) => v + 1,
        None => current_versions(tx, &[stream.as_str()]).await?.get(&stream).copied().unwrap_or(0) + 1,
    };
    stream_versions.insert(stream.clone(), version);
    let row = policies::budget_by_id(tx, budget_id).await?.expect("the budget was written above");
    let outcome = BudgetOutcome {
        budget_id,
        name: row.name,
        description: row.description,
        owner: row.owner,
        active: row.active,
        version,
        replayed: false,
    };
    Ok((Ok(outcome), vec![(stream, version, NewEvent::new(event, command.metadata.clone()))]))
}

/// Sets each price that differs from the version in effect at the new one's time; returns its events.
async fn set_prices(
    tx: &Transaction<'_>,
    c: &PricesCommand,
) -> Result<(PricesOutcome, Vec<VersionedEvent>), LedgerError> {
    // One price change at a time across processes: two replicas refreshing the same source must not
    // both see the old version and both append a new one.
    tx.execute(PRICE_BOOK_LOCK, &[]).await?;
    let keys: Vec<(String, String)> = c.prices.iter().map(|p| (p.provider.clone(), p.model.clone())).collect();
    let current = prices::versions_for(tx, &keys).await?;
    let mut outcome = PricesOutcome { added: Vec::new(), changed: Vec::new(), unchanged: 0, replayed: false };
    let mut events = Vec::new();
    for spec in &c.prices {
        let name = format!("{}/{}", spec.provider, spec.model);
        let before = current.iter().find(|v| {
            v.spec.provider == spec.provider && v.spec.model == spec.model && v.in_effect_at(c.effective_from)
        });
        match before {
            Some(v) if v.spec.same_price(spec) => {
                outcome.unchanged += 1;
                continue;
            }
            Some(_) => outcome.changed.push(name),
            None => outcome.added.push(name),
        }
        let event = crate::event::PriceSet {
            version_id: Uuid::now_v7(),
            spec: spec.clone(),
            effective_from: c.effective_from,
            source: c.source,
        };
        prices::insert(tx, &event).await?;
        let stream = format!("price-{}", event.version_id);
        events.push((stream, 1, NewEvent::new(Event::PriceSet(event), c.metadata.clone())));
    }
    Ok((outcome, events))
}

/// Appends the first acknowledgement of an alert; a later one gets the first back and writes nothing.
async fn acknowledge(
    tx: &Transaction<'_>,
    c: &AcknowledgeCommand,
    stream_versions: &mut HashMap<String, i64>,
) -> Result<(AcknowledgeOutcome, Vec<VersionedEvent>), LedgerError> {
    let stream = format!("alert-{}", c.alert_id);
    if stream_versions.contains_key(&stream) {
        // Acknowledged earlier in this batch: the first one stands.
        let acknowledgement = crate::event::AlertAcknowledged {
            alert_id: c.alert_id,
            acknowledged_by: c.by.clone(),
            acknowledged_at: Utc::now(),
        };
        return Ok((AcknowledgeOutcome { acknowledgement, already: true }, Vec::new()));
    }
    let first =
        tx.query_opt("SELECT payload FROM events WHERE stream_id = $1 AND stream_version = 1", &[&stream]).await?;
    if let Some(row) = first {
        let acknowledgement = serde_json::from_value(row.get(0)).expect("stored acknowledgements decode");
        return Ok((AcknowledgeOutcome { acknowledgement, already: true }, Vec::new()));
    }
    stream_versions.insert(stream.clone(), 1);
    let acknowledgement = crate::event::AlertAcknowledged {
        alert_id: c.alert_id,
        acknowledged_by: c.by.clone(),
        acknowledged_at: Utc::now(),
    };
    let new = NewEvent::new(Event::AlertAcknowledged(acknowledgement.clone()), c.metadata.clone());
    Ok((AcknowledgeOutcome { acknowledgement, already: false }, vec![(stream, 1, new)]))
}

fn replay(
    command: &Command,
    key: &IdempotencyKey,
    hash: &str,
    outcome: &serde_json::Value,
) -> Result<Outcome, CommandError> {
    if hash != key.request_hash {
        return Err(CommandError::KeyReused(client_key(key)));
    }
    if let Some(rejection) = outcome.get("rejection") {
        return Err(serde_json::from_value(rejection.clone()).expect("stored rejections decode"));
    }
    let stored = outcome.clone();
    Ok(mark_replayed(match command {
        Command::Usage(_) => Outcome::Usage(serde_json::from_value(stored).expect("stored outcomes decode")),
        Command::SetPolicy(_) => {
            Outcome::Policy(Box::new(serde_json::from_value(stored).expect("stored outcomes decode")))
        }
        Command::Budget(_) => {
            Outcome::Budget(Box::new(serde_json::from_value(stored).expect("stored outcomes decode")))
        }
        Command::Allocate(_) | Command::Release(_) => {
            Outcome::Allocation(Box::new(serde_json::from_value(stored).expect("stored outcomes decode")))
        }
        Command::Expire(_) | Command::Reprice(_) | Command::Refused(_) | Command::Acknowledge(_) => {
            unreachable!("sweeps, re-prices, refusals and acknowledgements carry no idempotency key")
        }
        Command::SetPrices(_) => {
            Outcome::Prices(Box::new(serde_json::from_value(stored).expect("stored outcomes decode")))
        }
    }))
}

fn replay_item(key: &IdempotencyKey, hash: &str, outcome: &serde_json::Value) -> ItemOutcome {
    if hash != key.request_hash {
        let message = CommandError::KeyReused(client_key(key)).to_string();
        return ItemOutcome::rejected("idempotency_key_reused", message);
    }
    let mut original: ItemOutcome = serde_json::from_value(outcome.clone()).expect("stored outcomes decode");
    if original.status == ItemStatus::Recorded {
        original.status = ItemStatus::Duplicate;
    }
    original
}

/// The key as the client sent it, without our scope prefix.
fn client_key(key: &IdempotencyKey) -> String {
    key.key.split_once(':').map_or(key.key.as_str(), |(_, k)| k).to_string()
}

impl ItemOutcome {
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
            error: None,
        }
    }

    fn recorded(record_id: Uuid) -> Self {
        ItemOutcome { record_id: Some(record_id), ..Self::empty() }
    }

    fn rejected(code: &str, message: String) -> Self {
        ItemOutcome {
            status: ItemStatus::Rejected,
            error: Some(OutcomeError { code: code.into(), message }),
            ..Self::empty()
        }
    }
}
