//! The printer: the parsed query written back as PromQL that Prometheus reads with the
//! same meaning, with the tenant matcher appended to every vector and matrix selector.
//! Names and strings go through the pre-pass's mapping ([`super::prepare`]) back to what
//! the user wrote.

use super::prepare::{marker_byte, Prepared};
use super::{EnforceError, Tenant};
use crate::config::is_label_name;
use crate::enforce::regex_mask::{self, Op};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{
    AtModifier, BinModifier, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector,
};
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Prints `e` for `tenant`; `masked`: the tree comes from the masked parse (see regex_mask).
pub fn print(
    e: &Expr,
    tenant: &Tenant,
    max_depth: usize,
    masked: bool,
    prepared: &Prepared,
) -> Result<String, EnforceError> {
    let mut p = Printer {
        tenant,
        out: String::with_capacity(prepared.text.len() + 32),
        max_depth,
        masked,
        prepared,
        next_at: 0,
    };
    p.expr(e, 0)?;
    Ok(p.out)
}

struct Printer<'a> {
    tenant: &'a Tenant,
    out: String,
    max_depth: usize,
    /// The tree comes from the masked parse (see regex_mask).
    masked: bool,
    prepared: &'a Prepared<'a>,
    /// The index of the next `@ <number>` in `prepared.negative_at`.
    next_at: usize,
}

impl Printer<'_> {
    fn expr(&mut self, e: &Expr, depth: usize) -> Result<(), EnforceError> {
        // Defence in depth: check_nesting bounds this already.
        if depth > self.max_depth * 4 {
            return Err(EnforceError::BadData(format!(
                "the query nests deeper than {} operations",
                self.max_depth * 4
            )));
        }
        let d = depth + 1;
        match e {
            Expr::Aggregate(a) => {
                self.out.push_str(&a.op.to_string());
                match &a.modifier {
                    Some(LabelModifier::Include(ls)) => {
                        self.out.push_str(" by ");
                        self.labels(&ls.labels);
                    }
                    Some(LabelModifier::Exclude(ls)) => {
                        self.out.push_str(" without ");
                        self.labels(&ls.labels);
                    }
                    None => {}
                }
                self.out.push_str(" (");
                if let Some(param) = &a.param {
                    self.expr(param, d)?;
                    self.out.push_str(", ");
                }
                self.expr(&a.expr, d)?;
                self.out.push(')');
            }
            Expr::Unary(u) => {
                self.out.push('-');
                match &*u.expr {
                    // `-a ^ b` already means `-(a ^ b)`; other operators bind looser.
                    Expr::Binary(b) if precedence(&b.op.to_string()) == POW => {
                        self.expr(&u.expr, d)?
                    }
                    Expr::Binary(_) => self.parenthesized(&u.expr, d)?,
                    Expr::Unary(_) => {
                        self.out.push(' ');
                        self.expr(&u.expr, d)?;
                    }
                    _ => self.expr(&u.expr, d)?,
                }
            }
            Expr::Binary(b) => {
                let op = b.op.to_string();
                let prec = precedence(&op);
                // Left-associative, but `^` is right-associative.
                let (lhs_min, rhs_min) = if prec == POW {
                    (prec + 1, prec)
                } else {
                    (prec, prec + 1)
                };
                self.operand(&b.lhs, lhs_min, prec == POW, d)?;
                self.out.push(' ');
                self.out.push_str(&op);
                if let Some(m) = &b.modifier {
                    self.bin_modifier(m);
                }
                self.out.push(' ');
                self.operand(&b.rhs, rhs_min, false, d)?;
            }
            Expr::Paren(p) => {
                self.out.push('(');
                self.expr(&p.expr, d)?;
                self.out.push(')');
            }
            Expr::Subquery(s) => {
                nonzero(&s.range)?;
                self.wrapped(&s.expr, d)?;
                self.out.push('[');
                self.out.push_str(&duration(&s.range));
                self.out.push(':');
                if let Some(step) = &s.step {
                    self.out.push_str(&duration(step));
                }
                self.out.push(']');
                self.at_offset(&s.at, &s.offset)?;
            }
            Expr::NumberLiteral(n) => self.out.push_str(&number(n.val)),
            Expr::StringLiteral(s) => {
                let _ = write!(self.out, "\"{}\"", escape_str(&s.val, self.prepared.bytes));
            }
            Expr::VectorSelector(vs) => {
                self.selector(vs)?;
                self.at_offset(&vs.at, &vs.offset)?;
            }
            Expr::MatrixSelector(ms) => {
                nonzero(&ms.range)?;
                self.selector(&ms.vs)?;
                self.out.push('[');
                self.out.push_str(&duration(&ms.range));
                self.out.push(']');
                self.at_offset(&ms.vs.at, &ms.vs.offset)?;
            }
            Expr::Call(c) => {
                // With one argument, Prometheus (3.x, experimental functions on) selects the
                // info series by the argument's `instance` and `job` alone, with no tenant
                // matcher: another project's data labels could join. The second argument is
                // a selector, and so carries the tenant like every other.
                if c.func.name == "info" && c.args.args.len() < 2 {
                    return Err(EnforceError::BadData(
                        "info() needs its data-label selector here (info(v, {label=~\".+\"})): with one argument \
                         Prometheus would select info series of every project"
                            .into(),
                    ));
                }
                self.out.push_str(c.func.name);
                self.out.push('(');
                for (i, arg) in c.args.args.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.expr(arg, d)?;
                }
                self.out.push(')');
            }
            Expr::Extension(_) => {
                return Err(EnforceError::BadData("unsupported expression".into()));
            }
        }
        Ok(())
    }

    /// An operand of a binary operator, bracketed only where precedence needs it (the
    /// parser keeps the user's own brackets as nodes, so this adds none to parsed input
    /// and the output nests no deeper than the input).
    fn operand(
        &mut self,
        e: &Expr,
        min_prec: u8,
        lhs_of_pow: bool,
        depth: usize,
    ) -> Result<(), EnforceError> {
        let needs = match e {
            Expr::Binary(b) => precedence(&b.op.to_string()) < min_prec,
            // `-a ^ b` would read as `-(a ^ b)`.
            Expr::Unary(_) => lhs_of_pow,
            _ => false,
        };
        if needs {
            self.parenthesized(e, depth)
        } else {
            self.expr(e, depth)
        }
    }

    fn parenthesized(&mut self, e: &Expr, depth: usize) -> Result<(), EnforceError> {
        self.out.push('(');
        self.expr(e, depth)?;
        self.out.push(')');
        Ok(())
    }

    /// The subquery's operand: anything but an atom is bracketed.
    fn wrapped(&mut self, e: &Expr, depth: usize) -> Result<(), EnforceError> {
        if matches!(e, Expr::Binary(_) | Expr::Unary(_)) {
            self.parenthesized(e, depth)
        } else {
            self.expr(e, depth)
        }
    }

    fn bin_modifier(&mut self, m: &BinModifier) {
        if m.return_bool {
            self.out.push_str(" bool");
        }
        match &m.matching {
            Some(LabelModifier::Include(ls)) => {
                self.out.push_str(" on ");
                self.labels(&ls.labels);
            }
            Some(LabelModifier::Exclude(ls)) => {
                self.out.push_str(" ignoring ");
                self.labels(&ls.labels);
            }
            None => {}
        }
        match &m.card {
            VectorMatchCardinality::ManyToOne(ls) => {
                self.out.push_str(" group_left ");
                self.labels(&ls.labels);
            }
            VectorMatchCardinality::OneToMany(ls) => {
                self.out.push_str(" group_right ");
                self.labels(&ls.labels);
            }
            VectorMatchCardinality::OneToOne | VectorMatchCardinality::ManyToMany => {}
        }
        let fill = &m.fill_values;
        match (fill.lhs, fill.rhs) {
            (Some(l), Some(r)) if l == r || (l.is_nan() && r.is_nan()) => {
                let _ = write!(self.out, " fill ({})", number(l));
            }
            (l, r) => {
                if let Some(l) = l {
                    let _ = write!(self.out, " fill_left ({})", number(l));
                }
                if let Some(r) = r {
                    let _ = write!(self.out, " fill_right ({})", number(r));
                }
            }
        }
    }

    fn labels(&mut self, labels: &[String]) {
        self.out.push('(');
        for (i, l) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.label_name(l);
        }
        self.out.push(')');
    }

    fn label_name(&mut self, name: &str) {
        let name = self.prepared.name(name);
        if is_label_name(name) {
            self.out.push_str(name);
        } else {
            let _ = write!(self.out, "\"{}\"", escape_str(name, self.prepared.bytes));
        }
    }

    /// `name{user matchers, tenant matcher}`; with `or` in the braces, the tenant
    /// matcher goes into every alternative.
    fn selector(&mut self, vs: &VectorSelector) -> Result<(), EnforceError> {
        let mut inner = Vec::new();
        if let Some(name) = &vs.name {
            let name = self.prepared.name(name);
            if is_metric_name(name) {
                self.out.push_str(name);
            } else {
                inner.push(Matcher::new(MatchOp::Equal, "__name__", name));
            }
        }
        self.out.push('{');
        let groups: Vec<&[Matcher]> = if vs.matchers.or_matchers.is_empty() {
            vec![&vs.matchers.matchers]
        } else {
            // The parser moves plain matchers into the first group when it sees `or`.
            let mut g: Vec<&[Matcher]> =
                vs.matchers.or_matchers.iter().map(Vec::as_slice).collect();
            if !vs.matchers.matchers.is_empty() {
                g.push(&vs.matchers.matchers);
            }
            g
        };
        for (gi, group) in groups.iter().enumerate() {
            if gi > 0 {
                self.out.push_str(" or ");
            }
            let mut has_tenant = false;
            for m in inner.iter().chain(group.iter()) {
                let on_tenant_label = self.prepared.name(&m.name) == self.tenant.label;
                if on_tenant_label {
                    if let (Op::Equal, value) = regex_mask::op(m, self.masked) {
                        if !self.tenant.values.iter().any(|v| v == value) {
                            return Err(EnforceError::Forbidden(format!(
                                "the query selects {}=\"{}\", which your token does not grant; \
                                 you may read only {}",
                                self.tenant.label,
                                escape_str(value, self.prepared.bytes),
                                self.tenant.values.join(", ")
                            )));
                        }
                    }
                }
                self.matcher(m);
                self.out.push(',');
                has_tenant |= on_tenant_label && self.tenant.is_tenant_value(m, self.masked);
            }
            if has_tenant {
                self.out.pop();
            } else {
                self.out.push_str(&self.tenant.printed);
            }
        }
        self.out.push('}');
        Ok(())
    }

    fn matcher(&mut self, m: &Matcher) {
        self.label_name(&m.name);
        let (op, value) = regex_mask::op(m, self.masked);
        let op = match op {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Re => "=~",
            Op::NotRe => "!~",
        };
        let _ = write!(
            self.out,
            "{op}\"{}\"",
            escape_str(value, self.prepared.bytes)
        );
    }

    fn at_offset(
        &mut self,
        at: &Option<AtModifier>,
        offset: &Option<Offset>,
    ) -> Result<(), EnforceError> {
        match at {
            Some(AtModifier::Start) => self.out.push_str(" @ start()"),
            Some(AtModifier::End) => self.out.push_str(" @ end()"),
            Some(AtModifier::At(t)) => {
                let negative = self
                    .prepared
                    .negative_at
                    .get(self.next_at)
                    .copied()
                    .ok_or_else(|| {
                        EnforceError::BadData(
                            "the query's @ modifiers could not be matched up; please report it"
                                .into(),
                        )
                    })?;
                self.next_at += 1;
                let ts = timestamp(*t)?;
                let sign = if negative { "-" } else { "" };
                let _ = write!(self.out, " @ {sign}{ts}");
            }
            None => {}
        }
        match offset {
            Some(Offset::Pos(d)) => {
                let _ = write!(self.out, " offset {}", duration(d));
            }
            Some(Offset::Neg(d)) => {
                let _ = write!(self.out, " offset -{}", duration(d));
            }
            None => {}
        }
        Ok(())
    }
}

const POW: u8 = 6;

/// PromQL's binary operator precedence, lowest first.
fn precedence(op: &str) -> u8 {
    match op.to_ascii_lowercase().as_str() {
        "or" => 1,
        "and" | "unless" => 2,
        "==" | "!=" | "<=" | "<" | ">=" | ">" => 3,
        "+" | "-" => 4,
        "*" | "/" | "%" | "atan2" => 5,
        "^" => POW,
        // Unknown operators bind loosest, so they are always bracketed.
        _ => 0,
    }
}

/// The parser lets `[0]` through; Prometheus refuses an empty range, and so must the printer.
fn nonzero(range: &Duration) -> Result<(), EnforceError> {
    if range.is_zero() {
        Err(EnforceError::BadData(
            "a range must be greater than 0".into(),
        ))
    } else {
        Ok(())
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Seconds with millisecond precision. The pre-pass hands the parser only times from
/// 1970 on (a minus is carried beside the tree), so a time before it is a bug, refused.
fn timestamp(t: SystemTime) -> Result<String, EnforceError> {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| {
            EnforceError::BadData(
                "an @ timestamp before 1970 reached the printer; please report it".into(),
            )
        })?
        .as_millis();
    Ok(format!("{}.{:03}", ms / 1000, ms % 1000))
}

/// A PromQL duration in whole units down to milliseconds (`1d2h`, `90s`, `1500ms`).
fn duration(d: &Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut s = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= size {
            let _ = write!(s, "{}{unit}", ms / size);
            ms %= size;
        }
    }
    s
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        // `{:?}` is the shortest text that reads back to the same f64 (`1e300`, `0.1`).
        format!("{v:?}")
    }
}

/// A double-quoted PromQL string body: escapes that every Prometheus version reads back.
pub fn escape(s: &str) -> String {
    escape_str(s, false)
}

/// [`escape`]; with `bytes`, the pre-pass's byte markers become the `\xNN` bytes they
/// stand for.
pub fn escape_str(s: &str, bytes: bool) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            c if bytes && marker_byte(c).is_some() => {
                let _ = write!(out, "\\x{:02x}", marker_byte(c).unwrap_or_default());
            }
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Escapes regex metacharacters so a value matches only itself (RE2 syntax).
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
