//! One request's journey through the steps of the filter, written against the [`Host`] trait
//! so it runs the same under Envoy, NGINX, and the mock host of the unit tests:
//! headers (route, credentials, which headers go) → scope (`auth::Scopes`: cache or Keystone)
//! → policy (`policy::decide`) → enforcement of the query string and the form body
//! (`enforce::params`) → upstream → filtering of the answer (`enforce::answers`).
//!
//! Host differences this code respects (see README, "Hosts"):
//! - whether a body follows: `content-length` and `transfer-encoding` announce one, but
//!   Envoy removes `transfer-encoding` before any filter runs, so a chunked or HTTP/2 body
//!   without a length shows only as `end_of_stream` false in the headers phase. NGINX
//!   always says false there and calls no body callback when there is no body, so that
//!   alone only makes a body possible: the filter then enforces one if it comes and keeps
//!   the query string safe on its own if it does not;
//! - a body that ends with trailers is refused (the filter never saw it end);
//! - `content-length` is dropped in the headers phase when the body may be rewritten;
//! - a replaced body is passed with the larger of the old and new lengths (NGINX keeps at
//!   most that many bytes of the new one);
//! - a removed header is overwritten in place first (NGINX still sends it);
//! - `:path` is always written with its `?`.

use crate::auth::credentials::{self, Credential, CredentialError};
use crate::auth::scope::Scope;
use crate::auth::{Attempt, Outcome, Scopes};
use crate::config::Config;
use crate::enforce::answers::AnswerContext;
use crate::enforce::answers::{self, Kind};
use crate::enforce::metadata::{NameSet, NamesCache};
use crate::enforce::params::Rewriter;
use crate::enforce::promql::Tenant;
use crate::enforce::rewrite_cache::RewriteCache;
use crate::enforce::routes::{self, Endpoint, MethodCheck, Route};
use crate::enforce::{BodyContext, Forward, Lookup};
use crate::error::ApiError;
use crate::host::{Action, CalloutAnswer, Host, Level, Wake};
use crate::metrics::Metric;
use crate::policy::{self, Access, Contract};
use crate::request::body::{Body, Framing, Step};
use crate::request::header_names::HeaderName;
use crate::request::headers::Headers;
use std::cell::RefCell;
use std::rc::Rc;

/// State shared by every request of one filter configuration in one VM (one worker).
#[derive(Debug)]
pub struct Shared {
    pub config: Config,
    /// The scope step of this worker.
    pub scopes: Scopes,
    /// The fast path: rewritten PromQL of this VM.
    pub rewrites: RefCell<RewriteCache>,
    /// Each tenant's metric names, for the metadata answer (this VM's).
    names: RefCell<NamesCache>,
    /// `Flow::cached_get` may serve requests (tests turn it off to compare it with the
    /// general path).
    cached_get: bool,
    /// How many requests it served.
    #[cfg(test)]
    cached_gets: std::cell::Cell<u64>,
    /// The configured tenant header, when it is not one of the known names every request
    /// is stripped of anyway (decided once here, not per request).
    tenant_header_to_strip: Option<String>,
    /// The known headers the policy's contracts may set (`policy::header_mask`): the
    /// client's copies are left to `Flow::admit`.
    sets: u64,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let rewrites = RefCell::new(RewriteCache::new(config.cache.rewrite_bytes));
        let tenant_header_to_strip = config
            .policy
            .tenant_header
            .clone()
            .filter(|h| !HeaderName::of(h).is_some_and(HeaderName::is_stripped));
        let sets = policy::header_mask(&config);
        Shared {
            scopes: Scopes::new(&config),
            rewrites,
            names: RefCell::new(NamesCache::new(
                config.metadata.ttl_seconds,
                config.metadata.cache_bytes,
            )),
            cached_get: true,
            #[cfg(test)]
            cached_gets: Default::default(),
            tenant_header_to_strip,
            sets,
            config,
        }
    }
}

/// Takes a header the client sent out of the request. NGINX only marks a removed header,
/// and its proxy module sends it all the same, so the value is first overwritten where it
/// lies (an upstream reads an empty value as no header). NGINX can't overwrite a second
/// copy, which is why a request with two copies of a header the filter strips is refused.
fn strip(host: &mut dyn Host, name: &str) {
    host.set_request_header(name, Some(""));
    host.set_request_header(name, None);
}

/// The body's type and encoding, as the endpoint's enforcer reads bodies.
fn check_body(route: Route, head: &Headers) -> Result<(), ApiError> {
    let text = |h| head.known(h).and_then(Result::ok);
    match route {
        Route::Enforced(endpoint) => endpoint.enforcer().check_body(
            text(HeaderName::ContentType),
            text(HeaderName::ContentEncoding),
        ),
        _ => Ok(()),
    }
}

/// Where a request is. Each host callback is a `match` on it.
#[derive(Debug)]
enum Phase {
    /// Before the headers, and a request that goes on without a decision (an open path).
    New,
    /// Waiting for the scope: this request's Keystone callout, or another's exchange.
    Authenticating(Attempt),
    /// The policy decided and the request went on; its body and its answer may follow.
    Admitted(Admitted),
    /// The filter answered itself: nothing else happens. The attempt stays for `on_done`
    /// (its callout may still be pending when the host cancels it).
    Answered(Option<Attempt>),
}

#[derive(Debug)]
struct Admitted {
    /// The tenant to enforce; `None`: unrestricted, or the tenant header does the job.
    tenant: Option<Rc<Tenant>>,
    /// How the answer is filtered (rules, alerts), once its headers came.
    answer: Option<ResponseFilter>,
    /// The tenant's metric names, once looked up (metadata).
    names: Option<Rc<NameSet>>,
}

impl Admitted {
    fn new(tenant: Option<Rc<Tenant>>) -> Admitted {
        Admitted {
            tenant,
            answer: None,
            names: None,
        }
    }
}

/// A lookup under way (`lookup`): the request waits for its answer.
#[derive(Debug)]
struct Pending {
    lookup: Lookup,
    callout: u32,
    /// The enforced body that goes once the lookup allows it, and the length of the body it
    /// replaces.
    body: Option<(Vec<u8>, usize)>,
}

/// What `Flow::enforce` leaves to do.
enum Next {
    /// Let the request go on.
    Go,
    /// Nothing to send on: the filter answers 204.
    Done,
    /// Look this up first (and then send this body).
    LookUp(Lookup, Option<(Vec<u8>, usize)>),
}

/// Per-request state.
pub struct Flow {
    shared: Rc<Shared>,
    /// This request's host context, to be woken by others.
    context_id: u32,
    /// The request's headers as they came (method, path and query string are read from
    /// them when needed, not copied).
    head: Headers,
    route: Route,
    phase: Phase,
    /// The body stage: whether a body follows, and the body until it is enforced.
    body: Body,
    /// How many PromQL parameters the query string had, once it is enforced.
    url_params: Option<usize>,
    /// Who sent the request, once Keystone has said (or the worker's caches knew): its log
    /// lines name them from then on (`log_about`).
    scope: Option<Rc<Scope>>,
    /// The endpoint's lookup has been made (or was not needed).
    looked_up: bool,
    /// A lookup whose answer the request waits for.
    pending: Option<Pending>,
}

/// The request's name in log lines: its `x-request-id` (printable ASCII, at most 64
/// characters), or its context. Written straight into the line.
struct LogId<'a>(Option<&'a str>, u32);

impl std::fmt::Display for LogId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write;
        match self.0 {
            Some(r) => r
                .chars()
                .filter(char::is_ascii_graphic)
                .take(64)
                .try_for_each(|c| f.write_char(c)),
            None => write!(f, "ctx-{}", self.1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseFilter {
    Plain(Kind),
    Gzip(Kind),
    Deflate(Kind),
    /// The answer can't be filtered (unknown encoding, too large): its body is replaced.
    Refuse(&'static str),
    /// An error already replaced the body; later chunks are dropped.
    Drop,
}

impl Flow {
    pub fn new(shared: Rc<Shared>, context_id: u32) -> Flow {
        Flow {
            shared,
            context_id,
            head: Headers::default(),
            route: Route::Denied,
            phase: Phase::New,
            body: Body::ignored(),
            url_params: None,
            scope: None,
            looked_up: false,
            pending: None,
        }
    }

    fn cfg(&self) -> &Config {
        &self.shared.config
    }

    /// A request header the filter reads (checked to be text in `on_request_headers`).
    fn header(&self, h: HeaderName) -> Option<&str> {
        self.head.known(h).and_then(Result::ok)
    }

    fn method(&self) -> &str {
        self.header(HeaderName::Method).unwrap_or("")
    }

    /// The path and the query string (without `?`) as the client sent them.
    fn path_and_query(&self) -> (&str, &str) {
        routes::split_path(self.header(HeaderName::Path).unwrap_or(""))
    }

    /// The request's name in log lines: its `x-request-id`, or its context.
    fn name(&self) -> LogId<'_> {
        LogId(self.header(HeaderName::RequestId), self.context_id)
    }

    fn log_id(&self) -> String {
        self.name().to_string()
    }

    /// `[<request id>] <what> user_id=… project_id=…: <detail>` once the request's sender is
    /// known (`domain_id=…` for a domain scope, `system` for a system scope: ids only, never a
    /// credential), `[<request id>] <what>: <detail>` before.
    fn log_about(&self, host: &dyn Host, level: Level, what: std::fmt::Arguments, detail: &str) {
        if !host.logs(level) {
            return;
        }
        let line = match &self.scope {
            Some(s) => format!("[{}] {what} {}: {detail}", self.name(), s.who()),
            None => format!("[{}] {what}: {detail}", self.name()),
        };
        host.log(level, &line);
    }

    /// One line per allowed request: `[<request id>] allowed <method> <path> user_id=…
    /// project_id=…` (the path without its query string), at DEBUG, not info, because it is
    /// not cheap where it is written: by A/B on the dashboard mix (bench/ab.py, Envoys at
    /// `--log-level info`) a line per request at info served ~14% fewer requests per
    /// CPU-second (0.855 of the module without it), the formatting and Envoy's write of the
    /// line together. Envoy's default level is info, so an info line would cost every default
    /// deployment that. The access log already names each request's user and tenant
    /// (`kpw_user`, `kpw_tenant`, see `identified`), which is where a per-request record
    /// belongs; this line is there for `--component-log-level wasm:debug`. It is formatted
    /// only when the host writes debug lines: the adapter reads the host's level on its 20 ms
    /// tick, so otherwise it costs a branch and no allocation, on the short path too
    /// (measured: 1.007 of the module without the audit, at warning).
    fn log_allowed(&self, host: &dyn Host) {
        let Some(scope) = self.scope.as_deref().filter(|_| host.logs(Level::Debug)) else {
            return;
        };
        let (path, _) = self.path_and_query();
        host.log(
            Level::Debug,
            &format!(
                "[{}] allowed {} {path} {}",
                self.name(),
                self.method(),
                scope.who()
            ),
        );
    }

    /// Keystone (or the worker's cache) has said who sent the request: its log lines name
    /// them from now on, and so does the host's access log (`Host::set_audit`).
    fn identified(&mut self, host: &mut dyn Host, scope: Rc<Scope>) {
        host.set_audit(scope.tenant_id(), &scope.user_id);
        self.scope = Some(scope);
    }

    fn refuse(&mut self, host: &mut dyn Host, e: ApiError) -> Action {
        // Each kind words a refusal as its clients act on it (a remote write sender retries a
        // 5xx, Alertmanager's clients read a JSON string).
        let kind = match self.route {
            Route::Enforced(endpoint) => Some(endpoint.enforcer()),
            _ => None,
        };
        let e = match kind {
            Some(kind) => kind.refusal(e),
            None => e,
        };
        self.log_about(
            host,
            Level::Info,
            format_args!("refused with {}", e.status),
            &e.message,
        );
        host.count(Metric::for_status(e.status));
        let body = match kind {
            Some(kind) => kind.refusal_body(&e),
            None => e.body(),
        };
        host.send_response(e.status, &e.response_headers(), &body);
        self.phase = match std::mem::replace(&mut self.phase, Phase::New) {
            Phase::Authenticating(a) | Phase::Answered(Some(a)) => Phase::Answered(Some(a)),
            _ => Phase::Answered(None),
        };
        Action::Pause
    }

    fn answered(&self) -> bool {
        matches!(self.phase, Phase::Answered(_))
    }

    /// `end_of_stream`: the host says no body follows (Envoy says so truly; NGINX never).
    pub fn on_request_headers(&mut self, host: &mut dyn Host, end_of_stream: bool) -> Action {
        let Some(head) = host.request_headers() else {
            return self.refuse(
                host,
                ApiError::unavailable("the proxy handed over unreadable request headers"),
            );
        };
        self.head = head;
        // Envoy's codec refuses these; NGINX hands over its decoded URI, and its
        // `proxy_pass …$uri` would write a CR, LF or space into the upstream request line
        // (a second request, unenforced).
        if self
            .head
            .known(HeaderName::Path)
            .and_then(Result::ok)
            .is_some_and(|p| p.bytes().any(|b| b <= b' ' || b == 0x7f))
        {
            return self.refuse(
                host,
                ApiError::bad_data("the path holds a control character or a space"),
            );
        }
        let token_digest = match self.cached_get(host) {
            Ok(action) => return action,
            Err(digest) => digest,
        };
        if !self.head.is_text() {
            // HTTP/1 allows any byte above 0x7F in a value; where the filter needs text, no.
            let not_text = self
                .head
                .known_present()
                .find(|h| h.is_read() && matches!(self.head.known(*h), Some(Err(_))));
            if let Some(h) = not_text {
                let name = h.as_str();
                return self.refuse(
                    host,
                    ApiError::bad_data(format!("the {name} header is not valid UTF-8")),
                );
            }
        }
        let (path, _) = self.path_and_query();
        let route = routes::classify(path, &routes::Paths::of(self.cfg()));
        if let MethodCheck::NotAllowed(allow) = routes::check_method(route, self.method()) {
            return self.refuse(host, ApiError::method_not_allowed(allow));
        }
        // Credentials never go upstream, and neither does any identity the client claims.
        let found = Credential::from_headers(|n| self.head.get(n).and_then(Result::ok));
        let consumed_authorization = matches!(&found, Ok(f) if f.from_authorization);
        let stripped = |h: HeaderName| {
            h.is_stripped() || (h == HeaderName::Authorization && consumed_authorization)
        };
        let tenant_header = self.shared.tenant_header_to_strip.as_deref();
        let repeated = self
            .head
            .known_present()
            .find(|h| self.head.repeated_mask() & h.bit() != 0 && stripped(*h));
        if let Some(name) = repeated
            .map(HeaderName::as_str)
            .or(tenant_header.filter(|h| self.head.count_of(h) > 1))
        {
            return self.refuse(
                host,
                ApiError::bad_data(format!(
                    "the request carries the {name} header more than once"
                )),
            );
        }
        // Headers the policy's contract may set wait for `admit`, which sets or strips them; a
        // request that goes on without a decision loses them here.
        let decides = matches!(route, Route::Enforced(_) | Route::Authenticated);
        let later = if decides { self.shared.sets } else { 0 };
        for h in self
            .head
            .known_present()
            .filter(|h| stripped(*h) && later & h.bit() == 0)
        {
            strip(host, h.as_str());
        }
        if let Some(h) = tenant_header.filter(|h| !decides && self.head.get(h).is_some()) {
            strip(host, h);
        }
        match route {
            Route::Open => return Action::Continue,
            Route::Denied => {
                let e = ApiError::forbidden(format!(
                    "{path} is not available through the Keystone filter: it is not an endpoint \
                     whose answer can be limited to your project"
                ));
                // Refused whatever the credential, so Keystone is not asked; but a credential
                // this worker's caches know is named in the log line and the access log.
                if let Ok(f) = &found {
                    if let Some(scope) =
                        self.shared
                            .scopes
                            .peek(&self.shared.config, host, &f.credential.digest())
                    {
                        self.identified(host, scope);
                    }
                }
                return self.refuse(host, e);
            }
            Route::Enforced(endpoint) if endpoint.enforcer().answer(self.method()).is_some() => {
                // Ask for an identity answer, overwriting the client's choice in place (NGINX
                // would still send a removed one); gzip and deflate are inflated all the same.
                host.set_request_header("accept-encoding", Some("identity"));
            }
            Route::Enforced(_) | Route::Authenticated => {}
        }
        self.route = route;
        let credential = match found {
            Ok(f) => f.credential,
            Err(CredentialError::Missing) => {
                return self.refuse(
                    host,
                    ApiError::unauthorized(
                        "authentication required: send a Keystone token in X-Auth-Token, or Basic auth \
                         as user@domain|project@domain",
                        &self.cfg().keystone.url,
                    ),
                )
            }
            Err(CredentialError::Malformed(why)) => {
                return self.refuse(host, ApiError::unauthorized(why, &self.cfg().keystone.url))
            }
        };

        // Only enforced endpoints need the body; passthrough bodies go as they are.
        let framing = Framing {
            enforced: self.method() == "POST" && matches!(route, Route::Enforced(_)),
            content_length: self.header(HeaderName::ContentLength),
            transfer_encoding: self.header(HeaderName::TransferEncoding).is_some(),
            end_of_stream,
        };
        let enforcer = match route {
            Route::Enforced(endpoint) => Some(endpoint.enforcer()),
            _ => None,
        };
        let max_body = enforcer.map_or(self.cfg().limits.max_body_bytes, |e| {
            e.max_body_bytes(self.cfg())
        });
        self.body = match Body::from_headers(framing, max_body) {
            Ok(body) => body,
            Err(e) => return self.refuse(host, e),
        };
        if self.method() == "POST"
            && enforcer.is_some_and(|e| e.needs_body())
            && !self.body.expected()
        {
            return self.refuse(host, ApiError::bad_data("the request has no body"));
        }
        // A POST without a body has no form for Prometheus to read, whatever its type;
        // where a body is only possible, its type is checked when one comes.
        if self.body.announced() {
            if let Err(e) = check_body(route, &self.head) {
                return self.refuse(host, e);
            }
        }
        if self.body.expected() {
            // The rewritten body has another length; the host recomputes framing.
            host.set_request_header("content-length", None);
        }
        // A digest `cached_get` already took is the X-Auth-Token's: it declines any request
        // that carries another credential header, and takes only tokens that need no trimming.
        let digest = match (&credential, token_digest) {
            (Credential::Token(_), Some(digest)) => digest,
            _ => credential.digest(),
        };
        let mut attempt = Attempt::new(
            self.context_id,
            self.log_id(),
            credential,
            consumed_authorization,
            digest,
        );
        let outcome = self
            .shared
            .scopes
            .find(&self.shared.config, host, &mut attempt);
        self.phase = Phase::Authenticating(attempt);
        self.on_outcome(host, outcome)
    }

    /// Goes on with what the scope step said.
    fn on_outcome(&mut self, host: &mut dyn Host, outcome: Outcome) -> Action {
        match outcome {
            Outcome::Scope(scope, decision) => {
                self.identified(host, scope.clone());
                self.admit(host, &scope, decision)
            }
            Outcome::Wait => Action::Pause,
            Outcome::Refused(e) => self.refuse(host, e),
        }
    }

    /// The common request, a GET with a token this worker knows (a dashboard's refresh):
    /// only what the general path would do for it (remove the token, count the cache hit,
    /// write the rewritten `:path`, count the request) and no more, because code that runs
    /// once per request between Envoy's own work costs several times what it costs in a
    /// loop (bench/README.md). Its conditions come from the tables the general path uses:
    /// the routes table and the endpoint's enforcer, and the contract the worker's cache
    /// holds for the credential (only a tenant to enforce, no headers to set or strip). A
    /// request with anything else the filter reads or strips, and any refusal, take the
    /// general path (`Err`, with the token's digest when it was taken, so that it is not taken
    /// twice). `flow::tests::short_path` holds the two paths equal.
    fn cached_get(&mut self, host: &mut dyn Host) -> Result<Action, Option<[u8; 32]>> {
        use HeaderName as H;
        const NEEDED: u64 = H::Method.bit() | H::Path.bit() | H::AuthToken.bit();
        // Read only to name the request in its log line.
        const HARMLESS: u64 = H::RequestId.bit();
        let present = self.head.known_mask();
        if !self.shared.cached_get
            || present & NEEDED != NEEDED
            || present & !(NEEDED | HARMLESS) != 0
            || self.head.repeated_mask() != 0
        {
            return Err(None);
        }
        // The general path refuses a header it reads that is not UTF-8; the three this path
        // reads below are `None` then, and so is the answer.
        if self.head.known(H::RequestId).is_some_and(|id| id.is_err()) {
            return Err(None);
        }
        if self.method() != "GET" {
            return Err(None);
        }
        let (path, _) = self.path_and_query();
        let Route::Enforced(endpoint) = routes::classify(path, &routes::Paths::of(self.cfg()))
        else {
            return Err(None);
        };
        if endpoint.enforcer().answer("GET").is_some()
            || endpoint.enforcer().lookup("GET", path).is_some()
        {
            return Err(None);
        }
        // As `check_token` takes it: a token with spaces around it goes the general way.
        let token = self
            .header(H::AuthToken)
            .filter(|t| credentials::is_token(t))
            .ok_or(None)?;
        let digest = Credential::token_digest(token);
        let declined = Err(Some(digest));
        let now = host.now_s();
        if now == 0 {
            return declined;
        }
        let Some(known) = self.shared.scopes.known(&digest, now) else {
            return declined;
        };
        // A contract is kept only with a scope, and only when it does not depend on the
        // request; this path takes one with nothing but a tenant to enforce.
        let (Some(Ok(contract)), Some(scope)) = (&known.contract, &known.scope) else {
            return declined;
        };
        let (Some(tenant), true) = (&contract.tenant, contract.headers.is_empty()) else {
            return declined;
        };
        let Ok(Some((new_path, params))) = self.query_path(endpoint, tenant) else {
            return declined;
        };
        strip(host, H::AuthToken.as_str());
        host.count(Metric::CacheHits);
        host.set_request_header(":path", Some(&new_path));
        host.count(Metric::RequestsAllowed);
        // The state the general path leaves for the request's later callbacks.
        self.route = Route::Enforced(endpoint);
        self.phase = Phase::Admitted(Admitted::new(Some(tenant.clone())));
        self.url_params = Some(params);
        // What the general path tells the host of the sender (an `Rc` clone, no allocation).
        self.identified(host, scope.clone());
        self.log_allowed(host);
        #[cfg(test)]
        self.shared
            .cached_gets
            .set(self.shared.cached_gets.get() + 1);
        Ok(Action::Continue)
    }

    /// A Keystone answer for this request, or the answer to its lookup.
    pub fn on_callout(&mut self, host: &mut dyn Host, id: u32, answer: &CalloutAnswer) {
        if self.pending.as_ref().is_some_and(|p| p.callout == id) {
            return self.on_lookup(host, answer);
        }
        let Phase::Authenticating(attempt) = &mut self.phase else {
            return;
        };
        let Some(outcome) =
            self.shared
                .scopes
                .on_callout(&self.shared.config, host, attempt, id, answer)
        else {
            return;
        };
        if self.on_outcome(host, outcome) == Action::Continue {
            self.resume(host);
        }
    }

    /// Another request's exchange ended (see [`Wake`]).
    pub fn on_wake(&mut self, host: &mut dyn Host, wake: &Wake) {
        let Phase::Authenticating(attempt) = &mut self.phase else {
            return;
        };
        let Some(outcome) = self
            .shared
            .scopes
            .on_wake(&self.shared.config, host, attempt, wake)
        else {
            return;
        };
        if self.on_outcome(host, outcome) == Action::Continue {
            self.resume(host);
        }
    }

    /// The callout this request still waits for: the host cancels it when the request
    /// ends early, and then no answer comes to say it is over.
    pub fn pending_callout(&self) -> Option<u32> {
        if let Some(p) = &self.pending {
            return Some(p.callout);
        }
        match &self.phase {
            Phase::Authenticating(a) | Phase::Answered(Some(a)) => a.pending_callout(),
            _ => None,
        }
    }

    /// The request is over (or abandoned): an exchange it ran must not strand waiters.
    pub fn on_done(&mut self, host: &mut dyn Host) {
        if let Phase::Authenticating(a) | Phase::Answered(Some(a)) = &mut self.phase {
            self.shared.scopes.on_done(host, a);
        }
    }

    pub fn on_request_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        if self.answered() {
            return Action::Pause;
        }
        let (route, head) = (self.route, &self.head);
        match self.body.on_data(body_size, end_of_stream, || check_body(route, head)) {
            Err(e) => return self.refuse(host, e),
            Ok(Step::Pass) => return Action::Continue,
            Ok(Step::Hold) => return Action::Pause,
            Ok(Step::Read) => match host.request_body(body_size) {
                Some(body) if body.len() == body_size => self.body.fill(body),
                None if body_size == 0 => self.body.fill(Vec::new()),
                // NGINX spools a body larger than `client_body_buffer_size` to a file, which
                // the filter can't read: it can't enforce what it does not see.
                _ => {
                    return self.refuse(
                        host,
                        ApiError::too_large(
                            "the proxy did not hand the whole request body to the filter (under NGINX, \
                             client_body_buffer_size must be at least the filter's body limit)",
                        ),
                    )
                }
            },
        }
        match self.phase {
            Phase::Admitted(_) => self.forward(host),
            // Keystone is still being asked (a host that delivers the body while the headers
            // wait): the answer admits the request and resumes it.
            _ => Action::Pause,
        }
    }

    /// Lets the paused request go on, unless part of its body is held: resuming would send
    /// that part upstream as it came (Envoy passes what a paused filter holds on to the next
    /// one and shows it only later pieces). The body callback that brings the end enforces
    /// the whole body and continues the request itself.
    fn resume(&mut self, host: &mut dyn Host) {
        if !self.body.held() {
            host.resume();
        }
    }

    /// A body that ends with trailers never reached `end_of_stream` in `on_request_body`,
    /// so the filter has not enforced it: refused, rather than let the host send it on.
    pub fn on_request_trailers(&mut self, host: &mut dyn Host) -> Action {
        if self.answered() {
            return Action::Pause;
        }
        match self.body.on_trailers() {
            Ok(()) => Action::Continue,
            Err(e) => self.refuse(host, e),
        }
    }

    /// Scope known: the policy's contract (the worker's cache has it for a credential without
    /// access rules), the identity and tenant headers go upstream, and the request goes on.
    fn admit(
        &mut self,
        host: &mut dyn Host,
        scope: &Scope,
        known: Option<Result<Rc<Contract>, ApiError>>,
    ) -> Action {
        let access = match self.route {
            Route::Enforced(Endpoint::Write) => Access::Write,
            _ => Access::Read,
        };
        // The worker's cache keeps the contract of reads.
        let contract = match known {
            Some(c) if access == Access::Read => c,
            _ => {
                // Access rules name paths relative to the service's endpoint, which includes the prefix.
                let (path, _) = self.path_and_query();
                let path = path
                    .strip_prefix(self.cfg().path_prefix.as_str())
                    .unwrap_or(path);
                policy::admit(self.cfg(), scope, access, self.method(), path)
            }
        };
        let contract = match contract {
            Ok(c) => c,
            Err(e) => return self.refuse(host, e),
        };
        // Each header is set where the client's copy lies (one value upstream on every
        // host), or stripped where the policy has no value for it.
        for (name, value) in &contract.headers {
            self.set_or_strip(host, name, value.as_deref());
        }
        self.phase = Phase::Admitted(Admitted::new(contract.tenant.clone()));
        self.forward(host)
    }

    fn set_or_strip(&self, host: &mut dyn Host, name: &str, value: Option<&str>) {
        match value {
            Some(v) => host.set_request_header(name, Some(v)),
            None if self.head.get(name).is_some() => strip(host, name),
            None => {}
        }
    }

    /// Enforces what has arrived and lets it go: the query string at once, the body when it
    /// is whole. Envoy holds the body back while the headers are paused, so the headers go
    /// on first and the body follows through its own callback.
    fn forward(&mut self, host: &mut dyn Host) -> Action {
        let Phase::Admitted(admitted) = &self.phase else {
            return self.refuse(host, ApiError::unavailable("internal state error"));
        };
        if self.pending.is_some() {
            return Action::Pause;
        }
        let result = match (self.route, admitted.tenant.clone()) {
            (Route::Enforced(endpoint), tenant)
                if tenant.is_some() || endpoint.enforcer().every_scope() =>
            {
                self.enforce(host, endpoint, tenant.as_deref())
            }
            // Unrestricted, or the tenant header does the job.
            (Route::Enforced(_) | Route::Authenticated, _) => Ok(Next::Go),
            (Route::Open | Route::Denied, _) => Err(ApiError::forbidden("not allowed")),
        };
        match result {
            Ok(Next::LookUp(lookup, body)) => self.look_up(host, lookup, body),
            Ok(Next::Done) => {
                // Done, and nothing to send on: the filter answers as the upstream would.
                host.count(Metric::RequestsAllowed);
                self.log_allowed(host);
                host.send_response(204, &[], b"");
                self.phase = Phase::Answered(None);
                Action::Pause
            }
            Ok(Next::Go) => {
                // Counted once the whole request has passed (a body may still be refused).
                if self.body.complete() {
                    host.count(Metric::RequestsAllowed);
                    self.log_allowed(host);
                }
                Action::Continue
            }
            Err(e) => self.refuse(host, e),
        }
    }

    /// The rewriting of one request's parameters.
    fn rewriter<'a>(&'a self, tenant: &'a Tenant, cache: &'a mut RewriteCache) -> Rewriter<'a> {
        Rewriter {
            tenant,
            limits: &self.shared.config.limits,
            cache,
        }
    }

    /// The rewritten `:path`, and how many selecting parameters its query string holds (a
    /// default `match[]` included); `None` where the endpoint leaves the request line alone.
    fn query_path(
        &self,
        endpoint: Endpoint,
        tenant: &Tenant,
    ) -> Result<Option<(String, usize)>, ApiError> {
        let mut cache = self.shared.rewrites.borrow_mut();
        let mut rw = self.rewriter(tenant, &mut cache);
        let (path, query) = self.path_and_query();
        let mut new_path = String::with_capacity(path.len() + query.len() + 96);
        new_path.push_str(path);
        new_path.push('?');
        let n = endpoint
            .enforcer()
            .query(&mut rw, &mut new_path, query, self.body.announced())?;
        Ok(n.map(|n| (new_path, n)))
    }

    /// The endpoint's enforcer on what has arrived: the request line once (where there is a
    /// tenant), what the endpoint must look up first (once), the body when whole.
    fn enforce(
        &mut self,
        host: &mut dyn Host,
        endpoint: Endpoint,
        tenant: Option<&Tenant>,
    ) -> Result<Next, ApiError> {
        if let (None, Some(tenant)) = (self.url_params, tenant) {
            if let Some((new_path, n)) = self.query_path(endpoint, tenant)? {
                host.set_request_header(":path", Some(&new_path));
                self.url_params = Some(n);
            }
        }
        if let (false, Some(tenant)) = (self.looked_up, tenant) {
            self.looked_up = true;
            let (path, _) = self.path_and_query();
            match endpoint.enforcer().lookup(self.method(), path) {
                None => {}
                Some(Lookup::MetricNames) => {
                    let known = self
                        .shared
                        .names
                        .borrow_mut()
                        .get(tenant.key(), host.now_s());
                    match known {
                        Some(names) => self.set_names(names),
                        None => return Ok(Next::LookUp(Lookup::MetricNames, None)),
                    }
                }
                Some(lookup) => return Ok(Next::LookUp(lookup, None)),
            }
        }
        let Some(body) = self.body.take() else {
            return Ok(Next::Go);
        };
        let mut cache = self.shared.rewrites.borrow_mut();
        let cx = BodyContext {
            tenant,
            config: &self.shared.config,
            cache: &mut cache,
            content_type: self.header(HeaderName::ContentType),
        };
        match endpoint
            .enforcer()
            .body(cx, &body, self.url_params.unwrap_or(0))?
        {
            Forward::Body(new_body) => {
                // NGINX keeps only `size` bytes of the new body, Envoy drains `size` bytes of
                // the old one: the larger of the two replaces the whole body on both.
                host.set_request_body(body.len().max(new_body.len()), &new_body);
                Ok(Next::Go)
            }
            Forward::Nothing => Ok(Next::Done),
            Forward::After(new_body, lookup) => {
                Ok(Next::LookUp(lookup, Some((new_body, body.len()))))
            }
        }
    }

    fn set_names(&mut self, names: Rc<NameSet>) {
        if let Phase::Admitted(admitted) = &mut self.phase {
            admitted.names = Some(names);
        }
    }

    /// Sends `lookup`'s callout; the request waits for its answer (`on_lookup`).
    fn look_up(
        &mut self,
        host: &mut dyn Host,
        lookup: Lookup,
        body: Option<(Vec<u8>, usize)>,
    ) -> Action {
        let Phase::Admitted(Admitted {
            tenant: Some(tenant),
            ..
        }) = &self.phase
        else {
            return self.refuse(
                host,
                ApiError::unavailable("internal state error: a lookup without a tenant"),
            );
        };
        let call = lookup::call(self.cfg(), &lookup, tenant);
        let headers: Vec<(&str, &str)> =
            call.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        match host.dispatch(&call.upstream, &headers, None, call.timeout_ms) {
            Ok(callout) => {
                self.pending = Some(Pending {
                    lookup,
                    callout,
                    body,
                });
                Action::Pause
            }
            Err(e) => {
                self.log_about(
                    host,
                    Level::Warn,
                    format_args!("lookup not sent"),
                    &format!("to {}: {e}", call.upstream),
                );
                self.refuse(
                    host,
                    ApiError::unavailable(format!(
                        "{} could not be reached; try again later",
                        call.upstream
                    )),
                )
            }
        }
    }

    /// The answer to this request's lookup: it goes on (with its body), or is refused.
    fn on_lookup(&mut self, host: &mut dyn Host, answer: &CalloutAnswer) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let Phase::Admitted(Admitted {
            tenant: Some(tenant),
            ..
        }) = &self.phase
        else {
            return;
        };
        let max = self.cfg().limits.max_response_bytes;
        match lookup::judge(&pending.lookup, tenant, answer, max) {
            Ok(lookup::Found::Allowed) => {}
            Ok(lookup::Found::Names(list)) => {
                let names = self
                    .shared
                    .names
                    .borrow_mut()
                    .insert(tenant.key(), list, host.now_s());
                self.set_names(names);
            }
            Err(e) => {
                self.refuse(host, e);
                return;
            }
        }
        if let Some((body, old_len)) = pending.body {
            host.set_request_body(old_len.max(body.len()), &body);
        }
        if self.forward(host) == Action::Continue {
            self.resume(host);
        }
    }

    pub fn on_response_headers(&mut self, host: &mut dyn Host) -> Action {
        let Some(kind) = (match self.route {
            Route::Enforced(endpoint) => endpoint.enforcer().answer(self.method()),
            _ => None,
        }) else {
            return Action::Continue;
        };
        let Phase::Admitted(Admitted {
            tenant: Some(_),
            answer,
            ..
        }) = &mut self.phase
        else {
            return Action::Continue;
        };
        // Prometheus errors carry no tenant data; an answer without a status (a host that
        // does not give one) is filtered all the same.
        if host.response_header(":status").is_some_and(|s| s != "200") {
            return Action::Continue;
        }
        let encoding = host
            .response_header("content-encoding")
            .map(|e| e.trim().to_ascii_lowercase());
        *answer = Some(match encoding.as_deref() {
            None | Some("") | Some("identity") => ResponseFilter::Plain(kind),
            Some("gzip") | Some("x-gzip") => ResponseFilter::Gzip(kind),
            Some("deflate") => ResponseFilter::Deflate(kind),
            Some(_) => {
                ResponseFilter::Refuse("the upstream answer has an encoding the filter cannot read")
            }
        });
        host.set_response_header("content-encoding", None);
        host.set_response_header("content-length", None);
        Action::Continue
    }

    pub fn on_response_body(
        &mut self,
        host: &mut dyn Host,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let max = self.shared.config.limits.max_response_bytes;
        let Phase::Admitted(Admitted {
            tenant: Some(tenant),
            answer: Some(mode),
            names,
        }) = &mut self.phase
        else {
            return Action::Continue;
        };
        let (_, query) = routes::split_path(
            self.head
                .known(HeaderName::Path)
                .and_then(Result::ok)
                .unwrap_or(""),
        );
        let result = match *mode {
            ResponseFilter::Drop => {
                host.set_response_body(body_size, b"");
                return Action::Continue;
            }
            ResponseFilter::Refuse(why) => Err(why.to_string()),
            _ if body_size > max => Err(format!(
                "the upstream answer is larger than {max} bytes (limits.max_response_bytes)"
            )),
            _ if !end_of_stream => return Action::Pause,
            ResponseFilter::Plain(kind)
            | ResponseFilter::Gzip(kind)
            | ResponseFilter::Deflate(kind) => {
                let raw = host.response_body(body_size).unwrap_or_default();
                let plain = match *mode {
                    ResponseFilter::Gzip(_) => answers::gunzip(&raw, max),
                    ResponseFilter::Deflate(_) => answers::inflate(&raw, max),
                    _ => Ok(raw),
                };
                let cx = AnswerContext {
                    tenant,
                    names: names.as_deref(),
                    query,
                    max_bytes: max,
                };
                plain.and_then(|p| answers::filter_answer(kind, &p, &cx))
            }
        };
        // The larger size replaces the whole body on every host (see `enforce_params`).
        match result {
            Ok(body) => host.set_response_body(body_size.max(body.len()), &body),
            Err(why) => {
                // Headers are gone already: the body becomes the error, nothing else passes.
                let e = ApiError::new(502, "internal", format!("{why}; nothing of it is shown"));
                let body = e.body();
                host.set_response_body(body_size.max(body.len()), &body);
                *mode = ResponseFilter::Drop;
                self.log_about(
                    host,
                    Level::Warn,
                    format_args!("upstream answer not filtered"),
                    &why,
                );
            }
        }
        Action::Continue
    }

    /// An answer being filtered that ends with trailers never reached its end in
    /// `on_response_body`, and the host would send what it holds unfiltered: a local
    /// answer instead, which, the headers being gone, makes the host reset the stream.
    pub fn on_response_trailers(&mut self, host: &mut dyn Host) -> Action {
        let Phase::Admitted(Admitted {
            answer: Some(mode), ..
        }) = &mut self.phase
        else {
            return Action::Continue;
        };
        if *mode == ResponseFilter::Drop {
            return Action::Continue;
        }
        let e = ApiError::new(
            502,
            "internal",
            "the upstream answer ended with trailers; nothing of it is shown",
        );
        host.send_response(e.status, &e.response_headers(), &e.body());
        *mode = ResponseFilter::Drop;
        self.log_about(
            host,
            Level::Warn,
            format_args!("upstream answer not filtered"),
            "it ended with trailers",
        );
        Action::Pause
    }
}

mod lookup;

#[cfg(test)]
mod tests;
