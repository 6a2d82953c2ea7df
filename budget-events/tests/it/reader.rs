use budget_events::db::testing::TestDb;
use budget_events::db::WriteTx;
use budget_events::store::{append, read_after, Cursor, ExpectedVersion, StreamAppend, MARK_NON_APPENDER};

use crate::helpers::{read_settled, usage_event};

fn one(stream_id: &str) -> Vec<StreamAppend> {
    vec![StreamAppend {
        stream_id: stream_id.into(),
        expected: ExpectedVersion::NoStream,
        events: vec![usage_event("c")],
    }]
}

/// The reason for the (tx_id, position) cursor: transaction A takes a position first but commits after
/// B. A `position > cursor` reader would see B, move past A's position, and never see A.
#[tokio::test]
async fn an_event_that_commits_late_is_not_skipped() {
    let db = TestDb::new().await;
    let reader = db.pool.get().await.unwrap();

    let ta = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    let first = append(&ta, &one("early-position-late-commit")).await.unwrap();
    let tb = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    let second = append(&tb, &one("late-position-early-commit")).await.unwrap();
    assert!(first[0].position < second[0].position);
    tb.commit().await.unwrap();

    // B is committed, but A is still open: the reader must not move past A's slot, so it sees nothing.
    let seen = read_after(&**reader, Cursor::START, 100).await.unwrap();
    assert!(seen.is_empty(), "read past an open transaction: {seen:?}");
    // What a naive reader would have done:
    let naive: i64 = reader.query_one("SELECT count(*) FROM events WHERE position > 0", &[]).await.unwrap().get(0);
    assert_eq!(naive, 1, "the naive reader sees B only, and would skip A");

    ta.commit().await.unwrap();
    let seen = read_settled(&**reader, Cursor::START, 2).await.unwrap();
    let streams: Vec<_> = seen.iter().map(|e| e.stream_id.as_str()).collect();
    assert_eq!(streams, ["early-position-late-commit", "late-position-early-commit"]);

    // Reading on from the last event finds nothing more, and never an event twice.
    let cursor = Cursor::after(seen.last().unwrap());
    assert!(read_after(&**reader, cursor, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn reading_in_pages_visits_every_event_once() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();
    for i in 0..25 {
        let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
        append(&tx, &one(&format!("s-{i}"))).await.unwrap();
        tx.commit().await.unwrap();
    }
    assert_eq!(read_settled(&**client, Cursor::START, 25).await.unwrap().len(), 25);
    let mut cursor = Cursor::START;
    let mut seen = Vec::new();
    loop {
        let page = read_after(&**client, cursor, 7).await.unwrap();
        let Some(last) = page.last() else { break };
        cursor = Cursor::after(last);
        seen.extend(page.into_iter().map(|e| e.stream_id));
    }
    assert_eq!(seen, (0..25).map(|i| format!("s-{i}")).collect::<Vec<_>>());
}

/// Transaction ids are ordered as numbers, not as text ("100" sorts before "99" as text). The rows are
/// written with explicit ids, as two transactions 99 and 100 would have left them.
#[tokio::test]
async fn transaction_ids_are_ordered_as_numbers() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();
    let payload = serde_json::to_value(match usage_event("c").event {
        budget_events::Event::UsageRecorded(u) => u,
        _ => unreachable!(),
    })
    .unwrap();
    for (tx, stream) in [("100", "later-transaction"), ("99", "earlier-transaction")] {
        client
            .execute(
                "INSERT INTO events (tx_id, stream_id, stream_version, event_id, event_type, schema_version, payload)
                 VALUES ($1::text::xid8, $2, 1, gen_random_uuid(), 'UsageRecorded', 1, $3::json)",
                &[&tx, &stream, &payload],
            )
            .await
            .unwrap();
    }
    let seen = read_settled(&**client, Cursor::START, 2).await.unwrap();
    let order: Vec<_> = seen.iter().map(|e| (e.tx_id, e.stream_id.as_str())).collect();
    assert_eq!(order, [(99, "earlier-transaction"), (100, "later-transaction")]);
}

/// A projection step holds a transaction id (its checkpoint's row lock) from its first statement to its
/// commit; marked as never appending, it does not hold the log's readers back. The mark ends with its
/// transaction: the same session's next transaction, unmarked, holds them back as any other does.
#[tokio::test]
async fn a_transaction_marked_as_never_appending_does_not_hold_readers_back() {
    let db = TestDb::new().await;
    let reader = db.pool.get().await.unwrap();
    let mut session = db.pool.get().await.unwrap();

    let marked = session.transaction().await.unwrap();
    marked.query(&format!("SELECT {MARK_NON_APPENDER}, pg_current_xact_id()"), &[]).await.unwrap();
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    append(&tx, &one("after-a-marked-transaction")).await.unwrap();
    tx.commit().await.unwrap();
    // Settled: another test's transaction may hold the horizon back for a moment, never for 20 s.
    let seen = read_settled(&**reader, Cursor::START, 1).await.unwrap();
    assert_eq!(seen.len(), 1, "a transaction marked as never appending held the reader back");
    marked.commit().await.unwrap();

    let unmarked = session.transaction().await.unwrap();
    unmarked.query("SELECT pg_current_xact_id()", &[]).await.unwrap();
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    append(&tx, &one("after-an-unmarked-transaction")).await.unwrap();
    tx.commit().await.unwrap();
    let cursor = Cursor::after(&seen[0]);
    assert!(
        read_after(&**reader, cursor, 100).await.unwrap().is_empty(),
        "read past a running transaction that could still append"
    );
    unmarked.commit().await.unwrap();
    let seen = read_settled(&**reader, cursor, 1).await.unwrap();
    assert_eq!(seen.iter().map(|e| e.stream_id.as_str()).collect::<Vec<_>>(), ["after-an-unmarked-transaction"]);
}

/// `log_horizon()` must work on the snapshot of the statement that calls it, the one its scan of
/// `events` uses (`schema/0019_log_horizon.sql`). Here a transaction that appended is running when a
/// read-committed statement takes its snapshot and commits while that statement sleeps, before the
/// statement calls the function: on the statement's snapshot it is still running, so the horizon is
/// not past it. A function that took a snapshot of its own would see it committed and return a
/// horizon past it, and a scan on the older snapshot would then skip its events for good.
#[tokio::test]
async fn the_horizon_and_the_scan_share_a_snapshot() {
    let db = TestDb::new().await;
    let reader = db.pool.get().await.unwrap();
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    append(&tx, &one("commits-during-a-read")).await.unwrap();
    let running: String = tx.query_one("SELECT pg_current_xact_id()::text", &[]).await.unwrap().get(0);
    let running: u64 = running.parse().unwrap();

    let statement = async {
        reader
            .query_one(
                "SELECT log_horizon()::text, (SELECT count(*) FROM events) FROM (SELECT pg_sleep(0.5) OFFSET 0) AS s",
                &[],
            )
            .await
            .unwrap()
    };
    let commit_meanwhile = async {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        tx.commit().await.unwrap();
    };
    let (row, ()) = tokio::join!(statement, commit_meanwhile);
    let horizon: u64 = row.get::<_, String>(0).parse().unwrap();
    let seen: i64 = row.get(1);
    assert_eq!(seen, 0, "the statement's scan ran on a snapshot taken before the commit");
    assert!(horizon <= running, "the horizon {horizon} is past transaction {running}, which the scan did not see");

    // A statement after the commit sees it committed: the horizon moves past it.
    let after: String = reader.query_one("SELECT log_horizon()::text", &[]).await.unwrap().get(0);
    assert!(after.parse::<u64>().unwrap() > running);
}

/// The reads that fold the log (the projections' tail, the hub, the replay) leave the metadata out;
/// the audit's read carries it. Both read the same events in the same order.
#[tokio::test]
async fn the_reads_that_fold_the_log_leave_its_metadata_out_and_the_audit_read_keeps_it() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();
    let mut event = usage_event("c");
    event.metadata.actor = Some("alice".into());
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    append(&tx, &[StreamAppend { stream_id: "s".into(), expected: ExpectedVersion::NoStream, events: vec![event] }])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Settled first: another test's open transaction may hold the horizon back for a moment (CI saw
    // this read come back empty), and once past the event the horizon stays past it.
    let full = read_settled(&**client, Cursor::START, 1).await.unwrap();
    assert_eq!(full[0].metadata.as_ref().and_then(|m| m.actor.as_deref()), Some("alice"));
    let folded = budget_events::store::read_after_cached(&client, Cursor::START, 10).await.unwrap();
    let raw = budget_events::store::read::read_raw_after(&**client, Cursor::START, 10).await.unwrap();
    for events in [folded, raw.decode().unwrap()] {
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_id, full[0].event_id);
        assert!(events[0].metadata.is_none(), "{:?}", events[0].metadata);
    }
}
