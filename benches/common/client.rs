//! The load generators' runtime, shared by the rpc and telemetry benchmarks.

/// A runtime of `MAESTRO_BENCH_CLIENT_THREADS` worker threads (default 1): on a two-core machine, two
/// load-generator threads would time-slice the server's two runtime threads.
pub fn runtime() -> tokio::runtime::Runtime {
    let threads: usize =
        std::env::var("MAESTRO_BENCH_CLIENT_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().unwrap()
}
