//! `budget start`: the whole service in one process.
//!
//! With `BUDGET_DATABASE_URL` it uses that database; without, it runs a private PostgreSQL cluster in
//! the data directory (kept across restarts) and stops it again on shutdown.

use anyhow::Context;
use budget_api::configuration::{self, DatabaseLocation};
use budget_api::{Application, Settings};
use budget_events::db::embedded::{default_data_dir, EmbeddedOptions, EmbeddedPostgres};
use budget_events::db::{self, DbConfig};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

use crate::cli::StartArgs;

/// The database the service uses inside a private cluster.
const EMBEDDED_DATABASE: &str = "budget";

pub async fn run(args: StartArgs) -> anyhow::Result<()> {
    let directives = configuration::log_filter();
    let filter = EnvFilter::try_new(&directives).map_err(|e| {
        anyhow::anyhow!("BUDGET_LOG is `{directives}`; {e}; use a level (error, warn, info, debug, trace) or directives such as info,budget=debug")
    })?;
    match configuration::log_format()? {
        // Colours only on a terminal: a log file or a journal gets the text alone.
        configuration::LogFormat::Text => tracing_subscriber::fmt()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_env_filter(filter)
            .init(),
        // One object per line; the request's span (with its request_id) in each.
        configuration::LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .init(),
    }

    // Every variable is checked before anything starts; the database is filled in once it is known (a
    // private cluster's socket exists only after it has started).
    let mut settings = Settings::from_env(DbConfig::new())?;
    if let Some(host) = &args.host {
        settings.host = host.clone();
    }
    if let Some(port) = args.port {
        settings.port = port;
    }
    let location = match &args.database_url {
        Some(url) => DatabaseLocation::Url(Box::new(
            db::parse_config(url).context("--database-url is not a valid PostgreSQL URL")?,
        )),
        None => match DatabaseLocation::from_env()? {
            DatabaseLocation::Private(dir) => DatabaseLocation::Private(args.data_dir.clone().or(dir)),
            url => url,
        },
    };
    let (database, embedded) = match location {
        DatabaseLocation::Url(config) => (*config, None),
        DatabaseLocation::Private(dir) => {
            let pg = private_cluster(dir)
                .await
                .context("cannot start the private PostgreSQL (set BUDGET_DATABASE_URL to use an existing one)")?;
            let config = db::ensure_database(pg.config(), EMBEDDED_DATABASE)
                .await
                .context("cannot prepare the database in the private PostgreSQL")?;
            (config, Some(pg))
        }
    };

    settings.database = database;
    let result = serve(settings).await;
    if let Some(pg) = embedded.filter(EmbeddedPostgres::started_here) {
        tracing::info!("stopping the private PostgreSQL");
        if let Err(e) = tokio::task::spawn_blocking(move || pg.stop()).await? {
            tracing::warn!(error = %e, "the private PostgreSQL did not stop cleanly");
        }
    }
    result
}

/// Starts (or joins) the private cluster in `dir` (default: the data directory of `budget start`).
pub(crate) async fn private_cluster(dir: Option<std::path::PathBuf>) -> anyhow::Result<EmbeddedPostgres> {
    let dir = dir.unwrap_or_else(default_data_dir);
    Ok(tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir, &EmbeddedOptions::default())).await??)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let described = db::describe(&settings.database);
    let host = settings.host.clone();
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
    let serving = format!(
        "Budget is serving http://{host}:{} (database {described}); the dashboard at /, API docs at /api/docs",
        app.port()
    );
    // With JSON logs every line is an object, this one too.
    match configuration::log_format()? {
        configuration::LogFormat::Text => println!("{serving}"),
        configuration::LogFormat::Json => tracing::info!("{serving}"),
    }
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}
