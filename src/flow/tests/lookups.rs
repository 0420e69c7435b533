//! Endpoints that look something up upstream before the request goes on (metadata's metric
//! names, Alertmanager's silences), Alertmanager's alerts, and remote read.

use super::*;

const CFG_ALL: &str = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},
    "metadata":{"enabled":true,"upstream":"prometheus"},"read":{"enabled":true},
    "alertmanager":{"enabled":true,"upstream":"alertmanager"}}"#;
const ID: &str = "0a1b2c3d-0000-4000-8000-000000000000";

fn silence(project_matcher: &str) -> String {
    format!(
        r#"{{"id":"{ID}","status":{{"state":"active"}},"matchers":[{project_matcher},
        {{"name":"alertname","value":"Down","isRegex":false,"isEqual":true}}],"createdBy":"a","comment":"c"}}"#
    )
}

fn mine() -> String {
    silence(r#"{"name":"project","value":"p1","isRegex":false,"isEqual":true}"#)
}

fn theirs() -> String {
    silence(r#"{"name":"project","value":"p1","isRegex":false,"isEqual":false}"#)
}

/// A request through CFG_ALL with the token of p1, Keystone answered; the flow waits for
/// what comes next.
fn admitted(
    world: &Rc<World>,
    sh: &Rc<Shared>,
    headers: &[(&'static str, String)],
    body: &[u8],
) -> (MockHost, Flow) {
    let mut h = host(world, 1, headers);
    h.body = body.to_vec();
    let mut f = Flow::new(sh.clone(), 1);
    f.on_request_headers(&mut h, eos(body.is_empty()));
    let id = world.callouts.borrow().len() as u32;
    f.on_callout(&mut h, id, &ok(KS_OK));
    (h, f)
}

fn last_callout(world: &World) -> (u32, crate::host::mock::Dispatched) {
    let calls = world.callouts.borrow();
    (calls.len() as u32, calls.last().unwrap().clone())
}

fn json(status: u16, body: &str) -> CalloutAnswer {
    CalloutAnswer {
        status: Some(status),
        body: body.as_bytes().to_vec(),
        ..Default::default()
    }
}

#[test]
fn metadata_is_filtered_to_the_tenants_names_which_are_looked_up_once() {
    let world = World::new();
    let sh = shared_with(CFG_ALL);
    let (mut h, mut f) = admitted(
        &world,
        &sh,
        &get("/api/v1/metadata?limit=1&metric=", Some("tok")),
        b"",
    );
    assert!(!h.resumed, "waits for the names");
    let (id, call) = last_callout(&world);
    assert_eq!(call.upstream, "prometheus");
    assert!(
        call.header(":path")
            .unwrap()
            .starts_with("/api/v1/label/__name__/values?match"),
        "{call:?}"
    );
    assert!(call.header(":path").unwrap().contains("p1"));
    f.on_callout(
        &mut h,
        id,
        &json(
            200,
            r#"{"status":"success","data":["mine_total","other_mine"]}"#,
        ),
    );
    assert!(h.resumed);
    assert_eq!(h.status(), None);
    assert_eq!(
        h.header(":path"),
        Some("/api/v1/metadata?metric="),
        "limit is applied after filtering"
    );
    h.upstream_headers = vec![(":status".into(), "200".into())];
    h.upstream_body = br#"{"status":"success","data":{"theirs":[{"type":"gauge","help":"h","unit":""}],
        "mine":[{"type":"counter","help":"m","unit":""}],"other_mine":[{"type":"gauge","help":"o","unit":""}]}}"#
        .to_vec();
    f.on_response_headers(&mut h);
    let n = h.upstream_body.len();
    f.on_response_body(&mut h, n, true);
    let v: serde_json::Value = serde_json::from_slice(&h.upstream_body).unwrap();
    let keys: Vec<&String> = v["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 1, "limit=1 of the tenant's: {v}");
    assert!(keys[0] == "mine" || keys[0] == "other_mine");
    // The next request of the tenant uses this VM's names.
    let before = world.callouts.borrow().len();
    let mut h2 = host(&world, 2, &get("/api/v1/metadata", Some("tok")));
    let mut f2 = Flow::new(sh.clone(), 2);
    assert_eq!(f2.on_request_headers(&mut h2, eos(true)), Action::Continue);
    assert_eq!(world.callouts.borrow().len(), before);
}

#[test]
fn a_failed_lookup_refuses_and_nothing_goes_on() {
    let world = World::new();
    let (mut h, mut f) = admitted(
        &world,
        &shared_with(CFG_ALL),
        &get("/api/v1/metadata", Some("tok")),
        b"",
    );
    let (id, _) = last_callout(&world);
    f.on_callout(
        &mut h,
        id,
        &CalloutAnswer {
            dispatch_status: Some("timeout".into()),
            ..answer(None)
        },
    );
    assert_eq!(h.status(), Some(503));
    assert!(!h.resumed);
    let (mut h, mut f) = admitted(
        &World::new(),
        &shared_with(CFG_ALL),
        &get("/api/v1/metadata", Some("tok")),
        b"",
    );
    f.on_callout(&mut h, 2, &json(500, "oops"));
    assert_eq!(h.status(), Some(502));
}

#[test]
fn silences_are_listed_filtered_and_refusals_are_worded_for_amtool() {
    let world = World::new();
    let (mut h, mut f) = admitted(
        &world,
        &shared_with(CFG_ALL),
        &get("/alertmanager/api/v2/silences", Some("tok")),
        b"",
    );
    assert!(h.resumed, "a GET needs no body");
    h.upstream_headers = vec![(":status".into(), "200".into())];
    h.upstream_body = format!("[{},{}]", mine(), theirs()).into_bytes();
    f.on_response_headers(&mut h);
    let n = h.upstream_body.len();
    f.on_response_body(&mut h, n, true);
    let listed: serde_json::Value = serde_json::from_slice(&h.upstream_body).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    // A refusal on an Alertmanager path is a JSON string, as Alertmanager words its errors.
    let (mut h, mut f) = admitted(
        &World::new(),
        &shared_with(CFG_ALL),
        &get(&format!("/alertmanager/api/v2/silence/{ID}"), Some("tok")),
        b"",
    );
    f.on_callout(&mut h, 2, &json(200, &theirs()));
    let body = &h.response.as_ref().unwrap().2;
    assert!(serde_json::from_slice::<String>(body)
        .unwrap()
        .contains("not one of your project's silences"));
}

#[test]
fn alerts_carry_the_tenants_filter() {
    let world = World::new();
    let (h, _) = admitted(
        &world,
        &shared_with(CFG_ALL),
        &get(
            "/alertmanager/api/v2/alerts?filter=severity%3D%22page%22",
            Some("tok"),
        ),
        b"",
    );
    assert!(h.resumed);
    let path = h.header(":path").unwrap();
    let params = crate::enforce::form::parse(path.split_once('?').unwrap().1).unwrap();
    let filters: Vec<&str> = params
        .iter()
        .filter(|p| p.key == "filter")
        .map(|p| p.value.as_str())
        .collect();
    assert_eq!(filters, [r#"project="p1""#, r#"severity="page""#]);
}

#[test]
fn a_silence_is_shown_or_deleted_only_if_it_is_the_tenants() {
    for method in ["GET", "DELETE"] {
        for (upstream, allowed) in [(mine(), true), (theirs(), false)] {
            let world = World::new();
            let mut headers = get(&format!("/alertmanager/api/v2/silence/{ID}"), Some("tok"));
            headers[0].1 = method.into();
            let (mut h, mut f) = admitted(&world, &shared_with(CFG_ALL), &headers, b"");
            let (id, call) = last_callout(&world);
            assert_eq!(
                (call.upstream.as_str(), call.header(":path")),
                ("alertmanager", Some(&*format!("/api/v2/silence/{ID}")))
            );
            assert!(!h.resumed);
            f.on_callout(&mut h, id, &json(200, &upstream));
            assert_eq!(h.resumed, allowed, "{method} {upstream}");
            assert_eq!(h.status(), if allowed { None } else { Some(403) });
        }
    }
}

fn post_json(path: &str, body: &str) -> Vec<(&'static str, String)> {
    let mut h = post(path, body);
    h.iter_mut().find(|(k, _)| *k == "content-type").unwrap().1 = "application/json".into();
    h
}

#[test]
fn a_new_silence_gets_the_tenants_matcher_and_an_update_needs_the_old_one_to_be_the_tenants() {
    let new = r#"{"matchers":[{"name":"project","value":"p2","isRegex":false,"isEqual":true},
        {"name":"alertname","value":"Down","isRegex":false}],"startsAt":"2026-01-01T00:00:00Z",
        "endsAt":"2026-01-02T00:00:00Z","createdBy":"a","comment":"c"}"#;
    let world = World::new();
    let (mut h, mut f) = admitted(
        &world,
        &shared_with(CFG_ALL),
        &post_json("/alertmanager/api/v2/silences", new),
        new.as_bytes(),
    );
    assert_eq!(f.on_request_body(&mut h, new.len(), true), Action::Continue);
    let sent: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    let projects: Vec<&serde_json::Value> = sent["matchers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "project")
        .collect();
    assert_eq!(projects.len(), 1);
    assert_eq!(
        (
            projects[0]["value"].as_str(),
            projects[0]["isEqual"].as_bool()
        ),
        (Some("p1"), Some(true))
    );
    // An update: the existing silence is looked up first, with the body held.
    let update = new.replacen('{', &format!(r#"{{"id":"{ID}","#), 1);
    for (upstream, allowed) in [(mine(), true), (theirs(), false)] {
        let world = World::new();
        let (mut h, mut f) = admitted(
            &world,
            &shared_with(CFG_ALL),
            &post_json("/alertmanager/api/v2/silences", &update),
            update.as_bytes(),
        );
        h.resumed = false; // the headers went on; the body is what waits
        assert_eq!(f.on_request_body(&mut h, update.len(), true), Action::Pause);
        let (id, call) = last_callout(&world);
        assert_eq!(
            call.header(":path"),
            Some(&*format!("/api/v2/silence/{ID}"))
        );
        f.on_callout(&mut h, id, &json(200, &upstream));
        assert_eq!(h.status(), if allowed { None } else { Some(403) });
        assert_eq!(h.resumed, allowed);
        let body = String::from_utf8_lossy(&h.body);
        assert_eq!(
            body.contains(r#""value":"p1""#),
            allowed,
            "the enforced body goes only when allowed: {body}"
        );
    }
}

#[test]
fn remote_read_queries_get_the_tenant_matcher() {
    use crate::enforce::remote_read::{self, label_matcher, LabelMatcher, Query, ReadRequest};
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: 1,
            end_timestamp_ms: 2,
            matchers: vec![LabelMatcher::new(label_matcher::Type::Eq, "__name__", "up")],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let body = remote_read::encode(&req).unwrap();
    let mut headers = post("/api/v1/read", "");
    headers.retain(|(k, _)| *k != "content-type" && *k != "content-length");
    headers.push(("content-type", "application/x-protobuf".into()));
    headers.push(("content-encoding", "snappy".into()));
    headers.push(("content-length", body.len().to_string()));
    let world = World::new();
    let (mut h, mut f) = admitted(&world, &shared_with(CFG_ALL), &headers, &body);
    assert_eq!(
        f.on_request_body(&mut h, body.len(), true),
        Action::Continue
    );
    let got = remote_read::decode(&h.body, &remote_read::Limits::default()).unwrap();
    let m = &got.queries[0].matchers;
    assert_eq!(m.len(), 2);
    assert_eq!((m[1].name.as_str(), m[1].value.as_str()), ("project", "p1"));
    // Off unless configured.
    let (h, _) = admitted(&World::new(), &shared(), &headers, &body);
    assert_eq!(h.status(), Some(403));
}
