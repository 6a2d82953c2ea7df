use serde_json::{json, Value};

use crate::helpers::{assert_error, record, spawn_app};

#[tokio::test]
async fn a_batch_reports_each_record_and_dedupes_by_request_id() {
    let app = spawn_app().await;
    let mut a = record("a", 1);
    a["request_id"] = "r-a".into();
    let mut b = record("b", 2);
    b["request_id"] = "r-b".into();
    let c = record("c", 3);
    let r = app.post("/api/usage/batch", &json!({"records": [a, b, c, a]})).await;
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["recorded"].as_i64(), body["duplicates"].as_i64()), (Some(3), Some(1)));
    let results = body["results"].as_array().unwrap();
    assert_eq!(results[3]["status"], "duplicate");
    assert_eq!(results[3]["record_id"], results[0]["record_id"]);
    assert_eq!(results[2]["index"], 2);

    // Sending a and b again: both duplicates, nothing new.
    let again: Value = app.post("/api/usage/batch", &json!({"records": [a, b]})).await.json().await.unwrap();
    assert_eq!(again["duplicates"], 2);
    assert_eq!(app.events().await, 3);
}

#[tokio::test]
async fn a_keyed_batch_is_replayed_whole() {
    let app = spawn_app().await;
    let batch = json!({"records": [record("a", 1), record("b", 2)]});
    let send = |body: Value| {
        let request = app.http.post(app.url("/api/usage/batch")).header("Idempotency-Key", "batch-7").json(&body);
        async move { request.send().await.unwrap() }
    };
    let first: Value = send(batch.clone()).await.json().await.unwrap();
    let retry = send(batch.clone()).await;
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(first, retry);
    assert_error(send(json!({"records": [record("a", 1)]})).await, 409, "idempotency_key_reused").await;
    assert_eq!(app.events().await, 2);
}

#[tokio::test]
async fn one_bad_record_rejects_the_whole_batch_and_names_it() {
    let app = spawn_app().await;
    let mut bad = record("b", 2);
    bad["input_tokens"] = json!(-5);
    let r = app.post("/api/usage/batch", &json!({"records": [record("a", 1), bad]})).await;
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "validation_failed");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("records[1].input_tokens") && message.contains("(1 problem in all,"), "{body}");
    assert_eq!(body["error"]["details"][0]["index"], 1);
    let r = app.post("/api/usage/batch", &json!({"records": [bad.clone(), bad]})).await;
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("(2 problems in all,"), "{body}");
    assert_eq!(app.events().await, 0);
}

#[tokio::test]
async fn batch_size_limits() {
    let app = spawn_app().await;
    assert_error(app.post("/api/usage/batch", &json!({"records": []})).await, 400, "validation_failed").await;
    let too_many: Vec<Value> = (0..10_001).map(|_| record("a", 1)).collect();
    let message =
        assert_error(app.post("/api/usage/batch", &json!({"records": too_many})).await, 400, "too_many_records").await;
    assert!(message.contains("10000"), "{message}");
    let ten_thousand: Vec<Value> = (0..10_000).map(|_| record("a", 1)).collect();
    let r = app.post("/api/usage/batch", &json!({"records": ten_thousand})).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(app.events().await, 10_000);
}
