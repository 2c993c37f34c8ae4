//! Who may call what: bearer tokens with roles, checked by one tower layer keyed by RPC method in
//! front of every service and every transport (gRPC and gRPC-Web).
//!
//! Without `--auth-token-file` every call is allowed. With it:
//! - health and reflection stay open, so probes and grpcurl discovery work;
//! - the read-only Maestro RPCs need the `read` role, or nothing under `--public-telemetry`;
//! - `Generate`, `Allocate` and `Release` need `generate`; `Cleanup`, `LoadModel` and `UnloadModel`
//!   need `admin` ([`required_role`]).
//!
//! A missing or unknown token is UNAUTHENTICATED, a token without the role PERMISSION_DENIED naming
//! the role; both are counted (`maestro_auth_failures_total{reason}`) and logged with the peer (at
//! most [`LOG_BURST`] lines a second). A request that passes carries its [`Caller`] in the request
//! extensions, for the handlers' ownership rules. A browser page (a request with an `Origin`) from an
//! origin [`OriginPolicy`] does not allow is refused every state-changing RPC whatever its token.

pub mod origin;
mod tokens;

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{SystemTime, UNIX_EPOCH},
};

use http::{Request, Response};
use tonic::body::Body;
use tower::{Layer, Service};

pub use origin::{Origin, OriginPolicy};
pub use tokens::{Identity, Role, TokenFileError, Tokens};

// Tokens are re-read when their file changes and on SIGHUP: see [`crate::reload`].

/// RPCs that need the `generate` role.
const GENERATE: [&str; 3] = [
    "/maestro.v1.GenerationService/Generate",
    "/maestro.v1.ResourceService/Allocate",
    "/maestro.v1.ResourceService/Release",
];

/// RPCs that need the `admin` role.
const ADMIN: [&str; 3] = [
    "/maestro.v1.ResourceService/Cleanup",
    "/maestro.v1.GenerationService/LoadModel",
    "/maestro.v1.GenerationService/UnloadModel",
];

/// Failed-authentication log lines per second at most; the rest are counted in the next line.
pub const LOG_BURST: u64 = 5;

/// The role a path needs; `None` for health and reflection, which are open to everyone.
pub fn required_role(path: &str) -> Option<Role> {
    if ADMIN.contains(&path) {
        Some(Role::Admin)
    } else if GENERATE.contains(&path) {
        Some(Role::Generate)
    } else if path.starts_with("/maestro.v1.") {
        Some(Role::Read)
    } else {
        None
    }
}

/// Who made a call that the layer let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No token file: everyone may do everything, as one anonymous party.
    Open,
    /// A read-only RPC under `--public-telemetry`, without a token.
    Public,
    /// A token holder.
    Token(Identity),
}

impl Caller {
    /// The caller found in a request's extensions; a request that bypassed the layer is [`Caller::Public`]
    /// (the least it could be).
    pub fn of(extensions: &http::Extensions) -> Self {
        extensions.get::<Caller>().cloned().unwrap_or(Caller::Public)
    }

    /// What the caller may do.
    pub fn role(&self) -> Role {
        match self {
            Caller::Open => Role::Admin,
            Caller::Public => Role::Read,
            Caller::Token(identity) => identity.role,
        }
    }

    /// The token's name, for ownership and fair shares; `None` without one.
    pub fn name(&self) -> Option<&Arc<str>> {
        match self {
            Caller::Token(identity) => Some(&identity.name),
            _ => None,
        }
    }

    /// Whether lease ids may be shown: to admins, and to everyone without a token file.
    pub fn sees_lease_ids(&self) -> bool {
        self.role() == Role::Admin
    }
}

/// The layer.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    tokens: Option<Tokens>,
    public_telemetry: bool,
    origins: OriginPolicy,
    log: Arc<LogThrottle>,
}

impl AuthLayer {
    /// No tokens = everything open to native clients and to allowed origins.
    pub fn new(tokens: Option<Tokens>, public_telemetry: bool, origins: OriginPolicy) -> Self {
        Self { tokens, public_telemetry, origins, log: Arc::default() }
    }

    /// The caller, or the refusal to send instead.
    fn admit(&self, req: &Request<Body>) -> Result<Caller, Refusal> {
        let path = req.uri().path();
        let Some(needed) = required_role(path) else {
            return Ok(Caller::Open);
        };
        if needed > Role::Read && self.origins.check(req.headers(), req.uri()) == Some(false) {
            return Err(Refusal::Origin);
        }
        let Some(tokens) = &self.tokens else {
            return Ok(Caller::Open);
        };
        let header = req.headers().get(http::header::AUTHORIZATION);
        let presented = match header {
            None if needed == Role::Read && self.public_telemetry => return Ok(Caller::Public),
            None => return Err(Refusal::Missing),
            Some(value) => value.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")).map(str::trim),
        };
        let identity = presented.and_then(|t| tokens.identify(t.as_bytes())).ok_or(Refusal::Unknown)?;
        if identity.role < needed {
            return Err(Refusal::Role { needed, identity });
        }
        Ok(Caller::Token(identity))
    }

    fn refuse(&self, req: &Request<Body>, refusal: &Refusal) -> Response<Body> {
        metrics::counter!("maestro_auth_failures_total", "reason" => refusal.reason()).increment(1);
        if let Some(suppressed) = self.log.admit() {
            let peer = peer_addr(req.extensions()).map(|a| a.to_string()).unwrap_or_default();
            let origin = req.headers().get(http::header::ORIGIN).and_then(|o| o.to_str().ok());
            let caller = match refusal {
                Refusal::Role { identity, .. } => Some(identity.name.to_string()),
                _ => None,
            };
            tracing::warn!(
                rpc = req.uri().path(),
                %peer,
                origin,
                caller,
                reason = refusal.reason(),
                suppressed,
                "call refused"
            );
        }
        refusal.status(req.uri().path()).into_http()
    }
}

/// Why a call was refused.
#[derive(Debug)]
enum Refusal {
    /// No `authorization` header.
    Missing,
    /// A header that names no token.
    Unknown,
    /// A token without the role.
    Role { needed: Role, identity: Identity },
    /// A browser page from an origin that may not change anything.
    Origin,
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Unknown => "unknown",
            Refusal::Role { .. } => "role",
            Refusal::Origin => "origin",
        }
    }

    fn status(&self, path: &str) -> tonic::Status {
        let rpc = path.rsplit('/').next().unwrap_or(path);
        match self {
            Refusal::Missing => tonic::Status::unauthenticated(format!(
                "{rpc} needs credentials: send `authorization: Bearer <token>`"
            )),
            Refusal::Unknown => tonic::Status::unauthenticated("invalid bearer token"),
            Refusal::Role { needed, identity } => tonic::Status::permission_denied(format!(
                "{rpc} needs the `{needed}` role; token `{}` has `{}`",
                identity.name, identity.role
            )),
            Refusal::Origin => tonic::Status::permission_denied(format!(
                "{rpc} is not served to browser pages from this origin: only the dashboard's own \
                 origin and those listed with --cors-origin may change state"
            )),
        }
    }
}

/// The client's address, as the transport recorded it.
pub fn peer_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    extensions.get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr).or_else(|| {
        extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.get_ref().remote_addr())
    })
}

/// At most [`LOG_BURST`] lines per wall-clock second; what it holds back is reported with the next
/// line let through.
#[derive(Debug, Default)]
pub(crate) struct LogThrottle {
    /// The second (since the epoch) × 2^16 + lines logged in it.
    window: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// `Some(lines held back since the last one)` when this line may be logged.
    pub(crate) fn admit(&self) -> Option<u64> {
        let second = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let result = self.window.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
            let (at, lines) = (w >> 16, w & 0xffff);
            match (at == second, lines < LOG_BURST) {
                (false, _) => Some((second << 16) | 1),
                (true, true) => Some(w + 1),
                (true, false) => None,
            }
        });
        match result {
            Ok(_) => Some(self.suppressed.swap(0, Ordering::Relaxed)),
            Err(_) => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Auth { inner, layer: self.clone() }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S> Service<Request<Body>> for Auth<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        match self.layer.admit(&req) {
            Ok(caller) => {
                if required_role(req.uri().path()).is_some_and(|r| r > Role::Read) {
                    let name = caller.name().map(|n| n.to_string());
                    tracing::info!(rpc = req.uri().path(), caller = name, "state-changing call");
                }
                req.extensions_mut().insert(caller);
                Box::pin(self.inner.call(req))
            }
            Err(refusal) => {
                let response = self.layer.refuse(&req, &refusal);
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_need_their_roles() {
        assert_eq!(required_role("/maestro.v1.ResourceService/Cleanup"), Some(Role::Admin));
        assert_eq!(required_role("/maestro.v1.GenerationService/UnloadModel"), Some(Role::Admin));
        assert_eq!(required_role("/maestro.v1.ResourceService/Release"), Some(Role::Generate));
        assert_eq!(required_role("/maestro.v1.GenerationService/Generate"), Some(Role::Generate));
        assert_eq!(required_role("/maestro.v1.ResourceService/GetStatus"), Some(Role::Read));
        assert_eq!(required_role("/maestro.v1.GenerationService/ListModels"), Some(Role::Read));
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(required_role("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), None);
    }

    #[test]
    fn every_served_maestro_rpc_is_classified_on_purpose() {
        let named: Vec<&str> = GENERATE.iter().chain(&ADMIN).copied().collect();
        for path in &named {
            assert!(crate::grpc::served_methods().contains(*path), "{path} is not served");
        }
    }

    #[test]
    fn the_log_throttle_lets_a_burst_through_then_counts() {
        let throttle = LogThrottle::default();
        let let_through = (0..50).filter_map(|_| throttle.admit()).count() as u64;
        // The loop may straddle a second boundary: one more burst at most.
        assert!((LOG_BURST..=2 * LOG_BURST).contains(&let_through), "{let_through}");
    }
}
