//! Every published checkpoint layout, reproduced at tiny size by `scripts/make_reference.py` under
//! `tests/fixtures/layouts/`, loads and generates exactly the codes and audio transformers made from
//! the single-file original (`musicgen-tiny`); a pickle folder converted by `convert-checkpoint`
//! does too; a config that is neither MusicGen nor melody is refused before any weight is read.
#![cfg(feature = "torch")]

mod musicgen_common;

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use maestro::checkpoint::{convert, Layout};
use maestro::musicgen::{DType, MusicGen, MusicgenError};
use musicgen_common::{fixture, max_diff, reference, PROMPTS};
use tch::{Device, Tensor};

/// The fixture whose weights every layout folder holds.
const ORIGINAL: &str = "musicgen-tiny";

/// Each layout folder and the layout it must be read as.
const LAYOUTS: [(&str, Layout); 4] = [
    ("safetensors-shards", Layout::SafetensorsShards),
    ("pickle", Layout::Pickle),
    ("pickle-shards", Layout::PickleShards),
    ("both", Layout::Safetensors),
];

fn layout_dir(name: &str) -> PathBuf {
    fixture("layouts").join(name)
}

fn copy_dir(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// Greedy codes and streamed audio of the reference's two prompts, checked against transformers.
fn assert_generates_the_reference(dir: &Path, what: &str) {
    let model = MusicGen::load(dir, Device::Cpu, DType::F32).unwrap_or_else(|e| panic!("{what}: {e}"));
    let r = reference(ORIGINAL);
    let want_codes = &r["gen.codes"];
    let frames = want_codes.size()[2] as usize;
    let requests: Vec<_> = PROMPTS[..2]
        .iter()
        .map(|p| {
            let mut req = model.request(p, 1.0);
            (req.frames, req.sampling.greedy, req.guidance_scale, req.chunk_frames) = (frames, true, 3.0, 5);
            req
        })
        .collect();
    let mut audio = vec![Vec::new(); requests.len()];
    let stats = model
        .generate(&requests, |chunk| {
            audio[chunk.request].extend_from_slice(&chunk.samples);
            ControlFlow::Continue(())
        })
        .expect("generation runs");
    for (row, (stats, audio)) in stats.into_iter().zip(audio).enumerate() {
        let codes = Tensor::from_slice(&stats.codes.concat()).view([4, frames as i64]);
        assert!(codes.equal(&want_codes.get(row as i64)), "{what} row {row}: greedy codes differ");
        let diff = max_diff(&Tensor::from_slice(&audio), &r["gen.audio"].get(row as i64).flatten(0, -1));
        assert!(diff <= 1e-4, "{what} row {row}: audio differs by {diff}");
    }
}

#[test]
fn every_layout_generates_the_single_file_codes() {
    assert_generates_the_reference(&fixture(ORIGINAL), "the single file");
    for (name, layout) in LAYOUTS {
        let found = maestro::checkpoint::Checkpoint::open_dir(&layout_dir(name)).unwrap();
        assert_eq!(found.layout(), layout, "{name}");
        assert_generates_the_reference(&layout_dir(name), name);
    }
}

#[test]
fn a_converted_pickle_folder_generates_the_same_codes() {
    for name in ["pickle", "pickle-shards"] {
        let dir = copy_dir(&layout_dir(name));
        let done = convert::convert_dir(dir.path()).unwrap();
        assert_eq!(done.from, LAYOUTS.iter().find(|(n, _)| *n == name).unwrap().1);
        for bin in fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        {
            // Proof the new file is what loads: the pickles are gone.
            fs::remove_file(bin.path()).unwrap();
        }
        fs::remove_file(dir.path().join("pytorch_model.bin.index.json")).ok();
        assert_generates_the_reference(dir.path(), &format!("{name} converted"));
    }
}

#[test]
fn a_config_that_is_neither_kind_is_refused_before_any_weight_is_read() {
    let dir = copy_dir(&fixture(ORIGINAL));
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    // A melody type over a text-conditioned decoder: neither a MusicGen nor a melody checkpoint.
    config["model_type"] = serde_json::json!("musicgen_melody");
    fs::write(&path, config.to_string()).unwrap();
    // Garbage weights: a load that reached them would fail differently.
    fs::write(dir.path().join("model.safetensors"), b"garbage").unwrap();
    match MusicGen::load(dir.path(), Device::Cpu, DType::F32) {
        Err(e @ MusicgenError::Checkpoint(maestro::checkpoint::CheckpointError::Unsupported { .. })) => {
            assert!(e.to_string().contains("decoder.model_type \"musicgen_decoder\""), "{e}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a mislabelled checkpoint loaded"),
    }
    let report = maestro::musicgen::inspect(dir.path(), 1, 1.0).expect_err("inspect refuses it too");
    assert!(report.to_string().contains("musicgen_melody_decoder"), "{report}");
}

#[test]
fn inspect_names_the_layout_and_suggests_converting_pickles() {
    let report = maestro::musicgen::inspect(&layout_dir("pickle-shards"), 1, 5.0).unwrap();
    assert!(
        report.contains(
            "weights: pickle shards (pytorch_model-00001-of-00002.bin, pytorch_model-00002-of-00002.bin)"
        ),
        "{report}"
    );
    assert!(report.contains("maestro-server convert-checkpoint"), "{report}");
    let report = maestro::musicgen::inspect(&layout_dir("safetensors-shards"), 1, 5.0).unwrap();
    assert!(
        report.contains("weights: safetensors shards") && !report.contains("convert-checkpoint"),
        "{report}"
    );
}
