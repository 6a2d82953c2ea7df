use budget_events::domain::{RecordUsage, UsageInput};
use budget_events::ledger::{UsageCommand, UsageItem};
use budget_events::store::idempotency::IdempotencyKey;
use budget_events::{decide, EventMetadata, NewEvent};
use chrono::Utc;
use uuid::Uuid;

pub fn usage_input(component: &str, input_tokens: i64) -> UsageInput {
    serde_json::from_value(serde_json::json!({
        "provider": "openai", "model": "gpt-4o", "component": component,
        "input_tokens": input_tokens, "output_tokens": 10, "cost": "0.0064"
    }))
    .unwrap()
}

pub fn usage_event(component: &str) -> NewEvent {
    let record = RecordUsage::validate(&usage_input(component, 100), Utc::now()).unwrap();
    NewEvent::new(
        budget_events::Event::UsageRecorded(decide::record_usage(
            &record,
            Uuid::now_v7(),
            &[],
            &mut Default::default(),
            None,
        )),
        EventMetadata::default(),
    )
}

pub fn command(input: &UsageInput, key: Option<&str>) -> UsageCommand {
    let record = RecordUsage::validate(input, Utc::now()).unwrap();
    let key = key.map(|k| IdempotencyKey::new("usage", k, input).unwrap());
    UsageCommand { items: vec![UsageItem { record, key }], key: None, metadata: EventMetadata::default(), signer: None }
}

pub async fn count_events(client: &impl tokio_postgres::GenericClient) -> i64 {
    client.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0)
}

/// Reads from `cursor` until `n` events are visible. Transactions of other tests on the same server
/// hold the cluster-wide xmin back for a moment, so a just-committed event may take a few polls.
pub async fn read_settled(
    client: &impl tokio_postgres::GenericClient,
    cursor: budget_events::store::Cursor,
    n: usize,
) -> Result<Vec<budget_events::RecordedEvent>, budget_events::store::ReadError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let events = budget_events::store::read_after(client, cursor, 1000).await?;
        if events.len() >= n || std::time::Instant::now() > deadline {
            return Ok(events);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A connection of its own that holds the ledger lock every write batch takes (`ledger::LEDGER_LOCK`)
/// in an open transaction: the writer's batches wait on it until that transaction ends.
pub async fn hold_ledger_lock(db: &budget_events::db::testing::TestDb) -> tokio_postgres::Client {
    let (blocker, connection) = db.config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let lock = budget_events::ledger::LEDGER_LOCK;
    blocker.batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock({lock})")).await.unwrap();
    blocker
}

/// The backend of this database that waits on a lock (a writer batch queued behind a held ledger
/// lock), once there is one; fails after ten seconds.
pub async fn lock_waiter(client: &impl tokio_postgres::GenericClient) -> i32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        assert!(std::time::Instant::now() < deadline, "no backend waited on a lock");
        let row = client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = row {
            return row.get(0);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
