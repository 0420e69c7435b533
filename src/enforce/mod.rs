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

/// One endpoint kind.
pub trait Enforcer: Sync {
    /// The methods it accepts, as an `Allow` header (others get 405).
    fn methods(&self) -> &'static str;
    /// Appends the enforced query string `raw` to `out` (which holds the path and its `?`),
    /// and says how many selecting parameters it holds; `None` when the request line is
    /// not this kind's to change (it goes as it came). `body_announced`: a body with its
    /// own parameters follows for sure (else the query string must be safe without one).
    fn query(
        &self,
        rw: &mut Rewriter,
        out: &mut String,
        raw: &str,
        body_announced: bool,
    ) -> Result<Option<usize>, ApiError>;
    /// The whole request body, enforced; `url_params`: what `query` counted.
    fn body(&self, cx: BodyContext, body: &[u8], url_params: usize) -> Result<Forward, ApiError>;
    /// Checks the headers of a body it will read (its type, its encoding).
    fn check_body(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Result<(), ApiError>;
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
}
