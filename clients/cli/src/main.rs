//! `maestro`: the command-line client of a Maestro server. Parses the arguments, runs the command on a
//! tokio runtime and turns a failure into one line on stderr and its documented exit code.

use std::process::ExitCode;

use clap::Parser;
use maestro_cli::{args::Cli, exit};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return report(exit::Failure::new(exit::GENERAL, format!("cannot start the runtime: {e}"))),
    };
    match runtime.block_on(maestro_cli::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => report(failure),
    }
}

/// Prints the failure as one line (nothing for a silent one) and returns its exit code.
fn report(failure: exit::Failure) -> ExitCode {
    if !failure.message.is_empty() {
        eprintln!("maestro: {}", failure.message);
    }
    ExitCode::from(failure.code)
}
