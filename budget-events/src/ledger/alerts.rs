//! Acknowledging an alert: the first acknowledgement is an event on the alert's stream; a later one
//! gets the first back and writes nothing.

use crate::db::WriteTx;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Batch, Handle, LedgerCommand, LedgerError, Step};
use crate::event::{AlertAcknowledged, Event, EventMetadata, NewEvent};

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
    pub acknowledgement: AlertAcknowledged,
    pub already: bool,
}

impl Handle for AcknowledgeCommand {
    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        let stream = format!("alert-{}", self.alert_id);
        let acknowledgement = AlertAcknowledged {
            alert_id: self.alert_id,
            acknowledged_by: self.by.clone(),
            acknowledged_at: Utc::now(),
        };
        if batch.stream_versions.contains_key(&stream) {
            // Acknowledged earlier in this batch: the first one stands.
            return Ok(Step::Done(Ok(Self::wrap(AcknowledgeOutcome { acknowledgement, already: true })), Vec::new()));
        }
        let first = tx
            .query_opt("SELECT payload::json FROM events WHERE stream_id = $1 AND stream_version = 1", &[&stream])
            .await?;
        if let Some(row) = first {
            let acknowledgement = serde_json::from_value(row.get(0)).expect("stored acknowledgements decode");
            return Ok(Step::Done(Ok(Self::wrap(AcknowledgeOutcome { acknowledgement, already: true })), Vec::new()));
        }
        batch.stream_versions.insert(stream.clone(), 1);
        let new = NewEvent::new(Event::AlertAcknowledged(acknowledgement.clone()), self.metadata.clone());
        Ok(Step::Done(Ok(Self::wrap(AcknowledgeOutcome { acknowledgement, already: false })), vec![(stream, 1, new)]))
    }
}
