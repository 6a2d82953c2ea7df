//! The price book: exact costs, versions by time, imports, and records priced at their time.

use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_with, TestApp};
use crate::stub::Stub;

#[tokio::test]
async fn calc_cost_is_exact_and_the_bundled_table_is_applied_on_first_start() {
    let app = spawn_app_with(|s| s.bundled_prices = true).await;
    // 1,000 in + 500 out of gpt-4 at $30 / $60 per 1M = $0.06.
    let r = app
        .post(
            "/api/prices/calculate",
            &json!({"provider": "openai", "model": "gpt-4", "input_tokens": 1000, "output_tokens": 500}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let c: Value = r.json().await.unwrap();
    assert_eq!(
        (c["input_cost"].to_string(), c["output_cost"].to_string(), c["total_cost"].to_string()),
        ("0.03".into(), "0.03".into(), "0.06".into())
    );
    // A dated snapshot resolves to its base; cached input at the cached rate.
    let c: Value = app
        .post("/api/prices/calculate", &json!({"provider": "openai", "model": "gpt-4o-2024-08-06", "input_tokens": 1200, "cached_input_tokens": 1000, "output_tokens": 340}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!((c["resolved_model"].as_str(), c["total_cost"].to_string()), (Some("gpt-4o"), "0.00515".into()));
    let (status, list) = app.get_json("/api/prices?provider=anthropic").await;
    assert_eq!(status, 200);
    assert!(list["prices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["source"] == "bundled" && p["provider"] == "anthropic"));
    // Search: any case, anywhere in provider/model.
    let (_, found) = app.get_json("/api/prices?search=OpenAI/GPT-4O").await;
    let names: Vec<String> = found["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p["provider"].as_str().unwrap(), p["model"].as_str().unwrap()))
        .collect();
    assert!(
        names.contains(&"openai/gpt-4o".to_string()) && names.contains(&"openai/gpt-4o-mini".to_string()),
        "{names:?}"
    );
    assert!(names.iter().all(|n| n.starts_with("openai/gpt-4o")), "{names:?}");
    let (_, none) = app.get_json("/api/prices?search=no-such-model").await;
    assert_eq!(none["prices"].as_array().unwrap().len(), 0);
    let (_, one) = app.get_json("/api/prices/openai/gpt-4o").await;
    assert_eq!((one["input_per_1m"].to_string(), one["input_per_1k"].to_string()), ("2.5".into(), "0.0025".into()));
    let r = app
        .post("/api/prices/calculate", &json!({"provider": "openai", "model": "no-such-model", "input_tokens": 1, "at": "2026-11-30T10:00:00.123456Z"}))
        .await;
    let message = assert_error(r, 404, "not_found").await;
    // The time as every answer writes it, to the second (not Rust's "2026-11-30 10:00:00.123456 UTC").
    assert!(message.contains("no price for openai/no-such-model at 2026-11-30T10:00:00Z "), "{message}");
    assert!(!message.contains("did you mean"), "nothing is near no-such-model: {message}");
    // A typo of the provider or the model is answered with the name it misspells.
    for (provider, model) in [("openai", "gtp-4o"), ("opnai", "gpt-4o"), ("opnai", "gpt-4o-mnii")] {
        let call = json!({"provider": provider, "model": model, "input_tokens": 1});
        let message = assert_error(app.post("/api/prices/calculate", &call).await, 404, "not_found").await;
        let expected = if model == "gpt-4o-mnii" { "openai/gpt-4o-mini" } else { "openai/gpt-4o" };
        assert!(message.contains(&format!("; did you mean {expected}? ")), "{provider}/{model}: {message}");
    }
}

#[tokio::test]
async fn a_price_change_applies_by_the_records_time_even_for_late_records() {
    let app = spawn_app().await;
    let set = |input: &str, at: &str| json!({"provider": "acme", "model": "m1", "input": input, "output": "0", "effective_from": at});
    assert_eq!(app.post("/api/prices", &set("1", "2026-01-01T00:00:00Z")).await.status().as_u16(), 200);
    let t = "2026-11-01T00:00:00Z";
    let r: Value = app.post("/api/prices", &set("2", t)).await.json().await.unwrap();
    assert_eq!(r["changed"][0], "acme/m1");
    let record = |ts: &str| json!({"provider": "acme", "model": "m1", "component": "c", "input_tokens": 1000000, "output_tokens": 0, "timestamp": ts});
    let before: Value = app.post("/api/usage", &record("2026-10-31T23:59:59Z")).await.json().await.unwrap();
    let after: Value = app.post("/api/usage", &record("2026-11-01T00:00:00Z")).await.json().await.unwrap();
    assert_eq!((before["cost"].to_string(), before["cost_source"].as_str()), ("1".into(), Some("price_book")));
    assert_eq!(after["cost"].to_string(), "2");
    // The events keep the price version they were priced with.
    let db = app.db.pool.get().await.unwrap();
    let versions: Vec<Option<String>> = app
        .column(
            "SELECT payload::json->>'price_version' FROM events WHERE event_type = 'UsageRecorded' ORDER BY position",
        )
        .await;
    assert!(versions[0].is_some() && versions[0] != versions[1]);
    let (_, history) = app.get_json("/api/prices/history/acme/m1").await;
    let v = history["versions"].as_array().unwrap();
    assert_eq!((v.len(), v[0]["effective_to"].as_str()), (2, Some(t)));
    let unknown = reqwest::get(format!("{}/api/prices/history/acme/nosuch", app.address)).await.unwrap();
    let message = assert_error(unknown, 404, "not_found").await;
    assert!(message.contains("`budget prices list`"), "the CLI's way to the list too: {message}");
    // An explicit cost is kept, and the computed one stored beside it.
    let mut explicit = record("2026-11-02T00:00:00Z");
    explicit["cost"] = json!("1.5");
    let r: Value = app.post("/api/usage", &explicit).await.json().await.unwrap();
    assert_eq!((r["cost"].to_string(), r["cost_source"].as_str()), ("1.5".into(), Some("client")));
    let computed: Option<String> = db
        .query_one("SELECT payload::json->>'computed_cost' FROM events WHERE event_type = 'UsageRecorded' ORDER BY position DESC LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(computed.as_deref(), Some("2"));
    assert_error(
        app.post("/api/prices", &json!({"provider": "acme", "model": "m1", "input": "-1", "output": "0"})).await,
        400,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn imports_show_a_diff_on_dry_run_and_reject_a_malformed_file_whole() {
    let app = spawn_app().await;
    let file = json!({
        "gpt-4o": {"litellm_provider": "openai", "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "max_input_tokens": 128000},
        "dall-e-3": {"litellm_provider": "openai", "output_cost_per_image": 0.04}
    });
    let dry: Value =
        app.post("/api/prices/update", &json!({"litellm": file, "dry_run": true})).await.json().await.unwrap();
    assert_eq!(
        (dry["added"][0].as_str(), dry["skipped"].as_i64(), dry["dry_run"].as_bool()),
        (Some("openai/gpt-4o"), Some(1), Some(true))
    );
    assert_eq!(app.events().await, 0, "a dry run writes nothing");
    let applied: Value = app.post("/api/prices/update", &json!({"litellm": file})).await.json().await.unwrap();
    assert_eq!(applied["added"].as_array().unwrap().len(), 1);
    let again: Value = app.post("/api/prices/update", &json!({"litellm": file})).await.json().await.unwrap();
    assert_eq!((again["unchanged"].as_i64(), again["added"].as_array().unwrap().len()), (Some(1), 0));

    let bad = json!({"ok": {"litellm_provider": "x", "input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06},
                     "broken": {"litellm_provider": "x", "input_cost_per_token": "cheap", "output_cost_per_token": 1}});
    let message =
        assert_error(app.post("/api/prices/update", &json!({"litellm": bad})).await, 400, "invalid_price_file").await;
    assert!(message.contains("`broken`.input_cost_per_token"), "{message}");
    assert_eq!(app.events().await, 1, "nothing of the rejected file was written");
    let bundled: Value = app.post("/api/prices/update", &json!({"dry_run": true})).await.json().await.unwrap();
    assert!(bundled["added"].as_array().unwrap().len() > 30 && bundled["source"] == "bundled");
}

#[tokio::test]
async fn repricing_moves_rollups_and_accounts_by_exactly_the_difference() {
    let app = spawn_app().await;
    let set = |input: &str, at: &str| json!({"provider": "acme", "model": "m1", "input": input, "output": "0", "effective_from": at});
    assert_eq!(app.post("/api/prices", &set("1", "2026-01-01T00:00:00Z")).await.status().as_u16(), 200);
    let policy = json!({"period": "daily", "type": "soft_limit", "cost_limit": "100", "provider": "acme"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let record = |tokens: i64, ts: &str| json!({"provider": "acme", "model": "m1", "component": "c", "input_tokens": tokens, "output_tokens": 0, "timestamp": ts});
    for (tokens, ts) in
        [(1_000_000, "2026-11-27T10:00:00Z"), (500_000, "2026-11-27T11:00:00Z"), (250_000, "2026-11-26T09:00:00Z")]
    {
        assert_eq!(app.post("/api/usage", &record(tokens, ts)).await.status().as_u16(), 201);
    }
    // The client's own cost is never re-priced.
    let mut explicit = record(1_000_000, "2026-11-27T12:00:00Z");
    explicit["cost"] = json!("5");
    assert_eq!(app.post("/api/usage", &explicit).await.status().as_u16(), 201);
    let db = app.db.pool.get().await.unwrap();
    let sums = || async {
        let accounts: rust_decimal::Decimal =
            db.query_one("SELECT sum(posted_cost) FROM policy_accounts", &[]).await.unwrap().get(0);
        let rollups: rust_decimal::Decimal =
            db.query_one("SELECT sum(cost) FROM usage_rollups", &[]).await.unwrap().get(0);
        (accounts.normalize().to_string(), rollups.normalize().to_string())
    };
    let events = app.events().await;
    app.wait_for_projections(events).await;
    assert_eq!(sums().await, ("6.75".into(), "6.75".into()));

    // A backdated correction of the price: from the 27th, $3 per 1M.
    assert_eq!(app.post("/api/prices", &set("3", "2026-11-27T00:00:00Z")).await.status().as_u16(), 200);
    let reprice =
        |dry_run: bool| json!({"provider": "acme", "model": "m1", "since": "2026-11-01T00:00:00Z", "dry_run": dry_run});
    let events = app.events().await;
    let dry: Value = app.post("/api/prices/reprice", &reprice(true)).await.json().await.unwrap();
    assert_eq!((dry["records"].as_i64(), dry["total_delta"].to_string()), (Some(2), "3".into()));
    assert_eq!(app.events().await, events, "a dry run writes nothing");

    let done: Value = app.post("/api/prices/reprice", &reprice(false)).await.json().await.unwrap();
    assert_eq!((done["records"].as_i64(), done["total_delta"].to_string()), (Some(2), "3".into()));
    let c = &done["corrections"][0];
    assert_eq!(
        (c["previous_cost"].to_string(), c["cost"].to_string(), c["delta"].to_string()),
        ("1".into(), "3".into(), "2".into())
    );
    assert_eq!(app.events().await, events + 2);
    app.wait_for_projections(events + 2).await;
    assert_eq!(sums().await, ("9.75".into(), "9.75".into()), "both moved by exactly the difference");
    // The records' own events are unchanged.
    let originals: Vec<String> = app
        .column("SELECT payload::json->>'cost' FROM events WHERE event_type = 'UsageRecorded' ORDER BY position")
        .await;
    assert_eq!(originals, ["1", "0.5", "0.25", "5"]);
    // Nothing left to correct: a second run appends nothing.
    let again: Value = app.post("/api/prices/reprice", &reprice(false)).await.json().await.unwrap();
    assert_eq!(again["records"].as_i64(), Some(0));
    // Back to $1 from the 27th: the corrections are corrected, back to the first figures.
    assert_eq!(app.post("/api/prices", &set("1", "2026-11-27T06:00:00Z")).await.status().as_u16(), 200);
    let back: Value = app.post("/api/prices/reprice", &reprice(false)).await.json().await.unwrap();
    assert_eq!((back["records"].as_i64(), back["total_delta"].to_string()), (Some(2), "-3".into()));
    app.wait_for_projections(app.events().await).await;
    assert_eq!(sums().await, ("6.75".into(), "6.75".into()));
    let bad =
        json!({"provider": "acme", "model": "m1", "since": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"});
    assert_error(app.post("/api/prices/reprice", &bad).await, 400, "validation_failed").await;
}

#[tokio::test]
async fn unpriced_models_fail_closed_under_a_cost_limit_when_configured() {
    let app = spawn_app_with(|s| s.unpriced = budget_api::configuration::UnpricedPolicy::Reject).await;
    let hard = json!({"period": "daily", "type": "hard_limit", "cost_limit": "10", "provider": "acme"});
    assert_eq!(app.post("/api/policies", &hard).await.status().as_u16(), 201);
    let tokens_only = json!({"period": "daily", "type": "hard_limit", "token_limit": 1000000, "provider": "other"});
    assert_eq!(app.post("/api/policies", &tokens_only).await.status().as_u16(), 201);
    let call = |provider: &str| json!({"provider": provider, "model": "mystery", "component": "c", "input_tokens": 100, "max_output_tokens": 50});

    let (status, r) = {
        let r = app.post("/api/usage/check", &call("acme")).await;
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!((status, r["allowed"].as_bool(), r["cost_source"].as_str()), (200, Some(false), Some("unpriced")));
    assert_eq!(r["policies"][0]["decision"], "refuse");
    assert!(r["messages"][0].as_str().unwrap().contains("BUDGET_UNPRICED=reject"), "{r}");
    // With its own cost the call can be checked, and is allowed.
    let mut with_cost = call("acme");
    with_cost["cost"] = json!("0.01");
    let r: Value = app.post("/api/usage/check", &with_cost).await.json().await.unwrap();
    assert_eq!(r["allowed"], true);
    // Only a cost limit fails closed: a token limit can still decide.
    let r: Value = app.post("/api/usage/check", &call("other")).await.json().await.unwrap();
    assert_eq!(r["allowed"], true, "{r}");

    let events = app.events().await;
    let alloc = json!({"context_id": "t1", "component": "c", "provider": "acme", "model": "mystery", "tokens": 1000});
    let message = assert_error(app.post("/api/allocations", &alloc).await, 402, "unpriced_model").await;
    assert!(message.contains("nothing was reserved") && message.contains("acme/mystery"), "{message}");
    assert_eq!(app.events().await, events, "nothing written");
    let mut estimated = alloc.clone();
    estimated["estimated_cost"] = json!("0.5");
    assert_eq!(app.post("/api/allocations", &estimated).await.status().as_u16(), 201);
    // Usage itself is always recorded (it happened), flagged unpriced.
    let usage =
        json!({"provider": "acme", "model": "mystery", "component": "c", "input_tokens": 10, "output_tokens": 0});
    let r: Value = app.post("/api/usage", &usage).await.json().await.unwrap();
    assert_eq!(r["cost_source"], "unpriced");

    // The default records: the same check is allowed, counting tokens only.
    let app = spawn_app().await;
    assert_eq!(app.post("/api/policies", &hard).await.status().as_u16(), 201);
    let r: Value = app.post("/api/usage/check", &call("acme")).await.json().await.unwrap();
    assert_eq!(r["allowed"], true);
}

#[tokio::test]
async fn recommendations_list_cheaper_capable_models_and_a_soft_limit_offers_them() {
    let app = spawn_app().await;
    assert_eq!(app.post_raw("/api/prices/update", "").await.status().as_u16(), 200, "the bundled table");
    let ask = json!({"provider": "openai", "model": "gpt-4o", "task_type": "coding", "context_size": 2000, "output_size": 1000});
    let r: Value = app.post("/api/prices/recommendations", &ask).await.json().await.unwrap();
    // gpt-4o at $2.50 / $10 per 1M: 0.005 + 0.01.
    assert_eq!((r["current_cost"].to_string(), r["required_capability"].as_str()), ("0.015".into(), Some("code")));
    let alts = r["alternatives"].as_array().unwrap();
    assert!(!alts.is_empty() && alts.len() <= 10, "{r}");
    let savings: Vec<f64> = alts.iter().map(|a| a["savings"].as_f64().unwrap()).collect();
    assert!(savings.windows(2).all(|w| w[0] >= w[1]), "largest saving first: {savings:?}");
    for a in alts {
        assert!(a["capabilities"].as_array().unwrap().iter().any(|c| c == "code"), "{a}");
        assert!(!a["capabilities"].as_array().unwrap().iter().any(|c| c.as_str().unwrap().starts_with("local_")));
        assert!(a["cost"].as_f64().unwrap() < 0.015);
    }
    // Each cost is the one calculate gives.
    let first = &alts[0];
    let calc =
        json!({"provider": first["provider"], "model": first["model"], "input_tokens": 2000, "output_tokens": 1000});
    let c: Value = app.post("/api/prices/calculate", &calc).await.json().await.unwrap();
    assert_eq!(c["total_cost"], first["cost"]);
    let mut local = ask.clone();
    local["include_local"] = json!(true);
    let r: Value = app.post("/api/prices/recommendations", &local).await.json().await.unwrap();
    assert_eq!(r["alternatives"][0]["cost"].to_string(), "0", "a local model saves everything: {r}");
    let mut bad = ask.clone();
    bad["context_size"] = json!(-1);
    assert_error(app.post("/api/prices/recommendations", &bad).await, 400, "validation_failed").await;
    let unknown = json!({"provider": "openai", "model": "nope", "context_size": 1});
    assert_error(app.post("/api/prices/recommendations", &unknown).await, 404, "not_found").await;

    // A soft limit near its limit: the check allows the call and offers the cheaper models.
    let soft = json!({"period": "daily", "type": "soft_limit", "cost_limit": "0.02", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &soft).await.status().as_u16(), 201);
    let call = json!({"provider": "openai", "model": "gpt-4o", "component": "c", "task_type": "coding", "input_tokens": 2000, "max_output_tokens": 1000});
    let r: Value = app.post("/api/usage/check", &call).await.json().await.unwrap();
    assert!(r.get("alternatives").is_none(), "no pressure yet, no alternatives: {r}");
    let usage =
        json!({"provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 2000, "output_tokens": 1000});
    assert_eq!(app.post("/api/usage", &usage).await.status().as_u16(), 201);
    let r: Value = app.post("/api/usage/check", &call).await.json().await.unwrap();
    assert_eq!((r["allowed"].as_bool(), r["policies"][0]["decision"].as_str()), (Some(true), Some("warn")), "{r}");
    let alts = r["alternatives"].as_array().unwrap();
    assert!(!alts.is_empty() && alts.len() <= 3);
    assert!(r["messages"].as_array().unwrap().iter().any(|m| m.as_str().unwrap().starts_with("soft limit:")), "{r}");
}

#[tokio::test]
async fn configured_price_sources_refresh_and_a_failure_keeps_the_current_prices() {
    let document = |price: &str| {
        format!(
            r#"{{"m1": {{"litellm_provider": "acme", "input_cost_per_token": {price}, "output_cost_per_token": 0}}}}"#
        )
    };
    let served = std::sync::Arc::new(std::sync::Mutex::new(document("1e-06")));
    let document_now = served.clone();
    let url = Stub::start(move |_, _| (200, document_now.lock().unwrap().clone())).await.url;
    let file = std::env::temp_dir().join(format!("budget-prices-{}-{}.json", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::write(
        &file,
        r#"{"m2": {"litellm_provider": "acme", "input_cost_per_token": 2e-06, "output_cost_per_token": 0}}"#,
    )
    .unwrap();
    let dead = "http://127.0.0.1:9/prices.json".to_string();
    let sources = vec![url.clone(), file.to_str().unwrap().to_string(), dead.clone()];
    let app = spawn_app_with(|s| {
        s.price_sources = sources;
        s.price_refresh = std::time::Duration::from_millis(200);
    })
    .await;
    // Waits until every source has been tried since `after` and `done` holds.
    let wait = |done: &'static (dyn Fn(&Value) -> bool + Sync)| {
        let app = &app;
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                let (_, h) = app.get_json("/api/health").await;
                if done(&h["price_sources"]) {
                    return h["price_sources"].clone();
                }
                assert!(std::time::Instant::now() < deadline, "price sources did not settle: {h}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    let states =
        wait(&|s| s.as_array().is_some_and(|a| a.len() == 3 && a.iter().all(|x| !x["last_attempt"].is_null()))).await;
    let by = |states: &Value, source: &str| {
        states.as_array().unwrap().iter().find(|s| s["source"] == source).unwrap().clone()
    };
    assert!(by(&states, &dead)["last_error"].as_str().unwrap().contains("the current prices stay"), "{states}");
    let (_, m1) = app.get_json("/api/prices/acme/m1").await;
    assert_eq!((m1["input_per_1m"].to_string(), m1["source"].as_str()), ("1".into(), Some("url")), "{m1}");
    let (_, m2) = app.get_json("/api/prices/acme/m2").await;
    assert_eq!((m2["input_per_1m"].to_string(), m2["source"].as_str()), ("2".into(), Some("file")));

    // A malformed document: rejected whole, the prices stay as they were.
    *served.lock().unwrap() = "{ not json".into();
    let states = wait(&|s| {
        s.as_array().unwrap().iter().any(|x| {
            // The stub's URL ends with `/`; the dead source's does not.
            x["source"].as_str().unwrap().ends_with('/')
                && x["last_error"].as_str().is_some_and(|e| e.contains("rejected whole"))
        })
    })
    .await;
    assert!(by(&states, &url)["last_success"].is_string(), "the earlier success is kept");
    let (status, m1) = app.get_json("/api/prices/acme/m1").await;
    assert_eq!((status, m1["input_per_1m"].to_string()), (200, "1".into()), "never zeroed");

    // A new price at the source becomes a new version on the next refresh.
    *served.lock().unwrap() = document("3e-06");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, history) = app.get_json("/api/prices/history/acme/m1").await;
        if history["versions"].as_array().unwrap().len() > 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new price was not imported: {history}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Several refreshes later there are still two versions: an unchanged price is not re-versioned.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    let (_, history) = app.get_json("/api/prices/history/acme/m1").await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "unchanged refreshes add no versions: {history}");
    assert_eq!(versions[1]["input_per_1m"].to_string(), "3");
    let _ = std::fs::remove_file(file);
}

/// LiteLLM's price file as shipped (the `litellm` wheel on PyPI carries it), fetched once into
/// `target/test-data` with pip; the version is pinned so the figures stay put.
fn litellm_file() -> serde_json::Value {
    const VERSION: &str = "1.110.2";
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-data");
    let file = dir.join(format!("litellm-{VERSION}-model_prices.json"));
    if !file.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!(
            "import glob, subprocess, sys, zipfile\n\
             subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '--no-deps', 'litellm=={VERSION}', '-d', '{d}'], check=True)\n\
             wheel = glob.glob('{d}/litellm-{VERSION}-*.whl')[0]\n\
             open('{f}', 'wb').write(zipfile.ZipFile(wheel).read('litellm/model_prices_and_context_window_backup.json'))\n",
            d = dir.display(),
            f = file.display()
        );
        let status = std::process::Command::new("python3").arg("-c").arg(script).status().unwrap();
        assert!(
            status.success(),
            "could not fetch litellm {VERSION} from PyPI (python3 -m pip download litellm=={VERSION})"
        );
    }
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// The whole file imports (entries that collapse to one provider/model included), the dry run says
/// exactly what the import then does, and importing it again appends nothing.
#[tokio::test]
async fn the_whole_litellm_file_imports_and_again_appends_nothing() {
    let app = spawn_app().await;
    let doc = litellm_file();
    let update = |dry_run: bool| {
        let body = serde_json::json!({"litellm": doc.clone(), "dry_run": dry_run});
        let http = app.http.clone();
        let url = app.url("/api/prices/update");
        async move {
            let r = http.post(url).json(&body).send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{}", body.to_string().chars().take(2000).collect::<String>());
            body
        }
    };
    let dry = update(true).await;
    assert_eq!(app.events().await, 0, "a dry run writes nothing");
    let real = update(false).await;
    for field in ["added", "changed", "unchanged", "skipped", "merged"] {
        assert_eq!(dry[field], real[field], "the dry run and the import agree on {field}");
    }
    let added = real["added"].as_array().unwrap().len();
    assert!(added > 3000, "{added} prices added");
    let events = app.events().await;
    let again = update(false).await;
    assert_eq!(
        (again["added"].as_array().unwrap().len(), again["changed"].as_array().unwrap().len()),
        (0, 0),
        "{}",
        again.to_string().chars().take(2000).collect::<String>()
    );
    assert_eq!(app.events().await, events, "importing the same file again appends nothing");

    // Every chat model's price, for a call with every part, is what the file's fields say.
    let checked = calculated_costs_match_the_file(&app, &doc).await;
    eprintln!(
        "calculated: {} mixes ({} with a reasoning rate of their own), {} tiered calls, as the file says",
        checked.0, checked.2, checked.1
    );
    assert!(checked.0 > 2500 && checked.1 > 200 && checked.2 > 10, "checked {checked:?} mixes, tiered, reasoning");
}

/// The bundled table gives every model the list price LiteLLM's pinned file gives it (input, output
/// and cache reads per token; long-context tiers are the file's to import), and it prices the models
/// of that file's time: a service started on 2026-12-04 with the table of 2025-08-15 left
/// claude-opus-4-7, claude-sonnet-4-6, gpt-5.4 and gemini-3.1-pro-preview unpriced, so their calls
/// cost $0 and no cost limit saw them. Models the file no longer lists (retired by their provider)
/// keep their last list price, for the records that still name them.
#[test]
fn the_bundled_table_agrees_with_litellms_file_and_prices_todays_models() {
    use rust_decimal::Decimal;
    let doc = litellm_file();
    let (_, _, specs) = budget_api::price_book::bundled();
    let retired = [
        "anthropic/claude-opus-4-1",
        "anthropic/claude-opus-4",
        "anthropic/claude-sonnet-4",
        "anthropic/claude-3-7-sonnet",
        "anthropic/claude-3-5-sonnet",
        "anthropic/claude-3-5-haiku",
        "anthropic/claude-3-opus",
        "anthropic/claude-3-haiku",
        "google/gemini-2.0-flash",
        "google/gemini-1.5-pro",
        "google/gemini-1.5-flash",
        "together/meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo",
        "ollama/llama3.1:70b",
        "ollama/qwen2.5-coder",
    ];
    // The file's entry for a model of the table: under `provider/model` or the bare name, with the
    // file's names for two providers.
    let entry_of = |spec: &budget_events::domain::price::PriceSpec| {
        let file_provider = match spec.provider.as_str() {
            "google" => "gemini",
            "together" => "together_ai",
            other => other,
        };
        [format!("{file_provider}/{}", spec.model), spec.model.clone()]
            .into_iter()
            .filter_map(|key| doc.get(&key))
            .find(|e| e["litellm_provider"] == file_provider)
    };
    let mut unlisted = Vec::new();
    let mut differ = Vec::new();
    for spec in &specs {
        let Some(entry) = entry_of(spec) else {
            unlisted.push(format!("{}/{}", spec.provider, spec.model));
            continue;
        };
        let input = file_decimal(&entry["input_cost_per_token"]).unwrap();
        let file = (
            input,
            file_decimal(&entry["output_cost_per_token"]).unwrap(),
            file_decimal(&entry["cache_read_input_token_cost"]).unwrap_or(input),
        );
        let ours =
            (spec.input_per_token, spec.output_per_token, spec.cached_input_per_token.unwrap_or(spec.input_per_token));
        let per_1m = |t: (Decimal, Decimal, Decimal)| {
            let m = Decimal::from(1_000_000);
            format!("{} / {} / {}", (t.0 * m).normalize(), (t.1 * m).normalize(), (t.2 * m).normalize())
        };
        if per_1m(file) != per_1m(ours) {
            differ.push(format!(
                "{}/{}: {} in the table, {} in the file",
                spec.provider,
                spec.model,
                per_1m(ours),
                per_1m(file)
            ));
        }
    }
    assert!(differ.is_empty(), "input / output / cached per 1M differ:\n{}", differ.join("\n"));
    assert_eq!(unlisted, retired, "the models the file does not list");
    // Retirements: the file's deprecation_date where it gives one. A model it no longer lists was
    // retired by the day the table was checked: on its provider's published day where one was found
    // (`retirements`, a day before `checked`), else `retired_by` that day. None for the rest.
    let table: Value = serde_json::from_str(budget_api::price_book::BUNDLED).unwrap();
    let checked = table["checked"].as_str().unwrap();
    let (mut expected, mut by) = (serde_json::Map::new(), serde_json::Map::new());
    for spec in specs.iter().filter(|s| s.provider != "ollama") {
        let name = format!("{}/{}", spec.provider, spec.model);
        match entry_of(spec) {
            None => match table["retirements"].get(&name) {
                Some(day) => {
                    assert!(day.as_str().unwrap() < checked, "{name} was unlisted by {checked}, not retired on {day}");
                    expected.insert(name, day.clone());
                }
                None => drop(by.insert(name, json!(checked))),
            },
            Some(e) if e["deprecation_date"].is_string() => drop(expected.insert(name, e["deprecation_date"].clone())),
            Some(_) => {}
        }
    }
    assert_eq!(table["retirements"], Value::Object(expected));
    assert_eq!(table["retired_by"], Value::Object(by));
    for (provider, model) in [
        ("anthropic", "claude-opus-4-7"),
        ("anthropic", "claude-sonnet-4-6"),
        ("openai", "gpt-5.4"),
        ("google", "gemini-3.1-pro-preview"),
    ] {
        assert!(
            specs.iter().any(|s| s.provider == provider && s.model == model),
            "{provider}/{model} is not in the table"
        );
    }
}

/// A number of the file as an exact decimal.
fn file_decimal(v: &Value) -> Option<rust_decimal::Decimal> {
    let text = v.as_number()?.to_string();
    if text.contains(['e', 'E']) {
        rust_decimal::Decimal::from_scientific(&text).ok()
    } else {
        rust_decimal::Decimal::from_str_exact(&text).ok()
    }
}

/// For each chat entry (the `provider/model` key where two name one price): the cost of 1,234 input
/// tokens of which 1,000 cached and 200 written to the cache, and 567 output of which 100 reasoning;
/// and, for tiered models,
/// of 300,000 input and 567 output, computed here from the entry's fields and by the server.
async fn calculated_costs_match_the_file(app: &TestApp, doc: &Value) -> (usize, usize, usize) {
    use rust_decimal::Decimal;
    let mut chosen: std::collections::BTreeMap<(String, String), (String, Value)> = Default::default();
    for (key, entry) in doc.as_object().unwrap() {
        let provider = entry["litellm_provider"].as_str().unwrap_or_default().to_string();
        if entry["mode"] != "chat"
            || file_decimal(&entry["input_cost_per_token"]).is_none()
            || file_decimal(&entry["output_cost_per_token"]).is_none()
        {
            continue;
        }
        let model = key.strip_prefix(&format!("{provider}/")).unwrap_or(key).to_string();
        let prefixed = key.starts_with(&format!("{provider}/"));
        let slot = chosen.entry((provider.clone(), model)).or_insert_with(|| (key.clone(), entry.clone()));
        if prefixed && !slot.0.starts_with(&format!("{provider}/")) {
            *slot = (key.clone(), entry.clone());
        }
    }
    let (mut mixes, mut tiered, mut reasoning) = (0, 0, 0);
    for ((provider, model), (key, e)) in &chosen {
        let f = |field: &str| file_decimal(&e[field]);
        let (input, output) = (f("input_cost_per_token").unwrap(), f("output_cost_per_token").unwrap());
        let request = f("input_cost_per_request").map_or(Decimal::ZERO, |d| d.round_dp(18));
        let expected = (Decimal::from(34) * input
            + Decimal::from(1000) * f("cache_read_input_token_cost").unwrap_or(input)
            + Decimal::from(200) * f("cache_creation_input_token_cost").unwrap_or(input)
            + Decimal::from(467) * output
            + Decimal::from(100) * f("output_cost_per_reasoning_token").unwrap_or(output)
            + request)
            .round_dp(18);
        let body = json!({"provider": provider, "model": model, "input_tokens": 1234, "cached_input_tokens": 1000,
                          "cache_creation_input_tokens": 200, "output_tokens": 567, "reasoning_tokens": 100});
        let got: Value = app.post("/api/prices/calculate", &body).await.json().await.unwrap();
        assert_eq!(file_decimal(&got["total_cost"]), Some(expected), "{key}: {got}");
        mixes += 1;
        reasoning += usize::from(f("output_cost_per_reasoning_token").is_some_and(|r| r != output));

        let tier = e
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|k| {
                let n: i64 = k.strip_prefix("input_cost_per_token_above_")?.strip_suffix("k_tokens")?.parse().ok()?;
                (300_000 > n * 1000).then_some(n)
            })
            .max();
        if let Some(n) = tier {
            let rate = |part: &str, base: Decimal| f(&format!("{part}_above_{n}k_tokens")).unwrap_or(base);
            let expected = (Decimal::from(300_000) * rate("input_cost_per_token", input)
                + Decimal::from(567) * rate("output_cost_per_token", output)
                + request)
                .round_dp(18);
            let body = json!({"provider": provider, "model": model, "input_tokens": 300000, "output_tokens": 567});
            let got: Value = app.post("/api/prices/calculate", &body).await.json().await.unwrap();
            assert_eq!(file_decimal(&got["total_cost"]), Some(expected), "{key} above {n}k: {got}");
            tiered += 1;
        }
    }
    (mixes, tiered, reasoning)
}

/// A record is priced with every part of its price: cache reads and writes, the tier its input size
/// falls in, and reasoning.
#[tokio::test]
async fn records_are_priced_with_cache_writes_and_tiers() {
    let app = spawn_app().await;
    let file = json!({"tiered-model": {"litellm_provider": "acme", "mode": "chat",
        "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
        "cache_read_input_token_cost": 1e-07, "cache_creation_input_token_cost": 1.25e-06,
        "input_cost_per_token_above_200k_tokens": 2e-06, "output_cost_per_token_above_200k_tokens": 4e-06},
        "thinking-model": {"litellm_provider": "acme", "mode": "chat", "input_cost_per_token": 1e-06,
        "output_cost_per_token": 2e-06, "output_cost_per_reasoning_token": 4e-06}});
    let r = app.post("/api/prices/update", &json!({"litellm": file})).await;
    assert_eq!(r.status().as_u16(), 200);
    let record = |input: i64, cached: i64, written: i64| {
        json!({"provider": "acme", "model": "tiered-model", "component": "c", "input_tokens": input,
               "cached_input_tokens": cached, "cache_creation_input_tokens": written, "output_tokens": 100})
    };
    let cost = |v: Value| file_decimal(&v["cost"]).unwrap().normalize().to_string();
    // 1,000 input: 600 plain, 300 read, 100 written; 100 output.
    let small: Value = app.post("/api/usage", &record(1000, 300, 100)).await.json().await.unwrap();
    assert_eq!(cost(small), "0.000955", "600×1e-6 + 300×1e-7 + 100×1.25e-6 + 100×2e-6");
    // 300,000 input: above 200k, every token at the tier's rates.
    let big: Value = app.post("/api/usage", &record(300_000, 0, 0)).await.json().await.unwrap();
    assert_eq!(cost(big), "0.6004", "300,000×2e-6 + 100×4e-6");
    let mut thinking = record(1000, 0, 0);
    thinking["model"] = json!("thinking-model");
    thinking["reasoning_tokens"] = json!(60);
    let thought: Value = app.post("/api/usage", &thinking).await.json().await.unwrap();
    assert_eq!(cost(thought), "0.00132", "1,000×1e-6 + 40×2e-6 + 60×4e-6 (reasoning)");
    let mut too_much = thinking.clone();
    too_much["reasoning_tokens"] = json!(101);
    let refused: Value = app.post("/api/usage", &too_much).await.json().await.unwrap();
    assert_eq!(refused["error"]["details"][0]["field"], "reasoning_tokens", "{refused}");
    let bad: Value = app.post("/api/usage", &record(100, 80, 30)).await.json().await.unwrap();
    assert_eq!(bad["error"]["code"], "validation_failed", "reads and writes are parts of the input: {bad}");

    // The export carries every part a cost was computed from, so finance can recompute each one.
    let lines = app.http.get(app.url("/api/export?format=jsonl")).send().await.unwrap().text().await.unwrap();
    let parts: Vec<(i64, i64, i64, i64, i64)> = lines
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let n = |k: &str| v[k].as_i64().unwrap_or_else(|| panic!("{k} in {v}"));
            (
                n("input_tokens"),
                n("cached_input_tokens"),
                n("cache_creation_input_tokens"),
                n("output_tokens"),
                n("reasoning_tokens"),
            )
        })
        .collect();
    assert_eq!(parts, [(1000, 300, 100, 100, 0), (300_000, 0, 0, 100, 0), (1000, 0, 0, 100, 60)]);
    let csv = app.http.get(app.url("/api/export")).send().await.unwrap().text().await.unwrap();
    let mut rows = csv.lines();
    assert!(
        rows.next().unwrap().contains(
            ",input_tokens,cached_input_tokens,cache_creation_input_tokens,output_tokens,reasoning_tokens,cost,"
        ),
        "{csv}"
    );
    assert!(rows.next().unwrap().contains(",1000,300,100,100,0,0.000955,"), "{csv}");
}

/// `BUDGET_PROVIDER_ALIASES`: a deployment that says `google` where the price book says `gemini` gets
/// the book's prices, and its records and limits agree on the one name.
#[tokio::test]
async fn provider_aliases_map_a_deployments_names_to_the_books() {
    let app = spawn_app_with(|s| s.provider_aliases = [("google".to_string(), "gemini".to_string())].into()).await;
    let file = json!({"gemini/gemini-1.5-pro": {"litellm_provider": "gemini", "mode": "chat",
                      "input_cost_per_token": 1.25e-06, "output_cost_per_token": 5e-06}});
    assert_eq!(app.post("/api/prices/update", &json!({"litellm": file})).await.status().as_u16(), 200);
    let (status, price) = app.get_json("/api/prices/google/gemini-1.5-pro").await;
    assert_eq!(status, 200, "{price}");

    let policy: Value = app
        .post("/api/policies", &json!({"period": "daily", "provider": "google", "cost_limit": "1"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(policy["policy"]["provider"], "gemini", "{policy}");
    let r: Value = app
        .post(
            "/api/usage",
            &json!({"provider": "google", "model": "gemini-1.5-pro", "component": "c",
                                     "input_tokens": 1000, "output_tokens": 100}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(file_decimal(&r["cost"]).unwrap().normalize().to_string(), "0.00175", "{r}");
    let (_, status) = app.get_json("/api/status").await;
    assert_eq!(file_decimal(&status["windows"][0]["used_cost"]).unwrap().normalize().to_string(), "0.00175");
}

/// A price far below a cent per million tokens still adds up: 100,000 one-token records at 2.5e-11 USD
/// per token cost 2.5e-6 in all, in the records, the rollups, the limit's account and a replay (a
/// per-record rounding to 10 decimals made every record $0).
#[tokio::test]
async fn tiny_prices_sum_exactly_over_100000_records() {
    let app = spawn_app().await;
    let file = json!({"tiny": {"litellm_provider": "acme", "mode": "chat",
                      "input_cost_per_token": 2.5e-11, "output_cost_per_token": 0}});
    assert_eq!(app.post("/api/prices/update", &json!({"litellm": file})).await.status().as_u16(), 200);
    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "0.00001", "provider": "acme"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let one = json!({"provider": "acme", "model": "tiny", "component": "c", "input_tokens": 1, "output_tokens": 0});
    for _ in 0..10 {
        let r = app.post("/api/usage/batch", &json!({"records": vec![one.clone(); 10_000]})).await;
        assert_eq!(r.status().as_u16(), 200);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["recorded"], 10_000);
        assert_eq!(body["results"][0]["cost"].to_string(), "0.000000000025", "{}", body["results"][0]);
    }
    app.wait_for_projections(app.events().await).await;
    let (_, usage) = app.get_json("/api/usage?days=1&period=daily").await;
    assert_eq!(usage["totals"]["cost"].to_string(), "0.0000025", "{}", usage["totals"]);
    assert_eq!(usage["totals"]["count"], 100_000);
    let (_, status) = app.get_json("/api/status?provider=acme").await;
    let window = &status["windows"][0];
    assert_eq!(window["used_cost"].to_string(), "0.0000025", "{window}");
    assert_eq!(window["percent"].to_string(), "25", "{window}");
    let (_, explained) =
        app.get_json(&format!("/api/policies/{}/explain", window["policy_id"].as_str().unwrap())).await;
    assert_eq!(explained["matches"], true, "{}", explained.to_string().chars().take(2000).collect::<String>());
    let replay = app.post("/api/replay", &json!({})).await.text().await.unwrap();
    let done: Value = serde_json::from_str(replay.lines().last().unwrap()).unwrap();
    assert_eq!(done["differences"], 0, "{replay}");
}

/// A price says when the bundled table has its model retired, so that the list explains why recommend
/// and optimize leave a priced model out.
#[tokio::test]
async fn prices_say_when_their_model_is_retired() {
    let app = spawn_app_with(|s| s.bundled_prices = true).await;
    let (status, body) = app.get_json("/api/prices?provider=google").await;
    assert_eq!(status, 200, "{body}");
    let retires = |model: &str| {
        body["prices"].as_array().unwrap().iter().find(|p| p["model"] == model).unwrap()["retires_on"].clone()
    };
    // The provider's day, not the day the table found the model gone from LiteLLM's file.
    assert_eq!(retires("gemini-1.5-flash"), "2025-09-24");
    assert_eq!(retires("gemini-3.1-pro-preview"), Value::Null);
    // Where no provider's day was found, the model was retired by the day the table was checked.
    let (_, together) =
        app.get_json("/api/prices?provider=together&model=meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo").await;
    let price = &together["prices"][0];
    assert_eq!((&price["retires_on"], &price["retired_by"]), (&Value::Null, &json!("2026-12-04")), "{together}");
    // A price someone sets says the model is in use: the table's date is not its.
    let price = json!({"provider": "google", "model": "gemini-1.5-flash", "input": "0.1", "output": "0.4"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let (_, body) = app.get_json("/api/prices?provider=google&model=gemini-1.5-flash").await;
    assert_eq!(body["prices"][0]["retires_on"], Value::Null, "{body}");
}

/// An upgraded service whose price book predates its bundled table says, when it starts, which models
/// the table would add: otherwise their calls are recorded unpriced ($0, unseen by cost limits) with
/// nothing to say why. A book that has them all hears nothing.
#[tokio::test]
async fn a_start_names_the_models_a_newer_bundled_table_would_add() {
    let app = spawn_app().await;
    let price = json!({"provider": "openai", "model": "gpt-4o", "input": "2.5", "output": "10"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let news = budget_api::startup::bundled_table_news(&app.db.pool).await.unwrap().expect("news of the table");
    let count = budget_api::price_book::bundled().2.len() - 1;
    assert!(
        news.starts_with(&format!(
            "the bundled price table (checked 2026-12-04) prices {count} models this price book has no price for ("
        )),
        "{news}"
    );
    assert!(news.contains(" more); until `budget prices update` adds them"), "{news}");
    assert_eq!(app.events().await, 1, "news is a dry run: nothing written");

    assert!(app.post("/api/prices/update", &json!({})).await.status().is_success());
    assert_eq!(budget_api::startup::bundled_table_news(&app.db.pool).await.unwrap(), None);
}

/// After the refresh the README recommends (`budget prices update --from` LiteLLM's file, over the
/// bundled table), recommend put free Cloudflare LoRA adapters, publicai's models and an embedding
/// model (gigachat/EmbeddingsGigaR) first for a chat, and left every re-imported model (gpt-6-luna,
/// claude-haiku-5-5) out for code: the file's $0 is a free tier or a gap, not a price to plan with; its
/// embedding, image and audio entries write no text; and it has no flag for writing code. Imported
/// text models get their tier and, for chat models, `code`; only those, at a price, of a provider the
/// deployment uses, are offered.
#[tokio::test]
async fn an_import_of_litellms_file_leaves_recommend_priced_text_models() {
    let app = spawn_app_with(|s| s.bundled_prices = true).await;
    let body = serde_json::json!({"litellm": litellm_file()});
    let r = app.http.post(app.url("/api/prices/update")).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, luna) = app.get_json("/api/prices/openai/gpt-6-luna").await;
    assert_eq!(luna["source"], "file", "re-imported: {luna}");
    let ranked = |task: &'static str, limit: usize| {
        let ask = json!({"task_description": task, "input_length": 1000, "output_length": 500, "limit": limit});
        let (http, url) = (app.http.clone(), app.url("/api/assistant/recommend-model"));
        async move {
            let r: Value = http.post(url).json(&ask).send().await.unwrap().json().await.unwrap();
            r["recommendations"]["models"].as_array().unwrap().clone()
        }
    };
    for task in ["chat with users", "Generate Python code"] {
        let models = ranked(task, 10).await;
        assert_eq!(models.len(), 10, "{task}: {models:?}");
        for m in &models {
            let caps = m["capabilities"].as_array().unwrap();
            assert!(m["cost_per_call"].as_f64().unwrap() > 0.0, "{task}: {m}");
            assert!(caps.iter().any(|c| c == "remote_heavyweight"), "{task}: {m}");
        }
    }
    // Of the file, the providers the deployment uses: those of its bundled or hand-set prices, and
    // those its calls name. Before, resellers' 1B-3B models (nscale, lambda_ai, novita) led for code.
    let providers = |models: &[Value]| -> std::collections::BTreeSet<String> {
        models.iter().map(|m| m["provider"].as_str().unwrap().to_string()).collect()
    };
    let (_, _, bundled) = budget_api::price_book::bundled();
    let known: std::collections::BTreeSet<String> = bundled.iter().map(|s| s.provider.clone()).collect();
    let first = ranked("Generate Python code", 10).await;
    assert!(providers(&first).is_subset(&known), "{:?}", providers(&first));
    let call = json!({"provider": "nscale", "model": "Qwen/Qwen2.5-Coder-7B-Instruct", "component": "codex",
                      "input_tokens": 100, "output_tokens": 10});
    assert!(app.post("/api/usage", &call).await.status().is_success());
    app.wait_for_projections(app.events().await).await;
    let now = ranked("Generate Python code", 10).await;
    assert!(providers(&now).contains("nscale"), "{:?}", providers(&now));
    // The file's retirement days are the imported prices' own: gpt-5-nano's dated snapshot, which its
    // provider retires on 2026-12-11, was ranked eighth for code.
    let (_, nano) = app.get_json("/api/prices/openai/gpt-5-nano-2025-08-07").await;
    assert_eq!((nano["source"].clone(), nano["retires_on"].clone()), (json!("file"), json!("2026-12-11")), "{nano}");
    // A check says the file's day, also of a model the bundled table does not know (azure's gpt-5-nano).
    let check = json!({"provider": "azure", "model": "gpt-5-nano", "component": "codex", "input_tokens": 100});
    let r: Value = app.post("/api/usage/check", &check).await.json().await.unwrap();
    let said = r["messages"].as_array().unwrap().iter().any(|m| {
        let m = m.as_str().unwrap();
        m.starts_with("azure/gpt-5-nano retire") && m.contains(" on 2027-02-09")
    });
    assert!(said, "{r}");
    let everything = ranked("Generate Python code", 1000).await;
    let retiring = everything.iter().find(|m| m["model"].as_str().unwrap().starts_with("gpt-5-nano"));
    assert!(retiring.is_none(), "{retiring:?}");
    // Every chat model writes code: gpt-6-luna, re-imported, is ranked for it again.
    let coding = ranked("Generate Python code", 1000).await;
    let luna = coding.iter().find(|m| m["provider"] == "openai" && m["model"] == "gpt-6-luna");
    assert!(luna.is_some_and(|m| m["capabilities"].as_array().unwrap().contains(&json!("code"))), "{luna:?}");
    // An embedding model keeps its price for the records that name it.
    let (status, embedding) = app.get_json("/api/prices/openai/text-embedding-3-small").await;
    assert_eq!((status, embedding["input_per_1m"].to_string()), (200, "0.02".to_string()), "{embedding}");
}

/// A file imported before its chat models were tagged (or whose entry gained a flag or a larger
/// context window since) was "unchanged" when imported again, its prices being the same, so its
/// models stayed as first described. A re-import now refreshes what the file says of its own prices;
/// a price set by hand or bundled at the same charge is left as it is.
#[tokio::test]
async fn a_reimport_refreshes_what_the_file_says_of_its_models() {
    let app = spawn_app().await;
    let doc = |mode: &str, context: i64| {
        json!({"acme/m": {"litellm_provider": "acme", "mode": mode, "input_cost_per_token": 1e-6,
                          "output_cost_per_token": 2e-6, "max_input_tokens": context},
               "acme/n": {"litellm_provider": "acme", "mode": "chat", "input_cost_per_token": 3e-6,
                          "output_cost_per_token": 4e-6}})
    };
    let update = |doc: Value| {
        let (http, url) = (app.http.clone(), app.url("/api/prices/update"));
        async move {
            let r = http.post(url).json(&json!({"litellm": doc})).send().await.unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let by_hand = json!({"provider": "acme", "model": "n", "input": "3", "output": "4", "capabilities": ["code"]});
    assert_eq!(app.post("/api/prices", &by_hand).await.status().as_u16(), 200);
    let first = update(doc("completion", 1000)).await;
    assert_eq!((first["added"].clone(), first["unchanged"].clone()), (json!(["acme/m"]), json!(1)), "{first}");
    let again = update(doc("chat", 8000)).await;
    assert_eq!((again["changed"].clone(), again["unchanged"].clone()), (json!(["acme/m"]), json!(1)), "{again}");
    let (_, m) = app.get_json("/api/prices/acme/m").await;
    assert_eq!(m["context_window"], 8000, "{m}");
    assert!(m["capabilities"].as_array().unwrap().contains(&json!("code")), "{m}");
    let (_, n) = app.get_json("/api/prices/acme/n").await;
    assert_eq!((n["source"].clone(), n["capabilities"].clone()), (json!("manual"), json!(["code"])), "{n}");
    let third = update(doc("chat", 8000)).await;
    assert_eq!((third["changed"].clone(), third["unchanged"].clone()), (json!([]), json!(2)), "{third}");
}
