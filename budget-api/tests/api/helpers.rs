use budget_api::{Application, Settings};
use budget_events::db::testing::TestDb;
use serde_json::{json, Value};

pub struct TestApp {
    pub address: String,
    pub db: TestDb,
    pub http: reqwest::Client,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// The app with some settings changed (a faster allocation sweep, say).
pub async fn spawn_app_with(change: impl FnOnce(&mut Settings)) -> TestApp {
    show_service_logs();
    let db = TestDb::new().await;
    let mut settings = Settings::new("127.0.0.1", 0, db.config.clone());
    settings.shutdown_timeout = 2;
    settings.pool_size = 8;
    // Tests count events; the ones about prices turn the bundled table back on.
    settings.bundled_prices = false;
    change(&mut settings);
    let app = Application::build(settings).await.expect("the app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp { address, db, http: reqwest::Client::new() }
}

/// The service's warnings and errors go to the test's captured output, shown when the test fails: a
/// request that fails because the service stopped (a background task that ended stops it, by design)
/// then says which task and why. (`tiny_prices_sum_exactly_over_100000_records` once failed in CI with
/// only "IncompleteMessage" to go on.) Set `RUST_LOG` for more.
fn show_service_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false).with_test_writer().try_init();
}

/// A second server process on the same database (a replica); returns its address.
pub async fn spawn_replica(app: &TestApp, change: impl FnOnce(&mut Settings)) -> String {
    let mut settings = Settings::new("127.0.0.1", 0, app.db.config.clone());
    settings.shutdown_timeout = 2;
    settings.pool_size = 8;
    settings.bundled_prices = false;
    change(&mut settings);
    let replica = Application::build(settings).await.expect("the replica builds");
    let address = format!("http://127.0.0.1:{}", replica.port());
    tokio::spawn(replica.run_until_stopped());
    address
}

pub fn record(component: &str, input_tokens: i64) -> Value {
    json!({"provider": "openai", "model": "gpt-4o", "component": component, "context_id": "task-123",
           "task_type": "coding", "input_tokens": input_tokens, "output_tokens": 340, "cost": 0.0064})
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(body).send().await.unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http.post(self.url(path)).body(body).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    pub async fn events(&self) -> i64 {
        let client = self.db.pool.get().await.unwrap();
        client.query_one("SELECT count(*) FROM events", &[]).await.unwrap().get(0)
    }

    /// The first column of every row `sql` returns, in order.
    pub async fn column<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> Vec<T> {
        let client = self.db.pool.get().await.unwrap();
        client.query(sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
    }

    /// Waits until the projections have applied `n` events in all.
    pub async fn wait_for_projections(&self, n: i64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (_, health) = self.get_json("/api/health").await;
            let projections = health["projections"].as_array().unwrap();
            if projections.iter().all(|p| p["events_applied"].as_i64() == Some(n) && p["lag_events"] == 0) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "projections did not catch up: {health}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// Asserts a JSON error response with `status` and `code`; returns its message.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(response.status().as_u16(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    let message = body["error"]["message"].as_str().unwrap().to_string();
    assert!(!message.is_empty());
    message
}
