//! One request's journey through the filter, written against the [`Host`] trait so it
//! runs the same under Envoy, NGINX, and the mock host of the unit tests.
//!
//! Host differences this code respects (see README, "Hosts"):
//! - whether a body follows is decided from method, `content-length` and
//!   `transfer-encoding`, never from `end_of_stream` in the headers phase (NGINX always
//!   says false there, and calls no body callback when there is no body);
//! - `content-length` is dropped in the headers phase when the body may be rewritten;
//! - `:path` is always written with its `?`;
//! - a callout that fails arrives with no `:status` (NGINX adds `:dispatch_status`).

use crate::cache;
use crate::config::Config;
use crate::credentials::{Credential, CredentialError};
use crate::error::ApiError;
use crate::keystone::{self, AuthFailure};
use crate::promql::Tenant;
use crate::request::{self, Enforcer};
use crate::response::{self, Kind};
use crate::rewrite_cache::RewriteCache;
use crate::routes::{self, Endpoint, MethodCheck, Params, Route};
use crate::scope::Scope;
use std::cell::RefCell;
use std::rc::Rc;

/// What the filter asks of its host. The proxy-wasm adapter implements it with host calls.
pub trait Host {
    fn request_header(&self, name: &str) -> Option<String>;
    /// Sets a request header, or removes it with `None`.
    fn set_request_header(&mut self, name: &str, value: Option<&str>);
    fn request_body(&self, size: usize) -> Option<Vec<u8>>;
    fn set_request_body(&mut self, size: usize, body: &[u8]);
    fn response_header(&self, name: &str) -> Option<String>;
    fn set_response_header(&mut self, name: &str, value: Option<&str>);
    fn response_body(&self, size: usize) -> Option<Vec<u8>>;
    fn set_response_body(&mut self, size: usize, body: &[u8]);
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Starts an HTTP callout; the answer comes back through [`Flow::on_callout`].
    fn dispatch(&mut self, upstream: &str, headers: &[(&str, &str)], timeout_ms: u64) -> Result<u32, String>;
    /// The value and CAS token of a shared-data key.
    fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// Stores a shared-data key; false on a CAS mismatch or error.
    fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
    /// Unix seconds.
    fn now(&self) -> u64;
    fn resume(&mut self);
    fn log(&self, level: Level, msg: &str);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// State shared by every request of one filter configuration.
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    /// Separates the cache of different configurations that share a VM id.
    pub namespace: String,
    /// The fast path: rewritten PromQL of this VM.
    pub rewrites: RefCell<RewriteCache>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let ns = Credential::Token(format!("{}|{}", config.keystone.url, config.project_label)).digest();
        let rewrites = RefCell::new(RewriteCache::new(config.cache.rewrite_bytes));
        Shared { namespace: cache::hex(&ns[..6]), config, rewrites }
    }
}

/// Per-request state.
pub struct Flow {
    shared: Rc<Shared>,
    route: Route,
    credential: Option<Credential>,
    scope: Option<Scope>,
    /// The tenant, kept for filtering the answer.
    tenant: Option<Tenant>,
    /// A body follows the headers and must be enforced.
    expect_body: bool,
    /// The whole body, once it has arrived, until it is enforced.
    body: Option<Vec<u8>>,
    /// How many PromQL parameters the query string had, once it is enforced.
    url_params: Option<usize>,
    callout: Option<u32>,
    /// A response was sent: nothing else happens for this request.
    done: bool,
    /// The upstream answer is filtered (rules, alerts), and how it is encoded.
    filter_response: Option<ResponseFilter>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseFilter {
    Plain(Kind),
    Gzip(Kind),
    /// The answer can't be filtered (unknown encoding, too large): its body is replaced.
    Refuse(&'static str),
    /// An error already replaced the body; later chunks are dropped.
    Drop,
}

fn append(params: &mut String, param: &str) {
    if !params.is_empty() {
        params.push('&');
    }
    params.push_str(param);
}

impl Flow {
    pub fn new(shared: Rc<Shared>) -> Flow {
        Flow {
            shared,
            route: Route::Denied,
            credential: None,
            scope: None,
            tenant: None,
            expect_body: false,
            body: None,
            url_params: None,
            callout: None,
            done: false,
            filter_response: None,
        }
    }

    fn cfg(&self) -> &Config {
        &self.shared.config
    }

    fn refuse(&mut self, host: &mut dyn Host, e: ApiError) -> Action {
        host.log(Level::Info, &format!("refused with {}: {}", e.status, e.message));
        host.send_response(e.status, &e.response_headers(), &e.body());
        self.done = true;
        Action::Pause
    }

    pub fn on_request_headers(&mut self, host: &mut dyn Host) -> Action {
        let full_path = host.request_header(":path").unwrap_or_default();
        let method = host.request_header(":method").unwrap_or_default();
        let (path, _) = routes::split_path(&full_path);
        let route = routes::classify(path, &self.cfg().path_prefix, &self.cfg().unsafe_passthrough);
        if let MethodCheck::NotAllowed(allow) = routes::check_method(route, &method) {
            return self.refuse(host, ApiError::method_not_allowed(allow));
        }
        // The token is the user's secret: it never goes upstream, whatever the route.
        let credential = Credential::from_headers(|n| host.request_header(n));
        host.set_request_header("x-auth-token", None);
        match route {
            Route::Open => return Action::Continue,
            Route::Denied => {
                return self.refuse(
                    host,
                    ApiError::forbidden(format!(
                        "{path} is not available through the Keystone filter: it is not an endpoint \
                         whose answer can be limited to your project"
                    )),
                )
            }
            Route::Enforced(Endpoint::Rules | Endpoint::Alerts) => {
                // Ask for an identity answer; a gzip one is still inflated when it comes.
                host.set_request_header("accept-encoding", None);
            }
            Route::Enforced(_) | Route::Authenticated => {}
        }
        self.route = route;
        let credential = match credential {
            Ok(c) => c,
            Err(CredentialError::Missing) => {
                return self.refuse(
                    host,
                    ApiError::unauthorized(
                        "authentication required: send a Keystone token in the X-Auth-Token header",
                        &self.cfg().keystone.url,
                    ),
                )
            }
            Err(CredentialError::Malformed(why)) => {
                return self.refuse(host, ApiError::unauthorized(why, &self.cfg().keystone.url))
            }
        };

        // Only enforced endpoints need the body; passthrough bodies go as they are.
        if method == "POST" && matches!(route, Route::Enforced(_)) {
            let length = host.request_header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
            let chunked = host.request_header("transfer-encoding").is_some();
            self.expect_body = chunked || length.is_some_and(|n| n > 0);
            // A POST without a body has no form for Prometheus to read, whatever its type.
            if self.expect_body {
                if let Err(e) = request::check_form_headers(
                    host.request_header("content-type").as_deref(),
                    host.request_header("content-encoding").as_deref(),
                ) {
                    return self.refuse(host, e);
                }
            }
            if length.is_some_and(|n| n > self.cfg().limits.max_body_bytes as u64) {
                return self.refuse(host, self.too_large());
            }
            if self.expect_body {
                // The rewritten body has another length; the host recomputes framing.
                host.set_request_header("content-length", None);
            }
        }

        let digest = credential.digest();
        let key = cache::slot_key(&self.shared.namespace, &digest, self.cfg().cache.max_entries);
        let now = host.now();
        if let (Some(bytes), _) = host.shared_get(&key) {
            if let Some(scope) = cache::decode(&bytes, &digest, now) {
                host.log(Level::Debug, "scope cache hit");
                self.scope = Some(scope);
            }
        }
        self.credential = Some(credential);
        if self.scope.is_none() {
            return self.start_callout(host);
        }
        self.finish(host)
    }

    pub fn on_request_body(&mut self, host: &mut dyn Host, body_size: usize, end_of_stream: bool) -> Action {
        if self.done {
            return Action::Pause;
        }
        if !self.expect_body {
            return Action::Continue;
        }
        if body_size > self.cfg().limits.max_body_bytes {
            let e = self.too_large();
            return self.refuse(host, e);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.body = Some(host.request_body(body_size).unwrap_or_default());
        if self.scope.is_none() {
            // The callout is still out (a host that delivers the body while the headers
            // wait); the callout's answer finishes the request and resumes it.
            return Action::Pause;
        }
        self.finish(host)
    }

    fn too_large(&self) -> ApiError {
        ApiError::too_large(format!(
            "the request body is larger than {} bytes (limits.max_body_bytes)",
            self.cfg().limits.max_body_bytes
        ))
    }

    fn start_callout(&mut self, host: &mut dyn Host) -> Action {
        let Some(Credential::Token(token)) = &self.credential else {
            return self.refuse(host, ApiError::unavailable("no credential to validate"));
        };
        let call = keystone::validation_request(&self.cfg().keystone, token);
        let headers: Vec<(&str, &str)> = call.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match host.dispatch(&call.upstream, &headers, call.timeout_ms) {
            Ok(id) => {
                self.callout = Some(id);
                Action::Pause
            }
            Err(e) => {
                host.log(Level::Warn, &format!("callout to {} failed: {e}", call.upstream));
                self.refuse(host, ApiError::unavailable("Keystone could not be reached; try again later"))
            }
        }
    }

    /// The Keystone answer: `status` is `None` when the callout failed.
    pub fn on_callout(
        &mut self,
        host: &mut dyn Host,
        id: u32,
        status: Option<u16>,
        dispatch_status: Option<&str>,
        body: &[u8],
    ) {
        if self.done || self.callout != Some(id) {
            return;
        }
        self.callout = None;
        let now = host.now();
        let scope = match keystone::parse_validation(status, dispatch_status, body, now) {
            Ok(s) => s,
            Err(failure) => {
                let url = self.cfg().keystone.url.clone();
                let e = match failure {
                    AuthFailure::Invalid(m) => ApiError::unauthorized(m, &url),
                    AuthFailure::Forbidden(m) => ApiError::forbidden(m),
                    AuthFailure::Unavailable(m) => {
                        host.log(Level::Warn, &m);
                        ApiError::unavailable(m)
                    }
                };
                self.refuse(host, e);
                return;
            }
        };
        if let Some(c) = &self.credential {
            let digest = c.digest();
            let key = cache::slot_key(&self.shared.namespace, &digest, self.cfg().cache.max_entries);
            let value = cache::encode(&digest, &scope, now, self.cfg().cache.ttl_seconds);
            let (_, cas) = host.shared_get(&key);
            if !host.shared_set(&key, &value, cas) {
                host.log(Level::Debug, "scope cache slot changed under us; not stored");
            }
        }
        self.scope = Some(scope);
        if self.finish(host) == Action::Continue {
            host.resume();
        }
    }

    /// Scope known: enforce what has arrived and let it go. The query string is enforced
    /// at once; the body when it is complete. Envoy holds the body back while the headers
    /// are paused, so headers go on first and the body follows through its own callback.
    fn finish(&mut self, host: &mut dyn Host) -> Action {
        match self.enforce(host) {
            Ok(()) => Action::Continue,
            Err(e) => self.refuse(host, e),
        }
    }

    fn enforce(&mut self, host: &mut dyn Host) -> Result<(), ApiError> {
        let endpoint = match self.route {
            Route::Enforced(ep) => ep,
            Route::Authenticated => return Ok(()),
            Route::Open | Route::Denied => return Err(ApiError::forbidden("not allowed")),
        };
        let tenant = match self.tenant.take() {
            Some(t) => t,
            None => {
                let scope = self.scope.as_ref().ok_or_else(|| ApiError::unavailable("internal state error"))?;
                let project = scope.project_id.clone().ok_or_else(|| {
                    ApiError::forbidden("the token is not project-scoped; get a project-scoped token")
                })?;
                Tenant::new(&self.cfg().project_label, vec![project])
            }
        };
        let result = self.enforce_params(host, endpoint, &tenant);
        self.tenant = Some(tenant);
        result
    }

    fn enforce_params(&mut self, host: &mut dyn Host, endpoint: Endpoint, tenant: &Tenant) -> Result<(), ApiError> {
        if endpoint.params() == Params::ResponseFiltered {
            return Ok(());
        }
        let shared = Rc::clone(&self.shared);
        let mut cache = shared.rewrites.borrow_mut();
        let mut enforcer = Enforcer { tenant, limits: &shared.config.limits, cache: &mut cache };
        // No match[] anywhere would mean every series: the tenant's own selector stands in,
        // in the body when one follows (Prometheus ORs the body's and the URL's match[]).
        let needs_default = |n: usize| n == 0 && endpoint.params() == Params::Match;

        if self.url_params.is_none() {
            let full_path = host.request_header(":path").unwrap_or_default();
            let (path, query) = routes::split_path(&full_path);
            let (mut query, n) = enforcer.params(query, endpoint)?;
            if !self.expect_body && needs_default(n) {
                append(&mut query, &request::default_match(tenant));
            }
            host.set_request_header(":path", Some(&format!("{path}?{query}")));
            self.url_params = Some(n);
        }
        if let Some(body) = self.body.take() {
            let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_data("the form body must be UTF-8"))?;
            let (mut new_body, n) = enforcer.params(text, endpoint)?;
            if needs_default(n + self.url_params.unwrap_or(0)) {
                append(&mut new_body, &request::default_match(tenant));
            }
            host.set_request_body(body.len(), new_body.as_bytes());
        }
        Ok(())
    }

    pub fn on_response_headers(&mut self, host: &mut dyn Host) -> Action {
        let kind = match self.route {
            Route::Enforced(Endpoint::Rules) => Kind::Rules,
            Route::Enforced(Endpoint::Alerts) => Kind::Alerts,
            _ => return Action::Continue,
        };
        if self.done || self.tenant.is_none() {
            return Action::Continue;
        }
        if host.response_header(":status").as_deref() != Some("200") {
            return Action::Continue; // Prometheus errors carry no tenant data
        }
        let encoding = host.response_header("content-encoding").map(|e| e.trim().to_ascii_lowercase());
        self.filter_response = Some(match encoding.as_deref() {
            None | Some("") | Some("identity") => ResponseFilter::Plain(kind),
            Some("gzip") | Some("x-gzip") => ResponseFilter::Gzip(kind),
            Some(_) => ResponseFilter::Refuse("the upstream answer has an encoding the filter cannot read"),
        });
        host.set_response_header("content-encoding", None);
        host.set_response_header("content-length", None);
        Action::Continue
    }

    pub fn on_response_body(&mut self, host: &mut dyn Host, body_size: usize, end_of_stream: bool) -> Action {
        let Some(mode) = self.filter_response else {
            return Action::Continue;
        };
        let max = self.cfg().limits.max_response_bytes;
        let result = match mode {
            ResponseFilter::Drop => {
                host.set_response_body(body_size, b"");
                return Action::Continue;
            }
            ResponseFilter::Refuse(why) => Err(why.to_string()),
            _ if body_size > max => Err(format!("the upstream answer is larger than {max} bytes (limits.max_response_bytes)")),
            _ if !end_of_stream => return Action::Pause,
            ResponseFilter::Plain(kind) | ResponseFilter::Gzip(kind) => {
                let raw = host.response_body(body_size).unwrap_or_default();
                let plain = match mode {
                    ResponseFilter::Gzip(_) => response::gunzip(&raw, max),
                    _ => Ok(raw),
                };
                let tenant = self.tenant.as_ref();
                plain.and_then(|p| match tenant {
                    Some(t) => response::filter(kind, &p, t.label(), t.values()),
                    None => Err("no tenant".into()),
                })
            }
        };
        match result {
            Ok(body) => host.set_response_body(body_size, &body),
            Err(why) => {
                host.log(Level::Warn, &format!("upstream answer not filtered: {why}"));
                // Headers are gone already: the body becomes the error, nothing else passes.
                let e = ApiError::new(502, "internal", format!("{why}; nothing of it is shown"));
                host.set_response_body(body_size, &e.body());
                self.filter_response = Some(ResponseFilter::Drop);
            }
        }
        Action::Continue
    }
}

#[cfg(test)]
pub mod mock {
    //! An in-memory host that behaves like Envoy or, with `nginx = true`, like NGINX's
    //! ngx_wasm_module (shared-data keys matched by CRC32 only).
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    pub struct Store {
        /// key -> (value, cas)
        pub data: HashMap<String, (Vec<u8>, u32)>,
    }

    pub type Headers = Vec<(String, String)>;

    pub struct MockHost {
        pub headers: Vec<(String, String)>,
        pub body: Vec<u8>,
        pub upstream_headers: Vec<(String, String)>,
        pub upstream_body: Vec<u8>,
        pub response: Option<(u32, Headers, Vec<u8>)>,
        pub callouts: Vec<(String, Headers, u64)>,
        pub dispatch_fails: bool,
        pub store: Rc<RefCell<Store>>,
        pub now: u64,
        pub resumed: bool,
        pub nginx: bool,
    }

    impl MockHost {
        pub fn new(store: Rc<RefCell<Store>>, headers: &[(&str, &str)]) -> MockHost {
            MockHost {
                headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                body: Vec::new(),
                upstream_headers: Vec::new(),
                upstream_body: Vec::new(),
                response: None,
                callouts: Vec::new(),
                dispatch_fails: false,
                store,
                now: 1_000_000,
                resumed: false,
                nginx: false,
            }
        }

        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
        }

        fn store_key(&self, key: &str) -> String {
            if self.nginx {
                // NGINX matches keys by CRC32 only: model the worst case, every key collides.
                "crc".to_string()
            } else {
                key.to_string()
            }
        }
    }

    fn find(headers: &Headers, name: &str) -> Option<String> {
        headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn replace(headers: &mut Headers, name: &str, value: Option<&str>) {
        headers.retain(|(k, _)| k != name);
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

    impl Host for MockHost {
        fn request_header(&self, name: &str) -> Option<String> {
            find(&self.headers, name)
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
        fn dispatch(&mut self, upstream: &str, headers: &[(&str, &str)], timeout_ms: u64) -> Result<u32, String> {
            if self.dispatch_fails {
                return Err("unknown cluster".into());
            }
            let h = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            self.callouts.push((upstream.to_string(), h, timeout_ms));
            Ok(self.callouts.len() as u32)
        }
        fn shared_get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
            match self.store.borrow().data.get(&self.store_key(key)) {
                Some((v, cas)) => (Some(v.clone()), Some(*cas)),
                None => (None, None),
            }
        }
        fn shared_set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
            let key = self.store_key(key);
            let mut store = self.store.borrow_mut();
            let current = store.data.get(&key).map(|(_, c)| *c);
            if cas.is_some() && cas != current {
                return false;
            }
            store.data.insert(key, (value.to_vec(), current.unwrap_or(0) + 1));
            true
        }
        fn now(&self) -> u64 {
            self.now
        }
        fn resume(&mut self) {
            self.resumed = true;
        }
        fn log(&self, _level: Level, _msg: &str) {}
    }
}

#[cfg(test)]
mod tests {
    use super::mock::*;
    use super::*;
    use std::cell::RefCell;

    const KS_OK: &str = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u1"},
        "project":{"id":"p1","domain":{"id":"d1"}},"roles":[{"id":"r","name":"reader"}]}}"#;

    fn shared() -> Rc<Shared> {
        let cfg = Config::from_json(br#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"}}"#).unwrap();
        Rc::new(Shared::new(cfg))
    }

    fn get(path: &str, token: Option<&str>) -> Vec<(&'static str, String)> {
        let mut h = vec![(":method", "GET".to_string()), (":path", path.to_string())];
        if let Some(t) = token {
            h.push(("x-auth-token", t.to_string()));
        }
        h
    }

    fn host(store: &Rc<RefCell<Store>>, h: &[(&'static str, String)]) -> MockHost {
        let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        MockHost::new(store.clone(), &pairs)
    }

    fn status(h: &MockHost) -> Option<u32> {
        h.response.as_ref().map(|r| r.0)
    }

    fn decoded_query(h: &MockHost) -> Vec<crate::form::Param> {
        let path = h.header(":path").unwrap();
        crate::form::parse(path.split_once('?').unwrap().1).unwrap()
    }

    #[test]
    fn get_query_validates_then_rewrites_and_resumes() {
        let store = Rc::default();
        let sh = shared();
        let mut h = host(&store, &get("/api/v1/query?query=up&time=5", Some("tok")));
        let mut f = Flow::new(sh.clone());
        assert_eq!(f.on_request_headers(&mut h), Action::Pause);
        assert_eq!(h.header("x-auth-token"), None, "token stripped");
        let (up, headers, timeout) = &h.callouts[0];
        assert_eq!((up.as_str(), *timeout), ("keystone", 2000));
        assert!(headers.contains(&(":path".into(), "/v3/auth/tokens?nocatalog".into())));
        assert!(headers.contains(&("x-subject-token".into(), "tok".into())));
        f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());
        assert!(h.resumed);
        assert_eq!(status(&h), None);
        assert_eq!(decoded_query(&h)[0].value, r#"up{project_id="p1"}"#);

        // Second request, same token: served from the cache, no callout.
        let mut h2 = host(&store, &get("/api/v1/query_range?query=rate(x[5m])", Some("tok")));
        let mut f2 = Flow::new(sh);
        assert_eq!(f2.on_request_headers(&mut h2), Action::Continue);
        assert!(h2.callouts.is_empty());
        assert_eq!(decoded_query(&h2)[0].value, r#"rate(x{project_id="p1"}[5m])"#);
    }

    #[test]
    fn cache_entry_expires() {
        let store = Rc::default();
        let sh = shared();
        let mut h = host(&store, &get("/api/v1/query?query=up", Some("tok")));
        let mut f = Flow::new(sh.clone());
        f.on_request_headers(&mut h);
        f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());
        let mut h2 = host(&store, &get("/api/v1/query?query=up", Some("tok")));
        h2.now = h.now + 300;
        assert_eq!(Flow::new(sh).on_request_headers(&mut h2), Action::Pause);
        assert_eq!(h2.callouts.len(), 1, "stale entry revalidated");
    }

    #[test]
    fn nginx_key_collisions_never_mix_tokens() {
        let store = Rc::default();
        let sh = shared();
        let mut h = host(&store, &get("/api/v1/query?query=up", Some("alice")));
        h.nginx = true;
        let mut f = Flow::new(sh.clone());
        f.on_request_headers(&mut h);
        f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());
        let mut h2 = host(&store, &get("/api/v1/query?query=up", Some("mallory")));
        h2.nginx = true;
        assert_eq!(Flow::new(sh).on_request_headers(&mut h2), Action::Pause);
        assert_eq!(h2.callouts.len(), 1, "another token's entry was not reused");
    }

    #[test]
    fn refusals() {
        let store = Rc::default();
        let cases: [(Vec<(&'static str, String)>, u32); 5] = [
            (get("/api/v1/query?query=up", None), 401),
            (get("/api/v1/status/config", Some("t")), 403),
            (get("/api/v1/admin/tsdb/snapshot", None), 403),
            (vec![(":method", "PUT".into()), (":path", "/api/v1/query".into()), ("x-auth-token", "t".into())], 405),
            (get("/api/v1/query?query=up", Some("bad token")), 401),
        ];
        for (headers, want) in cases {
            let mut h = host(&store, &headers);
            assert_eq!(Flow::new(shared()).on_request_headers(&mut h), Action::Pause);
            assert_eq!(status(&h), Some(want), "{headers:?}");
            assert!(h.callouts.is_empty());
            let (_, rh, body) = h.response.unwrap();
            assert!(rh.contains(&("content-type".into(), "application/json".into())));
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["status"], "error");
        }
    }

    #[test]
    fn no_token_names_keystone() {
        let mut h = host(&Rc::default(), &get("/api/v1/query?query=up", None));
        Flow::new(shared()).on_request_headers(&mut h);
        let (_, rh, _) = h.response.unwrap();
        assert!(rh.contains(&("www-authenticate".into(), "Keystone uri=\"http://ks:5000/v3\"".into())));
    }

    #[test]
    fn open_paths_pass_without_token() {
        for p in ["/-/healthy", "/-/ready", "/api/v1/status/buildinfo"] {
            let mut h = host(&Rc::default(), &get(p, Some("t")));
            assert_eq!(Flow::new(shared()).on_request_headers(&mut h), Action::Continue);
            assert_eq!(h.header("x-auth-token"), None);
        }
    }

    #[test]
    fn keystone_failures() {
        let cases: [(Option<u16>, Option<&str>, u32); 5] = [
            (Some(404), None, 401),
            (Some(401), None, 401),
            (Some(500), None, 503),
            (None, None, 503),
            (None, Some("timeout"), 503),
        ];
        for (st, ds, want) in cases {
            let store = Rc::default();
            let mut h = host(&store, &get("/api/v1/query?query=up", Some("tok")));
            let mut f = Flow::new(shared());
            f.on_request_headers(&mut h);
            f.on_callout(&mut h, 1, st, ds, b"");
            assert_eq!(status(&h), Some(want));
            assert!(!h.resumed);
            assert!(store.borrow().data.is_empty(), "failures are not cached as valid");
        }
        let mut h = host(&Rc::default(), &get("/api/v1/query?query=up", Some("tok")));
        h.dispatch_fails = true;
        Flow::new(shared()).on_request_headers(&mut h);
        assert_eq!(status(&h), Some(503));
    }

    fn post(query_string: &str, body: &str) -> Vec<(&'static str, String)> {
        vec![
            (":method", "POST".into()),
            (":path", format!("/api/v1/query{query_string}")),
            ("x-auth-token", "tok".into()),
            ("content-type", "application/x-www-form-urlencoded".into()),
            ("content-length", body.len().to_string()),
        ]
    }

    #[test]
    fn post_body_and_url_are_both_enforced_whichever_arrives_first() {
        for callout_first in [true, false] {
            let store = Rc::default();
            let body = "query=a&time=1";
            let mut h = host(&store, &post("?query=b", body));
            h.body = body.as_bytes().to_vec();
            let mut f = Flow::new(shared());
            assert_eq!(f.on_request_headers(&mut h), Action::Pause);
            assert_eq!(h.header("content-length"), None, "length dropped in headers phase");
            if callout_first {
                // Envoy: the body is held back until the headers go on.
                f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());
                assert!(h.resumed, "headers go on; the body follows");
                assert_eq!(f.on_request_body(&mut h, body.len(), false), Action::Pause);
                assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Continue);
            } else {
                assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Pause);
                f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());
                assert!(h.resumed);
            }
            assert_eq!(status(&h), None);
            assert_eq!(decoded_query(&h)[0].value, r#"b{project_id="p1"}"#);
            let body = crate::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap();
            assert_eq!(body[0].value, r#"a{project_id="p1"}"#);
        }
    }

    #[test]
    fn post_without_body_needs_no_content_type() {
        let mut headers = post("?query=b", "");
        headers.retain(|(k, _)| *k != "content-type");
        let mut h = host(&Rc::default(), &headers);
        let mut f = Flow::new(shared());
        f.on_request_headers(&mut h);
        f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());
        assert_eq!(status(&h), None);
        assert!(h.resumed);
    }

    #[test]
    fn post_without_body_does_not_wait_nginx_style() {
        // NGINX: no body callback when there is no body.
        let store = Rc::default();
        let mut h = host(&store, &post("?query=b", ""));
        let mut f = Flow::new(shared());
        f.on_request_headers(&mut h);
        f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());
        assert!(h.resumed);
        assert_eq!(decoded_query(&h)[0].value, r#"b{project_id="p1"}"#);
    }

    #[test]
    fn post_refusals() {
        let mut headers = post("", "query=up");
        headers[3].1 = "multipart/form-data; boundary=x".into();
        let mut h = host(&Rc::default(), &headers);
        Flow::new(shared()).on_request_headers(&mut h);
        assert_eq!(status(&h), Some(415));

        let mut headers = post("", "query=up");
        headers[4].1 = "999999999".into();
        let mut h = host(&Rc::default(), &headers);
        Flow::new(shared()).on_request_headers(&mut h);
        assert_eq!(status(&h), Some(413));

        // Chunked body that grows past the limit.
        let mut headers = post("", "");
        headers.push(("transfer-encoding", "chunked".into()));
        let mut h = host(&Rc::default(), &headers);
        let mut f = Flow::new(shared());
        f.on_request_headers(&mut h);
        assert_eq!(f.on_request_body(&mut h, 1 << 30, false), Action::Pause);
        assert_eq!(status(&h), Some(413));
    }

    #[test]
    fn bad_promql_is_400_after_validation() {
        let store = Rc::default();
        let mut h = host(&store, &get("/api/v1/query?query=sum(", Some("tok")));
        let mut f = Flow::new(shared());
        f.on_request_headers(&mut h);
        f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());
        assert_eq!(status(&h), Some(400));
        assert!(!h.resumed);
    }

    #[test]
    fn domain_scoped_token_is_refused() {
        let store = Rc::default();
        let mut h = host(&store, &get("/api/v1/query?query=up", Some("tok")));
        let mut f = Flow::new(shared());
        f.on_request_headers(&mut h);
        let dom = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"domain":{"id":"d"},"roles":[]}}"#;
        f.on_callout(&mut h, 1, Some(200), None, dom.as_bytes());
        assert_eq!(status(&h), Some(403));
    }

    fn validated(path: &str, cfg: &str) -> (MockHost, Flow) {
        let cfg = Config::from_json(cfg.as_bytes()).unwrap();
        let mut h = host(&Rc::default(), &get(path, Some("tok")));
        let mut f = Flow::new(Rc::new(Shared::new(cfg)));
        assert_eq!(f.on_request_headers(&mut h), Action::Pause);
        f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());
        (h, f)
    }

    const CFG: &str = r#"{"keystone":{"url":"http://ks:5000/v3"}}"#;

    #[test]
    fn series_without_match_gets_the_tenant_selector() {
        for path in ["/api/v1/series?start=1", "/api/v1/labels", "/api/v1/label/__name__/values", "/federate"] {
            let (h, _) = validated(path, CFG);
            assert_eq!(status(&h), None, "{path}");
            let q = decoded_query(&h);
            let m: Vec<&str> = q.iter().filter(|p| p.key == "match[]").map(|p| p.value.as_str()).collect();
            assert_eq!(m, [r#"{project_id="p1"}"#], "{path}");
        }
        let (h, _) = validated("/federate?match[]=up&match[]={job=%22x%22}", CFG);
        let m: Vec<String> = decoded_query(&h).into_iter().map(|p| p.value).collect();
        assert_eq!(m, [r#"up{project_id="p1"}"#, r#"{job="x",project_id="p1"}"#]);
    }

    #[test]
    fn prefix_and_passthrough() {
        let cfg = r#"{"keystone":{"url":"http://ks:5000/v3"},"path_prefix":"/prometheus",
            "unsafe_passthrough":["/api/v1/metadata"]}"#;
        let (h, _) = validated("/prometheus/api/v1/query?query=up", cfg);
        assert_eq!(decoded_query(&h)[0].value, r#"up{project_id="p1"}"#);
        assert!(h.header(":path").unwrap().starts_with("/prometheus/api/v1/query?"));
        let (h, _) = validated("/prometheus/api/v1/metadata?metric=up", cfg);
        assert_eq!((status(&h), h.header(":path")), (None, Some("/prometheus/api/v1/metadata?metric=up")));
        let mut h = host(&Rc::default(), &get("/api/v1/query?query=up", Some("tok")));
        let cfg = Config::from_json(cfg.as_bytes()).unwrap();
        Flow::new(Rc::new(Shared::new(cfg))).on_request_headers(&mut h);
        assert_eq!(status(&h), Some(403), "outside the prefix");
    }

    const RULES: &str = r#"{"status":"success","data":{"groups":[{"name":"g","rules":[
        {"name":"mine","labels":{"project_id":"p1"}},{"name":"theirs","labels":{"project_id":"p2"}}]}]}}"#;

    fn rule_names(body: &[u8]) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["data"]["groups"][0]["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn rules_answer_is_filtered() {
        let (mut h, mut f) = validated("/api/v1/rules", CFG);
        assert!(h.resumed);
        h.upstream_headers = vec![(":status".into(), "200".into()), ("content-length".into(), "999".into())];
        h.upstream_body = RULES.as_bytes().to_vec();
        assert_eq!(f.on_response_headers(&mut h), Action::Continue);
        assert_eq!(h.response_header("content-length"), None);
        assert_eq!(f.on_response_body(&mut h, 10, false), Action::Pause);
        assert_eq!(f.on_response_body(&mut h, RULES.len(), true), Action::Continue);
        assert_eq!(rule_names(&h.upstream_body), ["mine"]);
    }

    #[test]
    fn gzip_rules_answer_is_inflated_and_filtered() {
        let (mut h, mut f) = validated("/api/v1/rules", CFG);
        assert_eq!(h.header("accept-encoding"), None);
        let gz = {
            // A stored (uncompressed) deflate block inside a gzip member.
            let data = RULES.as_bytes();
            let mut g = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1];
            let n = data.len() as u16;
            g.extend_from_slice(&n.to_le_bytes());
            g.extend_from_slice(&(!n).to_le_bytes());
            g.extend_from_slice(data);
            g.extend_from_slice(&[0; 8]);
            g
        };
        h.upstream_headers = vec![(":status".into(), "200".into()), ("content-encoding".into(), "gzip".into())];
        h.upstream_body = gz.clone();
        f.on_response_headers(&mut h);
        assert_eq!(h.response_header("content-encoding"), None);
        f.on_response_body(&mut h, gz.len(), true);
        assert_eq!(rule_names(&h.upstream_body), ["mine"]);
    }

    #[test]
    fn unreadable_answers_are_replaced_by_an_error() {
        for (encoding, body) in [("br", RULES), ("identity", "not json")] {
            let (mut h, mut f) = validated("/api/v1/alerts", CFG);
            h.upstream_headers = vec![(":status".into(), "200".into()), ("content-encoding".into(), encoding.into())];
            h.upstream_body = body.as_bytes().to_vec();
            f.on_response_headers(&mut h);
            f.on_response_body(&mut h, body.len(), true);
            let v: serde_json::Value = serde_json::from_slice(&h.upstream_body).unwrap();
            assert_eq!(v["status"], "error", "{encoding}");
            // Later chunks are dropped.
            h.upstream_body.extend_from_slice(b"more");
            let n = h.upstream_body.len();
            f.on_response_body(&mut h, n, true);
            assert!(h.upstream_body.is_empty());
        }
    }

    #[test]
    fn cached_post_lets_headers_go_and_enforces_the_body() {
        let store = Rc::default();
        let sh = shared();
        let mut h = host(&store, &get("/api/v1/query?query=up", Some("tok")));
        let mut f = Flow::new(sh.clone());
        f.on_request_headers(&mut h);
        f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());

        let body = "query=a";
        let mut h = host(&store, &post("", body));
        h.body = body.as_bytes().to_vec();
        let mut f = Flow::new(sh);
        assert_eq!(f.on_request_headers(&mut h), Action::Continue);
        assert_eq!(h.header(":path"), Some("/api/v1/query?"), "path always carries its ?");
        assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Continue);
        assert_eq!(crate::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap()[0].value, r#"a{project_id="p1"}"#);
    }

    #[test]
    fn post_match_default_goes_where_prometheus_reads_it() {
        for (body, want_body_matches) in [("match[]=up", vec![r#"up{project_id="p1"}"#]), ("start=1", vec![r#"{project_id="p1"}"#])] {
            let mut headers = post("", body);
            headers[1].1 = "/api/v1/series".into();
            let mut h = host(&Rc::default(), &headers);
            h.body = body.as_bytes().to_vec();
            let mut f = Flow::new(shared());
            f.on_request_headers(&mut h);
            f.on_callout(&mut h, 1, Some(200), None, KS_OK.as_bytes());
            f.on_request_body(&mut h, body.len(), true);
            assert!(decoded_query(&h).is_empty(), "nothing added to the URL");
            let b = crate::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap();
            let got: Vec<&str> = b.iter().filter(|p| p.key == "match[]").map(|p| p.value.as_str()).collect();
            assert_eq!(got, want_body_matches);
        }
    }
}
