//! `maestro-server`: parses the configuration, starts logging and serves until SIGINT / SIGTERM.

use std::process::ExitCode;

use clap::error::ErrorKind;
use maestro::{
    app::App,
    config::{CliError, Command, Config},
    shutdown, telemetry,
};

/// Exit code for a configuration or start-up problem (bad flag, bad file, port in use).
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let (config, command) = match Config::load(std::env::args_os()) {
        Ok(loaded) => loaded,
        Err(CliError::Args(e)) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(EXIT_USAGE, &e.to_string()),
    };
    // Before libtorch's first op and before any thread starts (`CpuIsa::apply`).
    config.generation.cpu_isa.apply();
    if let Some(command) = command {
        return run_command(command, &config);
    }
    telemetry::init(&config.log);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // With the LIFO slot, a stream that queues a frame runs its connection task next, which writes
    // that one frame: one syscall per message. Without it the connection runs after the other
    // woken streams and writes all their frames at once (10 000 snapshot subscribers: p99 delivery
    // lag 141 → 94–116 ms, server CPU 15 → 11 %, BENCHMARKS.md).
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail(1, &format!("cannot start the runtime: {e}")),
    };
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> ExitCode {
    let signals = match shutdown::Signals::os() {
        Ok(s) => s,
        Err(e) => return fail(1, &format!("cannot install signal handlers: {e}")),
    };
    let listen = config.server.listen;
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => return fail(EXIT_USAGE, &format!("cannot listen on {listen}: {e}")),
    };
    log_torch();
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(e) => return fail(EXIT_USAGE, &format!("{e:#}")),
    };
    match app.serve(listener, signals).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, &format!("{e:#}")),
    }
}

#[cfg(feature = "torch")]
fn log_torch() {
    let t = maestro::torch::info();
    tracing::info!(
        libtorch = t.version,
        threads = t.threads,
        cuda = t.cuda_available,
        cuda_devices = t.cuda_devices,
        "libtorch"
    );
}

#[cfg(not(feature = "torch"))]
fn log_torch() {
    tracing::info!("built without libtorch: generation is not available");
}

// Only inspect-model reads the configuration (the roots it resolves an id under), and only with libtorch.
#[cfg_attr(not(feature = "torch"), allow(unused_variables))]
fn run_command(command: Command, config: &Config) -> ExitCode {
    match command {
        #[cfg(feature = "torch")]
        Command::InspectModel { dir: arg, batch, duration } => {
            let roots = config.models.model_roots();
            let dir = match maestro::resources::model_id::dir_of_argument(&arg, &roots) {
                Ok(dir) => dir,
                Err(e) => return fail(1, &format!("inspect-model {}: {e}", arg.display())),
            };
            match maestro::musicgen::inspect(&dir, batch.max(1) as usize, duration) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(1, &format!("inspect-model {}: {e}", dir.display())),
            }
        }
        #[cfg(not(feature = "torch"))]
        Command::InspectModel { .. } => fail(EXIT_USAGE, "inspect-model needs a build with libtorch"),
        Command::ConvertCheckpoint { dir } => match maestro::checkpoint::convert::convert_dir(&dir) {
            Ok(done) => {
                println!(
                    "wrote {} ({} tensors, {} bytes of data) from {} weights; the folder now loads from it",
                    done.path.display(),
                    done.tensors,
                    done.bytes,
                    done.from.as_str()
                );
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, &format!("convert-checkpoint {}: {e}", dir.display())),
        },
    }
}

/// Prints one line naming the problem and returns the exit code.
fn fail(code: u8, message: &str) -> ExitCode {
    let line = message.lines().next().unwrap_or(message);
    let line = line.strip_prefix("error: ").unwrap_or(line);
    eprintln!("maestro-server: {line}");
    ExitCode::from(code)
}
