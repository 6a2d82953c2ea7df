//! Policy accounts: locked in a fixed order, decided against in memory, written back in one statement.

use std::collections::{BTreeMap, BTreeSet};

use crate::db::WriteTx;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::domain::policy::Account;

/// An account's key: (policy, window key).
pub type AccountKey = (Uuid, String);

/// Bounds of a calendar window (none for per-session and per-task windows).
pub type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Creates the missing accounts and locks all of `keys` (in key order, so that two writers locking
/// overlapping sets never deadlock). Returns their current figures.
pub async fn lock(
    tx: &WriteTx,
    keys: &BTreeMap<AccountKey, Bounds>,
) -> Result<BTreeMap<AccountKey, Account>, tokio_postgres::Error> {
    Ok(lock_creating(tx, keys).await?.0)
}

/// [`lock`], and which of the accounts it created: a batch that locked accounts it then did not post
/// to must not leave new, empty ones behind (`ledger::process_timed`, foreseen accounts).
pub async fn lock_creating(
    tx: &WriteTx,
    keys: &BTreeMap<AccountKey, Bounds>,
) -> Result<(BTreeMap<AccountKey, Account>, BTreeSet<AccountKey>), tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok((BTreeMap::new(), BTreeSet::new()));
    }
    let policy_ids: Vec<Uuid> = keys.keys().map(|k| k.0).collect();
    let windows: Vec<&str> = keys.keys().map(|k| k.1.as_str()).collect();
    let starts: Vec<Option<DateTime<Utc>>> = keys.values().map(|b| b.0).collect();
    let ends: Vec<Option<DateTime<Utc>>> = keys.values().map(|b| b.1).collect();
    // Both statements are prepared first, then sent together: the server runs the insert before the
    // select (one round trip for the two), and the select sees the accounts the insert created.
    let (create, select) = tokio::try_join!(
        tx.prepare_cached(
            "INSERT INTO policy_accounts (policy_id, window_key, window_start, window_end)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[]) AS k(p, w, s, e)
         ORDER BY p, w
         ON CONFLICT (policy_id, window_key) DO NOTHING
         RETURNING policy_id, window_key",
        ),
        tx.prepare_cached(
            "SELECT a.policy_id, a.window_key, a.posted_cost, a.posted_tokens, a.pending_cost, a.pending_tokens, a.records
             FROM policy_accounts a
             JOIN unnest($1::uuid[], $2::text[]) AS k(p, w) ON a.policy_id = k.p AND a.window_key = k.w
             ORDER BY a.policy_id, a.window_key
             FOR UPDATE OF a"
        ),
    )?;
    let (created, rows) = tokio::try_join!(
        biased;
        async { tx.query(&create, &[&policy_ids, &windows, &starts, &ends]).await },
        async { tx.query(&select, &[&policy_ids, &windows]).await },
    )?;
    let created = created.iter().map(|r| (r.get("policy_id"), r.get("window_key"))).collect();
    let accounts: BTreeMap<AccountKey, Account> = rows
        .into_iter()
        .map(|r| {
            (
                (r.get("policy_id"), r.get("window_key")),
                Account {
                    posted_cost: r.get("posted_cost"),
                    posted_tokens: r.get("posted_tokens"),
                    pending_cost: r.get("pending_cost"),
                    pending_tokens: r.get("pending_tokens"),
                    records: r.get("records"),
                },
            )
        })
        .collect();
    assert_eq!(accounts.len(), keys.len(), "every account asked for exists and is locked");
    Ok((accounts, created))
}

/// Writes back the accounts' figures (all of them were locked by [`lock`] in this transaction).
pub async fn save(tx: &WriteTx, accounts: &BTreeMap<AccountKey, Account>) -> Result<(), tokio_postgres::Error> {
    if accounts.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = accounts.keys().map(|k| k.0).collect();
    let windows: Vec<&str> = accounts.keys().map(|k| k.1.as_str()).collect();
    let posted_cost: Vec<Decimal> = accounts.values().map(|a| a.posted_cost).collect();
    let posted_tokens: Vec<i64> = accounts.values().map(|a| a.posted_tokens).collect();
    let pending_cost: Vec<Decimal> = accounts.values().map(|a| a.pending_cost).collect();
    let pending_tokens: Vec<i64> = accounts.values().map(|a| a.pending_tokens).collect();
    let records: Vec<i64> = accounts.values().map(|a| a.records).collect();
    tx.execute(
        &tx.prepare_cached(
            "UPDATE policy_accounts a SET posted_cost = k.pc, posted_tokens = k.pt, pending_cost = k.qc,
                pending_tokens = k.qt, records = k.r, updated_at = now()
         FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::bigint[], $5::numeric[], $6::bigint[], $7::bigint[])
              AS k(p, w, pc, pt, qc, qt, r)
         WHERE a.policy_id = k.p AND a.window_key = k.w",
        )
        .await?,
        &[&ids, &windows, &posted_cost, &posted_tokens, &pending_cost, &pending_tokens, &records],
    )
    .await?;
    Ok(())
}
