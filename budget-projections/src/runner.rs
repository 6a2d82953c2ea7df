//! Runs one projection: read a batch after the checkpoint, apply it, move the checkpoint, commit.
//!
//! All three happen in one transaction that also holds the checkpoint row lock, so a batch is applied
//! exactly once: a crash before the commit rolls back the apply with the checkpoint. `SKIP LOCKED` means
//! a second runner (another replica) finds the row taken and stands by instead of applying twice.
//! The events come from the process's [`LogTail`], which the runners and the WebSocket hub share, so
//! each commit is read from the log and decoded once, not once per reader.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use budget_events::store::{read_after, Cursor, LogTail};
use budget_events::writer::LogSignal;
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use tokio::sync::watch;

use crate::projection::{execute, query_opt, Projection, ProjectionError};

/// Events applied per transaction.
pub const BATCH_SIZE: i64 = 5_000;
const MAX_IDLE_WAIT: Duration = Duration::from_secs(1);
const BUSY_WAIT: Duration = Duration::from_secs(1);

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Applied(usize),
    CaughtUp,
    /// Another runner holds this projection right now.
    Busy,
}

/// A runner's last error, and the event it could not apply when that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerError {
    pub message: String,
    /// Log position and type of the event the projection cannot apply.
    pub failing_event: Option<(i64, String)>,
}

impl From<&ProjectionError> for RunnerError {
    fn from(e: &ProjectionError) -> Self {
        RunnerError { message: e.to_string(), failing_event: e.failing_event().map(|(p, t)| (p, t.to_string())) }
    }
}

/// The last error of each runner, for health. Empty when all is well.
#[derive(Clone, Default)]
pub struct RunnerStatus(Arc<Mutex<std::collections::BTreeMap<&'static str, RunnerError>>>);

impl RunnerStatus {
    pub fn errors(&self) -> std::collections::BTreeMap<&'static str, RunnerError> {
        self.0.lock().expect("status lock").clone()
    }

    fn set(&self, name: &'static str, error: Option<RunnerError>) {
        let mut map = self.0.lock().expect("status lock");
        match error {
            Some(e) => map.insert(name, e),
            None => map.remove(name),
        };
    }
}

pub struct Runner<P> {
    projection: P,
    pool: Pool,
    status: RunnerStatus,
    tail: Arc<LogTail>,
}

impl<P: Projection> Runner<P> {
    /// A runner reading the log through a tail of its own; [`Runner::sharing`] gives it the process's.
    pub fn new(projection: P, pool: Pool, status: RunnerStatus) -> Self {
        let tail = LogTail::new(pool.clone());
        Runner { projection, pool, status, tail }
    }

    /// Reads through `tail`, shared with the other readers of the process.
    pub fn sharing(mut self, tail: Arc<LogTail>) -> Self {
        self.tail = tail;
        self
    }

    /// One batch in one transaction. When the batch fails, it is rolled back and tried again in a
    /// second transaction that finds the event it fails on ([`apply_or_locate`]): the savepoints that
    /// search needs cost two round trips per step, so the common step goes without them.
    pub async fn step(&self) -> Result<Step, ProjectionError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        let tx = client.transaction().await?;
        match next_batch(&self.projection, &tx, &self.tail, false).await {
            Ok(step) => {
                tx.commit().await?;
                return Ok(step);
            }
            Err(e) => {
                tracing::debug!(projection = P::NAME, error = %e, "batch failed; locating the failing event");
                tx.rollback().await?;
            }
        }
        let tx = client.transaction().await?;
        let step = apply_batch(&self.projection, &tx, &self.tail).await?;
        tx.commit().await?;
        Ok(step)
    }

    /// Steps until nothing is left to apply (or another runner holds the projection).
    pub async fn catch_up(&self) -> Result<usize, ProjectionError> {
        let mut total = 0;
        loop {
            match self.step().await? {
                Step::Applied(n) => total += n,
                Step::CaughtUp | Step::Busy => return Ok(total),
            }
        }
    }

    /// Tails the log until `shutdown` turns true: woken in-process by the writer's signal, and polling
    /// with backoff for what other processes append.
    pub async fn run(self, signal: LogSignal, mut shutdown: watch::Receiver<bool>) {
        let mut appended = signal.subscribe();
        let mut wait = Duration::from_millis(10);
        while !*shutdown.borrow() {
            let pause = match self.step().await {
                Ok(Step::Applied(_)) => {
                    self.status.set(P::NAME, None);
                    wait = Duration::from_millis(10);
                    continue;
                }
                Ok(Step::CaughtUp) => {
                    self.status.set(P::NAME, None);
                    let pause = wait;
                    wait = (wait * 2).min(MAX_IDLE_WAIT);
                    pause
                }
                Ok(Step::Busy) => BUSY_WAIT,
                Err(e) => {
                    tracing::error!(projection = P::NAME, error = %e, "projection step failed; will retry");
                    self.status.set(P::NAME, Some(RunnerError::from(&e)));
                    wait = (wait * 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = appended.changed() => { wait = Duration::from_millis(10); }
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Locks the checkpoint, applies the next batch (read through `tail`) and moves the checkpoint, in `tx`;
/// an error names the event the projection cannot apply. Public so that tests can abandon the
/// transaction half-way, as a crash would.
pub async fn apply_batch<P: Projection>(
    projection: &P,
    tx: &Transaction<'_>,
    tail: &LogTail,
) -> Result<Step, ProjectionError> {
    next_batch(projection, tx, tail, true).await
}

/// [`apply_batch`]; with `locate` false, a batch that fails leaves `tx` aborted and the error does not
/// name the event.
async fn next_batch<P: Projection>(
    projection: &P,
    tx: &Transaction<'_>,
    tail: &LogTail,
    locate: bool,
) -> Result<Step, ProjectionError> {
    let Some(cursor) = lock_checkpoint(tx, P::NAME, true).await? else {
        return Ok(Step::Busy);
    };
    let events = tail.read_after(cursor, BATCH_SIZE).await?;
    let Some(last) = events.last() else {
        return Ok(Step::CaughtUp);
    };
    if locate {
        apply_or_locate(projection, tx, &events).await?;
    } else {
        projection.apply(tx, &events).await?;
    }
    move_checkpoint(tx, P::NAME, cursor, Cursor::after(last), events.len()).await?;
    Ok(Step::Applied(events.len()))
}

/// Applies `events`; when that fails, finds the first event that cannot be applied and names it in the
/// error ([`ProjectionError::Event`]), so health can say which event holds the projection back. The
/// search halves the batch under savepoints (about 13 tries for a batch of 5,000), applying the halves
/// that succeed; the caller's transaction is rolled back on any error anyway.
pub async fn apply_or_locate<P: Projection>(
    projection: &P,
    tx: &Transaction<'_>,
    events: &[budget_events::RecordedEvent],
) -> Result<(), ProjectionError> {
    tx.batch_execute("SAVEPOINT apply").await?;
    let error = match projection.apply(tx, events).await {
        Ok(()) => return Ok(tx.batch_execute("RELEASE SAVEPOINT apply").await?),
        Err(e) => e,
    };
    tx.batch_execute("ROLLBACK TO SAVEPOINT apply").await?;
    if let [only] = events {
        return Err(ProjectionError::Event {
            position: only.position,
            event_type: only.event.event_type().to_string(),
            source: Box::new(error),
        });
    }
    if events.is_empty() {
        return Err(error);
    }
    let (head, tail) = events.split_at(events.len() / 2);
    Box::pin(apply_or_locate(projection, tx, head)).await?;
    Box::pin(apply_or_locate(projection, tx, tail)).await
}

/// Rebuilds a projection from position zero in one transaction: its tables are emptied and refolded
/// from the whole log. Readers keep seeing the old rows until the commit, then the new ones at once.
/// Waits for a running step of the same projection to finish first. Returns the events applied.
pub async fn rebuild<P: Projection>(projection: &P, pool: &Pool) -> Result<usize, ProjectionError> {
    let mut client = pool.get().await.map_err(pool_error)?;
    let tx = client.transaction().await?;
    let old = lock_checkpoint(&tx, P::NAME, false).await?.expect("a waiting lock always gets the row");
    for table in P::TABLES {
        tx.batch_execute(&format!("DELETE FROM {table}")).await?;
    }
    tx.execute(
        "UPDATE projection_checkpoints SET tx_id = '0', position = 0, events_applied = 0, updated_at = now()
         WHERE name = $1",
        &[&P::NAME],
    )
    .await?;
    let mut cursor = Cursor::START;
    let mut total = 0;
    loop {
        let events = read_after(&*tx, cursor, BATCH_SIZE).await?;
        let Some(last) = events.last() else { break };
        projection.apply(&tx, &events).await?;
        let next = Cursor::after(last);
        move_checkpoint(&tx, P::NAME, cursor, next, events.len()).await?;
        cursor = next;
        total += events.len();
    }
    tx.commit().await?;
    tracing::info!(projection = P::NAME, events = total, previous = ?old, "rebuilt projection");
    Ok(total)
}

pub(crate) async fn lock_checkpoint(
    tx: &Transaction<'_>,
    name: &str,
    skip_locked: bool,
) -> Result<Option<Cursor>, ProjectionError> {
    let sql = if skip_locked {
        "SELECT tx_id::text, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT tx_id::text, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE"
    };
    let mut row = query_opt(tx, sql, &[&name]).await?;
    if row.is_none() {
        // Locked by another runner, or missing (a projection whose migration did not add its row).
        // Only a missing row is created; inserting over a locked one would wait for its holder.
        let exists = tx.query_opt("SELECT 1 FROM projection_checkpoints WHERE name = $1", &[&name]).await?.is_some();
        if !exists {
            tx.execute("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING", &[&name])
                .await?;
            row = query_opt(tx, sql, &[&name]).await?;
        }
    }
    Ok(row.map(|r| Cursor {
        tx_id: r.get::<_, String>("tx_id").parse().expect("xid8 is an unsigned 64-bit integer"),
        position: r.get("position"),
    }))
}

/// Compare-and-set: moves the checkpoint only from where this batch started.
pub(crate) async fn move_checkpoint(
    tx: &Transaction<'_>,
    name: &'static str,
    from: Cursor,
    to: Cursor,
    applied: usize,
) -> Result<(), ProjectionError> {
    assert!(to > from, "a checkpoint only moves forward");
    let moved = execute(
        tx,
        "UPDATE projection_checkpoints
             SET tx_id = $2::text::xid8, position = $3, events_applied = events_applied + $4, updated_at = now()
             WHERE name = $1 AND tx_id = $5::text::xid8 AND position = $6",
        &[&name, &to.tx_id.to_string(), &to.position, &(applied as i64), &from.tx_id.to_string(), &from.position],
    )
    .await?;
    if moved != 1 {
        return Err(ProjectionError::CheckpointMoved(name));
    }
    Ok(())
}

pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> ProjectionError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => ProjectionError::Db(e),
        other => ProjectionError::Pool(other.to_string()),
    }
}
