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
    passive_openmp();
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

/// libtorch's OpenMP runtime (libgomp) reads its wait policy once, as it loads, before `main`.
/// Left unset, an idle OpenMP worker spins for milliseconds after every parallel libtorch op
/// (sampling, EnCodec, T5) and takes a core from the decoder step's thread team: on two cores,
/// `perf` found 10 % of the server's samples in libgomp's spin and as many in the team waiting for
/// its helper. So unless the environment names a policy, the server executes itself again, once,
/// with `OMP_WAIT_POLICY=PASSIVE`: the same process id and arguments, before anything has started.
/// If that fails it runs on with libgomp's default. Measured in BENCHMARKS.md ("OpenMP's wait
/// policy").
#[cfg(all(unix, feature = "torch"))]
fn passive_openmp() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        again.arg0(arg0);
    }
    let err = again.args(args).env("OMP_WAIT_POLICY", "PASSIVE").exec();
    eprintln!("maestro-server: cannot execute itself with OMP_WAIT_POLICY=PASSIVE ({err}); OpenMP keeps its default");
}

/// Without libtorch there is no OpenMP runtime to configure.
#[cfg(not(all(unix, feature = "torch")))]
fn passive_openmp() {}

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
