//! Every bad input gets a 4xx with a JSON error, and nothing is written.

use serde_json::{json, Value};

use crate::helpers::{assert_error, record, spawn_app, spawn_app_with};

#[tokio::test]
async fn bad_records_are_refused_with_a_clear_error_and_write_nothing() {
    let app = spawn_app().await;
    let with = |field: &str, value: Value| {
        let mut r = record("codex", 1);
        r[field] = value;
        r
    };
    let without = |field: &str| {
        let mut r = record("codex", 1);
        r.as_object_mut().unwrap().remove(field);
        r
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (with("input_tokens", json!(-1)), "validation_failed", "input_tokens"),
        (with("output_tokens", json!(2_000_000_000)), "validation_failed", "output_tokens"),
        (with("input_tokens", json!(1.5)), "validation_failed", "input_tokens"),
        (with("input_tokens", json!("many")), "validation_failed", "input_tokens"),
        (with("provider", json!("  ")), "validation_failed", "provider"),
        (with("model", json!("m".repeat(129))), "validation_failed", "model"),
        (with("component", json!("a\u{7}b")), "validation_failed", "component"),
        (with("cost", json!(-0.5)), "validation_failed", "negative"),
        (with("cost", json!("0.0000000000000000001")), "validation_failed", "decimal places"),
        (with("cost", json!("cheap")), "validation_failed", "not a decimal"),
        // Too long or too large for any decimal: refused for that, with the fix (it was "not a decimal").
        (
            with("cost", json!("0.123456789012345678901234567890")),
            "validation_failed",
            "0.123456789012345678901234567890 has more than 18 decimal places; round it",
        ),
        (with("cost", json!("79228162514264337593543950336")), "validation_failed", "too large"),
        (with("cost", json!(1e20)), "validation_failed", "too large"),
        (with("timestamp", json!("2999-01-01T00:00:00Z")), "validation_failed", "future"),
        (with("timestamp", json!("yesterday")), "validation_failed", "timestamp"),
        (with("tokens", json!(3)), "validation_failed", "unknown field `tokens`"),
        // Named as the other fields are, with its path (it said "the body is not valid: missing field").
        (without("provider"), "validation_failed", "provider is missing; it is required"),
        (json!([1, 2]), "validation_failed", "invalid type"),
    ];
    for (body, code, needle) in cases {
        let message = assert_error(app.post("/api/usage", &body).await, 400, code).await;
        assert!(message.contains(needle), "{body}: `{message}` should mention `{needle}`");
    }
    assert_error(app.post_raw("/api/usage", "{not json").await, 400, "invalid_json").await;
    assert_error(app.post_raw("/api/usage", "").await, 400, "invalid_json").await;
    let message = assert_error(app.post_raw("/api/usage", vec![b' '; 70 * 1024]).await, 413, "payload_too_large").await;
    assert!(message.contains("65536"), "{message}");
    let r = app
        .http
        .post(app.url("/api/usage"))
        .header("Idempotency-Key", "x".repeat(201))
        .json(&record("c", 1))
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "invalid_idempotency_key").await;
    assert_eq!(app.events().await, 0);
}

#[tokio::test]
async fn bad_query_parameters_are_refused() {
    let app = spawn_app().await;
    // Each message names the parameter at fault (and what was sent, when it is not of its type).
    for (path, code, needle) in [
        ("/api/usage?period=yearly", "invalid_period", "yearly"),
        ("/api/usage?days=0", "invalid_parameter", "days"),
        // The range, whatever the number: "0 or more" for -3 was a fix the next call refused.
        ("/api/usage?days=-3", "invalid_parameter", "days is -3; use 1 to 3660"),
        ("/api/usage?days=99999999999", "invalid_parameter", "days is 99999999999; use 1 to 3660"),
        ("/api/usage?days=abc", "invalid_parameter", "days is `abc`: expected a whole number"),
        ("/api/usage?group_by=colour", "invalid_parameter", "colour"),
        ("/api/usage?colour=red", "invalid_parameter", "unknown field `colour`"),
        ("/api/usage/records?limit=0", "invalid_parameter", "limit"),
        ("/api/usage/records?before=abc", "invalid_parameter", "before is `abc`: expected a whole number"),
        ("/api/status?at=noon", "invalid_parameter", "at is `noon`: expected a time in RFC 3339"),
        // The log has no future to stand as of (at, for a window to come, has).
        ("/api/status?as_of=2999-01-01T00:00:00Z", "invalid_parameter", "as_of 2999-01-01T00:00:00Z is in the future"),
    ] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        let message = assert_error(r, 400, code).await;
        assert!(message.contains(needle), "{path}: `{message}` should say `{needle}`");
    }
    let r = app.post("/api/usage/summary", &json!({"period": "fortnightly"})).await;
    assert_error(r, 400, "invalid_period").await;
    let r = app.post("/api/usage/summary", &json!({"period": "daily", "colour": "red"})).await;
    assert_error(r, 400, "validation_failed").await;
}

/// `{…}{…}` is not one record with the second silently lost: it is refused whole, and nothing is stored.
#[tokio::test]
async fn data_after_the_json_value_is_refused_and_nothing_is_stored() {
    let app = spawn_app().await;
    let record =
        r#"{"provider":"openai","model":"gpt-4o","component":"codex","input_tokens":1,"output_tokens":1,"cost":0.001}"#;
    for path in ["/api/usage", "/api/usage/batch", "/api/policies"] {
        let body = if path.ends_with("batch") {
            format!(r#"{{"records":[{record}]}}{{"records":[{record}]}}"#)
        } else if path.ends_with("policies") {
            r#"{"period":"daily","cost_limit":1}{"period":"daily","cost_limit":2}"#.to_string()
        } else {
            format!("{record}{record}")
        };
        let message = assert_error(app.post_raw(path, body).await, 400, "invalid_json").await;
        assert!(message.contains("unexpected data after the JSON value"), "{path}: {message}");
    }
    assert_eq!(app.events().await, 0, "nothing was stored");
    // Trailing whitespace is still one value.
    let r = app.post_raw("/api/usage", format!("{record}\n  \n")).await;
    assert_eq!(r.status().as_u16(), 201);
}

/// `HEAD` answers wherever `GET` does, with the same status and no body (`curl -I /api/health`).
#[tokio::test]
async fn head_works_wherever_get_does() {
    let app = spawn_app().await;
    for (path, status) in
        [("/api/health", 200), ("/api/policies", 200), ("/api/usage?period=daily", 200), ("/api/nothing", 404)]
    {
        let r = app.http.head(app.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "HEAD {path}");
        assert!(r.bytes().await.unwrap().is_empty(), "HEAD {path} has no body");
    }
}

/// One record's cost is bounded ($1,000,000: a larger figure is a unit mistake), so no number of valid
/// records can overflow a sum: the largest records still move the rollups, the accounts and status.
#[tokio::test]
async fn the_largest_records_still_move_every_sum() {
    let app = spawn_app().await;
    let policy = json!({"period": "daily", "type": "warn", "cost_limit": "10000000", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let mut huge = record("codex", 1);
    huge["cost"] = json!(90_000_000u64);
    let message = assert_error(app.post("/api/usage", &huge).await, 400, "validation_failed").await;
    assert!(message.contains("$1,000,000 one call may cost"), "{message}");
    let mut largest = record("codex", 1);
    largest["cost"] = json!(1_000_000);
    for _ in 0..3 {
        assert_eq!(app.post("/api/usage", &largest).await.status().as_u16(), 201);
    }
    let mut small = record("codex", 1);
    small["cost"] = json!(1);
    let r: Value = app.post("/api/usage", &small).await.json().await.unwrap();
    let position = r["position"].as_i64().unwrap();
    let (status, usage) = app.get_json(&format!("/api/usage?period=daily&days=1&min_position={position}")).await;
    assert_eq!((status, usage["totals"]["cost"].as_f64()), (200, Some(3_000_001.0)), "{usage}");
    let (_, status) = app.get_json("/api/status").await;
    assert_eq!(status["windows"][0]["used_cost"].as_f64(), Some(3_000_001.0), "{status}");
}

/// A sum is not bound like one amount (below 10^10 USD): at the highest `BUDGET_MAX_RECORD_COST`,
/// 101 records take the rollups and an account past 10^10, and every view still answers exactly.
#[tokio::test]
async fn sums_beyond_one_amounts_bound_still_answer() {
    let ceiling = budget_events::domain::usage::MAX_RECORD_COST_CEILING;
    let app = spawn_app_with(|s| s.max_record_cost = rust_decimal::Decimal::from(ceiling)).await;
    let policy = json!({"period": "daily", "type": "warn", "cost_limit": "9999999999", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let mut largest = record("codex", 1);
    largest["cost"] = json!(ceiling);
    let r = app.post("/api/usage/batch", &json!({"records": vec![largest; 101]})).await;
    assert_eq!(r.status().as_u16(), 200);
    app.wait_for_projections(app.events().await).await;
    let total = (ceiling * 101).to_string();
    let (status, usage) = app.get_json("/api/usage?period=daily&days=1").await;
    assert_eq!((status, usage["totals"]["cost"].to_string()), (200, total.clone()), "{usage}");
    let (_, summary) = app.get_json("/api/usage/summary?period=daily").await;
    assert_eq!(summary["total_cost"].to_string(), total, "{summary}");
    let (_, status) = app.get_json("/api/status").await;
    assert_eq!(status["windows"][0]["used_cost"].to_string(), total, "{status}");
    assert_eq!(status["windows"][0]["state"], "exceeded", "{status}");
}

/// The bound is configurable (`BUDGET_MAX_RECORD_COST`), for deployments whose calls cost more or less.
#[tokio::test]
async fn the_record_cost_bound_is_configurable() {
    let app = spawn_app_with(|s| s.max_record_cost = rust_decimal::Decimal::from(10)).await;
    let mut over = record("codex", 1);
    over["cost"] = json!(10.01);
    let message = assert_error(app.post("/api/usage", &over).await, 400, "validation_failed").await;
    assert!(message.contains("$10 one call may cost"), "{message}");
    over["cost"] = json!(10);
    assert_eq!(app.post("/api/usage", &over).await.status().as_u16(), 201);
}

/// A documented path with a method it does not take answers 405 with `Allow`, not 404.
#[tokio::test]
async fn an_unsupported_method_on_a_route_is_405_with_allow() {
    let app = spawn_app().await;
    let r = app.http.delete(app.url("/api/usage/batch")).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    assert_error(r, 405, "method_not_allowed").await;
    let r = app.http.put(app.url("/api/policies/01a22cf3-ca45-71fb-85c3-2fa3d23dea45")).send().await.unwrap();
    assert_eq!(r.headers()["allow"], "GET, HEAD, PATCH");
    assert_error(app.http.delete(app.url("/api/nothing-here")).send().await.unwrap(), 404, "not_found").await;
}

/// Text PostgreSQL cannot hold (a NUL) is the request's fault: 400, not 500.
#[tokio::test]
async fn a_nul_character_in_a_parameter_is_a_400() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/api/allocations/context/t?component=a%00b")).send().await.unwrap();
    assert_error(r, 400, "invalid_parameter").await;
}

/// JSON Schema calls 348.0 an integer; a token count sent that way is accepted as 348.
#[tokio::test]
async fn whole_numbers_written_as_floats_are_integers() {
    let app = spawn_app().await;
    let body = serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 348.0,
                                  "output_tokens": 1e1, "cost": "0.01"});
    let r = app.post("/api/usage", &body).await;
    assert_eq!(r.status().as_u16(), 201);
    let half = serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 348.5,
                                  "output_tokens": 1, "cost": "0.01"});
    assert_error(app.post("/api/usage", &half).await, 400, "validation_failed").await;
}
