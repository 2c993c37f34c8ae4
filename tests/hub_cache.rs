//! The Hugging Face hub cache as a model root, through the real server: caches built by hand as
//! `huggingface_hub` writes them, with and without the shared Xet blob store, are listed and
//! validated by hub id (a cached `facebook/musicgen-small` is present; an incomplete entry is listed
//! with what it lacks and refused; another kind of model is not listed), and the installed
//! `huggingface_hub` reads the same caches: `scan_cache_dir` sees every entry without a warning, and
//! `snapshot_download(repo_id, local_files_only=True)` returns the snapshot Maestro resolves.

mod common;
#[path = "common/hub_layout.rs"]
mod hub_layout;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{start_server, test_config};
use hub_layout::{fixture_files, HubLayout};
use maestro::config::HubCache;
use maestro::resources::model_id::{self, ModelRoots};
use maestro_proto as pb;
use tonic::Code;

const SMALL: &str = "facebook/musicgen-small";
const MEDIUM: &str = "facebook/musicgen-medium";
const MAIN: &str = "0123456789abcdef0123456789abcdef01234567";
const DEV: &str = "0123ffff89abcdef0123456789abcdef01234567";

/// A cache with the tiny fixture as `SMALL` at `MAIN` (`refs/main`) and at `DEV` (branch `dev`),
/// `MEDIUM` without its tokenizer and with a download left unfinished, and a BERT model.
fn cache(dir: &Path, shared_store: bool) -> HubLayout {
    let hub = HubLayout::new(&dir.join("hub"), shared_store);
    hub.snapshot(SMALL, MAIN, &fixture_files("musicgen-tiny"));
    hub.snapshot(SMALL, DEV, &fixture_files("musicgen-tiny"));
    hub.set_ref(SMALL, "main", MAIN);
    hub.set_ref(SMALL, "dev", DEV);
    let mut partial = fixture_files("musicgen-tiny");
    partial.retain(|(name, _)| *name != "tokenizer.json");
    hub.snapshot(MEDIUM, MAIN, &partial);
    hub.set_ref(MEDIUM, "main", MAIN);
    hub.unfinished_download(MEDIUM, b"a tokenizer on its way");
    let mut bert = fixture_files("musicgen-tiny");
    bert[0].1 = br#"{"model_type": "bert", "architectures": ["BertModel"]}"#.to_vec();
    hub.snapshot("google-bert/bert-base-uncased", MAIN, &bert);
    hub.set_ref("google-bert/bert-base-uncased", "main", MAIN);
    hub
}

fn validate(model: &str) -> pb::ValidateRequest {
    pb::ValidateRequest {
        model: model.into(),
        batch_size: 1,
        duration_s: 5.0,
        device: "cpu".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn both_layouts_are_listed_and_validated_by_hub_id() {
    for shared_store in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let hub = cache(dir.path(), shared_store);
        let mut config = test_config();
        config.models.roots = vec![dir.path().join("no-models-here")];
        config.models.hub_cache = HubCache::Dir(hub.cache.clone());
        let mut s = start_server(config).await;
        let models = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
        let listed =
            |id: &str| models.iter().find(|m| m.model == id).unwrap_or_else(|| panic!("{id} listed"));
        let small = listed(SMALL);
        assert!(small.weights_present && small.error.is_empty(), "{small:?}");
        assert_eq!(small.root, hub.cache.display().to_string());
        let medium = listed(MEDIUM);
        assert!(!medium.weights_present, "{medium:?}");
        assert!(
            medium.error.contains("lacks tokenizer.json") && medium.error.contains(".incomplete"),
            "{medium:?}"
        );
        assert!(models.iter().all(|m| !m.model.contains("bert")), "another kind of model is not listed");

        let fits = s.resources.validate_model(validate(SMALL)).await.unwrap().into_inner();
        assert!(fits.fits, "{fits:?}");
        let at_dev = s.resources.validate_model(validate(&format!("{SMALL}@dev"))).await.unwrap();
        assert!(at_dev.into_inner().fits);
        for (model, code, needle) in [
            (MEDIUM.to_owned(), Code::NotFound, "lacks tokenizer.json"),
            (format!("{SMALL}@0123"), Code::InvalidArgument, "prefix of several"),
            (format!("{SMALL}@v9"), Code::NotFound, "no snapshot for revision \"v9\""),
        ] {
            let err = s.resources.validate_model(validate(&model)).await.unwrap_err();
            assert_eq!(err.code(), code, "{model}: {err:?}");
            assert!(err.message().contains(needle), "{model}: {}", err.message());
        }
        s.shutdown().await.unwrap();
        agrees_with_huggingface_hub(&hub);
    }
}

/// What the installed `huggingface_hub` makes of the cache: the repo ids `scan_cache_dir` finds, its
/// warnings, and the snapshot folders `snapshot_download(..., local_files_only=True)` returns for
/// `SMALL` at `main` and at `dev`; these must match the entries and what Maestro resolves.
fn agrees_with_huggingface_hub(hub: &HubLayout) {
    let venv = std::env::var("MAESTRO_VENV").expect(
        "MAESTRO_VENV: run through `make test` or `source scripts/env.sh` (the venv has huggingface_hub)",
    );
    let script = r#"
import json, sys
from huggingface_hub import scan_cache_dir, snapshot_download
cache, repo = sys.argv[1], sys.argv[2]
info = scan_cache_dir(cache)
print(json.dumps({
    "repos": sorted(r.repo_id for r in info.repos),
    "warnings": [str(w) for w in info.warnings],
    "main": snapshot_download(repo, local_files_only=True, cache_dir=cache),
    "dev": snapshot_download(repo, revision="dev", local_files_only=True, cache_dir=cache),
}))
"#;
    let out = Command::new(format!("{venv}/bin/python3"))
        .args(["-c", script])
        .arg(&hub.cache)
        .arg(SMALL)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        seen["repos"],
        serde_json::json!(["facebook/musicgen-medium", SMALL, "google-bert/bert-base-uncased"])
    );
    assert_eq!(seen["warnings"], serde_json::json!([]), "huggingface_hub reads the cache as its own");
    let roots = ModelRoots { dirs: Vec::new(), hub_cache: Some(hub.cache.clone()) };
    for (revision, id) in [("main", SMALL.to_owned()), ("dev", format!("{SMALL}@dev"))] {
        let theirs = PathBuf::from(seen[revision].as_str().unwrap()).canonicalize().unwrap();
        assert_eq!(model_id::resolve(&id, &roots).unwrap().dir, theirs, "{id}");
    }
}
