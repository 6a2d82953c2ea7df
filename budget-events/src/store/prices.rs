//! Price-book rows: each version with the span it is in effect for, kept in step with `PriceSet` events.

use crate::db::WriteTx;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::{GenericClient, Row};

use crate::domain::price::{PriceSource, PriceSpec, PriceVersion};
use crate::event::PriceSet;
use crate::Money;

const COLUMNS: &str =
    "version_id, provider, model, input_per_token, output_per_token, cached_input_per_token, per_request,
    effective_from, effective_to, source, context_window, capabilities, cache_creation_per_token, tiers,
    reasoning_per_token, retires_on";

fn from_row(r: &Row) -> PriceVersion {
    PriceVersion {
        version_id: r.get("version_id"),
        spec: PriceSpec {
            provider: r.get("provider"),
            model: r.get("model"),
            input_per_token: r.get::<_, Decimal>("input_per_token").normalize(),
            output_per_token: r.get::<_, Decimal>("output_per_token").normalize(),
            cached_input_per_token: r.get::<_, Option<Decimal>>(5).map(|d| d.normalize()),
            cache_creation_per_token: r.get::<_, Option<Decimal>>("cache_creation_per_token").map(|d| d.normalize()),
            reasoning_per_token: r.get::<_, Option<Decimal>>("reasoning_per_token").map(|d| d.normalize()),
            tiers: serde_json::from_value(r.get("tiers")).expect("tiers are written by us"),
            per_request: r.get::<_, Option<Decimal>>(6).map(|d| Money::new(d).expect("checked by the table")),
            context_window: r.get("context_window"),
            capabilities: serde_json::from_value(r.get("capabilities")).unwrap_or_default(),
            retires_on: r.get("retires_on"),
        },
        effective_from: r.get("effective_from"),
        effective_to: r.get("effective_to"),
        source: PriceSource::parse(r.get("source")).expect("checked by the table"),
    }
}

/// (provider, model) pairs as the two arrays the query unnests.
fn key_columns(keys: &[(String, String)]) -> (Vec<&str>, Vec<&str>) {
    keys.iter().map(|(p, m)| (p.as_str(), m.as_str())).unzip()
}

fn versions_sql() -> String {
    format!(
        "SELECT {COLUMNS} FROM prices p JOIN unnest($1::text[], $2::text[]) AS k(pr, mo)
         ON p.provider = k.pr AND p.model = k.mo ORDER BY effective_from"
    )
}

/// Every version of the given (provider, model) pairs.
pub async fn versions_for(
    client: &impl GenericClient,
    keys: &[(String, String)],
) -> Result<Vec<PriceVersion>, tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (providers, models) = key_columns(keys);
    let rows = client.query(&versions_sql(), &[&providers, &models]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// [`versions_for`] in the write path's transaction, as a statement prepared once per connection.
pub async fn versions_for_in(
    tx: &WriteTx,
    keys: &[(String, String)],
) -> Result<Vec<PriceVersion>, tokio_postgres::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (providers, models) = key_columns(keys);
    let rows = tx.query(&tx.prepare_cached(&versions_sql()).await?, &[&providers, &models]).await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Every version one model's name could resolve to (exact, provider-stripped, undated base), for
/// [`crate::domain::price::resolve`] and [`crate::decide::quote`].
pub async fn versions_for_model(
    client: &impl GenericClient,
    provider: &str,
    model: &str,
) -> Result<Vec<PriceVersion>, tokio_postgres::Error> {
    versions_for(client, &crate::domain::price::candidate_keys([(provider, model)])).await
}

/// The providers whose price book prices a call of `model` at `at`, in name order: those that have the
/// name itself, else those that have the model it is a dated snapshot of (`gpt-4o-2024-08-06` is
/// gpt-4o's), else, for a `provider/model` name, that provider if it has the model. So a reservation
/// or a gateway call that names a snapshot finds its provider as a limit on the model counts it.
pub async fn providers_of(
    client: &impl GenericClient,
    model: &str,
    at: DateTime<Utc>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    // (provider the name is restricted to, name), in the order they are tried.
    let mut names: Vec<(Option<&str>, &str)> = vec![(None, model)];
    names.extend(crate::domain::price::undated(model).map(|base| (None, base)));
    if let Some((provider, rest)) = model.split_once('/') {
        names.push((Some(provider), rest));
        names.extend(crate::domain::price::undated(rest).map(|base| (Some(provider), base)));
    }
    let wanted: Vec<&str> = names.iter().map(|(_, name)| *name).collect();
    let rows = client
        .query(
            "SELECT DISTINCT provider, model FROM prices
             WHERE model = ANY($1) AND effective_from <= $2 AND (effective_to IS NULL OR $2 < effective_to)
             ORDER BY provider",
            &[&wanted, &at],
        )
        .await?;
    for (only, name) in names {
        let providers: Vec<String> = rows
            .iter()
            .filter(|r| r.get::<_, &str>("model") == name && only.is_none_or(|p| r.get::<_, &str>("provider") == p))
            .map(|r| r.get("provider"))
            .collect();
        if !providers.is_empty() {
            return Ok(providers);
        }
    }
    Ok(Vec::new())
}

/// The versions in effect at `at`, by provider and model.
pub async fn in_effect(
    client: &impl GenericClient,
    at: DateTime<Utc>,
) -> Result<Vec<PriceVersion>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM prices WHERE effective_from <= $1 AND (effective_to IS NULL OR effective_to > $1)
                 ORDER BY provider, model"
            ),
            &[&at],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Every version of one model, oldest first.
pub async fn history(
    client: &impl GenericClient,
    provider: &str,
    model: &str,
) -> Result<Vec<PriceVersion>, tokio_postgres::Error> {
    let rows = client
        .query(
            &format!("SELECT {COLUMNS} FROM prices WHERE provider = $1 AND model = $2 ORDER BY effective_from"),
            &[&provider, &model],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Inserts a version into its model's chain: the version before it now ends where it starts, and it
/// ends where the next one (if any) starts. Nothing else changes.
pub async fn insert(tx: &WriteTx, p: &PriceSet) -> Result<(), tokio_postgres::Error> {
    let (provider, model) = (&p.spec.provider, &p.spec.model);
    let next: Option<DateTime<Utc>> = tx
        .query_opt(
            &tx.prepare_cached(
                "SELECT min(effective_from) FROM prices WHERE provider = $1 AND model = $2 AND effective_from > $3",
            )
            .await?,
            &[provider, model, &p.effective_from],
        )
        .await?
        .and_then(|r| r.get(0));
    tx.execute(
        &tx.prepare_cached(
            "UPDATE prices SET effective_to = $3 WHERE provider = $1 AND model = $2 AND effective_from < $3
           AND (effective_to IS NULL OR effective_to > $3)",
        )
        .await?,
        &[provider, model, &p.effective_from],
    )
    .await?;
    tx.execute(
        &tx.prepare_cached(&format!(
            "INSERT INTO prices ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .await?,
        &[
            &p.version_id,
            provider,
            model,
            &p.spec.input_per_token,
            &p.spec.output_per_token,
            &p.spec.cached_input_per_token,
            &p.spec.per_request.map(Money::amount),
            &p.effective_from,
            &next,
            &p.source.as_str(),
            &p.spec.context_window,
            &serde_json::to_value(&p.spec.capabilities).expect("strings serialize"),
            &p.spec.cache_creation_per_token,
            &serde_json::to_value(&p.spec.tiers).expect("tiers serialize"),
            &p.spec.reasoning_per_token,
            &p.spec.retires_on,
        ],
    )
    .await?;
    Ok(())
}
