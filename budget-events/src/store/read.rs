//! Reading the log in commit-safe order.
//!
//! Positions are taken at INSERT but rows appear at COMMIT, so `position > cursor` would skip an event
//! whose transaction commits after a later one. We order by `(tx_id, position)` and read only events of
//! transactions older than the *horizon* ([`HORIZON`]): the oldest transaction still running that could
//! append to this database's log. Everything below it has committed or aborted for good, so nothing can
//! appear behind the cursor afterwards.
//!
//! The horizon is not `pg_snapshot_xmin`, which is cluster-wide: a write transaction held open in
//! another database of the same server (a migration, a batch job) would freeze every projection and the
//! WebSocket hub until it ended. It is the smallest transaction id running at the statement's snapshot
//! that is not positively known to belong to another database, or the snapshot's `xmax` if there is none.
//! Why that is safe, with S the statement's snapshot (the horizon and the scan share it):
//! - an id below `xmin(S)` has ended, and its rows are visible to S or never will be;
//! - an id in `[xmin(S), xmax(S))` that S does not list as running had ended when S was taken: visible;
//! - an id S lists as running is excluded only when `pg_stat_activity` or `pg_prepared_xacts` shows it
//!   held by a session or prepared transaction of another database. An id stays with its transaction
//!   until that ends, and a transaction of another database cannot write our `events`, so it has no rows
//!   here to skip. An id that cannot be placed (its session ended meanwhile, its database is unknown, a
//!   subtransaction) is kept, which can only hold the horizon back, never skip an event.
//! - an id S lists as running is also excluded when it belongs to a transaction that marked itself as
//!   one that never appends ([`MARK_NON_APPENDER`]: the projections' steps, replays and rebuilds, which
//!   hold a transaction id from their checkpoint's row lock to their commit). Both the mark and the
//!   lock every transaction holds on its own id are read from one `pg_lock_status()` call, which copies
//!   the lock table under all its partition locks: so the mark seen is the one of the transaction that
//!   holds that id, not of a later transaction of the same session. Only a `WriteTx` appends, and none
//!   takes the mark. Measured before (`budget bench`, `pg_stat_activity` sampled every 2 ms): the
//!   oldest running id was a projection step's half of the time, so a commit's events usually waited
//!   for a step that had begun before it.
//!
//! `backend_xid` is 32 bits and snapshot ids are 64; they are compared modulo 2^32, which is exact for
//! ids running at the same time (they are less than 2^31 apart).

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
    #[error("no database connection to read the log with: {0}")]
    Unavailable(String),
}

/// How `pg_locks` shows [`NON_APPENDER_LOCK`] (a bigint advisory key: its high and low 32 bits, and
/// `objsubid` 1): one literal for the horizon and for [`horizon_holders`].
macro_rules! non_appender_mark {
    ($alias:literal) => {
        concat!(
            $alias,
            ".locktype = 'advisory' AND ",
            $alias,
            ".granted AND ",
            $alias,
            ".classid = 29285 AND ",
            $alias,
            ".objid = 1633969522 AND ",
            $alias,
            ".objsubid = 1"
        )
    };
}

/// The log's horizon for the statement that includes it: a scalar subquery calling `log_horizon()`
/// (`schema/0019_log_horizon.sql`), which works it out as described above on the calling statement's
/// own snapshot (a STABLE function takes none of its own), so the scan of `events` beside it and the
/// horizon share the snapshot the reasoning needs. `the_horizon_and_the_scan_share_a_snapshot` (in
/// `budget-events/tests`) commits a transaction while a reading statement sleeps and checks that the
/// horizon that statement gets stays below it.
///
/// Other databases' transactions are read from `pg_stat_get_activity` and `pg_prepared_xact` rather
/// than the `pg_stat_activity` and `pg_prepared_xacts` views: the same rows, but planning the views
/// made every log read cost 2.3 ms of the server's CPU instead of 0.9 ms (300 reads in one session),
/// and the projections and the WebSocket hub read the log after every commit. It is a function, not a
/// CTE of each read, for the same reason: the service plans every statement with its parameters
/// (`db::pool`), and planning that CTE cost more than running it (0.41 against 0.30 ms per read,
/// `pg_stat_statements` with `track_planning` over a `budget bench` run); the function's plan is made
/// once per connection.
pub(crate) const HORIZON: &str = "(SELECT log_horizon())";

/// The advisory lock a transaction that never appends to the log takes, so that the log's readers do
/// not wait for it ([`HORIZON`]). Taken shared: any number of such transactions hold it at once.
pub const NON_APPENDER_LOCK: i64 = 0x7265_6164_6572; // "reader"

/// A call that takes [`NON_APPENDER_LOCK`] for the rest of the transaction, for a statement's select
/// list. A transaction that has taken it must never append to the log.
pub const MARK_NON_APPENDER: &str = "pg_advisory_xact_lock_shared(125779751232882)";

// `tx_text`, not `tx_id`: an output column named like the table's would be what `ORDER BY tx_id` sorts
// by, and as text "10002" sorts before "9977". Payload and metadata come as text, decoded straight into
// the event's type: through `serde_json::Value` first, each event was parsed twice (a replay spent a
// third of its time there; perf during `budget bench`).
pub(crate) const COLUMNS: &str =
    "position, tx_id::text AS tx_text, stream_id, stream_version, event_id, event_type, schema_version, \
                       payload::text AS payload_text, metadata::text AS metadata_text, recorded_at";

/// [`COLUMNS`] without the metadata, for the reads that fold the log: no projection and no WebSocket
/// message looks at who wrote an event, and sending and decoding it was about a fifth of each event's
/// text (a replay is bound by decoding, `budget bench`).
const FOLD_COLUMNS: &str =
    "position, tx_id::text AS tx_text, stream_id, stream_version, event_id, event_type, schema_version, \
                       payload::text AS payload_text, NULL::text AS metadata_text, recorded_at";

/// Up to `limit` events after `cursor` whose transactions can no longer change, oldest first.
pub async fn read_after(
    client: &impl GenericClient,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, ReadError> {
    read_from(client, cursor, limit, true).await
}

/// [`read_after`] without the events' metadata ([`FOLD_COLUMNS`]), as a statement prepared once per
/// connection (deadpool's statement cache). The projections and the WebSocket hub read after every
/// commit; unprepared, each read was parsed and planned again: about 0.45 ms of PostgreSQL's CPU, the
/// biggest item after COMMIT in the statement log of a `budget bench --gateway` run.
/// It decodes in slices, yielding to the runtime after each ([`DECODED_BETWEEN_YIELDS`]).
pub async fn read_after_cached(
    client: &impl deadpool_postgres::GenericClient,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<RecordedEvent>, ReadError> {
    let statement = client.prepare_cached(&read_sql(FOLD_COLUMNS)).await?;
    let rows = client.query(&statement, &[&cursor.tx_id.to_string(), &cursor.position, &limit, &true]).await?;
    let mut decoded = Vec::with_capacity(rows.len());
    for slice in rows.chunks(DECODED_BETWEEN_YIELDS) {
        for row in slice {
            decoded.push(decode_row(row)?);
        }
        tokio::task::yield_now().await;
    }
    check_order(cursor, &decoded);
    Ok(decoded)
}

/// Events decoded between two yields of the projections' and the hub's reads. Decoded in one stretch,
/// a page of a writer batch of 2,000 records held one of the runtime's two threads for up to ~10 ms
/// (an estimate from the replay's 150,000–200,000 events/s, its folding included) while the writer
/// waited for a thread to take its next answer from PostgreSQL. Measured: single records 0.64–0.74×
/// → 0.68–0.82× their ceiling in six alternating pairs of `budget bench` (2026-12-02).
const DECODED_BETWEEN_YIELDS: usize = 64;

fn read_sql(columns: &str) -> String {
    format!(
        "SELECT {columns} FROM events
         WHERE (tx_id, position) > ($1::text::xid8, $2)
           AND (NOT $4 OR tx_id < {HORIZON})
         ORDER BY tx_id, position
         LIMIT $3"
    )
}

async fn read_from(
    client: &impl GenericClient,
    cursor: Cursor,
    limit: i64,
    settled_only: bool,
) -> Result<Vec<RecordedEvent>, ReadError> {
    read_raw(client, COLUMNS, cursor, limit, settled_only).await?.decode()
}

async fn read_raw(
    client: &impl GenericClient,
    columns: &str,
    cursor: Cursor,
    limit: i64,
    settled_only: bool,
) -> Result<RawPage, ReadError> {
    let tx_text = cursor.tx_id.to_string();
    let rows = client.query(&read_sql(columns), &[&tx_text, &cursor.position, &limit, &settled_only]).await?;
    Ok(RawPage { after: cursor, rows })
}

/// A page of the log as the server sent it, not yet decoded. A reader can ask for the next page (from
/// [`RawPage::next`]) while this one is decoded on another thread: the replay's reader does, so that
/// PostgreSQL producing one page, decoding the one before and applying the one before that overlap.
pub struct RawPage {
    after: Cursor,
    rows: Vec<tokio_postgres::Row>,
}

impl RawPage {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The cursor after the page's last event (`None` for an empty page).
    pub fn next(&self) -> Option<Cursor> {
        self.rows.last().map(raw_cursor)
    }

    /// Drops the events past `end`.
    pub fn truncate_after(&mut self, end: Cursor) {
        let keep = self.rows.iter().take_while(|r| raw_cursor(r) <= end).count();
        self.rows.truncate(keep);
    }

    pub fn decode(self) -> Result<Vec<RecordedEvent>, ReadError> {
        checked(self.after, self.rows)
    }
}

fn raw_cursor(row: &tokio_postgres::Row) -> Cursor {
    let tx_text: &str = row.get("tx_text");
    Cursor { tx_id: tx_text.parse().expect("xid8 is an unsigned 64-bit integer"), position: row.get("position") }
}

/// [`read_after`] without the events' metadata ([`FOLD_COLUMNS`]), undecoded: the replay's reader.
pub async fn read_raw_after(client: &impl GenericClient, cursor: Cursor, limit: i64) -> Result<RawPage, ReadError> {
    read_raw(client, FOLD_COLUMNS, cursor, limit, true).await
}

/// Decodes the rows of a read after `cursor`, asserting they come in reading order.
fn checked(cursor: Cursor, rows: Vec<tokio_postgres::Row>) -> Result<Vec<RecordedEvent>, ReadError> {
    let events: Vec<RecordedEvent> = rows.iter().map(decode_row).collect::<Result<_, _>>()?;
    check_order(cursor, &events);
    Ok(events)
}

/// The reading order is the cursor order: every event lies past the cursor and past the one before.
fn check_order(cursor: Cursor, events: &[RecordedEvent]) {
    let mut previous = cursor;
    for event in events {
        let at = Cursor::after(event);
        assert!(at > previous, "the log reader went backwards: {at:?} after {previous:?}");
        previous = at;
    }
}

/// The cursor after the last event that can no longer change: a reader starting here sees only what
/// is appended (or still committing) from now on.
pub async fn settled_end(client: &impl GenericClient) -> Result<Cursor, ReadError> {
    let row = client
        .query_opt(
            &format!(
                "SELECT tx_id::text AS tx_text, position FROM events
                 WHERE tx_id < {HORIZON}
                 ORDER BY tx_id DESC, position DESC LIMIT 1"
            ),
            &[],
        )
        .await?;
    Ok(row.map_or(Cursor::START, |r| Cursor {
        tx_id: r.get::<_, String>("tx_text").parse().expect("xid8 is an unsigned 64-bit integer"),
        position: r.get("position"),
    }))
}

/// A transaction of this database that has held the log's horizon back for a while: every projection
/// and the WebSocket hub wait for it, so `/api/health` names it for an operator to act on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HorizonHolder {
    pub pid: i32,
    pub age_seconds: f64,
    pub application_name: String,
    /// `active`, `idle in transaction`…
    pub state: Option<String>,
}

/// The write transactions of this database open for longer than `seconds`, oldest first (at most 5),
/// leaving out the ones marked as never appending (they do not hold the horizon back).
pub async fn horizon_holders(client: &impl GenericClient, seconds: f64) -> Result<Vec<HorizonHolder>, ReadError> {
    let rows = client
        .query(
            concat!(
                "SELECT pid, EXTRACT(EPOCH FROM now() - xact_start)::float8 AS age_seconds, application_name, state
                 FROM pg_stat_activity
                 WHERE datname = current_database() AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()
                   AND xact_start < now() - make_interval(secs => $1)
                   AND pid NOT IN (SELECT l.pid FROM pg_locks l WHERE ",
                non_appender_mark!("l"),
                ")
                 ORDER BY xact_start LIMIT 5"
            ),
            &[&seconds],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| HorizonHolder {
            pid: r.get("pid"),
            age_seconds: r.get("age_seconds"),
            application_name: r.get("application_name"),
            state: r.get("state"),
        })
        .collect())
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
                // One parse of each payload for every field (stored as text: each `->>` would parse it again).
                // A release or an expiry names only its allocation: it is matched by the fields of the
                // allocation's creation (its stream's first event), so that a task's events, or a
                // component's, include how each of its reservations ended.
                "SELECT {COLUMNS} FROM events,
                     LATERAL (SELECT CASE WHEN event_type IN ('AllocationReleased', 'AllocationExpired')
                                  THEN (SELECT c.payload FROM events c
                                        WHERE c.stream_id = events.stream_id AND c.stream_version = 1)
                                  ELSE payload END AS about) AS a,
                     json_to_record(a.about::json) AS f(provider text, model text, spec json, component text, context_id text,
                                                  policy_id text, budget_id text, postings json, reservations json,
                                                  occurred_at text)
                 WHERE position > $1
                   AND ($2::text[] IS NULL OR event_type = ANY($2))
                   AND ($3::text IS NULL OR f.provider = $3 OR f.spec->>'provider' = $3)
                   AND ($4::text IS NULL OR {model} OR f.spec->>'model' = $4)
                   AND ($5::text IS NULL OR f.component = $5)
                   AND ($6::text IS NULL OR f.context_id = $6)
                   AND (($7::uuid[] IS NULL AND $8::uuid IS NULL)
                        OR f.policy_id::uuid = ANY($7)
                        OR f.budget_id::uuid = $8
                        OR EXISTS (SELECT 1 FROM json_array_elements(coalesce(f.postings, f.reservations, '[]'))
                                   AS p WHERE (p->>'policy_id')::uuid = ANY($7)))
                   AND ($9::timestamptz IS NULL OR coalesce(f.occurred_at::timestamptz, recorded_at) >= $9)
                   AND ($10::timestamptz IS NULL OR coalesce(f.occurred_at::timestamptz, recorded_at) < $10)
                 ORDER BY position
                 LIMIT $11",
                model = crate::domain::price::is_model_sql("f.provider", "f.model", "$4")
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
    let payload: &str = row.get("payload_text");
    let metadata: Option<&str> = row.get("metadata_text");
    let event = Event::decode_text(position, &event_type, schema_version, payload)?;
    let metadata: Option<EventMetadata> = metadata
        .map(serde_json::from_str)
        .transpose()
        .map_err(|source| DecodeError::BadPayload { position, event_type: format!("{event_type} metadata"), source })?;
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
                "SELECT {COLUMNS} FROM events,
                     json_to_record(payload::json) AS f(provider text, model text, component text, task_type text,
                                                        context_id text)
                 WHERE event_type = 'UsageRecorded'
                   AND ($1::bigint IS NULL OR position < $1)
                   AND ($2::text IS NULL OR f.provider = $2)
                   AND ($3::text IS NULL OR {model})
                   AND ($4::text IS NULL OR f.component = $4)
                   AND ($5::text IS NULL OR f.task_type = $5)
                   AND ($6::text IS NULL OR f.context_id = $6)
                 ORDER BY position DESC
                 LIMIT $7",
                model = crate::domain::price::is_model_sql("f.provider", "f.model", "$3")
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

#[cfg(test)]
mod mark_tests {
    use super::*;

    #[test]
    fn the_horizon_looks_for_the_mark_that_non_appenders_take() {
        // pg_locks shows a bigint advisory key as its high and low 32 bits, with objsubid 1.
        let (high, low) = (NON_APPENDER_LOCK >> 32, NON_APPENDER_LOCK & 0xffff_ffff);
        assert_eq!(
            non_appender_mark!("m"),
            format!(
                "m.locktype = 'advisory' AND m.granted AND m.classid = {high} AND m.objid = {low} AND m.objsubid = 1"
            )
        );
        let function = crate::db::migrate::MIGRATIONS.iter().find(|m| m.name == "0019_log_horizon").unwrap();
        assert!(function.sql.contains(non_appender_mark!("mark")), "log_horizon() looks for NON_APPENDER_LOCK");
        assert_eq!(MARK_NON_APPENDER, format!("pg_advisory_xact_lock_shared({NON_APPENDER_LOCK})"));
    }
}
