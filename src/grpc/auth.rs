//! Bearer-token authentication as a tower layer in front of every service.
//!
//! With `--auth-token-file`, the mutating RPCs need `authorization: Bearer <token>`; read-only
//! telemetry needs it only when `--public-telemetry false`; health and reflection stay open so probes
//! and grpcurl discovery work. Tokens are compared in constant time, never logged, and re-read when
//! the file changes and on SIGHUP ([`crate::reload`]). A browser page (any request with an `Origin`
//! header, which browsers always send across origins and native gRPC clients never do) reaches only
//! the read-only RPCs: the mutating ones are PERMISSION_DENIED to it whatever its token, so the
//! dashboard can change nothing.

use std::{
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
};

use http::{Request, Response};
use subtle::{Choice, ConstantTimeEq};
use tonic::body::Body;
use tower::{Layer, Service};

/// RPCs that change state: always behind the token when one is configured.
const MUTATING: [&str; 6] = [
    "/maestro.v1.ResourceService/Allocate",
    "/maestro.v1.ResourceService/Release",
    "/maestro.v1.ResourceService/Cleanup",
    "/maestro.v1.GenerationService/LoadModel",
    "/maestro.v1.GenerationService/UnloadModel",
    "/maestro.v1.GenerationService/Generate",
];

/// What a path needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health and reflection.
    Open,
    /// Read-only Maestro RPCs.
    Telemetry,
    /// State-changing RPCs.
    Mutating,
}

/// Classifies a request path.
pub fn access(path: &str) -> Access {
    if MUTATING.contains(&path) {
        Access::Mutating
    } else if path.starts_with("/maestro.v1.") {
        Access::Telemetry
    } else {
        Access::Open
    }
}

/// The accepted tokens, shared with the file watcher that reloads them.
#[derive(Debug, Clone)]
pub struct Tokens {
    file: PathBuf,
    tokens: Arc<RwLock<Vec<Vec<u8>>>>,
}

impl Tokens {
    /// Reads the token file: one token per line; blank lines and `#` comments are skipped.
    pub fn load(file: &Path) -> std::io::Result<Self> {
        let t = Self { file: file.to_path_buf(), tokens: Arc::default() };
        t.reload()?;
        Ok(t)
    }

    /// Re-reads the file; on error the old tokens stay.
    pub fn reload(&self) -> std::io::Result<usize> {
        let text = std::fs::read_to_string(&self.file)?;
        let tokens: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.as_bytes().to_vec())
            .collect();
        let n = tokens.len();
        *self.tokens.write().expect("token lock") = tokens;
        Ok(n)
    }

    /// Whether `presented` equals one of the tokens. Every token is compared, each in time that does
    /// not depend on where the bytes differ (only a token's length can show).
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let tokens = self.tokens.read().expect("token lock");
        let any = tokens.iter().fold(Choice::from(0), |ok, t| ok | t.as_slice().ct_eq(presented));
        any.into()
    }
}

/// The layer.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    tokens: Option<Tokens>,
    public_telemetry: bool,
}

impl AuthLayer {
    /// No tokens = everything open.
    pub fn new(tokens: Option<Tokens>, public_telemetry: bool) -> Self {
        Self { tokens, public_telemetry }
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

impl<S> Auth<S> {
    fn refusal(&self, req: &Request<Body>) -> Option<&'static str> {
        let tokens = self.layer.tokens.as_ref()?;
        match access(req.uri().path()) {
            Access::Open => return None,
            Access::Telemetry if self.layer.public_telemetry => return None,
            _ => {}
        }
        let header = req.headers().get("authorization").and_then(|v| v.to_str().ok());
        match header.and_then(|h| h.strip_prefix("Bearer ")) {
            None => Some("missing credentials: send `authorization: Bearer <token>`"),
            Some(t) if tokens.accepts(t.trim().as_bytes()) => None,
            Some(_) => Some("invalid bearer token"),
        }
    }
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

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        if req.headers().contains_key(http::header::ORIGIN) && access(req.uri().path()) == Access::Mutating {
            let message = "state-changing RPCs are not served to browser pages";
            let response = tonic::Status::permission_denied(message).into_http();
            return Box::pin(async move { Ok(response) });
        }
        if let Some(message) = self.refusal(&req) {
            let response = tonic::Status::unauthenticated(message).into_http();
            return Box::pin(async move { Ok(response) });
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified() {
        assert_eq!(access("/maestro.v1.ResourceService/Allocate"), Access::Mutating);
        assert_eq!(access("/maestro.v1.GenerationService/Generate"), Access::Mutating);
        assert_eq!(access("/maestro.v1.ResourceService/GetStatus"), Access::Telemetry);
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), Access::Open);
    }

    #[test]
    fn tokens_compare_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# ops\nalpha\n\n beta \n").unwrap();
        let t = Tokens::load(&file).unwrap();
        assert!(t.accepts(b"alpha") && t.accepts(b"beta") && !t.accepts(b"gamma") && !t.accepts(b"# ops"));
        for near in [&b"alphA"[..], b"alpha2", b"alph", b"", b"alphabeta"] {
            assert!(!t.accepts(near), "{near:?}");
        }
        std::fs::write(&file, "gamma\n").unwrap();
        assert_eq!(t.reload().unwrap(), 1);
        assert!(t.accepts(b"gamma") && !t.accepts(b"alpha"));
    }
}
