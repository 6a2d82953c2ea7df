//! What a projection is: a name, the tables it owns, and a fold of a batch of events.

use std::future::Future;

use budget_events::RecordedEvent;
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error(transparent)]
    Read(#[from] budget_events::store::ReadError),
    #[error("database error in projection: {}", budget_events::db::error_message(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("no database connection: {0}")]
    Pool(String),
    #[error("the checkpoint of {0} moved under us; another runner applied this batch, so ours was rolled back")]
    CheckpointMoved(&'static str),
    #[error(
        "the log up to the live checkpoint did not become readable within {0} s: a long transaction holds the \
         log's horizon back (GET /api/health names it); retry once it ends"
    )]
    LogHeldBack(u64),
    /// The one event of the log the projection cannot apply (found by [`crate::runner::apply_or_locate`]).
    #[error("cannot apply event {position} ({event_type}): {source}")]
    Event { position: i64, event_type: String, source: Box<ProjectionError> },
}

impl ProjectionError {
    /// The log position and type of the event that cannot be applied, when it is known.
    pub fn failing_event(&self) -> Option<(i64, &str)> {
        match self {
            ProjectionError::Event { position, event_type, .. } => Some((*position, event_type)),
            _ => None,
        }
    }
}

pub trait Projection: Send + Sync + 'static {
    /// The checkpoint name, also shown in health.
    const NAME: &'static str;
    /// The tables this projection alone writes; a rebuild empties them.
    const TABLES: &'static [&'static str];
    /// Tables it also writes that a rebuild keeps (an outbox); a replay shadows them so that it sends
    /// nothing.
    const SIDE_TABLES: &'static [&'static str] = &[];
    /// Columns a replay does not compare (numbering that differs between folds by design).
    const UNCOMPARED: &'static [&'static str] = &[];

    /// Folds `events` (in log order) into the tables, inside the runner's transaction. Events of types
    /// the projection does not use are ignored here; unknown types never reach it (the reader fails).
    /// Statements go through `tx.prepare_cached`: the runners apply after every commit, and an
    /// unprepared statement costs PostgreSQL a parse and a round trip more each time.
    fn apply(
        &self,
        tx: &Transaction<'_>,
        events: &[RecordedEvent],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;
}

/// `tx.query`, with `sql` prepared once per connection (see [`Projection::apply`]).
pub(crate) async fn query(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.query(&statement, params).await
}

/// `tx.query_opt`, with `sql` prepared once per connection.
pub(crate) async fn query_opt(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.query_opt(&statement, params).await
}

/// `tx.execute`, with `sql` prepared once per connection.
pub(crate) async fn execute(
    tx: &Transaction<'_>,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, tokio_postgres::Error> {
    let statement = tx.prepare_cached(sql).await?;
    tx.execute(&statement, params).await
}
