//! Property-based fuzzing of every parser besides requests (`tests/fuzz_requests.rs`): pickles,
//! checkpoint layouts, audio input and config files, through the same entry points as the
//! coverage-guided `cargo fuzz` targets in `fuzz/` (`make fuzz`, nightly). Arbitrary bytes and
//! mutated seeds must give a value or a clean error, never a panic. Every input a fuzzing run found
//! a fault with is kept under `tests/fixtures/fuzz/<target>/` and replayed here.

use std::path::Path;

use maestro::{audio_input, checkpoint};
use proptest::prelude::*;

#[path = "common/fuzz_seeds.rs"]
mod fuzz_seeds;

/// Runs `bytes` through the target named `target`, with a fresh scratch folder.
fn run(target: &str, bytes: &[u8]) {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    match target {
        "pickle" => checkpoint::fuzz::pickle(bytes),
        "checkpoint_layout" => checkpoint::fuzz::layout(bytes, dir),
        "audio_input" => audio_input::fuzz::check(bytes),
        "config_file" => checkpoint::fuzz::config_file(bytes, dir),
        other => panic!("no target {other}"),
    }
}

/// Arbitrary bytes (a quarter of the cases) or one of `target`'s seeds with a few bytes changed, cut
/// short and extended.
fn input(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = fuzz_seeds::all().into_iter().find(|(t, _)| *t == target).expect("a seeded target").1;
    let mutated = (
        proptest::sample::select(seeds),
        proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 0..8),
        any::<proptest::sample::Index>(),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(mut bytes, flips, cut, tail)| {
            if !bytes.is_empty() {
                for (at, value) in flips {
                    let i = at.index(bytes.len());
                    bytes[i] = value;
                }
                bytes.truncate(1 + cut.index(bytes.len()));
            }
            bytes.extend(tail);
            bytes
        });
    prop_oneof![1 => proptest::collection::vec(any::<u8>(), 0..512), 3 => mutated]
}

proptest! {
    // A few hundred cases each: seconds in `make test`; the fuzz targets run for minutes.
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pickles_are_read_or_refused(bytes in input("pickle")) {
        run("pickle", &bytes);
    }

    #[test]
    fn checkpoint_layouts_are_opened_or_refused(bytes in input("checkpoint_layout")) {
        run("checkpoint_layout", &bytes);
    }

    #[test]
    fn audio_is_decoded_and_conformed_or_refused(bytes in input("audio_input")) {
        run("audio_input", &bytes);
    }

    #[test]
    fn config_files_are_loaded_or_refused(bytes in input("config_file")) {
        run("config_file", &bytes);
    }
}

/// The seeds themselves go through (each target's corpus starts from them).
#[test]
fn every_seed_runs() {
    for (target, seeds) in fuzz_seeds::all().into_iter().filter(|(t, _)| *t != "requests") {
        for seed in seeds {
            run(target, &seed);
        }
    }
}

/// Every input a fuzzing run found a fault with, replayed through its target.
#[test]
fn past_findings_stay_fixed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    for target in ["pickle", "checkpoint_layout", "audio_input", "config_file"] {
        let Ok(entries) = std::fs::read_dir(root.join(target)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            eprintln!("{target}: {}", path.display());
            run(target, &std::fs::read(&path).unwrap());
        }
    }
}
