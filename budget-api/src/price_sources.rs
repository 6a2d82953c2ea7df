//! Configured price sources (`BUDGET_PRICE_SOURCES`): LiteLLM-format price files or URLs, imported at
//! start and refreshed on a schedule.
//!
//! A failed fetch or a malformed file changes nothing: the current prices stay (never zeroed), the
//! failure is logged as a warning and shown in `/api/health` until the next refresh succeeds.
//! Unchanged prices are not re-versioned, so refreshing often, or from two replicas, costs nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use budget_events::domain::price::PriceSource;
use budget_events::ledger::{PricesCommand, PricesOutcome};
use budget_events::writer::Writer;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

/// The largest price document fetched (LiteLLM's is ~1 MB).
const MAX_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// How each configured source fared, for `/api/health`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct SourceState {
    pub source: String,
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// Why the last refresh failed; absent once one succeeds.
    pub last_error: Option<String>,
    /// Models the last successful refresh added and changed.
    pub added: usize,
    pub changed: usize,
}

/// Shared between the refresher and the health route.
#[derive(Debug, Clone, Default)]
pub struct SourceStatus(Arc<Mutex<Vec<SourceState>>>);

impl SourceStatus {
    pub fn snapshot(&self) -> Vec<SourceState> {
        self.0.lock().expect("the status lock is never poisoned").clone()
    }

    fn update(&self, source: &str, change: impl FnOnce(&mut SourceState)) {
        let mut states = self.0.lock().expect("the status lock is never poisoned");
        let index = match states.iter().position(|s| s.source == source) {
            Some(i) => i,
            None => {
                states.push(SourceState {
                    source: source.to_string(),
                    last_attempt: None,
                    last_success: None,
                    last_error: None,
                    added: 0,
                    changed: 0,
                });
                states.len() - 1
            }
        };
        change(&mut states[index]);
    }
}

/// Splits `BUDGET_PRICE_SOURCES` (comma- or whitespace-separated paths and URLs).
pub fn parse_sources(value: &str) -> Vec<String> {
    value.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// Reads a source: an `http://` or `https://` URL, or a file path.
pub async fn fetch(source: &str) -> Result<(String, PriceSource), String> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let response = client.get(source).send().await.map_err(|e| format!("cannot fetch {source}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("cannot fetch {source}: HTTP {}", response.status()));
        }
        if response.content_length().is_some_and(|n| n as usize > MAX_DOCUMENT_BYTES) {
            return Err(format!("{source} is larger than {MAX_DOCUMENT_BYTES} bytes"));
        }
        let text = response.text().await.map_err(|e| format!("cannot read {source}: {e}"))?;
        Ok((text, PriceSource::Url))
    } else {
        let text = tokio::fs::read_to_string(source).await.map_err(|e| format!("cannot read {source}: {e}"))?;
        Ok((text, PriceSource::File))
    }
}

/// Imports one source now, effective now.
pub async fn refresh(writer: &Writer, source: &str) -> Result<PricesOutcome, String> {
    let (text, kind) = fetch(source).await?;
    let imported = crate::price_book::parse_litellm(&text).map_err(|e| format!("{source} was rejected whole: {e}"))?;
    let command = PricesCommand {
        prices: imported.specs,
        effective_from: Utc::now(),
        source: kind,
        key: None,
        metadata: budget_events::EventMetadata { actor: Some(format!("price source {source}")), ..Default::default() },
    };
    writer.submit(command).await.map_err(|e| format!("could not apply {source}: {e}"))
}

/// Refreshes every source now and then every `interval`, until shut down.
pub async fn run(
    writer: Writer,
    sources: Vec<String>,
    interval: Duration,
    status: SourceStatus,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        for source in &sources {
            let attempt = Utc::now();
            match refresh(&writer, source).await {
                Ok(outcome) => {
                    tracing::info!(
                        source,
                        added = outcome.added.len(),
                        changed = outcome.changed.len(),
                        "prices refreshed"
                    );
                    status.update(source, |s| {
                        s.last_attempt = Some(attempt);
                        s.last_success = Some(attempt);
                        s.last_error = None;
                        s.added = outcome.added.len();
                        s.changed = outcome.changed.len();
                    });
                }
                Err(e) => {
                    tracing::warn!(source, error = %e, "price refresh failed; the current prices stay");
                    status.update(source, |s| {
                        s.last_attempt = Some(attempt);
                        s.last_error = Some(format!("{e}; the current prices stay"));
                    });
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
}
