//! The checks every request passes before a handler sees it, in order: the `Host` is one of ours;
//! a browser's `Origin` is ours or listed (CORS preflights answered here); a body is JSON; the caller
//! holds a key of the scope the route declares; the caller is within its rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};
use budget_events::db::DbPool;
use budget_events::domain::keys::secret_hash;
use budget_events::store::keys::{self, KeyRow};
use budget_events::ErrorCode;
use chrono::Utc;

use super::access::{AccessTable, Needed};
use super::rate::Buckets;
use super::{Caller, SecuritySettings};
use crate::error::ApiError;

/// Headers a browser on a listed origin may send.
const CORS_HEADERS: &str = "Authorization, X-API-Key, Content-Type, Idempotency-Key, X-Budget-Actor, X-Request-Id";
/// How often a key's `last_used_at` is written, at most.
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Keys remembered for the write routes, at most (the map is emptied when it is full).
const REMEMBERED_KEYS: usize = 10_000;

/// What the guard knows: the settings, the access table, the buckets.
#[derive(Debug)]
pub struct Gate {
    pub settings: SecuritySettings,
    pub access: AccessTable,
    /// The service listens on a loopback address only.
    pub loopback: bool,
    allowed_hosts: Option<Vec<String>>,
    buckets: Buckets,
    touched: Mutex<HashMap<uuid::Uuid, Instant>>,
    /// Active keys by secret hash, as last read from `api_keys`, for [`rechecked_by_the_write_path`].
    remembered: Mutex<HashMap<String, KeyRow>>,
}

impl Gate {
    pub fn new(settings: SecuritySettings, access: AccessTable, bind_host: &str) -> Self {
        let loopback = is_loopback(bind_host);
        let allowed_hosts = match &settings.allowed_hosts {
            Some(hosts) => Some(hosts.clone()),
            // Bound to every interface, the names it is reached by are not known; keys are required there.
            None if bind_host == "0.0.0.0" || bind_host == "::" || bind_host == "[::]" => None,
            None => Some(
                [bind_host, "localhost", "127.0.0.1", "::1"]
                    .iter()
                    .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
                    .collect(),
            ),
        };
        Gate {
            buckets: Buckets::new(settings.rate_limit),
            settings,
            access,
            loopback,
            allowed_hosts,
            touched: Mutex::new(HashMap::new()),
            remembered: Mutex::new(HashMap::new()),
        }
    }

    /// Whether requests need a key: a bootstrap key or an active key exists, or the service is not
    /// on loopback and was not told to run open.
    pub async fn keys_required(&self, pool: &DbPool) -> Result<bool, ApiError> {
        if self.settings.admin_key.is_some() {
            return Ok(true);
        }
        if !self.loopback && !self.settings.allow_unauthenticated {
            return Ok(true);
        }
        let client = pool.get().await?;
        keys::any_active(&**client, Utc::now()).await.map_err(unavailable)
    }

    /// The caller a secret identifies, or 401. `rechecked`: the request is one the write path checks
    /// its key again for, in its transaction, so a key seen active before is taken without a lookup.
    pub async fn identify(&self, pool: &DbPool, secret: &str, rechecked: bool) -> Result<Caller, ApiError> {
        let secret = secret.trim();
        let hash = secret_hash(secret);
        if let Some(admin) = &self.settings.admin_key {
            // Compared as hashes, so the comparison's time says nothing about the secret.
            if secret_hash(admin) == hash {
                return Ok(Caller::Bootstrap);
            }
        }
        let now = Utc::now();
        if rechecked {
            let known = self.remembered.lock().expect("remembered keys").get(&hash).cloned();
            if let Some(key) = known.filter(|k| k.is_active(now)) {
                self.touch(pool, key.key_id, now).await;
                return Ok(Caller::Key(Box::new(key)));
            }
        }
        let client = pool.get().await?;
        let found = keys::by_hash(&client, &hash).await.map_err(unavailable)?;
        drop(client);
        self.remember(&hash, found.as_ref().filter(|k| k.is_active(now)));
        match found {
            Some(key) if key.is_active(now) => {
                self.touch(pool, key.key_id, now).await;
                Ok(Caller::Key(Box::new(key)))
            }
            Some(key) => Err(unauthenticated(if key.revoked_at.is_some() {
                "this API key was revoked; ask an admin for a new one (`budget keys create`)"
            } else {
                "this API key has expired; ask an admin for a new one (`budget keys create`)"
            })),
            None => Err(unauthenticated(
                "this API key is not known here; check for a typo, or create one with `budget keys create`",
            )),
        }
    }

    /// Keeps an active key for the write routes, or forgets one that is no longer active.
    fn remember(&self, hash: &str, active: Option<&KeyRow>) {
        let mut remembered = self.remembered.lock().expect("remembered keys");
        match active {
            Some(key) => {
                if remembered.len() >= REMEMBERED_KEYS && !remembered.contains_key(hash) {
                    remembered.clear();
                }
                remembered.insert(hash.to_string(), key.clone());
            }
            None => {
                remembered.remove(hash);
            }
        }
    }

    /// Records that the key was used, at most once a minute per key. Bookkeeping only: a failure here
    /// must not refuse a valid key.
    async fn touch(&self, pool: &DbPool, key_id: uuid::Uuid, now: chrono::DateTime<Utc>) {
        if !self.should_touch(key_id) {
            return;
        }
        let touched = match pool.get().await {
            Ok(client) => keys::touch(&**client, key_id, now).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = touched {
            tracing::warn!(error = %e, "could not record when a key was last used");
        }
    }

    fn should_touch(&self, key_id: uuid::Uuid) -> bool {
        let mut touched = self.touched.lock().expect("touch map");
        let now = Instant::now();
        match touched.get(&key_id) {
            Some(at) if now.duration_since(*at) < TOUCH_EVERY => false,
            _ => {
                touched.insert(key_id, now);
                true
            }
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some(allowed) = &self.allowed_hosts else { return true };
        let name = host_name(host);
        allowed.iter().any(|a| a == &name)
    }

    fn origin_listed(&self, origin: &str) -> bool {
        self.settings.cors_origins.iter().any(|o| o.eq_ignore_ascii_case(origin.trim_end_matches('/')))
    }
}

/// The middleware: see the module's doc. A request that fails a check is answered here, with the
/// error envelope, and never reaches a handler.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let admitted = match admit(&req).await {
        Ok(a) => a,
        Err(e) => {
            use actix_web::ResponseError;
            return Ok(req.into_response(e.error_response()).map_into_right_body());
        }
    };
    if let Some(preflight) = admitted.preflight {
        return Ok(req.into_response(preflight).map_into_right_body());
    }
    if let Some(caller) = admitted.caller {
        req.extensions_mut().insert(caller);
    }
    let mut response = next.call(req).await?;
    if let Some(o) = admitted.cors {
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::HeaderValue::from_str(&o).expect("an origin is a header value"),
        );
        headers.insert(header::VARY, header::HeaderValue::from_static("Origin"));
    }
    Ok(response.map_into_left_body())
}

/// What the checks decided for a request that may go on.
struct Admitted {
    /// A listed origin, to answer with CORS headers.
    cors: Option<String>,
    /// A CORS preflight, answered here.
    preflight: Option<HttpResponse>,
    caller: Option<Caller>,
}

async fn admit(req: &ServiceRequest) -> Result<Admitted, ApiError> {
    let gate = req.app_data::<web::Data<Gate>>().expect("the gate is app data").clone();
    let pool = req.app_data::<web::Data<crate::state::AppState>>().expect("the state is app data").pool.clone();

    let host = req.connection_info().host().to_string();
    if !gate.host_allowed(&host) {
        return Err(ApiError::Misdirected(format!(
            "Host `{host}` is not one of this service's names; call it by one of them or add the name to BUDGET_ALLOWED_HOSTS"
        )));
    }

    // A browser's Origin: ours (same host), listed, or refused where it could change something.
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_string);
    let cors = match &origin {
        Some(o) if same_origin(o, &host) => None,
        Some(o) if gate.origin_listed(o) => Some(o.clone()),
        Some(o) => {
            let changes = !matches!(*req.method(), Method::GET | Method::HEAD) || is_upgrade(req);
            if changes {
                return Err(ApiError::Forbidden {
                    code: ErrorCode::OriginRefused,
                    message: format!(
                        "requests from the web origin `{o}` are refused; list it in BUDGET_CORS_ORIGINS to allow it"
                    ),
                });
            }
            None
        }
        None => None,
    };
    if let (Some(o), true) = (&cors, req.method() == Method::OPTIONS) {
        if req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
            let preflight = HttpResponse::NoContent()
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, o.as_str()))
                .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, HEAD, POST, PATCH, DELETE"))
                .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_HEADERS))
                .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
                .insert_header((header::VARY, "Origin"))
                .finish();
            return Ok(Admitted { cors: None, preflight: Some(preflight), caller: None });
        }
    }

    // Bodies are JSON: a form or text/plain body is what a cross-site "simple request" sends.
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
            let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if !(media == "application/json" || media.ends_with("+json")) {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "Content-Type `{media}` is not accepted; send JSON with Content-Type: application/json"
                )));
            }
        }
    }

    let Needed::Scope(scope) = gate.access.needed(req.method().as_str(), req.path()) else {
        return Ok(Admitted { cors, preflight: None, caller: None });
    };
    let caller = match presented_key(req) {
        Some(secret) => gate.identify(&pool, &secret, rechecked_by_the_write_path(req)).await?,
        None if gate.keys_required(&pool).await? => {
            return Err(unauthenticated(&format!(
                "this route needs an API key of scope `{scope}` or above; send Authorization: Bearer KEY or X-API-Key: KEY (the CLI: --api-key or BUDGET_API_KEY)"
            )))
        }
        None => Caller::Open,
    };
    if !caller.scope().allows(scope) {
        return Err(ApiError::Forbidden {
            code: ErrorCode::Forbidden,
            message: format!(
                "this route needs scope `{scope}`; this key has `{}`; use a key with `{scope}` (`budget keys create --scope {scope}`)",
                caller.scope()
            ),
        });
    }
    let who = match &caller {
        Caller::Key(k) => k.key_id.to_string(),
        Caller::Bootstrap => "bootstrap".to_string(),
        Caller::Open => req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default(),
    };
    if let Err(wait) = gate.buckets.take(&who) {
        return Err(ApiError::RateLimited { retry_after: wait.as_secs().max(1) });
    }
    Ok(Admitted { cors, preflight: None, caller: Some(caller) })
}

/// The routes whose commands the write path checks the sender's key for again, in its transaction
/// (`ledger::Handle::signer`): usage records and reservations, the hot paths. The guard takes a key it
/// has seen active for them without a lookup (a query and a round trip saved per request), and a key
/// revoked meanwhile by any process still writes nothing. Every other route looks its key up, so a
/// revoked key reads nothing either.
fn rechecked_by_the_write_path(req: &ServiceRequest) -> bool {
    req.method() == Method::POST
        && matches!(req.path(), "/api/usage" | "/api/usage/record" | "/api/usage/batch" | "/api/allocations")
}

/// A key cannot be checked without the database: the request may be retried (503), like any other
/// made while the database is away.
fn unavailable(e: tokio_postgres::Error) -> ApiError {
    ApiError::Unavailable(format!(
        "cannot check API keys, the database is unavailable ({}); retry",
        budget_events::db::error_message(&e)
    ))
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::Unauthenticated(message.to_string())
}

/// The secret a request carries: `Authorization: Bearer`, `X-API-Key`, or (WebSockets, whose browser
/// API cannot set headers) `?api_key=`.
fn presented_key(req: &ServiceRequest) -> Option<String> {
    let h = |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(auth) = h(header::AUTHORIZATION) {
        if let Some(token) = auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("bearer ")) {
            return Some(token.trim().to_string());
        }
    }
    if let Some(key) = req.headers().get("X-API-Key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim().to_string());
    }
    if req.path().starts_with("/ws/") {
        return web::Query::<HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("api_key").cloned());
    }
    None
}

fn is_upgrade(req: &ServiceRequest) -> bool {
    req.headers().get(header::UPGRADE).is_some()
}

/// `http://host:port` against the Host header `host:port`.
fn same_origin(origin: &str, host: &str) -> bool {
    let authority = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
    authority.eq_ignore_ascii_case(host)
}

/// The name part of a Host header (`[::1]:8013` → `::1`, `localhost:8013` → `localhost`).
fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    host.rsplit_once(':').map_or(host.clone(), |(name, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            name.to_string()
        } else {
            host.clone()
        }
    })
}

/// Whether an address to bind is loopback only.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim().trim_matches(['[', ']']);
    h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_and_origins() {
        assert_eq!(host_name("localhost:8013"), "localhost");
        assert_eq!(host_name("[::1]:8013"), "::1");
        assert_eq!(host_name("Example.COM"), "example.com");
        assert!(same_origin("http://127.0.0.1:8013", "127.0.0.1:8013"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:8013"));
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost") && !is_loopback("0.0.0.0"));
    }
}
