//! `maestro` against the real server: telemetry and alert commands, their JSON, and the exit codes of
//! an unreachable server and a malformed address.

mod common;

use common::{first_lines, maestro, start, PRESSED, ROOMY};

#[tokio::test(flavor = "multi_thread")]
async fn status_prints_aligned_figures_with_units() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["status"]).await.expect(0);
    assert!(run.stdout.contains("health       HEALTHY"), "{}", run.stdout);
    assert!(run.stdout.contains("12.80 GB / 64.00 GB used (20.0 %)"), "{}", run.stdout);
    assert!(run.stdout.contains("rss 150.0 MiB"), "{}", run.stdout);
    assert!(run.stdout.contains("unavailable: scripted: no GPU"), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_json_has_proto_field_names_and_gpu_table_shows_units() {
    let s = start(PRESSED).await;
    let v = maestro(&s.url(), &["status", "--json"]).await.expect(0).json();
    assert_eq!(v["host"]["memory_total_bytes"], 1_000_000_000u64);
    assert_eq!(v["gpu"]["devices"][0]["name"], "Scripted H100");
    assert_eq!(v["health"], "HEALTH_LEVEL_CRITICAL");
    let human = maestro(&s.url(), &["status"]).await.expect(0).stdout;
    assert!(human.contains("GPU  NAME"), "{human}");
    assert!(human.contains("61 °C") && human.contains("80.00 GB") && human.contains("50.0 %"), "{human}");
}

#[tokio::test(flavor = "multi_thread")]
async fn history_gives_statistics_per_metric() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["history", "--window", "60"]).await.expect(0);
    assert!(run.stdout.contains("METRIC") && run.stdout.contains("P95"), "{}", run.stdout);
    assert!(run.stdout.contains("host_memory_used_percent"), "{}", run.stdout);
    let v = maestro(&s.url(), &["--json", "history", "--window", "5"]).await.expect(0).json();
    assert_eq!(v["window_seconds"], 5);
    assert!(v["stats"].as_array().is_some_and(|a| !a.is_empty()), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_window_beyond_the_history_is_invalid_input() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["history", "--window", "100000"]).await.expect(4);
    assert!(run.stderr.starts_with("maestro: INVALID_ARGUMENT: "), "{}", run.stderr);
    assert!(run.stderr.contains("window_seconds"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_streams_one_json_object_per_snapshot() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["watch", "--count", "2", "--json"]).await.expect(0);
    let sequences: Vec<u64> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences.len(), 2);
    assert!(sequences[1] > sequences[0], "{sequences:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_stream_then_list() {
    let s = start(PRESSED).await;
    // The first event is the critical host-memory alert, raised after two samples at 95 %.
    let first = first_lines(&s.url(), &["watch-alerts", "--json", "--severity", "warning"], 1).await;
    let event: serde_json::Value = serde_json::from_str(&first[0]).unwrap();
    assert_eq!(event["alert"]["rule"], "host_memory", "{event}");
    assert_eq!(event["alert"]["severity"], "SEVERITY_CRITICAL");
    let human = first_lines(&s.url(), &["watch-alerts"], 1).await;
    assert!(human[0].starts_with("ACTIVE   CRITICAL host_memory"), "{human:?}");
    assert!(human[0].contains("95.0 % (threshold 90.0 %)"), "{human:?}");

    let run = maestro(&s.url(), &["alerts", "--active", "--severity", "critical"]).await.expect(0);
    assert!(run.stdout.starts_with("SEVERITY"), "{}", run.stdout);
    assert!(run.stdout.contains("CRITICAL  host_memory"), "{}", run.stdout);
    let v = maestro(&s.url(), &["alerts", "--json"]).await.expect(0).json();
    assert!(v["alerts"].as_array().unwrap().iter().any(|a| a["active"] == true), "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_machine_has_no_alerts() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["alerts", "--active"]).await.expect(0);
    assert_eq!(run.stdout, "no alerts\n");
}

/// The report's JSON and its sections: a lease and the loaded tiny model are listed.
#[tokio::test(flavor = "multi_thread")]
async fn report_lists_leases_and_cached_models() {
    let s = start(ROOMY).await;
    maestro(&s.url(), &["load", "musicgen-tiny", "--device", "cpu"]).await.expect(0);
    maestro(&s.url(), &["allocate", "--cpu-memory", "1MB", "--owner", "report-test"]).await.expect(0);
    let v = maestro(&s.url(), &["report", "--json"]).await.expect(0).json();
    assert_eq!(v["snapshot"]["host"]["memory_total_bytes"], 64_000_000_000u64, "{v}");
    assert_eq!(v["health"], "HEALTH_LEVEL_HEALTHY", "{v}");
    assert!(v["leases"].as_array().unwrap().iter().any(|l| l["owner"] == "report-test"), "{v}");
    assert!(v["cached_models"].as_array().unwrap().iter().any(|m| m["model"] == "musicgen-tiny"), "{v}");
    let human = maestro(&s.url(), &["report"]).await.expect(0).stdout;
    assert!(human.starts_with("health HEALTHY\n"), "{human}");
    assert!(human.contains("\nleases\nLEASE ") && human.contains("report-test"), "{human}");
    assert!(human.contains("\ncached models\nMODEL ") && human.contains("\nmusicgen-tiny "), "{human}");
    assert!(human.contains("\nactive alerts: none\n"), "{human}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_exits_3_with_one_line() {
    // Port 1 on loopback: nothing listens there.
    let run = maestro("http://127.0.0.1:1", &["status"]).await.expect(3);
    assert!(
        run.stderr.starts_with("maestro: UNAVAILABLE: cannot connect to http://127.0.0.1:1"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_address_is_a_usage_error() {
    let run = maestro("http://[::1", &["status"]).await.expect(2);
    assert!(run.stderr.contains("--addr"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn help_documents_the_exit_codes() {
    let run = maestro("http://127.0.0.1:1", &["--help"]).await.expect(0);
    for line in ["3    server unavailable", "4    invalid input or not found", "5    refused for resources"] {
        assert!(run.stdout.contains(line), "{line:?} missing from:\n{}", run.stdout);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_exits_0_when_serving_and_3_when_not() {
    let roomy = start(ROOMY).await;
    let run = maestro(&roomy.url(), &["health"]).await.expect(0);
    assert_eq!(run.stdout, "\"\" (server) SERVING\n");
    let args = ["health", "--service", "maestro.v1.GenerationService", "--json"];
    let v = maestro(&roomy.url(), &args).await.expect(0).json();
    assert_eq!(v, serde_json::json!({"service": "maestro.v1.GenerationService", "status": "SERVING"}));

    // 95 % of host memory is CRITICAL: not ready for generations, while the server itself lives.
    let pressed = start(PRESSED).await;
    let mut run = maestro(&pressed.url(), &args[..3]).await;
    for _ in 0..600 {
        if run.code != 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        run = maestro(&pressed.url(), &args[..3]).await;
    }
    let run = run.expect(3);
    assert_eq!(run.stdout, "maestro.v1.GenerationService NOT_SERVING\n");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    maestro(&pressed.url(), &["health"]).await.expect(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_of_an_unknown_service_exits_4_and_of_no_server_3() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["health", "--service", "no.such.Service"]).await.expect(4);
    assert!(run.stderr.starts_with("maestro: NOT_FOUND"), "{}", run.stderr);
    let addr = s.addr;
    s.stop().await;
    let run = maestro(&format!("http://{addr}"), &["health"]).await.expect(3);
    assert!(run.stderr.starts_with("maestro: UNAVAILABLE: cannot connect"), "{}", run.stderr);
}
