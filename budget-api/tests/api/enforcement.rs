//! The enforcement accounts under concurrency: the log and the accounts never disagree.

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::helpers::spawn_app;

/// 500 records raced from 50 connections against one hard-limited window: none lost, the account equals
/// the fold of the log, and exactly the records that took the window past its limit, in commit order,
/// are flagged over_limit.
#[tokio::test]
async fn concurrent_usage_against_a_hard_limit_is_counted_exactly() {
    let app = spawn_app().await;
    let policy: Value = app
        .post(
            "/api/policies",
            &json!({"period": "daily", "type": "hard_limit", "provider": "openai", "cost_limit": "3.00"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let policy_id = policy["policy"]["policy_id"].as_str().unwrap().to_string();

    let client = reqwest::Client::builder().pool_max_idle_per_host(50).build().unwrap();
    let mut tasks = Vec::new();
    for worker in 0..50 {
        let (client, url) = (client.clone(), app.url("/api/usage"));
        tasks.push(tokio::spawn(async move {
            let mut flagged = Vec::new();
            for i in 0..10 {
                let body = json!({"provider": "openai", "model": "gpt-4o", "component": format!("w{worker}"),
                                  "input_tokens": 100, "output_tokens": i, "cost": "0.01"});
                let r: Value = client.post(&url).json(&body).send().await.unwrap().json().await.unwrap();
                flagged.push((r["position"].as_i64().unwrap(), r["over_limit"].as_bool().unwrap()));
            }
            flagged
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.unwrap());
    }
    assert_eq!(outcomes.len(), 500);
    assert_eq!(app.events().await, 502, "500 records, the budget and its policy: none lost");

    // Commit order is log order: the running total passes 3.00 at the 301st record.
    outcomes.sort();
    for (n, (_, over)) in outcomes.iter().enumerate() {
        assert_eq!(*over, n >= 300, "record #{} in commit order", n + 1);
    }
    let db = app.db.pool.get().await.unwrap();
    let account = db
        .query_one(
            "SELECT posted_cost, posted_tokens, records FROM policy_accounts WHERE policy_id = $1::text::uuid",
            &[&policy_id],
        )
        .await
        .unwrap();
    let folded = db
        .query_one(
            "SELECT sum((payload::json->>'cost')::numeric), sum((payload::json->>'input_tokens')::bigint + (payload::json->>'output_tokens')::bigint), count(*)
             FROM events WHERE event_type = 'UsageRecorded' AND (payload::json->'postings')::jsonb @> jsonb_build_array(jsonb_build_object('policy_id', $1::text))",
            &[&policy_id],
        )
        .await
        .unwrap();
    assert_eq!(account.get::<_, Decimal>(0), folded.get::<_, Decimal>(0));
    assert_eq!(account.get::<_, Decimal>(0), Decimal::new(500, 2));
    assert_eq!(Decimal::from(account.get::<_, i64>(1)), folded.get::<_, Decimal>(1));
    assert_eq!(account.get::<_, i64>(2), folded.get::<_, i64>(2));
}
