//! An in-memory host for the unit tests of the request flow. Several requests share one
//! [`World`], the worker they run on: shared data, the clock, callouts, wake-ups and metrics.
//!
//! It models each host's primitives as the real host implements them, so that the flow's
//! own sequence of calls is what the tests prove safe (README, "Hosts"):
//! - [`HostKind::Envoy`]: a removed header is gone; setting a header replaces every copy;
//!   `set_buffer(0, size, data)` drains `size` bytes and prepends `data`; `end_of_stream`
//!   in the headers phase is true when no body follows; a wake-up runs as the woken
//!   request's context.
//! - [`HostKind::Nginx`] (ngx_wasm_module prerelease-0.6.0, as read in its source and seen on
//!   a real NGINX):
//!   - header names come as the client wrote them (`X-Auth-Token`);
//!   - removing a header only marks it, and NGINX's proxy module still sends it, value
//!     and all; setting a header overwrites its first live copy in place (with more than
//!     one copy, every copy ends up marked, and still sent); a header set where no live
//!     copy is appended after the client's;
//!   - `set_buffer(0, size, data)` keeps the first `size` bytes of `data` and nothing of
//!     the old body; the proxy module then sends `Content-Length` of the new body, and a
//!     removed client `Content-Length` is not sent (both seen on a real NGINX);
//!   - `end_of_stream` is never true in the headers phase, and no body callback comes
//!     without a body (the tests drive that through [`eos`]);
//!   - `proxy_set_effective_context` does nothing, so a wake-up never reaches another
//!     request: [`Host::switches_context`] says no and `wake` delivers nothing;
//!   - shared-data keys match by CRC32 only: [`World::collide_keys`] makes every key collide.
//!
//! Which host a test runs under: `KPW_MOCK_HOST=nginx` (see the Makefile's `unit`) runs the
//! flow tests as NGINX; the default is Envoy. A test about one host's behaviour names it with
//! [`World::of`].

use crate::host::{Host, Level, Wake};
use crate::metrics::Metric;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Envoy,
    Nginx,
}

impl HostKind {
    /// The host the flow tests run under: `KPW_MOCK_HOST` (`envoy` or `nginx`).
    pub fn from_env() -> HostKind {
        match std::env::var("KPW_MOCK_HOST").as_deref() {
            Ok("nginx") => HostKind::Nginx,
            Ok("envoy") | Err(_) => HostKind::Envoy,
            Ok(other) => panic!("KPW_MOCK_HOST={other}: envoy or nginx"),
        }
    }
}

thread_local! {
    /// The host of this test's worlds (each test runs on a thread of its own).
    static KIND: Cell<Option<HostKind>> = const { Cell::new(None) };
}

/// The host this test runs under.
pub fn kind() -> HostKind {
    KIND.with(|k| match k.get() {
        Some(kind) => kind,
        None => {
            let kind = HostKind::from_env();
            k.set(Some(kind));
            kind
        }
    })
}

pub fn is_nginx() -> bool {
    kind() == HostKind::Nginx
}

/// What the host says of `end_of_stream` in the headers phase, where `no_body` is the truth:
/// Envoy tells it, NGINX always says false.
pub fn eos(no_body: bool) -> bool {
    no_body && kind() == HostKind::Envoy
}

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
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct World {
    pub kind: Cell<Option<HostKind>>,
    /// key -> (value, cas)
    pub store: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    pub callouts: RefCell<Vec<Dispatched>>,
    pub now_ms: Cell<u64>,
    pub dispatch_fails: Cell<bool>,
    /// Every shared-data key collides (NGINX matches keys by CRC32 only).
    pub collide_keys: Cell<bool>,
    /// Wake-ups asked for, for the test to deliver (none on a host that can't switch).
    pub wakes: RefCell<Vec<(u32, Wake)>>,
    pub metrics: RefCell<HashMap<Metric, u64>>,
    pub logs: RefCell<Vec<String>>,
    /// The host's log level: lines below it are not written (`None`: every line is).
    pub log_level: Cell<Option<Level>>,
}

impl World {
    /// A worker of the host this test runs under.
    pub fn new() -> Rc<World> {
        World::of(kind())
    }

    /// A worker of this host, whatever the tests run under; the requests of this thread
    /// follow it ([`eos`], header case).
    pub fn of(host: HostKind) -> Rc<World> {
        KIND.with(|k| k.set(Some(host)));
        let w = World::default();
        w.kind.set(Some(host));
        w.now_ms.set(1_000_000_000);
        Rc::new(w)
    }

    pub fn host(&self) -> HostKind {
        self.kind.get().unwrap_or(HostKind::Envoy)
    }

    pub fn metric(&self, m: Metric) -> u64 {
        self.metrics.borrow().get(&m).copied().unwrap_or(0)
    }

    fn store_key(&self, key: &str) -> String {
        if self.collide_keys.get() {
            "crc".to_string()
        } else {
            key.to_string()
        }
    }
}

/// One request header as the host keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub value: String,
    /// False once removed: Envoy drops the entry, NGINX only marks it (hash 0).
    pub live: bool,
}

pub struct MockHost {
    pub context: u32,
    pub world: Rc<World>,
    pub entries: Vec<Entry>,
    /// Request headers whose values are not text (HTTP/1 `obs-text`), sent after `entries`.
    pub binary_headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub upstream_headers: Headers,
    pub upstream_body: Vec<u8>,
    pub response: Option<(u32, Headers, Vec<u8>)>,
    pub resumed: bool,
    /// The tenant and user the request was named with for the access log (`set_audit`).
    pub audit: Option<(String, String)>,
    /// NGINX: the length its proxy module writes once the filter replaced the body.
    proxy_content_length: Option<String>,
}

fn find(headers: &Headers, name: &str) -> Option<String> {
    // Header maps are case-insensitive in every host.
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
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

/// `proxy_set_buffer_bytes(0, size, data)` as each host does it.
fn set_buffer(kind: HostKind, buf: &mut Vec<u8>, size: usize, data: &[u8]) {
    match kind {
        // Drains `size` bytes (at most all) and prepends the data.
        HostKind::Envoy => {
            let n = size.min(buf.len());
            buf.splice(..n, data.iter().copied());
        }
        // Clears the chain from offset 0 and writes at most `size` bytes of the data.
        HostKind::Nginx => *buf = data[..size.min(data.len())].to_vec(),
    }
}

/// How a client that is not Envoy's HTTP/2 codec may write a name: `X-Auth-Token`.
fn client_case(name: &str) -> String {
    if name.starts_with(':') {
        return name.to_string();
    }
    let mut up = true;
    name.chars()
        .map(|c| {
            let out = if up { c.to_ascii_uppercase() } else { c };
            up = c == '-';
            out
        })
        .collect()
}

impl MockHost {
    pub fn new(world: &Rc<World>, context: u32, headers: &[(&str, &str)]) -> MockHost {
        let nginx = world.host() == HostKind::Nginx;
        let entries = headers
            .iter()
            .map(|(k, v)| Entry {
                name: if nginx { client_case(k) } else { k.to_string() },
                value: v.to_string(),
                live: true,
            })
            .collect();
        MockHost {
            context,
            world: world.clone(),
            entries,
            binary_headers: Vec::new(),
            body: Vec::new(),
            upstream_headers: Vec::new(),
            upstream_body: Vec::new(),
            response: None,
            resumed: false,
            audit: None,
            proxy_content_length: None,
        }
    }

    /// Every value of `name` the upstream is sent, in order: on NGINX the removed ones too.
    pub fn sent(&self, name: &str) -> Vec<&str> {
        let nginx = self.world.host() == HostKind::Nginx;
        if nginx && name.eq_ignore_ascii_case("content-length") {
            if let Some(n) = &self.proxy_content_length {
                return vec![n.as_str()];
            }
            let live = self
                .entries
                .iter()
                .filter(|e| e.live && e.name.eq_ignore_ascii_case(name));
            return live.map(|e| e.value.as_str()).collect();
        }
        self.entries
            .iter()
            .filter(|e| (e.live || nginx) && e.name.eq_ignore_ascii_case(name))
            .map(|e| e.value.as_str())
            .collect()
    }

    /// What the upstream reads for `name`, as Go's `Header.Get` does: the first value it
    /// was sent, where an empty value reads as no header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.sent(name).first().copied().filter(|v| !v.is_empty())
    }

    /// Takes a header out of the request as the client sent it (tests that build a request).
    pub fn drop_header(&mut self, name: &str) {
        self.entries.retain(|e| !e.name.eq_ignore_ascii_case(name));
    }

    pub fn status(&self) -> Option<u32> {
        self.response.as_ref().map(|r| r.0)
    }

    fn set_nginx(&mut self, name: &str, value: Option<&str>) {
        let matching = |e: &Entry| e.live && e.name.eq_ignore_ascii_case(name);
        let Some(value) = value else {
            self.entries
                .iter_mut()
                .filter(|e| matching(e))
                .for_each(|e| e.live = false);
            return;
        };
        match self.entries.iter().filter(|e| matching(e)).count() {
            0 => self.entries.push(Entry {
                name: name.to_string(),
                value: value.to_string(),
                live: true,
            }),
            1 => {
                if let Some(e) = self.entries.iter_mut().find(|e| matching(e)) {
                    e.value = value.to_string();
                }
            }
            // ngx_http_wasm_set_header_helper: the first copy is updated, a second one is
            // cleared, and the search starts again with `found` set, which clears the
            // updated copy too; nothing is added. Every copy is still sent.
            _ => {
                let mut first = true;
                for e in self.entries.iter_mut().filter(|e| matching(e)) {
                    if first {
                        e.value = value.to_string();
                        first = false;
                    }
                    e.live = false;
                }
            }
        }
    }
}

impl Host for MockHost {
    fn request_headers(&self) -> Option<crate::request::headers::Headers> {
        // Both hosts serialize the live entries only.
        let text = self
            .entries
            .iter()
            .filter(|e| e.live)
            .map(|e| (e.name.as_str(), e.value.as_bytes()));
        let binary = self
            .binary_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()));
        Some(crate::request::headers::Headers::from_pairs(
            text.chain(binary),
        ))
    }
    fn set_request_header(&mut self, name: &str, value: Option<&str>) {
        match self.world.host() {
            HostKind::Envoy => {
                self.entries.retain(|e| !e.name.eq_ignore_ascii_case(name));
                if let Some(v) = value {
                    self.entries.push(Entry {
                        name: name.to_string(),
                        value: v.to_string(),
                        live: true,
                    });
                }
            }
            HostKind::Nginx => self.set_nginx(name, value),
        }
    }
    fn request_body(&self, size: usize) -> Option<Vec<u8>> {
        prefix(&self.body, size)
    }
    fn set_request_body(&mut self, size: usize, body: &[u8]) {
        set_buffer(self.world.host(), &mut self.body, size, body);
        if self.world.host() == HostKind::Nginx {
            self.proxy_content_length = Some(self.body.len().to_string());
        }
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
        set_buffer(self.world.host(), &mut self.upstream_body, size, body)
    }
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]) {
        assert!(self.response.is_none(), "two responses");
        let h = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.response = Some((status, h, body.to_vec()));
    }
    fn dispatch(
        &mut self,
        upstream: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout_ms: u64,
    ) -> Result<u32, String> {
        if self.world.dispatch_fails.get() {
            return Err("unknown cluster".into());
        }
        let mut callouts = self.world.callouts.borrow_mut();
        callouts.push(Dispatched {
            context: self.context,
            upstream: upstream.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
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
    fn switches_context(&self) -> bool {
        self.world.host() == HostKind::Envoy
    }
    fn wake(&mut self, contexts: &[u32], wake: &Wake) {
        if self.world.host() == HostKind::Nginx {
            return; // set_effective_context is a no-op: the waiter never hears of it
        }
        self.world
            .wakes
            .borrow_mut()
            .extend(contexts.iter().map(|c| (*c, wake.clone())));
    }
    fn count(&mut self, metric: Metric) {
        *self.world.metrics.borrow_mut().entry(metric).or_default() += 1;
    }
    fn record(&mut self, metric: Metric, _value: u64) {
        *self.world.metrics.borrow_mut().entry(metric).or_default() += 1;
    }
    fn log(&self, level: Level, msg: &str) {
        if self.logs(level) {
            self.world.logs.borrow_mut().push(msg.to_string());
        }
    }
    fn logs(&self, level: Level) -> bool {
        self.world.log_level.get().is_none_or(|min| level >= min)
    }
    fn set_audit(&mut self, tenant: &str, user: &str) {
        // Envoy's filter state of a Wasm property is read-only once set: one call per request.
        assert!(self.audit.is_none(), "audit set twice");
        self.audit = Some((tenant.to_string(), user.to_string()));
    }
}

/// Standard base64 with padding, for Basic auth headers in tests.
pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}
