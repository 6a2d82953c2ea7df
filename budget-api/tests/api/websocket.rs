//! WebSocket: each endpoint's messages caused over REST, the client's own messages, `?since=`,
//! two server processes on one database, and a client that never reads.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{spawn_app, spawn_app_with};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(address: &str, path: &str) -> Ws {
    let url = format!("{}{path}", address.replace("http://", "ws://"));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("the WebSocket handshake succeeds");
    ws
}

/// The next `budget_update` reflecting log position `position` (updates for earlier events, such as
/// the policy set up before, may still be on their way).
async fn update_at(ws: &mut Ws, position: &Value) -> Value {
    loop {
        let m = next_of(ws, "budget_update").await;
        if m["position"] == *position {
            return m;
        }
        assert!(m["position"].as_i64() < position.as_i64(), "an update past the one awaited: {m}");
    }
}

/// The next JSON message of `kind`, skipping others; fails after 10 s.
async fn next_of(ws: &mut Ws, kind: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame =
            tokio::time::timeout(left, ws.next()).await.unwrap_or_else(|_| panic!("no `{kind}` message in time"));
        match frame {
            Some(Ok(Message::Text(text))) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] == kind {
                    return v;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the connection ended while waiting for `{kind}`: {other:?}"),
        }
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn welcome(ws: &mut Ws, topic: &str) {
    let w = next_of(ws, "budget_update").await;
    assert_eq!(
        (w["topic"].as_str(), w["payload"]["message"].as_str()),
        (Some(topic), Some("connected to Budget")),
        "{w}"
    );
    assert!(w["timestamp"].is_string() && w["position"].is_number());
}

fn usage(cost: &str) -> Value {
    json!({"provider": "openai", "model": "gpt-4o", "component": "codex", "input_tokens": 100, "output_tokens": 50, "cost": cost})
}

#[tokio::test]
async fn budget_updates_follow_usage_recorded_over_rest() {
    let app = spawn_app().await;
    let policy =
        json!({"period": "daily", "type": "hard_limit", "cost_limit": "2", "token_limit": 1000, "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let mut ws = connect(&app.address, "/ws/budget/updates").await;
    welcome(&mut ws, "budget_events").await;
    let r: Value = app.post("/api/usage", &usage("0.5")).await.json().await.unwrap();
    let m = update_at(&mut ws, &r["position"]).await;
    assert_eq!(m["topic"], "budget_events");
    let p = &m["payload"];
    assert!(p["budget_id"].is_string() && p["policy_id"].is_string());
    let s = &p["summary"];
    assert_eq!(
        (s["period"].as_str(), s["total_cost"].to_string(), s["cost_limit"].to_string()),
        (Some("daily"), "0.5".into(), "2".into())
    );
    assert_eq!((s["cost_usage_percentage"].to_string(), s["total_tokens_used"].as_i64()), ("0.25".into(), Some(150)));
    assert_eq!((s["token_limit"].as_i64(), s["token_usage_percentage"].to_string()), (Some(1000), "0.15".into()));
    assert_eq!((s["remaining_cost"].to_string(), s["state"].as_str()), ("1.5".into(), Some("ok")));
    assert!(s["window_start"].is_string() && s["window_end"].is_string());
}

/// Renaming or archiving a budget changes what its windows' cards say (the name; whether they count at
/// all): each of its policies gets a `budget_update`, as for a change of the policy itself. The
/// dashboard kept an archived budget's cards until the next record.
#[tokio::test]
async fn renaming_or_archiving_a_budget_updates_its_windows() {
    let app = spawn_app().await;
    let policy = json!({"budget": "team", "period": "daily", "cost_limit": "2", "provider": "openai"});
    let set: Value = app.post("/api/policies", &policy).await.json().await.unwrap();
    let budget_id = set["policy"]["budget_id"].as_str().unwrap().to_string();
    let mut ws = connect(&app.address, "/ws/budget/updates").await;
    welcome(&mut ws, "budget_events").await;
    let renamed: Value = app
        .http
        .patch(app.url(&format!("/api/budgets/{budget_id}")))
        .json(&json!({"name": "lab"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let m = update_at(&mut ws, &renamed["position"]).await;
    assert_eq!(
        (m["payload"]["budget_name"].as_str(), &m["payload"]["policy_id"]),
        (Some("lab"), &set["policy"]["policy_id"])
    );
    let archived: Value =
        app.post(&format!("/api/budgets/{budget_id}/archive"), &json!({})).await.json().await.unwrap();
    let m = update_at(&mut ws, &archived["position"]).await;
    assert_eq!(m["payload"]["policy_id"], set["policy"]["policy_id"]);
}

#[tokio::test]
async fn usage_updates_announce_every_batch_of_records_whatever_its_policies() {
    let app = spawn_app().await;
    let mut ws = connect(&app.address, "/ws/budget/updates").await;
    welcome(&mut ws, "budget_events").await;
    send(&mut ws, json!({"type": "subscription", "payload": {"topic": "usage_updates"}})).await;
    // No policy matches this record: no budget_update, but a usage_update at its position.
    let r: Value = app.post("/api/usage", &usage("0.01")).await.json().await.unwrap();
    let m = next_of(&mut ws, "usage_update").await;
    assert_eq!(m["topic"], "usage_updates");
    assert_eq!(m["position"], r["position"], "{m}");
    assert_eq!((m["payload"]["records"].as_i64(), m["payload"]["repriced"].as_i64()), (Some(1), Some(0)));

    // One message for a batch of records, at the last one's position.
    let batch = json!({"records": [usage("0.01"), usage("0.02"), usage("0.03")]});
    let b: Value = app.post("/api/usage/batch", &batch).await.json().await.unwrap();
    let m = next_of(&mut ws, "usage_update").await;
    assert_eq!(m["payload"]["records"], 3, "{m}");
    assert_eq!(m["position"], b["results"][2]["position"], "{b}");
}

#[tokio::test]
async fn alerts_allocations_and_prices_each_reach_their_endpoint() {
    let app = spawn_app().await;
    let mut alerts = connect(&app.address, "/ws/budget/alerts").await;
    welcome(&mut alerts, "budget_alerts").await;
    let mut allocations = connect(&app.address, "/ws/budget/allocations").await;
    welcome(&mut allocations, "allocation_updates").await;
    let mut prices = connect(&app.address, "/ws/budget/prices").await;
    welcome(&mut prices, "price_updates").await;

    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "1", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    assert_eq!(app.post("/api/usage", &usage("0.85")).await.status().as_u16(), 201);
    let a = next_of(&mut alerts, "alert").await;
    let alert = &a["payload"]["alerts"][0];
    assert_eq!(
        (alert["type"].as_str(), alert["severity"].as_str()),
        (Some("cost_limit_approaching"), Some("warning")),
        "{a}"
    );
    assert!(alert["message"].as_str().unwrap().contains("85%") && alert["id"].is_string());

    let body = json!({"context_id": "task-1", "component": "rhetor", "tokens": 1000, "estimated_cost": "0.01"});
    let created: Value = app.post("/api/allocations", &body).await.json().await.unwrap();
    let m = next_of(&mut allocations, "allocation_update").await;
    let view = &m["payload"]["allocation"];
    assert_eq!(m["payload"]["allocation_id"], created["allocation_id"]);
    assert_eq!(
        (view["component"].as_str(), view["tokens_allocated"].as_i64(), view["is_active"].as_bool()),
        (Some("rhetor"), Some(1000), Some(true))
    );
    assert_eq!((view["tokens_used"].as_i64(), view["estimated_cost"].to_string()), (Some(0), "0.01".into()));
    let id = created["allocation_id"].as_str().unwrap();
    assert_eq!(app.post(&format!("/api/allocations/{id}/release"), &json!({})).await.status().as_u16(), 200);
    let m = next_of(&mut allocations, "allocation_update").await;
    assert_eq!(
        (m["payload"]["allocation"]["is_active"].as_bool(), m["payload"]["allocation"]["state"].as_str()),
        (Some(false), Some("released"))
    );

    let price = json!({"provider": "acme", "model": "m1", "input": "2", "output": "8"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    let m = next_of(&mut prices, "price_update").await;
    let p = &m["payload"];
    assert_eq!((p["provider"].as_str(), p["model"].as_str()), (Some("acme"), Some("m1")));
    assert_eq!(
        (p["update"]["input_cost_per_token"].to_string(), p["update"]["output_cost_per_token"].to_string()),
        ("0.000002".into(), "0.000008".into())
    );
    assert_eq!(p["update"]["source"], "manual");
    assert!(p["update"]["effective_from"].is_string());
}

#[tokio::test]
async fn client_messages_get_replies_and_malformed_ones_an_error_frame() {
    let app = spawn_app().await;
    let mut ws = connect(&app.address, "/ws/budget/updates").await;
    welcome(&mut ws, "budget_events").await;
    send(&mut ws, json!({"type": "subscription", "topic": "price_updates", "payload": {"topic": "price_updates"}, "timestamp": "2026-11-28T00:00:00Z"})).await;
    let r = next_of(&mut ws, "subscription").await;
    assert_eq!(
        (r["payload"]["success"].as_bool(), r["payload"]["topic"].as_str()),
        (Some(true), Some("price_updates"))
    );
    send(&mut ws, json!({"type": "authentication", "payload": {"client_id": "tester"}})).await;
    let r = next_of(&mut ws, "authentication").await;
    assert_eq!((r["payload"]["success"].as_bool(), r["payload"]["client_id"].as_str()), (Some(true), Some("tester")));
    send(&mut ws, json!({"type": "heartbeat", "payload": {}})).await;
    assert_eq!(next_of(&mut ws, "heartbeat").await["payload"]["status"], "ok");

    // Malformed, unknown type, unknown topic, binary: an error frame each, and the connection stays.
    ws.send(Message::Text("{not json".into())).await.unwrap();
    assert!(next_of(&mut ws, "error").await["payload"]["reason"].as_str().unwrap().contains("not a message"));
    send(&mut ws, json!({"type": "dance", "payload": {}})).await;
    assert!(next_of(&mut ws, "error").await["payload"]["reason"]
        .as_str()
        .unwrap()
        .contains("unknown message type `dance`"));
    send(&mut ws, json!({"type": "subscription", "payload": {"topic": "gossip"}})).await;
    assert!(next_of(&mut ws, "error").await["payload"]["reason"].as_str().unwrap().contains("unknown topic `gossip`"));
    send(&mut ws, json!({"type": "subscription", "payload": {}})).await;
    assert!(next_of(&mut ws, "error").await["payload"]["reason"].as_str().unwrap().contains("needs payload.topic"));
    ws.send(Message::Binary(vec![1u8, 2, 3].into())).await.unwrap();
    assert!(next_of(&mut ws, "error").await["payload"]["reason"].as_str().unwrap().contains("binary"));

    // The subscription works: a price change arrives here too; after unsubscribing it does not.
    let price = |input: &str| json!({"provider": "acme", "model": "m1", "input": input, "output": "8"});
    assert_eq!(app.post("/api/prices", &price("2")).await.status().as_u16(), 200);
    assert_eq!(next_of(&mut ws, "price_update").await["topic"], "price_updates");
    send(&mut ws, json!({"type": "unsubscription", "payload": {"topic": "price_updates"}})).await;
    assert_eq!(next_of(&mut ws, "unsubscription").await["payload"]["success"], true);
    assert_eq!(app.post("/api/prices", &price("3")).await.status().as_u16(), 200);
    send(&mut ws, json!({"type": "heartbeat"})).await;
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if let Ok(Some(Ok(Message::Text(t)))) = tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            assert!(!t.contains("price_update"), "unsubscribed, yet got {t}");
        }
    }
    // A non-WebSocket request to the endpoint is a clear 400.
    let r = app.http.get(app.url("/ws/budget/updates")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test]
async fn since_replays_what_a_client_missed() {
    let app = spawn_app().await;
    let policy = json!({"period": "daily", "type": "warn", "cost_limit": "10", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    // A client that was connected all along, until the second record.
    let mut earlier = connect(&app.address, "/ws/budget/updates").await;
    welcome(&mut earlier, "budget_events").await;
    let first: Value = app.post("/api/usage", &usage("1")).await.json().await.unwrap();
    let second: Value = app.post("/api/usage", &usage("2")).await.json().await.unwrap();
    update_at(&mut earlier, &second["position"]).await;
    drop(earlier);
    let since = first["position"].as_i64().unwrap();
    let mut ws = connect(&app.address, &format!("/ws/budget/updates?since={since}")).await;
    welcome(&mut ws, "budget_events").await;
    let m = next_of(&mut ws, "budget_update").await;
    assert_eq!(m["position"], second["position"], "only what came after `since`: {m}");
    assert_eq!(m["payload"]["summary"]["total_cost"].to_string(), "3");
    // Then live, without repeating the replay.
    let third: Value = app.post("/api/usage", &usage("0.5")).await.json().await.unwrap();
    let m = next_of(&mut ws, "budget_update").await;
    assert_eq!(m["position"], third["position"]);
}

#[tokio::test]
async fn a_client_on_one_process_sees_usage_recorded_through_another() {
    let a = spawn_app().await;
    let b = crate::helpers::spawn_replica(&a, |_| {}).await;
    let policy = json!({"period": "daily", "type": "warn", "cost_limit": "10", "provider": "openai"});
    assert_eq!(a.post("/api/policies", &policy).await.status().as_u16(), 201);
    let mut on_b = connect(&b, "/ws/budget/updates").await;
    welcome(&mut on_b, "budget_events").await;
    let r: Value = a.post("/api/usage", &usage("1.25")).await.json().await.unwrap();
    let m = update_at(&mut on_b, &r["position"]).await;
    assert_eq!(m["payload"]["summary"]["total_cost"].to_string(), "1.25");
}

#[tokio::test]
async fn a_client_that_never_reads_is_dropped_without_holding_up_the_others() {
    let app = spawn_app_with(|s| {
        s.ws.queue = 64;
        s.ws.send_timeout = Duration::from_secs(1);
    })
    .await;
    // Per-task windows: each record is its own window, so each makes its own budget_update.
    let policy = json!({"period": "per_task", "type": "warn", "token_limit": 1000000000});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let mut sleeper = connect(&app.address, "/ws/budget/updates").await;
    let mut watcher = connect(&app.address, "/ws/budget/prices").await;
    welcome(&mut watcher, "price_updates").await;
    let flood = |batch: usize| {
        let records: Vec<Value> = (0..5000)
            .map(|i| json!({"provider": "openai", "model": "gpt-4o", "component": "c", "context_id": format!("t-{batch}-{i}"),
                            "input_tokens": 1, "output_tokens": 0, "cost": "0.0001"}))
            .collect();
        json!({ "records": records })
    };
    for batch in 0..4 {
        assert!(app.post("/api/usage/batch", &flood(batch)).await.status().is_success());
    }
    // The hub is not held up: another client gets its update promptly.
    let price = json!({"provider": "acme", "model": "m1", "input": "2", "output": "8"});
    assert_eq!(app.post("/api/prices", &price).await.status().as_u16(), 200);
    next_of(&mut watcher, "price_update").await;
    // The sleeper was cut off: fewer than the 20,000 updates, then an error frame or the end.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (mut updates, mut error) = (0, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the slow client was never disconnected ({updates} updates read)");
        match tokio::time::timeout(Duration::from_secs(5), sleeper.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("budget_update") => updates += 1,
                    Some("error") => error = Some(v["payload"]["reason"].as_str().unwrap().to_string()),
                    _ => {}
                }
            }
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the slow client's connection is still open after {updates} updates"),
        }
    }
    assert!(updates < 20_001, "it was cut off, not served everything: {updates}");
    if let Some(reason) = error {
        assert!(reason.contains("behind"), "{reason}");
    }
    // And the service goes on.
    let (status, _) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
}

/// Runs the example client with `args` against `app` while `write(i)` gives a (path, body) to post
/// every 300 ms (the client may take a moment to start); returns what it printed once it has exited
/// by itself (`--count`).
async fn example_client_output(
    app: &crate::helpers::TestApp,
    args: &[&str],
    write: fn(i64) -> (&'static str, Value),
) -> String {
    let port = app.address.rsplit(':').next().unwrap().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/websocket_client.py");
    // The port as a shell that started the service with it has it: the client looks there by default.
    let child = tokio::process::Command::new("python3")
        .arg(script)
        .args(args)
        .env("BUDGET_PORT", &port)
        .env_remove("BUDGET_URL")
        .env_remove("BUDGET_HOST")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (CI installs it with the websockets library)");
    let (address, http) = (app.address.clone(), app.http.clone());
    let writes = tokio::spawn(async move {
        for i in 1.. {
            let (path, body) = write(i);
            let _ = http.post(format!("{address}{path}")).json(&body).send().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let output =
        tokio::time::timeout(Duration::from_secs(20), child.wait_with_output()).await.expect("it finishes").unwrap();
    writes.abort();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    stdout.into_owned()
}

/// The example client of the guide (`examples/websocket_client.py`, Python `websockets`) against a
/// live server: it connects, subscribes and prints the update.
#[tokio::test]
async fn the_python_example_client_prints_updates() {
    let app = spawn_app().await;
    let args = ["--topic", "price_updates", "--count", "3", "--raw"];
    let stdout = example_client_output(&app, &args, |i| {
        ("/api/prices", json!({"provider": "acme", "model": "m1", "input": i.to_string(), "output": "8"}))
    })
    .await;
    assert!(stdout.contains("connected to ws://"), "{stdout}");
    assert!(stdout.contains(r#""type":"subscription""#) && stdout.contains(r#""success":true"#), "{stdout}");
    assert!(stdout.contains(r#""type":"price_update""#) && stdout.contains(r#""model":"m1""#), "{stdout}");
}

/// The example client subscribes to every topic the server offers (`usage_updates` too, which no
/// endpoint sends by default) and prints each kind of update as a line a person reads, counts grouped
/// by thousands as the CLI prints them, dollars too.
#[tokio::test]
async fn the_python_example_client_follows_usage_updates() {
    let app = spawn_app().await;
    let policy = json!({"period": "daily", "type": "warn", "token_limit": 100_000, "cost_limit": "5000"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let args = ["--topic", "usage_updates", "--count", "6"];
    let stdout = example_client_output(&app, &args, |_| ("/api/usage", usage("0.01"))).await;
    assert!(stdout.contains("subscribed to usage_updates"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with('[') && l.ends_with("] usage: 1 record")), "{stdout}");
    let budget = |l: &str| {
        l.contains("] budget default daily all usage: $0.0")
            && l.contains(" of $5,000, ")
            && l.ends_with(" tokens of 100,000, ok")
    };
    assert!(stdout.lines().any(budget), "{stdout}");
}

#[tokio::test]
async fn a_connection_that_answers_no_pings_is_dropped() {
    let app = spawn_app_with(|s| s.ws.ping_interval = Duration::from_millis(200)).await;
    // A raw client that completes the handshake and then never reads nor answers.
    let mut silent = connect(&app.address, "/ws/budget/updates").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Reading now: the welcome and the pings are there, then the server's close.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pings = 0;
    loop {
        assert!(Instant::now() < deadline, "the silent connection was not dropped");
        match tokio::time::timeout(Duration::from_secs(5), silent.next()).await.expect("the server closes it") {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    assert!(pings >= 2, "the server pinged ({pings})");
}

/// Records one usage and measures how long it takes to reach the WebSocket and the rollups (which then
/// count `records` in all).
async fn time_to_visible(app: &crate::helpers::TestApp, records: i64) -> (Duration, Duration) {
    let mut ws = connect(&app.address, "/ws/budget/updates").await;
    welcome(&mut ws, "budget_events").await;
    let started = Instant::now();
    let r: Value = app.post("/api/usage", &usage("0.01")).await.json().await.unwrap();
    update_at(&mut ws, &r["position"]).await;
    let on_websocket = started.elapsed();
    loop {
        let (_, body) = app.get_json("/api/usage?period=daily&days=1").await;
        if body["totals"]["count"] == records {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{body}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (on_websocket, started.elapsed())
}

/// A webhook receiver that accepts connections and never answers holds up only its own deliveries:
/// with 150 alerts waiting for it, a new record still reaches the rollups and the WebSocket within a
/// second (before the outbox was delivered outside any transaction, each attempt held back every
/// reader of the log for the delivery timeout, 10 s).
#[tokio::test]
async fn a_hanging_webhook_receiver_stalls_neither_projections_nor_the_hub() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket); // read nothing, answer nothing
        }
    });
    let app = spawn_app_with(|s| {
        s.webhooks = budget_projections::alerts::Webhook::parse_list(&hook).unwrap();
        s.webhook_delivery.poll = Duration::from_millis(20);
    })
    .await;
    // Fifty budgets with a $1 daily hard limit each: one $1 record crosses three thresholds in each.
    for i in 0..50 {
        let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "1", "budget": format!("team-{i}")});
        assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    }
    assert_eq!(app.post("/api/usage", &usage("1")).await.status().as_u16(), 201);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let db = app.db.pool.get().await.unwrap();
        let pending: i64 =
            db.query_one("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL", &[]).await.unwrap().get(0);
        if pending >= 150 {
            break;
        }
        assert!(Instant::now() < deadline, "only {pending} deliveries pending");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // the worker is now waiting on the receiver

    let (on_websocket, in_rollups) = time_to_visible(&app, 2).await;
    eprintln!("with a hanging receiver: on the WebSocket after {on_websocket:?}, in the rollups after {in_rollups:?}");
    assert!(
        on_websocket < Duration::from_secs(1) && in_rollups < Duration::from_secs(1),
        "a record took {on_websocket:?} to reach the WebSocket and {in_rollups:?} the rollups"
    );
}

/// A write transaction held open in another database of the same server (a migration, a batch job)
/// does not hold back this database's readers: records written meanwhile reach the rollups and the
/// WebSocket within a second (with the cluster-wide `pg_snapshot_xmin` they waited for it to end).
#[tokio::test]
async fn a_transaction_open_in_another_database_stalls_neither_projections_nor_the_hub() {
    let app = spawn_app().await;
    let policy = json!({"period": "daily", "type": "warn", "cost_limit": "10", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let other = budget_events::db::testing::TestDb::new().await;
    let mut neighbour = other.pool.get().await.unwrap();
    let held = neighbour.transaction().await.unwrap();
    held.batch_execute("CREATE TABLE batch_job (n int); INSERT INTO batch_job VALUES (1)").await.unwrap();

    let (on_websocket, in_rollups) = time_to_visible(&app, 1).await;
    eprintln!("with another database's transaction open: on the WebSocket after {on_websocket:?}, in the rollups after {in_rollups:?}");
    held.rollback().await.unwrap();
    assert!(
        on_websocket < Duration::from_secs(1) && in_rollups < Duration::from_secs(1),
        "a record took {on_websocket:?} to reach the WebSocket and {in_rollups:?} the rollups"
    );
}

/// A close the client starts completes: the server answers the close frame and then ends the TCP
/// connection, as RFC 6455 has the server do. Clients such as Python's `websockets` and Node's `ws`
/// wait for that end (10 s and 30 s by default): the server used to answer the frame and then keep
/// the connection open until the client gave up, so every `async with websockets.connect(…)` took 10 s
/// to leave. (tokio-tungstenite shuts its side down as it closes, which ended the connection at once
/// and hid this: the client here is plain TCP, which waits as those clients do.)
#[tokio::test]
async fn a_close_started_by_the_client_ends_the_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let host = app.address.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&host).await.unwrap();
    let upgrade = format!(
        "GET /ws/budget/updates HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(upgrade.as_bytes()).await.unwrap();
    // Everything the server sends, as it comes: the 101, the welcome, and (later) its close frame.
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("connected to Budget") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "the connection ended before the welcome");
        received.extend_from_slice(&chunk[..n]);
    }
    assert!(received.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&received));
    // A close frame with code 1000, masked as a client's frames must be (the mask's bytes are zero),
    // sent a while after the connection opened, as a client's would be.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let started = Instant::now();
    tcp.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]).await.unwrap();
    let mut answered = None;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answered.get_or_insert(started.elapsed());
                    received.extend_from_slice(&chunk[..n]);
                }
            }
        }
    })
    .await;
    eprintln!("close frame answered after {answered:?}, the connection ended after {:?}", started.elapsed());
    assert!(answered.is_some(), "the server answered no close frame");
    assert!(received.ends_with(&[0x88, 0x02, 0x03, 0xe8]), "the last frame is the server's close, code 1000");
    assert!(ended.is_ok(), "the server did not end the TCP connection within 5 s of the close handshake");
}

/// One meaning of a percentage everywhere: `*_usage_percentage` and status `percent` count what was
/// spent; reservations are reported beside them (`*_committed_percentage`, `committed_percent`), which
/// is what the state and admission look at. (Before, the WebSocket's usage percentage included
/// reservations while alerts did not.)
#[tokio::test]
async fn usage_percentages_count_spend_and_committed_ones_add_reservations() {
    let app = spawn_app().await;
    let policy = json!({"period": "daily", "type": "hard_limit", "token_limit": 1000, "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let reserve =
        json!({"context_id": "t", "component": "codex", "provider": "openai", "tokens": 600, "estimated_cost": "0"});
    assert_eq!(app.post("/api/allocations", &reserve).await.status().as_u16(), 201);
    let mut ws = connect(&app.address, "/ws/budget/updates").await;
    welcome(&mut ws, "budget_events").await;
    let r: Value = app.post("/api/usage", &usage("0")).await.json().await.unwrap(); // 150 tokens
    let m = update_at(&mut ws, &r["position"]).await;
    let s = &m["payload"]["summary"];
    assert_eq!(
        (s["token_usage_percentage"].to_string(), s["token_committed_percentage"].to_string()),
        ("0.15".into(), "0.75".into()),
        "{s}"
    );
    let (_, status) = app.get_json("/api/status").await;
    let w = &status["windows"][0];
    assert_eq!((w["percent"].to_string(), w["committed_percent"].to_string()), ("15".into(), "75".into()), "{w}");
}

/// A counting alert (refusals of a window, records of an unpriced model) is announced again when its
/// count rises: the same id with its new `occurrences` (the second refusal changed the alert's count
/// without a message, so the page showed "1" until something else made it reload).
#[tokio::test]
async fn a_counting_alert_is_announced_again_when_its_count_rises() {
    let app = spawn_app().await;
    let mut alerts = connect(&app.address, "/ws/budget/alerts").await;
    welcome(&mut alerts, "budget_alerts").await;
    let policy = json!({"period": "daily", "type": "hard_limit", "cost_limit": "1", "provider": "openai"});
    assert_eq!(app.post("/api/policies", &policy).await.status().as_u16(), 201);
    let reserve = json!({"context_id": "task-1", "component": "rhetor", "provider": "openai", "tokens": 1000,
                         "estimated_cost": "2"});
    for count in 1..=2 {
        assert_eq!(app.post("/api/allocations", &reserve).await.status().as_u16(), 402);
        let a = next_of(&mut alerts, "alert").await;
        let alert = &a["payload"]["alerts"][0];
        assert_eq!(
            (alert["type"].as_str(), alert["occurrences"].as_i64()),
            (Some("budget_refused"), Some(count)),
            "{a}"
        );
    }
}
