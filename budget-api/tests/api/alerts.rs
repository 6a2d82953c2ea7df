//! Alerts raised by the projection: thresholds, refusals, overage, unpriced models, spikes; rebuilds
//! that raise nothing again; acknowledgements that survive them; webhooks delivered at least once.

use std::time::{Duration, Instant};

use budget_projections::alerts::Alerts;
use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, spawn_app_with, TestApp};
use crate::stub::Stub;

/// Waits for the projections, then lists every alert (open and acknowledged), oldest first.
async fn alerts(app: &TestApp) -> Vec<Value> {
    app.wait_for_projections(app.events().await).await;
    let (status, body) = app.get_json("/api/alerts?all=true").await;
    assert_eq!(status, 200, "{body}");
    let mut list = body["alerts"].as_array().unwrap().clone();
    list.reverse();
    list
}

fn usage(cost: &str) -> Value {
    json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 100, "output_tokens": 0, "cost": cost})
}

#[tokio::test]
async fn crossing_80_95_and_100_percent_raises_three_alerts_once_even_after_a_rebuild() {
    let app = spawn_app().await;
    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "10", "provider": "openai",
                        "warning_threshold": 0.8, "action_threshold": 0.95});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let mut seen = Vec::new();
    for (cost, expected) in [("8", 1), ("1", 1), ("0.5", 2), ("0.5", 3), ("0.2", 3)] {
        assert_eq!(app.post("/api/usage", &usage(cost)).await.status().as_u16(), 201);
        seen = alerts(&app).await;
        assert_eq!(seen.len(), expected, "after {cost}: {seen:#?}");
    }
    let kinds: Vec<(&str, &str, &str)> = seen
        .iter()
        .map(|a| {
            (a["type"].as_str().unwrap(), a["severity"].as_str().unwrap(), a["details"]["threshold"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("cost_limit_approaching", "warning", "warning"),
            ("cost_limit_approaching", "warning", "action"),
            ("cost_limit_exceeded", "error", "limit"),
        ]
    );
    let first = &seen[0];
    assert_eq!((first["details"]["used"].as_str(), first["details"]["percentage"].as_str()), (Some("8"), Some("80")));
    assert!(first["message"].as_str().unwrap().contains("$8 of $10 used (80%)"), "{first}");
    assert!(first["budget_id"].is_string() && first["policy_id"].is_string());

    // Acknowledge the first; a second acknowledgement returns the first.
    let id = first["id"].as_str().unwrap();
    let r: Value =
        app.post(&format!("/api/alerts/{id}/acknowledge"), &json!({"by": "alice"})).await.json().await.unwrap();
    assert_eq!(
        (r["acknowledged"].as_bool(), r["acknowledged_by"].as_str(), r["already_acknowledged"].as_bool()),
        (Some(true), Some("alice"), Some(false))
    );
    let again: Value =
        app.post(&format!("/api/alerts/{id}/acknowledge"), &json!({"by": "bob"})).await.json().await.unwrap();
    assert_eq!(
        (again["acknowledged_by"].as_str(), again["already_acknowledged"].as_bool()),
        (Some("alice"), Some(true))
    );
    let listed = alerts(&app).await;
    let (_, open) = app.get_json("/api/alerts").await;
    assert_eq!(open["alerts"].as_array().unwrap().len(), 2, "the default lists open alerts only");
    let (_, warnings) = app.get_json("/api/alerts?all=true&severity=error").await;
    assert_eq!(warnings["alerts"].as_array().unwrap().len(), 1);

    // Rebuild from the whole log: the same three alerts, the acknowledgement kept.
    let rebuilt = budget_projections::rebuild(&Alerts::default(), &app.db.pool).await.unwrap();
    assert_eq!(rebuilt as i64, app.events().await);
    let after = alerts(&app).await;
    let ids = |v: &[Value]| v.iter().map(|a| a["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&listed), "a rebuild raises nothing again");
    assert_eq!((after[0]["acknowledged"].as_bool(), after[0]["acknowledged_by"].as_str()), (Some(true), Some("alice")));
    assert_eq!(after[0]["message"], listed[0]["message"]);

    assert_error(app.post("/api/alerts/not-an-id/acknowledge", &json!({})).await, 400, "invalid_id").await;
    let unknown = format!("/api/alerts/{}/acknowledge", uuid::Uuid::now_v7());
    assert_error(app.post(&unknown, &json!({})).await, 404, "not_found").await;
    let (status, _) = app.get_json("/api/alerts?severity=loud").await;
    assert_eq!(status, 400);
    let (status, _) = app.get_json("/api/alerts?type=bogus").await;
    assert_eq!(status, 400);
}

/// A limit lowered below what its current window already holds raises the alerts it now stands past
/// when it is changed, not at the window's next record (which may never come: the page showed the
/// window "exceeded" beside "No open alerts").
#[tokio::test]
async fn a_limit_lowered_below_its_windows_spend_raises_its_alerts_when_changed() {
    let app = spawn_app().await;
    let policy = |limit: &str| json!({"period": "daily", "type": "warn", "cost_limit": limit, "provider": "openai"});
    let created: Value = app.post("/api/policies", &policy("10")).await.json().await.unwrap();
    let id = created["policy"]["policy_id"].as_str().expect("the policy's id").to_string();
    assert_eq!(app.post("/api/usage", &usage("6")).await.status().as_u16(), 201);
    assert!(alerts(&app).await.is_empty(), "$6 of $10 is under every threshold");

    // Set again, lower: $6 of $7 is past the warning threshold only.
    assert!(app.post("/api/policies", &policy("7")).await.status().is_success());
    let seen = alerts(&app).await;
    let thresholds = |seen: &[Value]| -> Vec<String> {
        seen.iter()
            .map(|a| format!("{} {}", a["type"].as_str().unwrap(), a["details"]["threshold"].as_str().unwrap()))
            .collect()
    };
    assert_eq!(thresholds(&seen), ["cost_limit_approaching warning"], "{seen:#?}");
    assert!(seen[0]["message"].as_str().unwrap().contains("$6 of $7 used (85.7%)"), "{}", seen[0]);

    // Changed in place (the dashboard's "Change"): $6 of $5 is past the limit too; the warning stays one.
    let changed =
        app.http.patch(app.url(&format!("/api/policies/{id}"))).json(&json!({"cost_limit": "5"})).send().await.unwrap();
    assert!(changed.status().is_success(), "{}", changed.text().await.unwrap());
    let seen = alerts(&app).await;
    assert_eq!(
        thresholds(&seen),
        ["cost_limit_approaching warning", "cost_limit_approaching action", "cost_limit_exceeded limit"],
        "{seen:#?}"
    );
}

/// The same for a per-task limit: each task's window that the lowered limit now stands under raises
/// its alerts (its status says "exceeded" from then on, whether or not the task records again).
#[tokio::test]
async fn a_lowered_per_task_limit_raises_the_alerts_of_each_task_past_it() {
    let app = spawn_app().await;
    let policy = |limit: &str| json!({"period": "per_task", "type": "warn", "cost_limit": limit, "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy("1")).await.status().as_u16(), 201);
    for (task, cost) in [("task-a", "0.6"), ("task-b", "0.6"), ("task-c", "0.1")] {
        let mut record = usage(cost);
        record["context_id"] = json!(task);
        assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    }
    assert!(alerts(&app).await.is_empty(), "60% of $1 is under every threshold");
    assert!(app.post("/api/policies", &policy("0.5")).await.status().is_success());
    let mut raised: Vec<String> = alerts(&app)
        .await
        .iter()
        .map(|a| {
            format!("{} {}", a["details"]["window"].as_str().unwrap(), a["details"]["threshold"].as_str().unwrap())
        })
        .collect();
    raised.sort();
    assert_eq!(
        raised,
        [
            "task:task-a action",
            "task:task-a limit",
            "task:task-a warning",
            "task:task-b action",
            "task:task-b limit",
            "task:task-b warning",
        ],
        "task-c ($0.1 of $0.5) stays under every threshold"
    );
}

/// A zero limit ("no spend on this") is exceeded by the first record that costs anything: one alert,
/// without a percentage of zero to show (it raised none: every threshold was a fraction of the limit).
#[tokio::test]
async fn spend_under_a_zero_limit_raises_one_exceeded_alert() {
    let app = spawn_app().await;
    let zero = json!({"period": "daily", "type": "hard_limit", "cost_limit": "0", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &zero).await.status().as_u16(), 201);
    assert_eq!(app.post("/api/usage", &usage("0")).await.status().as_u16(), 201);
    assert!(alerts(&app).await.is_empty(), "nothing spent, nothing past a zero limit");
    for cost in ["0.25", "0.5"] {
        assert_eq!(app.post("/api/usage", &usage(cost)).await.status().as_u16(), 201);
    }
    let seen = alerts(&app).await;
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let a = &seen[0];
    assert_eq!((a["type"].as_str(), a["severity"].as_str()), (Some("cost_limit_exceeded"), Some("error")), "{a}");
    assert_eq!(
        a["message"].as_str().unwrap(),
        format!(
            "daily cost on provider=openai (budget default): $0.25 of $0 used in window {}, the limit is reached (hard_limit)",
            a["details"]["window"].as_str().unwrap()
        )
    );
    assert!(a["details"]["percentage"].is_null() && a["details"]["fraction"].is_null(), "{a}");
}

#[tokio::test]
async fn refusals_overage_and_unpriced_models_each_raise_one_counting_alert() {
    let app = spawn_app().await;
    let policy = json!({"period": "daily", "type": "hard_limit", "token_limit": 1000, "component": "codex"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let allocate =
        |tokens: i64| json!({"context_id": "t-1", "component": "codex", "tokens": tokens, "estimated_cost": "0.01"});
    let r: Value = app.post("/api/allocations", &allocate(800)).await.json().await.unwrap();
    let allocation_id = r["allocation_id"].as_str().unwrap().to_string();
    for _ in 0..3 {
        assert_eq!(app.post("/api/allocations", &allocate(500)).await.status().as_u16(), 402);
    }
    let check =
        json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 900, "cost": "0.01"});
    let r: Value = app.post("/api/usage/check", &check).await.json().await.unwrap();
    assert_eq!(r["allowed"], false);
    // Usage beyond the allocation: 900 of 800 reserved.
    let mut over = json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 900, "output_tokens": 0, "cost": "0.01"});
    over["allocation_id"] = json!(allocation_id);
    assert_eq!(app.post("/api/usage", &over).await.status().as_u16(), 201);
    // Two records of a model without a price.
    for _ in 0..2 {
        let unpriced = json!({"provider": "acme", "model": "mystery", "component": "other", "input_tokens": 10, "output_tokens": 0});
        assert_eq!(app.post("/api/usage", &unpriced).await.status().as_u16(), 201);
    }
    let all = alerts(&app).await;
    let of = |t: &str| all.iter().filter(|a| a["type"] == t).cloned().collect::<Vec<_>>();
    let refused = of("budget_refused");
    assert_eq!(refused.len(), 1, "one alert per window: {all:#?}");
    assert_eq!(refused[0]["occurrences"], 4, "three refused reservations and a refused check");
    assert_eq!(refused[0]["severity"], "error");
    let overage = of("overage");
    assert_eq!(overage.len(), 1);
    assert_eq!(overage[0]["details"]["overage_tokens"], 100);
    // Its cost ($0.01) stayed within the $0.01 reserved: no "($0)" beside the tokens, as if they were free.
    let message = overage[0]["message"].as_str().unwrap();
    assert!(message.contains("used 100 tokens beyond its allocation"), "{message}");
    assert!(message.contains("its cost stayed within what it reserved") && !message.contains("$0)"), "{message}");
    let unpriced = of("unpriced_model");
    assert_eq!((unpriced.len(), unpriced[0]["occurrences"].as_i64()), (1, Some(2)));
    assert!(unpriced[0]["message"].as_str().unwrap().starts_with("acme/mystery had no price at "));
    // The 900-token record took the window to 900 of 1,000 tokens: past the 80% warning.
    assert_eq!(of("token_limit_approaching").len(), 1, "{all:#?}");
}

/// One minute into the UTC hour `back` hours before the current one (RFC 3339).
fn hour(back: i64) -> String {
    let now = chrono::Utc::now();
    let top = now - chrono::Duration::seconds(now.timestamp() % 3600);
    (top - chrono::Duration::hours(back) + chrono::Duration::minutes(1)).to_rfc3339()
}

#[tokio::test]
async fn an_hour_far_above_the_trailing_average_is_a_spend_spike() {
    let app = spawn_app().await;
    // Ten steady hours at $1, each as if recorded when it happened (the log's times set so, then the
    // alerts folded again): a steady rate is never a spike, however young its history (the seventh
    // and eighth hours were, when hours without spend counted as $0 in the average).
    for back in (0..10).rev() {
        let mut r = usage("1");
        r["timestamp"] = json!(hour(back));
        assert_eq!(app.post("/api/usage", &r).await.status().as_u16(), 201);
    }
    app.wait_for_projections(app.events().await).await;
    let mut client = app.db.pool.get().await.unwrap();
    let tx = client.transaction().await.unwrap();
    // The log refuses edits by trigger; a fixture may bypass it (replica role skips triggers).
    tx.batch_execute(
        "SET LOCAL session_replication_role = replica;
         UPDATE events SET recorded_at = (payload::text::jsonb ->> 'occurred_at')::timestamptz
          WHERE event_type = 'UsageRecorded'",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    budget_projections::rebuild(&Alerts::default(), &app.db.pool).await.unwrap();
    assert!(alerts(&app).await.is_empty(), "a steady rate is not a spike: {:#?}", alerts(&app).await);
    // Then $3.5 more in the current hour ($4.5 in all): above 3x the average hour with spend, $1.
    let r = usage("3.5");
    assert_eq!(app.post("/api/usage", &r).await.status().as_u16(), 201);
    let all = alerts(&app).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!((all[0]["type"].as_str(), all[0]["details"]["spend"].as_str()), (Some("spend_spike"), Some("4.5")));
    assert_eq!(all[0]["details"]["trailing_hourly_average"], "1");
}

/// Records sent long after they happened (a back-fill of history, a client that was offline) count
/// in their hours but raise no spike: their hours' trailing day may still be arriving (a back-fill of
/// ten days in random order raised 64). Records sent as they happen are judged against them.
#[tokio::test]
async fn a_backfill_of_history_raises_no_spike() {
    let app = spawn_app().await;
    // A quarter of each of 23 past hours first, then the rest of one of them: $1 there against $0.25.
    let mut records = Vec::new();
    for back in 2..=24 {
        let mut r = usage("0.25");
        r["timestamp"] = json!(hour(back));
        records.push(r);
    }
    for _ in 0..3 {
        let mut r = usage("0.25");
        r["timestamp"] = json!(hour(5));
        records.push(r);
    }
    for r in &records {
        assert_eq!(app.post("/api/usage", r).await.status().as_u16(), 201);
    }
    assert!(alerts(&app).await.is_empty(), "{:#?}", alerts(&app).await);
    // The back-filled hours are the history a live record is judged against: (22 x 0.25 + 1) / 23.
    assert_eq!(app.post("/api/usage", &usage("1")).await.status().as_u16(), 201);
    let all = alerts(&app).await;
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!((all[0]["type"].as_str(), all[0]["details"]["spend"].as_str()), (Some("spend_spike"), Some("1")));
    assert_eq!(all[0]["details"]["trailing_hourly_average"], "0.2826086957");
}

#[tokio::test]
async fn a_flapping_webhook_receiver_gets_every_alert_at_least_once() {
    // Fails the first three deliveries and every fourth one after that.
    let receiver = Stub::start(|n, _| if n < 3 || n % 4 == 0 { (500, "{}".into()) } else { (200, "{}".into()) }).await;
    let slack = Stub::start(|_, _| (200, "ok".into())).await;
    let hooks = format!("{}, slack:{}", receiver.url, slack.url);
    let app = spawn_app_with(|s| {
        s.webhooks = budget_projections::alerts::Webhook::parse_list(&hooks).unwrap();
        s.webhook_delivery.retry_base = Duration::from_millis(20);
        s.webhook_delivery.poll = Duration::from_millis(20);
    })
    .await;
    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "10", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    assert_eq!(app.post("/api/usage", &usage("10")).await.status().as_u16(), 201);
    let raised: Vec<String> = alerts(&app).await.iter().map(|a| a["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(raised.len(), 3);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let db = app.db.pool.get().await.unwrap();
        let pending: i64 =
            db.query_one("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL", &[]).await.unwrap().get(0);
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries still pending: {pending}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bodies: Vec<Value> = receiver.bodies().iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    assert!(bodies.len() >= 6, "three failures, then each alert: {}", bodies.len());
    for id in &raised {
        assert!(bodies.iter().any(|b| b["alert_id"] == id.as_str()), "alert {id} was delivered");
    }
    let texts: Vec<Value> = slack.bodies().iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(texts.len(), 3, "{texts:#?}");
    assert!(texts.iter().all(|t| t["text"].as_str().unwrap().starts_with('[')));
    // A rebuild does not deliver again.
    let delivered = receiver.bodies().len();
    budget_projections::rebuild(&Alerts::default(), &app.db.pool).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.bodies().len(), delivered);
}

/// A delivery is claimed with a lease: while another worker's lease runs, the row is left alone; once
/// it has run out (that worker died mid-delivery), the row is claimed and delivered again.
#[tokio::test]
async fn a_delivery_whose_lease_ran_out_is_delivered_again() {
    let receiver = Stub::start(|_, _| (200, "{}".into())).await;
    let hooks = receiver.url.clone();
    let app = spawn_app_with(|s| {
        s.webhooks = budget_projections::alerts::Webhook::parse_list(&hooks).unwrap();
        s.webhook_delivery.poll = Duration::from_millis(20);
    })
    .await;
    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "10", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    assert_eq!(app.post("/api/usage", &usage("10")).await.status().as_u16(), 201);
    let wait_for = |n: usize| {
        let receiver = &receiver;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while receiver.bodies().len() < n {
                assert!(Instant::now() < deadline, "{} of {n} deliveries", receiver.bodies().len());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let db = app.db.pool.get().await.unwrap();
    // The worker records each delivery right after the receiver answered it.
    let recorded = || async {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pending: i64 =
                db.query_one("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL", &[]).await.unwrap().get(0);
            if pending == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{pending} deliveries still pending");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    wait_for(3).await;
    recorded().await;
    let one = "(SELECT alert_id FROM alert_outbox ORDER BY alert_id LIMIT 1)";
    // Another worker holds the lease and has not answered yet: nothing is sent.
    db.execute(
        &format!("UPDATE alert_outbox SET delivered_at = NULL, claimed_until = now() + interval '1 hour' WHERE alert_id = {one}"),
        &[],
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.bodies().len(), 3, "a leased delivery was sent again");
    // That worker died: its lease runs out and the delivery is made again.
    db.execute(
        &format!("UPDATE alert_outbox SET claimed_until = now() - interval '1 second' WHERE alert_id = {one}"),
        &[],
    )
    .await
    .unwrap();
    wait_for(4).await;
    recorded().await;
    assert_eq!(receiver.bodies().len(), 4, "delivered again once, not more");
}

/// Read your own writes: an acknowledgement answers with its log position, and a list read with
/// `min_position` shows it applied at once; a position the projection cannot reach in 2 s is a 503
/// `projection_lag`, one beyond the log a 400.
#[tokio::test]
async fn a_read_with_min_position_sees_the_write_it_names() {
    let app = spawn_app().await;
    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "10", "provider": "openai"});
    let set: Value = app.post("/api/policies", &policy).await.json().await.unwrap();
    assert!(set["position"].is_i64(), "a write answers with its position: {set}");
    let allocation = json!({"context_id": "t-1", "component": "codex", "tokens": 100, "estimated_cost": "0.01"});
    let reserved: Value = app.post("/api/allocations", &allocation).await.json().await.unwrap();
    assert!(reserved["position"].as_i64() > set["position"].as_i64(), "{reserved}");
    let (_, read) = app.get_json(&format!("/api/allocations/{}", reserved["allocation_id"].as_str().unwrap())).await;
    assert!(read.get("position").is_none(), "a read carries no write position: {read}");
    assert_eq!(app.post("/api/usage", &usage("10")).await.status().as_u16(), 201);
    let id = alerts(&app).await[0]["id"].as_str().unwrap().to_string();
    let ack: Value =
        app.post(&format!("/api/alerts/{id}/acknowledge"), &json!({"by": "alice"})).await.json().await.unwrap();
    let position = ack["acknowledgement_position"].as_i64().expect("the acknowledgement's position");
    let (status, body) = app.get_json(&format!("/api/alerts?acknowledged=true&min_position={position}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["alerts"].as_array().unwrap().iter().any(|a| a["id"] == id.as_str()), "{body}");

    let (status, body) = app.get_json(&format!("/api/alerts?min_position={}", position + 1000)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_parameter")), "{body}");

    // A transaction of this database held open keeps the projections from passing a new record.
    let mut client = app.db.pool.get().await.unwrap();
    let held = client.transaction().await.unwrap();
    held.batch_execute("CREATE TEMPORARY TABLE scratch (n int); INSERT INTO scratch VALUES (1)").await.unwrap();
    let recorded: Value = app.post("/api/usage", &usage("1")).await.json().await.unwrap();
    let position = recorded["position"].as_i64().unwrap();
    let (status, body) = app.get_json(&format!("/api/usage?period=daily&days=1&min_position={position}")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("projection_lag")), "{body}");
    held.rollback().await.unwrap();
    let (status, body) = app.get_json(&format!("/api/usage?period=daily&days=1&min_position={position}")).await;
    assert_eq!((status, body["totals"]["count"].as_i64()), (200, Some(2)), "{body}");
}

/// An unpriced model's alert says how to price the records it counts, and doing what it says prices
/// them: a price set now takes effect now, after the records, so the commands carry the first
/// record's time.
#[tokio::test]
async fn following_an_unpriced_models_alert_prices_its_records() {
    let app = spawn_app().await;
    let first = (chrono::Utc::now() - chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for timestamp in [Some(first.clone()), None] {
        let mut record = json!({"provider": "acme", "model": "mystery", "component": "c", "input_tokens": 1_000_000, "output_tokens": 0});
        if let Some(ts) = timestamp {
            record["timestamp"] = json!(ts);
        }
        assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    }
    let all = alerts(&app).await;
    let alert = all.iter().find(|a| a["type"] == "unpriced_model").expect("an unpriced_model alert");
    let message = alert["message"].as_str().unwrap();
    assert_eq!(alert["details"]["first_record_at"], json!(first.replace("+00:00", "Z")), "{alert}");
    let since = alert["details"]["first_record_at"].as_str().unwrap();
    assert!(
        message.contains(&format!("budget prices set acme mystery --input … --output … --effective-from {since}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("budget prices reprice --provider acme --model mystery --since {since}")),
        "{message}"
    );

    // A price set now is not in effect at the records' time: a re-price leaves them, and says so.
    let reprice = json!({"provider": "acme", "model": "mystery", "since": since});
    let now = json!({"provider": "acme", "model": "mystery", "input": "2", "output": "0"});
    assert_eq!(app.post("/api/prices", &now).await.status().as_u16(), 200);
    let missed: Value = app.post("/api/prices/reprice", &reprice).await.json().await.unwrap();
    assert_eq!((missed["records"].as_i64(), missed["unpriced_records"].as_i64()), (Some(0), Some(2)), "{missed}");
    assert_eq!(missed["first_unpriced_at"].as_str().unwrap().get(..19), Some(&since[..19]), "{missed}");

    let price = json!({"provider": "acme", "model": "mystery", "input": "2", "output": "0", "effective_from": since});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let done: Value = app.post("/api/prices/reprice", &reprice).await.json().await.unwrap();
    assert_eq!((done["records"].as_i64(), done["total_delta"].to_string()), (Some(2), "4".into()), "{done}");
    assert_eq!(done["unpriced_records"], 0, "{done}");
    assert!(done.get("first_unpriced_at").is_none(), "{done}");
}

/// A misspelled model's alert advised pricing the typo as if it were a model of its own ("price them
/// with `budget prices set openai gtp-4o --input … --output …`"). Read now, it names the model the
/// name misspells and fills in that model's price, so that following it counts the records at it.
#[tokio::test]
async fn a_misspelled_models_alert_names_the_model_and_its_price() {
    let app = spawn_app().await;
    let price = json!({"provider": "openai", "model": "gpt-4o", "input": "2.5", "output": "10", "cached_input": "1.25",
                       "effective_from": "2024-01-01T00:00:00Z"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let record = json!({"provider": "openai", "model": "gtp-4o", "component": "c", "input_tokens": 1_000_000, "output_tokens": 0});
    assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    let all = alerts(&app).await;
    let alert = all.iter().find(|a| a["type"] == "unpriced_model").expect("an unpriced_model alert");
    let since = alert["details"]["first_record_at"].as_str().unwrap();
    let hint = alert["hint"].as_str().unwrap_or_else(|| panic!("a hint: {alert}"));
    assert!(hint.starts_with("did you mean openai/gpt-4o? "), "{hint}");
    let set =
        format!("budget prices set openai gtp-4o --input 2.5 --output 10 --cached-input 1.25 --effective-from {since}");
    assert!(hint.contains(&set), "{hint}");
    let (status, one) = app.get_json(&format!("/api/alerts/{}", alert["id"].as_str().unwrap())).await;
    assert_eq!((status, &one["hint"]), (200, &alert["hint"]), "{one}");

    // Its price, as the hint gives it, counts the record at gpt-4o's rate; then nothing is left to hint.
    let typo = json!({"provider": "openai", "model": "gtp-4o", "input": "2.5", "output": "10", "cached_input": "1.25",
                      "effective_from": since});
    assert_eq!(app.post("/api/prices", &typo).await.status().as_u16(), 200);
    let reprice = json!({"provider": "openai", "model": "gtp-4o", "since": since});
    let done: Value = app.post("/api/prices/reprice", &reprice).await.json().await.unwrap();
    assert_eq!((done["records"].as_i64(), done["total_delta"].to_string()), (Some(1), "2.5".into()), "{done}");
    let all = alerts(&app).await;
    let alert = all.iter().find(|a| a["type"] == "unpriced_model").unwrap();
    assert!(alert.get("hint").is_none(), "the name has a price now: {alert}");

    // A model the price book has nothing like gets no hint.
    let record =
        json!({"provider": "acme", "model": "mystery", "component": "c", "input_tokens": 1, "output_tokens": 0});
    assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    let all = alerts(&app).await;
    let mystery = all.iter().find(|a| a["details"]["model"] == "mystery").unwrap();
    assert!(mystery.get("hint").is_none(), "{mystery}");
}

/// A model newer than the price book (`claude-opus-4-7` beside `claude-opus-4-1`) was hinted as a typo
/// of the older one, with the older one's price: following it would count the calls at three times
/// what they cost. Another version of a model is another model: no hint.
#[tokio::test]
async fn a_newer_versions_alert_is_not_hinted_as_a_typo_of_an_older_one() {
    let app = spawn_app().await;
    let price = json!({"provider": "anthropic", "model": "claude-opus-4-1", "input": "15", "output": "75",
                       "effective_from": "2024-01-01T00:00:00Z"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    for model in ["claude-opus-4-7", "claude-opus-4-l"] {
        let record =
            json!({"provider": "anthropic", "model": model, "component": "c", "input_tokens": 1, "output_tokens": 0});
        assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    }
    let all = alerts(&app).await;
    let alert = |model: &str| all.iter().find(|a| a["details"]["model"] == model).unwrap().clone();
    assert!(alert("claude-opus-4-7").get("hint").is_none(), "{}", alert("claude-opus-4-7"));
    let typo = alert("claude-opus-4-l");
    assert!(
        typo["hint"].as_str().unwrap_or_default().starts_with("did you mean anthropic/claude-opus-4-1? "),
        "{typo}"
    );
}

/// A model priced after its first calls (an upgrade's `budget prices update` brought its price, effective
/// then): its alert still advised "price them with `budget prices set … --input … --output …`" as if
/// the book had no price. Read now, it says since when the book has one and fills the commands in with
/// it; followed, the records before it are priced and nothing is left to hint.
#[tokio::test]
async fn a_model_priced_after_its_first_calls_is_hinted_with_its_price() {
    let app = spawn_app().await;
    let record = json!({"provider": "anthropic", "model": "claude-opus-4-7", "component": "c", "input_tokens": 1_000_000, "output_tokens": 0});
    assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    let price = json!({"provider": "anthropic", "model": "claude-opus-4-7", "input": "5", "output": "25", "cached_input": "0.5"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let all = alerts(&app).await;
    let alert = all.iter().find(|a| a["type"] == "unpriced_model").expect("an unpriced_model alert");
    let since = alert["details"]["first_record_at"].as_str().unwrap();
    let hint = alert["hint"].as_str().unwrap_or_else(|| panic!("a hint: {alert}"));
    assert!(hint.starts_with("anthropic/claude-opus-4-7 has a price since "), "{hint}");
    let set = format!(
        "budget prices set anthropic claude-opus-4-7 --input 5 --output 25 --cached-input 0.5 --effective-from {since}"
    );
    assert!(hint.contains(&set), "{hint}");

    let earlier = json!({"provider": "anthropic", "model": "claude-opus-4-7", "input": "5", "output": "25",
                         "cached_input": "0.5", "effective_from": since});
    assert_eq!(app.post("/api/prices", &earlier).await.status().as_u16(), 200);
    let reprice = json!({"provider": "anthropic", "model": "claude-opus-4-7", "since": since});
    let done: Value = app.post("/api/prices/reprice", &reprice).await.json().await.unwrap();
    assert_eq!((done["records"].as_i64(), done["total_delta"].to_string()), (Some(1), "5".into()), "{done}");
    let all = alerts(&app).await;
    let alert = all.iter().find(|a| a["type"] == "unpriced_model").unwrap();
    assert!(alert.get("hint").is_none(), "its records have a price now: {alert}");
}
