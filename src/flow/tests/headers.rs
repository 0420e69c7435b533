//! What goes upstream of the request's headers: credentials, claims, identity and tenant headers.

use super::*;

#[test]
fn open_paths_pass_without_credential_and_strip_it() {
    for p in ["/-/healthy", "/-/ready", "/api/v1/status/buildinfo"] {
        let mut h = host(&World::new(), 1, &get(p, Some("t")));
        assert_eq!(
            Flow::new(shared(), 1).on_request_headers(&mut h, eos(true)),
            Action::Continue
        );
        assert_eq!(h.header("x-auth-token"), None);
    }
}

#[test]
fn identity_and_tenant_headers() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3"},"tenant_header":"X-Scope-OrgID","label_enforcement":false,
        "forward_identity_headers":true}"#;
    let world = World::new();
    let mut headers = get("/api/v1/query?query=up", Some("tok"));
    headers.extend([
        ("x-project-id", "evil".to_string()),
        ("x-scope-orgid", "evil".into()),
        ("x-roles", "admin".into()),
    ]);
    let mut h = host(&world, 1, &headers);
    let mut f = Flow::new(shared_with(cfg), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    // The client's claims are replaced where they lie: one value, the filter's, on every
    // host (NGINX still sends a removed header, after which an added one would come second).
    for (name, want) in [
        ("x-scope-orgid", "p1"),
        ("x-project-id", "p1"),
        ("x-user-id", "u1"),
        ("x-roles", "reader"),
        ("x-identity-status", "Confirmed"),
    ] {
        assert_eq!(h.sent(name), [want], "{name}");
    }
    assert_eq!(h.header("x-domain-id"), None);
    assert_eq!(decoded_query(&h)[0].value, "up", "label enforcement off");

    // A claim the decision has no value for is stripped: x-domain-id for a project token,
    // the tenant header for an unrestricted user.
    let cfg_admin = r#"{"keystone":{"url":"http://ks:5000/v3"},"tenant_header":"X-Scope-OrgID","unrestricted_roles":["reader"],
        "forward_identity_headers":true}"#;
    let mut headers = get("/api/v1/query?query=up", Some("tok"));
    headers.extend([
        ("x-domain-id", "evil".to_string()),
        ("x-scope-orgid", "evil".into()),
    ]);
    let mut h = host(&World::new(), 1, &headers);
    let mut f = Flow::new(shared_with(cfg_admin), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert!(h.resumed);
    for name in ["x-domain-id", "x-scope-orgid"] {
        assert!(
            h.sent(name).iter().all(|v| v.is_empty()),
            "{name}: {:?}",
            h.sent(name)
        );
    }

    let mut headers = get("/api/v1/query?query=up", Some("tok"));
    headers.push(("thanos-tenant", "evil".into()));
    let mut h = host(&world, 2, &headers);
    Flow::new(shared(), 2).on_request_headers(&mut h, eos(true));
    assert_eq!(
        (h.header("thanos-tenant"), h.header("x-project-id")),
        (None, None)
    );

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
    headers.extend([
        ("x-org-tenant", "evil".to_string()),
        ("x-auth-token", "secret".into()),
    ]);
    let mut h = host(&world, 4, &headers);
    assert_eq!(
        Flow::new(shared_with(cfg), 4).on_request_headers(&mut h, eos(true)),
        Action::Continue
    );
    for name in ["x-org-tenant", "x-auth-token"] {
        assert!(
            h.sent(name).iter().all(|v| v.is_empty()),
            "{name}: {:?}",
            h.sent(name)
        );
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
    for name in [
        "x-auth-token",
        "x-project-id",
        "x-scope-orgid",
        "x-org-tenant",
    ] {
        let world = World::new();
        let mut h = host(&world, 1, &twice(name));
        assert_eq!(
            Flow::new(shared_with(cfg), 1).on_request_headers(&mut h, eos(true)),
            Action::Pause
        );
        assert_eq!(h.status(), Some(400), "{name}");
        assert!(world.callouts.borrow().is_empty());
    }
    // Others may repeat, as HTTP allows.
    let world = World::new();
    let mut h = host(&world, 1, &twice("x-junk"));
    assert_eq!(
        Flow::new(shared_with(cfg), 1).on_request_headers(&mut h, eos(true)),
        Action::Pause
    );
    assert_eq!(h.status(), None);
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
    let auth = format!(
        "Basic {}",
        b64(&format!("alice@tenants|team-a@tenants:{}", secrets[1]))
    );
    let mut h = host(
        &world,
        2,
        &[
            (":method", "GET".into()),
            (":path", "/api/v1/query?query=up".into()),
            ("authorization", auth),
        ],
    );
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
    assert_eq!(
        h.header("x-application-credential-secret"),
        Some(secrets[2])
    );
    let mut f = Flow::new(shared(), 3);
    f.on_request_headers(&mut h, eos(true));
    assert_eq!(
        h.header("x-application-credential-secret"),
        None,
        "not forwarded"
    );
    f.on_callout(&mut h, 3, &answer(None));
    let logs = world.logs.borrow();
    assert!(logs.iter().any(|l| l.starts_with("[req-42] ")), "{logs:?}");
    assert!(
        logs.iter().all(|l| l.starts_with('[')),
        "every line carries a request id: {logs:?}"
    );
    for secret in secrets {
        assert!(
            logs.iter().all(|l| !l.contains(secret)),
            "{secret} logged: {logs:?}"
        );
    }
}

#[test]
fn header_values_that_are_not_text() {
    // HTTP/1 allows bytes above 0x7F in a value: in a header the filter does not read,
    // they pass; the request is enforced as any other.
    let world = World::new();
    let sh = shared();
    let (_, _) = validated(&world, &sh, "/api/v1/query?query=up");
    let mut h = host(&world, 2, &get("/api/v1/query?query=up", Some("tok")));
    h.binary_headers
        .push(("x-junk".into(), b"caf\xe9".to_vec()));
    assert_eq!(
        Flow::new(sh.clone(), 2).on_request_headers(&mut h, eos(true)),
        Action::Continue
    );
    assert_eq!(decoded_query(&h)[0].value, r#"up{project="p1"}"#);

    // In a header the filter reads, they are refused before anything else happens.
    for name in ["x-auth-token", "authorization", "content-type", ":path"] {
        let mut h = host(&world, 3, &get("/api/v1/query?query=up", None));
        h.drop_header(name);
        h.binary_headers.push((name.into(), b"tok\xff".to_vec()));
        assert_eq!(
            Flow::new(sh.clone(), 3).on_request_headers(&mut h, eos(true)),
            Action::Pause,
            "{name}"
        );
        assert_eq!(h.status(), Some(400), "{name}");
        let body = String::from_utf8(h.response.as_ref().unwrap().2.clone()).unwrap();
        assert!(
            body.contains(&format!("the {name} header is not valid UTF-8")),
            "{body}"
        );
    }
    assert_eq!(
        world.callouts.borrow().len(),
        1,
        "nothing was sent to Keystone"
    );
}
