//! The routes table: which Prometheus endpoints a request may reach, and the endpoint kind
//! ([`Enforcer`]) that enforces each. Paths are matched exactly (after the configured
//! prefix): anything not listed is denied. The write paths are the operator's (`write.paths`,
//! only while `write.enabled`); remote read, metadata and the Alertmanager API (under its own
//! prefix) are there only once the configuration turns them on.

use crate::config::Config;
use crate::enforce::alertmanager::{self, AmAlerts, AmSilence, AmSilences};
use crate::enforce::answers::{self, Filtered};
use crate::enforce::metadata::Metadata;
use crate::enforce::params::PromqlParams;
use crate::enforce::read::RemoteRead;
use crate::enforce::write::RemoteWrite;
use crate::enforce::Enforcer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Needs a credential; the endpoint's PromQL parameters get the tenant matcher.
    Enforced(Endpoint),
    /// Health and version endpoints: no tenant data, no credential needed.
    Open,
    /// Needs a credential, forwarded unchanged: PromQL tools that read no data, and the
    /// operator's `unsafe_passthrough` list.
    Authenticated,
    Denied,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Query,
    QueryRange,
    QueryExemplars,
    Series,
    Labels,
    LabelValues,
    Federate,
    /// The response is filtered down to the tenant's rules.
    Rules,
    /// The response is filtered down to the tenant's alerts.
    Alerts,
    /// Remote write: every series of the body gets the writer's tenant label.
    Write,
    /// Remote read: every query of the body gets the tenant matcher.
    Read,
    /// Metric metadata, filtered to the tenant's metric names.
    Metadata,
    /// Alertmanager's alerts and alert groups: the tenant's `filter` is added.
    AmAlerts,
    /// Alertmanager's silences: listed filtered, created with the tenant's matcher.
    AmSilences,
    /// One Alertmanager silence: shown or deleted only when it is the tenant's.
    AmSilence,
}

/// How an endpoint's request parameters are enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Params {
    /// `query` is a PromQL expression.
    Query,
    /// Every `match[]` is a series selector; with none, the tenant's own selector is added.
    Match,
    /// Nothing in the request selects data; the response is filtered instead.
    ResponseFiltered,
    /// The body is the data (remote write); the query string selects nothing.
    Body,
}

impl Endpoint {
    /// Prometheus names the parameter in the errors of `/query` and `/series`
    /// (`invalid parameter "query": 1:5: parse error: …`), not in those of the others.
    pub fn names_parameter_in_errors(self) -> bool {
        matches!(self, Endpoint::Query | Endpoint::Series)
    }

    pub fn params(self) -> Params {
        match self {
            Endpoint::Query | Endpoint::QueryRange | Endpoint::QueryExemplars => Params::Query,
            Endpoint::Series | Endpoint::Labels | Endpoint::LabelValues | Endpoint::Federate => {
                Params::Match
            }
            Endpoint::Rules | Endpoint::Alerts => Params::ResponseFiltered,
            Endpoint::Write | Endpoint::Read => Params::Body,
            Endpoint::Metadata
            | Endpoint::AmAlerts
            | Endpoint::AmSilences
            | Endpoint::AmSilence => Params::ResponseFiltered,
        }
    }

    /// The endpoint kind that enforces it.
    pub fn enforcer(self) -> &'static dyn Enforcer {
        static QUERY_NAMED: PromqlParams = PromqlParams::new("GET, POST", Params::Query, true);
        static QUERY: PromqlParams = PromqlParams::new("GET, POST", Params::Query, false);
        static SELECT_NAMED: PromqlParams = PromqlParams::new("GET, POST", Params::Match, true);
        static SELECT: PromqlParams = PromqlParams::new("GET, POST", Params::Match, false);
        static SELECT_GET: PromqlParams = PromqlParams::new("GET", Params::Match, false);
        static RULES: Filtered = Filtered(answers::Kind::Rules);
        static ALERTS: Filtered = Filtered(answers::Kind::Alerts);
        static WRITE: RemoteWrite = RemoteWrite;
        static READ: RemoteRead = RemoteRead;
        static METADATA: Metadata = Metadata;
        static AM_ALERTS: AmAlerts = AmAlerts;
        static AM_SILENCES: AmSilences = AmSilences;
        static AM_SILENCE: AmSilence = AmSilence;
        match self {
            Endpoint::Query => &QUERY_NAMED,
            Endpoint::QueryRange | Endpoint::QueryExemplars => &QUERY,
            Endpoint::Series => &SELECT_NAMED,
            Endpoint::Labels => &SELECT,
            Endpoint::LabelValues | Endpoint::Federate => &SELECT_GET,
            Endpoint::Rules => &RULES,
            Endpoint::Alerts => &ALERTS,
            Endpoint::Write => &WRITE,
            Endpoint::Read => &READ,
            Endpoint::Metadata => &METADATA,
            Endpoint::AmAlerts => &AM_ALERTS,
            Endpoint::AmSilences => &AM_SILENCES,
            Endpoint::AmSilence => &AM_SILENCE,
        }
    }
}

/// Path (after the prefix) to route, like prom-label-proxy's routes: everything else is
/// denied, but `/api/v1/label/<name>/values`.
const ROUTES: &[(&str, Route)] = &[
    ("/api/v1/query", Route::Enforced(Endpoint::Query)),
    ("/api/v1/query_range", Route::Enforced(Endpoint::QueryRange)),
    (
        "/api/v1/query_exemplars",
        Route::Enforced(Endpoint::QueryExemplars),
    ),
    ("/api/v1/series", Route::Enforced(Endpoint::Series)),
    ("/api/v1/labels", Route::Enforced(Endpoint::Labels)),
    ("/federate", Route::Enforced(Endpoint::Federate)),
    ("/api/v1/rules", Route::Enforced(Endpoint::Rules)),
    ("/api/v1/alerts", Route::Enforced(Endpoint::Alerts)),
    // PromQL tools that read no data.
    ("/api/v1/format_query", Route::Authenticated),
    ("/api/v1/parse_query", Route::Authenticated),
    // No tenant data, no credential needed.
    ("/-/healthy", Route::Open),
    ("/-/ready", Route::Open),
    ("/api/v1/status/buildinfo", Route::Open),
];

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

/// What the configuration puts in the routes table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Paths<'a> {
    /// Where Prometheus' API is mounted (`""` or e.g. `/prometheus`).
    pub prefix: &'a str,
    /// Extra paths (after the prefix) forwarded without enforcement.
    pub passthrough: &'a [String],
    /// The remote write paths (none while writing is off).
    pub writes: &'a [String],
    /// `/api/v1/read` is enforced (else denied).
    pub read: bool,
    /// `/api/v1/metadata` is enforced (else denied, or passed through if listed).
    pub metadata: bool,
    /// Where the Alertmanager API is mounted, when it is on.
    pub alertmanager: Option<&'a str>,
}

impl<'a> Paths<'a> {
    pub fn of(cfg: &'a Config) -> Paths<'a> {
        Paths {
            prefix: &cfg.path_prefix,
            passthrough: &cfg.unsafe_passthrough,
            writes: cfg.write.active_paths(),
            read: cfg.read.enabled,
            metadata: cfg.metadata.enabled,
            alertmanager: cfg
                .alertmanager
                .enabled
                .then_some(cfg.alertmanager.path_prefix.as_str()),
        }
    }
}

/// Alertmanager's API v2 (after its prefix): alerts, alert groups and silences; everything
/// else is denied (`/api/v1/*`, `POST` of alerts is a method check, `status` and `receivers`
/// reveal other tenants' routing, `/-/*`).
fn classify_alertmanager(rest: &str) -> Route {
    match rest {
        "/api/v2/alerts" | "/api/v2/alerts/groups" => Route::Enforced(Endpoint::AmAlerts),
        "/api/v2/silences" => Route::Enforced(Endpoint::AmSilences),
        _ if rest
            .strip_prefix("/api/v2/silence/")
            .and_then(alertmanager::silence_id_of_path)
            .is_some() =>
        {
            Route::Enforced(Endpoint::AmSilence)
        }
        _ => Route::Denied,
    }
}

/// Classifies `path` (without its query string). The read endpoints come first.
pub fn classify(path: &str, paths: &Paths) -> Route {
    if let Some(rest) = paths.alertmanager.and_then(|p| path.strip_prefix(p)) {
        if rest.starts_with('/') {
            return classify_alertmanager(rest);
        }
    }
    let Some(rest) = path.strip_prefix(paths.prefix) else {
        return Route::Denied;
    };
    let route = match ROUTES.iter().find(|(p, _)| *p == rest) {
        Some((_, route)) => *route,
        None if is_label_values(rest) => Route::Enforced(Endpoint::LabelValues),
        None if paths.writes.iter().any(|p| p == rest) => Route::Enforced(Endpoint::Write),
        None if paths.read && rest == "/api/v1/read" => Route::Enforced(Endpoint::Read),
        None if paths.metadata && rest == "/api/v1/metadata" => Route::Enforced(Endpoint::Metadata),
        None => Route::Denied,
    };
    let passthrough = paths.passthrough;
    if route == Route::Denied && passthrough.iter().any(|p| p == rest) {
        return Route::Authenticated;
    }
    route
}

/// `/api/v1/label/<name>/values` with one non-empty path segment as the name.
fn is_label_values(path: &str) -> bool {
    path.strip_prefix("/api/v1/label/")
        .and_then(|r| r.strip_suffix("/values"))
        .is_some_and(|name| !name.is_empty() && !name.contains('/'))
}

/// Whether `method` may reach `route` (405 with `Allow` otherwise). Alertmanager's
/// `POST /api/v2/alerts` is refused here: tenants read alerts, Prometheus sends them.
pub fn check_method(route: Route, method: &str) -> MethodCheck {
    let allow = match route {
        Route::Enforced(ep) => ep.enforcer().methods(),
        Route::Open => "GET, HEAD",
        Route::Authenticated | Route::Denied => return MethodCheck::Allowed,
    };
    if allow.split(", ").any(|m| m == method) {
        MethodCheck::Allowed
    } else {
        MethodCheck::NotAllowed(allow)
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
            (
                "/api/v1/query_exemplars",
                Route::Enforced(Endpoint::QueryExemplars),
            ),
            ("/api/v1/series", Route::Enforced(Endpoint::Series)),
            ("/api/v1/labels", Route::Enforced(Endpoint::Labels)),
            (
                "/api/v1/label/job/values",
                Route::Enforced(Endpoint::LabelValues),
            ),
            (
                "/api/v1/label/__name__/values",
                Route::Enforced(Endpoint::LabelValues),
            ),
            ("/federate", Route::Enforced(Endpoint::Federate)),
            ("/api/v1/rules", Route::Enforced(Endpoint::Rules)),
            ("/api/v1/alerts", Route::Enforced(Endpoint::Alerts)),
            ("/api/v1/format_query", Route::Authenticated),
            ("/api/v1/parse_query", Route::Authenticated),
            ("/-/healthy", Route::Open),
            ("/-/ready", Route::Open),
            ("/api/v1/status/buildinfo", Route::Open),
            ("/api/v1/status/config", Route::Denied),
            ("/api/v1/status/flags", Route::Denied),
            ("/api/v1/status/tsdb", Route::Denied),
            ("/api/v1/admin/tsdb/snapshot", Route::Denied),
            ("/api/v1/admin/tsdb/delete_series", Route::Denied),
            ("/api/v1/targets", Route::Denied),
            ("/api/v1/targets/metadata", Route::Denied),
            ("/api/v1/alertmanagers", Route::Denied),
            ("/api/v1/metadata", Route::Denied),
            ("/api/v1/read", Route::Denied),
            ("/api/v1/write", Route::Denied),
            ("/api/v1/otlp/v1/metrics", Route::Denied),
            ("/-/reload", Route::Denied),
            ("/-/quit", Route::Denied),
            ("/metrics", Route::Denied),
            ("/debug/pprof/heap", Route::Denied),
            ("/graph", Route::Denied),
            ("//api/v1/query", Route::Denied),
            ("/api/v1/query/", Route::Denied),
            ("/api/v1/%71uery", Route::Denied),
            ("/api/v1/../v1/query", Route::Denied),
            ("/api/v1/label//values", Route::Denied),
            ("/api/v1/label/a/b/values", Route::Denied),
            ("", Route::Denied),
        ];
        for (path, want) in cases {
            assert_eq!(classify(path, &Paths::default()), want, "{path}");
        }
    }

    #[test]
    fn prefix_and_passthrough() {
        let pass = vec!["/api/v1/metadata".to_string()];
        let prom = Paths {
            prefix: "/prometheus",
            passthrough: &pass,
            ..Paths::default()
        };
        let root = Paths {
            passthrough: &pass,
            ..Paths::default()
        };
        assert_eq!(
            classify("/prometheus/api/v1/query", &prom),
            Route::Enforced(Endpoint::Query)
        );
        assert_eq!(classify("/api/v1/query", &prom), Route::Denied);
        assert_eq!(
            classify("/prometheus/api/v1/metadata", &prom),
            Route::Authenticated
        );
        assert_eq!(classify("/api/v1/metadata", &root), Route::Authenticated);
        // Filtered metadata is an enforced endpoint, which the passthrough list never overrides.
        assert_eq!(
            classify(
                "/api/v1/metadata",
                &Paths {
                    metadata: true,
                    ..root
                }
            ),
            Route::Enforced(Endpoint::Metadata)
        );
        let pass = vec!["/api/v1/query".to_string()];
        assert_eq!(
            classify(
                "/api/v1/query",
                &Paths {
                    passthrough: &pass,
                    ..Paths::default()
                }
            ),
            Route::Enforced(Endpoint::Query)
        );
    }

    #[test]
    fn read_and_alertmanager() {
        let off = Paths::default();
        let on = Paths {
            read: true,
            alertmanager: Some("/alertmanager"),
            ..Paths::default()
        };
        assert_eq!(classify("/api/v1/read", &off), Route::Denied);
        assert_eq!(
            classify("/api/v1/read", &on),
            Route::Enforced(Endpoint::Read)
        );
        assert_eq!(classify("/alertmanager/api/v2/alerts", &off), Route::Denied);
        let id = "/alertmanager/api/v2/silence/0a1b2c3d-0000-4000-8000-000000000000";
        for (path, want) in [
            (
                "/alertmanager/api/v2/alerts",
                Route::Enforced(Endpoint::AmAlerts),
            ),
            (
                "/alertmanager/api/v2/alerts/groups",
                Route::Enforced(Endpoint::AmAlerts),
            ),
            (
                "/alertmanager/api/v2/silences",
                Route::Enforced(Endpoint::AmSilences),
            ),
            (id, Route::Enforced(Endpoint::AmSilence)),
            ("/alertmanager/api/v2/silence/", Route::Denied),
            ("/alertmanager/api/v2/silence/a/b", Route::Denied),
            ("/alertmanager/api/v2/status", Route::Denied),
            ("/alertmanager/api/v2/receivers", Route::Denied),
            ("/alertmanager/api/v1/alerts", Route::Denied),
            ("/alertmanager/api/v1/silences", Route::Denied),
            ("/alertmanager/-/reload", Route::Denied),
            ("/alertmanager/-/healthy", Route::Denied),
            ("/alertmanager", Route::Denied),
            ("/alertmanagerx/api/v2/alerts", Route::Denied),
            // Prometheus' API stays where it is.
            ("/api/v1/query", Route::Enforced(Endpoint::Query)),
        ] {
            assert_eq!(classify(path, &on), want, "{path}");
        }
        assert_eq!(
            check_method(Route::Enforced(Endpoint::AmAlerts), "POST"),
            MethodCheck::NotAllowed("GET")
        );
        assert_eq!(
            check_method(Route::Enforced(Endpoint::AmSilences), "POST"),
            MethodCheck::Allowed
        );
        assert_eq!(
            check_method(Route::Enforced(Endpoint::AmSilence), "DELETE"),
            MethodCheck::Allowed
        );
        assert_eq!(
            check_method(Route::Enforced(Endpoint::AmSilence), "PUT"),
            MethodCheck::NotAllowed("GET, DELETE")
        );
        assert_eq!(
            check_method(Route::Enforced(Endpoint::Read), "GET"),
            MethodCheck::NotAllowed("POST")
        );
    }

    #[test]
    fn write_paths() {
        let writes = vec!["/api/v1/write".to_string(), "/api/v1/receive".to_string()];
        let w = Route::Enforced(Endpoint::Write);
        let on = Paths {
            writes: &writes,
            ..Paths::default()
        };
        assert_eq!(classify("/api/v1/write", &on), w);
        assert_eq!(
            classify(
                "/prom/api/v1/receive",
                &Paths {
                    prefix: "/prom",
                    ..on
                }
            ),
            w
        );
        assert_eq!(
            classify("/api/v1/write", &Paths::default()),
            Route::Denied,
            "writing is off"
        );
        assert_eq!(classify("/api/v1/write/", &on), Route::Denied);
        assert_eq!(classify("/api/v1/push", &on), Route::Denied);
        // A read endpoint stays one.
        let query = vec!["/api/v1/query".to_string()];
        assert_eq!(
            classify(
                "/api/v1/query",
                &Paths {
                    writes: &query,
                    ..on
                }
            ),
            Route::Enforced(Endpoint::Query)
        );
        assert_eq!(check_method(w, "POST"), MethodCheck::Allowed);
        assert_eq!(check_method(w, "GET"), MethodCheck::NotAllowed("POST"));
        assert_eq!(check_method(w, "PUT"), MethodCheck::NotAllowed("POST"));
    }

    #[test]
    fn methods() {
        let q = Route::Enforced(Endpoint::Query);
        assert_eq!(check_method(q, "GET"), MethodCheck::Allowed);
        assert_eq!(check_method(q, "POST"), MethodCheck::Allowed);
        assert_eq!(check_method(q, "PUT"), MethodCheck::NotAllowed("GET, POST"));
        assert_eq!(check_method(q, "get"), MethodCheck::NotAllowed("GET, POST"));
        let fed = Route::Enforced(Endpoint::Federate);
        assert_eq!(check_method(fed, "POST"), MethodCheck::NotAllowed("GET"));
        assert_eq!(
            check_method(Route::Enforced(Endpoint::Rules), "DELETE"),
            MethodCheck::NotAllowed("GET")
        );
        assert_eq!(
            check_method(Route::Open, "DELETE"),
            MethodCheck::NotAllowed("GET, HEAD")
        );
    }

    #[test]
    fn split() {
        assert_eq!(split_path("/a?b=c?d"), ("/a", "b=c?d"));
        assert_eq!(split_path("/a"), ("/a", ""));
    }
}
