//! `usage_rollups`: usage per UTC hour x provider x model x component x task_type x user, and its
//! queries.
//!
//! Hourly rows are small enough to fold any calendar period from (day, ISO week, month) with
//! `date_trunc`, and fine enough that windows need not be re-read from the log.

use std::collections::{BTreeMap, HashMap};

use budget_events::event::Event;
use budget_events::period::Period;
use budget_events::RecordedEvent;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::GenericClient;

use crate::projection::{execute, Projection, ProjectionError};

pub struct UsageRollups;

type Key = (DateTime<Utc>, String, String, String, String, String);

impl Projection for UsageRollups {
    const NAME: &'static str = "usage_rollups";
    const TABLES: &'static [&'static str] = &["usage_rollups"];

    async fn apply(&self, tx: &Transaction<'_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        // Fold the batch in memory first: one upsert per touched row, not per event.
        let mut rows: HashMap<Key, Totals> = HashMap::new();
        for recorded in events {
            match &recorded.event {
                Event::UsageRecorded(u) => {
                    rows.entry(key(u.occurred_at, [&u.provider, &u.model, &u.component, &u.task_type], &u.user_id))
                        .or_default()
                        .add(u.input_tokens, u.output_tokens, u.cost.amount(), 1);
                }
                // A correction moves the cost of the row its record was counted in; the record itself
                // was applied earlier in the log, so the row exists.
                Event::UsageRepriced(c) => {
                    let k = key(c.occurred_at, [&c.provider, &c.model, &c.component, &c.task_type], &c.user_id);
                    rows.entry(k).or_default().add(0, 0, c.delta, 0);
                }
                _ => {}
            }
        }
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len();
        let (mut hours, mut providers, mut models) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut components, mut task_types, mut users) =
            (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut input, mut output) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut cost, mut count) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for ((hour, provider, model, component, task_type, user), t) in rows {
            hours.push(hour);
            providers.push(provider);
            models.push(model);
            components.push(component);
            task_types.push(task_type);
            users.push(user);
            input.push(t.input_tokens);
            output.push(t.output_tokens);
            cost.push(t.cost);
            count.push(t.count);
        }
        let params: [&(dyn ToSql + Sync); 10] =
            [&hours, &providers, &models, &components, &task_types, &input, &output, &cost, &count, &users];
        // Rows with new records are upserted; rows touched only by corrections (their records were
        // applied in an earlier batch) are updated, since a row of zero records would break its checks.
        execute(
            tx,
            "INSERT INTO usage_rollups AS r (hour, provider, model, component, task_type, input_tokens, output_tokens, cost, count, user_id)
             SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::bigint[], $7::bigint[], $8::numeric[], $9::bigint[], $10::text[]) AS k(h, p, m, c, t, i, o, x, n, u)
             WHERE k.n > 0
             ON CONFLICT (hour, provider, model, component, task_type, user_id) DO UPDATE SET
                 input_tokens = r.input_tokens + EXCLUDED.input_tokens,
                 output_tokens = r.output_tokens + EXCLUDED.output_tokens,
                 cost = r.cost + EXCLUDED.cost,
                 count = r.count + EXCLUDED.count",
            &params,
        )
        .await?;
        let corrected = execute(
                tx,
                "UPDATE usage_rollups r SET cost = r.cost + k.x
                 FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::bigint[], $7::bigint[], $8::numeric[], $9::bigint[], $10::text[]) AS k(h, p, m, c, t, i, o, x, n, u)
                 WHERE k.n = 0 AND r.hour = k.h AND r.provider = k.p AND r.model = k.m AND r.component = k.c
                   AND r.task_type = k.t AND r.user_id = k.u",
                &params,
            )
            .await?;
        let only_corrections = count.iter().filter(|n| **n == 0).count();
        assert_eq!(corrected as usize, only_corrections, "a correction's record was counted before it");
        Ok(())
    }
}

/// The row a record counts in: its UTC hour, its provider, model, component and task type, and its
/// user (`''` for none).
fn key(
    at: DateTime<Utc>,
    [provider, model, component, task_type]: [&dyn std::fmt::Display; 4],
    user: &Option<budget_events::domain::UserId>,
) -> Key {
    (
        Period::Hourly.start_of(at),
        provider.to_string(),
        model.to_string(),
        component.to_string(),
        task_type.to_string(),
        user.as_ref().map(ToString::to_string).unwrap_or_default(),
    )
}

/// Token, cost and record sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub input_tokens: i64,
    pub output_tokens: i64,
    #[serde(serialize_with = "budget_events::money::decimal_json::serialize")]
    pub cost: Decimal,
    pub count: i64,
}

impl Totals {
    fn add(&mut self, input: i64, output: i64, cost: Decimal, count: i64) {
        self.input_tokens += input;
        self.output_tokens += output;
        self.cost += cost;
        self.count += count;
    }

    pub fn total_tokens(&self) -> i64 {
        self.input_tokens + self.output_tokens
    }

    /// The sums a query selected with [`SUMS`].
    fn from_row(row: &tokio_postgres::Row) -> Totals {
        Totals {
            input_tokens: row.get("input_tokens"),
            output_tokens: row.get("output_tokens"),
            cost: row.get("cost"),
            count: row.get("count"),
        }
    }
}

/// The dimensions usage can be grouped by (`user`: records without one are grouped under `""`).
pub const DIMENSIONS: [&str; 5] = ["provider", "model", "component", "task_type", "user"];

/// The rollup column a dimension is stored in (`user` is a reserved word in SQL).
fn column(dimension: &str) -> &'static str {
    match dimension {
        "provider" => "provider",
        "model" => "model",
        "component" => "component",
        "task_type" => "task_type",
        "user" => "user_id",
        other => panic!("`{other}` is not a dimension; callers validate them against DIMENSIONS"),
    }
}

/// Which usage to sum: `[start, end)` on hour boundaries, and optional equality filters.
#[derive(Debug, Clone, Default)]
pub struct UsageFilter {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub component: Option<String>,
    pub task_type: Option<String>,
    pub user: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    #[serde(flatten)]
    pub totals: Totals,
}

/// Totals, one bucket per period, and per-dimension groups (dimension -> name -> totals).
#[derive(Debug, Clone, Default)]
pub struct UsageReport {
    pub totals: Totals,
    pub series: Vec<Bucket>,
    pub groups: BTreeMap<String, BTreeMap<String, Totals>>,
}

const SUMS: &str = "sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens, \
                    sum(cost) AS cost, sum(count)::bigint AS count";

fn where_clause(filter: &UsageFilter) -> (String, Vec<Box<dyn ToSql + Sync + Send>>) {
    let mut conditions = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    if let Some(start) = filter.start {
        params.push(Box::new(start));
        conditions.push(format!("hour >= ${}", params.len()));
    }
    if let Some(end) = filter.end {
        params.push(Box::new(end));
        conditions.push(format!("hour < ${}", params.len()));
    }
    if let Some(model) = &filter.model {
        params.push(Box::new(model.clone()));
        conditions.push(budget_events::domain::price::is_model_sql("provider", "model", &format!("${}", params.len())));
    }
    for (column, value) in [
        ("provider", &filter.provider),
        ("component", &filter.component),
        ("task_type", &filter.task_type),
        ("user_id", &filter.user),
    ] {
        if let Some(v) = value {
            params.push(Box::new(v.clone()));
            conditions.push(format!("{column} = ${}", params.len()));
        }
    }
    let clause = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    (clause, params)
}

/// The hour of the earliest usage recorded, if any (the primary key leads with the hour, so this is
/// one index probe).
pub async fn first_hour(client: &impl GenericClient) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    Ok(client.query_one("SELECT min(hour) FROM usage_rollups", &[]).await?.get(0))
}

/// The providers usage since `since` names (rollups are hourly sums, so this reads a few rows an hour).
pub async fn providers_since(
    client: &impl GenericClient,
    since: DateTime<Utc>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let rows = client.query("SELECT DISTINCT provider FROM usage_rollups WHERE hour >= $1", &[&since]).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Sums usage for `filter`, bucketed by `period`, grouped by each of `group_by` (names from
/// [`DIMENSIONS`]; callers validate them).
pub async fn report(
    client: &impl GenericClient,
    filter: &UsageFilter,
    period: Period,
    group_by: &[&str],
) -> Result<UsageReport, tokio_postgres::Error> {
    let (clause, params) = where_clause(filter);
    let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let mut report = UsageReport::default();

    let series = client
        .query(
            &format!(
                "SELECT date_trunc('{}', hour, 'UTC') AS start, {SUMS} FROM usage_rollups {clause} GROUP BY 1 ORDER BY 1",
                period.unit()
            ),
            &params,
        )
        .await?;
    for row in &series {
        let totals = Totals::from_row(row);
        report.totals.add(totals.input_tokens, totals.output_tokens, totals.cost, totals.count);
        report.series.push(Bucket { start: row.get("start"), totals });
    }

    let dims: Vec<&str> = group_by.iter().copied().filter(|d| DIMENSIONS.contains(d)).collect();
    if !dims.is_empty() {
        // One pass over the rows for every dimension: GROUPING SETS, one set per dimension.
        let sets = dims.iter().map(|d| format!("({})", column(d))).collect::<Vec<_>>().join(", ");
        let name = format!("COALESCE({})", dims.iter().map(|d| column(d)).collect::<Vec<_>>().join(", "));
        let which =
            dims.iter().map(|d| format!("WHEN GROUPING({}) = 0 THEN '{d}'", column(d))).collect::<Vec<_>>().join(" ");
        let rows = client
            .query(
                &format!(
                    "SELECT CASE {which} END AS dimension, {name} AS name, {SUMS} FROM usage_rollups {clause} GROUP BY GROUPING SETS ({sets})"
                ),
                &params,
            )
            .await?;
        for d in &dims {
            report.groups.insert(d.to_string(), BTreeMap::new());
        }
        for row in rows {
            let dim: String = row.get("dimension");
            let name: String = row.get("name");
            report.groups.entry(dim).or_default().insert(name, Totals::from_row(&row));
        }
    }
    Ok(report)
}

/// Each period's usage split by one dimension (`split_by`, a name from [`DIMENSIONS`]; callers
/// validate it): (period start, name, totals), oldest first. The dashboard stacks its chart with it.
pub async fn split_series(
    client: &impl GenericClient,
    filter: &UsageFilter,
    period: Period,
    split_by: &str,
) -> Result<Vec<(DateTime<Utc>, String, Totals)>, tokio_postgres::Error> {
    assert!(DIMENSIONS.contains(&split_by), "split_by is validated by the caller");
    let (clause, params) = where_clause(filter);
    let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let rows = client
        .query(
            &format!(
                "SELECT date_trunc('{}', hour, 'UTC') AS start, {} AS name, {SUMS} FROM usage_rollups {clause}
                 GROUP BY 1, 2 ORDER BY 1, 2",
                period.unit(),
                column(split_by)
            ),
            &params,
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get("start"), r.get("name"), Totals::from_row(r))).collect())
}

/// Usage per provider × model × component × task type for `filter`: the real token mix of each, for
/// the assistant's model substitutions.
pub async fn mix(
    client: &impl GenericClient,
    filter: &UsageFilter,
) -> Result<Vec<(String, String, String, String, Totals)>, tokio_postgres::Error> {
    let (clause, params) = where_clause(filter);
    let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let rows = client
        .query(
            &format!(
                "SELECT provider, model, component, task_type, {SUMS} FROM usage_rollups {clause}
                 GROUP BY 1, 2, 3, 4 ORDER BY sum(cost) DESC, 1, 2, 3, 4"
            ),
            &params,
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| (r.get("provider"), r.get("model"), r.get("component"), r.get("task_type"), Totals::from_row(r)))
        .collect())
}
