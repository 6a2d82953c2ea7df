use crate::helpers::spawn_app;

#[tokio::test]
async fn swagger_ui_and_the_openapi_document_are_served_offline() {
    let app = spawn_app().await;
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = no_redirect.get(app.url("/api/docs")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 308);
    assert_eq!(r.headers()["location"], "/api/docs/");

    let page = app.http.get(app.url("/api/docs/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("Swagger UI"));

    let (status, doc) = app.get_json("/api/openapi.json").await;
    assert_eq!(status, 200);
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for route in [
        "/api/health",
        "/api/usage",
        "/api/usage/batch",
        "/api/usage/summary",
        "/api/usage/records",
        "/api/usage/check",
        "/api/policies",
        "/api/policies/{policy_id}",
        "/api/policies/{policy_id}/disable",
        "/api/status",
        "/api/budgets",
        "/api/budgets/{budget_id}",
        "/api/budgets/{budget_id}/archive",
        "/api/budgets/{budget_id}/policies",
        "/api/budgets/{budget_id}/status",
        "/api/allocations",
        "/api/allocations/{allocation_id}/release",
        "/api/prices",
        "/api/prices/update",
        "/api/prices/calculate",
        "/api/prices/reprice",
        "/api/prices/recommendations",
        "/api/alerts",
        "/api/alerts/{alert_id}",
        "/api/alerts/{alert_id}/acknowledge",
    ] {
        assert!(paths.iter().any(|p| *p == route), "{route} missing from {paths:?}");
    }
}
