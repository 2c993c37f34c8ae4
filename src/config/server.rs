//! `[server]`: the gRPC and metrics addresses, shutdown, TLS, authentication and the HTTP/2 limits.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;
use serde::{Deserialize, Serialize};

use super::units;

/// Server endpoints, transport limits and shutdown behaviour.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "Server (file section [server])")]
pub struct ServerConfig {
    /// Address of the gRPC server.
    #[arg(
        id = "server.listen",
        long = "listen",
        env = "MAESTRO_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,
    /// Address of the HTTP port: the Prometheus `/metrics` endpoint and the dashboard at `/`.
    #[arg(
        id = "server.metrics_listen",
        long = "metrics-listen",
        env = "MAESTRO_METRICS_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:9464"
    )]
    pub metrics_listen: SocketAddr,
    /// Plaintext address serving the gRPC health service alone, for kubelet probes when the main port
    /// speaks TLS; unset = off.
    #[arg(
        id = "server.health_listen",
        long = "health-listen",
        env = "MAESTRO_HEALTH_LISTEN",
        value_name = "ADDR"
    )]
    pub health_listen: Option<SocketAddr>,
    /// Seconds between SIGTERM and the end of accepting: every service but liveness is NOT_SERVING
    /// meanwhile while the server still serves, so traffic moves away first (0..=3600).
    #[arg(
        id = "server.drain_grace_s",
        long = "drain-grace-s",
        env = "MAESTRO_DRAIN_GRACE_S",
        value_name = "SECONDS",
        default_value = "5",
        value_parser = units::secs_f64::parse
    )]
    #[serde(rename = "drain_grace_s", with = "units::secs_f64")]
    pub drain_grace: Duration,
    /// Seconds in-flight generations get to finish once the server stops accepting; those still
    /// running then are cancelled with UNAVAILABLE (0..=3600).
    #[arg(
        id = "server.drain_deadline_s",
        long = "drain-deadline-s",
        env = "MAESTRO_DRAIN_DEADLINE_S",
        value_name = "SECONDS",
        default_value = "10",
        value_parser = units::secs_f64::parse
    )]
    #[serde(rename = "drain_deadline_s", with = "units::secs_f64")]
    pub drain_deadline: Duration,
    /// Open generation streams at most (watches have their own budget, --max-watches).
    #[arg(
        id = "server.max_streams",
        long = "max-streams",
        env = "MAESTRO_MAX_STREAMS",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub max_streams: usize,
    /// Open watch streams (snapshots, alerts, reports) at most, in total: a flood of watches never
    /// refuses a generation.
    #[arg(
        id = "server.max_watches",
        long = "max-watches",
        env = "MAESTRO_MAX_WATCHES",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub max_watches: usize,
    /// Watch streams one client connection may hold open at once (of --max-watches), so that one
    /// connection never takes every watch; 0 = no cap. Behind a proxy that carries many clients'
    /// watches on few connections, raise it or set 0.
    #[arg(
        id = "server.max_watches_per_connection",
        long = "max-watches-per-connection",
        env = "MAESTRO_MAX_WATCHES_PER_CONNECTION",
        value_name = "N",
        default_value_t = 256
    )]
    pub max_watches_per_connection: usize,
    /// PEM certificate chain: serve TLS (with the key); unset = plaintext.
    #[arg(id = "server.tls_cert", long = "tls-cert", env = "MAESTRO_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TLS certificate.
    #[arg(id = "server.tls_key", long = "tls-key", env = "MAESTRO_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: require client certificates signed by it (mutual TLS; needs the certificate).
    #[arg(
        id = "server.tls_client_ca",
        long = "tls-client-ca",
        env = "MAESTRO_TLS_CLIENT_CA",
        value_name = "PEM"
    )]
    pub tls_client_ca: Option<PathBuf>,
    /// Seconds a client has to finish its TLS handshake before the connection is closed (0.1..=600).
    #[arg(
        id = "server.tls_handshake_timeout_s",
        long = "tls-handshake-timeout-s",
        env = "MAESTRO_TLS_HANDSHAKE_TIMEOUT_S",
        value_name = "SECONDS",
        default_value = "10",
        value_parser = units::secs_f64::parse
    )]
    #[serde(rename = "tls_handshake_timeout_s", with = "units::secs_f64")]
    pub tls_handshake_timeout: Duration,
    /// Seconds a unary call may take before it ends DEADLINE_EXCEEDED (0.1..=3600). Not `Generate`
    /// (its admission may wait for a model load; the stream has its own stall timeout), not the
    /// watches, and not `LoadModel` (see `--load-timeout-s`).
    #[arg(
        id = "server.request_timeout_s",
        long = "request-timeout-s",
        env = "MAESTRO_REQUEST_TIMEOUT_S",
        value_name = "SECONDS",
        default_value = "30",
        value_parser = units::secs_f64::parse
    )]
    #[serde(rename = "request_timeout_s", with = "units::secs_f64")]
    pub request_timeout: Duration,
    /// Seconds a `LoadModel` call waits for its load before it ends DEADLINE_EXCEEDED (1..=86400);
    /// the load itself goes on and `ListModels` shows it when it is done.
    #[arg(
        id = "server.load_timeout_s",
        long = "load-timeout-s",
        env = "MAESTRO_LOAD_TIMEOUT_S",
        value_name = "SECONDS",
        default_value = "600",
        value_parser = units::secs_f64::parse
    )]
    #[serde(rename = "load_timeout_s", with = "units::secs_f64")]
    pub load_timeout: Duration,
    /// Connections the gRPC port holds open at once, TLS handshakes included; one more is closed as
    /// soon as it is accepted (and counted in `maestro_connections_refused_total`).
    #[arg(
        id = "server.max_connections",
        long = "max-connections",
        env = "MAESTRO_MAX_CONNECTIONS",
        value_name = "N",
        default_value_t = 4096
    )]
    pub max_connections: usize,
    /// File of accepted bearer tokens: `TOKEN,NAME,ROLE` lines (roles read, generate, admin; a bare
    /// `TOKEN` line has every right), `sha256:<hex>` in place of a token; re-read when it changes and
    /// on SIGHUP. Unset = no authentication.
    #[arg(
        id = "server.auth_token_file",
        long = "auth-token-file",
        env = "MAESTRO_AUTH_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub auth_token_file: Option<PathBuf>,
    /// With tokens: whether read-only telemetry RPCs stay open (health and reflection always are).
    #[arg(
        id = "server.public_telemetry",
        long = "public-telemetry",
        env = "MAESTRO_PUBLIC_TELEMETRY",
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub public_telemetry: bool,
    /// Browser origin (`scheme://host[:port]`) allowed to call the gRPC port besides the dashboard's
    /// own (the requested host on the HTTP port); repeatable (environment: comma-separated).
    #[arg(
        id = "server.cors_origins",
        long = "cors-origin",
        env = "MAESTRO_CORS_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Largest `Generate` request the server decodes, in bytes: it may carry audio
    /// (--max-audio-input-bytes, 8 MiB) and 1 MiB for the rest.
    #[arg(
        id = "server.max_message_bytes",
        long = "max-message-bytes",
        env = "MAESTRO_MAX_MESSAGE_BYTES",
        value_name = "BYTES",
        default_value_t = 9 * 1024 * 1024
    )]
    pub max_message_bytes: usize,
    /// Largest request of every method but `Generate` the server decodes, in bytes: none carries
    /// audio, and the largest a client needs is well under a kilobyte.
    #[arg(
        id = "server.max_unary_message_bytes",
        long = "max-unary-message-bytes",
        env = "MAESTRO_MAX_UNARY_MESSAGE_BYTES",
        value_name = "BYTES",
        default_value_t = 1024 * 1024
    )]
    pub max_unary_message_bytes: usize,
    /// Concurrent streams one HTTP/2 connection may open.
    #[arg(
        id = "server.max_streams_per_connection",
        long = "max-streams-per-connection",
        env = "MAESTRO_MAX_STREAMS_PER_CONNECTION",
        value_name = "N",
        default_value_t = 1024
    )]
    pub max_streams_per_connection: u32,
    /// Seconds between HTTP/2 keepalive pings (a peer that does not answer within 20 s is dropped).
    #[arg(
        id = "server.keepalive_s",
        long = "keepalive-s",
        env = "MAESTRO_KEEPALIVE_S",
        value_name = "SECONDS",
        default_value = "30",
        value_parser = units::secs::parse
    )]
    #[serde(rename = "keepalive_s", with = "units::secs")]
    pub keepalive: Duration,
}

/// TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// PEM CA that client certificates must chain to (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Every file: certificate, key and, when set, the client CA.
    pub fn paths(&self) -> Vec<PathBuf> {
        [&self.cert, &self.key].into_iter().chain(&self.client_ca).cloned().collect()
    }
}

impl ServerConfig {
    /// The TLS material when a certificate and its key are both set (loading refuses one alone);
    /// `None` serves plaintext.
    pub fn tls(&self) -> Option<TlsFiles> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(TlsFiles { cert: cert.clone(), key: key.clone(), client_ca: self.tls_client_ca.clone() })
            }
            _ => None,
        }
    }

    /// The browser origins `--cors-origin` lists (validated when the configuration loads).
    pub fn cors_origins(&self) -> Vec<crate::grpc::auth::Origin> {
        self.cors_origins.iter().filter_map(|o| crate::grpc::auth::Origin::parse(o)).collect()
    }

    /// Serves TLS from `files`, as `--tls-cert`, `--tls-key` and `--tls-client-ca` would.
    pub fn set_tls(&mut self, files: TlsFiles) {
        self.tls_cert = Some(files.cert);
        self.tls_key = Some(files.key);
        self.tls_client_ca = files.client_ca;
    }
}
