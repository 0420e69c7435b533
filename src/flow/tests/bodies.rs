//! Form bodies: announced or only possible, held, enforced whole, refused.

use super::*;

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
            assert_eq!(
                h.header("content-length"),
                None,
                "length dropped in headers phase"
            );
        }
        if callout_first {
            // Envoy: the body is held back until the headers go on.
            f.on_callout(&mut h, 1, &ok(KS_OK));
            assert!(h.resumed, "headers go on; the body follows");
            assert_eq!(
                world.metric(Metric::RequestsAllowed),
                0,
                "not counted before the body passed"
            );
            assert_eq!(f.on_request_body(&mut h, body.len(), false), Action::Pause);
            assert_eq!(
                f.on_request_body(&mut h, body.len(), true),
                Action::Continue
            );
        } else {
            assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Pause);
            f.on_callout(&mut h, 1, &ok(KS_OK));
            assert!(h.resumed);
        }
        assert_eq!(world.metric(Metric::RequestsAllowed), 1);
        assert_eq!(h.status(), None);
        assert_eq!(decoded_query(&h)[0].value, r#"b{project="p1"}"#);
        let body = crate::enforce::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap();
        assert_eq!(body[0].value, r#"a{project="p1"}"#);
        // Envoy frames the new body itself; NGINX sends the new body's length.
        let length = if is_nginx() {
            vec![h.body.len().to_string()]
        } else {
            vec![]
        };
        assert_eq!(h.sent("content-length"), length);
    }
}

#[test]
fn a_body_held_in_part_when_keystone_answers_goes_on_whole_and_enforced() {
    // Envoy: resuming would pass the held part on as it came, and show the filter only the rest.
    for unannounced in [false, true] {
        let world = World::new();
        let body = "query=a&time=1";
        let headers = if unannounced {
            post_unannounced("/api/v1/query", "application/x-www-form-urlencoded")
        } else {
            post("/api/v1/query", body)
        };
        let mut h = host(&world, 1, &headers);
        h.body = body.as_bytes().to_vec();
        let mut f = Flow::new(shared(), 1);
        assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Pause);
        assert_eq!(
            f.on_request_body(&mut h, 8, false),
            Action::Pause,
            "query=a& is held"
        );
        f.on_callout(&mut h, 1, &ok(KS_OK));
        assert!(!h.resumed, "not resumed while part of the body is held");
        assert_eq!(h.status(), None);
        assert_eq!(
            f.on_request_body(&mut h, body.len(), true),
            Action::Continue,
            "the end lets it all go"
        );
        let got = crate::enforce::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap();
        assert_eq!(got[0].value, r#"a{project="p1"}"#);
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
    assert_eq!(decoded_query(&h)[0].value, r#"b{project="p1"}"#);
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
    assert_eq!(
        h.header(":path"),
        Some("/api/v1/query?"),
        "path always carries its ?"
    );
    assert_eq!(
        f.on_request_body(&mut h, body.len(), true),
        Action::Continue
    );
    assert_eq!(
        crate::enforce::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap()[0].value,
        r#"a{project="p1"}"#
    );
}

#[test]
fn post_match_default_goes_where_prometheus_reads_it() {
    for (body, want) in [
        ("match[]=up", vec![r#"up{project="p1"}"#]),
        ("start=1", vec![r#"{project="p1"}"#]),
    ] {
        let world = World::new();
        let mut h = host(&world, 1, &post("/api/v1/series", body));
        h.body = body.as_bytes().to_vec();
        let mut f = Flow::new(shared(), 1);
        f.on_request_headers(&mut h, eos(false));
        f.on_callout(&mut h, 1, &ok(KS_OK));
        f.on_request_body(&mut h, body.len(), true);
        assert!(decoded_query(&h).is_empty(), "nothing added to the URL");
        let b = crate::enforce::form::parse(std::str::from_utf8(&h.body).unwrap()).unwrap();
        let got: Vec<&str> = b
            .iter()
            .filter(|p| p.key == "match[]")
            .map(|p| p.value.as_str())
            .collect();
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

#[test]
fn a_body_only_end_of_stream_announces_is_enforced() {
    for (path, body, url, form) in [
        (
            "/api/v1/query?query=b",
            "query=a",
            r#"b{project="p1"}"#,
            r#"a{project="p1"}"#,
        ),
        // The URL carries the default (a body was only possible); the body's own selector is enforced.
        (
            "/api/v1/series",
            r#"match[]={__name__=~".%2B"}"#,
            r#"{project="p1"}"#,
            r#"{__name__=~".+",project="p1"}"#,
        ),
    ] {
        let world = World::new();
        let mut h = host(
            &world,
            1,
            &post_unannounced(path, "application/x-www-form-urlencoded"),
        );
        h.body = body.as_bytes().to_vec();
        let mut f = Flow::new(shared(), 1);
        assert_eq!(f.on_request_headers(&mut h, eos(false)), Action::Pause);
        f.on_callout(&mut h, 1, &ok(KS_OK));
        assert!(h.resumed);
        assert_eq!(
            f.on_request_body(&mut h, body.len(), false),
            Action::Pause,
            "held until it ends"
        );
        assert_eq!(
            f.on_request_body(&mut h, body.len(), true),
            Action::Continue
        );
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
    assert_eq!(
        f.on_request_headers(&mut h, eos(false)),
        Action::Continue,
        "no type needed without a body"
    );
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
        assert_eq!(
            (q.len(), q[0].key.as_str(), q[0].value.as_str()),
            (1, "match[]", r#"{project="p1"}"#)
        );
    }
}

#[test]
fn a_body_the_headers_ruled_out_is_refused() {
    // Envoy's end_of_stream (NGINX never says it) or a length of 0 ruled a body out.
    let world = World::of(HostKind::Envoy);
    let sh = shared();
    validated(&world, &sh, "/api/v1/query?query=up");
    for (headers, end) in [
        (
            post_unannounced("/api/v1/query", "application/x-www-form-urlencoded"),
            true,
        ),
        (post("/api/v1/query", ""), false),
    ] {
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
        let headers = if announced {
            post("/api/v1/query", "query=up")
        } else {
            post_unannounced("/api/v1/query", "application/x-www-form-urlencoded")
        };
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
fn a_body_the_host_does_not_hand_over_whole_is_refused() {
    // NGINX spools a body larger than client_body_buffer_size to a file the filter can't read.
    let world = World::new();
    let body = "query=a&time=1";
    let mut h = host(&world, 1, &post("/api/v1/query", body));
    h.body = body.as_bytes()[..5].to_vec();
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(false));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert_eq!(f.on_request_body(&mut h, body.len(), true), Action::Pause);
    assert_eq!(h.status(), Some(413));
    assert_eq!(world.metric(Metric::RequestsAllowed), 0);
}
