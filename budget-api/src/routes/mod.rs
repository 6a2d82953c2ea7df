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
pub mod status;
pub mod usage;
pub mod usage_query;
pub mod ws;

use actix_web::web;

use crate::error::ApiError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(health::health)
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
        .service(keys::list)
        .service(keys::revoke);
}

/// What no route matched: 405 with `Allow` when the path is one of the documented routes (matched
/// against the OpenAPI document's path templates), else a JSON 404.
pub async fn no_route(req: actix_web::HttpRequest, routes: web::Data<RouteTable>) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    let error = match routes.methods_of(req.path()) {
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

/// The documented paths (templates such as `/api/policies/{policy_id}`) with their methods.
pub struct RouteTable(Vec<(Vec<String>, Vec<String>)>);

impl RouteTable {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let routes = doc
            .paths
            .paths
            .iter()
            .map(|(path, item)| {
                let segments = path.split('/').map(str::to_string).collect();
                let mut methods = Vec::new();
                for (name, op) in [
                    ("GET", &item.get),
                    ("POST", &item.post),
                    ("PUT", &item.put),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                ] {
                    if op.is_some() {
                        methods.push(name.to_string());
                        if name == "GET" {
                            methods.push("HEAD".to_string());
                        }
                    }
                }
                (segments, methods)
            })
            .collect();
        RouteTable(routes)
    }

    /// The methods the path takes (`GET, HEAD`), if it matches a documented template.
    fn methods_of(&self, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.split('/').collect();
        let mut methods: Vec<&str> = self
            .0
            .iter()
            .filter(|(template, _)| {
                template.len() == segments.len()
                    && template.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s)
            })
            .flat_map(|(_, m)| m.iter().map(String::as_str))
            .collect();
        methods.sort();
        methods.dedup();
        (!methods.is_empty()).then(|| methods.join(", "))
    }
}
