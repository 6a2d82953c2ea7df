//! `budget-projections`: workers that fold the event log into read tables.
//!
//! A projection is a name, the tables it owns and a fold of a batch of events ([`Projection`]). The
//! [`runner`] applies batches and moves the projection's checkpoint in the same transaction, so a batch
//! is applied exactly once whatever crashes; the checkpoint row is locked `FOR UPDATE SKIP LOCKED`, so
//! two processes never run one projection at once. Each projection's own file also holds the queries
//! that read its tables, so its SQL lives in one place.

pub mod alerts;
pub mod health;
pub mod projection;
pub mod replay;
pub mod runner;
pub mod usage_rollups;
pub mod webhooks;

pub use projection::{Projection, ProjectionError};
pub use runner::{rebuild, Runner, RunnerStatus, Step};
