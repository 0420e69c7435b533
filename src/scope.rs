//! What a validated credential grants.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub user_id: String,
    /// The project of a project-scoped token.
    pub project_id: Option<String>,
    /// The project's domain, or the domain of a domain-scoped token.
    pub domain_id: Option<String>,
    /// A domain-scoped token (no project).
    #[serde(default)]
    pub domain_scoped: bool,
    /// A system-scoped token.
    #[serde(default)]
    pub system: bool,
    pub roles: Vec<String>,
    /// Unix seconds at which the token expires.
    pub expires_at: u64,
    /// The project's descendants, when `include_subprojects` looked them up.
    #[serde(default)]
    pub subprojects: Vec<String>,
    /// The access rules of a restricted application credential (`None`: no rules).
    #[serde(default)]
    pub access_rules: Option<Vec<AccessRule>>,
}

/// One access rule of an application credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRule {
    pub service: String,
    pub method: String,
    pub path: String,
}

impl AccessRule {
    /// Keystone's matching: `*` is one path segment, `**` any number of them.
    pub fn allows(&self, service_type: &str, method: &str, path: &str) -> bool {
        self.service == service_type && self.method.eq_ignore_ascii_case(method) && glob(&self.path, path)
    }
}

fn glob(pattern: &str, path: &str) -> bool {
    fn segs(s: &str) -> Vec<&str> {
        s.trim_matches('/').split('/').filter(|x| !x.is_empty()).collect()
    }
    fn m(p: &[&str], s: &[&str]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((&"**", rest)) => (0..=s.len()).any(|i| m(rest, &s[i..])),
            Some((&"*", rest)) => !s.is_empty() && m(rest, &s[1..]),
            Some((seg, rest)) => s.first() == Some(seg) && m(rest, &s[1..]),
        }
    }
    // Paths have a handful of segments, so the backtracking is bounded in practice;
    // still, refuse pathological inputs outright.
    let (p, s) = (segs(pattern), segs(path));
    p.len() <= 32 && s.len() <= 64 && m(&p, &s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str) -> AccessRule {
        AccessRule { service: "metric-storage".into(), method: "GET".into(), path: path.into() }
    }

    #[test]
    fn access_rule_paths() {
        assert!(rule("/api/v1/query").allows("metric-storage", "GET", "/api/v1/query"));
        assert!(rule("/api/v1/*").allows("metric-storage", "get", "/api/v1/query"));
        assert!(!rule("/api/v1/*").allows("metric-storage", "GET", "/api/v1/label/x/values"));
        assert!(rule("/api/**").allows("metric-storage", "GET", "/api/v1/label/x/values"));
        assert!(rule("/**").allows("metric-storage", "GET", "/federate"));
        assert!(!rule("/api/v1/query").allows("metric-storage", "POST", "/api/v1/query"));
        assert!(!rule("/api/v1/query").allows("compute", "GET", "/api/v1/query"));
        assert!(!rule("/api/v1/query").allows("metric-storage", "GET", "/api/v1/query_range"));
    }
}
