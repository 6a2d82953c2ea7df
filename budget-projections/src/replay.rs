//! Replay: fold the log from the start into fresh tables, compare them with the live ones row by row,
//! and optionally swap them in.
//!
//! The fresh tables are temporary tables named like the live ones: a session's temporary schema comes
//! first in PostgreSQL's search path, so the projection's own `apply`, unchanged, writes into them. The
//! live projection is first brought to the head of the log (its checkpoint held locked meanwhile, so the
//! live runner waits; an event it cannot apply fails the replay), and the fold stops exactly there, so
//! the comparison is like for like and a stuck projection cannot pass; readers of the live tables are never blocked, and a swap replaces their
//! rows in the same transaction, so readers see the old rows or the new ones, never a mix.

use std::time::{Duration, Instant};

use budget_events::store::read::read_raw_after;
use budget_events::store::{read_after, Cursor};
use deadpool_postgres::Pool;
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Transaction;

use crate::projection::{Projection, ProjectionError};
use crate::runner::{apply_or_locate, lock_checkpoint, move_checkpoint, pool_error};

/// Rows listed per table and side (the count is always complete).
const LISTED: i64 = 50;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Progress {
    pub projection: std::borrow::Cow<'static, str>,
    pub events: usize,
    pub total: i64,
    pub events_per_second: f64,
    pub eta_seconds: f64,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TableDifference {
    pub table: String,
    /// Rows the fold of the log has and the live table lacks (or holds differently).
    pub missing_in_live: i64,
    /// Rows the live table has and the fold of the log does not.
    pub unexpected_in_live: i64,
    /// Up to 50 rows of each kind, as JSON.
    pub missing_rows: Vec<Value>,
    pub unexpected_rows: Vec<Value>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ReplayReport {
    pub projection: std::borrow::Cow<'static, str>,
    pub events: usize,
    pub differences: Vec<TableDifference>,
    pub swapped: bool,
    pub seconds: f64,
}

impl ReplayReport {
    pub fn differing_rows(&self) -> i64 {
        self.differences.iter().map(|d| d.missing_in_live + d.unexpected_in_live).sum()
    }
}

/// Replays `projection` from the whole log, compares, and with `swap` replaces the live rows.
pub async fn replay<P: Projection>(
    projection: &P,
    pool: &Pool,
    swap: bool,
    mut progress: impl FnMut(Progress),
) -> Result<ReplayReport, ProjectionError> {
    let started = Instant::now();
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await?;
    let mut live = lock_checkpoint(&tx, P::NAME, false, None).await?.expect("a waiting lock always gets the row");
    // Compare at the head of the log, not wherever the live projection stands: bring it there first, in
    // this transaction, as its runner would. An event it cannot apply fails the replay, named.
    loop {
        let page = read_after(&*tx, live, 2000).await?;
        let Some(last) = page.last() else { break };
        apply_or_locate(projection, &tx, &page).await?;
        let next = Cursor::after(last);
        move_checkpoint(&tx, P::NAME, live, next, page.len(), None).await?;
        live = next;
    }
    let total: i64 =
        tx.query_one("SELECT events_applied FROM projection_checkpoints WHERE name = $1", &[&P::NAME]).await?.get(0);
    for table in P::TABLES.iter().chain(P::SIDE_TABLES) {
        tx.batch_execute(&format!("CREATE TEMPORARY TABLE {table} (LIKE public.{table} INCLUDING ALL) ON COMMIT DROP"))
            .await?;
    }
    // The projection's statements are prepared once per connection, and PostgreSQL keeps the tables
    // they named when they were prepared: a temporary table created since does not redirect them (it
    // only does the first time a session gets a temporary schema). Forget them, so the fold's
    // statements are prepared now and name the temporary tables; and again when the replay ends, however
    // it ends, so that no statement naming those tables goes back to the pool.
    tx.statement_cache.clear();
    let _forget = ForgetStatements(tx.statement_cache.clone());
    // The log up to `live` is read on a second connection while this one applies: the events there
    // are settled (the live projection has applied them), so any connection reads the same ones, and
    // reading and decoding the next page no longer waits for the last one's apply.
    let mut pages = read_ahead(pool.clone(), live);
    let mut events = 0usize;
    while let Some(page) = pages.recv().await {
        // Decoding returns its errors; a panic there is a bug, passed on as it was.
        let upto = page.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        projection.apply(&tx, &upto).await?;
        events += upto.len();
        let rate = events as f64 / started.elapsed().as_secs_f64().max(1e-6);
        progress(Progress {
            projection: P::NAME.into(),
            events,
            total,
            events_per_second: rate,
            eta_seconds: ((total - events as i64).max(0) as f64) / rate,
        });
    }
    let mut differences = Vec::new();
    for table in P::TABLES {
        if let Some(d) = compare::<P>(&tx, table).await? {
            differences.push(d);
        }
    }
    if swap {
        for table in P::TABLES {
            tx.batch_execute(&format!(
                "DELETE FROM public.{table}; INSERT INTO public.{table} SELECT * FROM pg_temp.{table}"
            ))
            .await?;
        }
    }
    tx.commit().await?;
    Ok(ReplayReport {
        projection: P::NAME.into(),
        events,
        differences,
        swapped: swap,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Empties a connection's statement cache when dropped (see [`replay`]).
struct ForgetStatements(std::sync::Arc<deadpool_postgres::StatementCache>);

impl Drop for ForgetStatements {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// Events per page of the replay's reader.
const PAGE: i64 = 2000;
/// How long the replay's reader waits for the log up to the live checkpoint to become readable.
const HELD_BACK: Duration = Duration::from_secs(30);

/// A page being decoded on the blocking pool.
type Decoding = tokio::task::JoinHandle<Result<Vec<budget_events::RecordedEvent>, ProjectionError>>;

/// Pages of the log from the start up to `live` (inclusive), read on a connection of their own, at most
/// two pages ahead of the consumer. Each page is decoded on the blocking pool while the next is read:
/// the replay runs on an actix worker's single thread, where reading, decoding and applying took turns
/// and left a quarter of the machine idle (perf, 700,042 events: 71,500 events/s). An error ends the
/// pages after being sent.
fn read_ahead(pool: Pool, live: Cursor) -> tokio::sync::mpsc::Receiver<Decoding> {
    let (pages, received) = tokio::sync::mpsc::channel::<Decoding>(2);
    let failed = |e: ProjectionError| tokio::spawn(async move { Err(e) });
    tokio::spawn(async move {
        let client = match pool.get().await {
            Ok(c) => c,
            Err(e) => return drop(pages.send(failed(pool_error(e))).await),
        };
        let mut cursor = Cursor::START;
        let mut held_back_since: Option<Instant> = None;
        while cursor < live {
            let mut page = match read_raw_after(&**client, cursor, PAGE).await {
                Ok(page) => page,
                Err(e) => return drop(pages.send(failed(e.into())).await),
            };
            // Exactly up to the live checkpoint.
            page.truncate_after(live);
            let Some(next) = page.next() else {
                // Everything up to `live` is committed, but a transaction of another database on the
                // server can hold this read's horizon back for a moment (before the server reports
                // which database it belongs to): look again rather than end early, which compared an
                // empty fold with the live rows (`opening.rs`, once in a loaded test run).
                let since = *held_back_since.get_or_insert_with(Instant::now);
                if since.elapsed() > HELD_BACK {
                    return drop(pages.send(failed(ProjectionError::LogHeldBack(HELD_BACK.as_secs()))).await);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            held_back_since = None;
            cursor = next;
            let decoding = tokio::task::spawn_blocking(move || page.decode().map_err(ProjectionError::from));
            if pages.send(decoding).await.is_err() {
                return;
            }
        }
    });
    received
}

/// The rows on one side only (as multisets), over every column but the uncompared ones.
async fn compare<P: Projection>(tx: &Transaction<'_>, table: &str) -> Result<Option<TableDifference>, ProjectionError> {
    let columns: Vec<String> = tx
        .query(
            "SELECT column_name FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await?
        .iter()
        .map(|r| r.get::<_, String>(0))
        .filter(|c| !P::UNCOMPARED.contains(&c.as_str()))
        .map(|c| format!("\"{c}\""))
        .collect();
    let cols = columns.join(", ");
    let side = |from: &str, minus: &str| {
        format!("SELECT {cols} FROM {from}.{table} EXCEPT ALL SELECT {cols} FROM {minus}.{table}")
    };
    let mut counts = Vec::new();
    let mut rows = Vec::new();
    for (from, minus) in [("pg_temp", "public"), ("public", "pg_temp")] {
        let sql = side(from, minus);
        counts.push(tx.query_one(&format!("SELECT count(*) FROM ({sql}) d"), &[]).await?.get::<_, i64>(0));
        rows.push(
            tx.query(&format!("SELECT to_jsonb(d) FROM ({sql}) d LIMIT {LISTED}"), &[])
                .await?
                .iter()
                .map(|r| r.get::<_, Value>(0))
                .collect::<Vec<_>>(),
        );
    }
    if counts.iter().all(|c| *c == 0) {
        return Ok(None);
    }
    let unexpected_rows = rows.pop().expect("two sides");
    let missing_rows = rows.pop().expect("two sides");
    Ok(Some(TableDifference {
        table: table.to_string(),
        missing_in_live: counts[0],
        unexpected_in_live: counts[1],
        missing_rows,
        unexpected_rows,
    }))
}
