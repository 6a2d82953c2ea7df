//! Delivers alerts to webhooks from the outbox the alerts projection writes (`alert_outbox`).
//!
//! At least once: a row is marked delivered only after the receiver answered 2xx, so a crash between
//! the two delivers it again; receivers dedupe on the alert id (`Idempotency-Key` header, `alert_id`
//! in the body). Failures retry with exponential backoff. This runs beside the projection, never in
//! it, so a dead receiver delays only its own deliveries. Rows are claimed `FOR UPDATE SKIP LOCKED`,
//! so replicas share the work without sending a row twice at once.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::watch;
use uuid::Uuid;

use crate::projection::ProjectionError;

/// How deliveries are paced.
#[derive(Debug, Clone, Copy)]
pub struct DeliveryPolicy {
    /// The first retry waits this long; each later one twice as long as the one before…
    pub retry_base: Duration,
    /// …up to this.
    pub retry_max: Duration,
    /// A receiver that takes longer has failed this attempt.
    pub timeout: Duration,
    /// How often the outbox is looked at when idle.
    pub poll: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
        }
    }
}

/// Tries every due delivery once (at most `limit`); returns how many were attempted.
pub async fn deliver_due(
    pool: &Pool,
    http: &reqwest::Client,
    policy: &DeliveryPolicy,
    limit: i64,
) -> Result<usize, ProjectionError> {
    let mut client = pool.get().await.map_err(|e| ProjectionError::Pool(e.to_string()))?;
    let tx = client.transaction().await?;
    let due = tx
        .query(
            "SELECT alert_id, url, payload, attempts FROM alert_outbox
             WHERE delivered_at IS NULL AND next_attempt_at <= now()
             ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED",
            &[&limit],
        )
        .await?;
    for row in &due {
        let (alert_id, url, payload, attempts): (Uuid, String, serde_json::Value, i32) =
            (row.get("alert_id"), row.get("url"), row.get("payload"), row.get("attempts"));
        let sent = http
            .post(&url)
            .timeout(policy.timeout)
            .header("Idempotency-Key", alert_id.to_string())
            .header("X-Budget-Alert-Id", alert_id.to_string())
            .json(&payload)
            .send()
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("HTTP {}", response.status())),
            Err(e) => Some(e.to_string()),
        };
        match failure {
            None => {
                tx.execute(
                    "UPDATE alert_outbox SET delivered_at = now(), attempts = attempts + 1, last_error = NULL
                     WHERE alert_id = $1 AND url = $2",
                    &[&alert_id, &url],
                )
                .await?;
            }
            Some(error) => {
                let wait = backoff(policy, attempts);
                tracing::warn!(%alert_id, url, attempts = attempts + 1, error, retry_in = ?wait, "webhook delivery failed");
                let next =
                    chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(10));
                tx.execute(
                    "UPDATE alert_outbox SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4
                     WHERE alert_id = $1 AND url = $2",
                    &[&alert_id, &url, &error, &next],
                )
                .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(due.len())
}

/// The wait after the `attempts`-th failure: base × 2^attempts, capped.
pub fn backoff(policy: &DeliveryPolicy, attempts: i32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.clamp(0, 20) as u32);
    policy.retry_base.saturating_mul(factor).min(policy.retry_max)
}

/// Delivers until shut down.
pub async fn run(pool: Pool, policy: DeliveryPolicy, mut stop: watch::Receiver<bool>) {
    let http = reqwest::Client::new();
    while !*stop.borrow() {
        let pause = match deliver_due(&pool, &http, &policy, 20).await {
            Ok(n) if n > 0 => Duration::ZERO,
            Ok(_) => policy.poll,
            Err(e) => {
                tracing::warn!(error = %e, "webhook outbox step failed; will retry");
                policy.poll
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = DeliveryPolicy {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..Default::default()
        };
        let waits: Vec<u64> = (0..6).map(|a| backoff(&p, a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    }
}
