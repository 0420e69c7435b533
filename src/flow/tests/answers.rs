//! Answers filtered down to the tenant (rules, alerts): encodings, errors, trailers.

use super::*;

#[test]
fn rules_answer_is_filtered() {
    let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/rules");
    assert!(h.resumed);
    h.upstream_headers = vec![
        (":status".into(), "200".into()),
        ("content-length".into(), "999".into()),
    ];
    h.upstream_body = RULES.as_bytes().to_vec();
    assert_eq!(f.on_response_headers(&mut h), Action::Continue);
    assert_eq!(h.response_header("content-length"), None);
    assert_eq!(f.on_response_body(&mut h, 10, false), Action::Pause);
    assert_eq!(
        f.on_response_body(&mut h, RULES.len(), true),
        Action::Continue
    );
    assert_eq!(rule_names(&h.upstream_body), ["mine"]);
}

#[test]
fn rules_answer_ending_with_trailers_is_not_let_through() {
    let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/rules");
    h.upstream_headers = vec![(":status".into(), "200".into())];
    h.upstream_body = RULES.as_bytes().to_vec();
    f.on_response_headers(&mut h);
    assert_eq!(
        f.on_response_body(&mut h, RULES.len(), false),
        Action::Pause
    );
    assert_eq!(f.on_response_trailers(&mut h), Action::Pause);
    assert_eq!(
        h.status(),
        Some(502),
        "a local answer: the host resets a stream whose headers are gone"
    );
    assert_eq!(
        h.upstream_body,
        RULES.as_bytes(),
        "the held answer was not released"
    );
    // Trailers after an answer that is not filtered, or already dropped, change nothing.
    assert_eq!(f.on_response_trailers(&mut h), Action::Continue);
    let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/query?query=up");
    h.upstream_headers = vec![(":status".into(), "200".into())];
    f.on_response_headers(&mut h);
    assert_eq!(f.on_response_trailers(&mut h), Action::Continue);
}

#[test]
fn gzip_rules_answer_is_inflated_and_filtered() {
    let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/rules");
    assert_eq!(h.sent("accept-encoding"), ["identity"]);
    let gz = {
        // A stored (uncompressed) deflate block inside a gzip member.
        let data = RULES.as_bytes();
        let mut g = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1];
        let n = data.len() as u16;
        g.extend_from_slice(&n.to_le_bytes());
        g.extend_from_slice(&(!n).to_le_bytes());
        g.extend_from_slice(data);
        g.extend_from_slice(&[0; 8]);
        g
    };
    h.upstream_headers = vec![
        (":status".into(), "200".into()),
        ("content-encoding".into(), "gzip".into()),
    ];
    h.upstream_body = gz.clone();
    f.on_response_headers(&mut h);
    assert_eq!(h.response_header("content-encoding"), None);
    f.on_response_body(&mut h, gz.len(), true);
    assert_eq!(rule_names(&h.upstream_body), ["mine"]);
}

#[test]
fn rules_are_asked_for_in_identity_and_a_deflate_answer_is_read_all_the_same() {
    let world = World::new();
    let mut headers = get("/api/v1/rules", Some("tok"));
    headers.push(("accept-encoding", "deflate, gzip".into()));
    let mut h = host(&world, 1, &headers);
    let mut f = Flow::new(shared(), 1);
    f.on_request_headers(&mut h, eos(true));
    f.on_callout(&mut h, 1, &ok(KS_OK));
    assert_eq!(
        h.sent("accept-encoding"),
        ["identity"],
        "overwritten in place, not removed"
    );
    // An upstream that compresses all the same (a host that sent the client's header too).
    let z = {
        // A zlib stream with one stored deflate block.
        let data = RULES.as_bytes();
        let n = data.len() as u16;
        let mut z = vec![0x78, 0x01, 1];
        z.extend_from_slice(&n.to_le_bytes());
        z.extend_from_slice(&(!n).to_le_bytes());
        z.extend_from_slice(data);
        let (a, b) = data.iter().fold((1u32, 0u32), |(a, b), &x| {
            ((a + u32::from(x)) % 65521, (b + a + u32::from(x)) % 65521)
        });
        z.extend_from_slice(&(b << 16 | a).to_be_bytes());
        z
    };
    h.upstream_headers = vec![
        (":status".into(), "200".into()),
        ("content-encoding".into(), "deflate".into()),
    ];
    h.upstream_body = z.clone();
    f.on_response_headers(&mut h);
    assert_eq!(h.response_header("content-encoding"), None);
    f.on_response_body(&mut h, z.len(), true);
    assert_eq!(rule_names(&h.upstream_body), ["mine"]);
}

#[test]
fn unreadable_answers_are_replaced_by_an_error() {
    for (encoding, body) in [("br", RULES), ("identity", "not json")] {
        let (mut h, mut f) = validated(&World::new(), &shared(), "/api/v1/alerts");
        h.upstream_headers = vec![
            (":status".into(), "200".into()),
            ("content-encoding".into(), encoding.into()),
        ];
        h.upstream_body = body.as_bytes().to_vec();
        f.on_response_headers(&mut h);
        f.on_response_body(&mut h, body.len(), true);
        let v: serde_json::Value = serde_json::from_slice(&h.upstream_body).unwrap();
        assert_eq!(v["status"], "error", "{encoding}");
        // Later chunks are dropped.
        h.upstream_body.extend_from_slice(b"more");
        let n = h.upstream_body.len();
        f.on_response_body(&mut h, n, true);
        assert!(h.upstream_body.is_empty());
    }
}

#[test]
fn unrestricted_rules_are_not_filtered() {
    let cfg = r#"{"keystone":{"url":"http://ks:5000/v3"},"unrestricted_roles":["reader"]}"#;
    let (mut h, mut f) = validated(&World::new(), &shared_with(cfg), "/api/v1/rules");
    h.upstream_headers = vec![(":status".into(), "200".into())];
    h.upstream_body = RULES.as_bytes().to_vec();
    f.on_response_headers(&mut h);
    f.on_response_body(&mut h, RULES.len(), true);
    assert_eq!(rule_names(&h.upstream_body), ["mine", "theirs"]);
}
