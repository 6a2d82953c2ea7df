//! Idempotency keys: the stored outcome of a keyed write, returned as is to every retry.
//!
//! The outcome (a rejection too) is written in the transaction that wrote the events, so a key is
//! never stored without its effects or the other way round. A retry must carry the same request: the
//! key stores a hash of it, and a different request under a used key is refused.

use std::collections::HashMap;

use crate::db::WriteTx;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The longest key a client may send.
pub const MAX_KEY_LEN: usize = 200;

/// A client's key, scoped to one kind of operation, with a hash of the request it came with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pub key: String,
    pub request_hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the idempotency key is empty; send a unique string such as a UUID")]
    Empty,
    #[error("the idempotency key is {0} characters long; the limit is {MAX_KEY_LEN}")]
    TooLong(usize),
    #[error("the idempotency key contains a control character; use printable text such as a UUID")]
    ControlCharacter,
}

impl IdempotencyKey {
    /// `scope` keeps the same client key used on two different operations apart.
    pub fn new(scope: &str, key: &str, request: &impl Serialize) -> Result<Self, KeyError> {
        Self::hashed(scope, key, || request_hash(request))
    }

    /// Like [`IdempotencyKey::new`], for a request that serializes canonically already: the same
    /// hash, without building a `serde_json::Value` of the request first.
    pub fn new_canonical(scope: &str, key: &str, request: &impl Canonical) -> Result<Self, KeyError> {
        Self::hashed(scope, key, || canonical_hash(request))
    }

    fn hashed(scope: &str, key: &str, hash: impl FnOnce() -> String) -> Result<Self, KeyError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        if key.chars().count() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(key.chars().count()));
        }
        if key.chars().any(char::is_control) {
            return Err(KeyError::ControlCharacter);
        }
        Ok(IdempotencyKey { key: format!("{scope}:{key}"), request_hash: hash() })
    }
}

/// A stable hash of a request: the SHA-256 of its canonical JSON, compact, with the keys of every
/// object sorted (a `serde_json::Value` keeps its objects sorted). Stored with each key, so it must
/// not change: a retry after an upgrade has to hash to what its first try stored.
pub fn request_hash(request: &impl Serialize) -> String {
    canonical_hash(&serde_json::to_value(request).expect("requests serialize"))
}

/// A type whose `Serialize` writes the canonical JSON [`request_hash`] hashes (every object's keys in
/// sorted order), so it can be hashed as it serializes. Each implementor has a test comparing the two.
/// Building the `Value` tree of a 1,000-record batch cost half of the HTTP workers' CPU in the
/// bench's batch phase (perf, 2026-12-01).
pub trait Canonical: Serialize {}

impl Canonical for serde_json::Value {}

/// [`request_hash`] of a request that is [`Canonical`] already.
pub fn canonical_hash(request: &impl Canonical) -> String {
    // serde_json writes a token at a time (a quote, a key, a colon): buffered, the hash takes them a
    // few kilobytes at a time instead of one call each.
    let mut hasher = std::io::BufWriter::with_capacity(8192, HashWriter(Sha256::new()));
    serde_json::to_writer(&mut hasher, request).expect("requests serialize");
    let hasher = hasher.into_inner().unwrap_or_else(|_| unreachable!("hashing never fails to write"));
    crate::display::hex(&hasher.0.finalize())
}

/// Feeds what `serde_json` writes straight into the hash.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredOutcome {
    pub request_hash: String,
    /// The outcome as the JSON text the write path stored (parsed by the ledger, which says which key
    /// holds a row that does not parse).
    pub outcome: String,
}

/// The stored outcomes of those of `keys` that were used before.
pub async fn lookup(tx: &WriteTx, keys: &[&str]) -> Result<HashMap<String, StoredOutcome>, tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = tx
        .query(
            &tx.prepare_cached("SELECT key, request_hash, outcome FROM idempotency_keys WHERE key = ANY($1)").await?,
            &[&keys],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.get("key"), StoredOutcome { request_hash: r.get("request_hash"), outcome: r.get("outcome") }))
        .collect())
}

/// Stores outcomes. Returns how many were new: fewer than given means another process stored one of
/// these keys since [`lookup`], and the caller must roll back and retry (the retry will replay it).
pub async fn store(tx: &WriteTx, entries: &[(&IdempotencyKey, String)]) -> Result<usize, tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.key.as_str()).collect();
    let hashes: Vec<&str> = entries.iter().map(|(k, _)| k.request_hash.as_str()).collect();
    // JSON text, stored as is (`text`: schema/0020_unvalidated_text.sql).
    let outcomes: Vec<&str> = entries.iter().map(|(_, o)| o.as_str()).collect();
    let n = tx
        .execute(
            &tx.prepare_cached(
                "INSERT INTO idempotency_keys (key, request_hash, outcome)
             SELECT k, h, o FROM unnest($1::text[], $2::text[], $3::text[]) AS t(k, h, o)
             ON CONFLICT (key) DO NOTHING",
            )
            .await?,
            &[&keys, &hashes, &outcomes],
        )
        .await?;
    Ok(n as usize)
}
