//! The enforcement core compiled to Wasm, run under node by wasm-bindgen-test
//! (`make wasm-test`): the same table as the native tests, plus the request handling an
//! attacker reaches, so a difference between native and Wasm builds cannot hide.
#![cfg(target_arch = "wasm32")]

use keystone_prom_wasm::config::Config;
use keystone_prom_wasm::enforce::form;
use keystone_prom_wasm::enforce::params::Rewriter;
use keystone_prom_wasm::enforce::promql::{
    all_selectors_carry, enforce, parse, EnforceError, Tenant,
};
use keystone_prom_wasm::enforce::rewrite_cache::RewriteCache;
use keystone_prom_wasm::enforce::routes::Endpoint;
use wasm_bindgen_test::wasm_bindgen_test;

fn tenant() -> Tenant {
    Tenant::new("project_id", vec!["p1".to_string()])
}

#[wasm_bindgen_test]
fn enforcement_table() {
    let cases: &[(&str, &str)] = include!("cases/promql_table.rs");
    for (q, want) in cases {
        let out = enforce(q, &tenant(), 64).unwrap_or_else(|e| panic!("{q}: {e:?}"));
        assert_eq!(out, *want, "{q}");
        let expr = parse(&out).unwrap();
        assert!(all_selectors_carry(&expr, &tenant()), "{out}");
        assert_eq!(
            enforce(&out, &tenant(), 64).unwrap(),
            out,
            "idempotent: {q}"
        );
    }
}

#[wasm_bindgen_test]
fn refusals() {
    assert!(matches!(
        enforce(r#"up{project_id="p2"}"#, &tenant(), 64),
        Err(EnforceError::Forbidden(_))
    ));
    for q in ["sum(", "x[0s]", "", "up{", "x @ -Inf"] {
        assert!(
            matches!(enforce(q, &tenant(), 64), Err(EnforceError::BadData(_))),
            "{q}"
        );
    }
    // Deep nesting is refused before the recursive parser sees it: no stack overflow in the VM.
    let deep = format!("{}up{}", "(".repeat(5000), ")".repeat(5000));
    assert!(matches!(
        enforce(&deep, &tenant(), 64),
        Err(EnforceError::BadData(_))
    ));
    let chain = vec!["up"; 2000].join(" + ");
    assert!(enforce(&chain, &tenant(), 64).is_err());
}

/// The Prometheus corpus (tests/promql_fidelity.rs), in Wasm: `@` before 1970 and every
/// other case answered as natively.
#[wasm_bindgen_test]
fn prometheus_fidelity() {
    let wrong: Vec<String> = include!("cases/fidelity.rs");
    assert!(
        wrong.is_empty(),
        "{} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[wasm_bindgen_test]
fn request_parameters() {
    let cfg = Config::from_json(br#"{"keystone":{"url":"http://k/v3"}}"#).unwrap();
    let t = tenant();
    let mut cache = RewriteCache::new(1 << 20);
    let mut e = Rewriter {
        tenant: &t,
        limits: &cfg.limits,
        cache: &mut cache,
    };
    let (out, n) = e
        .params("query=a&%71uery=b+%2B+1&time=5", Endpoint::Query)
        .unwrap();
    assert_eq!(n, 2);
    let values: Vec<String> = form::parse(&out)
        .unwrap()
        .into_iter()
        .map(|p| p.value)
        .collect();
    assert_eq!(
        values,
        [r#"a{project_id="p1"}"#, r#"b{project_id="p1"} + 1.0"#, "5"]
    );
    assert_eq!(
        e.params("query=a;b", Endpoint::Query).unwrap_err().status,
        400
    );
    let (out, _) = e.params("match[]=up", Endpoint::Series).unwrap();
    assert_eq!(
        form::parse(&out).unwrap()[0].value,
        r#"up{project_id="p1"}"#
    );
}

/// Remote write through the write enforcer, in Wasm: a stamped round trip, a lying length
/// prefix refused before any allocation, a body of the other message refused.
#[wasm_bindgen_test]
fn remote_write() {
    use keystone_prom_wasm::enforce::remote_write::{self, v1, Decoded, Limits, Schema};
    use keystone_prom_wasm::enforce::{routes::Endpoint, BodyContext, Forward};
    let cfg = Config::from_json(br#"{"keystone":{"url":"http://k/v3"},"write":{"enabled":true}}"#)
        .unwrap();
    let t = Tenant::new("project", vec!["p1".to_string()]);
    let req = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![
                v1::Label::new("__name__", "up"),
                v1::Label::new("project", "p2"),
                v1::Label::new("zone", "a"),
            ],
            samples: vec![v1::Sample {
                value: 1.0,
                timestamp: 1_700_000_000_000,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let body = remote_write::encode(&Decoded::V1(req)).unwrap();
    let mut cache = RewriteCache::new(0);
    let mut run = |body: &[u8], ct: &str| {
        let cx = BodyContext {
            tenant: Some(&t),
            config: &cfg,
            cache: &mut cache,
            content_type: Some(ct),
        };
        Endpoint::Write.enforcer().body(cx, body, 0)
    };
    let Ok(Forward::Body(out)) = run(&body, "application/x-protobuf") else {
        panic!("not forwarded")
    };
    let Decoded::V1(got) = remote_write::decode(&out, Schema::V1, &Limits::default()).unwrap()
    else {
        panic!("v1")
    };
    let labels: Vec<(&str, &str)> = got.timeseries[0]
        .labels
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    assert_eq!(
        labels,
        [("__name__", "up"), ("project", "p1"), ("zone", "a")]
    );
    let mut bomb = vec![0x80, 0x80, 0x80, 0x80, 0x04];
    bomb.extend_from_slice(&body[1..]);
    assert_eq!(
        run(&bomb, "application/x-protobuf").unwrap_err().status,
        413
    );
    assert_eq!(
        run(
            &body,
            "application/x-protobuf;proto=io.prometheus.write.v2.Request"
        )
        .unwrap_err()
        .status,
        400
    );
}
