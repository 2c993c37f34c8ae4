//! TLS on the gRPC port, with material that can be replaced while the server runs.
//!
//! tonic's own TLS fixes its configuration once built, so the server terminates TLS itself: the
//! accept loop takes each TCP connection and hands it to a task of its own for the handshake, under
//! a timeout, so a client that connects and says nothing costs one task for that long and never holds
//! up the next accept. Every handshake reads the current rustls configuration; a reload builds a whole
//! new one (certificate chain, key and, for mutual TLS, the client CA) and swaps it in, so new
//! connections use it and open ones keep theirs. ALPN offers `h2` and `http/1.1` (gRPC-Web from
//! browsers may come over either). Finished handshakes reach tonic as [`Coalescing`] streams whose
//! connect info is tonic's `TlsConnectInfo<TcpConnectInfo>`: the peer's address (and certificates)
//! stay in every request's extensions.

use std::{
    io,
    sync::{Arc, RwLock},
    time::Duration,
};

use anyhow::Context;
use futures::{Stream, StreamExt};
use tokio::{net::TcpStream, sync::mpsc};
use tokio_rustls::{
    rustls::{
        self,
        pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
        server::WebPkiClientVerifier,
        RootCertStore, ServerConfig,
    },
    server::TlsStream,
    TlsAcceptor,
};
use tokio_stream::wrappers::ReceiverStream;

use super::transport::{self, Capped, Coalescing};
use crate::config::TlsFiles;

/// Handshaken connections waiting for tonic to take them.
const READY: usize = 64;

/// Pause after a failed accept (out of file descriptors, say) before the next, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The TLS material in use and where it comes from.
#[derive(Clone)]
pub struct ServerTls {
    files: TlsFiles,
    current: Arc<RwLock<Arc<ServerConfig>>>,
    handshake_timeout: Duration,
}

impl ServerTls {
    /// Reads the files (at build time, so a bad one is a start-up error naming it).
    pub fn load(files: TlsFiles, handshake_timeout: Duration) -> anyhow::Result<Self> {
        let config = server_config(&files)?;
        Ok(Self { files, current: Arc::new(RwLock::new(Arc::new(config))), handshake_timeout })
    }

    /// Re-reads the files; new connections use them. On error the material in use stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let config = Arc::new(server_config(&self.files)?);
        *self.current.write().expect("TLS configuration lock") = config;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().expect("TLS configuration lock").clone())
    }
}

/// The listener's connections (`TCP_NODELAY` on) once their TLS handshake is done; handshakes that
/// fail or outlast the timeout are dropped (logged at debug: scanners and TCP probes make them).
/// Accepting stops when the stream is dropped. At most `max_connections` are open, handshakes
/// included (see [`transport::tcp`]).
pub fn incoming(
    listener: tokio::net::TcpListener,
    tls: ServerTls,
    max_connections: usize,
) -> impl Stream<Item = Result<Coalescing<TlsStream<Capped<TcpStream>>>, io::Error>> {
    let (ready, taken) = mpsc::channel(READY);
    tokio::spawn(accept(transport::tcp(listener, max_connections), tls, ready));
    ReceiverStream::new(taken).map(Ok)
}

async fn accept(
    tcp: impl Stream<Item = io::Result<Capped<TcpStream>>>,
    tls: ServerTls,
    ready: mpsc::Sender<Coalescing<TlsStream<Capped<TcpStream>>>>,
) {
    let mut tcp = std::pin::pin!(tcp);
    loop {
        let next = tokio::select! {
            () = ready.closed() => return,
            next = tcp.next() => next,
        };
        match next {
            Some(Ok(stream)) => {
                tokio::spawn(handshake(stream, tls.acceptor(), tls.handshake_timeout, ready.clone()));
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
            None => return,
        }
    }
}

async fn handshake(
    stream: Capped<TcpStream>,
    acceptor: TlsAcceptor,
    timeout: Duration,
    ready: mpsc::Sender<Coalescing<TlsStream<Capped<TcpStream>>>>,
) {
    let peer = stream.get_ref().peer_addr().ok();
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // Err only once the server stopped accepting: the connection is dropped.
            let _ = ready.send(Coalescing(tls)).await;
        }
        Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(?peer, ?timeout, "TLS handshake timed out"),
    }
}

/// A rustls server configuration from the files: ring, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`,
/// client certificates required when there is a client CA. A key that does not match the
/// certificate is refused (a rotation caught between its two files).
fn server_config(files: &TlsFiles) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("cannot read a PEM private key from {}", files.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots.add(cert).with_context(|| format!("a CA certificate in {}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .with_context(|| format!("client CA {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .with_context(|| format!("{} with {}", files.cert.display(), files.key.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The PEM certificates in `path`, at least one.
fn certificates(path: &std::path::Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let read = || format!("cannot read PEM certificates from {}", path.display());
    let chain = CertificateDer::pem_file_iter(path).with_context(read)?.collect::<Result<Vec<_>, _>>();
    let chain = chain.with_context(read)?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", path.display());
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use tonic::transport::server::Connected;

    use super::*;

    /// A self-signed `localhost` certificate in `dir`, and its DER for the client to trust.
    fn self_signed(dir: &std::path::Path) -> (TlsFiles, CertificateDer<'static>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert, made.cert.pem()).unwrap();
        std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
        (TlsFiles { cert, key, client_ca: None }, made.cert.der().clone())
    }

    #[tokio::test]
    async fn a_handshaken_connection_carries_the_peer_address() {
        let dir = tempfile::tempdir().unwrap();
        let (files, der) = self_signed(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted =
            std::pin::pin!(incoming(listener, ServerTls::load(files, Duration::from_secs(5)).unwrap(), 16));

        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        let client =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let connect = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp);
        let (client, server) = tokio::join!(connect, accepted.next());
        // Kept open: the address of a peer already gone reads as none.
        let _client = client.unwrap();
        let info = server.unwrap().unwrap().connect_info();
        assert_eq!(info.get_ref().remote_addr(), Some(local));
    }
}
