//! Enforcement per endpoint kind. The routes table (`routes`) maps each path to an endpoint,
//! and each endpoint to its kind, one module behind the [`Enforcer`] trait: what it enforces
//! in the request line, in the body, and in the answer. Today's kinds are PromQL parameters
//! in the query string and form bodies (`params`), and answers filtered down to the tenant's
//! rules and alerts (`answers`).

pub mod answers;
pub mod form;
pub mod params;
pub mod promql;
pub mod regex_mask;
pub mod remote_write;
pub mod rewrite_cache;
pub mod routes;

use crate::error::ApiError;
use params::Rewriter;

/// One endpoint kind.
pub trait Enforcer: Sync {
    /// The methods it accepts, as an `Allow` header (others get 405).
    fn methods(&self) -> &'static str;
    /// Appends the enforced query string `raw` to `out` (which holds the path and its `?`),
    /// and says how many selecting parameters it holds; `None` when the request line is
    /// not this kind's to change (it goes as it came). `body_announced`: a body with its
    /// own parameters follows for sure (else the query string must be safe without one).
    fn query(&self, rw: &mut Rewriter, out: &mut String, raw: &str, body_announced: bool) -> Result<Option<usize>, ApiError>;
    /// The whole request body, enforced; `url_params`: what `query` counted.
    fn body(&self, rw: &mut Rewriter, body: &[u8], url_params: usize) -> Result<Vec<u8>, ApiError>;
    /// Checks the headers of a body it will read (its type, its encoding).
    fn check_body(&self, content_type: Option<&str>, content_encoding: Option<&str>) -> Result<(), ApiError>;
    /// How its answers are filtered, if they are.
    fn answer(&self) -> Option<answers::Kind> {
        None
    }
}
