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
