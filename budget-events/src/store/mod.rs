//! The Postgres event store: append with optimistic concurrency, the gap-safe reader, idempotency.

pub mod accounts;
pub mod allocations;
pub mod append;
pub mod idempotency;
pub mod keys;
pub mod notify;
pub mod opening;
pub mod policies;
pub mod prices;
pub mod read;
pub mod repricing;
pub mod tail;

pub use append::{append, current_versions, insert_events, AppendError, AppendedEvent, ExpectedVersion, StreamAppend};
pub use read::{
    events, horizon_holders, read_after, read_after_cached, read_since, read_visible_after, settled_end, usage_records,
    Cursor, EventFilter, HorizonHolder, ReadError, UsageRecordFilter, MARK_NON_APPENDER, NON_APPENDER_LOCK,
};
pub use tail::{LogTail, TailEvents};
