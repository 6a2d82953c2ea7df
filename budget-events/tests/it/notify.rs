//! Other server processes hear of a commit through `NOTIFY`, not only at their next poll
//! (`store::notify`). Each process here is a `LogSignal` of its own on one database.

use std::time::Duration;

use budget_events::db::testing::TestDb;
use budget_events::store::notify::{run, CHANNEL};
use budget_events::writer::LogSignal;
use tokio::sync::watch;

/// Generous: these wait for a notification to arrive, they do not time it.
const PATIENCE: Duration = Duration::from_secs(20);

async fn next_change(receiver: &mut watch::Receiver<u64>) -> u64 {
    tokio::time::timeout(PATIENCE, receiver.changed()).await.expect("no wake-up came").unwrap();
    *receiver.borrow_and_update()
}

#[tokio::test]
async fn a_commit_announced_by_one_process_wakes_the_readers_of_another_and_not_its_announcer() {
    let db = TestDb::new().await;
    let (stop_tx, stop) = watch::channel(false);
    let (writing, reading) = (LogSignal::default(), LogSignal::default());
    let mut woken = reading.subscribe();
    let mut writer_woken = writing.subscribe();
    tokio::spawn(run(db.config.clone(), reading.clone(), stop.clone()));
    tokio::spawn(run(db.config.clone(), writing.clone(), stop.clone()));
    // Each process's notifier wakes its readers once it listens (for whatever was announced before).
    next_change(&mut woken).await;
    next_change(&mut writer_woken).await;

    writing.notify(); // the writing process committed
    assert_eq!(next_change(&mut writer_woken).await, 2, "its own commit wakes its readers");
    next_change(&mut woken).await;

    // The writing process's notifier hears its own announcement first and leaves it out, then another
    // process's notification, which wakes its readers: once more in all, not twice.
    db.pool.get().await.unwrap().execute(&format!("NOTIFY {CHANNEL}, 'another process'"), &[]).await.unwrap();
    next_change(&mut woken).await;
    while *writer_woken.borrow_and_update() < 3 {
        next_change(&mut writer_woken).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*writer_woken.borrow(), 3, "its own announcement came back as a wake-up");
    let _ = stop_tx.send(true);
}

#[tokio::test]
async fn a_notifier_whose_connection_is_cut_listens_again() {
    let db = TestDb::new().await;
    let (_stop_tx, stop) = watch::channel(false);
    let signal = LogSignal::default();
    let mut woken = signal.subscribe();
    tokio::spawn(run(db.config.clone(), signal.clone(), stop));
    next_change(&mut woken).await;

    let admin = db.pool.get().await.unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'budget notifier'",
            &[],
        )
        .await
        .unwrap();
    // Woken once it listens again (for what it may have missed), then by notifications again.
    next_change(&mut woken).await;
    admin.execute(&format!("NOTIFY {CHANNEL}, 'another process'"), &[]).await.unwrap();
    next_change(&mut woken).await;
}
