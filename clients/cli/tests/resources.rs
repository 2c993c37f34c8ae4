//! `maestro` against the real server: validation, leases, batch advice, cleanup and suggestions, with
//! the exit codes for invalid input (4) and refusal for resources (5).

mod common;

use common::{maestro, start, PRESSED, ROOMY};

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

const TINY: &str = "musicgen-tiny";

fn tiny_loaded(models: &serde_json::Value) -> bool {
    models["models"].as_array().unwrap().iter().any(|m| m["model"] == TINY && m["loaded"] == true)
}

/// A forced dry run lists the idle model and changes nothing; the forced cleanup then evicts it.
#[tokio::test(flavor = "multi_thread")]
async fn cleanup_lists_then_evicts_an_idle_model() {
    let s = start(ROOMY).await;
    maestro(&s.url(), &["load", TINY, "--device", "cpu"]).await.expect(0);
    let v = maestro(&s.url(), &["cleanup", "--dry-run", "--force", "--json"]).await.expect(0).json();
    assert_eq!(v["dry_run"], true, "{v}");
    let evict = v["actions"].as_array().unwrap().iter().find(|a| a["kind"] == "evict_model").cloned();
    let evict = evict.unwrap_or_else(|| panic!("the dry run lists the idle model: {v}"));
    assert_eq!(evict["target"], TINY, "{evict}");
    assert!(evict["estimated_bytes"].as_u64().unwrap() > 0, "{evict}");
    assert!(
        tiny_loaded(&maestro(&s.url(), &["models", "--json"]).await.expect(0).json()),
        "a dry run does nothing"
    );

    let human = maestro(&s.url(), &["cleanup", "--force"]).await.expect(0).stdout;
    assert!(human.starts_with("cleanup done in "), "{human}");
    assert!(human.contains("\nACTION "), "{human}");
    assert!(human.lines().any(|l| l.starts_with("evict_model ") && l.contains(TINY)), "{human}");
    assert!(!tiny_loaded(&maestro(&s.url(), &["models", "--json"]).await.expect(0).json()), "evicted");
}

/// 95 % host memory with nothing idle to evict: the advice is to shrink the work.
#[tokio::test(flavor = "multi_thread")]
async fn suggestions_on_a_pressed_machine_say_reduce_the_batch() {
    let s = start(PRESSED).await;
    let v = maestro(&s.url(), &["suggestions", "--json"]).await.expect(0).json();
    assert_eq!(v["health"], "HEALTH_LEVEL_CRITICAL", "{v}");
    let reduce = v["suggestions"].as_array().unwrap().iter().find(|x| x["kind"] == "reduce_batch").cloned();
    let reduce = reduce.unwrap_or_else(|| panic!("no reduce_batch suggestion: {v}"));
    assert_eq!(
        (reduce["severity"].as_str(), reduce["resource"].as_str()),
        (Some("SEVERITY_WARNING"), Some("host"))
    );
    let human = maestro(&s.url(), &["suggestions"]).await.expect(0).stdout;
    assert!(human.starts_with("health CRITICAL\nSEVERITY "), "{human}");
    assert!(human.lines().any(|l| l.starts_with("WARNING") && l.contains("reduce_batch")), "{human}");
}
