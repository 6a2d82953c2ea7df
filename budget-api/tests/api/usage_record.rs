use serde_json::{json, Value};

use crate::helpers::{assert_error, record, spawn_app};

#[tokio::test]
async fn a_record_is_written_once_and_its_retry_gets_the_same_answer() {
    let app = spawn_app().await;
    let send = |body: Value, key: &'static str| {
        let request = app.http.post(app.url("/api/usage")).header("Idempotency-Key", key).json(&body);
        async move { request.send().await.unwrap() }
    };
    let first = send(record("codex", 1200), "7f1c-1").await;
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["success"], true);
    assert_eq!(first["status"], "recorded");
    assert_eq!(first["cost"].to_string(), "0.0064", "money stays an exact JSON number");

    let retry = send(record("codex", 1200), "7f1c-1").await;
    assert_eq!(retry.status().as_u16(), 200);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["record_id"], first["record_id"]);
    assert_eq!(retry["position"], first["position"]);
    assert_eq!(retry["status"], "duplicate");

    let message = assert_error(send(record("codex", 999), "7f1c-1").await, 409, "idempotency_key_reused").await;
    assert!(message.contains("7f1c-1"), "{message}");
    assert_eq!(app.events().await, 1);
}

#[tokio::test]
async fn request_id_in_the_body_is_an_idempotency_key_too() {
    let app = spawn_app().await;
    let mut body = record("codex", 5);
    body["request_id"] = "req-42".into();
    assert_eq!(app.post("/api/usage", &body).await.status().as_u16(), 201);
    assert_eq!(app.post("/api/usage", &body).await.status().as_u16(), 200);
    // Header and body disagreeing is a client bug worth reporting.
    let r = app.http.post(app.url("/api/usage")).header("Idempotency-Key", "other").json(&body).send().await.unwrap();
    assert_error(r, 400, "conflicting_idempotency_keys").await;
    assert_eq!(app.events().await, 1);
}

#[tokio::test]
async fn a_record_without_content_type_or_cost_is_accepted_as_unpriced() {
    let app = spawn_app().await;
    let r = app
        .post_raw(
            "/api/usage",
            r#"{"provider":"ollama","model":"llama3","component":"c","input_tokens":10,"output_tokens":0}"#,
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["cost_source"], "unpriced");
    assert_eq!(body["cost"], 0);
    assert_eq!(
        body["message"],
        "ollama/llama3 has no price at its time: recorded with cost 0 (its tokens count, cost limits do not see it); send its `cost`, or price it (`budget prices set ollama llama3 --input … --output …`)"
    );
}

/// A record of a model the price book misspells is recorded at $0 like any unpriced one, and its
/// answer names the model it looks like a typo of: `gtp-4o` came back `cost_source: unpriced` and
/// nothing else, and its alert advised pricing `gtp-4o`.
#[tokio::test]
async fn an_unpriced_records_answer_names_the_model_it_misspells() {
    let app = spawn_app().await;
    let price = json!({"provider": "openai", "model": "gpt-4o", "input": "2.5", "output": "10", "per": "1M"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let record = |model: &str| json!({"provider": "openai", "model": model, "component": "c", "input_tokens": 10, "output_tokens": 0});
    let body: Value = app.post("/api/usage", &record("gtp-4o")).await.json().await.unwrap();
    assert_eq!(body["cost_source"], "unpriced", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("openai/gtp-4o has no price at its time: recorded with cost 0 (its tokens count, cost limits do not see it); did you mean openai/gpt-4o? "), "{body}");
    let body: Value = app.post("/api/usage", &record("gpt-4o-2024-08-06")).await.json().await.unwrap();
    assert_eq!((body["cost_source"].as_str(), body.get("message")), (Some("price_book"), None), "{body}");
}

#[tokio::test]
async fn concurrent_records_are_all_kept_exactly_once() {
    let app = spawn_app().await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let request = app
            .http
            .post(app.url("/api/usage"))
            .header("Idempotency-Key", format!("k-{}", i % 50))
            .json(&record("codex", 1));
        tasks.push(tokio::spawn(async move { request.send().await.unwrap().status().as_u16() }));
    }
    let mut created = 0;
    for t in tasks {
        let status = t.await.unwrap();
        assert!(status == 201 || status == 200, "{status}");
        created += usize::from(status == 201);
    }
    assert_eq!(created, 50);
    assert_eq!(app.events().await, 50);
    app.wait_for_projections(50).await;
    let (_, usage) = app.get_json("/api/usage?period=daily&days=1").await;
    assert_eq!(usage["totals"]["count"], 50);
    assert_eq!(usage["totals"]["cost"].to_string(), "0.32");
}

/// The original Budget's clients: `POST /api/usage/record` with the component body, a timestamp
/// without a zone (Python's `isoformat()`), read as UTC; `GET /health`; the summary as a GET.
#[tokio::test]
async fn the_original_routes_and_naive_timestamps_work() {
    let app = spawn_app().await;
    let mut body = record("codex", 1200);
    body["timestamp"] = serde_json::json!("2026-11-29T10:00:00.123456");
    let r = app.post("/api/usage/record", &body).await;
    assert_eq!(r.status().as_u16(), 201);
    let db = app.db.pool.get().await.unwrap();
    let at: String = db.query_one("SELECT payload::json->>'occurred_at' FROM events", &[]).await.unwrap().get(0);
    assert!(at.starts_with("2026-11-29T10:00:00.123456") && at.ends_with('Z'), "{at}");
    body["timestamp"] = serde_json::json!("last tuesday");
    let message = assert_error(app.post("/api/usage", &body).await, 400, "validation_failed").await;
    assert!(message.contains("not a timestamp"), "{message}");

    let (status, health) = app.get_json("/health").await;
    assert_eq!((status, health["database"].as_str()), (200, Some("ok")));
    app.wait_for_projections(1).await;
    let (status, summary) = app
        .get_json("/api/usage/summary?period=daily&start_time=2026-11-29T00:00:00Z&end_time=2026-11-30T00:00:00Z")
        .await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!((summary["count"].as_i64(), summary["total_input_tokens"].as_i64()), (Some(1), Some(1200)), "{summary}");
}

/// A check of a call the price book cannot price says its cost limits cannot weigh it, and names the
/// model it misspells: `gtp-4o` under a $5 hard limit came back allowed at cost 0 with no word.
#[tokio::test]
async fn a_check_of_an_unpriced_call_says_cost_limits_cannot_weigh_it() {
    let app = spawn_app().await;
    let price = json!({"provider": "openai", "model": "gpt-4o", "input": "2.5", "output": "10", "per": "1M"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let limit = json!({"period": "daily", "type": "hard_limit", "provider": "openai", "cost_limit": "5"});
    assert_eq!(app.post("/api/policies", &limit).await.status().as_u16(), 201);
    let call = |model: &str| json!({"provider": "openai", "model": model, "component": "c", "input_tokens": 1000, "estimated_output_tokens": 500});
    let r: Value = app.post("/api/usage/check", &call("gtp-4o")).await.json().await.unwrap();
    assert_eq!((r["allowed"].as_bool(), r["cost_source"].as_str()), (Some(true), Some("unpriced")), "{r}");
    assert_eq!(
        r["messages"],
        json!(["openai/gtp-4o has no price, so its cost is unknown and cost limits cannot weigh this call (token limits still do); did you mean openai/gpt-4o? Else send its `cost`, or price it (`budget prices set openai gtp-4o --input … --output …`)"]),
        "{r}"
    );
    let r: Value = app.post("/api/usage/check", &call("gpt-4o")).await.json().await.unwrap();
    assert_eq!(
        (r["cost_source"].as_str(), r["messages"].as_array().map(Vec::len)),
        (Some("price_book"), Some(0)),
        "{r}"
    );
}
