//! Seed inputs of every fuzz target, built from the repository's fixtures: valid requests, the
//! fixtures' pickles and archives, small safetensors layouts, clips in every encoding, and the
//! deployment's and fixtures' config files. `examples/fuzz_seeds.rs` writes them as the `cargo fuzz`
//! corpora (`make fuzz`); the property tests mutate them (both include this file by path).
#![allow(dead_code)]

use std::io::{Cursor, Read};
use std::path::Path;

use maestro::{audio_input::fuzz as audio, checkpoint::fuzz::FILE_SEPARATOR, checkpoint::pickle};

/// Every target's seeds, by target name (a folder of `fuzz/corpus/`).
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("requests", maestro::grpc::fuzz::seeds()),
        ("pickle", pickles()),
        ("checkpoint_layout", layouts()),
        ("audio_input", clips()),
        ("config_file", configs()),
    ]
}

fn fixture(path: &str) -> Vec<u8> {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The fixtures' `torch.save` archives: tensor views, a refused global, a plain state dict.
const ARCHIVES: [&str; 3] = [
    "tests/fixtures/pickles/views.bin",
    "tests/fixtures/pickles/os_system.bin",
    "tests/fixtures/layouts/both/pytorch_model.bin",
];

/// The `data.pkl` of a `torch.save` archive.
fn data_pkl(archive: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipArchive::new(Cursor::new(archive)).expect("a fixture archive");
    let name =
        zip.file_names().filter_map(Result::ok).find(|n| n.ends_with("/data.pkl")).expect("a data.pkl");
    let name = name.into_owned();
    let mut bytes = Vec::new();
    zip.by_name(&name).unwrap().read_to_end(&mut bytes).unwrap();
    bytes
}

/// The fixtures' pickles, and lists nested a few deep (the reader's depth limit is a mutation away).
pub fn pickles() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = ARCHIVES.iter().map(|a| data_pkl(&fixture(a))).collect();
    seeds.push([&[0x80, 2][..], &[b']'; 8], &[b'a'; 7], b"."].concat());
    seeds
}

/// One layout input: each `(name, bytes)` as a file, joined by [`FILE_SEPARATOR`].
pub fn files(files: &[(&str, &[u8])]) -> Vec<u8> {
    let parts: Vec<Vec<u8>> =
        files.iter().map(|(name, bytes)| [name.as_bytes(), b"\n", bytes].concat()).collect();
    parts.join(FILE_SEPARATOR)
}

/// A safetensors file of one-dimensional F32 tensors, each `(name, elements)`.
fn safetensors(tensors: &[(&str, usize)]) -> Vec<u8> {
    let (mut header, mut at) = (serde_json::Map::new(), 0);
    for (name, n) in tensors {
        let entry = serde_json::json!({ "dtype": "F32", "shape": [n], "data_offsets": [at, at + 4 * n] });
        header.insert((*name).to_owned(), entry);
        at += 4 * n;
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend((0..at / 4).flat_map(|i| (i as f32 * 0.5).to_le_bytes()));
    bytes
}

/// A shard index routing each `(tensor, shard)`.
fn index(routes: &[(&str, &str)]) -> Vec<u8> {
    let map: serde_json::Map<_, _> = routes.iter().map(|(k, s)| ((*k).to_owned(), (*s).into())).collect();
    serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": map }).to_string().into_bytes()
}

/// Every layout, small: one safetensors file, two safetensors shards, the fixtures' archives as
/// `pytorch_model.bin`, and an archive as the one shard of a pickle index.
pub fn layouts() -> Vec<Vec<u8>> {
    let (one, two) = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
    let shards = index(&[("w", one), ("b", one), ("v", two)]);
    let mut seeds = vec![
        files(&[("model.safetensors", &safetensors(&[("w", 2), ("b", 1)]))]),
        files(&[
            ("model.safetensors.index.json", &shards),
            (one, &safetensors(&[("w", 2), ("b", 1)])),
            (two, &safetensors(&[("v", 3)])),
        ]),
    ];
    seeds.extend(ARCHIVES.iter().map(|a| files(&[("pytorch_model.bin", &fixture(a))])));
    let views = fixture(ARCHIVES[0]);
    let names = pickle::read_state_dict(&data_pkl(&views)).expect("the views fixture reads");
    let shard = "pytorch_model-00001-of-00001.bin";
    let routes: Vec<(&str, &str)> = names.iter().map(|(name, _)| (name.as_str(), shard)).collect();
    seeds.push(files(&[("pytorch_model.bin.index.json", &index(&routes)), (shard, &views)]));
    seeds
}

/// A WAV file of `samples` in `spec`.
fn wav(spec: hound::WavSpec, samples: &[f32]) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut bytes, spec).unwrap();
    let full = 2f32.powi(i32::from(spec.bits_per_sample) - 1) - 1.0;
    for &s in samples {
        match spec.sample_format {
            hound::SampleFormat::Float => writer.write_sample(s).unwrap(),
            hound::SampleFormat::Int => writer.write_sample((s * full) as i32).unwrap(),
        }
    }
    writer.finalize().unwrap();
    bytes.into_inner()
}

/// Clips in every encoding, each to be conformed to another rate or channel count.
pub fn clips() -> Vec<Vec<u8>> {
    let tone: Vec<f32> = (0..800).map(|i| (i as f32 * 0.07).sin() * 0.5).collect();
    let s16: Vec<u8> = tone.iter().flat_map(|s| ((s * 32767.0) as i16).to_le_bytes()).collect();
    let f32le: Vec<u8> = tone.iter().flat_map(|s| s.to_le_bytes()).collect();
    let spec = |channels, sample_rate, bits_per_sample, sample_format| hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample,
        sample_format,
    };
    let (int, float) = (hound::SampleFormat::Int, hound::SampleFormat::Float);
    vec![
        audio::input(0, (32_000, 1), 2, 1, &s16),
        audio::input(0, (44_100, 2), 2, 1, &s16),
        audio::input(1, (48_000, 1), 1, 2, &f32le),
        audio::input(1, (16_000, 4), 4, 2, &f32le),
        audio::input(2, (0, 0), 2, 1, &wav(spec(2, 16_000, 16, int), &tone)),
        audio::input(2, (8_000, 1), 3, 2, &wav(spec(1, 8_000, 32, float), &tone)),
        audio::input(2, (0, 0), 0, 1, &wav(spec(1, 22_050, 24, int), &tone)),
    ]
}

/// The deployment's server config and a short one, and the fixtures' model configs.
pub fn configs() -> Vec<Vec<u8>> {
    let short = "[server]\nlisten = \"127.0.0.1:0\"\n\n[generation]\nmax_batch = 2\nmax_duration_s = 30\n";
    let mut seeds = vec![fixture("deploy/kubernetes/base/maestro.toml"), short.as_bytes().to_vec()];
    for file in [
        "musicgen-tiny/config.json",
        "musicgen-tiny/generation_config.json",
        "musicgen-stereo-melody-tiny/config.json",
        "musicgen-melody-tiny/preprocessor_config.json",
    ] {
        seeds.push(fixture(&format!("tests/fixtures/{file}")));
    }
    seeds
}
