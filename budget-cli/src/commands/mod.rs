//! One file per command.

mod alerts;
mod allocate;
mod assistant;
mod audit;
mod bench;
mod budgets;
mod export;
mod get_usage;
mod keys;
mod policies;
mod prices;
mod replay;
mod set_limit;
mod start;
mod status;

use crate::cli::{Cli, Command};
use crate::client::Client;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    crate::output::set_wide(cli.wide);
    crate::output::set_precise(cli.precise);
    // `start` and `bench` listen rather than connect: `BUDGET_PORT=0 budget start` is theirs to read.
    let command = match cli.command {
        Command::Start(args) => return start::run(args).await,
        Command::Bench(args) => return bench::run(args).await,
        command => command,
    };
    let endpoint = crate::endpoint::resolve(cli.url, |name| std::env::var(name).ok()).map_err(anyhow::Error::msg)?;
    let client = Client::new(&endpoint, cli.api_key.as_deref());
    match command {
        Command::Start(_) | Command::Bench(_) => unreachable!("run above"),
        Command::Status(args) => status::run(&client, &endpoint.url, args).await,
        Command::GetUsage(args) => get_usage::run(&client, args).await,
        Command::SetLimit(args) => set_limit::run(&client, args).await,
        Command::Policies(command) => policies::run(&client, command).await,
        Command::Keys(command) => keys::run(&client, command).await,
        Command::Budgets(command) => budgets::run(&client, command).await,
        Command::Allocate(command) => allocate::run(&client, command).await,
        Command::Alerts(command) => alerts::run(&client, command).await,
        Command::Prices(command) => prices::run(&client, command).await,
        Command::CalcCost(args) => prices::calc_cost(&client, args).await,
        Command::Recommend {
            task_type,
            context_size,
            output_size,
            max_cost,
            frequency,
            prefer_provider,
            limit,
            json,
        } => {
            assistant::recommend(
                &client,
                assistant::Ask { task_type, context_size, output_size, max_cost, frequency, prefer_provider, limit },
                json,
            )
            .await
        }
        Command::Analyze(args) => assistant::analyze(&client, args).await,
        Command::Optimize(args) => assistant::optimize(&client, args).await,
        Command::Audit(args) => audit::audit(&client, args).await,
        Command::Explain { policy_id, window, opening, json } => {
            audit::explain(&client, policy_id, window, opening, json).await
        }
        Command::Export { since, until, format, output } => export::run(&client, since, until, format, output).await,
        Command::Replay { projection, all: _, verify, swap, json } => {
            replay::run(&client, projection, verify, swap, json).await
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Into memory first: the generator panics on a write error, such as a reader gone.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "budget", &mut script);
            crate::output::emit_bytes(&script);
            Ok(())
        }
    }
}
