//! Attribution by end user: records carry `user_id`, `operation_id` and `metadata` (returned by the
//! records view and the export), and `user` is a policy scope: a per-user limit counts that user's
//! records and reservations only, from what was already spent in its window.

use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app};

fn call(user: Option<&str>, tokens: i64) -> Value {
    let mut r = json!({"provider": "openai", "model": "gpt-4o", "component": "chat", "input_tokens": tokens,
                       "output_tokens": 0, "cost": "0.001"});
    if let Some(u) = user {
        r["user_id"] = json!(u);
    }
    r
}

#[tokio::test]
async fn a_per_user_limit_refuses_alice_but_not_bob() {
    let app = spawn_app().await;
    // Alice spent 300 tokens before her limit existed: it counts (the window's opening balance).
    assert_eq!(app.post("/api/usage", &call(Some("alice"), 300)).await.status(), 201);
    let policy = json!({"period": "daily", "type": "hard_limit", "token_limit": 1000, "user": "alice"});
    let r = app.post("/api/policies", &policy).await;
    assert_eq!(r.status(), 201);
    let set: Value = r.json().await.unwrap();
    assert_eq!(set["policy"]["scope"], "user=alice", "{set}");
    assert_eq!(set["policy"]["user"], "alice");
    assert_eq!(set["opening"]["posted_tokens"], 300, "{set}");

    let reserve = |user: Option<&str>, tokens: i64| {
        let mut body = json!({"context_id": "t", "component": "chat", "tokens": tokens});
        if let Some(u) = user {
            body["user_id"] = json!(u);
        }
        body
    };
    // 300 spent + 600 reserved fits 1,000; another 200 for alice does not.
    let ok = app.post("/api/allocations", &reserve(Some("alice"), 600)).await;
    assert_eq!(ok.status(), 201);
    assert_eq!(ok.json::<Value>().await.unwrap()["user_id"], "alice");
    let refused = app.post("/api/allocations", &reserve(Some("alice"), 200)).await;
    let message = assert_error(refused, 402, "budget_exceeded").await;
    assert!(message.contains("user=alice"), "{message}");
    // Bob, and a task for no user in particular, are outside alice's limit.
    assert_eq!(app.post("/api/allocations", &reserve(Some("bob"), 5000)).await.status(), 201);
    assert_eq!(app.post("/api/allocations", &reserve(None, 5000)).await.status(), 201);
    // Records likewise: bob's usage does not move alice's window; hers does, and past the limit.
    assert_eq!(app.post("/api/usage", &call(Some("bob"), 5000)).await.status(), 201);
    let over: Value = app.post("/api/usage", &call(Some("alice"), 800)).await.json().await.unwrap();
    assert_eq!(over["over_limit"], true, "{over}");
    let (_, status) = app.get_json("/api/status").await;
    let alice = status["windows"].as_array().unwrap().iter().find(|w| w["scope"] == "user=alice").unwrap().clone();
    assert_eq!((alice["used_tokens"].as_i64(), alice["reserved_tokens"].as_i64()), (Some(1100), Some(600)));
    // Usage by user: grouped, split and filtered (a record without a user is grouped under "").
    assert_eq!(app.post("/api/usage", &call(None, 7)).await.status(), 201);
    app.wait_for_projections(app.events().await).await;
    let (_, usage) = app.get_json("/api/usage?days=1&group_by=user&split_by=user&period=daily").await;
    let by_user = &usage["groups"]["user"];
    assert_eq!(
        (by_user["alice"]["total_tokens"].as_i64(), by_user["bob"]["total_tokens"].as_i64()),
        (Some(1100), Some(5000))
    );
    assert_eq!(by_user[""]["total_tokens"], 7, "{usage}");
    assert_eq!(usage["series"][0]["parts"]["alice"]["count"], 2);
    let (_, alice_only) = app.get_json("/api/usage?days=1&user=alice").await;
    assert_eq!(alice_only["totals"]["count"], 2);
    let (_, summary) = app.get_json("/api/usage/summary?period=daily&user=bob").await;
    assert_eq!((summary["count"].as_i64(), summary["groups"]["user"]["bob"]["count"].as_i64()), (Some(1), Some(1)));

    // The pre-flight check names the user too.
    let check = json!({"provider": "openai", "model": "gpt-4o", "component": "chat", "input_tokens": 10,
                       "cost": "0.001", "user_id": "alice"});
    let checked: Value = app.post("/api/usage/check", &check).await.json().await.unwrap();
    assert_eq!(checked["allowed"], false, "{checked}");
    let check_bob = json!({"provider": "openai", "model": "gpt-4o", "component": "chat", "input_tokens": 10,
                           "cost": "0.001", "user_id": "bob"});
    assert_eq!(app.post("/api/usage/check", &check_bob).await.json::<Value>().await.unwrap()["allowed"], true);

    // Setting alice's limit again replaces it; bob's is a policy of its own.
    let again: Value = app.post("/api/policies", &policy).await.json().await.unwrap();
    assert_eq!(again["created"], false, "{again}");
    let bob = json!({"period": "daily", "type": "hard_limit", "token_limit": 1000, "user_id": "bob"});
    let bob: Value = app.post("/api/policies", &bob).await.json().await.unwrap();
    assert_eq!((bob["created"].as_bool(), bob["policy"]["scope"].as_str()), (Some(true), Some("user=bob")));
}

#[tokio::test]
async fn records_keep_their_user_operation_and_metadata() {
    let app = spawn_app().await;
    let mut record = call(Some("alice"), 100);
    record["operation_id"] = json!("op-42");
    record["metadata"] = json!({"ticket": "T-7", "attempt": 2, "tags": ["a", "b"]});
    let r = app.post("/api/usage/record", &record).await;
    assert_eq!(r.status(), 201);
    let (_, page) = app.get_json("/api/usage/records?limit=1").await;
    let got = &page["records"][0];
    assert_eq!((got["user_id"].as_str(), got["operation_id"].as_str()), (Some("alice"), Some("op-42")));
    assert_eq!(got["metadata"], json!({"ticket": "T-7", "attempt": 2, "tags": ["a", "b"]}));

    let lines = app.http.get(app.url("/api/export?format=jsonl")).send().await.unwrap().text().await.unwrap();
    let line: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!((line["user_id"].as_str(), line["operation_id"].as_str()), (Some("alice"), Some("op-42")));
    assert_eq!(line["metadata"]["ticket"], "T-7");
    let csv = app.http.get(app.url("/api/export")).send().await.unwrap().text().await.unwrap();
    let mut rows = csv.lines();
    assert!(rows.next().unwrap().ends_with(",user_id,operation_id,metadata"));
    assert!(rows.next().unwrap().contains(r#",alice,op-42,"{""#), "{csv}");

    // Bounded: too much metadata, or a user id with a control character, is a 400 naming the field,
    // and nothing is written.
    let before = app.events().await;
    let mut big = call(Some("alice"), 1);
    big["metadata"] = json!({"blob": "x".repeat(5000)});
    let message = assert_error(app.post("/api/usage", &big).await, 400, "validation_failed").await;
    assert!(message.contains("metadata") && message.contains("4096"), "{message}");
    let message =
        assert_error(app.post("/api/usage", &call(Some("al\u{7}ice"), 1)).await, 400, "validation_failed").await;
    assert!(message.contains("user_id"), "{message}");
    let mut not_object = call(None, 1);
    not_object["metadata"] = json!([1, 2]);
    assert_eq!(app.post("/api/usage", &not_object).await.status(), 400);
    assert_eq!(app.events().await, before);
}

#[tokio::test]
async fn a_user_s_records_are_repriced_in_the_user_s_row() {
    let app = spawn_app().await;
    let price = |input: &str, at: &str| json!({"provider": "acme", "model": "m1", "input": input, "output": "0", "effective_from": at});
    assert_eq!(app.post("/api/prices", &price("1", "2026-01-01T00:00:00Z")).await.status(), 200);
    let record = json!({"provider": "acme", "model": "m1", "component": "c", "input_tokens": 1_000_000,
                        "output_tokens": 0, "timestamp": "2026-11-27T10:00:00Z", "user_id": "alice"});
    assert_eq!(app.post("/api/usage", &record).await.status(), 201);
    assert_eq!(app.post("/api/prices", &price("3", "2026-11-27T00:00:00Z")).await.status(), 200);
    let reprice = json!({"provider": "acme", "model": "m1", "since": "2026-11-01T00:00:00Z"});
    let done: Value = app.post("/api/prices/reprice", &reprice).await.json().await.unwrap();
    assert_eq!(done["total_delta"].to_string(), "2", "{done}");
    app.wait_for_projections(app.events().await).await;
    let (_, usage) =
        app.get_json("/api/usage?start_time=2026-11-27T00:00:00Z&end_time=2026-11-28T00:00:00Z&group_by=user").await;
    assert_eq!(usage["groups"]["user"]["alice"]["cost"].to_string(), "3", "{usage}");
}
