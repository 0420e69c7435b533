//! PromQL enforcement on arbitrary text: never a panic, and whatever is accepted comes
//! out re-parseable, with the tenant matcher on every selector, and stable.
#![no_main]
use keystone_prom_wasm::enforce::promql::{all_selectors_carry, enforce, enforce_with, parse, Tenant};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let tenant = Tenant::new("project_id", vec!["p1".to_string()]);
    let fast = enforce(query, &tenant, 64);
    // The fast parse (regexes masked) decides exactly as the plain one.
    assert_eq!(fast, enforce_with(query, &tenant, 64, false), "fast and plain differ");
    if let Ok(out) = fast {
        let expr = parse(&out).unwrap_or_else(|e| panic!("output does not parse: {out:?}: {e}"));
        assert!(all_selectors_carry(&expr, &tenant), "matcher missing: {out:?}");
        assert_eq!(enforce(&out, &tenant, 64).as_deref(), Ok(out.as_str()), "not idempotent");
    }
});
