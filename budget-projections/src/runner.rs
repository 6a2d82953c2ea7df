//! Runs one projection: read a batch after the checkpoint, apply it, move the checkpoint, commit.
//!
//! All three happen in one transaction that also holds the checkpoint row lock, so a batch is applied
//! exactly once: a crash before the commit rolls back the apply with the checkpoint. `SKIP LOCKED` means
//! a second runner (another replica) finds the row taken and stands by instead of applying twice.
//! The events come from the process's [`LogTail`], which the runners and the WebSocket hub share, so
//! each commit is read from the log and decoded once, not once per reader.
//!
//! A step costs the same statements and commit whether it folds one writer commit or ten, so after
//! applying a batch a runner waits [`LINGER`] before it looks again, unless a read waiting for a
//! position hurries it ([`RunnerStatus::hurry`]). Over that pause its process keeps the projection with
//! a short lease on the checkpoint row ([`LEASE`]): without it, a runner of a second process found the
//! row free in the pause, took it, and the first then stood by for [`BUSY_WAIT`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use budget_events::store::{read_after, Cursor, LogTail, MARK_NON_APPENDER};
use budget_events::writer::LogSignal;
use deadpool_postgres::Pool;
use deadpool_postgres::Transaction;
use tokio::sync::{watch, Notify};
use uuid::Uuid;

use crate::projection::{execute, query_opt, Projection, ProjectionError};

/// Events applied per transaction.
pub const BATCH_SIZE: i64 = 5_000;
const MAX_IDLE_WAIT: Duration = Duration::from_secs(1);
const BUSY_WAIT: Duration = Duration::from_secs(1);
/// How long a runner waits after applying a batch smaller than [`BATCH_SIZE`] before it steps again,
/// so that its next step folds the commits that came meanwhile. Stepping right away, the runners
/// followed every writer commit one by one, and their steps were a third of PostgreSQL's statements
/// under single-record load (`budget bench`). At 10 ms the runners' steps (the log read, the apply,
/// the checkpoint, a commit) still cost PostgreSQL's backends ~58 µs per single record (one run: log
/// reads 24, the rest 34); at 40 ms PostgreSQL's share per record fell from 82–117 to 70–90 µs
/// (`budget bench`, 2026-12-02, five alternating pairs; 100 ms saved little more). A projection is at
/// most this much later for it; a read that waits for a position (`min_position`) ends the pause.
pub const LINGER: Duration = Duration::from_millis(40);
/// How long the process whose runner applied a batch keeps the projection: runners of other processes
/// stand by until then. Renewed by every batch applied, so it covers the [`LINGER`] between steps of a
/// runner that follows a stream of commits, and lapses soon after that runner stops. (A lease of a
/// second kept a second process's runner, woken only by polling, in charge while the writing process's
/// runner stood by: the projections fell 10,000 events behind in `budget bench`'s WebSocket phase.)
pub const LEASE: Duration = Duration::from_millis(150);

/// This process, as the holder of projection leases. Every runner of a process shares it: they take
/// turns through the checkpoint's row lock, and the lease keeps out only other processes.
pub fn process_id() -> Uuid {
    static ID: std::sync::OnceLock<Uuid> = std::sync::OnceLock::new();
    *ID.get_or_init(Uuid::new_v4)
}

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

/// What a process's runners share with its readers: the last error of each runner, for health (empty
/// when all is well), and the hurry that ends their [`LINGER`].
#[derive(Clone, Default)]
pub struct RunnerStatus {
    errors: Arc<Mutex<std::collections::BTreeMap<&'static str, RunnerError>>>,
    hurry: Arc<Notify>,
}

impl RunnerStatus {
    pub fn errors(&self) -> std::collections::BTreeMap<&'static str, RunnerError> {
        self.errors.lock().expect("status lock").clone()
    }

    /// Someone waits for the projections to reach a position: runners pausing between steps step now.
    /// (A runner in the middle of a step is not woken; a waiting reader hurries again as it polls.)
    pub fn hurry(&self) {
        self.hurry.notify_waiters();
    }

    fn set(&self, name: &'static str, error: Option<RunnerError>) {
        let mut map = self.errors.lock().expect("status lock");
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
    /// The process it holds leases for: [`process_id`], unless a test stands in for another process.
    leader: Uuid,
    lease: Duration,
    linger: Duration,
}

impl<P: Projection> Runner<P> {
    /// A runner reading the log through a tail of its own; [`Runner::sharing`] gives it the process's.
    pub fn new(projection: P, pool: Pool, status: RunnerStatus) -> Self {
        let tail = LogTail::new(pool.clone());
        Runner { projection, pool, status, tail, leader: process_id(), lease: LEASE, linger: LINGER }
    }

    /// A runner that holds leases as process `id` would: for tests, which run every "process" in one.
    pub fn as_process(mut self, id: Uuid) -> Self {
        self.leader = id;
        self
    }

    /// A runner whose leases last `lease` instead of [`LEASE`] (tests, which must not depend on timing).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// A runner that pauses `linger` instead of [`LINGER`] after applying a batch (tests).
    pub fn with_linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
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
        let leader = Some((self.leader, self.lease));
        match next_batch(&self.projection, &tx, &self.tail, false, leader).await {
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
        let step = next_batch(&self.projection, &tx, &self.tail, true, leader).await?;
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
                Ok(Step::Applied(n)) => {
                    self.status.set(P::NAME, None);
                    wait = Duration::from_millis(10);
                    if n < BATCH_SIZE as usize {
                        tokio::select! {
                            _ = tokio::time::sleep(self.linger) => {}
                            _ = self.status.hurry.notified() => {}
                            _ = shutdown.changed() => {}
                        }
                    }
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
/// transaction half-way, as a crash would. It neither heeds nor takes a lease.
pub async fn apply_batch<P: Projection>(
    projection: &P,
    tx: &Transaction<'_>,
    tail: &LogTail,
) -> Result<Step, ProjectionError> {
    next_batch(projection, tx, tail, true, None).await
}

/// [`apply_batch`]; with `locate` false, a batch that fails leaves `tx` aborted and the error does not
/// name the event. With a `leader`, a projection another process holds the lease of is [`Step::Busy`],
/// and applying a batch takes (or renews) the lease for `leader`.
async fn next_batch<P: Projection>(
    projection: &P,
    tx: &Transaction<'_>,
    tail: &LogTail,
    locate: bool,
    leader: Option<(Uuid, Duration)>,
) -> Result<Step, ProjectionError> {
    let Some(cursor) = lock_checkpoint(tx, P::NAME, true, leader.map(|(id, _)| id)).await? else {
        return Ok(Step::Busy);
    };
    // The tail hands out one of its pages at a time, and a page can be as small as one writer commit
    // (the hub reads after every commit). A step takes every page there is, up to BATCH_SIZE events:
    // one page per step, a runner that lingers between steps fell behind a stream of small commits.
    let mut end = cursor;
    let mut applied = 0;
    while applied < BATCH_SIZE as usize {
        let events = tail.read_after(end, BATCH_SIZE - applied as i64).await?;
        let Some(last) = events.last() else { break };
        if locate {
            apply_or_locate(projection, tx, &events).await?;
        } else {
            projection.apply(tx, &events).await?;
        }
        end = Cursor::after(last);
        applied += events.len();
    }
    if applied == 0 {
        return Ok(Step::CaughtUp);
    }
    move_checkpoint(tx, P::NAME, cursor, end, applied, leader).await?;
    Ok(Step::Applied(applied))
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
    let old = lock_checkpoint(&tx, P::NAME, false, None).await?.expect("a waiting lock always gets the row");
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
        move_checkpoint(&tx, P::NAME, cursor, next, events.len(), None).await?;
        cursor = next;
        total += events.len();
    }
    tx.commit().await?;
    tracing::info!(projection = P::NAME, events = total, previous = ?old, "rebuilt projection");
    Ok(total)
}

/// Locks the projection's checkpoint and returns where it stands; `None` when another runner holds the
/// row (with `skip_locked`) or, for a `leader`, when another process holds the lease. A row leased
/// elsewhere is not even locked, so that a standby's look never makes the leader's next step wait.
pub(crate) async fn lock_checkpoint(
    tx: &Transaction<'_>,
    name: &str,
    skip_locked: bool,
    leader: Option<Uuid>,
) -> Result<Option<Cursor>, ProjectionError> {
    // The row lock gives the transaction an id, which would hold every reader of the log back until it
    // commits; the mark, taken in the same statement, tells them it never appends (store::read).
    let sql = format!(
        "SELECT tx_id::text, position, {MARK_NON_APPENDER} FROM projection_checkpoints
         WHERE name = $1 AND ($2::uuid IS NULL OR leader IS NULL OR leader = $2 OR leader_until <= clock_timestamp())
         FOR UPDATE{}",
        if skip_locked { " SKIP LOCKED" } else { "" }
    );
    let sql = sql.as_str();
    let mut row = query_opt(tx, sql, &[&name, &leader]).await?;
    if row.is_none() {
        // Locked or leased by another runner, or missing (a projection whose migration did not add its
        // row). Only a missing row is created; inserting over a locked one would wait for its holder.
        let exists = tx.query_opt("SELECT 1 FROM projection_checkpoints WHERE name = $1", &[&name]).await?.is_some();
        if !exists {
            tx.execute("INSERT INTO projection_checkpoints (name) VALUES ($1) ON CONFLICT DO NOTHING", &[&name])
                .await?;
            row = query_opt(tx, sql, &[&name, &leader]).await?;
        }
    }
    Ok(row.map(|r| Cursor {
        tx_id: r.get::<_, String>("tx_id").parse().expect("xid8 is an unsigned 64-bit integer"),
        position: r.get("position"),
    }))
}

/// Compare-and-set: moves the checkpoint only from where this batch started. With a `leader`, that
/// process takes (or renews) the projection's lease for that long.
pub(crate) async fn move_checkpoint(
    tx: &Transaction<'_>,
    name: &'static str,
    from: Cursor,
    to: Cursor,
    applied: usize,
    leader: Option<(Uuid, Duration)>,
) -> Result<(), ProjectionError> {
    assert!(to > from, "a checkpoint only moves forward");
    let (leader, lease) = (leader.map(|(id, _)| id), leader.map_or(0.0, |(_, lease)| lease.as_secs_f64()));
    let moved = execute(
        tx,
        "UPDATE projection_checkpoints
             SET tx_id = $2::text::xid8, position = $3, events_applied = events_applied + $4, updated_at = now(),
                 leader = coalesce($7, leader),
                 leader_until = CASE WHEN $7::uuid IS NULL THEN leader_until
                                     ELSE clock_timestamp() + make_interval(secs => $8) END
             WHERE name = $1 AND tx_id = $5::text::xid8 AND position = $6",
        &[
            &name,
            &to.tx_id.to_string(),
            &to.position,
            &(applied as i64),
            &from.tx_id.to_string(),
            &from.position,
            &leader,
            &lease,
        ],
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
