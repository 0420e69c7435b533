//! Parsing without compiling regexes.
//!
//! promql-parser compiles the regex of every `=~`/`!~` matcher while it parses, which is
//! most of the cost of a query with one (about 20 µs natively per regex, against about
//! 7 µs for the whole parse of a regex-free query). The filter never evaluates those
//! regexes: it only prints them back. So before parsing, `=~"re"` becomes `="\u{E000}re"`
//! and `!~"re"` becomes `!="\u{E001}re"`; the printer turns them back (see [`op`]).
//!
//! The masked parse is used only when it means exactly what the plain parse would:
//! - no escape in the query could spell a marker character (`\u`, `\U`, `\x`, octal), and
//!   no marker occurs in it: otherwise a user's own equality could pass for a regex;
//! - every masked regex has valid syntax (checked with regex-syntax, which parses but does
//!   not compile);
//! - every selector without a metric name keeps a matcher that cannot match the empty
//!   string without looking at a regex (Prometheus' "at least one non-empty matcher").
//!
//! Anything else takes the plain parse, which decides as before.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};

const RE: char = '\u{E000}';
const NOT_RE: char = '\u{E001}';

/// A matcher's real operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Equal,
    NotEqual,
    Re,
    NotRe,
}

/// The real operator and value of a matcher; `masked`: it comes from a masked parse (a
/// plain parse keeps a user's own value that starts with a marker as it is).
pub fn op(m: &Matcher, masked: bool) -> (Op, &str) {
    match &m.op {
        MatchOp::Equal if !masked => (Op::Equal, &m.value),
        MatchOp::NotEqual if !masked => (Op::NotEqual, &m.value),
        MatchOp::Equal => match m.value.strip_prefix(RE) {
            Some(v) => (Op::Re, v),
            None => (Op::Equal, &m.value),
        },
        MatchOp::NotEqual => match m.value.strip_prefix(NOT_RE) {
            Some(v) => (Op::NotRe, v),
            None => (Op::NotEqual, &m.value),
        },
        MatchOp::Re(_) => (Op::Re, &m.value),
        MatchOp::NotRe(_) => (Op::NotRe, &m.value),
    }
}

/// The query with its regex matchers masked, or `None` when the masked parse could
/// mean something else than the plain one.
pub fn mask(query: &str) -> Option<String> {
    if query.contains([RE, NOT_RE]) {
        return None;
    }
    let b = query.as_bytes();
    if !query.contains("=~") && !query.contains("!~") {
        return None; // nothing to gain
    }
    let mut out = String::with_capacity(query.len() + 16);
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'\'' | b'`') => {
                // Skip the string; refuse escapes that could spell a marker.
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        if matches!(b.get(i + 1), Some(b'u' | b'U' | b'x' | b'0'..=b'7')) {
                            return None;
                        }
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            c @ (b'=' | b'!') if b.get(i + 1) == Some(&b'~') => {
                // `=~` / `!~`, then blanks, then the opening quote of the regex.
                let mut j = i + 2;
                while j < b.len() && b[j].is_ascii_whitespace() {
                    j += 1;
                }
                if !matches!(b.get(j), Some(b'"' | b'\'' | b'`')) {
                    return None;
                }
                out.push_str(&query[last..i]);
                out.push_str(if c == b'=' { "=" } else { "!=" });
                out.push_str(&query[i + 2..=j]);
                out.push(if c == b'=' { RE } else { NOT_RE });
                last = j + 1;
                i = j; // the string is skipped by the next round
            }
            _ => i += 1,
        }
    }
    out.push_str(&query[last..]);
    Some(out)
}

/// Whether the masked parse may stand for the plain one (see the module comment).
pub fn sound(e: &Expr) -> bool {
    let sub = |e: &Expr| sound(e);
    match e {
        Expr::VectorSelector(vs) => selector_sound(vs),
        Expr::MatrixSelector(ms) => selector_sound(&ms.vs),
        Expr::Aggregate(a) => sub(&a.expr) && a.param.as_deref().is_none_or(sub),
        Expr::Unary(u) => sub(&u.expr),
        Expr::Binary(b) => sub(&b.lhs) && sub(&b.rhs),
        Expr::Paren(p) => sub(&p.expr),
        Expr::Subquery(s) => sub(&s.expr),
        Expr::Call(c) => c.args.args.iter().all(|a| sub(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::Extension(_) => false,
    }
}

fn selector_sound(vs: &VectorSelector) -> bool {
    let all = || {
        vs.matchers
            .matchers
            .iter()
            .chain(vs.matchers.or_matchers.iter().flatten())
    };
    let regexes_valid = all().all(|m| match op(m, true) {
        (Op::Re | Op::NotRe, v) => valid_regex(v),
        _ => true,
    });
    // Without a name, one matcher must be known not to match "" without its regex.
    let non_empty = vs.name.is_some()
        || all().any(|m| match op(m, true) {
            (Op::Equal, v) => !v.is_empty(),
            (Op::NotEqual, v) => v.is_empty(),
            _ => false,
        });
    regexes_valid && non_empty
}

fn valid_regex(re: &str) -> bool {
    regex_syntax::ParserBuilder::new()
        .build()
        .parse(&format!("^(?:{re})$"))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_regex_matchers_only() {
        assert_eq!(
            mask(r#"up{a=~"x.*",b!~'y',c="=~"}"#).unwrap(),
            "up{a=\"\u{E000}x.*\",b!='\u{E001}y',c=\"=~\"}"
        );
        assert_eq!(mask("up{a=~ `x`}").unwrap(), "up{a= `\u{E000}x`}");
        assert_eq!(mask(r#"up{a="x"}"#), None, "nothing to mask");
    }

    #[test]
    fn refuses_what_could_spell_a_marker() {
        for q in [
            r#"up{a=~"x",b="\ue000y"}"#,
            r#"up{a=~"x",b="\U0000e000"}"#,
            r#"up{a=~"x",b="\xee\x80\x80"}"#,
            r#"up{a=~"x",b="\356\200\200"}"#,
            "up{a=~\"x\",b=\"\u{E000}\"}",
            "up{a=~ b}",
        ] {
            assert_eq!(mask(q), None, "{q}");
        }
    }

    #[test]
    fn op_reads_through_the_mask() {
        let m = Matcher::new(MatchOp::Equal, "a", "\u{E000}x.*");
        assert_eq!(op(&m, true), (Op::Re, "x.*"));
        let m = Matcher::new(MatchOp::NotEqual, "a", "\u{E001}y");
        assert_eq!(op(&m, true), (Op::NotRe, "y"));
        let m = Matcher::new(MatchOp::Equal, "a", "v");
        assert_eq!(op(&m, true), (Op::Equal, "v"));
    }
}
