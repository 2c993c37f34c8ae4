//! Dispatch: connects once and hands the clients to the command's module. Every command prints the
//! server's answer as aligned tables, or as JSON with `--json`.

mod alerts;
mod generate;
mod health;
mod models;
mod resources;
pub mod telemetry;

use crate::{
    args::{Cli, Command},
    client, exit, json, top, Failure,
};

/// Runs the parsed command against the server `cli.connect` names, with its credentials.
pub async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let out = Output { json: cli.json };
    let target = client::Target::from_args(&cli.connect)?;
    if let Command::Top(args) = &cli.command {
        // The dashboard connects, and reconnects, by itself.
        return top::run(target, args).await;
    }
    if let Command::Health(args) = &cli.command {
        // Health has its own client (grpc.health.v1), not the Maestro services.
        return health::check(&target, out, args).await;
    }
    if let Command::Generate(args) = &cli.command {
        // A name or format that cannot be written is a usage error, found before connecting.
        generate::output_format(args)?;
    }
    let mut c = client::connect(&target).await?;
    match cli.command {
        Command::Status => telemetry::status(&mut c, out).await,
        Command::Report => telemetry::report(&mut c, out).await,
        Command::History(a) => telemetry::history(&mut c, out, &a).await,
        Command::Watch(a) => telemetry::watch(&mut c, out, &a).await,
        Command::Alerts(a) => alerts::list(&mut c, out, &a).await,
        Command::WatchAlerts(a) => alerts::watch(&mut c, out, &a).await,
        Command::Validate(a) => resources::validate(&mut c, out, a).await,
        Command::Allocate(a) => resources::allocate(&mut c, out, a).await,
        Command::Release(a) => resources::release(&mut c, out, a).await,
        Command::Cleanup(a) => resources::cleanup(&mut c, out, &a).await,
        Command::BatchSize(a) => resources::batch_size(&mut c, out, a).await,
        Command::Suggestions => resources::suggestions(&mut c, out).await,
        Command::Models => models::list(&mut c, out).await,
        Command::Load(a) => models::load(&mut c, out, a).await,
        Command::Unload(a) => models::unload(&mut c, out, a).await,
        Command::Generate(a) => generate::run(&mut c, out, a).await,
        Command::Top(_) | Command::Health(_) => unreachable!("handled above"),
    }
}

/// How a command prints its answer.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// JSON instead of tables.
    pub json: bool,
}

impl Output {
    /// Prints `message` as JSON (under its proto name) or as what `human` renders.
    pub fn show<M: prost::Message>(
        self,
        message: &M,
        name: &str,
        human: impl FnOnce(&M) -> String,
    ) -> Result<(), Failure> {
        let text = if self.json { json::pretty(message, name) } else { human(message) };
        write_stdout(&text)
    }

    /// Prints one element of a stream: a JSON line, or what `human` renders.
    pub fn stream<M: prost::Message>(
        self,
        message: &M,
        name: &str,
        human: impl FnOnce(&M) -> String,
    ) -> Result<(), Failure> {
        let text = if self.json { json::line(message, name) } else { human(message) };
        write_stdout(&text)
    }
}

/// Writes and flushes `text`; a closed pipe (`maestro watch | head`) ends the command quietly.
fn write_stdout(text: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::silent(exit::SUCCESS)),
        Err(e) => Err(Failure::io("cannot write to stdout", e)),
    }
}
