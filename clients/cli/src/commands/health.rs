//! `maestro health`: one grpc.health.v1 `Check` of a service, for scripts and container health checks
//! (the Dockerfile's HEALTHCHECK). Prints the status; exits 0 only when it is SERVING, 3 when the
//! server answers anything else or cannot be reached, 4 for a service the server does not know.

use std::time::Duration;

use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use super::Output;
use crate::{args::HealthArgs, client::Target, exit, Failure};

/// How long the check may take, connecting included: a health check that hangs is a failed one.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks `target` how `args.service` is, and prints the answer.
pub async fn check(target: &Target, out: Output, args: &HealthArgs) -> Result<(), Failure> {
    let endpoint = target.endpoint().timeout(CHECK_TIMEOUT);
    let channel = endpoint.connect().await.map_err(|e| Failure::unavailable(&target.addr, &e))?;
    let request = HealthCheckRequest { service: args.service.clone() };
    let status = HealthClient::new(target.intercept(channel)).check(request).await?.into_inner().status();
    let name = status.as_str_name();
    let text = if out.json {
        format!("{}\n", serde_json::json!({ "service": args.service, "status": name }))
    } else {
        let service = if args.service.is_empty() { "\"\" (server)" } else { &args.service };
        format!("{service} {name}\n")
    };
    super::write_stdout(&text)?;
    match status {
        ServingStatus::Serving => Ok(()),
        _ => Err(Failure::silent(exit::UNAVAILABLE)),
    }
}
