//! A request id for every request: the client's `X-Request-Id` (when it is printable ASCII of at
//! most 128 characters) or a new UUIDv7. It is returned in `X-Request-Id`, carried by every log line of
//! the request (a `tracing` span), kept in the events the request writes, and named in error bodies.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

pub const HEADER: &str = "X-Request-Id";

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The middleware.
pub async fn tag(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let given = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| (0x21..0x7f).contains(&b)))
        .map(str::to_string);
    let id = given.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    // Handlers read it from the header (the events keep it), so a generated one is set there too.
    let value = HeaderValue::from_str(&id).expect("checked or generated as printable ASCII");
    req.headers_mut().insert(HeaderName::from_static("x-request-id"), value.clone());
    let span = tracing::info_span!("request", request_id = %id);
    let (method, target) = (req.method().to_string(), logged_target(&req));
    let started = std::time::Instant::now();
    // The access line is written inside the request's span, so it carries the id as a field too.
    let handled = async move {
        let response = next.call(req).await;
        let status = response.as_ref().map(|r| r.status().as_u16()).unwrap_or(500);
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(target: "budget::http", %method, path = %target, status, elapsed_ms, "{method} {target} {status} {elapsed_ms:.3}ms");
        response
    };
    let mut response = CURRENT.scope(id, handled.instrument(span)).await?;
    response.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
    Ok(response)
}

/// The path and query as logged: an `api_key` in the query (how browsers authenticate WebSockets)
/// is replaced, so no secret reaches a log.
fn logged_target(req: &ServiceRequest) -> String {
    let path = req.path();
    match req.query_string() {
        "" => path.to_string(),
        query => {
            let redacted: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("api_key") => format!("{k}=REDACTED"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", redacted.join("&"))
        }
    }
}
