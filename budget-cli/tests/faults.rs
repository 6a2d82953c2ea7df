//! Faults and races, in the repository: the promises under `kill -9`, lost database connections,
//! SIGTERM and two processes writing at once, tried on the real `budget start` binary with 32 concurrent writers that retry with their
//! idempotency keys as real clients do. Afterwards every acknowledged record is in the log exactly once
//! and `budget replay --verify` finds the accounts equal to the fold of the log.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use budget_events::db::testing::TestDb;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_budget");
const WRITERS: usize = 32;

/// `budget start` on `port` against the test database; killed (SIGKILL) if a failed assertion leaves it.
struct Service {
    child: Option<Child>,
    port: u16,
    database: String,
}

impl Service {
    async fn start(database: &str, port: u16) -> Service {
        let child = Command::new(BIN)
            .args(["start", "--port", &port.to_string()])
            .env("BUDGET_DATABASE_URL", database)
            .env("BUDGET_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let service = Service { child: Some(child), port, database: database.to_string() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::get(format!("{}/api/health", service.url())).await.is_err() {
            assert!(Instant::now() < deadline, "budget start did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        service
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn signal(&mut self, signal: &str) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        child.wait().unwrap()
    }

    async fn restart(&mut self) {
        *self = Service::start(&self.database.clone(), self.port).await;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends records until told to stop, each retried with its key until acknowledged; returns the keys
/// acknowledged.
async fn writer(url: String, id: usize, stop: Arc<AtomicBool>, unavailable: Arc<Mutex<u64>>) -> Vec<String> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let mut acknowledged = Vec::new();
    for n in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("w{id}-{n}");
        let body = json!({"provider": "openai", "model": "gpt-4o", "component": format!("c{}", id % 4),
                          "input_tokens": 100, "output_tokens": 10, "cost": "0.001"});
        loop {
            let sent = http.post(format!("{url}/api/usage")).header("Idempotency-Key", &key).json(&body).send().await;
            match sent.map(|r| r.status().as_u16()) {
                Ok(200 | 201) => break,
                Ok(503) => *unavailable.lock().unwrap() += 1,
                Ok(other) => panic!("POST /api/usage answered {other} for {key}"),
                Err(_) => {} // the server is down or went down mid-request: retry with the same key
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acknowledged.push(key);
    }
    acknowledged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_records_survive_kill_9_lost_connections_and_sigterm_exactly_once() {
    let db = TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut service = Service::start(&db.connection_string(), port).await;
    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "1000000", "provider": "openai"});
    let r = reqwest::Client::new().post(format!("{}/api/policies", service.url())).json(&policy).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);

    let stop = Arc::new(AtomicBool::new(false));
    let unavailable = Arc::new(Mutex::new(0u64));
    let writers: Vec<_> =
        (0..WRITERS).map(|id| tokio::spawn(writer(service.url(), id, stop.clone(), unavailable.clone()))).collect();

    // Three kill -9s under load.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let status = service.signal("-KILL");
        assert!(!status.success());
        service.restart().await;
    }

    // Every database connection lost: the service answers 503 meanwhile and recovers by itself.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let admin = db.pool.get().await.unwrap();
    let terminated: i64 = admin
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()) t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(terminated > 0, "the service had no sessions to lose");
    let lost_at = Instant::now();
    let http = reqwest::Client::new();
    loop {
        let r = http
            .post(format!("{}/api/usage", service.url()))
            .json(&json!({"provider": "openai", "model": "gpt-4o", "component": "probe", "input_tokens": 1,
                          "output_tokens": 1, "cost": "0", "request_id": format!("probe-{}", lost_at.elapsed().as_millis())}))
            .send()
            .await
            .unwrap();
        if r.status().is_success() {
            break;
        }
        assert_eq!(r.status().as_u16(), 503, "while the connections are gone the service answers 503");
        assert!(lost_at.elapsed() < Duration::from_secs(10), "the service did not recover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered_in = lost_at.elapsed();

    // SIGTERM under load: in-flight requests are answered, and the process exits 0.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let status = service.signal("-TERM");
    assert!(status.success(), "budget start exited with {status} on SIGTERM");
    service.restart().await;

    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashSet::new();
    for w in writers {
        acknowledged.extend(tokio::time::timeout(Duration::from_secs(60), w).await.expect("writers finish").unwrap());
    }

    let rows = admin
        .query(
            "SELECT metadata::json->>'idempotency_key' AS key, count(*) AS n FROM events
             WHERE event_type = 'UsageRecorded' AND metadata::json->>'idempotency_key' LIKE 'usage:w%'
             GROUP BY 1",
            &[],
        )
        .await
        .unwrap();
    let logged: HashMap<String, i64> =
        rows.iter().map(|r| (r.get::<_, String>("key").trim_start_matches("usage:").to_string(), r.get("n"))).collect();
    let duplicates = logged.values().filter(|n| **n > 1).count();
    let missing = acknowledged.iter().filter(|k| !logged.contains_key(*k)).count();
    let unacknowledged = logged.keys().filter(|k| !acknowledged.contains(*k)).count();
    eprintln!(
        "faults: {} acknowledged, {} found in the log, {duplicates} duplicates, {missing} missing; {} answers of 503; \
         recovered {recovered_in:?} after every connection was lost",
        acknowledged.len(),
        logged.len(),
        *unavailable.lock().unwrap()
    );
    assert!(acknowledged.len() > 100, "too little load to prove anything: {}", acknowledged.len());
    assert_eq!((duplicates, missing, unacknowledged), (0, 0, 0));
    assert!(recovered_in < Duration::from_secs(2), "recovery took {recovered_in:?}");

    let out = Command::new(BIN).args(["replay", "--verify"]).env("BUDGET_URL", service.url()).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(service.signal("-TERM").code(), Some(0));
}

/// A limit set (and disabled and enabled again, five times) by one process while another streams
/// matching usage: the window's account ends equal to every matching record in it, exactly. The ledger
/// lock serializes the opening balance against the other process's batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_policy_set_while_another_process_streams_usage_counts_every_record_once() {
    let db = TestDb::new().await;
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let admin_side = Service::start(&db.connection_string(), free_port()).await;
    let usage_side = Service::start(&db.connection_string(), free_port()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let unavailable = Arc::new(Mutex::new(0u64));
    let writers: Vec<_> =
        (0..16).map(|id| tokio::spawn(writer(usage_side.url(), id, stop.clone(), unavailable.clone()))).collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let http = reqwest::Client::new();
    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "1000000", "provider": "openai"});
    let set: serde_json::Value = http
        .post(format!("{}/api/policies", admin_side.url()))
        .json(&policy)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = set["policy"]["policy_id"].as_str().unwrap().to_string();
    assert!(set["opening"]["records"].as_i64().unwrap() > 0, "the policy was set while usage streamed: {set}");
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = http.post(format!("{}/api/policies/{id}/disable", admin_side.url())).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let r = http
            .patch(format!("{}/api/policies/{id}", admin_side.url()))
            .json(&json!({"enabled": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = 0;
    for w in writers {
        acknowledged += tokio::time::timeout(Duration::from_secs(60), w).await.expect("writers finish").unwrap().len();
    }

    let client = db.pool.get().await.unwrap();
    let account = client
        .query_one(
            "SELECT window_start, posted_cost, records FROM policy_accounts WHERE policy_id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap();
    let start: chrono::DateTime<chrono::Utc> = account.get("window_start");
    let logged = client
        .query_one(
            "SELECT count(*), COALESCE(sum((payload::json->>'cost')::numeric), 0) FROM events
             WHERE event_type = 'UsageRecorded' AND payload::json->>'provider' = 'openai'
               AND (payload::json->>'occurred_at')::timestamptz >= $1",
            &[&start],
        )
        .await
        .unwrap();
    let (records, cost): (i64, rust_decimal::Decimal) = (logged.get(0), logged.get(1));
    eprintln!(
        "race: {acknowledged} acknowledged, {records} in the window's log, account {} records / ${}",
        account.get::<_, i64>("records"),
        account.get::<_, rust_decimal::Decimal>("posted_cost")
    );
    assert_eq!(records as usize, acknowledged, "every acknowledged record is logged once");
    assert_eq!(
        (account.get::<_, i64>("records"), account.get::<_, rust_decimal::Decimal>("posted_cost")),
        (records, cost)
    );

    let out = Command::new(BIN).args(["replay", "--verify"]).env("BUDGET_URL", admin_side.url()).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
