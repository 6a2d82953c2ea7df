//! What PostgreSQL does alone on the same server, measured in the same run: the ceilings the
//! service's figures are divided by. Both write rows shaped like the event log's (`LIKE events`, its
//! indexes included, with a payload of a usage record's size as the column's type), with the server's own durability
//! settings. Each is measured in turns with the phase it is the ceiling of (`TURNS` in lib.rs): the
//! turns add their rows to one table, as one run would.

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

/// Rows a ceiling wrote, how long that took, and each statement's latency (none for the bulk insert).
/// Turns of one ceiling add up ([`Ceiling::add`]).
#[derive(Debug, Default)]
pub struct Ceiling {
    pub rows: usize,
    pub seconds: f64,
    pub latencies: Latencies,
}

impl Ceiling {
    pub fn add(&mut self, turn: Ceiling) {
        self.rows += turn.rows;
        self.seconds += turn.seconds;
        self.latencies.extend(turn.latencies);
    }

    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rows as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// `clients` connections each inserting one row per transaction until `rows` are in, after the
/// `earlier` rows of the turns before (none: into a fresh table), so that turns meet the indexes the
/// one run they replace would have met.
pub async fn one_row_inserts(pool: &Pool, clients: usize, rows: usize, earlier: usize) -> anyhow::Result<Ceiling> {
    if earlier == 0 {
        prepare(pool, "bench_ceiling_rows").await?;
    }
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
    let mut latencies = Latencies::default();
    for t in tasks {
        latencies.extend(t.await??);
    }
    Ok(Ceiling { rows, seconds: start.elapsed().as_secs_f64(), latencies })
}

/// One `INSERT … SELECT` of `rows` event-shaped rows in one transaction, after the `earlier` rows of
/// the turns before (none: into a fresh table).
pub async fn insert_select(pool: &Pool, rows: usize, earlier: usize) -> anyhow::Result<Ceiling> {
    if earlier == 0 {
        prepare(pool, "bench_ceiling_bulk").await?;
    }
    let client = pool.get().await?;
    let start = Instant::now();
    client
        .execute(
            "INSERT INTO bench_ceiling_bulk (stream_id, stream_version, event_id, event_type, schema_version, payload)
             SELECT 'usage-' || g, 1, gen_random_uuid(), 'UsageRecorded', 1, $2::text::json
             FROM generate_series($3::bigint + 1, $3::bigint + $1::bigint) g",
            &[&(rows as i64), &PAYLOAD, &(earlier as i64)],
        )
        .await?;
    Ok(Ceiling { rows, seconds: start.elapsed().as_secs_f64(), latencies: Latencies::default() })
}

/// Drops the ceilings' tables.
pub async fn clean(pool: &Pool) -> anyhow::Result<()> {
    pool.get().await?.batch_execute("DROP TABLE IF EXISTS bench_ceiling_rows, bench_ceiling_bulk").await?;
    Ok(())
}
