use budget_events::db::testing::TestDb;
use budget_events::db::WriteTx;
use budget_events::store::{append, Cursor, ExpectedVersion, LogTail, StreamAppend};
use budget_events::RecordedEvent;

use crate::helpers::{read_settled, usage_event};

async fn commit_one(db: &TestDb, stream_id: &str) {
    let tx = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    let events = vec![usage_event("c")];
    append(&tx, &[StreamAppend { stream_id: stream_id.into(), expected: ExpectedVersion::NoStream, events }])
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

fn ids(events: &[RecordedEvent]) -> Vec<String> {
    events.iter().map(|e| e.stream_id.clone()).collect()
}

/// A read came back short: the log's horizon was held back for a moment by a transaction of another
/// test's database (`log_horizon()` cannot always tell, within one statement, that a transaction
/// which has just ended was another database's). A reader meets that as an empty read and reads
/// again; these tests, which count the tail's queries, run again from the start instead.
#[derive(Debug)]
struct Lagged;

/// `events`, if there are `n` of them.
fn full<E: std::ops::Deref<Target = [RecordedEvent]>>(events: E, n: usize) -> Result<E, Lagged> {
    if events.len() < n {
        return Err(Lagged);
    }
    Ok(events)
}

/// Runs `scenario` on fresh databases until one run does not meet the horizon's lag (five runs at most).
async fn without_lag<F, Fut>(scenario: F)
where
    F: Fn(TestDb) -> Fut,
    Fut: std::future::Future<Output = Result<(), Lagged>>,
{
    for _ in 0..5 {
        if scenario(TestDb::new().await).await.is_ok() {
            return;
        }
    }
    panic!("every run met the log's horizon held back by another database's transaction");
}

/// What a reader gets through the tail is what its own read would return, from any cursor; readers
/// that come after the first past the end find its page instead of reading the log again.
#[tokio::test]
async fn readers_of_a_tail_get_their_own_reads_and_the_log_is_read_once_per_page() {
    without_lag(|db| async move {
        for i in 0..25 {
            commit_one(&db, &format!("s-{i}")).await;
        }
        let client = db.pool.get().await.unwrap();
        let all = read_settled(&**client, Cursor::START, 25).await.unwrap();
        let at = |i: usize| Cursor::after(&all[i]);
        let tail = LogTail::new(db.pool.clone());

        let first = full(tail.read_after(Cursor::START, 10).await.unwrap(), 10)?;
        assert_eq!(ids(&first), ids(&all[..10]));
        assert_eq!(tail.queries(), 1);
        // Other readers, from the start and from inside: the same page, no new query.
        let second = tail.read_after(Cursor::START, 5_000).await.unwrap();
        assert_eq!(ids(&second), ids(&all));
        let inside = tail.read_after(at(9), 100).await.unwrap();
        assert_eq!(ids(&inside), ids(&all[10..]));
        assert_eq!(tail.queries(), 1);

        // At the end: the log is read again, and what it holds now is shared too.
        assert!(tail.read_after(at(24), 100).await.unwrap().is_empty());
        assert_eq!(tail.queries(), 2);
        for i in 25..30 {
            commit_one(&db, &format!("s-{i}")).await;
        }
        let all = read_settled(&**client, Cursor::START, 30).await.unwrap();
        let newer = full(tail.read_after(at(24), 100).await.unwrap(), 5)?;
        assert_eq!(ids(&newer), ids(&all[25..]));
        assert_eq!(ids(&tail.read_after(at(24), 2).await.unwrap()), ids(&all[25..27]));
        assert_eq!(tail.queries(), 3);
        Ok(())
    })
    .await;
}

/// A reader behind what the tail holds reads alone; one ahead of it (a checkpoint another process
/// moved) starts a new stretch. Both get exactly their own reads.
#[tokio::test]
async fn readers_outside_what_the_tail_holds_read_the_log_themselves() {
    without_lag(|db| async move {
        for i in 0..12 {
            commit_one(&db, &format!("s-{i}")).await;
        }
        let client = db.pool.get().await.unwrap();
        let all = read_settled(&**client, Cursor::START, 12).await.unwrap();
        let at = |i: usize| Cursor::after(&all[i]);
        // Holding about 4 events: reading from the start in pages of 4 leaves only the newest pages held.
        let tail = LogTail::holding(db.pool.clone(), 4);
        let mut cursor = Cursor::START;
        let mut seen = Vec::new();
        loop {
            let page = tail.read_after(cursor, 4).await.unwrap();
            let Some(last) = page.last() else { break };
            cursor = Cursor::after(last);
            seen.extend(ids(&page));
        }
        if seen.len() < all.len() {
            return Err(Lagged);
        }
        assert_eq!(seen, ids(&all));

        let queries = tail.queries();
        let behind = full(tail.read_after(at(1), 3).await.unwrap(), 3)?;
        assert_eq!(ids(&behind), ids(&all[2..5]));
        assert_eq!(tail.queries(), queries + 1, "a reader behind the held pages reads for itself");

        // A tail whose first reader started at event 2: a reader at event 10 is ahead of its pages.
        let tail = LogTail::holding(db.pool.clone(), 4);
        assert_eq!(ids(&full(tail.read_after(at(1), 4).await.unwrap(), 4)?), ids(&all[2..6]));
        let ahead = full(tail.read_after(at(9), 100).await.unwrap(), 2)?;
        assert_eq!(ids(&ahead), ids(&all[10..]));
        assert_eq!(ids(&tail.read_after(at(9), 100).await.unwrap()), ids(&all[10..]));
        assert_eq!(tail.queries(), 2, "the second reader from there shares the first one's page");
        assert_eq!(ids(&full(tail.read_after(Cursor::START, 3).await.unwrap(), 3)?), ids(&all[..3]));
        assert_eq!(tail.queries(), 3);
        Ok(())
    })
    .await;
}

/// The tail reads with the gap-safe reader: an event whose transaction commits after a later one is
/// not skipped, by the reader that fills the tail nor by those that come after it.
#[tokio::test]
async fn an_event_that_commits_late_is_not_skipped_by_readers_of_a_tail() {
    let db = TestDb::new().await;
    let tail = LogTail::new(db.pool.clone());
    let ta = WriteTx::begin(db.pool.get().await.unwrap()).await.unwrap();
    let events = vec![usage_event("c")];
    append(&ta, &[StreamAppend { stream_id: "late".into(), expected: ExpectedVersion::NoStream, events }])
        .await
        .unwrap();
    commit_one(&db, "early").await;

    assert!(tail.read_after(Cursor::START, 100).await.unwrap().is_empty(), "read past an open transaction");
    ta.commit().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let seen = loop {
        let seen = tail.read_after(Cursor::START, 100).await.unwrap();
        if seen.len() == 2 || std::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(ids(&seen), ["late", "early"]);
    assert_eq!(ids(&tail.read_after(Cursor::START, 100).await.unwrap()), ["late", "early"]);
}
