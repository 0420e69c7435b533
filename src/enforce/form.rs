//! `application/x-www-form-urlencoded` as Go's `net/url` reads it, for query strings
//! and POST bodies. Anything Go would read differently (bad escapes, `;`) is refused, so
//! the filter and Prometheus always see the same parameters.
//!
//! Decoding and escaping are the `percent-encoding` and `form_urlencoded` crates'. What is
//! this module's own is what a test shows the crates read differently from Go: they keep
//! a `%` without two hex digits as it is (Go's `ParseQuery` refuses it, so `check_escapes`
//! does), and `form_urlencoded` splits on `&` only (Go 1.17+ refuses a `;`).

/// The most `&`-separated parameters a query string or form body may have, as Go counts
/// them (the `&`s plus one, empty pairs included), the filter's own included. Go's
/// `url.ParseQuery` (1.24.12, 1.25.6 and later; GODEBUG `urlmaxqueryparams`, 10,000 by default)
/// drops *every* parameter of a query with more, the tenant's `match[]` or `filter` with them,
/// so an upstream built with it would answer for every tenant. Far below that limit, and far
/// above what any client sends.
pub const MAX_PARAMS: usize = 1000;

/// Refuses a query string or form body with more than [`MAX_PARAMS`] parameters once `extra`
/// are added.
pub fn check_count(raw: &str, extra: usize) -> Result<(), FormError> {
    let params = raw.bytes().filter(|&b| b == b'&').count() + 1 + extra;
    if params > MAX_PARAMS {
        return Err(FormError(format!(
            "the query string or form body has more than {MAX_PARAMS} parameters"
        )));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormError(pub String);

/// Decodes every `key=value` pair, in order; repeated keys stay repeated.
pub fn parse(s: &str) -> Result<Vec<Param>, FormError> {
    let mut out = Vec::new();
    for pair in s.split('&') {
        if pair.is_empty() {
            continue;
        }
        if pair.contains(';') {
            return Err(FormError(
                "a ';' in the query string or form body is not allowed".into(),
            ));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push(Param {
            key: decode(k)?,
            value: decode(v)?,
        });
    }
    Ok(out)
}

/// Encodes the params back, escaping the way Go's `url.QueryEscape` does.
pub fn encode(params: &[Param]) -> String {
    let mut out = String::new();
    for (i, p) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        escape_into(&mut out, &p.key);
        out.push('=');
        escape_into(&mut out, &p.value);
    }
    out
}

/// Decodes one key or value: `+` is a space, `%XX` a byte; the result must be UTF-8.
pub fn decode(s: &str) -> Result<String, FormError> {
    check_escapes(s)?;
    let plus_as_space = if s.contains('+') {
        std::borrow::Cow::Owned(s.replace('+', " "))
    } else {
        std::borrow::Cow::Borrowed(s)
    };
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| FormError("parameters must be UTF-8".into()))
}

/// Decodes a key, borrowing it when there is nothing to decode (the usual case).
pub fn decode_key(s: &str) -> Result<std::borrow::Cow<'_, str>, FormError> {
    if s.contains(['%', '+']) {
        decode(s).map(std::borrow::Cow::Owned)
    } else {
        Ok(std::borrow::Cow::Borrowed(s))
    }
}

/// Refuses what Go's `url.ParseQuery` refuses in a value the filter passes on unchanged:
/// a `%` not followed by two hex digits.
pub fn check_escapes(s: &str) -> Result<(), FormError> {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(off) = b[i..].iter().position(|&c| c == b'%') {
        let p = i + off;
        let ok = b.get(p + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(p + 2).is_some_and(u8::is_ascii_hexdigit);
        if !ok {
            return Err(FormError(format!("invalid %-escape in {s:?}")));
        }
        i = p + 3;
    }
    Ok(())
}

/// Escapes a key or value for a form. The WHATWG form escape keeps `*` and escapes `~`,
/// where Go's `url.QueryEscape` does the opposite; Go decodes both alike.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    escape_into(&mut out, s);
    out
}

fn escape_into(out: &mut String, s: &str) {
    out.extend(form_urlencoded::byte_serialize(s.as_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go_around_multibyte_characters() {
        assert_eq!(escape("é x~*"), "%C3%A9+x%7E*");
        assert_eq!(escape("a{b=\"ü\"}"), "a%7Bb%3D%22%C3%BC%22%7D");
        assert_eq!(escape(""), "");
        assert_eq!(escape("Zz09-_."), "Zz09-_.");
        assert_eq!(
            decode(&escape("sum(rate(x{a=\"é\"}[5m])) / 2")).unwrap(),
            "sum(rate(x{a=\"é\"}[5m])) / 2"
        );
    }

    fn p(k: &str, v: &str) -> Param {
        Param {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn decodes_keys_and_values_like_go() {
        assert_eq!(
            parse("%71uery=a+b%2Bc&time=1&&flag").unwrap(),
            vec![p("query", "a b+c"), p("time", "1"), p("flag", "")]
        );
        assert_eq!(
            parse("query=a&query=b").unwrap(),
            vec![p("query", "a"), p("query", "b")]
        );
        assert_eq!(parse("a=b=c").unwrap(), vec![p("a", "b=c")]);
    }

    #[test]
    fn refuses_what_go_reads_differently() {
        assert!(parse("query=a;b").is_err());
        assert!(parse("query=%zz").is_err());
        assert!(parse("query=%4").is_err());
        assert!(parse("query=%ff").is_err());
    }

    #[test]
    fn where_the_crates_read_differently_from_go() {
        // Why check_escapes and the ';' check are this module's own: the crates accept these.
        let pairs: Vec<_> = form_urlencoded::parse(b"query=%zz;b").collect();
        assert_eq!(pairs, [("query".into(), "%zz;b".into())]);
        assert_eq!(
            percent_encoding::percent_decode_str("%4")
                .decode_utf8()
                .unwrap(),
            "%4"
        );
    }

    #[test]
    fn keys_and_escapes() {
        assert!(matches!(
            decode_key("query"),
            Ok(std::borrow::Cow::Borrowed("query"))
        ));
        assert_eq!(decode_key("match%5B%5D").unwrap(), "match[]");
        assert!(check_escapes("a%20b%2Fc").is_ok());
        for bad in ["%", "%2", "a%zz", "%%41"] {
            assert!(check_escapes(bad).is_err(), "{bad}");
        }
        assert_eq!(escape("a b/c"), "a+b%2Fc");
    }

    #[test]
    fn round_trip() {
        let params = vec![
            p("query", r#"sum(rate(x{a="b c"}[5m])) / 2 & ~"#),
            p("match[]", "{a=~\".+\"}"),
        ];
        let enc = encode(&params);
        assert!(!enc.contains(' ') && !enc.contains('"'));
        assert_eq!(parse(&enc).unwrap(), params);
    }
}
