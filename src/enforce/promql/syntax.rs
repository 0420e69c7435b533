//! Why a query is not valid PromQL, in Prometheus's words and at Prometheus's position.
//!
//! promql-parser decides whether a query is valid; when it refuses one, its message is
//! terse ("invalid promql query") and carries no position. Users debug their panels from
//! these messages, so this module finds the error again the way Prometheus finds it and
//! words it as Prometheus does (`1:17: parse error: unexpected identifier "x"`):
//! - the tokens and lexer errors are [`super::lex`]'s;
//! - a recursive-descent reading of PromQL's grammar reports the first token that cannot
//!   continue the query, named as Prometheus names tokens, in the context that Prometheus's
//!   grammar gives (the innermost label matcher, grouping, `offset`, `@`, range or
//!   aggregation that is still open);
//! - errors that Prometheus raises while it builds the tree (an unknown function, a range on
//!   something other than a selector, a bad regex, …) are raised at the same points, and the
//!   type checks that it runs on a tree without syntax errors are run on ours.
//!
//! Only the first error is reported, as Prometheus reports only its first. Nothing here
//! accepts or refuses a query: it only explains a refusal.

use super::lex::{self, go_quote, Kind, LexError, Token};

/// The first error in `query`, formatted as Prometheus formats parse errors, or `Ok` when
/// none is found.
pub fn check(query: &str) -> Result<(), String> {
    let (tokens, lex_error) = lex::tokens(query);
    let mut p = Parser {
        src: query,
        tokens,
        lex_error,
        i: 0,
        error: None,
        aggregations: 0,
    };
    let outcome = p.start();
    if let (Ok(node), None) = (&outcome, &p.error) {
        let _ = p.check_types(node);
    }
    match p.error {
        Some((pos, msg)) => Err(format!("{}: parse error: {msg}", position(query, pos))),
        None => Ok(()),
    }
}

/// [`check`]'s message, for a query known to be invalid.
pub fn explain(query: &str) -> String {
    match check(query) {
        Err(e) => e,
        Ok(()) => "invalid PromQL".into(),
    }
}

/// `line:column`, both from 1; the column counts bytes, as Prometheus's does.
fn position(query: &str, pos: usize) -> String {
    let before = query.get(..pos).unwrap_or(query);
    let line = 1 + before.matches('\n').count();
    let col = pos - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{col}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Scalar,
    Vector,
    Matrix,
    String,
}

impl Type {
    /// Prometheus's `DocumentedType`.
    fn documented(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "instant vector",
            Type::Matrix => "range vector",
            Type::String => "string",
        }
    }

    /// Prometheus's `ValueType` name.
    fn name(self) -> &'static str {
        match self {
            Type::Scalar => "scalar",
            Type::Vector => "vector",
            Type::Matrix => "matrix",
            Type::String => "string",
        }
    }

    fn of(c: u8) -> Type {
        match c {
            b'S' => Type::Scalar,
            b'M' => Type::Matrix,
            b'T' => Type::String,
            _ => Type::Vector,
        }
    }
}

#[derive(Debug)]
enum Shape {
    Number,
    Str,
    /// `name`: the metric name outside braces, `inner_name`: the first `__name__` matcher's value.
    Selector {
        name: Option<String>,
        inner_name: Option<String>,
        matchers_match_empty: bool,
        offset: bool,
        at: bool,
    },
    Matrix(Box<Node>),
    Subquery {
        inner: Box<Node>,
        offset: bool,
        at: bool,
    },
    Paren(Box<Node>),
    Unary(Box<Node>),
    Binary {
        op: String,
        bool_: bool,
        lhs: Box<Node>,
        rhs: Box<Node>,
        on: Vec<String>,
        include: Vec<String>,
        matching: bool,
        card: Card,
    },
    Call {
        name: String,
        args: Vec<Node>,
    },
    Aggregate {
        op: String,
        param: Option<Box<Node>>,
        expr: Box<Node>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    OneToOne,
    ManyToOne,
    OneToMany,
}

#[derive(Debug)]
struct Node {
    shape: Shape,
    pos: usize,
    end: usize,
}

/// Function signatures: argument types (`V`ector, `M`atrix, `S`calar, s`T`ring), how many
/// trailing arguments are optional (-1: any number), and the result type.
const FUNCTIONS: &[(&str, &str, i32, u8)] = &[
    ("abs", "V", 0, b'V'),
    ("absent", "V", 0, b'V'),
    ("absent_over_time", "M", 0, b'V'),
    ("acos", "V", 0, b'V'),
    ("acosh", "V", 0, b'V'),
    ("asin", "V", 0, b'V'),
    ("asinh", "V", 0, b'V'),
    ("atan", "V", 0, b'V'),
    ("atanh", "V", 0, b'V'),
    ("avg_over_time", "M", 0, b'V'),
    ("ceil", "V", 0, b'V'),
    ("changes", "M", 0, b'V'),
    ("clamp", "VSS", 0, b'V'),
    ("clamp_max", "VS", 0, b'V'),
    ("clamp_min", "VS", 0, b'V'),
    ("cos", "V", 0, b'V'),
    ("cosh", "V", 0, b'V'),
    ("count_over_time", "M", 0, b'V'),
    ("days_in_month", "V", 1, b'V'),
    ("day_of_month", "V", 1, b'V'),
    ("day_of_week", "V", 1, b'V'),
    ("day_of_year", "V", 1, b'V'),
    ("deg", "V", 0, b'V'),
    ("delta", "M", 0, b'V'),
    ("deriv", "M", 0, b'V'),
    ("double_exponential_smoothing", "MSS", 0, b'V'),
    ("exp", "V", 0, b'V'),
    ("first_over_time", "M", 0, b'V'),
    ("floor", "V", 0, b'V'),
    ("histogram_avg", "V", 0, b'V'),
    ("histogram_count", "V", 0, b'V'),
    ("histogram_fraction", "SSV", 0, b'V'),
    ("histogram_quantile", "SV", 0, b'V'),
    ("histogram_quantiles", "VSSS", 9, b'V'),
    ("histogram_stddev", "V", 0, b'V'),
    ("histogram_stdvar", "V", 0, b'V'),
    ("histogram_sum", "V", 0, b'V'),
    ("holt_winters", "MSS", 0, b'V'),
    ("hour", "V", 1, b'V'),
    ("idelta", "M", 0, b'V'),
    ("increase", "M", 0, b'V'),
    ("info", "VV", 1, b'V'),
    ("integral", "MS", 1, b'V'),
    ("irate", "M", 0, b'V'),
    ("label_join", "VTTT", -1, b'V'),
    ("label_replace", "VTTTT", 0, b'V'),
    ("last_over_time", "M", 0, b'V'),
    ("ln", "V", 0, b'V'),
    ("log10", "V", 0, b'V'),
    ("log2", "V", 0, b'V'),
    ("mad_over_time", "M", 0, b'V'),
    ("max_over_time", "M", 0, b'V'),
    ("min_over_time", "M", 0, b'V'),
    ("minute", "V", 1, b'V'),
    ("month", "V", 1, b'V'),
    ("pi", "", 0, b'S'),
    ("predict_linear", "MS", 0, b'V'),
    ("present_over_time", "M", 0, b'V'),
    ("quantile_over_time", "SM", 0, b'V'),
    ("rad", "V", 0, b'V'),
    ("rate", "M", 0, b'V'),
    ("resets", "M", 0, b'V'),
    ("round", "VS", 1, b'V'),
    ("scalar", "V", 0, b'S'),
    ("sgn", "V", 0, b'V'),
    ("sin", "V", 0, b'V'),
    ("sinh", "V", 0, b'V'),
    ("sort", "V", 0, b'V'),
    ("sort_by_label", "VT", -1, b'V'),
    ("sort_by_label_desc", "VT", -1, b'V'),
    ("sort_desc", "V", 0, b'V'),
    ("sqrt", "V", 0, b'V'),
    ("stddev_over_time", "M", 0, b'V'),
    ("stdvar_over_time", "M", 0, b'V'),
    ("sum_over_time", "M", 0, b'V'),
    ("tan", "V", 0, b'V'),
    ("tanh", "V", 0, b'V'),
    ("time", "", 0, b'S'),
    ("timestamp", "V", 0, b'V'),
    ("ts_of_first_over_time", "M", 0, b'V'),
    ("ts_of_last_over_time", "M", 0, b'V'),
    ("ts_of_max_over_time", "M", 0, b'V'),
    ("ts_of_min_over_time", "M", 0, b'V'),
    ("vector", "S", 0, b'V'),
    ("year", "V", 1, b'V'),
];

fn function(name: &str) -> Option<(&'static str, i32, Type)> {
    FUNCTIONS
        .iter()
        .find(|f| f.0 == name)
        .map(|f| (f.1, f.2, Type::of(f.3)))
}

/// The first error is recorded; everything after it is moot.
type Step<T> = Result<T, ()>;

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    lex_error: Option<LexError>,
    i: usize,
    error: Option<(usize, String)>,
    /// Open aggregations: an error with no closer context is "in aggregation".
    aggregations: usize,
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Binary operator precedence, lowest first; 0: not a binary operator.
fn precedence(kind: Kind, text: &str) -> u8 {
    if kind != Kind::Op {
        return 0;
    }
    match lower(text).as_str() {
        "or" => 1,
        "and" | "unless" => 2,
        "==" | "!=" | "<=" | "<" | ">=" | ">" => 3,
        "+" | "-" => 4,
        "*" | "/" | "%" | "atan2" => 5,
        "^" => 6,
        _ => 0,
    }
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | "<=" | "<" | ">=" | ">")
}

fn is_set_operator(op: &str) -> bool {
    matches!(op, "and" | "or" | "unless")
}

impl Parser<'_> {
    /// The next token; reading past the last good token records the lexer's error.
    fn peek(&mut self) -> Step<Token> {
        if let Some(t) = self.tokens.get(self.i) {
            return Ok(*t);
        }
        match self.lex_error.take() {
            Some(e) => self.fail(e.pos, e.msg),
            None => Err(()),
        }
    }

    fn bump(&mut self) -> Step<Token> {
        let t = self.peek()?;
        self.i += 1;
        Ok(t)
    }

    fn text(&self, t: Token) -> &str {
        t.text(self.src)
    }

    fn fail<T>(&mut self, pos: usize, msg: String) -> Step<T> {
        if self.error.is_none() {
            self.error = Some((pos, msg));
        }
        Err(())
    }

    /// Prometheus's `unexpected`: the token, the open construct, what it expected.
    fn unexpected<T>(&mut self, t: Token, context: &str, expected: &str) -> Step<T> {
        let mut msg = format!("unexpected {}", t.describe(self.src));
        if !context.is_empty() {
            msg.push_str(" in ");
            msg.push_str(context);
        }
        if !expected.is_empty() {
            msg.push_str(", expected ");
            msg.push_str(expected);
        }
        self.fail(t.pos, msg)
    }

    /// An unexpected token that no closer construct explains.
    fn unexpected_here<T>(&mut self, t: Token) -> Step<T> {
        let context = if self.aggregations > 0 {
            "aggregation"
        } else {
            ""
        };
        self.unexpected(t, context, "")
    }

    fn start(&mut self) -> Step<Node> {
        let first = self.peek()?;
        if first.kind == Kind::Eof {
            return self.fail(0, "no expression found in input".into());
        }
        let node = self.expr(0)?;
        let t = self.peek()?;
        if t.kind != Kind::Eof {
            return self.unexpected_here(t);
        }
        Ok(node)
    }

    /// An expression whose binary operators bind tighter than `min`.
    fn expr(&mut self, min: u8) -> Step<Node> {
        let mut lhs = self.unary()?;
        loop {
            let t = self.peek()?;
            let text = lower(self.text(t));
            let prec = precedence(t.kind, &text);
            if prec == 0 || prec <= min {
                return Ok(lhs);
            }
            self.bump()?;
            let (bool_, on, include, matching, card) = self.bin_modifier()?;
            // `^` is right-associative.
            let rhs = self.expr(if prec == 6 { prec - 1 } else { prec })?;
            let (pos, end) = (lhs.pos, rhs.end);
            lhs = Node {
                shape: Shape::Binary {
                    op: text,
                    bool_,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                    on,
                    include,
                    matching,
                    card,
                },
                pos,
                end,
            };
        }
    }

    #[allow(clippy::type_complexity)]
    fn bin_modifier(&mut self) -> Step<(bool, Vec<String>, Vec<String>, bool, Card)> {
        let mut bool_ = false;
        let (mut on, mut include, mut matching, mut card) =
            (Vec::new(), Vec::new(), false, Card::OneToOne);
        let t = self.peek()?;
        if t.kind == Kind::Keyword && lower(self.text(t)) == "bool" {
            self.bump()?;
            bool_ = true;
        }
        let t = self.peek()?;
        let word = lower(self.text(t));
        if t.kind == Kind::Keyword && (word == "on" || word == "ignoring") {
            self.bump()?;
            on = self.grouping()?;
            matching = word == "on";
            let t = self.peek()?;
            let word = lower(self.text(t));
            if t.kind == Kind::Keyword && (word == "group_left" || word == "group_right") {
                self.bump()?;
                card = if word == "group_left" {
                    Card::ManyToOne
                } else {
                    Card::OneToMany
                };
                if self.peek()?.kind == Kind::LeftParen {
                    include = self.grouping()?;
                }
            }
        }
        Ok((bool_, on, include, matching, card))
    }

    /// `(label, …)` after `by`, `without`, `on`, `ignoring`, `group_left`, `group_right`.
    fn grouping(&mut self) -> Step<Vec<String>> {
        let t = self.bump()?;
        if t.kind != Kind::LeftParen {
            return self.unexpected(t, "grouping opts", "\"(\"");
        }
        let mut labels = Vec::new();
        let t = self.peek()?;
        if t.kind == Kind::RightParen {
            self.bump()?;
            return Ok(labels);
        }
        loop {
            let t = self.bump()?;
            if !self.maybe_label(t) {
                return self.unexpected(t, "grouping opts", "label");
            }
            if self.text(t).contains(':') {
                // A metric identifier is read as a label, then refused.
                return self.unexpected(t, "grouping opts", "label");
            }
            labels.push(self.text(t).to_string());
            let t = self.bump()?;
            match t.kind {
                Kind::RightParen => return Ok(labels),
                Kind::Comma => {
                    if self.peek()?.kind == Kind::RightParen {
                        self.bump()?;
                        return Ok(labels);
                    }
                }
                _ => return self.unexpected(t, "grouping opts", "\",\" or \")\""),
            }
        }
    }

    /// A token that may name a label in a grouping (keywords included).
    fn maybe_label(&self, t: Token) -> bool {
        match t.kind {
            Kind::Identifier | Kind::MetricIdentifier | Kind::Aggregator | Kind::Preprocessor => {
                true
            }
            Kind::Keyword => lower(self.text(t)) != "without",
            Kind::Op => matches!(
                lower(self.text(t)).as_str(),
                "and" | "or" | "unless" | "atan2"
            ),
            _ => false,
        }
    }

    /// A token that may name a metric (keywords included).
    fn metric_identifier(&self, t: Token) -> bool {
        match t.kind {
            Kind::Identifier | Kind::MetricIdentifier | Kind::Aggregator | Kind::Preprocessor => {
                true
            }
            Kind::Keyword => matches!(lower(self.text(t)).as_str(), "by" | "offset" | "without"),
            Kind::Op => matches!(lower(self.text(t)).as_str(), "and" | "or" | "unless"),
            _ => false,
        }
    }

    fn starts_expression(&self, t: Token) -> bool {
        matches!(
            t.kind,
            Kind::Number | Kind::Str | Kind::LeftParen | Kind::LeftBrace
        ) || (t.kind == Kind::Op && matches!(self.text(t), "+" | "-"))
            || self.metric_identifier(t)
    }

    fn unary(&mut self) -> Step<Node> {
        let t = self.peek()?;
        if t.kind == Kind::Op && matches!(self.text(t), "+" | "-") {
            self.bump()?;
            // Unary operators bind as tightly as `*`: only `^` and postfix bind tighter.
            let inner = self.expr(5)?;
            let end = inner.end;
            if matches!(inner.shape, Shape::Number) {
                return Ok(Node {
                    shape: Shape::Number,
                    pos: t.pos,
                    end,
                });
            }
            return Ok(Node {
                shape: Shape::Unary(Box::new(inner)),
                pos: t.pos,
                end,
            });
        }
        let primary = self.primary()?;
        self.postfix(primary)
    }

    fn primary(&mut self) -> Step<Node> {
        let t = self.bump()?;
        match t.kind {
            Kind::Number => {
                self.number(t)?;
                Ok(Node {
                    shape: Shape::Number,
                    pos: t.pos,
                    end: t.end,
                })
            }
            Kind::Str => Ok(Node {
                shape: Shape::Str,
                pos: t.pos,
                end: t.end,
            }),
            Kind::LeftParen => {
                let inner = self.expr(0)?;
                let close = self.bump()?;
                if close.kind != Kind::RightParen {
                    return self.unexpected_here(close);
                }
                Ok(Node {
                    shape: Shape::Paren(Box::new(inner)),
                    pos: t.pos,
                    end: close.end,
                })
            }
            Kind::LeftBrace => {
                let (empty, inner_name, end) = self.matchers()?;
                Ok(Node {
                    shape: Shape::Selector {
                        name: None,
                        inner_name,
                        matchers_match_empty: empty,
                        offset: false,
                        at: false,
                    },
                    pos: t.pos,
                    end,
                })
            }
            Kind::Aggregator
                if matches!(self.peek()?.kind, Kind::LeftParen)
                    || self.is_grouping_keyword()? =>
            {
                self.aggregation(t)
            }
            Kind::Identifier if self.peek()?.kind == Kind::LeftParen => self.call(t),
            _ if self.metric_identifier(t) => {
                let (mut end, mut inner_name) = (t.end, None);
                if self.peek()?.kind == Kind::LeftBrace {
                    self.bump()?;
                    (_, inner_name, end) = self.matchers()?;
                }
                let name = Some(self.text(t).to_string());
                Ok(Node {
                    shape: Shape::Selector {
                        name,
                        inner_name,
                        matchers_match_empty: false,
                        offset: false,
                        at: false,
                    },
                    pos: t.pos,
                    end,
                })
            }
            _ => self.unexpected_here(t),
        }
    }

    fn is_grouping_keyword(&mut self) -> Step<bool> {
        let t = self.peek()?;
        Ok(t.kind == Kind::Keyword && matches!(lower(self.text(t)).as_str(), "by" | "without"))
    }

    fn number(&mut self, t: Token) -> Step<()> {
        let text = lower(self.text(t));
        let ok = text == "inf"
            || text == "nan"
            || text.strip_prefix("0x").map_or_else(
                || text.parse::<f64>().is_ok(),
                |h| i64::from_str_radix(h, 16).is_ok(),
            );
        if ok {
            Ok(())
        } else {
            let msg = format!(
                "error parsing number: strconv.ParseFloat: parsing {}: invalid syntax",
                go_quote(self.text(t))
            );
            self.fail(t.pos, msg)
        }
    }

    /// Label matchers after `{`: whether all of them match the empty string, the first
    /// `__name__` matcher's value, and the end.
    fn matchers(&mut self) -> Step<(bool, Option<String>, usize)> {
        let mut all_empty = true;
        let mut inner_name = None;
        loop {
            let t = self.bump()?;
            if t.kind == Kind::RightBrace {
                return Ok((all_empty, inner_name, t.end));
            }
            if t.kind != Kind::Identifier {
                return self.unexpected(t, "label matching", "identifier or \"}\"");
            }
            let op = self.bump()?;
            let is_op = matches!(op.kind, Kind::Eql | Kind::EqlRegex | Kind::NeqRegex)
                || (op.kind == Kind::Op && self.text(op) == "!=");
            if !is_op {
                return self.unexpected(op, "label matching", "label matching operator");
            }
            let value = self.bump()?;
            if value.kind != Kind::Str {
                return self.unexpected(value, "label matching", "string");
            }
            all_empty &= self.matcher(t, op, value)?;
            if inner_name.is_none() && self.text(t) == "__name__" {
                inner_name =
                    Some(String::from_utf8_lossy(&lex::unquote(self.text(value))).into_owned());
            }
            let t = self.bump()?;
            match t.kind {
                Kind::RightBrace => return Ok((all_empty, inner_name, t.end)),
                Kind::Comma => {
                    if self.peek()?.kind == Kind::RightBrace {
                        let close = self.bump()?;
                        return Ok((all_empty, inner_name, close.end));
                    }
                }
                _ => return self.unexpected(t, "label matching", "\",\" or \"}\""),
            }
        }
    }

    /// One matcher: its regex compiled as Prometheus would; whether it matches "".
    fn matcher(&mut self, name: Token, op: Token, value: Token) -> Step<bool> {
        let bytes = lex::unquote(self.text(value));
        let v = match String::from_utf8(bytes) {
            Ok(v) => v,
            Err(e) => {
                // Not UTF-8: an equality matches no series, and Go refuses the regex, quoting
                // it from the first bad byte (which JSON shows as U+FFFD).
                if matches!(op.kind, Kind::EqlRegex | Kind::NeqRegex) {
                    let bytes = e.into_bytes();
                    let mut anchored = b"^(?:".to_vec();
                    anchored.extend_from_slice(&bytes);
                    anchored.extend_from_slice(b")$");
                    let bad = 4 + std::str::from_utf8(&bytes)
                        .map_or_else(|e| e.valid_up_to(), |s| s.len());
                    let rest = String::from_utf8_lossy(anchored.get(bad..).unwrap_or_default())
                        .into_owned();
                    return self.fail(
                        name.pos,
                        format!("error parsing regexp: invalid UTF-8: `{rest}`"),
                    );
                }
                return Ok(op.kind != Kind::Eql);
            }
        };
        match op.kind {
            Kind::Eql => Ok(v.is_empty()),
            Kind::EqlRegex | Kind::NeqRegex => {
                let anchored = format!("^(?:{v})$");
                if let Some(msg) = go_regex_error(&anchored) {
                    return self.fail(name.pos, msg);
                }
                let matches_empty = regex::Regex::new(&anchored).is_ok_and(|re| re.is_match(""));
                Ok(matches_empty == (op.kind == Kind::EqlRegex))
            }
            _ => Ok(!v.is_empty()),
        }
    }

    fn call(&mut self, name: Token) -> Step<Node> {
        let args = self.call_body()?;
        let fname = self.text(name).to_string();
        if function(&fname).is_none() {
            return self.fail(
                name.pos,
                format!("unknown function with name {}", go_quote(&fname)),
            );
        }
        let end = self
            .tokens
            .get(self.i.saturating_sub(1))
            .map_or(name.end, |t| t.end);
        Ok(Node {
            shape: Shape::Call { name: fname, args },
            pos: name.pos,
            end,
        })
    }

    /// `( args )` of a call or an aggregation.
    fn call_body(&mut self) -> Step<Vec<Node>> {
        let open = self.bump()?;
        if open.kind != Kind::LeftParen {
            return self.unexpected_here(open);
        }
        let mut args = Vec::new();
        if self.peek()?.kind == Kind::RightParen {
            self.bump()?;
            return Ok(args);
        }
        loop {
            args.push(self.expr(0)?);
            let t = self.bump()?;
            match t.kind {
                Kind::RightParen => return Ok(args),
                Kind::Comma => {
                    // Whatever cannot start an argument makes the comma a trailing one.
                    let next = self.peek()?;
                    if !self.starts_expression(next) {
                        return self.fail(
                            t.pos,
                            "trailing commas not allowed in function call args".into(),
                        );
                    }
                }
                _ => return self.unexpected_here(t),
            }
        }
    }

    fn aggregation(&mut self, op: Token) -> Step<Node> {
        self.aggregations += 1;
        let outcome = self.aggregation_inner(op);
        self.aggregations -= 1;
        outcome
    }

    fn aggregation_inner(&mut self, op: Token) -> Step<Node> {
        let modified = self.is_grouping_keyword()?;
        if modified {
            self.bump()?;
            self.grouping()?;
            if self.peek()?.kind != Kind::LeftParen {
                let t = self.peek()?;
                return self.unexpected(t, "aggregation", "");
            }
        }
        let mut args = self.call_body()?;
        if !modified && self.is_grouping_keyword()? {
            self.bump()?;
            self.grouping()?;
        }
        let name = lower(self.text(op));
        let end = self
            .tokens
            .get(self.i.saturating_sub(1))
            .map_or(op.end, |t| t.end);
        if args.is_empty() {
            return self.fail(
                op.pos,
                "no arguments for aggregate expression provided".into(),
            );
        }
        let wanted = if matches!(
            name.as_str(),
            "topk" | "bottomk" | "count_values" | "quantile"
        ) {
            2
        } else {
            1
        };
        if args.len() != wanted {
            let msg = format!(
                "wrong number of arguments for aggregate expression provided, expected {wanted}, got {}",
                args.len()
            );
            return self.fail(op.pos, msg);
        }
        let expr = args.pop().ok_or(())?;
        let param = args.pop().map(Box::new);
        Ok(Node {
            shape: Shape::Aggregate {
                op: name,
                param,
                expr: Box::new(expr),
            },
            pos: op.pos,
            end,
        })
    }

    /// `offset`, `@` and `[…]` after an expression.
    fn postfix(&mut self, mut node: Node) -> Step<Node> {
        loop {
            let t = self.peek()?;
            match t.kind {
                Kind::Keyword if lower(self.text(t)) == "offset" => {
                    self.bump()?;
                    let mut d = self.bump()?;
                    if d.kind == Kind::Op && self.text(d) == "-" {
                        d = self.bump()?;
                    }
                    if d.kind != Kind::Duration {
                        return self.unexpected(d, "offset", "duration");
                    }
                    self.duration(d)?;
                    node = self.modify(node, d.end, true)?;
                }
                Kind::At => {
                    self.bump()?;
                    let mut v = self.bump()?;
                    let mut negative = false;
                    if v.kind == Kind::Op && matches!(self.text(v), "+" | "-") {
                        negative = self.text(v) == "-";
                        v = self.bump()?;
                        if v.kind != Kind::Number {
                            return self.unexpected(v, "@", "timestamp");
                        }
                    }
                    match v.kind {
                        Kind::Number => {
                            self.number(v)?;
                            let text = lower(self.text(v));
                            let value = text.parse::<f64>().unwrap_or(f64::NAN);
                            if text == "inf"
                                || text == "nan"
                                || !value.is_finite()
                                || value.abs() >= 9.223372036854776e18
                            {
                                let shown = match (text.as_str(), negative) {
                                    ("nan", _) => "NaN".to_string(),
                                    ("inf", false) => "+Inf".to_string(),
                                    ("inf", true) => "-Inf".to_string(),
                                    _ => format!("{}{value:.6}", if negative { "-" } else { "" }),
                                };
                                return self.fail(
                                    node.pos,
                                    format!("timestamp out of bounds for @ modifier: {shown}"),
                                );
                            }
                            node = self.modify(node, v.end, false)?;
                        }
                        Kind::Preprocessor => {
                            let open = self.bump()?;
                            if open.kind != Kind::LeftParen {
                                return self.unexpected(open, "@", "timestamp");
                            }
                            let close = self.bump()?;
                            if close.kind != Kind::RightParen {
                                return self.unexpected(close, "@", "timestamp");
                            }
                            node = self.modify(node, close.end, false)?;
                        }
                        _ => return self.unexpected(v, "@", "timestamp"),
                    }
                }
                Kind::LeftBracket => {
                    self.bump()?;
                    node = self.range(node, t)?;
                }
                _ => return Ok(node),
            }
        }
    }

    /// `[range]` or `[range:step]` after `node`; `open` is the `[`.
    fn range(&mut self, node: Node, open: Token) -> Step<Node> {
        let d = self.bump()?;
        if d.kind != Kind::Duration {
            return self.unexpected(d, "subquery selector", "duration");
        }
        self.duration(d)?;
        let t = self.bump()?;
        match t.kind {
            Kind::RightBracket => {
                let why = match &node.shape {
                    Shape::Selector { offset: true, .. } => {
                        Some("no offset modifiers allowed before range")
                    }
                    Shape::Selector { at: true, .. } => Some("no @ modifiers allowed before range"),
                    Shape::Selector { .. } => None,
                    _ => Some("ranges only allowed for vector selectors"),
                };
                if let Some(why) = why {
                    return self.fail(open.pos, why.into());
                }
                let pos = node.pos;
                Ok(Node {
                    shape: Shape::Matrix(Box::new(node)),
                    pos,
                    end: t.end,
                })
            }
            Kind::Colon => {
                let mut t = self.bump()?;
                if t.kind == Kind::Duration {
                    self.duration(t)?;
                    t = self.bump()?;
                    if t.kind != Kind::RightBracket {
                        return self.unexpected(t, "subquery selector", "\"]\"");
                    }
                } else if t.kind != Kind::RightBracket {
                    return self.unexpected(t, "subquery selector", "duration or \"]\"");
                }
                let pos = node.pos;
                Ok(Node {
                    shape: Shape::Subquery {
                        inner: Box::new(node),
                        offset: false,
                        at: false,
                    },
                    pos,
                    end: t.end,
                })
            }
            _ => self.unexpected(t, "subquery or range", "\":\" or \"]\""),
        }
    }

    /// An `offset` or `@` on `node`: only selectors, ranges and subqueries take one, once.
    fn modify(&mut self, mut node: Node, end: usize, offset: bool) -> Step<Node> {
        let pos = node.pos;
        let flags = match &mut node.shape {
            Shape::Selector {
                offset: o, at: a, ..
            }
            | Shape::Subquery {
                offset: o, at: a, ..
            } => Some((o, a)),
            Shape::Matrix(inner) => match &mut inner.shape {
                Shape::Selector {
                    offset: o, at: a, ..
                } => Some((o, a)),
                _ => None,
            },
            _ => None,
        };
        let Some((o, a)) = flags else {
            let what = if offset {
                "offset modifier"
            } else {
                "@ modifier"
            };
            let msg = format!("{what} must be preceded by an instant vector selector or range vector selector or a subquery");
            return self.fail(pos, msg);
        };
        let flag = if offset { o } else { a };
        if *flag {
            let msg = if offset {
                "offset may not be set multiple times"
            } else {
                "@ <timestamp> may not be set multiple times"
            };
            return self.fail(pos, msg.into());
        }
        *flag = true;
        node.end = end;
        Ok(node)
    }

    /// A duration as Prometheus's `model.ParseDuration` reads it: units from the largest
    /// down, each once, and more than zero in all.
    fn duration(&mut self, t: Token) -> Step<()> {
        let text = self.text(t).to_string();
        let units = ["y", "w", "d", "h", "m", "s", "ms"];
        let mut rest = text.as_str();
        let mut next_unit = 0;
        let mut total: u128 = 0;
        let mut valid = !rest.is_empty();
        while valid && !rest.is_empty() {
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            let (num, tail) = rest.split_at(digits);
            let unit_len = if tail.starts_with("ms") {
                2
            } else {
                1.min(tail.len())
            };
            let (unit, tail) = tail.split_at(unit_len);
            match units.iter().skip(next_unit).position(|u| *u == unit) {
                Some(k) if !num.is_empty() => {
                    next_unit += k + 1;
                    let n: u128 = num.parse().unwrap_or(u128::MAX);
                    total = total.saturating_add(n);
                }
                _ => valid = false,
            }
            rest = tail;
        }
        if !valid {
            return self.fail(
                t.pos,
                format!("not a valid duration string: {}", go_quote(&text)),
            );
        }
        if total == 0 {
            return self.fail(t.pos, "duration must be greater than 0".into());
        }
        Ok(())
    }

    /// Prometheus's `checkAST`, on a tree without syntax errors.
    fn check_types(&mut self, n: &Node) -> Step<Type> {
        match &n.shape {
            Shape::Number => Ok(Type::Scalar),
            Shape::Str => Ok(Type::String),
            Shape::Selector {
                name,
                inner_name,
                matchers_match_empty,
                ..
            } => {
                if let (Some(name), Some(inner)) = (name, inner_name) {
                    let msg = format!(
                        "metric name must not be set twice: {} or {}",
                        go_quote(name),
                        go_quote(inner)
                    );
                    return self.fail(n.pos, msg);
                }
                if name.is_none() && *matchers_match_empty {
                    return self.fail(
                        n.pos,
                        "vector selector must contain at least one non-empty matcher".into(),
                    );
                }
                Ok(Type::Vector)
            }
            Shape::Matrix(inner) => {
                self.check_types(inner)?;
                Ok(Type::Matrix)
            }
            Shape::Subquery { inner, .. } => {
                let t = self.check_types(inner)?;
                if t != Type::Vector {
                    let msg = format!(
                        "subquery is only allowed on instant vector, got {} instead",
                        t.name()
                    );
                    return self.fail(n.pos, msg);
                }
                Ok(Type::Matrix)
            }
            Shape::Paren(inner) => self.check_types(inner),
            Shape::Unary(inner) => {
                let t = self.check_types(inner)?;
                if t != Type::Scalar && t != Type::Vector {
                    let msg = format!(
                        "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                        go_quote(t.documented())
                    );
                    return self.fail(n.pos, msg);
                }
                Ok(t)
            }
            Shape::Binary {
                op,
                bool_,
                lhs,
                rhs,
                on,
                include,
                matching,
                card,
            } => {
                let lt = self.check_types(lhs)?;
                let rt = self.check_types(rhs)?;
                let op_pos = self
                    .src
                    .get(lhs.end..)
                    .map_or(lhs.end, |s| lhs.end + (s.len() - s.trim_start().len()));
                if *bool_ && !is_comparison(op) {
                    return self.fail(
                        op_pos,
                        "bool modifier can only be used on comparison operators".into(),
                    );
                }
                if is_comparison(op) && !bool_ && lt == Type::Scalar && rt == Type::Scalar {
                    return self.fail(
                        op_pos,
                        "comparisons between scalars must use BOOL modifier".into(),
                    );
                }
                if *matching {
                    if let Some(l) = on.iter().find(|l| include.contains(l)) {
                        return self.fail(
                            op_pos,
                            format!(
                                "label {} must not occur in ON and GROUP clause at once",
                                go_quote(l)
                            ),
                        );
                    }
                }
                if lt != Type::Scalar && lt != Type::Vector {
                    return self.fail(
                        lhs.pos,
                        "binary expression must contain only scalar and instant vector types"
                            .into(),
                    );
                }
                if rt != Type::Scalar && rt != Type::Vector {
                    return self.fail(
                        rhs.pos,
                        "binary expression must contain only scalar and instant vector types"
                            .into(),
                    );
                }
                if lt != Type::Vector || rt != Type::Vector {
                    if !on.is_empty() {
                        return self.fail(
                            n.pos,
                            "vector matching only allowed between instant vectors".into(),
                        );
                    }
                } else if is_set_operator(op) && *card != Card::OneToOne {
                    return self.fail(
                        n.pos,
                        format!("no grouping allowed for {} operation", go_quote(op)),
                    );
                }
                if (lt == Type::Scalar || rt == Type::Scalar) && is_set_operator(op) {
                    return self.fail(
                        n.pos,
                        format!(
                            "set operator {} not allowed in binary scalar expression",
                            go_quote(op)
                        ),
                    );
                }
                Ok(if lt == Type::Scalar && rt == Type::Scalar {
                    Type::Scalar
                } else {
                    Type::Vector
                })
            }
            Shape::Call { name, args } => {
                let Some((types, variadic, returns)) = function(name) else {
                    return Ok(Type::Vector);
                };
                let nargs = types.len();
                if variadic == 0 {
                    if nargs != args.len() {
                        let msg = format!(
                            "expected {nargs} argument(s) in call to {}, got {}",
                            go_quote(name),
                            args.len()
                        );
                        return self.fail(n.pos, msg);
                    }
                } else {
                    let least = nargs - 1;
                    if least > args.len() {
                        let msg = format!(
                            "expected at least {least} argument(s) in call to {}, got {}",
                            go_quote(name),
                            args.len()
                        );
                        return self.fail(n.pos, msg);
                    }
                    let most = least as i64 + i64::from(variadic);
                    if variadic > 0 && most < args.len() as i64 {
                        let msg = format!(
                            "expected at most {most} argument(s) in call to {}, got {}",
                            go_quote(name),
                            args.len()
                        );
                        return self.fail(n.pos, msg);
                    }
                }
                for (i, arg) in args.iter().enumerate() {
                    let k = if i >= nargs {
                        if variadic == 0 {
                            break;
                        }
                        nargs - 1
                    } else {
                        i
                    };
                    let want = Type::of(types.as_bytes().get(k).copied().unwrap_or(b'V'));
                    self.expect(arg, want, &format!("call to function {}", go_quote(name)))?;
                }
                Ok(returns)
            }
            Shape::Aggregate { op, param, expr } => {
                self.expect(expr, Type::Vector, "aggregation expression")?;
                if let Some(param) = param {
                    match op.as_str() {
                        "topk" | "bottomk" | "quantile" => {
                            self.expect(param, Type::Scalar, "aggregation parameter")?
                        }
                        "count_values" => {
                            self.expect(param, Type::String, "aggregation parameter")?
                        }
                        _ => {}
                    }
                }
                Ok(Type::Vector)
            }
        }
    }

    fn expect(&mut self, n: &Node, want: Type, context: &str) -> Step<()> {
        let t = self.check_types(n)?;
        if t != want {
            let msg = format!(
                "expected type {} in {context}, got {}",
                want.documented(),
                t.documented()
            );
            return self.fail(n.pos, msg);
        }
        Ok(())
    }
}

/// Go's `regexp` error for a regex that does not compile: `error parsing regexp: <what>:
/// `<where>``, where Go's `<where>` is the part of the anchored regex (`^(?:re)$`, as
/// Prometheus compiles it) at which it gave up. regex-syntax finds the same errors and
/// gives their span; the wording is Go's.
fn go_regex_error(anchored: &str) -> Option<String> {
    use regex_syntax::ast::ErrorKind as A;
    use regex_syntax::hir::ErrorKind as H;
    let (span, what, part) = match regex_syntax::Parser::new().parse(anchored) {
        Ok(_) => return None,
        Err(regex_syntax::Error::Parse(e)) => {
            let (what, part) = match e.kind() {
                A::GroupUnclosed => ("missing closing )", Part::All),
                A::GroupUnopened => ("unexpected )", Part::All),
                A::ClassUnclosed => ("missing closing ]", Part::Rest),
                A::RepetitionMissing => ("missing argument to repetition operator", Part::Span),
                A::RepetitionCountInvalid | A::RepetitionCountDecimalEmpty => {
                    ("invalid repeat count", Part::Span)
                }
                A::EscapeUnexpectedEof => ("trailing backslash at end of expression", Part::None),
                A::UnsupportedBackreference
                | A::EscapeUnrecognized
                | A::EscapeHexInvalid
                | A::EscapeHexInvalidDigit
                | A::EscapeHexEmpty => ("invalid escape sequence", Part::Span),
                A::ClassRangeInvalid | A::ClassRangeLiteral => {
                    ("invalid character class range", Part::Span)
                }
                A::NestLimitExceeded(_) => ("expression nests too deeply", Part::All),
                _ => ("invalid or unsupported Perl syntax", Part::Three),
            };
            (*e.span(), what, part)
        }
        Err(regex_syntax::Error::Translate(e)) => {
            let what = match e.kind() {
                H::UnicodePropertyNotFound | H::UnicodePropertyValueNotFound => {
                    "invalid character class range"
                }
                _ => "invalid or unsupported Perl syntax",
            };
            (*e.span(), what, Part::Span)
        }
        Err(_) => return None,
    };
    let (start, end) = (span.start.offset, span.end.offset);
    let at = match part {
        Part::All => anchored,
        Part::Rest => anchored.get(start..).unwrap_or_default(),
        // An empty span is the one character at it.
        Part::Span if start == end => anchored
            .get(start..)
            .map_or("", |r| r.get(..1).unwrap_or(r)),
        Part::Span => anchored.get(start..end).unwrap_or_default(),
        Part::Three => anchored
            .get(start..)
            .map_or("", |r| r.get(..3).unwrap_or(r)),
        Part::None => "",
    };
    Some(format!("error parsing regexp: {what}: `{at}`"))
}

/// Which part of the regex Go's error quotes.
enum Part {
    All,
    Rest,
    Span,
    Three,
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_prometheus() {
        // (query, what Prometheus 2.42 answers): see also tests/cases/promql_errors.txt.
        for (q, want) in [
            ("rate(x[5m]", "1:11: parse error: unclosed left parenthesis"),
            ("sum(up) by job", "1:12: parse error: unexpected identifier \"job\" in grouping opts, expected \"(\""),
            ("cloud_instance cloud_instances", "1:16: parse error: unexpected identifier \"cloud_instances\""),
            ("1 +", "1:4: parse error: unexpected end of input"),
            ("rate(x[5m)", "1:10: parse error: unexpected \")\" in subquery or range, expected \":\" or \"]\""),
            ("up{job=}", "1:8: parse error: unexpected \"}\" in label matching, expected string"),
            ("rate(up)", "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector"),
            ("topk(x, up)", "1:6: parse error: expected type scalar in aggregation parameter, got instant vector"),
            ("{job=~\".*\"}", "1:1: parse error: vector selector must contain at least one non-empty matcher"),
            ("sum by (job) up", "1:14: parse error: unexpected identifier \"up\" in aggregation"),
            ("1 == bool 1 == 2", "1:13: parse error: comparisons between scalars must use BOOL modifier"),
            ("", "1:1: parse error: no expression found in input"),
            ("x\n  + )", "2:6: parse error: unexpected right parenthesis ')'"),
        ] {
            assert_eq!(check(q), Err(want.to_string()), "{q}");
        }
    }

    #[test]
    fn valid_queries_have_no_error() {
        for q in [
            "sum by (job) (rate(x{a=~\"b.*\"}[5m] offset -1m @ 100)) / on(job) group_left(x) y",
            "-x ^ 2 * -3",
            "x[5m:] @ start()",
            "topk(3, sum(x) by (a))",
            "label_join(x, \"a\", \",\", \"b\", \"c\")",
            "sum without () (x)",
            "smoothed + anchored{by=\"x\"}",
        ] {
            assert_eq!(check(q), Ok(()), "{q}");
        }
    }
}
