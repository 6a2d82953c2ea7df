//! Connections to PostgreSQL: the pool, the migrations, a private cluster for `budget start`, and the
//! fresh-database helper for tests.

pub mod embedded;
pub mod migrate;
#[cfg(feature = "testing")]
pub mod testing;
mod write_tx;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

pub use deadpool_postgres::{Client, Pool as DbPool};
pub use tokio_postgres::Config as DbConfig;
pub use write_tx::WriteTx;

/// Sent at the start of a transaction whose every statement finds its rows by key (the writer's
/// batches of usage and reservations): its statements are then planned once per connection instead of
/// on every run ([`pool`]). Sequential scans are ruled out so that a plan made while a table was nearly
/// empty still finds rows by index once it has grown. `SET LOCAL` ends with the transaction.
///
/// Not for the projection runners' steps: tried there, the machine spent 434–460 µs of CPU per single
/// record against 289–300 without (`budget bench`, two pairs): some fold statement's generic plan is
/// worse than planning it every time.
pub const PLAN_ONCE: &str = "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off";

/// A pool of connections to one database. Every connection runs in UTC, so SQL date arithmetic
/// (`date_trunc`, `now()`) agrees with the Rust side.
///
/// Statements are planned with their parameters every time (`plan_cache_mode=force_custom_plan`):
/// the write path keeps its statements prepared, and after five runs PostgreSQL may switch a prepared
/// statement to a generic plan chosen when its table was nearly empty. The idempotency lookup
/// (`key = ANY($1)`) went on scanning the whole table that way: 1.0 ms a batch instead of 0.07, and
/// `POST /api/usage` 3,054 instead of 3,595 records/s (`budget bench`, same machine and day). Parsing
/// them is still saved. The writer's batches of usage and reservations plan theirs once per connection
/// instead ([`PLAN_ONCE`]): planning them cost PostgreSQL half as much as running them.
pub fn pool(config: &DbConfig, size: usize) -> Pool {
    let mut config = config.clone();
    config.options("-c TimeZone=UTC -c plan_cache_mode=force_custom_plan");
    if config.get_application_name().is_none() {
        config.application_name("budget");
    }
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    // Last in, first out: the busiest tasks (the writer, the projections) keep taking the same few warm
    // connections. First in, first out, every connection took its turn at the writer's big batches and
    // kept a buffer the size of the largest (tokio-postgres reuses its buffers, it never shrinks
    // them): 16 connections held ~10 MB each after a burst of batch writes (heaptrack, `budget bench`).
    Pool::builder(manager)
        .max_size(size)
        .queue_mode(deadpool_postgres::QueueMode::Lifo)
        .build()
        .expect("a pool without a runtime-specific hook always builds")
}

/// Parses a `postgres://…` URL or a `host=… dbname=…` string.
pub fn parse_config(url: &str) -> Result<DbConfig, tokio_postgres::Error> {
    url.parse()
}

/// A readable description of where a config points, without any password.
pub fn describe(config: &DbConfig) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("postgres"))
}

/// A config as a `host=… port=… user=… dbname=…` string, which `budget start --database-url` accepts
/// (the key=value form, so a Unix socket directory needs no escaping; the user is `postgres` if unset,
/// as for the private cluster).
pub fn conninfo(config: &DbConfig) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let mut s = format!(
        "host={host} port={} user={}",
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_user().unwrap_or("postgres")
    );
    if let Some(password) = config.get_password() {
        let password = String::from_utf8_lossy(password).replace('\\', "\\\\").replace('\'', "\\'");
        s += &format!(" password='{password}'");
    }
    s + &format!(" dbname={}", config.get_dbname().unwrap_or("postgres"))
}

/// Whether `e`, or an error it was caused by, says the connection is gone (closed, terminated by the
/// server, shut down): the work can be tried again on another connection, since whatever its
/// transaction did was rolled back with it.
pub fn connection_lost(e: &(dyn std::error::Error + 'static)) -> bool {
    use tokio_postgres::error::SqlState;
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
            return pg.is_closed()
                || pg.code().is_some_and(|c| {
                    c.code().starts_with("08")
                        || [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW]
                            .contains(c)
                });
        }
        cause = e.source();
    }
    false
}

/// A database error with the server's own message (`tokio_postgres::Error` displays only "db error").
pub fn error_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {}{}",
            db.code().code(),
            db.message(),
            db.detail().map_or(String::new(), |d| format!(" ({d})"))
        ),
        None => e.to_string(),
    }
}

/// Creates database `name` on the server of `config` if it does not exist; returns the config for it.
pub async fn ensure_database(mut config: DbConfig, name: &str) -> Result<DbConfig, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(connection);
    let exists = client.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await?.is_some();
    if !exists {
        client.batch_execute(&format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""))).await?;
    }
    config.dbname(name);
    Ok(config)
}
