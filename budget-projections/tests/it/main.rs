//! Integration tests of the projection runner and the usage rollups, against a real PostgreSQL.

mod runner;
mod usage_rollups;

use budget_events::db::testing::TestDb;
use budget_events::domain::{RecordUsage, UsageInput};
use budget_events::ledger::{UsageCommand, UsageItem};
use budget_events::writer::{LogSignal, Writer};
use budget_events::EventMetadata;
use budget_projections::usage_rollups::UsageRollups;
use budget_projections::{Runner, RunnerStatus};
use chrono::Utc;

pub fn input(json: serde_json::Value) -> UsageInput {
    serde_json::from_value(json).unwrap()
}

/// Records usage through the real write path.
pub async fn record(db: &TestDb, inputs: &[UsageInput]) {
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let items =
        inputs.iter().map(|i| UsageItem { record: RecordUsage::validate(i, Utc::now()).unwrap(), key: None }).collect();
    writer.submit(UsageCommand { items, key: None, metadata: EventMetadata::default(), signer: None }).await.unwrap();
}

pub fn runner(db: &TestDb) -> Runner<UsageRollups> {
    Runner::new(UsageRollups, db.pool.clone(), RunnerStatus::default())
}

/// Applies until `n` events have been applied. Other tests' transactions on the same server can hold
/// the cluster-wide xmin back for a moment, so a committed event may need a few tries to become visible.
pub async fn apply_all(runner: &Runner<UsageRollups>, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut total = 0;
    while total < n {
        total += runner.catch_up().await.unwrap();
        assert!(std::time::Instant::now() < deadline, "only {total} of {n} events became visible");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(total, n, "applied more events than were written");
}

pub async fn rollup_rows(db: &TestDb) -> Vec<String> {
    let client = db.pool.get().await.unwrap();
    client
        .query("SELECT format('%s|%s|%s|%s|%s|%s|%s|%s|%s', hour, provider, model, component, task_type, input_tokens, output_tokens, cost, count) FROM usage_rollups ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}
