//! `budget start`: the whole service in one process.
//!
//! With `BUDGET_DATABASE_URL` it uses that database; without, it runs a private PostgreSQL cluster in
//! the data directory (kept across restarts) and stops it again on shutdown.

use anyhow::Context;
use budget_api::{Application, Settings};
use budget_events::db::embedded::{default_data_dir, EmbeddedOptions, EmbeddedPostgres};
use budget_events::db::{self, DbConfig};
use budget_events::domain::allocation::AllocationDefaults;
use budget_events::domain::policy::TierMap;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use crate::cli::StartArgs;

/// The database the service uses inside a private cluster.
const EMBEDDED_DATABASE: &str = "budget";

pub async fn run(args: StartArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("BUDGET_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let (database, embedded) = match &args.database_url {
        Some(url) => (db::parse_config(url).context("BUDGET_DATABASE_URL is not a valid PostgreSQL URL")?, None),
        None => {
            let dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
            let pg = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir, &EmbeddedOptions::default()))
                .await?
                .context("cannot start the private PostgreSQL (set BUDGET_DATABASE_URL to use an existing one)")?;
            let config = db::ensure_database(pg.config(), EMBEDDED_DATABASE)
                .await
                .context("cannot prepare the database in the private PostgreSQL")?;
            (config, Some(pg))
        }
    };

    let result = serve(&args, database).await;
    if let Some(pg) = embedded.filter(EmbeddedPostgres::started_here) {
        tracing::info!("stopping the private PostgreSQL");
        if let Err(e) = tokio::task::spawn_blocking(move || pg.stop()).await? {
            tracing::warn!(error = %e, "the private PostgreSQL did not stop cleanly");
        }
    }
    result
}

async fn serve(args: &StartArgs, database: DbConfig) -> anyhow::Result<()> {
    let described = db::describe(&database);
    let mut settings = Settings::new(args.host.clone(), args.port, database);
    if let Ok(map) = std::env::var("BUDGET_TIER_MAP") {
        settings.tiers = TierMap::parse(&map).map_err(anyhow::Error::msg)?;
    }
    if let Ok(sizes) = std::env::var("BUDGET_ALLOCATION_DEFAULTS") {
        settings.allocation_defaults = AllocationDefaults::parse(&sizes).map_err(anyhow::Error::msg)?;
    }
    if let Ok(unpriced) = std::env::var("BUDGET_UNPRICED") {
        settings.unpriced = budget_api::configuration::UnpricedPolicy::parse(&unpriced).map_err(anyhow::Error::msg)?;
    }
    if let Ok(sources) = std::env::var("BUDGET_PRICE_SOURCES") {
        settings.price_sources = budget_api::price_sources::parse_sources(&sources);
    }
    if let Ok(every) = std::env::var("BUDGET_PRICE_REFRESH") {
        let seconds =
            budget_events::period::parse_duration_seconds(&every).filter(|s| *s >= 60).with_context(|| {
                format!("BUDGET_PRICE_REFRESH is `{every}`; use a duration of at least 1m, e.g. 6h or 1d")
            })?;
        settings.price_refresh = std::time::Duration::from_secs(seconds as u64);
    }
    if let Ok(hooks) = std::env::var("BUDGET_ALERT_WEBHOOKS") {
        settings.webhooks = budget_projections::alerts::Webhook::parse_list(&hooks).map_err(anyhow::Error::msg)?;
    }
    if let Ok(multiple) = std::env::var("BUDGET_SPIKE_MULTIPLE") {
        settings.spike_multiple = multiple
            .trim()
            .parse::<rust_decimal::Decimal>()
            .ok()
            .filter(|m| *m > rust_decimal::Decimal::ONE)
            .with_context(|| format!("BUDGET_SPIKE_MULTIPLE is `{multiple}`; use a number above 1, e.g. 3"))?;
    }
    if let Ok(url) = std::env::var("BUDGET_ASSISTANT_LLM_URL") {
        let model = std::env::var("BUDGET_ASSISTANT_MODEL")
            .context("BUDGET_ASSISTANT_LLM_URL is set but BUDGET_ASSISTANT_MODEL is not; name the model to ask")?;
        settings.assistant_llm = Some(budget_api::assistant::narrative::LlmSettings {
            url,
            model,
            api_key: std::env::var("BUDGET_ASSISTANT_API_KEY").ok(),
            timeout: std::time::Duration::from_secs(30),
        });
    }
    let app = Application::build(settings).await?;
    let handle = app.handle();
    // Ctrl-C and SIGTERM: stop accepting, let in-flight requests finish, then stop.
    tokio::spawn(async move {
        let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down: finishing in-flight requests");
        handle.stop(true).await;
    });
    println!("Budget is serving http://{}:{} (database {described}); API docs at /api/docs", args.host, app.port());
    app.run_until_stopped().await.context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}
