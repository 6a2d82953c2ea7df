//! The command line: commands as the user guide writes them (`get_usage`), dashed forms as aliases.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "budget", version, about = "Keep LLM spending under control", long_about = None)]
pub struct Cli {
    /// Where the Budget API is.
    #[arg(long, global = true, env = "BUDGET_URL", default_value = "http://127.0.0.1:8013")]
    pub url: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the service: API, projection workers and, with no database URL, a private PostgreSQL.
    #[command(
        after_help = "Example:\n  budget start\n  BUDGET_DATABASE_URL=postgres://postgres@127.0.0.1/budget budget start --port 8013"
    )]
    Start(StartArgs),
    /// Show the server's health and how far behind each projection is.
    #[command(after_help = "Example:\n  budget status\n  budget status --json")]
    Status(StatusArgs),
    /// Show usage for a period: one row per period, totals, and the biggest spenders.
    #[command(
        name = "get_usage",
        visible_alias = "get-usage",
        after_help = "Examples:\n  budget get_usage daily --days 7\n  budget get_usage daily --provider openai --component codex\n  budget get_usage weekly --provider openai --json"
    )]
    GetUsage(GetUsageArgs),
}

#[derive(Args)]
pub struct StartArgs {
    /// Address to listen on.
    #[arg(long, env = "BUDGET_HOST", default_value = budget_api::configuration::DEFAULT_HOST)]
    pub host: String,
    /// Port to listen on.
    #[arg(long, env = "BUDGET_PORT", default_value_t = budget_api::configuration::DEFAULT_PORT)]
    pub port: u16,
    /// PostgreSQL to use. Without it, a private cluster is started in --data-dir.
    #[arg(long, env = "BUDGET_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where the private cluster keeps its data (default: ~/.local/share/budget; /var/lib/budget as root).
    #[arg(long, env = "BUDGET_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GetUsageArgs {
    /// hourly, daily, weekly or monthly.
    pub period: String,
    /// How many days back, counting today.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    #[arg(long)]
    pub provider: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub component: Option<String>,
    #[arg(long = "task-type")]
    pub task_type: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}
