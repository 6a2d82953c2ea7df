use chrono::{DateTime, DurationRound, Utc};
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn setting_a_limit_creates_the_default_budget_and_replacing_keeps_the_policy() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/policies",
            &json!({"period": "daily", "type": "hard_limit", "provider": "openai", "cost_limit": 10.0}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let first: Value = r.json().await.unwrap();
    assert_eq!(first["budget_created"], true);
    assert_eq!(first["policy"]["budget_name"], "default");
    assert_eq!(first["policy"]["cost_limit"].to_string(), "10");
    assert_eq!(first["policy"]["warning_threshold"].to_string(), "0.8");

    // Same budget, period and scope: the same policy, replaced (a second event in its stream).
    let r = app
        .post("/api/policies", &json!({"period": "daily", "type": "warn", "provider": "openai", "cost_limit": "7.5"}))
        .await;
    assert_eq!(r.status().as_u16(), 200);
    let second: Value = r.json().await.unwrap();
    assert_eq!(second["created"], false);
    assert_eq!(second["version"], 2);
    assert_eq!(second["policy"]["policy_id"], first["policy"]["policy_id"]);
    assert_eq!(second["policy"]["type"], "warn");

    // A different scope is a different policy; a named budget is created on first use.
    let r = app
        .post(
            "/api/policies",
            &json!({"period": "daily", "component": "codex", "token_limit": 1000, "budget": "team-a"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let (_, list) = app.get_json("/api/policies").await;
    assert_eq!(list["policies"].as_array().unwrap().len(), 2);
    let (_, filtered) = app.get_json("/api/policies?provider=openai").await;
    assert_eq!(filtered["policies"].as_array().unwrap().len(), 1);
    let id = first["policy"]["policy_id"].as_str().unwrap();
    let (status, one) = app.get_json(&format!("/api/policies/{id}")).await;
    assert_eq!((status, one["cost_limit"].to_string()), (200, "7.5".to_string()));
    let (_, budgets) = app.get_json("/api/budgets").await;
    assert_eq!(budgets["budgets"].as_array().unwrap().len(), 2);
    let (_, page) = app.get_json("/api/budgets?limit=1").await;
    assert_eq!(
        (page["budgets"][0]["name"].as_str(), page["total"].as_i64(), page["next_offset"].as_i64()),
        (Some("default"), Some(2), Some(1))
    );
    let (_, page) = app.get_json("/api/budgets?limit=1&offset=1").await;
    assert_eq!((page["budgets"][0]["name"].as_str(), page["next_offset"].as_i64()), (Some("team-a"), None));
    assert_eq!(app.get_json("/api/budgets?limit=0").await.0, 400);

    let events: Vec<String> = app.column("SELECT event_type FROM events ORDER BY position").await;
    assert_eq!(events, ["BudgetCreated", "PolicySet", "PolicySet", "BudgetCreated", "PolicySet"]);
}

#[tokio::test]
async fn bad_policies_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    for (body, needle) in [
        (json!({"period": "daily", "cost_limit": -1}), "negative"),
        (json!({"period": "daily", "cost_limit": 1, "warning_threshold": 1.5}), "warning_threshold"),
        (json!({"period": "daily", "cost_limit": 1, "action_threshold": 0}), "action_threshold"),
        (json!({"period": "yearly", "cost_limit": 1}), "hourly, daily"),
        (json!({"period": "daily", "cost_limit": 1, "type": "strict"}), "hard_limit"),
        (json!({"period": "daily", "cost_limit": 1, "tier": "huge"}), "remote_heavyweight"),
        (json!({"period": "daily"}), "cost_limit"),
        (json!({"period": "daily", "token_limit": -5}), "token_limit"),
        (json!({"period": "daily", "cost_limit": 1, "timezone": "Mars/Base"}), "IANA"),
        (json!({"period": "daily", "cost_limit": 1, "colour": "red"}), "unknown field"),
    ] {
        let r = app.post("/api/policies", &body).await;
        assert_eq!(r.status().as_u16(), 400, "{body}");
        let error: Value = r.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: `{message}` should mention `{needle}`");
    }
    let r = app
        .post(
            "/api/policies",
            &json!({"period": "daily", "cost_limit": 1, "budget_id": "00000000-0000-0000-0000-000000000001"}),
        )
        .await;
    assert_error(r, 404, "not_found").await;
    assert_eq!(app.events().await, 0);
    let (status, _) = app.get_json("/api/policies/not-a-uuid").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn status_and_check_read_the_accounts() {
    let app = spawn_app().await;
    app.post("/api/policies", &json!({"period": "daily", "type": "hard_limit", "provider": "openai", "cost_limit": "1.00", "token_limit": 100000})).await;
    app.post("/api/policies", &json!({"period": "monthly", "type": "warn", "cost_limit": 100})).await;
    let usage = |cost: &str| json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 1000, "output_tokens": 500, "cost": cost});

    let (_, check) = {
        let r = app.post("/api/usage/check", &json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 2000, "max_output_tokens": 1000, "cost": "0.5"})).await;
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(check["allowed"], true);
    assert_eq!(check["policies"].as_array().unwrap().len(), 2);
    assert_eq!(check["estimated_tokens"], 3000);

    let r: Value = app.post("/api/usage", &usage("0.9")).await.json().await.unwrap();
    assert_eq!(r["over_limit"], false);
    let (_, status) = app.get_json("/api/status?period=daily").await;
    let w = &status["windows"][0];
    assert_eq!(
        (w["used_cost"].to_string(), w["used_tokens"].as_i64(), w["state"].as_str()),
        ("0.9".into(), Some(1500), Some("warning"))
    );
    assert_eq!(w["remaining_cost"].to_string(), "0.1");
    assert_eq!(w["percent"].to_string(), "90");

    // The pre-flight refuses what would exceed the hard limit, naming the policy.
    let r: Value = app
        .post(
            "/api/usage/check",
            &json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 10, "cost": "0.2"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["allowed"], false);
    let hard = r["policies"].as_array().unwrap().iter().find(|p| p["type"] == "hard_limit").unwrap();
    assert_eq!((hard["decision"].as_str(), hard["remaining_cost_after"].to_string()), (Some("refuse"), "-0.1".into()));
    let message = r["messages"][0].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "daily hard_limit policy on provider=openai (budget default) refuses this call: with it, its window \
             starting {} would hold $1.1 of $1 (110%) and 1,510 of 100,000 tokens (1.5%)",
            hard["window"].as_str().unwrap()
        )
    );

    // Usage is a fact: recorded past the limit, flagged, and the window is exceeded.
    let r: Value = app.post("/api/usage", &usage("0.2")).await.json().await.unwrap();
    assert_eq!(r["over_limit"], true);
    assert_eq!(r["exceeded"].as_array().unwrap().len(), 1);
    let (_, status) = app.get_json("/api/status?provider=openai").await;
    assert_eq!(status["windows"][0]["state"], "exceeded");
    assert_eq!(status["windows"][0]["remaining_cost"], 0);

    // Lowering the limit below what was spent is allowed: the window is exhausted, nothing rewritten.
    let id = status["windows"][0]["policy_id"].as_str().unwrap().to_string();
    let r = app
        .http
        .patch(app.url(&format!("/api/policies/{id}")))
        .json(&json!({"cost_limit": "0.5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, lowered) = app.get_json("/api/status?provider=openai").await;
    assert_eq!(
        (lowered["windows"][0]["used_cost"].to_string(), lowered["windows"][0]["state"].as_str()),
        ("1.1".into(), Some("exceeded"))
    );

    // Past windows stay queryable; a bad period is a 400.
    let (_, past) = app.get_json("/api/status?period=daily&at=2020-01-01T12:00:00Z").await;
    assert_eq!(past["windows"][0]["used_cost"], 0);
    assert_eq!(past["windows"][0]["window"], "2020-01-01T00:00:00Z");
    assert_eq!(app.get_json("/api/status?period=yearly").await.0, 400);
    let r = app
        .post("/api/usage/check", &json!({"provider": "openai", "model": "m", "component": "c", "input_tokens": -1}))
        .await;
    assert_error(r, 400, "validation_failed").await;
}

#[tokio::test]
async fn budgets_are_created_renamed_and_archived_and_archived_ones_stop_counting() {
    let app = spawn_app().await;
    let r = app.post("/api/budgets", &json!({"name": "research", "owner": "alice"})).await;
    assert_eq!(r.status().as_u16(), 201);
    let budget: Value = r.json().await.unwrap();
    let id = budget["budget_id"].as_str().unwrap().to_string();
    assert_error(app.post("/api/budgets", &json!({"name": "research"})).await, 409, "budget_exists").await;
    assert_error(app.post("/api/budgets", &json!({"owner": "bob"})).await, 400, "validation_failed").await;

    let r = app
        .http
        .patch(app.url(&format!("/api/budgets/{id}")))
        .json(&json!({"description": "R&D"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let (_, detail) = app.get_json(&format!("/api/budgets/{id}")).await;
    assert_eq!((detail["description"].as_str(), detail["owner"].as_str()), (Some("R&D"), Some("alice")));

    let policy: Value = app
        .post(
            "/api/policies",
            &json!({"budget": "research", "period": "daily", "token_limit": 1000, "type": "hard_limit"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let record =
        json!({"provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 600, "output_tokens": 600});
    let r: Value = app.post("/api/usage", &record).await.json().await.unwrap();
    assert_eq!(r["over_limit"], true);
    let (_, policies) = app.get_json(&format!("/api/budgets/{id}/policies")).await;
    assert_eq!(policies["policies"][0]["policy_id"], policy["policy"]["policy_id"]);
    let (_, status) = app.get_json(&format!("/api/budgets/{id}/status")).await;
    assert_eq!(status["windows"][0]["used_tokens"], 1200);

    let r = app.http.post(app.url(&format!("/api/budgets/{id}/archive"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r: Value = app.post("/api/usage", &record).await.json().await.unwrap();
    assert_eq!(r["over_limit"], false, "an archived budget's policies no longer count");
    // …and are no longer shown as if they did: status and the active policies leave them out (their
    // window stood still at 1,200 tokens, "ok"), and the list of all policies says why.
    let (_, status) = app.get_json("/api/status").await;
    assert!(status["windows"].as_array().unwrap().is_empty(), "{status}");
    let (_, active) = app.get_json("/api/policies").await;
    assert!(active["policies"].as_array().unwrap().is_empty(), "{active}");
    let (_, all) = app.get_json("/api/policies?all=true").await;
    assert_eq!(
        (all["policies"][0]["enabled"].as_bool(), all["policies"][0]["budget_archived"].as_bool()),
        (Some(true), Some(true)),
        "{all}"
    );
    let r = app.post("/api/policies", &json!({"budget": "research", "period": "weekly", "cost_limit": 1})).await;
    let message = assert_error(r, 409, "budget_archived").await;
    // An archived budget cannot come back: the message says how to get a live one of that name.
    assert!(message.contains("budget budgets rename research NEW-NAME"), "{message}");
    let missing = "00000000-0000-0000-0000-000000000009";
    let r = app.http.post(app.url(&format!("/api/budgets/{missing}/archive"))).send().await.unwrap();
    assert_error(r, 404, "not_found").await;
}

#[tokio::test]
async fn a_policy_is_changed_in_place_and_a_disabled_one_stops_counting() {
    let app = spawn_app().await;
    let created: Value = app
        .post("/api/policies", &json!({"period": "per_task", "type": "hard_limit", "token_limit": 100}))
        .await
        .json()
        .await
        .unwrap();
    let id = created["policy"]["policy_id"].as_str().unwrap().to_string();
    let r = app
        .http
        .patch(app.url(&format!("/api/policies/{id}")))
        .json(&json!({"token_limit": 5000, "warning_threshold": 0.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let changed: Value = r.json().await.unwrap();
    assert_eq!((changed["version"].as_i64(), changed["policy"]["token_limit"].as_i64()), (Some(2), Some(5000)));
    assert_eq!(changed["policy"]["period"], "per_task", "identity fields stay");
    let r =
        app.http.patch(app.url(&format!("/api/policies/{id}"))).json(&json!({"period": "daily"})).send().await.unwrap();
    assert_error(r, 400, "validation_failed").await;
    let r = app
        .http
        .patch(app.url(&format!("/api/policies/{id}")))
        .json(&json!({"action_threshold": 2}))
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "validation_failed").await;

    // Before any task: no window, and the policy is listed as waiting for one (not left out, as if
    // no policy matched).
    let (_, status) = app.get_json("/api/status?period=per_task").await;
    assert_eq!(status["windows"], json!([]));
    assert_eq!(status["waiting"][0]["policy_id"].as_str(), Some(id.as_str()), "{status}");

    let record = json!({"provider": "ollama", "model": "llama3", "component": "c", "context_id": "task-9", "input_tokens": 4000, "output_tokens": 1500});
    let r: Value = app.post("/api/usage", &record).await.json().await.unwrap();
    assert_eq!(r["over_limit"], true, "5,500 tokens in task-9's window, limit 5,000");
    let (_, status) = app.get_json("/api/status?period=per_task").await;
    assert_eq!(
        (status["windows"][0]["window"].as_str(), status["windows"][0]["state"].as_str()),
        (Some("task:task-9"), Some("exceeded"))
    );
    assert_eq!(status["waiting"], json!([]), "it has a window now");

    let r = app.http.post(app.url(&format!("/api/policies/{id}/disable"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r: Value = app.post("/api/usage", &record).await.json().await.unwrap();
    assert_eq!(r["over_limit"], false);
    let (_, active) = app.get_json("/api/policies").await;
    assert!(active["policies"].as_array().unwrap().is_empty());
    let (_, all) = app.get_json("/api/policies?all=true").await;
    assert_eq!(all["policies"][0]["enabled"], false);
}

#[tokio::test]
async fn records_count_in_tier_scoped_policies_by_given_or_derived_tier() {
    let app = spawn_app().await;
    app.post(
        "/api/policies",
        &json!({"period": "hourly", "type": "hard_limit", "tier": "local_lightweight", "token_limit": 10}),
    )
    .await;
    let local =
        json!({"provider": "ollama", "model": "llama3:8b", "component": "c", "input_tokens": 6, "output_tokens": 0});
    let remote =
        json!({"provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 100, "output_tokens": 0});
    let told = json!({"provider": "openai", "model": "gpt-4o", "component": "c", "tier": "local_lightweight", "input_tokens": 6, "output_tokens": 0});
    let a: Value = app.post("/api/usage", &local).await.json().await.unwrap();
    let b: Value = app.post("/api/usage", &remote).await.json().await.unwrap();
    let c: Value = app.post("/api/usage", &told).await.json().await.unwrap();
    assert_eq!(
        (a["over_limit"].as_bool(), b["over_limit"].as_bool(), c["over_limit"].as_bool()),
        (Some(false), Some(false), Some(true))
    );
    let bad = json!({"provider": "openai", "model": "gpt-4o", "component": "c", "tier": "huge", "input_tokens": 1, "output_tokens": 0});
    assert_error(app.post("/api/usage", &bad).await, 400, "validation_failed").await;
}

/// A change that changes nothing appends nothing: the same policy again, disabling a disabled policy,
/// renaming a budget to its name, archiving an archived budget each answer with the current state.
#[tokio::test]
async fn no_op_changes_append_no_event() {
    let app = spawn_app().await;
    let policy =
        json!({"period": "daily", "type": "hard_limit", "cost_limit": "10", "provider": "openai", "budget": "team"});
    let first: Value = app.post("/api/policies", &policy).await.json().await.unwrap();
    let events = app.events().await;
    let again = app.post("/api/policies", &policy).await;
    assert_eq!(again.status().as_u16(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!((again["version"].clone(), again["created"].clone()), (first["version"].clone(), json!(false)));
    assert_eq!(app.events().await, events, "the same policy again appended an event");

    let id = first["policy"]["policy_id"].as_str().unwrap();
    let disable = |app: &crate::helpers::TestApp| app.http.post(app.url(&format!("/api/policies/{id}/disable"))).send();
    assert_eq!(disable(&app).await.unwrap().status().as_u16(), 200);
    let events = app.events().await;
    assert_eq!(disable(&app).await.unwrap().status().as_u16(), 200);
    assert_eq!(app.events().await, events, "disabling a disabled policy appended an event");

    let budget = first["policy"]["budget_id"].as_str().unwrap();
    let rename = app.http.patch(app.url(&format!("/api/budgets/{budget}"))).json(&json!({"name": "team"})).send().await;
    assert_eq!(rename.unwrap().status().as_u16(), 200);
    assert_eq!(app.events().await, events, "renaming a budget to its name appended an event");
    let archive = || app.http.post(app.url(&format!("/api/budgets/{budget}/archive"))).send();
    assert_eq!(archive().await.unwrap().status().as_u16(), 200);
    let events = app.events().await;
    let twice: Value = archive().await.unwrap().json().await.unwrap();
    assert_eq!(twice["active"], false);
    assert_eq!(app.events().await, events, "archiving an archived budget appended an event");
}

/// Every keyed write says a retry is one as a record's retry does: the first outcome, 200 and
/// `Idempotent-Replayed: true` (policies and budgets said nothing, and a budget's retry said 201).
#[tokio::test]
async fn retried_policy_and_budget_writes_say_they_are_replays() {
    let app = spawn_app().await;
    let send = |method: reqwest::Method, path: String, key: &'static str, body: Value| {
        let app = &app;
        async move {
            let r = app.http.request(method, app.url(&path)).header("Idempotency-Key", key).json(&body).send().await;
            let r = r.unwrap();
            let replayed = r.headers().get("idempotent-replayed").map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), replayed, r.json::<Value>().await.unwrap())
        }
    };
    let policy = json!({"period": "daily", "cost_limit": "10", "provider": "openai"});
    let (status, replayed, first) = send(reqwest::Method::POST, "/api/policies".into(), "p-1", policy.clone()).await;
    assert_eq!((status, replayed), (201, None));
    let again = send(reqwest::Method::POST, "/api/policies".into(), "p-1", policy).await;
    assert_eq!((again.0, again.1.as_deref()), (200, Some("true")));
    assert_eq!(again.2["policy"]["policy_id"], first["policy"]["policy_id"]);
    let id = first["policy"]["policy_id"].as_str().unwrap().to_string();

    let patch = json!({"cost_limit": "12"});
    let (status, replayed, _) = send(reqwest::Method::PATCH, format!("/api/policies/{id}"), "p-2", patch.clone()).await;
    assert_eq!((status, replayed), (200, None));
    let (status, replayed, _) = send(reqwest::Method::PATCH, format!("/api/policies/{id}"), "p-2", patch).await;
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));

    let budget = json!({"name": "lab"});
    let (status, replayed, first) = send(reqwest::Method::POST, "/api/budgets".into(), "b-1", budget.clone()).await;
    assert_eq!((status, replayed), (201, None));
    let (status, replayed, again) = send(reqwest::Method::POST, "/api/budgets".into(), "b-1", budget).await;
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));
    assert_eq!(again["budget_id"], first["budget_id"], "{again}");
    let archive = format!("/api/budgets/{}/archive", first["budget_id"].as_str().unwrap());
    let (status, replayed, _) = send(reqwest::Method::POST, archive.clone(), "b-2", json!({})).await;
    assert_eq!((status, replayed), (200, None));
    let (status, replayed, _) = send(reqwest::Method::POST, archive, "b-2", json!({})).await;
    assert_eq!((status, replayed.as_deref()), (200, Some("true")));
}

/// A per-task or per-session window has no start: a check's message names the task or session whose
/// window it is (it said "its window starting task:t-1").
#[tokio::test]
async fn a_checks_message_names_the_task_or_session_of_its_window() {
    let app = spawn_app().await;
    for period in ["per_task", "per_session"] {
        let policy = json!({"period": period, "type": "soft_limit", "provider": "openai", "cost_limit": "0.05"});
        assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    }
    let call = json!({"provider": "openai", "model": "gpt-4o", "component": "c", "context_id": "t-1",
                      "session_id": "s-1", "input_tokens": 10, "cost": "0.06"});
    let r: Value = app.post("/api/usage/check", &call).await.json().await.unwrap();
    let messages: Vec<&str> = r["messages"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    for expected in [
        "per_task soft_limit policy on provider=openai (budget default): with it, task t-1's window would hold $0.06 of $0.05 (120%), over the limit",
        "per_session soft_limit policy on provider=openai (budget default): with it, session s-1's window would hold $0.06 of $0.05 (120%), over the limit",
    ] {
        assert!(messages.contains(&expected), "{messages:#?}");
    }
}

/// A limit on a model counts the forms its calls are recorded under: `provider/model` and dated
/// snapshots (OpenAI answers name `gpt-4o-2024-08-06` for `gpt-4o`). It counted the exact name only,
/// so a $1 hard limit on gpt-4o let a $2.50 call of its snapshot through unflagged and unreserved.
#[tokio::test]
async fn a_model_limit_counts_its_dated_and_prefixed_forms() {
    let app = spawn_app().await;
    let usage = |model: &str, cost: &str| json!({"provider": "openai", "model": model, "component": "c", "input_tokens": 10, "output_tokens": 0, "cost": cost});
    // Spent before the limit: its opening balance counts the snapshot too.
    assert_eq!(app.post("/api/usage", &usage("gpt-4o-2024-08-06", "0.25")).await.status().as_u16(), 201);
    let created: Value = app
        .post("/api/policies", &json!({"period": "daily", "type": "hard_limit", "model": "gpt-4o", "cost_limit": "1"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(created["opening"]["posted_cost"].to_string(), "0.25", "{created}");
    let policy_id = created["policy"]["policy_id"].clone();
    // Another model ($5, not counted), the prefixed and the dated forms ($0.25 each, counted).
    for (model, cost) in [("gpt-4o-mini", "5"), ("openai/gpt-4o", "0.25"), ("gpt-4o-2024-08-06", "0.25")] {
        let r: Value = app.post("/api/usage", &usage(model, cost)).await.json().await.unwrap();
        assert_eq!(r["over_limit"], false, "{model}: {r}");
    }
    let (_, status) = app.get_json("/api/status").await;
    assert_eq!(status["windows"][0]["used_cost"].to_string(), "0.75", "{status}");
    // A reservation of the snapshot holds room under the model's limit, and is refused past it.
    let reserve = json!({"context_id": "t", "component": "c", "provider": "openai", "model": "gpt-4o-2024-08-06",
                         "tokens": 100, "estimated_cost": "0.5"});
    assert_error(app.post("/api/allocations", &reserve).await, 402, "budget_exceeded").await;
    let r: Value = app.post("/api/usage", &usage("gpt-4o-2024-08-06", "0.5")).await.json().await.unwrap();
    assert_eq!((r["over_limit"].as_bool(), &r["exceeded"]), (Some(true), &json!([policy_id])), "{r}");
}

/// Status lists a per-task policy's ten most recent windows; it says how many there are in all, so a
/// twelfth task is not silently missing from the list.
#[tokio::test]
async fn status_says_how_many_task_windows_it_left_out() {
    let app = spawn_app().await;
    let created: Value = app
        .post("/api/policies", &json!({"period": "per_task", "type": "warn", "cost_limit": "1"}))
        .await
        .json()
        .await
        .unwrap();
    let policy_id = created["policy"]["policy_id"].clone();
    let records: Vec<Value> = (0..12)
        .map(|i| {
            json!({"provider": "openai", "model": "m", "component": "c", "context_id": format!("t-{i}"),
                   "input_tokens": 1, "output_tokens": 0, "cost": "0.01"})
        })
        .collect();
    assert!(app.post("/api/usage/batch", &json!({ "records": records })).await.status().is_success());
    let (_, status) = app.get_json("/api/status").await;
    assert_eq!(status["windows"].as_array().unwrap().len(), 10, "{status}");
    assert_eq!(status["more_windows"], json!([{"policy_id": policy_id, "shown": 10, "total": 12}]), "{status}");
    let (_, daily) = app.get_json("/api/status?period=daily").await;
    assert!(daily.get("more_windows").is_none(), "{daily}");
}

/// A window's pace is measured over the part of it the log holds: a deployment whose first record
/// is an hour old, in a month's window begun days ago, spends at that hour's rate (its forecast and
/// burn rate divided by the whole month so far, so a limit running out today read as lasting).
#[tokio::test]
async fn a_window_s_pace_counts_from_the_log_s_first_record_when_it_began_inside_it() {
    let app = spawn_app().await;
    let policy = json!({"period": "monthly", "type": "warn", "cost_limit": "1000"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let (_, status) = app.get_json("/api/status").await;
    let start: DateTime<Utc> = status["windows"][0]["window_start"].as_str().unwrap().parse().unwrap();
    // An hour ago, or the window's start in its first hour (then both rules agree).
    let at = (Utc::now() - chrono::Duration::hours(1)).max(start);
    let record = json!({"provider": "acme", "model": "m", "component": "c", "input_tokens": 1, "output_tokens": 0,
                        "cost": "3", "timestamp": at.to_rfc3339()});
    assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    app.wait_for_projections(app.events().await).await;

    let (_, status) = app.get_json("/api/status").await;
    let w = &status["windows"][0];
    let since = at.duration_trunc(chrono::Duration::hours(1)).unwrap().max(start);
    assert_eq!(w["rate_since"].as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok()), Some(since), "{w}");
    let now: DateTime<Utc> = status["at"].as_str().unwrap().parse().unwrap();
    let end: DateTime<Utc> = w["window_end"].as_str().unwrap().parse().unwrap();
    let expected = 3.0 * (end - since).num_seconds() as f64 / (now - since).num_seconds().max(60) as f64;
    let forecast = w["forecast_cost"].as_f64().unwrap();
    assert!((forecast - expected).abs() < 0.01, "forecast {forecast}, expected {expected}: {w}");

    let r: Value =
        app.post("/api/assistant/analyze", &json!({"period": "daily", "days": 1})).await.json().await.unwrap();
    let burn = r["analysis"]["windows"][0]["burn_rate_per_hour"].as_f64().unwrap();
    let hours = (Utc::now() - since).num_seconds() as f64 / 3600.0;
    assert!((burn - 3.0 / hours).abs() < 0.05 * 3.0 / hours, "burn {burn}, expected about {}: {r}", 3.0 / hours);
}

/// The check of a call that takes a soft limit past its warning threshold warns of it, and so does the
/// reservation that does: a $0.90 call against an empty $1 soft limit was "allow" with no message, and
/// only the call after it heard that the window was near its limit.
#[tokio::test]
async fn the_call_that_crosses_a_threshold_hears_of_it() {
    let app = spawn_app().await;
    let p = json!({"period": "daily", "type": "soft_limit", "component": "walker", "cost_limit": "1"});
    assert_eq!(app.post("/api/policies", &p).await.status().as_u16(), 201);
    let check = |cost: &str| json!({"provider": "openai", "model": "gpt-4o", "component": "walker", "input_tokens": 10, "cost": cost});
    let r: Value = app.post("/api/usage/check", &check("0.79")).await.json().await.unwrap();
    assert_eq!((r["allowed"].as_bool(), r["policies"][0]["decision"].as_str()), (Some(true), Some("allow")), "{r}");
    let r: Value = app.post("/api/usage/check", &check("0.9")).await.json().await.unwrap();
    assert_eq!((r["allowed"].as_bool(), r["policies"][0]["decision"].as_str()), (Some(true), Some("warn")), "{r}");
    let message = r["messages"][0].as_str().unwrap_or_default();
    assert!(message.contains("would hold $0.9 of $1 (90%), near the limit"), "{r}");
    let a: Value = app
        .post(
            "/api/allocations",
            &json!({"context_id": "w1", "component": "walker", "tokens": 100, "estimated_cost": "0.9"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let message = a["messages"][0].as_str().unwrap_or_default();
    assert!(message.contains("would hold $0.9 of $1 (90%), near the limit"), "{a}");
}

/// Setting a limit again changes what it gives and keeps what it leaves out: `budget set_limit daily 8
/// --provider openai` over a $5 hard limit made it a $8 *warning* (the type's default), so the limit no
/// longer refused anything, and a replaced policy's thresholds and timezone went back to the defaults.
#[tokio::test]
async fn a_limit_set_again_keeps_the_type_thresholds_and_timezone_it_does_not_give() {
    let app = spawn_app().await;
    let first = json!({"period": "daily", "type": "hard_limit", "provider": "openai", "cost_limit": "5",
                       "warning_threshold": "0.5", "action_threshold": "0.7", "timezone": "Europe/Berlin"});
    assert_eq!(app.post("/api/policies", &first).await.status().as_u16(), 201);
    let again = json!({"period": "daily", "provider": "openai", "cost_limit": "8"});
    let r: Value = app.post("/api/policies", &again).await.json().await.unwrap();
    let p = &r["policy"];
    assert_eq!(
        (
            p["type"].as_str(),
            p["cost_limit"].to_string(),
            p["warning_threshold"].to_string(),
            p["action_threshold"].to_string(),
            p["timezone"].as_str()
        ),
        (Some("hard_limit"), "8".into(), "0.5".into(), "0.7".into(), Some("Europe/Berlin")),
        "{r}"
    );
    // What it gives, it changes; one threshold given sets both as given or by default, as for a new one.
    let typed = json!({"period": "daily", "provider": "openai", "cost_limit": "8", "type": "warn", "warning_threshold": "0.6", "timezone": "UTC"});
    let r: Value = app.post("/api/policies", &typed).await.json().await.unwrap();
    let p = &r["policy"];
    assert_eq!(
        (
            p["type"].as_str(),
            p["warning_threshold"].to_string(),
            p["action_threshold"].to_string(),
            p["timezone"].as_str()
        ),
        (Some("warn"), "0.6".into(), "0.95".into(), Some("UTC")),
        "{r}"
    );
    // A new policy without a type is a warning, as before.
    let new = json!({"period": "daily", "provider": "anthropic", "cost_limit": "8"});
    let r: Value = app.post("/api/policies", &new).await.json().await.unwrap();
    assert_eq!((r["created"].as_bool(), r["policy"]["type"].as_str()), (Some(true), Some("warn")), "{r}");
}

/// A limit whose scope names what a typo would gets `notes` saying so (the CLI and the dashboard print
/// them): a provider the price book does not know, a component no recent call named. Names in use get
/// none, and the field is left out.
#[tokio::test]
async fn a_limit_on_a_misspelled_scope_comes_back_with_notes() {
    let app = spawn_app().await;
    let price = json!({"provider": "openai", "model": "gpt-4o", "input": "2.5", "output": "10"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let record =
        json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 1, "output_tokens": 1});
    assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    app.wait_for_projections(app.events().await).await;

    let typo = json!({"period": "daily", "cost_limit": 5, "provider": "opneai", "component": "codx"});
    let set: Value = app.post("/api/policies", &typo).await.json().await.unwrap();
    assert_eq!(
        set["notes"],
        json!([
            "the price book has no provider `opneai` (did you mean `openai`? it has openai); if no call names it, this limit counts nothing",
            "no call in the last 90 days named component `codx` (did you mean `codex`? those seen: codex); if no call names it, this limit counts nothing"
        ]),
        "{set}"
    );
    let fine = json!({"period": "daily", "cost_limit": 5, "provider": "openai", "component": "codex", "model": "gpt-4o-2024-08-06"});
    let set: Value = app.post("/api/policies", &fine).await.json().await.unwrap();
    assert!(set.get("notes").is_none(), "{set}");
}
