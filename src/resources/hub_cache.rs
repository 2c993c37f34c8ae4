//! The Hugging Face hub cache as a model root, read in place: an entry `models--ORG--NAME` is the
//! model `ORG/NAME` at the commit its `refs/main` names, and `ORG/NAME@REV` picks another snapshot
//! (a ref under `refs/`, or a commit hash, full or a unique prefix of at least
//! [`revision::MIN_PREFIX`] hex digits; see [`revision`]).
//!
//! The cache is laid out as `huggingface_hub` writes it: `snapshots/<commit>/<file>` are symlinks into
//! the entry's `blobs/<etag>`, which may itself be a symlink into the cache-wide Xet store
//! `blobs/<2 hex>/<hash>`. Files are read through those links where they lie; a link resolving
//! anywhere else is refused ([`entry`]). An entry is complete when its snapshot holds `config.json`,
//! `tokenizer.json` and the weights with every shard the index names, and no download into its
//! `blobs/` was left unfinished (`*.incomplete`); an incomplete one is listed and never loaded.
//!
//! The cache directory is found as `huggingface_hub` finds it ([`discover`]). The cache's own
//! `.locks/`, its shared `blobs/`, other repo types (`datasets--`, `spaces--`) and stray files are no
//! models and are skipped.

pub mod entry;
pub mod revision;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use super::model_id::{ModelIdError, ResolvedModel};

/// What an entry's folder name starts with: model repos (datasets and spaces are cached beside them).
pub const MODELS_PREFIX: &str = "models--";

/// What separates a repo id's parts in a folder name (`facebook/musicgen-small` →
/// `models--facebook--musicgen-small`); hub repo names cannot contain it, so the mapping is one-to-one.
pub const SEPARATOR: &str = "--";

/// The revision an id without `@REV` names.
pub const DEFAULT_REVISION: &str = "main";

/// The hub cache `huggingface_hub` would use, given its environment lookup `var`: `HF_HUB_CACHE`,
/// else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
/// `~/.cache/huggingface/hub`. Values are expanded as Python's `expanduser` and `expandvars` do. An
/// empty variable counts as unset; `None` when not even a home directory is known.
pub fn discover(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty()).map(|v| v.to_string_lossy().into_owned());
    let expand = |value: String| PathBuf::from(expand_vars(&expand_user(&value, &var), &var));
    if let Some(cache) = set("HF_HUB_CACHE").or_else(|| set("HUGGINGFACE_HUB_CACHE")) {
        return Some(expand(cache));
    }
    if let Some(home) = set("HF_HOME") {
        return Some(expand(home).join("hub"));
    }
    let cache_home = match set("XDG_CACHE_HOME") {
        Some(xdg) => PathBuf::from(xdg),
        None => PathBuf::from(set("HOME")?).join(".cache"),
    };
    Some(expand(cache_home.join("huggingface").to_string_lossy().into_owned()).join("hub"))
}

/// The entry folder name of the hub repo `repo` (`ORG/NAME` or `NAME`); `None` when `repo` cannot be
/// a hub repo id (more than two parts, or a part holding [`SEPARATOR`]).
pub fn folder_name(repo: &str) -> Option<String> {
    let parts: Vec<&str> = repo.split('/').collect();
    let plain = |p: &&str| !p.is_empty() && !p.contains(SEPARATOR);
    (parts.len() <= 2 && parts.iter().all(plain)).then(|| format!("{MODELS_PREFIX}{}", parts.join(SEPARATOR)))
}

/// The repo id an entry folder name stands for; `None` for anything that is not a model entry.
pub fn repo_id(folder: &str) -> Option<String> {
    let repo = folder.strip_prefix(MODELS_PREFIX)?.replace(SEPARATOR, "/");
    (folder_name(&repo).as_deref() == Some(folder)).then_some(repo)
}

/// Resolves `repo` at `revision` (`None`: [`DEFAULT_REVISION`]) in `cache`: `Ok(None)` when the cache
/// has no entry for it, the complete snapshot when it has, an error naming what is missing, the
/// revision that is not there or the link that leaves the cache otherwise. `id` is the id as given.
pub fn resolve(
    id: &str,
    repo: &str,
    revision: Option<&str>,
    cache: &Path,
) -> Result<Option<ResolvedModel>, ModelIdError> {
    let Ok(canonical_cache) = cache.canonicalize() else { return Ok(None) };
    let Some(folder) = folder_name(repo) else { return Ok(None) };
    let Some(entry) =
        entry::Entry::open(&canonical_cache, &folder).map_err(|reason| entry_error(id, reason))?
    else {
        return Ok(None);
    };
    let commit = revision::select(&entry.dir, revision.unwrap_or(DEFAULT_REVISION))
        .map_err(|e| e.into_model_error(id, &entry.dir))?;
    let snapshot = entry.snapshot(&commit).map_err(|reason| entry_error(id, reason))?;
    let missing = entry.missing(&snapshot).map_err(|reason| entry_error(id, reason))?;
    if !missing.is_empty() {
        return Err(ModelIdError::Incomplete { id: id.to_owned(), dir: snapshot, missing });
    }
    Ok(Some(ResolvedModel { id: id.to_owned(), root: cache.to_owned(), dir: snapshot }))
}

/// The MusicGen models in `cache`, complete or not, sorted by id: each entry as `ORG/NAME` at
/// `refs/main`, or, for an entry without `refs/main`, each of its snapshots as `ORG/NAME@<commit>`.
/// Entries whose config names another kind of model are skipped with a debug line.
pub fn list(cache: &Path) -> Vec<ResolvedModel> {
    let Ok(canonical_cache) = cache.canonicalize() else { return Vec::new() };
    let Ok(names) = fs::read_dir(&canonical_cache) else { return Vec::new() };
    let mut found = Vec::new();
    for name in names.flatten().filter_map(|e| e.file_name().into_string().ok()) {
        let Some(repo) = repo_id(&name) else { continue };
        let Ok(Some(entry)) = entry::Entry::open(&canonical_cache, &name) else { continue };
        for (id, commit) in listed_revisions(&repo, &entry.dir) {
            let Ok(dir) = entry.snapshot(&commit) else { continue };
            if let Some(kind) = entry.other_kind(&dir) {
                tracing::debug!(model = %id, %kind, "hub cache entry skipped: not a MusicGen model");
                continue;
            }
            found.push(ResolvedModel { id, root: cache.to_owned(), dir });
        }
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

/// `(id, commit)` for what an entry lists: `refs/main`'s commit, or else every snapshot.
fn listed_revisions(repo: &str, entry: &Path) -> Vec<(String, String)> {
    if let Ok(commit) = revision::select(entry, DEFAULT_REVISION) {
        return vec![(repo.to_owned(), commit)];
    }
    revision::snapshots(entry).into_iter().map(|c| (format!("{repo}@{c}"), c)).collect()
}

fn entry_error(id: &str, reason: String) -> ModelIdError {
    ModelIdError::Invalid { reason: format!("{reason}, for {}", super::model_id::show(id)) }
}

/// Python's `os.path.expanduser` for the current user: a leading `~` (alone or before `/`) is `$HOME`.
fn expand_user(value: &str, var: &impl Fn(&str) -> Option<OsString>) -> String {
    let home = || var("HOME").map(|h| h.to_string_lossy().into_owned());
    match value.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => match home() {
            Some(home) => format!("{}{rest}", home.trim_end_matches('/')),
            None => value.to_owned(),
        },
        _ => value.to_owned(),
    }
}

/// Python's `os.path.expandvars`: `$NAME` and `${NAME}` are replaced by set variables; unknown ones
/// and anything malformed are left as they are.
fn expand_vars(value: &str, var: &impl Fn(&str) -> Option<OsString>) -> String {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, len) = match after.strip_prefix('{') {
            Some(braced) => match braced.find('}') {
                Some(end) => (&braced[..end], end + 2),
                None => ("", 0),
            },
            None => {
                let end = after.find(|c| !is_name(c)).unwrap_or(after.len());
                (&after[..end], end)
            }
        };
        match var(name).filter(|_| !name.is_empty()) {
            Some(found) => out.push_str(&found.to_string_lossy()),
            None => out.push_str(&rest[at..at + 1 + len]),
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[path = "tests/hub_cache.rs"]
mod tests;
