//! Allocations: reservations that never overcommit a hard limit, settle exactly, and resolve once.

use std::collections::HashMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_with, TestApp};

async fn pending(app: &TestApp) -> (Decimal, i64) {
    let db = app.db.pool.get().await.unwrap();
    let row = db
        .query_one(
            "SELECT COALESCE(sum(pending_cost), 0), COALESCE(sum(pending_tokens), 0)::bigint FROM policy_accounts",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn hard_limit(app: &TestApp, tokens: i64) {
    let r = app.post("/api/policies", &json!({"period": "daily", "type": "hard_limit", "token_limit": tokens})).await;
    assert_eq!(r.status().as_u16(), 201);
}

async fn allocate(app: &TestApp, body: Value) -> reqwest::Response {
    app.post("/api/allocations", &body).await
}

#[tokio::test]
async fn a_thousand_concurrent_reservations_never_overcommit_and_all_return() {
    let app = spawn_app_with(|s| s.sweep_interval = Duration::from_millis(200)).await;
    hard_limit(&app, 100_000).await;
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (client, url) = (client.clone(), app.url("/api/allocations"));
        // Half live for 3 s (they expire), half for a day (they are released).
        let ttl = if i % 2 == 0 { "3s" } else { "1d" };
        let body =
            json!({"context_id": format!("t-{i}"), "component": "c", "tokens": 1000, "priority": 10, "ttl": ttl});
        tasks.push(tokio::spawn(async move {
            let r = client.post(&url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut accepted = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            201 => accepted.push(body),
            402 => assert_eq!(body["error"]["code"], "budget_exceeded"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(accepted.len(), 100, "exactly the 100 reservations that fit 100,000 tokens");
    assert_eq!(pending(&app).await.1, 100_000);

    let long_lived = |a: &&Value| a["context_id"].as_str().unwrap()[2..].parse::<u32>().unwrap() % 2 == 1;
    for a in accepted.iter().filter(long_lived) {
        let id = a["allocation_id"].as_str().unwrap();
        let r = app.http.post(app.url(&format!("/api/allocations/{id}/release"))).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    // The rest expire on their own.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while pending(&app).await.1 != 0 {
        assert!(std::time::Instant::now() < deadline, "pending never returned to zero: {:?}", pending(&app).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, active) = app.get_json("/api/allocations").await;
    assert!(active["allocations"].as_array().unwrap().is_empty());
    let (_, expired) = app.get_json("/api/allocations?state=expired&limit=500").await;
    let (_, released) = app.get_json("/api/allocations?state=released&limit=500").await;
    let n = |v: &Value| v["allocations"].as_array().unwrap().len();
    assert_eq!(n(&expired) + n(&released), 100);
}

#[tokio::test]
async fn usage_settles_below_at_and_above_the_reservation() {
    let app = spawn_app().await;
    hard_limit(&app, 50_000).await;
    let r = allocate(&app, json!({"context_id": "task-123", "component": "rhetor", "tokens": 10000, "tier": "remote_heavyweight", "estimated_cost": "0.10"})).await;
    assert_eq!(r.status().as_u16(), 201);
    let a: Value = r.json().await.unwrap();
    let id = a["allocation_id"].as_str().unwrap().to_string();
    assert_eq!((a["state"].as_str(), a["remaining_tokens"].as_i64()), (Some("active"), Some(10000)));
    let usage = |i: i64, o: i64, cost: &str| {
        json!({"allocation_id": id, "provider": "openai", "model": "gpt-4o", "component": "rhetor", "context_id": "task-123",
               "input_tokens": i, "output_tokens": o, "cost": cost})
    };

    // Below: 3,900 of 10,000.
    let r: Value = app.post("/api/usage", &usage(3000, 900, "0.04")).await.json().await.unwrap();
    assert_eq!(
        (r["settlement"]["settled_tokens"].as_i64(), r["settlement"]["overage_tokens"].as_i64()),
        (Some(3900), Some(0))
    );
    let (_, a) = app.get_json(&format!("/api/allocations/{id}")).await;
    assert_eq!((a["remaining_tokens"].as_i64(), a["usage_percentage"].to_string()), (Some(6100), "39".into()));
    assert_eq!(pending(&app).await, (Decimal::new(6, 2), 6100));

    // Above: 7,000 more against 6,100 left: 900 overage, exhausted, the leftover estimate voided.
    let r: Value = app.post("/api/usage", &usage(7000, 0, "0.07")).await.json().await.unwrap();
    let s = &r["settlement"];
    assert_eq!(
        (s["settled_tokens"].as_i64(), s["overage_tokens"].as_i64(), s["exhausted"].as_bool()),
        (Some(6100), Some(900), Some(true))
    );
    assert_eq!((s["settled_cost"].to_string(), s["overage_cost"].to_string()), ("0.06".into(), "0.01".into()));
    // Its alert names both overages.
    let (_, alerts) = app.get_json(&format!("/api/alerts?type=overage&min_position={}", r["position"])).await;
    let message = alerts["alerts"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("used 900 tokens beyond its allocation")
            && message.contains("and $0.01 beyond its reserved cost"),
        "{alerts}"
    );
    let (_, a) = app.get_json(&format!("/api/allocations/{id}")).await;
    assert_eq!((a["state"].as_str(), a["usage_percentage"].to_string()), (Some("exhausted"), "109".into()));
    assert_eq!(pending(&app).await, (Decimal::ZERO, 0));

    // At: exactly the reservation.
    let b: Value = allocate(&app, json!({"context_id": "t2", "component": "c", "tokens": 500, "estimated_cost": 0}))
        .await
        .json()
        .await
        .unwrap();
    let bid = b["allocation_id"].as_str().unwrap();
    let exact = json!({"allocation_id": bid, "provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 400, "output_tokens": 100});
    let r: Value = app.post("/api/usage", &exact).await.json().await.unwrap();
    assert_eq!(
        (r["settlement"]["overage_tokens"].as_i64(), r["settlement"]["exhausted"].as_bool()),
        (Some(0), Some(true))
    );

    // Releasing what resolved already is a 409 that says so; an unknown allocation is a 404 and records nothing.
    let r = app.http.post(app.url(&format!("/api/allocations/{bid}/release"))).send().await.unwrap();
    let message = assert_error(r, 409, "allocation_resolved").await;
    assert!(message.contains("exhausted"), "{message}");
    let before = app.events().await;
    let mut unknown = exact.clone();
    unknown["allocation_id"] = json!("00000000-0000-0000-0000-00000000000a");
    assert_error(app.post("/api/usage", &unknown).await, 404, "not_found").await;
    assert_eq!(app.events().await, before);
    let (_, by_task) = app.get_json("/api/allocations/context/task-123").await;
    assert_eq!(by_task["allocations"][0]["state"], "exhausted");
}

#[tokio::test]
async fn usage_after_expiry_is_all_overage_and_a_refusal_names_the_window() {
    let app = spawn_app_with(|s| s.sweep_interval = Duration::from_millis(100)).await;
    hard_limit(&app, 1000).await;
    let a: Value = allocate(&app, json!({"context_id": "t", "component": "c", "tokens": 800, "ttl": "1s"}))
        .await
        .json()
        .await
        .unwrap();
    let id = a["allocation_id"].as_str().unwrap();

    let r = allocate(&app, json!({"context_id": "t", "component": "c", "tokens": 300, "priority": 10})).await;
    assert_eq!(r.status().as_u16(), 402);
    let refusal: Value = r.json().await.unwrap();
    let d = &refusal["error"]["details"][0];
    assert_eq!(
        (d["token_limit"].as_i64(), d["reserved_tokens"].as_i64(), d["requested_tokens"].as_i64()),
        (Some(1000), Some(800), Some(300))
    );
    assert!(d["resets_at"].is_string() && d["window_start"].is_string() && d["policy_id"].is_string());
    assert!(refusal["error"]["message"].as_str().unwrap().contains("would be exceeded"));

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, a) = app.get_json(&format!("/api/allocations/{id}")).await;
        if a["state"] == "expired" {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let usage = json!({"allocation_id": id, "provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 50, "output_tokens": 0});
    let r: Value = app.post("/api/usage", &usage).await.json().await.unwrap();
    assert_eq!(
        (r["settlement"]["settled_tokens"].as_i64(), r["settlement"]["overage_tokens"].as_i64()),
        (Some(0), Some(50))
    );
    let r = app.http.post(app.url(&format!("/api/allocations/{id}/release"))).send().await.unwrap();
    assert_error(r, 409, "allocation_resolved").await;
    // After expiry the room is back.
    assert_eq!(
        allocate(&app, json!({"context_id": "t", "component": "c", "tokens": 300})).await.status().as_u16(),
        201
    );
}

/// Release, expiry and settlement racing on the same allocations: each resolves exactly once.
#[tokio::test]
async fn racing_release_expiry_and_settlement_resolve_each_allocation_once() {
    let app = spawn_app_with(|s| s.sweep_interval = Duration::from_millis(10)).await;
    hard_limit(&app, 10_000_000).await;
    let mut ids = Vec::new();
    for i in 0..30 {
        let a: Value =
            allocate(&app, json!({"context_id": format!("r-{i}"), "component": "c", "tokens": 100, "ttl": "1s"}))
                .await
                .json()
                .await
                .unwrap();
        ids.push(a["allocation_id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut tasks = Vec::new();
    for id in &ids {
        let (http, release, usage) =
            (app.http.clone(), app.url(&format!("/api/allocations/{id}/release")), app.url("/api/usage"));
        let body = json!({"allocation_id": id, "provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 100, "output_tokens": 0});
        tasks.push(tokio::spawn(async move {
            let (a, b) = tokio::join!(http.post(&release).send(), http.post(&usage).json(&body).send());
            (a.unwrap().status().as_u16(), b.unwrap().status().as_u16())
        }));
    }
    for t in tasks {
        let (release, usage) = t.await.unwrap();
        assert!(release == 200 || release == 409, "{release}");
        assert_eq!(usage, 201, "usage is always recorded");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let db = app.db.pool.get().await.unwrap();
    let resolutions: i64 = db
        .query_one("SELECT count(*) FROM events WHERE event_type IN ('AllocationReleased', 'AllocationExpired')", &[])
        .await
        .unwrap()
        .get(0);
    let exhausted: i64 =
        db.query_one("SELECT count(*) FROM allocations WHERE state = 'exhausted'", &[]).await.unwrap().get(0);
    assert_eq!(resolutions + exhausted, 30, "every allocation resolved exactly once");
    assert_eq!(pending(&app).await, (Decimal::ZERO, 0));
}

/// The allocation rows equal a fold of the log.
#[tokio::test]
async fn allocation_views_equal_the_fold_of_the_log() {
    let app = spawn_app().await;
    hard_limit(&app, 1_000_000).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        let a: Value = allocate(
            &app,
            json!({"context_id": format!("f-{i}"), "component": "c", "tokens": 1000, "estimated_cost": "0.5"}),
        )
        .await
        .json()
        .await
        .unwrap();
        ids.push(a["allocation_id"].as_str().unwrap().to_string());
    }
    for (i, id) in ids.iter().enumerate() {
        let used = [0, 200, 999, 1000, 1500, 300][i];
        if used > 0 {
            let body = json!({"allocation_id": id, "provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": used, "output_tokens": 0, "cost": "0.25"});
            app.post("/api/usage", &body).await;
        }
        if i % 2 == 0 {
            app.http.post(app.url(&format!("/api/allocations/{id}/release"))).send().await.unwrap();
        }
    }
    let db = app.db.pool.get().await.unwrap();
    // Fold: created → tokens and cost reserved; usage settles; resolution voids the rest.
    let mut folded: HashMap<String, (String, i64, Decimal, i64)> = HashMap::new(); // state, remaining, remaining cost, used
    for row in db.query("SELECT event_type, payload::json FROM events ORDER BY position", &[]).await.unwrap() {
        let (kind, p): (String, Value) = (row.get(0), row.get(1));
        let dec = |v: &Value| v.to_string().parse::<Decimal>().unwrap();
        match kind.as_str() {
            "AllocationCreated" => {
                folded.insert(
                    p["allocation_id"].as_str().unwrap().into(),
                    ("active".into(), p["tokens_allocated"].as_i64().unwrap(), dec(&p["estimated_cost"]), 0),
                );
            }
            "UsageRecorded" if !p["settlement"].is_null() => {
                let s = &p["settlement"];
                let f = folded.get_mut(s["allocation_id"].as_str().unwrap()).unwrap();
                f.1 -= s["settled_tokens"].as_i64().unwrap();
                f.2 -= dec(&s["settled_cost"]) + dec(&s["voided_cost"]);
                f.3 += p["input_tokens"].as_i64().unwrap() + p["output_tokens"].as_i64().unwrap();
                if s["exhausted"] == true {
                    f.0 = "exhausted".into();
                }
            }
            "AllocationReleased" | "AllocationExpired" => {
                let f = folded.get_mut(p["allocation_id"].as_str().unwrap()).unwrap();
                f.1 -= p["released_tokens"].as_i64().unwrap();
                f.2 -= dec(&p["released_cost"]);
                f.0 = if kind == "AllocationReleased" { "released".into() } else { "expired".into() };
            }
            _ => {}
        }
    }
    let rows = db
        .query("SELECT allocation_id::text, state, remaining_tokens, remaining_cost, input_tokens_used + output_tokens_used FROM allocations", &[])
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    for r in rows {
        let id: String = r.get(0);
        let row = (r.get::<_, String>(1), r.get::<_, i64>(2), r.get::<_, Decimal>(3), r.get::<_, i64>(4));
        assert_eq!(row, folded[&id], "allocation {id}");
    }
}

#[tokio::test]
async fn a_reserving_check_holds_exactly_that_call_and_keys_make_create_and_release_idempotent() {
    let app = spawn_app().await;
    hard_limit(&app, 5000).await;
    let check = json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "context_id": "task-1",
                       "input_tokens": 2000, "max_output_tokens": 1000, "cost": "0.02", "reserve": true});
    let r: Value = app.post("/api/usage/check", &check).await.json().await.unwrap();
    assert_eq!(r["allowed"], true);
    let id = r["allocation_id"].as_str().unwrap().to_string();
    let (_, a) = app.get_json(&format!("/api/allocations/{id}")).await;
    assert_eq!((a["tokens_allocated"].as_i64(), a["estimated_cost"].to_string()), (Some(3000), "0.02".into()));
    let expires: chrono::DateTime<chrono::Utc> = a["expires_at"].as_str().unwrap().parse().unwrap();
    assert!(expires - chrono::Utc::now() <= chrono::Duration::minutes(5));
    // The next identical reservation no longer fits (3,000 + 3,000 > 5,000): 402, nothing reserved.
    let r = app.post("/api/usage/check", &check).await;
    assert_error(r, 402, "budget_exceeded").await;

    // Recording the call settles it exactly.
    let usage = json!({"allocation_id": id, "provider": "openai", "model": "gpt-4o", "component": "codex",
                       "input_tokens": 2000, "output_tokens": 1000, "cost": "0.02"});
    let r: Value = app.post("/api/usage", &usage).await.json().await.unwrap();
    assert_eq!(
        (r["settlement"]["overage_tokens"].as_i64(), r["settlement"]["exhausted"].as_bool()),
        (Some(0), Some(true))
    );
    assert_eq!(pending(&app).await, (Decimal::ZERO, 0));

    // Idempotency keys on create and release.
    let body = json!({"context_id": "t", "component": "c", "tokens": 100});
    let send = |key: &'static str| {
        app.http.post(app.url("/api/allocations")).header("Idempotency-Key", key).json(&body).send()
    };
    let first = send("alloc-1").await.unwrap();
    assert!(first.headers().get("idempotent-replayed").is_none(), "a first answer is not a replay");
    let first: Value = first.json().await.unwrap();
    let again = send("alloc-1").await.unwrap();
    // As a record's retry says it: 200 and `Idempotent-Replayed: true` (it said nothing but the 200).
    assert_eq!(
        (again.status().as_u16(), again.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap())),
        (200, Some("true"))
    );
    assert_eq!(again.json::<Value>().await.unwrap()["allocation_id"], first["allocation_id"]);
    let rid = first["allocation_id"].as_str().unwrap();
    let release =
        || app.http.post(app.url(&format!("/api/allocations/{rid}/release"))).header("Idempotency-Key", "rel-1").send();
    let released = release().await.unwrap();
    assert_eq!(released.status().as_u16(), 200);
    assert!(released.headers().get("idempotent-replayed").is_none());
    let again = release().await.unwrap();
    assert_eq!(again.status().as_u16(), 200, "a retried release gets its first answer");
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let bad = json!({"context_id": "t", "component": "c", "priority": 0});
    assert_error(app.post("/api/allocations", &bad).await, 400, "validation_failed").await;
}

#[tokio::test]
async fn the_estimate_uses_the_models_price_when_known_else_the_tiers() {
    let app = spawn_app().await;
    let price = json!({"provider": "acme", "model": "m1", "input": "1", "output": "3", "per": "1M"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let priced: Value = allocate(
        &app,
        json!({"context_id": "t", "component": "c", "provider": "acme", "model": "m1-2025-01-01", "tokens": 1000}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(priced["estimated_cost"].to_string(), "0.003", "1,000 tokens at the higher (output) rate of $3/M");
    let unpriced: Value =
        allocate(&app, json!({"context_id": "t", "component": "c", "tokens": 1000})).await.json().await.unwrap();
    assert_eq!(unpriced["estimated_cost"].to_string(), "0.01", "the remote tier's reference price, $10/M");
}

/// A refusal is stored with its key like an acceptance: the retry gets the same 402 even after room frees up.
#[tokio::test]
async fn a_refused_reservation_retried_with_its_key_gets_the_same_refusal() {
    let app = spawn_app().await;
    hard_limit(&app, 1000).await;
    let holder: Value =
        allocate(&app, json!({"context_id": "t", "component": "c", "tokens": 900})).await.json().await.unwrap();
    let body = json!({"context_id": "t", "component": "c", "tokens": 500});
    let send = || app.http.post(app.url("/api/allocations")).header("Idempotency-Key", "big-one").json(&body).send();
    let first: Value = {
        let r = send().await.unwrap();
        assert_eq!(r.status().as_u16(), 402);
        r.json().await.unwrap()
    };
    let id = holder["allocation_id"].as_str().unwrap();
    app.http.post(app.url(&format!("/api/allocations/{id}/release"))).send().await.unwrap();
    let retry = send().await.unwrap();
    assert_eq!(retry.status().as_u16(), 402, "the stored refusal, not a new decision");
    // The same refusal; only the request id (each request's own) differs.
    let without_id = |mut v: Value| {
        v["error"].as_object_mut().unwrap().remove("request_id");
        v["error"].clone()
    };
    assert_eq!(without_id(retry.json::<Value>().await.unwrap()), without_id(first.clone()));
    // A new key is a new request, and now it fits.
    let fresh = app
        .http
        .post(app.url("/api/allocations"))
        .header("Idempotency-Key", "big-two")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status().as_u16(), 201);

    // A record refused for an unknown allocation is refused again on retry.
    let record = json!({"provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 1, "output_tokens": 0,
                        "allocation_id": "00000000-0000-0000-0000-0000000000bb", "request_id": "rec-1"});
    assert_error(app.post("/api/usage", &record).await, 404, "not_found").await;
    assert_error(app.post("/api/usage", &record).await, 404, "not_found").await;
}

/// Usage that names its context but no allocation settles against the context's one active
/// reservation, as the original Budget's adapters expect: reserve 8,000 of a 10,000-token hard limit,
/// report 8,000 by context only, and a 2,000-token reservation still fits (counted twice before, it was
/// refused). With two reservations on the context it settles against neither and says why.
#[tokio::test]
async fn usage_by_context_settles_that_contexts_reservation() {
    let app = spawn_app().await;
    hard_limit(&app, 10_000).await;
    let body = json!({"context_id": "task-7", "component": "codex", "tokens": 8000, "estimated_cost": "0"});
    let reserved: Value = allocate(&app, body).await.json().await.unwrap();
    let usage = json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "context_id": "task-7",
                       "input_tokens": 6000, "output_tokens": 2000, "cost": "0"});
    let r: Value = app.post("/api/usage", &usage).await.json().await.unwrap();
    assert_eq!(r["settlement"]["allocation_id"], reserved["allocation_id"], "{r}");
    assert_eq!((r["settlement"]["settled_tokens"].as_i64(), r["over_limit"].as_bool()), (Some(8000), Some(false)));
    assert_eq!(pending(&app).await.1, 0, "the reservation was settled, not left pending");
    let more = json!({"context_id": "task-8", "component": "codex", "tokens": 2000, "estimated_cost": "0"});
    let more = allocate(&app, more).await;
    assert_eq!(more.status().as_u16(), 201, "8,000 used + 2,000 reserved fits 10,000");
    let more: Value = more.json().await.unwrap();
    let release = format!("/api/allocations/{}/release", more["allocation_id"].as_str().unwrap());
    assert_eq!(app.post(&release, &json!({})).await.status().as_u16(), 200);

    // Two active reservations on one context: which one the usage is for is not known.
    for _ in 0..2 {
        let body = json!({"context_id": "task-9", "component": "rhetor", "tokens": 10, "estimated_cost": "0"});
        assert_eq!(allocate(&app, body).await.status().as_u16(), 201);
    }
    let usage = json!({"provider": "openai", "model": "gpt-4o", "component": "rhetor", "context_id": "task-9",
                       "input_tokens": 1, "output_tokens": 0, "cost": "0"});
    let r: Value = app.post("/api/usage", &usage).await.json().await.unwrap();
    assert_eq!((r["settlement"].is_null(), r["settlement_skipped"].as_str()), (true, Some("ambiguous_context")), "{r}");
}

/// An allocation that names a model but no provider reserves where the call will be counted: under the
/// one provider the price book has the model for, not in every provider's windows. A model the book
/// has under several providers (or none) still reserves everywhere it could be counted.
#[tokio::test]
async fn a_model_without_a_provider_reserves_under_its_one_provider() {
    let app = spawn_app().await;
    for (provider, model) in [("openai", "gpt-4o"), ("azure", "shared-model"), ("openai", "shared-model")] {
        let price = json!({"provider": provider, "model": model, "input": "2.5", "output": "10", "per": "1M"});
        assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    }
    let mut policy_of = HashMap::new();
    for provider in ["openai", "anthropic"] {
        let p = json!({"period": "monthly", "type": "hard_limit", "cost_limit": "100", "provider": provider});
        let set: Value = app.post("/api/policies", &p).await.json().await.unwrap();
        policy_of.insert(set["policy"]["policy_id"].as_str().unwrap().to_string(), provider);
    }
    let reserved_under = |a: &Value| -> Vec<&str> {
        let mut providers: Vec<&str> = a["reservations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| *policy_of.get(r["policy_id"].as_str().unwrap()).unwrap())
            .collect();
        providers.sort();
        providers
    };
    let one: Value = allocate(&app, json!({"context_id": "t", "component": "c", "model": "gpt-4o", "tokens": 1000}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(reserved_under(&one), ["openai"], "{one}");
    assert_eq!((one["provider"].as_str(), one["estimated_cost"].as_f64()), (Some("openai"), Some(0.01)), "priced too");
    let several: Value =
        allocate(&app, json!({"context_id": "t", "component": "c", "model": "shared-model", "tokens": 1000}))
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(reserved_under(&several), ["anthropic", "openai"], "{several}");
    // A dated snapshot and the `provider/` form name the provider of the model they are priced as (they
    // reserved under every provider's limits, at the tier's reference price).
    for model in ["gpt-4o-2024-08-06", "openai/gpt-4o", "openai/gpt-4o-2024-08-06"] {
        let a: Value = allocate(&app, json!({"context_id": "t", "component": "c", "model": model, "tokens": 1000}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(reserved_under(&a), ["openai"], "{model}: {a}");
        assert_eq!(
            (a["provider"].as_str(), a["estimated_cost"].as_f64()),
            (Some("openai"), Some(0.01)),
            "{model}: {a}"
        );
    }
}

/// `examples/reserve_then_record.py` (the README's integration example, Python's standard library
/// only) against a server: reserve, record, release; the same task run again gets every first answer
/// back and writes nothing; a reservation past a hard limit exits 3 having spent nothing.
#[tokio::test]
async fn the_reserve_then_record_example_counts_a_task_run_twice_once() {
    let app = spawn_app().await;
    let price = json!({"provider": "openai", "model": "gpt-4o", "input": "2.5", "output": "10", "per": "1M"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let limit = json!({"period": "daily", "type": "hard_limit", "token_limit": 10000, "component": "lab"});
    assert_eq!(app.post("/api/policies", &limit).await.status().as_u16(), 201);
    let run = |task: &'static str, tokens: &'static str| {
        let port = app.address.rsplit(':').next().unwrap().to_string();
        async move {
            // The port as `budget start`'s shell has it, as the README runs the example (no --url).
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/reserve_then_record.py");
            let output = tokio::process::Command::new("python3")
                .args([script, "--task", task, "--component", "lab", "--tokens", tokens])
                .env("BUDGET_PORT", port)
                .env_remove("BUDGET_URL")
                .env_remove("BUDGET_HOST")
                .env_remove("BUDGET_API_KEY")
                .output()
                .await
                .expect("python3 runs");
            let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
            (output.status.code(), text)
        }
    };
    let (code, text) = run("task-1", "8000").await;
    assert_eq!(code, Some(0), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("reserved 8,000 tokens (allocation ") && lines[0].ends_with(", estimated $0.08)"),
        "{text}"
    );
    assert!(lines[1].starts_with("recorded 1,540 tokens costing $0.0064 (record "), "{text}");
    assert_eq!(lines[2], "released 6,460 unused tokens", "{text}");
    let events = app.events().await;

    let (code, again) = run("task-1", "8000").await;
    assert_eq!(code, Some(0), "{again}");
    assert!(again.lines().all(|l| l.ends_with("[replayed]")), "every step is its first answer: {again}");
    assert_eq!(app.events().await, events, "running the task again wrote nothing");

    // 1,540 of 10,000 tokens spent today: 9,000 more are refused before anything is spent.
    let (code, refused) = run("task-2", "9000").await;
    assert_eq!(code, Some(3), "{refused}");
    assert!(refused.starts_with("refused: the daily hard limit on component=lab"), "{refused}");
    let records: i64 = app
        .db
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT count(*) FROM events WHERE event_type = 'UsageRecorded'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(records, 1);
}

/// The events of a task (or of a component, a provider, a policy) include how each of its
/// reservations ended: a release or an expiry names only its allocation, and was left out of the
/// audit of the task it belonged to.
#[tokio::test]
async fn a_tasks_events_include_how_its_reservations_ended() {
    let app = spawn_app().await;
    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "10", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let reserve = |context: &str| json!({"context_id": context, "component": "codex", "tokens": 1000, "provider": "openai", "model": "gpt-4o"});
    let r: Value = app.post("/api/allocations", &reserve("task-1")).await.json().await.unwrap();
    let id = r["allocation_id"].as_str().unwrap().to_string();
    let r = app.http.post(app.url(&format!("/api/allocations/{id}/release"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Another task's reservation, released too: not one of task-1's events.
    let r: Value = app.post("/api/allocations", &reserve("task-2")).await.json().await.unwrap();
    let other = r["allocation_id"].as_str().unwrap().to_string();
    app.http.post(app.url(&format!("/api/allocations/{other}/release"))).send().await.unwrap();

    let policy_id: String = app.column("SELECT policy_id::text FROM policies").await.remove(0);
    for query in ["context_id=task-1", "component=codex&context_id=task-1", "provider=openai&context_id=task-1"] {
        let (status, page) = app.get_json(&format!("/api/events?{query}")).await;
        assert_eq!(status, 200, "{page}");
        let types: Vec<&str> = page["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["AllocationCreated", "AllocationReleased"], "{query}: {page:#}");
    }
    let (_, page) = app.get_json(&format!("/api/events?policy_id={policy_id}&type=AllocationReleased")).await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2, "both releases free the policy's window: {page:#}");
}

/// A per-session hard limit holds reservations too: an allocation (or a reserving check) that names
/// its session reserves in that session's window (before, it reserved in none, so two reserving checks
/// of $0.60 each both passed under a $1 per-session hard limit, and their calls overspent it).
#[tokio::test]
async fn a_reservation_for_a_session_holds_room_under_its_per_session_limit() {
    let app = spawn_app().await;
    let policy = json!({"period": "per_session", "type": "hard_limit", "cost_limit": "1", "component": "codex"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let check = json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "session_id": "s-1",
                       "input_tokens": 10, "cost": "0.6", "reserve": true});
    let first = app.post("/api/usage/check", &check).await;
    assert_eq!(first.status().as_u16(), 200);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["allowed"], true, "{first}");
    let second = app.post("/api/usage/check", &check).await;
    assert_eq!(
        second.status().as_u16(),
        402,
        "the first holds $0.60 of the session's $1: {}",
        second.text().await.unwrap()
    );

    let reserve = |session: &str| {
        json!({"context_id": "t-1", "component": "codex", "provider": "openai", "session_id": session,
               "tokens": 100, "estimated_cost": "0.5"})
    };
    let held = allocate(&app, reserve("s-2")).await;
    assert_eq!(held.status().as_u16(), 201);
    let held: Value = held.json().await.unwrap();
    assert_eq!(held["reservations"][0]["window"], "session:s-2", "{held}");
    assert_eq!(allocate(&app, reserve("s-2")).await.status().as_u16(), 201, "$1.00 of $1 fits");
    assert_error(allocate(&app, reserve("s-2")).await, 402, "budget_exceeded").await;
    assert_eq!(allocate(&app, reserve("s-3")).await.status().as_u16(), 201, "another session has its own room");
    // Usage of the session settles against the reservation in the session's window: $0.10 used, the
    // other $0.40 of it still held, with the second reservation's $0.50.
    let id = held["allocation_id"].as_str().unwrap();
    let usage = json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "session_id": "s-2",
                       "allocation_id": id, "input_tokens": 10, "output_tokens": 0, "cost": "0.1"});
    assert_eq!(app.post("/api/usage", &usage).await.status().as_u16(), 201);
    let (_, status) = app.get_json("/api/status").await;
    let window = status["windows"].as_array().unwrap().iter().find(|w| w["window"] == "session:s-2").cloned().unwrap();
    assert_eq!(
        (window["used_cost"].to_string(), window["reserved_cost"].to_string()),
        ("0.1".into(), "0.9".into()),
        "{window}"
    );
    let mut bad = reserve("s-4");
    bad["session_id"] = json!("");
    assert_error(allocate(&app, bad).await, 400, "validation_failed").await;
}

/// A reserving check without a `context_id` falls under no per-task limit, and neither does its hold:
/// the holds of such checks shared one made-up task ("pre-flight"), so a per-task limit of $1 refused
/// the second of two unrelated $0.60 calls that the check itself had allowed.
#[tokio::test]
async fn a_reserving_check_without_a_task_holds_no_per_task_room() {
    let app = spawn_app().await;
    let policy = json!({"period": "per_task", "type": "hard_limit", "cost_limit": "1"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let check = |task: Option<&str>| {
        let mut c = json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 10,
                           "cost": "0.6", "reserve": true});
        if let Some(t) = task {
            c["context_id"] = json!(t);
        }
        c
    };
    for _ in 0..2 {
        let r = app.post("/api/usage/check", &check(None)).await;
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    }
    // A task's checks still hold room in its window.
    assert_eq!(app.post("/api/usage/check", &check(Some("t-1"))).await.status().as_u16(), 200);
    assert_error(app.post("/api/usage/check", &check(Some("t-1"))).await, 402, "budget_exceeded").await;
}

#[tokio::test]
async fn a_reservation_past_a_soft_limit_says_so_and_offers_cheaper_models() {
    let app = spawn_app().await;
    assert_eq!(app.post_raw("/api/prices/update", "").await.status().as_u16(), 200, "the bundled table");
    let soft = json!({"period": "daily", "type": "soft_limit", "cost_limit": "0.02", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &soft).await.status().as_u16(), 201);
    let warn = json!({"period": "daily", "type": "warn", "token_limit": 100000, "component": "c"});
    assert_eq!(app.post("/api/policies", &warn).await.status().as_u16(), 201);
    // Every reserved token is priced at gpt-4o's higher rate, $10 per 1M: 1,500 tokens are $0.015.
    let reserve = json!({"context_id": "t-1", "component": "c", "provider": "openai", "model": "gpt-4o",
                         "task_type": "coding", "tokens": 1500});
    let first = allocate(&app, reserve.clone()).await;
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["estimated_cost"].to_string(), "0.015", "{first}");
    assert!(first.get("warnings").is_none() && first.get("alternatives").is_none(), "75% of the limit: {first}");

    // The second would take the soft limit to $0.03 of $0.02: reserved all the same (a soft limit does
    // not refuse), with the sentence a check gives and the cheaper models that fit the task.
    let mut keyed = reserve.clone();
    keyed["request_id"] = json!("second");
    let second = allocate(&app, keyed.clone()).await;
    assert_eq!(second.status().as_u16(), 201);
    let second: Value = second.json().await.unwrap();
    let warnings = second["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "the warn policy is at 6% of its tokens: {second}");
    assert_eq!((warnings[0]["type"].as_str(), warnings[0]["decision"].as_str()), (Some("soft_limit"), Some("warn")));
    assert_eq!(warnings[0]["remaining_cost_after"].to_string(), "-0.01", "{second}");
    let messages: Vec<&str> = second["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert!(
        messages[0]
            .starts_with("daily soft_limit policy on provider=openai (budget default): with it, its window starting ")
            && messages[0].ends_with(" would hold $0.03 of $0.02 (150%), over the limit"),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m.starts_with("soft limit: ") && m.contains("instead of $0.015")), "{messages:?}");
    let alternatives = second["alternatives"].as_array().unwrap();
    assert!(!alternatives.is_empty() && alternatives.len() <= 3, "{second}");
    for a in alternatives {
        assert!(a["cost"].as_f64().unwrap() < 0.015, "{a}");
        assert!(a["capabilities"].as_array().unwrap().iter().any(|c| c == "code"), "{a}");
    }
    // A retry gets the first answer, warnings and all.
    let again: Value = allocate(&app, keyed).await.json().await.unwrap();
    assert_eq!((&again["allocation_id"], &again["warnings"]), (&second["allocation_id"], &second["warnings"]));
    // Read back later, an allocation is what it holds: the answer's warnings were of its moment.
    let id = second["allocation_id"].as_str().unwrap();
    let (_, read) = app.get_json(&format!("/api/allocations/{id}")).await;
    assert!(read.get("warnings").is_none(), "{read}");
}

/// An allocation that leaves its task type (or its tier, with no provider to derive it from) open
/// could be for any, so it holds room under a hard limit scoped to one, as an open provider or model
/// does; otherwise two such reservations both pass a task type's limit, and their calls overspend it.
#[tokio::test]
async fn a_reservation_without_a_task_type_or_tier_holds_room_under_limits_scoped_to_one() {
    let app = spawn_app().await;
    for scope in [json!({"task_type": "coding"}), json!({"tier": "local_lightweight"})] {
        let mut policy = json!({"period": "daily", "type": "hard_limit", "token_limit": 1000});
        policy.as_object_mut().unwrap().extend(scope.as_object().unwrap().clone());
        assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201, "{policy}");
    }
    let reserve = json!({"context_id": "t-1", "component": "c", "tokens": 600, "estimated_cost": "0.01"});
    let first = allocate(&app, reserve.clone()).await;
    assert_eq!(first.status().as_u16(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["reservations"].as_array().unwrap().len(), 2, "held under both: {first}");
    assert_eq!((&first["task_type_open"], &first["tier_open"]), (&json!(true), &json!(true)), "{first}");
    let second = allocate(&app, reserve.clone()).await;
    assert_eq!(second.status().as_u16(), 402, "600 + 600 would pass 1,000: {}", second.text().await.unwrap());

    // Named, they hold room only where they count: a chat task is not a coding one.
    let mut chat = reserve.clone();
    chat["task_type"] = json!("chat");
    chat["tier"] = json!("remote_heavyweight");
    let named: Value = allocate(&app, chat).await.json().await.unwrap();
    assert_eq!(named["reservations"].as_array().unwrap().len(), 0, "{named}");
    assert!(named.get("task_type_open").is_none() && named.get("tier_open").is_none(), "{named}");

    // The first one's call, recorded as coding on a local model, settles inside the room it held.
    let id = first["allocation_id"].as_str().unwrap();
    let usage = json!({"provider": "ollama", "model": "llama3", "component": "c", "task_type": "coding",
                       "allocation_id": id, "input_tokens": 500, "output_tokens": 100});
    let r: Value = app.post("/api/usage", &usage).await.json().await.unwrap();
    assert_eq!(r["over_limit"], false, "{r}");
    assert_eq!(pending(&app).await.1, 0, "what it held is released once settled");

    // A limit set later opens its window with the open reservations, on the same rule.
    assert_eq!(
        allocate(&app, json!({"context_id": "t-2", "component": "c", "tokens": 300})).await.status().as_u16(),
        201
    );
    let later = json!({"period": "daily", "type": "hard_limit", "token_limit": 5000, "task_type": "analysis"});
    let set: Value = app.post("/api/policies", &later).await.json().await.unwrap();
    assert_eq!(set["opening"]["pending_tokens"], 300, "{set}");
}

/// A reservation whose model names no provider (a typo, or a model several providers sell) holds
/// room under every provider's limits, so another provider's limit may refuse it: the refusal says
/// why that limit counted it and how to aim it. A reservation for `claude-3-5-sonet` was refused by
/// "the daily hard limit on provider=openai", and nothing said why.
#[tokio::test]
async fn a_refusal_by_another_providers_limit_says_the_model_named_no_provider() {
    let app = spawn_app().await;
    for (provider, model) in [("openai", "shared-model"), ("azure", "shared-model")] {
        let price = json!({"provider": provider, "model": model, "input": "2.5", "output": "10", "per": "1M"});
        assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    }
    let p = json!({"period": "daily", "type": "hard_limit", "token_limit": 100, "provider": "openai"});
    assert_eq!(app.post("/api/policies", &p).await.status().as_u16(), 201);
    let ask = |model: &str| json!({"context_id": "t", "component": "c", "model": model, "tokens": 1000});
    let price =
        json!({"provider": "anthropic", "model": "claude-3-5-sonnet", "input": "3", "output": "15", "per": "1M"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let message = assert_error(allocate(&app, ask("claude-3-5-sonet")).await, 402, "budget_exceeded").await;
    assert!(message.starts_with("the daily hard limit on provider=openai (100 tokens) would be exceeded"), "{message}");
    assert!(
        message.ends_with(
            "; `claude-3-5-sonet` is not in the price book (did you mean `claude-3-5-sonnet`?), so it names no provider and the reservation counts under every provider's limits: send its provider, or a model the price book has (`budget prices list`)"
        ),
        "{message}"
    );
    let message = assert_error(allocate(&app, ask("shared-model")).await, 402, "budget_exceeded").await;
    assert!(
        message.ends_with(
            "; `shared-model` is in the price book of azure and openai, so it names no one provider and the reservation counts under every provider's limits: send its provider"
        ),
        "{message}"
    );
    // Admitted, the answer says it all the same.
    let mut small = ask("claude-3-5-sonet");
    small["tokens"] = json!(10);
    let a: Value = allocate(&app, small).await.json().await.unwrap();
    assert_eq!(
        a["messages"],
        json!(["`claude-3-5-sonet` is not in the price book (did you mean `claude-3-5-sonnet`?), so it names no provider and the reservation counts under every provider's limits, at the remote_heavyweight tier's reference price: send its provider, or a model the price book has (`budget prices list`)"]),
        "{a}"
    );
    // Named, it is refused by its own provider's limit alone, and says nothing more.
    let mut named = ask("shared-model");
    named["provider"] = json!("openai");
    let message = assert_error(allocate(&app, named).await, 402, "budget_exceeded").await;
    assert!(message.ends_with("or raise the limit"), "{message}");
}

/// A component asking to spend on a model its provider no longer serves (claude-3-5-sonnet, retired on
/// 2025-10-22) was answered as for any other: reserved, with nothing said, for a call that will fail.
/// A check and a reservation of such a model say so, and so does one of a model retiring within the
/// notice; a price someone set says the model is served (a gateway that still offers it), so nothing
/// is said of it.
#[tokio::test]
async fn a_check_or_reservation_of_a_retired_model_says_it_is_retired() {
    let app = spawn_app_with(|s| s.bundled_prices = true).await;
    let reserve = json!({"context_id": "t-1", "component": "codex", "provider": "anthropic",
                         "model": "claude-3-5-sonnet-20241022", "tokens": 1000});
    let r = allocate(&app, reserve).await;
    assert_eq!(r.status().as_u16(), 201);
    let view: Value = r.json().await.unwrap();
    assert_eq!(
        view["messages"],
        json!(["anthropic/claude-3-5-sonnet-20241022 is retired: its provider retired it on 2025-10-22, so calls to it fail; `budget recommend` ranks the models that can take them"]),
        "{view}"
    );
    let check = json!({"provider": "together", "model": "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo",
                       "component": "codex", "input_tokens": 100, "max_output_tokens": 10});
    let r: Value = app.post("/api/usage/check", &check).await.json().await.unwrap();
    assert_eq!(
        r["messages"],
        json!(["together/meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo is retired: its provider retired it by 2026-12-04, so calls to it fail; `budget recommend` ranks the models that can take them"]),
        "{r}"
    );
    // Within the notice: said with its day, which is still to come (gpt-4o's is 2027-01-14).
    let check = json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 100});
    let r: Value = app.post("/api/usage/check", &check).await.json().await.unwrap();
    let today = chrono::Utc::now().date_naive();
    if today < chrono::NaiveDate::from_ymd_opt(2027, 1, 14).unwrap() {
        assert_eq!(
            r["messages"],
            json!(["openai/gpt-4o retires on 2027-01-14: its provider stops serving it then, so calls to it will fail; `budget recommend` ranks the models that can take them"]),
            "{r}"
        );
    }
    // A served model: nothing said. A price set by hand: the model is in use, nothing said either.
    let check = json!({"provider": "anthropic", "model": "claude-opus-4-7", "component": "codex", "input_tokens": 100});
    let r: Value = app.post("/api/usage/check", &check).await.json().await.unwrap();
    assert_eq!(r["messages"], json!([]), "{r}");
    let price = json!({"provider": "anthropic", "model": "claude-3-5-sonnet", "input": "3", "output": "15"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let check = json!({"provider": "anthropic", "model": "claude-3-5-sonnet-20241022", "component": "codex",
                       "input_tokens": 100});
    let r: Value = app.post("/api/usage/check", &check).await.json().await.unwrap();
    assert_eq!(r["messages"], json!([]), "{r}");
}
