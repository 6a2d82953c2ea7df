//! HTTP tests: the whole service on port 0 against a fresh database, spoken to over HTTP.

mod alerts;
mod allocations;
mod assistant;
mod browser;
mod connections;
mod contract;
mod dashboard;
mod docs;
mod enforcement;
mod fake_upstream;
mod gateway;
mod health;
mod helpers;
mod keys;
mod metrics;
mod opening;
mod policies;
mod prices;
mod stub;
mod usage_batch;
mod usage_query;
mod usage_record;
mod users;
mod validation;
mod websocket;
