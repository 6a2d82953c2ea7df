//! `budget`: `budget start` runs the whole service in one process; every other command is an HTTP
//! client of its API.

mod cli;
mod client;
mod commands;
mod ids;
mod memory;
mod output;
mod times;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    memory::limit_arenas();
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
