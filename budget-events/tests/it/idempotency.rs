use budget_events::db::testing::TestDb;
use budget_events::ledger::{CommandError, ExpireCommand, ItemStatus, UsageCommand};
use budget_events::store::idempotency::IdempotencyKey;
use budget_events::writer::{LogSignal, WriteError, Writer};

use crate::helpers::{command, count_events, hold_ledger_lock, lock_waiter, usage_input};

#[tokio::test]
async fn a_retry_gets_the_stored_outcome_and_writes_nothing() {
    let db = TestDb::new().await;
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let input = usage_input("codex", 1200);

    let first = writer.submit(command(&input, Some("key-1"))).await.unwrap();
    let retry = writer.submit(command(&input, Some("key-1"))).await.unwrap();
    assert_eq!(first.items[0].status, ItemStatus::Recorded);
    assert_eq!(retry.items[0].status, ItemStatus::Duplicate);
    assert_eq!(retry.items[0].record_id, first.items[0].record_id);
    assert_eq!(retry.items[0].position, first.items[0].position);
    assert_eq!(count_events(&**db.pool.get().await.unwrap()).await, 1);

    // Same key, different request: refused, nothing written.
    let other = usage_input("codex", 999);
    let refused = writer.submit(command(&other, Some("key-1"))).await.unwrap();
    assert_eq!(refused.items[0].status, ItemStatus::Rejected);
    assert_eq!(refused.items[0].error.as_ref().unwrap().code, budget_events::ErrorCode::IdempotencyKeyReused);
    assert_eq!(count_events(&**db.pool.get().await.unwrap()).await, 1);
}

/// Outcomes are stored as text that PostgreSQL does not check (schema/0020_unvalidated_text.sql): one
/// that is not JSON (edited by hand) refuses the retry that would replay it, names its key, and writes
/// nothing, instead of answering from it.
#[tokio::test]
async fn a_stored_outcome_that_is_not_json_is_refused_with_its_key_named() {
    let db = TestDb::new().await;
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let input = usage_input("codex", 1200);
    writer.submit(command(&input, Some("key-1"))).await.unwrap();
    let client = db.pool.get().await.unwrap();
    let edited =
        client.execute("UPDATE idempotency_keys SET outcome = '{\"items\": [' WHERE key LIKE '%key-1'", &[]).await;
    assert_eq!(edited.unwrap(), 1);

    let err = writer.submit(command(&input, Some("key-1"))).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, WriteError::Failed(_)), "{err:?}");
    assert!(message.contains("key-1") && message.contains("is not JSON"), "{message}");
    assert_eq!(count_events(&**client).await, 1, "the retry wrote nothing");
}

#[tokio::test]
async fn a_keyed_batch_replays_whole_and_a_reused_key_is_refused() {
    let db = TestDb::new().await;
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let inputs = vec![usage_input("a", 1), usage_input("b", 2)];
    let batch = |inputs: &Vec<_>| {
        let mut cmd = UsageCommand { key: None, ..command(&inputs[0], None) };
        cmd.items = inputs.iter().flat_map(|i| command(i, None).items).collect();
        cmd.key = Some(IdempotencyKey::new("usage-batch", "batch-1", inputs).unwrap());
        cmd
    };
    let first = writer.submit(batch(&inputs)).await.unwrap();
    let again = writer.submit(batch(&inputs)).await.unwrap();
    assert!(again.replayed);
    assert_eq!(first.items, again.items);
    let changed = vec![usage_input("a", 1)];
    let err = writer.submit(batch(&changed)).await.unwrap_err();
    assert!(matches!(err, WriteError::Rejected(CommandError::KeyReused(ref k)) if k == "batch-1"), "{err:?}");
    assert_eq!(count_events(&**db.pool.get().await.unwrap()).await, 2);
}

#[tokio::test]
async fn concurrent_retries_of_one_key_record_it_once() {
    let db = TestDb::new().await;
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let input = usage_input("codex", 5);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (writer, input) = (writer.clone(), input.clone());
        tasks.push(tokio::spawn(async move { writer.submit(command(&input, Some("same"))).await.unwrap() }));
    }
    let mut record_ids = std::collections::HashSet::new();
    for t in tasks {
        record_ids.insert(t.await.unwrap().items[0].record_id);
    }
    assert_eq!(record_ids.len(), 1);
    assert_eq!(count_events(&**db.pool.get().await.unwrap()).await, 1);
}

/// Two writers (two processes' worth) sharing keys: the database, not memory, keeps them apart.
#[tokio::test]
async fn two_writers_sharing_a_key_record_it_once() {
    let db = TestDb::new().await;
    let (w1, _t1) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let (w2, _t2) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let input = usage_input("codex", 5);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (writer, input) = (if i % 2 == 0 { w1.clone() } else { w2.clone() }, input.clone());
        tasks.push(tokio::spawn(async move { writer.submit(command(&input, Some("shared"))).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(count_events(&**db.pool.get().await.unwrap()).await, 1);
}

/// Two sweepers (two processes' writers) expiring the same allocations: each expires once.
#[tokio::test]
async fn two_sweepers_never_expire_an_allocation_twice() {
    use budget_events::domain::allocation::{AllocationInput, CreateAllocation};
    use budget_events::domain::policy::Tier;
    use budget_events::ledger::AllocateCommand;

    let db = TestDb::new().await;
    let (w1, _t1) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let (w2, _t2) = Writer::spawn(db.pool.clone(), LogSignal::default());
    for i in 0..40 {
        let input: AllocationInput = serde_json::from_value(serde_json::json!({
            "context_id": format!("t-{i}"), "component": "c", "tokens": 10, "ttl": 1
        }))
        .unwrap();
        let allocation = CreateAllocation::validate(&input, Tier::derive, &Default::default()).unwrap();
        w1.submit(AllocateCommand {
            allocation,
            unpriced: Default::default(),
            key: None,
            metadata: Default::default(),
            signer: None,
        })
        .await
        .unwrap();
    }
    let later = chrono::Utc::now() + chrono::Duration::seconds(5);
    let (a, b) = tokio::join!(w1.submit(ExpireCommand { at: later }), w2.submit(ExpireCommand { at: later }));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 40, "every due allocation expired by one sweeper or the other");
    assert!(a.iter().all(|id| !b.contains(id)), "no allocation expired twice");
    assert!(w1.submit(ExpireCommand { at: later }).await.unwrap().is_empty());
    let expired: i64 = db
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM events WHERE event_type = 'AllocationExpired'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(expired, 40);
}

/// A batch whose database connection is cut before its commit (a restarted server, a terminated
/// backend) was rolled back by the server: the writer decides it again on another connection and
/// answers as usual, instead of failing the callers. Deterministic: the batch is held on the ledger
/// lock while its backend is terminated.
#[tokio::test]
async fn a_batch_whose_connection_is_cut_before_its_commit_is_decided_again_on_another() {
    let db = TestDb::new().await;
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    writer.submit(command(&usage_input("warm", 1), Some("warm"))).await.unwrap();

    let blocker = hold_ledger_lock(&db).await;
    let submitted = {
        let writer = writer.clone();
        tokio::spawn(async move { writer.submit(command(&usage_input("cut", 1), Some("cut"))).await })
    };
    let waiting = lock_waiter(&blocker).await;
    blocker.execute("SELECT pg_terminate_backend($1)", &[&waiting]).await.unwrap();
    blocker.batch_execute("COMMIT").await.unwrap();

    let outcome = submitted.await.unwrap().expect("decided again on another connection");
    assert_eq!(outcome.items[0].status, ItemStatus::Recorded);
    assert_eq!(count_events(&**db.pool.get().await.unwrap()).await, 2, "the cut batch is in the log once");
}

#[tokio::test]
async fn a_large_outcome_is_stored_with_lz4_and_replays_whole() {
    let db = TestDb::new().await;
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let inputs: Vec<_> = (0..1000).map(|i| usage_input("codex", 100 + i)).collect();
    let batch = || {
        let mut cmd = UsageCommand { key: None, ..command(&inputs[0], None) };
        cmd.items = inputs.iter().flat_map(|i| command(i, None).items).collect();
        cmd.key = Some(IdempotencyKey::new("usage-batch", "big", &inputs).unwrap());
        cmd
    };
    let first = writer.submit(batch()).await.unwrap();
    let client = db.pool.get().await.unwrap();
    // schema/0017: the outcome (about 220 KB here) is compressed with lz4, not pglz, where the server
    // was built with lz4 (the migration leaves pglz on one without).
    let lz4: bool = client
        .query_one("SELECT setting LIKE '%--with-lz4%' FROM pg_config WHERE name = 'CONFIGURE'", &[])
        .await
        .unwrap()
        .get(0);
    let row = client
        .query_one(
            "SELECT pg_column_compression(outcome), pg_column_size(outcome), length(outcome::text)
             FROM idempotency_keys WHERE key = 'usage-batch:big'",
            &[],
        )
        .await
        .unwrap();
    let (method, stored, text): (Option<String>, i32, i32) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(method.as_deref(), Some(if lz4 { "lz4" } else { "pglz" }), "stored {stored} bytes of {text}");
    assert!(stored < text / 2, "compression kept {stored} of {text} bytes");
    let again = writer.submit(batch()).await.unwrap();
    assert!(again.replayed);
    assert_eq!(first.items, again.items);
    assert_eq!(count_events(&**client).await, 1000);
}

#[tokio::test]
async fn commands_decided_behind_each_others_commits_see_them() {
    // Many callers at once: the writer decides each batch behind the previous one's COMMIT. A retry
    // lands in a later batch than its first request, and must find that request's outcome.
    let db = TestDb::new().await;
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let input = usage_input("codex", 10);
    let mut callers = Vec::new();
    for i in 0..200 {
        let writer = writer.clone();
        let input = input.clone();
        callers.push(tokio::spawn(async move {
            let key = format!("key-{i}");
            let first = writer.submit(command(&input, Some(&key))).await.unwrap();
            let retry = writer.submit(command(&input, Some(&key))).await.unwrap();
            (first.items[0].clone(), retry.items[0].clone())
        }));
    }
    for caller in callers {
        let (first, retry) = caller.await.unwrap();
        assert_eq!(first.status, ItemStatus::Recorded);
        assert_eq!(retry.status, ItemStatus::Duplicate);
        assert_eq!(retry.record_id, first.record_id);
    }
    assert_eq!(count_events(&**db.pool.get().await.unwrap()).await, 200);
}
