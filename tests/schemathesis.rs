//! schemathesis (PyPI, pinned in scripts/requirements-tools.txt) against `/api/v1/openapi.json` on a
//! live server: generated requests for every operation, with an admin token, checking that no answer
//! is a server error and that every status, content type and response body is the one documented.
//! The watch streams are open-ended and excluded (their framing is `tests/http_api.rs`'s); generations
//! are bounded by `--max-duration-s 2`. Without libtorch, the operations that need it answer
//! UNIMPLEMENTED (501, a server error by schemathesis's rule) and are excluded too.

mod common;
mod deploy_common;

use std::process::Command;

use common::{start_server, test_config};

#[tokio::test(flavor = "multi_thread")]
async fn the_http_api_conforms_to_its_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, "schemathesis-token,schemathesis,admin\n").unwrap();
    let mut config = if cfg!(feature = "torch") { common::model_config() } else { test_config() };
    config.server.auth_token_file = Some(tokens);
    config.server.public_telemetry = false;
    config.generation.max_duration_s = 2.0;
    let s = start_server(config).await;
    let mut excluded = vec!["WatchSnapshots", "WatchAlerts", "WatchReport"];
    if !cfg!(feature = "torch") {
        excluded.extend(["Generate", "LoadModel", "UnloadModel"]);
    }
    let url = format!("http://{}/api/v1/openapi.json", s.addr);
    let mut command = deploy_common::venv_tool("schemathesis");
    command
        .args(["run", &url])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--header", "Authorization: Bearer schemathesis-token"])
        .args(["--max-examples", "25", "--seed", "1", "--phases", "examples,fuzzing,stateful"])
        .args(["--request-timeout", "30"])
        .env("SCHEMATHESIS_HOOKS", "")
        .current_dir(dir.path());
    for id in excluded {
        command.args(["--exclude-operation-id", id]);
    }
    let out = tokio::task::spawn_blocking(move || run_reporting(command)).await.unwrap();
    assert!(out.0, "schemathesis found failures:\n{}", out.1);
}

/// Runs `command`; `(exited 0, what it printed)`.
fn run_reporting(mut command: Command) -> (bool, String) {
    let out = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
