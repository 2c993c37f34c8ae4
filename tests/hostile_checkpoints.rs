//! Hostile checkpoints under a model root, through the real server: a `pytorch_model.bin` whose
//! pickle nests 200 000 lists (which once aborted the process from `ListModels`) and one whose pickle
//! memoizes past the memo limit sit beside a good model. `ListModels` lists both with their error,
//! `ValidateModel` and `LoadModel` refuse each naming the file and the reason, and the server goes on
//! serving the good model.
#![cfg(feature = "torch")]

mod common;
#[path = "common/hostile.rs"]
mod hostile;

use std::fs;
use std::path::{Path, PathBuf};

use common::{start_server, test_config};
use maestro::checkpoint::pickle::{MAX_DEPTH, MAX_MEMO_ENTRIES};
use maestro_proto as pb;
use tonic::Code;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The hostile models, each with what its refusal must say.
const HOSTILE: [(&str, &str); 2] = [("hostile/deep", "nesting depth"), ("hostile/memo", "memo entries")];

/// A model root holding `hostile/deep` and `hostile/memo`: the tiny model's config over a hostile
/// `pytorch_model.bin`.
fn hostile_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let pickles = [hostile::nested_lists(200_000), hostile::memo_entries(MAX_MEMO_ENTRIES + 1)];
    for ((id, _), pickle) in HOSTILE.iter().zip(pickles) {
        let dir = root.path().join(id);
        fs::create_dir_all(&dir).unwrap();
        fs::copy(fixtures().join("musicgen-tiny/config.json"), dir.join("config.json")).unwrap();
        fs::write(dir.join("pytorch_model.bin"), hostile::torch_archive(&pickle, &[])).unwrap();
    }
    root
}

/// The test configuration over the model roots `roots`.
fn serving(roots: &[PathBuf]) -> maestro::config::Config {
    let mut config = test_config();
    config.models.roots = roots.to_vec();
    config
}

/// Asserts `message` names the model's weights file and the reason.
fn names_file_and_reason(message: &str, id: &str, reason: &str) {
    let file = format!("{id}/pytorch_model.bin");
    assert!(message.contains(&file) && message.contains(reason), "{id}: {message:?}");
    assert!(message.contains("over the limit of"), "{id}: {message:?}");
}

#[tokio::test]
async fn hostile_checkpoints_are_listed_with_their_error_and_refused_by_name() {
    let root = hostile_root();
    let mut s = start_server(serving(&[fixtures(), root.path().to_owned()])).await;
    let list = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    for (id, reason) in HOSTILE {
        let m = list.iter().find(|m| m.model == id).unwrap_or_else(|| panic!("{id} listed"));
        assert!(m.weights_present && m.requirements.is_none(), "{m:?}");
        names_file_and_reason(&m.error, id, reason);
    }
    let deep = &list.iter().find(|m| m.model == HOSTILE[0].0).unwrap().error;
    assert!(deep.contains(&format!("is {}, over the limit of {MAX_DEPTH}", MAX_DEPTH + 1)), "{deep}");
    let good = list.iter().find(|m| m.model == "musicgen-tiny").expect("the good model is listed");
    assert!(good.requirements.is_some() && good.error.is_empty(), "{good:?}");

    // One second of one sample on the CPU: the question does not matter, the checkpoint is refused.
    let question =
        pb::ValidateRequest { batch_size: 1, duration_s: 1.0, device: "cpu".into(), ..Default::default() };
    let validate = |id: &str| pb::ValidateRequest { model: id.into(), ..question.clone() };
    let load =
        |id: &str| pb::LoadModelRequest { model: id.into(), device: "cpu".into(), ..Default::default() };
    for (id, reason) in HOSTILE {
        let refusals = [
            s.resources.validate_model(validate(id)).await.unwrap_err(),
            s.generation.load_model(load(id)).await.unwrap_err(),
        ];
        for err in refusals {
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
            names_file_and_reason(err.message(), id, reason);
        }
    }

    // Alive: the listing still answers, and the good model loads.
    let again = s.generation.list_models(pb::ListModelsRequest {}).await.unwrap().into_inner().models;
    assert_eq!(again.len(), list.len());
    let info = s.generation.load_model(load("musicgen-tiny")).await.unwrap().into_inner();
    assert!(info.loaded && info.error.is_empty(), "{info:?}");
    s.shutdown().await.unwrap();
}
