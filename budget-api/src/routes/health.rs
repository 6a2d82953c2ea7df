//! `GET /api/health`: is the database reachable, and how far behind is each projection.

use actix_web::{get, web, HttpResponse};
use budget_projections::health::lag;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `healthy`, `degraded` (a projection is failing) or `unhealthy` (no database).
    pub status: String,
    pub version: String,
    /// `ok`, or why the database cannot be reached.
    pub database: String,
    pub projections: Vec<ProjectionHealth>,
    /// Configured price sources and their last refresh (a failure keeps the current prices).
    /// Each background task: running, stopped or failed (a failure stops the process).
    #[serde(default)]
    pub tasks: Vec<crate::supervision::TaskHealth>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub log_held_by: Vec<budget_events::store::HorizonHolder>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub price_sources: Vec<crate::price_sources::SourceState>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProjectionHealth {
    pub name: String,
    /// Log position of the last applied event.
    pub position: i64,
    pub events_applied: i64,
    /// Committed events not applied yet.
    pub lag_events: i64,
    /// Age of the oldest event not applied yet.
    pub lag_seconds: f64,
    pub updated_at: DateTime<Utc>,
    /// The runner's last error, if its last step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The event the projection cannot apply, when that is why it is stuck: nothing after it is
    /// applied until it can be (fix the cause, then the runner goes on by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_event: Option<FailingEvent>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FailingEvent {
    /// Its log position (`GET /api/events?after=P-1&limit=1` shows it).
    pub position: i64,
    pub event_type: String,
}

/// A write transaction of this database open longer than this holds every reader of the log back, and
/// health names it (`log_held_by`) and says `degraded`.
const HELD_FOR: std::time::Duration = std::time::Duration::from_secs(3);

#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Database reachable", body = Health),
        (status = 503, description = "Database unreachable", body = Health),
    ), security(()))]
#[get("/api/health")]
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    answer(state).await
}

/// The same as `/api/health`, where orchestrators and the original UI probe.
#[utoipa::path(
    tag = "health",
    path = "/health",
    responses(
        (status = 200, description = "Database reachable", body = Health),
        (status = 503, description = "Database unreachable", body = Health),
    ), security(()))]
#[get("/health")]
pub async fn health_at_root(state: web::Data<AppState>) -> HttpResponse {
    answer(state).await
}

async fn answer(state: web::Data<AppState>) -> HttpResponse {
    let version = env!("CARGO_PKG_VERSION");
    let read = match state.pool.get().await {
        Ok(client) => match lag(&**client).await {
            Ok(lags) => budget_events::store::horizon_holders(&**client, HELD_FOR.as_secs_f64())
                .await
                .map(|held| (lags, held))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    match read {
        Ok((lags, log_held_by)) => {
            let errors = state.projections.errors();
            let projections: Vec<ProjectionHealth> = lags
                .into_iter()
                .map(|l| ProjectionHealth {
                    error: errors.get(l.name.as_str()).map(|e| e.message.clone()),
                    failing_event: errors
                        .get(l.name.as_str())
                        .and_then(|e| e.failing_event.clone())
                        .map(|(position, event_type)| FailingEvent { position, event_type }),
                    name: l.name,
                    position: l.position,
                    events_applied: l.events_applied,
                    lag_events: l.lag_events,
                    lag_seconds: l.lag_seconds,
                    updated_at: l.updated_at,
                })
                .collect();
            let degraded = projections.iter().any(|p| p.error.is_some()) || !log_held_by.is_empty();
            let status = if degraded { "degraded" } else { "healthy" };
            let price_sources = state.price_sources.snapshot();
            HttpResponse::Ok().json(Health {
                status: status.into(),
                version: version.into(),
                database: "ok".into(),
                projections,
                tasks: state.tasks.snapshot(),
                log_held_by,
                price_sources,
            })
        }
        Err(e) => HttpResponse::ServiceUnavailable().json(Health {
            status: "unhealthy".into(),
            version: version.into(),
            database: format!("unreachable: {e}"),
            projections: Vec::new(),
            tasks: state.tasks.snapshot(),
            log_held_by: Vec::new(),
            price_sources: state.price_sources.snapshot(),
        }),
    }
}
