//! Builds a Hugging Face hub cache by hand, laid out exactly as `huggingface_hub` (2.x) writes one, for
//! there is no public call that writes the cache offline: `models--ORG--NAME/blobs/<etag>` holds
//! each file once, `snapshots/<commit>/<file>` are relative symlinks to `../../blobs/<etag>`,
//! `refs/<name>` holds a commit hash (no newline), and the cache keeps its `.locks/` and
//! `CACHEDIR.TAG`. With the shared Xet store, the weights' blobs move to the marked cache-wide
//! `blobs/<2 hex>/<xet hash>` (read-only, with a `<hash>.refs` manifest of the repo blobs linking to
//! it) and `blobs/<etag>` becomes a relative symlink to it. Shared by the unit tests
//! (`src/resources/tests/hub_cache.rs`) and the integration tests.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A hub cache being built.
pub struct HubLayout {
    /// The cache directory (what `HF_HUB_CACHE` names).
    pub cache: PathBuf,
    /// Whether weight files go to the shared Xet store.
    pub shared_store: bool,
}

impl HubLayout {
    /// A cache at `cache` (created), with the shared Xet store's marker when `shared_store`.
    pub fn new(cache: &Path, shared_store: bool) -> Self {
        fs::create_dir_all(cache.join(".locks")).unwrap();
        fs::write(cache.join("CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55\n").unwrap();
        if shared_store {
            fs::create_dir_all(cache.join("blobs")).unwrap();
            fs::write(cache.join("blobs/.huggingface-shared-blobs"), "1\n").unwrap();
        }
        Self { cache: cache.to_owned(), shared_store }
    }

    /// The entry folder of `repo` (`ORG/NAME`).
    pub fn entry(&self, repo: &str) -> PathBuf {
        self.cache.join(format!("models--{}", repo.replace('/', "--")))
    }

    /// Writes `files` (name, bytes) into the snapshot `commit` of `repo`; returns the snapshot folder.
    pub fn snapshot(&self, repo: &str, commit: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
        let snapshot = self.entry(repo).join("snapshots").join(commit);
        fs::create_dir_all(&snapshot).unwrap();
        for (name, bytes) in files {
            let etag = self.blob(repo, name, bytes);
            let link = snapshot.join(name);
            let _ = fs::remove_file(&link);
            symlink(format!("../../blobs/{etag}"), link).unwrap();
        }
        snapshot
    }

    /// Points `refs/<name>` at `commit`, as `huggingface_hub` does after a download by branch.
    pub fn set_ref(&self, repo: &str, name: &str, commit: &str) {
        let path = self.entry(repo).join("refs").join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, commit).unwrap();
    }

    /// Leaves an unfinished download in `repo`'s `blobs/`; returns its name.
    pub fn unfinished_download(&self, repo: &str, bytes: &[u8]) -> String {
        let name = format!("{}.incomplete", sha256(bytes));
        let blobs = self.entry(repo).join("blobs");
        fs::create_dir_all(&blobs).unwrap();
        fs::write(blobs.join(&name), &bytes[..bytes.len() / 2]).unwrap();
        name
    }

    /// Stores `bytes` as a blob of `repo` and returns its etag: the sha256 for weights (an LFS file),
    /// a 40-digit git-like hash for the rest. Weights go through the shared store when it is on.
    fn blob(&self, repo: &str, name: &str, bytes: &[u8]) -> String {
        let weights = name.ends_with(".safetensors") || name.ends_with(".bin");
        let hash = sha256(bytes);
        let etag = if weights { hash.clone() } else { hash[..40].to_owned() };
        let folder = self.entry(repo).file_name().unwrap().to_string_lossy().into_owned();
        let blobs = self.entry(repo).join("blobs");
        fs::create_dir_all(&blobs).unwrap();
        fs::create_dir_all(self.cache.join(".locks").join(&folder)).unwrap();
        fs::write(self.cache.join(".locks").join(&folder).join(format!("{etag}.lock")), b"").unwrap();
        let blob = blobs.join(&etag);
        if blob.symlink_metadata().is_ok() {
            return etag;
        }
        if !(weights && self.shared_store) {
            fs::write(&blob, bytes).unwrap();
            return etag;
        }
        let xet = sha256(&[b"xet:".as_slice(), bytes].concat());
        let prefix = self.cache.join("blobs").join(&xet[..2]);
        fs::create_dir_all(&prefix).unwrap();
        let payload = prefix.join(&xet);
        if !payload.exists() {
            fs::write(&payload, bytes).unwrap();
            fs::set_permissions(&payload, fs::Permissions::from_mode(0o444)).unwrap();
        }
        let manifest = prefix.join(format!("{xet}.refs"));
        let mut lines = fs::read_to_string(&manifest).unwrap_or_default();
        lines.push_str(&format!("{folder}/blobs/{etag}\n"));
        fs::write(manifest, lines).unwrap();
        symlink(format!("../../blobs/{}/{xet}", &xet[..2]), &blob).unwrap();
        etag
    }
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The files of a fixture folder under `tests/fixtures` that a hub snapshot of it holds.
pub fn fixture_files(fixture: &str) -> Vec<(&'static str, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture);
    ["config.json", "generation_config.json", "tokenizer.json", "model.safetensors"]
        .into_iter()
        .map(|name| (name, fs::read(dir.join(name)).unwrap()))
        .collect()
}
