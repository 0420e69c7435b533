//! `GET /api/v1/metadata`, filtered down to the tenant's metric names.
//!
//! Prometheus answers metadata (type, help, unit per metric family) from its active targets,
//! with no notion of series or tenants. The filter learns the tenant's metric names from
//! `GET /api/v1/label/__name__/values?match[]={project="…"}` ([`names_path`],
//! [`parse_names`]), keeps them per tenant for a while ([`NamesCache`]), forwards the client's
//! request without its `limit` ([`metadata_query`]), and keeps only the tenant's metrics in
//! the answer before applying `limit` itself ([`filter`]).
//!
//! A metadata entry is the tenant's when the tenant has a series of its family: the name
//! itself, or the name with the suffix its type gives series (`_total` and `_created` for a
//! counter; `_bucket`, `_sum`, `_count` and `_created` for a histogram; `_sum`, `_count` and
//! `_created` for a summary; `_bucket`, `_gsum` and `_gcount` for a gauge histogram; `_info`
//! for an info metric). What it cannot do: Prometheus merges the metadata of every target
//! that exposes a name, so a tenant that has a metric also sees the help texts other targets
//! give the same name.
//!
//! Prometheus 2.42's `metricMetadata` reads `limit` and `metric` (2.46+ also
//! `limit_per_metric`), each the first value of its key. `limit`: empty means no limit, a
//! negative number no limit, 0 an empty answer, anything else that is not a Go `Atoi` number
//! a 400 `limit must be a number`; it counts metrics, chosen in map order (any). Its answer is
//! limited here after filtering, else a limit would be spent on other tenants' metrics.
//! `limit_per_metric` (2.46+): at most that many entries per metric when positive, no limit
//! otherwise; it is forwarded and applied again here (a no-op after a 2.46+ upstream).

use crate::enforce::answers::Kind;
use crate::enforce::form;
use crate::enforce::params::{default_match, Rewriter};
use crate::enforce::promql::Tenant;
use crate::enforce::{Enforcer, Lookup};
use crate::error::ApiError;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;

/// The most parameters a query string may have ([`form::MAX_PARAMS`]).
pub const MAX_QUERY_PARAMS: usize = form::MAX_PARAMS;

/// The upstream path (and query) that lists the tenant's metric names:
/// `<prefix>/api/v1/label/__name__/values?match%5B%5D=%7Bproject%3D%22p1%22%7D`.
pub fn names_path(prefix: &str, tenant: &Tenant) -> String {
    format!(
        "{prefix}/api/v1/label/__name__/values?{}",
        default_match(tenant)
    )
}

#[derive(Deserialize)]
struct NamesAnswer {
    status: String,
    data: Vec<String>,
}

/// The metric names of a label values answer, `{"status":"success","data":[…]}`.
pub fn parse_names(body: &[u8], max_bytes: usize) -> Result<Vec<String>, String> {
    if body.len() > max_bytes {
        return Err(format!(
            "the metric names answer is larger than {max_bytes} bytes"
        ));
    }
    let answer: NamesAnswer = serde_json::from_slice(body)
        .map_err(|e| format!("the metric names answer is not a Prometheus answer: {e}"))?;
    if answer.status != "success" {
        return Err(format!(
            "the metric names answer has status {:?}",
            answer.status
        ));
    }
    Ok(answer.data)
}

/// The limits of a metadata request, which the filter applies after filtering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MetadataParams {
    /// At most this many metrics; `None`: no limit (absent, empty or negative).
    pub limit: Option<usize>,
    /// At most this many entries per metric; `None`: no limit (absent, empty, zero or
    /// negative).
    pub limit_per_metric: Option<usize>,
}

/// The query string of the client's `GET /api/v1/metadata`, for the upstream: `limit` removed
/// (the filter applies it after filtering), every other parameter as it came. Refuses (400)
/// what Go would read differently (`;`, bad `%`-escapes, keys or values that are not UTF-8, too
/// many parameters) and the limits Prometheus refuses, in its words.
pub fn metadata_query(raw: &str) -> Result<(String, MetadataParams), ApiError> {
    form::check_count(raw, 0).map_err(|e| ApiError::bad_data(e.0))?;
    let bad = |e: form::FormError| ApiError::bad_data(e.0);
    let (mut limit, mut limit_per_metric) = (None, None);
    let mut out = String::with_capacity(raw.len());
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        if pair.contains(';') {
            return Err(ApiError::bad_data(
                "a ';' in the query string or form body is not allowed",
            ));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = form::decode(k).map_err(bad)?;
        let value = form::decode(v).map_err(bad)?;
        match key.as_str() {
            // Go's FormValue: the first value counts.
            "limit" => {
                limit.get_or_insert(value);
                continue;
            }
            "limit_per_metric" => {
                limit_per_metric.get_or_insert(value);
            }
            _ => {}
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(pair);
    }
    let params = MetadataParams {
        limit: parse_limit(limit.as_deref(), "limit")?,
        limit_per_metric: parse_limit(limit_per_metric.as_deref(), "limit_per_metric")?
            .filter(|&n| n > 0),
    };
    Ok((out, params))
}

/// A limit as Prometheus reads it: `strconv.Atoi` (an optional sign and decimal digits, in
/// range of a 64-bit int), empty for none, negative for none.
fn parse_limit(value: Option<&str>, name: &str) -> Result<Option<usize>, ApiError> {
    let Some(s) = value.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let n: i64 = s
        .parse()
        .map_err(|_| ApiError::bad_data(format!("{name} must be a number")))?;
    Ok(u64::try_from(n)
        .ok()
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
}

/// A tenant's metric names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameSet(HashSet<String>);

impl NameSet {
    pub fn new(names: Vec<String>) -> NameSet {
        NameSet(names.into_iter().collect())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bytes of its names, as [`NamesCache`] counts them.
    pub fn bytes(&self) -> usize {
        self.0.iter().map(String::len).sum()
    }

    /// Whether a metadata entry of `family`, of type `kind`, is the tenant's: the tenant
    /// has a series of the family, under its name or with a suffix of the type.
    pub fn has_family(&self, family: &str, kind: &str) -> bool {
        if self.contains(family) {
            return true;
        }
        let suffixes: &[&str] = match kind {
            "counter" => &["_total", "_created"],
            "histogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["_sum", "_count", "_created"],
            "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
            "info" => &["_info"],
            _ => &[],
        };
        let mut name = String::with_capacity(family.len() + 8);
        suffixes.iter().any(|suffix| {
            name.clear();
            name.push_str(family);
            name.push_str(suffix);
            self.contains(&name)
        })
    }
}

/// A metadata answer, `{"status":"success","data":{"<metric>":[{type,help,unit}],…}}`,
/// keeping only the tenant's metrics and entries, then `limit_per_metric` entries per metric
/// and `limit` metrics. Other fields (`warnings`…) pass. An answer that is not such a
/// success is an error (the flow answers 502).
pub fn filter(
    body: &[u8],
    names: &NameSet,
    params: &MetadataParams,
    max_bytes: usize,
) -> Result<Vec<u8>, String> {
    if body.len() > max_bytes {
        return Err(format!(
            "the metadata answer is larger than {max_bytes} bytes"
        ));
    }
    let mut doc: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the metadata answer is not JSON: {e}"))?;
    if doc.get("status").and_then(Value::as_str) != Some("success") {
        return Err("the metadata answer is not a success".into());
    }
    let data = doc
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .ok_or("the metadata answer has no data object")?;
    let all = std::mem::take(data);
    let mut kept = Map::new();
    for (family, entries) in all {
        if params.limit.is_some_and(|limit| kept.len() >= limit) {
            break;
        }
        let Value::Array(mut entries) = entries else {
            return Err(format!("the metadata of {family:?} is not an array"));
        };
        entries.retain(|e| {
            let kind = e.get("type").and_then(Value::as_str).unwrap_or_default();
            names.has_family(&family, kind)
        });
        if entries.is_empty() {
            continue;
        }
        if let Some(n) = params.limit_per_metric {
            entries.truncate(n);
        }
        kept.insert(family, Value::Array(entries));
    }
    *data = kept;
    serde_json::to_vec(&doc).map_err(|e| e.to_string())
}

#[derive(Debug)]
struct Entry {
    names: Rc<NameSet>,
    expires: u64,
    bytes: usize,
    seq: u64,
}

/// The tenants' name sets, each kept for `ttl_seconds`, all within `budget_bytes` (keys and
/// names), the oldest evicted first. A set larger than the budget is not kept.
#[derive(Debug)]
pub struct NamesCache {
    ttl: u64,
    budget: usize,
    used: usize,
    next_seq: u64,
    entries: HashMap<String, Entry>,
    /// Insertion order: sequence number to key.
    order: BTreeMap<u64, String>,
}

impl NamesCache {
    pub fn new(ttl_seconds: u64, budget_bytes: usize) -> NamesCache {
        NamesCache {
            ttl: ttl_seconds,
            budget: budget_bytes,
            used: 0,
            next_seq: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// The tenant's names, unless absent or expired (an expired entry goes).
    pub fn get(&mut self, tenant_key: &str, now_s: u64) -> Option<Rc<NameSet>> {
        let expires = self.entries.get(tenant_key)?.expires;
        if now_s >= expires {
            self.remove(tenant_key);
            return None;
        }
        self.entries.get(tenant_key).map(|e| Rc::clone(&e.names))
    }

    /// Keeps the tenant's names (in place of any it had), evicting the oldest entries to make
    /// room, and returns them; kept only if they fit the budget and the ttl is not zero.
    pub fn insert(&mut self, tenant_key: &str, names: Vec<String>, now_s: u64) -> Rc<NameSet> {
        self.remove(tenant_key);
        let names = Rc::new(NameSet::new(names));
        let bytes = tenant_key.len().saturating_add(names.bytes());
        if bytes > self.budget || self.ttl == 0 {
            return names;
        }
        while self.used + bytes > self.budget {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.used -= e.bytes;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, tenant_key.to_string());
        let expires = now_s.saturating_add(self.ttl);
        self.entries.insert(
            tenant_key.to_string(),
            Entry {
                names: Rc::clone(&names),
                expires,
                bytes,
                seq,
            },
        );
        self.used += bytes;
        names
    }

    fn remove(&mut self, tenant_key: &str) {
        if let Some(e) = self.entries.remove(tenant_key) {
            self.order.remove(&e.seq);
            self.used -= e.bytes;
        }
    }

    /// The bytes kept (keys and names).
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

// ------------------------------------------------------------------------------- enforcer

/// `GET /api/v1/metadata`: the tenant's metric names are looked up first (cached per tenant),
/// `limit` goes from the upstream request to the filter, and the answer keeps only the
/// tenant's metrics.
pub struct Metadata;

impl Enforcer for Metadata {
    fn methods(&self) -> &'static str {
        "GET"
    }

    fn query(
        &self,
        _rw: &mut Rewriter,
        out: &mut String,
        raw: &str,
        _body_announced: bool,
    ) -> Result<Option<usize>, ApiError> {
        out.push_str(&metadata_query(raw)?.0);
        Ok(Some(0))
    }

    fn answer(&self, _method: &str) -> Option<Kind> {
        Some(Kind::Metadata)
    }

    fn lookup(&self, _method: &str, _path: &str) -> Option<Lookup> {
        Some(Lookup::MetricNames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t() -> Tenant {
        Tenant::new("project", vec!["p1".into()])
    }

    fn names(list: &[&str]) -> NameSet {
        NameSet::new(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn names_path_selects_the_tenants_series() {
        let path = names_path("/prom", &t());
        assert_eq!(
            path,
            "/prom/api/v1/label/__name__/values?match%5B%5D=%7Bproject%3D%22p1%22%7D"
        );
        let (_, query) = path.split_once('?').unwrap();
        let p = form::parse(query).unwrap();
        assert_eq!(
            (p[0].key.as_str(), p[0].value.as_str()),
            ("match[]", r#"{project="p1"}"#)
        );
        let subs = Tenant::new("project", vec!["p1".into(), "c.1".into()]);
        let p = form::parse(names_path("", &subs).split_once('?').unwrap().1).unwrap();
        assert_eq!(p[0].value, r#"{project=~"p1|c\\.1"}"#);
        assert!(names_path("", &t()).starts_with("/api/v1/label/__name__/values?"));
        // Values with quotes and backslashes stay one selector.
        let odd = Tenant::new("project", vec!["a\"b\\c&d".into()]);
        let p = form::parse(names_path("", &odd).split_once('?').unwrap().1).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].value, r#"{project="a\"b\\c&d"}"#);
    }

    #[test]
    fn names_are_parsed() {
        let body = br#"{"status":"success","data":["up","http_requests_total","caf\u00e9"],"warnings":["w"]}"#;
        assert_eq!(
            parse_names(body, 1 << 20).unwrap(),
            ["up", "http_requests_total", "café"]
        );
        assert_eq!(
            parse_names(br#"{"status":"success","data":[]}"#, 100).unwrap(),
            Vec::<String>::new()
        );
        for bad in [
            "",
            "[]",
            "null",
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#,
            r#"{"status":"error","data":["up"]}"#,
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":{}}"#,
            r#"{"status":"success","data":["up",1]}"#,
            r#"{"status":"success","data":[null]}"#,
            r#"{"status":"success","data":[["up"]]}"#,
            r#"{"status":1,"data":[]}"#,
            r#"{"status":"success","data":["up"]"#,
        ] {
            assert!(parse_names(bad.as_bytes(), 1 << 20).is_err(), "{bad}");
        }
        assert!(parse_names(b"{\"status\":\"success\",\"data\":[\"\xff\"]}", 1 << 20).is_err());
        let body = br#"{"status":"success","data":["up"]}"#;
        assert!(parse_names(body, body.len() - 1).is_err());
        assert!(parse_names(body, body.len()).is_ok());
        let deep = format!(
            r#"{{"status":"success","data":["up"],"x":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        // Skipped without recursion (serde_json ignores a value in a loop): no stack overflow.
        assert_eq!(parse_names(deep.as_bytes(), 1 << 20).unwrap(), ["up"]);
        let deep = format!(
            r#"{{"status":"success","data":{}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(parse_names(deep.as_bytes(), 1 << 20).is_err());
    }

    fn q(raw: &str) -> (String, MetadataParams) {
        metadata_query(raw).unwrap()
    }

    #[test]
    fn limit_is_taken_out_and_read_as_prometheus_reads_it() {
        assert_eq!(q(""), (String::new(), MetadataParams::default()));
        assert_eq!(
            q("metric=up&limit=5"),
            (
                "metric=up".into(),
                MetadataParams {
                    limit: Some(5),
                    limit_per_metric: None
                }
            )
        );
        assert_eq!(q("limit=5&metric=up&x=1").0, "metric=up&x=1");
        // Keys are decoded as Go decodes them; every `limit` goes, the first counts.
        assert_eq!(
            q("%6Cimit=3&limit=7&metric=a%20b"),
            (
                "metric=a%20b".into(),
                MetadataParams {
                    limit: Some(3),
                    limit_per_metric: None
                }
            )
        );
        assert_eq!(
            q("limit=&limit=7").1.limit,
            None,
            "an empty first value is no limit"
        );
        assert_eq!(q("limit").1.limit, None);
        assert_eq!(q("limit=0").1.limit, Some(0));
        assert_eq!(q("limit=-1").1.limit, None);
        assert_eq!(q("limit=-9223372036854775808").1.limit, None);
        assert_eq!(q("limit=%2B4").1.limit, Some(4), "Atoi takes a '+'");
        assert_eq!(q("limit=007").1.limit, Some(7));
        assert_eq!(q("limit=-0").1.limit, Some(0));
        assert_eq!(
            q("limit=9223372036854775807").1.limit,
            Some(usize::try_from(i64::MAX).unwrap_or(usize::MAX))
        );
        for bad in [
            "limit=x",
            "limit=1.5",
            "limit=+",
            "limit=%201",
            "limit=1e3",
            "limit=0x10",
            "limit=1_000",
            "limit=9223372036854775808",
            "limit=++1",
        ] {
            let e = metadata_query(bad).unwrap_err();
            assert_eq!(
                (e.status, e.message.as_str()),
                (400, "limit must be a number"),
                "{bad}"
            );
        }
        // Only the first value is read, as FormValue does.
        assert_eq!(q("limit=2&limit=x").1.limit, Some(2));
    }

    #[test]
    fn limit_per_metric_is_forwarded_and_read() {
        let (out, p) = q("limit_per_metric=2&metric=up");
        assert_eq!(out, "limit_per_metric=2&metric=up");
        assert_eq!(p.limit_per_metric, Some(2));
        assert_eq!(
            q("limit_per_metric=0").1.limit_per_metric,
            None,
            "zero is no limit"
        );
        assert_eq!(q("limit_per_metric=-3").1.limit_per_metric, None);
        let e = metadata_query("limit_per_metric=a").unwrap_err();
        assert_eq!(e.message, "limit_per_metric must be a number");
    }

    #[test]
    fn metadata_query_refuses_what_go_reads_differently() {
        for bad in [
            "metric=a;b",
            "metric=%zz",
            "metric=%",
            "%ff=1",
            "metric=%c3",
            "limit=1;",
        ] {
            assert_eq!(metadata_query(bad).unwrap_err().status, 400, "{bad}");
        }
        assert!(metadata_query(&"&".repeat(MAX_QUERY_PARAMS - 1)).is_ok());
        assert_eq!(
            metadata_query(&"&".repeat(MAX_QUERY_PARAMS))
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            metadata_query(&"limit=1&".repeat(50_000))
                .unwrap_err()
                .status,
            400
        );
    }

    fn answer(data: Value) -> Vec<u8> {
        json!({"status":"success","data":data})
            .to_string()
            .into_bytes()
    }

    fn md(kind: &str) -> Value {
        json!({"type":kind,"help":"h","unit":""})
    }

    fn run(data: Value, names: &NameSet, params: MetadataParams) -> Value {
        serde_json::from_slice(&filter(&answer(data), names, &params, 1 << 20).unwrap()).unwrap()
    }

    #[test]
    fn only_the_tenants_metrics_are_kept() {
        let data = json!({
            "up":[md("gauge")],
            "other_tenant":[md("gauge")],
            "http_requests":[md("counter")],
            "latency_seconds":[md("histogram"),md("gauge")],
            "rpc":[md("summary")],
            "build":[md("info")],
            "gh":[md("gaugehistogram")],
            "lookalike":[md("gauge")]
        });
        let ns = names(&[
            "up",
            "http_requests_total",
            "latency_seconds_bucket",
            "rpc_count",
            "build_info",
            "gh_gsum",
            "lookalike_total",
        ]);
        let v = run(data, &ns, MetadataParams::default());
        assert_eq!(v["status"], "success");
        let d = v["data"].as_object().unwrap();
        let mut keys: Vec<&str> = d.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "build",
                "gh",
                "http_requests",
                "latency_seconds",
                "rpc",
                "up"
            ]
        );
        // The gauge entry of latency_seconds has no series of its own: it goes.
        assert_eq!(d["latency_seconds"], json!([md("histogram")]));
    }

    #[test]
    fn limits_apply_after_filtering() {
        let mut data = Map::new();
        for i in 0..50 {
            data.insert(
                format!("m{i:02}"),
                json!([md("gauge"), {"type":"gauge","help":"other","unit":""}]),
            );
        }
        let ns = names(&["m10", "m20", "m30", "m40"]);
        let data = Value::Object(data);
        let count =
            |p: MetadataParams| run(data.clone(), &ns, p)["data"].as_object().unwrap().len();
        assert_eq!(count(MetadataParams::default()), 4);
        assert_eq!(
            count(MetadataParams {
                limit: Some(2),
                limit_per_metric: None
            }),
            2
        );
        assert_eq!(
            count(MetadataParams {
                limit: Some(10),
                limit_per_metric: None
            }),
            4
        );
        let v = run(
            data.clone(),
            &ns,
            MetadataParams {
                limit: Some(0),
                limit_per_metric: None,
            },
        );
        assert_eq!(
            v,
            json!({"status":"success","data":{}}),
            "limit 0: an empty answer, as Prometheus gives"
        );
        let v = run(
            data.clone(),
            &ns,
            MetadataParams {
                limit: None,
                limit_per_metric: Some(1),
            },
        );
        assert!(v["data"]
            .as_object()
            .unwrap()
            .values()
            .all(|e| e.as_array().unwrap().len() == 1));
        let v = run(
            data.clone(),
            &ns,
            MetadataParams {
                limit: Some(1),
                limit_per_metric: Some(1),
            },
        );
        assert_eq!(v["data"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn the_answer_stays_a_prometheus_answer() {
        let body = json!({"status":"success","data":{"up":[md("gauge")],"x":[md("gauge")]},"warnings":["w"]});
        let out = filter(
            body.to_string().as_bytes(),
            &names(&["up"]),
            &MetadataParams::default(),
            1 << 20,
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({"status":"success","data":{"up":[md("gauge")]},"warnings":["w"]})
        );
        let v = run(
            json!({"x":[md("gauge")]}),
            &names(&[]),
            MetadataParams::default(),
        );
        assert_eq!(v, json!({"status":"success","data":{}}));
        // Unicode and escapes in names and help texts survive.
        let v = run(
            json!({"café_total":[{"type":"counter","help":"a \"q\" \\ \u{1}","unit":"s"}]}),
            &names(&["café_total"]),
            MetadataParams::default(),
        );
        assert_eq!(v["data"]["café_total"][0]["help"], "a \"q\" \\ \u{1}");
    }

    #[test]
    fn malformed_answers_are_errors() {
        let ns = names(&["up"]);
        let p = MetadataParams::default();
        for bad in [
            "",
            "[]",
            "null",
            r#"{"status":"error","errorType":"bad_data","error":"limit must be a number"}"#,
            r#"{"status":"success"}"#,
            r#"{"status":"success","data":[]}"#,
            r#"{"status":"success","data":{"up":{}}}"#,
            r#"{"status":"success","data":{"up":"gauge"}}"#,
            r#"{"data":{"up":[]}}"#,
            r#"{"status":"success","data":{"up":[]}"#,
        ] {
            assert!(filter(bad.as_bytes(), &ns, &p, 1 << 20).is_err(), "{bad}");
        }
        // Entries of wrong shapes are not the tenant's unless the name is.
        let v = run(
            json!({"up":[1, null, {"type":7}], "x_total":[{"type":["counter"]}]}),
            &names(&["up", "x_total"]),
            p,
        );
        assert_eq!(v["data"]["up"], json!([1, null, {"type":7}]));
        let body = answer(json!({"up":[md("gauge")]}));
        assert!(filter(&body, &ns, &p, body.len() - 1).is_err());
        let deep = format!(
            r#"{{"status":"success","data":{{"up":{}{}}}}}"#,
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        assert!(filter(deep.as_bytes(), &ns, &p, 1 << 20).is_err());
    }

    #[test]
    fn a_large_answer_within_bounds() {
        let mut data = Map::new();
        for i in 0..20_000 {
            data.insert(format!("metric_{i}"), json!([md("counter")]));
        }
        let ns = NameSet::new(
            (0..20_000)
                .step_by(7)
                .map(|i| format!("metric_{i}_total"))
                .collect(),
        );
        let body = answer(Value::Object(data));
        let out = filter(&body, &ns, &MetadataParams::default(), body.len()).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v["data"].as_object().unwrap().len(),
            20_000_usize.div_ceil(7)
        );
    }

    #[test]
    fn family_suffixes_follow_the_type() {
        let ns = names(&["a_total", "b_bucket", "c_sum", "d_info", "e", "f_gcount"]);
        assert!(
            ns.has_family("a", "counter")
                && !ns.has_family("a", "gauge")
                && !ns.has_family("a", "histogram")
        );
        assert!(
            ns.has_family("b", "histogram")
                && ns.has_family("b", "gaugehistogram")
                && !ns.has_family("b", "summary")
        );
        assert!(
            ns.has_family("c", "summary")
                && ns.has_family("c", "histogram")
                && !ns.has_family("c", "counter")
        );
        assert!(ns.has_family("d", "info") && !ns.has_family("d", "unknown"));
        assert!(ns.has_family("e", "anything") && ns.has_family("e", ""));
        assert!(ns.has_family("f", "gaugehistogram") && !ns.has_family("f", "histogram"));
        assert!(!ns.has_family("a_", "counter") && !ns.has_family("", "counter"));
        assert_eq!((ns.len(), ns.bytes(), ns.is_empty()), (6, 35, false));
    }

    fn list(n: usize, len: usize) -> Vec<String> {
        (0..n).map(|i| format!("{i:0len$}")).collect()
    }

    #[test]
    fn cache_entries_expire() {
        let mut c = NamesCache::new(60, 1 << 20);
        assert!(c.get("k", 0).is_none());
        let set = c.insert("k", vec!["up".into(), "x".into()], 100);
        assert!(set.contains("up"));
        let got = c.get("k", 159).unwrap();
        assert!(Rc::ptr_eq(&got, &set));
        assert!(c.get("other", 120).is_none());
        assert!(c.get("k", 160).is_none(), "expired after the ttl");
        assert!(c.is_empty() && c.used_bytes() == 0, "an expired entry goes");
        // A newer insert replaces the entry, and its bytes.
        c.insert("k", vec!["a".into()], 200);
        c.insert("k", vec!["bb".into()], 201);
        assert_eq!((c.len(), c.used_bytes()), (1, 3));
        assert!(c.get("k", 202).unwrap().contains("bb"));
        // ttl 0: nothing is kept, but the set is returned.
        let mut z = NamesCache::new(0, 1 << 20);
        assert!(z.insert("k", vec!["up".into()], 5).contains("up"));
        assert!(z.get("k", 5).is_none() && z.is_empty());
        // Times near the end of u64 do not overflow.
        let mut c = NamesCache::new(u64::MAX, 100);
        c.insert("k", vec![], u64::MAX - 1);
        assert!(c.get("k", u64::MAX - 1).is_some());
    }

    #[test]
    fn cache_stays_within_its_budget() {
        let mut c = NamesCache::new(600, 100);
        // 1 + 3 * 10 = 31 bytes each: three fit.
        for (i, k) in ["a", "b", "c", "d"].iter().enumerate() {
            c.insert(k, list(3, 10), i as u64);
            assert!(c.used_bytes() <= 100);
        }
        assert_eq!(c.len(), 3);
        assert!(c.get("a", 10).is_none(), "the oldest is evicted");
        assert!(c.get("b", 10).is_some() && c.get("d", 10).is_some());
        // Re-inserting b makes it the newest: c goes next.
        c.insert("b", list(3, 10), 11);
        c.insert("e", list(3, 10), 12);
        assert!(c.get("c", 13).is_none() && c.get("b", 13).is_some());
        // Larger than the whole budget: returned, not kept, nothing evicted for it.
        let big = c.insert("huge", list(20, 10), 14);
        assert_eq!(big.len(), 20);
        assert!(c.get("huge", 14).is_none());
        assert_eq!(c.len(), 3);
        // Exactly the budget fits, evicting everything else.
        c.insert("f", list(9, 11), 15);
        assert_eq!((c.len(), c.used_bytes()), (1, 100));
        let mut big_key = NamesCache::new(600, 10);
        big_key.insert(&"k".repeat(11), vec![], 0);
        assert!(big_key.is_empty());
    }

    #[test]
    fn cache_churn_is_bounded() {
        let mut c = NamesCache::new(30, 1000);
        for i in 0..10_000u64 {
            let key = format!("tenant{}", i % 97);
            if c.get(&key, i).is_none() {
                c.insert(&key, list((i % 13) as usize, 8), i);
            }
            assert!(c.used_bytes() <= 1000);
            assert_eq!(c.order.len(), c.entries.len());
        }
        let recount: usize = c
            .entries
            .iter()
            .map(|(k, e)| k.len() + e.names.bytes())
            .sum();
        assert_eq!(recount, c.used_bytes());
    }
}
