use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app};

async fn seed(app: &crate::helpers::TestApp) {
    let rec = |provider: &str, model: &str, component: &str, tokens: i64, cost: &str| {
        json!({"provider": provider, "model": model, "component": component, "task_type": "coding",
               "input_tokens": tokens, "output_tokens": 10, "cost": cost})
    };
    let batch = json!({"records": [
        rec("openai", "gpt-4o", "codex", 1000, "0.01"),
        rec("openai", "gpt-4o-mini", "codex", 500, "0.001"),
        rec("anthropic", "claude-sonnet-4-5", "rhetor", 200, "0.02"),
    ]});
    assert_eq!(app.post("/api/usage/batch", &batch).await.status().as_u16(), 200);
    app.wait_for_projections(3).await;
}

#[tokio::test]
async fn get_usage_returns_totals_series_and_groups() {
    let app = spawn_app().await;
    seed(&app).await;
    let (status, body) = app.get_json("/api/usage?period=daily&days=7&provider=openai").await;
    assert_eq!(status, 200);
    assert_eq!(body["totals"]["count"], 2);
    assert_eq!(body["totals"]["input_tokens"], 1500);
    assert_eq!(body["totals"]["total_tokens"], 1520);
    assert_eq!(body["totals"]["cost"].to_string(), "0.011");
    assert_eq!(body["series"].as_array().unwrap().len(), 1);
    assert_eq!(body["groups"]["model"]["gpt-4o-mini"]["count"], 1);
    assert!(body["groups"]["provider"].get("anthropic").is_none());

    let (_, grouped) = app.get_json("/api/usage?period=weekly&group_by=component").await;
    let groups = grouped["groups"].as_object().unwrap();
    assert_eq!(groups.keys().collect::<Vec<_>>(), ["component"]);
    assert_eq!(grouped["groups"]["component"]["rhetor"]["cost"].to_string(), "0.02");
}

#[tokio::test]
async fn usage_splits_each_bucket_by_a_dimension_over_a_chosen_range() {
    let app = spawn_app().await;
    seed(&app).await;
    let now = chrono::Utc::now();
    let start = (now - chrono::Duration::hours(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (status, body) = app.get_json(&format!("/api/usage?period=hourly&split_by=provider&start_time={start}")).await;
    assert_eq!(status, 200, "{body}");
    let series = body["series"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{body}");
    let parts = &series[0]["parts"];
    assert_eq!(parts.as_object().unwrap().len(), 2, "{body}");
    assert_eq!(parts["openai"]["cost"].to_string(), "0.011");
    assert_eq!(parts["openai"]["count"], 2);
    assert_eq!(parts["anthropic"]["cost"].to_string(), "0.02");
    assert_eq!(series[0]["cost"].to_string(), "0.031");
    // The range is what was asked, on hour boundaries.
    assert_eq!(body["start_time"].as_str().unwrap(), format!("{}:00:00Z", &start[..13]));

    // A range that ended before the usage has none; without split_by there are no parts.
    let (_, old) = app.get_json("/api/usage?start_time=2020-01-01T00:00:00Z&end_time=2020-01-02T00:00:00Z").await;
    assert_eq!((old["totals"]["count"].as_i64(), old["days"].as_i64()), (Some(0), Some(1)));
    let (_, plain) = app.get_json("/api/usage?days=1").await;
    assert!(plain["series"][0].get("parts").is_none(), "{plain}");

    for (query, says) in [
        ("split_by=provider,model", "split_by takes one dimension"),
        ("split_by=region", "`region` is not a dimension; use provider, model, component, task_type, user"),
        ("days=3&start_time=2026-01-01T00:00:00Z", "either days or start_time"),
        ("end_time=2026-01-01T00:00:00Z", "end_time needs start_time"),
        ("start_time=2026-01-02T00:00:00Z&end_time=2026-01-01T00:00:00Z", "put start_time before end_time"),
    ] {
        let r = app.http.get(app.url(&format!("/api/usage?{query}"))).send().await.unwrap();
        let message = assert_error(r, 400, "invalid_parameter").await;
        assert!(message.contains(says), "{query}: {message}");
    }
}

#[tokio::test]
async fn summary_keeps_the_tekton_shape() {
    let app = spawn_app().await;
    seed(&app).await;
    let r = app.post("/api/usage/summary", &json!({"period": "daily", "component": "codex"})).await;
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    for key in [
        "period",
        "total_input_tokens",
        "total_output_tokens",
        "total_tokens",
        "total_cost",
        "count",
        "start_time",
        "end_time",
        "groups",
    ] {
        assert!(body.get(key).is_some(), "{key} missing from {body}");
    }
    assert_eq!(body["total_input_tokens"], 1500);
    assert_eq!(body["total_cost"].to_string(), "0.011");
    for dim in ["provider", "model", "component", "task_type"] {
        assert!(body["groups"][dim].is_object(), "{dim}");
    }
    assert_eq!(body["groups"]["model"]["gpt-4o"]["total_tokens"], 1010);

    let empty = app
        .post(
            "/api/usage/summary",
            &json!({"period": "daily", "start_time": "2020-01-01T00:00:00Z", "end_time": "2020-01-02T00:00:00Z"}),
        )
        .await;
    let empty: Value = empty.json().await.unwrap();
    assert_eq!(empty["count"], 0);
    let r = app
        .post(
            "/api/usage/summary",
            &json!({"period": "daily", "start_time": "2020-01-02T00:00:00Z", "end_time": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_error(r, 400, "invalid_time_range").await;
}

#[tokio::test]
async fn records_are_listed_newest_first_in_pages() {
    let app = spawn_app().await;
    seed(&app).await;
    let (status, page) = app.get_json("/api/usage/records?limit=2").await;
    assert_eq!(status, 200);
    let records = page["records"].as_array().unwrap();
    assert_eq!(records.len(), 2);
    assert!(records[0]["position"].as_i64() > records[1]["position"].as_i64());
    let before = page["next_before"].as_i64().unwrap();
    let (_, next) = app.get_json(&format!("/api/usage/records?limit=2&before={before}")).await;
    assert_eq!(next["records"].as_array().unwrap().len(), 1);
    assert!(next["next_before"].is_null());

    let (_, filtered) = app.get_json("/api/usage/records?component=rhetor").await;
    assert_eq!(filtered["records"][0]["model"], "claude-sonnet-4-5");
    assert_eq!(filtered["records"][0]["cost"].to_string(), "0.02");
}

/// A model filter reads as a limit on that model counts: its dated snapshots and `provider/` form too
/// (`set_limit --model gpt-4o` showed more used than `get_usage --model gpt-4o`).
#[tokio::test]
async fn a_model_filter_includes_its_snapshots_as_a_limit_does() {
    let app = spawn_app().await;
    let rec = |model: &str, cost: &str| json!({"provider": "openai", "model": model, "component": "codex", "input_tokens": 1, "output_tokens": 0, "cost": cost});
    let batch = json!({"records": [rec("gpt-4o", "1"), rec("gpt-4o-2024-08-06", "2"), rec("openai/gpt-4o", "4"),
                                   rec("gpt-4o-mini", "8"), rec("gpt-4o.1", "16")]});
    assert_eq!(app.post("/api/usage/batch", &batch).await.status().as_u16(), 200);
    app.wait_for_projections(app.events().await).await;
    let (status, body) = app.get_json("/api/usage?period=daily&model=gpt-4o").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["totals"]["count"].as_i64(), body["totals"]["cost"].to_string()), (Some(3), "7".into()), "{body}");
    assert_eq!(body["groups"]["model"]["gpt-4o-2024-08-06"]["count"], 1, "the snapshot is still its own row");

    // The records behind that figure, listed or audited with the same filter, are the same three
    // (they were the exact name's one: get_usage's $7 could not be explained from them).
    let (_, page) = app.get_json("/api/usage/records?model=gpt-4o").await;
    let costs: Vec<String> = page["records"].as_array().unwrap().iter().map(|r| r["cost"].to_string()).collect();
    assert_eq!(costs, ["4", "2", "1"], "{page}");
    let (_, page) = app.get_json("/api/events?type=UsageRecorded&model=gpt-4o").await;
    let costs: Vec<String> = page["events"].as_array().unwrap().iter().map(|e| e["cost"].to_string()).collect();
    assert_eq!(costs, ["1", "2", "4"], "{page}");
    let (_, page) = app.get_json("/api/usage/records?model=gpt-4o-2024-08-06").await;
    assert_eq!(page["records"].as_array().unwrap().len(), 1, "a snapshot's own name is exact: {page}");

    // A reservation of a snapshot is listed under its model's name as well.
    for model in ["gpt-4o-2024-08-06", "gpt-4o-mini"] {
        let reserve =
            json!({"context_id": model, "component": "codex", "tokens": 10, "provider": "openai", "model": model});
        assert_eq!(app.post("/api/allocations", &reserve).await.status().as_u16(), 201);
    }
    let (_, page) = app.get_json("/api/allocations?model=gpt-4o").await;
    let listed: Vec<&str> =
        page["allocations"].as_array().unwrap().iter().map(|a| a["model"].as_str().unwrap()).collect();
    assert_eq!(listed, ["gpt-4o-2024-08-06"], "{page}");
}

/// One answer is one snapshot: while records arrive, its totals always equal the sum of each of its
/// groups (its series and groups were read by separate statements, so a projection commit between
/// them gave totals of 0 beside a group of 1).
#[tokio::test]
async fn a_usage_answer_is_one_snapshot_while_records_arrive() {
    let app = spawn_app().await;
    let writer = records_arriving(&app);
    let mut reads = 0;
    while !writer.is_finished() || reads == 0 {
        let (status, body) = app.get_json("/api/usage?period=daily").await;
        assert_eq!(status, 200);
        let total = body["totals"]["count"].as_i64().unwrap();
        for dimension in ["model", "provider"] {
            let sum: i64 = body["groups"][dimension]
                .as_object()
                .map_or(0, |g| g.values().map(|t| t["count"].as_i64().unwrap()).sum());
            assert_eq!(sum, total, "{dimension} groups against the totals: {body}");
        }
        reads += 1;
    }
    writer.await.unwrap();
}

/// Forty batches of fifty records over three models, sent one after another in the background.
pub fn records_arriving(app: &crate::helpers::TestApp) -> tokio::task::JoinHandle<()> {
    let (http, url) = (app.http.clone(), app.url("/api/usage/batch"));
    tokio::spawn(async move {
        for i in 0..40 {
            let records: Vec<Value> = (0..50)
                .map(|j| json!({"provider": "openai", "model": format!("m-{}", j % 3), "component": "c",
                                "input_tokens": 1, "output_tokens": 0, "cost": "0.01", "context_id": format!("{i}-{j}")}))
                .collect();
            let sent = http.post(&url).json(&json!({ "records": records })).send().await.unwrap();
            assert!(sent.status().is_success());
        }
    })
}
