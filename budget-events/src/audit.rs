//! Folds of the log that explain the numbers: every enforcement account recomputed from the events,
//! with each event's contribution, and the policies and budgets as they stood at any time.
//!
//! The write path keeps the accounts in step as it appends; this fold is the independent check that it
//! did (`budget explain`, `budget replay --verify`) and the way to see the past (`status --as-of`).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::domain::policy::Account;
use crate::event::{Event, PolicySet, Posting, RecordedEvent};
use crate::store::accounts::AccountKey;
use crate::store::{read_after, Cursor, ReadError};

/// What one event did to one account.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Contribution {
    pub position: i64,
    pub recorded_at: DateTime<Utc>,
    pub event_type: std::borrow::Cow<'static, str>,
    /// The usage record or allocation the event is about.
    pub subject: Option<Uuid>,
    #[serde(with = "crate::money::decimal_json")]
    pub posted_cost: Decimal,
    pub posted_tokens: i64,
    pub records: i64,
    #[serde(with = "crate::money::decimal_json")]
    pub pending_cost: Decimal,
    pub pending_tokens: i64,
}

/// The log folded so far.
#[derive(Debug, Default)]
pub struct LogFold {
    pub policies: BTreeMap<Uuid, PolicySet>,
    /// When each policy was first set.
    pub created: BTreeMap<Uuid, DateTime<Utc>>,
    /// Budget name and whether it is still active.
    pub budgets: BTreeMap<Uuid, (String, bool)>,
    pub accounts: BTreeMap<AccountKey, Account>,
    /// Where each allocation reserves (from its `AllocationCreated`).
    reservations: HashMap<Uuid, Vec<Posting>>,
    pub events: usize,
}

impl LogFold {
    /// Folds one event; returns what it did to each account it touched.
    pub fn apply(&mut self, e: &RecordedEvent) -> Vec<(AccountKey, Contribution)> {
        self.events += 1;
        let mut out = Vec::new();
        let base = |subject: Option<Uuid>| Contribution {
            position: e.position,
            recorded_at: e.recorded_at,
            event_type: e.event.event_type().into(),
            subject,
            posted_cost: Decimal::ZERO,
            posted_tokens: 0,
            records: 0,
            pending_cost: Decimal::ZERO,
            pending_tokens: 0,
        };
        match &e.event {
            Event::BudgetCreated(b) => drop(self.budgets.insert(b.budget_id, (b.name.clone(), true))),
            Event::BudgetUpdated(b) => {
                if let (Some(name), Some(entry)) = (&b.name, self.budgets.get_mut(&b.budget_id)) {
                    entry.0 = name.clone();
                }
            }
            Event::BudgetArchived(b) => {
                if let Some(entry) = self.budgets.get_mut(&b.budget_id) {
                    entry.1 = false;
                }
            }
            Event::PolicySet(p) => {
                self.policies.insert(p.policy_id, p.clone());
                self.created.entry(p.policy_id).or_insert(e.recorded_at);
                if let Some(o) = &p.opening {
                    // The account is set to the opening balance: its contribution is the difference.
                    let key = (p.policy_id, o.window.clone());
                    let was = self.accounts.get(&key).copied().unwrap_or_default();
                    let c = Contribution {
                        posted_cost: o.posted_cost - was.posted_cost,
                        posted_tokens: o.posted_tokens - was.posted_tokens,
                        records: o.records - was.records,
                        pending_cost: o.pending_cost - was.pending_cost,
                        pending_tokens: o.pending_tokens - was.pending_tokens,
                        ..base(Some(p.policy_id))
                    };
                    out.push((key, c));
                    let posting = Posting { policy_id: p.policy_id, window: o.window.clone() };
                    for id in &o.allocations {
                        self.reservations.entry(*id).or_default().push(posting.clone());
                    }
                }
            }
            Event::UsageRecorded(u) => {
                for p in &u.postings {
                    let c = Contribution {
                        posted_cost: u.cost.amount(),
                        posted_tokens: u.total_tokens(),
                        records: 1,
                        ..base(Some(u.record_id))
                    };
                    out.push(((p.policy_id, p.window.clone()), c));
                }
                if let Some(s) = &u.settlement {
                    let released = s.settled_cost.amount() + s.voided_cost.amount();
                    for p in self.reservations.get(&s.allocation_id).cloned().unwrap_or_default() {
                        let c = Contribution {
                            pending_cost: -released,
                            pending_tokens: -s.settled_tokens,
                            ..base(Some(s.allocation_id))
                        };
                        out.push(((p.policy_id, p.window), c));
                    }
                }
            }
            Event::UsageRepriced(c) => {
                for p in &c.postings {
                    out.push((
                        (p.policy_id, p.window.clone()),
                        Contribution { posted_cost: c.delta, ..base(Some(c.record_id)) },
                    ));
                }
            }
            Event::AllocationCreated(a) => {
                self.reservations.insert(a.allocation_id, a.reservations.clone());
                for p in &a.reservations {
                    let c = Contribution {
                        pending_cost: a.estimated_cost.amount(),
                        pending_tokens: a.tokens_allocated,
                        ..base(Some(a.allocation_id))
                    };
                    out.push(((p.policy_id, p.window.clone()), c));
                }
            }
            Event::AllocationReleased(r) | Event::AllocationExpired(r) => {
                for p in self.reservations.get(&r.allocation_id).cloned().unwrap_or_default() {
                    let c = Contribution {
                        pending_cost: -r.released_cost.amount(),
                        pending_tokens: -r.released_tokens,
                        ..base(Some(r.allocation_id))
                    };
                    out.push(((p.policy_id, p.window), c));
                }
            }
            _ => {}
        }
        for (key, c) in &out {
            let a = self.accounts.entry(key.clone()).or_default();
            a.posted_cost += c.posted_cost;
            a.posted_tokens += c.posted_tokens;
            a.records += c.records;
            a.pending_cost += c.pending_cost;
            a.pending_tokens += c.pending_tokens;
        }
        out
    }
}

/// Folds every settled event (recorded at or before `until`, when given), calling `each` with every
/// event and what it did to the accounts.
pub async fn fold_log(
    client: &impl GenericClient,
    until: Option<DateTime<Utc>>,
    mut each: impl FnMut(&RecordedEvent, &[(AccountKey, Contribution)]),
) -> Result<LogFold, ReadError> {
    let mut fold = LogFold::default();
    let mut cursor = Cursor::START;
    loop {
        let events = read_after(client, cursor, 2000).await?;
        let Some(last) = events.last() else { break };
        cursor = Cursor::after(last);
        for e in events.iter().filter(|e| until.is_none_or(|t| e.recorded_at <= t)) {
            let contributions = fold.apply(e);
            each(e, &contributions);
        }
    }
    Ok(fold)
}

/// Folds every event the caller's snapshot sees (use a REPEATABLE READ transaction, and read the
/// stored accounts in it too, for a like-for-like check).
pub async fn fold_snapshot(client: &impl GenericClient) -> Result<LogFold, ReadError> {
    fold_snapshot_each(client, |_, _| {}).await
}

/// [`fold_snapshot`], calling `each` with every event and what it did to the accounts.
pub async fn fold_snapshot_each(
    client: &impl GenericClient,
    mut each: impl FnMut(&RecordedEvent, &[(AccountKey, Contribution)]),
) -> Result<LogFold, ReadError> {
    let mut fold = LogFold::default();
    let mut cursor = Cursor::START;
    loop {
        let events = crate::store::read_visible_after(client, cursor, 2000).await?;
        let Some(last) = events.last() else { break };
        cursor = Cursor::after(last);
        for e in &events {
            let contributions = fold.apply(e);
            each(e, &contributions);
        }
    }
    Ok(fold)
}

/// Accounts whose stored figures differ from the fold: (key, stored, folded). Accounts that exist on
/// one side only count as zero on the other.
pub fn account_differences(
    stored: &BTreeMap<AccountKey, Account>,
    folded: &BTreeMap<AccountKey, Account>,
) -> Vec<(AccountKey, Account, Account)> {
    let keys: std::collections::BTreeSet<&AccountKey> = stored.keys().chain(folded.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let s = stored.get(k).copied().unwrap_or_default();
            let f = folded.get(k).copied().unwrap_or_default();
            let same = s.posted_cost == f.posted_cost
                && s.posted_tokens == f.posted_tokens
                && s.records == f.records
                && s.pending_cost == f.pending_cost
                && s.pending_tokens == f.pending_tokens;
            (!same).then(|| (k.clone(), s, f))
        })
        .collect()
}

/// Every stored account.
pub async fn stored_accounts(
    client: &impl GenericClient,
) -> Result<BTreeMap<AccountKey, Account>, tokio_postgres::Error> {
    Ok(crate::store::policies::all_accounts(client)
        .await?
        .into_iter()
        .map(|w| ((w.policy_id, w.window_key), w.account))
        .collect())
}
