//! `maestro` against the real server: the model catalogue, load / unload and `generate` into a WAV
//! file with the tiny fixture model (the tests link the server with libtorch, see `Cargo.toml`).

mod common;

use common::{maestro, start, ROOMY};

const TINY: &str = "musicgen-tiny";

#[tokio::test(flavor = "multi_thread")]
async fn models_lists_the_fixtures_and_the_table() {
    let s = start(ROOMY).await;
    let run = maestro(&s.url(), &["models"]).await.expect(0);
    assert!(run.stdout.starts_with("MODEL"), "{}", run.stdout);
    assert!(run.stdout.contains(TINY) && run.stdout.contains("facebook/musicgen-small"), "{}", run.stdout);
    let v = maestro(&s.url(), &["models", "--json"]).await.expect(0).json();
    let tiny = v["models"].as_array().unwrap().iter().find(|m| m["model"] == TINY).cloned().unwrap();
    assert_eq!(tiny["weights_present"], true, "{tiny}");
}

#[tokio::test(flavor = "multi_thread")]
async fn load_then_unload() {
    let s = start(ROOMY).await;
    let v = maestro(&s.url(), &["load", TINY, "--device", "cpu", "--json"]).await.expect(0).json();
    assert_eq!((v["model"].as_str(), v["loaded"].as_bool()), (Some(TINY), Some(true)), "{v}");
    let run = maestro(&s.url(), &["unload", TINY]).await.expect(0);
    assert!(run.stdout.starts_with(&format!("unloaded {TINY}, freed ")), "{}", run.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_model_is_not_found() {
    let s = start(ROOMY).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.wav");
    let run = maestro(&s.url(), &["generate", "--model", "nobody/unknown", "-o", out.to_str().unwrap()])
        .await
        .expect(4);
    assert!(run.stderr.starts_with("maestro: NOT_FOUND: "), "{}", run.stderr);
    assert!(!out.exists(), "no file is created before the server accepts the request");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zero_duration_is_invalid_input() {
    let s = start(ROOMY).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.wav");
    let run =
        maestro(&s.url(), &["generate", "--model", TINY, "--duration", "0", "-o", out.to_str().unwrap()])
            .await
            .expect(4);
    assert!(run.stderr.starts_with("maestro: INVALID_ARGUMENT: "), "{}", run.stderr);
    assert!(run.stderr.contains("duration_s"), "{}", run.stderr);
    assert!(!out.exists(), "no file for a refused request");
}

/// The WAV's header and length match the summary, in both sample formats.
#[tokio::test(flavor = "multi_thread")]
async fn generate_writes_a_wav_that_matches_the_summary() {
    let s = start(ROOMY).await;
    let dir = tempfile::tempdir().unwrap();
    for (format, bits) in [("s16", 16), ("f32", 32)] {
        let out = dir.path().join(format!("{format}.wav"));
        let args = ["generate", "--model", TINY, "--prompt", "calm piano", "--duration", "1", "--seed", "7"];
        let tail = ["--format", format, "--chunk-ms", "250", "--json", "-o", out.to_str().unwrap()];
        let summary = maestro(&s.url(), &[&args[..], &tail[..]].concat()).await.expect(0).json();
        let reader = hound::WavReader::open(&out).unwrap();
        let spec = reader.spec();
        assert_eq!(spec.bits_per_sample, bits);
        let samples = summary["samples"].as_u64().unwrap();
        assert!(samples > 0, "{summary}");
        assert_eq!(u64::from(reader.duration()), samples, "WAV length vs summary {summary}");
        let seconds = samples as f64 / f64::from(spec.sample_rate);
        assert!((seconds - 1.0).abs() < 0.1, "asked for 1 s, got {seconds} s");
    }
    let human = dir.path().join("h.wav");
    let args = ["generate", "--model", TINY, "--duration", "0.5", "--greedy", "-o", human.to_str().unwrap()];
    let run = maestro(&s.url(), &args).await.expect(0);
    assert!(run.stdout.starts_with(&format!("wrote {}", human.display())), "{}", run.stdout);
    assert!(run.stdout.contains("RTF"), "{}", run.stdout);
}

/// `--continue` sends a WAV clip; `--include-prompt` writes its decode too; `--melody` conditions a
/// melody checkpoint and a text-only one refuses it.
#[tokio::test(flavor = "multi_thread")]
async fn generate_continues_a_wav_clip() {
    let s = start(ROOMY).await;
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&clip, spec).unwrap();
    for i in 0..24_000 {
        let v = ((i as f32 * 0.05).sin() * 6000.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(-v).unwrap();
    }
    w.finalize().unwrap();
    let (out, whole) = (dir.path().join("more.wav"), dir.path().join("whole.wav"));
    let args =
        ["generate", "--model", TINY, "--continue", clip.to_str().unwrap(), "--duration", "0.4", "--json"];
    let summary =
        maestro(&s.url(), &[&args[..], &["-o", out.to_str().unwrap()]].concat()).await.expect(0).json();
    assert_eq!(summary["samples"].as_u64(), Some(20 * 640), "{summary}");
    assert_eq!(u64::from(hound::WavReader::open(&out).unwrap().duration()), 20 * 640);
    let with_clip = [&args[..], &["--include-prompt", "-o", whole.to_str().unwrap()]].concat();
    let summary = maestro(&s.url(), &with_clip).await.expect(0).json();
    assert_eq!(summary["samples"].as_u64(), Some((25 + 20) * 640), "{summary}");
    let melody =
        ["generate", "--model", TINY, "--melody", clip.to_str().unwrap(), "-o", out.to_str().unwrap()];
    let run = maestro(&s.url(), &melody).await;
    assert!(run.stderr.contains("FAILED_PRECONDITION") && run.stderr.contains("text-only"), "{}", run.stderr);
    let tune = dir.path().join("tune.wav");
    let melody = ["generate", "--model", "musicgen-melody-tiny", "--prompt", "calm piano", "--melody"];
    let args = [&melody[..], &[clip.to_str().unwrap(), "--duration", "0.3", "--json", "-o"]].concat();
    let summary = maestro(&s.url(), &[&args[..], &[tune.to_str().unwrap()]].concat()).await.expect(0).json();
    assert_eq!(summary["samples"].as_u64(), Some(15 * 640), "{summary}");
    assert_eq!(u64::from(hound::WavReader::open(&tune).unwrap().duration()), 15 * 640);
}
