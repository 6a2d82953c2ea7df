//! The batching writer: one task per process that turns many concurrent commands into one transaction.
//!
//! A commit costs an fsync (~1.5 ms here), so one transaction per request would cap ingest near a few
//! thousand records per second. Callers send commands through a channel; the task takes everything that
//! queued up while the previous commit was in flight, decides it in order in one transaction, commits
//! once and answers every caller. A caller is answered only after the commit: an acknowledged record is
//! durable (`synchronous_commit` stays on).

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::db::WriteTx;
use crate::ledger::{self, Command, CommandError, LedgerCommand, LedgerError, Stages, Written};

/// Most usage records decided in one transaction (a batch request's records are never split).
pub const MAX_ITEMS_PER_TRANSACTION: usize = 20_000;
/// Times a batch is retried after losing a race with another process.
const RACE_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Rejected(#[from] CommandError),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("the write failed and was rolled back: {0}")]
    Failed(String),
    /// The connection went away with the `COMMIT` in flight: the batch may or may not be written. Not
    /// retried here (a command without a key would be counted twice); its caller retries with the same
    /// idempotency key, which answers with the stored outcome if the commit happened.
    #[error("the database connection was lost while committing, so whether this was written is unknown: {0}")]
    Unknown(String),
    #[error("the writer has shut down")]
    ShutDown,
}

type Reply = oneshot::Sender<Result<Written, WriteError>>;
/// A command, where its answer goes, and when it was queued.
type Job = (Command, Reply, Instant);

/// What one batch was, for metrics: how many commands and items (each usage record is one, and so is
/// each other command), how long the oldest waited in the queue, how long deciding and committing
/// took and in which stages (those of the tries that committed), and whether it committed.
#[derive(Debug, Clone, Copy)]
pub struct BatchReport {
    pub commands: usize,
    pub items: usize,
    pub queue_wait: Duration,
    pub write: Duration,
    pub stages: Stages,
    pub committed: bool,
}

/// Sees every batch and every command's result as the writer answers them (the API's metrics). It is
/// called on the writer's task, after the commit: it must not block.
pub trait WriteObserver: Send + Sync + 'static {
    fn batch(&self, report: &BatchReport);
    fn command(&self, command: &Command, result: &Result<Written, WriteError>);
}

/// A handle to the writer task. Cloning is cheap; the task ends when the last handle is dropped, after
/// it has answered everything already sent.
#[derive(Clone)]
pub struct Writer {
    sender: mpsc::Sender<Job>,
}

/// Tells this process's readers of the log (the projection runners, the WebSocket hub) that it has
/// grown, so they need not poll: woken by this process's writer after each commit, and by
/// [`crate::store::notify::run`] for the commits other processes announce. This process's own commits
/// also drive that task's `NOTIFY`, which tells the other processes.
#[derive(Clone)]
pub struct LogSignal(Arc<Signals>);

struct Signals {
    grew: watch::Sender<u64>,
    committed_here: watch::Sender<u64>,
    /// Names this process in its announcements, so that its listener leaves them out.
    origin: String,
}

impl Default for LogSignal {
    fn default() -> Self {
        LogSignal(Arc::new(Signals {
            grew: watch::channel(0).0,
            committed_here: watch::channel(0).0,
            origin: uuid::Uuid::new_v4().to_string(),
        }))
    }
}

impl LogSignal {
    /// This process committed to the log: wakes its readers and its announcer.
    pub fn notify(&self) {
        self.0.grew.send_modify(|n| *n = n.wrapping_add(1));
        self.0.committed_here.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The log grew through another process: wakes this process's readers only (announcing it again
    /// would bounce it between processes for ever).
    pub fn wake(&self) {
        self.0.grew.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever the log may have grown.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.grew.subscribe()
    }

    /// Changes whenever this process committed.
    pub fn subscribe_commits(&self) -> watch::Receiver<u64> {
        self.0.committed_here.subscribe()
    }

    /// This process, as its announcements name it.
    pub fn origin(&self) -> &str {
        &self.0.origin
    }
}

impl Writer {
    pub fn spawn(pool: Pool, signal: LogSignal) -> (Writer, JoinHandle<()>) {
        Self::spawn_with_batch_limit(pool, signal, MAX_ITEMS_PER_TRANSACTION)
    }

    /// A writer that puts at most `max_items` records in one transaction (a command is never split).
    /// `1` gives one transaction per request: the baseline the ingest benchmark compares against.
    pub fn spawn_with_batch_limit(pool: Pool, signal: LogSignal, max_items: usize) -> (Writer, JoinHandle<()>) {
        Self::spawn_observed(pool, signal, max_items, None)
    }

    /// A writer whose batches and results `observer` sees.
    pub fn spawn_observed(
        pool: Pool,
        signal: LogSignal,
        max_items: usize,
        observer: Option<Arc<dyn WriteObserver>>,
    ) -> (Writer, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(4096);
        let handle = tokio::spawn(run(pool, signal, receiver, max_items, observer));
        (Writer { sender }, handle)
    }

    /// Decides `command` with whatever else is queued, commits, and answers with its outcome.
    pub async fn submit<C: LedgerCommand>(&self, command: C) -> Result<C::Outcome, WriteError> {
        Ok(self.submit_at(command).await?.0)
    }

    /// Like [`Writer::submit`], with the log position of the command's last event (none when it was a
    /// replay or appended nothing), for an answer that lets its client read its own write.
    pub async fn submit_at<C: LedgerCommand>(&self, command: C) -> Result<(C::Outcome, Option<i64>), WriteError> {
        let (reply, answer) = oneshot::channel();
        self.sender.send((command.into_command(), reply, Instant::now())).await.map_err(|_| WriteError::ShutDown)?;
        let (outcome, position) = answer.await.map_err(|_| WriteError::ShutDown)??;
        let outcome = C::unwrap(outcome).expect("the write path answers each command with its own kind of outcome");
        Ok((outcome, position))
    }
}

impl Writer {
    /// Submits `first`, then `second` right behind it, before `first` is decided: the second is decided
    /// after the first (in the same batch when they arrive together, as they usually do), so a caller
    /// that needs both waits for one commit instead of two. Each gets its own answer.
    pub async fn submit_then<A: LedgerCommand, B: LedgerCommand>(
        &self,
        first: A,
        second: B,
    ) -> (Result<A::Outcome, WriteError>, Result<B::Outcome, WriteError>) {
        let (reply_a, answer_a) = oneshot::channel();
        let (reply_b, answer_b) = oneshot::channel();
        // One task sends both, in order: the channel keeps that order for the writer.
        if self.sender.send((first.into_command(), reply_a, Instant::now())).await.is_err()
            || self.sender.send((second.into_command(), reply_b, Instant::now())).await.is_err()
        {
            return (Err(WriteError::ShutDown), Err(WriteError::ShutDown));
        }
        let a = answer_a.await.map_err(|_| WriteError::ShutDown).and_then(|r| r).map(|(outcome, _)| {
            A::unwrap(outcome).expect("the write path answers each command with its own kind of outcome")
        });
        let b = answer_b.await.map_err(|_| WriteError::ShutDown).and_then(|r| r).map(|(outcome, _)| {
            B::unwrap(outcome).expect("the write path answers each command with its own kind of outcome")
        });
        (a, b)
    }
}

/// Decides `command` exactly as [`Writer::submit`] would, in a transaction that is then rolled back:
/// what it would do, with nothing written. (A dry run cannot disagree with the real thing: it is the
/// real thing, undone.)
pub async fn dry_run<C: LedgerCommand>(pool: &Pool, command: C) -> Result<C::Outcome, WriteError> {
    let client = pool.get().await.map_err(|e| WriteError::Unavailable(e.to_string()))?;
    let tx = WriteTx::new(client);
    let mut results =
        ledger::process(&tx, &[command.into_command()]).await.map_err(|e| WriteError::Failed(e.to_string()))?;
    tx.rollback().await.map_err(|e| WriteError::Failed(e.to_string()))?;
    let (outcome, _) = results.pop().expect("one result per command")?;
    Ok(C::unwrap(outcome).expect("the write path answers each command with its own kind of outcome"))
}

async fn run(
    pool: Pool,
    signal: LogSignal,
    mut receiver: mpsc::Receiver<Job>,
    max_items: usize,
    observer: Option<Arc<dyn WriteObserver>>,
) {
    let answers = Answers { signal, observer };
    // The batch decided and not yet committed, if any: the next batch is decided behind its `COMMIT`.
    let mut decided: Option<Decided> = None;
    // What the last batch loaded, for the next to foresee its accounts by (retries do without).
    let last = ledger::LastPolicies::default();
    loop {
        let Some(open) = decided.take() else {
            let Some(first) = receiver.recv().await else { break };
            let batch = Taken::gather(first, &mut receiver, max_items);
            decided = first_try(&pool, batch, &answers, &last).await;
            continue;
        };
        let Some(next) = Taken::queued(&mut receiver, max_items) else {
            let Decided { batch, tx, results, stages } = open;
            let committing = Instant::now();
            match tx.commit().instrument(tracing::debug_span!("commit")).await {
                Ok(()) => answers.committed(batch, results, Stages { commit: committing.elapsed(), ..stages }),
                Err(e) => answers.commit_failed(&pool, batch, e).await,
            }
            continue;
        };
        // What queued while this batch was decided goes behind its `COMMIT`, on the same connection, in
        // the same round trip: PostgreSQL runs the next batch's `BEGIN`, lock and loads right after the
        // commit, so the next batch is decided on everything this one wrote, without a round trip of
        // its own (`budget bench`: a writer batch's load stage was 1.9 of its 6.6 ms). This batch's
        // callers are answered as soon as its `COMMIT` is.
        let Decided { batch, tx, results, stages } = open;
        let mut next_stages = Stages::default();
        let (tx_ref, answers_ref) = (&tx, &answers);
        let (unsettled, next_results) = tokio::join!(
            biased;
            async move {
                let committing = Instant::now();
                let committed = tx_ref.commit_continuing().instrument(tracing::debug_span!("commit")).await;
                let stages = Stages { commit: committing.elapsed(), ..stages };
                match committed {
                    Ok(()) => {
                        answers_ref.committed(batch, results, stages);
                        None
                    }
                    Err(e) => Some((batch, e)),
                }
            },
            decide(&tx, &next.commands, &mut next_stages, Some(&last)),
        );
        match (unsettled, next_results) {
            (None, Ok(results)) => decided = Some(Decided { batch: next, tx, results, stages: next_stages }),
            (unsettled, next_results) => {
                // Either failed: end the next batch's transaction first (it holds the ledger lock), write
                // this batch again if its commit failed, then write the next one as if it came alone.
                match next_results {
                    Err(Retry::Race) => drop(tx.rollback().await),
                    _ => drop(tx),
                }
                if let Some((batch, e)) = unsettled {
                    answers.commit_failed(&pool, batch, e).await;
                }
                let mut stages = Stages::default();
                let results = write_batch(&pool, &next.commands, &mut stages).await;
                answers.answer(next, results, stages);
            }
        }
    }
}

/// A batch taken from the queue: its commands, where their answers go, and its timings so far.
struct Taken {
    commands: Vec<Command>,
    replies: Vec<Reply>,
    items: usize,
    queue_wait: Duration,
    started: Instant,
}

impl Taken {
    /// `first` and whatever queued behind it, up to `max_items`.
    fn gather(first: Job, receiver: &mut mpsc::Receiver<Job>, max_items: usize) -> Taken {
        let oldest = first.2;
        let mut items = first.0.weight();
        let mut jobs = vec![first];
        while items < max_items {
            match receiver.try_recv() {
                Ok(job) => {
                    items += job.0.weight();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let (commands, replies) = jobs.into_iter().map(|(c, r, _)| (c, r)).unzip();
        Taken { commands, replies, items, queue_wait: oldest.elapsed(), started: Instant::now() }
    }

    /// What is queued now, if anything.
    fn queued(receiver: &mut mpsc::Receiver<Job>, max_items: usize) -> Option<Taken> {
        let first = receiver.try_recv().ok()?;
        Some(Taken::gather(first, receiver, max_items))
    }
}

/// A batch decided in an open transaction, waiting for its `COMMIT`.
struct Decided {
    batch: Taken,
    tx: WriteTx,
    results: Vec<Result<Written, CommandError>>,
    stages: Stages,
}

/// Decides a batch on a connection of its own and leaves it open (the next batch may be decided
/// behind its commit). If that try fails, the batch is written as before: retried, or command by
/// command, and answered.
async fn first_try(pool: &Pool, batch: Taken, answers: &Answers, last: &ledger::LastPolicies) -> Option<Decided> {
    let span = tracing::debug_span!(
        "write_batch",
        commands = batch.commands.len(),
        items = batch.items,
        queue_wait_us = batch.queue_wait.as_micros() as u64
    );
    let mut stages = Stages::default();
    let tried = async {
        let client = pool.get().await.map_err(|e| Retry::No(WriteError::Unavailable(e.to_string())))?;
        let tx = WriteTx::new(client);
        match decide(&tx, &batch.commands, &mut stages, Some(last)).await {
            Ok(results) => Ok((tx, results)),
            Err(Retry::Race) => {
                let _ = tx.rollback().await;
                Err(Retry::Race)
            }
            Err(e) => Err(e),
        }
    }
    .instrument(span)
    .await;
    match tried {
        Ok((tx, results)) => Some(Decided { batch, tx, results, stages }),
        Err(Retry::No(e)) => {
            let mut stages = Stages::default();
            let results = after_failure(pool, &batch.commands, e, &mut stages).await;
            answers.answer(batch, results, stages);
            None
        }
        // A race or a lost connection: tried again from the start, as `write_once` does.
        Err(Retry::Race | Retry::ConnectionLost(_)) => {
            let mut stages = Stages::default();
            let results = write_batch(pool, &batch.commands, &mut stages).await;
            answers.answer(batch, results, stages);
            None
        }
    }
}

/// Where answers go once a batch is settled: the log's signal, the metrics, the callers.
struct Answers {
    signal: LogSignal,
    observer: Option<Arc<dyn WriteObserver>>,
}

impl Answers {
    /// A decided batch whose `COMMIT` failed. If the server refused it, it wrote nothing: its commands
    /// are written again as a failed batch's are (alone, or one by one). If the connection went away
    /// with the `COMMIT` in flight, whether it was written is unknown: writing it again could count a
    /// command without an idempotency key twice, so every command is answered
    /// [`WriteError::Unknown`] and its caller retries with its key.
    async fn commit_failed(&self, pool: &Pool, batch: Taken, error: tokio_postgres::Error) {
        let mut stages = Stages::default();
        let results = match commit_failed(error) {
            WriteError::Unknown(message) => {
                batch.commands.iter().map(|_| Err(WriteError::Unknown(message.clone()))).collect()
            }
            failed => after_failure(pool, &batch.commands, failed, &mut stages).await,
        };
        self.answer(batch, results, stages);
    }

    /// Answers a batch that committed.
    fn committed(&self, batch: Taken, results: Vec<Result<Written, CommandError>>, stages: Stages) {
        self.answer(batch, results.into_iter().map(|r| r.map_err(WriteError::from)).collect(), stages);
    }

    fn answer(&self, batch: Taken, results: Vec<Result<Written, WriteError>>, stages: Stages) {
        let Taken { commands, replies, items, queue_wait, started } = batch;
        // A rejection is a decision, committed like an acceptance: a refused reservation's
        // `BudgetRefused` event is in the log, and its readers must hear of it.
        let committed = results.iter().any(|r| matches!(r, Ok(_) | Err(WriteError::Rejected(_))));
        if committed {
            self.signal.notify();
        }
        if let Some(observer) = &self.observer {
            let write = started.elapsed();
            observer.batch(&BatchReport { commands: commands.len(), items, queue_wait, write, stages, committed });
            for (command, result) in commands.iter().zip(&results) {
                observer.command(command, result);
            }
        }
        for (reply, result) in replies.into_iter().zip(results) {
            let _ = reply.send(result);
        }
    }
}

/// Writes a batch; if it fails for a reason other than a race, each command is tried on its own so that
/// one bad command cannot fail the others.
async fn write_batch(pool: &Pool, commands: &[Command], stages: &mut Stages) -> Vec<Result<Written, WriteError>> {
    match write_once(pool, commands, stages).await {
        Ok(results) => results.into_iter().map(|r| r.map_err(WriteError::from)).collect(),
        Err(e) => after_failure(pool, commands, e, stages).await,
    }
}

/// A batch that failed with `error` (not a race): a lone command gets the error; the commands of a
/// bigger batch are tried one by one.
async fn after_failure(
    pool: &Pool,
    commands: &[Command],
    error: WriteError,
    stages: &mut Stages,
) -> Vec<Result<Written, WriteError>> {
    if commands.len() == 1 {
        return vec![Err(error)];
    }
    tracing::warn!(error = %error, commands = commands.len(), "batch failed; writing its commands one by one");
    let mut results = Vec::with_capacity(commands.len());
    for command in commands {
        results.push(match write_once(pool, std::slice::from_ref(command), stages).await {
            Ok(mut r) => r.pop().expect("one result per command").map_err(WriteError::from),
            Err(e) => Err(e),
        });
    }
    results
}

async fn write_once(
    pool: &Pool,
    commands: &[Command],
    stages: &mut Stages,
) -> Result<Vec<Result<Written, CommandError>>, WriteError> {
    let mut attempt = 0;
    loop {
        // A try that fails closes its connection unless it could roll back (`WriteTx`), so a retry
        // after a lost connection gets another one.
        let client = pool.get().await.map_err(|e| WriteError::Unavailable(e.to_string()))?;
        match decide_and_commit(client, commands, stages).await {
            Ok(results) => return Ok(results),
            Err(Retry::No(e)) => return Err(e),
            Err(Retry::Race) if attempt < RACE_RETRIES => {}
            Err(Retry::ConnectionLost(e)) if attempt < RACE_RETRIES => {
                // The server rolled the batch back with the connection: decide it again on another.
                tracing::warn!(error = %e, "the write path lost its database connection; retrying the batch on another");
            }
            Err(Retry::Race) => return Err(WriteError::Failed(LedgerError::Race.to_string())),
            Err(Retry::ConnectionLost(e)) => return Err(WriteError::Unavailable(e)),
        }
        attempt += 1;
    }
}

/// What a failed `COMMIT` means for the batch: a lost connection leaves its outcome unknown (seen in
/// `budget-cli/tests/faults.rs`, whose backends are terminated under load: such a commit was answered
/// as a failure that rolled back, which it may not have been).
pub(crate) fn commit_failed(e: tokio_postgres::Error) -> WriteError {
    if crate::db::connection_lost(&e) {
        WriteError::Unknown(crate::db::error_message(&e))
    } else {
        WriteError::Failed(crate::db::error_message(&e))
    }
}

/// Why a try at a batch failed: whether it is decided again.
enum Retry {
    /// Another process stored one of the batch's keys or appended to one of its streams meanwhile.
    Race,
    /// The connection went away before the commit (a restart, a terminated backend; a pooled
    /// connection is only found dead on use).
    ConnectionLost(String),
    /// Not to be retried.
    No(WriteError),
}

/// One try at a batch, in one transaction on `client` (begun with the batch's first statement). Its
/// stages are added to `stages` if it commits.
async fn decide_and_commit(
    client: deadpool_postgres::Client,
    commands: &[Command],
    stages: &mut Stages,
) -> Result<Vec<Result<Written, CommandError>>, Retry> {
    let mut these = Stages::default();
    let tx = WriteTx::new(client);
    match decide(&tx, commands, &mut these, None).await {
        Ok(results) => {
            // If the commit's answer is lost, the outcome is unknown to the caller, who retries with
            // the same idempotency key and gets the stored answer.
            let committing = Instant::now();
            tx.commit().instrument(tracing::debug_span!("commit")).await.map_err(|e| Retry::No(commit_failed(e)))?;
            these.commit = committing.elapsed();
            stages.add(&these);
            Ok(results)
        }
        Err(Retry::Race) => {
            // Keep the connection for the retry if it can roll back; if not, dropping it closes it.
            let _ = tx.rollback().await;
            Err(Retry::Race)
        }
        Err(e) => Err(e),
    }
}

/// Decides `commands` in `tx` (begun with the batch's first statement), without committing.
async fn decide(
    tx: &WriteTx,
    commands: &[Command],
    stages: &mut Stages,
    last: Option<&ledger::LastPolicies>,
) -> Result<Vec<Result<Written, CommandError>>, Retry> {
    // A panic while deciding is a bug one of these commands met: the transaction is dropped (so
    // nothing of the batch is written), the batch is retried command by command so that only the
    // one that meets the bug fails, and the writer lives on for everyone else.
    let decided = std::panic::AssertUnwindSafe(
        ledger::process_timed(tx, commands, stages, last).instrument(tracing::debug_span!("decide")),
    )
    .catch_unwind()
    .await;
    let decided = decided.unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        tracing::error!(%message, commands = commands.len(), "the write path panicked; the batch was rolled back");
        Err(LedgerError::Panicked(message.to_string()))
    });
    decided.map_err(|e| match e {
        // Decided again from the start; a retry does not foresee, so a missed guess costs one try.
        LedgerError::Race | LedgerError::Misforeseen => Retry::Race,
        e if crate::db::connection_lost(&e) => Retry::ConnectionLost(e.to_string()),
        e => Retry::No(WriteError::Failed(e.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::TestDb;

    #[tokio::test]
    async fn a_commit_that_loses_its_connection_has_an_unknown_outcome_and_one_that_fails_is_a_failure() {
        let db = TestDb::new().await;
        let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
        let pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
        db.pool.get().await.unwrap().execute("SELECT pg_terminate_backend($1, 5000)", &[&pid]).await.unwrap();
        let lost = commit_failed(tx.commit().await.unwrap_err());
        assert!(matches!(lost, WriteError::Unknown(_)), "{lost:?}");

        // A commit the server refuses (a deferred constraint) rolled back for certain.
        let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
        tx.batch_execute(
            "CREATE TEMPORARY TABLE once (v int UNIQUE DEFERRABLE INITIALLY DEFERRED); INSERT INTO once VALUES (1), (1)",
        )
        .await
        .unwrap();
        let refused = commit_failed(tx.commit().await.unwrap_err());
        assert!(matches!(&refused, WriteError::Failed(m) if m.contains("duplicate key")), "{refused:?}");
    }
}
