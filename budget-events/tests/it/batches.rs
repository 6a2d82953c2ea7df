//! A writer batch is one transaction: every write of it (events, stored keys) commits in that
//! transaction, and a write PostgreSQL refuses leaves nothing of its batch behind, while the batch's
//! other commands are written once each. The writer decides each batch behind the previous one's
//! `COMMIT` on the same connection (`writer::run`), so these check across batches that follow each
//! other.

use std::time::Duration;

use budget_events::db::testing::TestDb;
use budget_events::ledger::ItemStatus;
use budget_events::writer::{LogSignal, WriteError, Writer};

use crate::helpers::{command, count_events, hold_ledger_lock, lock_waiter, usage_input};

/// Transactions whose events and stored keys differ in number: each keyed record stores one key in
/// the transaction that appends its event, so a write that ran in another transaction shows here.
async fn split_transactions(client: &impl tokio_postgres::GenericClient) -> Vec<(String, i64, i64)> {
    client
        .query(
            "SELECT x, coalesce(e.n, 0), coalesce(k.n, 0)
             FROM (SELECT xmin::text AS x, count(*) AS n FROM events GROUP BY 1) e
             FULL JOIN (SELECT xmin::text AS x, count(*) AS n FROM idempotency_keys GROUP BY 1) k USING (x)
             WHERE e.n IS DISTINCT FROM k.n",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn every_write_of_a_batch_commits_in_the_batch_s_own_transaction() {
    let db = TestDb::new().await;
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    // 30 callers, each sending 10 records one after the other: batches follow each other, each
    // decided behind the one before's COMMIT.
    let mut callers = Vec::new();
    for caller in 0..30 {
        let writer = writer.clone();
        callers.push(tokio::spawn(async move {
            for n in 0..10 {
                let i = caller * 10 + n;
                let outcome = writer.submit(command(&usage_input("codex", 10 + i), Some(&format!("key-{i}")))).await;
                assert_eq!(outcome.unwrap().items[0].status, ItemStatus::Recorded);
            }
        }));
    }
    for caller in callers {
        caller.await.unwrap();
    }
    let client = db.pool.get().await.unwrap();
    assert_eq!(count_events(&**client).await, 300);
    let transactions: i64 =
        client.query_one("SELECT count(DISTINCT xmin::text) FROM events", &[]).await.unwrap().get(0);
    assert!(
        transactions > 1,
        "the records were written in {transactions} transaction(s), not in batches behind each other"
    );
    assert_eq!(split_transactions(&**client).await, Vec::new());
}

#[tokio::test]
async fn a_write_the_server_refuses_leaves_nothing_of_its_batch_and_the_rest_is_written_once() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();
    // PostgreSQL refuses to store one key: the batch's write fails on the server.
    client
        .batch_execute(
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.key LIKE '%boom%' THEN RAISE EXCEPTION 'boom refused by a test trigger'; END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_boom BEFORE INSERT ON idempotency_keys
                 FOR EACH ROW EXECUTE FUNCTION refuse_boom();",
        )
        .await
        .unwrap();
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    writer.submit(command(&usage_input("warm", 1), Some("warm"))).await.unwrap();

    // Hold the ledger lock so that a first batch waits on it and the commands behind it queue up: they
    // become the next batch, decided behind the first one's COMMIT.
    let blocker = hold_ledger_lock(&db).await;
    let first = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.submit(command(&usage_input("first", 1), Some("first"))).await })
    };
    lock_waiter(&blocker).await;
    let keys: Vec<String> = (0..20).map(|i| if i == 10 { "boom".to_string() } else { format!("key-{i}") }).collect();
    let queued: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let (writer, key) = (writer.clone(), key.clone());
            tokio::spawn(
                async move { writer.submit(command(&usage_input("queued", 100 + i as i64), Some(&key))).await },
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await; // let them queue behind the first batch
    blocker.batch_execute("COMMIT").await.unwrap();

    assert_eq!(first.await.unwrap().unwrap().items[0].status, ItemStatus::Recorded);
    for (key, submitted) in keys.iter().zip(queued) {
        match (key.as_str(), submitted.await.unwrap()) {
            ("boom", Err(WriteError::Failed(message))) => assert!(message.contains("boom refused"), "{message}"),
            ("boom", other) => panic!("the refused record was answered {other:?}"),
            (_, Ok(outcome)) => assert_eq!(outcome.items[0].status, ItemStatus::Recorded, "{key}"),
            (_, Err(e)) => panic!("{key} failed with its batch: {e}"),
        }
    }
    assert_eq!(count_events(&**client).await, 21, "warm, first, and the 19 that were not refused, once each");
    let keys_stored: i64 = client.query_one("SELECT count(*) FROM idempotency_keys", &[]).await.unwrap().get(0);
    assert_eq!(keys_stored, 21);
    assert_eq!(split_transactions(&**client).await, Vec::new());
}

/// A refused reservation is a decision, kept in the log (`BudgetRefused`, which raises its alert): a
/// batch of nothing but refusals wakes the log's readers like any other commit, so the refusal's alert
/// does not wait for the projections' next poll (up to a second on an idle server).
#[tokio::test]
async fn a_batch_of_refusals_wakes_the_readers_of_the_log() {
    use budget_events::domain::allocation::{AllocationInput, CreateAllocation};
    use budget_events::domain::policy::{PolicyInput, SetPolicy, Tier};
    use budget_events::ledger::{AllocateCommand, CommandError, PolicyCommand};
    use budget_events::EventMetadata;

    let db = TestDb::new().await;
    let signal = LogSignal::default();
    let (writer, _task) = Writer::spawn(db.pool.clone(), signal.clone());
    let input: PolicyInput = serde_json::from_value(serde_json::json!({
        "period": "daily", "type": "hard_limit", "token_limit": 100
    }))
    .unwrap();
    let policy = SetPolicy::validate(&input).unwrap();
    writer.submit(PolicyCommand { policy, key: None, metadata: EventMetadata::default() }).await.unwrap();

    let mut woken = signal.subscribe();
    woken.mark_unchanged();
    let input: AllocationInput =
        serde_json::from_value(serde_json::json!({ "context_id": "t", "component": "c", "tokens": 1000 })).unwrap();
    let allocation = CreateAllocation::validate(&input, Tier::derive, &Default::default()).unwrap();
    let refused = writer
        .submit(AllocateCommand {
            allocation,
            unpriced: Default::default(),
            key: None,
            metadata: Default::default(),
            signer: None,
        })
        .await;
    assert!(matches!(refused, Err(WriteError::Rejected(CommandError::BudgetExceeded(_)))), "{refused:?}");
    let kept: i64 = db
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM events WHERE event_type = 'BudgetRefused'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "the refusal is in the log");
    assert!(woken.has_changed().unwrap(), "the commit that appended the refusal woke the log's readers");
}
