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
