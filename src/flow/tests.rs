//! The request flow against the mock host: Envoy's and NGINX's behaviours, every
//! authentication path, coalescing, and the response filter.

use super::*;
use crate::host::mock::{b64, eos, is_nginx, HostKind, MockHost, World};
use std::rc::Rc;

const KS_OK: &str = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u1"},
    "project":{"id":"p1","domain":{"id":"d1"}},"roles":[{"id":"r","name":"reader"}]}}"#;
const CFG: &str = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"}}"#;

fn shared_with(cfg: &str) -> Rc<Shared> {
    Rc::new(Shared::new(Config::from_json(cfg.as_bytes()).unwrap()))
}

fn shared() -> Rc<Shared> {
    shared_with(CFG)
}

fn get(path: &str, token: Option<&str>) -> Vec<(&'static str, String)> {
    let mut h = vec![(":method", "GET".to_string()), (":path", path.to_string())];
    if let Some(t) = token {
        h.push(("x-auth-token", t.to_string()));
    }
    h
}

fn host(world: &Rc<World>, ctx: u32, h: &[(&'static str, String)]) -> MockHost {
    let pairs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    MockHost::new(world, ctx, &pairs)
}

fn ok(body: &str) -> CalloutAnswer {
    CalloutAnswer { status: Some(200), body: body.as_bytes().to_vec(), ..Default::default() }
}

fn answer(status: Option<u16>) -> CalloutAnswer {
    CalloutAnswer { status, ..Default::default() }
}

fn decoded_query(h: &MockHost) -> Vec<crate::enforce::form::Param> {
    let path = h.header(":path").unwrap();
    crate::enforce::form::parse(path.split_once('?').unwrap().1).unwrap()
}

/// A flow that got through the headers and a 200 validation.
fn validated(world: &Rc<World>, shared: &Rc<Shared>, path: &str) -> (MockHost, Flow) {
    let mut h = host(world, 1, &get(path, Some("tok")));
    let mut f = Flow::new(shared.clone(), 1);
    assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Pause);
    let id = world.callouts.borrow().len() as u32;
    f.on_callout(&mut h, id, &ok(KS_OK));
    (h, f)
}

#[test]
fn get_query_validates_then_rewrites_and_resumes() {
    let world = World::new();
    let sh = shared();
    let mut h = host(&world, 1, &get("/api/v1/query?query=up&time=5", Some("tok")));
    let mut f = Flow::new(sh.clone(), 1);
    assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Pause);
    assert_eq!(h.header("x-auth-token"), None, "token stripped");
    {
        let c = &world.callouts.borrow()[0];
        assert_eq!((c.upstream.as_str(), c.timeout_ms, c.context), ("keystone", 2000, 1));
        assert_eq!(c.header(":path"), Some("/v3/auth/tokens?nocatalog"));
        assert_eq!(c.header("x-subject-token"), Some("tok"));
    }
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert!(h.resumed);
    assert_eq!(h.status(), None);
    assert_eq!(decoded_query(&h)[0].value, r#"up{project_id="p1"}"#);
    assert_eq!(world.metric(Metric::RequestsAllowed), 1);

    // Second request, same token: served from the cache, no callout.
    let mut h2 = host(&world, 2, &get("/api/v1/query_range?query=rate(x[5m])", Some("tok")));
    let mut f2 = Flow::new(sh, 2);
    assert_eq!(f2.on_request_headers(&mut h2, eos(true)), Action::Continue);
    assert_eq!(world.callouts.borrow().len(), 1);
    assert_eq!(decoded_query(&h2)[0].value, r#"rate(x{project_id="p1"}[5m])"#);
    assert_eq!((world.metric(Metric::CacheHits), world.metric(Metric::CacheMisses)), (1, 1));
}

#[test]
fn cache_entry_expires() {
    let world = World::new();
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    world.now_ms.set(world.now_ms.get() + 300_000);
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(Flow::new(sh, 2).on_request_headers(&mut h2, eos(true)), Action::Pause);
    assert_eq!(world.callouts.borrow().len(), 2, "stale entry revalidated");
}

#[test]
fn a_clock_that_cannot_be_read_fails_closed() {
    let world = World::new();
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    world.now_ms.set(0);
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    Flow::new(sh, 2).on_request_headers(&mut h2, eos(true));
    assert_eq!(h2.status(), Some(503), "a cached entry must not look fresh forever");
    assert_eq!(world.callouts.borrow().len(), 1);
}

#[test]
fn nginx_key_collisions_never_mix_credentials() {
    let world = World::of(HostKind::Nginx);
    world.collide_keys.set(true);
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("mallory")));
    assert_eq!(Flow::new(sh, 2).on_request_headers(&mut h2, eos(true)), Action::Pause);
    assert_eq!(world.callouts.borrow().len(), 2, "another token's entry was not reused");
}

#[test]
fn refusals() {
    let world = World::new();
    let cases: [(Vec<(&'static str, String)>, u32); 5] = [
        (get("/api/v1/query?query=up", None), 401),
        (get("/api/v1/status/config", Some("t")), 403),
        (get("/api/v1/admin/tsdb/snapshot", None), 403),
        (vec![(":method", "PUT".into()), (":path", "/api/v1/query".into()), ("x-auth-token", "t".into())], 405),
        (get("/api/v1/query?query=up", Some("bad token")), 401),
    ];
    for (headers, want) in cases {
        let mut h = host(&world, 1, &headers);
        assert_eq!(Flow::new(shared(), 1).on_request_headers(&mut h, eos(true)), Action::Pause);
        assert_eq!(h.status(), Some(want), "{headers:?}");
        let (_, rh, body) = h.response.unwrap();
        assert!(rh.contains(&("content-type".into(), "application/json".into())));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "error");
    }
    assert!(world.callouts.borrow().is_empty());
    assert_eq!(world.metric(Metric::Denied401), 2);
    assert_eq!(world.metric(Metric::Denied403), 2);
}

#[test]
fn no_credential_names_keystone() {
    let mut h = host(&World::new(), 1, &get("/api/v1/query?query=up", None));
    Flow::new(shared(), 1).on_request_headers(&mut h, eos(true));
    let (_, rh, _) = h.response.unwrap();
    assert!(rh.contains(&("www-authenticate".into(), "Keystone uri=\"http://ks:5000/v3\"".into())));
}

#[test]
fn open_paths_pass_without_credential_and_strip_it() {
    for p in ["/-/healthy", "/-/ready", "/api/v1/status/buildinfo"] {
        let mut h = host(&World::new(), 1, &get(p, Some("t")));
        assert_eq!(Flow::new(shared(), 1).on_request_headers(&mut h, eos(true)), Action::Continue);
        assert_eq!(h.header("x-auth-token"), None);
    }
}

#[test]
fn keystone_failures() {
    let cases: [(CalloutAnswer, u32); 6] = [
        (answer(Some(404)), 401),
        (answer(Some(401)), 401),
        (answer(Some(500)), 503),
        (answer(None), 503),
        (CalloutAnswer { dispatch_status: Some("timeout".into()), ..answer(None) }, 504),
        (CalloutAnswer { dispatch_status: Some("broken connection".into()), ..answer(None) }, 503),
    ];
    for (a, want) in cases {
        let world = World::new();
        let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
        let mut f = Flow::new(shared(), 1);
        f.on_request_headers(&mut h, eos(true));
        f.on_callout(&mut h, 1, &a);
        assert_eq!(h.status(), Some(want), "{a:?}");
        assert!(!h.resumed);
        if want >= 500 {
            let (_, rh, _) = h.response.unwrap();
            assert!(rh.contains(&("retry-after".into(), "5".into())));
        }
    }
    let world = World::new();
    world.dispatch_fails.set(true);
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    Flow::new(shared(), 1).on_request_headers(&mut h, eos(true));
    assert_eq!(h.status(), Some(503));
}

#[test]
fn envoy_timeout_has_no_reason_but_took_the_timeout() {
    let world = World::new();
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(true));
    world.now_ms.set(world.now_ms.get() + 2000);
    f.on_callout(&mut h, 1, &answer(None));
    assert_eq!(h.status(), Some(504));
    assert_eq!(world.metric(Metric::Timeout504), 1);
}

#[test]
fn invalid_credentials_are_remembered_briefly() {
    let world = World::new();
    let sh = shared();
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("bad")));
    let mut f = Flow::new(sh.clone(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &answer(Some(404)));
    assert_eq!(h.status(), Some(401));
    for ctx in 2..12 {
        let mut h = host(&world, ctx, &get("/api/v1/query?query=up", Some("bad")));
        Flow::new(sh.clone(), ctx).on_request_headers(&mut h, eos(true));
        assert_eq!(h.status(), Some(401));
    }
    assert_eq!(world.callouts.borrow().len(), 1, "retries did not reach Keystone");
    world.now_ms.set(world.now_ms.get() + 10_000);
    let mut h = host(&world, 20, &get("/api/v1/query?query=up", Some("bad")));
    Flow::new(sh, 20).on_request_headers(&mut h, eos(true));
    assert_eq!(world.callouts.borrow().len(), 2, "asked again after negative_ttl_seconds");
}

/// Requests with the token "tok" that this worker does not know yet, each paused.
fn paused_first_requests(world: &Rc<World>, sh: &Rc<Shared>, contexts: std::ops::RangeInclusive<u32>) -> Vec<(MockHost, Flow)> {
    contexts
        .map(|ctx| {
            let mut h = host(world, ctx, &get("/api/v1/query?query=a", Some("tok")));
            let mut f = Flow::new(sh.clone(), ctx);
            assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Pause);
            (h, f)
        })
        .collect()
}

#[test]
fn concurrent_first_requests_make_one_callout() {
    // Envoy: a waiter is woken as its own context (set_effective_context).
    let world = World::of(HostKind::Envoy);
    let sh = shared();
    let mut owner_host = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    let mut owner = Flow::new(sh.clone(), 1);
    owner.on_request_headers(&mut owner_host, eos(true));
    let mut waiters = paused_first_requests(&world, &sh, 2..=100);
    assert_eq!(world.callouts.borrow().len(), 1);
    owner.on_callout(&mut owner_host, 1, &ok(KS_OK));
    let wakes = std::mem::take(&mut *world.wakes.borrow_mut());
    assert_eq!(wakes.len(), 99);
    assert!(matches!(wakes[0].1, Wake::Scope(_)), "the scope is handed over: no callout from another context");
    for (ctx, wake) in wakes {
        let (h, f) = &mut waiters[ctx as usize - 2];
        f.on_wake(h, &wake);
        assert!(h.resumed, "woken request resumed");
        assert_eq!(decoded_query(h)[0].value, r#"a{project_id="p1"}"#);
    }
    assert_eq!(world.callouts.borrow().len(), 1);
}

#[test]
fn waiters_get_the_owners_failure() {
    // Envoy: a waiter is woken as its own context (set_effective_context).
    let world = World::of(HostKind::Envoy);
    let sh = shared();
    let mut h1 = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    let mut f1 = Flow::new(sh.clone(), 1);
    f1.on_request_headers(&mut h1, eos(true));
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    let mut f2 = Flow::new(sh.clone(), 2);
    f2.on_request_headers(&mut h2, eos(true));
    f1.on_callout(&mut h1, 1, &answer(Some(503)));
    let (ctx, wake) = world.wakes.borrow_mut().pop().unwrap();
    assert_eq!(ctx, 2);
    f2.on_wake(&mut h2, &wake);
    assert_eq!((h1.status(), h2.status()), (Some(503), Some(503)));
    // The next request asks Keystone again (failures other than 401 are not cached).
    let mut h3 = host(&world, 3, &get("/api/v1/query?query=up", Some("tok")));
    Flow::new(sh, 3).on_request_headers(&mut h3, eos(true));
    assert_eq!(world.callouts.borrow().len(), 2);
}

#[test]
fn an_abandoned_owner_hands_over() {
    // Envoy: a waiter is woken as its own context (set_effective_context).
    let world = World::of(HostKind::Envoy);
    let sh = shared();
    let mut h1 = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    let mut f1 = Flow::new(sh.clone(), 1);
    f1.on_request_headers(&mut h1, eos(true));
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    let mut f2 = Flow::new(sh.clone(), 2);
    f2.on_request_headers(&mut h2, eos(true));
    f1.on_done(&mut h1); // the client went away
    let (ctx, wake) = world.wakes.borrow_mut().pop().unwrap();
    assert_eq!((ctx, &wake), (2, &Wake::Retry));
    f2.on_wake(&mut h2, &wake);
    assert_eq!(world.callouts.borrow().len(), 2, "the waiter asks Keystone itself");
    f2.on_callout(&mut h2, 2, &ok(KS_OK));
    assert!(h2.resumed);
}

#[test]
fn where_no_request_can_wake_another_each_asks_keystone_and_all_are_answered() {
    // NGINX: set_effective_context does nothing, so a request paused for another's
    // exchange would never be resumed (the connection hung until the client gave up).
    let world = World::of(HostKind::Nginx);
    let sh = shared();
    let mut flows = paused_first_requests(&world, &sh, 1..=100);
    assert_eq!(world.callouts.borrow().len(), 100, "each request its own exchange");
    for (i, (h, f)) in flows.iter_mut().enumerate() {
        let id = i as u32 + 1;
        assert_eq!(world.callouts.borrow()[i].context, h.context, "answered to the request that asked");
        f.on_callout(h, id, &ok(KS_OK));
        assert!(h.resumed, "request {id} resumed");
        assert_eq!(decoded_query(h)[0].value, r#"a{project_id="p1"}"#);
    }
    assert!(world.wakes.borrow().is_empty());
    // Once one has stored the scope, later requests are served from the cache.
    let mut h = host(&world, 101, &get("/api/v1/query?query=a", Some("tok")));
    assert_eq!(Flow::new(sh.clone(), 101).on_request_headers(&mut h, eos(true)), Action::Continue);

    // The same for a service login: each request logs in itself.
    let (world, (mut h1, mut f1), (mut h2, mut f2)) = two_with_service_credentials(HostKind::Nginx);
    assert_eq!(world.callouts.borrow().len(), 2, "two logins");
    let login = CalloutAnswer { status: Some(201), subject_token: Some("svc-token".into()), ..ok(KS_OK) };
    f1.on_callout(&mut h1, 1, &login);
    f2.on_callout(&mut h2, 2, &login);
    f1.on_callout(&mut h1, 3, &ok(KS_OK));
    f2.on_callout(&mut h2, 4, &ok(KS_OK));
    assert!(h1.resumed && h2.resumed);
    assert!(world.wakes.borrow().is_empty());
}

fn post(path: &str, body: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "POST".into()),
        (":path", path.to_string()),
        ("x-auth-token", "tok".into()),
        ("content-type", "application/x-www-form-urlencoded".into()),
        ("content-length", body.len().to_string()),
    ]
}

#[test]
fn post_body_and_url_are_both_enforced_whichever_arrives_first() {
    for callout_first in [true, false] {
        let world = World::new();
        let body = "query=a&time=1";
        let mut h = host(&world, 1, &post("/api/v1/query?query=b", body));
        h.body = body.as_bytes().to_vec();
        let mut f = Flow::new(shared(), 1);
        assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Pause);
        if !is_nginx() {
            assert_eq!(h.header("content-length"), None, "length dropped in headers phase");
        }
        if callout_first {
            // Envoy: the body is held back until the headers go on.
            f.on_callout(&mut h, 1, &ok(KS_OK));
            assert!(h.resumed, "headers go on; the body follows");
            assert_eq!(world.metric(Metric::RequestsAllowed), 0, "not counted before the body passed");
            assert_eq!(f.on_request_body(&mut h, body.len(), false), Action::Pause);
            assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Continue);
        } else {
            assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Pause);
            f.on_callout(&mut h, 1, &ok(KS_OK));
            assert!(h.resumed);
        }
        assert_eq!(world.metric(Metric::RequestsAllowed), 1);
        assert_eq!(h.status(), None);
        assert_eq!(decoded_query(&h)[0].value, r#"b{project_id="p1"}"#);
        let body = crate::enforce::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap();
        assert_eq!(body[0].value, r#"a{project_id="p1"}"#);
        // Envoy frames the new body itself; NGINX sends the new body's length.
        let length = if is_nginx() { vec![h.body.len().to_string()] } else { vec![] };
        assert_eq!(h.sent("content-length"), length);
    }
}

#[test]
fn a_body_held_in_part_when_keystone_answers_goes_on_whole_and_enforced() {
    // Envoy: resuming would pass the held part on as it came, and show the filter only the rest.
    for unannounced in [false, true] {
        let world = World::new();
        let body = "query=a&time=1";
        let headers = if unannounced { post_unannounced("/api/v1/query", "application/x-www-form-urlencoded") } else { post("/api/v1/query", body) };
        let mut h = host(&world, 1, &headers);
        h.body = body.as_bytes().to_vec();
        let mut f = Flow::new(shared(), 1);
        assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Pause);
        assert_eq!(f.on_request_body(&mut h, 8, false), Action::Pause, "query=a& is held");
        f.on_callout(&mut h, 1, &ok(KS_OK));
        assert!(!h.resumed, "not resumed while part of the body is held");
        assert_eq!(h.status(), None);
        assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Continue, "the end lets it all go");
        let got = crate::enforce::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap();
        assert_eq!(got[0].value, r#"a{project_id="p1"}"#);
        assert_eq!(world.metric(Metric::RequestsAllowed), 1);
    }
}

#[test]
fn post_without_body_needs_no_content_type_and_does_not_wait() {
    // NGINX: no body callback when there is no body.
    let world = World::new();
    let mut headers = post("/api/v1/query?query=b", "");
    headers.retain(|(k, _)| *k != "content-type");
    let mut h = host(&world, 1, &headers);
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(false));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert_eq!(h.status(), None);
    assert!(h.resumed);
    assert_eq!(decoded_query(&h)[0].value, r#"b{project_id="p1"}"#);
}

#[test]
fn cached_post_lets_headers_go_and_enforces_the_body() {
    let world = World::new();
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    let body = "query=a";
    let mut h = host(&world, 2, &post("/api/v1/query", body));
    h.body = body.as_bytes().to_vec();
    let mut f = Flow::new(sh, 2);
    assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Continue);
    assert_eq!(h.header(":path"), Some("/api/v1/query?"), "path always carries its ?");
    assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Continue);
    assert_eq!(crate::enforce::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap()[0].value, r#"a{project_id="p1"}"#);
}

#[test]
fn post_match_default_goes_where_prometheus_reads_it() {
    for (body, want) in [("match[]=up", vec![r#"up{project_id="p1"}"#]), ("start=1", vec![r#"{project_id="p1"}"#])] {
        let world = World::new();
        let mut h = host(&world, 1, &post("/api/v1/series", body));
        h.body = body.as_bytes().to_vec();
        let mut f = Flow::new(shared(), 1);
        f.on_request_headers(&mut h, eos(false));
        f.on_callout(&mut h, 1, &ok(KS_OK));
        f.on_request_body(&mut h, body.len(), true);
        assert!(decoded_query(&h).is_empty(), "nothing added to the URL");
        let b = crate::enforce::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap();
        let got: Vec<&str> = b.iter().filter(|p| p.key == "match[]").map(|p| p.value.as_str()).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn post_refusals() {
    let world = World::new();
    let mut headers = post("/api/v1/query", "query=up");
    headers[3].1 = "multipart/form-data; boundary=x".into();
    let mut h = host(&world, 1, &headers);
    Flow::new(shared(), 1).on_request_headers(&mut h, eos(false));
    assert_eq!(h.status(), Some(415));

    let mut headers = post("/api/v1/query", "query=up");
    headers[4].1 = "999999999".into();
    let mut h = host(&world, 1, &headers);
    Flow::new(shared(), 1).on_request_headers(&mut h, eos(false));
    assert_eq!(h.status(), Some(413));

    // Chunked body that grows past the limit.
    let mut headers = post("/api/v1/query", "");
    headers.push(("transfer-encoding", "chunked".into()));
    let mut h = host(&world, 1, &headers);
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(false));
    assert_eq!(f.on_request_body(&mut h, 1 << 30, false), Action::Pause);
    assert_eq!(h.status(), Some(413));
}

/// A POST whose headers carry neither `content-length` nor `transfer-encoding`: Envoy
/// removes `transfer-encoding` (chunked) and HTTP/2 needs no length, so `end_of_stream`
/// false is all that says a body follows.
fn post_unannounced(path: &str, content_type: &str) -> Vec<(&'static str, String)> {
    let mut h = post(path, "");
    h.retain(|(k, _)| *k != "content-length" && (*k != "content-type" || !content_type.is_empty()));
    if let Some(t) = h.iter_mut().find(|(k, _)| *k == "content-type") {
        t.1 = content_type.into();
    }
    h
}

#[test]
fn a_body_only_end_of_stream_announces_is_enforced() {
    for (path, body, url, form) in [
        ("/api/v1/query?query=b", "query=a", r#"b{project_id="p1"}"#, r#"a{project_id="p1"}"#),
        // The URL carries the default (a body was only possible); the body's own selector is enforced.
        ("/api/v1/series", r#"match[]={__name__=~".%2B"}"#, r#"{project_id="p1"}"#, r#"{__name__=~".+",project_id="p1"}"#),
    ] {
        let world = World::new();
        let mut h = host(&world, 1, &post_unannounced(path, "application/x-www-form-urlencoded"));
        h.body = body.as_bytes().to_vec();
        let mut f = Flow::new(shared(), 1);
        assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Pause);
        f.on_callout(&mut h, 1, &ok(KS_OK));
        assert!(h.resumed);
        assert_eq!(f.on_request_body(&mut h, body.len(), false), Action::Pause, "held until it ends");
        assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Continue);
        assert_eq!(h.status(), None);
        assert_eq!(decoded_query(&h)[0].value, url);
        let got = crate::enforce::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap();
        assert_eq!(got.len(), 1, "no second default in the body: {got:?}");
        assert_eq!(got[0].value, form);
    }
}

#[test]
fn an_unannounced_body_must_be_a_form_too() {
    let world = World::new();
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    let mut h = host(&world, 2, &post_unannounced("/api/v1/query", "text/plain"));
    h.body = b"query=up".to_vec();
    let mut f = Flow::new(sh, 2);
    assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Continue, "no type needed without a body");
    assert_eq!(f.on_request_body(&mut h, 8, false), Action::Pause);
    assert_eq!(h.status(), Some(415));
    assert_eq!(h.body, b"query=up", "the body was not let through");
}

#[test]
fn no_body_after_all_leaves_a_safe_query_string() {
    // NGINX: end_of_stream is false for every request, and no body callback comes.
    let world = World::new();
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    for path in ["/api/v1/labels", "/api/v1/series"] {
        let mut h = host(&world, 2, &post_unannounced(path, ""));
        let mut f = Flow::new(sh.clone(), 2);
        assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Continue);
        assert_eq!(h.status(), None, "no content type is needed without a body");
        let q = decoded_query(&h);
        assert_eq!((q.len(), q[0].key.as_str(), q[0].value.as_str()), (1, "match[]", r#"{project_id="p1"}"#));
    }
}

#[test]
fn a_body_the_headers_ruled_out_is_refused() {
    // Envoy's end_of_stream (NGINX never says it) or a length of 0 ruled a body out.
    let world = World::of(HostKind::Envoy);
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    for (headers, end) in [(post_unannounced("/api/v1/query", "application/x-www-form-urlencoded"), true), (post("/api/v1/query", ""), false)] {
        let mut h = host(&world, 2, &headers);
        h.body = b"query=up".to_vec();
        let mut f = Flow::new(sh.clone(), 2);
        assert_eq!(f.on_request_headers(&mut h, eos(end)), Action::Continue);
        assert_eq!(f.on_request_body(&mut h, 8, true), Action::Pause);
        assert_eq!(h.status(), Some(400));
        assert_eq!(h.body, b"query=up");
    }
    // A GET's body is not read by Prometheus: it goes as it is.
    let mut h = host(&world, 3, &get("/api/v1/query?query=up", Some("tok")));
    let mut f = Flow::new(sh, 3);
    assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Continue);
    assert_eq!(f.on_request_body(&mut h, 8, true), Action::Continue);
    assert_eq!(h.status(), None);
}

#[test]
fn trailers_before_the_body_ended_are_refused() {
    for announced in [true, false] {
        let world = World::new();
        let sh = shared();
        validated(&world, &sh, "/api/v1/query?query=up");
        let headers = if announced { post("/api/v1/query", "query=up") } else { post_unannounced("/api/v1/query", "application/x-www-form-urlencoded") };
        let mut h = host(&world, 2, &headers);
        h.body = b"query=up".to_vec();
        let mut f = Flow::new(sh.clone(), 2);
        assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Continue);
        assert_eq!(f.on_request_body(&mut h, 8, false), Action::Pause);
        assert_eq!(f.on_request_trailers(&mut h), Action::Pause);
        assert_eq!(h.status(), Some(400));
        assert_eq!(h.body, b"query=up");
    }
    // Trailers after a GET, or after a body the filter enforced, change nothing.
    let world = World::new();
    let (mut h, mut f) = validated(&world, &shared(), "/api/v1/query?query=up");
    assert_eq!(f.on_request_trailers(&mut h), Action::Continue);
    assert_eq!(h.status(), None);
}

#[test]
fn a_pending_callout_is_known_until_answered_or_done() {
    let world = World::new();
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    let mut f = Flow::new(shared(), 1);
    assert_eq!(f.pending_callout(), None);
    assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Pause);
    assert_eq!(f.pending_callout(), Some(1));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert_eq!(f.pending_callout(), None, "answered");

    let mut h = host(&world, 2, &get("/api/v1/query?query=up", Some("tok-new")));
    let mut f = Flow::new(shared(), 2);
    f.on_request_headers(&mut h, eos(true));
    assert!(f.pending_callout().is_some());
    f.on_done(&mut h);
    assert_eq!(f.pending_callout(), None, "the client left");
}

#[test]
fn configurations_that_store_different_scopes_do_not_share_the_cache() {
    let ns = |extra: &str| {
        let cfg = format!(r#"{{"keystone":{{"url":"http://ks:5000/v3","upstream":"keystone"}}{extra}}}"#);
        Shared::new(Config::from_json(cfg.as_bytes()).unwrap()).scopes.namespace().to_string()
    };
    let base = ns("");
    assert_eq!(ns(""), base, "the same configuration, the same cache");
    assert_eq!(ns(r#","required_roles":["reader"]"#), base, "decided per request, not stored");
    for other in [
        r#","include_subprojects":true"#,
        r#","cache":{"ttl_seconds":60}"#,
        r#","cache":{"negative_ttl_seconds":1}"#,
        r#","project_label":"tenant""#,
    ] {
        assert_ne!(ns(other), base, "{other}");
    }
    let other_upstream = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone-b"}}"#;
    assert_ne!(Shared::new(Config::from_json(other_upstream.as_bytes()).unwrap()).scopes.namespace().to_string(), base);
}

#[test]
fn bad_promql_is_400_after_validation() {
    let world = World::new();
    let (h, _) = validated(&world, &shared(), "/api/v1/query?query=sum(");
    assert_eq!(h.status(), Some(400));
    assert!(!h.resumed);
}

const DOMAIN_OK: &str =
    r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"domain":{"id":"d9"},"roles":[{"id":"r","name":"reader"}]}}"#;

#[test]
fn domain_scope_uses_the_domain_label() {
    let world = World::new();
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(DOMAIN_OK));
    assert_eq!(decoded_query(&h)[0].value, r#"up{domain_id="d9"}"#);
}


#[test]
fn basic_auth_asks_for_a_token_and_consumes_the_header() {
    let world = World::new();
    let auth = format!("Basic {}", b64("alice@tenants|team-a@tenants:s3cret"));
    let headers = vec![(":method", "GET".into()), (":path", "/api/v1/query?query=up".into()), ("authorization", auth)];
    let mut h = host(&world, 1, &headers);
    let mut f = Flow::new(shared(), 1);
    assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Pause);
    assert_eq!(h.header("authorization"), None, "consumed");
    {
        let c = &world.callouts.borrow()[0];
        assert_eq!((c.header(":method"), c.header(":path")), (Some("POST"), Some("/v3/auth/tokens?nocatalog")));
        let body: serde_json::Value = serde_json::from_slice(c.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["auth"]["identity"]["password"]["user"]["password"], "s3cret");
    }
    // A token request answers 201.
    f.on_callout(&mut h, 1, &CalloutAnswer { status: Some(201), subject_token: Some("issued".into()), ..ok(KS_OK) });
    assert!(h.resumed);
    assert_eq!(decoded_query(&h)[0].value, r#"up{project_id="p1"}"#);
    // Wrong password: 401.
    let world = World::new();
    let mut h = host(&world, 1, &headers);
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &answer(Some(401)));
    assert_eq!(h.status(), Some(401));
}

#[test]
fn foreign_authorization_headers_go_upstream() {
    let world = World::new();
    let mut headers = get("/api/v1/query?query=up", Some("tok"));
    headers.push(("authorization", "Negotiate abc".into()));
    let mut h = host(&world, 1, &headers);
    Flow::new(shared(), 1).on_request_headers(&mut h, eos(true));
    assert_eq!(h.header("authorization"), Some("Negotiate abc"));
}

/// Two requests with new tokens through a filter that logs in with service credentials.
fn two_with_service_credentials(kind: HostKind) -> (Rc<World>, (MockHost, Flow), (MockHost, Flow)) {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone",
        "service_credentials":{"application_credential_id":"svc-ac","application_credential_secret":"svc-s"}}}"#;
    let world = World::of(kind);
    let sh = shared_with(cfg);
    let start = |ctx: u32, token: &str| {
        let mut h = host(&world, ctx, &get("/api/v1/query?query=up", Some(token)));
        let mut f = Flow::new(sh.clone(), ctx);
        f.on_request_headers(&mut h, eos(true));
        (h, f)
    };
    let (first, second) = (start(1, "tok1"), start(2, "tok2"));
    (world, first, second)
}

#[test]
fn service_credentials_log_in_once_and_validate_with_the_service_token() {
    // Envoy: the second request waits for the first one's login and is woken.
    let (world, (mut h1, mut f1), (mut h2, mut f2)) = two_with_service_credentials(HostKind::Envoy);
    assert_eq!(world.callouts.borrow().len(), 1, "one service login for both");
    assert_eq!(world.callouts.borrow()[0].header(":method"), Some("POST"));
    f1.on_callout(&mut h1, 1, &CalloutAnswer { status: Some(201), subject_token: Some("svc-token".into()), ..ok(KS_OK) });
    let (ctx, wake) = world.wakes.borrow_mut().pop().unwrap();
    assert_eq!(ctx, 2);
    f2.on_wake(&mut h2, &wake);
    let callouts = world.callouts.borrow().clone();
    assert_eq!(callouts.len(), 3);
    for (c, subject) in callouts[1..].iter().zip(["tok1", "tok2"]) {
        assert_eq!(c.header("x-auth-token"), Some("svc-token"));
        assert_eq!(c.header("x-subject-token"), Some(subject));
        assert_eq!(c.header("openstack-identity-access-rules"), Some("1"));
    }
    f1.on_callout(&mut h1, 2, &ok(KS_OK));
    assert!(h1.resumed);
    // A stale service token (401) means one fresh login, not a 401 for the user.
    f2.on_callout(&mut h2, 3, &answer(Some(401)));
    assert_eq!(h2.status(), None);
    assert_eq!(world.callouts.borrow().len(), 4);
}

#[test]
fn a_service_login_that_fails_leaves_no_one_waiting() {
    // A static service token refused (401): 503, and the next request still asks Keystone.
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone","service_token":"static"}}"#;
    let world = World::new();
    let sh = shared_with(cfg);
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok1")));
    let mut f = Flow::new(sh.clone(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &answer(Some(401)));
    assert_eq!(h.status(), Some(503));
    assert!(String::from_utf8(h.response.clone().unwrap().2).unwrap().contains("keystone.service_token"));
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok2")));
    assert_eq!(Flow::new(sh, 2).on_request_headers(&mut h2, eos(true)), Action::Pause);
    assert_eq!(world.callouts.borrow().len(), 2, "validated, not left waiting for a login");

    // A login that could not be sent (the cluster briefly missing): the next one is sent.
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone",
        "service_credentials":{"application_credential_id":"svc-ac","application_credential_secret":"svc-s"}}}"#;
    let world = World::new();
    let sh = shared_with(cfg);
    world.dispatch_fails.set(true);
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok1")));
    Flow::new(sh.clone(), 1).on_request_headers(&mut h, eos(true));
    assert_eq!(h.status(), Some(503));
    world.dispatch_fails.set(false);
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok2")));
    assert_eq!(Flow::new(sh, 2).on_request_headers(&mut h2, eos(true)), Action::Pause);
    assert_eq!(world.callouts.borrow().len(), 1, "a login is sent");
    assert_eq!(world.callouts.borrow()[0].header(":method"), Some("POST"));
}

#[test]
fn subprojects_are_looked_up_and_cached() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},"include_subprojects":true}"#;
    let world = World::new();
    let sh = shared_with(cfg);
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    let mut f = Flow::new(sh.clone(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert!(!h.resumed);
    {
        let c = &world.callouts.borrow()[1];
        assert_eq!(c.header(":path"), Some("/v3/projects/p1?subtree_as_ids"));
        assert_eq!(c.header("x-auth-token"), Some("tok"));
    }
    f.on_callout(&mut h, 2, &ok(r#"{"project":{"id":"p1","subtree":{"c1":{"g1":null}}}}"#));
    assert!(h.resumed);
    assert_eq!(decoded_query(&h)[0].value, r#"up{project_id=~"p1|c1|g1"}"#);
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(Flow::new(sh, 2).on_request_headers(&mut h2, eos(true)), Action::Continue);
    assert_eq!(decoded_query(&h2)[0].value, r#"up{project_id=~"p1|c1|g1"}"#);
}

#[test]
fn identity_and_tenant_headers() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3"},"tenant_header":"X-Scope-OrgID","label_enforcement":false,
        "forward_identity_headers":true}"#;
    let world = World::new();
    let mut headers = get("/api/v1/query?query=up", Some("tok"));
    headers.extend([("x-project-id", "evil".to_string()), ("x-scope-orgid", "evil".into()), ("x-roles", "admin".into())]);
    let mut h = host(&world, 1, &headers);
    let mut f = Flow::new(shared_with(cfg), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    // The client's claims are replaced where they lie: one value, the filter's, on every
    // host (NGINX still sends a removed header, after which an added one would come second).
    for (name, want) in [("x-scope-orgid", "p1"), ("x-project-id", "p1"), ("x-user-id", "u1"), ("x-roles", "reader"), ("x-identity-status", "Confirmed")] {
        assert_eq!(h.sent(name), [want], "{name}");
    }
    assert_eq!(h.header("x-domain-id"), None);
    assert_eq!(decoded_query(&h)[0].value, "up", "label enforcement off");

    // A claim the decision has no value for is stripped: x-domain-id for a project token,
    // the tenant header for an unrestricted user.
    let cfg_admin = r#"{"keystone":{"url":"http://ks:5000/v3"},"tenant_header":"X-Scope-OrgID","unrestricted_roles":["reader"],
        "forward_identity_headers":true}"#;
    let mut headers = get("/api/v1/query?query=up", Some("tok"));
    headers.extend([("x-domain-id", "evil".to_string()), ("x-scope-orgid", "evil".into())]);
    let mut h = host(&World::new(), 1, &headers);
    let mut f = Flow::new(shared_with(cfg_admin), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert!(h.resumed);
    for name in ["x-domain-id", "x-scope-orgid"] {
        assert!(h.sent(name).iter().all(|v| v.is_empty()), "{name}: {:?}", h.sent(name));
    }

    let mut headers = get("/api/v1/query?query=up", Some("tok"));
    headers.push(("thanos-tenant", "evil".into()));
    let mut h = host(&world, 2, &headers);
    Flow::new(shared(), 2).on_request_headers(&mut h, eos(true));
    assert_eq!((h.header("thanos-tenant"), h.header("x-project-id")), (None, None));

    // A tenant header of the operator's choosing, not one of the names the filter knows.
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3"},"tenant_header":"X-Org-Tenant"}"#;
    let world = World::new();
    let mut headers = get("/api/v1/query?query=up", Some("tok"));
    headers.push(("x-org-tenant", "evil".into()));
    let mut h = host(&world, 3, &headers);
    let mut f = Flow::new(shared_with(cfg), 3);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert_eq!(h.sent("x-org-tenant"), ["p1"]);

    // On a path that needs no credential, nothing sets them: every claim is stripped.
    let mut headers = get("/-/healthy", None);
    headers.extend([("x-org-tenant", "evil".to_string()), ("x-auth-token", "secret".into())]);
    let mut h = host(&world, 4, &headers);
    assert_eq!(Flow::new(shared_with(cfg), 4).on_request_headers(&mut h, eos(true)), Action::Continue);
    for name in ["x-org-tenant", "x-auth-token"] {
        assert!(h.sent(name).iter().all(|v| v.is_empty()), "{name}: {:?}", h.sent(name));
    }
}

#[test]
fn a_header_the_filter_strips_or_sets_may_come_only_once() {
    // NGINX can overwrite only one copy of a header in place; a second would reach the upstream.
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3"},"tenant_header":"X-Org-Tenant"}"#;
    let twice = |name: &'static str| {
        let mut h = get("/api/v1/query?query=up", Some("tok"));
        h.extend([(name, "a".to_string()), (name, "b".to_string())]);
        h
    };
    for name in ["x-auth-token", "x-project-id", "x-scope-orgid", "x-org-tenant"] {
        let world = World::new();
        let mut h = host(&world, 1, &twice(name));
        assert_eq!(Flow::new(shared_with(cfg), 1).on_request_headers(&mut h, eos(true)), Action::Pause);
        assert_eq!(h.status(), Some(400), "{name}");
        assert!(world.callouts.borrow().is_empty());
    }
    // Others may repeat, as HTTP allows.
    let world = World::new();
    let mut h = host(&world, 1, &twice("x-junk"));
    assert_eq!(Flow::new(shared_with(cfg), 1).on_request_headers(&mut h, eos(true)), Action::Pause);
    assert_eq!(h.status(), None);
}

#[test]
fn roles_and_system_scope() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3"},"required_roles":["monitoring_viewer"],"unrestricted_roles":["cloud_admin"]}"#;
    let world = World::new();
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    let mut f = Flow::new(shared_with(cfg), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert_eq!(h.status(), Some(403));
    let sys = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"system":{"all":true},
        "roles":[{"id":"r","name":"cloud_admin"}]}}"#;
    let mut h = host(&world, 2, &get("/api/v1/query?query=up", Some("sys")));
    let mut f = Flow::new(shared_with(cfg), 2);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 2, &ok(sys));
    assert_eq!(h.status(), None);
    assert_eq!(decoded_query(&h)[0].value, "up", "unrestricted");
}

#[test]
fn series_without_match_gets_the_tenant_selector() {
    for path in ["/api/v1/series?start=1", "/api/v1/labels", "/api/v1/label/__name__/values", "/federate"] {
        let (h, _) = validated(&World::new(), &shared(), path);
        assert_eq!(h.status(), None, "{path}");
        let q = decoded_query(&h);
        let m: Vec<&str> = q.iter().filter(|p| p.key == "match[]").map(|p| p.value.as_str()).collect();
        assert_eq!(m, [r#"{project_id="p1"}"#], "{path}");
    }
    let (h, _) = validated(&World::new(), &shared(), "/federate?match[]=up&match[]={job=%22x%22}");
    let m: Vec<String> = decoded_query(&h).into_iter().map(|p| p.value).collect();
    assert_eq!(m, [r#"up{project_id="p1"}"#, r#"{job="x",project_id="p1"}"#]);
}

#[test]
fn prefix_and_passthrough() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3"},"path_prefix":"/prometheus",
        "unsafe_passthrough":["/api/v1/metadata"]}"#;
    let (h, _) = validated(&World::new(), &shared_with(cfg), "/prometheus/api/v1/query?query=up");
    assert_eq!(decoded_query(&h)[0].value, r#"up{project_id="p1"}"#);
    assert!(h.header(":path").unwrap().starts_with("/prometheus/api/v1/query?"));
    let (h, _) = validated(&World::new(), &shared_with(cfg), "/prometheus/api/v1/metadata?metric=up");
    assert_eq!((h.status(), h.header(":path")), (None, Some("/prometheus/api/v1/metadata?metric=up")));
    let mut h = host(&World::new(), 1, &get("/api/v1/query?query=up", Some("tok")));
    Flow::new(shared_with(cfg), 1).on_request_headers(&mut h, eos(true));
    assert_eq!(h.status(), Some(403), "outside the prefix");
}

const RULES: &str = r#"{"status":"success","data":{"groups":[{"name":"g","rules":[
    {"name":"mine","labels":{"project_id":"p1"}},{"name":"theirs","labels":{"project_id":"p2"}}]}]}}"#;

fn rule_names(body: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["data"]["groups"][0]["rules"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn rules_answer_is_filtered() {
    let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/rules");
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
fn rules_answer_ending_with_trailers_is_not_let_through() {
    let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/rules");
    h.upstream_headers = vec![(":status".into(), "200".into())];
    h.upstream_body = RULES.as_bytes().to_vec();
    f.on_response_headers(&mut h);
    assert_eq!(f.on_response_body(&mut h, RULES.len(), false), Action::Pause);
    assert_eq!(f.on_response_trailers(&mut h), Action::Pause);
    assert_eq!(h.status(), Some(502), "a local answer: the host resets a stream whose headers are gone");
    assert_eq!(h.upstream_body, RULES.as_bytes(), "the held answer was not released");
    // Trailers after an answer that is not filtered, or already dropped, change nothing.
    assert_eq!(f.on_response_trailers(&mut h), Action::Continue);
    let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/query?query=up");
    h.upstream_headers = vec![(":status".into(), "200".into())];
    f.on_response_headers(&mut h);
    assert_eq!(f.on_response_trailers(&mut h), Action::Continue);
}

#[test]
fn gzip_rules_answer_is_inflated_and_filtered() {
    let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/rules");
    assert_eq!(h.sent("accept-encoding"), ["identity"]);
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
fn rules_are_asked_for_in_identity_and_a_deflate_answer_is_read_all_the_same() {
    let world = World::new();
    let mut headers = get("/api/v1/rules", Some("tok"));
    headers.push(("accept-encoding", "deflate, gzip".into()));
    let mut h = host(&world, 1, &headers);
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert_eq!(h.sent("accept-encoding"), ["identity"], "overwritten in place, not removed");
    // An upstream that compresses all the same (a host that sent the client's header too).
    let z = {
        // A zlib stream with one stored deflate block.
        let data = RULES.as_bytes();
        let n = data.len() as u16;
        let mut z = vec![0x78, 0x01, 1];
        z.extend_from_slice(&n.to_le_bytes());
        z.extend_from_slice(&(!n).to_le_bytes());
        z.extend_from_slice(data);
        let (a, b) = data.iter().fold((1u32, 0u32), |(a, b), &x| ((a + u32::from(x)) % 65521, (b + a + u32::from(x)) % 65521));
        z.extend_from_slice(&(b << 16 | a).to_be_bytes());
        z
    };
    h.upstream_headers = vec![(":status".into(), "200".into()), ("content-encoding".into(), "deflate".into())];
    h.upstream_body = z.clone();
    f.on_response_headers(&mut h);
    assert_eq!(h.response_header("content-encoding"), None);
    f.on_response_body(&mut h, z.len(), true);
    assert_eq!(rule_names(&h.upstream_body), ["mine"]);
}

#[test]
fn unreadable_answers_are_replaced_by_an_error() {
    for (encoding, body) in [("br", RULES), ("identity", "not json")] {
        let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/alerts");
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
fn unrestricted_rules_are_not_filtered() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3"},"unrestricted_roles":["reader"]}"#;
    let (mut h, mut f) = validated(&World::new(), &shared_with(cfg), "/api/v1/rules");
    h.upstream_headers = vec![(":status".into(), "200".into())];
    h.upstream_body = RULES.as_bytes().to_vec();
    f.on_response_headers(&mut h);
    f.on_response_body(&mut h, RULES.len(), true);
    assert_eq!(rule_names(&h.upstream_body), ["mine", "theirs"]);
}

#[test]
fn logs_carry_the_request_id_and_no_secret() {
    let world = World::new();
    let secrets = ["tok-SECRET-1", "pw-SECRET-2", "ac-SECRET-3"];
    let mut headers = get("/api/v1/query?query=sum(", Some(secrets[0]));
    headers.push(("x-request-id", "req-42".into()));
    let mut h = host(&world, 1, &headers);
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &answer(Some(500)));
    let auth = format!("Basic {}", b64(&format!("alice@tenants|team-a@tenants:{}", secrets[1])));
    let mut h = host(&world, 2, &[(":method", "GET".into()), (":path", "/api/v1/query?query=up".into()), ("authorization", auth)]);
    let mut f = Flow::new(shared(), 2);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 2, &answer(Some(401)));
    let headers = vec![
        (":method", "GET".into()),
        (":path", "/api/v1/query?query=up".into()),
        ("x-application-credential-id", "ac".into()),
        ("x-application-credential-secret", secrets[2].into()),
    ];
    let mut h = host(&world, 3, &headers);
    assert_eq!(h.header("x-application-credential-secret"), Some(secrets[2]));
    let mut f = Flow::new(shared(), 3);
    f.on_request_headers(&mut h, eos(true));
    assert_eq!(h.header("x-application-credential-secret"), None, "not forwarded");
    f.on_callout(&mut h, 3, &answer(None));
    let logs = world.logs.borrow();
    assert!(logs.iter().any(|l| l.starts_with("[req-42] ")), "{logs:?}");
    assert!(logs.iter().all(|l| l.starts_with('[')), "every line carries a request id: {logs:?}");
    for secret in secrets {
        assert!(logs.iter().all(|l| !l.contains(secret)), "{secret} logged: {logs:?}");
    }
}

/// ngx_wasm_module's differences (README, "Hosts"), each in one place.
mod nginx {
    use super::*;

    #[test]
    fn the_requests_authority_is_never_used() {
        // NGINX's :authority is its own server name and port, not the client's Host.
        let world = World::new();
        let mut headers = get("/api/v1/query?query=up", Some("tok"));
        headers.push((":authority", "nginx-server:10000".into()));
        let mut h = host(&world, 1, &headers);
        Flow::new(shared(), 1).on_request_headers(&mut h, eos(true));
        assert_eq!(world.callouts.borrow()[0].header(":authority"), Some("ks:5000"), "from keystone.url");
    }

    #[test]
    fn callouts_go_to_host_port() {
        let cfg = r#"{"keystone":{"url":"http://keystone.example:5000/v3"}}"#;
        let world = World::new();
        let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
        Flow::new(shared_with(cfg), 1).on_request_headers(&mut h, eos(true));
        assert_eq!(world.callouts.borrow()[0].upstream, "keystone.example:5000");
    }

    #[test]
    fn a_get_never_waits_for_a_body() {
        // eos is always false in NGINX's headers phase.
        let world = World::new();
        let sh = shared();
        validated(&world, &sh, "/api/v1/query?query=up");
        let mut h = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
        assert_eq!(Flow::new(sh, 2).on_request_headers(&mut h, eos(false)), Action::Continue);
    }

    #[test]
    fn header_names_in_the_clients_case_are_known_and_stripped() {
        // NGINX hands names over as the client sent them.
        let world = World::new();
        let headers = vec![
            (":method", "GET".to_string()),
            (":path", "/api/v1/query?query=up".into()),
            ("X-Auth-Token", "tok".into()),
            ("X-Project-Id", "evil".into()),
            ("X-Roles", "admin".into()),
            ("X-Service-Token", "someone-elses".into()),
        ];
        let mut h = host(&world, 1, &headers);
        let mut f = Flow::new(shared(), 1);
        assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Pause, "the token is found");
        f.on_callout(&mut h, 1, &ok(KS_OK));
        assert!(h.resumed);
        for name in ["x-auth-token", "x-project-id", "x-roles", "x-service-token"] {
            assert_eq!(h.header(name), None, "{name} stripped");
        }
        assert_eq!(decoded_query(&h)[0].value, r#"up{project_id="p1"}"#);
    }

    #[test]
    fn a_path_with_a_control_character_or_a_space_is_refused() {
        // NGINX's :path is its decoded URI; `proxy_pass …$uri` would write it into the
        // upstream request line as it is.
        let world = World::new();
        let sh = shared();
        validated(&world, &sh, "/api/v1/query?query=up");
        let split = "/-/healthy? HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/query?query=secret";
        for (path, token) in [(split, None), ("/api/v1/query?query=up&x=\r\n", Some("tok")), ("/api/v1/query\t?query=up", Some("tok"))] {
            let mut h = host(&world, 2, &get(path, token));
            assert_eq!(Flow::new(sh.clone(), 2).on_request_headers(&mut h, eos(false)), Action::Pause, "{path:?}");
            assert_eq!(h.status(), Some(400), "{path:?}");
        }
    }

    #[test]
    fn an_answer_without_a_status_is_filtered() {
        let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/rules");
        h.upstream_headers = vec![];
        h.upstream_body = RULES.as_bytes().to_vec();
        f.on_response_headers(&mut h);
        f.on_response_body(&mut h, RULES.len(), true);
        assert_eq!(rule_names(&h.upstream_body), ["mine"]);
    }

    #[test]
    fn dispatch_status_explains_a_failed_callout() {
        let world = World::new();
        let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
        let mut f = Flow::new(shared(), 1);
        f.on_request_headers(&mut h, eos(true));
        f.on_callout(&mut h, 1, &CalloutAnswer { dispatch_status: Some("broken connection".into()), ..answer(None) });
        let (status, _, body) = h.response.unwrap();
        assert_eq!(status, 503);
        assert!(String::from_utf8(body).unwrap().contains("broken connection"));
    }

    #[test]
    fn crc32_key_collisions_are_harmless() {
        // Every key collides in the mock's NGINX mode: two credentials, one slot.
        let world = World::of(HostKind::Nginx);
        world.collide_keys.set(true);
        let sh = shared();
        validated(&world, &sh, "/api/v1/query?query=up");
        let mut h = host(&world, 2, &get("/api/v1/query?query=up", Some("other")));
        let mut f = Flow::new(sh.clone(), 2);
        f.on_request_headers(&mut h, eos(true));
        assert_eq!(world.callouts.borrow().len(), 2, "no reuse of another credential's entry");
        let other = KS_OK.replace("p1", "p2");
        f.on_callout(&mut h, 2, &ok(&other));
        assert_eq!(decoded_query(&h)[0].value, r#"up{project_id="p2"}"#);
        // The slot now holds the other credential: another worker (its own local cache, the
        // same shared data) asks again for the first one, never mixing them up.
        let mut h = host(&world, 3, &get("/api/v1/query?query=up", Some("tok")));
        assert_eq!(Flow::new(shared(), 3).on_request_headers(&mut h, eos(true)), Action::Pause);
        // This worker still knows it, until the same expiry as the shared entry had.
        let mut h = host(&world, 4, &get("/api/v1/query?query=up", Some("tok")));
        assert_eq!(Flow::new(sh, 4).on_request_headers(&mut h, eos(true)), Action::Continue);
        assert_eq!(decoded_query(&h)[0].value, r#"up{project_id="p1"}"#);
    }
}

#[test]
fn the_local_cache_expires_with_the_shared_entry() {
    let world = World::new();
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    world.store.borrow_mut().clear(); // shared data gone: the local copy still answers
    let mut h = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(Flow::new(sh.clone(), 2).on_request_headers(&mut h, eos(true)), Action::Continue);
    world.now_ms.set(world.now_ms.get() + 300_000);
    let mut h = host(&world, 3, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(Flow::new(sh, 3).on_request_headers(&mut h, eos(true)), Action::Pause, "revalidated at the TTL");
}

#[test]
fn header_values_that_are_not_text() {
    // HTTP/1 allows bytes above 0x7F in a value: in a header the filter does not read,
    // they pass; the request is enforced as any other.
    let world = World::new();
    let sh = shared();
    let (_, _) = validated(&world, &sh, "/api/v1/query?query=up");
    let mut h = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    h.binary_headers.push(("x-junk".into(), b"caf\xe9".to_vec()));
    assert_eq!(Flow::new(sh.clone(), 2).on_request_headers(&mut h, eos(true)), Action::Continue);
    assert_eq!(decoded_query(&h)[0].value, r#"up{project_id="p1"}"#);

    // In a header the filter reads, they are refused before anything else happens.
    for name in ["x-auth-token", "authorization", "content-type", ":path"] {
        let mut h = host(&world, 3, &get("/api/v1/query?query=up", None));
        h.drop_header(name);
        h.binary_headers.push((name.into(), b"tok\xff".to_vec()));
        assert_eq!(Flow::new(sh.clone(), 3).on_request_headers(&mut h, eos(true)), Action::Pause, "{name}");
        assert_eq!(h.status(), Some(400), "{name}");
        let body = String::from_utf8(h.response.as_ref().unwrap().2.clone()).unwrap();
        assert!(body.contains(&format!("the {name} header is not valid UTF-8")), "{body}");
    }
    assert_eq!(world.callouts.borrow().len(), 1, "nothing was sent to Keystone");
}

/// A Keystone answer for a project token with one role.
fn ks_answer(project: &str, role: &str) -> String {
    KS_OK.replace(r#""id":"p1""#, &format!(r#""id":"{project}""#)).replace("reader", role)
}

const OBS_TEXT: &str = "<obs-text>";

/// What a request left behind: the action, the headers that go upstream, the response and
/// what the response callbacks did, the callouts, metrics, wake-ups and logs of its world.
/// A header whose value is `OBS_TEXT` goes as bytes that are not UTF-8.
fn trace(world: &Rc<World>, sh: &Rc<Shared>, ctx: u32, h: &[(&'static str, String)], end_of_stream: bool) -> String {
    let (binary, text): (Vec<_>, Vec<_>) = h.iter().cloned().partition(|(_, v)| v == OBS_TEXT);
    let mut host = host(world, ctx, &text);
    host.binary_headers = binary.into_iter().map(|(k, _)| (k.to_string(), b"r\xff1".to_vec())).collect();
    let mut f = Flow::new(sh.clone(), ctx);
    let action = f.on_request_headers(&mut host, eos(end_of_stream));
    host.upstream_headers = vec![(":status".into(), "200".into()), ("content-length".into(), "2".into())];
    host.upstream_body = b"{}".to_vec();
    let response = (f.on_response_headers(&mut host), f.on_response_body(&mut host, 2, true));
    f.on_done(&mut host);
    let mut metrics: Vec<_> = world.metrics.borrow().iter().map(|(m, n)| (*m, *n)).collect();
    metrics.sort_by_key(|(m, _)| m.name());
    format!(
        "{action:?} {:?} {:?} {:?} {:?} {response:?} {:?} {:?} callouts={} {metrics:?} {:?} {:?}",
        host.entries,
        host.binary_headers,
        host.response,
        host.resumed,
        host.upstream_headers,
        host.upstream_body,
        world.callouts.borrow().len(),
        world.wakes.borrow(),
        world.logs.borrow()
    )
}

/// Requests per configuration in the differential test: 600, so that `cargo test --lib` takes
/// seconds; `KPW_DIFF_REQUESTS=5000` for the full run.
fn differential_requests() -> usize {
    std::env::var("KPW_DIFF_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(600).max(50)
}

/// `Flow::cached_get` against the general path: random requests, drawn from pools of
/// methods, paths (good, refused, open, denied, response-filtered), tokens (cached, not,
/// malformed) and other headers (identity, credential, body, tenant), through two filters
/// of one configuration that know the same tokens, the second without `cached_get`. Both
/// must leave the same trace for every request, and the first must have used it (or, where
/// the configuration rules it out, never).
fn cached_get_matches_general_path(cfg: &str, prefix: &str, expect_used: bool) {
    let methods = ["GET", "GET", "GET", "GET", "POST", "HEAD", "DELETE", "get"];
    let paths = [
        "/api/v1/query?query=up&time=5",
        "/api/v1/query_range?query=rate(x%5B5m%5D)&start=1&end=2&step=15",
        "/api/v1/query?query=sum(rate(http_requests_total%7Bjob%3D%22a%22%7D%5B5m%5D))",
        "/api/v1/query?query=up%7Bproject_id%3D%22other%22%7D",
        "/api/v1/query?query=sum(",
        "/api/v1/query?query=up;x",
        "/api/v1/query?query=up&query=down",
        "/api/v1/series?match[]=up&match%5B%5D=down",
        "/api/v1/series?start=1",
        "/api/v1/labels",
        "/api/v1/label/job/values?match%5B%5D=up",
        "/api/v1/label/__name__/values",
        "/api/v1/query_exemplars?query=up&start=1&end=2",
        "/api/v1/format_query?query=up",
        "/federate?match[]=up",
        "/api/v1/rules",
        "/api/v1/alerts",
        "/api/v1/admin/tsdb/snapshot",
        "/-/healthy",
        "/api/v1/query",
        "/api/v1/query?query=%zz",
        "/api/v1/metadata",
    ];
    // A Fernet token's length: its header length does not fit in a UTF-8 byte.
    let fernet = format!("gAAAAAB{}", "x".repeat(176));
    let too_long = "t".repeat(crate::auth::credentials::MAX_TOKEN_BYTES + 1);
    let tokens = [
        Some("tok"),
        Some("tok"),
        Some(fernet.as_str()),
        Some("tok2"),
        Some("admin"),
        Some("member"),
        Some("revoked"),
        Some(" tok"),
        Some("tok\tx"),
        Some(OBS_TEXT),
        Some(too_long.as_str()),
        Some("nope"),
        Some(""),
        None,
    ];
    let extras: [&[(&'static str, &str)]; 19] = [
        &[("x-auth-token", "tok")],
        &[("x-auth-token", OBS_TEXT)],
        &[("authorization", "Bearer tok")],
        &[("content-length", "5")],
        &[("transfer-encoding", "chunked")],
        &[("x-application-credential-secret", "s"), ("x-application-credential-id", "a")],
        &[("x-user-id", "u")],
        &[("x-scope-orgid", "p2")],
        &[("x-request-id", OBS_TEXT)],
        &[("x-foo", OBS_TEXT)],
        &[],
        &[],
        &[],
        &[("x-request-id", "r1")],
        &[("x-project-id", "evil")],
        &[("authorization", "Basic dTpw")],
        &[("content-length", "0")],
        &[("x-custom-tenant", "evil"), ("x-foo", "1")],
        &[("x-foo", "1")],
    ];
    let (world_a, world_b) = (World::new(), World::new());
    let sh_a = shared_with(cfg);
    let sh_b = Rc::new(Shared { cached_get: false, ..Shared::new(Config::from_json(cfg.as_bytes()).unwrap()) });
    // Both filters know the same tokens (validated through the general path).
    let mut ctx = 1;
    // Scopes, a role the configuration may not allow, and a token Keystone refused.
    let reader = |p| ok(&ks_answer(p, "reader"));
    let known = [
        ("tok", reader("p1")),
        ("tok2", reader("p2")),
        (fernet.as_str(), reader("p4")),
        ("admin", ok(&ks_answer("p3", "admin"))),
        ("member", ok(&ks_answer("p5", "member"))),
        ("revoked", answer(Some(404))),
    ];
    for (token, answer) in &known {
        for (world, sh) in [(&world_a, &sh_a), (&world_b, &sh_b)] {
            let mut h = host(world, ctx, &get(&format!("{prefix}/api/v1/labels"), Some(token)));
            let mut f = Flow::new(sh.clone(), ctx);
            assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Pause);
            let id = world.callouts.borrow().len() as u32;
            f.on_callout(&mut h, id, answer);
        }
        ctx += 1;
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut pick = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let total = differential_requests();
    for i in 0..total {
        // Time passes: the refusal's short memory runs out, and at the end every entry.
        let step = if i == total * 21 / 25 { 400_000 } else if i % (total * 2 / 25) == 0 { 2_000 } else { 0 };
        for w in [&world_a, &world_b] {
            w.now_ms.set(w.now_ms.get() + step);
        }
        let mut h = vec![(":method", methods[pick(methods.len())].to_string()), (":path", format!("{prefix}{}", paths[pick(paths.len())]))];
        if let Some(t) = tokens[pick(tokens.len())] {
            h.push(("x-auth-token", t.to_string()));
        }
        h.extend(extras[pick(extras.len())].iter().map(|(k, v)| (*k, v.to_string())));
        // Envoy says whether a body follows; NGINX never does.
        let eos = pick(2) == 0;
        let (a, b) = (trace(&world_a, &sh_a, ctx, &h, eos), trace(&world_b, &sh_b, ctx, &h, eos));
        assert_eq!(a, b, "request {h:?}");
        ctx += 1;
    }
    let used = sh_a.cached_gets.get();
    assert_eq!(sh_b.cached_gets.get(), 0);
    if expect_used {
        assert!(used > total as u64 / 50, "cached_get served {used} of {total}");
    } else {
        assert_eq!(used, 0);
    }
}

#[test]
fn cached_get_matches_general_path_default_config() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},"unrestricted_roles":["admin"],
        "required_roles":["reader","admin"],"unsafe_passthrough":["/api/v1/metadata"]}"#;
    cached_get_matches_general_path(cfg, "", true);
}

#[test]
fn cached_get_matches_general_path_with_a_path_prefix() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},"path_prefix":"/prometheus"}"#;
    cached_get_matches_general_path(cfg, "/prometheus", true);
}

#[test]
fn no_cached_get_with_identity_or_tenant_headers() {
    let ks = r#""keystone":{"url":"http://ks:5000/v3","upstream":"keystone"}"#;
    cached_get_matches_general_path(&format!(r#"{{{ks},"forward_identity_headers":true}}"#), "", false);
    cached_get_matches_general_path(&format!(r#"{{{ks},"tenant_header":"X-Custom-Tenant"}}"#), "", false);
    cached_get_matches_general_path(&format!(r#"{{{ks},"tenant_header":"X-Custom-Tenant","label_enforcement":false}}"#), "", false);
}
