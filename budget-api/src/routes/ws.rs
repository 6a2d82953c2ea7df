//! The WebSocket endpoints, one per default topic: `/ws/budget/updates` (budget_events),
//! `/ws/budget/alerts` (budget_alerts), `/ws/budget/allocations` (allocation_updates) and
//! `/ws/budget/prices` (price_updates). `?since=POSITION` replays what was appended after POSITION.

use actix_web::{get, web, HttpRequest, HttpResponse};
use budget_events::ErrorCode;
use serde::Deserialize;

use crate::error::ApiError;
use crate::query::Query;
use crate::state::AppState;
use crate::ws::message::{ALLOCATION_UPDATES, BUDGET_ALERTS, BUDGET_EVENTS, PRICE_UPDATES};
use crate::ws::session::Connection;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsQuery {
    /// Replay what was appended after this log position, then go live.
    pub since: Option<i64>,
    /// An API key, for clients that cannot send headers (the guard reads it).
    pub api_key: Option<String>,
}

async fn connect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
    query: WsQuery,
    topic: &'static str,
) -> Result<HttpResponse, ApiError> {
    if query.since.is_some_and(|s| s < 0) {
        return Err(ApiError::bad_request(ErrorCode::InvalidParameter, "since is a log position, 0 or more"));
    }
    let (response, session, stream) = actix_ws::handle(&req, body).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::WebsocketRequired,
            format!("{e}; connect with a WebSocket client (ws://…{})", req.path()),
        )
    })?;
    let connection = Connection {
        session,
        stream: stream.max_frame_size(64 * 1024).aggregate_continuations().max_continuation_size(64 * 1024),
        hub: state.hub.clone(),
        pool: state.pool.clone(),
        settings: state.ws,
        topic,
        since: query.since,
        gate: req.app_data::<web::Data<crate::auth::guard::Gate>>().expect("the gate is app data").clone(),
    };
    let metrics = state.metrics.clone();
    metrics.websocket_opened();
    actix_web::rt::spawn(async move {
        let ended = connection.run().await;
        metrics.websocket_closed(ended);
    });
    Ok(response)
}

#[get("/ws/budget/updates")]
pub async fn updates(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
    q: Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    connect(state, req, body, q.into_inner(), BUDGET_EVENTS).await
}

#[get("/ws/budget/alerts")]
pub async fn alerts(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
    q: Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    connect(state, req, body, q.into_inner(), BUDGET_ALERTS).await
}

#[get("/ws/budget/allocations")]
pub async fn allocations(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
    q: Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    connect(state, req, body, q.into_inner(), ALLOCATION_UPDATES).await
}

#[get("/ws/budget/prices")]
pub async fn prices(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
    q: Query<WsQuery>,
) -> Result<HttpResponse, ApiError> {
    connect(state, req, body, q.into_inner(), PRICE_UPDATES).await
}
