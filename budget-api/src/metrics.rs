//! `GET /metrics`: what the service is doing, in Prometheus' text format.
//!
//! Counted as it happens: HTTP requests (by route template, method and status) and their latency;
//! the writer's batches (size, queue wait, decide + commit time and its stages) and each command's decision (seen
//! through [`WriteObserver`], so the domain crate needs no metrics library); records by cost source;
//! WebSocket connections and why the server dropped any. Read at scrape time, from where they live:
//! projection lag, webhook deliveries (the outbox), the connection pool. One registry per
//! [`Metrics`], so two services in one process (the tests) do not count into each other.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{get, web, HttpResponse};
use budget_events::domain::usage::CostSource;
use budget_events::ledger::{Command, CommandError, ItemStatus, Outcome, Written};
use budget_events::writer::{BatchReport, WriteError, WriteObserver};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::error::ApiError;
use crate::state::AppState;

/// Seconds: 0.5 ms to 10 s.
const LATENCY: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Commands or records in one batch.
const SIZES: [f64; 11] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 20000.0];

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    batches: IntCounterVec,
    batch_commands: Histogram,
    batch_items: Histogram,
    queue_wait: Histogram,
    write_seconds: Histogram,
    stage_seconds: HistogramVec,
    decisions: IntCounterVec,
    records: IntCounterVec,
    ws_open: IntGauge,
    ws_connections: IntCounter,
    ws_closed: IntCounterVec,
    // Set at scrape time.
    projection_lag_events: IntGaugeVec,
    projection_lag_seconds: prometheus::GaugeVec,
    webhooks: IntGaugeVec,
    webhook_failed_attempts: IntGauge,
    pool: IntGaugeVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry.register(Box::new(c.clone())).expect("registered once");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("a valid metric");
    registry.register(Box::new(h.clone())).expect("registered once");
    h
}

fn gauges(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry.register(Box::new(g.clone())).expect("registered once");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        let r = Registry::new();
        let http_seconds = HistogramVec::new(
            HistogramOpts::new("budget_http_request_duration_seconds", "HTTP request latency, by route template")
                .buckets(LATENCY.to_vec()),
            &["route", "method"],
        )
        .expect("a valid metric");
        r.register(Box::new(http_seconds.clone())).expect("registered once");
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new(
                "budget_writer_stage_seconds",
                "One committed batch's time in each stage of the write path: load (BEGIN, the ledger lock and \
                 the loads), decide, append (events, accounts, outcomes) and commit",
            )
            .buckets(LATENCY.to_vec()),
            &["stage"],
        )
        .expect("a valid metric");
        r.register(Box::new(stage_seconds.clone())).expect("registered once");
        let ws_open = IntGauge::new("budget_websocket_open_connections", "WebSocket connections open now")
            .expect("a valid metric");
        r.register(Box::new(ws_open.clone())).expect("registered once");
        let ws_connections = IntCounter::new("budget_websocket_connections_total", "WebSocket connections accepted")
            .expect("a valid metric");
        r.register(Box::new(ws_connections.clone())).expect("registered once");
        let lag_seconds = prometheus::GaugeVec::new(
            Opts::new("budget_projection_lag_seconds", "Age of the oldest event a projection has not applied"),
            &["projection"],
        )
        .expect("a valid metric");
        r.register(Box::new(lag_seconds.clone())).expect("registered once");
        let failed = IntGauge::new(
            "budget_webhook_failed_attempts",
            "Failed webhook delivery attempts recorded in the outbox (each is retried)",
        )
        .expect("a valid metric");
        r.register(Box::new(failed.clone())).expect("registered once");
        Metrics {
            http_requests: counter(
                &r,
                "budget_http_requests_total",
                "HTTP requests, by route template, method and status",
                &["route", "method", "status"],
            ),
            http_seconds,
            batches: counter(&r, "budget_writer_batches_total", "Write-path transactions, by outcome", &["outcome"]),
            batch_commands: histogram(&r, "budget_writer_batch_commands", "Commands decided in one transaction", &SIZES),
            batch_items: histogram(
                &r,
                "budget_writer_batch_items",
                "Items decided in one transaction: each usage record, and each other command, is one",
                &SIZES,
            ),
            queue_wait: histogram(
                &r,
                "budget_writer_queue_wait_seconds",
                "How long a batch's oldest command waited for the writer",
                &LATENCY,
            ),
            write_seconds: histogram(
                &r,
                "budget_writer_commit_seconds",
                "Deciding and committing one batch (one fsync)",
                &LATENCY,
            ),
            stage_seconds,
            decisions: counter(
                &r,
                "budget_decisions_total",
                "Enforcement decisions: command (usage, allocation, check), outcome (admitted, over_limit, refused, soft_limit_pressed) and the policy type that decided (only hard limits refuse; soft limits press)",
                &["command", "outcome", "policy_type"],
            ),
            records: counter(&r, "budget_records_total", "Usage records written, by cost source", &["cost_source"]),
            ws_open,
            ws_connections,
            ws_closed: counter(
                &r,
                "budget_websocket_closed_total",
                "WebSocket connections ended, by why (client, or dropped by the server: slow_consumer, no_pong, send_failed, replay_failed, shutdown)",
                &["reason"],
            ),
            projection_lag_events: gauges(
                &r,
                "budget_projection_lag_events",
                "Events in the log a projection has not applied",
                &["projection"],
            ),
            projection_lag_seconds: lag_seconds,
            webhooks: gauges(&r, "budget_webhook_deliveries", "Webhook deliveries in the outbox, by state", &["state"]),
            webhook_failed_attempts: failed,
            pool: gauges(&r, "budget_db_pool_connections", "The database connection pool", &["state"]),
            registry: r,
        }
    }
}

impl Metrics {
    pub fn websocket_opened(&self) {
        self.ws_connections.inc();
        self.ws_open.inc();
    }

    pub fn websocket_closed(&self, reason: &str) {
        self.ws_open.dec();
        self.ws_closed.with_label_values(&[reason]).inc();
    }

    fn decision(&self, command: &str, outcome: &str, policy_type: &str) {
        self.decisions.with_label_values(&[command, outcome, policy_type]).inc();
    }
}

impl WriteObserver for Metrics {
    fn batch(&self, b: &BatchReport) {
        self.batches.with_label_values(&[if b.committed { "committed" } else { "failed" }]).inc();
        self.batch_commands.observe(b.commands as f64);
        self.batch_items.observe(b.items as f64);
        self.queue_wait.observe(b.queue_wait.as_secs_f64());
        self.write_seconds.observe(b.write.as_secs_f64());
        if b.committed {
            let s = &b.stages;
            for (stage, took) in [("load", s.load), ("decide", s.decide), ("append", s.append), ("commit", s.commit)] {
                self.stage_seconds.with_label_values(&[stage]).observe(took.as_secs_f64());
            }
        }
    }

    fn command(&self, command: &Command, result: &Result<Written, WriteError>) {
        match (command, result) {
            (_, Ok((Outcome::Usage(u), _))) if !u.replayed => {
                for item in u.items.iter().filter(|i| i.status == ItemStatus::Recorded) {
                    let source = match item.cost_source {
                        Some(CostSource::Client) => "client",
                        Some(CostSource::PriceBook) => "price_book",
                        Some(CostSource::Unpriced) | None => "unpriced",
                    };
                    self.records.with_label_values(&[source]).inc();
                    if item.exceeded.is_empty() {
                        self.decision("usage", "admitted", "");
                    } else {
                        self.decision("usage", "over_limit", "hard_limit");
                    }
                }
            }
            (_, Ok((Outcome::Allocate(a), _))) if !a.replayed => self.decision("allocation", "admitted", ""),
            (Command::Allocate(_), Err(WriteError::Rejected(CommandError::BudgetExceeded(_)))) => {
                self.decision("allocation", "refused", "hard_limit")
            }
            (_, Ok((Outcome::Check(c), _))) => match (c.preflight.allowed, c.preflight.soft_pressed) {
                (false, _) => self.decision("check", "refused", "hard_limit"),
                (true, true) => self.decision("check", "soft_limit_pressed", "soft_limit"),
                (true, false) => self.decision("check", "admitted", ""),
            },
            _ => {}
        }
    }
}

/// Counts every request by its route template (not its path: ids would make a series each).
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let metrics = req.app_data::<web::Data<AppState>>().map(|s| s.metrics.clone());
    count_into(metrics, req, next).await
}

/// [`count_requests`] into `metrics`. An error from inside (the 500 `panics::catch` answers a
/// handler's panic with) is counted with its status too. It comes back without the request, so the
/// route template is matched before the request goes in (once, as it was after; a clone of the
/// request cannot be kept instead: actix's router needs the only handle to it).
async fn count_into(
    metrics: Option<std::sync::Arc<Metrics>>,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = metrics.as_ref().and_then(|_| req.match_pattern());
    let answered = next.call(req).await;
    if let Some(metrics) = metrics {
        let status = match &answered {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        let route = route.unwrap_or_else(|| "unmatched".into());
        let status = status.as_u16().to_string();
        metrics.http_requests.with_label_values(&[&route, &method, &status]).inc();
        metrics.http_seconds.with_label_values(&[&route, &method]).observe(started.elapsed().as_secs_f64());
    }
    answered
}

/// Every metric of this process, in Prometheus' text exposition format.
#[utoipa::path(tag = "health", responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")), security(("api_key" = ["read"])))]
#[get("/metrics")]
pub async fn scrape(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let m = &state.metrics;
    let client = state.pool.get().await?;
    for p in budget_projections::health::lag(&**client).await? {
        m.projection_lag_events.with_label_values(&[&p.name]).set(p.lag_events);
        m.projection_lag_seconds.with_label_values(&[&p.name]).set(p.lag_seconds);
    }
    let outbox = client
        .query_one(
            "SELECT count(*) FILTER (WHERE delivered_at IS NOT NULL) AS delivered,
                    count(*) FILTER (WHERE delivered_at IS NULL) AS pending,
                    COALESCE(sum(attempts - CASE WHEN delivered_at IS NULL THEN 0 ELSE 1 END), 0)::bigint AS failed
             FROM alert_outbox",
            &[],
        )
        .await?;
    m.webhooks.with_label_values(&["delivered"]).set(outbox.get("delivered"));
    m.webhooks.with_label_values(&["pending"]).set(outbox.get("pending"));
    m.webhook_failed_attempts.set(outbox.get("failed"));
    drop(client);
    let pool = state.pool.status();
    m.pool.with_label_values(&["max"]).set(pool.max_size as i64);
    m.pool.with_label_values(&["open"]).set(pool.size as i64);
    m.pool.with_label_values(&["idle"]).set(pool.available as i64);
    m.pool.with_label_values(&["waiting"]).set(pool.waiting as i64);

    let mut text = Vec::new();
    TextEncoder::new()
        .encode(&m.registry.gather(), &mut text)
        .map_err(|e| ApiError::Internal(format!("metrics could not be encoded: {e}")))?;
    Ok(HttpResponse::Ok().content_type(prometheus::TEXT_FORMAT).body(text))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix_web::middleware::from_fn;
    use actix_web::{web, App, HttpResponse, HttpServer};

    use prometheus::Encoder;

    use super::Metrics;

    /// A real server on port 0 with the metrics' count outside `panics::catch`, as `startup` orders
    /// them: a handler's panic is counted as the 500 it was answered with, under its route.
    #[actix_web::test]
    async fn a_request_whose_handler_panicked_is_counted_as_its_500() {
        let metrics = Arc::new(Metrics::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counted = metrics.clone();
        let server = HttpServer::new(move || {
            let counted = counted.clone();
            App::new()
                .wrap(from_fn(crate::panics::catch))
                .wrap(from_fn(move |req, next| super::count_into(Some(counted.clone()), req, next)))
                .route("/fine/{id}", web::get().to(|| async { HttpResponse::Ok().body("fine") }))
                .route("/boom/{id}", web::get().to(crate::panics::tests::divides_by_zero))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let http = reqwest::Client::new();
        for path in ["/boom/1", "/boom/2", "/fine/1"] {
            http.get(format!("{url}{path}")).send().await.expect("an answer");
        }
        handle.stop(true).await;

        let mut text = Vec::new();
        prometheus::TextEncoder::new().encode(&metrics.registry.gather(), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let count = |route: &str, status: &str| {
            let series = format!("budget_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"{status}\"}} ");
            text.lines().find_map(|l| l.strip_prefix(series.as_str())).map(str::to_string)
        };
        assert_eq!(count("/boom/{id}", "500").as_deref(), Some("2"), "{text}");
        assert_eq!(count("/fine/{id}", "200").as_deref(), Some("1"), "{text}");
    }
}
