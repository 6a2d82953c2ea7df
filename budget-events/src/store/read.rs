//! Reading the log in commit-safe order.
//!
//! Positions are taken at INSERT but rows appear at COMMIT, so `position > cursor` would skip an event
//! whose transaction commits after a later one. We order by `(tx_id, position)` and read only events of
//! transactions older than the oldest one still running (`pg_snapshot_xmin`): everything below that line
//! has committed or aborted for good, so nothing can appear behind the cursor afterwards.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::event::{DecodeError, Event, EventMetadata, RecordedEvent};

/// A place in the log, in reading order. `Cursor::START` is before the first event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    pub tx_id: u64,
    pub position: i64,
}

impl Cursor {
    pub const START: Cursor = Cursor { tx_id: 0, position: 0 };

    pub fn after(event: &RecordedEvent) -> Cursor {
        Cursor { tx_id: event.tx_id, position: event.position }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("database error while reading the log: {}", crate::db::error_message(.0))]
    Db(#[from] tokio_postgres::Error),
}

// `tx_text`, not `tx_id`: an output column named like the table's would be what `ORDER BY tx_id` sorts
// by, and as text "10002" sorts before "9977".
pub(crate) const COLUMNS: &str =
    "position, tx_id::text AS tx_text, stream_id, stream_version, event_id, event_type, schema_version, \
                       payload, metadata, recorded_at";

/// Up to `limit` events after `cursor` whose transactions can no longer change, oldest first.
pub async fn read_after(
    client: &impl GenericClient,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, ReadError> {
    read_from(client, cursor, limit, true).await
}

async fn read_from(
    client: &impl GenericClient,
    cursor: Cursor,
    limit: i64,
    settled_only: bool,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let tx_text = cursor.tx_id.to_string();
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM events
                 WHERE (tx_id, position) > ($1::text::xid8, $2)
                   AND (NOT $4 OR tx_id < pg_snapshot_xmin(pg_current_snapshot()))
                 ORDER BY tx_id, position
                 LIMIT $3"
            ),
            &[&tx_text, &cursor.position, &limit, &settled_only],
        )
        .await?;
    let events: Vec<RecordedEvent> = rows.iter().map(decode_row).collect::<Result<_, _>>()?;
    // The reading order is the cursor order: every event lies past the cursor and past the one before.
    let mut previous = cursor;
    for event in &events {
        let at = Cursor::after(event);
        assert!(at > previous, "the log reader went backwards: {at:?} after {previous:?}");
        previous = at;
    }
    Ok(events)
}

/// The cursor after the last event that can no longer change: a reader starting here sees only what
/// is appended (or still committing) from now on.
pub async fn settled_end(client: &impl GenericClient) -> Result<Cursor, ReadError> {
    let row = client
        .query_opt(
            "SELECT tx_id::text AS tx_text, position FROM events
             WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY tx_id DESC, position DESC LIMIT 1",
            &[],
        )
        .await?;
    Ok(row.map_or(Cursor::START, |r| Cursor {
        tx_id: r.get::<_, String>("tx_text").parse().expect("xid8 is an unsigned 64-bit integer"),
        position: r.get("position"),
    }))
}

/// Events after `position` up to `until` (in reading order), oldest first: what a reconnecting
/// WebSocket client missed (`?since=`), bounded by what the live feed has already sent.
pub async fn read_since(
    client: &impl GenericClient,
    position: i64,
    until: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let tx_text = until.tx_id.to_string();
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM events
                 WHERE position > $1 AND (tx_id, position) <= ($2::text::xid8, $3)
                 ORDER BY tx_id, position
                 LIMIT $4"
            ),
            &[&position, &tx_text, &until.position, &limit],
        )
        .await?;
    rows.iter().map(decode_row).collect()
}

/// Which events to list (`GET /api/events`, `budget audit`), oldest first, paged by position.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events at positions after this one (the previous page's last position).
    pub after: i64,
    pub event_types: Vec<String>,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub component: Option<String>,
    pub context_id: Option<String>,
    /// Events about these policies: posted to one of them, or setting one.
    pub policy_ids: Vec<Uuid>,
    /// Events about this budget (its own events; with `policy_ids`, usage posted to its policies).
    pub budget_id: Option<Uuid>,
    /// Time range: when the call happened for usage, when it was recorded otherwise.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// A page of events matching `filter`, oldest first by position.
pub async fn events(client: &impl GenericClient, f: &EventFilter) -> Result<Vec<RecordedEvent>, ReadError> {
    let types: Option<&Vec<String>> = (!f.event_types.is_empty()).then_some(&f.event_types);
    let policies: Option<&Vec<Uuid>> = (!f.policy_ids.is_empty()).then_some(&f.policy_ids);
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM events
                 WHERE position > $1
                   AND ($2::text[] IS NULL OR event_type = ANY($2))
                   AND ($3::text IS NULL OR payload->>'provider' = $3 OR payload->'spec'->>'provider' = $3)
                   AND ($4::text IS NULL OR payload->>'model' = $4 OR payload->'spec'->>'model' = $4)
                   AND ($5::text IS NULL OR payload->>'component' = $5)
                   AND ($6::text IS NULL OR payload->>'context_id' = $6)
                   AND (($7::uuid[] IS NULL AND $8::uuid IS NULL)
                        OR (payload->>'policy_id')::uuid = ANY($7)
                        OR (payload->>'budget_id')::uuid = $8
                        OR EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(payload->'postings', payload->'reservations', '[]'))
                                   AS p WHERE (p->>'policy_id')::uuid = ANY($7)))
                   AND ($9::timestamptz IS NULL OR coalesce((payload->>'occurred_at')::timestamptz, recorded_at) >= $9)
                   AND ($10::timestamptz IS NULL OR coalesce((payload->>'occurred_at')::timestamptz, recorded_at) < $10)
                 ORDER BY position
                 LIMIT $11"
            ),
            &[
                &f.after,
                &types,
                &f.provider,
                &f.model,
                &f.component,
                &f.context_id,
                &policies,
                &f.budget_id,
                &f.since,
                &f.until,
                &f.limit,
            ],
        )
        .await?;
    rows.iter().map(decode_row).collect()
}

/// Up to `limit` events after `cursor` that the caller's snapshot sees, in (transaction, position)
/// order. Inside a REPEATABLE READ transaction this is the whole log as that snapshot has it, with no
/// regard to transactions still running (they are not in the snapshot): what a consistent check of
/// the write-side tables against the log needs.
pub async fn read_visible_after(
    client: &impl GenericClient,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, ReadError> {
    read_from(client, cursor, limit, false).await
}

/// Every event of one stream, in version order.
pub async fn read_stream(client: &impl GenericClient, stream_id: &str) -> Result<Vec<RecordedEvent>, ReadError> {
    let rows = client
        .query(&format!("SELECT {COLUMNS} FROM events WHERE stream_id = $1 ORDER BY stream_version"), &[&stream_id])
        .await?;
    rows.iter().map(decode_row).collect()
}

pub(crate) fn decode_row(row: &tokio_postgres::Row) -> Result<RecordedEvent, ReadError> {
    let position: i64 = row.get("position");
    let tx_text: String = row.get("tx_text");
    let event_type: String = row.get("event_type");
    let schema_version: i32 = row.get("schema_version");
    let payload: serde_json::Value = row.get("payload");
    let metadata: serde_json::Value = row.get("metadata");
    let event = Event::decode(position, &event_type, schema_version, payload)?;
    let metadata: EventMetadata = serde_json::from_value(metadata).map_err(|source| DecodeError::BadPayload {
        position,
        event_type: format!("{event_type} metadata"),
        source,
    })?;
    Ok(RecordedEvent {
        position,
        tx_id: tx_text.parse().expect("xid8 is an unsigned 64-bit integer"),
        stream_id: row.get("stream_id"),
        stream_version: row.get("stream_version"),
        event_id: row.get::<_, Uuid>("event_id"),
        event,
        metadata,
        recorded_at: row.get::<_, DateTime<Utc>>("recorded_at"),
    })
}

/// Which usage records to list from the log (newest first), paged by position.
#[derive(Debug, Clone, Default)]
pub struct UsageRecordFilter {
    pub provider: Option<String>,
    pub model: Option<String>,
    pub component: Option<String>,
    pub task_type: Option<String>,
    pub context_id: Option<String>,
    /// Only records at positions below this one (the previous page's last position).
    pub before: Option<i64>,
    pub limit: i64,
}

/// Usage records straight from the log, newest first. A listing, not a projection: it shows what is
/// committed now, and the cursor is only a page marker.
pub async fn usage_records(
    client: &impl GenericClient,
    filter: &UsageRecordFilter,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM events
                 WHERE event_type = 'UsageRecorded'
                   AND ($1::bigint IS NULL OR position < $1)
                   AND ($2::text IS NULL OR payload->>'provider' = $2)
                   AND ($3::text IS NULL OR payload->>'model' = $3)
                   AND ($4::text IS NULL OR payload->>'component' = $4)
                   AND ($5::text IS NULL OR payload->>'task_type' = $5)
                   AND ($6::text IS NULL OR payload->>'context_id' = $6)
                 ORDER BY position DESC
                 LIMIT $7"
            ),
            &[
                &filter.before,
                &filter.provider,
                &filter.model,
                &filter.component,
                &filter.task_type,
                &filter.context_id,
                &filter.limit,
            ],
        )
        .await?;
    rows.iter().map(decode_row).collect()
}
