//! ngx_wasm_module's differences (README, "Hosts"), each in one place.

use super::*;

#[test]
fn the_requests_authority_is_never_used() {
    // NGINX's :authority is its own server name and port, not the client's Host.
    let world = World::new();
    let mut headers = get("/api/v1/query?query=up", Some("tok"));
    headers.push((":authority", "nginx-server:10000".into()));
    let mut h = host(&world, 1, &headers);
    Flow::new(shared(), 1).on_request_headers(&mut h, eos(true));
    assert_eq!(
        world.callouts.borrow()[0].header(":authority"),
        Some("ks:5000"),
        "from keystone.url"
    );
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
    assert_eq!(
        Flow::new(sh, 2).on_request_headers(&mut h, eos(false)),
        Action::Continue
    );
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
    assert_eq!(
        f.on_request_headers(&mut h, eos(false)),
        Action::Pause,
        "the token is found"
    );
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert!(h.resumed);
    for name in ["x-auth-token", "x-project-id", "x-roles", "x-service-token"] {
        assert_eq!(h.header(name), None, "{name} stripped");
    }
    assert_eq!(decoded_query(&h)[0].value, r#"up{project="p1"}"#);
}

#[test]
fn a_path_with_a_control_character_or_a_space_is_refused() {
    // NGINX's :path is its decoded URI; `proxy_pass …$uri` would write it into the
    // upstream request line as it is.
    let world = World::new();
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    let split = "/-/healthy? HTTP/1.1\r\nHost: x\r\n\r\nGET /api/v1/query?query=secret";
    for (path, token) in [
        (split, None),
        ("/api/v1/query?query=up&x=\r\n", Some("tok")),
        ("/api/v1/query\t?query=up", Some("tok")),
    ] {
        let mut h = host(&world, 2, &get(path, token));
        assert_eq!(
            Flow::new(sh.clone(), 2).on_request_headers(&mut h, eos(false)),
            Action::Pause,
            "{path:?}"
        );
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
    f.on_callout(
        &mut h,
        1,
        &CalloutAnswer {
            dispatch_status: Some("broken connection".into()),
            ..answer(None)
        },
    );
    let (status, _, body) = h.response.unwrap();
    assert_eq!(status, 503);
    assert!(String::from_utf8(body)
        .unwrap()
        .contains("broken connection"));
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
    assert_eq!(
        world.callouts.borrow().len(),
        2,
        "no reuse of another credential's entry"
    );
    let other = KS_OK.replace("p1", "p2");
    f.on_callout(&mut h, 2, &ok(&other));
    assert_eq!(decoded_query(&h)[0].value, r#"up{project="p2"}"#);
    // The slot now holds the other credential: another worker (its own local cache, the
    // same shared data) asks again for the first one, never mixing them up.
    let mut h = host(&world, 3, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(
        Flow::new(shared(), 3).on_request_headers(&mut h, eos(true)),
        Action::Pause
    );
    // This worker still knows it, until the same expiry as the shared entry had.
    let mut h = host(&world, 4, &get("/api/v1/query?query=up", Some("tok")));
    assert_eq!(
        Flow::new(sh, 4).on_request_headers(&mut h, eos(true)),
        Action::Continue
    );
    assert_eq!(decoded_query(&h)[0].value, r#"up{project="p1"}"#);
}
