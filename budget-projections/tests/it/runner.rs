use budget_events::db::testing::TestDb;
use budget_events::store::LogTail;
use budget_projections::health::lag;
use budget_projections::replay::replay;
use budget_projections::runner::apply_batch;
use budget_projections::usage_rollups::UsageRollups;
use budget_projections::{rebuild, Runner, RunnerStatus, Step};
use serde_json::json;
use std::time::Duration;

use crate::{apply_all, input, record, rollup_rows, runner};

/// A record of a fixed past hour: records taken at the wall clock split into two rollup rows when a
/// test runs across the top of an hour (CI failed so at 10:00).
fn usage(component: &str, tokens: i64) -> budget_events::domain::UsageInput {
    input(json!({"provider": "openai", "model": "gpt-4o", "component": component,
                 "input_tokens": tokens, "output_tokens": 1, "cost": "0.5", "timestamp": "2026-01-05T12:30:00Z"}))
}

#[tokio::test]
async fn a_batch_abandoned_before_commit_is_applied_once_later() {
    let db = TestDb::new().await;
    record(&db, &[usage("a", 10), usage("a", 20)]).await;

    // Apply inside a transaction that is then abandoned, as a crash between apply and commit would.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut client = db.pool.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let step = apply_batch(&UsageRollups, &tx, &LogTail::new(db.pool.clone())).await.unwrap();
        drop(tx);
        if step == Step::Applied(2) || std::time::Instant::now() > deadline {
            assert_eq!(step, Step::Applied(2));
            break;
        }
    }
    assert!(rollup_rows(&db).await.is_empty(), "the abandoned apply left rows behind");

    apply_all(&runner(&db), 2).await;
    let rows = rollup_rows(&db).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].ends_with("|a|default|30|2|1.0|2"), "{}", rows[0]);
}

#[tokio::test]
async fn two_runners_never_apply_the_same_projection_at_once() {
    let db = TestDb::new().await;
    record(&db, &[usage("a", 10)]).await;
    let first = runner(&db);
    let second = runner(&db);

    let mut client = db.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    // Hold the projection with an open step (waiting for the event to become visible if need be).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while apply_batch(&UsageRollups, &tx, &LogTail::new(db.pool.clone())).await.unwrap() != Step::Applied(1) {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(second.step().await.unwrap(), Step::Busy, "the second runner must stand by");
    assert_eq!(first.step().await.unwrap(), Step::Busy);
    tx.commit().await.unwrap();

    assert_eq!(second.step().await.unwrap(), Step::CaughtUp);
    let rows = rollup_rows(&db).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].ends_with("|10|1|0.5|1"), "{}", rows[0]);
}

/// Steps `runner` until it applies something (a committed event can take a moment to become visible).
async fn step_until_applied(runner: &budget_projections::Runner<UsageRollups>) -> Step {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match runner.step().await.unwrap() {
            Step::CaughtUp if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await
            }
            other => return other,
        }
    }
}

#[tokio::test]
async fn a_process_that_applied_keeps_the_projection_until_its_lease_lapses() {
    let db = TestDb::new().await;
    // Leases far longer than the steps below take, so that the test does not depend on timing.
    let lease = std::time::Duration::from_secs(2);
    let here = runner(&db).with_lease(lease);
    let elsewhere = runner(&db).as_process(uuid::Uuid::new_v4()).with_lease(lease);
    record(&db, &[usage("a", 10)]).await;
    assert_eq!(step_until_applied(&here).await, Step::Applied(1));

    // Between two of this process's steps (its linger), the other process stands by, though the
    // checkpoint row is free.
    record(&db, &[usage("a", 20)]).await;
    assert_eq!(elsewhere.step().await.unwrap(), Step::Busy, "the lease must keep the other process out");
    assert_eq!(step_until_applied(&here).await, Step::Applied(1));
    assert_eq!(elsewhere.step().await.unwrap(), Step::Busy, "applying renews the lease");

    // Once this process stops applying, the lease lapses and the other process takes over; then this
    // one stands by.
    tokio::time::sleep(lease + std::time::Duration::from_millis(200)).await;
    record(&db, &[usage("a", 30)]).await;
    assert_eq!(step_until_applied(&elsewhere).await, Step::Applied(1));
    assert_eq!(here.step().await.unwrap(), Step::Busy);
    let rows = rollup_rows(&db).await;
    assert!(rows[0].ends_with("|a|default|60|3|1.5|3"), "{}", rows[0]);
}

/// Waits until the first rollup row holds `needle`, calling `meanwhile` between looks.
async fn until_rollup_holds(db: &TestDb, needle: &str, meanwhile: impl Fn()) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rows = rollup_rows(db).await;
        if rows.first().is_some_and(|r| r.contains(needle)) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "no rollup holds {needle}: {rows:?}");
        meanwhile();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_reader_waiting_for_a_position_ends_the_runners_linger() {
    let db = TestDb::new().await;
    let status = RunnerStatus::default();
    // A linger far longer than the test may take: only the hurry can end it.
    let live = Runner::new(UsageRollups, db.pool.clone(), status.clone()).with_linger(Duration::from_secs(3600));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(live.run(budget_events::writer::LogSignal::default(), stopped));

    // The runner finds the first record by polling, applies it, then lingers.
    record(&db, &[usage("a", 10)]).await;
    until_rollup_holds(&db, "|a|default|10|1|", || {}).await;
    record(&db, &[usage("a", 20)]).await;
    // A read with `min_position` hurries the runners while it waits (budget-api/src/consistency.rs).
    until_rollup_holds(&db, "|a|default|30|2|", || status.hurry()).await;
    stop.send(true).unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_step_folds_every_page_the_shared_tail_holds() {
    let db = TestDb::new().await;
    let tail = LogTail::new(db.pool.clone());
    // Another reader of the tail (the hub) reads after every commit, so each commit is a page of its own.
    let mut cursor = budget_events::store::Cursor::START;
    for tokens in [10, 20, 30] {
        record(&db, &[usage("a", tokens)]).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let page = tail.read_after(cursor, 5_000).await.unwrap();
            if let Some(last) = page.last() {
                cursor = budget_events::store::Cursor::after(last);
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the commit never became visible");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    let live = runner(&db).sharing(tail);
    assert_eq!(live.step().await.unwrap(), Step::Applied(3), "one step takes all three pages");
    let rows = rollup_rows(&db).await;
    assert!(rows[0].ends_with("|a|default|60|3|1.5|3"), "{}", rows[0]);
}

#[tokio::test]
async fn rebuild_from_zero_equals_the_live_result() {
    let db = TestDb::new().await;
    let live = runner(&db);
    let mut written = 0;
    for round in 0..4 {
        let batch: Vec<_> = (0..5).map(|i| usage(&format!("c{}", i % 3), round * 10 + i)).collect();
        written += batch.len();
        record(&db, &batch).await;
        apply_all(&live, batch.len()).await;
    }
    let before = rollup_rows(&db).await;
    assert!(!before.is_empty());
    let client = db.pool.get().await.unwrap();
    let checkpoint_before: i64 = client
        .query_one("SELECT position FROM projection_checkpoints WHERE name = 'usage_rollups'", &[])
        .await
        .unwrap()
        .get(0);

    let rebuilt = rebuild(&UsageRollups, &db.pool).await.unwrap();
    if rebuilt != written {
        let log: Vec<String> = client
            .query("SELECT format('%s tx=%s %s', position, tx_id, stream_id) FROM events ORDER BY position", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        panic!("rebuild applied {rebuilt} events, {written} were written; the log:\n{}", log.join("\n"));
    }
    assert_eq!(rollup_rows(&db).await, before);
    let checkpoint_after: i64 = client
        .query_one("SELECT position FROM projection_checkpoints WHERE name = 'usage_rollups'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(checkpoint_after, checkpoint_before);
    assert_eq!(live.step().await.unwrap(), Step::CaughtUp, "nothing is applied twice after a rebuild");
}

#[tokio::test]
async fn health_reports_lag_until_caught_up() {
    let db = TestDb::new().await;
    record(&db, &[usage("a", 1), usage("b", 2), usage("c", 3)]).await;
    let client = db.pool.get().await.unwrap();
    let before = lag(&**client).await.unwrap();
    let rollups = before.iter().find(|l| l.name == "usage_rollups").unwrap();
    assert_eq!(rollups.lag_events, 3);
    assert!(rollups.lag_seconds >= 0.0);

    apply_all(&runner(&db), 3).await;
    let after = lag(&**client).await.unwrap();
    let rollups = after.iter().find(|l| l.name == "usage_rollups").unwrap();
    assert_eq!((rollups.lag_events, rollups.lag_seconds, rollups.events_applied), (0, 0.0, 3));
}

/// The count stays exact past the part read through the index (10,000 events), and after a partial
/// catch-up.
#[tokio::test]
async fn health_counts_a_long_lag_exactly() {
    let db = TestDb::new().await;
    let many: Vec<_> = (0..10_003).map(|i| usage("a", i + 1)).collect();
    record(&db, &many).await;
    let client = db.pool.get().await.unwrap();
    let rollups = |l: Vec<budget_projections::health::ProjectionLag>| {
        let r = l.into_iter().find(|l| l.name == "usage_rollups").unwrap();
        (r.lag_events, r.lag_seconds >= 0.0)
    };
    assert_eq!(rollups(lag(&**client).await.unwrap()), (10_003, true));
    record(&db, &[usage("b", 1), usage("b", 2)]).await;
    apply_all(&runner(&db), 10_005).await;
    assert_eq!(rollups(lag(&**client).await.unwrap()), (0, true));
}

/// Budget and policy events are in the log too; a projection that does not use them passes over them.
#[tokio::test]
async fn projections_pass_over_policy_events() {
    use budget_events::domain::policy::{PolicyInput, SetPolicy};
    use budget_events::ledger::PolicyCommand;
    use budget_events::writer::{LogSignal, Writer};

    let db = TestDb::new().await;
    let (writer, _task) = Writer::spawn(db.pool.clone(), LogSignal::default());
    let input: PolicyInput = serde_json::from_value(json!({"period": "daily", "cost_limit": 1})).unwrap();
    let policy =
        PolicyCommand { policy: SetPolicy::validate(&input).unwrap(), key: None, metadata: Default::default() };
    writer.submit(policy).await.unwrap();
    record(&db, &[usage("a", 10)]).await;
    apply_all(&runner(&db), 3).await; // BudgetCreated, PolicySet, UsageRecorded
    assert_eq!(rollup_rows(&db).await.len(), 1);
}

/// A replay folds into temporary tables named like the live ones. The runners keep their statements
/// prepared per connection, resolved to the live tables when first prepared; a replay on such a
/// connection (one that ran runner steps, and an earlier replay so that its temporary schema already
/// exists) must still write only its own tables, and leave the live rows as they were.
#[tokio::test]
async fn a_replay_never_writes_the_live_tables_through_a_prepared_statement() {
    let db = TestDb::new().await;
    // Two connections: the replay needs both (one folds, one reads ahead), so every round reuses them.
    let pool = budget_events::db::pool(&db.config, 2);
    let live = Runner::new(UsageRollups, pool.clone(), RunnerStatus::default());
    record(&db, &[usage("a", 10)]).await;
    apply_all(&live, 1).await;
    for round in 1..=3 {
        let report = replay(&UsageRollups, &pool, false, |_| {}).await.unwrap();
        assert_eq!(report.differing_rows(), 0, "round {round}: {report:?}");
        assert_eq!(report.events, round);
        let rows = rollup_rows(&db).await;
        assert!(
            rows[0].ends_with(&format!("|a|default|{}|{round}|{:.1}|{round}", 10 * round, 0.5 * round as f64)),
            "round {round}: {rows:?}"
        );
        record(&db, &[usage("a", 10)]).await;
        apply_all(&live, 1).await;
    }
}
