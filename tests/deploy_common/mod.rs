//! What the deployment tests share: the external tools (provisioned once per test binary by
//! `scripts/provision-tools.sh`, never skipped when missing), YAML read as JSON values, and the
//! repository's paths.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use serde::Deserialize;
use serde_json::Value;

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The cached venv's bin directory, after `scripts/provision-tools.sh` made sure every tool is there
/// (promtool and prometheus on PATH, kubectl and kubernetes-validate in the venv).
pub fn tools_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = run(Command::new(repo().join("scripts/provision-tools.sh")));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// A command for the venv's tool `name` (kubectl, kubernetes-validate).
pub fn venv_tool(name: &str) -> Command {
    Command::new(tools_bin().join(name))
}

/// A command for `name` on PATH (promtool, prometheus), provisioned first.
pub fn path_tool(name: &str) -> Command {
    tools_bin();
    Command::new(name)
}

/// Runs `command` to its end; panics with everything it printed unless it exited 0.
pub fn run(mut command: Command) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?}: {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every document of a YAML stream, as JSON values (empty documents dropped).
pub fn yaml_documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The one YAML document of the file at `path` (relative to the repository).
pub fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut docs = yaml_documents(&text);
    assert_eq!(docs.len(), 1, "{path}: one YAML document");
    docs.remove(0)
}

/// The string at JSON pointer `pointer` of `v`, panicking with the path when it is not one.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_else(|| panic!("no string at {pointer} in {v:#}"))
}
