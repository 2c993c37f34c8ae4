//! A request's audio is converted after admission: with no conversion free, a request whose queue
//! is full is still refused at once (the slot is taken first), and one that is admitted waits holding
//! its lease and slot; the lease counts the conversion's bytes.

use super::*;
use crate::{audio_input::Clip, generation::resolve::RawAudio};

/// Two seconds of 48 kHz stereo: the fixture's model is 32 kHz mono, so it is converted.
fn stereo_48k() -> Clip {
    Clip { samples: vec![0.1; 2 * 96_000], channels: 2, sample_rate: 48_000 }
}

fn with_audio() -> GenerateParams {
    GenerateParams { audio_prompt: Some(stereo_48k()), ..params() }
}

/// Waits (up to 10 s) until `manager` holds `n` generation leases.
async fn generation_leases_become(manager: &manager::Handle, n: usize, what: &str) {
    for _ in 0..500 {
        if leases_of(manager, LeaseKind::Generation).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 10 s");
}

async fn generation_lease_bytes(manager: &manager::Handle) -> u64 {
    let leases = manager.leases().await.unwrap();
    leases.iter().filter(|l| l.kind == LeaseKind::Generation).map(|l| l.cpu_bytes).sum()
}

#[tokio::test]
async fn a_full_queue_refuses_before_any_audio_is_converted() {
    let engine = Arc::new(Scripted { queue: 0, ..Scripted::default() });
    let (generation, manager) = orchestrator(engine).await;
    // No conversion may run: a refusal that came after one would never come.
    let generation = generation.with_conversion_limit(0);
    let start = generation.start(with_audio(), CancellationToken::new(), Client::default());
    let err =
        tokio::time::timeout(Duration::from_secs(10), start).await.expect("refused at once").err().unwrap();
    assert!(
        matches!(err, Error::Generation(GenerationError::Engine(EngineError::GenerationQueueFull { .. }))),
        "{err:?}"
    );
    assert_eq!(leases_of(&manager, LeaseKind::Generation).await, 0);
}

#[tokio::test]
async fn an_admitted_request_converts_its_audio_holding_its_lease_and_slot() {
    let engine = Arc::new(Scripted { queue: 4, ..Scripted::default() });
    let (generation, manager) = orchestrator(engine.clone()).await;
    let plain = generation.start(params(), CancellationToken::new(), Client::default()).await.unwrap();
    let without_audio = generation_lease_bytes(&manager).await;
    drop(plain);
    generation_leases_become(&manager, 0, "the plain request's lease back").await;
    // Waiting for a conversion, the request holds its lease (its audio counted) and a queue slot.
    let blocked = generation.clone().with_conversion_limit(0);
    let waiting = tokio::spawn(async move {
        blocked.start(with_audio(), CancellationToken::new(), Client::default()).await.map(drop)
    });
    generation_leases_become(&manager, 1, "the lease taken before the conversion").await;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(MODEL);
    let facts = CheckpointFacts::read(&dir).unwrap();
    let conversion = RawAudio { prompt: Some(stereo_48k()), melody: None }.conversion_bytes(&facts);
    let held = generation_lease_bytes(&manager).await;
    assert!(held >= without_audio + conversion, "{held} < {without_audio} + {conversion}");
    let submitted = engine.submitted.lock().unwrap().len();
    assert_eq!(submitted, 1, "only the plain request reached the engine: this one waits for its audio");
    waiting.abort();
    let _ = waiting.await;
    generation_leases_become(&manager, 0, "the waiting request's lease back when it is dropped").await;
    // With conversions free, the same request is admitted and submitted with its audio converted.
    let admitted = generation.start(with_audio(), CancellationToken::new(), Client::default()).await.unwrap();
    assert!(
        admitted.input_conversions.iter().any(|n| n.contains("resampled from 48000 Hz")),
        "{:?}",
        admitted.input_conversions
    );
    assert_eq!(admitted.prompt_frames, 2 * facts.sample_rate as usize / facts.hop());
}
