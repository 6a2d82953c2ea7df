//! `budget bench`: a quick run reports every figure and passes its checks, and the checks catch what
//! they exist for (a record logged twice or missing, a window holding more than its limit).

use std::process::Command;

use budget_bench::checks;
use budget_events::db::testing::TestDb;
use serde_json::Value;
use uuid::Uuid;

/// One bench at a time: each is a load test that takes the machine. Run in parallel on two cores, in
/// one CI run the gateway bench's writer batches took 97 ms to load and 5 of its 200 calls timed out
/// (408), failing its check; rerun alone, it passed.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `budget bench --quick --json --keep` (with `extra`) on `db`'s server; its report.
fn quick_bench(db: &TestDb, extra: &[&str]) -> Value {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let url = db.connection_string();
    let args = [&["bench", "--quick", "--json", "--keep", "--database-url", url.as_str()][..], extra].concat();
    let out = Command::new(env!("CARGO_BIN_EXE_budget")).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap()
}

/// A pool on the database a `--keep` run left.
fn kept(db: &TestDb, report: &Value) -> budget_events::db::DbPool {
    let mut config = db.config.clone();
    config.dbname(report["database_name"].as_str().unwrap());
    budget_events::db::pool(&config, 2)
}

/// Drops the database a `--keep` run left.
async fn drop_kept(db: &TestDb, report: &Value) {
    let mut admin = db.config.clone();
    admin.dbname("postgres");
    let (c, connection) = admin.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    c.batch_execute(&format!("DROP DATABASE \"{}\" WITH (FORCE)", report["database_name"].as_str().unwrap()))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_quick_bench_reports_every_figure_and_its_checks_catch_loss_duplicates_and_overspend() {
    let db = TestDb::new().await;
    let report = quick_bench(&db, &[]);
    let names: Vec<&str> = report["figures"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "ceiling_one_row_insert",
            "ceiling_insert_select",
            "usage_single",
            "usage_batch",
            "reservations",
            "ws_delivery",
            "ws_delivery_second_process",
            "replay",
            "status_wall",
            "server_rss"
        ]
    );
    for f in report["figures"].as_array().unwrap() {
        assert!(f["value"].as_f64().unwrap() > 0.0, "{f}");
    }
    let usage = &report["figures"][2];
    assert_eq!(usage["baseline"], "ceiling_one_row_insert");
    assert!(usage["ratio"].as_f64().is_some() && usage["latency"]["p99_ms"].as_f64().is_some(), "{usage}");
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["passed"], true, "{c}");
    }
    // With PostgreSQL on this machine, the CPU lines split out its backends, the ceiling's rows included.
    let database = report["database"].as_str().unwrap();
    if cfg!(target_os = "linux") && ["127.", "localhost", "/", "[::1]"].iter().any(|local| database.starts_with(local))
    {
        let lines: Vec<&str> = report["breakdown"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        for who in ["one-row INSERTs:", "POST /api/usage:", "INSERT … SELECT:", "POST /api/usage/batch:"] {
            let line = lines.iter().find(|l| l.starts_with(who)).unwrap_or_else(|| panic!("no {who} line: {lines:?}"));
            assert!(line.contains("µs of CPU per") && line.contains("PostgreSQL's backends"), "{line}");
        }
    }

    // The checks against the kept database: as it is they pass; tampered with, they fail.
    let pool = kept(&db, &report);
    let client = pool.get().await.unwrap();
    let policy = |component: &str| {
        let client = &client;
        let component = component.to_string();
        async move {
            let row = client
                .query_one("SELECT policy_id FROM policies WHERE scope->>'component' = $1", &[&component])
                .await
                .unwrap();
            row.get::<_, Uuid>(0)
        }
    };
    let (usage_policy, hot_policy) = (policy("bench").await, policy("hot").await);
    let ids: Vec<Uuid> = client
        .query("SELECT (payload::json->>'record_id')::uuid FROM events WHERE event_type = 'UsageRecorded'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(checks::exactly_once(&**client, &ids, usage_policy).await.unwrap().passed);
    let missing = checks::exactly_once(&**client, &ids[1..], usage_policy).await.unwrap();
    assert!(!missing.passed, "an acknowledged record the check was not told of: {missing:?}");
    let unknown = [ids.clone(), vec![Uuid::now_v7()]].concat();
    assert!(!checks::exactly_once(&**client, &unknown, usage_policy).await.unwrap().passed, "a lost record");
    // A second event for a record already logged: counted twice.
    client
        .execute(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             SELECT stream_id || '-again', 1, gen_random_uuid(), event_type, schema_version, payload
             FROM events WHERE event_type = 'UsageRecorded' LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let twice = checks::exactly_once(&**client, &ids, usage_policy).await.unwrap();
    assert!(!twice.passed, "{twice:?}");

    let (limit, admitted): (i64, i64) = {
        let r = client
            .query_one(
                "SELECT token_limit, (SELECT sum(pending_tokens)::bigint FROM policy_accounts WHERE policy_id = $1)
                 FROM policies WHERE policy_id = $1",
                &[&hot_policy],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert!(checks::zero_overspend(&**client, hot_policy, limit, admitted).await.unwrap().passed);
    let over = checks::zero_overspend(&**client, hot_policy, admitted - 1, admitted).await.unwrap();
    assert!(!over.passed, "held more than the limit: {over:?}");
    let told = checks::zero_overspend(&**client, hot_policy, limit, admitted + 100).await.unwrap();
    assert!(!told.passed, "clients told of more than the log holds: {told:?}");
    drop(client);
    drop(pool);
    drop_kept(&db, &report).await;
}

/// `budget bench --gateway --quick`: the direct and gateway figures and the overheads, its checks
/// passing; the settled-once check fails on a log missing a call or holding a reservation still active.
#[tokio::test]
async fn a_quick_gateway_bench_reports_the_overhead_and_its_check_catches_unsettled_calls() {
    let db = TestDb::new().await;
    let report = quick_bench(&db, &["--gateway"]);
    let names: Vec<&str> = report["figures"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["gateway_direct", "gateway_through", "gateway_overhead_p50", "gateway_overhead_p99"]);
    for f in &report["figures"].as_array().unwrap()[..2] {
        assert!(f["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{f}");
    }
    for c in report["checks"].as_array().unwrap() {
        assert_eq!(c["passed"], true, "{c}");
    }

    let pool = kept(&db, &report);
    let client = pool.get().await.unwrap();
    let records: i64 =
        client.query_one("SELECT count(*) FROM events WHERE event_type = 'UsageRecorded'", &[]).await.unwrap().get(0);
    assert!(checks::gateway_settled_once(&**client, 0, records).await.unwrap().passed);
    let lost = checks::gateway_settled_once(&**client, 0, records + 1).await.unwrap();
    assert!(!lost.passed, "an answered call with no record: {lost:?}");
    client.execute("UPDATE allocations SET state = 'active' WHERE allocation_id = (SELECT allocation_id FROM allocations LIMIT 1)", &[]).await.unwrap();
    let held = checks::gateway_settled_once(&**client, 0, records).await.unwrap();
    assert!(!held.passed, "a reservation left active: {held:?}");
    drop(client);
    drop(pool);
    drop_kept(&db, &report).await;
}
