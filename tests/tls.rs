//! TLS and mutual TLS with certificates made at test time (rcgen).

use std::time::Duration;

use maestro::{
    app::App,
    config::{Config, TlsFiles},
};
use maestro_proto::{resource_service_client::ResourceServiceClient, StatusRequest};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki { ca: ca.pem(), server: leaf("localhost"), client: leaf("maestro-client") }
}

async fn serve(tls: TlsFiles) -> (std::net::SocketAddr, maestro::shutdown::Trigger) {
    let mut config = Config::default();
    config.server.metrics_listen = "127.0.0.1:0".parse().unwrap();
    config.server.drain_deadline = Duration::from_secs(2);
    config.server.drain_grace = Duration::ZERO;
    config.server.set_tls(tls);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::build(config).await.unwrap();
    let (stop, signals) = maestro::shutdown::Signals::channel();
    tokio::spawn(app.serve(listener, signals));
    (addr, stop)
}

async fn status(addr: std::net::SocketAddr, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://localhost:{}", addr.port())).unwrap();
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    let endpoint = endpoint.connect_timeout(Duration::from_secs(5)).timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
    ResourceServiceClient::new(channel)
        .get_status(StatusRequest {})
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn tls_and_mutual_tls() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let cert = write(dir.path(), "server.pem", &pki.server.0);
    let key = write(dir.path(), "server.key", &pki.server.1);
    let ca = write(dir.path(), "ca.pem", &pki.ca);
    let trust =
        || ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&pki.ca)).domain_name("localhost");

    // Server TLS: a client that trusts the CA gets through; a plaintext client does not.
    let (addr, _stop) = serve(TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: None }).await;
    status(addr, Some(trust())).await.expect("TLS call");
    assert!(status(addr, None).await.is_err(), "plaintext refused");

    // Mutual TLS: the client certificate is required.
    let (addr, _stop2) = serve(TlsFiles { cert, key, client_ca: Some(ca) }).await;
    assert!(status(addr, Some(trust())).await.is_err(), "no client certificate, no call");
    let identity = Identity::from_pem(&pki.client.0, &pki.client.1);
    status(addr, Some(trust().identity(identity))).await.expect("mTLS call");
}
