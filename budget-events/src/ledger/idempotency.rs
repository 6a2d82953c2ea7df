//! Keyed commands in the batch: the stored outcome a retry gets back, and the outcomes a batch stores.
//!
//! An outcome is stored in the transaction that wrote its effects, so a key never exists without them.
//! Rejections are stored like acceptances, so a retried refusal stays refused.

use crate::db::WriteTx;

use super::{Batch, Command, CommandError, Handle, LedgerError, Outcome};
use crate::store::idempotency::{self, IdempotencyKey};

/// The outcome an earlier request stored under `key`, if this request is the same one.
pub(super) fn replay<C: Handle>(
    key: &IdempotencyKey,
    hash: &str,
    stored: &serde_json::Value,
) -> Result<Outcome, CommandError> {
    if hash != key.request_hash {
        return Err(CommandError::KeyReused(client_key(key)));
    }
    if let Some(rejection) = stored.get("rejection") {
        return Err(serde_json::from_value(rejection.clone()).expect("stored rejections decode"));
    }
    let mut outcome: C::Outcome = serde_json::from_value(stored.clone()).expect("stored outcomes decode");
    C::mark_replayed(&mut outcome);
    Ok(C::wrap(outcome))
}

/// The key as the client sent it, without our scope prefix.
pub(super) fn client_key(key: &IdempotencyKey) -> String {
    key.key.split_once(':').map_or(key.key.as_str(), |(_, k)| k).to_string()
}

/// The outcome of every command decided in this batch (`fresh`) under its key, and its parts' outcomes
/// under theirs, as stored.
pub(super) fn outcomes_to_store<'c>(
    commands: &'c [Command],
    results: &[Result<Outcome, CommandError>],
    fresh: &[bool],
    batch: &Batch<'_>,
) -> Vec<(&'c IdempotencyKey, String)> {
    let mut to_store: Vec<(&IdempotencyKey, String)> = Vec::new();
    for ((command, result), _) in commands.iter().zip(results).zip(fresh).filter(|(_, fresh)| **fresh) {
        match result {
            Ok(outcome) => {
                to_store.extend(command.part_outcomes(outcome, batch));
                if let Some(key) = command.key() {
                    to_store.push((key, outcome.to_json_text()));
                }
            }
            Err(rejection) => {
                if let Some(key) = command.key() {
                    let stored = serde_json::json!({ "rejection": rejection });
                    to_store.push((key, stored.to_string()));
                }
            }
        }
    }
    to_store
}

/// Stores `outcomes`. If another process stored one of the keys meanwhile, the batch lost a race.
pub(super) async fn store_all(tx: &WriteTx, outcomes: &[(&IdempotencyKey, String)]) -> Result<(), LedgerError> {
    let stored = idempotency::store(tx, outcomes).await?;
    if stored != outcomes.len() {
        return Err(LedgerError::Race);
    }
    Ok(())
}
