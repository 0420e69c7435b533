//! Enforcement of one request's parameters: the query string and the form body.

use crate::config::Limits;
use crate::error::ApiError;
use crate::form::{self, Param};
use crate::promql::{self, EnforceError, Tenant};
use crate::rewrite_cache::RewriteCache;
use crate::routes::{Endpoint, Params};
use std::rc::Rc;

impl From<EnforceError> for ApiError {
    fn from(e: EnforceError) -> Self {
        match e {
            EnforceError::BadData(m) => ApiError::bad_data(m),
            EnforceError::Forbidden(m) => ApiError::forbidden(m),
        }
    }
}

/// Everything one request's enforcement needs.
pub struct Enforcer<'a> {
    pub tenant: &'a Tenant,
    pub limits: &'a Limits,
    pub cache: &'a mut RewriteCache,
}

impl Enforcer<'_> {
    /// Rewrites every PromQL parameter of `endpoint` in an urlencoded string (a query
    /// string or a form body). Returns the string re-encoded and how many parameters
    /// were enforced.
    pub fn params(&mut self, raw: &str, endpoint: Endpoint) -> Result<(String, usize), ApiError> {
        let (name, kind) = match endpoint.params() {
            Params::Query => ("query", Kind::Expr),
            Params::Match => ("match[]", Kind::Selector),
            Params::ResponseFiltered => return Ok((raw.to_string(), 0)),
        };
        if raw.is_empty() {
            return Ok((String::new(), 0));
        }
        let mut params = form::parse(raw).map_err(|e| ApiError::bad_data(e.0))?;
        let mut count = 0;
        for Param { key, value } in params.iter_mut() {
            if key == name {
                *value = self.rewrite(name, kind, value)?.to_string();
                count += 1;
            }
        }
        Ok((form::encode(&params), count))
    }

    fn rewrite(&mut self, key: &str, kind: Kind, value: &str) -> Result<Rc<str>, ApiError> {
        if value.len() > self.limits.max_query_bytes {
            return Err(ApiError::bad_data(format!(
                "the {key} parameter is longer than {} bytes (limits.max_query_bytes)",
                self.limits.max_query_bytes
            )));
        }
        let (tenant, depth) = (self.tenant, self.limits.max_depth);
        let outcome = match kind {
            // Selectors and expressions print alike, so they share cache entries only
            // when they are the same text, which then means the same thing.
            Kind::Expr => self.cache.get_or_compute(tenant.key(), value, || promql::enforce(value, tenant, depth)),
            Kind::Selector => self.cache.get_or_compute(tenant.selector_key(), value, || {
                promql::enforce_selector(value, tenant, depth)
            }),
        };
        Ok(outcome?)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Expr,
    Selector,
}

/// The `match[]` parameter that limits a series, labels or federate request with no
/// `match[]` of its own to the tenant.
pub fn default_match(tenant: &Tenant) -> String {
    form::encode(&[Param { key: "match[]".into(), value: tenant.selector() }])
}

/// What a POST must look like before its body is read: an urlencoded form, uncompressed.
pub fn check_form_headers(content_type: Option<&str>, content_encoding: Option<&str>) -> Result<(), ApiError> {
    let media = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(ApiError::unsupported_media_type(
            "POST bodies must be application/x-www-form-urlencoded",
        ));
    }
    match content_encoding.map(str::trim) {
        None | Some("") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("identity") => Ok(()),
        Some(_) => Err(ApiError::unsupported_media_type("compressed request bodies are not accepted")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn limits() -> Limits {
        Config::from_json(br#"{"keystone":{"url":"http://k/v3"}}"#).unwrap().limits
    }

    fn t() -> Tenant {
        Tenant::new("project_id", vec!["p1".into()])
    }

    fn enforce_params(raw: &str, endpoint: Endpoint, tenant: &Tenant, limits: &Limits) -> Result<String, ApiError> {
        let mut cache = RewriteCache::new(1 << 20);
        Ok(Enforcer { tenant, limits, cache: &mut cache }.params(raw, endpoint)?.0)
    }

    #[test]
    fn every_query_value_is_enforced() {
        let out = enforce_params("query=a&%71uery=b&time=5", Endpoint::Query, &t(), &limits()).unwrap();
        assert_eq!(
            form::parse(&out).unwrap(),
            vec![
                Param { key: "query".into(), value: r#"a{project_id="p1"}"#.into() },
                Param { key: "query".into(), value: r#"b{project_id="p1"}"#.into() },
                Param { key: "time".into(), value: "5".into() },
            ]
        );
    }

    #[test]
    fn match_params_are_selectors() {
        let out = enforce_params("match%5B%5D=up&match[]={job=\"x\"}&start=1", Endpoint::Series, &t(), &limits()).unwrap();
        let p = form::parse(&out).unwrap();
        assert_eq!(p[0].value, r#"up{project_id="p1"}"#);
        assert_eq!(p[1].value, r#"{job="x",project_id="p1"}"#);
        assert_eq!(p[2].value, "1");
        let e = enforce_params("match[]=rate(x[5m])", Endpoint::Series, &t(), &limits()).unwrap_err();
        assert_eq!(e.status, 400);
        // `query` means nothing to the series API and is left alone; `match[]` to the query API too.
        assert_eq!(enforce_params("query=x", Endpoint::Series, &t(), &limits()).unwrap(), "query=x");
        assert_eq!(form::parse(&default_match(&t())).unwrap()[0].value, r#"{project_id="p1"}"#);
    }

    #[test]
    fn errors() {
        let e = enforce_params("query=sum(", Endpoint::Query, &t(), &limits()).unwrap_err();
        assert_eq!((e.status, e.error_type), (400, "bad_data"));
        let e = enforce_params("query=up{project_id=\"p2\"}", Endpoint::Query, &t(), &limits()).unwrap_err();
        assert_eq!(e.status, 403);
        let e = enforce_params("query=a;b", Endpoint::Query, &t(), &limits()).unwrap_err();
        assert_eq!(e.status, 400);
        let mut l = limits();
        l.max_query_bytes = 3;
        assert_eq!(enforce_params("query=abcd", Endpoint::Query, &t(), &l).unwrap_err().status, 400);
    }

    #[test]
    fn form_headers() {
        assert!(check_form_headers(Some("application/x-www-form-urlencoded"), None).is_ok());
        assert!(check_form_headers(Some("Application/X-WWW-Form-URLEncoded; charset=utf-8"), Some("identity")).is_ok());
        for ct in [None, Some("multipart/form-data; boundary=x"), Some("application/json"), Some("text/plain")] {
            assert_eq!(check_form_headers(ct, None).unwrap_err().status, 415);
        }
        assert_eq!(check_form_headers(Some("application/x-www-form-urlencoded"), Some("gzip")).unwrap_err().status, 415);
    }
}
