//! What PostgreSQL does alone on the same server, measured in the same run: the ceilings the
//! service's figures are divided by. Both write rows shaped like the event log's (`LIKE events`, its
//! indexes included, with a payload of a usage record's size as the column's type), with the server's own durability
//! settings.

use std::sync::Arc;
use std::time::Instant;

use deadpool_postgres::Pool;

use crate::stats::Latencies;

/// A usage record's payload, about the size the service writes.
const PAYLOAD: &str = r#"{"provider":"openai","model":"gpt-4o","component":"bench","task_type":"default","input_tokens":1200,"output_tokens":340,"cost":0.0064,"cost_source":"price_book","occurred_at":"2026-11-30T12:00:00Z","tier":"remote_heavyweight","postings":[{"policy_id":"01a22e01-7a4f-7404-b94a-1b6c8619146d","window":"2026-11-30T00:00:00Z"}],"exceeded":[],"cached_input_tokens":0}"#;

async fn prepare(pool: &Pool, table: &str) -> anyhow::Result<()> {
    pool.get()
        .await?
        .batch_execute(&format!("DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (LIKE events INCLUDING ALL)"))
        .await?;
    Ok(())
}

/// `clients` connections each inserting one row per transaction until `rows` are in: rows per second
/// and each insert's latency.
pub async fn one_row_inserts(pool: &Pool, clients: usize, rows: usize) -> anyhow::Result<(f64, Latencies)> {
    prepare(pool, "bench_ceiling_rows").await?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (pool, next) = (pool.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let client = pool.get().await?;
            let insert = client
                .prepare(
                    "INSERT INTO bench_ceiling_rows (stream_id, stream_version, event_id, event_type, schema_version, payload)
                     VALUES ($1, 1, $2, 'UsageRecorded', 1, $3::text::json)",
                )
                .await?;
            let mut latencies = Latencies::default();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < rows {
                let id = uuid::Uuid::now_v7();
                let t = Instant::now();
                client.execute(&insert, &[&format!("usage-{id}"), &id, &PAYLOAD]).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Latencies::default();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((rows as f64 / start.elapsed().as_secs_f64(), all))
}

/// One `INSERT … SELECT` of `rows` event-shaped rows in one transaction: rows per second.
pub async fn insert_select(pool: &Pool, rows: i64) -> anyhow::Result<f64> {
    prepare(pool, "bench_ceiling_bulk").await?;
    let client = pool.get().await?;
    let start = Instant::now();
    client
        .execute(
            "INSERT INTO bench_ceiling_bulk (stream_id, stream_version, event_id, event_type, schema_version, payload)
             SELECT 'usage-' || g, 1, gen_random_uuid(), 'UsageRecorded', 1, $2::text::json
             FROM generate_series(1, $1::bigint) g",
            &[&rows, &PAYLOAD],
        )
        .await?;
    Ok(rows as f64 / start.elapsed().as_secs_f64())
}

/// Drops the ceilings' tables.
pub async fn clean(pool: &Pool) -> anyhow::Result<()> {
    pool.get().await?.batch_execute("DROP TABLE IF EXISTS bench_ceiling_rows, bench_ceiling_bulk").await?;
    Ok(())
}
