//! Delivers alerts to webhooks from the outbox the alerts projection writes (`alert_outbox`).
//!
//! No transaction is ever held across a delivery: the log's readers only read below the oldest open
//! transaction, so one held across a receiver that hangs would freeze every projection and the
//! WebSocket hub. Instead a worker *claims* due rows with a lease (`claimed_until`) in one short
//! statement, delivers them concurrently outside any transaction, and records each outcome in another.
//!
//! At least once: a row is marked delivered only after the receiver answered 2xx; a worker that dies
//! in between leaves a lease that runs out, and the row is claimed and delivered again. Receivers
//! dedupe on the alert id (`Idempotency-Key` header, `alert_id` in the body). Failures retry with
//! exponential backoff. Replicas share the work: a claimed row is not claimable until its lease ends.

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

/// Claims up to `limit` due deliveries and tries each once, concurrently; returns how many were tried.
pub async fn deliver_due(
    pool: &Pool,
    http: &reqwest::Client,
    policy: &DeliveryPolicy,
    limit: i64,
) -> Result<usize, ProjectionError> {
    let due = claim(pool, policy, limit).await?;
    let attempts = due.iter().map(|d| async move { (d, send(http, policy, d).await) });
    let outcomes = futures_util::future::join_all(attempts).await;
    let client = pool.get().await.map_err(|e| ProjectionError::Pool(e.to_string()))?;
    for (d, failure) in &outcomes {
        record(&**client, policy, d, failure.as_deref()).await?;
    }
    Ok(due.len())
}

/// One claimed delivery.
struct Due {
    alert_id: Uuid,
    url: String,
    payload: serde_json::Value,
    attempts: i32,
}

/// Takes due rows whose lease (if any) has run out, and leases them for the delivery timeout and a
/// margin: one autocommitted statement, so no lock outlives it.
async fn claim(pool: &Pool, policy: &DeliveryPolicy, limit: i64) -> Result<Vec<Due>, ProjectionError> {
    let client = pool.get().await.map_err(|e| ProjectionError::Pool(e.to_string()))?;
    let lease = policy.timeout.as_secs_f64() + LEASE_MARGIN.as_secs_f64();
    let rows = client
        .query(
            "UPDATE alert_outbox o SET claimed_until = now() + make_interval(secs => $2)
             FROM (SELECT alert_id, url FROM alert_outbox
                   WHERE delivered_at IS NULL AND next_attempt_at <= now()
                     AND (claimed_until IS NULL OR claimed_until < now())
                   ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
             WHERE o.alert_id = due.alert_id AND o.url = due.url
             RETURNING o.alert_id, o.url, o.payload, o.attempts",
            &[&limit, &lease],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Due {
            alert_id: r.get("alert_id"),
            url: r.get("url"),
            payload: r.get("payload"),
            attempts: r.get("attempts"),
        })
        .collect())
}

/// Extra lease time beyond the delivery timeout, for recording the outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// POSTs one delivery; the failure, if it failed.
async fn send(http: &reqwest::Client, policy: &DeliveryPolicy, d: &Due) -> Option<String> {
    let sent = http
        .post(&d.url)
        .timeout(policy.timeout)
        .header("Idempotency-Key", d.alert_id.to_string())
        .header("X-Budget-Alert-Id", d.alert_id.to_string())
        .json(&d.payload)
        .send()
        .await;
    match sent {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("HTTP {}", response.status())),
        Err(e) => Some(e.to_string()),
    }
}

/// Records a delivery's outcome and ends its lease.
async fn record(
    client: &impl tokio_postgres::GenericClient,
    policy: &DeliveryPolicy,
    d: &Due,
    failure: Option<&str>,
) -> Result<(), ProjectionError> {
    match failure {
        None => {
            client
                .execute(
                    "UPDATE alert_outbox
                     SET delivered_at = now(), attempts = attempts + 1, last_error = NULL, claimed_until = NULL
                     WHERE alert_id = $1 AND url = $2",
                    &[&d.alert_id, &d.url],
                )
                .await?;
        }
        Some(error) => {
            let wait = backoff(policy, d.attempts);
            tracing::warn!(alert_id = %d.alert_id, url = d.url, attempts = d.attempts + 1, error, retry_in = ?wait, "webhook delivery failed");
            let next = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(10));
            client
                .execute(
                    "UPDATE alert_outbox
                     SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4, claimed_until = NULL
                     WHERE alert_id = $1 AND url = $2",
                    &[&d.alert_id, &d.url, &error, &next],
                )
                .await?;
        }
    }
    Ok(())
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
