//! Which browser origins may call the gRPC port.
//!
//! A page is allowed when its host is the host the request was sent to (the `Host` header, or
//! `:authority` over HTTP/2) and its port is the HTTP port: the dashboard's own origin, under
//! whatever name users reach the server by. Origins listed with `--cors-origin` are allowed as well,
//! compared whole (scheme, host and port). Every other origin gets no CORS headers, and the auth layer
//! refuses it every state-changing RPC.

use http::{request::Parts, HeaderMap, HeaderValue, Uri};

/// An origin reduced to what is compared: lower-case scheme and host, and the port (the scheme's
/// default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]`; anything else (a path, `null`, another scheme) is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let uri: Uri = text.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let has_path = uri.path_and_query().is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty());
        if has_path || text.ends_with('/') {
            return None;
        }
        let authority = uri.authority()?;
        let host = authority.host().to_ascii_lowercase();
        Some(Self { scheme, host, port: authority.port_u16().unwrap_or(default_port) })
    }
}

/// The origins a browser page may call from.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    http_port: u16,
    listed: Vec<Origin>,
}

impl OriginPolicy {
    /// The dashboard's origins on `http_port`, plus `listed` (`--cors-origin`).
    pub fn new(http_port: u16, listed: Vec<Origin>) -> Self {
        Self { http_port, listed }
    }

    /// Whether a request with these headers and URI comes from an allowed origin; `None` when it has
    /// no `Origin` (a native client, not a browser).
    pub fn check(&self, headers: &HeaderMap, uri: &Uri) -> Option<bool> {
        let origin = headers.get(http::header::ORIGIN)?;
        Some(self.allows(origin, headers, uri))
    }

    /// Whether `origin` may call, for a request with these headers and URI.
    pub fn allows(&self, origin: &HeaderValue, headers: &HeaderMap, uri: &Uri) -> bool {
        let Some(origin) = origin.to_str().ok().and_then(Origin::parse) else {
            return false;
        };
        if self.listed.contains(&origin) {
            return true;
        }
        let requested = request_host(headers, uri);
        origin.port == self.http_port && requested.is_some_and(|host| host == origin.host)
    }

    /// The same decision, as tower-http's CORS predicate asks it.
    pub fn allows_parts(&self, origin: &HeaderValue, parts: &Parts) -> bool {
        self.allows(origin, &parts.headers, &parts.uri)
    }
}

/// The host the client addressed, without the port, lower-case.
fn request_host(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(authority) = uri.authority() {
        return Some(authority.host().to_ascii_lowercase());
    }
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let authority: http::uri::Authority = host.parse().ok()?;
    Some(authority.host().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(host: &str) -> (HeaderMap, Uri) {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, host.parse().unwrap());
        (headers, Uri::from_static("/maestro.v1.ResourceService/GetStatus"))
    }

    fn allowed(policy: &OriginPolicy, origin: &str, host: &str) -> bool {
        let (headers, uri) = request(host);
        policy.allows(&origin.parse().unwrap(), &headers, &uri)
    }

    #[test]
    fn the_dashboards_origin_is_the_requested_host_on_the_http_port() {
        let p = OriginPolicy::new(9464, vec![]);
        assert!(allowed(&p, "http://maestro.internal:9464", "maestro.internal:50051"));
        assert!(allowed(&p, "https://MAESTRO.internal:9464", "maestro.internal:50051"));
        assert!(allowed(&p, "http://[::1]:9464", "[::1]:50051"));
        assert!(allowed(&p, "http://10.0.0.7:9464", "10.0.0.7"));
        assert!(!allowed(&p, "http://evil.example:9464", "maestro.internal:50051"), "another host");
        assert!(!allowed(&p, "http://maestro.internal:9465", "maestro.internal:50051"), "another port");
        assert!(!allowed(&p, "http://maestro.internal", "maestro.internal:50051"), "port 80");
        assert!(!allowed(&p, "null", "maestro.internal:50051"));
        assert!(!allowed(&p, "http://maestro.internal:9464/x", "maestro.internal:50051"));
        assert!(!allowed(&p, "ftp://maestro.internal:9464", "maestro.internal:50051"));
    }

    #[test]
    fn listed_origins_compare_whole() {
        let listed = vec![Origin::parse("https://ui.example.com").unwrap()];
        let p = OriginPolicy::new(9464, listed);
        assert!(allowed(&p, "https://ui.example.com", "maestro.internal:50051"));
        assert!(allowed(&p, "https://ui.example.com:443", "maestro.internal:50051"));
        assert!(!allowed(&p, "http://ui.example.com", "maestro.internal:50051"), "scheme");
        assert!(!allowed(&p, "https://ui.example.com:8443", "maestro.internal:50051"), "port");
        assert!(!allowed(&p, "https://evil.ui.example.com", "maestro.internal:50051"), "host");
    }

    #[test]
    fn http2_authority_wins_over_a_host_header() {
        let p = OriginPolicy::new(9464, vec![]);
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, "evil.example".parse().unwrap());
        let uri: Uri = "http://maestro.internal:50051/maestro.v1.ResourceService/GetStatus".parse().unwrap();
        assert!(p.allows(&"http://maestro.internal:9464".parse().unwrap(), &headers, &uri));
    }
}
