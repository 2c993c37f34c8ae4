//! One hub cache entry (`models--ORG--NAME`) on disk: where its snapshots are, which links inside
//! them may be followed, and what a snapshot lacks before it can be loaded.
//!
//! `huggingface_hub` links each snapshot file to the entry's `blobs/<etag>`, and with the shared Xet
//! store that blob links on to the cache's `blobs/<2 hex>/<hash>`. Those are the only places a file
//! may resolve to (besides the snapshot itself, where a platform without symlinks copies files); a
//! link resolving anywhere else, in the cache or out of it, is refused rather than followed, so the
//! cache cannot be used to read files the server was never meant to serve.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::checkpoint::{
    kind, layout,
    limits::{read_bounded, MAX_CONFIG_BYTES},
};
use crate::resources::model_id::WEIGHTS;

/// What a hub snapshot must hold, besides the weights, before it is loaded.
pub const REQUIRED_FILES: [&str; 2] = ["config.json", "tokenizer.json"];

/// What `huggingface_hub` names a download in progress in `blobs/` (`<etag>.incomplete`, or
/// `<etag>.<8 hex>.incomplete` for its process-unique temporaries).
pub const INCOMPLETE_SUFFIX: &str = ".incomplete";

/// An entry of a hub cache, both paths canonical.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The canonical cache directory.
    pub cache: PathBuf,
    /// The canonical entry directory, a child of `cache`.
    pub dir: PathBuf,
}

impl Entry {
    /// The entry `folder` of the canonical cache `cache`; `Ok(None)` when there is no such folder, an
    /// error when the folder is a symlink leading out of the cache.
    pub fn open(cache: &Path, folder: &str) -> Result<Option<Entry>, String> {
        let Ok(dir) = cache.join(folder).canonicalize() else { return Ok(None) };
        if dir.parent() != Some(cache) {
            return Err(format!(
                "the hub cache entry {folder} must stay in the cache, but is a symlink to {}",
                dir.display()
            ));
        }
        Ok(dir.is_dir().then(|| Entry { cache: cache.to_owned(), dir }))
    }

    /// The canonical snapshot folder of `commit`; an error when it is a link out of `snapshots/`.
    pub fn snapshot(&self, commit: &str) -> Result<PathBuf, String> {
        let snapshots = self.dir.join("snapshots");
        let dir = snapshots.join(commit).canonicalize().map_err(|e| format!("snapshot {commit}: {e}"))?;
        if dir.parent() != Some(&snapshots) {
            return Err(format!(
                "snapshot {commit} must stay in {}, but is a symlink to {}",
                snapshots.display(),
                dir.display()
            ));
        }
        Ok(dir)
    }

    /// What the snapshot folder `snapshot` lacks before it can be loaded: [`REQUIRED_FILES`], the
    /// weights with every shard their index names (by file name), and `blobs/<name>` for each
    /// unfinished download. An error when one of those files resolves where no blob may be.
    pub fn missing(&self, snapshot: &Path) -> Result<Vec<String>, String> {
        let mut missing = Vec::new();
        for name in REQUIRED_FILES {
            if self.follow(snapshot, &snapshot.join(name))?.is_none() {
                missing.push(name.to_owned());
            }
        }
        match layout::weight_files(snapshot) {
            Ok(Some((_, files))) => {
                for file in files {
                    if self.follow(snapshot, &file)?.is_none() {
                        let name = file.file_name().unwrap_or_default().to_string_lossy();
                        missing.push(format!("{name} (a shard its index names)"));
                    }
                }
            }
            Ok(None) => missing.push(WEIGHTS.to_owned()),
            // A damaged index counts as present: the load names what is wrong with it.
            Err(_) => {}
        }
        missing.extend(
            self.unfinished().into_iter().map(|n| format!("blobs/{n} (a download that did not finish)")),
        );
        Ok(missing)
    }

    /// The `model_type` of the snapshot's config when it names a model Maestro does not serve, so a
    /// listing can pass over other models kept in the same cache. `None` for a MusicGen config and
    /// for one that is missing, refused or unreadable (those are listed, with their error).
    pub fn other_kind(&self, snapshot: &Path) -> Option<String> {
        let config = self.follow(snapshot, &snapshot.join(REQUIRED_FILES[0])).ok()??;
        let text = read_bounded(&config, MAX_CONFIG_BYTES, "config").ok()?;
        kind::unserved_model_type(&serde_json::from_slice(&text).ok()?)
    }

    /// The canonical file `file` (in `snapshot`) resolves to, when it is a file; an error when it
    /// resolves outside the snapshot, the entry's `blobs/` and the cache's shared store.
    fn follow(&self, snapshot: &Path, file: &Path) -> Result<Option<PathBuf>, String> {
        let Ok(target) = file.canonicalize() else { return Ok(None) };
        let allowed = target.starts_with(snapshot)
            || target.starts_with(self.dir.join("blobs"))
            || self.in_shared_store(&target);
        if !allowed {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            return Err(format!(
                "{name} in the hub cache must resolve to a blob of its entry or of the cache's shared store, \
                 but is a symlink to {}",
                target.display()
            ));
        }
        Ok(target.is_file().then_some(target))
    }

    /// Whether `target` is a payload of the cache-wide Xet store, `blobs/<2 hex>/<hash>`, the hash
    /// starting with its folder's two digits.
    fn in_shared_store(&self, target: &Path) -> bool {
        let Ok(rest) = target.strip_prefix(self.cache.join("blobs")) else { return false };
        let parts: Vec<&str> = rest
            .components()
            .map(|c| match c {
                Component::Normal(part) => part.to_str().unwrap_or(""),
                _ => "",
            })
            .collect();
        let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        matches!(parts.as_slice(), [prefix, hash] if prefix.len() == 2 && hex(prefix) && hex(hash) && hash.starts_with(prefix))
    }

    /// The names of unfinished downloads in the entry's `blobs/`, sorted.
    fn unfinished(&self) -> Vec<String> {
        let Ok(entries) = fs::read_dir(self.dir.join("blobs")) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.ends_with(INCOMPLETE_SUFFIX))
            .collect();
        names.sort();
        names
    }
}
