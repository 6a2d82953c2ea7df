//! The price book: setting prices (a manual price, the bundled table, an import) and re-pricing
//! records as corrections. Both take one advisory lock, so two replicas never both append a version
//! over the same old one, and no record is corrected twice.

use crate::db::WriteTx;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Batch, CommandError, Handle, LedgerCommand, LedgerError, Step};
use crate::decide;
use crate::domain::price::{PriceSource, PriceSpec};
use crate::event::{Event, EventMetadata, NewEvent, PriceSet, UsageRepriced};
use crate::store::idempotency::IdempotencyKey;
use crate::store::prices;
use crate::store::repricing::{self, RepriceSelection};

/// Serialises price changes and re-prices across processes, until the transaction ends.
const PRICE_BOOK_LOCK: &str = "SELECT pg_advisory_xact_lock(hashtext('budget:price-book'))";

/// Set prices (a manual price, the bundled table, an import).
#[derive(Debug, Clone)]
pub struct PricesCommand {
    pub prices: Vec<PriceSpec>,
    pub effective_from: DateTime<Utc>,
    pub source: PriceSource,
    pub key: Option<IdempotencyKey>,
    pub metadata: EventMetadata,
}

/// What a [`PricesCommand`] changed, by `provider/model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricesOutcome {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: usize,
    #[serde(default, skip_serializing)]
    pub replayed: bool,
}

/// Correct the cost of records priced with a version other than the one now in effect at their time.
#[derive(Debug, Clone)]
pub struct RepriceCommand {
    pub selection: RepriceSelection,
    pub metadata: EventMetadata,
}

/// The corrections a [`RepriceCommand`] appended (or, for a dry run, would append).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepriceOutcome {
    pub corrections: Vec<UsageRepriced>,
    /// The selection's records left without a cost (no price in effect at their time).
    #[serde(default)]
    pub unpriced: repricing::StillUnpriced,
}

impl Handle for PricesCommand {
    fn key(&self) -> Option<&IdempotencyKey> {
        self.key.as_ref()
    }

    /// Sets each price that differs from the version in effect at the new one's time: in its charges,
    /// or, from one import over another, in what the file says of the model (so a re-import refreshes
    /// capabilities and context windows, but never displaces a bundled or hand-set price for them).
    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        tx.execute(PRICE_BOOK_LOCK, &[]).await?;
        let keys: Vec<(String, String)> = self.prices.iter().map(|p| (p.provider.clone(), p.model.clone())).collect();
        let current = prices::versions_for_in(tx, &keys).await?;
        let mut outcome = PricesOutcome { added: Vec::new(), changed: Vec::new(), unchanged: 0, replayed: false };
        let mut events = Vec::new();
        for spec in &self.prices {
            let name = format!("{}/{}", spec.provider, spec.model);
            let before = current.iter().find(|v| {
                v.spec.provider == spec.provider && v.spec.model == spec.model && v.in_effect_at(self.effective_from)
            });
            match before {
                Some(v)
                    if v.spec.same_price(spec)
                        && (!(v.source.imported() && self.source.imported()) || v.spec.same_description(spec)) =>
                {
                    outcome.unchanged += 1;
                    continue;
                }
                Some(v) if v.effective_from == self.effective_from => {
                    let refusal = CommandError::PriceVersionExists { name, at: v.effective_from };
                    return Ok(Step::Done(Err(refusal), Vec::new()));
                }
                Some(_) => outcome.changed.push(name),
                None => outcome.added.push(name),
            }
            let event = PriceSet {
                version_id: Uuid::now_v7(),
                spec: spec.clone(),
                effective_from: self.effective_from,
                source: self.source,
            };
            prices::insert(tx, &event).await?;
            let stream = format!("price-{}", event.version_id);
            events.push((stream, 1, NewEvent::new(Event::PriceSet(event), self.metadata.clone())));
        }
        // Later records of the batch are priced with the new versions.
        batch.price_versions = prices::versions_for_in(tx, &batch.price_keys).await?;
        Ok(Step::Done(Ok(Self::wrap(outcome)), events))
    }

    fn mark_replayed(outcome: &mut PricesOutcome) {
        outcome.replayed = true;
    }
}

impl Handle for RepriceCommand {
    /// Plans the corrections from the log; pass 2 moves each posted account by the correction's delta.
    async fn plan<'a>(&'a self, tx: &WriteTx, batch: &mut Batch<'a>) -> Result<Step<'a>, LedgerError> {
        // One lock for price changes and re-prices, so two batches cannot take them in opposite orders.
        tx.execute(PRICE_BOOK_LOCK, &[]).await?;
        let repricing::RepricePlan { mut corrections, unpriced } =
            repricing::plan(tx.client(), &self.selection).await?;
        corrections.retain(|(c, _)| batch.repriced.insert(c.record_id));
        for (c, _) in &corrections {
            for p in &c.postings {
                batch.needed.entry((p.policy_id, p.window.clone())).or_insert((None, None));
            }
        }
        Ok(Step::post(move |books| {
            for (correction, version) in &corrections {
                decide::post_correction(correction, &mut books.accounts);
                let new = NewEvent::new(Event::UsageRepriced(correction.clone()), self.metadata.clone());
                books.events.push((decide::usage_stream(correction.record_id), *version, new));
            }
            let corrections = corrections.into_iter().map(|(c, _)| c).collect();
            Ok(Self::wrap(RepriceOutcome { corrections, unpriced }))
        }))
    }
}
