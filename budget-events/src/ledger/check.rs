//! Pre-flight refusals: a check that a hard limit refused is kept in the log (nothing was spent, but the
//! refusal is a fact the alerts count and `explain` shows).

use tokio_postgres::Transaction;
use uuid::Uuid;

use super::{Batch, Handle, LedgerCommand, LedgerError, Step};
use crate::event::{BudgetRefused, Event, EventMetadata, NewEvent};

/// Record a refusal decided by a pre-flight check.
#[derive(Debug, Clone)]
pub struct RefusalCommand {
    pub refusal: BudgetRefused,
    pub metadata: EventMetadata,
}

impl Handle for RefusalCommand {
    async fn plan<'a>(&'a self, _tx: &Transaction<'_>, _batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        let new = NewEvent::new(Event::BudgetRefused(self.refusal.clone()), self.metadata.clone());
        Ok(Step::Done(Ok(Self::wrap(())), vec![(format!("refusal-{}", Uuid::now_v7()), 1, new)]))
    }
}
