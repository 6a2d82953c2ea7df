//! What a policy's window already holds when the policy starts counting, read inside the write path's
//! transaction: the usage events whose time falls in the window (usage records live only in the log).
//! The allocations made in it come from [`super::allocations::lock_active_since`].

use crate::db::WriteTx;
use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::domain::policy::Scope;
use crate::event::{Event, RecordedEvent};
use crate::store::read::{decode_row, ReadError, COLUMNS};

/// Usage records (and their corrections) whose `occurred_at` is in `[start, end)`, in log order. Only
/// the scope's provider, model (by [`crate::domain::price::is_model_sql`]), component and task type
/// are filtered here; the caller applies the whole scope, as posting does.
pub async fn usage_between(
    tx: &WriteTx,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    scope: &Scope,
) -> Result<Vec<Event>, ReadError> {
    let logged = usage_logged_between(&***tx, start, end, scope, None).await?;
    Ok(logged.into_iter().map(|e| e.event).collect())
}

/// The same, as logged, and only before log position `before` if given: what an opening balance set
/// at `before` was made of (`budget explain --opening`).
pub async fn usage_logged_between(
    client: &impl GenericClient,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    scope: &Scope,
    before: Option<i64>,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let rows = client
        .query(
            &format!(
                // One parse of each payload for every field (stored as text: each `->>` would parse it again).
                "SELECT {COLUMNS} FROM events,
                     json_to_record(payload::json) AS f(occurred_at text, provider text, model text, component text, task_type text)
                 WHERE event_type IN ('UsageRecorded', 'UsageRepriced')
                   AND f.occurred_at::timestamptz >= $1
                   AND f.occurred_at::timestamptz < $2
                   AND ($3::text IS NULL OR f.provider = $3)
                   AND ($4::text IS NULL OR {model})
                   AND ($5::text IS NULL OR f.component = $5)
                   AND ($6::text IS NULL OR f.task_type = $6)
                   AND ($7::bigint IS NULL OR position < $7)
                 ORDER BY position",
                model = crate::domain::price::is_model_sql("f.provider", "f.model", "$4")
            ),
            &[
                &start,
                &end,
                &scope.provider.as_ref().map(|v| v.as_str()),
                &scope.model.as_ref().map(|v| v.as_str()),
                &scope.component.as_ref().map(|v| v.as_str()),
                &scope.task_type.as_ref().map(|v| v.as_str()),
                &before,
            ],
        )
        .await?;
    rows.iter().map(decode_row).collect()
}
