//! Remote-write bodies, both schemas: never a panic; whatever decodes is stamped, re-encoded,
//! and decodes again with every series carrying the tenant label exactly once.
#![no_main]
use keystone_prom_wasm::enforce::remote_write::{
    decode, encode, enforce, Decoded, Limits, MetadataPolicy, Policy, Schema, Stamp, Tenancy,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, body)) = data.split_first() else { return };
    let schema = if first & 1 == 0 { Schema::V1 } else { Schema::V2 };
    let body = snap::raw::Encoder::new().compress_vec(body).unwrap_or_default();
    let limits = Limits::default();
    let Ok(mut decoded) = decode(&body, schema, &limits) else { return };
    let policy = Policy { tenancy: Tenancy::Stamp(Stamp::new("project", "p1")), metadata: MetadataPolicy::Drop };
    if enforce(&mut decoded, &policy).is_err() {
        return;
    }
    let out = encode(&decoded).expect("encodes");
    let again = decode(&out, schema, &limits).expect("our own output decodes");
    if let Decoded::V1(w) = again {
        for ts in &w.timeseries {
            assert_eq!(ts.labels.iter().filter(|l| l.name == "project").count(), 1);
            assert!(ts.labels.iter().any(|l| l.name == "project" && l.value == "p1"));
        }
    }
});
