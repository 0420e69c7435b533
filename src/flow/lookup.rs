//! The requests the filter makes upstream before a client's request goes on (`enforce::Lookup`):
//! whose an Alertmanager silence is, before it is shown, updated or deleted; and which metric
//! names a tenant has, which the metadata answer is filtered down to. This module builds each
//! callout from the configuration and judges its answer; the flow dispatches it and waits.

use crate::config::{Config, Lookup as Upstream};
use crate::enforce::promql::Tenant;
use crate::enforce::{alertmanager, metadata, Lookup};
use crate::error::ApiError;
use crate::host::CalloutAnswer;

/// One callout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub upstream: String,
    pub headers: Vec<(&'static str, String)>,
    pub timeout_ms: u64,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The request may go on.
    Allowed,
    /// The tenant's metric names.
    Names(Vec<String>),
}

fn upstream<'a>(cfg: &'a Config, lookup: &Lookup) -> &'a Upstream {
    match lookup {
        Lookup::SilenceOwner(_) => &cfg.alertmanager.lookup,
        Lookup::MetricNames => &cfg.metadata.lookup,
    }
}

/// The callout of `lookup` for `tenant`.
pub fn call(cfg: &Config, lookup: &Lookup, tenant: &Tenant) -> Call {
    let up = upstream(cfg, lookup);
    let path = match lookup {
        Lookup::SilenceOwner(id) => format!("{}/api/v2/silence/{id}", up.path_prefix),
        Lookup::MetricNames => metadata::names_path(&up.path_prefix, tenant),
    };
    let headers = vec![
        (":method", "GET".to_string()),
        (":path", path),
        (":authority", up.upstream.clone()),
        (":scheme", "http".to_string()),
        ("accept", "application/json".to_string()),
        // The answer is read whole: uncompressed.
        ("accept-encoding", "identity".to_string()),
    ];
    Call {
        upstream: up.upstream.clone(),
        headers,
        timeout_ms: up.timeout_ms,
    }
}

fn what(lookup: &Lookup) -> &'static str {
    match lookup {
        Lookup::SilenceOwner(_) => "Alertmanager",
        Lookup::MetricNames => "Prometheus",
    }
}

/// What the answer to `lookup`'s callout says; `max_bytes` bounds what is read of it.
pub fn judge(
    lookup: &Lookup,
    tenant: &Tenant,
    answer: &CalloutAnswer,
    max_bytes: usize,
) -> Result<Found, ApiError> {
    let upstream = what(lookup);
    let status = match answer.status {
        Some(s) => s,
        None => {
            let why = answer.dispatch_status.as_deref().unwrap_or("no answer");
            return Err(ApiError::unavailable(format!(
                "{upstream} could not be asked ({why}); try again later"
            )));
        }
    };
    let failed = |detail: String| {
        ApiError::new(
            502,
            "unavailable",
            format!("{upstream} answered the filter's check {detail}"),
        )
    };
    match (lookup, status) {
        (Lookup::SilenceOwner(id), 200) => match alertmanager::silence_answer(&answer.body, tenant)
        {
            Ok(true) => Ok(Found::Allowed),
            Ok(false) => Err(ApiError::forbidden(format!(
                "the silence {id} is not one of your project's silences"
            ))),
            Err(e) => Err(failed(format!(
                "with a silence the filter cannot read: {e}"
            ))),
        },
        // No such silence, or an id Alertmanager can't read (400, 422): it answers the request
        // with its own error, and shows nothing.
        (Lookup::SilenceOwner(_), 400 | 404 | 422) => Ok(Found::Allowed),
        (Lookup::MetricNames, 200) => metadata::parse_names(&answer.body, max_bytes)
            .map(Found::Names)
            .map_err(|e| failed(format!("with metric names the filter cannot read: {e}"))),
        (_, status) => Err(failed(format!("with HTTP {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::from_json(
            br#"{"keystone":{"url":"http://k/v3"},"alertmanager":{"enabled":true,"upstream":"am","upstream_path_prefix":"/am"},
                "metadata":{"enabled":true,"upstream":"prom","timeout_ms":500}}"#,
        )
        .unwrap()
    }

    fn answer(status: Option<u16>, body: &str) -> CalloutAnswer {
        CalloutAnswer {
            status,
            body: body.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    fn t() -> Tenant {
        Tenant::new("project", vec!["p1".into()])
    }

    #[test]
    fn calls() {
        let c = call(&cfg(), &Lookup::SilenceOwner("abc-1".into()), &t());
        assert_eq!(c.upstream, "am");
        assert!(c
            .headers
            .contains(&(":path", "/am/api/v2/silence/abc-1".into())));
        let c = call(&cfg(), &Lookup::MetricNames, &t());
        assert_eq!((c.upstream.as_str(), c.timeout_ms), ("prom", 500));
        let path = &c.headers.iter().find(|(k, _)| *k == ":path").unwrap().1;
        assert!(
            path.starts_with("/api/v1/label/__name__/values?match%5B%5D=")
                || path.starts_with("/api/v1/label/__name__/values?match[]="),
            "{path}"
        );
    }

    #[test]
    fn silences_are_judged_by_their_matchers() {
        let s = |m: &str| {
            format!(
                r#"{{"id":"abc-1","matchers":[{m},{{"name":"alertname","value":"X","isRegex":false}}]}}"#
            )
        };
        let mine = s(r#"{"name":"project","value":"p1","isRegex":false,"isEqual":true}"#);
        let not_equal = s(r#"{"name":"project","value":"p1","isRegex":false,"isEqual":false}"#);
        let regex = s(r#"{"name":"project","value":"p1|p2","isRegex":true}"#);
        let l = Lookup::SilenceOwner("abc-1".into());
        assert_eq!(
            judge(&l, &t(), &answer(Some(200), &mine), 1 << 20),
            Ok(Found::Allowed)
        );
        for theirs in [not_equal, regex] {
            assert_eq!(
                judge(&l, &t(), &answer(Some(200), &theirs), 1 << 20)
                    .unwrap_err()
                    .status,
                403
            );
        }
        assert_eq!(
            judge(&l, &t(), &answer(Some(404), ""), 1 << 20),
            Ok(Found::Allowed)
        );
        assert_eq!(
            judge(&l, &t(), &answer(Some(500), ""), 1 << 20)
                .unwrap_err()
                .status,
            502
        );
        assert_eq!(
            judge(&l, &t(), &answer(Some(200), "not json"), 1 << 20)
                .unwrap_err()
                .status,
            502
        );
        assert_eq!(
            judge(&l, &t(), &answer(None, ""), 1 << 20)
                .unwrap_err()
                .status,
            503
        );
    }

    #[test]
    fn names() {
        let l = Lookup::MetricNames;
        let got = judge(
            &l,
            &t(),
            &answer(Some(200), r#"{"status":"success","data":["a","b"]}"#),
            1 << 20,
        );
        assert_eq!(got, Ok(Found::Names(vec!["a".into(), "b".into()])));
        assert_eq!(
            judge(&l, &t(), &answer(Some(503), ""), 1 << 20)
                .unwrap_err()
                .status,
            502
        );
    }
}
