//! The connection to a server: the address as typed (scheme optional) with its credentials, one
//! channel, both service clients. It connects eagerly so that an unreachable server is reported
//! before any request.

use std::time::Duration;

use maestro_proto::{
    generation_service_client::GenerationServiceClient, resource_service_client::ResourceServiceClient,
};
use tonic::{
    service::interceptor::InterceptedService,
    transport::{Channel, Endpoint},
};

use crate::{
    args::ConnectArgs,
    credentials::{self, Auth, TlsPaths},
    exit::{self, Failure},
};

/// Where the CLI connects when neither `--addr` nor `MAESTRO_ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:50051";

/// How long connecting may take before the server counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest message accepted (a long `GetHistory` carries hundreds of snapshots).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// A channel whose every call carries the token, when there is one.
pub type Transport = InterceptedService<Channel, Auth>;

/// Connected clients of both Maestro services.
#[derive(Clone)]
pub struct Clients {
    /// The address connected to, with its scheme.
    pub addr: String,
    /// ResourceService.
    pub resources: ResourceServiceClient<Transport>,
    /// GenerationService.
    pub generation: GenerationServiceClient<Transport>,
}

/// A server and how to reach it: the endpoint (TLS settings included for `https://`) and the token.
#[derive(Clone)]
pub struct Target {
    /// The address with its scheme and without a trailing slash, as messages show it.
    pub addr: String,
    endpoint: Endpoint,
    auth: Auth,
}

impl Target {
    /// `addr` with no token; an `https://` address trusts the system's roots.
    pub fn new(addr: &str) -> Result<Self, Failure> {
        Self::with_credentials(addr, Auth::default(), TlsPaths::default())
    }

    /// What the command line names: `--addr`, the token (`--token`, `--token-file` or
    /// `MAESTRO_TOKEN`) and the TLS files.
    pub fn from_args(args: &ConnectArgs) -> Result<Self, Failure> {
        let env = std::env::var(credentials::TOKEN_ENV).ok();
        let token = credentials::resolve_token(args.token.as_ref(), args.token_file.as_deref(), env)?;
        let tls = TlsPaths {
            ca: args.tls_ca.as_deref(),
            cert: args.tls_cert.as_deref(),
            key: args.tls_key.as_deref(),
        };
        Self::with_credentials(&args.addr, Auth::new(token.as_ref())?, tls)
    }

    /// `addr` with a token and TLS files; the files need an `https://` address.
    pub fn with_credentials(addr: &str, auth: Auth, tls: TlsPaths<'_>) -> Result<Self, Failure> {
        let mut endpoint = endpoint(addr)?;
        let addr = endpoint.uri().to_string().trim_end_matches('/').to_string();
        if tls.any() {
            tls.check()?;
            if endpoint.uri().scheme_str() != Some("https") {
                let message =
                    format!("--tls-ca, --tls-cert and --tls-key need an https:// address, not {addr}");
                return Err(Failure::new(exit::USAGE, message));
            }
            endpoint = endpoint.tls_config(tls.config()?).map_err(|e| {
                Failure::new(exit::USAGE, format!("invalid TLS settings: {}", exit::chain(&e)))
            })?;
        }
        Ok(Self { addr, endpoint, auth })
    }

    /// The endpoint, for a caller that sets more on it (a timeout) before connecting.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// `channel` with this target's token on every call.
    pub fn intercept(&self, channel: Channel) -> Transport {
        InterceptedService::new(channel, self.auth.clone())
    }
}

/// `addr` with `http://` prepended when it has no scheme.
pub fn normalize(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

/// The endpoint for `addr`; a malformed address is a usage error.
pub fn endpoint(addr: &str) -> Result<Endpoint, Failure> {
    let addr = normalize(addr);
    let endpoint = Endpoint::from_shared(addr.clone())
        .map_err(|e| Failure::new(exit::USAGE, format!("--addr {addr:?} is not a valid address: {e}")))?;
    Ok(endpoint.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
}

/// Connects to `target`, or fails with [`exit::UNAVAILABLE`] saying why.
pub async fn connect(target: &Target) -> Result<Clients, Failure> {
    let channel = target.endpoint.connect().await.map_err(|e| Failure::unavailable(&target.addr, &e))?;
    let transport = target.intercept(channel);
    Ok(Clients {
        addr: target.addr.clone(),
        resources: ResourceServiceClient::new(transport.clone()).max_decoding_message_size(MAX_MESSAGE),
        generation: GenerationServiceClient::new(transport).max_decoding_message_size(MAX_MESSAGE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_host_port_gets_a_scheme() {
        assert_eq!(normalize("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(normalize("https://maestro:443"), "https://maestro:443");
    }

    #[test]
    fn tls_files_need_an_https_address_and_a_whole_identity() {
        let ca = std::path::Path::new("ca.pem");
        let tls = TlsPaths { ca: Some(ca), ..TlsPaths::default() };
        for addr in ["127.0.0.1:50051", "http://127.0.0.1:50051"] {
            let err = Target::with_credentials(addr, Auth::default(), tls).err().unwrap();
            assert_eq!(err.code, exit::USAGE, "{addr}");
            assert!(err.message.contains("https://"), "{}", err.message);
        }
        let https = "https://127.0.0.1:50051";
        let half = TlsPaths { cert: Some(ca), ..TlsPaths::default() };
        let err = Target::with_credentials(https, Auth::default(), half).err().unwrap();
        assert_eq!(err.code, exit::USAGE);
        assert!(err.message.contains("--tls-key"), "{}", err.message);
    }
}
