//! Models in the Hugging Face hub cache through the orchestrator: a complete snapshot loads from where
//! it lies (the engine is given the snapshot folder, its files links into the blobs), an incomplete
//! one is refused by validation and by a load, naming what it lacks, and the engine never sees it.

use tempfile::TempDir;

use super::*;
use crate::resources::model_id::ModelIdError;

use crate::resources::hub_layout::{fixture_files, HubLayout};

const COMMIT: &str = "5c0e7a2b9d1f4e3a8b6c7d0e1f2a3b4c5d6e7f80";

/// A hub cache (with the shared Xet store) holding the tiny fixture as `facebook/musicgen-small` and,
/// without its tokenizer, as `facebook/musicgen-medium`.
fn cache() -> (TempDir, HubLayout) {
    let dir = TempDir::new().unwrap();
    let hub = HubLayout::new(dir.path(), true);
    hub.snapshot("facebook/musicgen-small", COMMIT, &fixture_files("musicgen-tiny"));
    hub.set_ref("facebook/musicgen-small", "main", COMMIT);
    let mut partial = fixture_files("musicgen-tiny");
    partial.retain(|(name, _)| *name != "tokenizer.json");
    hub.snapshot("facebook/musicgen-medium", COMMIT, &partial);
    hub.set_ref("facebook/musicgen-medium", "main", COMMIT);
    (dir, hub)
}

#[tokio::test]
async fn a_cached_snapshot_loads_in_place_and_an_incomplete_one_never_does() {
    let (_dir, hub) = cache();
    let engine = Arc::new(Scripted { queue: 4, ..Scripted::default() });
    let roots = ModelRoots { dirs: Vec::new(), hub_cache: Some(hub.cache.clone()) };
    let (generation, manager) = orchestrator_over(engine.clone(), ROOMY, roots).await;

    let medium = "facebook/musicgen-medium";
    let err = generation.load_model(medium, DType::F32, Device::Cpu.into(), false).await.unwrap_err();
    let Error::ModelId(ModelIdError::Incomplete { missing, .. }) = &err else { panic!("{err:?}") };
    assert_eq!(missing, &["tokenizer.json"]);
    let question = FitQuestion {
        model: medium.into(),
        batch: 1,
        duration_s: 1.0,
        device: Device::Cpu.into(),
        dtype: DType::F32,
        audio_prompt_s: 0.0,
        conversion_bytes: 0,
    };
    let err = manager.fit(question).await.unwrap_err();
    assert!(matches!(err, Error::ModelId(ModelIdError::Incomplete { .. })), "validation too: {err:?}");
    assert_eq!(engine.loads.load(Ordering::SeqCst), 0);

    let small = format!("facebook/musicgen-small@{}", &COMMIT[..7]);
    generation.load_model(&small, DType::F32, Device::Cpu.into(), false).await.unwrap();
    let snapshot = hub.entry("facebook/musicgen-small").join("snapshots").join(COMMIT);
    assert_eq!(*engine.load_dirs.lock().unwrap(), [snapshot.canonicalize().unwrap()]);
}
