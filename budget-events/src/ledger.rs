//! The write path, in one place: decide each command in order, append the events, store the
//! idempotency outcomes, all in the caller's one transaction.
//!
//! The [`crate::writer`] feeds it batches of concurrent commands so that one commit (one fsync) serves
//! many callers. Everything a command needs to be decided is read inside the transaction, so the
//! outcome stored under an idempotency key is exactly what was committed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::Transaction;
use uuid::Uuid;

use crate::decide;
use crate::domain::usage::CostSource;
use crate::domain::RecordUsage;
use crate::event::{Event, EventMetadata, NewEvent};
use crate::money::Money;
use crate::store::idempotency::{self, IdempotencyKey};
use crate::store::{insert_events, AppendError};

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

/// Why a command as a whole was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the idempotency key `{0}` was already used for a different request; use a new key for a new request")]
    KeyReused(String),
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Another process stored one of the batch's keys or appended to one of its streams meanwhile.
    /// Roll back and run the batch again: the retry sees what the other process committed.
    #[error("a concurrent writer committed a key or stream of this batch; retry")]
    Race,
    #[error(transparent)]
    Append(AppendError),
    #[error("database error in the write path: {0}")]
    Db(#[from] tokio_postgres::Error),
}

impl From<AppendError> for LedgerError {
    fn from(e: AppendError) -> Self {
        match e {
            AppendError::ConcurrentAppend(_) => LedgerError::Race,
            other => LedgerError::Append(other),
        }
    }
}

/// An item's outcome so far, with the index of its event in the batch when one is to be written.
type PendingItem = (ItemOutcome, Option<usize>);

/// Decides and writes `commands` in order in `tx`. The caller commits.
pub async fn process(
    tx: &Transaction<'_>,
    commands: &[UsageCommand],
) -> Result<Vec<Result<UsageOutcome, CommandError>>, LedgerError> {
    let keys: Vec<&str> = commands
        .iter()
        .flat_map(|c| {
            c.key
                .iter()
                .chain(c.items.iter().filter_map(|i| i.key.as_ref()))
        })
        .map(|k| k.key.as_str())
        .collect();
    // Keys stored by earlier transactions.
    let known: HashMap<String, (String, serde_json::Value)> = idempotency::lookup(tx, &keys)
        .await?
        .into_iter()
        .map(|(k, v)| (k, (v.request_hash, v.outcome)))
        .collect();

    let mut results: Vec<Result<UsageOutcome, CommandError>> = Vec::with_capacity(commands.len());
    let mut new_events: Vec<NewEvent> = Vec::new();
    // Per command: item outcomes, with `Some(index into new_events)` where an event is to be written.
    let mut pending: Vec<Option<Vec<PendingItem>>> = Vec::with_capacity(commands.len());
    // Keys taken by an earlier command or item of this same batch.
    let mut batch_commands: HashMap<&str, (&str, usize)> = HashMap::new();
    let mut batch_items: HashMap<&str, (&str, Uuid)> = HashMap::new();
    let mut copies: Vec<(usize, usize)> = Vec::new();

    for (index, command) in commands.iter().enumerate() {
        if let Some(key) = &command.key {
            if let Some((hash, outcome)) = known.get(&key.key) {
                results.push(replay(key, hash, outcome));
                pending.push(None);
                continue;
            }
            if let Some((hash, original)) = batch_commands.get(key.key.as_str()) {
                if *hash == key.request_hash {
                    copies.push((index, *original));
                    results.push(Ok(UsageOutcome {
                        items: Vec::new(),
                        replayed: true,
                    }));
                } else {
                    results.push(Err(CommandError::KeyReused(client_key(key))));
                }
                pending.push(None);
                continue;
            }
            batch_commands.insert(&key.key, (&key.request_hash, index));
        }
        let mut items = Vec::with_capacity(command.items.len());
        for item in &command.items {
            if let Some(key) = &item.key {
                if let Some((hash, outcome)) = known.get(&key.key) {
                    items.push((replay_item(key, hash, outcome), None));
                    continue;
                }
                if let Some((hash, record_id)) = batch_items.get(key.key.as_str()) {
                    let outcome = serde_json::to_value(ItemOutcome::recorded(*record_id))
                        .expect("outcomes serialize");
                    items.push((replay_item(key, hash, &outcome), None));
                    continue;
                }
            }
            let record_id = Uuid::now_v7();
            let event = decide::record_usage(&item.record, record_id);
            let mut metadata = command.metadata.clone();
            metadata.idempotency_key = item
                .key
                .as_ref()
                .or(command.key.as_ref())
                .map(|k| k.key.clone());
            new_events.push(NewEvent::new(event, metadata));
            items.push((ItemOutcome::recorded(record_id), Some(new_events.len() - 1)));
            if let Some(key) = &item.key {
                batch_items.insert(&key.key, (&key.request_hash, record_id));
            }
        }
        results.push(Ok(UsageOutcome {
            items: Vec::new(),
            replayed: false,
        }));
        pending.push(Some(items));
    }

    let streams: Vec<String> = new_events
        .iter()
        .map(|e| match &e.event {
            Event::UsageRecorded(u) => decide::usage_stream(u.record_id),
        })
        .collect();
    let rows: Vec<(&str, i64, &NewEvent)> = streams
        .iter()
        .zip(&new_events)
        .map(|(s, e)| (s.as_str(), 1, e))
        .collect();
    let appended = insert_events(tx, &rows).await?;
    assert_eq!(
        appended.len(),
        new_events.len(),
        "every event of the batch is appended exactly once"
    );
    let positions: HashMap<Uuid, i64> = appended.iter().map(|a| (a.event_id, a.position)).collect();

    let mut to_store: Vec<(&IdempotencyKey, serde_json::Value)> = Vec::new();
    for ((command, result), items) in commands.iter().zip(results.iter_mut()).zip(pending) {
        let (Ok(outcome), Some(items)) = (result.as_mut(), items) else {
            continue;
        };
        for ((mut item_outcome, event_index), item) in items.into_iter().zip(&command.items) {
            if let Some(i) = event_index {
                let new = &new_events[i];
                let Event::UsageRecorded(u) = &new.event;
                item_outcome.event_id = Some(new.event_id);
                item_outcome.position = Some(positions[&new.event_id]);
                item_outcome.cost = Some(u.cost);
                item_outcome.cost_source = Some(u.cost_source);
                item_outcome.timestamp = Some(u.occurred_at);
                if let Some(key) = &item.key {
                    to_store.push((
                        key,
                        serde_json::to_value(&item_outcome).expect("outcomes serialize"),
                    ));
                }
            }
            outcome.items.push(item_outcome);
        }
        if let Some(key) = &command.key {
            to_store.push((
                key,
                serde_json::to_value(&*outcome).expect("outcomes serialize"),
            ));
        }
    }
    for (copy, original) in copies {
        if let Ok(original) = results[original].clone() {
            results[copy] = Ok(UsageOutcome {
                replayed: true,
                ..original
            });
        }
    }
    let stored = idempotency::store(tx, &to_store).await?;
    if stored != to_store.len() {
        return Err(LedgerError::Race);
    }
    Ok(results)
}

fn replay(
    key: &IdempotencyKey,
    hash: &str,
    outcome: &serde_json::Value,
) -> Result<UsageOutcome, CommandError> {
    if hash != key.request_hash {
        return Err(CommandError::KeyReused(client_key(key)));
    }
    let mut outcome: UsageOutcome =
        serde_json::from_value(outcome.clone()).expect("stored outcomes decode");
    outcome.replayed = true;
    Ok(outcome)
}

fn replay_item(key: &IdempotencyKey, hash: &str, outcome: &serde_json::Value) -> ItemOutcome {
    if hash != key.request_hash {
        let message = CommandError::KeyReused(client_key(key)).to_string();
        return ItemOutcome::rejected("idempotency_key_reused", message);
    }
    let mut original: ItemOutcome =
        serde_json::from_value(outcome.clone()).expect("stored outcomes decode");
    original.status = ItemStatus::Duplicate;
    original
}

/// The key as the client sent it, without our scope prefix.
fn client_key(key: &IdempotencyKey) -> String {
    key.key
        .split_once(':')
        .map_or(key.key.as_str(), |(_, k)| k)
        .to_string()
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
            error: None,
        }
    }

    fn recorded(record_id: Uuid) -> Self {
        ItemOutcome {
            record_id: Some(record_id),
            ..Self::empty()
        }
    }

    fn rejected(code: &str, message: String) -> Self {
        ItemOutcome {
            status: ItemStatus::Rejected,
            error: Some(OutcomeError {
                code: code.into(),
                message,
            }),
            ..Self::empty()
        }
    }
}
