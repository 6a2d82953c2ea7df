//! `budget-api`: the REST API (actix-web) and its OpenAPI document.
//!
//! Routes read projection tables and the log, and write only through `budget-events`' batching
//! writer; [`dashboard`] serves the page at `/` that reads them. [`startup::Application`] assembles
//! the whole service: migrations, the writer, the projection workers and the HTTP server.

pub mod assistant;
pub mod auth;
pub mod body;
pub mod configuration;
pub mod consistency;
pub mod dashboard;
pub mod error;
pub mod gateway;
pub mod metrics;
pub mod offers;
pub mod openapi;
pub mod panics;
pub mod price_book;
pub mod price_sources;
pub mod query;
pub mod request;
pub mod request_id;
pub mod routes;
pub mod scope_notes;
pub mod startup;
pub mod state;
pub mod supervision;
pub mod ws;

pub use configuration::Settings;
pub use startup::Application;
