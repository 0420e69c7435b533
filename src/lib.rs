//! keystone-prom-wasm: OpenStack Keystone multi-tenancy for Prometheus, as a proxy-wasm filter.
//!
//! A request goes through the steps below, each a module tested natively (README, "Layout"):
//! request (`request`: headers, credentials' headers, body) → credentials and scope (`auth`: this
//! worker's cache, shared data, or Keystone) → policy (`policy`) → enforcement per endpoint kind
//! (`enforce`) → upstream → answer filtering (`enforce::answers`). `flow` runs one request
//! through them against the [`host::Host`] trait; `host::proxy_wasm` is the only module that
//! makes proxy-wasm calls.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod auth;
pub mod clock;
pub mod config;
pub mod enforce;
pub mod error;
pub mod flow;
pub mod host;
pub mod metrics;
pub mod policy;
pub mod request;
