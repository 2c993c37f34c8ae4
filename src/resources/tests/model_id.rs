//! Unit tests of model id validation, resolution and listing on temporary directories.

use std::os::unix::fs::symlink;

use tempfile::TempDir;

use super::*;

/// [`super::resolve`] under plain roots, no hub cache.
fn resolve(id: &str, roots: &[PathBuf]) -> Result<ResolvedModel, ModelIdError> {
    super::resolve(id, &ModelRoots::dirs(roots.to_vec()))
}

/// [`super::list`] under plain roots, no hub cache.
fn list(roots: &[PathBuf]) -> Vec<ResolvedModel> {
    super::list(&ModelRoots::dirs(roots.to_vec()))
}

/// Creates `root/id` with the given files.
fn model(root: &Path, id: &str, files: &[&str]) -> PathBuf {
    let dir = root.join(id);
    fs::create_dir_all(&dir).unwrap();
    for name in files {
        fs::write(dir.join(name), b"{}").unwrap();
    }
    dir
}

fn complete(root: &Path, id: &str) -> PathBuf {
    model(root, id, &["config.json", "model.safetensors"])
}

fn reason(id: &str) -> String {
    match validate(id) {
        Err(ModelIdError::Invalid { reason }) => reason,
        other => panic!("{id:?} should be invalid, got {other:?}"),
    }
}

#[test]
fn accepts_plain_relative_ids() {
    for id in ["facebook/musicgen-small", "maestro/musicgen-tiny", "tiny", "a/b/c", "x.y/z_1-2"] {
        assert_eq!(validate(id), Ok(()), "{id}");
    }
}

#[test]
fn rejects_each_rule_naming_field_rule_and_value() {
    let long = "a".repeat(MAX_ID_BYTES + 1);
    let cases: &[(&str, &str, &str)] = &[
        ("", "must not be empty", "got \"\""),
        (&long, "at most 256 bytes", "(257 bytes)"),
        ("../etc", "without '..'", "got \"../etc\""),
        ("a/../../b", "without '..'", "got \"a/../../b\""),
        ("..", "without '..'", "got \"..\""),
        ("/etc/passwd", "not an absolute path", "got \"/etc/passwd\""),
        ("a\\..\\b", "not '\\'", "got \"a\\\\..\\\\b\""),
        ("a\0b", "control characters", "got \"a\\0b\""),
        ("a\nb", "control characters", "got \"a\\nb\""),
        ("a//b", "empty or '.'", "got \"a//b\""),
        ("./a", "empty or '.'", "got \"./a\""),
        ("a/", "empty or '.'", "got \"a/\""),
    ];
    for (id, rule, value) in cases {
        let message = ModelIdError::Invalid { reason: reason(id) }.to_string();
        assert!(message.starts_with("model: "), "{message}");
        assert!(message.contains(rule), "{id:?}: {message}");
        assert!(message.contains(value), "{id:?}: {message}");
    }
}

#[test]
fn exactly_the_limit_is_accepted() {
    assert_eq!(validate(&"a".repeat(MAX_ID_BYTES)), Ok(()));
}

#[test]
fn resolves_a_complete_directory() {
    let root = TempDir::new().unwrap();
    let dir = complete(root.path(), "facebook/musicgen-small");
    let roots = vec![root.path().to_owned()];
    let found = resolve("facebook/musicgen-small", &roots).unwrap();
    assert_eq!(found.id, "facebook/musicgen-small");
    assert_eq!(found.root, root.path());
    assert_eq!(found.dir, dir.canonicalize().unwrap());
}

#[test]
fn invalid_ids_fail_before_the_filesystem() {
    let root = TempDir::new().unwrap();
    complete(root.path(), "m");
    let roots = vec![root.path().join("m")];
    assert!(matches!(resolve("../m", &roots), Err(ModelIdError::Invalid { .. })));
}

#[test]
fn missing_files_are_named() {
    let root = TempDir::new().unwrap();
    let dir = model(root.path(), "m", &["config.json"]);
    let err = resolve("m", &[root.path().to_owned()]).unwrap_err();
    assert_eq!(
        err,
        ModelIdError::Incomplete {
            id: "m".into(),
            dir: dir.canonicalize().unwrap(),
            missing: vec![WEIGHTS.to_owned()]
        }
    );
    assert!(err.to_string().contains("lacks weights (model.safetensors, "), "{err}");
    for layout in ["model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"] {
        let id = format!("with-{layout}");
        model(root.path(), &id, &["config.json", layout]);
        assert!(resolve(&id, &[root.path().to_owned()]).is_ok(), "{layout} is weights");
    }
    model(root.path(), "empty", &[]);
    match resolve("empty", &[root.path().to_owned()]) {
        Err(ModelIdError::Incomplete { missing, .. }) => {
            assert_eq!(missing, REQUIRED_FILES.map(String::from))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_ids_and_missing_roots_are_not_found() {
    let root = TempDir::new().unwrap();
    let roots = vec![root.path().join("absent"), root.path().to_owned()];
    let err = resolve("facebook/musicgen-small", &roots).unwrap_err();
    assert!(matches!(&err, ModelIdError::NotFound { roots: r, .. } if *r == roots));
    let message = err.to_string();
    assert!(message.contains("\"facebook/musicgen-small\"") && message.contains("config.json"), "{message}");
}

#[test]
fn a_file_is_not_a_model_directory() {
    let root = TempDir::new().unwrap();
    let dir = complete(root.path(), "m");
    let roots = vec![root.path().to_owned()];
    assert!(matches!(resolve("m/config.json", &roots), Err(ModelIdError::NotFound { .. })));
    assert!(matches!(resolve("m/config.json/x", &roots), Err(ModelIdError::NotFound { .. })));
    assert_eq!(resolve("m", &roots).unwrap().dir, dir.canonicalize().unwrap());
}

#[test]
fn later_roots_are_searched_and_complete_wins() {
    let (first, second) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    model(first.path(), "m", &["config.json"]);
    complete(second.path(), "m");
    let roots = vec![first.path().to_owned(), second.path().to_owned()];
    assert_eq!(resolve("m", &roots).unwrap().root, second.path());
}

#[test]
fn symlinks_leaving_the_root_are_invalid() {
    let (root, outside) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let target = complete(outside.path(), "secret");
    symlink(&target, root.path().join("evil")).unwrap();
    symlink(outside.path(), root.path().join("parent")).unwrap();
    let roots = vec![root.path().to_owned()];
    for id in ["evil", "parent/secret"] {
        let err = resolve(id, &roots).unwrap_err();
        assert!(matches!(err, ModelIdError::Invalid { .. }), "{id}: {err:?}");
        assert!(err.to_string().contains("symlink") && err.to_string().contains(id), "{err}");
    }
}

#[test]
fn a_required_file_linking_outside_is_invalid() {
    let (root, outside) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let dir = model(root.path(), "m", &["config.json"]);
    fs::write(outside.path().join("w"), b"x").unwrap();
    symlink(outside.path().join("w"), dir.join("model.safetensors")).unwrap();
    let err = resolve("m", &[root.path().to_owned()]).unwrap_err();
    assert!(err.to_string().contains("model.safetensors is a symlink"), "{err}");
    // A shard the index names, linking outside, is refused like the index itself would be.
    let dir = model(root.path(), "sharded", &["config.json"]);
    let index = r#"{"weight_map": {"a": "model-00001-of-00002.safetensors"}}"#;
    fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
    symlink(outside.path().join("w"), dir.join("model-00001-of-00002.safetensors")).unwrap();
    let err = resolve("sharded", &[root.path().to_owned()]).unwrap_err();
    assert!(err.to_string().contains("model-00001-of-00002.safetensors is a symlink"), "{err}");
}

#[test]
fn symlinks_inside_the_root_are_followed() {
    let root = TempDir::new().unwrap();
    let real = complete(root.path(), "store/m");
    symlink(&real, root.path().join("alias")).unwrap();
    let found = resolve("alias", &[root.path().to_owned()]).unwrap();
    assert_eq!(found.dir, real.canonicalize().unwrap());
}

#[test]
fn list_finds_config_dirs_up_to_three_deep_sorted() {
    let (root, outside) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    complete(root.path(), "z-model");
    model(root.path(), "facebook/musicgen-small", &["config.json"]);
    complete(root.path(), "a/b/c");
    complete(root.path(), "a/b/c/d");
    complete(root.path(), ".cache/m");
    model(root.path(), "nothing/here", &["model.safetensors"]);
    complete(outside.path(), "m");
    symlink(outside.path().join("m"), root.path().join("escape")).unwrap();
    let ids: Vec<String> = list(&[root.path().to_owned()]).into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["a/b/c", "facebook/musicgen-small", "z-model"]);
}

#[test]
fn list_prefers_the_first_root_and_skips_missing_roots() {
    let (first, second) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    complete(first.path(), "m");
    complete(second.path(), "m");
    complete(second.path(), "n");
    let roots = vec![first.path().join("absent"), first.path().to_owned(), second.path().to_owned()];
    let models = list(&roots);
    let summary: Vec<(&str, &Path)> = models.iter().map(|m| (m.id.as_str(), m.root.as_path())).collect();
    assert_eq!(summary, [("m", first.path()), ("n", second.path())]);
}
