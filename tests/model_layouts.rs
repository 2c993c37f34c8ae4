//! Model folders in every published layout through the real gRPC server: ListModels finds their
//! weights and sizes them exactly (the same bytes whatever the layout), LoadModel loads a pickle
//! folder, and a config claiming to be a melody checkpoint over a text decoder is refused up front
//! with FAILED_PRECONDITION naming the field.
#![cfg(feature = "torch")]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{start_server, test_config};
use maestro_proto as pb;
use tonic::Code;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A model root beside the fixtures: `facebook/musicgen-melody` (the tiny text fixture claiming a
/// melody `model_type`, weights intact) and `config-only` (a config, no weights).
fn extra_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let melody = root.path().join("facebook/musicgen-melody");
    fs::create_dir_all(&melody).unwrap();
    for entry in fs::read_dir(fixtures().join("musicgen-tiny")).unwrap().flatten() {
        fs::copy(entry.path(), melody.join(entry.file_name())).unwrap();
    }
    let path = melody.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    config["model_type"] = serde_json::json!("musicgen_melody");
    config["architectures"] = serde_json::json!(["MusicgenMelodyForConditionalGeneration"]);
    fs::write(&path, config.to_string()).unwrap();
    fs::create_dir_all(root.path().join("config-only")).unwrap();
    fs::copy(fixtures().join("musicgen-tiny/config.json"), root.path().join("config-only/config.json"))
        .unwrap();
    root
}

#[tokio::test]
async fn every_layout_is_listed_sized_alike_and_loads() {
    let extra = extra_root();
    let mut config = test_config();
    config.models.roots = vec![fixtures(), extra.path().to_owned()];
    let mut s = start_server(config).await;
    let list = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    let weights = |id: &str| {
        let m = list.iter().find(|m| m.model == id).unwrap_or_else(|| panic!("{id} listed"));
        assert!(m.weights_present, "{id}: weights present");
        m.requirements.as_ref().unwrap_or_else(|| panic!("{id}: sized")).weights_bytes
    };
    let single = weights("musicgen-tiny");
    assert!(single > 0);
    for layout in ["safetensors-shards", "pickle", "pickle-shards", "both"] {
        assert_eq!(
            weights(&format!("layouts/{layout}")),
            single,
            "{layout}: the same bytes as the single file"
        );
    }
    let config_only = list.iter().find(|m| m.model == "config-only").expect("a config-only folder is listed");
    assert!(!config_only.weights_present, "{config_only:?}");

    let req = pb::LoadModelRequest {
        model: "layouts/pickle-shards".into(),
        device: "cpu".into(),
        ..Default::default()
    };
    let info = s.generation.load_model(req).await.unwrap().into_inner();
    assert!(info.loaded && info.device == "cpu", "{info:?}");
    s.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_melody_type_over_a_text_decoder_is_refused_up_front_naming_the_field() {
    let extra = extra_root();
    let mut config = test_config();
    config.models.roots = vec![extra.path().to_owned()];
    let mut s = start_server(config).await;
    let model = "facebook/musicgen-melody";
    let err = s
        .generation
        .load_model(pb::LoadModelRequest { model: model.into(), device: "cpu".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let named = "decoder.model_type \"musicgen_decoder\" (Maestro reads \"musicgen_melody_decoder\")";
    assert!(err.message().contains(named), "{:?}", err.message());
    let validate = pb::ValidateRequest {
        model: model.into(),
        batch_size: 1,
        duration_s: 5.0,
        device: "cpu".into(),
        ..Default::default()
    };
    let err = s.resources.validate_model(validate).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let generate = pb::GenerateRequest {
        model: model.into(),
        prompt: "calm piano".into(),
        duration_s: 0.2,
        ..Default::default()
    };
    let err = match s.generation.generate(generate).await {
        Err(e) => e,
        Ok(stream) => stream.into_inner().message().await.unwrap_err(),
    };
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("musicgen_melody_decoder"), "{:?}", err.message());
    s.shutdown().await.unwrap();
}
