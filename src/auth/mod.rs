//! Credentials and scope: who the client is and what it may see.
//!
//! [`Scopes`] is the scope step of one worker. A request hands it an [`Attempt`] (its
//! credential) and gets an [`Outcome`]: the scope, "wait", or a refusal. Everything between
//! lives here: this worker's copy of recent answers (`local_cache`), the scope cache in shared
//! data (`shared_cache`: slot keys, the entries, compare-and-swap writes), the negative cache,
//! the Keystone exchange (`keystone`: a token validation or request, an optional service login,
//! an optional sub-project lookup), and the table of exchanges in flight with the requests
//! that wait for them. At most one exchange per credential runs on a worker at a time; the
//! others wait and are woken when it ends, on a host that can run a callback as another
//! request (`Host::switches_context`). Where it can't (NGINX), each request runs its own.

pub mod credentials;
pub mod explain;
pub mod keystone;
pub mod local_cache;
pub mod scope;
pub mod shared_cache;

use crate::config::Config;
use crate::error::ApiError;
use crate::host::{CalloutAnswer, Host, Level};
use crate::metrics::Metric;
use crate::policy::{self, Access, Contract};
use credentials::Credential;
use keystone::{Answer, AuthFailure, Callout};
use local_cache::{Known, LocalCache};
use scope::Scope;
use shared_cache::Lookup;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// What a waiting request is told when the exchange it waited for ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// The exchange succeeded: this is the credential's scope.
    Scope(Rc<Scope>),
    /// Look again and ask Keystone if need be (a service login ended, or the request
    /// running the exchange went away). This may dispatch a callout, so the adapter
    /// runs it from a callback of the waiter's own or of the root context.
    Retry,
    /// The exchange failed; answer with this.
    Fail(ApiError),
}

/// What the scope step answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The scope, and the policy's contract when it does not depend on the request (no
    /// access rules): a request of a known credential does not decide again.
    Scope(Rc<Scope>, Option<Result<Rc<Contract>, ApiError>>),
    /// A callout, this request's or another's, is under way: the request pauses until
    /// `on_callout` or `on_wake` brings the outcome.
    Wait,
    /// The credential is refused, or its scope can't be had now.
    Refused(ApiError),
}

/// Which callout an attempt waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    ServiceLogin,
    /// Validation (200) or token request (201).
    Token {
        ok: u16,
        with_service_token: bool,
    },
    Subtree,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    No,
    /// For another request's exchange of the same credential.
    Credential,
    /// For another request's service login.
    ServiceLogin,
}

/// One request's way to its scope: its credential, and the exchange it runs or waits for.
#[derive(Debug)]
pub struct Attempt {
    /// The request's host context, to be woken by others.
    context_id: u32,
    /// The request's name in log lines.
    log_id: String,
    credential: Credential,
    /// The credential came from the `Authorization` header (a 401 says which form was read).
    from_authorization: bool,
    digest: [u8; 32],
    /// This attempt runs the exchange for its credential (others may wait on it).
    owner: bool,
    waiting: Waiting,
    /// The callout it waits for, and when it was sent (ms).
    callout: Option<(u32, Pending, u64)>,
    retried_service_login: bool,
    /// The token to look sub-projects up with (the user's, or the one just issued).
    issued_token: Option<String>,
    /// A scope from Keystone waiting for its sub-projects.
    partial: Option<Scope>,
}

impl Attempt {
    /// `digest` is the credential's (`Credential::digest`), taken once by the caller;
    /// `from_authorization`: it came from the `Authorization` header (Bearer or Basic).
    pub fn new(
        context_id: u32,
        log_id: String,
        credential: Credential,
        from_authorization: bool,
        digest: [u8; 32],
    ) -> Attempt {
        Attempt {
            context_id,
            log_id,
            credential,
            from_authorization,
            digest,
            owner: false,
            waiting: Waiting::No,
            callout: None,
            retried_service_login: false,
            issued_token: None,
            partial: None,
        }
    }

    /// The callout this attempt still waits for: the host cancels it when the request
    /// ends early, and then no answer comes to say it is over.
    pub fn pending_callout(&self) -> Option<u32> {
        self.callout.map(|(token, _, _)| token)
    }

    fn log(&self, host: &dyn Host, level: Level, msg: &str) {
        host.log(level, &format!("[{}] {msg}", self.log_id));
    }
}

/// The scope step of one worker (one filter configuration in one VM).
#[derive(Debug)]
pub struct Scopes {
    /// Separates the shared cache of configurations that share a VM id.
    namespace: String,
    /// Exchanges in flight, by credential digest: the contexts waiting for each.
    inflight: RefCell<HashMap<[u8; 32], Vec<u32>>>,
    /// A service login in flight: the contexts waiting for it.
    service_login: RefCell<Option<Vec<u32>>>,
    /// This worker's copy of recent scope-cache entries.
    local: RefCell<LocalCache>,
}

impl Scopes {
    pub fn new(config: &Config) -> Scopes {
        // Filters that share a VM id share the cache: every setting that changes what is
        // stored (which Keystone, as whom, sub-projects, lifetimes) separates it.
        let c = config;
        let ns = Credential::Token(format!(
            "{:?}|{}|{}|{}|{}",
            c.keystone,
            c.project_label,
            c.policy.include_subprojects,
            c.cache.ttl_seconds,
            c.cache.negative_ttl_seconds
        ))
        .digest();
        Scopes {
            namespace: shared_cache::hex(&ns[..6]),
            inflight: RefCell::default(),
            service_login: RefCell::default(),
            // As many entries per generation as the shared cache has slots, up to 4096.
            local: RefCell::new(LocalCache::new(
                (config.cache.max_entries as usize).min(4096),
            )),
        }
    }

    /// The shared-data namespace of this configuration's entries.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// What this worker already knows of a credential, if it is fresh: the cheapest lookup.
    pub fn known(&self, digest: &[u8; 32], now: u64) -> Option<Rc<Known>> {
        self.local.borrow_mut().get(digest, now)
    }

    fn slot_key(&self, cfg: &Config, digest: &[u8; 32]) -> String {
        shared_cache::slot_key(&self.namespace, digest, cfg.cache.max_entries)
    }

    /// The scope of the attempt's credential: this worker's cache, shared data, then (on a
    /// miss) Keystone, unless another request of this worker asks already.
    pub fn find(&self, cfg: &Config, host: &mut dyn Host, a: &mut Attempt) -> Outcome {
        let now = host.now_s();
        if now == 0 {
            // A host whose clock fails would make every cached entry look fresh.
            return Outcome::Refused(ApiError::unavailable("the proxy's clock cannot be read"));
        }
        if let Some(known) = self.known(&a.digest, now) {
            host.count(Metric::CacheHits);
            return self.outcome(cfg, a, &known);
        }
        let known = match self.shared_lookup(cfg, &*host, &a.digest, now) {
            Lookup::Valid(scope, until) => {
                self.remember(cfg, a.digest, Some(Rc::new(scope)), until)
            }
            Lookup::Invalid(until) => self.remember(cfg, a.digest, None, until),
            Lookup::Miss => {
                host.count(Metric::CacheMisses);
                return self.ask_keystone(cfg, host, a);
            }
        };
        host.count(Metric::CacheHits);
        self.outcome(cfg, a, &known)
    }

    fn outcome(&self, cfg: &Config, a: &Attempt, known: &Known) -> Outcome {
        match &known.scope {
            Some(scope) => Outcome::Scope(scope.clone(), known.contract.clone()),
            None => Outcome::Refused(invalid(
                cfg,
                &explain::refused_recently(
                    &a.credential,
                    a.from_authorization,
                    cfg.cache.negative_ttl_seconds,
                ),
            )),
        }
    }

    /// The scope this worker or shared data already holds for a credential, if it is fresh,
    /// without asking Keystone or counting a lookup: to name who sent a request that is
    /// refused before its credential is checked (a denied path).
    pub fn peek(&self, cfg: &Config, host: &dyn Host, digest: &[u8; 32]) -> Option<Rc<Scope>> {
        let now = host.now_s();
        if now == 0 {
            return None;
        }
        if let Some(known) = self.known(digest, now) {
            return known.scope.clone();
        }
        match self.shared_lookup(cfg, host, digest, now) {
            Lookup::Valid(scope, _) => Some(Rc::new(scope)),
            _ => None,
        }
    }

    /// The credential's entry in shared data, if its slot holds it.
    fn shared_lookup(&self, cfg: &Config, host: &dyn Host, digest: &[u8; 32], now: u64) -> Lookup {
        match host.shared_get(&self.slot_key(cfg, digest)) {
            (Some(bytes), _) => shared_cache::decode(&bytes, digest, now),
            _ => Lookup::Miss,
        }
    }

    /// Runs the exchange, or waits for the one another request runs for the same credential.
    fn ask_keystone(&self, cfg: &Config, host: &mut dyn Host, a: &mut Attempt) -> Outcome {
        if host.switches_context() {
            let mut inflight = self.inflight.borrow_mut();
            if let Some(waiters) = inflight.get_mut(&a.digest) {
                waiters.push(a.context_id);
                a.waiting = Waiting::Credential;
                drop(inflight);
                a.log(
                    host,
                    Level::Debug,
                    "waiting for the same credential's Keystone answer",
                );
                return Outcome::Wait;
            }
            inflight.insert(a.digest, Vec::new());
            a.owner = true;
        }
        // Else nothing could wake this request from another's callout: it asks itself.
        let outcome = self.exchange(cfg, host, a);
        self.settle(host, a, &outcome);
        outcome
    }

    /// Keeps what shared data (or Keystone) said in this worker's local cache, with the
    /// policy's contract when it does not depend on the request.
    fn remember(
        &self,
        cfg: &Config,
        digest: [u8; 32],
        scope: Option<Rc<Scope>>,
        until: u64,
    ) -> Rc<Known> {
        let contract = scope
            .as_ref()
            .filter(|s| s.access_rules.is_none())
            .map(|s| policy::admit(cfg, s, Access::Read, "", ""));
        let known = Rc::new(Known {
            until,
            scope,
            contract,
        });
        self.local.borrow_mut().insert(digest, known.clone());
        known
    }

    /// The first callout of the exchange: a token request, or a validation (after a
    /// service login when service credentials are configured).
    fn exchange(&self, cfg: &Config, host: &mut dyn Host, a: &mut Attempt) -> Outcome {
        let ks = &cfg.keystone;
        let call = match &a.credential {
            Credential::Token(token) => {
                let service_token = match (&ks.service_token, &ks.service_credentials) {
                    (Some(t), _) => Some(t.clone()),
                    (None, Some(_)) => match self.service_token(host) {
                        Some(t) => Some(t),
                        None => return self.service_login(cfg, host, a),
                    },
                    (None, None) => None,
                };
                a.issued_token = Some(token.clone());
                let with_service_token = service_token.is_some();
                let call = keystone::validation_request(ks, token, service_token.as_deref());
                return self.send(
                    host,
                    a,
                    call,
                    Pending::Token {
                        ok: 200,
                        with_service_token,
                    },
                );
            }
            c => keystone::auth_request(ks, c),
        };
        match call {
            Some(call) => self.send(
                host,
                a,
                call,
                Pending::Token {
                    ok: 201,
                    with_service_token: false,
                },
            ),
            None => Outcome::Refused(ApiError::unavailable("no credential to validate")),
        }
    }

    fn service_token(&self, host: &dyn Host) -> Option<String> {
        let (bytes, _) = host.shared_get(&shared_cache::service_key(&self.namespace));
        shared_cache::decode_service_token(&bytes?, host.now_s())
    }

    fn service_login(&self, cfg: &Config, host: &mut dyn Host, a: &mut Attempt) -> Outcome {
        let can_wait = host.switches_context();
        if let Some(waiters) = self
            .service_login
            .borrow_mut()
            .as_mut()
            .filter(|_| can_wait)
        {
            waiters.push(a.context_id);
            a.waiting = Waiting::ServiceLogin;
            return Outcome::Wait;
        }
        let Some(creds) = &cfg.keystone.service_credentials else {
            // Only a configured `keystone.service_token` that Keystone refused comes here.
            return Outcome::Refused(ApiError::unavailable(
                "Keystone refused keystone.service_token, and there are no service_credentials to log in with",
            ));
        };
        let call = keystone::service_auth_request(&cfg.keystone, creds);
        let outcome = self.send(host, a, call, Pending::ServiceLogin);
        // Others wait for this login only once it is under way (a login that could not even
        // be sent must not leave them waiting for an answer that never comes), and only where
        // they can be woken: on NGINX each request logs in itself.
        if a.callout.is_some() && can_wait {
            *self.service_login.borrow_mut() = Some(Vec::new());
        }
        outcome
    }

    fn send(
        &self,
        host: &mut dyn Host,
        a: &mut Attempt,
        call: Callout,
        pending: Pending,
    ) -> Outcome {
        let headers: Vec<(&str, &str)> =
            call.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        host.count(Metric::KeystoneCallouts);
        match host.dispatch(
            &call.upstream,
            &headers,
            call.body.as_deref(),
            call.timeout_ms,
        ) {
            Ok(id) => {
                a.callout = Some((id, pending, host.now_ms()));
                Outcome::Wait
            }
            Err(e) => {
                a.log(
                    host,
                    Level::Warn,
                    &format!("callout to {} failed: {e}", call.upstream),
                );
                Outcome::Refused(ApiError::unavailable(
                    "Keystone could not be reached; try again later",
                ))
            }
        }
    }

    /// A Keystone answer for this attempt; `None` if it is not the one it waits for.
    pub fn on_callout(
        &self,
        cfg: &Config,
        host: &mut dyn Host,
        a: &mut Attempt,
        id: u32,
        answer: &CalloutAnswer,
    ) -> Option<Outcome> {
        let (expected, pending, started) = a.callout?;
        if expected != id {
            return None;
        }
        a.callout = None;
        let now_ms = host.now_ms();
        let elapsed = now_ms.saturating_sub(started);
        host.record(Metric::KeystoneCalloutMs, elapsed);
        let ans = Answer {
            status: answer.status,
            dispatch_status: answer.dispatch_status.as_deref(),
            timed_out: answer.status.is_none() && elapsed + 50 >= cfg.keystone.timeout_ms,
            body: &answer.body,
        };
        let now = now_ms / 1000;
        let outcome = match pending {
            Pending::ServiceLogin => {
                self.on_service_login(cfg, host, a, &ans, answer.subject_token.as_deref(), now)
            }
            Pending::Token {
                with_service_token: true,
                ..
            } if ans.status == Some(401) && !a.retried_service_login => {
                // 401 is about the X-Auth-Token: the service token went stale. Log in again, once.
                a.retried_service_login = true;
                host.shared_set(&shared_cache::service_key(&self.namespace), b"", None);
                self.service_login(cfg, host, a)
            }
            Pending::Token { ok, .. } => match keystone::parse_token_answer(&ans, ok, now) {
                Ok(scope) => {
                    if ok == 201 {
                        a.issued_token = answer.subject_token.clone();
                    }
                    self.on_scope(cfg, host, a, scope)
                }
                Err(f) => self.fail(cfg, host, a, f),
            },
            Pending::Subtree => match (keystone::parse_subtree(&ans), a.partial.take()) {
                (Ok(ids), Some(mut scope)) => {
                    scope.subprojects = ids;
                    self.store(cfg, host, a, scope)
                }
                (Err(f), _) => self.fail(cfg, host, a, f),
                (Ok(_), None) => Outcome::Refused(ApiError::unavailable("internal state error")),
            },
        };
        self.settle(host, a, &outcome);
        Some(outcome)
    }

    fn on_service_login(
        &self,
        cfg: &Config,
        host: &mut dyn Host,
        a: &mut Attempt,
        ans: &Answer,
        subject: Option<&str>,
        now: u64,
    ) -> Outcome {
        let waiters = self.service_login.borrow_mut().take().unwrap_or_default();
        match keystone::parse_service_token(ans, subject, now) {
            Ok((token, expires_at)) => {
                let key = shared_cache::service_key(&self.namespace);
                let (_, cas) = host.shared_get(&key);
                host.shared_set(
                    &key,
                    &shared_cache::encode_service_token(&token, expires_at, now),
                    cas,
                );
                host.wake(&waiters, &Wake::Retry);
                self.exchange(cfg, host, a)
            }
            Err(f) => {
                let e = self.failure_error(cfg, host, a, f);
                host.wake(&waiters, &Wake::Fail(e.clone()));
                Outcome::Refused(e)
            }
        }
    }

    /// A scope from Keystone: look the sub-projects up if asked to, then store it.
    fn on_scope(
        &self,
        cfg: &Config,
        host: &mut dyn Host,
        a: &mut Attempt,
        scope: Scope,
    ) -> Outcome {
        if cfg.policy.include_subprojects && !scope.domain_scoped {
            if let (Some(project), Some(token)) = (scope.project_id.clone(), a.issued_token.clone())
            {
                let call = keystone::subtree_request(&cfg.keystone, &project, &token);
                a.partial = Some(scope);
                return self.send(host, a, call, Pending::Subtree);
            }
        }
        self.store(cfg, host, a, scope)
    }

    fn store(&self, cfg: &Config, host: &mut dyn Host, a: &mut Attempt, scope: Scope) -> Outcome {
        let now = host.now_ms() / 1000;
        let key = self.slot_key(cfg, &a.digest);
        let until = shared_cache::until(&scope, now, cfg.cache.ttl_seconds);
        let value = shared_cache::encode(&a.digest, &scope, until);
        let (_, cas) = host.shared_get(&key);
        if !host.shared_set(&key, &value, cas) {
            a.log(
                host,
                Level::Debug,
                "scope cache slot changed under us; not stored",
            );
        }
        let known = self.remember(cfg, a.digest, Some(Rc::new(scope)), until);
        self.outcome(cfg, a, &known)
    }

    fn failure_error(
        &self,
        cfg: &Config,
        host: &dyn Host,
        a: &Attempt,
        f: AuthFailure,
    ) -> ApiError {
        match f {
            AuthFailure::Invalid(r) => invalid(
                cfg,
                &explain::refused(&a.credential, a.from_authorization, &r),
            ),
            AuthFailure::Forbidden(m) => ApiError::forbidden(m),
            AuthFailure::Unavailable(m) => {
                a.log(host, Level::Warn, &m);
                ApiError::unavailable(m)
            }
            AuthFailure::Timeout(m) => {
                a.log(host, Level::Warn, &m);
                ApiError::timeout(m)
            }
        }
    }

    fn fail(&self, cfg: &Config, host: &mut dyn Host, a: &mut Attempt, f: AuthFailure) -> Outcome {
        let negative_ttl = cfg.cache.negative_ttl_seconds;
        if matches!(f, AuthFailure::Invalid(_)) && negative_ttl > 0 {
            // A client in a retry loop must not hammer Keystone.
            let key = self.slot_key(cfg, &a.digest);
            let until = host.now_ms() / 1000 + negative_ttl;
            let (_, cas) = host.shared_get(&key);
            host.shared_set(&key, &shared_cache::encode_invalid(&a.digest, until), cas);
            self.remember(cfg, a.digest, None, until);
        }
        Outcome::Refused(self.failure_error(cfg, host, a, f))
    }

    /// An outcome that ends the exchange ends this attempt's ownership of it: the waiters
    /// get the same scope or error.
    fn settle(&self, host: &mut dyn Host, a: &mut Attempt, outcome: &Outcome) {
        let wake = match outcome {
            Outcome::Wait => return,
            Outcome::Scope(scope, _) => Wake::Scope(scope.clone()),
            Outcome::Refused(e) => Wake::Fail(e.clone()),
        };
        self.release(host, a, &wake);
    }

    fn release(&self, host: &mut dyn Host, a: &mut Attempt, wake: &Wake) {
        if !a.owner {
            return;
        }
        a.owner = false;
        let waiters = self
            .inflight
            .borrow_mut()
            .remove(&a.digest)
            .unwrap_or_default();
        if !waiters.is_empty() {
            host.wake(&waiters, wake);
        }
    }

    /// Another request's exchange ended (see [`Wake`]); `None` if this attempt was not waiting.
    pub fn on_wake(
        &self,
        cfg: &Config,
        host: &mut dyn Host,
        a: &mut Attempt,
        wake: &Wake,
    ) -> Option<Outcome> {
        let waited = std::mem::replace(&mut a.waiting, Waiting::No);
        Some(match (waited, wake) {
            (Waiting::No, _) => return None,
            (_, Wake::Fail(e)) => Outcome::Refused(e.clone()),
            (_, Wake::Scope(scope)) => {
                // The owner's store put the contract in this worker's cache a moment ago.
                let contract = self
                    .known(&a.digest, host.now_s())
                    .and_then(|k| k.contract.clone());
                Outcome::Scope(scope.clone(), contract)
            }
            (Waiting::ServiceLogin, Wake::Retry) => {
                let outcome = self.exchange(cfg, host, a);
                self.settle(host, a, &outcome);
                outcome
            }
            (Waiting::Credential, Wake::Retry) => self.find(cfg, host, a),
        })
    }

    /// The request is over (or abandoned): an exchange it owned or a login it ran must not
    /// strand waiters, and it waits for nothing any more.
    pub fn on_done(&self, host: &mut dyn Host, a: &mut Attempt) {
        self.release(host, a, &Wake::Retry);
        if matches!(a.callout, Some((_, Pending::ServiceLogin, _))) {
            let waiters = self.service_login.borrow_mut().take().unwrap_or_default();
            host.wake(&waiters, &Wake::Retry);
        }
        match a.waiting {
            Waiting::Credential => {
                if let Some(w) = self.inflight.borrow_mut().get_mut(&a.digest) {
                    w.retain(|c| *c != a.context_id);
                }
            }
            Waiting::ServiceLogin => {
                if let Some(w) = self.service_login.borrow_mut().as_mut() {
                    w.retain(|c| *c != a.context_id);
                }
            }
            Waiting::No => {}
        }
        a.waiting = Waiting::No;
        a.callout = None;
    }
}

fn invalid(cfg: &Config, why: &str) -> ApiError {
    ApiError::unauthorized(why, &cfg.keystone.url)
}

#[cfg(test)]
mod tests {
    //! The scope step alone: no flow, a mock host for shared data, callouts and wake-ups.
    use super::*;
    use crate::host::mock::{HostKind, MockHost, World};

    const CFG: &str = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"}}"#;
    const KS_OK: &str = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u1"},
        "project":{"id":"p1","domain":{"id":"d1"}},"roles":[{"id":"r","name":"reader"}]}}"#;

    fn config(cfg: &str) -> Config {
        Config::from_json(cfg.as_bytes()).unwrap()
    }

    fn attempt(ctx: u32, token: &str) -> Attempt {
        let c = Credential::Token(token.to_string());
        let digest = c.digest();
        Attempt::new(ctx, format!("ctx-{ctx}"), c, false, digest)
    }

    fn answer(status: u16, body: &str) -> CalloutAnswer {
        CalloutAnswer {
            status: Some(status),
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn project(outcome: &Outcome) -> Option<&str> {
        match outcome {
            Outcome::Scope(scope, Some(Ok(contract))) if scope.project_id.is_some() => contract
                .tenant
                .as_ref()
                .and_then(|t| t.values().first())
                .map(String::as_str),
            _ => None,
        }
    }

    #[test]
    fn a_miss_asks_keystone_once_then_the_caches_answer() {
        let (cfg, world) = (config(CFG), World::of(HostKind::Envoy));
        let scopes = Scopes::new(&cfg);
        let mut h = MockHost::new(&world, 1, &[]);
        let mut a = attempt(1, "tok");
        assert_eq!(scopes.find(&cfg, &mut h, &mut a), Outcome::Wait);
        assert_eq!(a.pending_callout(), Some(1));
        let outcome = scopes
            .on_callout(&cfg, &mut h, &mut a, 1, &answer(200, KS_OK))
            .unwrap();
        assert_eq!(project(&outcome), Some("p1"), "{outcome:?}");
        assert_eq!(
            scopes.on_callout(&cfg, &mut h, &mut a, 1, &answer(200, KS_OK)),
            None,
            "answered once"
        );
        // This worker's cache, then another worker's (shared data only).
        assert_eq!(
            project(&scopes.find(&cfg, &mut h, &mut attempt(2, "tok"))),
            Some("p1")
        );
        let other_worker = Scopes::new(&cfg);
        assert_eq!(
            project(&other_worker.find(&cfg, &mut h, &mut attempt(3, "tok"))),
            Some("p1")
        );
        assert_eq!(world.callouts.borrow().len(), 1);
        assert_eq!(
            (
                world.metric(Metric::CacheMisses),
                world.metric(Metric::CacheHits)
            ),
            (1, 2)
        );
    }

    #[test]
    fn a_refused_credential_is_remembered_for_negative_ttl() {
        let (cfg, world) = (config(CFG), World::of(HostKind::Envoy));
        let scopes = Scopes::new(&cfg);
        let mut h = MockHost::new(&world, 1, &[]);
        let mut a = attempt(1, "bad");
        scopes.find(&cfg, &mut h, &mut a);
        let outcome = scopes
            .on_callout(&cfg, &mut h, &mut a, 1, &answer(404, ""))
            .unwrap();
        assert!(
            matches!(&outcome, Outcome::Refused(e) if e.status == 401),
            "{outcome:?}"
        );
        assert!(
            matches!(scopes.find(&cfg, &mut h, &mut attempt(2, "bad")), Outcome::Refused(e) if e.status == 401)
        );
        assert_eq!(world.callouts.borrow().len(), 1);
        world.now_ms.set(world.now_ms.get() + 10_000);
        assert_eq!(
            scopes.find(&cfg, &mut h, &mut attempt(3, "bad")),
            Outcome::Wait,
            "asked again"
        );
    }

    /// Two requests with the same new token on a worker of `kind`.
    fn two_first_requests(kind: HostKind) -> (Config, Rc<World>, Scopes, [(MockHost, Attempt); 2]) {
        let (cfg, world) = (config(CFG), World::of(kind));
        let scopes = Scopes::new(&cfg);
        let two = [1, 2].map(|c| (MockHost::new(&world, c, &[]), attempt(c, "tok")));
        (cfg, world, scopes, two)
    }

    #[test]
    fn waiters_share_one_exchange_where_the_host_can_wake_them() {
        let (cfg, world, scopes, [(mut h1, mut a1), (mut h2, mut a2)]) =
            two_first_requests(HostKind::Envoy);
        assert_eq!(scopes.find(&cfg, &mut h1, &mut a1), Outcome::Wait);
        assert_eq!(scopes.find(&cfg, &mut h2, &mut a2), Outcome::Wait);
        assert_eq!(
            (world.callouts.borrow().len(), a2.pending_callout()),
            (1, None),
            "the second waits"
        );
        scopes.on_callout(&cfg, &mut h1, &mut a1, 1, &answer(200, KS_OK));
        let (ctx, wake) = world.wakes.borrow_mut().pop().unwrap();
        assert!(ctx == 2 && matches!(wake, Wake::Scope(_)));
        assert_eq!(
            project(&scopes.on_wake(&cfg, &mut h2, &mut a2, &wake).unwrap()),
            Some("p1")
        );
        assert_eq!(
            scopes.on_wake(&cfg, &mut h2, &mut a2, &wake),
            None,
            "woken once"
        );
    }

    #[test]
    fn an_owner_that_goes_away_hands_over_and_a_failure_reaches_every_waiter() {
        let (cfg, world) = (config(CFG), World::of(HostKind::Envoy));
        let scopes = Scopes::new(&cfg);
        let mut hosts: Vec<MockHost> = (1..=3).map(|c| MockHost::new(&world, c, &[])).collect();
        let mut attempts: Vec<Attempt> = (1..=3).map(|c| attempt(c, "tok")).collect();
        for (h, a) in hosts.iter_mut().zip(attempts.iter_mut()) {
            scopes.find(&cfg, h, a);
        }
        scopes.on_done(&mut hosts[0], &mut attempts[0]);
        let wakes = std::mem::take(&mut *world.wakes.borrow_mut());
        assert_eq!(wakes, [(2, Wake::Retry), (3, Wake::Retry)]);
        // The first woken becomes the owner and asks; the second waits for it again.
        assert_eq!(
            scopes.on_wake(&cfg, &mut hosts[1], &mut attempts[1], &Wake::Retry),
            Some(Outcome::Wait)
        );
        assert_eq!(
            scopes.on_wake(&cfg, &mut hosts[2], &mut attempts[2], &Wake::Retry),
            Some(Outcome::Wait)
        );
        assert_eq!(world.callouts.borrow().len(), 2);
        let refused = scopes
            .on_callout(&cfg, &mut hosts[1], &mut attempts[1], 2, &answer(503, ""))
            .unwrap();
        assert!(matches!(&refused, Outcome::Refused(e) if e.status == 503));
        let (ctx, wake) = world.wakes.borrow_mut().pop().unwrap();
        assert_eq!(ctx, 3);
        assert_eq!(
            scopes.on_wake(&cfg, &mut hosts[2], &mut attempts[2], &wake),
            Some(refused),
            "the same error"
        );
    }

    #[test]
    fn where_the_host_cannot_wake_each_asks_itself() {
        let (cfg, world, scopes, [(mut h1, mut a1), (mut h2, mut a2)]) =
            two_first_requests(HostKind::Nginx);
        assert_eq!(scopes.find(&cfg, &mut h1, &mut a1), Outcome::Wait);
        assert_eq!(scopes.find(&cfg, &mut h2, &mut a2), Outcome::Wait);
        assert_eq!(
            (a1.pending_callout(), a2.pending_callout()),
            (Some(1), Some(2))
        );
        assert_eq!(
            project(
                &scopes
                    .on_callout(&cfg, &mut h2, &mut a2, 2, &answer(200, KS_OK))
                    .unwrap()
            ),
            Some("p1")
        );
        assert_eq!(
            project(
                &scopes
                    .on_callout(&cfg, &mut h1, &mut a1, 1, &answer(200, KS_OK))
                    .unwrap()
            ),
            Some("p1")
        );
        assert!(world.wakes.borrow().is_empty());
    }

    #[test]
    fn one_service_login_serves_the_requests_that_wait_for_it() {
        let cfg = config(
            r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone",
            "service_credentials":{"application_credential_id":"ac","application_credential_secret":"s"}}}"#,
        );
        let world = World::of(HostKind::Envoy);
        let scopes = Scopes::new(&cfg);
        let (mut h1, mut h2) = (MockHost::new(&world, 1, &[]), MockHost::new(&world, 2, &[]));
        let (mut a1, mut a2) = (attempt(1, "tok1"), attempt(2, "tok2"));
        scopes.find(&cfg, &mut h1, &mut a1);
        scopes.find(&cfg, &mut h2, &mut a2);
        assert_eq!(world.callouts.borrow().len(), 1, "one login");
        let login = CalloutAnswer {
            status: Some(201),
            subject_token: Some("svc".into()),
            ..answer(201, KS_OK)
        };
        assert_eq!(
            scopes.on_callout(&cfg, &mut h1, &mut a1, 1, &login),
            Some(Outcome::Wait),
            "validates next"
        );
        let (_, wake) = world.wakes.borrow_mut().pop().unwrap();
        assert_eq!(
            scopes.on_wake(&cfg, &mut h2, &mut a2, &wake),
            Some(Outcome::Wait)
        );
        let callouts = world.callouts.borrow();
        assert_eq!(callouts.len(), 3);
        assert!(callouts[1..]
            .iter()
            .all(|c| c.header("x-auth-token") == Some("svc")));
    }
}
