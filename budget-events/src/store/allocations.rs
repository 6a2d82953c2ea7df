//! Allocation rows: locked by the write path while it decides, written back with their new state.

use std::collections::HashMap;

use crate::db::WriteTx;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::domain::allocation::{Allocation, AllocationState};

const COLUMNS: &str =
    "allocation_id, context_id, component, tier, provider, model, task_type, priority, tokens_allocated,
    estimated_cost, expires_at, state, input_tokens_used, output_tokens_used, actual_cost, remaining_tokens,
    remaining_cost, reservations, created_at, resolved_at, user_id, task_type_open, tier_open";

fn from_row(r: &Row) -> Allocation {
    Allocation {
        allocation_id: r.get("allocation_id"),
        context_id: r.get("context_id"),
        component: r.get("component"),
        tier: r.get::<_, String>("tier").parse().expect("tiers are written by us"),
        provider: r.get("provider"),
        model: r.get("model"),
        task_type: r.get("task_type"),
        priority: r.get("priority"),
        tokens_allocated: r.get("tokens_allocated"),
        estimated_cost: r.get("estimated_cost"),
        expires_at: r.get("expires_at"),
        state: AllocationState::parse(r.get("state")).expect("checked by the table"),
        input_tokens_used: r.get("input_tokens_used"),
        output_tokens_used: r.get("output_tokens_used"),
        actual_cost: r.get("actual_cost"),
        remaining_tokens: r.get("remaining_tokens"),
        remaining_cost: r.get("remaining_cost"),
        reservations: serde_json::from_value(r.get("reservations")).expect("reservations are written by us"),
        user_id: r.get("user_id"),
        task_type_open: r.get("task_type_open"),
        tier_open: r.get("tier_open"),
        created_at: r.get("created_at"),
        resolved_at: r.get("resolved_at"),
    }
}

/// Locks the named allocations (in id order) and returns those that exist.
pub async fn lock(tx: &WriteTx, ids: &[Uuid]) -> Result<HashMap<Uuid, Allocation>, tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = tx
        .query(
            &tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM allocations WHERE allocation_id = ANY($1) ORDER BY allocation_id FOR UPDATE"
            ))
            .await?,
            &[&ids],
        )
        .await?;
    Ok(rows.iter().map(from_row).map(|a| (a.allocation_id, a)).collect())
}

/// The active allocations of each (context, component), by id: the candidates for usage that names its
/// context but no allocation. Not locked here: the caller locks them with the named ones, in id order.
pub async fn active_by_context(
    tx: &WriteTx,
    contexts: &[(&str, &str)],
) -> Result<HashMap<(String, String), Vec<Uuid>>, tokio_postgres::Error> {
    if contexts.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<&str> = contexts.iter().map(|c| c.0).collect();
    let components: Vec<&str> = contexts.iter().map(|c| c.1).collect();
    let rows = tx
        .query(
            &tx.prepare_cached(
                "SELECT DISTINCT a.context_id, a.component, a.allocation_id FROM allocations a
             JOIN unnest($1::text[], $2::text[]) AS k(c, m) ON a.context_id = k.c AND a.component = k.m
             WHERE a.state = 'active'",
            )
            .await?,
            &[&ids, &components],
        )
        .await?;
    let mut found: HashMap<(String, String), Vec<Uuid>> = HashMap::new();
    for r in &rows {
        found.entry((r.get("context_id"), r.get("component"))).or_default().push(r.get("allocation_id"));
    }
    Ok(found)
}

/// Active allocations past their expiry, locked; ones another writer holds are skipped (it, or the next
/// sweep, deals with them), so two sweepers never expire one allocation twice.
/// The active allocations created at or after `since`, locked (in id order).
pub async fn lock_active_since(tx: &WriteTx, since: DateTime<Utc>) -> Result<Vec<Allocation>, tokio_postgres::Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM allocations WHERE state = 'active' AND created_at >= $1
                 ORDER BY allocation_id FOR UPDATE"
            ))
            .await?,
            &[&since],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

pub async fn lock_due(tx: &WriteTx, now: DateTime<Utc>, limit: i64) -> Result<Vec<Allocation>, tokio_postgres::Error> {
    let rows = tx
        .query(
            &tx.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM allocations WHERE state = 'active' AND expires_at <= $1
                 ORDER BY allocation_id LIMIT $2 FOR UPDATE SKIP LOCKED"
            ))
            .await?,
            &[&now, &limit],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

/// Inserts or updates allocations as the write path left them: one statement per allocation, sent
/// together (tokio-postgres pipelines them), so a batch that touches many waits for one round trip.
pub async fn save(tx: &WriteTx, allocations: &[&Allocation]) -> Result<(), tokio_postgres::Error> {
    if allocations.is_empty() {
        return Ok(());
    }
    // One statement for the batch's allocations, not one each: under 64 clients reserving, 7,892
    // single-row upserts in one `budget bench` phase, each parsed, bound and run on its own, made a
    // reservation batch a third slower than a usage batch of the same size.
    let statement = tx.prepare_cached("INSERT INTO allocations (allocation_id, context_id, component, tier, provider, model, task_type, priority,
                 tokens_allocated, estimated_cost, expires_at, state, input_tokens_used, output_tokens_used, actual_cost,
                 remaining_tokens, remaining_cost, reservations, created_at, resolved_at, user_id, task_type_open, tier_open)
             SELECT a, ctx, comp, tier, prov, model, task, prio, tok, est, exp, st, inp, outp, act, rt, rc, res::jsonb, cr, rs, usr,
                 tto, tio
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::smallint[],
                         $9::bigint[], $10::numeric[], $11::timestamptz[], $12::text[], $13::bigint[], $14::bigint[],
                         $15::numeric[], $16::bigint[], $17::numeric[], $18::text[], $19::timestamptz[], $20::timestamptz[],
                         $21::text[], $22::bool[], $23::bool[])
                 AS t(a, ctx, comp, tier, prov, model, task, prio, tok, est, exp, st, inp, outp, act, rt, rc, res, cr, rs, usr,
                      tto, tio)
             ON CONFLICT (allocation_id) DO UPDATE SET state = EXCLUDED.state,
                 input_tokens_used = EXCLUDED.input_tokens_used, output_tokens_used = EXCLUDED.output_tokens_used,
                 actual_cost = EXCLUDED.actual_cost, remaining_tokens = EXCLUDED.remaining_tokens,
                 remaining_cost = EXCLUDED.remaining_cost, reservations = EXCLUDED.reservations,
                 resolved_at = EXCLUDED.resolved_at").await?;
    for a in allocations {
        a.check_invariants();
    }
    fn column<'a, T>(all: &[&'a Allocation], f: impl Fn(&'a Allocation) -> T) -> Vec<T> {
        all.iter().map(|a| f(a)).collect()
    }
    let ids: Vec<Uuid> = column(allocations, |a| a.allocation_id);
    let contexts: Vec<&str> = column(allocations, |a| a.context_id.as_str());
    let components: Vec<&str> = column(allocations, |a| a.component.as_str());
    let tiers: Vec<&str> = column(allocations, |a| a.tier.as_str());
    let providers: Vec<Option<&str>> = column(allocations, |a| a.provider.as_deref());
    let models: Vec<Option<&str>> = column(allocations, |a| a.model.as_deref());
    let task_types: Vec<&str> = column(allocations, |a| a.task_type.as_str());
    let priorities: Vec<i16> = column(allocations, |a| a.priority);
    let allocated: Vec<i64> = column(allocations, |a| a.tokens_allocated);
    let estimated: Vec<Decimal> = column(allocations, |a| a.estimated_cost);
    let expires: Vec<DateTime<Utc>> = column(allocations, |a| a.expires_at);
    let states: Vec<&str> = column(allocations, |a| a.state.as_str());
    let input_used: Vec<i64> = column(allocations, |a| a.input_tokens_used);
    let output_used: Vec<i64> = column(allocations, |a| a.output_tokens_used);
    let actual: Vec<Decimal> = column(allocations, |a| a.actual_cost);
    let remaining_tokens: Vec<i64> = column(allocations, |a| a.remaining_tokens);
    let remaining_cost: Vec<Decimal> = column(allocations, |a| a.remaining_cost);
    let reservations: Vec<String> =
        column(allocations, |a| serde_json::to_string(&a.reservations).expect("postings serialize"));
    let created: Vec<DateTime<Utc>> = column(allocations, |a| a.created_at);
    let resolved: Vec<Option<DateTime<Utc>>> = column(allocations, |a| a.resolved_at);
    let users: Vec<Option<&str>> = column(allocations, |a| a.user_id.as_deref());
    let task_type_open: Vec<bool> = column(allocations, |a| a.task_type_open);
    let tier_open: Vec<bool> = column(allocations, |a| a.tier_open);
    tx.execute(
        &statement,
        &[
            &ids,
            &contexts,
            &components,
            &tiers,
            &providers,
            &models,
            &task_types,
            &priorities,
            &allocated,
            &estimated,
            &expires,
            &states,
            &input_used,
            &output_used,
            &actual,
            &remaining_tokens,
            &remaining_cost,
            &reservations,
            &created,
            &resolved,
            &users,
            &task_type_open,
            &tier_open,
        ],
    )
    .await?;
    Ok(())
}

/// Which allocations to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AllocationFilter {
    pub context_id: Option<String>,
    pub component: Option<String>,
    pub tier: Option<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    /// None: active only.
    pub states: Option<Vec<String>>,
    pub limit: i64,
    pub offset: i64,
}

pub async fn list(client: &impl GenericClient, f: &AllocationFilter) -> Result<Vec<Allocation>, tokio_postgres::Error> {
    let states = f.states.clone().unwrap_or_else(|| vec!["active".to_string()]);
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM allocations
                 WHERE state = ANY($1)
                   AND ($2::text IS NULL OR context_id = $2) AND ($3::text IS NULL OR component = $3)
                   AND ($4::text IS NULL OR tier = $4) AND ($5::text IS NULL OR provider = $5)
                   AND ($6::text IS NULL OR {model})
                 ORDER BY created_at DESC, allocation_id DESC LIMIT $7 OFFSET $8",
                model = crate::domain::price::is_model_sql("provider", "model", "$6")
            ),
            &[&states, &f.context_id, &f.component, &f.tier, &f.provider, &f.model, &f.limit, &f.offset],
        )
        .await?;
    Ok(rows.iter().map(from_row).collect())
}

pub async fn get(client: &impl GenericClient, id: Uuid) -> Result<Option<Allocation>, tokio_postgres::Error> {
    let row = client.query_opt(&format!("SELECT {COLUMNS} FROM allocations WHERE allocation_id = $1"), &[&id]).await?;
    Ok(row.as_ref().map(from_row))
}
