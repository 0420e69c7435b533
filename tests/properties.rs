//! Property tests of the PromQL enforcement: random well-typed PromQL in, and for every
//! query that parses: the output re-parses, every selector in it carries the tenant
//! matcher, and rewriting the output again changes nothing.
#![cfg(not(target_arch = "wasm32"))]

use keystone_prom_wasm::enforce::promql::{
    all_selectors_carry, enforce, enforce_with, parse, Tenant,
};
use proptest::prelude::*;

const LABEL: &str = "project_id";
const ID: &str = "p-1";

fn selector() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec!["up", "cpu_total", "node:load1", "", "x_bucket"]);
    let matcher = (
        prop::sample::select(vec!["job", "le", "project_id", "instance", "__name__"]),
        prop::sample::select(vec!["=", "!=", "=~", "!~"]),
        prop::sample::select(vec![
            "a",
            "p-1",
            ".+",
            "x|y",
            "q\\\"uote",
            "",
            "new\\nline",
            "(",
            "a{bc}",
            "[[:alpha:]]+",
        ]),
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
    prop::sample::select(vec![
        "",
        " offset 5m",
        " offset -1h",
        " @ 1795266000",
        " @ 60.5",
        " @ start()",
        " @ end() offset 1m",
    ])
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
            (
                inner.clone(),
                duration(),
                prop::sample::select(vec!["", "1m"])
            )
                .prop_map(|(e, d, step)| format!("({e})[{d}:{step}]")),
        ];
        prop_oneof![
            matrix.clone().prop_map(|m| format!("rate({m})")),
            matrix.clone().prop_map(|m| format!("max_over_time({m})")),
            matrix
                .clone()
                .prop_map(|m| format!("holt_winters({m}, 0.5, 0.5)")),
            matrix.prop_map(|m| format!("quantile_over_time(0.9, {m})")),
            inner.clone().prop_map(|e| format!("abs({e})")),
            inner.clone().prop_map(|e| format!("-({e})")),
            inner.clone().prop_map(|e| format!("absent({e})")),
            inner
                .clone()
                .prop_map(|e| format!("label_replace({e}, \"dst\", \"$1\", \"job\", \"(.*)\")")),
            inner
                .clone()
                .prop_map(|e| format!("histogram_quantile(0.9, {e})")),
            (
                prop::sample::select(vec!["sum", "avg", "max", "count", "group"]),
                prop::sample::select(vec!["", " by (job)", " without (le)"]),
                inner.clone()
            )
                .prop_map(|(agg, g, e)| format!("{agg}{g} ({e})")),
            inner.clone().prop_map(|e| format!("topk(3, {e})")),
            inner
                .clone()
                .prop_map(|e| format!("count_values(\"v\", {e})")),
            inner.clone().prop_map(|e| format!("({e}) * 2")),
            (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "/", "and", "or", "unless", ">", "== bool", "^"
                ]),
                prop::sample::select(vec![
                    "",
                    " on (job)",
                    " ignoring (le)",
                    " on (job) group_left (le)",
                    " ignoring (instance) group_right"
                ]),
                inner,
            )
                .prop_map(|(a, op, m, b)| {
                    // Set operators take no group modifiers.
                    let m = if ["and", "or", "unless"].contains(&op) && m.contains("group") {
                        ""
                    } else {
                        m
                    };
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

/// One generated byte string, written as a PromQL string literal in Go's forms: plain
/// characters, `\xNN` and `\NNN` bytes, `\u`/`\U` code points, the simple escapes, in
/// double or single quotes, or as a raw backtick string where it can be one.
fn literal() -> impl Strategy<Value = (Vec<u8>, String)> {
    let piece = prop_oneof![
        // Bytes that are not UTF-8 on their own, and ASCII.
        (0x80u8..=0xff).prop_map(|b| vec![b]),
        (0x20u8..0x7f).prop_map(|b| vec![b]),
        prop::sample::select(vec![
            "\n", "\t", "\u{7}", "\u{0}", "\\", "\"", "'", "`", "ü", "€", "😀", "\u{e000}"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ];
    (prop::collection::vec(piece, 0..8), any::<u64>()).prop_map(|(pieces, seed)| {
        let bytes: Vec<u8> = pieces.concat();
        let mut rng = seed;
        let mut pick = |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let text = std::str::from_utf8(&bytes).ok();
        if let Some(t) = text.filter(|t| !t.contains('`') && pick(4) == 0) {
            return (bytes.clone(), format!("`{t}`"));
        }
        let quote = if pick(2) == 0 { '"' } else { '\'' };
        let mut out = String::from(quote);
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            let len = match rest[0] {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            let ch = rest
                .get(..len)
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.chars().next());
            match (ch, pick(4)) {
                (Some(c), 0) if c != '\n' && c != '\\' && c != quote => out.push(c),
                (Some(c), 1) => out.push_str(
                    &format!("\\u{:04x}", c as u32)
                        .replace("\\u", if c as u32 > 0xffff { "\\U000" } else { "\\u" }),
                ),
                (Some(c), 2) if c.len_utf8() == 1 => out.push_str(&format!("\\{:03o}", c as u32)),
                (Some(c), _) => {
                    for b in c.to_string().bytes() {
                        out.push_str(&format!("\\x{b:02x}"));
                    }
                }
                (None, k) => {
                    let b = rest[0];
                    out.push_str(&if k % 2 == 0 {
                        format!("\\x{b:02X}")
                    } else {
                        format!("\\{b:03o}")
                    });
                    i += 1;
                    continue;
                }
            }
            i += ch.map_or(1, char::len_utf8);
        }
        out.push(quote);
        (bytes, out)
    })
}

/// Go's reading of a double-quoted string that the filter printed (independent of the
/// crate's own lexer): the bytes it stands for.
fn go_unquote(body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut it = body.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.extend_from_slice(c.to_string().as_bytes());
            continue;
        }
        let e = it.next().expect("escape");
        let hex = |it: &mut std::str::Chars, n| {
            u32::from_str_radix(&it.by_ref().take(n).collect::<String>(), 16).unwrap()
        };
        match e {
            'n' => out.push(b'\n'),
            't' => out.push(b'\t'),
            'r' => out.push(b'\r'),
            '\\' => out.push(b'\\'),
            '"' => out.push(b'"'),
            'x' => out.push(hex(&mut it, 2) as u8),
            'u' => out.extend_from_slice(
                char::from_u32(hex(&mut it, 4))
                    .unwrap()
                    .to_string()
                    .as_bytes(),
            ),
            other => panic!("the printer wrote \\{other}"),
        }
    }
    out
}

/// The body of the first double-quoted string after `prefix` in `out`.
fn printed_string<'a>(out: &'a str, prefix: &str) -> &'a str {
    let start = out.find(prefix).expect("prefix") + prefix.len();
    let b = out.as_bytes();
    let mut i = start;
    while b[i] != b'"' {
        i += if b[i] == b'\\' { 2 } else { 1 };
    }
    &out[start..i]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Every string the user writes reaches Prometheus as the same bytes, in a matcher and
    /// as a function argument; and every invariant of the rewrite holds.
    #[test]
    fn string_literals_keep_their_bytes((bytes, lit) in literal()) {
        let tenant = Tenant::new(LABEL, vec![ID.to_string()]);
        for (q, prefix) in [
            (format!("x{{a={lit}}}"), "x{a=\""),
            (format!("label_replace(x, \"d\", {lit}, \"\", \"\")"), "\"d\", \""),
        ] {
            let out = enforce(&q, &tenant, 64).map_err(|e| TestCaseError::fail(format!("{q}: {e:?}")))?;
            prop_assert_eq!(go_unquote(printed_string(&out, prefix)), bytes.clone(), "{} -> {}", q, out);
            prop_assert_eq!(enforce_with(&q, &tenant, 64, false), Ok(out.clone()), "fast and plain differ");
            let reparsed = parse(&out);
            prop_assert!(reparsed.is_ok(), "output does not parse: {}", out);
            prop_assert!(all_selectors_carry(&reparsed.unwrap(), &tenant), "matcher missing: {}", out);
            prop_assert_eq!(enforce(&out, &tenant, 64).ok(), Some(out.clone()), "not idempotent");
        }
        // A regex is refused when its bytes are not UTF-8 (as Go refuses it), else kept.
        let q = format!("x{{a=~{lit}}}");
        match (std::str::from_utf8(&bytes), enforce(&q, &tenant, 64)) {
            (Err(_), Err(e)) => prop_assert!(format!("{e:?}").contains("invalid UTF-8"), "{:?}", e),
            (Ok(_), Ok(out)) => prop_assert_eq!(go_unquote(printed_string(&out, "x{a=~\"")), bytes.clone()),
            // Valid UTF-8 that is no valid regex (a lone `\`, `(`, …).
            (Ok(_), Err(e)) => prop_assert!(format!("{e:?}").contains("error parsing regexp"), "{:?}", e),
            (Err(_), Ok(out)) => prop_assert!(false, "not UTF-8, yet kept: {}", out),
        }
    }
}
