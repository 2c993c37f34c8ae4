//! The `maestro-server` binary as an operator meets it: bad start-up input exits 2 with one line,
//! `--help` lists every option, SIGTERM exits 0.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_maestro-server");

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).env_remove("MAESTRO_LISTEN").output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_one_line(code: i32, stderr: &str, needle: &str) {
    assert_eq!(code, 2, "stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn help_shows_every_option_with_its_default() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--listen",
        "127.0.0.1:50051",
        "--metrics-listen",
        "127.0.0.1:9464",
        "--model-root",
        "./models",
        "--config",
        "--log-format",
        "--log-level",
        "--drain-deadline-s",
        "MAESTRO_LISTEN",
    ] {
        assert!(help.contains(needle), "{needle} missing from --help:\n{help}");
    }
}

#[test]
fn bad_listen_address_exits_2_with_one_line() {
    let (code, err) = run(&["--listen", "not-an-address"]);
    assert_one_line(code, &err, "--listen");
}

#[test]
fn unknown_config_key_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("maestro.toml");
    std::fs::write(&path, "[server]\nlisten_address = \"127.0.0.1:1\"\n").unwrap();
    let (code, err) = run(&["--config", path.to_str().unwrap()]);
    assert_one_line(code, &err, "listen_address");
    std::fs::write(&path, "this is [not toml").unwrap();
    let (code, err) = run(&["--config", path.to_str().unwrap()]);
    assert_one_line(code, &err, "invalid config file");
    let (code, err) = run(&["--config", "/nonexistent/maestro.toml"]);
    assert_one_line(code, &err, "/nonexistent/maestro.toml");
}

#[test]
fn port_in_use_exits_2_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err) = run(&["--listen", &addr, "--metrics-listen", "127.0.0.1:0"]);
    assert_one_line(code, &err, &addr);
}

/// Unless the environment names a policy, the server runs with OpenMP's passive wait policy (it
/// executes itself again with `OMP_WAIT_POLICY=PASSIVE`, keeping its process id); a policy the
/// environment names is kept.
#[cfg(all(target_os = "linux", feature = "torch"))]
#[test]
fn openmp_waits_passively_unless_the_environment_says_otherwise() {
    for (given, want) in [(None, "PASSIVE"), (Some("ACTIVE"), "ACTIVE")] {
        let mut server = Command::new(BIN);
        server.args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]).stderr(Stdio::piped());
        match given {
            Some(policy) => server.env("OMP_WAIT_POLICY", policy),
            None => server.env_remove("OMP_WAIT_POLICY"),
        };
        let mut child = server.spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("serving gRPC") {
            line.clear();
        }
        let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert!(line.contains("serving gRPC"), "server did not start");
        let entry = format!("OMP_WAIT_POLICY={want}");
        assert!(
            environ.split(|b| *b == 0).any(|e| e == entry.as_bytes()),
            "given {given:?}: the running server's environment lacks {entry}"
        );
    }
}

#[test]
fn sigterm_exits_0_promptly() {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--drain-deadline-s", "3"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it says it serves, so the signal reaches a running server.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 && !line.contains("serving gRPC") {
        line.clear();
    }
    assert!(line.contains("serving gRPC"), "server did not start");
    let start = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // The bound is the drain deadline plus process teardown; it checks the deadline is honoured,
    // not how fast the machine is.
    assert!(start.elapsed() < Duration::from_secs(3) + Duration::from_secs(20));
}

#[tokio::test]
async fn sigterm_with_100_open_streams_and_a_generation_in_flight_drains_and_exits_0() {
    use futures::StreamExt;
    use maestro_proto as pb;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut child = Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--metrics-listen", "127.0.0.1:0"])
        .args(["--drain-deadline-s", "5", "--drain-grace-s", "1", "--model-root", models.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let up = lines.by_ref().map_while(Result::ok).any(|l| l.contains("serving gRPC"));
        // Keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        up
    });
    assert!(started.await.unwrap(), "server did not start");
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut resources = pb::resource_service_client::ResourceServiceClient::new(channel.clone());
    let mut streams = Vec::new();
    for _ in 0..100 {
        streams.push(
            resources.watch_snapshots(pb::WatchSnapshotsRequest::default()).await.unwrap().into_inner(),
        );
    }
    let mut generation = pb::generation_service_client::GenerationServiceClient::new(channel);
    let req = pb::GenerateRequest {
        model: "maestro/musicgen-tiny".into(),
        duration_s: 30.0,
        seed: Some(1),
        // One frame per chunk: the worker fills the stream buffer and stays inside the generation.
        chunk_ms: 20,
        ..Default::default()
    };
    let mut gen = generation.generate(req).await.unwrap().into_inner();
    assert!(gen.next().await.unwrap().is_ok(), "header: the generation is in flight");

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status =
        tokio::time::timeout(Duration::from_secs(60), tokio::task::spawn_blocking(move || child.wait()))
            .await
            .expect("exited before the test's patience ran out")
            .unwrap()
            .unwrap();
    assert_eq!(status.code(), Some(0));
    // Every watch ended with OK; the generation finished, or was cancelled at the drain deadline
    // saying so (which one depends on how fast this machine generates 30 s).
    for mut s in streams {
        while let Some(item) = s.next().await {
            item.expect("a watch ends with OK at shutdown");
        }
    }
    let mut summary = false;
    loop {
        match gen.next().await {
            Some(Ok(item)) => {
                summary |= matches!(item.payload, Some(pb::generate_response::Payload::Summary(_)))
            }
            Some(Err(status)) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                assert!(status.message().contains("drain deadline"), "{status:?}");
                break;
            }
            None => {
                assert!(summary, "the generation ended with neither a summary nor a status");
                break;
            }
        }
    }
}
