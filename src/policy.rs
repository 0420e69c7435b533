//! What a scope may see or write: the tenant, no enforcement at all, or a refusal; and the
//! upstream contract that follows from it ([`Contract`]): the tenant to enforce and the
//! identity and tenant headers to set or to strip.
//!
//! Reading and writing differ ([`Access`]): a writer needs one of `write.required_roles`
//! (which may leave out a role that reads, such as `reader`), and writes into exactly one
//! tenant, its own project (never its sub-projects) or its domain.

use crate::auth::scope::Scope;
use crate::config::Config;
use crate::enforce::promql::Tenant;
use crate::error::ApiError;
use crate::request::header_names::HeaderName;
use std::rc::Rc;

/// What a request does with tenant data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Remote write: the data is the writer's.
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Label enforcement with this tenant; `values` also go into the tenant header.
    Enforce(Rc<Tenant>),
    /// An unrestricted role: no label enforcement (operators' cross-tenant view).
    Unrestricted,
}

/// What goes upstream for an admitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// The tenant to enforce in what the request selects; `None`: unrestricted, or the
    /// tenant header does the job (`label_enforcement` off).
    pub tenant: Option<Rc<Tenant>>,
    /// Headers the upstream gets: set to a value, or stripped (`None`) where the client
    /// sent one and the policy has no value for it.
    pub headers: Vec<(String, Option<String>)>,
}

/// The identity headers `policy.forward_identity_headers` sets, keystonemiddleware's names.
const IDENTITY_HEADERS: [HeaderName; 5] = [
    HeaderName::IdentityStatus,
    HeaderName::UserId,
    HeaderName::ProjectId,
    HeaderName::DomainId,
    HeaderName::Roles,
];

fn identity(h: HeaderName, scope: &Scope) -> Option<String> {
    match h {
        HeaderName::IdentityStatus => Some("Confirmed".to_string()),
        HeaderName::UserId => Some(scope.user_id.clone()),
        HeaderName::ProjectId => scope.project_id.clone(),
        HeaderName::DomainId => scope.domain_id.clone().filter(|_| scope.domain_scoped),
        HeaderName::Roles => Some(scope.roles.join(",")),
        _ => None,
    }
}

/// The known headers a configuration's contracts may set: the client's copies of these
/// are left to the contract (set where they lie, or stripped), so that the upstream gets
/// one value even where a removed header is still sent (NGINX).
pub fn header_mask(cfg: &Config) -> u64 {
    let mut mask = 0;
    if cfg.policy.forward_identity_headers {
        mask = IDENTITY_HEADERS.iter().fold(mask, |m, h| m | h.bit());
    }
    if let Some(h) = cfg.policy.tenant_header.as_deref().and_then(HeaderName::of) {
        mask |= h.bit();
    }
    mask
}

/// The upstream contract of a decision for `scope`.
pub fn contract(cfg: &Config, scope: &Scope, decision: Decision) -> Contract {
    let policy = &cfg.policy;
    let mut headers = Vec::new();
    if policy.forward_identity_headers {
        headers.extend(
            IDENTITY_HEADERS
                .iter()
                .map(|h| (h.as_str().to_string(), identity(*h, scope))),
        );
    }
    if let Some(h) = &policy.tenant_header {
        let value = match &decision {
            Decision::Enforce(t) => Some(t.values().join("|")),
            Decision::Unrestricted => None,
        };
        headers.push((h.clone(), value));
    }
    let tenant = match decision {
        Decision::Enforce(t) if policy.label_enforcement => Some(t),
        _ => None,
    };
    Contract { tenant, headers }
}

/// The decision and its contract for one request (`method` and `path` matter only to
/// access rules).
pub fn admit(
    cfg: &Config,
    scope: &Scope,
    access: Access,
    method: &str,
    path: &str,
) -> Result<Rc<Contract>, ApiError> {
    decide(cfg, scope, access, method, path).map(|d| Rc::new(contract(cfg, scope, d)))
}

fn has_any(scope: &Scope, roles: &[String]) -> bool {
    roles.iter().any(|r| scope.roles.contains(r))
}

/// Decides for one request. `method` and `path` are checked against the access rules
/// of a restricted application credential.
pub fn decide(
    cfg: &Config,
    scope: &Scope,
    access: Access,
    method: &str,
    path: &str,
) -> Result<Decision, ApiError> {
    if let Some(rules) = &scope.access_rules {
        let service = &cfg.keystone.service_type;
        if !rules.iter().any(|r| r.allows(service, method, path)) {
            return Err(ApiError::forbidden(format!(
                "the application credential's access rules do not allow {method} {path} on service type {service}"
            )));
        }
    }
    let policy = &cfg.policy;
    if has_any(scope, &policy.unrestricted_roles) {
        return Ok(Decision::Unrestricted);
    }
    let (verb, required) = match access {
        Access::Read => ("read", &policy.required_roles),
        Access::Write => ("write", &cfg.write.required_roles),
    };
    if scope.system {
        return Err(ApiError::forbidden(format!(
            "system-scoped tokens cannot {verb} tenant metrics; use a project- or domain-scoped token"
        )));
    }
    if !required.is_empty() && !has_any(scope, required) {
        let gerund = if access == Access::Read {
            "reading"
        } else {
            "writing"
        };
        return Err(ApiError::forbidden(format!(
            "{gerund} metrics needs one of the roles {} on the project",
            required.join(", ")
        )));
    }
    let tenant = match (&scope.project_id, &scope.domain_id) {
        (Some(project), _) => {
            let mut ids = vec![project.clone()];
            // Only where this configuration asks for them: an entry stored by another
            // configuration may carry them. A writer writes into its own project only.
            if policy.include_subprojects && access == Access::Read {
                ids.extend(scope.subprojects.iter().filter(|s| *s != project).cloned());
            }
            Tenant::new(&cfg.project_label, ids)
        }
        (None, Some(domain)) if scope.domain_scoped => {
            Tenant::new(&policy.domain_label, vec![domain.clone()])
        }
        _ => {
            return Err(ApiError::forbidden(
                "the token has no project or domain scope",
            ))
        }
    };
    Ok(Decision::Enforce(Rc::new(tenant)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scope::AccessRule;

    fn cfg(extra: &str) -> Config {
        Config::from_json(format!(r#"{{"keystone":{{"url":"http://k/v3"}}{extra}}}"#).as_bytes())
            .unwrap()
    }

    fn scope() -> Scope {
        Scope {
            user_id: "u".into(),
            project_id: Some("p1".into()),
            domain_id: Some("d1".into()),
            domain_scoped: false,
            system: false,
            roles: vec!["reader".into()],
            expires_at: u64::MAX,
            subprojects: vec![],
            access_rules: None,
        }
    }

    fn tenant(d: Result<Decision, ApiError>) -> String {
        match d {
            Ok(Decision::Enforce(t)) => t.selector(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn project_domain_and_subprojects() {
        assert_eq!(
            tenant(decide(&cfg(""), &scope(), Access::Read, "GET", "/")),
            r#"{project="p1"}"#
        );
        let mut s = scope();
        s.subprojects = vec!["c1".into(), "c.2".into()];
        let subs = cfg(r#","include_subprojects":true"#);
        assert_eq!(
            tenant(decide(&subs, &s, Access::Read, "GET", "/")),
            r#"{project=~"p1|c1|c\\.2"}"#
        );
        // An entry another configuration stored with its sub-projects: not for this one.
        assert_eq!(
            tenant(decide(&cfg(""), &s, Access::Read, "GET", "/")),
            r#"{project="p1"}"#
        );
        let mut s = scope();
        s.project_id = None;
        s.domain_scoped = true;
        assert_eq!(
            tenant(decide(&cfg(""), &s, Access::Read, "GET", "/")),
            r#"{domain="d1"}"#
        );
        assert_eq!(
            tenant(decide(
                &cfg(r#","domain_label":"domain""#),
                &s,
                Access::Read,
                "GET",
                "/"
            )),
            r#"{domain="d1"}"#
        );
    }

    #[test]
    fn roles() {
        let c = cfg(r#","required_roles":["monitoring_viewer","admin"]"#);
        let e = decide(&c, &scope(), Access::Read, "GET", "/").unwrap_err();
        assert_eq!(e.status, 403);
        assert!(
            e.message.contains("monitoring_viewer, admin"),
            "{}",
            e.message
        );
        let mut s = scope();
        s.roles.push("admin".into());
        assert!(decide(&c, &s, Access::Read, "GET", "/").is_ok());
        let c = cfg(r#","unrestricted_roles":["cloud_admin"]"#);
        s.roles.push("cloud_admin".into());
        assert_eq!(
            decide(&c, &s, Access::Read, "GET", "/"),
            Ok(Decision::Unrestricted)
        );
    }

    #[test]
    fn writers() {
        let w = |c: &Config, s: &Scope| decide(c, s, Access::Write, "POST", "/api/v1/write");
        // The default write roles: member or admin; a reader reads but does not write.
        let e = w(&cfg(""), &scope()).unwrap_err();
        assert!(
            e.status == 403
                && e.message
                    .contains("writing metrics needs one of the roles member, admin"),
            "{}",
            e.message
        );
        assert!(decide(&cfg(""), &scope(), Access::Read, "GET", "/").is_ok());
        let mut s = scope();
        s.roles = vec!["member".into(), "reader".into()];
        assert_eq!(tenant(w(&cfg(""), &s)), r#"{project="p1"}"#);
        // With sub-projects, reads widen, writes go to the token's own project.
        s.subprojects = vec!["c1".into()];
        let subs = cfg(r#","include_subprojects":true"#);
        assert_eq!(tenant(w(&subs, &s)), r#"{project="p1"}"#);
        assert_eq!(
            tenant(decide(&subs, &s, Access::Read, "GET", "/")),
            r#"{project=~"p1|c1"}"#
        );
        // A domain-scoped writer writes into its domain.
        let mut d = s.clone();
        d.project_id = None;
        d.domain_scoped = true;
        assert_eq!(tenant(w(&cfg(""), &d)), r#"{domain="d1"}"#);
        // The write roles are their own list; an empty one lets any role write.
        let c =
            cfg(r#","required_roles":["reader"],"write":{"required_roles":["telemetry_writer"]}"#);
        assert_eq!(w(&c, &s).unwrap_err().status, 403);
        assert!(decide(&c, &s, Access::Read, "GET", "/").is_ok());
        assert!(w(&cfg(r#","write":{"required_roles":[]}"#), &scope()).is_ok());
        // Unrestricted writers keep their labels; a system scope without the role can't write.
        let c = cfg(r#","unrestricted_roles":["cloud_admin"]"#);
        let mut ops = scope();
        ops.roles = vec!["cloud_admin".into()];
        assert_eq!(w(&c, &ops), Ok(Decision::Unrestricted));
        ops.roles = vec!["member".into()];
        ops.system = true;
        ops.project_id = None;
        assert!(w(&c, &ops).unwrap_err().message.contains("cannot write"));
        // The tenant header carries the one project written to.
        let c = cfg(r#","include_subprojects":true,"tenant_header":"THANOS-TENANT""#);
        let got = contract(&c, &s, w(&c, &s).unwrap());
        assert_eq!(
            got.headers,
            vec![("thanos-tenant".to_string(), Some("p1".to_string()))]
        );
    }

    #[test]
    fn system_scope_needs_an_unrestricted_role() {
        let mut s = scope();
        s.project_id = None;
        s.domain_id = None;
        s.system = true;
        assert_eq!(
            decide(&cfg(""), &s, Access::Read, "GET", "/")
                .unwrap_err()
                .status,
            403
        );
        s.roles = vec!["admin".into()];
        assert_eq!(
            decide(
                &cfg(r#","unrestricted_roles":["admin"]"#),
                &s,
                Access::Read,
                "GET",
                "/"
            ),
            Ok(Decision::Unrestricted)
        );
    }

    #[test]
    fn access_rules() {
        let mut s = scope();
        s.access_rules = Some(vec![AccessRule {
            service: "metric-storage".into(),
            method: "GET".into(),
            path: "/api/v1/query".into(),
        }]);
        assert!(decide(&cfg(""), &s, Access::Read, "GET", "/api/v1/query").is_ok());
        let e = decide(&cfg(""), &s, Access::Read, "GET", "/api/v1/query_range").unwrap_err();
        assert!(e.status == 403 && e.message.contains("access rules"));
        assert!(decide(&cfg(""), &s, Access::Read, "POST", "/api/v1/query").is_err());
        s.access_rules = Some(vec![]);
        assert!(
            decide(&cfg(""), &s, Access::Read, "GET", "/api/v1/query").is_err(),
            "no rule, no access"
        );
    }

    #[test]
    fn the_contract_names_every_header_it_sets_or_strips() {
        let c = cfg(
            r#","tenant_header":"X-Scope-OrgID","forward_identity_headers":true,"label_enforcement":false"#,
        );
        let d = decide(&c, &scope(), Access::Read, "GET", "/").unwrap();
        let got = contract(&c, &scope(), d);
        assert_eq!(got.tenant, None, "the tenant header does the job");
        let h = |name: &str| {
            got.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(h("x-scope-orgid"), Some(Some("p1".into())));
        assert_eq!(h("x-project-id"), Some(Some("p1".into())));
        assert_eq!(
            h("x-domain-id"),
            Some(None),
            "a project token has no domain to forward: stripped"
        );
        assert_eq!(h("x-roles"), Some(Some("reader".into())));
        let mask = header_mask(&c);
        for (name, _) in &got.headers {
            assert!(
                HeaderName::of(name).is_some_and(|k| mask & k.bit() != 0),
                "{name} is in the mask"
            );
        }
        // Unrestricted: no tenant header value (the client's is stripped), nothing to enforce.
        let c = cfg(r#","tenant_header":"X-Scope-OrgID","unrestricted_roles":["reader"]"#);
        let got = contract(
            &c,
            &scope(),
            decide(&c, &scope(), Access::Read, "GET", "/").unwrap(),
        );
        assert_eq!(
            (got.tenant, got.headers),
            (None, vec![("x-scope-orgid".to_string(), None)])
        );
        // The default: enforce, no headers.
        let c = cfg("");
        let got = contract(
            &c,
            &scope(),
            decide(&c, &scope(), Access::Read, "GET", "/").unwrap(),
        );
        assert!(got.tenant.is_some() && got.headers.is_empty() && header_mask(&c) == 0);
    }
}
