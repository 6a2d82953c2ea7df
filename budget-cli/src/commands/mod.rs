//! One file per command.

mod get_usage;
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
    }
}
