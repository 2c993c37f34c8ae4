//! Hostile model folders through the loader: a pickle archive past the reader's limits, and JSON
//! files or a safetensors header past their sizes, are refused with an error naming the file, the
//! limit and what the file reached; nothing is parsed first.

use std::fs;

use super::hostile::{memo_entries, nested_lists, torch_archive};
use super::*;
use crate::checkpoint::kind::check_config_file;
use crate::checkpoint::layout::Index;
use crate::checkpoint::limits::{read_bounded, Excess, MAX_CONFIG_BYTES, MAX_INDEX_BYTES};
use crate::checkpoint::pickle::{MAX_DEPTH, MAX_MEMO_ENTRIES};

/// The refusal of `result`, with the file it names and its message.
fn refusal<T: std::fmt::Debug>(result: Result<T, CheckpointError>) -> (PathBuf, Excess, String) {
    match result {
        Err(e @ CheckpointError::OverLimit { .. }) => {
            let message = e.to_string();
            let CheckpointError::OverLimit { path, excess } = e else { unreachable!() };
            (path, excess, message)
        }
        other => panic!("{other:?}"),
    }
}

/// A folder whose `pytorch_model.bin` holds `pickle`.
fn pickle_folder(pickle: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("pytorch_model.bin"), torch_archive(pickle, &[])).unwrap();
    dir
}

#[test]
fn a_deep_pickle_is_refused_naming_the_file_and_the_depth() {
    let dir = pickle_folder(&nested_lists(200_000));
    let (path, excess, message) = refusal(Checkpoint::open_dir(dir.path()));
    assert_eq!(path, dir.path().join("pytorch_model.bin"));
    assert_eq!((excess.value, excess.limit), (MAX_DEPTH as u64 + 1, MAX_DEPTH as u64));
    assert!(message.contains("pytorch_model.bin") && message.contains("nesting depth"), "{message}");
    assert!(message.contains("data.pkl") && message.contains("is 65, over the limit of 64"), "{message}");
}

#[test]
fn a_huge_memo_is_refused_naming_the_file_and_the_count() {
    let dir = pickle_folder(&memo_entries(MAX_MEMO_ENTRIES + 1));
    let (path, excess, message) = refusal(Checkpoint::open_dir(dir.path()));
    assert_eq!(path, dir.path().join("pytorch_model.bin"));
    assert_eq!((excess.value, excess.limit), (MAX_MEMO_ENTRIES as u64 + 1, MAX_MEMO_ENTRIES as u64));
    assert!(message.contains("memo entries"), "{message}");
}

#[test]
fn an_oversize_index_is_refused_before_it_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors.index.json");
    // Sparse zeros: not JSON, so only the size check can have refused it.
    fs::File::create(&path).unwrap().set_len(MAX_INDEX_BYTES + 1).unwrap();
    let (named, excess, message) = refusal(Index::read(&path));
    assert_eq!((named, excess.value, excess.limit), (path.clone(), MAX_INDEX_BYTES + 1, MAX_INDEX_BYTES));
    assert!(
        message.contains("shard index") && message.contains(&(MAX_INDEX_BYTES + 1).to_string()),
        "{message}"
    );
    let (_, excess, _) = refusal(Checkpoint::open_dir(dir.path()));
    assert_eq!(excess.value, MAX_INDEX_BYTES + 1);
    // At the limit it is read (and is not an index).
    fs::File::create(&path).unwrap().set_len(MAX_INDEX_BYTES).unwrap();
    assert!(matches!(Index::read(&path), Err(CheckpointError::Corrupt { .. })));
}

#[test]
fn an_oversize_config_is_refused_before_it_is_parsed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    fs::File::create(&path).unwrap().set_len(MAX_CONFIG_BYTES + 1).unwrap();
    let (named, excess, message) = refusal(check_config_file(&path));
    assert_eq!((named, excess.value, excess.limit), (path.clone(), MAX_CONFIG_BYTES + 1, MAX_CONFIG_BYTES));
    assert!(message.contains("config.json") && message.contains("over the limit of 1048576"), "{message}");
    let config = r#"{"decoder": {"hidden_size": 8}}"#;
    fs::write(&path, config).unwrap();
    assert!(check_config_file(&path).is_ok());
    let (_, excess, _) = refusal(read_bounded(&path, 8, "config"));
    assert_eq!((excess.value, excess.limit), (config.len() as u64, 8));
}

#[test]
fn a_safetensors_header_past_its_limit_is_refused_unparsed() {
    let over = safetensors::MAX_HEADER_BYTES + 1;
    let (_, excess, message) = refusal(open(&over.to_le_bytes()));
    assert_eq!((excess.value, excess.limit), (over, safetensors::MAX_HEADER_BYTES));
    assert!(message.contains("header length"), "{message}");
}
