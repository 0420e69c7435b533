//! Who sent a request, in the log lines and for the host's access log (`Host::set_audit`):
//! named once Keystone has said, never before, and never with a secret.

use super::*;

fn logs(world: &Rc<World>) -> Vec<String> {
    world.logs.borrow().clone()
}

fn with_id(mut headers: Vec<(&'static str, String)>, id: &str) -> Vec<(&'static str, String)> {
    headers.push(("x-request-id", id.into()));
    headers
}

#[test]
fn an_admitted_request_names_its_sender_on_both_paths() {
    let (world, sh) = (World::new(), shared());
    let (h, _) = validated(&world, &sh, "/api/v1/query?query=up");
    assert_eq!(h.status(), None);
    assert_eq!(
        h.audit,
        Some(("p1".into(), "u1".into())),
        "kpw_tenant and kpw_user"
    );
    assert_eq!(
        logs(&world),
        ["[ctx-1] allowed GET /api/v1/query user_id=u1 project_id=p1"]
    );
    // The same token again: the short path says the same.
    let mut h = host(
        &world,
        2,
        &with_id(
            get(
                "/api/v1/query_range?query=up&start=1&end=2&step=1",
                Some("tok"),
            ),
            "r-2",
        ),
    );
    let mut f = Flow::new(sh.clone(), 2);
    assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Continue);
    assert_eq!(sh.cached_gets.get(), 1, "the short path served it");
    assert_eq!(h.audit, Some(("p1".into(), "u1".into())));
    assert_eq!(
        logs(&world)[1],
        "[r-2] allowed GET /api/v1/query_range user_id=u1 project_id=p1"
    );
    // A POST is counted and logged once, when its body has passed.
    let body = "query=up";
    let mut h = host(&world, 3, &post("/api/v1/query", body));
    h.body = body.as_bytes().to_vec();
    let mut f = Flow::new(sh, 3);
    f.on_request_headers(&mut h, eos(false));
    assert_eq!(logs(&world).len(), 2, "not before the body has passed");
    assert_eq!(
        f.on_request_body(&mut h, body.len(), true),
        Action::Continue
    );
    assert_eq!(
        logs(&world)[2],
        "[ctx-3] allowed POST /api/v1/query user_id=u1 project_id=p1"
    );
    assert_eq!(h.audit, Some(("p1".into(), "u1".into())));
}

#[test]
fn a_domain_scope_is_named_by_its_domain() {
    let world = World::new();
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(DOMAIN_OK));
    assert_eq!(h.audit, Some(("d9".into(), "u".into())));
    assert_eq!(
        logs(&world),
        ["[ctx-1] allowed GET /api/v1/query user_id=u domain_id=d9"]
    );
}

#[test]
fn refusals_name_the_sender_once_keystone_has_said() {
    let (world, sh) = (World::new(), shared());
    // Refused before Keystone said anything: no one is named, nothing is set for the access log.
    let mut h = host(
        &world,
        1,
        &with_id(get("/api/v1/query?query=up", Some("tok-SECRET-1")), "r-1"),
    );
    let mut f = Flow::new(sh.clone(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &answer(Some(401)));
    assert_eq!((h.status(), &h.audit), (Some(401), &None));
    assert_eq!(
        logs(&world).last().unwrap(),
        "[r-1] refused with 401: Keystone refused the token in X-Auth-Token: it is invalid, expired or revoked; \
         get a new token with `openstack token issue`"
    );
    let mut h = host(
        &world,
        2,
        &with_id(get("/api/v1/query?query=up", None), "r-2"),
    );
    Flow::new(sh.clone(), 2).on_request_headers(&mut h, eos(true));
    assert_eq!((h.status(), &h.audit), (Some(401), &None));
    assert!(logs(&world)
        .last()
        .unwrap()
        .starts_with("[r-2] refused with 401: authentication required"));

    // After Keystone said who: a forbidden project, a bad query, a policy refusal.
    let (h, _) = validated(
        &world,
        &sh,
        "/api/v1/query?query=up%7Bproject%3D%22p2%22%7D",
    );
    assert_eq!(h.status(), Some(403));
    let line = logs(&world).last().unwrap().clone();
    assert!(
        line.starts_with("[ctx-1] refused with 403 user_id=u1 project_id=p1: "),
        "{line}"
    );
    // The access log names the sender of a request refused after validation too.
    assert_eq!(h.audit, Some(("p1".into(), "u1".into())));
    let mut h = host(
        &world,
        3,
        &with_id(get("/api/v1/query?query=sum(", Some("tok")), "r-3"),
    );
    Flow::new(sh.clone(), 3).on_request_headers(&mut h, eos(true));
    assert_eq!(h.status(), Some(400));
    assert!(logs(&world)
        .last()
        .unwrap()
        .starts_with("[r-3] refused with 400 user_id=u1 project_id=p1: "));
    let roles = shared_with(
        r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"},"required_roles":["admin"]}"#,
    );
    let (h, _) = validated(&World::new(), &roles, "/api/v1/query?query=up");
    assert_eq!((h.status(), h.audit.is_some()), (Some(403), true));

    // A denied path: Keystone is not asked, but a credential the worker knows is named.
    let mut h = host(
        &world,
        4,
        &with_id(get("/api/v1/admin/tsdb/snapshot", Some("tok")), "r-4"),
    );
    Flow::new(sh.clone(), 4).on_request_headers(&mut h, eos(true));
    assert_eq!(h.status(), Some(403));
    assert!(logs(&world)
        .last()
        .unwrap()
        .starts_with("[r-4] refused with 403 user_id=u1 project_id=p1: /api/v1/admin/"));
    assert_eq!(h.audit, Some(("p1".into(), "u1".into())));
    // Another worker, which knows it from shared data only, too; an unknown one is not named.
    let other_worker = shared();
    let mut h = host(
        &world,
        5,
        &with_id(get("/api/v1/admin/tsdb/snapshot", Some("tok")), "r-5"),
    );
    Flow::new(other_worker, 5).on_request_headers(&mut h, eos(true));
    assert!(logs(&world)
        .last()
        .unwrap()
        .starts_with("[r-5] refused with 403 user_id=u1 project_id=p1: "));
    let callouts = world.callouts.borrow().len();
    let mut h = host(
        &world,
        6,
        &with_id(get("/api/v1/admin/tsdb/snapshot", Some("unknown")), "r-6"),
    );
    Flow::new(sh, 6).on_request_headers(&mut h, eos(true));
    assert!(logs(&world)
        .last()
        .unwrap()
        .starts_with("[r-6] refused with 403: /api/v1/admin/"));
    assert_eq!(
        (world.callouts.borrow().len(), &h.audit),
        (callouts, &None),
        "Keystone is not asked"
    );

    for line in logs(&world) {
        assert!(
            !line.contains("tok-SECRET-1") && !line.contains("unknown"),
            "{line}"
        );
    }
}

#[test]
fn an_answer_that_cannot_be_filtered_is_logged_with_the_sender() {
    let world = World::new();
    let (mut h, mut f) = validated(&world, &shared(), "/api/v1/rules");
    h.upstream_headers = vec![
        (":status".into(), "200".into()),
        ("content-encoding".into(), "br".into()),
    ];
    f.on_response_headers(&mut h);
    h.upstream_body = b"x".to_vec();
    f.on_response_body(&mut h, 1, true);
    let line = logs(&world).last().unwrap().clone();
    assert_eq!(line, "[ctx-1] upstream answer not filtered user_id=u1 project_id=p1: the upstream answer has an encoding the filter cannot read");
}

#[test]
fn allowed_lines_are_debug_and_the_access_log_names_the_sender_at_any_level() {
    let (world, sh) = (World::new(), shared());
    let both = Some(("p1".to_string(), "u1".to_string()));
    // At info (Envoy's default): refusals are written, allowed requests are not.
    world.log_level.set(Some(Level::Info));
    let (h, _) = validated(&world, &sh, "/api/v1/query?query=up");
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(
        Flow::new(sh.clone(), 2).on_request_headers(&mut h2, eos(true)),
        Action::Continue
    );
    let (bad, _) = validated(&world, &sh, "/api/v1/query?query=sum(");
    assert_eq!(bad.status(), Some(400));
    assert_eq!(logs(&world).len(), 1, "{:?}", logs(&world));
    assert!(logs(&world)[0].starts_with("[ctx-1] refused with 400 user_id=u1 project_id=p1: "));
    assert_eq!((&h.audit, &h2.audit), (&both, &both));
    // At warning nothing of this is written (nor formatted); the access log still names them.
    world.log_level.set(Some(Level::Warn));
    let (bad, _) = validated(&world, &sh, "/api/v1/query?query=sum(");
    assert_eq!(
        (bad.status(), &bad.audit, logs(&world).len()),
        (Some(400), &both, 1)
    );
}
