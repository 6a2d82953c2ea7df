//! Read your own writes. Projections (usage rollups, alerts) follow the log asynchronously, so a read
//! right after a write may not show it yet. Every write answer carries the log `position` of its last
//! event; a read served from a projection accepts `min_position=P` and answers only once the projection
//! has applied P, waiting up to [`WAIT`], or `503 projection_lag` with the lag. Reads of tables the write
//! path keeps (policies, budgets, accounts, allocations, prices) and of the log itself are current
//! already and take no `min_position`.

use std::time::{Duration, Instant};

use budget_events::ErrorCode;

use crate::error::ApiError;
use crate::state::AppState;

/// The longest a read waits for a projection to apply a position.
pub const WAIT: Duration = Duration::from_secs(2);

/// Returns once every one of `projections` has applied the event at `min_position` (at once without one).
pub async fn wait_for(state: &AppState, projections: &[&str], min_position: Option<i64>) -> Result<(), ApiError> {
    let Some(position) = min_position else { return Ok(()) };
    let names: Vec<String> = projections.iter().map(|p| p.to_string()).collect();
    let client = state.pool.get().await?;
    let end: i64 = client.query_one("SELECT coalesce(max(position), 0) FROM events", &[]).await?.get(0);
    if position < 0 || position > end {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidParameter,
            format!("min_position is {position}, but the log ends at {end}; pass the position a write answered with"),
        ));
    }
    let started = Instant::now();
    loop {
        // An event is applied once the projection's cursor (tx_id, position) has passed it; a position
        // with no event (a rolled-back insert) has nothing to wait for.
        let behind: Vec<String> = client
            .query(
                "SELECT c.name FROM projection_checkpoints c JOIN events e ON e.position = $1
                 WHERE c.name = ANY($2) AND (e.tx_id, e.position) > (c.tx_id, c.position)",
                &[&position, &names],
            )
            .await?
            .iter()
            .map(|r| r.get("name"))
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if started.elapsed() >= WAIT {
            return Err(ApiError::ProjectionLag(format!(
                "{} has not applied log position {position} after {:.1}s; retry shortly, or read without min_position for what it shows now",
                behind.join(" and "),
                WAIT.as_secs_f64()
            )));
        }
        // The runners pause between steps to fold several commits at once; this read ends the pause.
        state.projections.hurry();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
