//! Query strings and form bodies as an attacker sends them: never a panic, and every
//! `query` Prometheus would read from the output carries the tenant matcher.
#![no_main]
use keystone_prom_wasm::config::Config;
use keystone_prom_wasm::enforce::form;
use keystone_prom_wasm::enforce::params::Rewriter;
use keystone_prom_wasm::enforce::promql::{all_selectors_carry, parse, Tenant};
use keystone_prom_wasm::enforce::rewrite_cache::RewriteCache;
use keystone_prom_wasm::enforce::routes::Endpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(cfg) = Config::from_json(br#"{"keystone":{"url":"http://k/v3"}}"#) else { return };
    let tenant = Tenant::new("project_id", vec!["p1".to_string()]);
    let mut cache = RewriteCache::new(1 << 16);
    let mut enforcer = Rewriter { tenant: &tenant, limits: &cfg.limits, cache: &mut cache };
    if let Ok((out, _)) = enforcer.params(raw, Endpoint::Query) {
        // Every pair Go would read as `query` (whatever its spelling) carries the matcher;
        // other values pass as sent, so they need not be UTF-8.
        for pair in out.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = form::decode_key(k).unwrap_or_else(|e| panic!("output key does not decode: {e:?}"));
            if key == "query" {
                let value = form::decode(v).unwrap_or_else(|e| panic!("output query does not decode: {e:?}"));
                let expr = parse(&value).unwrap_or_else(|e| panic!("{e}"));
                assert!(all_selectors_carry(&expr, &tenant), "matcher missing: {out:?}");
            }
        }
    }
});
