//! The query as promql-parser must see it to read what Prometheus reads.
//!
//! Three things differ between promql-parser and Prometheus before any grammar is involved;
//! this pre-pass, over the tokens of [`super::lex`], settles each, and the printer undoes it:
//! - **Strings.** Prometheus reads `"…"` and `'…'` with Go's `strconv.Unquote`: `\xNN` and
//!   `\NNN` are bytes, so `"\xc3\xbc"` is `ü` and `"\377"` the single byte 0xFF; a backtick
//!   string has no escapes at all. promql-parser reads `\xNN` as a code point and refuses
//!   `\d` in backticks. So every string that holds an escape, and every raw string, is
//!   decoded here as Go decodes it and written back as a double-quoted string of the same
//!   characters. Bytes that are not UTF-8 cannot be held by promql-parser's `String`s; each
//!   becomes a character of a private range ([`byte_marker`]) that the printer writes back as
//!   `\xNN`, so Prometheus gets exactly the bytes the user wrote.
//! - **Names.** promql-parser reserves `smoothed` and `anchored` (any case) as keywords that
//!   its grammar never accepts; Prometheus 2.x reads them as names, and 3.x as names
//!   everywhere but after a range. Each such identifier becomes a placeholder name here and
//!   its own spelling again in the printer.
//! - **`@` before 1970.** Inside Wasm, promql-parser cannot hold a time before 1970 and
//!   refuses `@ -100`. The minus is taken off here, and the printer puts it back.

use super::lex::{self, Kind};
use super::print::escape_str;
use std::borrow::Cow;

/// Bytes 0x80–0xFF that are not part of valid UTF-8 travel as U+10FF80–U+10FFFF.
const MARKER_BASE: u32 = 0x10FF00;

pub fn byte_marker(b: u8) -> char {
    char::from_u32(MARKER_BASE + u32::from(b)).unwrap_or('\u{FFFD}')
}

/// The byte a marker stands for.
pub fn marker_byte(c: char) -> Option<u8> {
    let v = u32::from(c);
    if (MARKER_BASE + 0x80..=MARKER_BASE + 0xFF).contains(&v) {
        u8::try_from(v - MARKER_BASE).ok()
    } else {
        None
    }
}

/// Words promql-parser reserves that Prometheus reads as names.
const RESERVED: [&str; 2] = ["smoothed", "anchored"];

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Prepared<'a> {
    /// What promql-parser parses.
    pub text: Cow<'a, str>,
    /// (placeholder, the user's spelling) for each reserved word used as a name.
    pub names: Vec<(String, String)>,
    /// For each `@ <number>`, in the order of the query: whether its minus was taken off.
    pub negative_at: Vec<bool>,
    /// Some string holds bytes that are not UTF-8, carried as markers.
    pub bytes: bool,
}

impl Prepared<'_> {
    /// The user's name for a name the parser returned.
    pub fn name<'a>(&'a self, parsed: &'a str) -> &'a str {
        self.names
            .iter()
            .find(|(p, _)| p == parsed)
            .map_or(parsed, |(_, original)| original)
    }
}

/// Why a query could not be prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unprepared {
    /// The lexer refused it: the syntax checker says why, as Prometheus would.
    Invalid,
    /// Valid, but not something the filter can carry (the message says why).
    Unsupported(String),
}

pub fn prepare(query: &str) -> Result<Prepared<'_>, Unprepared> {
    if !needs_preparing(query) {
        // Nothing here reads differently: promql-parser decides alone (a query that does not
        // lex is explained by the syntax checker all the same).
        return Ok(Prepared {
            text: Cow::Borrowed(query),
            ..Prepared::default()
        });
    }
    let (tokens, err) = lex::tokens_v3(query);
    if err.is_some() {
        return Err(Unprepared::Invalid);
    }
    let mut out = String::with_capacity(query.len() + 8);
    let mut p = Prepared::default();
    let mut literal_markers = false;
    let mut previous = Kind::Eof;
    let mut copied = 0;
    let mut i = 0;
    while let Some(t) = tokens.get(i) {
        let text = t.text(query);
        let replacement = match t.kind {
            Kind::Str if text.starts_with('`') || text.contains('\\') => {
                let bytes = lex::unquote(text);
                if matches!(previous, Kind::EqlRegex | Kind::NeqRegex)
                    && std::str::from_utf8(&bytes).is_err()
                {
                    // Go refuses a regex that is not UTF-8; the checker says so as it does.
                    return Err(Unprepared::Invalid);
                }
                let mut value = String::with_capacity(bytes.len());
                for chunk in bytes.utf8_chunks() {
                    literal_markers |= chunk.valid().chars().any(|c| marker_byte(c).is_some());
                    value.push_str(chunk.valid());
                    for b in chunk.invalid() {
                        value.push(byte_marker(*b));
                        p.bytes = true;
                    }
                }
                Some(format!("\"{}\"", escape_str(&value, false)))
            }
            Kind::Str => {
                literal_markers |= text.chars().any(|c| marker_byte(c).is_some());
                None
            }
            Kind::Identifier if RESERVED.iter().any(|w| w.eq_ignore_ascii_case(text)) => {
                Some(placeholder(query, &mut p.names, text))
            }
            Kind::At => {
                let sign = tokens
                    .get(i + 1)
                    .filter(|n| n.kind == Kind::Op && matches!(n.text(query), "-" | "+"));
                let number = tokens
                    .get(i + 1 + usize::from(sign.is_some()))
                    .filter(|n| n.kind == Kind::Number);
                let minus = sign.filter(|s| s.text(query) == "-");
                if let (Some(minus), Some(_)) = (minus, number) {
                    // Keep the `@`, drop the minus.
                    out.push_str(query.get(copied..minus.pos).unwrap_or_default());
                    copied = minus.end;
                    i += 1;
                }
                if let Some(number) = number {
                    if !within_bounds(number.text(query)) {
                        // Prometheus refuses it; the checker says so as it does.
                        return Err(Unprepared::Invalid);
                    }
                    p.negative_at.push(minus.is_some());
                }
                None
            }
            _ => None,
        };
        previous = t.kind;
        if let Some(r) = replacement {
            out.push_str(query.get(copied..t.pos).unwrap_or_default());
            out.push_str(&r);
            copied = t.end;
        }
        i += 1;
    }
    out.push_str(query.get(copied..).unwrap_or_default());
    p.text = Cow::Owned(out);
    if p.bytes && literal_markers {
        return Err(Unprepared::Unsupported(
            "a string holds bytes that are not UTF-8 (such as \\xff) and another the characters \
             U+10FF80 to U+10FFFF, which carry such bytes through the filter; write those characters \
             in a separate query"
                .into(),
        ));
    }
    Ok(p)
}

/// Whether anything in `query` reads differently in promql-parser than in Prometheus: an
/// escape or a raw string, an `@`, or a reserved word. One pass over the bytes.
fn needs_preparing(query: &str) -> bool {
    let b = query.as_bytes();
    b.iter().enumerate().any(|(i, c)| match c {
        b'\\' | b'`' | b'@' => true,
        b's' | b'S' | b'a' | b'A' => RESERVED.iter().any(|w| {
            b.get(i..i + w.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(w.as_bytes()))
        }),
        _ => false,
    })
}

/// An `@` timestamp Prometheus takes: finite and, in seconds, within an int64.
fn within_bounds(number: &str) -> bool {
    let lower = number.to_ascii_lowercase();
    let value = match lower.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).map_or(f64::INFINITY, |v| v as f64),
        None => lower.parse::<f64>().unwrap_or(f64::NAN),
    };
    value.is_finite() && value.abs() < 9.223372036854776e18
}

/// A name that occurs nowhere in the query, standing for `word`.
fn placeholder(query: &str, names: &mut Vec<(String, String)>, word: &str) -> String {
    if let Some((p, _)) = names.iter().find(|(_, w)| w == word) {
        return p.clone();
    }
    let mut n = names.len();
    loop {
        let candidate = format!("kpw_reserved_{n}");
        if !query.contains(&candidate) && !names.iter().any(|(p, _)| *p == candidate) {
            names.push((candidate.clone(), word.to_string()));
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(q: &str) -> String {
        prepare(q)
            .unwrap_or_else(|e| panic!("{q}: {e:?}"))
            .text
            .into_owned()
    }

    #[test]
    fn strings_become_what_go_reads() {
        assert_eq!(text(r#"x{city="M\xc3\xbcnchen"}"#), "x{city=\"München\"}");
        assert_eq!(text(r#"x{a=~`\d+|api`}"#), "x{a=~\"\\\\d+|api\"}");
        assert_eq!(text(r#"x{a='it\'s'}"#), "x{a=\"it's\"}");
        assert_eq!(text(r#"x{a="\a"}"#), "x{a=\"\\u0007\"}");
        // No escape: left as written.
        assert_eq!(text(r#"x{a='b', c="d"}"#), r#"x{a='b', c="d"}"#);
        let p = prepare(r#"x{a="\377"}"#).unwrap();
        assert!(p.bytes);
        assert_eq!(p.text, format!("x{{a=\"{}\"}}", byte_marker(0xff)));
    }

    #[test]
    fn reserved_words_become_placeholders() {
        let p = prepare("sum by (anchored) (smoothed{Anchored=\"x\"}) + smoothed").unwrap();
        assert_eq!(
            p.text,
            "sum by (kpw_reserved_0) (kpw_reserved_1{kpw_reserved_2=\"x\"}) + kpw_reserved_1"
        );
        assert_eq!(p.name("kpw_reserved_2"), "Anchored");
        assert_eq!(p.name("up"), "up");
        // A placeholder never collides with the user's own names.
        let p = prepare("smoothed + kpw_reserved_0").unwrap();
        assert_eq!(p.text, "kpw_reserved_1 + kpw_reserved_0");
    }

    #[test]
    fn negative_at_loses_its_minus() {
        let p = prepare("x @ -100 + y @ 5 + z @ start()").unwrap();
        assert_eq!(p.text, "x @ 100 + y @ 5 + z @ start()");
        assert_eq!(p.negative_at, vec![true, false]);
    }

    #[test]
    fn bytes_and_literal_markers_do_not_mix() {
        let q = format!("x{{a=\"\\xff\", b=\"{}\"}}", byte_marker(0xff));
        assert!(matches!(prepare(&q), Err(Unprepared::Unsupported(_))));
        // Either alone is fine.
        assert!(prepare(&format!("x{{b=\"{}\"}}", byte_marker(0xff))).is_ok());
        assert_eq!(prepare("x{a=\"\\q\"}"), Err(Unprepared::Invalid));
    }
}
