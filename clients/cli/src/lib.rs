//! The `maestro` command-line client as a library: argument parsing, one module per group of
//! commands, their human and JSON output, and the `top` dashboard. `main.rs` only parses and exits;
//! the integration tests reach the dashboard's renderer through this crate.

#![warn(missing_docs)]

pub mod args;
pub mod client;
pub mod commands;
pub mod credentials;
pub mod encoded;
pub mod exit;
pub mod file_format;
pub mod json;
pub mod sink;
pub mod table;
pub mod top;
pub mod units;
pub mod wav;

pub use exit::Failure;

/// Runs one parsed command line to completion; the error carries its exit code.
pub async fn run(cli: args::Cli) -> Result<(), Failure> {
    commands::dispatch(cli).await
}
