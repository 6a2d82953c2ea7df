//! One file per command.

mod alerts;
mod allocate;
mod budgets;
mod get_usage;
mod prices;
mod set_limit;
mod start;
mod status;

use crate::cli::{Cli, Command};
use crate::client::Client;

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(&cli.url);
    match cli.command {
        Command::Start(args) => start::run(args).await,
        Command::Status(args) => status::run(&client, &cli.url, args).await,
        Command::GetUsage(args) => get_usage::run(&client, args).await,
        Command::SetLimit(args) => set_limit::run(&client, args).await,
        Command::Budgets(command) => budgets::run(&client, command).await,
        Command::Allocate(command) => allocate::run(&client, command).await,
        Command::Alerts(command) => alerts::run(&client, command).await,
        Command::Prices(command) => prices::run(&client, command).await,
        Command::CalcCost(args) => prices::calc_cost(&client, args).await,
    }
}
