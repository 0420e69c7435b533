//! PromQL's tokens, read as Prometheus reads them.
//!
//! promql-parser has its own lexer, but it differs from Prometheus's where it matters to
//! users: it reads `\xNN` and `\NNN` as code points rather than bytes, it makes words that
//! Prometheus reads as names into keywords, and its errors carry no position. This lexer
//! follows Prometheus (`promql/parser/lex.go`): the same tokens, the same states (inside
//! braces, inside brackets), string escapes checked by Go's rules, and the same error
//! messages at the same byte positions. The pre-pass ([`super::prepare`]) and the syntax
//! checker ([`super::syntax`]) read its tokens; the parser itself still is promql-parser.

use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Comma,
    LeftParen,
    RightParen,
    LeftBrace,
    RightBrace,
    LeftBracket,
    RightBracket,
    Colon,
    /// `=` (a matcher, or a mistake outside braces).
    Eql,
    /// `=~` and `!~`, only inside braces.
    EqlRegex,
    NeqRegex,
    /// A binary or unary operator: `+ - * / % ^ == != <= < >= >` and `and or unless atan2`.
    Op,
    At,
    Number,
    Duration,
    Str,
    Identifier,
    /// An identifier with a colon (`job:rate5m`).
    MetricIdentifier,
    /// `sum`, `avg`, …
    Aggregator,
    /// `by without on ignoring group_left group_right bool offset`.
    Keyword,
    /// `start` and `end` (only meaningful after `@`).
    Preprocessor,
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub kind: Kind,
    /// Byte range in the query.
    pub pos: usize,
    pub end: usize,
}

impl Token {
    pub fn text<'a>(&self, src: &'a str) -> &'a str {
        src.get(self.pos..self.end).unwrap_or_default()
    }

    /// The token as Prometheus names it in "unexpected …" (`Item.desc`).
    pub fn describe(&self, src: &str) -> String {
        let text = self.text(src);
        match self.kind {
            Kind::Eof => "end of input".into(),
            Kind::Identifier => format!("identifier {}", go_quote(text)),
            Kind::MetricIdentifier => format!("metric identifier {}", go_quote(text)),
            Kind::Number => format!("number {}", short_quote(text)),
            Kind::Duration => format!("duration {}", short_quote(text)),
            Kind::Str => format!("string {}", short_quote(text)),
            // Prometheus 2.42 has no plain name for `@`, so it prints the token type's number.
            Kind::At => format!("\"<Item 57385>\" <op:{text}>"),
            Kind::Op | Kind::EqlRegex | Kind::NeqRegex => format!("<op:{text}>"),
            Kind::Aggregator => format!("<aggr:{text}>"),
            Kind::Keyword => format!("<{text}>"),
            _ => go_quote(text),
        }
    }
}

/// A lexer error: Prometheus's message, at the byte where Prometheus reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub pos: usize,
    pub msg: String,
}

/// The query's tokens, comments left out, ending in `Eof`; or the tokens up to the first
/// error and the error. As Prometheus 2.42 reads them.
pub fn tokens(src: &str) -> (Vec<Token>, Option<LexError>) {
    lex(src, false)
}

/// [`tokens`], but a number right after `[` is a number, as Prometheus 3 reads it
/// (`x[300]` is five minutes), where 2.42 refuses it. The pre-pass reads this way so that
/// what promql-parser accepts gets through; the syntax checker reads as 2.42.
pub fn tokens_v3(src: &str) -> (Vec<Token>, Option<LexError>) {
    lex(src, true)
}

fn lex(src: &str, v3: bool) -> (Vec<Token>, Option<LexError>) {
    let mut l = Lexer {
        src,
        pos: 0,
        start: 0,
        out: Vec::new(),
        paren_depth: 0,
        brace: false,
        bracket: false,
        colon: false,
        v3,
    };
    let err = l.run().err();
    (l.out, err)
}

/// Words that are keywords in every position, lower case, and their kind.
pub fn keyword(word: &str) -> Option<Kind> {
    let lower = word.to_ascii_lowercase();
    Some(match lower.as_str() {
        "and" | "or" | "unless" | "atan2" => Kind::Op,
        "sum" | "avg" | "count" | "min" | "max" | "group" | "stddev" | "stdvar" | "topk"
        | "bottomk" | "count_values" | "quantile" => Kind::Aggregator,
        "offset" | "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" | "bool" => {
            Kind::Keyword
        }
        "start" | "end" => Kind::Preprocessor,
        "inf" | "nan" => Kind::Number,
        _ => return None,
    })
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    start: usize,
    out: Vec<Token>,
    paren_depth: i64,
    brace: bool,
    bracket: bool,
    colon: bool,
    /// Numbers as durations.
    v3: bool,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

pub fn is_alpha(c: char) -> bool {
    c == '_' || c.is_ascii_alphabetic()
}

pub fn is_alnum(c: char) -> bool {
    is_alpha(c) || c.is_ascii_digit()
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn accept(&mut self, set: &str) -> bool {
        match self.peek() {
            Some(c) if set.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, set: &str) {
        while self.accept(set) {}
    }

    fn emit(&mut self, kind: Kind) {
        self.out.push(Token {
            kind,
            pos: self.start,
            end: self.pos,
        });
        self.start = self.pos;
    }

    fn error(&self, msg: String) -> Result<(), LexError> {
        Err(LexError {
            pos: self.start,
            msg,
        })
    }

    fn run(&mut self) -> Result<(), LexError> {
        loop {
            if self.brace {
                self.inside_braces()?;
                continue;
            }
            if self.src.get(self.pos..).is_some_and(|s| s.starts_with('#')) {
                self.comment();
                continue;
            }
            let Some(c) = self.next() else {
                if self.paren_depth != 0 {
                    return self.error("unclosed left parenthesis".into());
                } else if self.bracket {
                    return self.error("unclosed left bracket".into());
                }
                self.emit(Kind::Eof);
                return Ok(());
            };
            match c {
                ',' => self.emit(Kind::Comma),
                c if is_space(c) => self.space(),
                '*' | '/' | '%' | '+' | '-' | '^' => self.emit(Kind::Op),
                '=' => match self.peek() {
                    Some('=') => {
                        self.pos += 1;
                        self.emit(Kind::Op);
                    }
                    Some('~') => return self.error("unexpected character after '=': '~'".into()),
                    _ => self.emit(Kind::Eql),
                },
                '!' => match self.next() {
                    Some('=') => self.emit(Kind::Op),
                    other => {
                        return self.error(format!(
                            "unexpected character after '!': {}",
                            rune_quote(other)
                        ))
                    }
                },
                '<' | '>' => {
                    self.accept("=");
                    self.emit(Kind::Op);
                }
                c if c.is_ascii_digit()
                    || (c == '.' && self.peek().is_some_and(|d| d.is_ascii_digit())) =>
                {
                    self.pos -= 1;
                    self.number_or_duration()?;
                }
                '"' | '\'' => self.string(c)?,
                '`' => self.raw_string()?,
                c if is_alpha(c) || c == ':' => {
                    if !self.bracket {
                        self.pos -= 1;
                        self.keyword_or_identifier();
                    } else if self.colon {
                        return self.error(format!("unexpected colon {}", rune_quote(Some(c))));
                    } else {
                        // Prometheus emits any letter inside brackets as the colon.
                        self.emit(Kind::Colon);
                        self.colon = true;
                    }
                }
                '(' => {
                    self.emit(Kind::LeftParen);
                    self.paren_depth += 1;
                }
                ')' => {
                    self.emit(Kind::RightParen);
                    self.paren_depth -= 1;
                    if self.paren_depth < 0 {
                        // Prometheus replaces the token it emitted with the error.
                        self.out.pop();
                        return self.error("unexpected right parenthesis ')'".into());
                    }
                }
                '{' => {
                    self.emit(Kind::LeftBrace);
                    self.brace = true;
                }
                '[' => {
                    if self.bracket {
                        return self.error("unexpected left bracket '['".into());
                    }
                    self.colon = false;
                    self.emit(Kind::LeftBracket);
                    while self.peek().is_some_and(is_space) {
                        self.pos += 1;
                    }
                    self.start = self.pos;
                    self.bracket = true;
                    self.duration()?;
                }
                ']' => {
                    if !self.bracket {
                        return self.error("unexpected right bracket ']'".into());
                    }
                    self.emit(Kind::RightBracket);
                    self.bracket = false;
                }
                '@' => self.emit(Kind::At),
                c => return self.error(format!("unexpected character: {}", rune_quote(Some(c)))),
            }
        }
    }

    fn inside_braces(&mut self) -> Result<(), LexError> {
        if self.src.get(self.pos..).is_some_and(|s| s.starts_with('#')) {
            self.comment();
            return Ok(());
        }
        match self.next() {
            None => return self.error("unexpected end of input inside braces".into()),
            Some(c) if is_space(c) => self.space(),
            Some(c) if is_alpha(c) => {
                while self.peek().is_some_and(is_alnum) {
                    self.pos += 1;
                }
                self.emit(Kind::Identifier);
            }
            Some(',') => self.emit(Kind::Comma),
            Some(q @ ('"' | '\'')) => self.string(q)?,
            Some('`') => self.raw_string()?,
            Some('=') => {
                if self.accept("~") {
                    self.emit(Kind::EqlRegex);
                } else {
                    self.emit(Kind::Eql);
                }
            }
            Some('!') => match self.next() {
                Some('~') => self.emit(Kind::NeqRegex),
                Some('=') => self.emit(Kind::Op),
                other => {
                    return self.error(format!(
                        "unexpected character after '!' inside braces: {}",
                        rune_quote(other)
                    ));
                }
            },
            Some('{') => return self.error("unexpected left brace '{'".into()),
            Some('}') => {
                self.emit(Kind::RightBrace);
                self.brace = false;
            }
            Some(c) => {
                return self.error(format!(
                    "unexpected character inside braces: {}",
                    rune_quote(Some(c))
                ))
            }
        }
        Ok(())
    }

    fn comment(&mut self) {
        while self.peek().is_some_and(|c| c != '\n' && c != '\r') {
            self.next();
        }
        self.start = self.pos;
    }

    fn space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
        self.start = self.pos;
    }

    /// A quoted string, its escapes checked as Go's `lexEscape` checks them.
    fn string(&mut self, quote: char) -> Result<(), LexError> {
        loop {
            match self.next() {
                Some('\\') => self.escape(quote)?,
                // Go decodes U+FFFD itself as an invalid rune.
                Some('\u{FFFD}') => return self.error("invalid UTF-8 rune".into()),
                None | Some('\n') => return self.error("unterminated quoted string".into()),
                Some(c) if c == quote => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::Str);
        Ok(())
    }

    fn escape(&mut self, quote: char) -> Result<(), LexError> {
        let (digits, base, max) = match self.next() {
            Some(c) if "abfnrtv\\".contains(c) || c == quote => return Ok(()),
            Some('0'..='7') => {
                self.pos -= 1;
                (3, 8, 255)
            }
            Some('x') => (2, 16, 255),
            Some('u') => (4, 16, 0x10FFFF),
            Some('U') => (8, 16, 0x10FFFF),
            None => return self.error("escape sequence not terminated".into()),
            Some(c) => return self.error(format!("unknown escape sequence {}", rune_u(c))),
        };
        let mut x: u32 = 0;
        for _ in 0..digits {
            let c = self.next();
            match c.and_then(|c| c.to_digit(base)) {
                Some(d) => x = x.saturating_mul(base).saturating_add(d),
                None => {
                    return match c {
                        None => self.error("escape sequence not terminated".into()),
                        Some(c) => self.error(format!(
                            "illegal character {} in escape sequence",
                            rune_u(c)
                        )),
                    };
                }
            }
        }
        if x > max || (0xD800..0xE000).contains(&x) {
            return self.error("escape sequence is an invalid Unicode code point".into());
        }
        Ok(())
    }

    fn raw_string(&mut self) -> Result<(), LexError> {
        loop {
            match self.next() {
                Some('\u{FFFD}') => return self.error("invalid UTF-8 rune".into()),
                None => return self.error("unterminated raw string".into()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Kind::Str);
        Ok(())
    }

    /// Digits as Go's `scanNumber`: true when what follows is not alphanumeric.
    fn scan_number(&mut self) -> bool {
        let mut digits = "0123456789";
        if self.accept("0") && self.accept("xX") {
            digits = "0123456789abcdefABCDEF";
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789");
        }
        !self.peek().is_some_and(is_alnum)
    }

    /// The rest of a duration after its first number: units, more number-unit pairs.
    fn remaining_duration(&mut self) -> bool {
        if !self.accept("smhdwy") {
            return false;
        }
        self.accept("s");
        while self.accept("0123456789") {
            self.accept_run("0123456789");
            if !self.accept("smhdw") {
                return false;
            }
            self.accept("s");
        }
        // Go reads one more rune: an alphanumeric one stays read (and in the error's text).
        match self.peek() {
            Some(c) if is_alnum(c) => {
                self.pos += c.len_utf8();
                false
            }
            _ => true,
        }
    }

    fn number_or_duration(&mut self) -> Result<(), LexError> {
        if self.scan_number() {
            self.emit(Kind::Number);
            return Ok(());
        }
        if self.remaining_duration() {
            self.emit(Kind::Duration);
            return Ok(());
        }
        let text = self.src.get(self.start..self.pos).unwrap_or_default();
        self.error(format!("bad number or duration syntax: {}", go_quote(text)))
    }

    fn duration(&mut self) -> Result<(), LexError> {
        if self.scan_number() {
            if self.v3 && self.pos > self.start {
                self.emit(Kind::Number);
                return Ok(());
            }
            return self.error("missing unit character in duration".into());
        }
        if !self.remaining_duration() {
            let text = self.src.get(self.start..self.pos).unwrap_or_default();
            return self.error(format!("bad duration syntax: {}", go_quote(text)));
        }
        self.emit(Kind::Duration);
        Ok(())
    }

    fn keyword_or_identifier(&mut self) {
        while self.peek().is_some_and(|c| is_alnum(c) || c == ':') {
            self.pos += 1;
        }
        let word = self.src.get(self.start..self.pos).unwrap_or_default();
        let kind = match keyword(word) {
            Some(k) => k,
            None if word.contains(':') => Kind::MetricIdentifier,
            None => Kind::Identifier,
        };
        self.emit(kind);
    }
}

/// Go's `%q` of a string: double-quoted, with Go's escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        go_escape_char(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%.10q…`: strings longer than ten bytes are cut to ten characters.
fn short_quote(s: &str) -> String {
    if s.len() > 10 {
        let cut: String = s.chars().take(10).collect();
        format!("{}...", go_quote(&cut))
    } else {
        go_quote(s)
    }
}

fn go_escape_char(out: &mut String, c: char, quote: char) {
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        '\\' => out.push_str("\\\\"),
        c if c == quote => {
            out.push('\\');
            out.push(c);
        }
        c if (c as u32) < 0x80 && c.is_ascii_control() => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c if c.is_control() => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        c => out.push(c),
    }
}

/// Go's `%q` of a rune (`'}'`), or of Go's eof (-1), which prints as `'�'`.
fn rune_quote(c: Option<char>) -> String {
    let mut out = String::from("'");
    go_escape_char(&mut out, c.unwrap_or('\u{FFFD}'), '\'');
    out.push('\'');
    out
}

/// Go's `%#U` of a rune: `U+0071 'q'`.
fn rune_u(c: char) -> String {
    if c.is_control() {
        format!("U+{:04X}", c as u32)
    } else {
        format!("U+{:04X} '{c}'", c as u32)
    }
}

/// The bytes a quoted string's body stands for, read as Go's `strconv.Unquote` reads them
/// (escapes already checked by the lexer): `\xNN` and `\NNN` are bytes, `\u` and `\U`
/// code points. A raw string's body is its bytes.
pub fn unquote(token_text: &str) -> Vec<u8> {
    let mut chars = token_text.chars();
    let quote = chars.next();
    let body = token_text
        .get(1..token_text.len().saturating_sub(1))
        .unwrap_or_default();
    if quote == Some('`') {
        return body.as_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(body.len());
    let mut it = body.chars().peekable();
    let mut buf = [0u8; 4];
    while let Some(c) = it.next() {
        if c != '\\' {
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let Some(e) = it.next() else { break };
        let simple = match e {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' | '\'' | '"' => Some(e as u8),
            _ => None,
        };
        if let Some(b) = simple {
            out.push(b);
            continue;
        }
        let (n, base) = match e {
            '0'..='7' => (2, 8),
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            _ => (0, 16),
        };
        let mut v = if base == 8 {
            e.to_digit(8).unwrap_or(0)
        } else {
            0
        };
        for _ in 0..n {
            let d = it.next().and_then(|d| d.to_digit(base)).unwrap_or(0);
            v = v.saturating_mul(base).saturating_add(d);
        }
        match e {
            '0'..='7' | 'x' => out.push(u8::try_from(v).unwrap_or(u8::MAX)),
            _ => {
                let c = char::from_u32(v).unwrap_or('\u{FFFD}');
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(q: &str) -> Vec<Kind> {
        let (t, e) = tokens(q);
        assert_eq!(e, None, "{q}");
        t.iter().map(|t| t.kind).collect()
    }

    fn err(q: &str) -> (usize, String) {
        let e = tokens(q).1.unwrap_or_else(|| panic!("{q} lexes"));
        (e.pos, e.msg)
    }

    #[test]
    fn tokens_as_prometheus_reads_them() {
        use Kind::*;
        assert_eq!(
            kinds("sum by (job) (rate(x[5m]))"),
            vec![
                Aggregator,
                Keyword,
                LeftParen,
                Identifier,
                RightParen,
                LeftParen,
                Identifier,
                LeftParen,
                Identifier,
                LeftBracket,
                Duration,
                RightBracket,
                RightParen,
                RightParen,
                Eof
            ]
        );
        // Inside braces, keywords are names.
        assert_eq!(
            kinds("x{by=~'a', on!~\"b\"}"),
            vec![
                Identifier, LeftBrace, Identifier, EqlRegex, Str, Comma, Identifier, NeqRegex, Str,
                RightBrace, Eof
            ]
        );
        assert_eq!(
            kinds("smoothed + anchored"),
            vec![Identifier, Op, Identifier, Eof]
        );
        assert_eq!(
            kinds("a:b @ -1e3 # c"),
            vec![MetricIdentifier, At, Op, Number, Eof]
        );
        assert_eq!(
            kinds("x[5m:1m] offset 1h30m"),
            vec![
                Identifier,
                LeftBracket,
                Duration,
                Colon,
                Duration,
                RightBracket,
                Keyword,
                Duration,
                Eof
            ]
        );
        assert_eq!(kinds("Inf + 0x1F"), vec![Number, Op, Number, Eof]);
    }

    #[test]
    fn errors_as_prometheus_reports_them() {
        assert_eq!(err("rate(x[5m]"), (10, "unclosed left parenthesis".into()));
        assert_eq!(err(")"), (1, "unexpected right parenthesis ')'".into()));
        assert_eq!(err("up}"), (2, "unexpected character: '}'".into()));
        assert_eq!(err("up]"), (2, "unexpected right bracket ']'".into()));
        assert_eq!(err("\"abc"), (0, "unterminated quoted string".into()));
        assert_eq!(
            err("\"a\\qb\""),
            (0, "unknown escape sequence U+0071 'q'".into())
        );
        assert_eq!(
            err("\"\\uD800\""),
            (0, "escape sequence is an invalid Unicode code point".into())
        );
        assert_eq!(
            err("\"\\400\""),
            (0, "escape sequence is an invalid Unicode code point".into())
        );
        assert_eq!(
            err("\"\\x4\""),
            (0, "illegal character U+0022 '\"' in escape sequence".into())
        );
        assert_eq!(
            err("up[5]"),
            (3, "missing unit character in duration".into())
        );
        assert_eq!(err("up[1x]"), (3, "bad duration syntax: \"1\"".into()));
        assert_eq!(
            err("x offset 5x"),
            (9, "bad number or duration syntax: \"5\"".into())
        );
        assert_eq!(err("up[5m:1m:1m]"), (8, "unexpected colon ':'".into()));
        assert_eq!(
            err("up !~ \"a\""),
            (3, "unexpected character after '!': '~'".into())
        );
        assert_eq!(err("$"), (0, "unexpected character: '$'".into()));
        assert_eq!(
            err("up{a=\"b\""),
            (8, "unexpected end of input inside braces".into())
        );
        assert_eq!(
            err("'\\\"'"),
            (0, "unknown escape sequence U+0022 '\"'".into())
        );
    }

    #[test]
    fn strings_unquote_as_go_does() {
        assert_eq!(unquote(r#""M\xc3\xbcnchen""#), "München".as_bytes());
        assert_eq!(unquote(r#""\377""#), vec![0xff]);
        assert_eq!(
            unquote(r#""\a\b\f\n\r\t\v\\\"""#),
            b"\x07\x08\x0c\n\r\t\x0b\\\"".to_vec()
        );
        assert_eq!(unquote(r"'\''"), b"'".to_vec());
        assert_eq!(unquote(r#""\u00fc\U0001F600""#), "ü😀".as_bytes());
        assert_eq!(unquote(r"`\d+`"), br"\d+".to_vec());
    }

    #[test]
    fn descriptions_match_prometheus() {
        let d = |q: &str, i: usize| tokens(q).0[i].describe(q);
        assert_eq!(d("a b", 1), "identifier \"b\"");
        assert_eq!(d("a by", 1), "<by>");
        assert_eq!(d("* a", 0), "<op:*>");
        assert_eq!(d("a sum", 1), "<aggr:sum>");
        assert_eq!(d("(a )", 2), "\")\"");
        assert_eq!(d("a 1", 1), "number \"1\"");
        assert_eq!(d("a", 1), "end of input");
        assert_eq!(d("a \"0123456789ab\"", 1), "string \"\\\"012345678\"...");
    }
}
