//! The short path for a cached GET against the general path (a differential test).

use super::*;

/// What a request left behind: the action, the sender named for the access log, the headers
/// that go upstream, the response and what the response callbacks did, the callouts,
/// metrics, wake-ups and logs of its world.
/// A header whose value is `OBS_TEXT` goes as bytes that are not UTF-8.
fn trace(
    world: &Rc<World>,
    sh: &Rc<Shared>,
    ctx: u32,
    h: &[(&'static str, String)],
    end_of_stream: bool,
) -> String {
    let (binary, text): (Vec<_>, Vec<_>) = h.iter().cloned().partition(|(_, v)| v == OBS_TEXT);
    let mut host = host(world, ctx, &text);
    host.binary_headers = binary
        .into_iter()
        .map(|(k, _)| (k.to_string(), b"r\xff1".to_vec()))
        .collect();
    let mut f = Flow::new(sh.clone(), ctx);
    let action = f.on_request_headers(&mut host, eos(end_of_stream));
    host.upstream_headers = vec![
        (":status".into(), "200".into()),
        ("content-length".into(), "2".into()),
    ];
    host.upstream_body = b"{}".to_vec();
    let response = (
        f.on_response_headers(&mut host),
        f.on_response_body(&mut host, 2, true),
    );
    f.on_done(&mut host);
    let mut metrics: Vec<_> = world
        .metrics
        .borrow()
        .iter()
        .map(|(m, n)| (*m, *n))
        .collect();
    metrics.sort_by_key(|(m, _)| m.name());
    format!(
        "{action:?} {:?} {:?} {:?} {:?} {:?} {response:?} {:?} {:?} callouts={} {metrics:?} {:?} {:?}",
        host.audit,
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
    std::env::var("KPW_DIFF_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(600)
        .max(50)
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
        "/api/v1/query?query=up%7Bproject%3D%22other%22%7D",
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
        &[
            ("x-application-credential-secret", "s"),
            ("x-application-credential-id", "a"),
        ],
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
    let sh_b = Rc::new(Shared {
        cached_get: false,
        ..Shared::new(Config::from_json(cfg.as_bytes()).unwrap())
    });
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
            let mut h = host(
                world,
                ctx,
                &get(&format!("{prefix}/api/v1/labels"), Some(token)),
            );
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
        let step = if i == total * 21 / 25 {
            400_000
        } else if i % (total * 2 / 25) == 0 {
            2_000
        } else {
            0
        };
        for w in [&world_a, &world_b] {
            w.now_ms.set(w.now_ms.get() + step);
        }
        let mut h = vec![
            (":method", methods[pick(methods.len())].to_string()),
            (":path", format!("{prefix}{}", paths[pick(paths.len())])),
        ];
        if let Some(t) = tokens[pick(tokens.len())] {
            h.push(("x-auth-token", t.to_string()));
        }
        h.extend(
            extras[pick(extras.len())]
                .iter()
                .map(|(k, v)| (*k, v.to_string())),
        );
        // Envoy says whether a body follows; NGINX never does.
        let eos = pick(2) == 0;
        let (a, b) = (
            trace(&world_a, &sh_a, ctx, &h, eos),
            trace(&world_b, &sh_b, ctx, &h, eos),
        );
        assert_eq!(a, b, "request {h:?}");
        ctx += 1;
    }
    let used = sh_a.cached_gets.get();
    assert_eq!(sh_b.cached_gets.get(), 0);
    if expect_used {
        assert!(
            used > total as u64 / 50,
            "cached_get served {used} of {total}"
        );
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
    cached_get_matches_general_path(
        &format!(r#"{{{ks},"forward_identity_headers":true}}"#),
        "",
        false,
    );
    cached_get_matches_general_path(
        &format!(r#"{{{ks},"tenant_header":"X-Custom-Tenant"}}"#),
        "",
        false,
    );
    cached_get_matches_general_path(
        &format!(r#"{{{ks},"tenant_header":"X-Custom-Tenant","label_enforcement":false}}"#),
        "",
        false,
    );
}
