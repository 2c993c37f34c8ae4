//! The HTTP routes, read from the `google.api.http` annotations of the embedded descriptors: one
//! [`Route`] per annotated RPC, matched by method and path. Path templates are literal segments and
//! single-segment variables (`/api/v1/leases/{lease_id}`), the subset the protos use.

use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, Value};

/// One HTTP binding of an RPC.
#[derive(Debug, Clone)]
pub struct Route {
    /// The HTTP method.
    pub method: http::Method,
    /// The path template, as annotated.
    pub template: String,
    /// Where the request's fields come from besides the path: `*` = the JSON body, empty = the query.
    pub body: String,
    /// The RPC.
    pub rpc: MethodDescriptor,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Field(String),
}

impl Route {
    /// The gRPC path of the RPC (`/maestro.v1.ResourceService/GetStatus`).
    pub fn grpc_path(&self) -> String {
        format!("/{}/{}", self.rpc.parent_service().full_name(), self.rpc.name())
    }

    /// Whether the RPC streams its responses.
    pub fn streams(&self) -> bool {
        self.rpc.is_server_streaming()
    }

    /// The path variables' field names, in order.
    pub fn path_fields(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Field(f) => Some(f.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// The variables of `path` when it matches the template.
    fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if parts.len() != self.segments.len() {
            return None;
        }
        let mut vars = Vec::new();
        for (segment, part) in self.segments.iter().zip(parts) {
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::Field(f) if !part.is_empty() => {
                    let value = percent_encoding::percent_decode_str(part).decode_utf8().ok()?;
                    vars.push((f.clone(), value.into_owned()));
                }
                _ => return None,
            }
        }
        Some(vars)
    }
}

/// What a request path resolves to.
#[derive(Debug)]
pub enum Resolved<'a> {
    /// A route, with its path variables.
    Route(&'a Route, Vec<(String, String)>),
    /// The path exists with other methods.
    MethodNotAllowed(Vec<http::Method>),
    /// No route has this path.
    NotFound,
}

/// Every route of the annotated RPCs.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// The routes of every annotated method of every service in `pool`.
    pub fn from_pool(pool: &DescriptorPool) -> Self {
        let Some(http) = pool.get_extension_by_name("google.api.http") else {
            return Self { routes: Vec::new() };
        };
        let mut routes = Vec::new();
        for service in pool.services() {
            for rpc in service.methods() {
                let options = rpc.options();
                if !options.has_extension(&http) {
                    continue;
                }
                if let Value::Message(rule) = options.get_extension(&http).as_ref() {
                    routes.extend(route(rule, &rpc));
                    if let Some(Value::List(more)) = rule.get_field_by_name("additional_bindings").as_deref()
                    {
                        routes.extend(
                            more.iter().filter_map(|v| v.as_message()).filter_map(|r| route(r, &rpc)),
                        );
                    }
                }
            }
        }
        Self { routes }
    }

    /// Every route.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The route for `method` and `path`.
    pub fn resolve(&self, method: &http::Method, path: &str) -> Resolved<'_> {
        let mut allowed = Vec::new();
        for route in &self.routes {
            if let Some(vars) = route.matches(path) {
                if route.method == *method {
                    return Resolved::Route(route, vars);
                }
                allowed.push(route.method.clone());
            }
        }
        if allowed.is_empty() {
            Resolved::NotFound
        } else {
            Resolved::MethodNotAllowed(allowed)
        }
    }
}

/// The route an `HttpRule` declares, if it names a method this router serves.
fn route(rule: &DynamicMessage, rpc: &MethodDescriptor) -> Option<Route> {
    let text = |name: &str| rule.get_field_by_name(name).and_then(|v| v.as_str().map(str::to_owned));
    let (method, template) = [
        (http::Method::GET, "get"),
        (http::Method::POST, "post"),
        (http::Method::PUT, "put"),
        (http::Method::DELETE, "delete"),
        (http::Method::PATCH, "patch"),
    ]
    .into_iter()
    .find_map(|(m, name)| rule.has_field_by_name(name).then(|| (m, text(name).unwrap_or_default())))?;
    let segments = template
        .trim_start_matches('/')
        .split('/')
        .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(field) => Segment::Field(field.to_owned()),
            None => Segment::Literal(s.to_owned()),
        })
        .collect();
    Some(Route { method, template, body: text("body").unwrap_or_default(), rpc: rpc.clone(), segments })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes() -> Routes {
        Routes::from_pool(&super::super::pool())
    }

    #[test]
    fn every_maestro_rpc_has_a_route() {
        let routes = routes();
        let pool = super::super::pool();
        for service in pool.services().filter(|s| s.package_name() == "maestro.v1") {
            for rpc in service.methods() {
                assert!(routes.iter().any(|r| r.rpc == rpc), "{} has no route", rpc.full_name());
            }
        }
    }

    #[test]
    fn the_monitoring_paths_resolve_as_written() {
        let routes = routes();
        for (method, path, rpc) in [
            ("GET", "/api/v1/monitoring/status", "GetStatus"),
            ("GET", "/api/v1/monitoring/report", "GetReport"),
            ("GET", "/api/v1/monitoring/alerts", "ListAlerts"),
            ("GET", "/api/v1/monitoring/history", "GetHistory"),
            ("GET", "/api/v1/monitoring/optimization-suggestions", "GetOptimizationSuggestions"),
            ("POST", "/api/v1/monitoring/cleanup", "Cleanup"),
        ] {
            match routes.resolve(&method.parse().unwrap(), path) {
                Resolved::Route(route, vars) => {
                    assert_eq!(route.rpc.name(), rpc);
                    assert!(vars.is_empty());
                }
                other => panic!("{method} {path}: {other:?}"),
            }
        }
        let Resolved::Route(release, vars) =
            routes.resolve(&http::Method::DELETE, "/api/v1/leases/lease-1-ab%2Fc")
        else {
            panic!("release")
        };
        assert_eq!((release.rpc.name(), vars), ("Release", vec![("lease_id".into(), "lease-1-ab/c".into())]));
        assert!(
            matches!(routes.resolve(&http::Method::GET, "/api/v1/monitoring/cleanup"), Resolved::MethodNotAllowed(m) if m == [http::Method::POST])
        );
        assert!(matches!(routes.resolve(&http::Method::GET, "/api/v1/nothing"), Resolved::NotFound));
        assert!(matches!(routes.resolve(&http::Method::DELETE, "/api/v1/leases/"), Resolved::NotFound));
    }
}
