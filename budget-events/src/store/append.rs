//! Appending to the log: one multi-row insert per transaction, with per-stream optimistic concurrency.
//!
//! The caller's transaction is used as is, so events commit (or not) together with whatever else that
//! transaction writes: accounts, idempotency outcomes. The unique `(stream_id, stream_version)` index
//! is the backstop when two processes race on the same stream.

use std::collections::HashMap;

use crate::db::WriteTx;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::event::NewEvent;

/// What the appender believes the stream's version to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this version.
    Exact(i64),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `actual` (0 = no stream) meets the expectation.
    pub fn accepts(self, actual: i64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream_id: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendedEvent {
    pub event_id: Uuid,
    pub stream_id: String,
    pub stream_version: i64,
    pub position: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream_id} is at version {actual}, not the expected {expected:?}; reload and retry")]
    Conflict { stream_id: String, expected: ExpectedVersion, actual: i64 },
    #[error("another writer appended to the same stream concurrently; the transaction was abandoned, retry it")]
    ConcurrentAppend(#[source] tokio_postgres::Error),
    #[error("database error while appending: {}", crate::db::error_message(.0))]
    Db(#[from] tokio_postgres::Error),
}

/// Checks every stream's expected version, then appends all events, in order, in `tx`.
/// Nothing is written when any expectation fails.
pub async fn append(tx: &WriteTx, streams: &[StreamAppend]) -> Result<Vec<AppendedEvent>, AppendError> {
    let ids: Vec<&str> = streams.iter().map(|s| s.stream_id.as_str()).collect();
    let mut versions = current_versions(tx, &ids).await?;
    let mut rows = Vec::new();
    for stream in streams {
        let actual = versions.get(&stream.stream_id).copied().unwrap_or(0);
        if !stream.expected.accepts(actual) {
            return Err(AppendError::Conflict {
                stream_id: stream.stream_id.clone(),
                expected: stream.expected,
                actual,
            });
        }
        let mut version = actual;
        for event in &stream.events {
            version += 1;
            rows.push((stream.stream_id.as_str(), version, event));
        }
        versions.insert(stream.stream_id.clone(), version);
    }
    insert_events(tx, &rows).await
}

/// The last version of each of `stream_ids` that exists (absent streams are left out).
pub async fn current_versions(tx: &WriteTx, stream_ids: &[&str]) -> Result<HashMap<String, i64>, AppendError> {
    if stream_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = tx
        .query(
            &tx.prepare_cached("SELECT stream_id, max(stream_version) AS version FROM events WHERE stream_id = ANY($1) GROUP BY stream_id").await?,
            &[&stream_ids],
        )
        .await?;
    Ok(rows.into_iter().map(|r| (r.get("stream_id"), r.get("version"))).collect())
}

/// The log positions of `event_ids` that are in the log (the write path's answer to a retry names the
/// events its first answer wrote).
pub async fn positions_of(tx: &WriteTx, event_ids: &[Uuid]) -> Result<HashMap<Uuid, i64>, tokio_postgres::Error> {
    if event_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let statement = tx.prepare_cached("SELECT event_id, position FROM events WHERE event_id = ANY($1)").await?;
    let rows = tx.query(&statement, &[&event_ids]).await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Events per `INSERT` of [`insert_events`]: a writer batch of single records (~32 events) is one
/// statement; a batch of 2,000 is eight, each encoded while PostgreSQL inserts the one before.
const EVENTS_PER_INSERT: usize = 256;

/// Inserts pre-versioned events; positions follow the order of `rows`. Callers must have checked the
/// versions ([`append`] does).
///
/// A big batch goes in several statements, pipelined on the connection: each chunk's payloads are
/// turned into JSON text and sent while PostgreSQL runs the chunk before, instead of PostgreSQL waiting
/// for the whole batch to be encoded and the writer waiting for the whole insert (`budget bench`'s
/// batch phase: encoding 2,000 events took about a fifth of the insert's time, on the writer's path).
/// PostgreSQL runs one connection's statements in order, so positions still follow `rows`.
pub async fn insert_events(tx: &WriteTx, rows: &[(&str, i64, &NewEvent)]) -> Result<Vec<AppendedEvent>, AppendError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let statement = tx
        .prepare_cached(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload, metadata)
             SELECT s, v, e, ty, sv, p, m FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[])
                 WITH ORDINALITY AS t(s, v, e, ty, sv, p, m, ord)
             ORDER BY ord
             RETURNING event_id, stream_id, stream_version, position",
        )
        .await?;
    // Each chunk's `INSERT` is sent in order: a tokio-postgres query is sent when its future is first
    // polled, so each is polled once here, in turn, before the next chunk is encoded. (Polled by
    // `join_all` instead, they went out of order past 30 chunks, and a stream's later version could
    // take an earlier position: `store.rs::a_big_append_keeps_its_events_in_order_in_the_log`.)
    let mut sent = Vec::new();
    for (index, chunk) in rows.chunks(EVENTS_PER_INSERT).enumerate() {
        let mut insert = Box::pin(insert_chunk(tx, &statement, chunk));
        let first = futures_util::poll!(insert.as_mut());
        sent.push((insert, first));
        if index == 0 {
            // Let the connection's task send the first (and PostgreSQL start on it) while the rest
            // are encoded on this thread. Only once, as `join_all` did: a yield puts the writer
            // behind every task that is ready, and the writer's batch time bounds ingest.
            tokio::task::yield_now().await;
        }
    }
    // Every chunk is answered (after a failed one, the rest fail as the transaction is aborted); the
    // first failure in order is the one that says why.
    let mut appended = Vec::with_capacity(rows.len());
    let mut failed = None;
    for (insert, first) in sent {
        let inserted = match first {
            std::task::Poll::Ready(inserted) => inserted,
            std::task::Poll::Pending => insert.await,
        };
        match inserted {
            Ok(rows) => appended.extend(rows),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    // Asserted, not sorted: sorting by position here is what hid the chunks going out of order.
    assert!(
        appended.len() == rows.len()
            && appended.iter().zip(rows).all(|(a, (_, _, event))| a.event_id == event.event_id)
            && appended.windows(2).all(|w| w[0].position < w[1].position),
        "the log's positions follow the order the events were sent in"
    );
    Ok(appended)
}

/// One `INSERT` of [`insert_events`].
async fn insert_chunk(
    tx: &WriteTx,
    statement: &tokio_postgres::Statement,
    rows: &[(&str, i64, &NewEvent)],
) -> Result<Vec<AppendedEvent>, AppendError> {
    let mut stream_ids = Vec::with_capacity(rows.len());
    let mut versions = Vec::with_capacity(rows.len());
    let mut event_ids = Vec::with_capacity(rows.len());
    let mut types = Vec::with_capacity(rows.len());
    let mut schema_versions = Vec::with_capacity(rows.len());
    let mut payloads = Vec::with_capacity(rows.len());
    let mut metadata: Vec<String> = Vec::with_capacity(rows.len());
    // The events of one request share their metadata (a batch request's thousand records): it is
    // turned into text once per run of equal metadata, not once per event.
    let mut previous: Option<&crate::event::EventMetadata> = None;
    for (stream_id, version, event) in rows {
        stream_ids.push(*stream_id);
        versions.push(*version);
        event_ids.push(event.event_id);
        types.push(event.event.event_type());
        schema_versions.push(event.event.schema_version());
        // As JSON text, stored as is (`text`, see schema/0020_unvalidated_text.sql): building a
        // `serde_json::Value` tree first cost an allocation per field, per event (perf, batch ingest).
        payloads.push(event.event.payload_text());
        let text = match (previous, metadata.last()) {
            (Some(before), Some(text)) if *before == event.metadata => text.clone(),
            _ => serde_json::to_string(&event.metadata).expect("metadata always serializes"),
        };
        metadata.push(text);
        previous = Some(&event.metadata);
    }
    let inserted = tx
        .query(statement, &[&stream_ids, &versions, &event_ids, &types, &schema_versions, &payloads, &metadata])
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                AppendError::ConcurrentAppend(e)
            } else {
                AppendError::Db(e)
            }
        })?;
    Ok(inserted
        .into_iter()
        .map(|r| AppendedEvent {
            event_id: r.get("event_id"),
            stream_id: r.get("stream_id"),
            stream_version: r.get("stream_version"),
            position: r.get("position"),
        })
        .collect())
}
