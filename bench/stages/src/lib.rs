//! A whole request through the filter's core with the least host possible, for
//! `benches/stages.rs` (natively) and `examples/request_loop.rs` (in Wasm, under a
//! profiler). The stages one by one are in `benches/stages.rs`.

use keystone_prom_wasm::auth::credentials::Credential;
use keystone_prom_wasm::auth::scope::Scope;
use keystone_prom_wasm::auth::shared_cache;
use keystone_prom_wasm::config::Config;
use keystone_prom_wasm::flow::{Flow, Shared};
use keystone_prom_wasm::host::{Host, Level, Wake};
use keystone_prom_wasm::metrics::Metric;
use keystone_prom_wasm::request::headers::Headers;
use std::rc::Rc;

pub const TOKEN: &str = "gAAAAABrAZywN0vByCDpWEHTp9PL-ZBxu4HQfEwY4KvWpS9g84bhGfAxr-R33_x35Umgpc9D7sa3MUYTMVlT33RHM-c6eANRKkKhV23CetauTfk68aMDkL53HcR5AmJdL78O05eLVXqiOgVou52lPpk3VnojusJM4Sm2supaCApSj-07yOrlOcw";
pub const DASHBOARD: &str = "query=sum%20by%20(job)%20(rate(http_requests_total%7Bjob%3D%22api%22%7D%5B5m%5D))&start=1795266000&end=1795269600&step=60";

/// A project-scoped user with ordinary roles (the tenant `236330d7…`).
pub fn member_scope() -> Scope {
    Scope {
        user_id: "u".into(),
        project_id: Some("236330d7b278485bbb7f97d3d03965a0".into()),
        domain_id: Some("d".into()),
        domain_scoped: false,
        system: false,
        roles: vec!["member".into(), "reader".into()],
        expires_at: u64::MAX,
        subprojects: vec![],
        access_rules: None,
    }
}

/// The least a host can do: fixed request headers (as Envoy hands wrk's request to a
/// filter: one buffer, copied for each request), one shared-data entry, a fixed clock.
pub struct BenchHost {
    headers: Headers,
    entry: Vec<u8>,
    pub path_len: usize,
}

impl Host for BenchHost {
    fn request_headers(&self) -> Option<Headers> {
        Some(self.headers.clone())
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        if name == ":path" {
            self.path_len = value.map_or(0, str::len);
        }
    }
    fn request_body(&self, _size: usize) -> Option<Vec<u8>> {
        None
    }
    fn set_request_body(&mut self, _size: usize, _body: &[u8]) {}
    fn response_header(&self, _name: &str) -> Option<String> {
        None
    }
    fn set_response_header(&mut self, _name: &str, _value: Option<&str>) {}
    fn response_body(&self, _size: usize) -> Option<Vec<u8>> {
        None
    }
    fn set_response_body(&mut self, _size: usize, _body: &[u8]) {}
    fn send_response(&mut self, status: u32, _headers: &[(&str, &str)], _body: &[u8]) {
        panic!("the benchmark's request was refused: {status}");
    }
    fn dispatch(&mut self, _u: &str, _h: &[(&str, &str)], _b: Option<&[u8]>, _t: u64) -> Result<u32, String> {
        Err("no callouts in the benchmark".into())
    }
    fn shared_get(&self, _key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        (Some(self.entry.clone()), Some(1))
    }
    fn shared_set(&mut self, _key: &str, _value: &[u8], _cas: Option<u32>) -> bool {
        true
    }
    fn now_ms(&self) -> u64 {
        1_000_000_000
    }
    fn resume(&mut self) {}
    fn switches_context(&self) -> bool {
        true
    }
    fn wake(&mut self, _contexts: &[u32], _wake: &Wake) {}
    fn count(&mut self, _metric: Metric) {}
    fn record(&mut self, _metric: Metric, _value: u64) {}
    fn log(&self, _level: Level, _msg: &str) {}
    fn logs(&self, _level: Level) -> bool {
        false
    }
    fn set_audit(&mut self, _tenant: &str, _user: &str) {}
}

/// The same dashboard request again and again: after the first, the credential's scope
/// and the rewrite come from the worker's caches, as in Envoy on the dashboard mix.
pub struct DashboardRequest {
    shared: Rc<Shared>,
    host: BenchHost,
    id: u32,
}

impl DashboardRequest {
    pub fn new() -> DashboardRequest {
        let cfg = Config::from_json(br#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"}}"#)
            .expect("benchmark configuration");
        let scope = member_scope();
        let digest = Credential::Token(TOKEN.into()).digest();
        let path = format!("/api/v1/query_range?{DASHBOARD}");
        let headers = [
            (":authority", "127.0.0.1:9000"),
            (":path", path.as_str()),
            (":method", "GET"),
            (":scheme", "http"),
            ("x-auth-token", TOKEN),
            ("x-forwarded-proto", "http"),
            ("x-request-id", "8a3f9a52-0d47-4c4b-9d43-3f1f0e0d7a11"),
        ];
        let host = BenchHost {
            headers: Headers::from_pairs(headers.iter().map(|(k, v)| (*k, v.as_bytes()))),
            entry: shared_cache::encode(&digest, &scope, 2_000_000_000),
            path_len: 0,
        };
        let mut bench = DashboardRequest { shared: Rc::new(Shared::new(cfg)), host, id: 0 };
        bench.run();
        assert!(bench.host.path_len > DASHBOARD.len(), "the request was not rewritten");
        bench
    }

    pub fn run(&mut self) {
        self.id = self.id.wrapping_add(1);
        let mut flow = Flow::new(self.shared.clone(), self.id);
        std::hint::black_box(flow.on_request_headers(&mut self.host, true));
        flow.on_response_headers(&mut self.host);
        flow.on_done(&mut self.host);
    }
}

impl Default for DashboardRequest {
    fn default() -> Self {
        Self::new()
    }
}

pub mod write;
