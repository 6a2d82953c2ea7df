//! One file per route group.

pub mod alerts;
pub mod allocations;
pub mod assistant;
pub mod audit;
pub mod budgets;
pub mod check;
pub mod health;
pub mod keys;
pub mod paging;
pub mod policies;
pub mod prices;
pub mod recommendations;
pub mod replay;
pub mod reprice;
pub mod snapshot;
pub mod status;
pub mod usage;
pub mod usage_query;
pub mod ws;

use actix_web::web;

use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::health)
        .service(crate::metrics::scrape)
        .service(health::health_at_root)
        .service(assistant::analyze_route)
        .service(assistant::optimize_route)
        .service(assistant::recommend_route)
        .service(audit::events)
        .service(audit::explain)
        .service(audit::export)
        .service(replay::replay)
        .service(ws::updates)
        .service(ws::alerts)
        .service(ws::allocations)
        .service(ws::prices)
        .service(alerts::list)
        .service(alerts::get)
        .service(alerts::acknowledge)
        .service(check::check)
        .service(usage::record_batch)
        .service(usage::record_one)
        .service(usage::record_one_as_component)
        .service(usage_query::summary)
        .service(usage_query::summary_query)
        .service(usage_query::records)
        .service(usage_query::usage)
        .service(policies::set_policy)
        .service(policies::list)
        .service(policies::get)
        .service(policies::update)
        .service(policies::disable)
        .service(budgets::create)
        .service(budgets::list)
        .service(budgets::get)
        .service(budgets::update)
        .service(budgets::archive)
        .service(budgets::budget_policies)
        .service(budgets::budget_status)
        .service(status::status)
        .service(allocations::create)
        .service(allocations::list)
        .service(allocations::by_context)
        .service(allocations::release)
        .service(allocations::get)
        .service(prices::update)
        .service(reprice::reprice)
        .service(recommendations::recommendations)
        .service(prices::calculate)
        .service(prices::set)
        .service(prices::list)
        .service(prices::history)
        .service(prices::get)
        .service(keys::create)
        .service(keys::current)
        .service(keys::list)
        .service(keys::revoke);
}

/// What no route matched: 405 with `Allow` when the path is one of the documented routes (matched
/// against the OpenAPI document's path templates, the table the guard uses), else a JSON 404.
pub async fn no_route(
    req: actix_web::HttpRequest,
    gate: web::Data<crate::auth::guard::Gate>,
) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    let error = match gate.access.methods_of(req.path()) {
        Some(methods) => ApiError::MethodNotAllowed {
            message: format!("{} {} is not a route; this path takes {methods}", req.method(), req.path()),
            allow: methods,
        },
        None => {
            ApiError::NotFound(format!("no route for {} {}; see /api/docs for the routes", req.method(), req.path()))
        }
    };
    error.error_response()
}
