//! Creating and revoking API keys: events like every other change, so the log says who could do
//! what and when. The secret never reaches the write path; it gets the hash.

use crate::db::WriteTx;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Batch, CommandError, Handle, LedgerCommand, LedgerError, Step};
use crate::event::{ApiKeyCreated, ApiKeyRevoked, Event, EventMetadata, NewEvent};
use crate::store::keys::{self, KeyRow};

/// Create a key (its id, hash and prefix made by the caller, who shows the secret once).
#[derive(Debug, Clone)]
pub struct CreateKeyCommand {
    pub key: ApiKeyCreated,
    pub metadata: EventMetadata,
}

/// Revoke a key.
#[derive(Debug, Clone)]
pub struct RevokeKeyCommand {
    pub key_id: Uuid,
    pub last_admin: LastAdmin,
    pub metadata: EventMetadata,
}

/// Whether the last active admin key may be revoked: not when keys would stay required with no key
/// able to manage keys, limits or prices again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastAdmin {
    /// A bootstrap key (`BUDGET_ADMIN_KEY`, never stored) stands in for it.
    Revocable,
    /// The service runs open when no key is active (on loopback): revocable as the last key of all,
    /// which returns the service to running open; kept while other keys keep it closed.
    RevocableAlone,
    /// Keys stay required whatever is revoked (off loopback): kept.
    Kept,
}

/// A key as it stands after the command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyOutcome {
    pub key: KeyRow,
    /// A revocation of a key revoked before: nothing was written.
    pub already: bool,
}

impl Handle for CreateKeyCommand {
    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        keys::insert(tx, &self.key, batch.now).await?;
        let row = keys::lock(tx, self.key.key_id).await?.expect("the key was just inserted");
        let stream = format!("apikey-{}", self.key.key_id);
        batch.stream_versions.insert(stream.clone(), 1);
        let event = NewEvent::new(Event::ApiKeyCreated(self.key.clone()), self.metadata.clone());
        Ok(Step::Done(Ok(Self::wrap(KeyOutcome { key: row, already: false })), vec![(stream, 1, event)]))
    }
}

impl Handle for RevokeKeyCommand {
    fn excludes_other_batches(&self) -> bool {
        true
    }

    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        // A revocation runs alone (`excludes_other_batches`), so no key is created or revoked between
        // what it reads here and its commit, in any process.
        let Some(mut row) = keys::lock(tx, self.key_id).await? else {
            return Ok(Step::Done(Err(CommandError::UnknownKey(self.key_id)), Vec::new()));
        };
        if row.revoked_at.is_some() {
            return Ok(Step::Done(Ok(Self::wrap(KeyOutcome { key: row, already: true })), Vec::new()));
        }
        if self.last_admin != LastAdmin::Revocable && keys::active_admins(tx, batch.now).await? == [self.key_id] {
            let alone = self.last_admin == LastAdmin::RevocableAlone;
            if !alone || keys::any_active_but(tx, self.key_id, batch.now).await? {
                let error = CommandError::LastAdminKey { key_id: self.key_id, others_first: alone };
                return Ok(Step::Done(Err(error), Vec::new()));
            }
        }
        keys::revoke(tx, self.key_id, batch.now).await?;
        row.revoked_at = Some(batch.now);
        let stream = format!("apikey-{}", self.key_id);
        let version = batch.next_version(tx, &stream).await?;
        let event = NewEvent::new(Event::ApiKeyRevoked(ApiKeyRevoked { key_id: self.key_id }), self.metadata.clone());
        Ok(Step::Done(Ok(Self::wrap(KeyOutcome { key: row, already: false })), vec![(stream, version, event)]))
    }
}
