//! The host: what the request flow asks of the proxy it runs in ([`Host`]), implemented by
//! the proxy-wasm adapter (`proxy_wasm`, the only module that makes proxy-wasm calls) and, in
//! the unit tests, by a mock of each host's behaviour (`mock`).

pub use crate::auth::Wake;
use crate::metrics::Metric;
use crate::request::headers::Headers;

pub mod ids;
#[cfg(test)]
pub mod mock;
// The proxy-wasm host exists only in the wasi build; wasm32-unknown-unknown runs the core tests.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod proxy_wasm;

/// What the filter asks of its host. The proxy-wasm adapter implements it with host calls.
pub trait Host {
    /// Every request header (one host call: far cheaper than one per name).
    fn request_headers(&self) -> Option<Headers>;
    /// Sets a request header, or removes it with `None`.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    fn set_request_body(&mut self, size: usize, body: &[u8]);
    fn response_header(&self, name: &str) -> Option<String>;
    fn set_response_header(&mut self, name: &str, value: Option<&str>);
    fn response_body(&self, size: usize) -> Option<Vec<u8>>;
    fn set_response_body(&mut self, size: usize, body: &[u8]);
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Starts an HTTP callout; the answer comes back through [`Flow::on_callout`] of the
    /// flow that started it.
    fn dispatch(
        &mut self,
        upstream: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, String>;
    /// The value and CAS token of a shared-data key.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Stores a shared-data key; false on a CAS mismatch or error.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
    /// Unix milliseconds.
    fn now_ms(&self) -> u64;
    /// Unix seconds, for expiry checks: a host may answer from a clock it refreshes now and
    /// then (a second's resolution needs no host call per request).
    fn now_s(&self) -> u64 {
        self.now_ms() / 1000
    }
    fn resume(&mut self);
    /// The host can run a callback as another request's context (`set_effective_context`).
    /// Only then may a request wait for another request's Keystone exchange: NGINX's
    /// ngx_wasm_module accepts the call and does nothing, so a waiter would never be woken.
    fn switches_context(&self) -> bool;
    /// Runs [`Flow::on_wake`] of each waiting request (other HTTP contexts of this worker).
    fn wake(&mut self, contexts: &[u32], wake: &Wake);
    fn count(&mut self, metric: Metric);
    fn record(&mut self, metric: Metric, value: u64);
    fn log(&self, level: Level, msg: &str);
    /// Whether the host writes lines of `level` now: a line it would drop is not even
    /// formatted (see `Flow::log_allowed`).
    fn logs(&self, level: Level) -> bool;
    /// Names the admitted request's tenant and user where the host's access log can print
    /// them (Envoy: the filter state `wasm.kpw_tenant` and `wasm.kpw_user`). Best effort: a
    /// host that refuses the properties changes nothing for the request.
    fn set_audit(&mut self, tenant: &str, user: &str);
}

/// Log levels, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

/// How a callout ended, as the adapter read it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CalloutAnswer {
    pub status: Option<u16>,
    pub dispatch_status: Option<String>,
    /// `X-Subject-Token` of a token request's answer.
    pub subject_token: Option<String>,
    pub body: Vec<u8>,
}
