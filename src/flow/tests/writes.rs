//! Remote write through the flow: stamped bodies, the writer's roles and tenant, the status
//! codes a sender acts on, and nothing forwarded that the filter did not encode.

use super::*;
use crate::enforce::remote_write::{self, v1, Decoded, Limits, Schema};
use prost::Message;

const WRITE_CFG: &str =
    r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},"write":{"enabled":true}}"#;
const RW1: &str = "application/x-protobuf";

fn series(labels: &[(&str, &str)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels.iter().map(|(n, v)| v1::Label::new(*n, *v)).collect(),
        samples: vec![v1::Sample {
            value: 1.5,
            timestamp: 1_700_000_000_000,
        }],
        ..Default::default()
    }
}

fn rw_body(req: &v1::WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

fn one_series() -> Vec<u8> {
    rw_body(&v1::WriteRequest {
        timeseries: vec![series(&[
            ("__name__", "up"),
            ("job", "node"),
            ("project", "someone-else"),
        ])],
        metadata: vec![],
    })
}

fn write_headers(path: &str, body: &[u8], content_type: &str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "POST".into()),
        (":path", path.to_string()),
        ("x-auth-token", "tok".into()),
        ("content-type", content_type.into()),
        ("content-encoding", "snappy".into()),
        ("x-prometheus-remote-write-version", "0.1.0".into()),
        ("content-length", body.len().to_string()),
    ]
}

/// A write through `cfg`, Keystone answering `ks`; the host after the whole body.
fn write_with(
    cfg: &str,
    ks: &str,
    extra: &[(&'static str, &str)],
    content_type: &str,
    body: &[u8],
) -> (Rc<World>, MockHost) {
    let world = World::new();
    let mut headers = write_headers("/api/v1/write", body, content_type);
    headers.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
    headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let mut h = host(&world, 1, &headers);
    h.body = body.to_vec();
    let mut f = Flow::new(shared_with(cfg), 1);
    if f.on_request_headers(&mut h, eos(false)) == Action::Pause && h.status().is_none() {
        f.on_callout(&mut h, 1, &ok(ks));
        if h.status().is_none() {
            f.on_request_body(&mut h, body.len(), true);
        }
    }
    (world, h)
}

fn forwarded(h: &MockHost) -> v1::WriteRequest {
    match remote_write::decode(&h.body, Schema::V1, &Limits::default()).unwrap() {
        Decoded::V1(req) => req,
        other => panic!("{other:?}"),
    }
}

fn labels(ts: &v1::TimeSeries) -> Vec<(String, String)> {
    ts.labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// The filter's own answer.
fn answer_text(h: &MockHost) -> String {
    h.response
        .as_ref()
        .map(|r| String::from_utf8_lossy(&r.2).into_owned())
        .unwrap_or_default()
}

fn answer_header(h: &MockHost, name: &str) -> Option<String> {
    h.response
        .as_ref()?
        .1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn pairs(l: &[(&str, &str)]) -> Vec<(String, String)> {
    l.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_members_series_get_its_project_and_nothing_else_it_claims() {
    let claims: [(&'static str, &str); 6] = [
        ("thanos-tenant", "p2"),
        ("x-scope-orgid", "p2"),
        ("accountid", "7"),
        ("projectid", "8"),
        ("x-mimir-skiplabelnamevalidation", "true"),
        ("x-project-id", "p2"),
    ];
    let (world, h) = write_with(
        WRITE_CFG,
        &ks_answer("p1", "member"),
        &claims,
        RW1,
        &one_series(),
    );
    assert_eq!(h.status(), None, "forwarded");
    let req = forwarded(&h);
    assert_eq!(
        labels(&req.timeseries[0]),
        pairs(&[("__name__", "up"), ("job", "node"), ("project", "p1")])
    );
    assert_eq!(
        req.timeseries[0].samples,
        vec![v1::Sample {
            value: 1.5,
            timestamp: 1_700_000_000_000
        }]
    );
    for (name, _) in claims {
        assert!(
            h.sent(name).iter().all(|v| v.is_empty()),
            "{name} stripped: {:?}",
            h.sent(name)
        );
    }
    assert_eq!(h.sent("content-type"), vec![RW1]);
    assert_eq!(h.sent("content-encoding"), vec!["snappy"]);
    if !is_nginx() {
        assert_eq!(
            h.sent("content-length"),
            Vec::<&str>::new(),
            "the host frames the new body"
        );
    }
    assert_eq!(world.metric(Metric::RequestsAllowed), 1);
}

#[test]
fn the_tenant_header_carries_the_project_written_to_and_subprojects_stay_out() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},"write":{"enabled":true},
        "tenant_header":"THANOS-TENANT","include_subprojects":true}"#;
    let world = World::new();
    let body = one_series();
    let mut headers = write_headers("/api/v1/write", &body, RW1);
    headers.push(("thanos-tenant", "p2".into()));
    let mut h = host(&world, 1, &headers);
    h.body = body.clone();
    let mut f = Flow::new(shared_with(cfg), 1);
    assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Pause);
    f.on_callout(&mut h, 1, &ok(&ks_answer("p1", "member")));
    f.on_callout(
        &mut h,
        2,
        &ok(r#"{"project":{"id":"p1","subtree":{"c1":null}}}"#),
    );
    assert_eq!(
        f.on_request_body(&mut h, body.len(), true),
        Action::Continue
    );
    assert_eq!(h.status(), None);
    assert_eq!(
        h.sent("thanos-tenant"),
        vec!["p1"],
        "the one project written to, not p1|c1"
    );
    assert_eq!(
        labels(&forwarded(&h).timeseries[0])[2],
        ("project".to_string(), "p1".to_string())
    );
}

#[test]
fn a_domain_writer_writes_its_domain_and_claims_no_project() {
    let ks = DOMAIN_OK.replace("reader", "admin");
    let body = rw_body(&v1::WriteRequest {
        timeseries: vec![series(&[
            ("__name__", "up"),
            ("domain", "d0"),
            ("project", "p7"),
        ])],
        metadata: vec![],
    });
    let (_, h) = write_with(WRITE_CFG, &ks, &[], RW1, &body);
    assert_eq!(h.status(), None);
    assert_eq!(
        labels(&forwarded(&h).timeseries[0]),
        pairs(&[("__name__", "up"), ("domain", "d9")])
    );
}

#[test]
fn roles_decide_who_writes() {
    // A reader reads but does not write; writing is off unless turned on.
    let (_, h) = write_with(WRITE_CFG, KS_OK, &[], RW1, &one_series());
    assert_eq!(h.status(), Some(403));
    assert!(answer_text(&h).contains("writing metrics needs one of the roles member, admin"));
    let (world, h) = write_with(CFG, &ks_answer("p1", "member"), &[], RW1, &one_series());
    assert_eq!(h.status(), Some(403));
    assert!(
        world.callouts.borrow().is_empty(),
        "an unknown path: Keystone is not asked"
    );
    // An unrestricted writer's labels pass, in a body the filter encoded.
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},"write":{"enabled":true},
        "unrestricted_roles":["cloud_admin"]}"#;
    let (_, h) = write_with(
        cfg,
        &ks_answer("p1", "cloud_admin"),
        &[],
        RW1,
        &one_series(),
    );
    assert_eq!(h.status(), None);
    assert_eq!(
        labels(&forwarded(&h).timeseries[0]),
        pairs(&[
            ("__name__", "up"),
            ("job", "node"),
            ("project", "someone-else")
        ])
    );
}

#[test]
fn a_conflict_is_refused_when_the_operator_says_so() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},"write":{"enabled":true,"on_conflict":"reject"}}"#;
    let (_, h) = write_with(cfg, &ks_answer("p1", "member"), &[], RW1, &one_series());
    assert_eq!(h.status(), Some(400));
    let text = answer_text(&h);
    assert!(
        text.contains("someone-else") && text.contains("up"),
        "names the series: {text}"
    );
}

#[test]
fn metadata_only_requests_are_answered_without_the_upstream() {
    let req = v1::WriteRequest {
        timeseries: vec![],
        metadata: vec![v1::MetricMetadata {
            metric_family_name: "up".into(),
            help: "h".into(),
            ..Default::default()
        }],
    };
    let (world, h) = write_with(
        WRITE_CFG,
        &ks_answer("p1", "member"),
        &[],
        RW1,
        &rw_body(&req),
    );
    assert_eq!(h.status(), Some(204));
    assert_eq!(world.metric(Metric::RequestsAllowed), 1);
    // Forwarded as it is when the operator wants metadata.
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},"write":{"enabled":true,"metadata":"forward"}}"#;
    let (_, h) = write_with(cfg, &ks_answer("p1", "member"), &[], RW1, &rw_body(&req));
    assert_eq!(h.status(), None);
    assert_eq!(forwarded(&h).metadata.len(), 1);
}

#[test]
fn bad_bodies_get_the_status_a_sender_should_act_on() {
    let member = ks_answer("p1", "member");
    let good = one_series();
    let mut framed = b"\xff\x06\x00\x00sNaPpY".to_vec();
    framed.extend_from_slice(&good);
    let mut bomb = Vec::new();
    bomb.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x04]); // a length prefix of 1 GiB
    bomb.extend_from_slice(&good[1..]);
    let truncated = snap::raw::Encoder::new()
        .compress_vec(
            &v1::WriteRequest {
                timeseries: vec![series(&[("__name__", "up")])],
                metadata: vec![],
            }
            .encode_to_vec()[..5],
        )
        .unwrap();
    let cases: [(&[u8], &str, u32); 6] = [
        (b"not snappy at all", RW1, 400),
        (&framed, RW1, 400),
        (&truncated, RW1, 400),
        (&bomb, RW1, 413),
        (&good, "application/json", 415),
        (
            &good,
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
            400,
        ),
    ];
    for (body, ct, status) in cases {
        let (world, h) = write_with(WRITE_CFG, &member, &[], ct, body);
        assert_eq!(
            h.status(),
            Some(status),
            "{ct} {:?}: {}",
            &body[..8.min(body.len())],
            answer_text(&h)
        );
        assert_eq!(world.metric(Metric::RequestsAllowed), 0);
    }
}

#[test]
fn too_large_and_empty_writes_are_refused_before_keystone() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},"write":{"enabled":true,"max_body_bytes":10}}"#;
    let (world, h) = write_with(cfg, &ks_answer("p1", "member"), &[], RW1, &one_series());
    assert_eq!(h.status(), Some(413));
    assert!(world.callouts.borrow().is_empty());
    let (world, h) = write_with(WRITE_CFG, &ks_answer("p1", "member"), &[], RW1, b"");
    assert_eq!(h.status(), Some(400));
    assert!(world.callouts.borrow().is_empty());
    let (_, h) = write_with(
        WRITE_CFG,
        &ks_answer("p1", "member"),
        &[("content-encoding", "gzip")],
        RW1,
        &one_series(),
    );
    assert_eq!(h.status(), Some(415), "snappy only");
}

#[test]
fn keystone_too_slow_asks_the_sender_to_retry() {
    let world = World::new();
    let body = one_series();
    let mut h = host(&world, 1, &write_headers("/api/v1/write", &body, RW1));
    h.body = body.clone();
    let mut f = Flow::new(shared_with(WRITE_CFG), 1);
    assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Pause);
    f.on_callout(
        &mut h,
        1,
        &CalloutAnswer {
            dispatch_status: Some("timeout".into()),
            ..answer(None)
        },
    );
    assert_eq!(
        h.status(),
        Some(503),
        "a write is retried, never dropped, when Keystone is slow"
    );
    assert_eq!(answer_header(&h, "retry-after").as_deref(), Some("5"));
}

#[test]
fn only_post_writes() {
    let world = World::new();
    let mut h = host(&world, 1, &get("/api/v1/write", Some("tok")));
    let mut f = Flow::new(shared_with(WRITE_CFG), 1);
    f.on_request_headers(&mut h, eos(true));
    assert_eq!(h.status(), Some(405));
}
