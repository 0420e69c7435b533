//! What is refused before or after the scope, and what the query string carries.

use super::*;

#[test]
fn refusals() {
    let world = World::new();
    let cases: [(Vec<(&'static str, String)>, u32); 5] = [
        (get("/api/v1/query?query=up", None), 401),
        (get("/api/v1/status/config", Some("t")), 403),
        (get("/api/v1/admin/tsdb/snapshot", None), 403),
        (
            vec![
                (":method", "PUT".into()),
                (":path", "/api/v1/query".into()),
                ("x-auth-token", "t".into()),
            ],
            405,
        ),
        (get("/api/v1/query?query=up", Some("bad token")), 401),
    ];
    for (headers, want) in cases {
        let mut h = host(&world, 1, &headers);
        assert_eq!(
            Flow::new(shared(), 1).on_request_headers(&mut h, eos(true)),
            Action::Pause
        );
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
fn bad_promql_is_400_after_validation() {
    let world = World::new();
    let (h, _) = validated(&world, &shared(), "/api/v1/query?query=sum(");
    assert_eq!(h.status(), Some(400));
    assert!(!h.resumed);
}

#[test]
fn series_without_match_gets_the_tenant_selector() {
    for path in [
        "/api/v1/series?start=1",
        "/api/v1/labels",
        "/api/v1/label/__name__/values",
        "/federate",
    ] {
        let (h, _) = validated(&World::new(), &shared(), path);
        assert_eq!(h.status(), None, "{path}");
        let q = decoded_query(&h);
        let m: Vec<&str> = q
            .iter()
            .filter(|p| p.key == "match[]")
            .map(|p| p.value.as_str())
            .collect();
        assert_eq!(m, [r#"{project="p1"}"#], "{path}");
    }
    let (h, _) = validated(
        &World::new(),
        &shared(),
        "/federate?match[]=up&match[]={job=%22x%22}",
    );
    let m: Vec<String> = decoded_query(&h).into_iter().map(|p| p.value).collect();
    assert_eq!(m, [r#"up{project="p1"}"#, r#"{job="x",project="p1"}"#]);
}

#[test]
fn prefix_and_passthrough() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3"},"path_prefix":"/prometheus",
        "unsafe_passthrough":["/api/v1/metadata"]}"#;
    let (h, _) = validated(
        &World::new(),
        &shared_with(cfg),
        "/prometheus/api/v1/query?query=up",
    );
    assert_eq!(decoded_query(&h)[0].value, r#"up{project="p1"}"#);
    assert!(h
        .header(":path")
        .unwrap()
        .starts_with("/prometheus/api/v1/query?"));
    let (h, _) = validated(
        &World::new(),
        &shared_with(cfg),
        "/prometheus/api/v1/metadata?metric=up",
    );
    assert_eq!(
        (h.status(), h.header(":path")),
        (None, Some("/prometheus/api/v1/metadata?metric=up"))
    );
    let mut h = host(
        &World::new(),
        1,
        &get("/api/v1/query?query=up", Some("tok")),
    );
    Flow::new(shared_with(cfg), 1).on_request_headers(&mut h, eos(true));
    assert_eq!(h.status(), Some(403), "outside the prefix");
}
