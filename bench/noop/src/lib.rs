//! No-op proxy-wasm HTTP filter: reads `:path` and `x-auth-token`, removes the token
//! header, and lets the request continue. What any Wasm filter costs at the least.
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
}}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path");
        if self.get_http_request_header("x-auth-token").is_some() {
            self.set_http_request_header("x-auth-token", None);
        }
        drop(path);
        Action::Continue
    }
}
