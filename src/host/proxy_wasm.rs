//! The proxy-wasm adapter: the only module that makes host calls. It owns the root and
//! HTTP contexts and implements [`Host`] with `proxy_wasm::hostcalls`, whose errors it
//! handles instead of unwrapping (the SDK's trait helpers panic on a host error, and a
//! panic kills the VM for every request on the worker).
//!
//! Requests of one worker wait for each other's Keystone exchange (see `filter`), so the
//! adapter keeps a registry of this worker's flows: a callout's answer goes to the flow
//! that dispatched it, and a finished exchange wakes the flows that wait for it, each
//! run as its own context (`set_effective_context`). A host that can't switch contexts
//! (NGINX's ngx_wasm_module answers the call and does nothing) is found out when the
//! filter is configured: there no request waits for another (`Host::switches_context`).

use crate::auth::keystone::MAX_RESPONSE_BYTES;
use crate::clock::TickClock;
use crate::config::Config;
use crate::flow::{Flow, Shared};
use crate::host::ids::ById;
use crate::host::{Action, CalloutAnswer, Host, Level, Wake};
use crate::metrics::{self, Metric};
use crate::request::headers::Headers;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{self, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, UNIX_EPOCH};

// talc instead of the default dlmalloc: the request path allocates small strings all the
// time, and talc's wasm allocator is markedly faster at that (see docs/benchmark.md).
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root { id, shared: None }) });
}}

thread_local! {
    /// This worker's live flows, by context id.
    static FLOWS: RefCell<HashMap<u32, Weak<RefCell<Flow>>, ById>> = RefCell::new(HashMap::default());
    /// Which context dispatched each callout (the SDK routes answers to the context whose
    /// callback was running, which is not the waiter that dispatched after a wake-up).
    static CALLOUTS: RefCell<HashMap<u32, u32, ById>> = RefCell::new(HashMap::default());
    /// The host's metric ids, by `Metric::index`.
    static METRICS: RefCell<[Option<u32>; Metric::ALL.len()]> = const { RefCell::new([None; Metric::ALL.len()]) };
    /// Counter increments not yet handed to the host: flushed on the root's tick, so a
    /// request makes no metric host calls.
    static COUNTS: RefCell<[i64; Metric::ALL.len()]> = const { RefCell::new([0; Metric::ALL.len()]) };
    /// Wake-ups that may dispatch a callout, run from the root's next tick (see `wake`).
    static DEFERRED: RefCell<Vec<(u32, Wake)>> = const { RefCell::new(Vec::new()) };
    /// The time for expiry checks, refreshed on the root's ticks.
    static CLOCK: Cell<TickClock> = Cell::new(TickClock::default());
    /// The host runs a callback as another context when asked (see `probe_context_switching`).
    static SWITCHES: Cell<bool> = const { Cell::new(false) };
    /// The host's log level (proxy-wasm's numbers: 0 trace … 5 critical), refreshed on the
    /// root's ticks; 0 (everything) until the host has said otherwise.
    static LOG_LEVEL: Cell<u32> = const { Cell::new(0) };
}

/// Reads the host's current log level into `LOG_LEVEL`: one host call per tick, so that a
/// request asks no host call to know whether a line would be written. Envoy answers with its
/// `wasm` logger's level (`--component-log-level wasm:warning`, or the admin's `/logging`);
/// ngx_wasm_module's call does nothing, and then every line is handed over (NGINX filters
/// by its `error_log` level). A host that fails the call leaves the level as it was.
fn refresh_log_level() {
    let mut level: u32 = 0;
    // SAFETY: a plain host call writing one u32 where the pointer says.
    if unsafe { proxy_get_log_level(&mut level) } == 0 {
        LOG_LEVEL.with(|l| l.set(level));
    }
}

/// Sets one property of the current request (`path` of one segment). The SDK's
/// `set_property` allocates the path and panics on any status but OK, and a host may refuse
/// a key it does not know (ngx_wasm_module): the status is ignored.
fn set_property(path: &[u8], value: &[u8]) {
    // SAFETY: a plain host call reading the two slices, of their own lengths.
    let _ = unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) };
}

/// Whether `set_effective_context` really switches: a host that does looks the context up
/// and refuses one that does not exist (Envoy: `BadArgument`); ngx_wasm_module 0.6.0
/// answers OK to any id and switches nothing. Until this has said yes, no request waits
/// for another, so a host that can't switch never strands one.
fn probe_context_switching(own: u32) -> bool {
    let switches = hostcalls::set_effective_context(u32::MAX).is_err();
    let _ = hostcalls::set_effective_context(own);
    switches
}

fn tick_clock(now_ms: u64) {
    CLOCK.with(|c| {
        let mut clock = c.get();
        clock.tick(now_ms);
        c.set(clock);
    });
}

fn host_now_ms() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How often the root runs deferred wake-ups and flushes counters.
const TICK: Duration = Duration::from_millis(20);

struct Root {
    id: u32,
    shared: Option<Rc<Shared>>,
}

impl Context for Root {
    /// Answers to callouts dispatched from the root's tick, for the flow that wanted them.
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let answer = read_answer(body_size);
        if let Some(target) = CALLOUTS.with(|c| c.borrow_mut().remove(&token_id)) {
            as_context(self.id, target, |flow, host| {
                flow.on_callout(host, token_id, &answer)
            });
        }
    }
}

fn define_metrics() {
    METRICS.with(|m| {
        let mut m = m.borrow_mut();
        for metric in Metric::ALL {
            if m[metric.index()].is_some() {
                continue;
            }
            let kind = match metric.kind() {
                metrics::Kind::Counter => MetricType::Counter,
                metrics::Kind::Histogram => MetricType::Histogram,
            };
            m[metric.index()] = hostcalls::define_metric(kind, metric.name()).ok();
        }
    });
}

fn metric_id(metric: Metric) -> Option<u32> {
    METRICS.with(|m| m.borrow()[metric.index()])
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        match Config::from_json(&bytes) {
            Ok(config) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "keystone-prom-wasm configured: keystone {} via {}, label {}",
                        config.keystone.url, config.keystone.upstream, config.project_label
                    ),
                );
                define_metrics();
                refresh_log_level();
                let switches = probe_context_switching(self.id);
                SWITCHES.with(|s| s.set(switches));
                if !switches {
                    log(LogLevel::Info, "keystone-prom-wasm: this host does not switch contexts: requests with the same new credential each ask Keystone");
                }
                self.shared = Some(Rc::new(Shared::new(config)));
                if hostcalls::set_tick_period(TICK).is_ok() {
                    tick_clock(host_now_ms());
                }
                true
            }
            Err(e) => {
                log(
                    LogLevel::Critical,
                    &format!("keystone-prom-wasm: invalid configuration: {e}"),
                );
                false
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a configuration the SDK would panic on `None`: refuse every request instead.
        let Some(shared) = self.shared.clone() else {
            return Some(Box::new(Unconfigured));
        };
        let flow = Rc::new(RefCell::new(Flow::new(shared, context_id)));
        Some(Box::new(Http {
            id: context_id,
            flow,
            registered: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    /// A callout dispatched here is the root's in the SDK's books, and the root outlives
    /// every request: the answer always finds its way (see `on_http_call_response`).
    fn on_tick(&mut self) {
        tick_clock(host_now_ms());
        refresh_log_level();
        flush_counts();
        let pending = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
        for (target, wake) in pending {
            as_context(self.id, target, |flow, host| flow.on_wake(host, &wake));
        }
    }
}

fn flush_counts() {
    let counts = COUNTS.with(|c| std::mem::take(&mut *c.borrow_mut()));
    for (metric, n) in Metric::ALL.iter().zip(counts) {
        if let (Some(id), true) = (metric_id(*metric), n != 0) {
            let _ = hostcalls::increment_metric(id, n);
        }
    }
}

/// One header value, whatever its bytes (the SDK's `get_map_value` panics on a value that
/// is not UTF-8; bytes that are not are replaced, so the value reads as no known one).
fn header_value(map: MapType, name: &str) -> Option<String> {
    let bytes = hostcalls::get_map_value_bytes(map, name).ok().flatten()?;
    Some(
        String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
    )
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
}

/// The request headers as the host serialized them, read in place by [`Headers`] (the
/// SDK's `get_map` copies every name and value, and panics on a value that is not UTF-8).
fn request_headers() -> Option<Headers> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: a plain host call; on success the host has written a pointer and a size.
    let status = unsafe {
        proxy_get_header_map_pairs(MapType::HttpRequestHeaders as u32, &mut data, &mut size)
    };
    if status != 0 {
        return None;
    }
    if data.is_null() {
        return Headers::from_serialized(Vec::new());
    }
    // SAFETY: the host allocated the buffer through this module's `proxy_on_memory_allocate`
    // (the SDK's: a boxed `[u8]` of exactly `size` bytes), and hands it over; the SDK's own
    // `get_map` takes it the same way.
    let raw = unsafe { Vec::from_raw_parts(data, size, size) };
    Headers::from_serialized(raw)
}

fn read_answer(body_size: usize) -> CalloutAnswer {
    let header = |n: &str| header_value(MapType::HttpCallResponseHeaders, n);
    CalloutAnswer {
        status: header(":status").and_then(|s| s.parse::<u16>().ok()),
        dispatch_status: header(":dispatch_status"),
        subject_token: header("x-subject-token"),
        body: hostcalls::get_buffer(
            BufferType::HttpCallResponseBody,
            0,
            body_size.min(MAX_RESPONSE_BYTES + 1),
        )
        .ok()
        .flatten()
        .unwrap_or_default(),
    }
}

struct Http {
    id: u32,
    flow: Rc<RefCell<Flow>>,
    /// In `FLOWS`: only a paused request can be woken or wait for a callout, so one that
    /// goes straight through (the cached case) never touches the registry.
    registered: bool,
}

impl Drop for Http {
    fn drop(&mut self) {
        if self.registered {
            FLOWS.with(|f| f.borrow_mut().remove(&self.id));
        }
    }
}

fn action(a: Action) -> types::Action {
    match a {
        Action::Continue => types::Action::Continue,
        Action::Pause => types::Action::Pause,
    }
}

/// Runs `f` on another context's flow, as that context.
fn as_context(own: u32, target: u32, f: impl FnOnce(&mut Flow, &mut Adapter)) {
    let Some(flow) = FLOWS.with(|flows| flows.borrow().get(&target).and_then(Weak::upgrade)) else {
        return; // that request is gone
    };
    let Ok(mut flow) = flow.try_borrow_mut() else {
        return;
    };
    if hostcalls::set_effective_context(target).is_ok() {
        f(&mut flow, &mut Adapter { context: target });
    }
    let _ = hostcalls::set_effective_context(own);
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        let answer = read_answer(body_size);
        let target = CALLOUTS
            .with(|c| c.borrow_mut().remove(&token_id))
            .unwrap_or(self.id);
        if target == self.id {
            if let Ok(mut flow) = self.flow.try_borrow_mut() {
                flow.on_callout(&mut Adapter { context: self.id }, token_id, &answer);
            }
        } else {
            as_context(self.id, target, |flow, host| {
                flow.on_callout(host, token_id, &answer)
            });
        }
    }

    fn on_done(&mut self) -> bool {
        if let Ok(mut flow) = self.flow.try_borrow_mut() {
            // A client that leaves while Keystone is asked: its callout is cancelled and no
            // answer will take its entry out, so this does (else the map grows without bound).
            if let Some(token) = flow.pending_callout() {
                CALLOUTS.with(|c| c.borrow_mut().remove(&token));
            }
            flow.on_done(&mut Adapter { context: self.id });
        }
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(
        &mut self,
        _num_headers: usize,
        end_of_stream: bool,
    ) -> types::Action {
        self.with_flow(|f, h| f.on_request_headers(h, end_of_stream))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> types::Action {
        self.with_flow(|f, h| f.on_request_body(h, body_size, end_of_stream))
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> types::Action {
        self.with_flow(|f, h| f.on_request_trailers(h))
    }

    fn on_http_response_headers(
        &mut self,
        _num_headers: usize,
        _end_of_stream: bool,
    ) -> types::Action {
        self.with_flow(|f, h| f.on_response_headers(h))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> types::Action {
        self.with_flow(|f, h| f.on_response_body(h, body_size, end_of_stream))
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> types::Action {
        self.with_flow(|f, h| f.on_response_trailers(h))
    }
}

impl Http {
    fn with_flow(&mut self, f: impl FnOnce(&mut Flow, &mut Adapter) -> Action) -> types::Action {
        let result = match self.flow.try_borrow_mut() {
            Ok(mut flow) => f(&mut flow, &mut Adapter { context: self.id }),
            // Cannot happen (callbacks of one context do not nest); pausing fails closed.
            Err(_) => Action::Pause,
        };
        if result == Action::Pause && !self.registered {
            FLOWS.with(|f| f.borrow_mut().insert(self.id, Rc::downgrade(&self.flow)));
            self.registered = true;
        }
        action(result)
    }
}

/// A request that reaches a filter whose configuration was refused: 503, nothing upstream.
struct Unconfigured;

impl Context for Unconfigured {}

impl HttpContext for Unconfigured {
    fn on_http_request_headers(
        &mut self,
        _num_headers: usize,
        _end_of_stream: bool,
    ) -> types::Action {
        let e =
            crate::error::ApiError::unavailable("the Keystone filter has no valid configuration");
        let _ = hostcalls::send_http_response(e.status, e.response_headers(), Some(&e.body()));
        types::Action::Pause
    }
}

fn log(level: LogLevel, msg: &str) {
    let _ = hostcalls::log(level, msg);
}

/// [`Host`] over host calls, for the context `context`.
struct Adapter {
    context: u32,
}

impl Host for Adapter {
    fn request_headers(&self) -> Option<Headers> {
        request_headers()
    }

    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
            .ok()
            .flatten()
    }

    fn set_request_body(&mut self, size: usize, body: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, size, body);
    }

    fn response_header(&self, name: &str) -> Option<String> {
        header_value(MapType::HttpResponseHeaders, name)
    }

    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value);
    }

    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
            .ok()
            .flatten()
    }

    fn set_response_body(&mut self, size: usize, body: &[u8]) {
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, body);
    }

    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        let _ = hostcalls::send_http_response(status, headers.to_vec(), Some(body));
    }

    fn dispatch(
        &mut self,
        upstream: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, String> {
        let token = hostcalls::dispatch_http_call(
            upstream,
            headers.to_vec(),
            body,
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .map_err(|s| format!("{s:?}"))?;
        CALLOUTS.with(|c| c.borrow_mut().insert(token, self.context));
        Ok(token)
    }

    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        hostcalls::get_shared_data(key).unwrap_or((None, None))
    }

    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        hostcalls::set_shared_data(key, Some(value), cas).is_ok()
    }

    fn now_ms(&self) -> u64 {
        host_now_ms()
    }

    fn now_s(&self) -> u64 {
        CLOCK.with(|c| {
            let mut clock = c.get();
            let now = clock.now_s(host_now_ms);
            c.set(clock);
            now
        })
    }

    fn resume(&mut self) {
        let _ = hostcalls::resume_http_request();
    }

    fn switches_context(&self) -> bool {
        SWITCHES.with(Cell::get)
    }

    /// A scope or an error is delivered at once. A retry may dispatch a callout, which the
    /// SDK would book to the context whose callback is running; that request may be gone
    /// before the answer comes (and the SDK then drops it), so retries run from the root.
    fn wake(&mut self, contexts: &[u32], wake: &Wake) {
        for &target in contexts.iter().filter(|c| **c != self.context) {
            match wake {
                Wake::Retry => DEFERRED.with(|d| d.borrow_mut().push((target, Wake::Retry))),
                _ => as_context(self.context, target, |flow, host| flow.on_wake(host, wake)),
            }
        }
    }

    fn count(&mut self, metric: Metric) {
        COUNTS.with(|c| c.borrow_mut()[metric.index()] += 1);
    }

    fn record(&mut self, metric: Metric, value: u64) {
        if let Some(id) = metric_id(metric) {
            let _ = hostcalls::record_metric(id, value);
        }
    }

    fn log(&self, level: Level, msg: &str) {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
        };
        log(level, msg);
    }

    fn logs(&self, level: Level) -> bool {
        let level = match level {
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
        };
        level as u32 >= LOG_LEVEL.with(Cell::get)
    }

    /// Envoy keeps each in the request's filter state as `wasm.kpw_tenant` and `wasm.kpw_user`,
    /// which an access log prints with `%FILTER_STATE(wasm.kpw_tenant:PLAIN)%`.
    fn set_audit(&mut self, tenant: &str, user: &str) {
        set_property(b"kpw_tenant", tenant.as_bytes());
        set_property(b"kpw_user", user.as_bytes());
    }
}
