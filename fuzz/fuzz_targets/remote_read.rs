//! Remote-read bodies: never a panic; whatever decodes is enforced, re-encoded, and decodes
//! again with the same queries, each ending with the tenant matcher and keeping its own.
#![no_main]
use keystone_prom_wasm::enforce::remote_read::{decode, encode, enforce, tenant_matchers, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let values: Vec<String> = match first % 3 {
        0 => vec!["p1".to_string()],
        1 => vec!["p1".to_string(), "p.2|x".to_string()],
        _ => vec![],
    };
    // Odd first bytes: the body as it came (not snappy, framed, lying prefixes); even: compressed.
    let body = if first & 1 == 1 { body.to_vec() } else { snap::raw::Encoder::new().compress_vec(body).unwrap_or_default() };
    let limits = Limits::default();
    let Ok(mut req) = decode(&body, &limits) else { return };
    let before = req.clone();
    enforce(&mut req, "project", &values);
    let out = encode(&req).expect("encodes");
    // The tenant's matchers are on top of the request's own (within `limits`).
    let relaxed = Limits { max_decoded_bytes: usize::MAX, max_matchers: limits.max_matchers + 2, ..limits };
    let again = decode(&out, &relaxed).expect("our own output decodes");
    assert_eq!(again, req);
    assert_eq!(again.queries.len(), before.queries.len());
    assert_eq!(again.accepted_response_types, before.accepted_response_types);
    let tenant = tenant_matchers("project", &values);
    for (q, o) in again.queries.iter().zip(&before.queries) {
        assert_eq!(&q.matchers[..o.matchers.len()], &o.matchers[..]);
        assert_eq!(&q.matchers[o.matchers.len()..], &tenant[..]);
        assert_eq!(q.hints, o.hints);
    }
});
