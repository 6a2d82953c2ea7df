//! Integration tests of the event store against a real PostgreSQL (a fresh database per test).

mod accounts;
mod batches;
mod cluster;
mod helpers;
mod idempotency;
mod migrations;
mod model_filter;
mod notify;
mod reader;
mod store;
mod tail;
