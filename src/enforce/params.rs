//! The PromQL parameters endpoint kind: the tenant matcher written into every `query` or
//! `match[]` of the query string and of the form body.

use crate::config::Limits;
use crate::enforce::form::{self, Param};
use crate::enforce::promql::{self, EnforceError, Tenant};
use crate::enforce::rewrite_cache::RewriteCache;
use crate::enforce::routes::{Endpoint, Params};
use crate::enforce::{media_type, uncompressed, BodyContext, Enforcer, Forward};
use crate::error::ApiError;
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
pub struct Rewriter<'a> {
    pub tenant: &'a Tenant,
    pub limits: &'a Limits,
    pub cache: &'a mut RewriteCache,
}

impl Rewriter<'_> {
    /// Rewrites every PromQL parameter of `endpoint` in an urlencoded string (a query
    /// string or a form body). Returns the string and how many parameters were enforced.
    pub fn params(&mut self, raw: &str, endpoint: Endpoint) -> Result<(String, usize), ApiError> {
        let mut out = String::with_capacity(raw.len() + 32);
        let n = self.params_into(&mut out, raw, endpoint)?;
        Ok((out, n))
    }

    /// [`Rewriter::params`], appended to `out` (which may hold a path and its `?`).
    ///
    /// Other parameters pass as they came (after the checks Go's parser would make), and
    /// the rewrite is cached by the parameter's encoded text, so a dashboard refresh
    /// costs a split and a lookup: nothing is decoded, parsed or encoded again.
    pub fn params_into(
        &mut self,
        out: &mut String,
        raw: &str,
        endpoint: Endpoint,
    ) -> Result<usize, ApiError> {
        self.rewrite_params(
            out,
            raw,
            endpoint.params(),
            endpoint.names_parameter_in_errors(),
        )
    }

    /// `named`: errors name the parameter (`invalid parameter "query": …`).
    fn rewrite_params(
        &mut self,
        out: &mut String,
        raw: &str,
        params: Params,
        named: bool,
    ) -> Result<usize, ApiError> {
        let (name, kind) = match params {
            Params::Query => ("query", Kind::Expr),
            Params::Match => ("match[]", Kind::Selector),
            Params::ResponseFiltered | Params::Body => {
                out.push_str(raw);
                return Ok(0);
            }
        };
        // One more for the default `match[]` the filter may add.
        form::check_count(raw, 1).map_err(|e| ApiError::bad_data(e.0))?;
        let start = out.len();
        let mut count = 0;
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            if pair.contains(';') {
                return Err(ApiError::bad_data(
                    "a ';' in the query string or form body is not allowed",
                ));
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = |e: form::FormError| ApiError::bad_data(e.0);
            let key = form::decode_key(k).map_err(bad)?;
            if out.len() > start {
                out.push('&');
            }
            if key == name {
                // Decoding checks the escapes, once: a cached value passed that check.
                let rewritten = self.rewrite(name, kind, v).map_err(|e| {
                    // Worded per endpoint, as Prometheus words it (outside the cache, which
                    // endpoints share).
                    if named {
                        e.in_parameter(name)
                    } else {
                        e
                    }
                })?;
                out.push_str(if kind == Kind::Expr {
                    "query="
                } else {
                    "match%5B%5D="
                });
                out.push_str(&rewritten);
                count += 1;
            } else {
                form::check_escapes(v).map_err(bad)?;
                out.push_str(pair);
            }
        }
        Ok(count)
    }

    /// The rewritten, encoded value for an encoded value.
    fn rewrite(&mut self, key: &str, kind: Kind, raw: &str) -> Result<Rc<str>, EnforceError> {
        let (tenant, limits) = (self.tenant, self.limits);
        let scope = match kind {
            Kind::Expr => tenant.key(),
            Kind::Selector => tenant.selector_key(),
        };
        let outcome = self.cache.get_or_compute(scope, raw, || {
            let value = form::decode(raw).map_err(|e| EnforceError::BadData(e.0))?;
            if value.len() > limits.max_query_bytes {
                return Err(EnforceError::BadData(format!(
                    "the {key} parameter is longer than {} bytes (limits.max_query_bytes)",
                    limits.max_query_bytes
                )));
            }
            let rewritten = match kind {
                Kind::Expr => promql::enforce(&value, tenant, limits.max_depth)?,
                Kind::Selector => promql::enforce_selector(&value, tenant, limits.max_depth)?,
            };
            Ok(form::escape(&rewritten))
        });
        outcome
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Expr,
    Selector,
}

/// The `match[]` parameter that limits a series, labels or federate request with no
/// `match[]` of its own to the tenant.
pub fn default_match(tenant: &Tenant) -> String {
    form::encode(&[Param {
        key: "match[]".into(),
        value: tenant.selector(),
    }])
}

/// Endpoints whose PromQL parameters select data: queries (`query`) and series selectors
/// (`match[]`, with the tenant's own selector where there is none).
#[derive(Debug)]
pub struct PromqlParams {
    methods: &'static str,
    params: Params,
    /// Errors name the parameter, as Prometheus's do on this endpoint.
    named: bool,
}

impl PromqlParams {
    pub const fn new(methods: &'static str, params: Params, named: bool) -> PromqlParams {
        PromqlParams {
            methods,
            params,
            named,
        }
    }

    /// No `match[]` anywhere would mean every series: the tenant's own selector stands in.
    fn needs_default(&self, params: usize) -> bool {
        params == 0 && self.params == Params::Match
    }
}

/// Appends `param` to the parameters that start at `start` in `out`.
fn append_param(out: &mut String, start: usize, param: &str) {
    if out.len() > start {
        out.push('&');
    }
    out.push_str(param);
}

impl Enforcer for PromqlParams {
    fn methods(&self) -> &'static str {
        self.methods
    }

    fn query(
        &self,
        rw: &mut Rewriter,
        out: &mut String,
        raw: &str,
        body_announced: bool,
    ) -> Result<Option<usize>, ApiError> {
        let start = out.len();
        let mut n = rw.rewrite_params(out, raw, self.params, self.named)?;
        // Where a body is only possible (NGINX) the query string must be safe without it:
        // a body that does come with its own `match[]` then widens the answer, within the
        // tenant (Prometheus answers for all the selectors it reads, body first).
        if !body_announced && self.needs_default(n) {
            append_param(out, start, &default_match(rw.tenant));
            n += 1;
        }
        Ok(Some(n))
    }

    fn body(&self, cx: BodyContext, body: &[u8], url_params: usize) -> Result<Forward, ApiError> {
        // Only an unrestricted scope has no tenant, and its forms pass as they are.
        let Some(tenant) = cx.tenant else {
            return Ok(Forward::Body(body.to_vec()));
        };
        let rw = &mut Rewriter {
            tenant,
            limits: &cx.config.limits,
            cache: cx.cache,
        };
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_data("the form body must be UTF-8"))?;
        let mut out = String::with_capacity(text.len() + 96);
        let n = rw.rewrite_params(&mut out, text, self.params, self.named)?;
        // Prometheus ORs the body's and the URL's match[]: the default goes where none is.
        if self.needs_default(n + url_params) {
            append_param(&mut out, 0, &default_match(rw.tenant));
        }
        Ok(Forward::Body(out.into_bytes()))
    }

    fn check_body(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Result<(), ApiError> {
        check_form_headers(content_type, content_encoding)
    }
}

/// What a POST must look like before its body is read: an urlencoded form, uncompressed.
pub fn check_form_headers(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<(), ApiError> {
    if !media_type(content_type).eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(ApiError::unsupported_media_type(
            "POST bodies must be application/x-www-form-urlencoded",
        ));
    }
    if uncompressed(content_encoding) {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(
            "compressed request bodies are not accepted",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn limits() -> Limits {
        Config::from_json(br#"{"keystone":{"url":"http://k/v3"}}"#)
            .unwrap()
            .limits
    }

    fn t() -> Tenant {
        Tenant::new("project_id", vec!["p1".into()])
    }

    fn enforce_params(
        raw: &str,
        endpoint: Endpoint,
        tenant: &Tenant,
        limits: &Limits,
    ) -> Result<String, ApiError> {
        let mut cache = RewriteCache::new(1 << 20);
        Ok(Rewriter {
            tenant,
            limits,
            cache: &mut cache,
        }
        .params(raw, endpoint)?
        .0)
    }

    #[test]
    fn too_many_parameters_are_refused_before_go_would_drop_them_all() {
        // Newer Go drops every parameter past its limit, the tenant's match[] with them.
        let many = format!("match[]=up{}", "&x=1".repeat(form::MAX_PARAMS - 2));
        assert!(enforce_params(&many, Endpoint::Series, &t(), &limits()).is_ok());
        let too_many = format!("{many}&x=1");
        let e = enforce_params(&too_many, Endpoint::Series, &t(), &limits()).unwrap_err();
        assert!(e.status == 400 && e.message.contains("parameters"), "{e:?}");
    }

    #[test]
    fn every_query_value_is_enforced() {
        let out =
            enforce_params("query=a&%71uery=b&time=5", Endpoint::Query, &t(), &limits()).unwrap();
        assert_eq!(
            form::parse(&out).unwrap(),
            vec![
                Param {
                    key: "query".into(),
                    value: r#"a{project_id="p1"}"#.into()
                },
                Param {
                    key: "query".into(),
                    value: r#"b{project_id="p1"}"#.into()
                },
                Param {
                    key: "time".into(),
                    value: "5".into()
                },
            ]
        );
    }

    #[test]
    fn match_params_are_selectors() {
        let out = enforce_params(
            "match%5B%5D=up&match[]={job=\"x\"}&start=1",
            Endpoint::Series,
            &t(),
            &limits(),
        )
        .unwrap();
        let p = form::parse(&out).unwrap();
        assert_eq!(p[0].value, r#"up{project_id="p1"}"#);
        assert_eq!(p[1].value, r#"{job="x",project_id="p1"}"#);
        assert_eq!(p[2].value, "1");
        let e =
            enforce_params("match[]=rate(x[5m])", Endpoint::Series, &t(), &limits()).unwrap_err();
        assert_eq!(e.status, 400);
        // `query` means nothing to the series API and is left alone; `match[]` to the query API too.
        assert_eq!(
            enforce_params("query=x", Endpoint::Series, &t(), &limits()).unwrap(),
            "query=x"
        );
        assert_eq!(
            form::parse(&default_match(&t())).unwrap()[0].value,
            r#"{project_id="p1"}"#
        );
    }

    #[test]
    fn errors() {
        let e = enforce_params("query=sum(", Endpoint::Query, &t(), &limits()).unwrap_err();
        assert_eq!((e.status, e.error_type), (400, "bad_data"));
        let e = enforce_params(
            "query=up{project_id=\"p2\"}",
            Endpoint::Query,
            &t(),
            &limits(),
        )
        .unwrap_err();
        assert_eq!(e.status, 403);
        let e = enforce_params("query=a;b", Endpoint::Query, &t(), &limits()).unwrap_err();
        assert_eq!(e.status, 400);
        let mut l = limits();
        l.max_query_bytes = 3;
        assert_eq!(
            enforce_params("query=abcd", Endpoint::Query, &t(), &l)
                .unwrap_err()
                .status,
            400
        );
    }

    /// Prometheus names the parameter in the errors of `/query` and `/series` only, and the
    /// enforcer of each endpoint words its errors so, from one shared cache.
    #[test]
    fn errors_are_worded_per_endpoint() {
        let mut cache = RewriteCache::new(1 << 20);
        let (tenant, limits) = (t(), limits());
        for (endpoint, raw, want) in [
            (Endpoint::Query, "query=sum(", "invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"),
            (Endpoint::QueryRange, "query=sum(", "1:5: parse error: unclosed left parenthesis"),
            (Endpoint::QueryExemplars, "query=sum(", "1:5: parse error: unclosed left parenthesis"),
            (Endpoint::Series, "match[]=up{", "invalid parameter \"match[]\": 1:4: parse error: unexpected end of input inside braces"),
            (Endpoint::Labels, "match[]=up{", "1:4: parse error: unexpected end of input inside braces"),
            (Endpoint::LabelValues, "match[]=up{", "1:4: parse error: unexpected end of input inside braces"),
        ] {
            let mut rw = Rewriter { tenant: &tenant, limits: &limits, cache: &mut cache };
            assert_eq!(rw.params(raw, endpoint).unwrap_err().message, want, "{endpoint:?}");
            let mut out = String::new();
            let e = endpoint.enforcer().query(&mut rw, &mut out, raw, false).unwrap_err();
            assert_eq!(e.message, want, "{endpoint:?}'s enforcer");
        }
    }

    #[test]
    fn form_headers() {
        assert!(check_form_headers(Some("application/x-www-form-urlencoded"), None).is_ok());
        assert!(check_form_headers(
            Some("Application/X-WWW-Form-URLEncoded; charset=utf-8"),
            Some("identity")
        )
        .is_ok());
        for ct in [
            None,
            Some("multipart/form-data; boundary=x"),
            Some("application/json"),
            Some("text/plain"),
        ] {
            assert_eq!(check_form_headers(ct, None).unwrap_err().status, 415);
        }
        assert_eq!(
            check_form_headers(Some("application/x-www-form-urlencoded"), Some("gzip"))
                .unwrap_err()
                .status,
            415
        );
    }
}
