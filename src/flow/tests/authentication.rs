//! Credentials and scope through the flow: validation, the caches, Keystone's failures, waiting
//! for another request's exchange (and where a host can't wake it), service logins, sub-projects.

use super::*;

#[test]
fn get_query_validates_then_rewrites_and_resumes() {
    let world = World::new();
    let sh = shared();
    let mut h = host(
        &world,
        1,
        &get("/api/v1/query?query=up&time=5", Some("tok")),
    );
    let mut f = Flow::new(sh.clone(), 1);
    assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Pause);
    assert_eq!(h.header("x-auth-token"), None, "token stripped");
    {
        let c = &world.callouts.borrow()[0];
        assert_eq!(
            (c.upstream.as_str(), c.timeout_ms, c.context),
            ("keystone", 2000, 1)
        );
        assert_eq!(c.header(":path"), Some("/v3/auth/tokens?nocatalog"));
        assert_eq!(c.header("x-subject-token"), Some("tok"));
    }
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert!(h.resumed);
    assert_eq!(h.status(), None);
    assert_eq!(decoded_query(&h)[0].value, r#"up{project="p1"}"#);
    assert_eq!(world.metric(Metric::RequestsAllowed), 1);

    // Second request, same token: served from the cache, no callout.
    let mut h2 = host(
        &world,
        2,
        &get("/api/v1/query_range?query=rate(x[5m])", Some("tok")),
    );
    let mut f2 = Flow::new(sh, 2);
    assert_eq!(f2.on_request_headers(&mut h2, eos(true)), Action::Continue);
    assert_eq!(world.callouts.borrow().len(), 1);
    assert_eq!(decoded_query(&h2)[0].value, r#"rate(x{project="p1"}[5m])"#);
    assert_eq!(
        (
            world.metric(Metric::CacheHits),
            world.metric(Metric::CacheMisses)
        ),
        (1, 1)
    );
}

#[test]
fn cache_entry_expires() {
    let world = World::new();
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    world.now_ms.set(world.now_ms.get() + 300_000);
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(
        Flow::new(sh, 2).on_request_headers(&mut h2, eos(true)),
        Action::Pause
    );
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
    assert_eq!(
        h2.status(),
        Some(503),
        "a cached entry must not look fresh forever"
    );
    assert_eq!(world.callouts.borrow().len(), 1);
}

#[test]
fn nginx_key_collisions_never_mix_credentials() {
    let world = World::of(HostKind::Nginx);
    world.collide_keys.set(true);
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("mallory")));
    assert_eq!(
        Flow::new(sh, 2).on_request_headers(&mut h2, eos(true)),
        Action::Pause
    );
    assert_eq!(
        world.callouts.borrow().len(),
        2,
        "another token's entry was not reused"
    );
}

#[test]
fn no_credential_names_keystone() {
    let mut h = host(&World::new(), 1, &get("/api/v1/query?query=up", None));
    Flow::new(shared(), 1).on_request_headers(&mut h, eos(true));
    let (_, rh, _) = h.response.unwrap();
    assert!(rh.contains(&(
        "www-authenticate".into(),
        "Keystone uri=\"http://ks:5000/v3\"".into()
    )));
}

#[test]
fn keystone_failures() {
    let cases: [(CalloutAnswer, u32); 6] = [
        (answer(Some(404)), 401),
        (answer(Some(401)), 401),
        (answer(Some(500)), 503),
        (answer(None), 503),
        (
            CalloutAnswer {
                dispatch_status: Some("timeout".into()),
                ..answer(None)
            },
            504,
        ),
        (
            CalloutAnswer {
                dispatch_status: Some("broken connection".into()),
                ..answer(None)
            },
            503,
        ),
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
    assert_eq!(
        world.callouts.borrow().len(),
        1,
        "retries did not reach Keystone"
    );
    world.now_ms.set(world.now_ms.get() + 10_000);
    let mut h = host(&world, 20, &get("/api/v1/query?query=up", Some("bad")));
    Flow::new(sh, 20).on_request_headers(&mut h, eos(true));
    assert_eq!(
        world.callouts.borrow().len(),
        2,
        "asked again after negative_ttl_seconds"
    );
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
    assert!(
        matches!(wakes[0].1, Wake::Scope(_)),
        "the scope is handed over: no callout from another context"
    );
    for (ctx, wake) in wakes {
        let (h, f) = &mut waiters[ctx as usize - 2];
        f.on_wake(h, &wake);
        assert!(h.resumed, "woken request resumed");
        assert_eq!(decoded_query(h)[0].value, r#"a{project="p1"}"#);
    }
    assert_eq!(world.callouts.borrow().len(), 1);
}

#[test]
fn waiters_get_the_owners_failure() {
    // Envoy: a waiter is woken as its own context (set_effective_context).
    let world = World::of(HostKind::Envoy);
    let sh = shared();
    let [(mut h1, mut f1), (mut h2, mut f2)]: [_; 2] = paused_first_requests(&world, &sh, 1..=2)
        .try_into()
        .ok()
        .unwrap();
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
    let [(mut h1, mut f1), (mut h2, mut f2)]: [_; 2] = paused_first_requests(&world, &sh, 1..=2)
        .try_into()
        .ok()
        .unwrap();
    f1.on_done(&mut h1); // the client went away
    let (ctx, wake) = world.wakes.borrow_mut().pop().unwrap();
    assert_eq!((ctx, &wake), (2, &Wake::Retry));
    f2.on_wake(&mut h2, &wake);
    assert_eq!(
        world.callouts.borrow().len(),
        2,
        "the waiter asks Keystone itself"
    );
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
    assert_eq!(
        world.callouts.borrow().len(),
        100,
        "each request its own exchange"
    );
    for (i, (h, f)) in flows.iter_mut().enumerate() {
        let id = i as u32 + 1;
        assert_eq!(
            world.callouts.borrow()[i].context,
            h.context,
            "answered to the request that asked"
        );
        f.on_callout(h, id, &ok(KS_OK));
        assert!(h.resumed, "request {id} resumed");
        assert_eq!(decoded_query(h)[0].value, r#"a{project="p1"}"#);
    }
    assert!(world.wakes.borrow().is_empty());
    // Once one has stored the scope, later requests are served from the cache.
    let mut h = host(&world, 101, &get("/api/v1/query?query=a", Some("tok")));
    assert_eq!(
        Flow::new(sh.clone(), 101).on_request_headers(&mut h, eos(true)),
        Action::Continue
    );

    // The same for a service login: each request logs in itself.
    let (world, (mut h1, mut f1), (mut h2, mut f2)) = two_with_service_credentials(HostKind::Nginx);
    assert_eq!(world.callouts.borrow().len(), 2, "two logins");
    let login = CalloutAnswer {
        status: Some(201),
        subject_token: Some("svc-token".into()),
        ..ok(KS_OK)
    };
    f1.on_callout(&mut h1, 1, &login);
    f2.on_callout(&mut h2, 2, &login);
    f1.on_callout(&mut h1, 3, &ok(KS_OK));
    f2.on_callout(&mut h2, 4, &ok(KS_OK));
    assert!(h1.resumed && h2.resumed);
    assert!(world.wakes.borrow().is_empty());
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
        let cfg =
            format!(r#"{{"keystone":{{"url":"http://ks:5000/v3","upstream":"keystone"}}{extra}}}"#);
        Shared::new(Config::from_json(cfg.as_bytes()).unwrap())
            .scopes
            .namespace()
            .to_string()
    };
    let base = ns("");
    assert_eq!(ns(""), base, "the same configuration, the same cache");
    assert_eq!(
        ns(r#","required_roles":["reader"]"#),
        base,
        "decided per request, not stored"
    );
    for other in [
        r#","include_subprojects":true"#,
        r#","cache":{"ttl_seconds":60}"#,
        r#","cache":{"negative_ttl_seconds":1}"#,
        r#","project_label":"tenant""#,
    ] {
        assert_ne!(ns(other), base, "{other}");
    }
    let other_upstream = r#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone-b"}}"#;
    assert_ne!(
        Shared::new(Config::from_json(other_upstream.as_bytes()).unwrap())
            .scopes
            .namespace()
            .to_string(),
        base
    );
}

#[test]
fn domain_scope_uses_the_domain_label() {
    let world = World::new();
    let mut h = host(&world, 1, &get("/api/v1/query?query=up", Some("tok")));
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(DOMAIN_OK));
    assert_eq!(decoded_query(&h)[0].value, r#"up{domain="d9"}"#);
}

#[test]
fn basic_auth_asks_for_a_token_and_consumes_the_header() {
    let world = World::new();
    let auth = format!("Basic {}", b64("alice@tenants|team-a@tenants:s3cret"));
    let headers = vec![
        (":method", "GET".into()),
        (":path", "/api/v1/query?query=up".into()),
        ("authorization", auth),
    ];
    let mut h = host(&world, 1, &headers);
    let mut f = Flow::new(shared(), 1);
    assert_eq!(f.on_request_headers(&mut h, eos(true)), Action::Pause);
    assert_eq!(h.header("authorization"), None, "consumed");
    {
        let c = &world.callouts.borrow()[0];
        assert_eq!(
            (c.header(":method"), c.header(":path")),
            (Some("POST"), Some("/v3/auth/tokens?nocatalog"))
        );
        let body: serde_json::Value = serde_json::from_slice(c.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body["auth"]["identity"]["password"]["user"]["password"],
            "s3cret"
        );
    }
    // A token request answers 201.
    f.on_callout(
        &mut h,
        1,
        &CalloutAnswer {
            status: Some(201),
            subject_token: Some("issued".into()),
            ..ok(KS_OK)
        },
    );
    assert!(h.resumed);
    assert_eq!(decoded_query(&h)[0].value, r#"up{project="p1"}"#);
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

#[test]
fn service_credentials_log_in_once_and_validate_with_the_service_token() {
    // Envoy: the second request waits for the first one's login and is woken.
    let (world, (mut h1, mut f1), (mut h2, mut f2)) = two_with_service_credentials(HostKind::Envoy);
    assert_eq!(
        world.callouts.borrow().len(),
        1,
        "one service login for both"
    );
    assert_eq!(world.callouts.borrow()[0].header(":method"), Some("POST"));
    f1.on_callout(
        &mut h1,
        1,
        &CalloutAnswer {
            status: Some(201),
            subject_token: Some("svc-token".into()),
            ..ok(KS_OK)
        },
    );
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
    assert!(String::from_utf8(h.response.clone().unwrap().2)
        .unwrap()
        .contains("keystone.service_token"));
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok2")));
    assert_eq!(
        Flow::new(sh, 2).on_request_headers(&mut h2, eos(true)),
        Action::Pause
    );
    assert_eq!(
        world.callouts.borrow().len(),
        2,
        "validated, not left waiting for a login"
    );

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
    assert_eq!(
        Flow::new(sh, 2).on_request_headers(&mut h2, eos(true)),
        Action::Pause
    );
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
    f.on_callout(
        &mut h,
        2,
        &ok(r#"{"project":{"id":"p1","subtree":{"c1":{"g1":null}}}}"#),
    );
    assert!(h.resumed);
    assert_eq!(decoded_query(&h)[0].value, r#"up{project=~"p1|c1|g1"}"#);
    let mut h2 = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(
        Flow::new(sh, 2).on_request_headers(&mut h2, eos(true)),
        Action::Continue
    );
    assert_eq!(decoded_query(&h2)[0].value, r#"up{project=~"p1|c1|g1"}"#);
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
fn the_local_cache_expires_with_the_shared_entry() {
    let world = World::new();
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    world.store.borrow_mut().clear(); // shared data gone: the local copy still answers
    let mut h = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(
        Flow::new(sh.clone(), 2).on_request_headers(&mut h, eos(true)),
        Action::Continue
    );
    world.now_ms.set(world.now_ms.get() + 300_000);
    let mut h = host(&world, 3, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(
        Flow::new(sh, 3).on_request_headers(&mut h, eos(true)),
        Action::Pause,
        "revalidated at the TTL"
    );
}
