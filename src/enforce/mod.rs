//! Enforcement per endpoint kind. The routes table (`routes`) maps each path to an endpoint,
//! and each endpoint to its kind, one module behind the [`Enforcer`] trait: what it enforces
//! in the request line, in the body, and in the answer, and what it must look up upstream
//! first. The kinds are PromQL parameters in the query string and form bodies (`params`),
//! answers filtered down to the tenant's rules and alerts (`answers`), remote write bodies
//! whose series get the tenant label (`write`, over the protobuf of `remote_write`), remote
//! read bodies whose queries get the tenant matcher (`read`, over `remote_read`), metric
//! metadata filtered to the tenant's metric names (`metadata`), and Alertmanager's alerts and
//! silences (`alertmanager`).

pub mod alertmanager;
pub mod answers;
pub mod form;
pub mod metadata;
pub mod params;
pub mod promql;
pub mod protowire;
pub mod read;
pub mod regex_mask;
pub mod remote_read;
pub mod remote_write;
pub mod rewrite_cache;
pub mod routes;
pub mod write;

use crate::config::Config;
use crate::error::ApiError;
use params::Rewriter;
use promql::Tenant;
use rewrite_cache::RewriteCache;

/// What the enforcement of one request's body works with.
pub struct BodyContext<'a> {
    /// The tenant; `None`: an unrestricted scope, or the tenant header does the job.
    pub tenant: Option<&'a Tenant>,
    pub config: &'a Config,
    pub cache: &'a mut RewriteCache,
    /// The request's `Content-Type`.
    pub content_type: Option<&'a str>,
}

/// What goes upstream after a body is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    /// This body replaces the one that came.
    Body(Vec<u8>),
    /// Nothing: the request had nothing to forward (a remote write of metadata the
    /// configuration drops), and the filter answers it as done (204).
    Nothing,
    /// This body, once the lookup allows it (an update of an existing silence).
    After(Vec<u8>, Lookup),
}

/// A request the filter makes upstream before the client's goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The Alertmanager silence with this id: the request goes on only if the silence is the
    /// tenant's (or does not exist, which Alertmanager then answers).
    SilenceOwner(String),
    /// The tenant's metric names, which the metadata answer is filtered down to.
    MetricNames,
}

/// The refusal of a body sent to a kind that reads none.
pub fn takes_no_body() -> ApiError {
    ApiError::bad_data("this endpoint takes no request body")
}

/// The media type of a `Content-Type` header, without its parameters (`""` when missing);
/// compare it case-insensitively.
pub fn media_type(content_type: Option<&str>) -> &str {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
}

/// A `Content-Encoding` that leaves the body as it is: none, empty, or `identity`.
pub fn uncompressed(content_encoding: Option<&str>) -> bool {
    content_encoding
        .is_none_or(|e| e.trim().is_empty() || e.trim().eq_ignore_ascii_case("identity"))
}

/// One endpoint kind.
pub trait Enforcer: Sync {
    /// The methods it accepts, as an `Allow` header (others get 405).
    fn methods(&self) -> &'static str;
    /// Appends the enforced query string `raw` to `out` (which holds the path and its `?`),
    /// and says how many selecting parameters it holds; `None` (the default) when the
    /// request line is not this kind's to change (it goes as it came). `body_announced`: a
    /// body with its own parameters follows for sure (else the query string must be safe
    /// without one).
    fn query(
        &self,
        _rw: &mut Rewriter,
        _out: &mut String,
        _raw: &str,
        _body_announced: bool,
    ) -> Result<Option<usize>, ApiError> {
        Ok(None)
    }
    /// The whole request body, enforced; `url_params`: what `query` counted. By default a
    /// kind takes no body, and one that comes is refused.
    fn body(
        &self,
        _cx: BodyContext,
        _body: &[u8],
        _url_params: usize,
    ) -> Result<Forward, ApiError> {
        Err(takes_no_body())
    }
    /// Checks the headers of a body it will read (its type, its encoding); by default, as
    /// [`Enforcer::body`], there is no body to read.
    fn check_body(
        &self,
        _content_type: Option<&str>,
        _content_encoding: Option<&str>,
    ) -> Result<(), ApiError> {
        Err(takes_no_body())
    }
    /// How its answers to `method` are filtered, if they are.
    fn answer(&self, _method: &str) -> Option<answers::Kind> {
        None
    }
    /// What must be looked up upstream before a `method` request to `path` (without its
    /// query string) goes on, if anything.
    fn lookup(&self, _method: &str, _path: &str) -> Option<Lookup> {
        None
    }
    /// Its bodies are enforced for every scope, an unrestricted one too (else only where
    /// there is a tenant to enforce).
    fn every_scope(&self) -> bool {
        false
    }
    /// A POST must have a body (else one without is forwarded as it is).
    fn needs_body(&self) -> bool {
        false
    }
    /// The largest body it reads (413 above).
    fn max_body_bytes(&self, config: &Config) -> usize {
        config.limits.max_body_bytes
    }
    /// A refusal of one of its requests, as its clients act on it (by default as it is).
    fn refusal(&self, e: ApiError) -> ApiError {
        e
    }
    /// The body of a refusal, in the form its clients read (by default Prometheus' JSON).
    fn refusal_body(&self, e: &ApiError) -> Vec<u8> {
        e.body()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_and_encodings() {
        assert_eq!(
            media_type(Some(" Application/JSON ; charset=utf-8")),
            "Application/JSON"
        );
        assert_eq!(media_type(Some("")), "");
        assert_eq!(media_type(None), "");
        for ok in [
            None,
            Some(""),
            Some(" "),
            Some("identity"),
            Some(" IDENTITY "),
        ] {
            assert!(uncompressed(ok), "{ok:?}");
        }
        for compressed in [
            Some("gzip"),
            Some("snappy"),
            Some("identity, gzip"),
            Some("br"),
        ] {
            assert!(!uncompressed(compressed), "{compressed:?}");
        }
    }

    #[test]
    fn a_kind_without_a_body_refuses_one() {
        // The answer-filtered GET endpoints keep the trait's defaults.
        let kind = answers::Filtered(answers::Kind::Rules);
        let e = kind
            .check_body(Some("application/x-www-form-urlencoded"), None)
            .unwrap_err();
        assert_eq!(e, takes_no_body());
        assert_eq!(e.status, 400);
    }
}
