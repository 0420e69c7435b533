//! Which Prometheus endpoints a request may reach, and how each is enforced.
//! Paths are matched exactly: anything not listed is denied.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Needs a credential; these parameters carry PromQL that gets the tenant matcher.
    Enforced(Endpoint),
    /// Health and version endpoints: no tenant data, no credential needed.
    Open,
    Denied,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Query,
    QueryRange,
}

impl Endpoint {
    /// The parameters whose values are PromQL expressions.
    pub fn promql_params(self) -> &'static [&'static str] {
        match self {
            Endpoint::Query | Endpoint::QueryRange => &["query"],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodCheck {
    Allowed,
    /// Refused with 405 and this `Allow` value.
    NotAllowed(&'static str),
}

/// Splits `:path` into path and query (without the `?`).
pub fn split_path(full: &str) -> (&str, &str) {
    full.split_once('?').unwrap_or((full, ""))
}

pub fn classify(path: &str) -> Route {
    match path {
        "/api/v1/query" => Route::Enforced(Endpoint::Query),
        "/api/v1/query_range" => Route::Enforced(Endpoint::QueryRange),
        "/-/healthy" | "/-/ready" | "/api/v1/status/buildinfo" => Route::Open,
        _ => Route::Denied,
    }
}

pub fn check_method(route: Route, method: &str) -> MethodCheck {
    match (route, method) {
        (Route::Enforced(_), "GET" | "POST") => MethodCheck::Allowed,
        (Route::Enforced(_), _) => MethodCheck::NotAllowed("GET, POST"),
        (Route::Open, "GET" | "HEAD") => MethodCheck::Allowed,
        (Route::Open, _) => MethodCheck::NotAllowed("GET, HEAD"),
        (Route::Denied, _) => MethodCheck::Allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases = [
            ("/api/v1/query", Route::Enforced(Endpoint::Query)),
            ("/api/v1/query_range", Route::Enforced(Endpoint::QueryRange)),
            ("/-/healthy", Route::Open),
            ("/-/ready", Route::Open),
            ("/api/v1/status/buildinfo", Route::Open),
            ("/api/v1/status/config", Route::Denied),
            ("/api/v1/admin/tsdb/snapshot", Route::Denied),
            ("/federate", Route::Denied),
            ("/metrics", Route::Denied),
            ("//api/v1/query", Route::Denied),
            ("/api/v1/query/", Route::Denied),
            ("/api/v1/%71uery", Route::Denied),
            ("/api/v1/../v1/query", Route::Denied),
            ("", Route::Denied),
        ];
        for (path, want) in cases {
            assert_eq!(classify(path), want, "{path}");
        }
    }

    #[test]
    fn methods() {
        let q = Route::Enforced(Endpoint::Query);
        assert_eq!(check_method(q, "GET"), MethodCheck::Allowed);
        assert_eq!(check_method(q, "POST"), MethodCheck::Allowed);
        assert_eq!(check_method(q, "PUT"), MethodCheck::NotAllowed("GET, POST"));
        assert_eq!(check_method(Route::Open, "DELETE"), MethodCheck::NotAllowed("GET, HEAD"));
    }

    #[test]
    fn split() {
        assert_eq!(split_path("/a?b=c?d"), ("/a", "b=c?d"));
        assert_eq!(split_path("/a"), ("/a", ""));
    }
}
