//! A limit counts what was already spent in its window: a policy that starts counting (created, or
//! enabled again) opens its current window with the matching usage and reservations already there.

use chrono::{Duration, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

async fn spend(app: &TestApp, provider: &str, cost: &str, occurred_at: Option<String>) {
    let mut body = json!({"provider": provider, "model": "m", "component": "c", "input_tokens": 100,
                          "output_tokens": 10, "cost": cost});
    if let Some(at) = occurred_at {
        body["timestamp"] = json!(at);
    }
    let r = app.post("/api/usage", &body).await;
    assert_eq!(r.status().as_u16(), 201, "{}", r.text().await.unwrap());
}

/// A JSON number (or numeric string) as an exact decimal, so `8`, `8.0` and `"8.00"` compare equal.
fn dec(v: &Value) -> Decimal {
    v.to_string().trim_matches('"').parse().unwrap_or_else(|_| panic!("not a number: {v}"))
}

async fn openai_window(app: &TestApp) -> Value {
    let (status, body) = app.get_json("/api/status?provider=openai").await;
    assert_eq!(status, 200);
    body["windows"][0].clone()
}

/// The account is the fold of the log: explain agrees, and a replay finds no difference.
async fn assert_explained(app: &TestApp, policy_id: &str) {
    let (status, explained) = app.get_json(&format!("/api/policies/{policy_id}/explain")).await;
    assert_eq!(status, 200, "{explained}");
    assert_eq!(explained["matches"], true, "{explained}");
    let replay = app.post("/api/replay", &json!({})).await.text().await.unwrap();
    let done: Value = serde_json::from_str(replay.lines().last().unwrap()).unwrap();
    assert_eq!(done["differences"], 0, "{replay}");
}

#[tokio::test]
async fn a_new_limit_counts_the_usage_and_reservations_already_in_its_window() {
    let app = spawn_app().await;
    spend(&app, "openai", "8.00", None).await;
    spend(&app, "anthropic", "5.00", None).await; // another scope
    spend(&app, "openai", "4.00", Some((Utc::now() - Duration::days(2)).to_rfc3339())).await; // another window
    let reserved: Value = app
        .post(
            "/api/allocations",
            &json!({"context_id": "t-1", "component": "c", "provider": "openai", "model": "m", "tokens": 1000,
                    "estimated_cost": "0.50"}),
        )
        .await
        .json()
        .await
        .unwrap();

    let set = app
        .post(
            "/api/policies",
            &json!({"period": "daily", "type": "hard_limit", "provider": "openai", "cost_limit": "10"}),
        )
        .await;
    assert_eq!(set.status().as_u16(), 201);
    let set: Value = set.json().await.unwrap();
    let opening = &set["opening"];
    assert_eq!(dec(&opening["posted_cost"]), dec(&json!("8.0")), "{set}");
    assert_eq!(opening["records"], 1);
    assert_eq!(dec(&opening["pending_cost"]), dec(&json!("0.5")));
    assert_eq!(opening["allocations"], json!([reserved["allocation_id"]]));
    let policy_id = set["policy"]["policy_id"].as_str().unwrap().to_string();

    let window = openai_window(&app).await;
    assert_eq!(dec(&window["used_cost"]), dec(&json!("8.0")), "{window}");
    assert_eq!(dec(&window["reserved_cost"]), dec(&json!("0.5")));
    assert_eq!(window["records"], 1);

    // $8 spent + $0.50 reserved: a $2 call does not fit under $10, a $1 call does.
    let check =
        |cost: &str| json!({"provider": "openai", "model": "m", "component": "c", "input_tokens": 10, "cost": cost});
    let (_, refused) = (0, app.post("/api/usage/check", &check("2.00")).await.json::<Value>().await.unwrap());
    assert_eq!(refused["allowed"], false, "{refused}");
    let allowed: Value = app.post("/api/usage/check", &check("1.00")).await.json().await.unwrap();
    assert_eq!(allowed["allowed"], true, "{allowed}");

    // The reservation now pends in the new window too, and leaves it when released.
    let id = reserved["allocation_id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/api/allocations/{id}/release"), &json!({})).await.status().as_u16(), 200);
    assert_eq!(dec(&openai_window(&app).await["reserved_cost"]), dec(&json!("0.0")));

    let (_, as_of) = app
        .get_json(&format!(
            "/api/status?provider=openai&as_of={}",
            (Utc::now() + Duration::seconds(1)).to_rfc3339_opts(SecondsFormat::Millis, true)
        ))
        .await;
    let as_of = &as_of["windows"][0];
    assert_eq!((dec(&as_of["used_cost"]), dec(&as_of["reserved_cost"])), (dec(&json!(8)), dec(&json!(0))), "{as_of}");
    assert_explained(&app, &policy_id).await;

    // A window that ended before the policy existed is marked, not shown as a measured zero.
    assert!(window["note"].is_null(), "{window}");
    let before = (Utc::now() - Duration::days(2)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let (_, past) = app.get_json(&format!("/api/status?provider=openai&at={before}")).await;
    let note = past["windows"][0]["note"].as_str().unwrap_or_default();
    assert!(note.starts_with("not tracked before "), "{past}");
}

#[tokio::test]
async fn a_limit_enabled_again_counts_what_was_spent_while_it_was_off() {
    let app = spawn_app().await;
    let set: Value = app
        .post(
            "/api/policies",
            &json!({"period": "daily", "type": "hard_limit", "provider": "openai", "cost_limit": "10"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let policy_id = set["policy"]["policy_id"].as_str().unwrap().to_string();
    spend(&app, "openai", "1.00", None).await;
    assert_eq!(app.post(&format!("/api/policies/{policy_id}/disable"), &json!({})).await.status().as_u16(), 200);
    spend(&app, "openai", "3.00", None).await;
    let enabled = app
        .http
        .patch(app.url(&format!("/api/policies/{policy_id}")))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status().as_u16(), 200);
    let window = openai_window(&app).await;
    assert_eq!(dec(&window["used_cost"]), dec(&json!("4.0")), "{window}");
    assert_eq!(window["records"], 2);
    assert_explained(&app, &policy_id).await;
}

/// An opening balance is one row in `explain`; `?opening=true` lists what it is made of, record by
/// record (the records logged before the policy whose time and scope fall in the window, with their
/// corrections) and the reservations it took over, so that it can be checked like the rest.
#[tokio::test]
async fn explain_lists_an_opening_balance_record_by_record() {
    let app = spawn_app().await;
    spend(&app, "openai", "8.00", None).await;
    spend(&app, "openai", "0.25", None).await;
    spend(&app, "anthropic", "5.00", None).await; // another scope
    spend(&app, "openai", "4.00", Some((Utc::now() - Duration::days(2)).to_rfc3339())).await; // another window
    let set: Value = app
        .post("/api/policies", &json!({"period": "daily", "type": "warn", "provider": "openai", "cost_limit": "10"}))
        .await
        .json()
        .await
        .unwrap();
    let policy_id = set["policy"]["policy_id"].as_str().unwrap().to_string();
    spend(&app, "openai", "1.00", None).await; // posted after: a contribution of its own

    let (status, plain) = app.get_json(&format!("/api/policies/{policy_id}/explain")).await;
    assert_eq!(status, 200, "{plain}");
    assert!(plain.get("openings").is_none(), "only when asked: {plain}");
    let (status, x) = app.get_json(&format!("/api/policies/{policy_id}/explain?opening=true")).await;
    assert_eq!(status, 200, "{x}");
    let openings = x["openings"].as_array().unwrap();
    assert_eq!(openings.len(), 1, "{x}");
    assert_eq!(openings[0]["position"], x["contributions"][0]["position"], "{x}");
    let usage = openings[0]["usage"].as_array().unwrap();
    let costs: Vec<Decimal> = usage.iter().map(|u| dec(&u["cost"])).collect();
    assert_eq!(costs, [dec(&json!("8")), dec(&json!("0.25"))], "{x}");
    assert!(usage
        .iter()
        .all(|u| u["provider"] == "openai" && u["event_type"] == "UsageRecorded" && u["record_id"].is_string()));
    assert_eq!(usage[0]["tokens"], 110);
    assert_eq!(dec(&x["contributions"][0]["posted_cost"]), costs.iter().sum::<Decimal>());
    assert_eq!(openings[0]["allocations"], json!([]));
    let (status, _) = app.get_json(&format!("/api/policies/{policy_id}/explain?opening=maybe")).await;
    assert_eq!(status, 400);
}
