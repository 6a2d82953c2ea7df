//! The OpenAPI document of every route, served at `/api/openapi.json` and shown by Swagger UI at
//! `/api/docs` (embedded, so it works offline).

mod conventions;
pub mod schemas;

use conventions::Conventions;

use utoipa::OpenApi;

use crate::routes::{
    alerts, allocations, assistant, audit, budgets, check, health, keys, policies, prices, recommendations, replay,
    reprice, status, usage, usage_query,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Budget", description = "LLM spending under control: usage, budgets, allocations, prices, alerts."),
    paths(
        health::health,
        health::health_at_root,
        crate::metrics::scrape,
        assistant::analyze_route,
        assistant::optimize_route,
        assistant::recommend_route,
        audit::events,
        audit::explain,
        audit::export,
        replay::replay,
        alerts::list,
        alerts::get,
        alerts::acknowledge,
        usage::record_one,
        usage::record_one_as_component,
        usage::record_batch,
        usage_query::usage,
        usage_query::summary,
        usage_query::summary_query,
        usage_query::records,
        check::check,
        policies::set_policy,
        policies::list,
        policies::get,
        policies::update,
        policies::disable,
        budgets::create,
        budgets::list,
        budgets::get,
        budgets::update,
        budgets::archive,
        budgets::budget_policies,
        budgets::budget_status,
        status::status,
        allocations::create,
        allocations::list,
        allocations::by_context,
        allocations::get,
        allocations::release,
        prices::list,
        prices::get,
        prices::history,
        prices::set,
        prices::update,
        prices::calculate,
        reprice::reprice,
        recommendations::recommendations,
        keys::create,
        keys::current,
        keys::list,
        keys::revoke,
    ),
    components(schemas(crate::error::ErrorBody, budget_events::domain::UsageInput)),
    modifiers(&Conventions),
    tags(
        (name = "usage", description = "Record and query LLM usage"),
        (name = "prices", description = "The versioned price book and cost calculation"),
        (name = "allocations", description = "Token reservations for tasks: create, settle by usage, release, expire"),
        (name = "policies", description = "Budgets, policies (limits) and the status of their windows"),
        (name = "alerts", description = "Alerts raised from the log: thresholds, refusals, overage, unpriced models, spend spikes"),
        (name = "audit", description = "The events behind every number: the log, explanations, exports, replays"),
        (name = "assistant", description = "Analysis, optimization and model recommendations from the log and the price book"),
        (name = "health", description = "Liveness, database and projection lag"),
        (name = "keys", description = "API keys and their scopes (admin); the caller's own key"),
    )
)]
pub struct ApiDoc;
