//! The assistant on a workload with known answers, and its narrative from an OpenAI-compatible server
//! started by the test (and without one).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_with, TestApp};
use crate::stub::Stub;

/// A small price book and a month of two components' usage:
/// - codex, coding: 10 calls of acme/big, 10,000 in + 2,000 out each at $10/$30 per 1M = $0.16 a call;
/// - vision-bot, image: 5 calls of acme/pic, 1,000 in each at $0.1 per 1M = $0.0001 a call.
async fn workload(app: &TestApp) {
    for (model, input, output, caps) in [
        ("big", "10", "30", json!(["code", "reasoning", "remote_heavyweight"])),
        ("small", "1", "3", json!(["code", "remote_heavyweight"])),
        ("pic", "0.1", "0.1", json!(["vision", "remote_heavyweight"])),
    ] {
        let price = json!({"provider": "acme", "model": model, "input": input, "output": output, "capabilities": caps,
                           "effective_from": "2026-01-01T00:00:00Z"});
        assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200, "{price}");
    }
    let policy = json!({"period": "daily", "type": "warn", "cost_limit": "2", "component": "codex"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let mut records = Vec::new();
    for _ in 0..10 {
        records.push(json!({"provider": "acme", "model": "big", "component": "codex", "task_type": "coding",
                            "input_tokens": 10000, "output_tokens": 2000}));
    }
    for _ in 0..5 {
        records.push(json!({"provider": "acme", "model": "pic", "component": "vision-bot", "task_type": "image",
                            "input_tokens": 1000, "output_tokens": 0}));
    }
    assert!(app.post("/api/usage/batch", &json!({ "records": records })).await.status().is_success());
    app.wait_for_projections(app.events().await).await;
}

/// A record of no tokens just before the last `days` days: the log then holds the whole range, and
/// savings are rated over all of it (a log that begins inside the range is rated over the days it
/// holds: optimize_rates_savings_over_the_days_the_log_holds).
async fn log_holds(app: &TestApp, days: i64) {
    let before = (Utc::now() - chrono::Duration::days(days) - chrono::Duration::hours(2)).to_rfc3339();
    let record = json!({"provider": "acme", "model": "none", "component": "setup", "input_tokens": 0,
                        "output_tokens": 0, "cost": "0", "timestamp": before});
    assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
}

/// Posts `records` (made now) into a log that holds the last `days` days whole, and asks optimize
/// about them by the day.
async fn optimize_daily(app: &TestApp, records: Vec<Value>, days: i64) -> Value {
    log_holds(app, days).await;
    assert!(app.post("/api/usage/batch", &json!({ "records": records })).await.status().is_success());
    app.wait_for_projections(app.events().await).await;
    app.post("/api/assistant/optimize", &json!({"period": "daily", "days": days})).await.json().await.unwrap()
}

#[tokio::test]
async fn analyze_and_optimize_give_the_known_answers() {
    let app = spawn_app().await;
    log_holds(&app, 30).await;
    workload(&app).await;
    let asked_at = Utc::now();
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 30})).await.json().await.unwrap();
    assert_eq!(r["success"], true);
    assert!(r.get("narrative").is_none() && r.get("raw_data").is_none(), "no LLM configured, no raw data asked: {r}");
    let a = &r["analysis"];
    assert_eq!(
        (a["totals"]["cost"].to_string(), a["totals"]["calls"].as_i64(), a["totals"]["tokens"].as_i64()),
        ("1.6005".into(), Some(15), Some(125_000))
    );
    let components = a["breakdown"]["component"].as_array().unwrap();
    assert_eq!((components[0]["name"].as_str(), components[0]["cost"].to_string()), (Some("codex"), "1.6".into()));
    assert_eq!(a["top_drivers"][0]["model"], "big");
    // The codex window: $1.60 of $2 used since the window began; at that rate the limit is reached at
    // start + elapsed × 2 / 1.6, if that is before the window ends.
    let w = &a["windows"][0];
    assert_eq!((w["used_cost"].to_string(), w["cost_limit"].to_string()), ("1.6".into(), "2".into()));
    let start: DateTime<Utc> = w["window_start"].as_str().unwrap().parse().unwrap();
    let end: DateTime<Utc> = w["window_end"].as_str().unwrap().parse().unwrap();
    let expected = start + (asked_at - start) * 5 / 4;
    match w["exhausted_at"].as_str() {
        Some(at) => {
            let at: DateTime<Utc> = at.parse().unwrap();
            assert!((at - expected).num_seconds().abs() <= 10, "exhausted at {at}, expected about {expected}");
            assert!(a["findings"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().contains("runs out at")));
        }
        None => assert!(expected > end, "no exhaustion within the window only when it is after {end}: {w}"),
    }
    // "The last 30 days" is a span to the minute (get_usage's `--days` counts calendar days), so it
    // names where it starts: its totals then add up against the records from that time on.
    let since: DateTime<Utc> = a["start"].as_str().unwrap().parse().unwrap();
    let first = format!("In the last 30 days (since {} UTC), 15 calls spent $1.6005", since.format("%Y-%m-%d %H:%M"));
    assert!(a["findings"][0].as_str().unwrap().starts_with(&first), "{first}\n{a:#}");

    // Optimize: codex's coding calls on acme/big would cost $0.16 instead of $1.60 on acme/small (it
    // lacks big's reasoning, so medium confidence): $1.44 over 30 days, $0.048 a day.
    let r: Value = app
        .post("/api/assistant/optimize", &json!({"period": "daily", "days": 30, "include_raw_data": true}))
        .await
        .json()
        .await
        .unwrap();
    let recs = r["recommendations"]["recommendations"].as_array().unwrap();
    let first = &recs[0];
    assert_eq!(
        (first["kind"].as_str(), first["confidence"].as_str(), first["rank"].as_i64()),
        (Some("model_substitution"), Some("medium"), Some(1))
    );
    assert_eq!(first["estimated_savings_per_period"].to_string(), "0.048");
    assert_eq!(first["evidence"]["alternative"]["model"], "small");
    assert_eq!(first["evidence"]["current_cost"].to_string(), "1.6");
    assert!(
        first["recommendation"]
            .as_str()
            .unwrap()
            .contains("the same 100,000 input and 20,000 output tokens would cost $0.16 instead of $1.6"),
        "{first}"
    );
    assert!(
        recs.iter().all(|x| x["evidence"]["component"] != "vision-bot" || x["kind"] != "model_substitution"),
        "nothing cheaper can see images"
    );
    assert!(r["raw_data"].is_object());
    assert!(recs.iter().all(|x| x["kind"] != "allocation_sizing"), "no allocations yet");

    // Five chat tasks reserve the chat default (4,000 tokens) and use 600 to 1,000: p95 1,000.
    for used in [600, 700, 800, 900, 1000] {
        let a: Value = app.post("/api/allocations", &json!({"context_id": format!("chat-{used}"), "component": "rhetor", "task_type": "chat", "estimated_cost": "0.01"})).await.json().await.unwrap();
        assert_eq!(a["tokens_allocated"], 4000);
        let usage = json!({"provider": "acme", "model": "small", "component": "rhetor", "task_type": "chat", "input_tokens": used, "output_tokens": 0, "allocation_id": a["allocation_id"]});
        assert_eq!(app.post("/api/usage", &usage).await.status().as_u16(), 201);
        let id = a["allocation_id"].as_str().unwrap();
        assert_eq!(app.post(&format!("/api/allocations/{id}/release"), &json!({})).await.status().as_u16(), 200);
    }
    let r: Value =
        app.post("/api/assistant/optimize", &json!({"period": "daily", "days": 30})).await.json().await.unwrap();
    let sizing = r["recommendations"]["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "allocation_sizing")
        .cloned()
        .expect("an allocation_sizing recommendation");
    let e = &sizing["evidence"];
    assert_eq!(
        (
            e["configured_default"].as_i64(),
            e["typical_allocated"].as_i64(),
            e["p95_used"].as_i64(),
            e["suggested"].as_i64()
        ),
        (Some(4000), Some(4000), Some(1000), Some(1100))
    );
    let sentence = sizing["recommendation"].as_str().unwrap();
    assert!(sentence.contains(r#"BUDGET_ALLOCATION_DEFAULTS='{"chat": 1100}'"#), "{sizing}");
    // Counts in the prose read as counts; the settings to copy stay as they are typed.
    assert!(
        sentence.starts_with("rhetor's chat tasks reserve 4,000 tokens each (the chat default is 4,000) but 95% of them use at most 1,000; reserve about 1,100 (")
            && sentence.contains("--tokens 1100)") && sentence.contains("the unused 2,900 tokens"),
        "{sentence}"
    );

    for bad in [json!({"days": 0}), json!({"days": 366}), json!({"period": "yearly"}), json!({"days": "ten"})] {
        assert_error(app.post("/api/assistant/analyze", &bad).await, 400, "validation_failed").await;
    }
}

/// Token limits are analysed as cost limits are: a window's token burn rate and projection, when it
/// runs out and by which limit, and a finding for a limit already used up (it said nothing of a token
/// limit at 120 %, and gave its window `exhausted_at: null`).
#[tokio::test]
async fn analyze_follows_token_limits_too() {
    let app = spawn_app().await;
    for policy in [
        // In a budget of their own: the workload sets a daily cost limit on codex in `default`.
        json!({"budget": "tokens", "period": "daily", "type": "hard_limit", "token_limit": 100000, "component": "codex"}),
        json!({"budget": "tokens", "period": "daily", "type": "warn", "token_limit": 1000000000, "component": "vision-bot"}),
        // Nothing allowed: used up from the start, with no percentage of zero to give.
        json!({"budget": "tokens", "period": "daily", "type": "hard_limit", "token_limit": 0, "component": "nobody"}),
    ] {
        assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201, "{policy}");
    }
    workload(&app).await;
    let asked_at = Utc::now();
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 30})).await.json().await.unwrap();
    let a = &r["analysis"];
    let window = |scope: &str| {
        a["windows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["scope"] == scope && w["token_limit"].is_number())
            .cloned()
            .unwrap_or_else(|| panic!("a token window for {scope}: {a:#}"))
    };

    // codex: 10 calls of 12,000 tokens against 100,000: used up, by its token limit.
    let codex = window("component=codex");
    assert_eq!(
        (codex["used_tokens"].as_i64(), codex["token_limit"].as_i64(), codex["exhausted_by"].as_str()),
        (Some(120_000), Some(100_000), Some("tokens")),
        "{codex}"
    );
    let at: DateTime<Utc> = codex["exhausted_at"].as_str().expect("a used-up window is exhausted").parse().unwrap();
    assert!((at - asked_at).num_seconds().abs() <= 10, "{codex}");
    let end: DateTime<Utc> = codex["window_end"].as_str().unwrap().parse().unwrap();
    let used_up = format!(
        "The daily limit of 100,000 tokens on component=codex is used up: 120,000 tokens used and 0 reserved (120%); it resets at {}.",
        end.format("%Y-%m-%d %H:%M UTC")
    );
    assert!(a["findings"].as_array().unwrap().iter().any(|f| f == used_up.as_str()), "{used_up}\n{a:#}");
    let nothing = format!(
        "The daily limit of 0 tokens on component=nobody is used up: 0 tokens used and 0 reserved; it resets at {}.",
        end.format("%Y-%m-%d %H:%M UTC")
    );
    assert!(a["findings"].as_array().unwrap().iter().any(|f| f == nothing.as_str()), "{nothing}\n{a:#}");

    // vision-bot: 5,000 tokens so far, at the window's rate (since the log began, this hour), nowhere
    // near a billion.
    let vision = window("component=vision-bot");
    let start: DateTime<Utc> = vision["rate_since"].as_str().unwrap().parse().unwrap();
    let elapsed_hours = ((asked_at - start).num_seconds() as f64 / 3600.0).max(0.01);
    let burn = vision["token_burn_rate_per_hour"].as_f64().expect("a token burn rate");
    assert!((burn * elapsed_hours - 5000.0).abs() <= 5000.0 * 0.01 + 1.0, "{burn} tokens/h over {elapsed_hours} h");
    assert!(vision["projected_end_tokens"].as_f64().unwrap() >= 5000.0, "{vision}");
    assert_eq!((vision["exhausted_at"].as_str(), vision["exhausted_by"].as_str()), (None, None), "{vision}");
}

/// A limit reached in every one of its past windows is worth raising, whether it limits dollars or
/// tokens (token limits were skipped).
#[tokio::test]
async fn optimize_suggests_raising_a_limit_reached_in_every_window() {
    let app = spawn_app().await;
    for policy in [
        json!({"period": "hourly", "type": "warn", "token_limit": 5000, "component": "lab"}),
        json!({"period": "hourly", "type": "warn", "cost_limit": "0.01", "component": "lab", "task_type": "t"}),
    ] {
        assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201, "{policy}");
    }
    // Two past hours, each past both limits: 10,100 tokens at $0.026.
    for hours_ago in [2, 3] {
        let at = (Utc::now() - chrono::Duration::hours(hours_ago)).format("%Y-%m-%dT%H:10:00Z").to_string();
        let record = json!({"provider": "openai", "model": "gpt-4o", "component": "lab", "task_type": "t",
                            "input_tokens": 10000, "output_tokens": 100, "cost": "0.026", "timestamp": at});
        assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    }
    app.wait_for_projections(app.events().await).await;
    let r: Value =
        app.post("/api/assistant/optimize", &json!({"period": "daily", "days": 30})).await.json().await.unwrap();
    let mut adjustments: Vec<&str> = r["recommendations"]["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == "policy_adjustment")
        .map(|x| x["recommendation"].as_str().unwrap())
        .collect();
    adjustments.sort();
    assert_eq!(
        adjustments,
        [
            "The hourly limit of $0.01 on component=lab, task_type=t was reached in every one of its last 2 windows: raise it, or route part of that usage to cheaper models.",
            "The hourly limit of 5,000 tokens on component=lab was reached in every one of its last 2 windows: raise it, or route part of that usage to cheaper models.",
        ],
        "{r:#}"
    );
}

/// A saving smaller than a hundredth of a cent is still a saving: the sentences give it with its
/// significant digits (not "$0") and name the period as a unit of time ("per day", not "per daily").
/// Prompt caching is suggested for a model nothing is cheaper than (here the only one priced). Counts
/// agree with their nouns ("1 day").
#[tokio::test]
async fn assistant_sentences_keep_small_savings_and_name_units_right() {
    let app = spawn_app().await;
    let price = json!({"provider": "acme", "model": "cachy", "input": "1", "output": "1", "cached_input": "0.5",
                       "effective_from": "2026-01-01T00:00:00Z"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let r: Value =
        app.post("/api/assistant/optimize", &json!({"period": "daily", "days": 30})).await.json().await.unwrap();
    assert_eq!(r["recommendations"]["summary"], "No recommendations from the usage of the last 30 days.");
    // Nothing recorded: said in words, not as "0 calls spent $0 on 0 tokens (0 input, 0 output)".
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 30})).await.json().await.unwrap();
    let since: DateTime<Utc> = r["analysis"]["start"].as_str().unwrap().parse().unwrap();
    let nothing = format!("No usage was recorded in the last 30 days (since {} UTC).", since.format("%Y-%m-%d %H:%M"));
    assert_eq!(r["analysis"]["findings"], json!([nothing]));
    // One day analysed: "the previous 1 day", not "the previous 1 days".
    let record =
        json!({"provider": "acme", "model": "cachy", "component": "codex", "input_tokens": 1, "output_tokens": 1});
    assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    app.wait_for_projections(app.events().await).await;
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 1})).await.json().await.unwrap();
    let findings = r["analysis"]["findings"].to_string();
    assert!(findings.contains("no spend in the previous 1 day to compare with"), "{findings}");
    log_holds(&app, 30).await;
    let record = json!({"provider": "acme", "model": "cachy", "component": "codex", "task_type": "coding",
                        "input_tokens": 100, "output_tokens": 10});
    assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    app.wait_for_projections(app.events().await).await;
    // Half of the 101 input tokens (both records) at $0.5/1M less: $0.00002525 over 30 days, $0.00000084… a day.
    let r: Value =
        app.post("/api/assistant/optimize", &json!({"period": "daily", "days": 30})).await.json().await.unwrap();
    let savings = &r["recommendations"];
    let caching = savings["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "prompt_caching")
        .cloned()
        .unwrap_or_else(|| panic!("a prompt_caching recommendation: {r:#}"));
    let sentence = caching["recommendation"].as_str().unwrap();
    assert!(sentence.contains("would save about $0.000000842 per day if half"), "{sentence}");
    let summary = savings["summary"].as_str().unwrap();
    assert!(summary.contains(" per day (") && !summary.contains("about $0 "), "{summary}");
}

#[tokio::test]
async fn recommend_model_ranks_every_priced_model_for_the_task() {
    let app = spawn_app().await;
    workload(&app).await;
    let ask = json!({"task_description": "Generate Python code for data processing", "input_length": 2000,
                     "output_length": 1000, "usage_frequency": 25, "budget_limit": 10.0,
                     "priority_areas": "Code accuracy, error handling"});
    let r: Value = app.post("/api/assistant/recommend-model", &ask).await.json().await.unwrap();
    let rec = &r["recommendations"];
    assert_eq!(rec["needed_capabilities"], json!(["code", "reasoning"]));
    let order: Vec<&str> = rec["models"].as_array().unwrap().iter().map(|m| m["model"].as_str().unwrap()).collect();
    assert_eq!(order, ["big", "small", "pic"]);
    // big: 2,000 × $10/1M + 1,000 × $30/1M = $0.05 a call, $1.25 a day at 25 calls.
    let best = &rec["best"];
    assert_eq!(
        (best["cost_per_call"].to_string(), best["cost_per_day"].to_string(), best["fits_budget"].as_bool()),
        ("0.05".into(), "1.25".into(), Some(true))
    );
    assert!(best["rationale"].as_str().unwrap().contains("has code, reasoning"), "{best}");
    assert!(rec["findings"][0].as_str().unwrap().contains("(2,000 in, 1,000 out, 25 calls a day)"), "{rec}");
    let mut once = ask.clone();
    once.as_object_mut().unwrap().remove("usage_frequency");
    let r: Value = app.post("/api/assistant/recommend-model", &once).await.json().await.unwrap();
    let finding = r["recommendations"]["findings"][0].as_str().unwrap().to_string();
    assert!(finding.contains("(2,000 in, 1,000 out, 1 call a day)"), "{finding}");
    // Under a budget big does not fit, small comes first.
    let mut tight = ask.clone();
    tight["budget_limit"] = json!(1.0);
    let r: Value = app.post("/api/assistant/recommend-model", &tight).await.json().await.unwrap();
    assert_eq!(r["recommendations"]["best"]["model"], "small", "{r}");
    let big = r["recommendations"]["models"].as_array().unwrap().iter().find(|m| m["model"] == "big").unwrap().clone();
    assert_eq!((big["fits_budget"].as_bool(), big["cost_per_day"].to_string()), (Some(false), "1.25".into()));
    assert!(big["rationale"].as_str().unwrap().contains("over the budget"));
    for (field, value) in [
        ("input_length", json!(0)),
        ("output_length", json!(-1)),
        ("budget_limit", json!(0)),
        ("usage_frequency", json!(0)),
    ] {
        let mut bad = ask.clone();
        bad[field] = value;
        let message =
            assert_error(app.post("/api/assistant/recommend-model", &bad).await, 400, "validation_failed").await;
        assert!(message.contains(field), "{message}");
    }
}

#[tokio::test]
async fn the_narrative_comes_from_an_openai_compatible_server_and_its_failure_never_fails_the_request() {
    let llm = Stub::start(|_, _| {
        (200, json!({"id": "c1", "object": "chat.completion", "model": "tiny",
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": "Codex drives the spend."}, "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 321, "completion_tokens": 12, "total_tokens": 333}}).to_string())
    })
    .await;
    let settings = |url: String, timeout: Duration| budget_api::assistant::narrative::LlmSettings {
        url,
        model: "tiny".into(),
        api_key: Some("k".into()),
        timeout,
    };
    let url = format!("{}v1", llm.url);
    let app = spawn_app_with(|s| s.assistant_llm = Some(settings(url, Duration::from_secs(5)))).await;
    workload(&app).await;
    let r: Value = app.post("/api/assistant/analyze", &json!({"days": 7})).await.json().await.unwrap();
    assert_eq!(r["narrative"], "Codex drives the spend.", "{r}");
    let sent: Value = serde_json::from_str(&llm.bodies()[0]).unwrap();
    assert_eq!(sent["model"], "tiny");
    assert!(sent["messages"][1]["content"].as_str().unwrap().contains("1.6005"), "the findings are sent: {sent}");
    // The assistant's own call is usage like any other.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, records) = app.get_json("/api/usage/records?component=budget-assistant").await;
        if let Some(rec) = records["records"].as_array().and_then(|a| a.first()) {
            assert_eq!((rec["input_tokens"].as_i64(), rec["output_tokens"].as_i64()), (Some(321), Some(12)), "{rec}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the assistant's usage was not recorded: {records}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Down: the findings still come back.
    let down =
        spawn_app_with(|s| s.assistant_llm = Some(settings("http://127.0.0.1:9/v1".into(), Duration::from_secs(2))))
            .await;
    workload(&down).await;
    let r: Value = down.post("/api/assistant/optimize", &json!({"days": 7})).await.json().await.unwrap();
    assert_eq!(r["success"], true);
    assert!(r["recommendations"]["recommendations"].is_array());
    assert!(r["narrative_error"].as_str().unwrap().contains("did not answer"), "{r}");
    // Slow: a server that accepts and never answers, cut off by the timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}/v1", silent.local_addr().unwrap());
    let slow = spawn_app_with(|s| s.assistant_llm = Some(settings(silent_url, Duration::from_millis(500)))).await;
    let started = std::time::Instant::now();
    let r: Value = slow.post("/api/assistant/analyze", &json!({"days": 1})).await.json().await.unwrap();
    assert!(r["analysis"]["findings"].is_array() && r["narrative_error"].is_string(), "{r}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);
}

/// A substitution is judged per call, not as if a month of calls were one: twenty calls of 10,000
/// input tokens each fit a 100,000-token context window although their 200,000 together do not, and
/// a per-request price is paid by each call.
#[tokio::test]
async fn optimize_judges_a_substitution_by_the_calls_it_replaces() {
    let app = spawn_app().await;
    for (model, input, per_request) in [("big", "10", "0"), ("small", "1", "0.01")] {
        let price = json!({"provider": "acme", "model": model, "input": input, "output": input,
                           "per_request": per_request, "context_window": 100000, "capabilities": ["code"],
                           "effective_from": "2026-01-01T00:00:00Z"});
        assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200, "{price}");
    }
    let record = json!({"provider": "acme", "model": "big", "component": "codex", "task_type": "coding",
                        "input_tokens": 10000, "output_tokens": 0});
    let records: Vec<Value> = (0..20).map(|_| record.clone()).collect();
    let r = optimize_daily(&app, records, 10).await;
    let recs = r["recommendations"]["recommendations"].as_array().unwrap();
    let substitution = recs
        .iter()
        .find(|x| x["kind"] == "model_substitution")
        .unwrap_or_else(|| panic!("each call fits small's window: {r:#}"));
    // big: 200,000 × $10/1M = $2; small: 200,000 × $1/1M + 20 × $0.01 = $0.40; $1.60 saved over 10 days.
    let sentence = substitution["recommendation"].as_str().unwrap();
    assert!(sentence.contains("would cost $0.4 instead of $2 over the 10 days"), "{sentence}");
    assert_eq!(substitution["estimated_savings_per_period"].to_string(), "0.16");
}

/// Allocation efficiency judges reservations that are over (released, expired, exhausted): a task
/// still running has not used its tokens yet, which says nothing about its size.
#[tokio::test]
async fn allocation_efficiency_waits_for_the_task_to_end() {
    let app = spawn_app().await;
    let a: Value = app
        .post("/api/allocations", &json!({"context_id": "t-1", "component": "rhetor", "tokens": 4000}))
        .await
        .json()
        .await
        .unwrap();
    let findings = |r: &Value| r["analysis"]["findings"].to_string();
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 7})).await.json().await.unwrap();
    assert!(!findings(&r).contains("rhetor used"), "an active allocation is not judged: {}", findings(&r));
    let id = a["allocation_id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/api/allocations/{id}/release"), &json!({})).await.status().as_u16(), 200);
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 7})).await.json().await.unwrap();
    assert!(
        findings(&r).contains("rhetor used 0% of the 4,000 tokens it reserved in 1 allocation"),
        "{}",
        findings(&r)
    );
}

/// The trend compares the range with the one before it; when the log's usage starts inside that one,
/// it compares daily averages over what the log holds of each, and says so (it said "up 100%" for a
/// week against two recorded days), and under a day of the previous range is too little to compare.
#[tokio::test]
async fn a_trend_against_a_partly_recorded_period_says_so() {
    let app = spawn_app().await;
    let record = |days_ago: i64| {
        let at = chrono::Utc::now() - chrono::Duration::days(days_ago);
        json!({"provider": "acme", "model": "m", "component": "codex", "input_tokens": 1, "output_tokens": 1,
               "cost": "1", "timestamp": at.to_rfc3339()})
    };
    for days_ago in [9, 1, 1] {
        assert_eq!(app.post("/api/usage", &record(days_ago)).await.status().as_u16(), 201);
    }
    app.wait_for_projections(app.events().await).await;
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 7})).await.json().await.unwrap();
    let first = chrono::Utc::now() - chrono::Duration::days(9);
    let hour = first.format("%Y-%m-%d %H:00 UTC").to_string();
    let findings = r["analysis"]["findings"].to_string();
    // $2 in 7 days against $1 in the 2 days of the 7 before that the log holds: per day, spend went
    // down (it said "up 100%", comparing a week with two days).
    // (49 hours of it, or 48 when the test runs on the hour.)
    let expected = |average: &str, percent: &str| {
        format!(
            "Spend averaged $0.2857 a day, down {percent}% against {average} a day in the previous 7 days, of which the log holds only the last 2 days (from {hour})."
        )
    };
    assert!(
        findings.contains(&expected("$0.4898", "41.7")) || findings.contains(&expected("$0.5", "42.9")),
        "{findings}"
    );
    let trend = &r["analysis"]["trend"];
    assert_eq!(trend["previous_recorded_from"], first.format("%Y-%m-%dT%H:00:00Z").to_string());
    assert!(matches!(trend["previous_hours_recorded"].as_i64(), Some(48 | 49)), "{trend}");

    // A range whose previous one was recorded whole says nothing more.
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 2})).await.json().await.unwrap();
    let findings = r["analysis"]["findings"].to_string();
    assert!(
        findings.contains("no spend in the previous 2 days to compare with") && !findings.contains("holds only"),
        "{findings}"
    );

    // Under a day of the previous range in the log is too little to compare with.
    let app = spawn_app().await;
    let at = chrono::Utc::now() - chrono::Duration::days(2) - chrono::Duration::minutes(1);
    for (at, cost) in [(at, "5"), (chrono::Utc::now(), "1")] {
        let record = json!({"provider": "acme", "model": "m", "component": "codex", "input_tokens": 1, "output_tokens": 1,
                            "cost": cost, "timestamp": at.to_rfc3339()});
        assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    }
    app.wait_for_projections(app.events().await).await;
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 2})).await.json().await.unwrap();
    let findings = r["analysis"]["findings"].to_string();
    let start = format!("The previous 2 days hold usage only from {} (their last ", at.format("%Y-%m-%d %H:00 UTC"));
    assert!(
        findings.contains(&start)
            && findings.contains(", $5): too little to compare with.")
            && !findings.contains("Spend "),
        "{findings}"
    );
    assert!(r["analysis"]["trend"]["change_fraction"].is_null());
}

/// Prompt caching is weighed per component and model, not per task type: a component sending long
/// prompts to one model in three task types got three look-alike sentences ("athena sends mostly
/// input to …") with different figures.
#[tokio::test]
async fn optimize_weighs_prompt_caching_once_per_component_and_model() {
    let app = spawn_app().await;
    let price = json!({"provider": "acme", "model": "cachy", "input": "2", "output": "2", "cached_input": "1",
                       "effective_from": "2026-01-01T00:00:00Z"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let records: Vec<Value> = [("coding", 8000, 1000), ("chat", 9000, 2000), ("summarize", 3000, 1000)]
        .iter()
        .map(|(task_type, input, output)| {
            json!({"provider": "acme", "model": "cachy", "component": "athena", "task_type": task_type,
                   "input_tokens": input, "output_tokens": output})
        })
        .collect();
    let r = optimize_daily(&app, records, 10).await;
    let caching: Vec<&Value> = r["recommendations"]["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == "prompt_caching")
        .collect();
    assert_eq!(caching.len(), 1, "{r:#}");
    // 20,000 of 24,000 tokens are input; half of it cached saves 10,000 × $1/1M = $0.01 over 10 days.
    let sentence = caching[0]["recommendation"].as_str().unwrap();
    assert!(sentence.starts_with("athena sends mostly input to acme/cachy (83.3% of its tokens)"), "{sentence}");
    assert_eq!(caching[0]["estimated_savings_per_period"].to_string(), "0.001");
    assert_eq!(caching[0]["evidence"]["input_tokens"], 20000);
}

/// An analysis is one snapshot: while records arrive, its totals always equal the sum of its breakdown
/// by model.
#[tokio::test]
async fn an_analysis_is_one_snapshot_while_records_arrive() {
    let app = spawn_app().await;
    let writer = crate::usage_query::records_arriving(&app);
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let r: Value =
            app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 1})).await.json().await.unwrap();
        let analysis = &r["analysis"];
        let calls = analysis["totals"]["calls"].as_i64().unwrap();
        let by_model: i64 =
            analysis["breakdown"]["model"].as_array().unwrap().iter().map(|m| m["calls"].as_i64().unwrap()).sum();
        assert_eq!(by_model, calls, "{analysis}");
        reads += 1;
    }
    writer.await.unwrap();
}

#[tokio::test]
async fn the_top_cost_driver_names_the_task_type_its_figure_is_for() {
    let app = spawn_app().await;
    let price = json!({"provider": "acme", "model": "big", "input": "10", "output": "30",
                       "effective_from": "2026-01-01T00:00:00Z"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    // codex on acme/big: $0.30 on coding in 3 calls, $0.20 on chat in 2: the driver is codex's coding,
    // and its figure is not all of codex on acme/big.
    let mut records = Vec::new();
    for (task, calls) in [("coding", 3), ("chat", 2)] {
        for _ in 0..calls {
            records.push(json!({"provider": "acme", "model": "big", "component": "codex", "task_type": task,
                                "input_tokens": 10000, "output_tokens": 0}));
        }
    }
    assert!(app.post("/api/usage/batch", &json!({ "records": records })).await.status().is_success());
    app.wait_for_projections(app.events().await).await;
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 7})).await.json().await.unwrap();
    let findings = r["analysis"]["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f == "The top cost driver is codex's coding calls on acme/big: $0.3 in 3 calls."),
        "{findings:#?}"
    );
}

/// The savings of all recommendations together count each token once: calls moved to a cheaper model
/// are not also cached on the one they left, so together they never exceed what was spent.
#[tokio::test]
async fn optimizes_total_counts_each_token_once() {
    let app = spawn_app().await;
    for (model, input, output) in [("big", "10", "30"), ("small", "1", "3")] {
        let price = json!({"provider": "acme", "model": model, "input": input, "output": output, "cached_input": "1",
                           "capabilities": ["code"], "effective_from": "2026-01-01T00:00:00Z"});
        assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    }
    // codex's coding on acme/big: 100,000 input and 10,000 output tokens, $1.30; on acme/small $0.13.
    // Caching half the input on acme/big would save 50,000 × $9/1M = $0.45 on its own.
    let records: Vec<Value> = (0..10)
        .map(|_| {
            json!({"provider": "acme", "model": "big", "component": "codex", "task_type": "coding",
                   "input_tokens": 10000, "output_tokens": 1000})
        })
        .collect();
    let r = optimize_daily(&app, records, 10).await;
    let savings = &r["recommendations"];
    let kinds: Vec<&str> =
        savings["recommendations"].as_array().unwrap().iter().map(|x| x["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["model_substitution", "prompt_caching"], "{r:#}");
    // Moving the calls saves $1.17 over the 10 days; caching the calls that moved saves nothing more.
    assert_eq!(savings["total_savings_per_period"].to_string(), "0.117", "{r:#}");
    let summary = savings["summary"].as_str().unwrap();
    assert!(summary.contains("$1.17 over the 10 days"), "{summary}");
}

/// Savings per period are the log's rate: a log that holds two days of a 30-day range saves per day
/// what those two days saved, halved (it divided by 30, so a new deployment's savings read 15 times
/// too small).
#[tokio::test]
async fn optimize_rates_savings_over_the_days_the_log_holds() {
    let app = spawn_app().await;
    workload(&app).await;
    // Two days ago: the log's first record, at no cost (it moves nothing, only where the log begins).
    let first = (Utc::now() - chrono::Duration::hours(47)).to_rfc3339();
    let early = json!({"provider": "acme", "model": "pic", "component": "vision-bot", "task_type": "image",
                       "input_tokens": 0, "output_tokens": 0, "timestamp": first});
    assert_eq!(app.post("/api/usage", &early).await.status().as_u16(), 201);
    app.wait_for_projections(app.events().await).await;

    let r: Value =
        app.post("/api/assistant/optimize", &json!({"period": "daily", "days": 30})).await.json().await.unwrap();
    let savings = &r["recommendations"];
    let first = &savings["recommendations"][0];
    // codex's $1.44 saving (see analyze_and_optimize_give_the_known_answers) over the 2 days recorded.
    assert_eq!(first["estimated_savings_per_period"].to_string(), "0.72", "{r:#}");
    let sentence = first["recommendation"].as_str().unwrap();
    assert!(sentence.contains("would cost $0.16 instead of $1.6 over the 2 days recorded. "), "{sentence}");
    let summary = savings["summary"].as_str().unwrap();
    assert!(
        summary.contains("about $0.72 per day ($1.44 over the 2 days recorded of the 30 days asked for;"),
        "{summary}"
    );

    // By the week, two days' savings are not stretched to seven: the rate is per day recorded, and a
    // range shorter than a period counts as one.
    let r: Value =
        app.post("/api/assistant/optimize", &json!({"period": "weekly", "days": 30})).await.json().await.unwrap();
    assert_eq!(r["recommendations"]["recommendations"][0]["estimated_savings_per_period"].to_string(), "1.44", "{r:#}");
}

/// A model's dated snapshot and its `provider/` form, priced by the same entry, are one recommendation
/// with the name: OpenAI answers with the snapshot (`gpt-4o-2024-08-06`), so components that record
/// the answer's model and those that record the asked one split a model's calls in two, and optimize
/// listed each half apart (a walk's 80 recommendations held 16 such pairs).
#[tokio::test]
async fn optimize_takes_a_models_snapshots_with_it() {
    let app = spawn_app().await;
    for (model, rate, cached) in [("big", "10", "5"), ("small", "1", "0.5")] {
        let price = json!({"provider": "acme", "model": model, "input": rate, "output": rate, "cached_input": cached,
                           "capabilities": ["code"], "effective_from": "2026-01-01T00:00:00Z"});
        assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    }
    let records: Vec<Value> = ["big", "big-2025-01-01", "acme/big"]
        .iter()
        .map(|model| {
            json!({"provider": "acme", "model": model, "component": "codex", "task_type": "coding",
                   "input_tokens": 90000, "output_tokens": 10000})
        })
        .collect();
    let r = optimize_daily(&app, records, 10).await;
    let recs = r["recommendations"]["recommendations"].as_array().unwrap();
    let of = |kind: &str| recs.iter().filter(|x| x["kind"] == kind).collect::<Vec<_>>();
    let substitutions = of("model_substitution");
    assert_eq!(substitutions.len(), 1, "{r:#}");
    // 300,000 tokens: $3 on big, $0.30 on small; $2.70 over 10 days.
    let sentence = substitutions[0]["recommendation"].as_str().unwrap();
    assert!(
        sentence.starts_with(
            "Move codex's coding calls from acme/big (recorded as acme/big, big and big-2025-01-01) to acme/small: the same 270,000 input and 30,000 output tokens would cost $0.3 instead of $3"
        ),
        "{sentence}"
    );
    assert_eq!(substitutions[0]["estimated_savings_per_period"].to_string(), "0.27");
    assert_eq!(substitutions[0]["evidence"]["models"], json!(["acme/big", "big", "big-2025-01-01"]));
    assert_eq!(substitutions[0]["evidence"]["calls"], 3);
    let caching = of("prompt_caching");
    assert_eq!(caching.len(), 1, "{r:#}");
    assert_eq!(caching[0]["evidence"]["input_tokens"], 270000);
}

/// A model with the same skills at a tenth of the price is another class of model: recommending it
/// with high confidence (gpt-4o's coding calls to gemini-1.5-flash, both tagged code, vision and tool
/// use) promised more than the price book's tags know. It is recommended with medium confidence and
/// the recommendation says why; one at half the price keeps high.
#[tokio::test]
async fn a_far_cheaper_model_is_recommended_with_medium_confidence() {
    for (input, output, confidence, says) in [
        (
            "0.5",
            "2",
            "medium",
            Some(" A model at 10% of the price may not do the same work: try it on a sample of these calls first."),
        ),
        ("2.5", "10", "high", None),
    ] {
        let app = spawn_app().await;
        for (model, input, output) in [("big", "5", "20"), ("alt", input, output)] {
            let price = json!({"provider": "acme", "model": model, "input": input, "output": output,
                               "capabilities": ["code", "remote_heavyweight"], "effective_from": "2026-01-01T00:00:00Z"});
            assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200, "{price}");
        }
        let records: Vec<Value> = (0..10)
            .map(|_| {
                json!({"provider": "acme", "model": "big", "component": "codex", "task_type": "coding",
                       "input_tokens": 10000, "output_tokens": 2000})
            })
            .collect();
        let r = optimize_daily(&app, records, 10).await;
        let first = &r["recommendations"]["recommendations"][0];
        assert_eq!(
            (first["kind"].as_str(), first["confidence"].as_str()),
            (Some("model_substitution"), Some(confidence)),
            "{first}"
        );
        let text = first["recommendation"].as_str().unwrap();
        match says {
            Some(says) => assert!(text.ends_with(says), "{text}"),
            None => assert!(!text.contains("price may not"), "{text}"),
        }
    }
}

/// With the bundled price table, recommend put google/gemini-1.5-flash first for code generation and
/// optimize moved gpt-4o's calls to it and to gemini-1.5-pro: models their provider no longer serves.
/// A retired model keeps its price (records still name it) and is recommended by none of them.
#[tokio::test]
async fn retired_models_are_priced_but_never_recommended() {
    let app = spawn_app_with(|s| s.bundled_prices = true).await;
    let today = Utc::now().date_naive();
    let retired = |provider: &str, model: &str| budget_api::price_book::retired(provider, model, today);
    assert!(retired("google", "gemini-1.5-flash") && retired("anthropic", "claude-3-5-sonnet"));
    assert!(!retired("anthropic", "claude-opus-4-7") && !retired("ollama", "llama3.1"));
    let calc =
        json!({"provider": "google", "model": "gemini-1.5-flash", "input_tokens": 1_000_000, "output_tokens": 0});
    let calc: Value = app.post("/api/prices/calculate", &calc).await.json().await.unwrap();
    assert_eq!(calc["total_cost"].to_string(), "0.075", "still priced: {calc}");

    let ask = json!({"task_description": "Generate Python code for data processing", "input_length": 2000,
                     "output_length": 1000});
    let r: Value = app.post("/api/assistant/recommend-model", &ask).await.json().await.unwrap();
    let ranked: Vec<(String, String)> = r["recommendations"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["provider"].as_str().unwrap().to_string(), m["model"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(ranked.len(), 10, "{ranked:?}");
    // Nor one retired within the notice: gpt-5-nano, retired on 2026-12-11, was first on 2026-12-04.
    let soon = today + chrono::Days::new(budget_api::price_book::RETIREMENT_NOTICE_DAYS as u64);
    let offered: Vec<_> = ranked.iter().filter(|(p, m)| budget_api::price_book::retired(p, m, soon)).collect();
    assert!(offered.is_empty(), "retired or retiring models ranked: {offered:?}");

    let records: Vec<Value> = (0..20)
        .map(|i| {
            json!({"provider": "openai", "model": (["gpt-4o", "gpt-4o-2024-08-06"][i % 2]), "component": "codex",
                   "task_type": "chat", "input_tokens": 20000, "output_tokens": 2000})
        })
        .collect();
    let r = optimize_daily(&app, records, 7).await;
    let moves: Vec<String> = r["recommendations"]["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["kind"] == "model_substitution")
        .map(|x| x["recommendation"].as_str().unwrap().to_string())
        .collect();
    assert!(!moves.is_empty(), "{r:#}");
    for m in &moves {
        assert!(!m.contains("gemini-1.5") && !m.contains("gemini-2.0-flash"), "{m}");
        // gpt-4o's provider retires it on 2027-01-14: worth saying to whoever moves its calls.
        assert!(m.contains(" Its provider retires openai/gpt-4o on 2027-01-14. "), "{m}");
    }
    // analyze says how much of the spend goes to models on their way out, on the day their provider
    // gives (claude-3-5-sonnet's is 2025-10-22, not the day the table found it gone), models of one
    // provider and day together, earliest first, and "by" the day the table was checked where no
    // provider's day was found.
    let more: Vec<Value> = [
        ("openai", "gpt-4o-mini"),
        ("anthropic", "claude-3-5-sonnet-20241022"),
        ("together", "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo"),
    ]
    .iter()
    .map(|(provider, model)| {
        json!({"provider": provider, "model": model, "component": "codex", "task_type": "chat",
               "input_tokens": 20000, "output_tokens": 2000})
    })
    .collect();
    assert!(app.post("/api/usage/batch", &json!({ "records": more })).await.status().is_success());
    app.wait_for_projections(app.events().await).await;
    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 7})).await.json().await.unwrap();
    let findings: Vec<&str> =
        r["analysis"]["findings"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    let retiring = findings.iter().find(|f| f.contains("2027-01-14")).unwrap_or_else(|| panic!("{findings:#?}"));
    assert_eq!(
        *retiring,
        "$1.5712 (100% of the spend) went to anthropic/claude-3-5-sonnet, which its provider retired on 2025-10-22; \
         together/meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo, which its provider retired by 2026-12-04; \
         openai/gpt-4o and openai/gpt-4o-mini, which their provider retires on 2027-01-14: \
         `budget optimize` names cheaper models to move such calls to."
    );
}
