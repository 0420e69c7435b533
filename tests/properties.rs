//! Property tests of the PromQL enforcement: random well-typed PromQL in, and for every
//! query that parses: the output re-parses, every selector in it carries the tenant
//! matcher, and rewriting the output again changes nothing.
#![cfg(not(target_arch = "wasm32"))]

use keystone_prom_wasm::enforce::promql::{all_selectors_carry, enforce, enforce_with, parse, Tenant};
use proptest::prelude::*;

const LABEL: &str = "project_id";
const ID: &str = "p-1";

fn selector() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["up", "cpu_total", "node:load1", "", "x_bucket"]);
    let matcher = (
        prop::sample::select(vec!["job", "le", "project_id", "instance", "__name__"]),
        prop::sample::select(vec!["=", "!=", "=~", "!~"]),
        prop::sample::select(vec!["a", "p-1", ".+", "x|y", "q\\\"uote", "", "new\\nline", "(", "a{bc}", "[[:alpha:]]+"]),
    )
        .prop_map(|(l, op, v)| format!("{l}{op}\"{v}\""));
    (name, prop::collection::vec(matcher, 0..3)).prop_map(|(name, ms)| {
        if name.is_empty() {
            // A nameless selector needs a matcher that can't match the empty string.
            let mut ms = ms;
            ms.push("job=\"j\"".into());
            format!("{{{}}}", ms.join(","))
        } else if ms.is_empty() {
            name.to_string()
        } else {
            format!("{name}{{{}}}", ms.join(", "))
        }
    })
}

fn modifiers() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["", " offset 5m", " offset -1h", " @ 1795266000", " @ 60.5", " @ start()", " @ end() offset 1m"])
        .prop_map(str::to_string)
}

fn duration() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["1m", "5m", "1h30m", "90s", "1d"])
}

fn vector() -> impl Strategy<Value = String> {
    let leaf = (selector(), modifiers()).prop_map(|(s, m)| format!("{s}{m}"));
    leaf.prop_recursive(5, 48, 3, |inner| {
        let matrix = prop_oneof![
            (selector(), duration(), modifiers()).prop_map(|(s, d, m)| format!("{s}[{d}]{m}")),
            (inner.clone(), duration(), prop::sample::select(vec!["", "1m"]))
                .prop_map(|(e, d, step)| format!("({e})[{d}:{step}]")),
        ];
        prop_oneof![
            matrix.clone().prop_map(|m| format!("rate({m})")),
            matrix.clone().prop_map(|m| format!("max_over_time({m})")),
            matrix.clone().prop_map(|m| format!("holt_winters({m}, 0.5, 0.5)")),
            matrix.prop_map(|m| format!("quantile_over_time(0.9, {m})")),
            inner.clone().prop_map(|e| format!("abs({e})")),
            inner.clone().prop_map(|e| format!("-({e})")),
            inner.clone().prop_map(|e| format!("absent({e})")),
            inner.clone().prop_map(|e| format!("label_replace({e}, \"dst\", \"$1\", \"job\", \"(.*)\")")),
            inner.clone().prop_map(|e| format!("histogram_quantile(0.9, {e})")),
            (prop::sample::select(vec!["sum", "avg", "max", "count", "group"]), prop::sample::select(vec!["", " by (job)", " without (le)"]), inner.clone())
                .prop_map(|(agg, g, e)| format!("{agg}{g} ({e})")),
            inner.clone().prop_map(|e| format!("topk(3, {e})")),
            inner.clone().prop_map(|e| format!("count_values(\"v\", {e})")),
            inner.clone().prop_map(|e| format!("({e}) * 2")),
            (
                inner.clone(),
                prop::sample::select(vec!["+", "-", "/", "and", "or", "unless", ">", "== bool", "^"]),
                prop::sample::select(vec!["", " on (job)", " ignoring (le)", " on (job) group_left (le)", " ignoring (instance) group_right"]),
                inner,
            )
                .prop_map(|(a, op, m, b)| {
                    // Set operators take no group modifiers.
                    let m = if ["and", "or", "unless"].contains(&op) && m.contains("group") { "" } else { m };
                    format!("{a} {op}{m} {b}")
                }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn rewrite_invariants(q in vector()) {
        let tenant = Tenant::new(LABEL, vec![ID.to_string()]);
        if parse(&q).is_err() {
            // Not well-typed after all (e.g. `group_right` on a set operator): the filter must refuse it too.
            prop_assert!(enforce(&q, &tenant, 64).is_err());
            return Ok(());
        }
        // The fast parse (regexes masked, not compiled) decides exactly as the plain one.
        prop_assert_eq!(enforce(&q, &tenant, 64), enforce_with(&q, &tenant, 64, false), "fast and plain differ");
        match enforce(&q, &tenant, 64) {
            Ok(out) => {
                let reparsed = parse(&out);
                prop_assert!(reparsed.is_ok(), "output does not parse: {}\ninput: {}", out, q);
                prop_assert!(all_selectors_carry(&reparsed.unwrap(), &tenant), "matcher missing: {}", out);
                prop_assert_eq!(enforce(&out, &tenant, 64).ok(), Some(out.clone()), "not idempotent");
            }
            // An equality on the tenant label naming another value is refused, and only that.
            Err(e) => prop_assert!(q.contains("project_id=\""), "refused {}: {:?}", q, e),
        }
    }
}

#[test]
fn most_generated_queries_are_valid_promql() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let tenant = Tenant::new(LABEL, vec![ID.to_string()]);
    let (mut parsed, mut rewritten) = (0, 0);
    for _ in 0..500 {
        let q = vector().new_tree(&mut runner).unwrap().current();
        if parse(&q).is_ok() {
            parsed += 1;
            rewritten += usize::from(enforce(&q, &tenant, 64).is_ok());
        }
    }
    // The generator must exercise the rewrite, not just the parser's error paths.
    assert!(parsed > 350, "only {parsed}/500 parsed");
    assert!(rewritten > 150, "only {rewritten} rewritten");
}
