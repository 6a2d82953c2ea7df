//! `budget`: `budget start` runs the whole service in one process; every other command is an HTTP
//! client of its API.

mod amounts;
mod cli;
mod client;
mod commands;
mod endpoint;
mod ids;
mod memory;
mod output;
mod runtime;
mod times;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    memory::limit_arenas();
    let cli = cli::Cli::parse();
    let runtime = match runtime::build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
