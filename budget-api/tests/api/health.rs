use crate::helpers::spawn_app;

#[tokio::test]
async fn health_reports_the_database_and_each_projection() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["database"], "ok");
    let projections = body["projections"].as_array().unwrap();
    let names: Vec<&str> = projections.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alerts", "usage_rollups"]);
    assert!(projections.iter().all(|p| p["lag_events"] == 0));
    let tasks: Vec<(&str, &str)> = body["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap(), t["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tasks,
        [
            ("alerts", "running"),
            ("log_notifier", "running"),
            ("sweeper", "running"),
            ("usage_rollups", "running"),
            ("writer", "running"),
            ("ws_hub", "running")
        ]
    );
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let app = spawn_app().await;
    let (status, body) = app.get_json("/api/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

/// A failure inside the server is `internal_error` with a request id to report; its cause (here
/// PostgreSQL's own message about a missing table) goes to the log with that id, never to the client.
#[tokio::test]
async fn an_internal_error_gives_a_request_id_never_its_cause() {
    let app = spawn_app().await;
    let client = app.db.pool.get().await.unwrap();
    client.batch_execute("ALTER TABLE usage_rollups RENAME TO usage_rollups_gone").await.unwrap();
    let (status, body) = app.get_json("/api/usage?period=daily&days=1").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "internal_error");
    let request_id = body["error"]["details"]["request_id"].as_str().expect("a request id to report");
    assert!(request_id.parse::<uuid::Uuid>().is_ok(), "{request_id}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(request_id), "{message}");
    assert!(!message.contains("usage_rollups") && !message.contains("does not exist"), "the cause leaked: {message}");
}

/// A write transaction of this database held open for seconds holds back every projection; health
/// names it (pid, age, application name) and says `degraded` until it ends.
#[tokio::test]
async fn health_names_a_transaction_that_holds_the_log_back() {
    let app = spawn_app().await;
    let mut client = app.db.pool.get().await.unwrap();
    client.batch_execute("SET application_name = 'nightly-job'").await.unwrap();
    let held = client.transaction().await.unwrap();
    let pid: i32 = held.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0);
    held.batch_execute("CREATE TEMPORARY TABLE scratch (n int); INSERT INTO scratch VALUES (1)").await.unwrap();
    let (_, body) = app.get_json("/api/health").await;
    assert_eq!(body["status"], "healthy", "a fresh transaction is not named yet: {body}");
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let (status, body) = app.get_json("/api/health").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("degraded")), "{body}");
    let holder = &body["log_held_by"][0];
    assert_eq!((holder["pid"].as_i64(), holder["application_name"].as_str()), (Some(pid as i64), Some("nightly-job")));
    assert!(holder["age_seconds"].as_f64().unwrap() >= 3.0, "{holder}");
    held.rollback().await.unwrap();
    let (_, body) = app.get_json("/api/health").await;
    assert_eq!(body["status"], "healthy", "{body}");
}

/// An event a projection cannot apply (here a record with negative tokens, written straight into the
/// log as a bug or a hand edit could): health names it, and a replay fails on it instead of comparing
/// at the stuck checkpoint and passing.
#[tokio::test]
async fn health_names_the_event_a_projection_cannot_apply_and_replay_fails_on_it() {
    let app = spawn_app().await;
    let record = serde_json::json!({"provider": "openai", "model": "gpt-4o", "component": "c", "input_tokens": 10,
                                    "output_tokens": 1, "cost": "0.01"});
    assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);
    app.wait_for_projections(1).await;
    let client = app.db.pool.get().await.unwrap();
    let bad: i64 = client
        .query_one(
            "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version, payload)
             SELECT 'usage-' || id, 1, id, event_type, schema_version,
                    jsonb_set(jsonb_set(payload::jsonb, '{input_tokens}', '-1000'), '{record_id}', to_jsonb(id::text))
             FROM events, (SELECT gen_random_uuid() AS id) n WHERE event_type = 'UsageRecorded'
             RETURNING position",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(app.post("/api/usage", &record).await.status().as_u16(), 201);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let health = loop {
        let (_, health) = app.get_json("/api/health").await;
        let rollups = health["projections"].as_array().unwrap().iter().find(|p| p["name"] == "usage_rollups").cloned();
        if rollups.is_some_and(|p| p["failing_event"]["position"] == bad) {
            break health;
        }
        assert!(std::time::Instant::now() < deadline, "health does not name event {bad}: {health}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(health["status"], "degraded");
    let rollups = health["projections"].as_array().unwrap().iter().find(|p| p["name"] == "usage_rollups").unwrap();
    assert_eq!(rollups["failing_event"]["event_type"], "UsageRecorded", "{rollups}");
    assert_eq!(rollups["position"], bad - 1, "stuck just before it: {rollups}");

    let replay = app.post("/api/replay", &serde_json::json!({})).await.text().await.unwrap();
    let last: serde_json::Value = serde_json::from_str(replay.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "error", "{replay}");
    let message = last["message"].as_str().unwrap();
    assert!(message.contains(&format!("cannot apply event {bad} (UsageRecorded)")), "{message}");
}

/// The request id round trip: the client's `X-Request-Id` comes back, names the error, and is kept
/// with the events; without one, the server makes one.
#[tokio::test]
async fn a_request_id_comes_back_in_the_answer_the_error_and_the_event() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/api/status")).send().await.unwrap();
    let generated = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(generated.parse::<uuid::Uuid>().is_ok(), "{generated}");

    let bad =
        serde_json::json!({"provider": "", "model": "m", "component": "c", "input_tokens": 1, "output_tokens": 1});
    let r = app.http.post(app.url("/api/usage")).header("X-Request-Id", "req-42").json(&bad).send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-42");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["request_id"], "req-42", "{body}");

    let good =
        serde_json::json!({"provider": "p", "model": "m", "component": "c", "input_tokens": 1, "output_tokens": 1});
    let r = app.http.post(app.url("/api/usage")).header("X-Request-Id", "req-43").json(&good).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let db = app.db.pool.get().await.unwrap();
    let id: String = db.query_one("SELECT metadata::json->>'request_id' FROM events", &[]).await.unwrap().get(0);
    assert_eq!(id, "req-43");
}
