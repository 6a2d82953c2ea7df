//! `budget-events`: the domain and the log.
//!
//! Event types, the pure decisions that turn commands into events, money and period arithmetic, and the
//! PostgreSQL event store (append, gap-safe read, idempotency) with the batching writer in front of it.
//! It depends on no other crate of this workspace.

pub mod audit;
pub mod db;
pub mod decide;
pub mod display;
pub mod domain;
pub mod error_code;
pub mod event;
pub mod ledger;
pub mod money;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod period;
pub mod store;
mod summary;
pub mod timestamp;
pub mod writer;

pub use error_code::ErrorCode;
pub use event::{Event, EventMetadata, NewEvent, RecordedEvent};
pub use money::Money;
