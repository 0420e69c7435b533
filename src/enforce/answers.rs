//! Filtering of `/api/v1/rules` and `/api/v1/alerts` answers down to the tenant's own
//! rules and alerts, by the tenant label on each one. Gzip and deflate answers are
//! inflated first (the filter asks for an identity answer, but a host may pass the
//! client's `accept-encoding` on as well: NGINX sends a header it was told to remove).

use crate::enforce::metadata::{self, NameSet};
use crate::enforce::promql::Tenant;
use crate::enforce::{alertmanager, Enforcer};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rules,
    Alerts,
    /// Alertmanager's `GET /api/v2/silences` (`alertmanager::filter_silences`).
    Silences,
    /// `GET /api/v1/metadata`, down to the tenant's metric names (`metadata::filter`).
    Metadata,
}

/// Endpoints whose request selects nothing (they read no PromQL) and whose answer is
/// filtered instead: `/api/v1/rules` and `/api/v1/alerts`. GET only, so no body.
#[derive(Debug)]
pub struct Filtered(pub Kind);

impl Enforcer for Filtered {
    fn methods(&self) -> &'static str {
        "GET"
    }

    fn answer(&self, _method: &str) -> Option<Kind> {
        Some(self.0)
    }
}

/// Inflates a gzip member, refusing more than `max` bytes of output.
pub fn gunzip(data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    const FHCRC: u8 = 2;
    if data.len() < 18 || data[0] != 0x1f || data[1] != 0x8b || data[2] != 8 {
        return Err("not a gzip stream".into());
    }
    let flags = data[3];
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let n = usize::from(*data.get(pos).ok_or("truncated")?)
            | usize::from(*data.get(pos + 1).ok_or("truncated")?) << 8;
        pos += 2 + n;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = data
                .get(pos..)
                .and_then(|r| r.iter().position(|&b| b == 0))
                .ok_or("truncated")?;
            pos += end + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    let deflated = data
        .get(pos..data.len().saturating_sub(8))
        .ok_or("truncated gzip stream")?;
    miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, max)
        .map_err(|e| format!("invalid gzip stream: {:?}", e.status))
}

/// Inflates an HTTP `deflate` answer (a zlib stream, as Go's `compress/zlib` writes for
/// Prometheus), refusing more than `max` bytes of output.
pub fn inflate(data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, max)
        .map_err(|e| format!("invalid deflate stream: {:?}", e.status))
}

fn owned_by(labels: Option<&Value>, label: &str, values: &[String]) -> bool {
    labels
        .and_then(|l| l.get(label))
        .and_then(Value::as_str)
        .is_some_and(|v| values.iter().any(|allowed| allowed == v))
}

/// Keeps only what carries `label` with one of `values`; rule groups left empty go.
pub fn filter(kind: Kind, body: &[u8], label: &str, values: &[String]) -> Result<Vec<u8>, String> {
    let mut doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("upstream answer is not JSON: {e}"))?;
    let data = doc.get_mut("data").ok_or("upstream answer has no data")?;
    match kind {
        Kind::Alerts => {
            let alerts = data
                .get_mut("alerts")
                .and_then(Value::as_array_mut)
                .ok_or("no data.alerts")?;
            alerts.retain(|a| owned_by(a.get("labels"), label, values));
        }
        Kind::Rules => {
            let groups = data
                .get_mut("groups")
                .and_then(Value::as_array_mut)
                .ok_or("no data.groups")?;
            for group in groups.iter_mut() {
                let Some(rules) = group.get_mut("rules").and_then(Value::as_array_mut) else {
                    continue;
                };
                rules.retain(|r| owned_by(r.get("labels"), label, values));
                for rule in rules.iter_mut() {
                    if let Some(alerts) = rule.get_mut("alerts").and_then(Value::as_array_mut) {
                        alerts.retain(|a| owned_by(a.get("labels"), label, values));
                    }
                }
            }
            groups.retain(|g| {
                g.get("rules")
                    .and_then(Value::as_array)
                    .is_some_and(|r| !r.is_empty())
            });
        }
        Kind::Silences | Kind::Metadata => return Err("not a rules or alerts answer".to_string()),
    }
    serde_json::to_vec(&doc).map_err(|e| e.to_string())
}

/// What filtering an answer needs besides its body.
pub struct AnswerContext<'a> {
    pub tenant: &'a Tenant,
    /// The tenant's metric names (looked up before the request went on), for metadata.
    pub names: Option<&'a NameSet>,
    /// The client's query string, as it came.
    pub query: &'a str,
    /// The largest answer filtered.
    pub max_bytes: usize,
}

/// An answer of `kind`, down to what the tenant may see.
pub fn filter_answer(kind: Kind, body: &[u8], cx: &AnswerContext) -> Result<Vec<u8>, String> {
    match kind {
        Kind::Rules | Kind::Alerts => filter(kind, body, cx.tenant.label(), cx.tenant.values()),
        Kind::Silences => alertmanager::filter_silences(body, cx.tenant, cx.max_bytes),
        Kind::Metadata => {
            let names = cx
                .names
                .ok_or("the tenant's metric names were not looked up")?;
            let (_, params) = metadata::metadata_query(cx.query).map_err(|e| e.message)?;
            metadata::filter(body, names, &params, cx.max_bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mine() -> Vec<String> {
        vec!["p1".to_string()]
    }

    #[test]
    fn rules_are_filtered_by_label() {
        let body = json!({"status":"success","data":{"groups":[
            {"name":"g1","file":"f","rules":[
                {"type":"recording","name":"r1","query":"x","labels":{"project_id":"p1"}},
                {"type":"recording","name":"r2","query":"y","labels":{"project_id":"p2"}},
                {"type":"recording","name":"r3","query":"z"},
                {"type":"alerting","name":"a1","query":"up==0","labels":{"project_id":"p1"},
                 "alerts":[{"labels":{"project_id":"p1","i":"1"}},{"labels":{"project_id":"p2"}}]}]},
            {"name":"g2","file":"f","rules":[{"name":"r4","labels":{"project_id":"p2"}}]}]}});
        let out = filter(
            Kind::Rules,
            body.to_string().as_bytes(),
            "project_id",
            &mine(),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        let groups = v["data"]["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 1);
        let names: Vec<&str> = groups[0]["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["r1", "a1"]);
        assert_eq!(groups[0]["rules"][1]["alerts"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn alerts_are_filtered_by_label() {
        let body = json!({"status":"success","data":{"alerts":[
            {"labels":{"project_id":"p1"}},{"labels":{"project_id":"p2"}},{"labels":{}},{"x":1}]}});
        let out = filter(
            Kind::Alerts,
            body.to_string().as_bytes(),
            "project_id",
            &mine(),
        )
        .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"]["alerts"], json!([{"labels":{"project_id":"p1"}}]));
    }

    #[test]
    fn malformed_answers_are_errors() {
        for body in ["", "{}", r#"{"data":{}}"#, r#"{"data":{"alerts":1}}"#] {
            assert!(
                filter(Kind::Alerts, body.as_bytes(), "project_id", &mine()).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn gzip() {
        // `printf 'hello' | gzip -n | xxd -i`
        let gz = [
            0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xcb, 0x48, 0xcd, 0xc9,
            0xc9, 0x07, 0x00, 0x86, 0xa6, 0x10, 0x36, 0x05, 0x00, 0x00, 0x00,
        ];
        assert_eq!(gunzip(&gz, 100).unwrap(), b"hello");
        assert!(gunzip(&gz, 2).is_err(), "output limit");
        assert!(gunzip(b"hello", 100).is_err());
    }

    #[test]
    fn deflate() {
        // python3 -c "import zlib; print(zlib.compress(b'hello'))"
        let z = [
            0x78, 0x9c, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x06, 0x2c, 0x02, 0x15,
        ];
        assert_eq!(inflate(&z, 100).unwrap(), b"hello");
        assert!(inflate(&z, 2).is_err(), "output limit");
        assert!(inflate(b"hello", 100).is_err());
    }
}
