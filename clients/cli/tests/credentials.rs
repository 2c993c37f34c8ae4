//! `maestro` with credentials against the real server: a bearer token (flag, file, environment) over
//! plaintext, TLS and mutual TLS, with exit code 7 when the server refuses it.

mod common;

use std::path::{Path, PathBuf};

use common::{maestro, maestro_env, start_with, test_config, Server, ROOMY};
use maestro::config::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tempfile::TempDir;

/// The one token the servers here accept.
const TOKEN: &str = "cli-test-token";

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files in a directory.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        for (name, san) in [("server", "127.0.0.1"), ("client", "maestro-cli")] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![san.to_string()]).unwrap().signed_by(&key, &ca).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The path of `name` as a command-line argument.
    fn arg(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }
}

/// A server that wants [`TOKEN`] for every Maestro RPC (telemetry included), with `tls` if given.
async fn guarded(dir: &Path, tls: Option<TlsFiles>) -> Server {
    let tokens = dir.join("tokens");
    // One field a line: a token with every right, whatever roles the server knows.
    std::fs::write(&tokens, format!("# the CLI's tests\n{TOKEN}\n")).unwrap();
    let mut config = test_config();
    config.server.auth_token_file = Some(tokens);
    config.server.public_telemetry = false;
    if let Some(tls) = tls {
        config.server.set_tls(tls);
    }
    start_with("127.0.0.1:0".parse().unwrap(), config, ROOMY).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_comes_from_the_flag_the_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let s = guarded(dir.path(), None).await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let file = token_file.to_str().unwrap();

    maestro(&s.url(), &["status", "--token", TOKEN]).await.expect(0);
    maestro(&s.url(), &["--token-file", file, "allocate", "--cpu-memory", "1MB"]).await.expect(0);
    maestro_env(&s.url(), &[("MAESTRO_TOKEN", TOKEN)], &["status"]).await.expect(0);
    // --token beats --token-file, and either beats the environment.
    maestro_env(&s.url(), &[("MAESTRO_TOKEN", "stale")], &["status", "--token-file", file]).await.expect(0);
    maestro_env(&s.url(), &[("MAESTRO_TOKEN", TOKEN)], &["status", "--token", "stale"]).await.expect(7);
    maestro(&s.url(), &["status", "--token", TOKEN, "--token-file", "/nonexistent"]).await.expect(0);
    maestro(&s.url(), &["status", "--token", "stale", "--token-file", file]).await.expect(7);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_wrong_token_exits_7_without_showing_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let s = guarded(dir.path(), None).await;
    let run = maestro(&s.url(), &["status"]).await.expect(7);
    assert!(run.stderr.starts_with("maestro: UNAUTHENTICATED: "), "{}", run.stderr);
    let run =
        maestro(&s.url(), &["allocate", "--cpu-memory", "1MB", "--token", "wrong-secret"]).await.expect(7);
    assert!(run.stderr.starts_with("maestro: UNAUTHENTICATED: "), "{}", run.stderr);
    assert!(!run.stderr.contains("wrong-secret") && !run.stdout.contains("wrong-secret"), "{run:?}");
    // Health stays open, token or not.
    maestro(&s.url(), &["health"]).await.expect(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_private_ca_and_a_token() {
    let pki = Pki::new();
    let tls = TlsFiles { cert: pki.path("server.pem"), key: pki.path("server.key"), client_ca: None };
    let s = guarded(pki.dir.path(), Some(tls)).await;
    let https = format!("https://{}", s.addr);
    let ca = pki.arg("ca.pem");

    let run = maestro(&https, &["status", "--tls-ca", &ca, "--token", TOKEN, "--json"]).await.expect(0);
    assert!(run.json()["effective_memory"].is_object(), "{}", run.stdout);
    maestro(&https, &["health", "--tls-ca", &ca]).await.expect(0);
    maestro(&https, &["status", "--tls-ca", &ca]).await.expect(7);
    // The system's roots do not know the private CA; a plaintext client gets no answer.
    let run = maestro(&https, &["status", "--token", TOKEN]).await.expect(3);
    assert!(run.stderr.starts_with("maestro: UNAVAILABLE: "), "{}", run.stderr);
    let run = maestro(&s.url(), &["status", "--token", TOKEN]).await.expect(3);
    assert!(run.stderr.starts_with("maestro: UNAVAILABLE: "), "{}", run.stderr);
    // TLS files on a plaintext address are a usage error, said before connecting.
    let run = maestro(&s.url(), &["status", "--tls-ca", &ca]).await.expect(2);
    assert!(run.stderr.contains("https://"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_needs_the_client_certificate_and_its_key() {
    let pki = Pki::new();
    let client_ca = Some(pki.path("ca.pem"));
    let tls = TlsFiles { cert: pki.path("server.pem"), key: pki.path("server.key"), client_ca };
    let s = guarded(pki.dir.path(), Some(tls)).await;
    let https = format!("https://{}", s.addr);
    let (ca, cert, key) = (pki.arg("ca.pem"), pki.arg("client.pem"), pki.arg("client.key"));

    let mtls = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
    maestro(&https, &[&["status", "--token", TOKEN][..], &mtls].concat()).await.expect(0);
    maestro(&https, &[&["allocate", "--cpu-memory", "1MB"][..], &mtls].concat()).await.expect(7);
    let refused = maestro(&https, &["status", "--tls-ca", &ca, "--token", TOKEN]).await.expect(3);
    assert!(refused.stderr.starts_with("maestro: UNAVAILABLE: "), "{}", refused.stderr);
    let half = maestro(&https, &["status", "--tls-ca", &ca, "--tls-cert", &cert]).await.expect(2);
    assert!(half.stderr.contains("--tls-key"), "{}", half.stderr);
}
