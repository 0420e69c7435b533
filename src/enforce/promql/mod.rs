//! Tenant enforcement on the PromQL AST.
//!
//! The query is read as Prometheus reads it ([`lex`], [`prepare`]), parsed with
//! promql-parser, checked, and printed again by our own printer ([`print`]), which appends
//! the tenant matcher to every vector and matrix selector as it prints them. The printer is
//! ours because the parser's `Display` loses meaning in corner cases (it prints negative `@`
//! timestamps as 0 and drops plain matchers next to an `or` inside braces); here every node
//! is printed so that it re-parses to the same meaning. A query that does not parse is
//! explained by [`syntax`] in Prometheus's words, at Prometheus's position.

pub mod lex;
pub mod prepare;
mod print;
pub mod syntax;

use crate::enforce::regex_mask::{self, Op};
use prepare::{Prepared, Unprepared};
pub use print::{escape, regex_escape};
use promql_parser::label::Matcher;
use promql_parser::parser::{self, Expr, VectorSelector};

/// The label matcher every selector must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    label: String,
    values: Vec<String>,
    /// The matcher as printed, e.g. `project_id="abc"`.
    printed: String,
    selector_key: String,
}

impl Tenant {
    /// `values` must not be empty; one value gives `=`, several an anchored `=~`.
    pub fn new(label: &str, values: Vec<String>) -> Tenant {
        let printed = if values.len() == 1 {
            format!("{label}=\"{}\"", escape(&values[0]))
        } else {
            let alternatives: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
            format!("{label}=~\"{}\"", escape(&alternatives.join("|")))
        };
        let selector_key = format!("match[]\0{printed}");
        Tenant {
            label: label.to_string(),
            values,
            printed,
            selector_key,
        }
    }

    /// True when `m` is exactly the matcher this tenant adds.
    fn is_tenant_matcher(&self, m: &Matcher, masked: bool) -> bool {
        m.name == self.label && self.is_tenant_value(m, masked)
    }

    /// True when `m`, on the tenant label, is exactly the matcher this tenant adds.
    fn is_tenant_value(&self, m: &Matcher, masked: bool) -> bool {
        match (regex_mask::op(m, masked), self.values.as_slice()) {
            ((Op::Equal, v), [only]) => v == only,
            ((Op::Re, v), values) if values.len() > 1 => {
                v == values
                    .iter()
                    .map(|v| regex_escape(v))
                    .collect::<Vec<_>>()
                    .join("|")
            }
            _ => false,
        }
    }

    /// Identifies the tenant in caches: the printed matcher.
    pub fn key(&self) -> &str {
        &self.printed
    }

    /// Identifies the tenant in caches of selector rewrites.
    pub fn selector_key(&self) -> &str {
        &self.selector_key
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// The matcher as a whole selector, `{project_id="abc"}`.
    pub fn selector(&self) -> String {
        format!("{{{}}}", self.printed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnforceError {
    /// The query is not valid PromQL, or is over a limit (400).
    BadData(String),
    /// The query asks for another tenant by name (403).
    Forbidden(String),
}

impl EnforceError {
    /// The error as Prometheus words it for a request parameter:
    /// `invalid parameter "query": 1:5: parse error: …`.
    pub fn in_parameter(self, key: &str) -> EnforceError {
        match self {
            EnforceError::BadData(m) => {
                EnforceError::BadData(format!("invalid parameter \"{key}\": {m}"))
            }
            forbidden => forbidden,
        }
    }
}

/// Functions Prometheus accepts that promql-parser does not know. `holt_winters` is 2.x's
/// name of 3.x's `double_exponential_smoothing`.
fn register_functions() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        use promql_parser::parser::{value::ValueType, Function};
        let holt_winters = Function::new(
            "holt_winters",
            vec![ValueType::Matrix, ValueType::Scalar, ValueType::Scalar],
            0,
            ValueType::Vector,
            false,
        );
        // Fails only if the parser gains the function itself, which is just as good.
        let _ = parser::register_extra_functions(vec![holt_winters]);
    });
}

/// promql-parser's parser, with the functions it lacks registered, on the query as
/// Prometheus reads it (see [`prepare`]). Used by tests and the fuzzer on the filter's own
/// output.
pub fn parse(query: &str) -> Result<Expr, String> {
    let prepared = prepare::prepare(query).map_err(|_| syntax::explain(query))?;
    parse_text(&prepared.text)
}

fn parse_text(text: &str) -> Result<Expr, String> {
    register_functions();
    parser::parse(text)
}

/// Rewrites `query` so that every selector carries the tenant matcher.
pub fn enforce(query: &str, tenant: &Tenant, max_depth: usize) -> Result<String, EnforceError> {
    enforce_with(query, tenant, max_depth, true)
}

/// [`enforce`] with the fast parse on or off; the tests check that both agree.
#[doc(hidden)]
pub fn enforce_with(
    query: &str,
    tenant: &Tenant,
    max_depth: usize,
    fast: bool,
) -> Result<String, EnforceError> {
    check_nesting(query, max_depth)?;
    let prepared = prepared(query)?;
    // The fast parse, when it means the same (see regex_mask).
    if let Some(masked) = regex_mask::mask(&prepared.text).filter(|_| fast) {
        if let Ok(expr) = parse_text(&masked) {
            if regex_mask::sound(&expr) {
                return print::print(&expr, tenant, max_depth, true, &prepared);
            }
        }
    }
    let expr = parse_text(&prepared.text).map_err(|e| invalid(query, &e))?;
    print::print(&expr, tenant, max_depth, false, &prepared)
}

fn prepared(query: &str) -> Result<Prepared<'_>, EnforceError> {
    prepare::prepare(query).map_err(|e| match e {
        Unprepared::Invalid => EnforceError::BadData(syntax::explain(query)),
        Unprepared::Unsupported(why) => EnforceError::BadData(why),
    })
}

/// A query promql-parser refused, in Prometheus's words where the syntax checker finds
/// Prometheus's error, else in promql-parser's.
fn invalid(query: &str, parser_error: &str) -> EnforceError {
    match syntax::check(query) {
        Err(e) => EnforceError::BadData(e),
        Ok(()) => EnforceError::BadData(format!("invalid PromQL: {parser_error}")),
    }
}

/// Rewrites a series selector (`match[]`): it must be a vector selector.
pub fn enforce_selector(
    selector: &str,
    tenant: &Tenant,
    max_depth: usize,
) -> Result<String, EnforceError> {
    check_nesting(selector, max_depth)?;
    let prepared = prepared(selector)?;
    match parse_text(&prepared.text) {
        Ok(expr @ Expr::VectorSelector(_)) => {
            print::print(&expr, tenant, max_depth, false, &prepared)
        }
        Ok(_) => Err(EnforceError::BadData(format!(
            "match[] must be a series selector, got {selector:?}"
        ))),
        Err(e) => Err(invalid(selector, &e)),
    }
}

/// The invariant of [`enforce`], checked on its re-parsed output by the property tests and
/// the fuzzer: every selector (in every `or` branch) carries the tenant matcher.
pub fn all_selectors_carry(e: &Expr, tenant: &Tenant) -> bool {
    let carries = |vs: &VectorSelector| {
        let has = |ms: &[Matcher]| ms.iter().any(|m| tenant.is_tenant_matcher(m, false));
        if vs.matchers.or_matchers.is_empty() {
            has(&vs.matchers.matchers)
        } else {
            vs.matchers.or_matchers.iter().all(|g| has(g)) && vs.matchers.matchers.is_empty()
        }
    };
    let all = |e: &Expr| all_selectors_carry(e, tenant);
    match e {
        Expr::VectorSelector(vs) => carries(vs),
        Expr::MatrixSelector(ms) => carries(&ms.vs),
        Expr::Aggregate(a) => all(&a.expr) && a.param.as_deref().is_none_or(all),
        Expr::Unary(u) => all(&u.expr),
        Expr::Binary(b) => all(&b.lhs) && all(&b.rhs),
        Expr::Paren(p) => all(&p.expr),
        Expr::Subquery(s) => all(&s.expr),
        Expr::Call(c) => c.args.args.iter().all(|a| all(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::Extension(_) => false,
    }
}

/// Refuses brackets nested deeper than `max_depth`, and more than `4 × max_depth`
/// operators, before the recursive parser sees them: a 64 KiB `a+a+a…` chain would
/// otherwise nest the AST thousands deep and exhaust the VM's stack. Operators are
/// over-counted (a `-` in `offset -5m` counts too), which only makes the bound stricter.
fn check_nesting(query: &str, max_depth: usize) -> Result<(), EnforceError> {
    let max_ops = max_depth * 4;
    let (mut depth, mut braces, mut ops) = (0usize, 0usize, 0usize);
    let mut quote: Option<u8> = None;
    let mut word = 0..0;
    let mut bytes = query.bytes().enumerate().peekable();
    while let Some((i, b)) = bytes.next() {
        if let Some(q) = quote {
            if b == b'\\' && q != b'`' {
                bytes.next();
            } else if b == q {
                quote = None;
            }
            continue;
        }
        if b.is_ascii_alphanumeric() || b == b'_' {
            if word.is_empty() {
                word = i..i;
            }
            word.end = i + 1;
            if bytes
                .peek()
                .is_some_and(|(_, n)| n.is_ascii_alphanumeric() || *n == b'_')
            {
                continue;
            }
            let w = query.as_bytes().get(word.clone()).unwrap_or_default();
            if braces == 0
                && ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| w.eq_ignore_ascii_case(k.as_bytes()))
            {
                ops += 1;
            }
            word = 0..0;
        } else {
            match b {
                b'"' | b'\'' | b'`' => quote = Some(b),
                b'#' => {
                    // A comment runs to the end of the line.
                    for (_, c) in bytes.by_ref() {
                        if c == b'\n' {
                            break;
                        }
                    }
                }
                b'(' | b'[' | b'{' => {
                    depth += 1;
                    braces += usize::from(b == b'{');
                    if depth > max_depth {
                        return Err(EnforceError::BadData(format!(
                            "the query nests deeper than {max_depth} levels (limits.max_depth)"
                        )));
                    }
                }
                b')' | b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    if b == b'}' {
                        braces = braces.saturating_sub(1);
                    }
                }
                // Matchers inside braces are not operators.
                _ if braces > 0 => {}
                b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' => ops += 1,
                _ => {}
            }
        }
        if ops > max_ops {
            return Err(EnforceError::BadData(format!(
                "the query has more than {max_ops} operators (4 × limits.max_depth)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Tenant {
        Tenant::new("project_id", vec!["p1".into()])
    }

    fn rw(q: &str) -> String {
        enforce(q, &t(), 64).unwrap_or_else(|e| panic!("{q}: {e:?}"))
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str)] = include!("../../../tests/cases/promql_table.rs");
        for (q, want) in cases {
            assert_eq!(rw(q), *want, "{q}");
        }
    }

    #[test]
    fn output_reparses_to_itself() {
        for q in [
            "a + b * c",
            "sum by (x) (rate(y[5m] @ 5 offset 1m))",
            r#"x{a=~"\\d+"}"#,
            "-a ^ 2",
        ] {
            let once = rw(q);
            assert_eq!(rw(&once), once, "{q}");
        }
    }

    #[test]
    fn every_prometheus_function_parses() {
        // Prometheus 2.42 through 3.x.
        let names = "abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes \
            clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year \
            days_in_month deg delta deriv exp floor histogram_count histogram_sum histogram_fraction \
            histogram_quantile holt_winters hour idelta increase irate label_join label_replace \
            last_over_time ln log10 log2 max_over_time min_over_time minute month pi predict_linear \
            present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_desc \
            sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year \
            histogram_avg histogram_stddev histogram_stdvar double_exponential_smoothing info \
            sort_by_label sort_by_label_desc mad_over_time";
        for name in names.split_whitespace() {
            if let Err(e) = parse(&format!("{name}()")) {
                assert!(!e.contains("unknown function"), "{name}: {e}");
            }
        }
        assert_eq!(
            rw("holt_winters(x[5m], 0.5, 0.5)"),
            r#"holt_winters(x{project_id="p1"}[5m], 0.5, 0.5)"#
        );
    }

    #[test]
    fn a_value_that_starts_with_a_mask_marker_stays_an_equality() {
        // The plain parse (the query holds a marker) must not read the user's value as masked.
        for q in [
            "up{job=\"\u{E000}.+\"}",
            "up{job!=\"\u{E001}x\"}",
            "up{job=\"\\ue000.+\"}",
        ] {
            let out = rw(q);
            assert!(!out.contains("=~") && !out.contains("!~"), "{q} -> {out}");
            assert_eq!(rw(&out), out, "stable");
        }
    }

    #[test]
    fn info_needs_its_selector() {
        assert!(
            matches!(enforce("info(up)", &t(), 64), Err(EnforceError::BadData(m)) if m.contains("info()"))
        );
        assert!(matches!(
            enforce("sum(info(rate(x[5m])))", &t(), 64),
            Err(EnforceError::BadData(_))
        ));
        assert_eq!(
            rw(r#"info(up, {k8s_cluster_name=~".+"})"#),
            r#"info(up{project_id="p1"}, {k8s_cluster_name=~".+",project_id="p1"})"#
        );
    }

    #[test]
    fn other_project_is_forbidden() {
        let e = enforce(r#"up{project_id="p2"}"#, &t(), 64).unwrap_err();
        assert!(
            matches!(e, EnforceError::Forbidden(ref m) if m.contains("p2")),
            "{e:?}"
        );
        let e = enforce(r#"sum(rate(x[5m])) / sum(up{project_id="p2"})"#, &t(), 64).unwrap_err();
        assert!(matches!(e, EnforceError::Forbidden(_)));
    }

    #[test]
    fn or_inside_braces_carries_the_matcher_in_every_branch() {
        let out = enforce(r#"{a="1" or b="2"}"#, &t(), 64);
        if let Ok(out) = out {
            assert_eq!(out.matches(r#"project_id="p1""#).count(), 2, "{out}");
        }
    }

    /// Both parses, the same answer, and the answer is stable.
    fn both(q: &str) -> String {
        let out = enforce_with(q, &t(), 64, true).unwrap_or_else(|e| panic!("{q}: {e:?}"));
        assert_eq!(
            enforce_with(q, &t(), 64, false).as_ref(),
            Ok(&out),
            "fast and plain differ: {q}"
        );
        assert_eq!(
            enforce(&out, &t(), 64).as_ref(),
            Ok(&out),
            "not idempotent: {q}"
        );
        out
    }

    #[test]
    fn negative_at_is_answered() {
        assert_eq!(both("x @ -100.5"), r#"x{project_id="p1"} @ -100.500"#);
        assert_eq!(
            both("rate(x[5m] @ -1) + y @ 2"),
            r#"rate(x{project_id="p1"}[5m] @ -1.000) + y{project_id="p1"} @ 2.000"#
        );
        assert_eq!(
            both("(x @ 3)[5m:] @ - 5"),
            r#"(x{project_id="p1"} @ 3.000)[5m:] @ -5.000"#
        );
        assert_eq!(both("x @ +7"), r#"x{project_id="p1"} @ 7.000"#);
    }

    #[test]
    fn go_byte_escapes_are_bytes() {
        // `\xc3\xbc` is ü, as Go reads it; printed as the character.
        assert_eq!(
            both(r#"city_temp{city="M\xc3\xbcnchen"}"#),
            r#"city_temp{city="München",project_id="p1"}"#
        );
        assert_eq!(
            both(r#"count(x{city!="M\303\274nchen"})"#),
            r#"count (x{city!="München",project_id="p1"})"#
        );
        assert_eq!(
            both(r#"label_replace(x, "c2", "\xc3\xbc", "", "")"#),
            r#"label_replace(x{project_id="p1"}, "c2", "ü", "", "")"#
        );
        // Bytes that are not UTF-8 stay the bytes the user wrote.
        assert_eq!(both(r#"x{a="\xff"}"#), r#"x{a="\xff",project_id="p1"}"#);
        // Go refuses a regex that is not UTF-8, and so does the filter, in Go's words.
        assert_eq!(
            enforce(r#"x{a=~"\377|b"}"#, &t(), 64),
            Err(EnforceError::BadData(
                "1:3: parse error: error parsing regexp: invalid UTF-8: `\u{fffd}|b)$`".into()
            ))
        );
        assert_eq!(both(r#"x{a="\xc3ü"}"#), r#"x{a="\xc3ü",project_id="p1"}"#);
        // Every escape Go knows.
        assert_eq!(
            both(r#"x{a="\a\b\f\n\r\t\v\\\"", b='\''}"#),
            "x{a=\"\\u0007\\u0008\\u000c\\n\\r\\t\\u000b\\\\\\\"\",b=\"'\",project_id=\"p1\"}"
        );
        assert_eq!(
            both(r#"x{a="\u00fc\U0001F600"}"#),
            r#"x{a="ü😀",project_id="p1"}"#
        );
        // The tenant label itself: a byte value is no grant.
        assert!(
            matches!(enforce(r#"x{project_id="\xff"}"#, &t(), 64), Err(EnforceError::Forbidden(m)) if m.contains("\\xff"))
        );
    }

    #[test]
    fn reserved_words_are_names() {
        assert_eq!(both("smoothed"), r#"smoothed{project_id="p1"}"#);
        assert_eq!(
            both("sum by (anchored) (up)"),
            r#"sum by (anchored) (up{project_id="p1"})"#
        );
        assert_eq!(
            both(r#"anchored{job="x"}"#),
            r#"anchored{job="x",project_id="p1"}"#
        );
        assert_eq!(
            both(r#"Smoothed * on(Anchored) x{anchored=~"a.*"}"#),
            r#"Smoothed{project_id="p1"} * on (Anchored) x{anchored=~"a.*",project_id="p1"}"#
        );
        // A reserved word as the tenant label is still the tenant label.
        let t = Tenant::new("anchored", vec!["p1".into()]);
        assert_eq!(
            enforce(r#"x{anchored="p1"}"#, &t, 64).unwrap(),
            r#"x{anchored="p1"}"#
        );
        assert!(matches!(
            enforce(r#"x{anchored="p2"}"#, &t, 64),
            Err(EnforceError::Forbidden(_))
        ));
    }

    #[test]
    fn syntax_errors_say_what_prometheus_says() {
        let bad = |q: &str| match enforce(q, &t(), 64) {
            Err(EnforceError::BadData(m)) => m,
            other => panic!("{q}: {other:?}"),
        };
        assert_eq!(
            bad("rate(x[5m]"),
            "1:11: parse error: unclosed left parenthesis"
        );
        assert_eq!(
            bad("sum(up) by (job"),
            "1:16: parse error: unclosed left parenthesis"
        );
        assert_eq!(
            bad("sum(rate(cloud_instance[5m])) cloud_instances"),
            "1:31: parse error: unexpected identifier \"cloud_instances\""
        );
        assert_eq!(
            bad("x{a=\"\\q\"}"),
            "1:5: parse error: unknown escape sequence U+0071 'q'"
        );
        assert_eq!(
            bad("match[] x"),
            "1:7: parse error: missing unit character in duration"
        );
    }

    #[test]
    fn raw_strings_are_read_without_escapes() {
        let t = Tenant::new("project_id", vec!["p1".into()]);
        let cases = [
            (
                r"up{job=~`\d+|api`}",
                r#"up{job=~"\\d+|api",project_id="p1"}"#,
            ),
            (
                r#"label_replace(up, "x", "$1", "job", `(\w+)`)"#,
                r#"label_replace(up{project_id="p1"}, "x", "$1", "job", "(\\w+)")"#,
            ),
            (r#"up{a=`x"y`}"#, r#"up{a="x\"y",project_id="p1"}"#),
            ("up{a=`tab\there`}", r#"up{a="tab\there",project_id="p1"}"#),
            (
                "up{a=`two\nlines`}",
                r#"up{a="two\nlines",project_id="p1"}"#,
            ),
        ];
        for (q, want) in cases {
            for fast in [true, false] {
                assert_eq!(
                    enforce_with(q, &t, 64, fast).unwrap(),
                    want,
                    "{q} (fast {fast})"
                );
            }
            let out = enforce(q, &t, 64).unwrap();
            assert_eq!(enforce(&out, &t, 64).unwrap(), out, "idempotent: {q}");
        }
        // A backtick inside a quoted string or a comment starts nothing.
        let text = |q: &str| prepare::prepare(q).map(|p| p.text.into_owned());
        assert_eq!(text(r#"up{a="`x`"}"#).unwrap(), r#"up{a="`x`"}"#);
        assert_eq!(
            text("up{a='`\\''} # it's `x`\n+ up").unwrap(),
            "up{a=\"`'\"} # it's `x`\n+ up"
        );
        assert_eq!(
            text("a{b=`c`} + d{e=`f`}").unwrap(),
            r#"a{b="c"} + d{e="f"}"#
        );
        assert!(
            enforce("up{a=`open}", &t, 64).is_err(),
            "an unclosed raw string stays an error"
        );
    }

    #[test]
    fn parse_errors_are_bad_data() {
        for q in ["sum(", "", "up{", "foo bar", "x:[ 0]", "x[0s]", "x[5m:0s]"] {
            assert!(
                matches!(enforce(q, &t(), 64), Err(EnforceError::BadData(_))),
                "{q}"
            );
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(matches!(
            enforce(&deep, &t(), 64),
            Err(EnforceError::BadData(_))
        ));
        // Brackets inside strings do not count.
        let q = format!("x{{a=\"{}\"}}", "(".repeat(100));
        assert!(enforce(&q, &t(), 64).is_ok());
    }

    #[test]
    fn long_operator_chains_fit_a_wasm_sized_stack() {
        // Wasm VMs get about 1 MiB of stack; a 64 KiB query must not exhaust it anywhere
        // (parser, printer or drop).
        let chain = vec!["up"; 64 * 1024 / 5].join(" + ");
        let worker = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || enforce(&chain, &t(), 64).is_err())
            .unwrap();
        assert!(worker.join().unwrap());
    }

    #[test]
    fn operators_are_bounded_but_matchers_do_not_count() {
        let many = (0..100)
            .map(|i| format!("l{i}=\"v\""))
            .collect::<Vec<_>>()
            .join(",");
        assert!(enforce(&format!("up{{{many}}}"), &t(), 64).is_ok());
        for op in ["+", "==", "!=", "and", "or", ">="] {
            let chain = vec!["up"; 300].join(&format!(" {op} "));
            assert!(
                matches!(enforce(&chain, &t(), 64), Err(EnforceError::BadData(_))),
                "{op}"
            );
        }
        assert!(enforce(&vec!["up"; 100].join(" + "), &t(), 64).is_ok());
    }

    #[test]
    fn several_values_use_an_anchored_escaped_regex() {
        let t = Tenant::new("project_id", vec!["a.b".into(), "c".into()]);
        assert_eq!(
            enforce("up", &t, 64).unwrap(),
            r#"up{project_id=~"a\\.b|c"}"#
        );
    }

    #[test]
    fn lookalike_labels_do_not_count_as_the_tenant_matcher() {
        assert_eq!(
            rw(r#"up{xproject_id="p1"}"#),
            r#"up{xproject_id="p1",project_id="p1"}"#
        );
        let t2 = Tenant::new("project_id", vec!["a".into(), "b".into()]);
        assert_eq!(
            enforce(r#"up{project_id=~"a|b"}"#, &t2, 64).unwrap(),
            r#"up{project_id=~"a|b"}"#
        );
        assert_eq!(
            enforce(r#"up{project_id!~"a|b"}"#, &t2, 64).unwrap(),
            r#"up{project_id!~"a|b",project_id=~"a|b"}"#
        );
    }

    #[test]
    fn selectors() {
        assert_eq!(
            enforce_selector(r#"{job="x"}"#, &t(), 64).unwrap(),
            r#"{job="x",project_id="p1"}"#
        );
        assert!(enforce_selector("rate(x[5m])", &t(), 64).is_err());
    }
}
