//! TLS and mutual TLS with certificates made at test time (rcgen): calls with and without client
//! certificates, a certificate replaced on disk serving new connections, a silent client dropped at
//! the handshake timeout while others get through, and ALPN.

mod common;

use std::{sync::Arc, time::Duration};

use common::{eventually, WITHIN};

use maestro::{
    app::App,
    config::{Config, TlsFiles},
};
use maestro_proto::{resource_service_client::ResourceServiceClient, StatusRequest};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tokio::{
    io::AsyncReadExt,
    net::{TcpListener, TcpStream},
};
use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, ServerName},
    ClientConfig, RootCertStore,
};
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
    serve_with(tls, Config::default()).await
}

async fn serve_with(tls: TlsFiles, mut config: Config) -> (std::net::SocketAddr, maestro::shutdown::Trigger) {
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

/// A client TLS configuration that trusts `ca` for `localhost`.
fn trusting(ca: &str) -> ClientTlsConfig {
    ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost")
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
    let trust = || trusting(&pki.ca);

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

/// Serves TLS with `pki`'s server certificate from files in `dir`.
fn server_files(dir: &std::path::Path, pki: &Pki) -> TlsFiles {
    let cert = write(dir, "tls.crt", &pki.server.0);
    TlsFiles { cert, key: write(dir, "tls.key", &pki.server.1), client_ca: None }
}

#[tokio::test]
async fn a_certificate_replaced_on_disk_serves_new_connections() {
    let (old, new) = (pki(), pki());
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop) = serve(server_files(dir.path(), &old)).await;
    let endpoint = Channel::from_shared(format!("https://localhost:{}", addr.port())).unwrap();
    let open = endpoint.tls_config(trusting(&old.ca)).unwrap().connect().await.unwrap();

    server_files(dir.path(), &new);
    eventually("the new certificate served", WITHIN, async || {
        status(addr, Some(trusting(&new.ca))).await.ok()
    })
    .await;
    assert!(status(addr, Some(trusting(&old.ca))).await.is_err(), "the old certificate is no longer served");
    let mut client = ResourceServiceClient::new(open);
    client.get_status(StatusRequest {}).await.expect("a connection made before keeps its session");
}

#[tokio::test]
async fn a_client_silent_in_its_handshake_is_dropped_at_the_timeout_and_holds_up_no_one() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.tls_handshake_timeout = Duration::from_secs(1);
    let (addr, _stop) = serve_with(server_files(dir.path(), &pki), config).await;
    let connected = tokio::time::Instant::now();
    let mut silent = Vec::new();
    for _ in 0..32 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }

    status(addr, Some(trusting(&pki.ca))).await.expect("a call while 32 handshakes hang");
    for mut stream in silent {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte)).await;
        let read = read.expect("the server closes a silent connection after its handshake timeout");
        assert!(matches!(read, Ok(0) | Err(_)), "closed, not answered: {read:?}");
    }
    assert!(connected.elapsed() >= Duration::from_millis(900), "not before the timeout");
}

/// The protocol the server picks when the client offers `offered`.
async fn negotiated(addr: std::net::SocketAddr, ca: &str, offered: &[&[u8]]) -> Option<Vec<u8>> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = offered.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
}

#[tokio::test]
async fn alpn_offers_h2_and_http_1_1() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let (addr, _stop) = serve(server_files(dir.path(), &pki)).await;
    let ca = &pki.ca;
    assert_eq!(negotiated(addr, ca, &[b"h2", b"http/1.1"]).await.as_deref(), Some(&b"h2"[..]));
    assert_eq!(negotiated(addr, ca, &[b"http/1.1"]).await.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(negotiated(addr, ca, &[b"h2"]).await.as_deref(), Some(&b"h2"[..]));
}
