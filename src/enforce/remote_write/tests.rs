//! Round trips of realistic requests, enforcement end to end, and property tests.

use super::v1::{histogram as h1, metric_metadata, Label};
use super::v2::{histogram as h2, metadata};
use super::*;

const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn label(n: &str, v: &str) -> Label {
    Label::new(n, v)
}

fn body(message: &impl Message) -> Vec<u8> {
    wire::compress(&message.encode_to_vec()).unwrap()
}

fn stamp() -> Policy {
    Policy {
        tenancy: Tenancy::Stamp(Stamp::new("project", "p-1")),
        metadata: MetadataPolicy::Forward,
    }
}

pub(super) fn v1_request() -> v1::WriteRequest {
    v1::WriteRequest {
        timeseries: vec![
            v1::TimeSeries {
                labels: vec![
                    label("__name__", "http_requests_total"),
                    label("instance", "10.0.0.1:9090"),
                    label("job", "api"),
                    label("method", "GET"),
                ],
                samples: vec![
                    v1::Sample {
                        value: 1027.0,
                        timestamp: 1_700_000_000_000,
                    },
                    v1::Sample {
                        value: 1031.5,
                        timestamp: 1_700_000_015_000,
                    },
                ],
                exemplars: vec![v1::Exemplar {
                    labels: vec![label("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")],
                    value: 1.0,
                    timestamp: 1_700_000_014_123,
                }],
                histograms: vec![],
            },
            v1::TimeSeries {
                // Unsorted, and claiming another project.
                labels: vec![
                    label("job", "api"),
                    label("__name__", "http_request_duration_seconds"),
                    label("project", "someone-else"),
                ],
                samples: vec![],
                exemplars: vec![v1::Exemplar {
                    labels: vec![label("trace_id", "a"), label("span_id", "b")],
                    value: 0.042,
                    timestamp: 1_700_000_000_001,
                }],
                histograms: vec![
                    v1::Histogram {
                        count: Some(h1::Count::CountInt(57)),
                        sum: 3.25,
                        schema: 3,
                        zero_threshold: 1e-128,
                        zero_count: Some(h1::ZeroCount::ZeroCountInt(2)),
                        negative_spans: vec![v1::BucketSpan {
                            offset: -2,
                            length: 1,
                        }],
                        negative_deltas: vec![1],
                        positive_spans: vec![
                            v1::BucketSpan {
                                offset: 0,
                                length: 2,
                            },
                            v1::BucketSpan {
                                offset: 3,
                                length: 1,
                            },
                        ],
                        positive_deltas: vec![10, -3, 40],
                        reset_hint: h1::ResetHint::No as i32,
                        timestamp: 1_700_000_000_000,
                        ..Default::default()
                    },
                    v1::Histogram {
                        count: Some(h1::Count::CountFloat(12.5)),
                        sum: -4.0,
                        schema: -53,
                        zero_count: Some(h1::ZeroCount::ZeroCountFloat(0.0)),
                        positive_spans: vec![v1::BucketSpan {
                            offset: 0,
                            length: 3,
                        }],
                        positive_counts: vec![2.5, 0.0, 10.0],
                        custom_values: vec![0.1, 0.5, 1.0],
                        reset_hint: h1::ResetHint::Gauge as i32,
                        timestamp: 1_700_000_015_000,
                        ..Default::default()
                    },
                ],
            },
        ],
        metadata: vec![v1::MetricMetadata {
            r#type: metric_metadata::MetricType::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests served.".into(),
            unit: "".into(),
        }],
    }
}

pub(super) fn v2_request() -> v2::Request {
    let symbols = [
        "",
        "__name__",
        "http_requests_total",
        "job",
        "api",
        "project",
        "someone-else",
        "trace_id",
        "abc123",
        "Requests served.",
        "requests",
        "http_request_duration_seconds",
        "seconds",
        "zone",
        "a",
    ];
    v2::Request {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                samples: vec![
                    v2::Sample {
                        value: 1027.0,
                        timestamp: 1_700_000_000_000,
                        start_timestamp: 1_699_000_000_000,
                    },
                    v2::Sample {
                        value: 1031.5,
                        timestamp: 1_700_000_015_000,
                        start_timestamp: 1_699_000_000_000,
                    },
                ],
                exemplars: vec![v2::Exemplar {
                    labels_refs: vec![7, 8],
                    value: 1.0,
                    timestamp: 1_700_000_014_123,
                }],
                metadata: Some(v2::Metadata {
                    r#type: metadata::MetricType::Counter as i32,
                    help_ref: 9,
                    unit_ref: 10,
                }),
                created_timestamp: 1_699_000_000_000,
                ..Default::default()
            },
            v2::TimeSeries {
                // Claims another project; not sorted either.
                labels_refs: vec![13, 14, 1, 11, 5, 6, 3, 4],
                histograms: vec![v2::Histogram {
                    count: Some(h2::Count::CountInt(57)),
                    sum: 3.25,
                    schema: 3,
                    zero_threshold: 1e-128,
                    zero_count: Some(h2::ZeroCount::ZeroCountInt(2)),
                    negative_spans: vec![v2::BucketSpan {
                        offset: -2,
                        length: 1,
                    }],
                    negative_deltas: vec![1],
                    positive_spans: vec![
                        v2::BucketSpan {
                            offset: 0,
                            length: 2,
                        },
                        v2::BucketSpan {
                            offset: 3,
                            length: 1,
                        },
                    ],
                    positive_deltas: vec![10, -3, 40],
                    reset_hint: h2::ResetHint::Yes as i32,
                    timestamp: 1_700_000_000_000,
                    start_timestamp: 1_699_999_000_000,
                    ..Default::default()
                }],
                exemplars: vec![v2::Exemplar {
                    labels_refs: vec![7, 8],
                    value: 0.042,
                    timestamp: 1_700_000_000_001,
                }],
                metadata: Some(v2::Metadata {
                    r#type: metadata::MetricType::Histogram as i32,
                    help_ref: 0,
                    unit_ref: 12,
                }),
                ..Default::default()
            },
            v2::TimeSeries {
                labels_refs: vec![1, 11, 3, 4],
                histograms: vec![v2::Histogram {
                    count: Some(h2::Count::CountFloat(12.5)),
                    schema: -53,
                    positive_spans: vec![v2::BucketSpan {
                        offset: 0,
                        length: 3,
                    }],
                    positive_counts: vec![2.5, 0.0, 10.0],
                    custom_values: vec![0.1, 0.5, 1.0],
                    reset_hint: h2::ResetHint::Gauge as i32,
                    timestamp: 1_700_000_015_000,
                    ..Default::default()
                }],
                metadata: Some(v2::Metadata::default()),
                ..Default::default()
            },
        ],
    }
}

fn strings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn v2_labels(req: &v2::Request, series: &v2::TimeSeries) -> Vec<(String, String)> {
    req.labels(series)
        .unwrap()
        .into_iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

#[test]
fn v1_round_trip_unchanged() {
    let req = v1_request();
    let decoded = decode(&body(&req), Schema::V1, &Limits::default()).unwrap();
    assert_eq!(decoded, Decoded::V1(req.clone()));
    let again = decode(&encode(&decoded).unwrap(), Schema::V1, &Limits::default()).unwrap();
    assert_eq!(again, Decoded::V1(req));
}

#[test]
fn v2_round_trip_unchanged() {
    let req = v2_request();
    let decoded = decode(&body(&req), Schema::V2, &Limits::default()).unwrap();
    assert_eq!(decoded, Decoded::V2(req.clone()));
    let again = decode(&encode(&decoded).unwrap(), Schema::V2, &Limits::default()).unwrap();
    assert_eq!(again, Decoded::V2(req));
}

#[test]
fn v1_stamped_round_trip_keeps_everything_else() {
    let req = v1_request();
    let mut decoded = decode(&body(&req), Schema::V1, &Limits::default()).unwrap();
    let done = enforce(&mut decoded, &stamp()).unwrap();
    assert_eq!(
        done,
        Enforced {
            series: 2,
            overwritten: 1,
            metadata_dropped: 0
        }
    );
    let Decoded::V1(out) =
        decode(&encode(&decoded).unwrap(), Schema::V1, &Limits::default()).unwrap()
    else {
        panic!("schema changed");
    };
    let want0 = [
        label("__name__", "http_requests_total"),
        label("instance", "10.0.0.1:9090"),
        label("job", "api"),
        label("method", "GET"),
        label("project", "p-1"),
    ];
    let want1 = [
        label("__name__", "http_request_duration_seconds"),
        label("job", "api"),
        label("project", "p-1"),
    ];
    assert_eq!(out.timeseries[0].labels, want0);
    assert_eq!(out.timeseries[1].labels, want1);
    // All but the labels as they came.
    let mut expected = req.clone();
    expected.timeseries[0].labels = want0.to_vec();
    expected.timeseries[1].labels = want1.to_vec();
    assert_eq!(out, expected);
}

#[test]
fn v2_symbols_rewrite() {
    let req = v2_request();
    let mut decoded = decode(&body(&req), Schema::V2, &Limits::default()).unwrap();
    let done = enforce(&mut decoded, &stamp()).unwrap();
    assert_eq!(
        done,
        Enforced {
            series: 3,
            overwritten: 1,
            metadata_dropped: 0
        }
    );
    let Decoded::V2(out) =
        decode(&encode(&decoded).unwrap(), Schema::V2, &Limits::default()).unwrap()
    else {
        panic!("schema changed");
    };
    // The table only grew: "project" was there, "p-1" was added once; old refs still hold.
    assert_eq!(out.symbols[0], "");
    assert_eq!(out.symbols[..req.symbols.len()], req.symbols[..]);
    assert_eq!(out.symbols[req.symbols.len()..], ["p-1".to_string()]);
    assert_eq!(
        v2_labels(&out, &out.timeseries[0]),
        strings(&[
            ("__name__", "http_requests_total"),
            ("job", "api"),
            ("project", "p-1")
        ])
    );
    assert_eq!(
        v2_labels(&out, &out.timeseries[1]),
        strings(&[
            ("__name__", "http_request_duration_seconds"),
            ("job", "api"),
            ("project", "p-1"),
            ("zone", "a")
        ])
    );
    assert_eq!(
        v2_labels(&out, &out.timeseries[2]),
        strings(&[
            ("__name__", "http_request_duration_seconds"),
            ("job", "api"),
            ("project", "p-1")
        ])
    );
    // All but the label refs as they came.
    let mut expected = req.clone();
    expected.symbols = out.symbols.clone();
    for (e, o) in expected.timeseries.iter_mut().zip(&out.timeseries) {
        e.labels_refs = o.labels_refs.clone();
    }
    assert_eq!(out, expected);
    // Exemplar and metadata refs still point at the same strings.
    assert_eq!(
        out.symbol(out.timeseries[0].exemplars[0].labels_refs[1]),
        Some("abc123")
    );
    assert_eq!(
        out.symbol(out.timeseries[1].metadata.unwrap().unit_ref),
        Some("seconds")
    );
}

#[test]
fn v2_tenant_symbols_added_once_and_reused() {
    let req = v2::Request {
        symbols: vec!["".into(), "__name__".into(), "up".into()],
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: vec![1, 2],
                ..Default::default()
            };
            3
        ],
    };
    let mut decoded = Decoded::V2(req);
    enforce(&mut decoded, &stamp()).unwrap();
    let Decoded::V2(out) = &decoded else {
        unreachable!()
    };
    assert_eq!(out.symbols, ["", "__name__", "up", "project", "p-1"]);
    for s in &out.timeseries {
        assert_eq!(s.labels_refs, [1, 2, 3, 4]);
    }
    // A table without the leading "" gets it (and no refs move, since there were none).
    let mut empty = Decoded::V2(v2::Request {
        symbols: vec![],
        timeseries: vec![v2::TimeSeries::default()],
    });
    enforce(&mut empty, &stamp()).unwrap();
    let Decoded::V2(out) = &empty else {
        unreachable!()
    };
    assert_eq!(out.symbols, ["", "project", "p-1"]);
    assert_eq!(out.timeseries[0].labels_refs, [1, 2]);
}

#[test]
fn stale_markers_survive_bit_for_bit() {
    let req = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![label("__name__", "up")],
            samples: vec![v1::Sample {
                value: f64::from_bits(STALE_NAN),
                timestamp: 5,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let mut decoded = decode(&body(&req), Schema::V1, &Limits::default()).unwrap();
    enforce(&mut decoded, &stamp()).unwrap();
    let Decoded::V1(out) =
        decode(&encode(&decoded).unwrap(), Schema::V1, &Limits::default()).unwrap()
    else {
        panic!("schema changed");
    };
    assert_eq!(out.timeseries[0].samples[0].value.to_bits(), STALE_NAN);
}

#[test]
fn reject_names_the_series() {
    let policy = Policy {
        tenancy: Tenancy::Stamp(Stamp {
            on_conflict: OnConflict::Reject,
            ..Stamp::new("project", "p-1")
        }),
        metadata: MetadataPolicy::Forward,
    };
    for (schema, body) in [
        (Schema::V1, body(&v1_request())),
        (Schema::V2, body(&v2_request())),
    ] {
        let mut decoded = decode(&body, schema, &Limits::default()).unwrap();
        let e = enforce(&mut decoded, &policy).unwrap_err();
        assert_eq!((e.status(), e.kind()), (400, ErrorKind::Conflict));
        assert!(
            e.message()
                .contains("__name__=\"http_request_duration_seconds\""),
            "{e}"
        );
        assert!(e.message().contains("project=\"someone-else\""), "{e}");
        assert!(e.message().contains("project=\"p-1\""), "{e}");
    }
    // A series that carries the right value already is fine.
    let mut ok = Decoded::V1(v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![label("project", "p-1")],
            ..Default::default()
        }],
        metadata: vec![],
    });
    assert_eq!(enforce(&mut ok, &policy).unwrap().overwritten, 0);
}

#[test]
fn unrestricted_passes_labels_unchanged() {
    let policy = Policy {
        tenancy: Tenancy::Unrestricted,
        metadata: MetadataPolicy::Forward,
    };
    for (schema, body) in [
        (Schema::V1, body(&v1_request())),
        (Schema::V2, body(&v2_request())),
    ] {
        let mut decoded = decode(&body, schema, &Limits::default()).unwrap();
        let before = decoded.clone();
        enforce(&mut decoded, &policy).unwrap();
        assert_eq!(decoded, before);
        assert_eq!(
            decode(&encode(&decoded).unwrap(), schema, &Limits::default()).unwrap(),
            before
        );
    }
}

#[test]
fn metadata_only_requests() {
    let req = v1::WriteRequest {
        timeseries: vec![],
        metadata: v1_request().metadata,
    };
    let mut decoded = decode(&body(&req), Schema::V1, &Limits::default()).unwrap();
    assert!(decoded.is_metadata_only() && !decoded.is_empty());
    let forward = enforce(&mut decoded.clone(), &stamp()).unwrap();
    assert_eq!(forward.metadata_dropped, 0);
    let drop = Policy {
        metadata: MetadataPolicy::Drop,
        ..stamp()
    };
    assert_eq!(enforce(&mut decoded, &drop).unwrap().metadata_dropped, 1);
    assert!(decoded.is_empty() && !decoded.is_metadata_only());
    // Dropping keeps the series of a mixed request.
    let mut mixed = decode(&body(&v1_request()), Schema::V1, &Limits::default()).unwrap();
    assert!(!mixed.is_metadata_only());
    enforce(&mut mixed, &drop).unwrap();
    assert_eq!(mixed.series_count(), 2);
    let Decoded::V1(m) = &mixed else {
        unreachable!()
    };
    assert!(m.metadata.is_empty());
    // 2.0 metadata belongs to series: kept.
    let mut v2 = decode(&body(&v2_request()), Schema::V2, &Limits::default()).unwrap();
    assert!(!v2.is_metadata_only());
    assert_eq!(enforce(&mut v2, &drop).unwrap().metadata_dropped, 0);
    let Decoded::V2(r) = &v2 else { unreachable!() };
    assert!(r.timeseries[0].metadata.is_some());
}

#[test]
fn decompression_bomb_refused_before_allocating() {
    // A varint length prefix claiming 1 GiB, then a few bytes.
    let bomb = [0x80, 0x80, 0x80, 0x80, 0x04, 0x08, 0x0a, 0x00, 0x0a];
    let e = decode(&bomb, Schema::V1, &Limits::default()).unwrap_err();
    assert_eq!(e.status(), 413, "{e}");
    assert!(
        e.message().contains("1073741824") && e.message().contains(&(16u32 << 20).to_string()),
        "{e}"
    );
}

#[test]
fn framed_snappy_refused() {
    use std::io::Write;
    let mut framed = Vec::new();
    snap::write::FrameEncoder::new(&mut framed)
        .write_all(&v1_request().encode_to_vec())
        .unwrap();
    let e = decode(&framed, Schema::V1, &Limits::default()).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(
        e.message().contains("framed") && e.message().contains("block"),
        "{e}"
    );
}

#[test]
fn truncated_protobuf_refused() {
    let raw = v1_request().encode_to_vec();
    for cut in [1, 7, raw.len() / 2, raw.len() - 1] {
        let e = decode(
            &wire::compress(&raw[..cut]).unwrap(),
            Schema::V1,
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(e.status(), 400, "cut at {cut}: {e}");
        assert!(e.message().contains("prometheus.WriteRequest"), "{e}");
    }
    // Truncated snappy, too.
    let b = body(&v1_request());
    assert_eq!(
        decode(&b[..b.len() - 3], Schema::V1, &Limits::default())
            .unwrap_err()
            .status(),
        400
    );
    // Not UTF-8 in a label name.
    let bad = [0x0a, 0x06, 0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe];
    let e = decode(
        &wire::compress(&bad).unwrap(),
        Schema::V1,
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
}

#[test]
fn v2_bad_refs_refused() {
    let symbols: Vec<String> = vec!["".into(), "__name__".into(), "up".into()];
    for (refs, why) in [(vec![1, 2, 1], "odd"), (vec![1, 3], "past the end")] {
        let req = v2::Request {
            symbols: symbols.clone(),
            timeseries: vec![v2::TimeSeries {
                labels_refs: refs.clone(),
                ..Default::default()
            }],
        };
        let e = decode(&body(&req), Schema::V2, &Limits::default()).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(
            e.message().contains(why) && e.message().contains("timeseries[0]"),
            "{e}"
        );
        // enforce checks too (a Decoded built by hand).
        let e = enforce(&mut Decoded::V2(req), &stamp()).unwrap_err();
        assert!(e.message().contains(why), "{e}");
    }
    let req = v2::Request {
        symbols: vec!["x".into()],
        timeseries: vec![],
    };
    let e = decode(&body(&req), Schema::V2, &Limits::default()).unwrap_err();
    assert!(e.message().contains("symbols[0]"), "{e}");
}

#[test]
fn a_body_of_the_other_message_is_refused_not_emptied() {
    // A decoder skips unknown fields: a 2.0 body read as 1.0 (fields 4 and 5 unknown to it)
    // would be an empty request, answered as written while its data is lost; and the other
    // way round. The top-level fields must be the Content-Type's message's.
    let b = body(&v2_request());
    let e = decode(&b, Schema::V1, &Limits::default()).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(
        e.message().contains("io.prometheus.write.v2.Request"),
        "{e}"
    );
    assert_eq!(
        decode(&b, Schema::V2, &Limits::default())
            .unwrap()
            .series_count(),
        3
    );
    let b = body(&v1_request());
    let e = decode(&b, Schema::V2, &Limits::default()).unwrap_err();
    assert!(
        e.status() == 400 && e.message().contains("prometheus.WriteRequest"),
        "{e}"
    );
    // 1.0's reserved field 2 (Cortex's `source`) is dropped, not refused.
    let mut raw = v1_request().encode_to_vec();
    raw.extend_from_slice(&[2 << 3, 1]);
    let decoded = decode(
        &wire::compress(&raw).unwrap(),
        Schema::V1,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(decoded, Decoded::V1(v1_request()));
}

#[test]
fn limits() {
    let b = body(&v1_request());
    let too_many_series = Limits {
        max_series: 1,
        ..Limits::default()
    };
    assert_eq!(
        decode(&b, Schema::V1, &too_many_series)
            .unwrap_err()
            .status(),
        413
    );
    let too_small = Limits {
        max_decoded_bytes: 100,
        ..Limits::default()
    };
    assert_eq!(
        decode(&b, Schema::V1, &too_small).unwrap_err().status(),
        413
    );
    let too_little_memory = Limits {
        max_memory_bytes: 500,
        ..Limits::default()
    };
    assert_eq!(
        decode(&b, Schema::V1, &too_little_memory)
            .unwrap_err()
            .status(),
        413
    );
    let few_labels = Limits {
        max_labels_per_series: 3,
        ..Limits::default()
    };
    let e = decode(&b, Schema::V1, &few_labels).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(
        e.message().contains("4 labels") && e.message().contains("http_requests_total"),
        "{e}"
    );
    let short_labels = Limits {
        max_label_bytes: 20,
        ..Limits::default()
    };
    let e = decode(&b, Schema::V1, &short_labels).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(e.message().contains("label __name__ is 27 bytes"), "{e}");
    for (schema, b) in [(Schema::V1, b.clone()), (Schema::V2, body(&v2_request()))] {
        let exact = Limits {
            max_decoded_bytes: snap::raw::decompress_len(&b).unwrap(),
            ..Limits::default()
        };
        assert!(decode(&b, schema, &exact).is_ok());
    }
    let e = decode(
        &body(&v2_request()),
        Schema::V2,
        &Limits {
            max_label_bytes: 20,
            ..Limits::default()
        },
    )
    .unwrap_err();
    assert!(e.message().contains("http_requests_total"), "{e}");
}

#[test]
fn duplicate_label_names_refused() {
    let req = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![
                label("__name__", "up"),
                label("job", "a"),
                label("job", "b"),
            ],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let mut decoded = decode(&body(&req), Schema::V1, &Limits::default()).unwrap();
    let e = enforce(&mut decoded, &stamp()).unwrap_err();
    assert_eq!((e.status(), e.kind()), (400, ErrorKind::Invalid));
    assert!(e.message().contains("two labels named job"), "{e}");
}

#[test]
fn empty_stamp_is_internal() {
    let policy = Policy {
        tenancy: Tenancy::Stamp(Stamp::new("project", "")),
        metadata: MetadataPolicy::Forward,
    };
    let mut decoded = decode(&body(&v1_request()), Schema::V1, &Limits::default()).unwrap();
    assert_eq!(enforce(&mut decoded, &policy).unwrap_err().status(), 500);
}

#[test]
fn unpacked_repeated_fields_decode() {
    // labels_refs sent unpacked (field 1, varints) instead of packed: proto3 parsers accept both.
    let raw = [
        0x22, 0x00, // symbols[0] = ""
        0x22, 0x08, b'_', b'_', b'n', b'a', b'm', b'e', b'_', b'_', // symbols[1]
        0x22, 0x02, b'u', b'p', // symbols[2]
        0x2a, 0x04, 0x08, 0x01, 0x08, 0x02, // timeseries { labels_refs: 1, labels_refs: 2 }
    ];
    let mut decoded = decode(
        &wire::compress(&raw).unwrap(),
        Schema::V2,
        &Limits::default(),
    )
    .unwrap();
    enforce(&mut decoded, &stamp()).unwrap();
    let Decoded::V2(out) = &decoded else {
        unreachable!()
    };
    assert_eq!(
        v2_labels(out, &out.timeseries[0]),
        strings(&[("__name__", "up"), ("project", "p-1")])
    );
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const TENANT: &str = "project";

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "__name__",
                "job",
                "instance",
                "le",
                "project_id",
                "projecta",
                "a",
                "Z",
                "_x",
                "zone"
            ])
            .prop_map(str::to_string),
            "[a-zA-Z_][a-zA-Z0-9_]{0,12}",
            "\\PC{1,6}",
        ]
        .prop_filter("the tenant label is generated apart", |n| n != TENANT)
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["", "p-1", "p-2", "abc", "P-1"]).prop_map(str::to_string),
            "\\PC{0,10}",
        ]
    }

    /// Other labels (unique names), the tenant values a series claims, and their order.
    fn series() -> impl Strategy<Value = (BTreeMap<String, String>, Vec<(String, String)>)> {
        (
            prop::collection::btree_map(name(), value(), 0..10),
            prop::collection::vec(value(), 0..3),
        )
            .prop_flat_map(|(others, claims)| {
                let all: Vec<(String, String)> = others
                    .iter()
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .chain(claims.iter().map(|v| (TENANT.to_string(), v.clone())))
                    .collect();
                (Just(others), Just(all).prop_shuffle())
            })
    }

    fn check_stamped(out: &[(String, String)], others: &BTreeMap<String, String>, value: &str) {
        assert!(
            out.windows(2).all(|w| w[0].0 < w[1].0),
            "not sorted and unique: {out:?}"
        );
        let tenant: Vec<_> = out.iter().filter(|(n, _)| n == TENANT).collect();
        assert_eq!(tenant.len(), 1, "{out:?}");
        assert_eq!(tenant[0].1, value);
        let rest: BTreeMap<String, String> =
            out.iter().filter(|(n, _)| n != TENANT).cloned().collect();
        assert_eq!(&rest, others);
    }

    fn conflicts(labels: &[(String, String)], value: &str) -> bool {
        labels
            .iter()
            .any(|(n, v)| n == TENANT && !v.is_empty() && v != value)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn v1_stamp_sorted_unique_exactly_once(
            batch in prop::collection::vec(series(), 1..6),
            value in prop::sample::select(vec!["p-1", "abc", "zz", "\u{e9}t\u{e9}"]),
            reject in any::<bool>(),
        ) {
            let req = v1::WriteRequest {
                timeseries: batch.iter().map(|(_, all)| v1::TimeSeries {
                    labels: all.iter().map(|(n, v)| label(n, v)).collect(),
                    samples: vec![v1::Sample { value: 1.0, timestamp: 2 }],
                    ..Default::default()
                }).collect(),
                metadata: vec![],
            };
            let on_conflict = if reject { OnConflict::Reject } else { OnConflict::Overwrite };
            let policy = Policy {
                tenancy: Tenancy::Stamp(Stamp { on_conflict, ..Stamp::new(TENANT, value) }),
                metadata: MetadataPolicy::Forward,
            };
            let mut decoded = decode(&body(&req), Schema::V1, &Limits::default()).unwrap();
            let any_conflict = batch.iter().any(|(_, all)| conflicts(all, value));
            match enforce(&mut decoded, &policy) {
                Err(e) => {
                    prop_assert!(reject && any_conflict, "{e}");
                    prop_assert_eq!(e.status(), 400);
                }
                Ok(done) => {
                    prop_assert!(!(reject && any_conflict));
                    let Decoded::V1(out) = decode(&encode(&decoded).unwrap(), Schema::V1, &Limits::default()).unwrap() else {
                        panic!("schema changed");
                    };
                    let overwritten = batch.iter().filter(|(_, all)| conflicts(all, value)).count();
                    prop_assert_eq!(done.overwritten, overwritten);
                    for ((others, _), s) in batch.iter().zip(&out.timeseries) {
                        let got: Vec<(String, String)> = s.labels.iter().map(|l| (l.name.clone(), l.value.clone())).collect();
                        check_stamped(&got, others, value);
                        prop_assert_eq!(&s.samples, &[v1::Sample { value: 1.0, timestamp: 2 }]);
                    }
                }
            }
        }

        #[test]
        fn v2_stamp_sorted_unique_exactly_once(
            batch in prop::collection::vec(series(), 1..6),
            value in prop::sample::select(vec!["p-1", "abc", "zz", "job"]),
            seed in any::<u64>(),
        ) {
            // A symbols table in a random order (with "" first), holding every string once.
            let mut table: Vec<String> = batch
                .iter()
                .flat_map(|(_, all)| all.iter().flat_map(|(n, v)| [n.clone(), v.clone()]))
                .chain(["trace_id".to_string(), "help".to_string()])
                .filter(|s| !s.is_empty())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            table.sort_by_key(|s| {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (s, seed).hash(&mut h);
                h.finish()
            });
            table.insert(0, String::new());
            let index = |s: &str| table.iter().position(|t| t == s).unwrap() as u32;
            let req = v2::Request {
                symbols: table.clone(),
                timeseries: batch.iter().map(|(_, all)| v2::TimeSeries {
                    labels_refs: all.iter().flat_map(|(n, v)| [index(n), index(v)]).collect(),
                    exemplars: vec![v2::Exemplar { labels_refs: vec![index("trace_id"), index("help")], value: 1.0, timestamp: 3 }],
                    metadata: Some(v2::Metadata { r#type: 1, help_ref: index("help"), unit_ref: 0 }),
                    ..Default::default()
                }).collect(),
            };
            let mut decoded = decode(&body(&req), Schema::V2, &Limits::default()).unwrap();
            enforce(&mut decoded, &Policy {
                tenancy: Tenancy::Stamp(Stamp::new(TENANT, value)),
                metadata: MetadataPolicy::Drop,
            }).unwrap();
            let Decoded::V2(out) = decode(&encode(&decoded).unwrap(), Schema::V2, &Limits::default()).unwrap() else {
                panic!("schema changed");
            };
            prop_assert_eq!(&out.symbols[0], "");
            prop_assert_eq!(&out.symbols[..table.len()], &table[..]);
            prop_assert!(out.symbols.len() <= table.len() + 2);
            let unique: std::collections::BTreeSet<_> = out.symbols.iter().collect();
            prop_assert_eq!(unique.len(), out.symbols.len(), "symbols not deduplicated");
            for ((others, _), s) in batch.iter().zip(&out.timeseries) {
                check_stamped(&v2_labels(&out, s), others, value);
                prop_assert_eq!(out.symbol(s.exemplars[0].labels_refs[0]), Some("trace_id"));
                prop_assert_eq!(out.symbol(s.metadata.unwrap().help_ref), Some("help"));
            }
        }

        #[test]
        fn decode_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..512), v2 in any::<bool>()) {
            let schema = if v2 { Schema::V2 } else { Schema::V1 };
            for candidate in [bytes.clone(), wire::compress(&bytes).unwrap()] {
                if let Err(e) = decode(&candidate, schema, &Limits::default()) {
                    prop_assert!(matches!(e.status(), 400 | 413), "{e}");
                }
            }
        }

        #[test]
        fn decode_never_panics_on_mutated_requests(
            v2 in any::<bool>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let (schema, mut raw) = if v2 {
                (Schema::V2, v2_request().encode_to_vec())
            } else {
                (Schema::V1, v1_request().encode_to_vec())
            };
            for (at, byte) in edits {
                let i = at.index(raw.len());
                raw[i] = byte;
            }
            if let Ok(mut decoded) = decode(&wire::compress(&raw).unwrap(), schema, &Limits::default()) {
                if enforce(&mut decoded, &stamp()).is_ok() {
                    let again = decode(&encode(&decoded).unwrap(), schema, &Limits::default());
                    prop_assert!(again.is_ok(), "{:?}", again.err());
                }
            }
        }
    }
}
