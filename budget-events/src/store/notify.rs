//! Telling the other server processes on the same database that the log has grown.
//!
//! In one process the writer wakes the projection runners and the WebSocket hub through its
//! [`LogSignal`]. Another process learned of a commit only by polling, with a backoff of up to half a
//! second for the hub, so its WebSocket clients waited for the next poll (`budget bench`, a client on
//! a second server process: p99 47–218 ms at 2,000 records/s). Now every process keeps one connection
//! ([`run`]) that `LISTEN`s, and on it:
//!
//! - sends `NOTIFY budget_log` after this process's commits: never inside the append transaction,
//!   where PostgreSQL would hold a database-wide lock from the notification to the commit, serializing
//!   every commit with it. Commits that come while one `NOTIFY` is on its way share the next one. The
//!   payload names the process ([`LogSignal::origin`]).
//! - turns each notification from another process into a wake-up of this process's readers
//!   ([`LogSignal::wake`]), without announcing it again. Its own come back on the same connection at
//!   the end of the `NOTIFY`'s transaction, and are left out. (A second connection for the `NOTIFY`s
//!   made the same process's WebSocket p99 worse, 46 → 50–64 ms: each commit then woke one more
//!   backend and two more tasks, right when the hub reads.)
//!
//! Polling stays as the fallback: a lost notification (a dropped connection, a server restart) costs
//! at most one poll's delay.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

use crate::db::DbConfig;
use crate::writer::LogSignal;

/// The notification channel every process of one database uses.
pub const CHANNEL: &str = "budget_log";

/// How long a lost connection waits before it is opened again.
const RETRY: Duration = Duration::from_secs(1);

/// Announces this process's commits and listens for the others', on its own connection to `config`,
/// until `stop` turns true. Reconnects after a lost connection.
pub async fn run(config: DbConfig, signal: LogSignal, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        // A `stop` whose sender is gone is a stop too (else `changed` would return at once, for ever).
        let ended = tokio::select! {
            ended = run_once(&config, &signal) => ended,
            changed = stop.changed() => if changed.is_err() { return } else { continue },
        };
        tracing::warn!(error = %ended, "lost the connection that tells other server processes about commits; reconnecting (they poll meanwhile)");
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            changed = stop.changed() => if changed.is_err() { return },
        }
    }
}

/// One connection, until it fails: what went wrong.
async fn run_once(config: &DbConfig, signal: &LogSignal) -> String {
    let mut config = config.clone();
    config.application_name("budget notifier");
    let (client, mut connection) = match config.connect(tokio_postgres::NoTls).await {
        Ok(connected) => connected,
        Err(e) => return crate::db::error_message(&e),
    };
    // The connection's messages (the notifications among them) come only while it is polled, so it is
    // polled here, and statements are sent meanwhile.
    let (messages_tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = stream.next().await {
            if messages_tx.send(message).is_err() {
                break;
            }
        }
    });
    let mut committed = signal.subscribe_commits();
    let result: Result<(), String> = async {
        let failed = |e: tokio_postgres::Error| crate::db::error_message(&e);
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await.map_err(failed)?;
        let notify = client.prepare(&format!("SELECT pg_notify('{CHANNEL}', $1)")).await.map_err(failed)?;
        // Commits made before the `LISTEN` took effect (or while the connection was down) were not
        // heard: the readers look once.
        signal.wake();
        loop {
            tokio::select! {
                changed = committed.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    committed.borrow_and_update();
                    client.execute(&notify, &[&signal.origin()]).await.map_err(failed)?;
                }
                message = messages.recv() => match message {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        if n.channel() == CHANNEL && n.payload() != signal.origin() {
                            signal.wake();
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(failed(e)),
                    None => return Err("the connection closed".to_string()),
                },
            }
        }
    }
    .await;
    driver.abort();
    match result {
        Ok(()) => "the process's log signal is gone".to_string(),
        Err(e) => e,
    }
}
