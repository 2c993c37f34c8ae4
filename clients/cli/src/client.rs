//! The connection to a server: the address as typed (scheme optional), one channel, both service
//! clients. It connects eagerly so that an unreachable server is reported before any request.

use std::time::Duration;

use maestro_proto::{
    generation_service_client::GenerationServiceClient, resource_service_client::ResourceServiceClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::exit::{self, Failure};

/// Where the CLI connects when neither `--addr` nor `MAESTRO_ADDR` says otherwise.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:50051";

/// How long connecting may take before the server counts as unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest message accepted (a long `GetHistory` carries hundreds of snapshots).
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// Connected clients of both Maestro services.
#[derive(Clone)]
pub struct Clients {
    /// The address connected to, with its scheme.
    pub addr: String,
    /// ResourceService.
    pub resources: ResourceServiceClient<Channel>,
    /// GenerationService.
    pub generation: GenerationServiceClient<Channel>,
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

/// Connects to `addr`, or fails with [`exit::UNAVAILABLE`] saying why.
pub async fn connect(addr: &str) -> Result<Clients, Failure> {
    let endpoint = endpoint(addr)?;
    let addr = endpoint.uri().to_string().trim_end_matches('/').to_string();
    let channel = endpoint.connect().await.map_err(|e| Failure::unavailable(&addr, &e))?;
    Ok(from_channel(addr, channel))
}

/// Clients over an existing channel.
pub fn from_channel(addr: String, channel: Channel) -> Clients {
    Clients {
        addr,
        resources: ResourceServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
        generation: GenerationServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_host_port_gets_a_scheme() {
        assert_eq!(normalize("127.0.0.1:50051"), "http://127.0.0.1:50051");
        assert_eq!(normalize("https://maestro:443"), "https://maestro:443");
    }
}
