//! `maestro` against the real server: the model catalogue, load / unload and `generate` into WAV,
//! FLAC, MP3 and Ogg Opus files with the tiny fixture model (the tests link the server with
//! libtorch, see `Cargo.toml`; the encoded files are decoded with ffmpeg, which
//! `scripts/provision-tools.sh` installs).

mod common;

use std::path::Path;

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

/// ffmpeg's decoding of `file` to mono raw samples, `args` naming their format (and rate).
fn ffmpeg(file: &Path, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(file)
        .args(["-ac", "1"])
        .args(args)
        .arg("-")
        .output()
        .unwrap_or_else(|e| panic!("cannot run ffmpeg ({e}): scripts/provision-tools.sh installs it"));
    assert!(
        out.status.success(),
        "ffmpeg refused {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The output's extension picks the format: a FLAC holds exactly the samples of the WAV generated
/// with the same seed, and MP3 and Ogg Opus files play for the duration asked.
#[tokio::test(flavor = "multi_thread")]
async fn the_output_extension_picks_the_format() {
    let s = start(ROOMY).await;
    let dir = tempfile::tempdir().unwrap();
    let args = ["generate", "--model", TINY, "--prompt", "calm piano", "--duration", "1", "--seed", "7"];
    let mut summaries = Vec::new();
    for name in ["x.wav", "x.flac", "x.mp3", "x.ogg"] {
        let out = dir.path().join(name);
        let tail = ["--chunk-ms", "250", "--json", "-o", out.to_str().unwrap()];
        summaries.push(maestro(&s.url(), &[&args[..], &tail[..]].concat()).await.expect(0).json());
    }
    let samples = summaries[0]["samples"].as_u64().unwrap();
    assert!(summaries.iter().all(|v| v["samples"].as_u64() == Some(samples)), "{summaries:?}");
    let wav: Vec<i16> =
        hound::WavReader::open(dir.path().join("x.wav")).unwrap().samples().map(Result::unwrap).collect();
    let flac = ffmpeg(&dir.path().join("x.flac"), &["-f", "s16le"]);
    let flac: Vec<i16> = flac.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    assert_eq!(wav.len() as u64, samples);
    assert!(flac == wav, "the FLAC decodes to the WAV's {} samples ({} decoded)", wav.len(), flac.len());
    for name in ["x.mp3", "x.ogg"] {
        let decoded = ffmpeg(&dir.path().join(name), &["-ar", "48000", "-f", "f32le"]);
        let seconds = decoded.len() as f64 / 4.0 / 48_000.0;
        assert!((seconds - 1.0).abs() <= 0.1, "{name}: asked for 1 s, it plays {seconds} s");
    }
    let opus = dir.path().join("h.opus");
    let human = ["--duration", "0.5", "--greedy", "-o", opus.to_str().unwrap()];
    let run = maestro(&s.url(), &[&args[..5], &human[..]].concat()).await.expect(0);
    let wrote = format!("wrote {}: 0.50 s, Ogg Opus, 48000 Hz, 1 channel(s), ", opus.display());
    assert!(run.stdout.starts_with(&wrote), "{}", run.stdout);
}

/// An extension this client does not write, or f32 samples outside a WAV, is a usage error found
/// before connecting (the address has no server) and creates no file.
#[tokio::test]
async fn a_bad_extension_or_format_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (aac, flac) = (dir.path().join("x.aac"), dir.path().join("x.flac"));
    let nowhere = "http://127.0.0.1:1";
    let run = maestro(nowhere, &["generate", "--model", TINY, "-o", aac.to_str().unwrap()]).await.expect(2);
    assert!(
        run.stderr.contains(".aac") && run.stderr.contains(".wav, .flac, .ogg, .opus, .mp3"),
        "{}",
        run.stderr
    );
    let f32_flac = ["generate", "--model", TINY, "--format", "f32", "-o", flac.to_str().unwrap()];
    let run = maestro(nowhere, &f32_flac).await.expect(2);
    assert!(run.stderr.contains("--format f32 needs a .wav output"), "{}", run.stderr);
    assert!(!aac.exists() && !flac.exists(), "no file for a usage error");
}
