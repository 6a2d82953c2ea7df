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

/// Counting is exact. The events beyond a checkpoint are read in the cursor's own order with a
/// `LIMIT`, which keeps PostgreSQL on the `(tx_id, position)` index: a plain `count(*)` over the row
/// comparison is planned as a scan of the whole log (its selectivity cannot be estimated), which took
/// 1.1 s per `/api/health` with a million events (`budget bench`). Only a projection more than
/// `INDEXED` events behind pays for a full count, and it is degraded then anyway.
pub async fn lag(client: &impl GenericClient) -> Result<Vec<ProjectionLag>, tokio_postgres::Error> {
    const INDEXED: i64 = 10_000;
    let checkpoints = client
        .query(
            "SELECT name, tx_id::text AS tx_text, position, events_applied, updated_at
             FROM projection_checkpoints ORDER BY name",
            &[],
        )
        .await?;
    let mut lags = Vec::with_capacity(checkpoints.len());
    for c in checkpoints {
        let (tx, position): (String, i64) = (c.get("tx_text"), c.get("position"));
        let beyond = |limit: &str| {
            format!(
                "SELECT count(*) AS n, COALESCE(EXTRACT(EPOCH FROM now() - min(recorded_at))::float8, 0) AS age
                 FROM (SELECT recorded_at FROM events WHERE (tx_id, position) > ($1::text::xid8, $2)
                       ORDER BY tx_id, position {limit}) beyond"
            )
        };
        let mut row = client.query_one(&beyond(&format!("LIMIT {}", INDEXED + 1)), &[&tx, &position]).await?;
        if row.get::<_, i64>("n") > INDEXED {
            row = client.query_one(&beyond(""), &[&tx, &position]).await?;
        }
        lags.push(ProjectionLag {
            name: c.get("name"),
            position,
            events_applied: c.get("events_applied"),
            updated_at: c.get("updated_at"),
            lag_events: row.get("n"),
            lag_seconds: row.get::<_, f64>("age").max(0.0),
        });
    }
    Ok(lags)
}
