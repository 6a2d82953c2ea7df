//! The `api_keys` rows, kept by the write path in step with `ApiKeyCreated` / `ApiKeyRevoked`, and
//! the lookup every authenticated request makes (by the secret's hash, one indexed row).

use crate::db::WriteTx;
use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::domain::keys::KeyScope;
use crate::event::ApiKeyCreated;

/// A key as listed and as checked.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyRow {
    pub key_id: Uuid,
    pub prefix: String,
    pub name: Option<String>,
    pub scope: KeyScope,
    pub component: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl KeyRow {
    /// Usable now: not revoked, not expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

const COLUMNS: &str = "key_id, prefix, name, scope, component, created_at, expires_at, revoked_at, last_used_at";

fn from_row(r: &Row) -> KeyRow {
    KeyRow {
        key_id: r.get("key_id"),
        prefix: r.get("prefix"),
        name: r.get("name"),
        scope: r.get::<_, String>("scope").parse().expect("checked by the table"),
        component: r.get("component"),
        created_at: r.get("created_at"),
        expires_at: r.get("expires_at"),
        revoked_at: r.get("revoked_at"),
        last_used_at: r.get("last_used_at"),
    }
}

pub async fn insert(tx: &WriteTx, k: &ApiKeyCreated, at: DateTime<Utc>) -> Result<(), tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO api_keys (key_id, secret_hash, prefix, name, scope, component, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &k.key_id,
            &k.secret_hash,
            &k.prefix,
            &k.name,
            &k.scope.as_str(),
            &k.component.as_ref().map(|c| c.as_str()),
            &at,
            &k.expires_at,
        ],
    )
    .await?;
    Ok(())
}

/// The key, locked, for a revocation to decide on.
pub async fn lock(tx: &WriteTx, key_id: Uuid) -> Result<Option<KeyRow>, tokio_postgres::Error> {
    let row = tx.query_opt(&format!("SELECT {COLUMNS} FROM api_keys WHERE key_id = $1 FOR UPDATE"), &[&key_id]).await?;
    Ok(row.as_ref().map(from_row))
}

/// The active admin keys (a revocation keeps the last one).
pub async fn active_admins(tx: &WriteTx, now: DateTime<Utc>) -> Result<Vec<Uuid>, tokio_postgres::Error> {
    let rows = tx
        .query(
            "SELECT key_id FROM api_keys
              WHERE scope = 'admin' AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
            &[&now],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Whether a key other than `key_id` is active (which keeps keys required).
pub async fn any_active_but(tx: &WriteTx, key_id: Uuid, now: DateTime<Utc>) -> Result<bool, tokio_postgres::Error> {
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM api_keys
              WHERE key_id <> $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $2))",
            &[&key_id, &now],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn revoke(tx: &WriteTx, key_id: Uuid, at: DateTime<Utc>) -> Result<(), tokio_postgres::Error> {
    tx.execute("UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1", &[&key_id, &at]).await?;
    Ok(())
}

/// The key whose secret has this hash, through a statement the pooled connection keeps prepared: it
/// runs on every request that carries a key, and a fresh statement each time cost a parse, a plan and
/// an extra round trip.
pub async fn by_hash(client: &deadpool_postgres::Client, hash: &str) -> Result<Option<KeyRow>, tokio_postgres::Error> {
    let statement = client.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE secret_hash = $1")).await?;
    let row = client.query_opt(&statement, &[&hash]).await?;
    Ok(row.as_ref().map(from_row))
}

/// Which of `key_ids` can no longer be used (revoked, or expired by the transaction's clock): the
/// write path's second look at the keys that sent its commands (see `ledger::Handle::signer`).
pub async fn inactive_among(
    tx: &WriteTx,
    key_ids: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, tokio_postgres::Error> {
    if key_ids.is_empty() {
        return Ok(Default::default());
    }
    let statement = tx
        .prepare_cached(
            "SELECT key_id FROM api_keys WHERE key_id = ANY($1) AND (revoked_at IS NOT NULL OR expires_at <= now())",
        )
        .await?;
    Ok(tx.query(&statement, &[&key_ids]).await?.iter().map(|r| r.get(0)).collect())
}

/// Every key, newest first.
pub async fn list(client: &impl GenericClient) -> Result<Vec<KeyRow>, tokio_postgres::Error> {
    let rows = client.query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at DESC, key_id"), &[]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Whether any key is usable now (then every request needs one).
pub async fn any_active(client: &impl GenericClient, now: DateTime<Utc>) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1))",
            &[&now],
        )
        .await?;
    Ok(row.get(0))
}

/// Records that the key was used (callers do it at most once a minute per key).
pub async fn touch(client: &impl GenericClient, key_id: Uuid, at: DateTime<Utc>) -> Result<(), tokio_postgres::Error> {
    client.execute("UPDATE api_keys SET last_used_at = $2 WHERE key_id = $1", &[&key_id, &at]).await?;
    Ok(())
}
