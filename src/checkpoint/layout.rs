//! The four ways the hub ships a MusicGen checkpoint's weights, and how a folder says which it
//! holds: by the file a layout starts from. Safetensors wins over pickle when a folder holds both
//! (it is mapped, validated and loads faster), and a single file wins over shards.
//!
//! A sharded layout's index (`model.safetensors.index.json`, `pytorch_model.bin.index.json`, as
//! transformers writes them) routes each tensor to its shard through `weight_map`; shard names are
//! plain file names in the folder, never paths, so an index cannot send a read elsewhere.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::limits::{read_bounded, MAX_INDEX_BYTES};
use super::CheckpointError;

/// How a folder's weights are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `model.safetensors`.
    Safetensors,
    /// `model.safetensors.index.json` + `model-0000k-of-0000n.safetensors`.
    SafetensorsShards,
    /// `pytorch_model.bin`, a `torch.save` zip archive.
    Pickle,
    /// `pytorch_model.bin.index.json` + `pytorch_model-0000k-of-0000n.bin`.
    PickleShards,
}

/// The files layouts start from, in the order [`Layout::detect`] prefers them.
pub const ENTRY_FILES: [&str; 4] = [
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
];

impl Layout {
    /// Every layout, in the order of [`ENTRY_FILES`].
    pub const ALL: [Layout; 4] =
        [Layout::Safetensors, Layout::SafetensorsShards, Layout::Pickle, Layout::PickleShards];

    /// The layout of the weights in `dir`: the first of [`ENTRY_FILES`] present.
    pub fn detect(dir: &Path) -> Option<Layout> {
        Self::ALL.into_iter().find(|l| dir.join(l.entry_file()).is_file())
    }

    /// The file the layout starts from: the weights, or the index of the shards.
    pub fn entry_file(self) -> &'static str {
        ENTRY_FILES[self as usize]
    }

    /// Whether tensors live in shards an index routes them to.
    pub fn is_sharded(self) -> bool {
        matches!(self, Layout::SafetensorsShards | Layout::PickleShards)
    }

    /// Whether the weights are `torch.save` pickles (read by the restricted reader, not mapped).
    pub fn is_pickle(self) -> bool {
        matches!(self, Layout::Pickle | Layout::PickleShards)
    }

    /// `safetensors`, `safetensors shards`, `pickle`, `pickle shards`.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Safetensors => "safetensors",
            Layout::SafetensorsShards => "safetensors shards",
            Layout::Pickle => "pickle",
            Layout::PickleShards => "pickle shards",
        }
    }
}

/// A sharded layout's index: which shard holds each tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    weight_map: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct IndexFile {
    weight_map: BTreeMap<String, String>,
}

impl Index {
    /// Reads the index at `path` (at most [`MAX_INDEX_BYTES`]); a shard name that is not a plain file
    /// name is an error.
    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        let text = read_bounded(path, MAX_INDEX_BYTES, "shard index")?;
        let file: IndexFile = serde_json::from_slice(&text)
            .map_err(|e| CheckpointError::corrupt(path, format!("not a shard index: {e}")))?;
        if file.weight_map.is_empty() {
            return Err(CheckpointError::corrupt(path, "its weight_map routes no tensor"));
        }
        if let Some((key, shard)) = file.weight_map.iter().find(|(_, s)| !is_plain_name(s)) {
            return Err(CheckpointError::corrupt(
                path,
                format!("routes `{key}` to {shard:?}, which is not a file name in the model folder"),
            ));
        }
        Ok(Self { weight_map: file.weight_map })
    }

    /// Each shard's file name with the tensors routed to it, shards and keys sorted.
    pub fn shards(&self) -> Vec<(&str, Vec<&str>)> {
        let mut by_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (key, shard) in &self.weight_map {
            by_shard.entry(shard).or_default().push(key);
        }
        by_shard.into_iter().collect()
    }
}

/// The files the weights in `dir` are read from: the entry file and, for shards, each shard the
/// index names. Reads the index only; `None` when the folder holds no layout's entry file.
pub fn weight_files(dir: &Path) -> Result<Option<(Layout, Vec<PathBuf>)>, CheckpointError> {
    let Some(layout) = Layout::detect(dir) else { return Ok(None) };
    let entry = dir.join(layout.entry_file());
    let mut files = vec![entry.clone()];
    if layout.is_sharded() {
        files.extend(Index::read(&entry)?.shards().into_iter().map(|(shard, _)| dir.join(shard)));
    }
    Ok(Some((layout, files)))
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_wins_and_single_files_win_over_shards() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Layout::detect(dir.path()), None);
        for (file, want) in [
            ("pytorch_model.bin.index.json", Layout::PickleShards),
            ("pytorch_model.bin", Layout::Pickle),
            ("model.safetensors.index.json", Layout::SafetensorsShards),
            ("model.safetensors", Layout::Safetensors),
        ] {
            std::fs::write(dir.path().join(file), "{}").unwrap();
            assert_eq!(Layout::detect(dir.path()), Some(want), "after adding {file}");
        }
    }

    #[test]
    fn an_index_groups_keys_by_shard_and_refuses_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors.index.json");
        let index = r#"{"metadata": {"total_size": 8}, "weight_map": {"b": "s2", "a": "s1", "c": "s1"}}"#;
        std::fs::write(&path, index).unwrap();
        assert_eq!(Index::read(&path).unwrap().shards(), vec![("s1", vec!["a", "c"]), ("s2", vec!["b"])]);
        for shard in ["../outside.safetensors", "/etc/passwd", "sub/x", ""] {
            let text = serde_json::json!({ "weight_map": { "k": shard } }).to_string();
            std::fs::write(&path, text).unwrap();
            let err = Index::read(&path).unwrap_err().to_string();
            assert!(err.contains("routes `k`") && err.contains("not a file name"), "{err}");
        }
        std::fs::write(&path, r#"{"weight_map": {}}"#).unwrap();
        assert!(Index::read(&path).unwrap_err().to_string().contains("routes no tensor"));
        std::fs::write(&path, "[1]").unwrap();
        assert!(Index::read(&path).unwrap_err().to_string().contains("not a shard index"));
    }
}
