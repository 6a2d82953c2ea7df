//! The models the assistant (`recommend`, `optimize`) and a soft limit's alternatives choose among.
//!
//! The price book prices more than a deployment can call: retired models, which records still name,
//! and, once LiteLLM's file is imported, some 3,800 entries of a hundred hosts. Ranked by price, those
//! put resellers' 1B-3B models first for code, on hosts the deployment has no account with. So an
//! imported price is offered only for a provider the deployment uses: one it prices itself (the
//! bundled table, a hand-set price) or one its calls of the last 90 days name.

use std::collections::BTreeSet;

use budget_events::domain::price::PriceVersion;
use budget_events::store::prices;
use budget_projections::usage_rollups;
use chrono::{DateTime, Duration, Utc};

use crate::error::ApiError;
use crate::scope_notes::SEEN_DAYS;

/// The prices in effect at `at` that may be offered to a call.
pub async fn offers(
    client: &impl tokio_postgres::GenericClient,
    at: DateTime<Utc>,
) -> Result<Vec<PriceVersion>, ApiError> {
    let in_effect = crate::price_book::callable(prices::in_effect(client, at).await?, at);
    let mut used: BTreeSet<String> =
        in_effect.iter().filter(|v| !v.source.imported()).map(|v| v.spec.provider.clone()).collect();
    // Only a price book with imported prices of other providers needs the log's word.
    if in_effect.iter().any(|v| !used.contains(&v.spec.provider)) {
        used.extend(usage_rollups::providers_since(client, at - Duration::days(SEEN_DAYS)).await?);
    }
    Ok(in_effect.into_iter().filter(|v| !v.source.imported() || used.contains(&v.spec.provider)).collect())
}
