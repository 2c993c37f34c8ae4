//! Which snapshot of a hub cache entry a revision names. A ref file under `refs/` wins (`main`, a
//! branch or tag, `refs/pr/1` as `huggingface_hub` stores pull requests), as in git; otherwise a
//! revision of hex digits is a commit: a snapshot folder's full name, or a prefix of at least
//! [`MIN_PREFIX`] digits that only one snapshot starts with.

use std::fs;
use std::path::{Path, PathBuf};

use crate::checkpoint::limits::read_bounded;
use crate::resources::model_id::ModelIdError;

/// Shortest commit prefix accepted, as git's shortest abbreviation.
pub const MIN_PREFIX: usize = 4;

/// Longest ref file read: a ref holds one 40-digit commit hash.
const MAX_REF_BYTES: u64 = 256;

/// Why a revision names no snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevisionError {
    /// Neither a ref nor a snapshot matches; what the entry does hold.
    Unknown {
        /// The revision given.
        revision: String,
        /// The entry's refs, as `huggingface_hub` names them (`main`, `refs/pr/1`).
        refs: Vec<String>,
        /// The entry's snapshot folders (commit hashes).
        snapshots: Vec<String>,
    },
    /// A commit prefix that several snapshots start with.
    Ambiguous {
        /// The prefix given.
        revision: String,
        /// The snapshots it matches.
        matches: Vec<String>,
    },
}

impl RevisionError {
    /// The [`ModelIdError`] for `id`, naming the entry `dir`.
    pub fn into_model_error(self, id: &str, dir: &Path) -> ModelIdError {
        match self {
            RevisionError::Unknown { revision, refs, snapshots } => ModelIdError::UnknownRevision {
                id: id.to_owned(),
                entry: dir.to_owned(),
                revision,
                refs,
                snapshots,
            },
            RevisionError::Ambiguous { revision, matches } => {
                ModelIdError::AmbiguousRevision { id: id.to_owned(), revision, matches }
            }
        }
    }
}

/// The commit (a snapshot folder name) that `revision` names in the entry `dir`. A ref naming a
/// commit without a snapshot folder is [`RevisionError::Unknown`] too: nothing of it is cached.
pub fn select(dir: &Path, revision: &str) -> Result<String, RevisionError> {
    let snapshots = snapshots(dir);
    let unknown = || RevisionError::Unknown {
        revision: revision.to_owned(),
        refs: refs(dir),
        snapshots: snapshots.clone(),
    };
    if let Some(commit) = read_ref(dir, revision) {
        return snapshots.iter().find(|s| **s == commit).cloned().ok_or_else(unknown);
    }
    if revision.len() < MIN_PREFIX || !revision.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unknown());
    }
    let matches: Vec<String> = snapshots.iter().filter(|s| s.starts_with(revision)).cloned().collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(unknown()),
        _ if matches.iter().any(|m| m == revision) => Ok(revision.to_owned()),
        _ => Err(RevisionError::Ambiguous { revision: revision.to_owned(), matches }),
    }
}

/// The snapshot folders of the entry `dir`, sorted; hidden names skipped.
pub fn snapshots(dir: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(dir.join("snapshots")) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

/// The entry's refs, relative to `refs/` (`main`, `refs/pr/1`), sorted; temporaries skipped.
pub fn refs(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    collect_refs(&dir.join("refs"), "", 0, &mut found);
    found.sort();
    found
}

/// The commit the ref file `refs/<revision>` holds, when there is one; `revision` is a checked id
/// part (no `..`, no empty segment), so the file is inside `refs/`.
fn read_ref(dir: &Path, revision: &str) -> Option<String> {
    let path: PathBuf = dir.join("refs").join(revision);
    // A ref is a file huggingface_hub wrote, never a link: one could lead out of the cache.
    if !fs::symlink_metadata(&path).ok()?.is_file() {
        return None;
    }
    let bytes = read_bounded(&path, MAX_REF_BYTES, "ref").ok()?;
    let commit = String::from_utf8(bytes).ok()?.trim().to_owned();
    let plain = !commit.is_empty() && !commit.contains(['/', '\\', '\0']) && commit != "." && commit != "..";
    plain.then_some(commit)
}

/// Walks `refs/` (at most three levels: `refs/pr/1`); `huggingface_hub`'s `*.tmp` files are skipped.
fn collect_refs(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        let Ok(kind) = entry.file_type() else { continue };
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
        if kind.is_dir() && depth < 3 {
            collect_refs(&entry.path(), &path, depth + 1, out);
        } else if kind.is_file() && !name.starts_with('.') && !name.ends_with(".tmp") {
            out.push(path);
        }
    }
}
