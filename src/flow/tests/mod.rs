//! The request flow against the mock host, found by behaviour (one file each), over the small
//! builders below. Every test runs under the host `KPW_MOCK_HOST` names (Envoy by default;
//! `make unit` runs them as NGINX too); a test about one host's behaviour names it.

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
    CalloutAnswer {
        status: Some(200),
        body: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

fn answer(status: Option<u16>) -> CalloutAnswer {
    CalloutAnswer {
        status,
        ..Default::default()
    }
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

/// Requests with the token "tok" that this worker does not know yet, each paused.
fn paused_first_requests(
    world: &Rc<World>,
    sh: &Rc<Shared>,
    contexts: std::ops::RangeInclusive<u32>,
) -> Vec<(MockHost, Flow)> {
    contexts
        .map(|ctx| {
            let mut h = host(world, ctx, &get("/api/v1/query?query=a", Some("tok")));
            let mut f = Flow::new(sh.clone(), ctx);
            assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Pause);
            (h, f)
        })
        .collect()
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

const DOMAIN_OK: &str = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"domain":{"id":"d9"},"roles":[{"id":"r","name":"reader"}]}}"#;

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

const RULES: &str = r#"{"status":"success","data":{"groups":[{"name":"g","rules":[
    {"name":"mine","labels":{"project":"p1"}},{"name":"theirs","labels":{"project":"p2"}}]}]}}"#;

fn rule_names(body: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

/// A Keystone answer for a project token with one role.
fn ks_answer(project: &str, role: &str) -> String {
    KS_OK
        .replace(r#""id":"p1""#, &format!(r#""id":"{project}""#))
        .replace("reader", role)
}

const OBS_TEXT: &str = "<obs-text>";

mod answers;
mod audit;
mod authentication;
mod bodies;
mod enforcement;
mod headers;
mod lookups;
mod nginx;
mod short_path;
mod unauthorized;
mod writes;
