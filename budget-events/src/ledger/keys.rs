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
    pub metadata: EventMetadata,
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
    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        let Some(mut row) = keys::lock(tx, self.key_id).await? else {
            return Ok(Step::Done(Err(CommandError::UnknownKey(self.key_id)), Vec::new()));
        };
        if row.revoked_at.is_some() {
            return Ok(Step::Done(Ok(Self::wrap(KeyOutcome { key: row, already: true })), Vec::new()));
        }
        keys::revoke(tx, self.key_id, batch.now).await?;
        row.revoked_at = Some(batch.now);
        let stream = format!("apikey-{}", self.key_id);
        let version = batch.next_version(tx, &stream).await?;
        let event = NewEvent::new(Event::ApiKeyRevoked(ApiKeyRevoked { key_id: self.key_id }), self.metadata.clone());
        Ok(Step::Done(Ok(Self::wrap(KeyOutcome { key: row, already: false })), vec![(stream, version, event)]))
    }
}
