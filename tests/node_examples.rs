//! The Node.js examples (`clients/node`: `@grpc/grpc-js` and `@grpc/proto-loader` over the
//! repository's protos) against the real server on loopback, run by the machine's `node`: the
//! snapshot watcher prints one line per snapshot and stops after `--count`; a refused call prints the
//! status on stderr and exits as the CLI does; with libtorch, `generate-wav.mjs` writes a WAV that
//! parses with the rate it reports and a second of samples. `scripts/provision-node.sh` installs the
//! pinned packages once (cached, like the Python venv).

mod common;

use std::{
    path::{Path, PathBuf},
    process::Output,
    sync::OnceLock,
    time::{Duration, Instant},
};

use common::{model_config, start_server, TestServer};
use tokio::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Longest a script may run (a debug server generating on a busy machine included).
const WITHIN: Duration = Duration::from_secs(300);

/// Installs the examples' packages (once per test binary; the script itself is once per lock file).
fn provision() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = std::process::Command::new(format!("{ROOT}/scripts/provision-node.sh"))
            .output()
            .expect("scripts/provision-node.sh starts");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "scripts/provision-node.sh failed:\n{stderr}");
    });
}

/// The server, provisioned examples, and `--addr` pointing at it.
async fn serve() -> (TestServer, String) {
    provision();
    let server = start_server(model_config()).await;
    let addr = server.addr.to_string();
    (server, addr)
}

/// Runs `node clients/node/<script> <args>` to its end; the caller's token and address are not
/// inherited.
async fn node(script: &str, args: &[&str]) -> Output {
    let run = Command::new("node")
        .arg(format!("{ROOT}/clients/node/{script}"))
        .args(args)
        .env_remove("MAESTRO_TOKEN")
        .env_remove("MAESTRO_ADDR")
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(WITHIN, run).await {
        Ok(out) => out.expect("node runs (Node.js 18.3 or later on PATH)"),
        Err(_) => panic!("node {script} {args:?} did not finish within {WITHIN:?}"),
    }
}

/// Runs `generate-wav.mjs` for a second of `model` ("a calm piano", seed 3) into a fresh directory:
/// the run, the directory (removed on drop) and the WAV's path in it.
async fn generate(addr: &str, model: &str) -> (Output, tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("out.wav");
    let args = ["--addr", addr, "--model", model, "--prompt", "a calm piano", "--duration", "1"];
    let out =
        node("generate-wav.mjs", &[&args[..], &["--seed", "3", "-o", wav.to_str().unwrap()]].concat()).await;
    (out, dir, wav)
}

/// A refused generation: exit `code`, one line on stderr starting with `prefix` (returned), no file.
fn assert_refused(out: &Output, wav: &Path, code: i32, prefix: &str) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.starts_with(prefix), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!wav.exists(), "a refused call leaves no file");
    stderr
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn watch_prints_one_line_per_snapshot_then_cancels_after_count() {
    let (server, addr) = serve().await;
    let started = Instant::now();
    let out = node("watch-snapshots.mjs", &["--addr", &addr, "--count", "3"]).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    for line in lines {
        assert!(line.contains("host memory ") && line.contains(" GiB") && line.contains("cpu "), "{line}");
    }
    // One snapshot a second: the first at once, the third about two seconds later.
    assert!(started.elapsed() >= Duration::from_millis(1500), "{:?}", started.elapsed());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_watch_prints_the_status_and_exits_as_the_cli_does() {
    let (server, addr) = serve().await;
    let out = node("watch-snapshots.mjs", &["--addr", &addr, "--interval-ms", "70000"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "stderr: {stderr}");
    assert!(stderr.starts_with("maestro: INVALID_ARGUMENT: interval_ms"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn usage_errors_exit_2_before_any_call() {
    provision();
    let out = node("generate-wav.mjs", &["--prompt", "no model"]).await;
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--model is required"));
    let out = node("watch-snapshots.mjs", &["--count", "many"]).await;
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
}

#[cfg(not(feature = "torch"))]
#[tokio::test]
async fn a_build_without_libtorch_refuses_generation_as_unimplemented() {
    let (server, addr) = serve().await;
    let (out, _dir, wav) = generate(&addr, "maestro/musicgen-tiny").await;
    assert_refused(&out, &wav, 6, "maestro: UNIMPLEMENTED: ");
    server.shutdown().await.unwrap();
}

#[cfg(feature = "torch")]
#[tokio::test]
async fn generate_wav_writes_a_second_of_audio_that_parses() {
    let (server, addr) = serve().await;
    let (out, _dir, wav) = generate(&addr, "maestro/musicgen-tiny").await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("real-time factor "), "{stdout}");
    // `wrote PATH: N bytes, 1.00 s at RATE Hz, ...`: the rate the stream's header announced.
    let rate: u32 = stdout
        .split(" Hz")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {stdout}"));

    let reader = hound::WavReader::open(&wav).expect("the file is a WAV");
    let spec = reader.spec();
    assert_eq!(spec.sample_rate, rate);
    assert_eq!(spec.bits_per_sample, 16);
    let frames = reader.duration();
    let seconds = f64::from(frames) / f64::from(rate);
    assert!((seconds - 1.0).abs() < 0.05, "{seconds} s of audio");
    let samples: Vec<i16> = reader.into_samples().collect::<Result<_, _>>().expect("every sample reads");
    assert_eq!(samples.len(), frames as usize * usize::from(spec.channels));
    assert!(samples.iter().any(|&s| s != 0), "silence");
    server.shutdown().await.unwrap();
}

#[cfg(feature = "torch")]
#[tokio::test]
async fn an_unknown_model_is_not_found_and_leaves_no_file() {
    let (server, addr) = serve().await;
    let (out, _dir, wav) = generate(&addr, "maestro/no-such-model").await;
    let stderr = assert_refused(&out, &wav, 4, "maestro: NOT_FOUND: ");
    assert!(stderr.contains("maestro/no-such-model"), "{stderr}");
    server.shutdown().await.unwrap();
}
