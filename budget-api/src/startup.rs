//! Assembles the service: migrate, start the batching writer and the projection workers, serve HTTP.

use budget_events::ErrorCode;
use std::net::TcpListener;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::Context;
use budget_events::db::{self, migrate};
use budget_events::writer::{LogSignal, Writer};
use budget_projections::alerts::Alerts;
use budget_projections::usage_rollups::UsageRollups;
use budget_projections::{Runner, RunnerStatus};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::configuration::Settings;
use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::routes;
use crate::state::AppState;

pub struct Application {
    port: u16,
    server: Server,
    workers: Vec<JoinHandle<()>>,
    stop_workers: watch::Sender<bool>,
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
            let mut client = pool.get().await.with_context(|| format!("cannot connect to PostgreSQL at {where_}"))?;
            let applied = migrate::migrate(&mut client).await.context("database migration failed; start-up stopped")?;
            if !applied.is_empty() {
                tracing::info!(?applied, "database migrated");
            }
        }

        let signal = LogSignal::default();
        let (writer, _writer_task) = Writer::spawn(pool.clone(), signal.clone());
        let status = RunnerStatus::default();
        let (stop_workers, stopped) = watch::channel(false);
        let runner = Runner::new(UsageRollups, pool.clone(), status.clone());
        let alerts = Alerts { spike_multiple: settings.spike_multiple, webhooks: settings.webhooks.clone() };
        let alert_runner = Runner::new(alerts, pool.clone(), status.clone());
        let sweeper = sweep(writer.clone(), settings.sweep_interval, stopped.clone());
        let mut workers = vec![
            tokio::spawn(runner.run(signal.clone(), stopped.clone())),
            tokio::spawn(alert_runner.run(signal.clone(), stopped.clone())),
            tokio::spawn(sweeper),
        ];
        if !settings.webhooks.is_empty() {
            let delivery = budget_projections::webhooks::run(pool.clone(), settings.webhook_delivery, stopped.clone());
            workers.push(tokio::spawn(delivery));
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
            workers.push(tokio::spawn(refresher));
        }

        let (hub, hub_task) =
            crate::ws::hub::Hub::start(pool.clone(), signal.clone(), settings.ws.queue, stopped.clone()).await?;
        workers.push(hub_task);
        let state = web::Data::new(AppState {
            pool,
            writer,
            projections: status,
            tiers: settings.tiers.clone(),
            allocation_defaults: settings.allocation_defaults.clone(),
            unpriced: settings.unpriced,
            price_sources,
            hub,
            ws: settings.ws,
            assistant_llm: settings.assistant_llm.clone(),
            alerts: crate::state::AlertSettings {
                spike_multiple: settings.spike_multiple,
                webhooks: settings.webhooks.clone(),
            },
        });
        let openapi = ApiDoc::openapi();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::QueryConfig::default().error_handler(|err, _| {
                    ApiError::bad_request(
                        ErrorCode::InvalidParameter,
                        format!("{err}; see /api/docs for the parameters"),
                    )
                    .into()
                }))
                .wrap(actix_web::middleware::Logger::new("%r %s %Dms").log_target("budget::http"))
                .configure(routes::configure)
                .route(
                    "/api/docs",
                    web::get().to(|| async {
                        HttpResponse::PermanentRedirect().insert_header(("Location", "/api/docs/")).finish()
                    }),
                )
                .service(SwaggerUi::new("/api/docs/{_:.*}").url("/api/openapi.json", openapi.clone()))
                .default_service(web::to(routes::not_found))
        })
        .listen(listener)?
        .shutdown_timeout(settings.shutdown_timeout)
        .run();
        Ok(Application { port, server, workers, stop_workers })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server gracefully (tests; `budget start` relies on SIGINT/SIGTERM, which actix handles).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped. In-flight requests finish first; every acknowledged write was committed
    /// before it was acknowledged, so nothing acknowledged is lost. Then the projection workers stop.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let _ = self.stop_workers.send(true);
        for worker in self.workers {
            let _ = worker.await;
        }
        result
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
    }
    Ok(())
}
