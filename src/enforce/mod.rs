//! Enforcement per endpoint kind: the routes table, the tenant matcher written into PromQL
//! parameters and form bodies, and the filtering of answers.

pub mod answers;
pub mod form;
pub mod params;
pub mod promql;
pub mod regex_mask;
pub mod rewrite_cache;
pub mod routes;
