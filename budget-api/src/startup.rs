//! Assembles the service: migrate, start the batching writer and the projection workers, serve HTTP.
//!
//! Every background task is supervised: if one panics or returns while the server runs, the process
//! logs which one and why, stops serving and exits non-zero, so that an orchestrator restarts it rather
//! than a "healthy" process answering 503s (or serving stale projections) for ever.

use std::net::TcpListener;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use budget_events::db::{self, migrate};
use budget_events::store::notify;
use budget_events::store::LogTail;
use budget_events::writer::{LogSignal, Writer};
use budget_projections::alerts::Alerts;
use budget_projections::usage_rollups::UsageRollups;
use budget_projections::{Runner, RunnerStatus};
use tokio::sync::watch;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::configuration::Settings;
use crate::openapi::ApiDoc;
use crate::routes;
use crate::state::AppState;
use crate::supervision::Tasks;

/// How long a connection may stay open without a request.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(120);

pub struct Application {
    port: u16,
    server: Server,
    tasks: Tasks,
    stop_workers: watch::Sender<bool>,
}

/// Why the service stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("the HTTP server failed: {0}")]
    Http(#[from] std::io::Error),
    #[error("the background task `{task}` {reason}; the service stopped so that it can be restarted whole")]
    TaskStopped { task: &'static str, reason: String },
}

impl Application {
    /// Migrates the database and binds the port; serving starts with [`Application::run_until_stopped`].
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        // Take the port first: a port in use stops start-up before anything else has begun.
        let listener = TcpListener::bind((settings.host.as_str(), settings.port)).with_context(|| {
            format!("cannot listen on {}:{} (is another budget running?)", settings.host, settings.port)
        })?;
        let port = listener.local_addr()?.port();
        let pool = db::pool(&settings.database, settings.pool_size);
        let where_ = db::describe(&settings.database);
        {
            let mut client = pool.get().await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot connect to PostgreSQL at {where_}: {}; check that it runs there and takes the connection, or give another with --database-url or BUDGET_DATABASE_URL (with neither, a private cluster runs)",
                    innermost(&e)
                )
            })?;
            let applied = migrate::migrate(&mut client).await.context("database migration failed; start-up stopped")?;
            match applied.as_slice() {
                [] => {}
                [only] => tracing::info!("database migrated: applied {only}"),
                [first, .., last] => {
                    tracing::info!("database migrated: applied {} migrations, {first} to {last}", applied.len())
                }
            }
        }

        let openapi = ApiDoc::openapi();
        let gate = crate::auth::guard::Gate::new(
            settings.security.clone(),
            crate::auth::access::AccessTable::from_openapi(&openapi),
            &settings.host,
        );
        let has_keys = {
            let client = pool.get().await?;
            settings.security.admin_key.is_some()
                || budget_events::store::keys::any_active(&**client, chrono::Utc::now()).await?
        };
        if !gate.loopback && !has_keys && !settings.security.allow_unauthenticated {
            anyhow::bail!(
                "budget would listen on {} without API keys, so anyone who can reach it could change every limit; \
                 set BUDGET_ADMIN_KEY (32+ random characters; then create keys with `budget keys create`), or listen \
                 on 127.0.0.1, or set BUDGET_ALLOW_UNAUTHENTICATED=true to run open on purpose",
                settings.host
            );
        }
        if !has_keys {
            tracing::warn!(
                host = %settings.host,
                "no API keys are configured: anyone who can reach this address may call every route; \
                 create an admin key with `budget keys create --scope admin` to require keys"
            );
        }
        let gate = web::Data::new(gate);

        let signal = LogSignal::default();
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
        let (writer, writer_task) = Writer::spawn_observed(
            pool.clone(),
            signal.clone(),
            budget_events::writer::MAX_ITEMS_PER_TRANSACTION,
            Some(metrics.clone()),
        );
        let status = RunnerStatus::default();
        let (stop_workers, stopped) = watch::channel(false);
        // The projections read each commit once, through one tail (the hub reads on its own: ws/hub.rs).
        let log = LogTail::new(db::pool(&settings.database, 1));
        let runner = Runner::new(UsageRollups, pool.clone(), status.clone()).sharing(log.clone());
        let alerts = Alerts { spike_multiple: settings.spike_multiple, webhooks: settings.webhooks.clone() };
        let alert_runner = Runner::new(alerts, pool.clone(), status.clone()).sharing(log.clone());
        let mut tasks = Tasks::new(settings.fault.clone());
        tasks.adopt_detached("writer", writer_task);
        tasks.spawn("usage_rollups", runner.run(signal.clone(), stopped.clone()));
        tasks.spawn("alerts", alert_runner.run(signal.clone(), stopped.clone()));
        tasks.spawn("sweeper", sweep(writer.clone(), settings.sweep_interval, stopped.clone()));
        // Other server processes on this database hear of this one's commits, and it of theirs, at once
        // instead of at their next poll.
        tasks.spawn("log_notifier", notify::run(settings.database.clone(), signal.clone(), stopped.clone()));
        if !settings.webhooks.is_empty() {
            let delivery = budget_projections::webhooks::run(pool.clone(), settings.webhook_delivery, stopped.clone());
            tasks.spawn("webhooks", delivery);
        }

        if settings.bundled_prices {
            apply_bundled_prices_once(&writer, &pool).await?;
        }
        let price_sources = crate::price_sources::SourceStatus::default();
        if !settings.price_sources.is_empty() {
            let refresher = crate::price_sources::run(
                writer.clone(),
                settings.price_sources.clone(),
                settings.price_refresh,
                price_sources.clone(),
                stopped.clone(),
            );
            tasks.spawn("price_sources", refresher);
        }

        let (hub, hub_task) =
            crate::ws::hub::Hub::start(pool.clone(), signal.clone(), settings.ws.queue, stopped.clone()).await?;
        tasks.spawn("ws_hub", hub_task);
        let state = web::Data::new(AppState {
            pool,
            writer,
            projections: status,
            tiers: settings.tiers.clone(),
            provider_aliases: settings.provider_aliases.clone(),
            allocation_defaults: settings.allocation_defaults.clone(),
            unpriced: settings.unpriced,
            max_record_cost: settings.max_record_cost,
            price_sources,
            tasks: tasks.states(),
            hub,
            metrics,
            ws: settings.ws,
            assistant_llm: settings.assistant_llm.clone(),
            gateway: settings.gateway.clone(),
            alerts: crate::state::AlertSettings {
                spike_multiple: settings.spike_multiple,
                webhooks: settings.webhooks.clone(),
            },
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(gate.clone())
                .wrap(actix_web::middleware::from_fn(crate::auth::guard::guard))
                .wrap(actix_web::middleware::from_fn(crate::panics::catch))
                .wrap(actix_web::middleware::from_fn(crate::metrics::count_requests))
                .wrap(actix_web::middleware::from_fn(crate::request_id::tag))
                // HEAD works wherever GET does (`curl -I`): routed as GET; HTTP/1 sends no body for it.
                .wrap_fn(|mut req, srv| {
                    if req.method() == actix_web::http::Method::HEAD {
                        req.head_mut().method = actix_web::http::Method::GET;
                    }
                    actix_web::dev::Service::call(srv, req)
                })
                .configure(routes::configure)
                .configure(crate::gateway::configure)
                .configure(crate::dashboard::configure)
                .route(
                    "/api/docs",
                    web::get().to(|| async {
                        HttpResponse::PermanentRedirect().insert_header(("Location", "/api/docs/")).finish()
                    }),
                )
                .service(SwaggerUi::new("/api/docs/{_:.*}").url("/api/openapi.json", openapi.clone()))
                .default_service(web::to(routes::no_route))
        })
        .listen(listener)?
        // Replies and WebSocket frames go out as soon as they are written. With Nagle's algorithm on
        // (actix's default), a frame written while the one before was unacknowledged waited for the
        // client's delayed ACK, up to 40 ms: commit → WebSocket delivery had its p95 at ~41 ms.
        .tcp_nodelay(true)
        // actix closes a connection after 5 s without a request by default; a client that reuses it
        // as it closes gets no answer (hyper's `IncompleteMessage`, not retried for a POST). HTTP
        // clients pool idle connections for longer (reqwest and hyper 90 s, Firefox 115 s), so the
        // server keeps them longer than that. A stop still closes idle connections at once.
        .keep_alive(KEEP_ALIVE)
        .shutdown_timeout(settings.shutdown_timeout)
        // After a response ends with its request unread (a WebSocket closed by its client), actix waits
        // this long for the client to close the socket, then closes it; RFC 6455 clients (Python's
        // `websockets`, Node's `ws`) wait for the server instead. actix sets this wait's deadline from
        // a clock it refreshes every 500 ms, and a deadline already past never wakes the connection:
        // at 50 ms the server never closed it, and each such client waited out its own timeout (10 s,
        // 30 s). Over 500 ms the deadline is always ahead: a close ends in 0.25–0.75 s.
        .client_disconnect_timeout(std::time::Duration::from_millis(750))
        .run();
        Ok(Application { port, server, tasks, stop_workers })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server gracefully (tests; `budget start` relies on SIGINT/SIGTERM, which actix handles).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped, or until a background task dies (then the server stops too and this
    /// returns [`ServiceError::TaskStopped`]). In-flight requests finish first; every acknowledged write
    /// was committed before it was acknowledged, so nothing acknowledged is lost. Then the workers stop.
    pub async fn run_until_stopped(self) -> Result<(), ServiceError> {
        let Application { mut server, mut tasks, stop_workers, .. } = self;
        let handle = server.handle();
        let (task, reason) = tokio::select! {
            result = &mut server => {
                let _ = stop_workers.send(true);
                tasks.stopped().await;
                return result.map_err(ServiceError::from);
            }
            ended = tasks.first_to_end() => ended,
        };
        tracing::error!(task, %reason, "a background task stopped; stopping the service");
        // The server future must run for the stop to be processed.
        let _ = tokio::join!(handle.stop(true), server);
        let _ = stop_workers.send(true);
        tasks.stopped().await;
        Err(ServiceError::TaskStopped { task, reason })
    }
}

/// Expires allocations whose time is up, every `interval`, until shut down. Two processes sweeping at
/// once never expire one allocation twice (the rows are locked and their state checked).
async fn sweep(writer: Writer, interval: std::time::Duration, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match writer.submit(budget_events::ledger::ExpireCommand { at: chrono::Utc::now() }).await {
            Ok(ids) if !ids.is_empty() => tracing::info!(expired = ids.len(), "expired allocations"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "allocation sweep failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
}

/// On first start (an empty price book) the bundled table is applied, so usage is priced from the start.
/// On a later start, a table that prices models the book lacks (an upgrade's) is said in the log:
/// applying it changes prices, which is an operator's call (`budget prices update`).
async fn apply_bundled_prices_once(writer: &Writer, pool: &budget_events::db::DbPool) -> anyhow::Result<()> {
    let client = pool.get().await?;
    let empty = client.query_one("SELECT NOT EXISTS (SELECT 1 FROM prices)", &[]).await?.get::<_, bool>(0);
    drop(client);
    if empty {
        let (checked, effective_from, prices) = crate::price_book::bundled();
        let command = budget_events::ledger::PricesCommand {
            prices,
            effective_from,
            source: budget_events::domain::price::PriceSource::Bundled,
            key: None,
            metadata: budget_events::EventMetadata { actor: Some("budget start".into()), ..Default::default() },
        };
        let outcome = writer.submit(command).await.context("cannot apply the bundled price table")?;
        tracing::info!(models = outcome.added.len(), checked, "applied the bundled price table");
    } else if let Some(news) = bundled_table_news(pool).await? {
        tracing::warn!("{news}");
    }
    Ok(())
}

/// What the bundled table would add to the price book, in a sentence; None when it adds no model.
/// Without it, an upgraded service left the new table's models unpriced, silently: their calls cost
/// $0 and no cost limit saw them.
pub async fn bundled_table_news(pool: &budget_events::db::DbPool) -> anyhow::Result<Option<String>> {
    let (checked, _, prices) = crate::price_book::bundled();
    let command = budget_events::ledger::PricesCommand {
        prices,
        effective_from: chrono::Utc::now(),
        source: budget_events::domain::price::PriceSource::Bundled,
        key: None,
        metadata: Default::default(),
    };
    let added = budget_events::writer::dry_run(pool, command).await?.added;
    if added.is_empty() {
        return Ok(None);
    }
    let mut shown = added.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
    if added.len() > 3 {
        shown.push_str(&format!(" and {} more", added.len() - 3));
    }
    Ok(Some(format!(
        "the bundled price table (checked {checked}) prices {} {} this price book has no price for ({shown}); \
         until `budget prices update` adds them, effective now, their calls are recorded unpriced \
         (`budget prices update --dry-run` lists every change it would make)",
        added.len(),
        if added.len() == 1 { "model" } else { "models" },
    )))
}

/// The root cause of an error: the pool wraps the driver's error, which wraps the socket's or the
/// server's, and each layer repeats the one below in its own message.
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(source) = e.source() {
        e = source;
    }
    e.to_string()
}
