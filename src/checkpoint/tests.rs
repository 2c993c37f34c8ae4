//! Unit tests of the safetensors reader and of the loader over each layout.

use super::*;

mod config;
#[path = "../../tests/common/hostile.rs"]
pub(crate) mod hostile;
mod limits;

/// A file of an 8-byte length, `header`, then `data_len` zero bytes.
fn file(header: &[u8], data_len: usize) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.resize(bytes.len() + data_len, 0);
    bytes
}

fn open(bytes: &[u8]) -> Result<Checkpoint, CheckpointError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    std::fs::write(&path, bytes).unwrap();
    Checkpoint::open(&path)
}

fn corrupt(bytes: &[u8]) -> String {
    match open(bytes) {
        Err(CheckpointError::Corrupt { reason, .. }) => reason,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_valid_file_gives_its_tensors_and_their_bytes() {
    let header = br#"{"__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "n": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}"#;
    let mut bytes = file(header, 0);
    bytes.extend(1.5f32.to_le_bytes().iter().chain(&(-2.0f32).to_le_bytes()));
    bytes.extend(7i64.to_le_bytes());
    let c = open(&bytes).unwrap();
    assert_eq!(c.tensors().len(), 2);
    let w = c.get("w").unwrap();
    assert_eq!((w.dtype, numel(w), stored_bytes(w), is_float(w.dtype)), (Dtype::F32, 2, 8, true));
    assert_eq!(c.read(w).unwrap(), [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat());
    let n = c.get("n").unwrap();
    assert!(!is_float(n.dtype) && c.contains("n") && !c.contains("__metadata__"));
    assert_eq!(c.read(n).unwrap(), 7i64.to_le_bytes());
}

#[test]
fn a_header_longer_than_the_file_is_an_error() {
    let reason = corrupt(&(1000u64).to_le_bytes());
    assert!(reason.contains("invalid header length") && reason.contains("declaring a 1000-byte"), "{reason}");
    match open(&u64::MAX.to_le_bytes()) {
        Err(CheckpointError::OverLimit { excess, .. }) => {
            assert_eq!((excess.value, excess.limit), (u64::MAX, safetensors::MAX_HEADER_BYTES))
        }
        other => panic!("{other:?}"),
    }
    let mut cut = file(br#"{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#, 8);
    cut.truncate(20);
    assert!(corrupt(&cut).contains("a 20-byte file"));
    for short in [&[][..], &[1, 2, 3]] {
        assert!(corrupt(short).contains("shorter than the 8-byte header length"));
    }
}

#[test]
fn overflowing_or_inconsistent_shapes_are_errors() {
    let tensor = |shape: &str, offsets: &str| {
        format!(r#"{{"t": {{"dtype": "F32", "shape": {shape}, "data_offsets": {offsets}}}}}"#)
    };
    let huge = tensor("[4294967296, 4294967296, 4294967296]", "[0, 8]");
    assert!(corrupt(&file(huge.as_bytes(), 8)).contains("overflow"));
    let times_dtype = tensor("[4611686018427387904]", "[0, 8]");
    assert!(corrupt(&file(times_dtype.as_bytes(), 8)).contains("overflow"));
    assert!(corrupt(&file(tensor("[3]", "[0, 8]").as_bytes(), 8)).contains("invalid shape"));
    assert!(corrupt(&file(tensor("[2]", "[8, 0]").as_bytes(), 8)).contains("invalid offset"));
    assert!(corrupt(&file(tensor("[2]", "[0, 8]").as_bytes(), 4)).contains("not fully covered"));
    assert!(corrupt(&file(tensor("[-2]", "[0, 8]").as_bytes(), 8)).contains("invalid JSON"));
    assert!(corrupt(&file(b"not json", 0)).contains("invalid JSON"));
}

#[test]
fn a_missing_file_is_an_io_error() {
    let err = Checkpoint::open(Path::new("/nonexistent/model.safetensors")).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
}

/// Unit tests of the loader on the fixtures `scripts/make_reference.py` writes in every layout.
mod layouts {
    use std::fs;

    use super::super::{convert, layout::ENTRY_FILES};
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    fn layout_dir(name: &str) -> PathBuf {
        fixtures().join("layouts").join(name)
    }

    fn original() -> Checkpoint {
        Checkpoint::open(&fixtures().join("musicgen-tiny/model.safetensors")).unwrap()
    }

    /// Copies a layout folder into a temporary directory.
    fn copy(name: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(layout_dir(name)).unwrap() {
            let entry = entry.unwrap();
            fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        dir
    }

    /// Every tensor of the single-file original, with the same dtype, shape and bytes.
    fn assert_same_tensors(c: &Checkpoint, what: &str) {
        let want = original();
        for (name, info) in want.tensors() {
            let got = c.get(name).unwrap_or_else(|| panic!("{what}: no `{name}`"));
            assert_eq!((got.dtype, &got.shape), (info.dtype, &info.shape), "{what}: `{name}`");
            assert_eq!(c.read(got).unwrap(), want.read(info).unwrap(), "{what}: bytes of `{name}`");
        }
    }

    #[test]
    fn every_layout_reads_the_same_tensors_as_the_single_file() {
        for (name, layout, files) in [
            ("safetensors-shards", Layout::SafetensorsShards, 2),
            ("pickle", Layout::Pickle, 1),
            ("pickle-shards", Layout::PickleShards, 2),
            ("both", Layout::Safetensors, 1),
        ] {
            let c = Checkpoint::open_dir(&layout_dir(name)).unwrap();
            assert_eq!((c.layout(), c.files().count()), (layout, files), "{name}");
            assert_same_tensors(&c, name);
        }
        // The pickle holds both T5 embedding names over one storage, as the published .bin files do.
        let pickle = Checkpoint::open_dir(&layout_dir("pickle")).unwrap();
        assert_eq!(pickle.tensors().len(), original().tensors().len() + 1);
        let (a, b) = (
            &pickle.tensors()["text_encoder.shared.weight"],
            &pickle.tensors()["text_encoder.encoder.embed_tokens.weight"],
        );
        assert_eq!(a, b, "one storage, read twice");
    }

    #[test]
    fn pickle_views_and_dtypes_read_as_torch_wrote_them() {
        let dir = tempfile::tempdir().unwrap();
        fs::copy(fixtures().join("pickles/views.bin"), dir.path().join("pytorch_model.bin")).unwrap();
        let c = Checkpoint::open_dir(dir.path()).unwrap();
        let f32s = |name: &str| -> Vec<f32> {
            c.read(&c.tensors()[name])
                .unwrap()
                .chunks(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        assert_eq!(f32s("contiguous"), (0..12).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(c.tensors()["transposed"].shape, [4, 3]);
        assert_eq!(f32s("transposed"), [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]);
        assert_eq!(f32s("row"), [4., 5., 6., 7.]);
        assert_eq!(f32s("column"), [2., 6., 10.]);
        assert_eq!((f32s("scalar"), c.tensors()["scalar"].shape.len()), (vec![3.5], 0));
        assert_eq!(
            (c.tensors()["empty"].shape.as_slice(), stored_bytes(&c.tensors()["empty"])),
            (&[0, 3][..], 0)
        );
        let bytes = |name: &str| c.read(&c.tensors()[name]).unwrap();
        assert_eq!((c.tensors()["half"].dtype, bytes("half")[2..4].to_vec()), (Dtype::F16, vec![0x00, 0x3c]));
        assert_eq!(
            (c.tensors()["bf16"].dtype, bytes("bf16")[2..4].to_vec()),
            (Dtype::BF16, vec![0x80, 0x3f])
        );
        let longs: Vec<i64> =
            bytes("long").chunks(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!((c.tensors()["long"].dtype, longs), (Dtype::I64, vec![-2, -1, 0, 1]));
        assert_eq!((c.tensors()["bool"].dtype, bytes("bool")), (Dtype::BOOL, vec![1, 0, 1]));
    }

    #[test]
    fn crafted_pickles_naming_other_globals_are_refused() {
        for (file, global) in [("os_system.bin", "os.system"), ("builtins_eval.bin", "builtins.eval")] {
            let dir = tempfile::tempdir().unwrap();
            fs::copy(fixtures().join("pickles").join(file), dir.path().join("pytorch_model.bin")).unwrap();
            match Checkpoint::open_dir(dir.path()) {
                Err(e @ CheckpointError::Refused { .. }) => {
                    assert!(e.to_string().contains(&format!("`{global}`")), "{e}");
                }
                other => panic!("{file}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_shard_or_a_key_it_lacks_names_both() {
        for (layout, shard) in [
            ("safetensors-shards", "model-00002-of-00002.safetensors"),
            ("pickle-shards", "pytorch_model-00002-of-00002.bin"),
        ] {
            let dir = copy(layout);
            fs::remove_file(dir.path().join(shard)).unwrap();
            let err = Checkpoint::open_dir(dir.path()).unwrap_err();
            assert!(matches!(err, CheckpointError::MissingShard { .. }), "{err}");
            let message = err.to_string();
            assert!(
                message.contains(shard) && message.contains("routes `") && message.contains("missing"),
                "{message}"
            );

            let dir = copy(layout);
            let index = dir.path().join(
                Layout::ALL.iter().find(|l| l.as_str() == layout.replace('-', " ")).unwrap().entry_file(),
            );
            let mut json: serde_json::Value =
                serde_json::from_str(&fs::read_to_string(&index).unwrap()).unwrap();
            json["weight_map"]["decoder.not_stored"] = serde_json::json!(shard);
            fs::write(&index, json.to_string()).unwrap();
            match Checkpoint::open_dir(dir.path()) {
                Err(CheckpointError::KeyNotInShard { key, shard: s, .. }) => {
                    assert_eq!((key.as_str(), s.as_str()), ("decoder.not_stored", shard))
                }
                other => panic!("{layout}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_folder_without_weights_names_what_was_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let message = Checkpoint::open_dir(dir.path()).unwrap_err().to_string();
        assert!(ENTRY_FILES.iter().all(|f| message.contains(f)), "{message}");
        fs::write(dir.path().join("pytorch_model.bin"), b"not a zip").unwrap();
        let message = Checkpoint::open_dir(dir.path()).unwrap_err().to_string();
        assert!(message.contains("not a zip archive") && message.contains("torch 1.6"), "{message}");
    }

    #[test]
    fn conversion_writes_a_safetensors_file_that_then_wins() {
        for layout in ["pickle", "pickle-shards", "safetensors-shards"] {
            let dir = copy(layout);
            let done = convert::convert_dir(dir.path()).unwrap();
            assert_eq!(done.path, dir.path().join("model.safetensors"));
            let c = Checkpoint::open_dir(dir.path()).unwrap();
            assert_eq!((c.layout(), c.tensors().len()), (Layout::Safetensors, done.tensors));
            assert_same_tensors(&c, layout);
            assert!(!dir.path().join(".model.safetensors.partial").exists());
            let again = convert::convert_dir(dir.path()).unwrap_err().to_string();
            assert!(again.contains("already exists"), "{again}");
        }
    }
}
