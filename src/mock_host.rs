//! An in-memory host for the unit tests of the request flow. It behaves like Envoy or,
//! with `nginx` set, like NGINX's ngx_wasm_module (shared-data keys matched by CRC32
//! only: modelled as every key colliding). Several requests share one [`World`], the
//! worker they run on: shared data, the clock, callouts, wake-ups and metrics.

use crate::filter::{Host, Level, Wake};
use crate::metrics::Metric;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone)]
pub struct Dispatched {
    pub context: u32,
    pub upstream: String,
    pub headers: Headers,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

impl Dispatched {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct World {
    /// key -> (value, cas)
    pub store: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    pub callouts: RefCell<Vec<Dispatched>>,
    pub now_ms: Cell<u64>,
    pub dispatch_fails: Cell<bool>,
    pub nginx: Cell<bool>,
    /// Wake-ups asked for, for the test to deliver.
    pub wakes: RefCell<Vec<(u32, Wake)>>,
    pub metrics: RefCell<HashMap<Metric, u64>>,
    pub logs: RefCell<Vec<String>>,
}

impl World {
    pub fn new() -> Rc<World> {
        let w = World::default();
        w.now_ms.set(1_000_000_000);
        Rc::new(w)
    }

    pub fn metric(&self, m: Metric) -> u64 {
        self.metrics.borrow().get(&m).copied().unwrap_or(0)
    }

    fn store_key(&self, key: &str) -> String {
        if self.nginx.get() {
            "crc".to_string()
        } else {
            key.to_string()
        }
    }
}

pub struct MockHost {
    pub context: u32,
    pub world: Rc<World>,
    pub headers: Headers,
    /// Request headers whose values are not text (HTTP/1 `obs-text`), sent after `headers`.
    pub binary_headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub upstream_headers: Headers,
    pub upstream_body: Vec<u8>,
    pub response: Option<(u32, Headers, Vec<u8>)>,
    pub resumed: bool,
}

fn find(headers: &Headers, name: &str) -> Option<String> {
    // Header maps are case-insensitive in every host.
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
}

fn replace(headers: &mut Headers, name: &str, value: Option<&str>) {
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    if let Some(v) = value {
        headers.push((name.to_string(), v.to_string()));
    }
}

fn prefix(buf: &[u8], size: usize) -> Option<Vec<u8>> {
    Some(buf[..size.min(buf.len())].to_vec())
}

fn splice(buf: &mut Vec<u8>, size: usize, body: &[u8]) {
    let n = size.min(buf.len());
    buf.splice(..n, body.iter().copied());
}

impl MockHost {
    pub fn new(world: &Rc<World>, context: u32, headers: &[(&str, &str)]) -> MockHost {
        MockHost {
            context,
            world: world.clone(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            binary_headers: Vec::new(),
            body: Vec::new(),
            upstream_headers: Vec::new(),
            upstream_body: Vec::new(),
            response: None,
            resumed: false,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn status(&self) -> Option<u32> {
        self.response.as_ref().map(|r| r.0)
    }
}

impl Host for MockHost {
    fn request_headers(&self) -> Option<crate::headers::Headers> {
        let text = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes()));
        let binary = self.binary_headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        Some(crate::headers::Headers::from_pairs(text.chain(binary)))
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        replace(&mut self.headers, name, value)
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        prefix(&self.body, size)
    }
    fn set_request_body(&mut self, size: usize, body: &[u8]) {
        splice(&mut self.body, size, body)
    }
    fn response_header(&self, name: &str) -> Option<String> {
        find(&self.upstream_headers, name)
    }
    fn set_response_header(&mut self, name: &str, value: Option<&str>) {
        replace(&mut self.upstream_headers, name, value)
    }
    fn response_body(&self, size: usize) -> Option<Vec<u8>> {
        prefix(&self.upstream_body, size)
    }
    fn set_response_body(&mut self, size: usize, body: &[u8]) {
        splice(&mut self.upstream_body, size, body)
    }
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        assert!(self.response.is_none(), "two responses");
        let h = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.response = Some((status, h, body.to_vec()));
    }
    fn dispatch(&mut self, upstream: &str, headers: &[(&str, &str)], body: Option<&[u8]>, timeout_ms: u64) -> Result<u32, String> {
        if self.world.dispatch_fails.get() {
            return Err("unknown cluster".into());
        }
        let mut callouts = self.world.callouts.borrow_mut();
        callouts.push(Dispatched {
            context: self.context,
            upstream: upstream.to_string(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.map(<[u8]>::to_vec),
            timeout_ms,
        });
        Ok(callouts.len() as u32)
    }
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        match self.world.store.borrow().get(&self.world.store_key(key)) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        }
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        let key = self.world.store_key(key);
        let mut store = self.world.store.borrow_mut();
        let current = store.get(&key).map(|(_, c)| *c);
        if cas.is_some() && cas != current {
            return false;
        }
        store.insert(key, (value.to_vec(), current.unwrap_or(0) + 1));
        true
    }
    fn now_ms(&self) -> u64 {
        self.world.now_ms.get()
    }
    fn resume(&mut self) {
        self.resumed = true;
    }
    fn wake(&mut self, contexts: &[u32], wake: &Wake) {
        self.world.wakes.borrow_mut().extend(contexts.iter().map(|c| (*c, wake.clone())));
    }
    fn count(&mut self, metric: Metric) {
        *self.world.metrics.borrow_mut().entry(metric).or_default() += 1;
    }
    fn record(&mut self, metric: Metric, _value: u64) {
        *self.world.metrics.borrow_mut().entry(metric).or_default() += 1;
    }
    fn log(&self, _level: Level, msg: &str) {
        self.world.logs.borrow_mut().push(msg.to_string());
    }
}

/// Standard base64 with padding, for Basic auth headers in tests.
pub fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}
