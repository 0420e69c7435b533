//! keystone-prom-wasm: OpenStack Keystone multi-tenancy for Prometheus, as a proxy-wasm filter.
//!
//! Everything but [`host`] is plain Rust with no proxy-wasm calls, so it is tested natively.

pub mod cache;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod error;
pub mod filter;
pub mod form;
pub mod header_names;
pub mod headers;
pub mod keystone;
pub mod local_cache;
pub mod metrics;
#[cfg(test)]
pub mod mock_host;
pub mod policy;
pub mod promql;
pub mod regex_mask;
pub mod request;
pub mod response;
pub mod rewrite_cache;
pub mod routes;
pub mod scope;

// The proxy-wasm host exists only in the wasi build; wasm32-unknown-unknown runs the core tests.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod host;
