//! The usage records a re-price may correct, each with the cost it carries now (its own event folded
//! with the corrections already appended to it).
//!
//! Usage records live only in the log, so this reads the log: re-pricing is an occasional correction,
//! not a hot path, and reading the events themselves means no second copy of a record's cost can drift.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::domain::usage::CostSource;
use crate::event::{Event, UsageRecorded};
use crate::money::Money;
use crate::store::read::{decode_row, ReadError, COLUMNS};

/// A usage record as corrections left it.
#[derive(Debug, Clone)]
pub struct PricedRecord {
    pub record: UsageRecorded,
    pub cost: Money,
    pub cost_source: CostSource,
    pub price_version: Option<Uuid>,
    /// Events in the record's stream so far (its own and its corrections).
    pub stream_version: i64,
}

/// Which records a re-price looks at.
#[derive(Debug, Clone)]
pub struct RepriceSelection {
    pub provider: String,
    /// Matches a record sent under this name, a dated or `provider/` form of it, or resolved to it.
    pub model: String,
    pub since: DateTime<Utc>,
    pub until: Option<DateTime<Utc>>,
}

/// The selection's records, oldest first, as they stand now.
pub async fn priced_records(
    client: &impl GenericClient,
    selection: &RepriceSelection,
) -> Result<Vec<PricedRecord>, ReadError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM events, json_to_record(payload::json) AS f(provider text, occurred_at text)
                 WHERE event_type IN ('UsageRecorded', 'UsageRepriced')
                   AND f.provider = $1
                   AND f.occurred_at::timestamptz >= $2
                   AND ($3::timestamptz IS NULL OR f.occurred_at::timestamptz < $3)
                 ORDER BY position"
            ),
            &[&selection.provider, &selection.since, &selection.until],
        )
        .await?;
    let mut order: Vec<Uuid> = Vec::new();
    let mut records: HashMap<Uuid, PricedRecord> = HashMap::new();
    for row in &rows {
        match decode_row(row)?.event {
            Event::UsageRecorded(u) => {
                if !selection.matches(&u) {
                    continue;
                }
                order.push(u.record_id);
                let priced = PricedRecord {
                    cost: u.cost,
                    cost_source: u.cost_source,
                    price_version: u.price_version,
                    stream_version: 1,
                    record: u,
                };
                records.insert(priced.record.record_id, priced);
            }
            Event::UsageRepriced(c) => {
                if let Some(r) = records.get_mut(&c.record_id) {
                    r.cost = c.cost;
                    r.cost_source = CostSource::PriceBook;
                    r.price_version = Some(c.price_version);
                    r.stream_version += 1;
                }
            }
            _ => unreachable!("the query selects usage events only"),
        }
    }
    Ok(order.into_iter().filter_map(|id| records.remove(&id)).collect())
}

impl RepriceSelection {
    fn matches(&self, u: &UsageRecorded) -> bool {
        u.resolved_model.as_deref() == Some(self.model.as_str())
            || crate::domain::price::candidates(&self.provider, u.model.as_str()).contains(&self.model)
    }
}

/// What a re-price of a selection does now.
#[derive(Debug, Clone)]
pub struct RepricePlan {
    /// The corrections, each with the stream version it appends at.
    pub corrections: Vec<(crate::event::UsageRepriced, i64)>,
    pub unpriced: StillUnpriced,
}

/// The selection's records that stay without a cost: no price of their model was in effect at their
/// time (a price takes effect from its `effective_from`, so one set after the records misses them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StillUnpriced {
    pub records: usize,
    /// The oldest of them.
    pub first_occurred_at: Option<DateTime<Utc>>,
}

/// The corrections a re-price of `selection` makes now, and the records it leaves unpriced. Used by
/// the write path (inside its transaction) and, unchanged, by a dry run.
pub async fn plan(client: &impl GenericClient, selection: &RepriceSelection) -> Result<RepricePlan, ReadError> {
    let records = priced_records(client, selection).await?;
    let keys = crate::domain::price::candidate_keys(
        records.iter().map(|r| (r.record.provider.as_str(), r.record.model.as_str())),
    );
    let versions = crate::store::prices::versions_for(client, &keys).await?;
    let mut plan = RepricePlan { corrections: Vec::new(), unpriced: StillUnpriced::default() };
    for r in &records {
        match crate::decide::reprice(r, &versions) {
            Some(correction) => plan.corrections.push((correction, r.stream_version + 1)),
            None if r.cost_source == CostSource::Unpriced => {
                plan.unpriced.records += 1;
                let first = plan.unpriced.first_occurred_at.get_or_insert(r.record.occurred_at);
                *first = (*first).min(r.record.occurred_at);
            }
            None => {}
        }
    }
    Ok(plan)
}
