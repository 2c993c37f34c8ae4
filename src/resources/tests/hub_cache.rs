//! Unit tests of the hub cache as a model root, on caches built by hand as `huggingface_hub` writes
//! them (with and without the shared Xet store): discovery, ids, revisions, completeness, links.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::symlink;

use tempfile::TempDir;

use super::*;
use crate::resources::model_id::{self, ModelRoots};

use crate::resources::hub_layout::HubLayout;

const MAIN: &str = "0123456789abcdef0123456789abcdef01234567";
const OTHER: &str = "0123ffff89abcdef0123456789abcdef01234567";
const REPO: &str = "facebook/musicgen-small";

fn files(config: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", config.as_bytes().to_vec()),
        ("tokenizer.json", b"{}".to_vec()),
        ("model.safetensors", b"weights".to_vec()),
    ]
}

fn musicgen() -> Vec<(&'static str, Vec<u8>)> {
    files(r#"{"model_type": "musicgen"}"#)
}

/// A cache with `REPO` at `MAIN` (`refs/main`) and at `OTHER` (branch `dev`, pull request 1).
fn two_snapshots(shared_store: bool) -> (TempDir, HubLayout) {
    let dir = TempDir::new().unwrap();
    let hub = HubLayout::new(&dir.path().join("hub"), shared_store);
    hub.snapshot(REPO, MAIN, &musicgen());
    hub.snapshot(REPO, OTHER, &musicgen());
    hub.set_ref(REPO, "main", MAIN);
    hub.set_ref(REPO, "dev", OTHER);
    hub.set_ref(REPO, "refs/pr/1", OTHER);
    (dir, hub)
}

fn hub_only(hub: &HubLayout) -> ModelRoots {
    ModelRoots { dirs: Vec::new(), hub_cache: Some(hub.cache.clone()) }
}

fn snapshot_of(hub: &HubLayout, commit: &str) -> PathBuf {
    hub.entry(REPO).join("snapshots").join(commit).canonicalize().unwrap()
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
    let map: HashMap<String, OsString> = vars.iter().map(|(k, v)| (k.to_string(), v.into())).collect();
    move |name| map.get(name).cloned()
}

#[test]
fn the_cache_is_found_as_huggingface_hub_finds_it() {
    let home = [("HOME", "/home/u")];
    assert_eq!(discover(env(&home)), Some("/home/u/.cache/huggingface/hub".into()));
    let xdg = [("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg")];
    assert_eq!(discover(env(&xdg)), Some("/xdg/huggingface/hub".into()));
    let hf_home = [("HOME", "/home/u"), ("XDG_CACHE_HOME", "/xdg"), ("HF_HOME", "~/hf")];
    assert_eq!(discover(env(&hf_home)), Some("/home/u/hf/hub".into()));
    let legacy = [("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "$HOME/legacy"), ("HOME", "/h")];
    assert_eq!(discover(env(&legacy)), Some("/h/legacy".into()));
    let both = [("HF_HUB_CACHE", "${DATA}/hub"), ("HUGGINGFACE_HUB_CACHE", "/legacy"), ("DATA", "/d")];
    assert_eq!(discover(env(&both)), Some("/d/hub".into()));
    assert_eq!(discover(env(&[("HF_HUB_CACHE", "$UNSET/x")])), Some("$UNSET/x".into()));
    assert_eq!(
        discover(env(&[("HF_HUB_CACHE", ""), ("HOME", "/h")])),
        Some("/h/.cache/huggingface/hub".into())
    );
    assert_eq!(discover(env(&[])), None);
}

#[test]
fn repo_ids_map_to_entry_folders_one_to_one() {
    assert_eq!(folder_name(REPO).as_deref(), Some("models--facebook--musicgen-small"));
    assert_eq!(folder_name("gpt2").as_deref(), Some("models--gpt2"));
    for bad in ["a/b/c", "a--b/c", "a/", ""] {
        assert_eq!(folder_name(bad), None, "{bad}");
    }
    assert_eq!(repo_id("models--facebook--musicgen-small").as_deref(), Some(REPO));
    assert_eq!(repo_id("models--gpt2").as_deref(), Some("gpt2"));
    for bad in ["datasets--a--b", "models--a--b--c", "models--", "blobs", ".locks", "models----x"] {
        assert_eq!(repo_id(bad), None, "{bad}");
    }
}

#[test]
fn ids_with_a_revision_are_valid_once() {
    for id in ["facebook/musicgen-small@main", "a/b@refs/pr/1", "gpt2@0123abcd", "a/b@v1.0_rc-2"] {
        assert_eq!(model_id::validate(id), Ok(()), "{id}");
    }
    for id in ["a/b@", "@main", "a/b@c@d", "a/b@x y", "a/b@../x", "a/b@refs//x", "a/b/@main", "a@/x"] {
        assert!(matches!(model_id::validate(id), Err(ModelIdError::Invalid { .. })), "{id}");
    }
}

#[test]
fn revisions_select_snapshots_as_refs_and_hashes() {
    for shared in [false, true] {
        let (_dir, hub) = two_snapshots(shared);
        let roots = hub_only(&hub);
        let dir = |id: &str| model_id::resolve(id, &roots).map(|m| m.dir);
        assert_eq!(dir(REPO), Ok(snapshot_of(&hub, MAIN)), "refs/main");
        for other in ["dev", "refs/pr/1", OTHER, "0123f", "0123ffff"] {
            assert_eq!(dir(&format!("{REPO}@{other}")), Ok(snapshot_of(&hub, OTHER)), "{other}");
        }
        assert_eq!(dir(&format!("{REPO}@{MAIN}")), Ok(snapshot_of(&hub, MAIN)));
        match dir(&format!("{REPO}@0123")) {
            Err(ModelIdError::AmbiguousRevision { matches, .. }) => assert_eq!(matches, [MAIN, OTHER]),
            other => panic!("{other:?}"),
        }
        for unknown in ["012", "beef", "nope"] {
            match dir(&format!("{REPO}@{unknown}")) {
                Err(ModelIdError::UnknownRevision { refs, snapshots, .. }) => {
                    assert_eq!(refs, ["dev", "main", "refs/pr/1"]);
                    assert_eq!(snapshots, [MAIN, OTHER]);
                }
                other => panic!("{unknown}: {other:?}"),
            }
        }
    }
}

#[test]
fn complete_entries_resolve_to_their_snapshot_in_both_layouts() {
    for shared in [false, true] {
        let (_dir, hub) = two_snapshots(shared);
        let found = model_id::resolve(REPO, &hub_only(&hub)).unwrap();
        assert_eq!((found.id.as_str(), found.root.as_path()), (REPO, hub.cache.as_path()));
        let weights = found.dir.join("model.safetensors").canonicalize().unwrap();
        let store = hub.cache.canonicalize().unwrap().join("blobs");
        assert_eq!(weights.starts_with(&store), shared, "{}", weights.display());
        assert_eq!(fs::read(weights).unwrap(), b"weights");
    }
}

#[test]
fn incomplete_entries_name_what_is_missing() {
    let (_dir, hub) = two_snapshots(true);
    fs::remove_file(snapshot_of(&hub, MAIN).join("tokenizer.json")).unwrap();
    let sharded = "maestro/sharded";
    let index = r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}"#;
    let mut shard_files = files("{}");
    shard_files[2] = ("model.safetensors.index.json", index.as_bytes().to_vec());
    shard_files.push(("model-00001-of-00002.safetensors", b"shard".to_vec()));
    hub.snapshot(sharded, MAIN, &shard_files);
    hub.set_ref(sharded, "main", MAIN);
    let partial = hub.unfinished_download(sharded, b"the second shard");
    let missing = |id: &str| match model_id::resolve(id, &hub_only(&hub)) {
        Err(ModelIdError::Incomplete { missing, .. }) => missing,
        other => panic!("{id}: {other:?}"),
    };
    assert_eq!(missing(REPO), ["tokenizer.json"]);
    assert_eq!(
        missing(sharded),
        [
            "model-00002-of-00002.safetensors (a shard its index names)".to_owned(),
            format!("blobs/{partial} (a download that did not finish)"),
        ]
    );
    let ids: Vec<String> = model_id::list(&hub_only(&hub)).into_iter().map(|m| m.id).collect();
    assert_eq!(ids, [REPO, sharded], "incomplete entries are listed");
}

#[test]
fn a_link_leaving_the_cache_is_refused() {
    let (dir, hub) = two_snapshots(false);
    let outside = dir.path().join("secret");
    fs::write(&outside, b"{}").unwrap();
    let link = snapshot_of(&hub, MAIN).join("tokenizer.json");
    fs::remove_file(&link).unwrap();
    symlink(&outside, &link).unwrap();
    let err = model_id::resolve(REPO, &hub_only(&hub)).unwrap_err();
    assert!(matches!(err, ModelIdError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("tokenizer.json") && err.to_string().contains("symlink"), "{err}");
    // Inside the cache but not a blob (its CACHEDIR.TAG) is refused too.
    fs::remove_file(&link).unwrap();
    symlink(hub.cache.join("CACHEDIR.TAG"), &link).unwrap();
    assert!(matches!(model_id::resolve(REPO, &hub_only(&hub)), Err(ModelIdError::Invalid { .. })));
    // An entry folder that is a link out of the cache is refused, and not listed.
    let elsewhere = TempDir::new().unwrap();
    let other = HubLayout::new(elsewhere.path(), false);
    other.snapshot("x/y", MAIN, &musicgen());
    other.set_ref("x/y", "main", MAIN);
    symlink(other.entry("x/y"), hub.entry("x/y")).unwrap();
    assert!(matches!(model_id::resolve("x/y", &hub_only(&hub)), Err(ModelIdError::Invalid { .. })));
    assert!(model_id::list(&hub_only(&hub)).iter().all(|m| m.id != "x/y"));
}

#[test]
fn locks_stray_files_other_repo_types_and_other_models_are_not_listed() {
    let (_dir, hub) = two_snapshots(true);
    fs::write(hub.cache.join("version.txt"), "1").unwrap();
    fs::create_dir_all(hub.cache.join("datasets--a--b/snapshots").join(MAIN)).unwrap();
    hub.snapshot("google/bert", MAIN, &files(r#"{"model_type": "bert"}"#));
    hub.set_ref("google/bert", "main", MAIN);
    hub.snapshot("maestro/detached", OTHER, &musicgen());
    let ids: Vec<String> = model_id::list(&hub_only(&hub)).into_iter().map(|m| m.id).collect();
    assert_eq!(ids, [REPO.to_owned(), format!("maestro/detached@{OTHER}")]);
    // Skipped from listings only: asking for it gets the loader's refusal, naming the type.
    assert!(model_id::resolve("google/bert", &hub_only(&hub)).is_ok());
}

#[test]
fn model_roots_come_first_and_revisions_only_reach_the_cache() {
    let (dir, hub) = two_snapshots(false);
    let root = dir.path().join("models");
    let local = root.join(REPO);
    fs::create_dir_all(&local).unwrap();
    for name in ["config.json", "model.safetensors"] {
        fs::write(local.join(name), b"{}").unwrap();
    }
    let roots = ModelRoots { dirs: vec![root.clone()], hub_cache: Some(hub.cache.clone()) };
    assert_eq!(model_id::resolve(REPO, &roots).unwrap().dir, local.canonicalize().unwrap());
    assert_eq!(model_id::resolve(&format!("{REPO}@dev"), &roots).unwrap().dir, snapshot_of(&hub, OTHER));
    let listed = model_id::list(&roots);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].root, root);
    match model_id::resolve("absent/model", &roots) {
        Err(ModelIdError::NotFound { roots: searched, .. }) => {
            assert_eq!(searched, [root, hub.cache.clone()])
        }
        other => panic!("{other:?}"),
    }
}
