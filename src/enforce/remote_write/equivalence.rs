//! [`rewrite`] against the reference path ([`decode`], [`enforce`], [`Decoded::is_empty`],
//! [`encode`]): the same bytes, the same [`Enforced`], or the same refusal, on requests built
//! from prost's messages, on bodies written field by field as no encoder writes them
//! (unknown fields and groups at every level, fields repeated, out of order, packed and not,
//! non-minimal varints, wrong wire types, bad UTF-8, refs out of the table), and on those
//! bodies mutated and cut.

use super::*;

type Outcome = Result<(Vec<u8>, Enforced, bool), WriteError>;

fn reference(body: &[u8], schema: Schema, limits: &Limits, policy: &Policy) -> Outcome {
    let mut decoded = decode(body, schema, limits)?;
    let enforced = enforce(&mut decoded, policy)?;
    let empty = decoded.is_empty();
    let out = if empty { Vec::new() } else { encode(&decoded)? };
    Ok((out, enforced, empty))
}

fn fast(body: &[u8], schema: Schema, limits: &Limits, policy: &Policy) -> Outcome {
    rewrite(body, schema, limits, policy).map(|r| (r.body, r.enforced, r.empty))
}

/// Both paths agree; returns whether the request was accepted.
fn agree(body: &[u8], schema: Schema, limits: &Limits, policy: &Policy) -> bool {
    let want = reference(body, schema, limits, policy);
    let got = fast(body, schema, limits, policy);
    match (&want, &got) {
        (Ok(w), Ok(g)) => {
            assert!(
                w == g,
                "different output\nreference {w:?}\nrewrite   {g:?}\npolicy {policy:?}\nbody {:02x?}",
                short(body)
            );
            true
        }
        (Err(w), Err(g)) => {
            assert_eq!(w, g, "different refusal; body {:02x?}", short(body));
            false
        }
        _ => panic!(
            "reference {want:?}\nrewrite {got:?}\npolicy {policy:?}\nbody {:02x?}",
            short(body)
        ),
    }
}

/// A body, cut for a failure's message.
fn short(body: &[u8]) -> &[u8] {
    &body[..body.len().min(512)]
}

fn raw_agree(raw: &[u8], schema: Schema, limits: &Limits, policy: &Policy) -> bool {
    agree(&wire::compress(raw).unwrap(), schema, limits, policy)
}

/// Both paths agree at the pre-scan's limits: exactly at the request's series count and
/// estimated memory, and one under.
fn agree_at_the_limits(raw: &[u8], schema: Schema, policy: &Policy) {
    let Ok(e) = limits::prescan(
        raw,
        schema,
        &Limits {
            max_series: usize::MAX,
            max_memory_bytes: usize::MAX,
            ..Limits::default()
        },
    ) else {
        return;
    };
    for limits in [
        Limits {
            max_series: e.series,
            max_memory_bytes: e.memory(),
            ..Limits::default()
        },
        Limits {
            max_series: e.series.saturating_sub(1),
            ..Limits::default()
        },
        Limits {
            max_memory_bytes: e.memory().saturating_sub(1),
            ..Limits::default()
        },
    ] {
        raw_agree(raw, schema, &limits, policy);
    }
}

fn policies() -> Vec<Policy> {
    let mut out = Vec::new();
    for metadata in [MetadataPolicy::Forward, MetadataPolicy::Drop] {
        out.push(Policy {
            tenancy: Tenancy::Unrestricted,
            metadata,
        });
        for on_conflict in [OnConflict::Overwrite, OnConflict::Reject] {
            for (label, value) in [
                ("project", "p-1"),
                ("job", "api"),
                ("zz", "a"),
                ("project", ""),
            ] {
                for strip in [vec![], vec!["domain".to_string(), "job".to_string()]] {
                    let stamp = Stamp {
                        on_conflict,
                        extra_labels_to_strip: strip,
                        ..Stamp::new(label, value)
                    };
                    out.push(Policy {
                        tenancy: Tenancy::Stamp(stamp),
                        metadata,
                    });
                }
            }
        }
    }
    out
}

#[test]
fn fixtures_agree_under_every_policy() {
    let v1 = super::tests::v1_request().encode_to_vec();
    let v2 = super::tests::v2_request().encode_to_vec();
    let meta_only = v1::WriteRequest {
        timeseries: vec![],
        metadata: super::tests::v1_request().metadata,
    };
    let mut accepted = 0;
    for policy in policies() {
        for (schema, raw) in [
            (Schema::V1, &v1),
            (Schema::V2, &v2),
            (Schema::V1, &meta_only.encode_to_vec()),
        ] {
            accepted += usize::from(raw_agree(raw, schema, &Limits::default(), &policy));
            agree_at_the_limits(raw, schema, &policy);
            // The other message, empty bodies.
            let other = if schema == Schema::V1 {
                Schema::V2
            } else {
                Schema::V1
            };
            raw_agree(raw, other, &Limits::default(), &policy);
        }
        raw_agree(b"", Schema::V1, &Limits::default(), &policy);
        raw_agree(b"", Schema::V2, &Limits::default(), &policy);
        agree(b"", Schema::V1, &Limits::default(), &policy);
    }
    assert!(accepted > 40, "{accepted}");
}

#[test]
fn limits_agree() {
    let v1 = super::tests::v1_request().encode_to_vec();
    let v2 = super::tests::v2_request().encode_to_vec();
    let policy = Policy {
        tenancy: Tenancy::Stamp(Stamp::new("project", "p-1")),
        metadata: MetadataPolicy::Forward,
    };
    for limits in [
        Limits {
            max_series: 1,
            ..Limits::default()
        },
        Limits {
            max_decoded_bytes: 100,
            ..Limits::default()
        },
        Limits {
            max_memory_bytes: 500,
            ..Limits::default()
        },
        Limits {
            max_labels_per_series: 3,
            ..Limits::default()
        },
        Limits {
            max_label_bytes: 20,
            ..Limits::default()
        },
        Limits {
            max_label_bytes: 27,
            ..Limits::default()
        },
    ] {
        for (schema, raw) in [(Schema::V1, &v1), (Schema::V2, &v2)] {
            raw_agree(raw, schema, &limits, &policy);
        }
    }
}

/// One series of millions of empty labels, samples, spans or refs: the pre-scan refuses it
/// (413) for the memory its decoded form would take, and so does the one pass, as soon as its
/// count is over (its own buffers never grow past the pre-scan's bound).
#[test]
fn one_huge_series_is_too_large() {
    fn message(key: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![key];
        proto::put_varint(&mut out, body.len() as u64);
        out.extend_from_slice(body);
        out
    }
    let policy = Policy {
        tenancy: Tenancy::Stamp(Stamp::new("project", "p-1")),
        metadata: MetadataPolicy::Forward,
    };
    let limits = Limits {
        max_labels_per_series: usize::MAX,
        max_series: usize::MAX,
        max_memory_bytes: 4 << 20,
        ..Limits::default()
    };
    let n = 1 << 21;
    let cases = [
        (Schema::V1, message(0x0a, &[0x0a, 0x00].repeat(n))),
        (Schema::V1, message(0x0a, &[0x12, 0x00].repeat(n))),
        (
            Schema::V1,
            message(0x0a, &message(0x22, &[0x42, 0x00].repeat(n))),
        ),
        (
            Schema::V1,
            message(0x0a, &message(0x1a, &[0x0a, 0x00].repeat(n))),
        ),
        (
            Schema::V2,
            [
                &[0x22, 0x00][..],
                &message(0x2a, &message(0x0a, &vec![0x00; 4 * n])),
            ]
            .concat(),
        ),
        (Schema::V2, [0x22, 0x00].repeat(n)),
    ];
    for (schema, raw) in cases {
        let body = wire::compress(&raw).unwrap();
        let Err(e) = rewrite(&body, schema, &limits, &policy) else {
            panic!("accepted: {schema:?} {:02x?}", &raw[..8])
        };
        assert_eq!(e.status(), 413, "{e}");
        assert!(e.message().contains("memory"), "{e}");
        agree(&body, schema, &limits, &policy);
    }
}

/// Groups nested `depth` deep as an unknown field of the message at `path`, around prost's
/// recursion limit (which depends on how deep the message is).
#[test]
fn nested_groups_agree_around_the_recursion_limit() {
    fn groups(depth: usize) -> Vec<u8> {
        // Field 19 (in no message), holding field 20 (varint 1) at the bottom.
        let mut out = Vec::new();
        for _ in 0..depth {
            out.extend_from_slice(&[0x9b, 0x01]);
        }
        out.extend_from_slice(&[0xa0, 0x01, 0x01]);
        for _ in 0..depth {
            out.extend_from_slice(&[0x9c, 0x01]);
        }
        out
    }
    fn message(key: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![key];
        proto::put_varint(&mut out, body.len() as u64);
        out.extend_from_slice(body);
        out
    }
    let policy = Policy {
        tenancy: Tenancy::Stamp(Stamp::new("project", "p-1")),
        metadata: MetadataPolicy::Forward,
    };
    let label = |extra: &[u8]| {
        message(
            0x0a,
            &[&[0x0a, 0x01, b'a', 0x12, 0x01, b'b'][..], extra].concat(),
        )
    };
    let mut accepted = 0;
    for depth in [0, 1, 2, 50, 94, 95, 96, 97, 98, 99, 100, 101] {
        let g = groups(depth);
        let cases: Vec<(Schema, Vec<u8>)> = vec![
            // a series' label, sample; an exemplar's label; a histogram's span; 1.0 metadata
            (Schema::V1, message(0x0a, &label(&g))),
            (
                Schema::V1,
                message(
                    0x0a,
                    &message(
                        0x12,
                        &[&[0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f][..], &g].concat(),
                    ),
                ),
            ),
            (Schema::V1, message(0x0a, &message(0x1a, &label(&g)))),
            (
                Schema::V1,
                message(
                    0x0a,
                    &message(0x22, &message(0x42, &[&[0x08, 0x03][..], &g].concat())),
                ),
            ),
            (
                Schema::V1,
                message(0x1a, &[&[0x12, 0x01, b'm'][..], &g].concat()),
            ),
            // walked by the pre-scan: groups refused
            (Schema::V1, message(0x0a, &g)),
            (Schema::V1, g.clone()),
            (Schema::V1, message(0x0a, &message(0x1a, &g))),
            (Schema::V1, message(0x0a, &message(0x22, &g))),
            // 2.0: a sample, metadata, span; series, exemplar, histogram
            (
                Schema::V2,
                [&[0x22, 0x00][..], &message(0x2a, &message(0x12, &g))].concat(),
            ),
            (
                Schema::V2,
                [
                    &[0x22, 0x00][..],
                    &message(0x2a, &message(0x2a, &[&[0x08, 0x01][..], &g].concat())),
                ]
                .concat(),
            ),
            (
                Schema::V2,
                [
                    &[0x22, 0x00][..],
                    &message(0x2a, &message(0x1a, &message(0x5a, &g))),
                ]
                .concat(),
            ),
            (Schema::V2, [&[0x22, 0x00][..], &message(0x2a, &g)].concat()),
            (
                Schema::V2,
                [&[0x22, 0x00][..], &message(0x2a, &message(0x22, &g))].concat(),
            ),
            (
                Schema::V2,
                [&[0x22, 0x00][..], &message(0x2a, &message(0x1a, &g))].concat(),
            ),
        ];
        for (schema, raw) in cases {
            accepted += usize::from(raw_agree(&raw, schema, &Limits::default(), &policy));
        }
    }
    assert!(accepted > 20, "{accepted}");
}

#[test]
fn scalar_edge_cases_agree() {
    let policy = Policy {
        tenancy: Tenancy::Stamp(Stamp::new("project", "p-1")),
        metadata: MetadataPolicy::Forward,
    };
    let cases: Vec<(Schema, Vec<u8>)> = vec![
        // -0.0, NaN and a 10-byte timestamp in a sample; explicit zero fields
        (
            Schema::V1,
            vec![
                0x0a, 0x0f, 0x12, 0x0d, 0x09, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x10, 0x80, 0x00, 0x10,
                0x00,
            ],
        ),
        (
            Schema::V1,
            vec![0x0a, 0x0b, 0x12, 0x09, 0x09, 1, 0, 0, 0, 0, 0, 0xf8, 0x7f],
        ),
        // a sample's timestamp in more bytes than it needs; its field's length too; a label's
        (
            Schema::V1,
            vec![
                0x0a, 0x0f, 0x12, 0x0d, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x85, 0x80, 0x00,
            ],
        ),
        (
            Schema::V1,
            vec![
                0x0a, 0x0e, 0x12, 0x8c, 0x00, 0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x10, 0x85,
            ],
        ),
        (
            Schema::V1,
            vec![
                0x0a, 0x09, 0x0a, 0x86, 0x00, 0x0a, 0x01, b'a', 0x12, 0x01, b'b',
            ],
        ),
        (
            Schema::V1,
            vec![
                0x0a, 0x09, 0x8a, 0x00, 0x06, 0x0a, 0x01, b'a', 0x12, 0x01, b'b',
            ],
        ),
        (
            Schema::V1,
            vec![
                0x0a, 0x0d, 0x12, 0x0b, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0x01,
            ],
        ),
        (
            Schema::V1,
            vec![
                0x0a, 0x0d, 0x12, 0x0b, 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                0x02,
            ],
        ),
        // a negative enum (sign-extended to 10 bytes), twice
        (
            Schema::V1,
            vec![
                0x1a, 0x0a, 0x08, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x08, 0xfe, 0xff, 0x03,
            ],
        ),
        // a histogram's negative reset_hint; 2.0 metadata's negative type
        (
            Schema::V1,
            vec![
                0x0a, 0x0e, 0x22, 0x0c, 0x70, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x70, 0x80, 0x80, 0x80,
                0x80, 0x08,
            ],
        ),
        (
            Schema::V2,
            vec![
                0x22, 0x00, 0x2a, 0x08, 0x2a, 0x06, 0x08, 0xfd, 0xff, 0xff, 0xff, 0x0f,
            ],
        ),
        // labels: empty name, empty value, repeated name field, non-minimal lengths
        (
            Schema::V1,
            vec![0x0a, 0x06, 0x0a, 0x04, 0x0a, 0x00, 0x12, 0x00],
        ),
        (
            Schema::V1,
            vec![
                0x0a, 0x0c, 0x0a, 0x0a, 0x0a, 0x01, b'a', 0x0a, 0x01, b'b', 0x12, 0x81, 0x00, b'c',
            ],
        ),
        (
            Schema::V1,
            vec![0x0a, 0x07, 0x0a, 0x05, 0x0a, 0x81, 0x00, b'a', 0x12],
        ),
        // an empty series; a series key given as a non-minimal varint
        (Schema::V1, vec![0x0a, 0x00]),
        (Schema::V1, vec![0x8a, 0x00, 0x00]),
        // a key over u32::MAX; field 0; wire types 6 and 7; an end group
        (
            Schema::V1,
            vec![0x0a, 0x06, 0x80, 0x80, 0x80, 0x80, 0x10, 0x00],
        ),
        (Schema::V1, vec![0x0a, 0x02, 0x00, 0x00]),
        (Schema::V1, vec![0x0a, 0x02, 0x2e, 0x00]),
        (Schema::V1, vec![0x0a, 0x02, 0x2f, 0x00]),
        (Schema::V1, vec![0x0a, 0x04, 0x0a, 0x02, 0x2c, 0x00]),
        // 1.0's reserved field 2, in every wire type
        (Schema::V1, vec![0x10, 0x01]),
        (Schema::V1, vec![0x11, 0, 0, 0, 0, 0, 0, 0, 0]),
        (Schema::V1, vec![0x12, 0x01, 0xff]),
        (Schema::V1, vec![0x15, 0, 0, 0, 0]),
        (Schema::V1, vec![0x13, 0x14]),
        (Schema::V1, vec![0x14]),
        // 2.0: refs over u32 (truncated), unpacked and packed mixed, an empty table
        (
            Schema::V2,
            vec![
                0x22, 0x00, 0x22, 0x01, b'a', 0x2a, 0x08, 0x08, 0x81, 0x80, 0x80, 0x80, 0x10, 0x08,
                0x01,
            ],
        ),
        (
            Schema::V2,
            vec![
                0x22, 0x00, 0x22, 0x01, b'a', 0x2a, 0x06, 0x0a, 0x01, 0x01, 0x0a, 0x01, 0x01,
            ],
        ),
        (Schema::V2, vec![0x2a, 0x00]),
        (Schema::V2, vec![0x2a, 0x02, 0x0a, 0x00]),
        (Schema::V2, vec![0x22, 0x00]),
        (Schema::V2, vec![0x22, 0x01, b'x']),
        (Schema::V2, vec![0x22, 0x01, b'x', 0x2a, 0x00]),
        // metadata twice (merged), empty metadata, created_timestamp
        (
            Schema::V2,
            vec![
                0x22, 0x00, 0x2a, 0x0a, 0x2a, 0x02, 0x08, 0x01, 0x2a, 0x02, 0x18, 0x00, 0x30, 0x05,
            ],
        ),
        (Schema::V2, vec![0x22, 0x00, 0x2a, 0x02, 0x2a, 0x00]),
        // a packed double of 7 bytes; a histogram with both counts
        (
            Schema::V1,
            vec![0x0a, 0x0b, 0x22, 0x09, 0x52, 0x07, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            Schema::V1,
            vec![
                0x0a, 0x0f, 0x22, 0x0d, 0x08, 0x05, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0x08, 0x00,
            ],
        ),
    ];
    let mut accepted = 0;
    for policy in [
        policy,
        Policy {
            tenancy: Tenancy::Unrestricted,
            metadata: MetadataPolicy::Forward,
        },
    ] {
        for (schema, raw) in &cases {
            accepted += usize::from(raw_agree(raw, *schema, &Limits::default(), &policy));
        }
    }
    assert!(accepted > 20, "{accepted}");
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// A field as it goes on the wire, written however the test likes.
    #[derive(Debug, Clone)]
    enum F {
        /// A varint, with `pad` non-minimal continuation bytes.
        Varint(u32, u64, u8),
        /// A length-delimited field whose length takes `pad` more bytes than it needs.
        LenP(u32, Vec<u8>, u8),
        I64(u32, u64),
        I32(u32, u32),
        Len(u32, Vec<u8>),
        /// A group; its end tag is `end` (the right one or not).
        Group(u32, Vec<F>, u32),
    }

    fn put_varint(out: &mut Vec<u8>, v: u64, pad: u8) {
        let mut bytes = Vec::new();
        proto::put_varint(&mut bytes, v);
        // Padding: a varint may take more bytes than it needs (up to 10).
        let pad = usize::from(pad).min(10 - bytes.len());
        if pad > 0 {
            if let Some(last) = bytes.last_mut() {
                *last |= 0x80;
            }
            bytes.extend(std::iter::repeat_n(0x80, pad - 1));
            bytes.push(0x00);
        }
        out.extend_from_slice(&bytes);
    }

    fn key(out: &mut Vec<u8>, tag: u32, wire: u8) {
        put_varint(out, (u64::from(tag) << 3) | u64::from(wire), 0);
    }

    fn enc(fields: &[F]) -> Vec<u8> {
        let mut out = Vec::new();
        for f in fields {
            match f {
                F::Varint(t, v, pad) => {
                    key(&mut out, *t, 0);
                    put_varint(&mut out, *v, *pad);
                }
                F::I64(t, v) => {
                    key(&mut out, *t, 1);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                F::I32(t, v) => {
                    key(&mut out, *t, 5);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                F::Len(t, b) => {
                    key(&mut out, *t, 2);
                    put_varint(&mut out, b.len() as u64, 0);
                    out.extend_from_slice(b);
                }
                F::LenP(t, b, pad) => {
                    key(&mut out, *t, 2);
                    put_varint(&mut out, b.len() as u64, *pad);
                    out.extend_from_slice(b);
                }
                F::Group(t, inner, end) => {
                    key(&mut out, *t, 3);
                    out.extend(enc(inner));
                    key(&mut out, *end, 4);
                }
            }
        }
        out
    }

    fn varint_value() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0u64..300,
            1 => Just(0u64),
            1 => any::<u64>(),
            1 => prop::sample::select(vec![u64::from(u32::MAX), 1 << 32, (1 << 32) + 1, u64::MAX, 1 << 63, 1_700_000_000_000]),
        ]
    }

    fn double() -> impl Strategy<Value = u64> {
        prop_oneof![
            prop::sample::select(vec![
                0.0f64,
                -0.0,
                1.0,
                0.5,
                -4.25,
                f64::NAN,
                f64::INFINITY,
                1e-128
            ])
            .prop_map(f64::to_bits),
            Just(0x7ff0_0000_0000_0002u64),
            any::<u64>(),
        ]
    }

    fn pad() -> impl Strategy<Value = u8> {
        prop_oneof![8 => Just(0u8), 1 => 1u8..4, 1 => Just(9u8)]
    }

    /// An unknown field (numbers the messages do not use, or do at other levels), groups
    /// included.
    fn unknown() -> impl Strategy<Value = F> {
        let tag = prop_oneof![
            Just(20u32),
            Just(9u32),
            Just(18u32),
            Just(100u32),
            Just(536_870_911u32)
        ];
        let leaf = (
            tag.clone(),
            varint_value(),
            pad(),
            prop::collection::vec(any::<u8>(), 0..4),
            0u8..4,
        )
            .prop_map(|(t, v, p, b, w)| match w {
                0 => F::Varint(t, v, p),
                1 => F::I64(t, v),
                2 => F::Len(t, b),
                _ => F::I32(t, v as u32),
            })
            .boxed();
        let groups = leaf.clone().prop_recursive(3, 8, 3, move |inner| {
            (tag.clone(), prop::collection::vec(inner, 0..3), 0u8..6).prop_map(
                |(t, fields, wrong)| F::Group(t, fields, if wrong == 0 { t + 1 } else { t }),
            )
        });
        prop_oneof![4 => leaf, 1 => groups]
    }

    /// Now and then a field of the right number with the wrong wire type.
    fn wrong(tag: u32) -> impl Strategy<Value = F> {
        prop_oneof![
            Just(F::Varint(tag, 1, 0)),
            Just(F::I64(tag, 0)),
            Just(F::I32(tag, 0)),
            Just(F::Len(tag, vec![])),
            Just(F::Group(tag, vec![], tag)),
        ]
    }

    fn string(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            80 => prop::sample::select(pool).prop_map(|s| s.as_bytes().to_vec()),
            1 => Just(vec![0xff, 0xfe]),
            1 => Just("é".as_bytes().to_vec()),
            1 => Just(vec![b'a'; 200]),
        ]
    }

    const NAMES: &[&str] = &[
        "__name__", "job", "instance", "project", "project", "domain", "a", "zone", "", "le", "b",
        "code", "method", "path", "pod", "node", "region", "c", "d", "e",
    ];
    const VALUES: &[&str] = &["", "p-1", "p-2", "api", "x", "up", "job"];

    /// A message's fields: `known` ones (weighted), unknown ones now and then, and a wrong wire
    /// type for one of `tags` rarely.
    fn message(known: BoxedStrategy<F>, tags: &'static [u32], max: usize) -> BoxedStrategy<Vec<F>> {
        let field = prop_oneof![
            300 => known,
            8 => unknown(),
            1 => prop::sample::select(tags).prop_flat_map(wrong),
        ];
        prop::collection::vec(field, 0..max).boxed()
    }

    fn label() -> BoxedStrategy<Vec<u8>> {
        let canonical =
            (string(NAMES), string(VALUES)).prop_map(|(n, v)| enc(&[F::Len(1, n), F::Len(2, v)]));
        let odd = message(
            prop_oneof![
                string(NAMES).prop_map(|s| F::Len(1, s)),
                string(VALUES).prop_map(|s| F::Len(2, s))
            ]
            .boxed(),
            &[1, 2],
            4,
        )
        .prop_map(|f| enc(&f));
        prop_oneof![8 => canonical, 1 => odd].boxed()
    }

    fn sample(v2: bool) -> BoxedStrategy<Vec<u8>> {
        let canonical =
            (double(), varint_value()).prop_map(|(v, t)| enc(&[F::I64(1, v), F::Varint(2, t, 0)]));
        let tags: &'static [u32] = if v2 { &[1, 2, 3] } else { &[1, 2] };
        let odd = message(
            prop_oneof![
                double().prop_map(|v| F::I64(1, v)),
                (varint_value(), pad()).prop_map(|(t, p)| F::Varint(2, t, p)),
                varint_value().prop_map(|t| F::Varint(3, t, 0)),
            ]
            .boxed(),
            tags,
            4,
        )
        .prop_map(|f| enc(&f));
        prop_oneof![4 => canonical, 1 => odd].boxed()
    }

    fn packed_varints() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(varint_value(), 0..5).prop_map(|vs| {
            let mut out = Vec::new();
            for v in vs {
                proto::put_varint(&mut out, v);
            }
            out
        })
    }

    fn packed_doubles() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            20 => prop::collection::vec(double(), 0..4).prop_map(|vs| vs.iter().flat_map(|v| v.to_le_bytes()).collect()),
            1 => prop::collection::vec(any::<u8>(), 0..12),
        ]
    }

    fn span() -> BoxedStrategy<Vec<u8>> {
        message(
            prop_oneof![
                varint_value().prop_map(|v| F::Varint(1, v, 0)),
                varint_value().prop_map(|v| F::Varint(2, v, 0)),
            ]
            .boxed(),
            &[1, 2],
            3,
        )
        .prop_map(|f| enc(&f))
        .boxed()
    }

    fn histogram() -> BoxedStrategy<Vec<u8>> {
        let field = prop_oneof![
            varint_value().prop_map(|v| F::Varint(1, v, 0)),
            double().prop_map(|v| F::I64(2, v)),
            double().prop_map(|v| F::I64(3, v)),
            varint_value().prop_map(|v| F::Varint(4, v, 0)),
            double().prop_map(|v| F::I64(5, v)),
            varint_value().prop_map(|v| F::Varint(6, v, 0)),
            double().prop_map(|v| F::I64(7, v)),
            span().prop_map(|s| F::Len(8, s)),
            packed_varints().prop_map(|b| F::Len(9, b)),
            varint_value().prop_map(|v| F::Varint(9, v, 0)),
            packed_doubles().prop_map(|b| F::Len(10, b)),
            double().prop_map(|v| F::I64(10, v)),
            span().prop_map(|s| F::Len(11, s)),
            packed_varints().prop_map(|b| F::Len(12, b)),
            varint_value().prop_map(|v| F::Varint(12, v, 0)),
            packed_doubles().prop_map(|b| F::Len(13, b)),
            double().prop_map(|v| F::I64(13, v)),
            varint_value().prop_map(|v| F::Varint(14, v, 0)),
            varint_value().prop_map(|v| F::Varint(15, v, 0)),
            packed_doubles().prop_map(|b| F::Len(16, b)),
            double().prop_map(|v| F::I64(16, v)),
            varint_value().prop_map(|v| F::Varint(17, v, 0)),
        ];
        message(field.boxed(), &[1, 2, 3, 4, 8, 10, 11, 14, 16, 17], 12)
            .prop_map(|f| enc(&f))
            .boxed()
    }

    fn exemplar_v1() -> BoxedStrategy<Vec<u8>> {
        let field = prop_oneof![
            label().prop_map(|l| F::Len(1, l)),
            double().prop_map(|v| F::I64(2, v)),
            varint_value().prop_map(|v| F::Varint(3, v, 0)),
        ];
        message(field.boxed(), &[1, 2, 3], 5)
            .prop_map(|f| enc(&f))
            .boxed()
    }

    fn series_v1() -> BoxedStrategy<Vec<u8>> {
        let field = prop_oneof![
            12 => (label(), pad()).prop_map(|(l, p)| F::LenP(1, l, p)),
            3 => (sample(false), pad()).prop_map(|(s, p)| F::LenP(2, s, p)),
            1 => exemplar_v1().prop_map(|e| F::Len(3, e)),
            1 => histogram().prop_map(|h| F::Len(4, h)),
        ];
        message(field.boxed(), &[1, 2, 3, 4], 10)
            .prop_map(|f| enc(&f))
            .boxed()
    }

    fn metadata_v1() -> BoxedStrategy<Vec<u8>> {
        let field = prop_oneof![
            varint_value().prop_map(|v| F::Varint(1, v, 0)),
            string(NAMES).prop_map(|s| F::Len(2, s)),
            string(VALUES).prop_map(|s| F::Len(4, s)),
            string(VALUES).prop_map(|s| F::Len(5, s)),
        ];
        message(field.boxed(), &[1, 2, 4, 5], 5)
            .prop_map(|f| enc(&f))
            .boxed()
    }

    fn request_v1() -> BoxedStrategy<Vec<u8>> {
        let field = prop_oneof![
            40 => series_v1().prop_map(|s| F::Len(1, s)),
            2 => metadata_v1().prop_map(|m| F::Len(3, m)),
            1 => prop::collection::vec(any::<u8>(), 0..3).prop_map(|b| F::Len(2, b)),
            1 => Just(F::Varint(2, 7, 0)),
            1 => prop_oneof![Just(F::Len(5, vec![])), Just(F::Len(4, vec![]))],
        ];
        prop::collection::vec(field, 0..8)
            .prop_map(|f| enc(&f))
            .boxed()
    }

    /// 2.0 refs: mostly within a table of `symbols` entries.
    fn refs(symbols: usize) -> BoxedStrategy<Vec<u8>> {
        let r = prop_oneof![
            100 => (0..symbols as u64).boxed(),
            1 => Just(symbols as u64).boxed(),
            1 => Just((1u64 << 32) + 1).boxed(),
        ];
        (prop::collection::vec(r, 0..8), 0u8..8)
            .prop_map(|(mut vs, odd)| {
                if odd != 0 && vs.len() % 2 == 1 {
                    vs.pop();
                }
                let mut out = Vec::new();
                for v in vs {
                    proto::put_varint(&mut out, v);
                }
                out
            })
            .boxed()
    }

    fn series_v2(symbols: usize) -> BoxedStrategy<Vec<u8>> {
        let metadata = message(
            prop_oneof![
                varint_value().prop_map(|v| F::Varint(1, v, 0)),
                varint_value().prop_map(|v| F::Varint(3, v, 0)),
                varint_value().prop_map(|v| F::Varint(4, v, 0)),
            ]
            .boxed(),
            &[1, 3, 4],
            4,
        );
        let exemplar = message(
            prop_oneof![
                refs(symbols).prop_map(|b| F::Len(1, b)),
                (0..symbols as u64).prop_map(|v| F::Varint(1, v, 0)),
                double().prop_map(|v| F::I64(2, v)),
                varint_value().prop_map(|v| F::Varint(3, v, 0)),
            ]
            .boxed(),
            &[1, 2, 3],
            5,
        );
        let field = prop_oneof![
            12 => refs(symbols).prop_map(|b| F::Len(1, b)),
            1 => (0..symbols as u64).prop_map(|v| F::Varint(1, v, 0)),
            3 => sample(true).prop_map(|s| F::Len(2, s)),
            1 => histogram().prop_map(|h| F::Len(3, h)),
            1 => exemplar.prop_map(|e| F::Len(4, enc(&e))),
            1 => metadata.prop_map(|m| F::Len(5, enc(&m))),
            1 => varint_value().prop_map(|v| F::Varint(6, v, 0)),
        ];
        message(field.boxed(), &[1, 2, 3, 4, 5, 6], 8)
            .prop_map(|f| enc(&f))
            .boxed()
    }

    fn request_v2() -> BoxedStrategy<Vec<u8>> {
        // A table that mostly starts with "" and may hold a string twice.
        let table = prop_oneof![
            8 => prop::collection::vec(string(&["__name__", "job", "project", "domain", "p-1", "p-2", "x", "up", "a", "", "zone"]), 0..10)
                .prop_map(|mut t| { t.insert(0, vec![]); t }),
            1 => prop::collection::vec(string(NAMES), 0..4),
        ];
        table
            .prop_flat_map(|table| {
                let n = table.len().max(1);
                (
                    Just(table),
                    prop::collection::vec(series_v2(n), 0..5),
                    any::<prop::sample::Index>(),
                    0u8..30,
                )
            })
            .prop_map(|(table, series, at, extra)| {
                let mut fields: Vec<F> = table.into_iter().map(|s| F::Len(4, s)).collect();
                let series: Vec<F> = series.into_iter().map(|s| F::Len(5, s)).collect();
                // Series mostly after the table, sometimes among it.
                let i = if extra == 0 {
                    at.index(fields.len() + 1)
                } else {
                    fields.len()
                };
                fields.splice(i..i, series);
                if extra == 1 {
                    fields.push(F::Varint(1, 1, 0));
                }
                enc(&fields)
            })
            .boxed()
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (
            prop_oneof![
                1 => Just(None),
                4 => (
                    prop::sample::select(vec![("project", "p-1"), ("project", "p-2"), ("job", "x"), ("b", "up")]),
                    any::<bool>(),
                    any::<bool>(),
                ).prop_map(Some),
            ],
            any::<bool>(),
        )
            .prop_map(|(stamp, drop)| {
                let tenancy = match stamp {
                    None => Tenancy::Unrestricted,
                    Some(((label, value), reject, strip)) => Tenancy::Stamp(Stamp {
                        on_conflict: if reject { OnConflict::Reject } else { OnConflict::Overwrite },
                        extra_labels_to_strip: if strip { vec!["domain".into()] } else { vec![] },
                        ..Stamp::new(label, value)
                    }),
                };
                Policy { tenancy, metadata: if drop { MetadataPolicy::Drop } else { MetadataPolicy::Forward } }
            })
    }

    fn limits() -> impl Strategy<Value = Limits> {
        prop_oneof![
            8 => Just(Limits::default()),
            1 => Just(Limits { max_labels_per_series: 3, max_label_bytes: 12, ..Limits::default() }),
            1 => Just(Limits { max_series: 2, max_memory_bytes: 2000, ..Limits::default() }),
        ]
    }

    /// A request from prost's messages (canonical), stamped every way.
    fn prost_v1() -> impl Strategy<Value = Vec<u8>> {
        let label = (prop::sample::select(NAMES), prop::sample::select(VALUES))
            .prop_map(|(n, v)| v1::Label::new(n, v));
        let series = (
            prop::collection::vec(label, 0..8),
            prop::collection::vec((double(), any::<i64>()), 0..3),
        )
            .prop_map(|(labels, samples)| v1::TimeSeries {
                labels,
                samples: samples
                    .into_iter()
                    .map(|(v, t)| v1::Sample {
                        value: f64::from_bits(v),
                        timestamp: t,
                    })
                    .collect(),
                ..Default::default()
            });
        prop::collection::vec(series, 0..6).prop_map(|timeseries| {
            v1::WriteRequest {
                timeseries,
                metadata: vec![],
            }
            .encode_to_vec()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn v1_written_any_way_agrees(raw in request_v1(), policy in policy(), limits in limits()) {
            if raw_agree(&raw, Schema::V1, &limits, &policy) {
                agree_at_the_limits(&raw, Schema::V1, &policy);
            }
        }

        #[test]
        fn v2_written_any_way_agrees(raw in request_v2(), policy in policy(), limits in limits()) {
            if raw_agree(&raw, Schema::V2, &limits, &policy) {
                agree_at_the_limits(&raw, Schema::V2, &policy);
            }
        }

        #[test]
        fn prost_requests_agree(raw in prost_v1(), policy in policy()) {
            raw_agree(&raw, Schema::V1, &Limits::default(), &policy);
        }

        #[test]
        fn mutated_and_cut_bodies_agree(
            raw in prop_oneof![request_v1(), request_v2()],
            v2 in any::<bool>(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..6),
            cut in any::<prop::sample::Index>(),
            policy in policy(),
        ) {
            let schema = if v2 { Schema::V2 } else { Schema::V1 };
            let mut raw = raw;
            for (at, byte, how) in edits {
                let i = at.index(raw.len() + 1);
                match how {
                    0 if i < raw.len() => raw[i] = byte,
                    1 => raw.insert(i, byte),
                    _ if i < raw.len() => { raw.remove(i); }
                    _ => {}
                }
            }
            raw_agree(&raw, schema, &Limits::default(), &policy);
            let cut = cut.index(raw.len() + 1);
            raw_agree(&raw[..cut], schema, &Limits::default(), &policy);
            // The compressed body mutated too.
            let mut body = wire::compress(&raw).unwrap();
            let i = cut.min(body.len().saturating_sub(1));
            if let Some(b) = body.get_mut(i) {
                *b ^= 0x5a;
            }
            agree(&body, schema, &Limits::default(), &policy);
        }
    }

    /// The generators reach both outcomes often enough to mean something.
    #[test]
    fn generators_reach_acceptance_and_refusal() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let policy = Policy {
            tenancy: Tenancy::Stamp(Stamp::new("project", "p-1")),
            metadata: MetadataPolicy::Forward,
        };
        for (schema, strategy) in [(Schema::V1, request_v1()), (Schema::V2, request_v2())] {
            let mut accepted = 0;
            for _ in 0..400 {
                let raw = strategy.new_tree(&mut runner).unwrap().current();
                accepted += usize::from(raw_agree(&raw, schema, &Limits::default(), &policy));
            }
            assert!(
                (40..=360).contains(&accepted),
                "{schema:?}: {accepted} of 400 accepted"
            );
        }
    }
}
