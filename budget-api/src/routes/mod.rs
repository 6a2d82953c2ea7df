//! One file per route group.

pub mod alerts;
pub mod allocations;
pub mod assistant;
pub mod audit;
pub mod budgets;
pub mod check;
pub mod health;
pub mod policies;
pub mod prices;
pub mod recommendations;
pub mod replay;
pub mod reprice;
pub mod status;
pub mod usage;
pub mod usage_query;
pub mod ws;

use actix_web::web;

use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::health)
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
        .service(usage_query::summary)
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
        .service(prices::get);
}

/// JSON 404 for every path no route matches.
pub async fn not_found(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    ApiError::NotFound(format!("no route for {} {}; see /api/docs for the routes", req.method(), req.path()))
        .error_response()
}
