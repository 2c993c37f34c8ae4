//! `maestro` against the real server: validation, leases, batch advice, cleanup and suggestions, with
//! the exit codes for invalid input (4) and refusal for resources (5).

mod common;

use common::{maestro, start, PRESSED, ROOMY, UNIMPLEMENTED};

#[tokio::test(flavor = "multi_thread")]
async fn validate_shows_the_checks_and_exits_5_when_it_does_not_fit() {
    let roomy = start(ROOMY).await;
    let run =
        maestro(&roomy.url(), &["validate", "facebook/musicgen-small", "--duration", "10"]).await.expect(0);
    assert!(run.stdout.starts_with("verdict        FITS"), "{}", run.stdout);
    assert!(run.stdout.contains("RESOURCE") && run.stdout.contains("host_memory  yes"), "{}", run.stdout);
    let v = maestro(&roomy.url(), &["validate", "facebook/musicgen-small", "--json"]).await.expect(0).json();
    assert_eq!(v["fits"], true);
    assert_eq!(v["requirements"]["source"], "REQUIREMENT_SOURCE_TABLE");

    let pressed = start(PRESSED).await;
    let args = ["validate", "facebook/musicgen-small", "--device", "cpu", "--batch", "2", "--dtype", "f16"];
    let run = maestro(&pressed.url(), &args).await.expect(5);
    assert!(run.stdout.contains("DOES NOT FIT"), "{}", run.stdout);
    assert!(run.stderr.is_empty(), "the verdict already says why: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_refuses_bad_input_with_exit_4() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["validate", "facebook/musicgen-small", "--batch", "65"]).await.expect(4);
    assert!(
        run.stderr.starts_with("maestro: INVALID_ARGUMENT: ") && run.stderr.contains("batch_size"),
        "{}",
        run.stderr
    );
    let run = maestro(&s.url(), &["validate", "nobody/unknown-model"]).await.expect(4);
    assert!(run.stderr.starts_with("maestro: NOT_FOUND: "), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lease_is_granted_then_released_once() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["allocate", "--cpu-memory", "2GB", "--ttl", "60", "--owner", "cli-test"])
        .await
        .expect(0);
    let id = run.stdout.lines().next().unwrap().to_string();
    assert!(run.stdout.contains("cli-test") && run.stdout.contains("2.00 GB"), "{}", run.stdout);
    let released = maestro(&s.url(), &["release", &id]).await.expect(0);
    assert!(released.stdout.starts_with(&format!("released {id}")), "{}", released.stdout);
    let again = maestro(&s.url(), &["release", &id]).await.expect(4);
    assert!(again.stderr.starts_with("maestro: NOT_FOUND: "), "{}", again.stderr);

    let v = maestro(&s.url(), &["allocate", "--cpu-memory", "512MiB", "--json"]).await.expect(0).json();
    assert_eq!(v["cpu_memory_bytes"], 512 * 1024 * 1024);
    let id = v["lease_id"].as_str().unwrap();
    let v = maestro(&s.url(), &["release", id, "--json"]).await.expect(0).json();
    assert_eq!(v["lease"]["lease_id"], id);
}

#[tokio::test(flavor = "multi_thread")]
async fn more_memory_than_exists_is_refused_with_exit_5() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["allocate", "--cpu-memory", "10PB"]).await.expect(5);
    assert!(run.stderr.starts_with("maestro: RESOURCE_EXHAUSTED: "), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_lease_is_invalid_input() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["allocate"]).await.expect(4);
    assert!(run.stderr.contains("cpu_memory_bytes"), "{}", run.stderr);
    let bad_size = maestro(&s.url(), &["allocate", "--cpu-memory", "lots"]).await.expect(2);
    assert!(bad_size.stderr.contains("is not a size"), "{}", bad_size.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_size_gives_the_numbers_behind_it() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["batch-size", "facebook/musicgen-small"]).await.expect(0);
    assert!(run.stdout.starts_with("batch size  "), "{}", run.stdout);
    let v = maestro(&s.url(), &["batch-size", "facebook/musicgen-small", "--memory", "16GB", "--json"])
        .await
        .expect(0)
        .json();
    assert_eq!(v["memory_bytes"], 16_000_000_000u64);
    assert!(v["batch_size"].as_u64().unwrap() >= 1, "{v}");
    maestro(&s.url(), &["batch-size", "facebook/musicgen-small", "--duration", "0"]).await.expect(4);
}

/// Cleanup may still answer UNIMPLEMENTED; once it answers, the dry run must do nothing.
#[tokio::test(flavor = "multi_thread")]
async fn cleanup_dry_run_reports_or_says_unimplemented() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["cleanup", "--dry-run", "--json"]).await;
    match run.code {
        0 => {
            assert_eq!(run.json()["dry_run"], true);
            let human = maestro(&s.url(), &["cleanup", "--dry-run"]).await.expect(0).stdout;
            assert!(human.starts_with("dry run: nothing was done"), "{human}");
        }
        UNIMPLEMENTED => assert!(run.stderr.starts_with("maestro: UNIMPLEMENTED"), "{}", run.stderr),
        _ => panic!("{run:?}"),
    }
}

/// Suggestions may still answer UNIMPLEMENTED; once they answer, they carry a health level.
#[tokio::test(flavor = "multi_thread")]
async fn suggestions_render_or_say_unimplemented() {
    let s = start(PRESSED).await;
    let run = maestro(&s.url(), &["suggestions", "--json"]).await;
    match run.code {
        0 => {
            assert!(run.json()["health"].as_str().unwrap().starts_with("HEALTH_LEVEL_"));
            maestro(&s.url(), &["suggestions"]).await.expect(0);
        }
        UNIMPLEMENTED => assert!(run.stderr.starts_with("maestro: UNIMPLEMENTED"), "{}", run.stderr),
        _ => panic!("{run:?}"),
    }
}
