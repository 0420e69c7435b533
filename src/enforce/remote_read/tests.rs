//! Round trips (byte for byte against the canonical encoding), enforcement, hostile bodies,
//! headers, and property tests.

use super::label_matcher::Type;
use super::read_request::ResponseType;
use super::*;
use crate::enforce::remote_write::v1;

// --- Wire-format helpers: requests built by hand, as Go's gogo-protobuf marshals them. ---

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn f_varint(number: u64, v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3, &mut out);
    varint(v, &mut out);
    out
}

fn f_bytes(number: u64, b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint((number << 3) | 2, &mut out);
    varint(b.len() as u64, &mut out);
    out.extend_from_slice(b);
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn m(kind: Type, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher::new(kind, name, value)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn body(req: &ReadRequest) -> Vec<u8> {
    wire::compress(&req.encode_to_vec()).unwrap()
}

fn full_request() -> ReadRequest {
    ReadRequest {
        queries: vec![
            Query {
                start_timestamp_ms: 1_700_000_000_000,
                end_timestamp_ms: 1_700_000_300_000,
                matchers: vec![
                    m(Type::Eq, "__name__", "http_requests_total"),
                    m(Type::Neq, "job", ""),
                    m(Type::Re, "instance", "10\\..*:9090"),
                    m(Type::Nre, "env", "dev|test"),
                ],
                hints: Some(ReadHints {
                    step_ms: 15_000,
                    func: "rate".into(),
                    start_ms: 1_699_999_700_000,
                    end_ms: 1_700_000_300_000,
                    grouping: strings(&["job", "instance"]),
                    by: true,
                    range_ms: 300_000,
                }),
            },
            // Negative timestamps (before 1970), no hints.
            Query {
                start_timestamp_ms: -100,
                end_timestamp_ms: 0,
                matchers: vec![m(Type::Eq, "a", "é")],
                hints: None,
            },
            // Hints present but empty; no matchers.
            Query {
                start_timestamp_ms: 1,
                end_timestamp_ms: 2,
                matchers: vec![],
                hints: Some(ReadHints::default()),
            },
        ],
        accepted_response_types: vec![
            ResponseType::StreamedXorChunks as i32,
            ResponseType::Samples as i32,
        ],
    }
}

/// `full_request()` as Go marshals it: fields in order, zero scalars left out, the enum list
/// packed.
fn full_request_wire() -> Vec<u8> {
    let hints = cat(&[
        f_varint(1, 15_000),
        f_bytes(2, b"rate"),
        f_varint(3, 1_699_999_700_000),
        f_varint(4, 1_700_000_300_000),
        f_bytes(5, b"job"),
        f_bytes(5, b"instance"),
        f_varint(6, 1),
        f_varint(7, 300_000),
    ]);
    let q1 = cat(&[
        f_varint(1, 1_700_000_000_000),
        f_varint(2, 1_700_000_300_000),
        f_bytes(
            3,
            &cat(&[f_bytes(2, b"__name__"), f_bytes(3, b"http_requests_total")]),
        ),
        f_bytes(3, &cat(&[f_varint(1, 1), f_bytes(2, b"job")])),
        f_bytes(
            3,
            &cat(&[
                f_varint(1, 2),
                f_bytes(2, b"instance"),
                f_bytes(3, b"10\\..*:9090"),
            ]),
        ),
        f_bytes(
            3,
            &cat(&[f_varint(1, 3), f_bytes(2, b"env"), f_bytes(3, b"dev|test")]),
        ),
        f_bytes(4, &hints),
    ]);
    let q2 = cat(&[
        f_varint(1, -100i64 as u64),
        f_bytes(3, &cat(&[f_bytes(2, b"a"), f_bytes(3, "é".as_bytes())])),
    ]);
    let q3 = cat(&[f_varint(1, 1), f_varint(2, 2), f_bytes(4, &[])]);
    cat(&[
        f_bytes(1, &q1),
        f_bytes(1, &q2),
        f_bytes(1, &q3),
        f_bytes(2, &[1, 0]),
    ])
}

// --- Round trips ---

#[test]
fn every_field_round_trips_byte_for_byte() {
    let raw = full_request_wire();
    let decoded = decode(&wire::compress(&raw).unwrap(), &Limits::default()).unwrap();
    assert_eq!(decoded, full_request());
    assert_eq!(
        decoded.encode_to_vec(),
        raw,
        "re-encoding changed the bytes"
    );
    let again = decode(&encode(&decoded).unwrap(), &Limits::default()).unwrap();
    assert_eq!(again, decoded);
    // Hints: absent and empty stay apart.
    assert_eq!(again.queries[1].hints, None);
    assert_eq!(again.queries[2].hints, Some(ReadHints::default()));
}

#[test]
fn unpacked_response_types_and_repeated_scalars_read_as_go_reads_them() {
    // Unpacked enum values, and a scalar given twice (the last one wins, in Go as in prost).
    let q = cat(&[f_varint(1, 5), f_varint(1, 7)]);
    let raw = cat(&[f_bytes(1, &q), f_varint(2, 1), f_varint(2, 0)]);
    let decoded = decode(&wire::compress(&raw).unwrap(), &Limits::default()).unwrap();
    assert_eq!(decoded.accepted_response_types, vec![1, 0]);
    assert_eq!(decoded.queries[0].start_timestamp_ms, 7);
    // Hints given twice are merged: their groupings add up.
    let q = cat(&[
        f_bytes(4, &f_bytes(5, b"a")),
        f_bytes(4, &cat(&[f_bytes(5, b"b"), f_varint(6, 1)])),
    ]);
    let decoded = decode(
        &wire::compress(&f_bytes(1, &q)).unwrap(),
        &Limits::default(),
    )
    .unwrap();
    let hints = decoded.queries[0].hints.as_ref().unwrap();
    assert_eq!(hints.grouping, strings(&["a", "b"]));
    assert!(hints.by);
}

#[test]
fn unknown_enum_values_survive() {
    // A response type this module does not know is the upstream's to judge.
    let req = ReadRequest {
        queries: vec![],
        accepted_response_types: vec![7, 1],
    };
    let decoded = decode(&body(&req), &Limits::default()).unwrap();
    assert_eq!(decoded, req);
}

#[test]
fn prometheus_242_client_request() {
    // What `Client.Read` sends: one query, no accepted_response_types (SAMPLES).
    let req = ReadRequest {
        queries: vec![Query {
            start_timestamp_ms: 1_700_000_000_000,
            end_timestamp_ms: 1_700_003_600_000,
            matchers: vec![m(Type::Eq, "__name__", "up")],
            hints: Some(ReadHints {
                step_ms: 0,
                func: "series".into(),
                start_ms: 1,
                end_ms: 2,
                ..Default::default()
            }),
        }],
        accepted_response_types: vec![],
    };
    let mut decoded = decode(&body(&req), &Limits::default()).unwrap();
    assert_eq!(decoded, req);
    enforce(&mut decoded, "project", &strings(&["p-1"]));
    let out = decode(&encode(&decoded).unwrap(), &Limits::default()).unwrap();
    assert_eq!(
        out.queries[0].matchers,
        vec![m(Type::Eq, "__name__", "up"), m(Type::Eq, "project", "p-1")]
    );
    assert_eq!(out.queries[0].hints, req.queries[0].hints);
    assert!(out.accepted_response_types.is_empty());
}

// --- Enforcement ---

#[test]
fn one_value_is_an_equality_matcher_on_every_query() {
    let mut req = full_request();
    enforce(&mut req, "project", &strings(&["4f1c"]));
    let original = full_request();
    for (q, o) in req.queries.iter().zip(&original.queries) {
        assert_eq!(q.matchers.len(), o.matchers.len() + 1);
        assert_eq!(
            &q.matchers[..o.matchers.len()],
            &o.matchers[..],
            "the user's matchers stay, in order"
        );
        assert_eq!(q.matchers.last(), Some(&m(Type::Eq, "project", "4f1c")));
        assert_eq!(
            (q.start_timestamp_ms, q.end_timestamp_ms, &q.hints),
            (o.start_timestamp_ms, o.end_timestamp_ms, &o.hints)
        );
    }
    assert_eq!(
        req.accepted_response_types,
        original.accepted_response_types
    );
}

#[test]
fn several_values_are_one_escaped_regex() {
    let values = strings(&["a.b", "c|d", "e*(f)", "g\\h", "[i]{2}^$+?", "plain-1", "é"]);
    let mut req = ReadRequest {
        queries: vec![Query::default(), Query::default()],
        accepted_response_types: vec![],
    };
    enforce(&mut req, "project", &values);
    let want = r"a\.b|c\|d|e\*\(f\)|g\\h|\[i\]\{2\}\^\$\+\?|plain-1|é";
    for q in &req.queries {
        assert_eq!(q.matchers, vec![m(Type::Re, "project", want)]);
    }
    // Anchored as Prometheus anchors it, it matches exactly the values.
    let re = regex::Regex::new(&format!("^(?:{want})$")).unwrap();
    for v in &values {
        assert!(re.is_match(v), "{v}");
    }
    for other in [
        "axb",
        "c",
        "d",
        "eeee(f)",
        "",
        "a.b|c|d",
        "[i]{2}^$+?x",
        "plain-10",
    ] {
        assert!(!re.is_match(other), "{other}");
    }
}

#[test]
fn quote_meta_escapes_what_go_escapes() {
    // Go's regexp.QuoteMeta: specialBytes = `\.+*?()|[]{}^$`.
    for b in 0u8..0x80 {
        let c = b as char;
        let quoted = quote_meta(&c.to_string());
        if r"\.+*?()|[]{}^$".contains(c) {
            assert_eq!(quoted, format!("\\{c}"));
        } else {
            assert_eq!(quoted, c.to_string(), "{b:#x}");
        }
    }
    assert_eq!(quote_meta("München ☃ -_/:"), "München ☃ -_/:");
    assert_eq!(quote_meta(""), "");
}

#[test]
fn users_tenant_label_matchers_are_kept_and_only_narrow() {
    let mut req = ReadRequest {
        queries: vec![Query {
            matchers: vec![
                m(Type::Eq, "project", "other"),
                m(Type::Re, "project", ".*"),
                m(Type::Neq, "project", "p-1"),
            ],
            ..Default::default()
        }],
        accepted_response_types: vec![],
    };
    let before = req.queries[0].matchers.clone();
    enforce(&mut req, "project", &strings(&["p-1", "p-2"]));
    let mut want = before;
    want.push(m(Type::Re, "project", "p-1|p-2"));
    assert_eq!(req.queries[0].matchers, want);
}

#[test]
fn zero_queries_pass_as_they_are() {
    let mut req = ReadRequest {
        queries: vec![],
        accepted_response_types: vec![1],
    };
    enforce(&mut req, "project", &strings(&["p-1"]));
    assert_eq!(
        req,
        ReadRequest {
            queries: vec![],
            accepted_response_types: vec![1]
        }
    );
    let empty = ReadRequest::default();
    let decoded = decode(&encode(&empty).unwrap(), &Limits::default()).unwrap();
    assert_eq!(decoded, empty);
}

#[test]
fn no_value_selects_nothing() {
    for values in [vec![], strings(&[""]), strings(&["", ""])] {
        let mut req = ReadRequest {
            queries: vec![Query::default()],
            accepted_response_types: vec![],
        };
        enforce(&mut req, "project", &values);
        assert_eq!(
            req.queries[0].matchers,
            vec![m(Type::Eq, "project", ""), m(Type::Neq, "project", "")],
            "{values:?}"
        );
    }
    // An empty value among others grants nothing (it would select series without the label).
    assert_eq!(
        tenant_matchers("project", &strings(&["", "p-1"])),
        vec![m(Type::Eq, "project", "p-1")]
    );
    assert_eq!(
        tenant_matchers("project", &strings(&["p-1", "", "p-2"])),
        vec![m(Type::Re, "project", "p-1|p-2")]
    );
}

#[test]
fn enforce_tenant_uses_its_label_and_values() {
    let mut one = ReadRequest {
        queries: vec![Query::default()],
        accepted_response_types: vec![],
    };
    enforce_tenant(&mut one, &Tenant::new("project_id", strings(&["abc"])));
    assert_eq!(
        one.queries[0].matchers,
        vec![m(Type::Eq, "project_id", "abc")]
    );
    let mut several = ReadRequest {
        queries: vec![Query::default()],
        accepted_response_types: vec![],
    };
    enforce_tenant(
        &mut several,
        &Tenant::new("project_id", strings(&["abc", "d.e"])),
    );
    assert_eq!(
        several.queries[0].matchers,
        vec![m(Type::Re, "project_id", r"abc|d\.e")]
    );
}

// --- Hostile bodies ---

#[test]
fn not_snappy_refused() {
    for bad in [
        &b""[..],
        b"{\"queries\": []}",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x0a\x00",
    ] {
        let e = decode(bad, &Limits::default()).unwrap_err();
        assert_eq!(e.status(), 400, "{bad:?}: {e}");
    }
    // Raw protobuf, not compressed: `0a 00` reads as a length prefix of 10 and a bad body.
    assert_eq!(
        decode(&full_request_wire(), &Limits::default())
            .unwrap_err()
            .status(),
        400
    );
    assert!(decode(b"", &Limits::default())
        .unwrap_err()
        .message()
        .contains("empty body"));
}

#[test]
fn framed_snappy_refused() {
    let mut framed = Vec::new();
    {
        use std::io::Write;
        let mut w = snap::write::FrameEncoder::new(&mut framed);
        w.write_all(&full_request_wire()).unwrap();
    }
    let e = decode(&framed, &Limits::default()).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(
        e.message().contains("framed") && e.message().contains("remote read"),
        "{e}"
    );
}

#[test]
fn lying_length_prefix_refused_before_allocating() {
    // A prefix that claims 1 GiB, then a little literal.
    let bomb = [0x80, 0x80, 0x80, 0x80, 0x04, 0x00, b'x'];
    let e = decode(&bomb, &Limits::default()).unwrap_err();
    assert_eq!(e.status(), 413, "{e}");
    assert!(
        e.message().contains("1073741824") && !e.message().contains("write"),
        "{e}"
    );
    // Under a (silly) 2 GiB limit the claim is still more than 7 bytes can expand to.
    let limits = Limits {
        max_decoded_bytes: 2 << 30,
        ..Limits::default()
    };
    assert_eq!(decode(&bomb, &limits).unwrap_err().status(), 400);
    // A claim the body could hold but does not: corrupt.
    assert_eq!(
        decode(&[0x20, 0x00, b'x'], &Limits::default())
            .unwrap_err()
            .status(),
        400
    );
    // The limit is the decompressed size: one byte under it is refused.
    let c = body(&full_request());
    let size = full_request().encoded_len();
    assert!(decode(
        &c,
        &Limits {
            max_decoded_bytes: size,
            ..Limits::default()
        }
    )
    .is_ok());
    assert_eq!(
        decode(
            &c,
            &Limits {
                max_decoded_bytes: size - 1,
                ..Limits::default()
            }
        )
        .unwrap_err()
        .status(),
        413
    );
}

#[test]
fn truncated_protobuf_refused() {
    let raw = full_request_wire();
    // Top-level field boundaries: a cut there is a shorter, valid request.
    let mut boundaries = vec![0];
    let mut rest = &raw[..];
    while !rest.is_empty() {
        // A one-byte key, then the length as a varint.
        let (mut len, mut i) = (0usize, 1);
        loop {
            len |= usize::from(rest[i] & 0x7f) << (7 * (i - 1));
            i += 1;
            if rest[i - 1] < 0x80 {
                break;
            }
        }
        rest = &rest[i + len..];
        boundaries.push(raw.len() - rest.len());
    }
    for cut in 1..raw.len() {
        let got = decode(&wire::compress(&raw[..cut]).unwrap(), &Limits::default());
        match got {
            Ok(_) => assert!(boundaries.contains(&cut), "a cut at {cut} decoded"),
            Err(e) => {
                assert!(
                    !boundaries.contains(&cut),
                    "a cut at {cut} was refused: {e}"
                );
                assert_eq!(e.status(), 400, "{e}");
            }
        }
    }
}

#[test]
fn too_many_queries_is_413() {
    let req = |n: usize| ReadRequest {
        queries: (0..n)
            .map(|_| Query {
                matchers: vec![m(Type::Eq, "__name__", "up")],
                ..Default::default()
            })
            .collect(),
        accepted_response_types: vec![],
    };
    assert_eq!(
        decode(&body(&req(64)), &Limits::default())
            .unwrap()
            .queries
            .len(),
        64
    );
    let e = decode(&body(&req(65)), &Limits::default()).unwrap_err();
    assert_eq!(e.status(), 413, "{e}");
    assert!(e.message().contains("64 queries"), "{e}");
    let limits = Limits {
        max_queries: 2,
        ..Limits::default()
    };
    assert!(decode(&body(&req(2)), &limits).is_ok());
    assert_eq!(decode(&body(&req(3)), &limits).unwrap_err().status(), 413);
    // Empty queries count too (2 wire bytes each).
    let raw = [0x0a, 0x00].repeat(100_000);
    assert_eq!(
        decode(&wire::compress(&raw).unwrap(), &Limits::default())
            .unwrap_err()
            .status(),
        413
    );
}

#[test]
fn too_many_matchers_is_413() {
    let query = |n: usize| Query {
        matchers: (0..n).map(|i| m(Type::Eq, "l", &i.to_string())).collect(),
        ..Default::default()
    };
    let req = |n: usize| ReadRequest {
        queries: vec![query(1), query(n)],
        accepted_response_types: vec![],
    };
    assert!(decode(&body(&req(64)), &Limits::default()).is_ok());
    let e = decode(&body(&req(65)), &Limits::default()).unwrap_err();
    assert_eq!(e.status(), 413, "{e}");
    assert!(
        e.message().contains("queries[1]") && e.message().contains("64 matchers"),
        "{e}"
    );
    // The limit is per query: 64 queries of 64 matchers pass.
    let many = ReadRequest {
        queries: (0..64).map(|_| query(64)).collect(),
        accepted_response_types: vec![],
    };
    assert!(decode(&body(&many), &Limits::default()).is_ok());
    // Empty matchers count too.
    let raw = f_bytes(1, &[0x1a, 0x00].repeat(65));
    assert_eq!(
        decode(&wire::compress(&raw).unwrap(), &Limits::default())
            .unwrap_err()
            .status(),
        413
    );
}

#[test]
fn floods_of_grouping_labels_and_response_types_are_413() {
    let hints = f_bytes(5, b"").repeat(limits::MAX_GROUPING);
    let ok = f_bytes(1, &f_bytes(4, &hints));
    assert!(decode(&wire::compress(&ok).unwrap(), &Limits::default()).is_ok());
    let over = f_bytes(1, &cat(&[f_bytes(4, &hints), f_bytes(4, &f_bytes(5, b""))]));
    assert_eq!(
        decode(&wire::compress(&over).unwrap(), &Limits::default())
            .unwrap_err()
            .status(),
        413
    );
    let types = f_bytes(2, &[0; 17]);
    assert_eq!(
        decode(&wire::compress(&types).unwrap(), &Limits::default())
            .unwrap_err()
            .status(),
        413
    );
    let types = f_varint(2, 1).repeat(17);
    assert_eq!(
        decode(&wire::compress(&types).unwrap(), &Limits::default())
            .unwrap_err()
            .status(),
        413
    );
    let types = f_bytes(2, &[0; 16]);
    assert!(decode(&wire::compress(&types).unwrap(), &Limits::default()).is_ok());
}

#[test]
fn write_requests_sent_here_are_refused_not_emptied() {
    let write = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![
                v1::Label::new("__name__", "up"),
                v1::Label::new("job", "api"),
            ],
            samples: vec![v1::Sample {
                value: 1.0,
                timestamp: 1_700_000_000_000,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let e = decode(
        &wire::compress(&write.encode_to_vec()).unwrap(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    // Metadata only: field 3 at the top level.
    let meta = v1::WriteRequest {
        timeseries: vec![],
        metadata: vec![v1::MetricMetadata {
            r#type: 1,
            metric_family_name: "up".into(),
            help: "h".into(),
            unit: String::new(),
        }],
    };
    let e = decode(
        &wire::compress(&meta.encode_to_vec()).unwrap(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    assert!(
        e.message().contains("field 3") && e.message().contains("metadata"),
        "{e}"
    );
    // Remote-Write 2.0: symbols (4) and series (5).
    let v2 = cat(&[
        f_bytes(4, b""),
        f_bytes(4, b"up"),
        f_bytes(5, &f_bytes(1, &[0, 1])),
    ]);
    let e = decode(&wire::compress(&v2).unwrap(), &Limits::default()).unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    assert!(e.message().contains("Remote-Write 2.0"), "{e}");
}

#[test]
fn fields_the_messages_do_not_have_are_refused_at_every_level() {
    let at = |raw: Vec<u8>| decode(&wire::compress(&raw).unwrap(), &Limits::default());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (cat(&[f_bytes(1, &[]), f_varint(9, 1)]), "top level"),
        (f_bytes(1, &f_varint(5, 1)), "queries[0]"),
        (
            f_bytes(1, &f_bytes(3, &f_bytes(4, b"x"))),
            "queries[0].matchers[0]",
        ),
        (f_bytes(1, &f_bytes(4, &f_varint(8, 1))), "queries[0].hints"),
        (
            cat(&[
                f_bytes(1, &[]),
                f_bytes(1, &f_bytes(3, &cat(&[f_bytes(2, b"a"), f_varint(100, 1)]))),
            ]),
            "queries[1].matchers[0]",
        ),
    ];
    for (raw, place) in cases {
        let e = at(raw).unwrap_err();
        assert_eq!(e.status(), 400, "{place}: {e}");
        assert!(e.message().contains(place), "{place}: {e}");
    }
    // A known field with another wire type.
    for raw in [
        f_varint(1, 3),
        f_bytes(1, &f_bytes(1, b"x")),
        f_bytes(1, &f_varint(3, 1)),
        f_bytes(1, &f_bytes(3, &f_bytes(1, b"x"))),
        f_bytes(1, &f_bytes(3, &f_varint(2, 1))),
        f_bytes(1, &f_bytes(4, &f_varint(5, 1))),
        f_bytes(1, &f_bytes(4, &f_bytes(6, b"x"))),
        f_bytes(1, &f_varint(4, 0)),
        cat(&[vec![0x11], vec![0; 8]]),
    ] {
        let e = at(raw.clone()).unwrap_err();
        assert_eq!(e.status(), 400, "{raw:?}: {e}");
    }
}

#[test]
fn unknown_matcher_types_and_bad_utf8_refused() {
    for t in [4u64, 100, u64::MAX] {
        let raw = f_bytes(1, &f_bytes(3, &cat(&[f_varint(1, t), f_bytes(2, b"a")])));
        let e = decode(&wire::compress(&raw).unwrap(), &Limits::default()).unwrap_err();
        assert_eq!(e.status(), 400, "{t}: {e}");
    }
    let raw = f_bytes(
        1,
        &f_bytes(3, &cat(&[f_bytes(2, b"a"), f_bytes(3, b"\xff")])),
    );
    assert_eq!(
        decode(&wire::compress(&raw).unwrap(), &Limits::default())
            .unwrap_err()
            .status(),
        400
    );
}

// --- Headers and errors ---

#[test]
fn headers() {
    let ok = [
        (Some("application/x-protobuf"), Some("snappy")),
        (Some("Application/X-Protobuf"), Some(" Snappy ")),
        (
            Some("application/x-protobuf; proto=prometheus.ReadRequest"),
            Some("snappy"),
        ),
        (
            Some("application/x-protobuf;proto=\"prometheus.ReadRequest\""),
            Some("snappy"),
        ),
        (
            Some("application/x-protobuf; charset=utf-8;"),
            Some("snappy"),
        ),
        // Thanos sidecar's spelling (the same message).
        (Some("application/x-stream-protobuf"), Some("snappy")),
        (Some("Application/X-Stream-Protobuf"), Some("snappy")),
    ];
    for (t, e) in ok {
        assert!(check_headers(t, e).is_ok(), "{t:?} {e:?}");
    }
    let refused = [
        (None, Some("snappy")),
        (Some(""), Some("snappy")),
        (Some("application/json"), Some("snappy")),
        (Some("application/x-www-form-urlencoded"), Some("snappy")),
        (Some("application/x-protobuf-foo"), Some("snappy")),
        (Some("application/x-stream-protobuf-x"), Some("snappy")),
        (Some("application/x-streamed-protobuf"), Some("snappy")),
        (
            Some("application/x-protobuf;proto=prometheus.WriteRequest"),
            Some("snappy"),
        ),
        (Some("application/x-protobuf;proto"), Some("snappy")),
        (Some("application/x-protobuf"), None),
        (Some("application/x-protobuf"), Some("")),
        (Some("application/x-protobuf"), Some("gzip")),
        (Some("application/x-protobuf"), Some("snappy, gzip")),
        (Some("application/x-protobuf"), Some("identity")),
    ];
    for (t, e) in refused {
        let err = check_headers(t, e).unwrap_err();
        assert_eq!(err.status(), 415, "{t:?} {e:?}");
        assert_eq!(err.kind(), ErrorKind::UnsupportedMediaType);
    }
    let e = check_headers(
        Some("application/x-protobuf;proto=prometheus.WriteRequest"),
        Some("snappy"),
    )
    .unwrap_err();
    assert!(e.message().contains("prometheus.ReadRequest"), "{e}");
}

#[test]
fn errors_map_to_api_errors() {
    use crate::error::ApiError;
    let cases = [
        (ReadError::malformed("m"), 400, "bad_data"),
        (ReadError::too_large("t"), 413, "bad_data"),
        (ReadError::unsupported_media_type("u"), 415, "bad_data"),
    ];
    for (e, status, error_type) in cases {
        assert_eq!(e.status(), status);
        let message = e.message().to_string();
        assert_eq!(e.to_string(), format!("{status} {message}"));
        let api: ApiError = e.into();
        assert_eq!(
            (api.status, api.error_type, api.message.as_str()),
            (status, error_type, message.as_str())
        );
    }
}

// --- Properties ---

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const TENANT: &str = "project";
    /// Tenant values, some with regex metacharacters.
    const VALUES: &[&str] = &["p-1", "p.2", "p|3", "(p4)*", "p-10", "é"];

    fn name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["__name__", "job", "instance", TENANT, "le", "a"])
            .prop_map(str::to_string)
    }

    fn matcher() -> impl Strategy<Value = LabelMatcher> {
        let value = prop::sample::select(vec![
            "", "p-1", "p.2", "up", "api", "p-1|p-10", ".*", ".+", "p.*", "é", "x\\|y",
        ]);
        (0..4i32, name(), value).prop_map(|(t, n, v)| LabelMatcher {
            r#type: t,
            name: n,
            value: v.to_string(),
        })
    }

    fn hints() -> impl Strategy<Value = Option<ReadHints>> {
        prop::option::of(
            (
                any::<i64>(),
                "\\PC{0,6}",
                any::<i64>(),
                any::<i64>(),
                prop::collection::vec("[a-z_]{0,5}", 0..4),
                any::<bool>(),
                any::<i64>(),
            )
                .prop_map(
                    |(step_ms, func, start_ms, end_ms, grouping, by, range_ms)| ReadHints {
                        step_ms,
                        func,
                        start_ms,
                        end_ms,
                        grouping,
                        by,
                        range_ms,
                    },
                ),
        )
    }

    fn query() -> impl Strategy<Value = Query> {
        (
            any::<i64>(),
            any::<i64>(),
            prop::collection::vec(matcher(), 0..5),
            hints(),
        )
            .prop_map(|(s, e, matchers, hints)| Query {
                start_timestamp_ms: s,
                end_timestamp_ms: e,
                matchers,
                hints,
            })
    }

    fn request() -> impl Strategy<Value = ReadRequest> {
        (
            prop::collection::vec(query(), 0..4),
            prop::collection::vec(0..3i32, 0..3),
        )
            .prop_map(|(queries, accepted_response_types)| ReadRequest {
                queries,
                accepted_response_types,
            })
    }

    fn series() -> impl Strategy<Value = BTreeMap<String, String>> {
        let value = prop::sample::select(vec![
            "p-1", "p.2", "p|3", "(p4)*", "p-10", "é", "pX2", "up", "api", "x|y", "", "p-1|p-10",
        ]);
        prop::collection::btree_map(name(), value.prop_map(str::to_string), 0..5)
    }

    /// A matcher as Prometheus evaluates it: an absent label is "", regexes anchored.
    fn matches(m: &LabelMatcher, series: &BTreeMap<String, String>) -> bool {
        let v = series.get(&m.name).map_or("", String::as_str);
        let re = || {
            regex::Regex::new(&format!("^(?:{})$", m.value))
                .unwrap()
                .is_match(v)
        };
        match Type::try_from(m.r#type).unwrap() {
            Type::Eq => v == m.value,
            Type::Neq => v != m.value,
            Type::Re => re(),
            Type::Nre => !re(),
        }
    }

    fn selects(q: &Query, series: &BTreeMap<String, String>) -> bool {
        q.matchers.iter().all(|m| matches(m, series))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn round_trip_loses_nothing(req in request()) {
            let decoded = decode(&encode(&req).unwrap(), &Limits::default()).unwrap();
            prop_assert_eq!(&decoded, &req);
            prop_assert_eq!(decoded.encode_to_vec(), req.encode_to_vec());
        }

        /// The enforced query selects exactly what the user's selected, within the tenant.
        #[test]
        fn enforced_queries_select_within_the_tenant(
            req in request(),
            values in prop::collection::vec(prop::sample::select(VALUES.to_vec()), 1..4),
            batch in prop::collection::vec(series(), 1..8),
        ) {
            let values: Vec<String> = values.into_iter().map(str::to_string).collect();
            let mut enforced = decode(&encode(&req).unwrap(), &Limits::default()).unwrap();
            enforce(&mut enforced, TENANT, &values);
            let enforced = decode(&encode(&enforced).unwrap(), &Limits::default()).unwrap();
            prop_assert_eq!(enforced.queries.len(), req.queries.len());
            prop_assert_eq!(&enforced.accepted_response_types, &req.accepted_response_types);
            for (q, o) in enforced.queries.iter().zip(&req.queries) {
                prop_assert_eq!(&q.matchers[..o.matchers.len()], &o.matchers[..]);
                prop_assert_eq!(&q.hints, &o.hints);
                for s in &batch {
                    let allowed = s.get(TENANT).is_some_and(|v| values.contains(v));
                    prop_assert_eq!(selects(q, s), selects(o, s) && allowed, "{:?} {:?}", q.matchers, s);
                }
            }
        }

        #[test]
        fn decode_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            for candidate in [bytes.clone(), wire::compress(&bytes).unwrap()] {
                if let Err(e) = decode(&candidate, &Limits::default()) {
                    prop_assert!(matches!(e.status(), 400 | 413), "{e}");
                }
            }
        }

        #[test]
        fn mutated_requests_are_refused_or_round_trip(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut raw = full_request_wire();
            for (at, byte) in edits {
                let i = at.index(raw.len());
                raw[i] = byte;
            }
            match decode(&wire::compress(&raw).unwrap(), &Limits::default()) {
                // 400, or 413 when a mutated key turns the rest into something over a limit
                // (e.g. a query's bytes read as >16 packed accepted response types)
                Err(e) => prop_assert!(matches!(e.status(), 400 | 413), "{}", e),
                Ok(mut decoded) => {
                    let before = decoded.clone();
                    prop_assert_eq!(decode(&encode(&decoded).unwrap(), &Limits::default()).unwrap(), before.clone());
                    enforce(&mut decoded, TENANT, &["p-1".to_string()]);
                    let again = decode(&encode(&decoded).unwrap(), &Limits::default()).unwrap();
                    for (q, o) in again.queries.iter().zip(&before.queries) {
                        prop_assert_eq!(q.matchers.len(), o.matchers.len() + 1);
                        prop_assert_eq!(q.matchers.last(), Some(&m(Type::Eq, TENANT, "p-1")));
                    }
                }
            }
        }
    }
}
