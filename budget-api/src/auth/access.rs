//! What each route needs: the scope declared next to the route (`security(("api_key" = ["write"]))`
//! in its `#[utoipa::path]`), read back from the OpenAPI document, so the document and the guard
//! cannot disagree and a route without a declared scope is refused to everyone but admins (and fails
//! the access-matrix test).

use std::collections::HashMap;

use budget_events::domain::keys::KeyScope;
use serde_json::Value;

/// The security scheme name routes declare their scope under.
pub const SCHEME: &str = "api_key";

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// Nothing: the API documentation, and paths no route serves (they get 404/405).
    Nothing,
    Scope(KeyScope),
}

/// What an operation declares: a scope, or that it is public (`security(())`, the health check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    Public,
    Scope(KeyScope),
}

/// (method, path segments, declaration) of every documented operation, and the operations whose
/// path has no parameter by (method, path): the guard asks on every request, and a path that matches
/// one of those exactly needs no scan of the table (the scan was 2 % of the server's CPU under
/// single-record load; perf, `budget bench`). An exact match is the most specific template anyway.
#[derive(Debug, Clone)]
pub struct AccessTable(Vec<(String, Vec<String>, Option<Declared>)>, HashMap<(String, String), Option<Declared>>);

impl AccessTable {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let doc = serde_json::to_value(doc).expect("the OpenAPI document serializes");
        let mut routes = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                routes.push((
                    method.to_ascii_uppercase(),
                    path.split('/').map(str::to_string).collect::<Vec<_>>(),
                    declared(op),
                ));
            }
        }
        let exact = routes
            .iter()
            .filter(|(_, template, _)| !template.iter().any(|t| t.starts_with('{')))
            .map(|(method, template, declared)| ((method.clone(), template.join("/")), *declared))
            .collect();
        AccessTable(routes, exact)
    }

    /// What `method path` needs. HEAD is GET; the WebSockets need `read`; an undocumented route
    /// that a handler serves anyway (none should) needs `admin`.
    pub fn needed(&self, method: &str, path: &str) -> Needed {
        let method = if method == "HEAD" { "GET" } else { method };
        if path.starts_with("/ws/") {
            return Needed::Scope(KeyScope::Read);
        }
        // Gateway mode follows OpenAI's and Anthropic's contracts, not ours: its calls spend, so they
        // need `write`; the model list needs `read`.
        if path.starts_with("/v1/") {
            return Needed::Scope(if method == "GET" { KeyScope::Read } else { KeyScope::Write });
        }
        if path == "/api/openapi.json" || path == "/api/docs" || path.starts_with("/api/docs/") {
            return Needed::Nothing;
        }
        if let Some(declared) = self.1.get(&(method.to_string(), path.to_string())) {
            return needs(Some(declared));
        }
        // The most specific template wins (`/api/prices/history/…` over `/api/prices/{provider}/…`).
        let found = self
            .matching(path)
            .filter(|(m, _, _)| m == method)
            .max_by_key(|(_, template, _)| template.iter().filter(|t| !t.starts_with('{')).count());
        needs(found.map(|(_, _, declared)| declared))
    }
}

/// What a request to an operation declared so needs (none found: nothing, the request gets a 404).
fn needs(declared: Option<&Option<Declared>>) -> Needed {
    match declared {
        Some(Some(Declared::Scope(scope))) => Needed::Scope(*scope),
        Some(Some(Declared::Public)) => Needed::Nothing,
        Some(None) => Needed::Scope(KeyScope::Admin),
        None => Needed::Nothing,
    }
}

impl AccessTable {
    /// The documented operations whose path template `path` matches, whatever their method.
    fn matching<'a>(&'a self, path: &str) -> impl Iterator<Item = &'a (String, Vec<String>, Option<Declared>)> + 'a {
        let segments: Vec<String> = path.split('/').map(str::to_string).collect();
        self.0.iter().filter(move |(_, template, _)| {
            template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| t.starts_with('{') || t == s)
        })
    }

    /// The methods a documented path takes (`GET, HEAD, PATCH`), for a 405's `Allow`; none when no
    /// documented template matches.
    pub fn methods_of(&self, path: &str) -> Option<String> {
        let mut methods: Vec<&str> = self
            .matching(path)
            .flat_map(|(m, _, _)| if m == "GET" { vec!["GET", "HEAD"] } else { vec![m.as_str()] })
            .collect();
        methods.sort();
        methods.dedup();
        (!methods.is_empty()).then(|| methods.join(", "))
    }
}

/// What an operation object of the document declares (tests use it on the served document).
pub fn declared(op: &Value) -> Option<Declared> {
    let requirements = op["security"].as_array()?;
    if requirements.iter().any(|r| r.as_object().is_some_and(|o| o.is_empty())) {
        return Some(Declared::Public);
    }
    requirements.iter().find_map(|r| r[SCHEME].as_array()?.first()?.as_str()?.parse().ok()).map(Declared::Scope)
}
