//! HTTP connections between requests: kept open long enough that a client's pool never reuses one
//! the server is closing at that moment, and closed at once when the server stops.

use std::time::Duration;

use budget_api::{Application, Settings};
use budget_events::db::testing::TestDb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::spawn_app;
use crate::stub::read_message;

const REQUEST: &[u8] = b"GET /api/docs HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Sends `REQUEST` on `stream` and reads the head of its answer; `None` if the server closed the
/// connection instead of answering.
async fn exchange(stream: &mut TcpStream) -> Option<String> {
    stream.write_all(REQUEST).await.ok()?;
    read_message(stream).await.map(|(head, _)| head)
}

/// actix closes a connection after 5 s without a request by default. A client whose pool takes that
/// connection for its next request just as the server closes it gets no answer at all (hyper's
/// `IncompleteMessage`; a POST is not retried): reqwest and hyper keep idle connections for 90 s,
/// Python's urllib3 for ever. The server now keeps them longer than those pools' usual reuse.
#[tokio::test]
async fn a_connection_idle_for_longer_than_five_seconds_still_answers() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    let first = exchange(&mut stream).await.expect("the first request is answered");
    assert!(first.starts_with("HTTP/1.1 308"), "{first}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let second = exchange(&mut stream).await.expect("the server kept the idle connection open");
    assert!(second.starts_with("HTTP/1.1 308"), "{second}");
}

/// A long keep-alive must not hold up a stop: an idle connection is closed as the server stops
/// (actix drains HTTP/1 connections), instead of the stop waiting out its shutdown timeout.
#[tokio::test]
async fn a_stop_closes_idle_connections_at_once() {
    let db = TestDb::new().await;
    let mut settings = Settings::new("127.0.0.1", 0, db.config.clone());
    settings.bundled_prices = false;
    settings.shutdown_timeout = 60;
    let app = Application::build(settings).await.expect("the app builds");
    let (port, handle) = (app.port(), app.handle());
    let served = tokio::spawn(app.run_until_stopped());
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    exchange(&mut stream).await.expect("answered");
    let stopped = tokio::time::timeout(Duration::from_secs(20), async {
        handle.stop(true).await;
        served.await
    })
    .await;
    assert!(stopped.is_ok(), "the stop waited for an idle connection instead of closing it");
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the idle connection was closed: {read:?}");
}
