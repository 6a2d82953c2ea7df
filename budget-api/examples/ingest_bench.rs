//! Ingest benchmark: durable usage records per second, batched writer versus one commit per record.
//!
//! ```sh
//! cargo run --release -p budget-api --example ingest_bench -- --records 20000 --concurrency 64
//! ```
//!
//! Every phase writes to the same fresh database with `synchronous_commit` on (an acknowledged record is
//! on disk), with the bundled price book and a daily hard limit in place, so every record is priced and
//! posted to an enforcement account (the same hot account for all of them). The baseline is the same writer limited to one record per transaction, measured in the same
//! run, so the ratios hold on any machine. Uses `BUDGET_DATABASE_URL`'s server when set, otherwise a
//! private durable cluster under the temp directory.

use std::time::Instant;

use budget_api::{Application, Settings};
use budget_events::db::embedded::{EmbeddedOptions, EmbeddedPostgres};
use budget_events::db::{self, migrate, DbConfig};
use budget_events::domain::{RecordUsage, UsageInput};
use budget_events::ledger::{UsageCommand, UsageItem};
use budget_events::writer::{LogSignal, Writer};
use budget_events::EventMetadata;
use serde_json::json;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number")))
        .unwrap_or(default)
}

fn input(i: usize) -> UsageInput {
    serde_json::from_value(json!({"provider": "openai", "model": "gpt-4o", "component": format!("c{}", i % 8),
        "input_tokens": 1200, "output_tokens": 340, "cost": "0.0064"}))
    .unwrap()
}

fn command(first: usize, n: usize) -> UsageCommand {
    let now = chrono::Utc::now();
    let items = (first..first + n)
        .map(|i| UsageItem { record: RecordUsage::validate(&input(i), now).unwrap(), key: None })
        .collect();
    UsageCommand { items, key: None, metadata: EventMetadata::default(), signer: None }
}

/// `tasks` concurrent callers send `records` records in commands of `per_command`; returns seconds.
async fn drive(writer: &Writer, records: usize, tasks: usize, per_command: usize) -> f64 {
    let commands = records / per_command;
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let writer = writer.clone();
        handles.push(tokio::spawn(async move {
            let mut c = t;
            while c < commands {
                writer.submit(command(c * per_command, per_command)).await.expect("write");
                c += tasks;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed().as_secs_f64()
}

async fn drive_http(url: &str, records: usize, tasks: usize, per_request: usize) -> f64 {
    let requests = records / per_request;
    let http = reqwest::Client::new();
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (http, url) = (http.clone(), url.to_string());
        handles.push(tokio::spawn(async move {
            let mut r = t;
            while r < requests {
                let response = if per_request == 1 {
                    http.post(format!("{url}/api/usage")).json(&input(r)).send().await
                } else {
                    let records: Vec<UsageInput> = (0..per_request).map(|i| input(r * per_request + i)).collect();
                    http.post(format!("{url}/api/usage/batch")).json(&json!({ "records": records })).send().await
                };
                assert!(response.expect("request").status().is_success());
                r += tasks;
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records = arg("--records", 20_000);
    let tasks = arg("--concurrency", 64);

    let (server, cluster) = match std::env::var("BUDGET_DATABASE_URL") {
        Ok(url) => (db::parse_config(&url)?, None),
        Err(_) => {
            let dir = std::env::temp_dir().join("budget-bench-pg");
            let pg = EmbeddedPostgres::start(&dir, &EmbeddedOptions::default())?;
            (pg.config(), Some(pg))
        }
    };
    let name = format!("budget_bench_{}", uuid::Uuid::new_v4().simple());
    let config: DbConfig = db::ensure_database(server.clone(), &name).await?;
    let pool = db::pool(&config, 16);
    let mut migrator = pool.get().await?;
    migrate::migrate(&mut migrator).await?;
    drop(migrator);
    let sync: String = pool.get().await?.query_one("SHOW synchronous_commit", &[]).await?.get(0);
    println!("ingest benchmark: {records} records per phase, {tasks} concurrent callers, synchronous_commit={sync}");

    // Enforcement on: a daily hard limit every record counts against, and the price book.
    let (setup, _) = Writer::spawn(pool.clone(), LogSignal::default());
    let limit: budget_events::domain::policy::PolicyInput =
        serde_json::from_value(json!({"period": "daily", "type": "hard_limit", "cost_limit": "1000000000"}))?;
    let policy = budget_events::domain::policy::SetPolicy::validate(&limit).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    setup
        .submit(budget_events::ledger::PolicyCommand { policy, key: None, metadata: EventMetadata::default() })
        .await?;
    let (_, effective_from, prices) = budget_api::price_book::bundled();
    setup
        .submit(budget_events::ledger::PricesCommand {
            prices,
            effective_from,
            source: budget_events::domain::price::PriceSource::Bundled,
            key: None,
            metadata: EventMetadata::default(),
        })
        .await?;

    let mut results: Vec<(&str, f64)> = Vec::new();
    let baseline_records = records.min(5_000);
    let (one_per_tx, _) = Writer::spawn_with_batch_limit(pool.clone(), LogSignal::default(), 1);
    let secs = drive(&one_per_tx, baseline_records, tasks, 1).await;
    results.push(("writer, one commit per record (baseline)", baseline_records as f64 / secs));

    let (batched, _) = Writer::spawn(pool.clone(), LogSignal::default());
    let secs = drive(&batched, records, tasks, 1).await;
    results.push(("writer, batched commits, 1 record per call", records as f64 / secs));
    let secs = drive(&batched, records, tasks.min(8), 1000).await;
    results.push(("writer, batched commits, 1000 records per call", records as f64 / secs));

    let mut settings = Settings::new("127.0.0.1", 0, config.clone());
    settings.shutdown_timeout = 1;
    let app = Application::build(settings).await?;
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let secs = drive_http(&url, records, tasks, 1).await;
    results.push(("HTTP POST /api/usage, 1 record per request", records as f64 / secs));
    let secs = drive_http(&url, records, tasks.min(8), 1000).await;
    results.push(("HTTP POST /api/usage/batch, 1000 per request", records as f64 / secs));

    let written: i64 = pool
        .get()
        .await?
        .query_one("SELECT count(*) FROM events WHERE event_type = 'UsageRecorded'", &[])
        .await?
        .get(0);
    let posted: i64 =
        pool.get().await?.query_one("SELECT sum(records)::bigint FROM policy_accounts", &[]).await?.get(0);
    let expected = baseline_records + 4 * records;
    assert_eq!(written as usize, expected, "every acknowledged record is in the log, once");
    assert_eq!(posted, written, "every record was posted to the hard-limited window's account");

    let baseline = results[0].1;
    println!("{:<50} {:>12} {:>8}", "phase", "records/s", "ratio");
    for (phase, rate) in &results {
        println!("{phase:<50} {rate:>12.0} {:>7.1}x", rate / baseline);
    }
    println!("log check: {written} usage events written = {expected} acknowledged = {posted} posted to the account");

    pool.close();
    let (client, conn) = server.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).await?;
    if let Some(pg) = cluster.filter(EmbeddedPostgres::started_here) {
        pg.stop()?;
    }
    Ok(())
}
