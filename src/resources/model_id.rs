//! Model ids come from clients, so they are untrusted input that becomes a filesystem path. An id is a
//! relative path under one of the configured model roots (`facebook/musicgen-small`), or a hub repo
//! id in the Hugging Face hub cache, optionally at a revision (`facebook/musicgen-small@refs/pr/1`,
//! see [`super::hub_cache`]); anything that could name a file outside those roots is refused before
//! the filesystem is touched, and what the filesystem resolves (symlinks included) is checked again
//! against the canonical root.
//!
//! The model roots are searched first, in order, then the hub cache: a folder someone placed under a
//! root is what they chose to serve, over whatever a download left in the cache. An id with `@REV`
//! names a hub snapshot only.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::hub_cache;
use crate::checkpoint::layout;

/// Longest id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Deepest directory [`list`] looks at, in `/`-separated segments of the id.
pub const MAX_LIST_DEPTH: usize = 3;

/// What a model directory must hold before it can be loaded: `config.json` and [`WEIGHTS`].
pub const REQUIRED_FILES: [&str; 2] = ["config.json", WEIGHTS];

/// How messages name the weights a model directory needs: the entry file of any layout
/// [`crate::checkpoint::layout`] reads.
pub const WEIGHTS: &str = "weights (model.safetensors, model.safetensors.index.json, pytorch_model.bin or \
                           pytorch_model.bin.index.json)";

/// What separates a hub repo id from a revision in an id (`ORG/NAME@REV`).
pub const REVISION_SEPARATOR: char = '@';

/// Where models are looked for: the model roots, in order, then the hub cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelRoots {
    /// Folders whose subfolders are models, their ids their paths below the root.
    pub dirs: Vec<PathBuf>,
    /// The Hugging Face hub cache, when it is used.
    pub hub_cache: Option<PathBuf>,
}

impl ModelRoots {
    /// Model roots without a hub cache.
    pub fn dirs(dirs: Vec<PathBuf>) -> Self {
        Self { dirs, hub_cache: None }
    }

    /// Every folder searched, the hub cache last.
    pub fn all(&self) -> Vec<PathBuf> {
        self.dirs.iter().chain(&self.hub_cache).cloned().collect()
    }
}

/// Values longer than this are shortened in error messages, so a hostile id cannot flood the logs.
const SHOWN_CHARS: usize = 64;

/// A model directory that an id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// The id, as given (relative, `/`-separated).
    pub id: String,
    /// The model root it was found under, as configured.
    pub root: PathBuf,
    /// The canonical directory (symlinks resolved), so a later load reads exactly what was checked.
    pub dir: PathBuf,
}

/// Why an id names no loadable model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelIdError {
    /// The id breaks a rule; `reason` names the rule and the value given.
    #[error("model: {reason}")]
    Invalid {
        /// The rule broken and the value given.
        reason: String,
    },
    /// A directory exists for the id but lacks files a model needs, so it is never loaded.
    #[error(
        "model: {} exists at {} but lacks {}, so it cannot be loaded",
        show(id), dir.display(), missing.join(" and ")
    )]
    Incomplete {
        /// The id given.
        id: String,
        /// The directory found (a hub snapshot's folder for a hub id).
        dir: PathBuf,
        /// What it lacks: required files, shards, unfinished downloads.
        missing: Vec<String>,
    },
    /// The hub cache holds the repo but no snapshot for the revision asked for.
    #[error(
        "model: {}: the hub cache entry {} has no snapshot for revision {revision:?} (refs: [{}]; snapshots: [{}])",
        show(id), entry.display(), refs.join(", "), snapshots.join(", ")
    )]
    UnknownRevision {
        /// The id given.
        id: String,
        /// The entry folder (`models--ORG--NAME`).
        entry: PathBuf,
        /// The revision asked for (`main` when the id gives none).
        revision: String,
        /// The refs the entry has.
        refs: Vec<String>,
        /// The snapshots the entry has.
        snapshots: Vec<String>,
    },
    /// A commit prefix that more than one cached snapshot starts with.
    #[error(
        "model: {}: revision {revision:?} is a prefix of several cached snapshots ({}); give more digits",
        show(id), matches.join(", ")
    )]
    AmbiguousRevision {
        /// The id given.
        id: String,
        /// The prefix given.
        revision: String,
        /// The snapshots it matches.
        matches: Vec<String>,
    },
    /// No directory for the id under any root.
    #[error(
        "model: no directory {} under the model roots [{}] (looked for {})",
        show(id), roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", "),
        REQUIRED_FILES.join(" and ")
    )]
    NotFound {
        /// The id given.
        id: String,
        /// The roots searched.
        roots: Vec<PathBuf>,
    },
}

/// Checks the id's syntax without touching the filesystem.
///
/// Rules: not empty, at most [`MAX_ID_BYTES`] bytes, no control characters (NUL included), `/` as the
/// only separator, relative, and no `..`, `.` or empty segments (so each model has exactly one id).
/// At most one `@` ([`REVISION_SEPARATOR`]), between a repo id and a revision of ASCII letters,
/// digits, `.`, `_`, `-` and `/` (a ref such as `refs/pr/1` has segments too).
pub fn validate(id: &str) -> Result<(), ModelIdError> {
    let rule = if id.is_empty() {
        "must not be empty".to_owned()
    } else if id.len() > MAX_ID_BYTES {
        format!("must be at most {MAX_ID_BYTES} bytes")
    } else if id.chars().any(char::is_control) {
        "must not contain NUL or other control characters".to_owned()
    } else if id.contains('\\') {
        "must use '/' as the separator, not '\\'".to_owned()
    } else if id.starts_with('/') {
        "must be a relative path under a model root, not an absolute path".to_owned()
    } else if id.split('/').any(|s| s == "..") {
        "must be a relative path under a model root without '..'".to_owned()
    } else if id.split('/').any(|s| s.is_empty() || s == ".") {
        "must not contain empty or '.' path segments".to_owned()
    } else if let Some(rule) = revision_rule(id) {
        rule.to_owned()
    } else {
        return Ok(());
    };
    Err(invalid(&rule, id))
}

/// The rule an id's `@REV` part breaks, if any: the segment rules hold on each side of the `@` too,
/// so `a/b@../x` cannot climb out of the entry's `refs/`.
fn revision_rule(id: &str) -> Option<&'static str> {
    let (repo, revision) = id.split_once(REVISION_SEPARATOR)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
    let bad_segment = |part: &str| part.split('/').any(|s| s.is_empty() || s == "." || s == "..");
    if bad_segment(repo) || bad_segment(revision) {
        Some("must be a hub repo id and a revision around '@' (ORG/NAME@REV)")
    } else if revision.contains(REVISION_SEPARATOR) {
        Some("must contain at most one '@'")
    } else if !revision.chars().all(allowed) {
        Some("must give a revision after '@' of ASCII letters, digits, '.', '_', '-' and '/'")
    } else {
        None
    }
}

/// Finds the model directory `id` names: under `roots.dirs`, tried in order, then in the hub cache.
///
/// The first complete directory wins. When directories exist but none is complete, the first one
/// found is reported as [`ModelIdError::Incomplete`]. A symlink (of the directory, a parent or a
/// required file) that resolves outside its root is [`ModelIdError::Invalid`]. An id with `@REV` is
/// looked for in the hub cache only.
pub fn resolve(id: &str, roots: &ModelRoots) -> Result<ResolvedModel, ModelIdError> {
    validate(id)?;
    let (repo, revision) = match id.split_once(REVISION_SEPARATOR) {
        Some((repo, revision)) => (repo, Some(revision)),
        None => (id, None),
    };
    let mut incomplete = None;
    if revision.is_none() {
        match resolve_in_dirs(id, &roots.dirs) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(e @ ModelIdError::Incomplete { .. }) => incomplete = Some(e),
            Err(e) => return Err(e),
        }
    }
    if let Some(cache) = &roots.hub_cache {
        match hub_cache::resolve(id, repo, revision, cache) {
            Ok(Some(found)) => return Ok(found),
            Ok(None) => {}
            Err(e @ ModelIdError::Incomplete { .. }) => {
                incomplete.get_or_insert(e);
            }
            Err(e) => return Err(incomplete.unwrap_or(e)),
        }
    }
    Err(incomplete.unwrap_or_else(|| ModelIdError::NotFound { id: id.to_owned(), roots: roots.all() }))
}

/// [`resolve`] under the plain roots: `Ok(None)` when no root has a directory for `id`.
fn resolve_in_dirs(id: &str, dirs: &[PathBuf]) -> Result<Option<ResolvedModel>, ModelIdError> {
    let mut incomplete = None;
    for root in dirs {
        let Some(canonical_root) = root.canonicalize().ok() else { continue };
        let Some(dir) = locate(id, &canonical_root)? else { continue };
        let missing = missing_files(id, &dir, &canonical_root)?;
        if missing.is_empty() {
            return Ok(Some(ResolvedModel { id: id.to_owned(), root: root.clone(), dir }));
        }
        let missing = missing.into_iter().map(str::to_owned).collect();
        incomplete.get_or_insert(ModelIdError::Incomplete { id: id.to_owned(), dir, missing });
    }
    incomplete.map_or(Ok(None), Err)
}

/// Every directory up to [`MAX_LIST_DEPTH`] segments under `roots.dirs` that holds a `config.json`,
/// and every MusicGen entry of the hub cache (complete or not, [`hub_cache::list`]), sorted by id. An
/// id present in several places is listed once, from the place [`resolve`] looks first. Hidden
/// entries, names that are not valid ids (or hold `@`) and symlinks leaving the root are skipped.
pub fn list(roots: &ModelRoots) -> Vec<ResolvedModel> {
    let mut found = BTreeMap::new();
    for root in &roots.dirs {
        let Ok(canonical_root) = root.canonicalize() else { continue };
        let mut models = Vec::new();
        walk(&canonical_root, &canonical_root, "", 1, &mut models);
        for (id, dir) in models {
            found.entry(id.clone()).or_insert(ResolvedModel { id, root: root.clone(), dir });
        }
    }
    for model in roots.hub_cache.iter().flat_map(|cache| hub_cache::list(cache)) {
        found.entry(model.id.clone()).or_insert(model);
    }
    found.into_values().collect()
}

/// The model directory a command-line argument names: an existing directory as given, or else a
/// model id resolved as [`resolve`] does.
pub fn dir_of_argument(arg: &Path, roots: &ModelRoots) -> Result<PathBuf, ModelIdError> {
    if arg.is_dir() {
        return Ok(arg.to_owned());
    }
    Ok(resolve(&arg.to_string_lossy(), roots)?.dir)
}

/// The canonical directory for `id` under `canonical_root`, if one exists there.
fn locate(id: &str, canonical_root: &Path) -> Result<Option<PathBuf>, ModelIdError> {
    let Ok(dir) = canonical_root.join(id).canonicalize() else { return Ok(None) };
    if !dir.starts_with(canonical_root) {
        return Err(invalid("must stay inside its model root, but a symlink leads outside", id));
    }
    Ok(dir.is_dir().then_some(dir))
}

/// What `dir` lacks of [`REQUIRED_FILES`]; `config.json` or a weights file (an index's shards
/// included) that is a symlink out of the root is an error. A damaged index counts as present: the
/// load names what is wrong with it.
fn missing_files(id: &str, dir: &Path, canonical_root: &Path) -> Result<Vec<&'static str>, ModelIdError> {
    let mut missing = Vec::new();
    let config = dir.join(REQUIRED_FILES[0]);
    match inside_root(id, &config, canonical_root)? {
        Some(file) if file.is_file() => {}
        _ => missing.push(REQUIRED_FILES[0]),
    }
    match layout::weight_files(dir) {
        Ok(Some((_, files))) => {
            for file in files {
                inside_root(id, &file, canonical_root)?;
            }
        }
        Ok(None) => missing.push(WEIGHTS),
        Err(_) => {}
    }
    Ok(missing)
}

/// The canonical `file` when it exists; an error when it is a symlink leading out of the root.
fn inside_root(id: &str, file: &Path, canonical_root: &Path) -> Result<Option<PathBuf>, ModelIdError> {
    match file.canonicalize() {
        Ok(found) if !found.starts_with(canonical_root) => {
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let rule =
                format!("must stay inside its model root, but its {name} is a symlink leading outside");
            Err(invalid(&rule, id))
        }
        Ok(found) => Ok(Some(found)),
        Err(_) => Ok(None),
    }
}

/// Collects `(id, canonical dir)` for model directories below `dir`; `prefix` is `dir`'s id.
fn walk(canonical_root: &Path, dir: &Path, prefix: &str, depth: usize, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else { continue };
        // `@` marks a hub revision, so a folder named with one could not be asked for by its id.
        if name.starts_with('.') || name.contains(REVISION_SEPARATOR) {
            continue;
        }
        let id = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let Ok(path) = entry.path().canonicalize() else { continue };
        if validate(&id).is_err() || !path.starts_with(canonical_root) || !path.is_dir() {
            continue;
        }
        let config = path.join(REQUIRED_FILES[0]).canonicalize();
        if config.is_ok_and(|c| c.starts_with(canonical_root) && c.is_file()) {
            out.push((id.clone(), path.clone()));
        }
        if depth < MAX_LIST_DEPTH {
            walk(canonical_root, &path, &id, depth + 1, out);
        }
    }
}

fn invalid(rule: &str, id: &str) -> ModelIdError {
    ModelIdError::Invalid { reason: format!("{rule}, got {}", show(id)) }
}

/// The value quoted and escaped (`"a\0b"`), shortened when long.
pub(crate) fn show(id: &str) -> String {
    match id.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &id[..cut], id.len()),
        None => format!("{id:?}"),
    }
}

#[cfg(test)]
#[path = "tests/model_id.rs"]
mod tests;
