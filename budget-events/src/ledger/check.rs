//! The pre-flight check: may this call go ahead? Decided like every other request, by the writer against
//! the locked accounts (`decide::preflight`), so its answer is consistent with what reservations and
//! usage see. It reserves nothing; a refusal is kept in the log (nothing was spent, but the refusal is a
//! fact the alerts count and `explain` shows).

use crate::db::WriteTx;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Batch, Handle, LedgerCommand, LedgerError, Step};
use crate::decide::{self, Preflight, UnpricedPolicy};
use crate::domain::policy::{Policy, Window};
use crate::domain::usage::CostSource;
use crate::domain::RecordUsage;
use crate::event::{Event, EventMetadata, NewEvent};
use crate::money::Money;

/// Check an intended call, validated as the record it would become.
#[derive(Debug, Clone)]
pub struct CheckCommand {
    pub call: RecordUsage,
    pub unpriced: UnpricedPolicy,
    pub metadata: EventMetadata,
}

/// The decision on a [`CheckCommand`], with the cost it was decided with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    pub cost: Money,
    pub cost_source: CostSource,
    pub tokens: i64,
    /// The price version the cost came from, when from the price book.
    pub price_version: Option<Uuid>,
    pub preflight: Preflight,
}

impl Handle for CheckCommand {
    fn priced_models(&self) -> Vec<(&str, &str)> {
        vec![(self.call.provider.as_str(), self.call.model.as_str())]
    }

    async fn plan<'a>(&'a self, _tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        let windows: Vec<(Policy, Window)> = decide::matching_windows(&batch.policies, &decide::call_facts(&self.call))
            .into_iter()
            .map(|(p, w)| (p.clone(), w))
            .collect();
        for (p, w) in &windows {
            batch.need(p.id, w);
        }
        let quote = decide::quote(&self.call, &batch.price_versions);
        Ok(Step::post(move |books| {
            let (cost, cost_source) = decide::record_cost_with(&self.call, quote.as_ref());
            let tokens = self.call.input_tokens.get() + self.call.output_tokens.get();
            let with_accounts: Vec<_> =
                windows.iter().map(|(p, w)| (p, w.clone(), books.accounts[&(p.id, w.key.clone())])).collect();
            let preflight = decide::preflight(
                &with_accounts,
                cost.amount(),
                tokens,
                cost_source != CostSource::Unpriced,
                self.unpriced,
            );
            if let Some(refused) = decide::check_refused(&self.call, &with_accounts, &preflight, cost, tokens) {
                let new = NewEvent::new(Event::BudgetRefused(refused), self.metadata.clone());
                books.events.push((format!("refusal-{}", Uuid::now_v7()), 1, new));
            }
            let price_version = quote.map(|q| q.version_id);
            Ok(Self::wrap(CheckOutcome { cost, cost_source, tokens, price_version, preflight }))
        }))
    }
}
