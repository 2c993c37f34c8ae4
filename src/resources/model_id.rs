//! Model ids come from clients, so they are untrusted input that becomes a filesystem path. An id is a
//! relative path under one of the configured model roots (`facebook/musicgen-small`); anything that
//! could name a file outside those roots is refused before the filesystem is touched, and what the
//! filesystem resolves (symlinks included) is checked again against the canonical root.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

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
    /// A directory exists for the id but lacks files a model needs.
    #[error(
        "model: {} exists at {} but lacks {} (a model directory needs {})",
        show(id), dir.display(), missing.join(" and "), REQUIRED_FILES.join(" and ")
    )]
    Incomplete {
        /// The id given.
        id: String,
        /// The directory found.
        dir: PathBuf,
        /// The required files it lacks.
        missing: Vec<&'static str>,
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
    } else {
        return Ok(());
    };
    Err(invalid(&rule, id))
}

/// Finds the model directory `id` names under `roots`, tried in order.
///
/// The first root holding a complete directory wins. When directories exist but none is complete,
/// the first one found is reported as [`ModelIdError::Incomplete`]. A symlink (of the directory, a
/// parent or a required file) that resolves outside its root is [`ModelIdError::Invalid`].
pub fn resolve(id: &str, roots: &[PathBuf]) -> Result<ResolvedModel, ModelIdError> {
    validate(id)?;
    let mut incomplete = None;
    for root in roots {
        let Some(canonical_root) = root.canonicalize().ok() else { continue };
        let Some(dir) = locate(id, &canonical_root)? else { continue };
        let missing = missing_files(id, &dir, &canonical_root)?;
        if missing.is_empty() {
            return Ok(ResolvedModel { id: id.to_owned(), root: root.clone(), dir });
        }
        incomplete.get_or_insert(ModelIdError::Incomplete { id: id.to_owned(), dir, missing });
    }
    Err(incomplete.unwrap_or_else(|| ModelIdError::NotFound { id: id.to_owned(), roots: roots.to_vec() }))
}

/// Every directory up to [`MAX_LIST_DEPTH`] segments under `roots` that holds a `config.json`, sorted by
/// id. An id present under several roots is listed once, from the first root (the one [`resolve`]
/// prefers). Hidden entries, names that are not valid ids and symlinks leaving the root are skipped.
pub fn list(roots: &[PathBuf]) -> Vec<ResolvedModel> {
    let mut found = BTreeMap::new();
    for root in roots {
        let Ok(canonical_root) = root.canonicalize() else { continue };
        let mut models = Vec::new();
        walk(&canonical_root, &canonical_root, "", 1, &mut models);
        for (id, dir) in models {
            found.entry(id.clone()).or_insert(ResolvedModel { id, root: root.clone(), dir });
        }
    }
    found.into_values().collect()
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
        if name.starts_with('.') {
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
fn show(id: &str) -> String {
    match id.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &id[..cut], id.len()),
        None => format!("{id:?}"),
    }
}

#[cfg(test)]
#[path = "tests/model_id.rs"]
mod tests;
