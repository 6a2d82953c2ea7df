//! `GET /metrics`, scraped after known traffic and parsed with the Prometheus project's own Python
//! parser (`prometheus_client.parser`): every family is well-formed and counts what happened.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use serde_json::json;

use crate::helpers::{record, spawn_app};

/// `name{label="v",…}` → value, for every sample of the scrape, as the Python parser reads them.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'prometheus_client'"),
        "this test parses with prometheus_client: python3 -m pip install prometheus_client"
    );
    assert!(out.status.success(), "the Prometheus parser refused the scrape: {stderr}\n{text}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples.get(key).unwrap_or_else(|| panic!("no sample {key}; the scrape has {:#?}", samples.keys()))
}

#[tokio::test]
async fn metrics_count_requests_batches_decisions_and_connections() {
    let app = spawn_app().await;
    let policy = json!({"period": "daily", "type": "hard_limit", "token_limit": 1000, "component": "codex"});
    assert_eq!(app.post("/api/policies", &policy).await.status(), 201);
    for _ in 0..3 {
        assert_eq!(app.post("/api/usage", &record("rhetor", 100)).await.status(), 201);
    }
    let unpriced =
        json!({"provider": "acme", "model": "m1", "component": "rhetor", "input_tokens": 5, "output_tokens": 5});
    assert_eq!(app.post("/api/usage", &unpriced).await.status(), 201);
    let refused = json!({"context_id": "t-1", "component": "codex", "tokens": 5000});
    assert_eq!(app.post("/api/allocations", &refused).await.status(), 402);
    let admitted = json!({"context_id": "t-2", "component": "codex", "tokens": 500});
    assert_eq!(app.post("/api/allocations", &admitted).await.status(), 201);
    assert_eq!(app.http.get(app.url("/api/alerts/not-an-id")).send().await.unwrap().status(), 400);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(app.url("/ws/budget/updates").replace("http", "ws")).await.unwrap();
    ws.close(None).await.unwrap();
    drop(ws);

    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    let s = parse(&text);

    assert_eq!(sample(&s, r#"budget_http_requests_total{method="POST",route="/api/usage",status="201"}"#), 4.0);
    assert_eq!(sample(&s, r#"budget_http_requests_total{method="POST",route="/api/allocations",status="402"}"#), 1.0);
    // Ids are not labels: the route template is.
    assert_eq!(
        sample(&s, r#"budget_http_requests_total{method="GET",route="/api/alerts/{alert_id}",status="400"}"#),
        1.0
    );
    assert_eq!(sample(&s, r#"budget_http_request_duration_seconds_count{method="POST",route="/api/usage"}"#), 4.0);
    assert_eq!(sample(&s, r#"budget_records_total{cost_source="client"}"#), 3.0);
    assert_eq!(sample(&s, r#"budget_records_total{cost_source="unpriced"}"#), 1.0);
    assert_eq!(sample(&s, r#"budget_decisions_total{command="usage",outcome="admitted",policy_type=""}"#), 4.0);
    assert_eq!(
        sample(&s, r#"budget_decisions_total{command="allocation",outcome="refused",policy_type="hard_limit"}"#),
        1.0
    );
    assert_eq!(sample(&s, r#"budget_decisions_total{command="allocation",outcome="admitted",policy_type=""}"#), 1.0);
    // Seven commands from the requests (policy, 4 records, 2 allocations) and the allocation sweeper's.
    let commands = sample(&s, "budget_writer_batch_commands_sum{}");
    assert!(commands >= 7.0, "{commands}");
    let batches = sample(&s, r#"budget_writer_batches_total{outcome="committed"}"#);
    assert!(batches >= 1.0 && batches <= commands, "{batches}");
    assert_eq!(sample(&s, "budget_writer_batch_items_sum{}"), commands, "a record or another command: one item each");
    assert_eq!(
        sample(&s, "budget_writer_commit_seconds_count{}"),
        sample(&s, "budget_writer_queue_wait_seconds_count{}")
    );
    // Every committed batch is timed in each stage, and its stages fit in its whole time.
    let mut staged = 0.0;
    for stage in ["load", "decide", "append", "commit"] {
        assert_eq!(sample(&s, &format!("budget_writer_stage_seconds_count{{stage=\"{stage}\"}}")), batches, "{stage}");
        staged += sample(&s, &format!("budget_writer_stage_seconds_sum{{stage=\"{stage}\"}}"));
    }
    let whole = sample(&s, "budget_writer_commit_seconds_sum{}");
    assert!(staged > 0.0 && staged <= whole, "stages {staged} s against {whole} s in all");
    assert_eq!(sample(&s, "budget_websocket_connections_total{}"), 1.0);
    for key in [
        r#"budget_projection_lag_events{projection="usage_rollups"}"#,
        r#"budget_projection_lag_seconds{projection="alerts"}"#,
        r#"budget_webhook_deliveries{state="pending"}"#,
        r#"budget_db_pool_connections{state="max"}"#,
    ] {
        sample(&s, key);
    }
    assert_eq!(sample(&s, r#"budget_db_pool_connections{state="max"}"#), 8.0);

    // The client's close is counted once the server has seen it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let s = parse(&text);
        if s.get(r#"budget_websocket_closed_total{reason="client"}"#) == Some(&1.0) {
            assert_eq!(sample(&s, "budget_websocket_open_connections{}"), 0.0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the WebSocket close was not counted: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
