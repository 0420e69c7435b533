//! The proxy-wasm adapter: the only module that makes host calls. It owns the root and
//! HTTP contexts and implements [`Host`] with `proxy_wasm::hostcalls`, whose errors it
//! handles instead of unwrapping (the SDK's trait helpers panic on a host error, and a
//! panic kills the VM for every request on the worker).

use crate::config::Config;
use crate::filter::{Action, Flow, Host, Level, Shared};
use crate::keystone::MAX_RESPONSE_BYTES;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{self, BufferType, ContextType, LogLevel, MapType};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { shared: None }) });
}}

struct Root {
    shared: Option<Rc<Shared>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(config) => {
                log(LogLevel::Info, &format!(
                    "keystone-prom-wasm configured: keystone {} via {}, label {}",
                    config.keystone.url, config.keystone.upstream, config.project_label
                ));
                self.shared = Some(Rc::new(Shared::new(config)));
                true
            }
            Err(e) => {
                log(LogLevel::Critical, &format!("keystone-prom-wasm: invalid configuration: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Http { flow: Flow::new(shared) }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    flow: Flow,
}

fn action(a: Action) -> types::Action {
    match a {
        Action::Continue => types::Action::Continue,
        Action::Pause => types::Action::Pause,
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token_id: u32, _headers: usize, body_size: usize, _trailers: usize) {
        let header = |n: &str| hostcalls::get_map_value(MapType::HttpCallResponseHeaders, n).ok().flatten();
        let status = header(":status").and_then(|s| s.parse::<u16>().ok());
        let dispatch_status = header(":dispatch_status");
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size.min(MAX_RESPONSE_BYTES + 1))
            .ok()
            .flatten()
            .unwrap_or_default();
        self.flow.on_callout(&mut Adapter, token_id, status, dispatch_status.as_deref(), &body);
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> types::Action {
        action(self.flow.on_request_headers(&mut Adapter))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> types::Action {
        action(self.flow.on_request_body(&mut Adapter, body_size, end_of_stream))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> types::Action {
        action(self.flow.on_response_headers(&mut Adapter))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> types::Action {
        action(self.flow.on_response_body(&mut Adapter, body_size, end_of_stream))
    }
}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

/// [`Host`] over the current context's host calls.
struct Adapter;

impl Host for Adapter {
    fn request_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name).ok().flatten()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten()
    }

    fn set_request_body(&mut self, size: usize, body: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, body);
    }

    fn response_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpResponseHeaders, name).ok().flatten()
    }

    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value);
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size).ok().flatten()
    }

    fn set_response_body(&mut self, size: usize, body: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, body);
    }

    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(status, headers.to_vec(), Some(body));
    }

    fn dispatch(&mut self, upstream: &str, headers: &[(&str, &str)], timeout_ms: u64) -> Result<u32, String> {
        hostcalls::dispatch_http_call(upstream, headers.to_vec(), None, vec![], Duration::from_millis(timeout_ms))
            .map_err(|s| format!("{s:?}"))
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }

    fn now(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs())
    }

    fn resume(&mut self) {
        let _ = hostcalls::resume_http_request();
    }

    fn log(&self, level: Level, msg: &str) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
        };
        log(level, msg);
    }
}
