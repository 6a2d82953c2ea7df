use budget_events::db::testing::TestDb;
use budget_events::db::WriteTx;
use budget_events::store::{append, read::read_stream, AppendError, ExpectedVersion, StreamAppend};

use crate::helpers::{count_events, usage_event};

fn stream(expected: ExpectedVersion, n: usize) -> StreamAppend {
    StreamAppend { stream_id: "test-stream".into(), expected, events: (0..n).map(|_| usage_event("codex")).collect() }
}

#[tokio::test]
async fn append_assigns_versions_and_detects_conflicts() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();

    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    let appended = append(&tx, &[stream(ExpectedVersion::NoStream, 2)]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(appended.iter().map(|a| a.stream_version).collect::<Vec<_>>(), [1, 2]);
    assert!(appended[0].position < appended[1].position);

    // A writer that believes the stream is new, or at version 1, is refused and writes nothing.
    for expected in [ExpectedVersion::NoStream, ExpectedVersion::Exact(1)] {
        let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
        let err = append(&tx, &[stream(expected, 1)]).await.unwrap_err();
        assert!(
            matches!(&err, AppendError::Conflict { actual: 2, stream_id, .. } if stream_id == "test-stream"),
            "{err:?}"
        );
        drop(tx);
    }
    assert_eq!(count_events(&**client).await, 2);

    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    let appended = append(&tx, &[stream(ExpectedVersion::Exact(2), 1)]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(appended[0].stream_version, 3);
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    append(&tx, &[stream(ExpectedVersion::Any, 1)]).await.unwrap();
    tx.commit().await.unwrap();

    let events = read_stream(&**client, "test-stream").await.unwrap();
    assert_eq!(events.iter().map(|e| e.stream_version).collect::<Vec<_>>(), [1, 2, 3, 4]);
}

/// A big append goes in many statements, pipelined on the connection: they must reach PostgreSQL in
/// order, or a stream's later version could take an earlier position and be folded first. (Sent
/// through `join_all`, which polls more than 30 futures in no set order, they did not: of these 47
/// statements, version 256 was followed by 11,777.)
#[tokio::test]
async fn a_big_append_keeps_its_events_in_order_in_the_log() {
    let db = TestDb::new().await;
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    let appended = append(&tx, &[stream(ExpectedVersion::NoStream, 12_000)]).await.unwrap();
    tx.commit().await.unwrap();
    let versions: Vec<i64> = appended.iter().map(|a| a.stream_version).collect();
    let first_out_of_order = versions.windows(2).position(|w| w[0] + 1 != w[1]);
    assert_eq!(
        first_out_of_order,
        None,
        "positions follow the versions; around there: {:?}",
        first_out_of_order.map(|i| &versions[i..(i + 3).min(versions.len())])
    );
    assert_eq!(versions.len(), 12_000);
    let client = db.pool.get().await.unwrap();
    let events = read_stream(&**client, "test-stream").await.unwrap();
    assert!(events.windows(2).all(|w| w[0].position < w[1].position), "the log holds them in order");
}

#[tokio::test]
async fn two_transactions_racing_on_one_version_cannot_both_commit() {
    let db = TestDb::new().await;
    let ta = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    append(&ta, &[stream(ExpectedVersion::NoStream, 1)]).await.unwrap();
    let pool = db.pool.clone();
    let second = tokio::spawn(async move {
        let tb = WriteTx::begin(pool.get().await.unwrap()).await.unwrap();
        let r = append(&tb, &[stream(ExpectedVersion::NoStream, 1)]).await;
        (r.is_ok(), tb.commit().await.is_ok())
    });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    ta.commit().await.unwrap();
    // B checked before A committed, so the unique index is what stops it.
    let (appended, committed) = second.await.unwrap();
    assert!(!(appended && committed), "both writers committed version 1");
    assert_eq!(count_events(&**db.pool.get().await.unwrap()).await, 1);
}

#[tokio::test]
async fn the_log_refuses_updates_and_deletes() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    append(&tx, &[stream(ExpectedVersion::NoStream, 1)]).await.unwrap();
    tx.commit().await.unwrap();
    for sql in ["UPDATE events SET event_type = 'x'", "DELETE FROM events", "TRUNCATE events"] {
        let err = client.batch_execute(sql).await.unwrap_err();
        assert!(format!("{err:?}").contains("append-only"), "{sql}: {err:?}");
    }
}

#[tokio::test]
async fn an_unknown_event_type_is_an_error_not_a_skip() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();
    client
        .batch_execute(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             VALUES ('x', 1, gen_random_uuid(), 'FromTheFuture', 1, '{}')",
        )
        .await
        .unwrap();
    let err = crate::helpers::read_settled(&**client, budget_events::store::Cursor::START, 1).await.unwrap_err();
    assert!(err.to_string().contains("FromTheFuture"), "{err}");
}

#[tokio::test]
async fn a_write_transaction_dropped_before_it_ended_closes_its_connection() {
    let db = TestDb::new().await;
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    let pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    append(&tx, &[stream(ExpectedVersion::NoStream, 1)]).await.unwrap();
    drop(tx); // as an error or a panic in the write path would

    // The connection is not handed out again inside the transaction: it is closed, and its backend
    // goes away, taking the uncommitted append with it.
    let client = db.pool.get().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let alive: i64 =
            client.query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid]).await.unwrap().get(0);
        if alive == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the dropped transaction's backend is still there");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let other: i32 = client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    assert_ne!(other, pid, "the pool handed out the dropped transaction's connection again");
    assert_eq!(count_events(&**client).await, 0, "the dropped transaction's append is visible");
}

#[tokio::test]
async fn a_transaction_begun_behind_a_commit_sees_it_and_ends_on_its_own() {
    let db = TestDb::new().await;
    let other = db.pool.get().await.unwrap();
    other.batch_execute("CREATE TABLE probe (x int)").await.unwrap();
    let count = || async { other.query_one("SELECT count(*) FROM probe", &[]).await.unwrap().get::<_, i64>(0) };

    let tx = WriteTx::new(db.pool.get().await.unwrap());
    tx.open_with("INSERT INTO probe VALUES (1)").await.unwrap();
    let first: String = tx.query_one("SELECT pg_current_xact_id()::text", &[]).await.unwrap().get(0);
    // The COMMIT and the next transaction's first statements go out together, in that order.
    let (committed, seen) = tokio::join!(biased; tx.commit_continuing(), async {
        tx.open_with("INSERT INTO probe VALUES (2)").await.unwrap();
        let row = tx.query_one("SELECT count(*), pg_current_xact_id()::text FROM probe", &[]).await.unwrap();
        (row.get::<_, i64>(0), row.get::<_, String>(1))
    });
    committed.unwrap();
    assert_eq!(seen.0, 2, "the next transaction sees what the first committed, and its own row");
    assert_ne!(seen.1, first, "a new transaction");
    assert_eq!(count().await, 1, "the first committed; the second is still open");
    tx.rollback().await.unwrap();
    assert_eq!(count().await, 1, "the second rolled back alone");
}

/// A big batch is inserted in several pipelined statements (`append::insert_events`): the log must
/// still hold it in the batch's order, each event with its own metadata.
#[tokio::test]
async fn a_batch_inserted_in_several_statements_keeps_its_order_and_its_metadata() {
    let db = TestDb::new().await;
    let client = db.pool.get().await.unwrap();
    // Two streams of 300 events (three statements' worth), the metadata changing mid-run.
    let streams: Vec<StreamAppend> = ["first", "second"]
        .into_iter()
        .map(|id| StreamAppend {
            stream_id: id.into(),
            expected: ExpectedVersion::NoStream,
            events: (0..300)
                .map(|i| {
                    let mut event = usage_event("codex");
                    event.metadata.actor = Some(if i < 200 { "alice" } else { "bob" }.into());
                    event.metadata.request_id = (i % 7 == 0).then(|| format!("request-{i}"));
                    event
                })
                .collect(),
        })
        .collect();
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    let appended = append(&tx, &streams).await.unwrap();
    tx.commit().await.unwrap();

    let expected_ids: Vec<_> = streams.iter().flat_map(|s| s.events.iter().map(|e| e.event_id)).collect();
    assert_eq!(appended.iter().map(|a| a.event_id).collect::<Vec<_>>(), expected_ids, "positions follow the batch");
    for s in &streams {
        let logged = read_stream(&**client, &s.stream_id).await.unwrap();
        assert_eq!(logged.iter().map(|e| e.stream_version).collect::<Vec<_>>(), (1..=300).collect::<Vec<i64>>());
        assert!(logged.windows(2).all(|w| w[0].position < w[1].position));
        for (logged, sent) in logged.iter().zip(&s.events) {
            assert_eq!(logged.event_id, sent.event_id);
            assert_eq!(logged.metadata.as_ref(), Some(&sent.metadata));
        }
    }
}

/// A stream version taken in a middle one of a batch's statements fails the whole append as a race
/// (not as the "transaction is aborted" of the statements after it), and the statements before it are
/// rolled back with it.
#[tokio::test]
async fn a_version_taken_in_a_middle_statement_fails_the_whole_append_as_a_race() {
    let db = TestDb::new().await;
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    append(&tx, &[StreamAppend { stream_id: "taken".into(), ..stream(ExpectedVersion::NoStream, 1) }]).await.unwrap();
    tx.commit().await.unwrap();

    let fresh: Vec<_> = (0..600).map(|_| usage_event("codex")).collect();
    let clash = usage_event("codex");
    let mut rows: Vec<(&str, i64, &_)> = fresh.iter().enumerate().map(|(i, e)| ("fresh", i as i64 + 1, e)).collect();
    rows.insert(300, ("taken", 1, &clash));
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    let err = budget_events::store::insert_events(&tx, &rows).await.unwrap_err();
    assert!(matches!(err, AppendError::ConcurrentAppend(_)), "{err:?}");
    drop(tx);
    assert_eq!(count_events(&**db.pool.get().await.unwrap()).await, 1);
}
