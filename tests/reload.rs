//! The token file re-read when it changes on disk, without SIGHUP, through the real server: a
//! Kubernetes-style Secret update (a new directory, then the `..data` symlink renamed over the old
//! one) takes effect, and a broken update keeps the old tokens.

mod common;

use std::path::{Path, PathBuf};

use common::{eventually, scrape, start_server, test_config, TestServer, WITHIN};
use maestro_proto as pb;
use tonic::{Code, Request};

/// A token file line granting `token` every RPC. The format of the token file with roles is
/// `TOKEN,NAME,ROLE`; a line holding the token alone is what the file took before roles.
fn line(token: &str) -> String {
    format!("{token}\n")
}

/// A Secret volume as the kubelet writes it: `tokens` → `..data/tokens`, `..data` → the current
/// timestamped directory.
struct SecretVolume {
    dir: tempfile::TempDir,
    version: u32,
}

impl SecretVolume {
    fn new(tokens: &str) -> Self {
        let mut volume = Self { dir: tempfile::tempdir().unwrap(), version: 0 };
        volume.update(Some(tokens));
        std::os::unix::fs::symlink("..data/tokens", volume.file()).unwrap();
        volume
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// Writes a new version (`None`: one without the `tokens` key) and swaps it in the kubelet's
    /// way: symlink `..data_tmp` to the new directory, rename it over `..data`, remove the old one.
    fn update(&mut self, tokens: Option<&str>) {
        let root = self.dir.path();
        let (old, new) = (version_dir(self.version), version_dir(self.version + 1));
        self.version += 1;
        std::fs::create_dir(root.join(&new)).unwrap();
        if let Some(text) = tokens {
            std::fs::write(root.join(&new).join("tokens"), text).unwrap();
        }
        std::os::unix::fs::symlink(&new, root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        let _ = std::fs::remove_dir_all(root.join(old));
    }
}

fn version_dir(n: u32) -> String {
    format!("..2026_01_01_00_00_{n:02}.000000001")
}

async fn accepted(server: &TestServer, token: &str) -> bool {
    let mut req = Request::new(pb::CleanupRequest { force: false, dry_run: true });
    req.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    match server.resources.clone().cleanup(req).await {
        Ok(_) => true,
        Err(e) if e.code() == Code::Unauthenticated => false,
        Err(e) => panic!("a dry-run cleanup failed: {e}"),
    }
}

/// `maestro_file_reloads_total{files="auth_tokens",outcome}` on the server's /metrics (process-wide:
/// read as a difference).
async fn reloads(server: &TestServer, outcome: &str) -> u64 {
    let labels = format!("files=\"auth_tokens\",outcome=\"{outcome}\"");
    let exposition = scrape(server.metrics_addr).await;
    let sample =
        exposition.lines().find(|l| l.starts_with("maestro_file_reloads_total") && l.contains(&labels));
    sample.and_then(|l| l.rsplit(' ').next()).map_or(0, |v| v.parse().unwrap())
}

async fn server_reading(file: &Path) -> TestServer {
    let mut config = test_config();
    config.server.auth_token_file = Some(file.to_path_buf());
    start_server(config).await
}

/// Held by each test: the reload counter is process-wide, so one test's failed reload must not pass
/// for another's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits for one more failed reload of the tokens than `before`.
async fn failed_reload(server: &TestServer, before: u64) {
    eventually("a failed reload", WITHIN, async || (reloads(server, "error").await > before).then_some(()))
        .await;
}

#[tokio::test]
async fn a_secret_update_takes_effect_without_sighup_and_an_unreadable_one_keeps_the_old_tokens() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut volume = SecretVolume::new(&line("first-token"));
    let server = server_reading(&volume.file()).await;
    assert!(accepted(&server, "first-token").await);
    assert!(!accepted(&server, "second-token").await);

    volume.update(Some(&line("second-token")));
    eventually("the new token accepted", WITHIN, async || {
        accepted(&server, "second-token").await.then_some(())
    })
    .await;
    assert!(!accepted(&server, "first-token").await, "the old token is gone with its version");

    // An update whose `tokens` is missing: the file cannot be read, the tokens in use stay.
    let before = reloads(&server, "error").await;
    volume.update(None);
    failed_reload(&server, before).await;
    assert!(accepted(&server, "second-token").await, "a broken update keeps the old tokens");

    // Fixed again: the fixed file is read.
    volume.update(Some(&line("third-token")));
    eventually("the fixed file read", WITHIN, async || accepted(&server, "third-token").await.then_some(()))
        .await;
    server.shutdown().await.unwrap();
}

/// Needs the token file format with roles (`TOKEN,NAME,ROLE`), where a line of two fields is a
/// parse error: with the format of one token per line, `abc,def` is a token and replaces the old ones.
#[tokio::test]
async fn an_edit_with_a_malformed_line_keeps_the_old_tokens() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, line("kept-token")).unwrap();
    let server = server_reading(&file).await;
    assert!(accepted(&server, "kept-token").await);

    let before = reloads(&server, "error").await;
    std::fs::write(&file, "abc,def\n").unwrap();
    failed_reload(&server, before).await;
    assert!(accepted(&server, "kept-token").await, "a malformed edit keeps the old tokens");
    assert!(!accepted(&server, "abc").await && !accepted(&server, "abc,def").await);
    server.shutdown().await.unwrap();
}
