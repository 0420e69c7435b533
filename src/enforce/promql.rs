//! Tenant enforcement on the PromQL AST.
//!
//! The query is parsed with promql-parser, checked, and printed again by our own printer,
//! which appends the tenant matcher to every vector and matrix selector as it prints them.
//! The printer is ours because the parser's `Display` loses meaning in corner cases (it
//! prints negative `@` timestamps as 0 and drops plain matchers next to an `or` inside
//! braces); here every node is printed so that it re-parses to the same meaning.

use crate::config::is_label_name;
use crate::enforce::regex_mask::{self, Op};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{
    self, AtModifier, BinModifier, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector,
};
use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        Tenant { label: label.to_string(), values, printed, selector_key }
    }

    /// True when `m` is exactly the matcher this tenant adds.
    fn is_tenant_matcher(&self, m: &Matcher, masked: bool) -> bool {
        if m.name != self.label {
            return false;
        }
        match (regex_mask::op(m, masked), self.values.as_slice()) {
            ((Op::Equal, v), [only]) => v == only,
            ((Op::Re, v), values) if values.len() > 1 => {
                v == values.iter().map(|v| regex_escape(v)).collect::<Vec<_>>().join("|")
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

/// promql-parser's parser, with the functions it lacks registered, reading raw strings as
/// Prometheus does (see [`quote_raw_strings`]).
pub fn parse(query: &str) -> Result<Expr, String> {
    register_functions();
    parser::parse(&quote_raw_strings(query))
}

/// A backtick string has no escapes in PromQL (Go's raw string literal: `` `\d+` `` is the
/// three characters `\d+`), but promql-parser reads escapes in it and refuses `\d`. So each
/// raw string becomes the double-quoted string of the same characters before parsing; what
/// the parser then reads is what Prometheus reads. Double- and single-quoted strings and `#`
/// comments are skipped whole (a backtick in them starts nothing), and an unclosed backtick is
/// left for the parser to refuse.
pub fn quote_raw_strings(query: &str) -> std::borrow::Cow<'_, str> {
    if !query.contains('`') {
        return std::borrow::Cow::Borrowed(query);
    }
    let mut out = String::with_capacity(query.len() + 8);
    let mut chars = query.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' | '\'' => {
                // A quoted string, escapes and all, up to its closing quote (or the end).
                out.push(c);
                while let Some((_, d)) = chars.next() {
                    out.push(d);
                    if d == '\\' {
                        if let Some((_, e)) = chars.next() {
                            out.push(e);
                        }
                    } else if d == c {
                        break;
                    }
                }
            }
            '#' => {
                // A comment runs to the end of the line.
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '`' => match query[i + 1..].find('`') {
                Some(len) => {
                    out.push('"');
                    out.push_str(&escape(&query[i + 1..i + 1 + len]));
                    out.push('"');
                    while chars.next_if(|(j, _)| *j <= i + 1 + len).is_some() {}
                }
                None => out.push(c),
            },
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Rewrites `query` so that every selector carries the tenant matcher.
pub fn enforce(query: &str, tenant: &Tenant, max_depth: usize) -> Result<String, EnforceError> {
    enforce_with(query, tenant, max_depth, true)
}

/// [`enforce`] with the fast parse on or off; the tests check that both agree.
#[doc(hidden)]
pub fn enforce_with(query: &str, tenant: &Tenant, max_depth: usize, fast: bool) -> Result<String, EnforceError> {
    check_nesting(query, max_depth)?;
    let query = &*quote_raw_strings(query);
    // The fast parse, when it means the same (see regex_mask).
    if let Some(masked) = regex_mask::mask(query).filter(|_| fast) {
        if let Ok(expr) = parse(&masked) {
            if regex_mask::sound(&expr) {
                let mut p = Printer { tenant, out: String::with_capacity(query.len() + 32), max_depth, masked: true };
                p.expr(&expr, 0)?;
                return Ok(p.out);
            }
        }
    }
    let expr = parse(query).map_err(|e| {
        if e.contains("timestamp out of bounds for @ modifier") {
            EnforceError::BadData(NEGATIVE_AT.into())
        } else {
            EnforceError::BadData(format!("invalid PromQL: {e}"))
        }
    })?;
    let mut p = Printer { tenant, out: String::with_capacity(query.len() + 32), max_depth, masked: false };
    p.expr(&expr, 0)?;
    Ok(p.out)
}

/// Rewrites a series selector (`match[]`): it must be a vector selector.
pub fn enforce_selector(selector: &str, tenant: &Tenant, max_depth: usize) -> Result<String, EnforceError> {
    check_nesting(selector, max_depth)?;
    match parse(selector) {
        Ok(expr @ Expr::VectorSelector(_)) => {
            let mut p = Printer { tenant, out: String::with_capacity(selector.len() + 32), max_depth, masked: false };
            p.expr(&expr, 0)?;
            Ok(p.out)
        }
        Ok(_) => Err(EnforceError::BadData(format!("match[] must be a series selector, got {selector:?}"))),
        Err(e) => Err(EnforceError::BadData(format!("invalid match[] selector: {e}"))),
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
            if bytes.peek().is_some_and(|(_, n)| n.is_ascii_alphanumeric() || *n == b'_') {
                continue;
            }
            let w = query.as_bytes().get(word.clone()).unwrap_or_default();
            if braces == 0 && ["and", "or", "unless", "atan2"].iter().any(|k| w.eq_ignore_ascii_case(k.as_bytes())) {
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

struct Printer<'a> {
    tenant: &'a Tenant,
    out: String,
    max_depth: usize,
    /// The tree comes from the masked parse (see regex_mask).
    masked: bool,
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
                    Expr::Binary(b) if precedence(&b.op.to_string()) == POW => self.expr(&u.expr, d)?,
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
                let (lhs_min, rhs_min) = if prec == POW { (prec + 1, prec) } else { (prec, prec + 1) };
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
                let _ = write!(self.out, "\"{}\"", escape(&s.val));
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
    fn operand(&mut self, e: &Expr, min_prec: u8, lhs_of_pow: bool, depth: usize) -> Result<(), EnforceError> {
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
        if is_label_name(name) {
            self.out.push_str(name);
        } else {
            let _ = write!(self.out, "\"{}\"", escape(name));
        }
    }

    /// `name{user matchers, tenant matcher}`; with `or` in the braces, the tenant
    /// matcher goes into every alternative.
    fn selector(&mut self, vs: &VectorSelector) -> Result<(), EnforceError> {
        let mut inner = Vec::new();
        if let Some(name) = &vs.name {
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
            let mut g: Vec<&[Matcher]> = vs.matchers.or_matchers.iter().map(Vec::as_slice).collect();
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
                if m.name == self.tenant.label {
                    if let (Op::Equal, value) = regex_mask::op(m, self.masked) {
                        if !self.tenant.values.iter().any(|v| v == value) {
                            return Err(EnforceError::Forbidden(format!(
                                "the query selects {}={:?}, which your token does not grant; \
                                 you may read only {}",
                                m.name,
                                value,
                                self.tenant.values.join(", ")
                            )));
                        }
                    }
                }
                self.matcher(m);
                self.out.push(',');
                has_tenant |= self.tenant.is_tenant_matcher(m, self.masked);
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
        let _ = write!(self.out, "{op}\"{}\"", escape(value));
    }

    fn at_offset(&mut self, at: &Option<AtModifier>, offset: &Option<Offset>) -> Result<(), EnforceError> {
        match at {
            Some(AtModifier::Start) => self.out.push_str(" @ start()"),
            Some(AtModifier::End) => self.out.push_str(" @ end()"),
            Some(AtModifier::At(t)) => {
                let ts = timestamp(*t)?;
                let _ = write!(self.out, " @ {ts}");
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
        Err(EnforceError::BadData("a range must be greater than 0".into()))
    } else {
        Ok(())
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

const NEGATIVE_AT: &str = "`@` timestamps before 1970 are not supported (Wasm has no time before 1970)";

/// Seconds with millisecond precision. Inside Wasm, `SystemTime` cannot hold a time
/// before 1970, so the parser refuses negative `@` there; natively it parses them, and
/// they are refused here alike rather than printed as `@ 0` as promql-parser would.
fn timestamp(t: SystemTime) -> Result<String, EnforceError> {
    let ms = t.duration_since(UNIX_EPOCH).map_err(|_| EnforceError::BadData(NEGATIVE_AT.into()))?.as_millis();
    Ok(format!("{}.{:03}", ms / 1000, ms % 1000))
}

/// A PromQL duration in whole units down to milliseconds (`1d2h`, `90s`, `1500ms`).
fn duration(d: &Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    let mut s = String::new();
    for (unit, size) in [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
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
        if v > 0.0 { "Inf".into() } else { "-Inf".into() }
    } else {
        // `{:?}` is the shortest text that reads back to the same f64 (`1e300`, `0.1`).
        format!("{v:?}")
    }
}

/// A double-quoted PromQL string body: escapes that every Prometheus version reads back.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
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
        let cases: &[(&str, &str)] = include!("../../tests/cases/promql_table.rs");
        for (q, want) in cases {
            assert_eq!(rw(q), *want, "{q}");
        }
    }

    #[test]
    fn output_reparses_to_itself() {
        for q in ["a + b * c", "sum by (x) (rate(y[5m] @ 5 offset 1m))", r#"x{a=~"\\d+"}"#, "-a ^ 2"] {
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
        assert_eq!(rw("holt_winters(x[5m], 0.5, 0.5)"), r#"holt_winters(x{project_id="p1"}[5m], 0.5, 0.5)"#);
    }

    #[test]
    fn a_value_that_starts_with_a_mask_marker_stays_an_equality() {
        // The plain parse (the query holds a marker) must not read the user's value as masked.
        for q in ["up{job=\"\u{E000}.+\"}", "up{job!=\"\u{E001}x\"}", "up{job=\"\\ue000.+\"}"] {
            let out = rw(q);
            assert!(!out.contains("=~") && !out.contains("!~"), "{q} -> {out}");
            assert_eq!(rw(&out), out, "stable");
        }
    }

    #[test]
    fn info_needs_its_selector() {
        assert!(matches!(enforce("info(up)", &t(), 64), Err(EnforceError::BadData(m)) if m.contains("info()")));
        assert!(matches!(enforce("sum(info(rate(x[5m])))", &t(), 64), Err(EnforceError::BadData(_))));
        assert_eq!(
            rw(r#"info(up, {k8s_cluster_name=~".+"})"#),
            r#"info(up{project_id="p1"}, {k8s_cluster_name=~".+",project_id="p1"})"#
        );
    }

    #[test]
    fn other_project_is_forbidden() {
        let e = enforce(r#"up{project_id="p2"}"#, &t(), 64).unwrap_err();
        assert!(matches!(e, EnforceError::Forbidden(ref m) if m.contains("p2")), "{e:?}");
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

    #[test]
    fn negative_at_is_refused_clearly() {
        for q in ["x @ -100.5", "rate(x[5m] @ -1)", "x[5m:] @ -5"] {
            assert_eq!(enforce(q, &t(), 64), Err(EnforceError::BadData(NEGATIVE_AT.into())), "{q}");
        }
    }

    #[test]
    fn raw_strings_are_read_without_escapes() {
        let t = Tenant::new("project_id", vec!["p1".into()]);
        let cases = [
            (r"up{job=~`\d+|api`}", r#"up{job=~"\\d+|api",project_id="p1"}"#),
            (r#"label_replace(up, "x", "$1", "job", `(\w+)`)"#, r#"label_replace(up{project_id="p1"}, "x", "$1", "job", "(\\w+)")"#),
            (r#"up{a=`x"y`}"#, r#"up{a="x\"y",project_id="p1"}"#),
            ("up{a=`tab\there`}", r#"up{a="tab\there",project_id="p1"}"#),
            ("up{a=`two\nlines`}", r#"up{a="two\nlines",project_id="p1"}"#),
        ];
        for (q, want) in cases {
            for fast in [true, false] {
                assert_eq!(enforce_with(q, &t, 64, fast).unwrap(), want, "{q} (fast {fast})");
            }
            let out = enforce(q, &t, 64).unwrap();
            assert_eq!(enforce(&out, &t, 64).unwrap(), out, "idempotent: {q}");
        }
        // A backtick inside a quoted string or a comment starts nothing.
        assert_eq!(quote_raw_strings(r#"up{a="`x`"}"#), r#"up{a="`x`"}"#);
        assert_eq!(quote_raw_strings("up{a='`\\''} # it's `x`\n+ up"), "up{a='`\\''} # it's `x`\n+ up");
        assert_eq!(quote_raw_strings("a{b=`c`} + d{e=`f`}"), r#"a{b="c"} + d{e="f"}"#);
        assert!(enforce("up{a=`open}", &t, 64).is_err(), "an unclosed raw string stays an error");
    }

    #[test]
    fn parse_errors_are_bad_data() {
        for q in ["sum(", "", "up{", "foo bar", "x:[ 0]", "x[0s]", "x[5m:0s]"] {
            assert!(matches!(enforce(q, &t(), 64), Err(EnforceError::BadData(_))), "{q}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
        assert!(matches!(enforce(&deep, &t(), 64), Err(EnforceError::BadData(_))));
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
        let many = (0..100).map(|i| format!("l{i}=\"v\"")).collect::<Vec<_>>().join(",");
        assert!(enforce(&format!("up{{{many}}}"), &t(), 64).is_ok());
        for op in ["+", "==", "!=", "and", "or", ">="] {
            let chain = vec!["up"; 300].join(&format!(" {op} "));
            assert!(matches!(enforce(&chain, &t(), 64), Err(EnforceError::BadData(_))), "{op}");
        }
        assert!(enforce(&vec!["up"; 100].join(" + "), &t(), 64).is_ok());
    }

    #[test]
    fn several_values_use_an_anchored_escaped_regex() {
        let t = Tenant::new("project_id", vec!["a.b".into(), "c".into()]);
        assert_eq!(enforce("up", &t, 64).unwrap(), r#"up{project_id=~"a\\.b|c"}"#);
    }

    #[test]
    fn lookalike_labels_do_not_count_as_the_tenant_matcher() {
        assert_eq!(rw(r#"up{xproject_id="p1"}"#), r#"up{xproject_id="p1",project_id="p1"}"#);
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
        assert_eq!(enforce_selector(r#"{job="x"}"#, &t(), 64).unwrap(), r#"{job="x",project_id="p1"}"#);
        assert!(enforce_selector("rate(x[5m])", &t(), 64).is_err());
    }
}
