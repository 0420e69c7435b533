//! Alertmanager API v2, per tenant: alerts, alert groups and silences.
//!
//! Pure functions; the flow calls them around the upstream exchange.
//!
//! **Alerts** (`GET /api/v2/alerts`, `GET /api/v2/alerts/groups`): [`alerts_query`] adds one
//! `filter` parameter with the tenant matcher, which Alertmanager ANDs with the user's own
//! `filter`s. It goes first in the query string, and the number of parameters is bounded
//! ([`MAX_QUERY_PARAMS`]): Go's `url.ParseQuery` (1.24.12, 1.25.6 and later, GODEBUG
//! `urlmaxqueryparams`, 10,000 by default) drops *every* parameter of a query that has too many
//! `&`, the tenant's `filter` with them, which would show every tenant's alerts. Alert groups
//! whose alerts are all filtered out are dropped by Alertmanager itself.
//!
//! The matcher is written so that both of Alertmanager's matcher parsers read it alike: the
//! classic one (`pkg/labels.ParseMatcher`, the only one in 0.25) and the UTF-8 one that 0.27+
//! runs beside it (`matcher/parse`, whose quoted strings are Go's `strconv.Unquote`). The API
//! parses each `filter` as one matcher, without braces (`{a="b"}` is refused there), so it is
//! `project="p1"`, or `project=~"p1|c1"` for a tenant with sub-projects (each id regex-escaped;
//! Alertmanager anchors the regex). The value is double-quoted with only `\\`, `\"` and `\n`
//! escaped, the three escapes both parsers read the same way; every other character is
//! written as itself, which both take literally (only a raw line feed is refused by
//! `strconv.Unquote`, and it is escaped).
//!
//! **Silences.** *The tenant's silence* is one that can only ever silence the tenant's alerts:
//! it has an **equality** matcher (`isEqual` true, which is what an absent `isEqual` means,
//! and `isRegex` false) on the tenant label whose value is one of the tenant's project ids, and
//! no equality matcher on that label naming another project. Alertmanager ANDs a silence's
//! matchers, so such a silence matches only alerts that carry that id. Anything else is not
//! the tenant's: `project!="X"` silences every project but X, `project=~"X|Y"` silences Y too,
//! and even `project=~"X"` is a regex whose meaning depends on escaping. Two existing
//! Alertmanager tenancy proxies get this wrong: they take a silence as the tenant's when *any*
//! matcher on the label mentions the tenant, negative and regex matchers included, so a
//! tenant could see, expire or replace another tenant's silences (`project!="other"`), or
//! create a silence over every other project through a negative matcher.
//!
//! [`enforce_silence`] makes every silence created through the filter the tenant's: every
//! matcher the user wrote on the tenant label is removed and the tenant's equality matcher
//! added. An update (`id` present) must first be checked by the flow against the existing
//! silence ([`silence_answer`] on `GET /api/v2/silence/{id}`), since Alertmanager expires the
//! old silence when it replaces it.
//!
//! Go's `encoding/json` (which go-swagger uses) matches object keys to fields
//! case-insensitively, with Unicode simple folding (`ſ` is `s`, `K` the Kelvin sign is `k`), the
//! last match winning. A body with `"matchers"` and `"Matchers"`, or `"id"` and `"ID"`, would be
//! read by Alertmanager from the key the filter did not enforce, so keys that differ from a
//! field name only by such folding are refused.

use crate::config::Config;
use crate::enforce::answers::Kind as AnswerKind;
use crate::enforce::form;
use crate::enforce::params::Rewriter;
use crate::enforce::promql::{regex_escape, Tenant};
use crate::enforce::{media_type, uncompressed, BodyContext, Enforcer, Forward, Lookup};
use crate::error::ApiError;
use serde_json::{Map, Value};

/// The most parameters a query string may have ([`form::MAX_PARAMS`]).
pub const MAX_QUERY_PARAMS: usize = form::MAX_PARAMS;

/// The longest silence id accepted (Alertmanager's are 36-character UUIDs).
pub const MAX_SILENCE_ID_LEN: usize = 64;

/// The query string of `GET /api/v2/alerts` or `GET /api/v2/alerts/groups` (without `?`),
/// returned with the tenant's `filter` matcher first and the client's parameters after it,
/// as they came. Refuses (400) what Go would read differently: a `;`, a bad `%`-escape, a
/// key or value that is not UTF-8, or too many parameters.
pub fn alerts_query(raw: &str, tenant: &Tenant) -> Result<String, ApiError> {
    check_query(raw, 1)?;
    let matcher = tenant_matcher(tenant)?;
    let mut out = String::with_capacity(raw.len() + matcher.len() * 2 + 8);
    out.push_str("filter=");
    out.push_str(&form::escape(&matcher));
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        out.push('&');
        out.push_str(pair);
    }
    Ok(out)
}

/// Checks a query string the way Go's `url.ParseQuery` would read it, with `extra`
/// parameters still to be added.
fn check_query(raw: &str, extra: usize) -> Result<(), ApiError> {
    form::check_count(raw, extra).map_err(|e| ApiError::bad_data(e.0))?;
    form::parse(raw)
        .map(drop)
        .map_err(|e| ApiError::bad_data(e.0))
}

/// The tenant matcher as Alertmanager's `filter` parameter reads it: `project="p1"`, or
/// `project=~"p1|c1"` for several projects.
pub fn tenant_matcher(tenant: &Tenant) -> Result<String, ApiError> {
    let label = tenant.label();
    if !is_label_name(label) {
        return Err(internal(format!(
            "the tenant label {label:?} is not a valid Alertmanager label name"
        )));
    }
    let values = tenant_values(tenant)?;
    Ok(match values {
        [only] => format!("{label}={}", quote(only)),
        many => {
            let alternatives: Vec<String> = many.iter().map(|v| regex_escape(v)).collect();
            format!("{label}=~{}", quote(&alternatives.join("|")))
        }
    })
}

/// The tenant's values, none of them empty (`project=""` would select alerts without the
/// label, and `=~"p1|"` those too).
fn tenant_values(tenant: &Tenant) -> Result<&[String], ApiError> {
    let values = tenant.values();
    if values.is_empty() || values.iter().any(String::is_empty) {
        return Err(internal("the tenant has no project id, or an empty one"));
    }
    Ok(values)
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(500, "internal", message)
}

/// A label name as the classic matcher parser reads it: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A double-quoted matcher value that the classic parser and `strconv.Unquote` read back as
/// `s`: only `\`, `"` and a line feed are escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether a silence (GettableSilence JSON) is the tenant's: see the module documentation.
pub fn is_tenants(silence: &Value, tenant: &Tenant) -> bool {
    let Some(matchers) = silence.get("matchers").and_then(Value::as_array) else {
        return false;
    };
    let mut owned = false;
    for m in matchers {
        if m.get("name").and_then(Value::as_str) != Some(tenant.label()) {
            continue;
        }
        let kind = match matcher_kind(m) {
            Ok(kind) => kind,
            // A matcher on the tenant label that cannot be read: not provably the tenant's.
            Err(_) => return false,
        };
        if kind != Kind::Equal {
            continue;
        }
        let Some(value) = m.get("value").and_then(Value::as_str) else {
            return false;
        };
        if value.is_empty() || !tenant.values().iter().any(|v| v == value) {
            // Names another project (or none): this silence is not only the tenant's.
            return false;
        }
        owned = true;
    }
    owned
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// A matcher's type as Alertmanager reads it: `isEqual` absent or null is true, `isRegex`
/// absent or null is false (`PostableSilenceToProto`); any other non-boolean is an error.
fn matcher_kind(m: &Value) -> Result<Kind, String> {
    let flag = |key: &str, default: bool| match m.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(format!(
            "the matcher's {key} must be true or false, not {other}"
        )),
    };
    Ok(match (flag("isEqual", true)?, flag("isRegex", false)?) {
        (true, false) => Kind::Equal,
        (false, false) => Kind::NotEqual,
        (true, true) => Kind::Regex,
        (false, true) => Kind::NotRegex,
    })
}

fn too_large(what: &str, max_bytes: usize) -> String {
    format!("{what} is larger than {max_bytes} bytes")
}

/// The answer of `GET /api/v2/silences` (a JSON array of GettableSilence), keeping only the
/// tenant's silences. An answer that is not such an array is an error (the flow answers 502).
pub fn filter_silences(body: &[u8], tenant: &Tenant, max_bytes: usize) -> Result<Vec<u8>, String> {
    if body.len() > max_bytes {
        return Err(too_large("the silences answer", max_bytes));
    }
    let mut silences: Vec<Value> = serde_json::from_slice(body)
        .map_err(|e| format!("the silences answer is not a JSON array: {e}"))?;
    silences.retain(|s| is_tenants(s, tenant));
    serde_json::to_vec(&silences).map_err(|e| e.to_string())
}

/// Whether the answer of `GET /api/v2/silence/{id}` may be shown to the tenant (else the flow
/// answers 403); also the pre-check of an update or a `DELETE`. An answer that is not a JSON
/// object is an error.
pub fn silence_answer(body: &[u8], tenant: &Tenant) -> Result<bool, String> {
    let silence: Value =
        serde_json::from_slice(body).map_err(|e| format!("the silence answer is not JSON: {e}"))?;
    if !silence.is_object() {
        return Err("the silence answer is not a JSON object".into());
    }
    Ok(is_tenants(&silence, tenant))
}

/// A `POST /api/v2/silences` body, enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnforcedSilence {
    /// The body to send upstream.
    pub body: Vec<u8>,
    /// The id of the silence it updates (a valid [`valid_silence_id`]); `None`: a new silence.
    pub id: Option<String>,
}

/// Field names of a PostableSilence, and of its matchers.
const SILENCE_FIELDS: &[&str] = &[
    "id",
    "matchers",
    "startsAt",
    "endsAt",
    "createdBy",
    "comment",
];
const MATCHER_FIELDS: &[&str] = &["name", "value", "isRegex", "isEqual"];

/// Enforces a PostableSilence: every matcher on the tenant label is replaced by the tenant's
/// equality matcher; every other field passes as it came (unknown ones too).
///
/// Refuses: a body over `max_bytes` (413); one that is not a JSON object with a `matchers`
/// array of `{name, value, isRegex, isEqual}` objects, or whose keys differ from a field name
/// only in case, or with an `id` that is not a plausible silence id (400); a silence whose
/// other matchers all match the empty string (or are none), which would silence the whole
/// project (400); a tenant with several projects (422): a silence belongs to one project.
pub fn enforce_silence(
    body: &[u8],
    tenant: &Tenant,
    max_bytes: usize,
) -> Result<EnforcedSilence, ApiError> {
    let project = match tenant_values(tenant)? {
        [only] => only.clone(),
        _ => {
            return Err(ApiError::new(
                422,
                "bad_data",
                "a silence must belong to one project, and this token's scope spans several (a project and \
                 its sub-projects); create the silence with a token scoped to the project it is for",
            ))
        }
    };
    if body.len() > max_bytes {
        return Err(ApiError::too_large(too_large("the silence", max_bytes)));
    }
    let mut doc: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_data(format!("the silence is not valid JSON: {e}")))?;
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_data("the silence must be a JSON object"))?;
    check_keys(obj, SILENCE_FIELDS, "the silence")?;
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if valid_silence_id(s) => Some(s.clone()),
        Some(Value::String(s)) => {
            return Err(ApiError::bad_data(format!(
                "the silence id {s:?} is not a valid silence id"
            )));
        }
        Some(_) => return Err(ApiError::bad_data("the silence id must be a string")),
    };
    let matchers = obj
        .get_mut("matchers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| ApiError::bad_data("the silence must have a \"matchers\" array"))?;
    for m in matchers.iter() {
        check_matcher(m)?;
    }
    let label = tenant.label();
    matchers.retain(|m| m.get("name").and_then(Value::as_str) != Some(label));
    if matches_only_empty(matchers) {
        return Err(ApiError::bad_data(format!(
            "the silence has no matcher besides {label}, or only matchers that match the empty string: it would \
             silence the whole project; add a matcher such as alertname=\"…\""
        )));
    }
    let mut tenant_matcher = Map::new();
    tenant_matcher.insert("name".into(), Value::String(label.to_string()));
    tenant_matcher.insert("value".into(), Value::String(project));
    tenant_matcher.insert("isRegex".into(), Value::Bool(false));
    tenant_matcher.insert("isEqual".into(), Value::Bool(true));
    matchers.push(Value::Object(tenant_matcher));
    let body = serde_json::to_vec(&doc).map_err(|e| internal(e.to_string()))?;
    Ok(EnforcedSilence { body, id })
}

/// One matcher of a PostableSilence: an object with a string `name` and `value` and boolean
/// (or absent) `isRegex` and `isEqual`.
fn check_matcher(m: &Value) -> Result<(), ApiError> {
    let obj = m
        .as_object()
        .ok_or_else(|| ApiError::bad_data("every matcher must be a JSON object"))?;
    check_keys(obj, MATCHER_FIELDS, "a matcher")?;
    for key in ["name", "value"] {
        if !obj.get(key).is_some_and(Value::is_string) {
            return Err(ApiError::bad_data(format!(
                "every matcher must have a string \"{key}\""
            )));
        }
    }
    matcher_kind(m).map(drop).map_err(ApiError::bad_data)
}

/// Refuses keys that Go's `encoding/json` would take for one of `fields` though they are
/// not exactly it.
fn check_keys(obj: &Map<String, Value>, fields: &[&str], what: &str) -> Result<(), ApiError> {
    for key in obj.keys() {
        if let Some(field) = fields.iter().find(|f| *f != key && folds_to(key, f)) {
            return Err(ApiError::bad_data(format!(
                "{what} has the key {key:?}, which Alertmanager would read as {field:?}; write {field:?}"
            )));
        }
    }
    Ok(())
}

/// Whether `key` equals the ASCII `field` under Unicode simple case folding, as Go's
/// `encoding/json` compares them: ASCII case, plus `ſ` (U+017F) for `s` and the Kelvin sign
/// (U+212A) for `k`, the only non-ASCII characters that fold to ASCII letters.
fn folds_to(key: &str, field: &str) -> bool {
    let mut fc = field.chars();
    for k in key.chars() {
        let Some(f) = fc.next() else { return false };
        let f = f.to_ascii_lowercase();
        let k = match k {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            k => k.to_ascii_lowercase(),
        };
        if k != f {
            return false;
        }
    }
    fc.next().is_none()
}

/// The most regex matchers whose patterns [`matches_only_empty`] compiles; past them a silence
/// is taken as not matching only the empty string (a usability check, not a safety one: the
/// tenant matcher is there either way).
const MAX_REGEXES_CHECKED: usize = 16;

/// Whether every matcher matches the empty string (or there is none), by Alertmanager's own
/// test (`silence.matchesEmpty`): an equality matcher with an empty value, or a regex matcher
/// whose pattern matches the empty string; negative matchers count as not matching it.
/// Alertmanager wants one matcher that does not, and the tenant's own would be that one, so
/// the silence would cover the whole project. Regexes are compiled last and few, small.
fn matches_only_empty(matchers: &[Value]) -> bool {
    let value = |m: &Value| {
        m.get("value")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let mut regexes = Vec::new();
    for m in matchers {
        match matcher_kind(m) {
            Ok(Kind::Equal) if value(m).is_empty() => {}
            Ok(Kind::Regex) => regexes.push(value(m)),
            _ => return false,
        }
    }
    regexes.len() <= MAX_REGEXES_CHECKED
        && regexes.iter().all(|pattern| {
            regex::RegexBuilder::new(pattern)
                .size_limit(1 << 16)
                .build()
                // A pattern Rust refuses (or too large) is left to Alertmanager to judge.
                .is_ok_and(|re| re.is_match(""))
        })
}

/// Whether `id` is a plausible silence id, safe to put into a path: 1 to 64 ASCII letters,
/// digits and `-` (Alertmanager's ids are UUIDs). Everything else (`/`, `?`, `#`, `%`, `.`,
/// control characters, spaces, non-ASCII) is refused.
pub fn valid_silence_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SILENCE_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The silence id of a `/api/v2/silence/{id}` path, given the path after `/api/v2/silence/`;
/// `None` when it is not one valid id (a query string, a further `/`, an escape…).
pub fn silence_id_of_path(rest: &str) -> Option<&str> {
    valid_silence_id(rest).then_some(rest)
}

// ------------------------------------------------------------------------------- enforcers

/// `GET /api/v2/alerts` and `GET /api/v2/alerts/groups`: the tenant's `filter` is added.
pub struct AmAlerts;

/// `GET /api/v2/silences` (the answer filtered) and `POST /api/v2/silences` (the tenant's
/// matcher forced in; an update of an existing silence only if that one is the tenant's).
pub struct AmSilences;

/// `GET` and `DELETE /api/v2/silence/{id}`: only a silence of the tenant's.
pub struct AmSilence;

/// Alertmanager's clients (amtool, go-swagger) read an error as a JSON string.
fn refusal_body(e: &ApiError) -> Vec<u8> {
    e.body_as_string()
}

impl Enforcer for AmAlerts {
    fn refusal_body(&self, e: &ApiError) -> Vec<u8> {
        refusal_body(e)
    }

    fn methods(&self) -> &'static str {
        "GET"
    }

    fn query(
        &self,
        rw: &mut Rewriter,
        out: &mut String,
        raw: &str,
        _body_announced: bool,
    ) -> Result<Option<usize>, ApiError> {
        out.push_str(&alerts_query(raw, rw.tenant)?);
        Ok(Some(1))
    }
}

impl Enforcer for AmSilences {
    fn refusal_body(&self, e: &ApiError) -> Vec<u8> {
        refusal_body(e)
    }

    fn methods(&self) -> &'static str {
        "GET, POST"
    }

    fn body(&self, cx: BodyContext, body: &[u8], _url_params: usize) -> Result<Forward, ApiError> {
        // An unrestricted scope's silences go as they are.
        let Some(tenant) = cx.tenant else {
            return Ok(Forward::Body(body.to_vec()));
        };
        let silence = enforce_silence(body, tenant, cx.config.alertmanager.max_body_bytes)?;
        Ok(match silence.id {
            Some(id) => Forward::After(silence.body, Lookup::SilenceOwner(id)),
            None => Forward::Body(silence.body),
        })
    }

    fn check_body(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Result<(), ApiError> {
        if !media_type(content_type).eq_ignore_ascii_case("application/json") {
            return Err(ApiError::unsupported_media_type(
                "a silence must be sent as application/json",
            ));
        }
        if !uncompressed(content_encoding) {
            return Err(ApiError::unsupported_media_type(
                "a silence must not be compressed",
            ));
        }
        Ok(())
    }

    fn answer(&self, method: &str) -> Option<AnswerKind> {
        (method == "GET").then_some(AnswerKind::Silences)
    }

    fn needs_body(&self) -> bool {
        true
    }

    fn max_body_bytes(&self, config: &Config) -> usize {
        config.alertmanager.max_body_bytes
    }
}

impl Enforcer for AmSilence {
    fn refusal_body(&self, e: &ApiError) -> Vec<u8> {
        refusal_body(e)
    }

    fn methods(&self) -> &'static str {
        "GET, DELETE"
    }

    fn lookup(&self, _method: &str, path: &str) -> Option<Lookup> {
        let (_, id) = path.rsplit_once("/api/v2/silence/")?;
        silence_id_of_path(id).map(|id| Lookup::SilenceOwner(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t() -> Tenant {
        Tenant::new("project", vec!["p1".into()])
    }

    fn subs() -> Tenant {
        Tenant::new("project", vec!["p1".into(), "c.1".into()])
    }

    /// Alertmanager 0.25's classic matcher parser (`pkg/labels.ParseMatcher`), reduced to
    /// what the tests need: the name, the operator and the unescaped value.
    fn classic_parse(s: &str) -> Option<(String, String, String)> {
        let re = regex::Regex::new(r#"^[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)[\t\n\f\r ]*((?s).*?)[\t\n\f\r ]*$"#).unwrap();
        let caps = re.captures(s)?;
        let mut raw = caps[3].to_string();
        let quoted = raw.starts_with('"');
        if quoted {
            raw.remove(0);
        }
        let (mut out, mut escaped, mut expect_quote) = (String::new(), false, quoted);
        let n = raw.len();
        for (i, c) in raw.char_indices() {
            if escaped {
                escaped = false;
                match c {
                    'n' => out.push('\n'),
                    '"' | '\\' => out.push(c),
                    c => {
                        out.push('\\');
                        out.push(c)
                    }
                }
                continue;
            }
            match c {
                '\\' if i < n - 1 => escaped = true,
                '\\' => out.push('\\'),
                '"' => {
                    if !expect_quote || i < n - 1 {
                        return None;
                    }
                    expect_quote = false;
                }
                c => out.push(c),
            }
        }
        if expect_quote {
            return None;
        }
        Some((caps[1].to_string(), caps[2].to_string(), out))
    }

    /// Go's `strconv.Unquote` of a double-quoted string, for the escapes `quote` writes, as
    /// the UTF-8 matcher parser reads a value.
    fn unquote(s: &str) -> Option<String> {
        let inner = s.strip_prefix('"')?.strip_suffix('"')?;
        let (mut out, mut chars) = (String::new(), inner.chars());
        while let Some(c) = chars.next() {
            match c {
                '\n' | '"' => return None,
                '\\' => match chars.next()? {
                    'n' => out.push('\n'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    _ => return None,
                },
                c => out.push(c),
            }
        }
        Some(out)
    }

    fn filter_of(query: &str) -> String {
        let params = form::parse(query).unwrap();
        assert_eq!(params[0].key, "filter");
        params[0].value.clone()
    }

    #[test]
    fn alerts_query_adds_the_tenant_filter_first() {
        assert_eq!(alerts_query("", &t()).unwrap(), "filter=project%3D%22p1%22");
        let out = alerts_query(
            "active=true&filter=alertname%3D%22X%22&silenced=false&receiver=team.*",
            &t(),
        )
        .unwrap();
        assert_eq!(
            out,
            "filter=project%3D%22p1%22&active=true&filter=alertname%3D%22X%22&silenced=false&receiver=team.*"
        );
        let p = form::parse(&out).unwrap();
        assert_eq!(p.iter().filter(|p| p.key == "filter").count(), 2);
        assert_eq!(p[0].value, r#"project="p1""#);
        // Empty pairs go; the user's own tenant filter stays, ANDed.
        let out = alerts_query("&&filter=project%3D%22p2%22&", &t()).unwrap();
        assert_eq!(out, "filter=project%3D%22p1%22&filter=project%3D%22p2%22");
    }

    #[test]
    fn sub_projects_are_one_anchored_regex_of_escaped_ids() {
        let f = filter_of(&alerts_query("", &subs()).unwrap());
        assert_eq!(f, r#"project=~"p1|c\\.1""#);
        let (name, op, value) = classic_parse(&f).unwrap();
        assert_eq!(
            (name.as_str(), op.as_str(), value.as_str()),
            ("project", "=~", r"p1|c\.1")
        );
        let re = regex::Regex::new(&format!("^(?:{value})$")).unwrap();
        assert!(re.is_match("p1") && re.is_match("c.1"));
        assert!(!re.is_match("cx1") && !re.is_match("p1|c.1") && !re.is_match("p12"));
    }

    #[test]
    fn matcher_values_read_back_alike_in_both_parsers() {
        for value in [
            "p1",
            "4f1c0a",
            r#"a"b"#,
            r"a\b",
            r"a\",
            r#"\""#,
            "a\nb",
            "a\tb\rc",
            "a,b}",
            "{x}",
            " lead and trail ",
            "ü-日本-🎉",
            r"a\nb",
            "=~!",
            "\u{7f}\u{1}",
        ] {
            let tenant = Tenant::new("project_id", vec![value.to_string()]);
            let f = filter_of(&alerts_query("", &tenant).unwrap());
            let (name, op, parsed) =
                classic_parse(&f).unwrap_or_else(|| panic!("classic refuses {f:?}"));
            assert_eq!((name.as_str(), op.as_str()), ("project_id", "="));
            assert_eq!(parsed, value, "classic parser, {f:?}");
            let quoted = f.strip_prefix("project_id=").unwrap();
            assert_eq!(
                unquote(quoted).as_deref(),
                Some(value),
                "strconv.Unquote, {f:?}"
            );
        }
    }

    #[test]
    fn alerts_query_refuses_what_go_reads_differently() {
        for bad in [
            "a=1;b=2",
            "filter=%zz",
            "filter=%4",
            "active=%ff",
            "%ff=1",
            "x=%e2%82",
        ] {
            let e = alerts_query(bad, &t()).unwrap_err();
            assert_eq!((e.status, e.error_type), (400, "bad_data"), "{bad}");
        }
        // Go counts `&` + 1, empty pairs included; the tenant's filter counts too.
        let many = "&".repeat(MAX_QUERY_PARAMS - 2);
        assert!(alerts_query(&many, &t()).is_ok());
        let too_many = "&".repeat(MAX_QUERY_PARAMS - 1);
        assert_eq!(alerts_query(&too_many, &t()).unwrap_err().status, 400);
        let huge = "a=1&".repeat(20_000);
        assert_eq!(alerts_query(&huge, &t()).unwrap_err().status, 400);
    }

    #[test]
    fn a_bad_tenant_is_an_internal_error() {
        for tenant in [
            Tenant::new("project", vec![]),
            Tenant::new("project", vec![String::new()]),
            Tenant::new("project", vec!["p1".into(), String::new()]),
            Tenant::new("proj-ect", vec!["p1".into()]),
            Tenant::new("1project", vec!["p1".into()]),
            Tenant::new("", vec!["p1".into()]),
        ] {
            assert_eq!(
                alerts_query("", &tenant).unwrap_err().status,
                500,
                "{tenant:?}"
            );
        }
        assert!(alerts_query("", &Tenant::new("_a:b9", vec!["p".into()])).is_ok());
    }

    fn silence(matchers: Value) -> Value {
        json!({"id":"7e1c51d1-8c2e-4d43-b4a4-53b5f0e0a2d1","status":{"state":"active"},
               "updatedAt":"2023-01-01T00:00:00Z","matchers":matchers,"startsAt":"2023-01-01T00:00:00Z",
               "endsAt":"2030-01-01T00:00:00Z","createdBy":"me","comment":"c"})
    }

    fn m(name: &str, value: &str, is_regex: bool, is_equal: bool) -> Value {
        json!({"name":name,"value":value,"isRegex":is_regex,"isEqual":is_equal})
    }

    #[test]
    fn only_equality_matchers_make_a_silence_the_tenants() {
        let job = m("job", "x", false, true);
        let cases = [
            (json!([m("project", "p1", false, true), job.clone()]), true),
            (json!([m("project", "p1", false, true)]), true),
            // isEqual absent (Alertmanager before 0.22) or null means equal.
            (
                json!([{"name":"project","value":"p1","isRegex":false}]),
                true,
            ),
            (
                json!([{"name":"project","value":"p1","isRegex":false,"isEqual":null}]),
                true,
            ),
            (json!([{"name":"project","value":"p1"}]), true),
            // An equality confines it; further matchers on the label only narrow it.
            (
                json!([
                    m("project", "p1", false, true),
                    m("project", "p2", false, false)
                ]),
                true,
            ),
            (
                json!([
                    m("project", "p1", false, true),
                    m("project", "p.*", true, true)
                ]),
                true,
            ),
            // Negative, regex, other projects, look-alikes.
            (
                json!([m("project", "p1", false, false), job.clone()]),
                false,
            ),
            (json!([m("project", "p2", false, false)]), false),
            (json!([m("project", "p1|p2", true, true)]), false),
            (json!([m("project", "p1", true, true)]), false),
            (json!([m("project", "p1", true, false)]), false),
            (json!([m("project", "p2", false, true)]), false),
            (
                json!([
                    m("project", "p1", false, true),
                    m("project", "p2", false, true)
                ]),
                false,
            ),
            (json!([m("Project", "p1", false, true)]), false),
            (json!([m("project_id", "p1", false, true)]), false),
            (json!([m("project", "P1", false, true)]), false),
            (json!([m("project", "p1 ", false, true)]), false),
            (json!([m("project", "", false, true)]), false),
            (json!([job.clone()]), false),
            (json!([]), false),
            // Wrong types on the tenant label: not provably the tenant's.
            (
                json!([{"name":"project","value":"p1","isRegex":"false","isEqual":true}]),
                false,
            ),
            (
                json!([{"name":"project","value":"p1","isRegex":false,"isEqual":1}]),
                false,
            ),
            (
                json!([{"name":"project","value":1,"isRegex":false,"isEqual":true}]),
                false,
            ),
            (
                json!([{"name":"project","value":["p1"],"isRegex":false}]),
                false,
            ),
            (
                json!([m("project", "p1", false, true), {"name":"project","value":"p1","isRegex":0}]),
                false,
            ),
        ];
        for (matchers, want) in cases {
            assert_eq!(
                is_tenants(&silence(matchers.clone()), &t()),
                want,
                "{matchers}"
            );
        }
        for bad in [
            json!(null),
            json!([]),
            json!("x"),
            json!({"matchers":{}}),
            json!({"matchers":"p1"}),
            json!({}),
        ] {
            assert!(!is_tenants(&bad, &t()), "{bad}");
        }
        // Non-object matchers elsewhere do not matter.
        assert!(is_tenants(
            &silence(json!([1, null, m("project", "p1", false, true)])),
            &t()
        ));
    }

    #[test]
    fn sub_projects_own_each_of_their_silences() {
        let tenant = subs();
        assert!(is_tenants(
            &silence(json!([m("project", "c.1", false, true)])),
            &tenant
        ));
        assert!(is_tenants(
            &silence(json!([m("project", "p1", false, true)])),
            &tenant
        ));
        assert!(!is_tenants(
            &silence(json!([m("project", "p1|c\\.1", true, true)])),
            &tenant
        ));
        assert!(!is_tenants(
            &silence(json!([m("project", "cx1", false, true)])),
            &tenant
        ));
    }

    #[test]
    fn silences_are_filtered() {
        let list = json!([
            silence(json!([m("project", "p1", false, true)])),
            silence(json!([m("project", "p1", false, false)])),
            silence(json!([m("project", "p2", false, true)])),
            silence(json!([m("project", "p1|p2", true, true)])),
            "not a silence",
            42,
            silence(json!([{"name":"project","value":"p1","isRegex":false}])),
        ]);
        let out = filter_silences(list.to_string().as_bytes(), &t(), 1 << 20).unwrap();
        let v: Vec<Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.len(), 2);
        assert!(v.iter().all(|s| is_tenants(s, &t())));
        assert_eq!(v[0]["comment"], "c", "fields pass unchanged");
        assert_eq!(filter_silences(b"[]", &t(), 10).unwrap(), b"[]");
        assert_eq!(filter_silences(b" [ ] ", &t(), 10).unwrap(), b"[]");
    }

    #[test]
    fn unreadable_silence_answers_are_errors() {
        for bad in [
            "",
            "{}",
            "null",
            "\"x\"",
            "[",
            "[1,",
            "{\"data\":[]}",
            "[1]x",
        ] {
            assert!(
                filter_silences(bad.as_bytes(), &t(), 1 << 20).is_err(),
                "{bad}"
            );
        }
        let big = list_of(1000);
        assert!(
            filter_silences(big.as_bytes(), &t(), big.len() - 1).is_err(),
            "max_bytes"
        );
        assert!(filter_silences(big.as_bytes(), &t(), big.len()).is_ok());
        // Deep nesting is an error, not a stack overflow.
        let deep = format!("[{}{}]", "[".repeat(100_000), "]".repeat(100_000));
        assert!(filter_silences(deep.as_bytes(), &t(), 1 << 20).is_err());
        let deep_in_field = format!(
            r#"[{{"matchers":[],"comment":{}1{}}}]"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert!(filter_silences(deep_in_field.as_bytes(), &t(), 1 << 20).is_err());
        // Invalid UTF-8 inside a string.
        assert!(filter_silences(b"[{\"comment\":\"\xff\"}]", &t(), 1 << 20).is_err());
    }

    fn list_of(n: usize) -> String {
        let one = silence(json!([m("project", "p1", false, true)]));
        Value::Array(vec![one; n]).to_string()
    }

    #[test]
    fn single_silence_answers() {
        let mine = silence(json!([
            m("project", "p1", false, true),
            m("alertname", "X", false, true)
        ]));
        assert_eq!(silence_answer(mine.to_string().as_bytes(), &t()), Ok(true));
        let negative = silence(json!([m("project", "p2", false, false)]));
        assert_eq!(
            silence_answer(negative.to_string().as_bytes(), &t()),
            Ok(false)
        );
        let regex = silence(json!([m("project", "p1", true, true)]));
        assert_eq!(
            silence_answer(regex.to_string().as_bytes(), &t()),
            Ok(false)
        );
        for bad in ["", "[]", "null", "1", "{", "\"silence\""] {
            assert!(silence_answer(bad.as_bytes(), &t()).is_err(), "{bad}");
        }
        let deep = format!(
            "{{\"matchers\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(silence_answer(deep.as_bytes(), &t()).is_err());
    }

    fn post(v: Value) -> Result<EnforcedSilence, ApiError> {
        enforce_silence(v.to_string().as_bytes(), &t(), 1 << 20)
    }

    fn postable(matchers: Value) -> Value {
        json!({"matchers":matchers,"startsAt":"2023-01-01T00:00:00Z","endsAt":"2030-01-01T00:00:00Z",
               "createdBy":"me","comment":"c"})
    }

    fn tenant_matchers(body: &[u8]) -> Vec<Value> {
        let v: Value = serde_json::from_slice(body).unwrap();
        v["matchers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["name"] == "project")
            .cloned()
            .collect()
    }

    #[test]
    fn silences_get_the_tenant_matcher_in_place_of_the_users() {
        for user in [
            json!([m("alertname", "X", false, true)]),
            json!([
                m("alertname", "X", false, true),
                m("project", "p2", false, false)
            ]),
            json!([
                m("alertname", "X", false, true),
                m("project", ".*", true, true)
            ]),
            json!([
                m("alertname", "X", false, true),
                m("project", "p2", false, true),
                m("project", "p1", false, true)
            ]),
            json!([
                m("project", "p2", true, false),
                m("alertname", "X", false, true)
            ]),
        ] {
            let out = post(postable(user.clone())).unwrap();
            assert_eq!(out.id, None);
            assert_eq!(
                tenant_matchers(&out.body),
                vec![m("project", "p1", false, true)],
                "{user}"
            );
            let v: Value = serde_json::from_slice(&out.body).unwrap();
            assert!(is_tenants(&v, &t()));
            assert_eq!(v["matchers"][0], m("alertname", "X", false, true));
            assert_eq!(v["comment"], "c");
        }
    }

    #[test]
    fn other_fields_pass_unchanged() {
        let mut body =
            postable(json!([{"name":"alertname","value":"X","isRegex":false,"extra":{"k":[1,2]}}]));
        body["unknownField"] = json!({"nested":true});
        body["id"] = json!("7e1c51d1-8c2e-4d43-b4a4-53b5f0e0a2d1");
        let out = post(body.clone()).unwrap();
        assert_eq!(
            out.id.as_deref(),
            Some("7e1c51d1-8c2e-4d43-b4a4-53b5f0e0a2d1")
        );
        let v: Value = serde_json::from_slice(&out.body).unwrap();
        let mut want = body;
        want["matchers"]
            .as_array_mut()
            .unwrap()
            .push(m("project", "p1", false, true));
        assert_eq!(v, want);
    }

    #[test]
    fn update_ids_are_checked() {
        for (id, want) in [
            (json!(null), Ok(None)),
            (json!(""), Ok(None)),
            (json!("abc-123"), Ok(Some("abc-123".to_string()))),
            (json!("../silences"), Err(400)),
            (json!("a/b"), Err(400)),
            (json!("a?b"), Err(400)),
            (json!("a#b"), Err(400)),
            (json!("a%2Fb"), Err(400)),
            (json!("a\nb"), Err(400)),
            (json!("a b"), Err(400)),
            (json!("é"), Err(400)),
            (json!("a".repeat(65)), Err(400)),
            (json!(12), Err(400)),
            (json!(["x"]), Err(400)),
        ] {
            let mut body = postable(json!([m("alertname", "X", false, true)]));
            body["id"] = id.clone();
            assert_eq!(post(body).map(|e| e.id).map_err(|e| e.status), want, "{id}");
        }
    }

    #[test]
    fn a_silence_of_the_whole_project_is_refused() {
        for matchers in [
            json!([]),
            json!([m("project", "p1", false, true)]),
            json!([m("project", "p2", false, false)]),
            json!([m("alertname", "", false, true)]),
            json!([
                m("alertname", ".*", true, true),
                m("project", "p1", false, true)
            ]),
            json!([m("alertname", "a|", true, true)]),
            json!([m("alertname", "x*", true, true), m("job", "", false, true)]),
            Value::Array(vec![m("alertname", ".*", true, true); MAX_REGEXES_CHECKED]),
        ] {
            let e = post(postable(matchers.clone())).unwrap_err();
            assert_eq!(e.status, 400, "{matchers}");
            assert!(e.message.contains("whole project"), "{}", e.message);
        }
        // Alertmanager's own rule: negative matchers count as not matching the empty string.
        for ok in [
            json!([m("alertname", "X", false, false)]),
            json!([m("alertname", ".*", true, false)]),
            json!([m("alertname", ".+", true, true)]),
            json!([m("alertname", "", false, true), m("job", "x", false, true)]),
            // A pattern Rust cannot compile is Alertmanager's to judge.
            json!([m("alertname", "(", true, true)]),
            json!([m("alertname", "(a{100}){100}|", true, true)]),
            Value::Array(vec![
                m("alertname", ".*", true, true);
                MAX_REGEXES_CHECKED + 1
            ]),
        ] {
            assert!(post(postable(ok.clone())).is_ok(), "{ok}");
        }
    }

    #[test]
    fn hostile_silences_stay_cheap() {
        // Many large regexes that match the empty string: few are compiled, and small.
        let heavy = m("alertname", "((a{100}){100}){100}|", true, true);
        let body = postable(Value::Array(vec![heavy.clone(); 20_000])).to_string();
        let start = std::time::Instant::now();
        assert!(enforce_silence(body.as_bytes(), &t(), 1 << 24).is_ok());
        let few = postable(Value::Array(vec![heavy; MAX_REGEXES_CHECKED])).to_string();
        assert!(
            enforce_silence(few.as_bytes(), &t(), 1 << 24).is_ok(),
            "too large for Rust: Alertmanager judges"
        );
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        // Many tenant matchers all go, one comes.
        let mut many = vec![m("project", "p2", false, false); 10_000];
        many.push(m("alertname", "X", false, true));
        let out = post(postable(Value::Array(many))).unwrap();
        assert_eq!(tenant_matchers(&out.body).len(), 1);
    }

    #[test]
    fn sub_project_scopes_cannot_create_silences() {
        let body = postable(json!([m("alertname", "X", false, true)])).to_string();
        let e = enforce_silence(body.as_bytes(), &subs(), 1 << 20).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.message.contains("one project"), "{}", e.message);
        let e = enforce_silence(
            body.as_bytes(),
            &Tenant::new("project", vec![String::new()]),
            1 << 20,
        )
        .unwrap_err();
        assert_eq!(e.status, 500);
    }

    #[test]
    fn malformed_silences_are_bad_data() {
        let x = m("alertname", "X", false, true);
        for bad in [
            json!(null),
            json!([]),
            json!("silence"),
            json!({}),
            json!({"matchers":null}),
            json!({"matchers":{}}),
            json!({"matchers":"alertname=X"}),
            json!({"matchers":[1]}),
            json!({"matchers":[null]}),
            json!({"matchers":[x, {"name":"job"}]}),
            json!({"matchers":[x, {"value":"v"}]}),
            json!({"matchers":[x, {"name":1,"value":"v"}]}),
            json!({"matchers":[x, {"name":"project","value":1}]}),
            json!({"matchers":[x, {"name":"job","value":"v","isRegex":"true"}]}),
            json!({"matchers":[x, {"name":"job","value":"v","isEqual":0}]}),
            // Keys Go's encoding/json would take for a field the filter enforces.
            json!({"matchers":[x], "Matchers":[m("alertname", "X", false, true)]}),
            json!({"matchers":[x], "MATCHERS":[]}),
            json!({"matchers":[x], "matcher\u{17F}":[]}),
            json!({"matchers":[x], "id":"a", "ID":"b"}),
            json!({"matchers":[x], "Id":"b"}),
            json!({"matchers":[x, {"name":"job","value":"v","Name":"project"}]}),
            json!({"matchers":[x, {"name":"job","value":"v","isregex":true}]}),
            json!({"matchers":[x, {"name":"job","value":"v","i\u{17F}Regex":true}]}),
            json!({"matchers":[x, {"name":"job","value":"v","NAME":"x"}]}),
            json!({"matchers":[x], "StartsAt":"2023-01-01T00:00:00Z"}),
        ] {
            let e = post(bad.clone()).unwrap_err();
            assert_eq!((e.status, e.error_type), (400, "bad_data"), "{bad}");
        }
        for raw in [
            "",
            "{",
            "{\"matchers\":[]",
            "{\"matchers\":[]}x",
            "\u{feff}{}",
        ] {
            assert_eq!(
                enforce_silence(raw.as_bytes(), &t(), 1 << 20)
                    .unwrap_err()
                    .status,
                400,
                "{raw:?}"
            );
        }
        assert_eq!(
            enforce_silence(b"{\"comment\":\"\xff\"}", &t(), 1 << 20)
                .unwrap_err()
                .status,
            400
        );
        let deep = format!(
            "{{\"matchers\":[],\"comment\":{}{}}}",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(
            enforce_silence(deep.as_bytes(), &t(), 1 << 20)
                .unwrap_err()
                .status,
            400
        );
        let big = postable(json!([x])).to_string();
        assert_eq!(
            enforce_silence(big.as_bytes(), &t(), big.len() - 1)
                .unwrap_err()
                .status,
            413
        );
        assert!(enforce_silence(big.as_bytes(), &t(), big.len()).is_ok());
        // Unknown keys that merely resemble a field pass.
        assert!(post(json!({"matchers":[x], "matcher":1, "ids":2, "comments":3})).is_ok());
    }

    #[test]
    fn key_folding() {
        assert!(folds_to("MATCHERS", "matchers"));
        assert!(folds_to("matcher\u{17F}", "matchers"));
        assert!(folds_to("\u{212A}", "k"));
        assert!(folds_to("isregex", "isRegex"));
        assert!(!folds_to("matcher", "matchers"));
        assert!(!folds_to("matchersx", "matchers"));
        assert!(!folds_to("ıd", "id"), "dotless i does not fold to i");
        assert!(!folds_to("İd", "id"));
    }

    #[test]
    fn silence_ids_and_paths() {
        assert!(valid_silence_id("7e1c51d1-8c2e-4d43-b4a4-53b5f0e0a2d1"));
        assert!(valid_silence_id(&"a".repeat(64)));
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a?b",
            "a#b",
            "a%20",
            "a b",
            "a\0",
            "a\u{7f}",
            "ü",
            "a.b",
            "a_b",
            "a+b",
            &"a".repeat(65),
        ] {
            assert!(!valid_silence_id(bad), "{bad:?}");
        }
        assert_eq!(silence_id_of_path("7e1c51d1-8c2e"), Some("7e1c51d1-8c2e"));
        for bad in ["", "x/", "x/y", "x?force=1", "%2e%2e", "..", "x#f"] {
            assert_eq!(silence_id_of_path(bad), None, "{bad:?}");
        }
    }
}
