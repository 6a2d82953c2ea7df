//! One snapshot for an answer read by several statements.
//!
//! A projection commits between any two statements of a request; an answer whose totals come from one
//! statement and its groups from another could then disagree (totals of 0 beside a group of 1, seen
//! while records arrived). A read-only `REPEATABLE READ` transaction reads them all as of its first.

use crate::error::ApiError;

/// Starts the read-only transaction; commit it (or drop it) before any network I/O.
pub async fn snapshot(client: &mut deadpool_postgres::Object) -> Result<deadpool_postgres::Transaction<'_>, ApiError> {
    Ok(client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}
