//! How far behind the log each projection is, in events and in seconds.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

#[derive(Debug, Clone, Serialize)]
pub struct ProjectionLag {
    pub name: String,
    /// Log position of the last event applied (0: none yet).
    pub position: i64,
    pub events_applied: i64,
    /// Committed events not yet applied.
    pub lag_events: i64,
    /// Age of the oldest event not yet applied (0 when caught up).
    pub lag_seconds: f64,
    pub updated_at: DateTime<Utc>,
}

pub async fn lag(client: &impl GenericClient) -> Result<Vec<ProjectionLag>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT c.name, c.position, c.events_applied, c.updated_at, l.n AS lag_events,
                    COALESCE(EXTRACT(EPOCH FROM now() - l.oldest)::float8, 0) AS lag_seconds
             FROM projection_checkpoints c
             CROSS JOIN LATERAL (
                 SELECT count(*) AS n, min(e.recorded_at) AS oldest FROM events e
                 WHERE (e.tx_id, e.position) > (c.tx_id, c.position)
             ) l
             ORDER BY c.name",
            &[],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| ProjectionLag {
            name: r.get("name"),
            position: r.get("position"),
            events_applied: r.get("events_applied"),
            updated_at: r.get("updated_at"),
            lag_events: r.get("lag_events"),
            lag_seconds: r.get::<_, f64>("lag_seconds").max(0.0),
        })
        .collect())
}
