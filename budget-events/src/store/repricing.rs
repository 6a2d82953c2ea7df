//! The usage records a re-price may correct, each with the cost it carries now (its own event folded
//! with the corrections already appended to it).
//!
//! Usage records live only in the log, so this reads the log: re-pricing is an occasional correction,
//! not a hot path, and reading the events themselves means no second copy of a record's cost can drift.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
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

/// The corrections a re-price of `selection` makes now, each with the stream version it appends at.
/// Used by the write path (inside its transaction) and, unchanged, by a dry run.
pub async fn plan(
    client: &impl GenericClient,
    selection: &RepriceSelection,
) -> Result<Vec<(crate::event::UsageRepriced, i64)>, ReadError> {
    let records = priced_records(client, selection).await?;
    let keys = crate::domain::price::candidate_keys(
        records.iter().map(|r| (r.record.provider.as_str(), r.record.model.as_str())),
    );
    let versions = crate::store::prices::versions_for(client, &keys).await?;
    Ok(records.iter().filter_map(|r| crate::decide::reprice(r, &versions).map(|c| (c, r.stream_version + 1))).collect())
}
