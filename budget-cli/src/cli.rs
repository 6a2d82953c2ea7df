//! The command line: commands as the user guide writes them (`get_usage`), dashed forms as aliases.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The heading of the options every command takes, listed after a command's own.
const GLOBAL: &str = "Global options";

#[derive(Parser)]
#[command(name = "budget", version, about = "Keep LLM spending under control", long_about = None)]
pub struct Cli {
    /// Where the Budget API is [default: where `budget start` listens, BUDGET_HOST/BUDGET_PORT if
    /// set, else http://127.0.0.1:8013].
    #[arg(long, global = true, help_heading = GLOBAL, env = "BUDGET_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// The API key to send (needed once keys are configured); create one with `budget keys create`.
    #[arg(long, global = true, help_heading = GLOBAL, env = "BUDGET_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print tables as wide as their content instead of fitting them to the terminal.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub wide: bool,
    /// Print times with every digit (RFC 3339) and ids whole, instead of to the second and short.
    #[arg(long, global = true, help_heading = GLOBAL)]
    pub precise: bool,
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
    /// Measure this deployment: PostgreSQL's ceilings and the service's figures in one run, each with
    /// p50/p95/p99 latency and its ratio to a ceiling, then the exactly-once and zero-overspend checks.
    #[command(after_help = "Examples:
  budget bench
  budget bench --quick
  budget bench --database-url postgres://postgres@127.0.0.1:5432/postgres --json

It creates a fresh database on the server (dropped afterwards unless --keep) and runs the
service as `budget start` child processes on free ports. The full run takes a few minutes and
writes about 1.3 million events. Exits 1 if a check fails; a missed target is only reported.")]
    Bench(BenchArgs),
    /// Show every active policy's window (used, reserved, limit, %, remaining, state, reset), and the
    /// server's health and projection lag.
    #[command(after_help = "Examples:\n  budget status\n  budget status --period daily --provider openai --json")]
    Status(StatusArgs),
    /// Set a spending limit: a policy of a budget for a period and scope. Setting the same budget, period
    /// and scope again replaces the limit, keeping the type, thresholds and timezone it does not give
    /// (the old one stays in the log).
    #[command(
        name = "set_limit",
        visible_alias = "set-limit",
        after_help = "Examples:\n  budget set_limit daily 20.0 --policy-type warn\n  budget set_limit daily 10.0 --provider openai --policy-type hard_limit\n  budget set_limit daily 5.0 --component codex --policy-type warn\n  budget set_limit monthly 100.0 --provider anthropic\n  budget set_limit hourly 0 --tokens 200000 --tier remote_heavyweight --policy-type hard_limit\n\nLIMIT 0 together with --tokens sets a token limit only."
    )]
    SetLimit(SetLimitArgs),
    /// Policies: list them (disabled ones too with --all), disable one, enable it again.
    #[command(subcommand)]
    Policies(PoliciesCommand),
    /// API keys: create (the secret is printed once), list, revoke. Needs an admin key (or a service
    /// running without keys, for the first one).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Budgets: containers of policies (`default` unless --budget names another).
    #[command(subcommand)]
    Budgets(BudgetsCommand),
    /// Token allocations: reserve tokens for a task before spending them.
    #[command(subcommand)]
    Allocate(AllocateCommand),
    /// Alerts raised from the log: list them, acknowledge them.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// The price book: list, update, set, history.
    #[command(subcommand)]
    Prices(PricesCommand),
    /// The cost of a call under the current price.
    #[command(
        name = "calc_cost",
        visible_alias = "calc-cost",
        after_help = "Example:\n  budget calc_cost --provider openai --model gpt-4 --input-tokens 1000 --output-tokens 500"
    )]
    CalcCost(CalcCostArgs),
    /// Rank every priced model for a task: cost per call and per day, budget and context fit, capabilities.
    #[command(
        after_help = "Examples:\n  budget recommend --task-type code_generation --context-size 2000 --output-size 1000\n  budget recommend --task-type text_generation --max-cost 5.0"
    )]
    Recommend {
        /// What the calls are for (code_generation, text_generation, analysis, vision…), or words.
        #[arg(long = "task-type")]
        task_type: String,
        /// Input tokens per call.
        #[arg(long = "context-size", default_value_t = 1000, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
        context_size: i64,
        /// Output tokens per call.
        #[arg(long = "output-size", default_value_t = 500, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
        output_size: i64,
        /// USD per day the calls may cost.
        #[arg(long = "max-cost", allow_negative_numbers = true, value_parser = crate::amounts::decimal)]
        max_cost: Option<String>,
        /// Calls per day.
        #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
        frequency: i64,
        /// Prefer this provider among equals.
        #[arg(long = "prefer-provider")]
        prefer_provider: Option<String>,
        /// Models to show (the best first).
        #[arg(long, default_value_t = 10, allow_negative_numbers = true, value_parser = crate::amounts::count::<usize>)]
        limit: usize,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Analyse spending: totals, breakdowns, trend, every window's burn rate and exhaustion, spikes.
    #[command(after_help = "Examples:\n  budget analyze --period daily --days 7\n  budget analyze --days 30 --json")]
    Analyze(AssistantArgs),
    /// Ranked recommendations with their savings per period, from the token mix in the log.
    #[command(after_help = "Examples:\n  budget optimize\n  budget optimize --period weekly --days 30 --top 0")]
    Optimize(OptimizeArgs),
    /// The events behind a selection, oldest first, with the running total.
    #[command(
        after_help = "Examples:\n  budget audit --provider openai --since 2026-11-01\n  budget audit --budget default --type UsageRecorded,UsageRepriced --json\n  budget audit --context-id task-123"
    )]
    Audit(AuditArgs),
    /// How a policy window's used and reserved figures were reached, checked against its account.
    #[command(
        after_help = "Examples:\n  budget explain 01a2…\n  budget explain 01a2… --window 2026-11-28T00:00:00Z\n  budget explain 01a2… --opening"
    )]
    Explain {
        /// The policy: its id, or its last 8 characters as `budget status` shows them.
        policy_id: String,
        /// The window: its start (RFC 3339, a date, yesterday…) or task:ID / session:ID; default: the
        /// one containing now.
        #[arg(long, value_parser = crate::times::window)]
        window: Option<String>,
        /// Also list what each opening balance was made of (the usage already in the window when the
        /// limit started counting), record by record.
        #[arg(long)]
        opening: bool,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Usage records with cost and price version, for finance (CSV or JSON lines), streamed.
    #[command(
        after_help = "Examples:\n  budget export --since 2026-11-01 --until 2026-12-01 --output november.csv\n  budget export --format jsonl"
    )]
    Export {
        /// Calls from this time: RFC 3339, a date (its UTC midnight), yesterday, today, or an age (7d, 2h).
        #[arg(long, value_parser = crate::times::instant)]
        since: Option<String>,
        /// …to this one, exclusive (the same forms).
        #[arg(long, value_parser = crate::times::instant)]
        until: Option<String>,
        /// csv or jsonl.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Fold the log into fresh projection tables, compare them with the live ones row by row, and check
    /// the enforcement accounts; --swap replaces the live tables atomically.
    #[command(after_help = "Examples:\n  budget replay --verify\n  budget replay --projection usage_rollups --swap")]
    Replay {
        /// usage_rollups or alerts (default: all).
        #[arg(long, conflicts_with = "all")]
        projection: Option<String>,
        /// Every projection (the default).
        #[arg(long)]
        all: bool,
        /// Exit non-zero on any difference.
        #[arg(long)]
        verify: bool,
        /// Replace the live tables with the replayed ones.
        #[arg(long)]
        swap: bool,
        /// Print the JSON lines as they come.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    #[command(after_help = "Example:\n  budget completions bash > /etc/bash_completion.d/budget")]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Show usage for a period: one row per period, totals, and the biggest spenders.
    #[command(
        name = "get_usage",
        visible_alias = "get-usage",
        after_help = "Examples:\n  budget get_usage daily --days 7\n  budget get_usage daily --provider openai --component codex\n  budget get_usage weekly --provider openai --json"
    )]
    GetUsage(GetUsageArgs),
}

#[derive(Args)]
pub struct BenchArgs {
    /// The PostgreSQL server to measure on (a fresh database is created there) [env:
    /// BUDGET_DATABASE_URL]. Without it, the private cluster of `budget start`.
    #[arg(long)]
    pub database_url: Option<String>,
    /// A small run (seconds): every phase and check, figures too small to size anything by.
    #[arg(long)]
    pub quick: bool,
    /// Concurrent clients of the single-record and reservation phases [default: 64].
    #[arg(long)]
    pub clients: Option<usize>,
    /// Events in the log when `budget status`, the replay and memory are measured [default: 1000000].
    #[arg(long)]
    pub log_events: Option<usize>,
    /// Keep the bench's database afterwards.
    #[arg(long)]
    pub keep: bool,
    /// Measure gateway mode instead: a chat completion sent to a fake provider directly and through
    /// the gateway at 500 requests/s each, and the overhead between them.
    #[arg(long)]
    pub gateway: bool,
    /// The report as JSON (no progress lines).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct StartArgs {
    /// Address to listen on [env: BUDGET_HOST; default: 127.0.0.1].
    #[arg(long)]
    pub host: Option<String>,
    /// Port to listen on [env: BUDGET_PORT; default: 8013].
    #[arg(long)]
    pub port: Option<u16>,
    /// PostgreSQL to use [env: BUDGET_DATABASE_URL]. Without it, a private cluster is started in --data-dir.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Where the private cluster keeps its data [env: BUDGET_DATA_DIR; default: ~/.local/share/budget,
    /// /var/lib/budget as root].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct StatusArgs {
    /// Only policies of this period: hourly, daily, weekly, monthly, per_session, per_task.
    #[arg(long)]
    pub period: Option<String>,
    /// Only policies scoped to this provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Only policies scoped to this component.
    #[arg(long)]
    pub component: Option<String>,
    /// Only policies scoped to this tier.
    #[arg(long)]
    pub tier: Option<String>,
    /// Show the windows that contained this time instead of now: RFC 3339, a date, yesterday, or an age (2h).
    #[arg(long, conflicts_with = "as_of", value_parser = crate::times::instant)]
    pub at: Option<String>,
    /// Recompute from the log as it stood at this time (the same forms): the limits then and the usage
    /// recorded by then. Not in the future (--at shows a window to come).
    #[arg(long = "as-of", value_parser = crate::times::past_instant)]
    pub as_of: Option<String>,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct SetLimitArgs {
    /// hourly, daily, weekly (ISO, from Monday), monthly, per_session or per_task.
    pub period: String,
    /// The cost limit in USD per window (exact decimal, e.g. 10.0). 0 with --tokens: tokens only.
    #[arg(allow_negative_numbers = true, value_parser = crate::amounts::decimal)]
    pub limit: String,
    /// Count only this provider's usage (e.g. openai).
    #[arg(long)]
    pub provider: Option<String>,
    /// Count only this model's usage (e.g. gpt-4o), its dated snapshots and `provider/` form included
    /// (gpt-4o-2024-08-06, openai/gpt-4o).
    #[arg(long)]
    pub model: Option<String>,
    /// Count only this component's usage (e.g. codex).
    #[arg(long)]
    pub component: Option<String>,
    /// Count only this tier: local_lightweight, local_midweight or remote_heavyweight.
    #[arg(long)]
    pub tier: Option<String>,
    /// Count only this task type (e.g. coding).
    #[arg(long = "task-type")]
    pub task_type: Option<String>,
    /// A per-user limit: count only records and allocations with this user_id (e.g. alice).
    #[arg(long)]
    pub user: Option<String>,
    /// ignore (track only), warn, soft_limit (suggest cheaper) or hard_limit (refuse new spending).
    /// Default warn; a limit set again keeps its type, thresholds and timezone unless they are given.
    #[arg(long = "policy-type")]
    pub policy_type: Option<String>,
    /// A token limit per window (input + output), as well as or instead of the cost limit.
    #[arg(long, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
    pub tokens: Option<i64>,
    /// Fraction of the limit that raises a warning (default 0.8).
    #[arg(long = "warning-threshold")]
    pub warning_threshold: Option<String>,
    /// Fraction of the limit that is critical (default 0.95).
    #[arg(long = "action-threshold")]
    pub action_threshold: Option<String>,
    /// The budget's name (created on first use; default `default`).
    #[arg(long)]
    pub budget: Option<String>,
    /// IANA timezone of the windows (default UTC), e.g. Europe/Berlin.
    #[arg(long)]
    pub timezone: Option<String>,
    /// Print JSON instead of a sentence.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (once: only a hash is kept).
    #[command(
        after_help = "Examples:\n  budget keys create --scope admin --name ops\n  budget keys create --scope write --component codex --name \"codex on build-3\" --expires 90d\n  budget keys create --scope read --name dashboard"
    )]
    Create {
        /// read (every GET, WebSockets), write (usage, checks, allocations) or admin (everything).
        #[arg(long, value_parser = ["read", "write", "admin"])]
        scope: String,
        /// Bind a write key to one component: it records usage and reserves for that component only.
        #[arg(long)]
        component: Option<String>,
        /// What the key is for.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime: 90d, 12h… (default: none).
        #[arg(long)]
        expires: Option<String>,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List keys (id, name, scope, component, created, last used, expires), never their secrets.
    #[command(after_help = "Example:\n  budget keys list")]
    List {
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: every process refuses it from now on.
    #[command(after_help = "Example:\n  budget keys revoke 01a2…")]
    Revoke {
        /// The key: its id, or its last 8 characters as `budget keys list` shows them.
        key_id: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum PoliciesCommand {
    /// Every enabled policy: its budget, period, type, scope and limits (--all: disabled ones too).
    #[command(after_help = "Examples:\n  budget policies list\n  budget policies list --provider openai --all --json")]
    List {
        /// Only policies of this period (hourly, daily, weekly, monthly, per_session, per_task).
        #[arg(long)]
        period: Option<String>,
        /// Only policies scoped to this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only policies scoped to this component.
        #[arg(long)]
        component: Option<String>,
        /// Disabled policies too.
        #[arg(long)]
        all: bool,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Disable a policy: it stops counting and limiting from now on; the log keeps it, and `enable`
    /// turns it back on.
    #[command(after_help = "Example:\n  budget policies disable 6f3474a4")]
    Disable {
        /// The policy: its id, or its last 8 characters as `budget policies list` shows them.
        policy_id: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Enable a disabled policy again: its current window counts what is already in it.
    #[command(after_help = "Example:\n  budget policies enable 6f3474a4")]
    Enable {
        /// The policy: its id, or its last 8 characters as `budget policies list --all` shows them.
        policy_id: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum BudgetsCommand {
    /// List budgets (archived ones too with --all).
    #[command(after_help = "Examples:\n  budget budgets list\n  budget budgets list --all")]
    List {
        /// Archived budgets too.
        #[arg(long)]
        all: bool,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create a budget: a named container of policies (`set_limit --budget NAME` also creates one).
    #[command(
        after_help = "Example:\n  budget budgets create research --owner alice --description \"R&D experiments\""
    )]
    Create {
        /// Its name: unique, 1 to 128 printable characters.
        name: String,
        /// What it is for.
        #[arg(long)]
        description: Option<String>,
        /// Who answers for it.
        #[arg(long)]
        owner: Option<String>,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rename a budget; its policies and their windows stay as they are.
    #[command(after_help = "Example:\n  budget budgets rename research lab")]
    Rename {
        /// The budget's name, or its id (whole, or its last 8 characters).
        budget: String,
        /// The new name.
        new_name: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Archive a budget: its policies stop counting and limiting anything. The log keeps everything;
    /// an archived budget takes no new limits and cannot be brought back.
    #[command(after_help = "Example:\n  budget budgets archive research")]
    Archive {
        /// The budget's name, or its id (whole, or its last 8 characters).
        budget: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show one budget with its policies' current windows.
    #[command(after_help = "Examples:\n  budget budgets show default\n  budget budgets show 5c5dc497")]
    Show {
        /// The budget's name, or its id (whole, or its last 8 characters as `budget budgets list` shows).
        budget: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct GetUsageArgs {
    /// hourly, daily, weekly or monthly.
    pub period: String,
    /// How many days back, counting today (1 to 3660).
    #[arg(long, default_value_t = 7, allow_negative_numbers = true, value_parser = crate::amounts::days::<{ budget_api::routes::usage_query::MAX_DAYS }>)]
    pub days: u32,
    /// Only this provider's usage (e.g. openai).
    #[arg(long)]
    pub provider: Option<String>,
    /// Only this model's usage (e.g. gpt-4o), its dated snapshots and `provider/` form included, as
    /// a limit on it counts them.
    #[arg(long)]
    pub model: Option<String>,
    /// Only this component's usage (e.g. codex).
    #[arg(long)]
    pub component: Option<String>,
    /// Only this task type's usage (e.g. coding).
    #[arg(long = "task-type")]
    pub task_type: Option<String>,
    /// Only this end user's usage.
    #[arg(long)]
    pub user: Option<String>,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum AllocateCommand {
    /// Reserve tokens for a task; refused when a hard limit would be exceeded.
    #[command(
        after_help = "Examples:\n  budget allocate create --context-id task-123 --component rhetor --tokens 10000 --tier remote_heavyweight\n  budget allocate create --context-id t-9 --component codex --tokens 4000 --model gpt-4o --priority 8 --ttl 15m"
    )]
    Create(Box<AllocateCreateArgs>),
    /// List allocations (active ones unless --all).
    #[command(after_help = "Examples:\n  budget allocate list\n  budget allocate list --component codex --json")]
    List(AllocateListArgs),
    /// Release what an allocation still reserves.
    #[command(after_help = "Example:\n  budget allocate release 01a2…")]
    Release {
        /// The allocation: its id, or its last 8 characters as `budget allocate list` shows them.
        allocation_id: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct AllocateCreateArgs {
    /// The task (or session) the tokens are for.
    #[arg(long = "context-id")]
    pub context_id: String,
    /// The component that will spend the tokens (e.g. codex); with a key bound to a component, that
    /// one when left out.
    #[arg(long)]
    pub component: Option<String>,
    /// Tokens to reserve (default: by task type and priority).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
    pub tokens: Option<i64>,
    /// local_lightweight, local_midweight or remote_heavyweight; with neither it nor --provider, the
    /// reservation counts under every tier's limits.
    #[arg(long)]
    pub tier: Option<String>,
    /// The provider the tokens will be spent on (e.g. openai); with neither it nor --model, the
    /// reservation counts under every provider's limits.
    #[arg(long)]
    pub provider: Option<String>,
    /// The model the tokens will be spent on (e.g. gpt-4o): it prices the reservation and names the
    /// provider.
    #[arg(long)]
    pub model: Option<String>,
    /// The task type (e.g. coding): sets the default tokens; without it, the reservation counts under
    /// every task type's limits.
    #[arg(long = "task-type")]
    pub task_type: Option<String>,
    /// The end user the task runs for: the reservation counts against that user's limits.
    #[arg(long)]
    pub user: Option<String>,
    /// The session the task runs in: the reservation holds room under that session's per-session
    /// limits.
    #[arg(long = "session-id")]
    pub session_id: Option<String>,
    /// 1 (low) to 10 (critical); default 5. Never bypasses a hard limit.
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(1..=10))]
    pub priority: Option<i64>,
    /// USD to reserve (default: tokens at the tier's reference price).
    #[arg(long = "estimated-cost", allow_negative_numbers = true, value_parser = crate::amounts::decimal)]
    pub estimated_cost: Option<String>,
    /// Lifetime: 90s, 15m, 2h, 1d (default 24h).
    #[arg(long)]
    pub ttl: Option<String>,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct AllocateListArgs {
    /// Only this component's allocations.
    #[arg(long)]
    pub component: Option<String>,
    /// Only this task's (or session's) allocations.
    #[arg(long = "context-id")]
    pub context_id: Option<String>,
    /// Include released, expired and exhausted allocations.
    #[arg(long)]
    pub all: bool,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum PricesCommand {
    /// Prices in effect: $/1M and $/1K, input/output/cached, since when.
    #[command(after_help = "Examples:\n  budget prices list\n  budget prices list --provider openai --json")]
    List {
        /// Only this provider's prices (e.g. openai).
        #[arg(long)]
        provider: Option<String>,
        /// Only this model's prices (its exact name, e.g. gpt-4o).
        #[arg(long)]
        model: Option<String>,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Apply the bundled table, or import a LiteLLM model_prices_and_context_window.json file.
    #[command(
        after_help = "Examples:\n  budget prices update\n  budget prices update --from model_prices.json --dry-run"
    )]
    Update {
        /// A LiteLLM-format JSON file (a path, or an http:// or https:// URL).
        #[arg(long)]
        from: Option<String>,
        /// Show what would change; write nothing (the same import, rolled back).
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// List every added and changed model, merged entry and conflict, not only the counts.
        #[arg(long, short)]
        verbose: bool,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Set one model's price (a new version).
    #[command(
        after_help = "Example:\n  budget prices set openai gpt-4o --input 2.50 --output 10.00 --cached-input 1.25 --per 1M"
    )]
    Set {
        /// The provider (e.g. openai).
        provider: String,
        /// The model (e.g. gpt-4o).
        model: String,
        /// USD per `--per` input tokens (e.g. 2.50).
        #[arg(long, allow_negative_numbers = true, value_parser = crate::amounts::decimal)]
        input: String,
        /// USD per `--per` output tokens (e.g. 10.00).
        #[arg(long, allow_negative_numbers = true, value_parser = crate::amounts::decimal)]
        output: String,
        /// USD per `--per` input tokens read from a prompt cache (default: the input price).
        #[arg(long = "cached-input", allow_negative_numbers = true, value_parser = crate::amounts::decimal)]
        cached_input: Option<String>,
        /// 1M (default), 1K or token.
        #[arg(long, default_value = "1M")]
        per: String,
        /// When it takes effect: RFC 3339, a date (its UTC midnight), now, or an age (default now).
        #[arg(long = "effective-from", value_parser = crate::times::instant)]
        effective_from: Option<String>,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Correct the cost of records priced with an older version (appends corrections; the records stay).
    #[command(
        after_help = "Examples:\n  budget prices reprice --provider openai --model gpt-4o --since 2026-11-01 --dry-run\n  budget prices reprice --provider openai --model gpt-4o --since 2026-11-01T00:00:00Z"
    )]
    Reprice {
        /// The provider whose records to re-price (e.g. openai).
        #[arg(long)]
        provider: String,
        /// The model whose records to re-price (e.g. gpt-4o).
        #[arg(long)]
        model: String,
        /// Records from this time: RFC 3339, a date (its UTC midnight), yesterday, or an age (7d).
        #[arg(long, value_parser = crate::times::instant)]
        since: String,
        /// …and before this one (the same forms).
        #[arg(long, value_parser = crate::times::instant)]
        until: Option<String>,
        /// Show the corrections; write nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every version of a model's price.
    #[command(after_help = "Example:\n  budget prices history openai gpt-4o")]
    History {
        /// The provider (e.g. openai).
        provider: String,
        /// The model (e.g. gpt-4o).
        model: String,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum AlertsCommand {
    /// Open alerts, newest first (--all for acknowledged ones too).
    #[command(
        after_help = "Examples:\n  budget alerts list\n  budget alerts list --severity warning\n  budget alerts list --type budget_refused --all --json"
    )]
    List {
        /// info, warning or error.
        #[arg(long)]
        severity: Option<String>,
        /// cost_limit_approaching, cost_limit_exceeded, token_limit_approaching, token_limit_exceeded,
        /// budget_refused, overage, unpriced_model or spend_spike.
        #[arg(long = "type")]
        alert_type: Option<String>,
        /// Only this budget's alerts (its whole id, as `budget budgets list --precise` shows it).
        #[arg(long = "budget-id")]
        budget_id: Option<String>,
        /// Acknowledged alerts too.
        #[arg(long)]
        all: bool,
        /// How many alerts to show, newest first.
        #[arg(long, default_value_t = 100, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
        limit: i64,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an alert (once; acknowledging again shows the first acknowledgement), or with --all
    /// every open alert the filters select.
    #[command(
        after_help = "Examples:\n  budget alerts acknowledge 0b6c… --by alice\n  budget alerts acknowledge --all --type cost_limit_approaching --by ops",
        group(clap::ArgGroup::new("which").required(true).args(["alert_id", "all"]))
    )]
    Acknowledge {
        /// The alert: its id, or its last 8 characters as `budget alerts list` shows them.
        alert_id: Option<String>,
        /// Every open alert (narrowed by --type, --severity, --budget-id), one by one.
        #[arg(long)]
        all: bool,
        /// With --all: only alerts of this type.
        #[arg(long = "type", requires = "all")]
        alert_type: Option<String>,
        /// With --all: only alerts of this severity (info, warning or error).
        #[arg(long, requires = "all")]
        severity: Option<String>,
        /// With --all: only this budget's alerts (its whole id).
        #[arg(long = "budget-id", requires = "all")]
        budget_id: Option<String>,
        /// Who acknowledges it.
        #[arg(long)]
        by: Option<String>,
        /// Print JSON (for scripts) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct AssistantArgs {
    /// hourly, daily, weekly or monthly.
    #[arg(long, default_value = "daily")]
    pub period: String,
    /// The last this many days (1 to 365).
    #[arg(long, default_value_t = 30, allow_negative_numbers = true, value_parser = crate::amounts::days::<{ budget_api::assistant::MAX_DAYS as u32 }>)]
    pub days: u32,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct OptimizeArgs {
    #[command(flatten)]
    pub range: AssistantArgs,
    /// List the N recommendations that save most and sum up the rest; 0 lists them all (`--json` always has them all).
    #[arg(long, default_value_t = 10, value_name = "N", value_parser = crate::amounts::count::<usize>)]
    pub top: usize,
}

#[derive(Args)]
pub struct AuditArgs {
    /// Only this provider's events (e.g. openai).
    #[arg(long)]
    pub provider: Option<String>,
    /// Only this model's events (e.g. gpt-4o), its dated snapshots and `provider/` form included, as
    /// a limit on it counts them.
    #[arg(long)]
    pub model: Option<String>,
    /// Only this component's events (e.g. codex).
    #[arg(long)]
    pub component: Option<String>,
    /// Only this task's (or session's) events.
    #[arg(long = "context-id")]
    pub context_id: Option<String>,
    /// A budget's name or id.
    #[arg(long)]
    pub budget: Option<String>,
    /// A policy id.
    #[arg(long)]
    pub policy: Option<String>,
    /// Event types, comma-separated (UsageRecorded, UsageRepriced, PolicySet, AllocationCreated…).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// From this time: RFC 3339, a date (its UTC midnight), yesterday, today, or an age (7d, 2h).
    #[arg(long, value_parser = crate::times::instant)]
    pub since: Option<String>,
    /// To this time, exclusive (the same forms).
    #[arg(long, value_parser = crate::times::instant)]
    pub until: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 1000, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
    pub limit: i64,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct CalcCostArgs {
    /// The provider (e.g. openai).
    #[arg(long)]
    pub provider: String,
    /// The model (e.g. gpt-4o, or a dated name such as gpt-4o-2024-08-06).
    #[arg(long)]
    pub model: String,
    /// Input tokens of the call.
    #[arg(long = "input-tokens", allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
    pub input_tokens: i64,
    /// Output tokens of the call.
    #[arg(long = "output-tokens", default_value_t = 0, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
    pub output_tokens: i64,
    /// The part of the input read from a prompt cache.
    #[arg(long = "cached-input-tokens", default_value_t = 0, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
    pub cached_input_tokens: i64,
    /// The part of the input written to a prompt cache.
    #[arg(long = "cache-creation-tokens", default_value_t = 0, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
    pub cache_creation_tokens: i64,
    /// The part of the output spent reasoning.
    #[arg(long = "reasoning-tokens", default_value_t = 0, allow_negative_numbers = true, value_parser = crate::amounts::count::<i64>)]
    pub reasoning_tokens: i64,
    /// Print JSON (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every argument of every command says what it is in `--help` (an option listed with a blank
    /// beside it leaves its user to guess).
    #[test]
    fn every_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if !matches!(id, "help" | "version") && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "budget", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }

    /// A command's help lists its own options first and the options every command takes (`--url`,
    /// `--api-key`, `--wide`, `--precise`) under a heading of their own after them: mixed in, `--url`
    /// stood between `set_limit`'s `--provider` and `--model`.
    #[test]
    fn global_options_come_after_a_command_s_own() {
        let mut cli = super::Cli::command();
        cli.build(); // propagates the global options to the subcommands, as parsing does
        let help = cli.find_subcommand_mut("set_limit").expect("set_limit exists").render_help().to_string();
        let at = |needle: &str| help.find(needle).unwrap_or_else(|| panic!("`{needle}` is in:\n{help}"));
        assert!(at("--provider") < at("--model") && at("--model") < at("--json"), "{help}");
        assert!(at("--json") < at("Global options:"), "{help}");
        for global in ["--url", "--api-key", "--wide", "--precise"] {
            assert!(at("Global options:") < at(global), "{global} after the heading:\n{help}");
        }
        // The variable by name, not clap's `[env: BUDGET_URL=]` when it is unset.
        assert!(help.contains("[env: BUDGET_URL]") && !help.contains("BUDGET_URL="), "{help}");
    }
}
