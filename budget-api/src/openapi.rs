//! The OpenAPI document of every route, served at `/api/openapi.json` and shown by Swagger UI at
//! `/api/docs` (embedded, so it works offline).

use utoipa::OpenApi;

use crate::routes::{health, usage, usage_query};

#[derive(OpenApi)]
#[openapi(
    info(title = "Budget", description = "LLM spending under control: usage, budgets, allocations, prices, alerts."),
    paths(
        health::health,
        usage::record_one,
        usage::record_batch,
        usage_query::usage,
        usage_query::summary,
        usage_query::records,
    ),
    components(schemas(crate::error::ErrorBody, budget_events::domain::UsageInput)),
    tags(
        (name = "usage", description = "Record and query LLM usage"),
        (name = "health", description = "Liveness, database and projection lag"),
    )
)]
pub struct ApiDoc;
