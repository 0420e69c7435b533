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

impl Scope {
    /// What the scope names as the tenant in audit logs and the `kpw_tenant` property: the
    /// project id of a project scope, the domain id of a domain scope, `system` for a system
    /// scope (admitted only with an unrestricted role). Borrowed: no allocation per request.
    pub fn tenant_id(&self) -> &str {
        match (&self.project_id, &self.domain_id) {
            (Some(project), _) => project,
            (None, Some(domain)) if self.domain_scoped => domain,
            _ if self.system => "system",
            _ => "",
        }
    }

    /// Who the scope is, for log lines: `user_id=… project_id=…`, `user_id=… domain_id=…`
    /// (domain scope) or `user_id=… system` (system scope). Ids only, never a secret.
    pub fn who(&self) -> Who<'_> {
        Who(self)
    }
}

/// [`Scope::who`], written straight into the log line (no string of its own).
pub struct Who<'a>(&'a Scope);

impl std::fmt::Display for Who<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        write!(f, "user_id={}", s.user_id)?;
        match (&s.project_id, &s.domain_id) {
            (Some(project), _) => write!(f, " project_id={project}"),
            (None, Some(domain)) if s.domain_scoped => write!(f, " domain_id={domain}"),
            _ if s.system => f.write_str(" system"),
            _ => Ok(()),
        }
    }
}

/// One access rule of an application credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRule {
    pub service: String,
    pub method: String,
    pub path: String,
}

impl AccessRule {
    /// keystonemiddleware's matching: the service type and the method exactly, and the
    /// path against the pattern anchored at both ends, where `*` and `{tag}` stand for
    /// one or more characters other than `/`, and `**` for anything.
    pub fn allows(&self, service_type: &str, method: &str, path: &str) -> bool {
        self.service == service_type
            && self.method == method
            && glob(&tokens(&self.path), path.as_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(u8),
    /// `*` or `{tag}`: `[^/]+`.
    Segment,
    /// `**`: `.*`.
    Any,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let b = pattern.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' if b.get(i + 1) == Some(&b'*') => {
                out.push(Token::Any);
                i += 2;
            }
            b'*' => {
                out.push(Token::Segment);
                i += 1;
            }
            b'{' => match b[i..].iter().position(|&c| c == b'}') {
                Some(end) => {
                    out.push(Token::Segment);
                    i += end + 1;
                }
                None => {
                    out.push(Token::Literal(b'{'));
                    i += 1;
                }
            },
            c => {
                out.push(Token::Literal(c));
                i += 1;
            }
        }
    }
    out
}

/// Matches with memoisation over (token, byte) positions, so no pattern can make it
/// take more than tokens × bytes steps.
fn glob(p: &[Token], s: &[u8]) -> bool {
    if p.len() > 256 || s.len() > 4096 {
        return false;
    }
    // memo[i][j]: p[i..] matches s[j..]; None = not computed yet.
    let mut memo = vec![None; (p.len() + 1) * (s.len() + 1)];
    fn m(p: &[Token], s: &[u8], i: usize, j: usize, memo: &mut Vec<Option<bool>>) -> bool {
        let idx = i * (s.len() + 1) + j;
        if let Some(r) = memo[idx] {
            return r;
        }
        let r = match p.get(i) {
            None => j == s.len(),
            Some(Token::Literal(c)) => s.get(j) == Some(c) && m(p, s, i + 1, j + 1, memo),
            Some(Token::Any) => (j..=s.len()).any(|k| m(p, s, i + 1, k, memo)),
            Some(Token::Segment) => {
                let run = s[j..].iter().take_while(|&&c| c != b'/').count();
                (1..=run).any(|n| m(p, s, i + 1, j + n, memo))
            }
        };
        memo[idx] = Some(r);
        r
    }
    m(p, s, 0, 0, &mut memo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str) -> AccessRule {
        AccessRule {
            service: "metric-storage".into(),
            method: "GET".into(),
            path: path.into(),
        }
    }

    fn scope(
        project: Option<&str>,
        domain: Option<&str>,
        domain_scoped: bool,
        system: bool,
    ) -> Scope {
        Scope {
            user_id: "u1".into(),
            project_id: project.map(Into::into),
            domain_id: domain.map(Into::into),
            domain_scoped,
            system,
            roles: vec![],
            expires_at: 0,
            subprojects: vec![],
            access_rules: None,
        }
    }

    #[test]
    fn tenant_and_who_name_ids_only() {
        let p = scope(Some("p1"), Some("d1"), false, false);
        assert_eq!(
            (p.tenant_id(), p.who().to_string()),
            ("p1", "user_id=u1 project_id=p1".into())
        );
        let d = scope(None, Some("d1"), true, false);
        assert_eq!(
            (d.tenant_id(), d.who().to_string()),
            ("d1", "user_id=u1 domain_id=d1".into())
        );
        let s = scope(None, None, false, true);
        assert_eq!(
            (s.tenant_id(), s.who().to_string()),
            ("system", "user_id=u1 system".into())
        );
    }

    #[test]
    fn access_rule_paths_as_keystonemiddleware_matches_them() {
        let yes = [
            ("/api/v1/query", "/api/v1/query"),
            ("/api/v1/*", "/api/v1/query"),
            ("/api/**", "/api/v1/label/x/values"),
            ("/**", "/federate"),
            ("/api/v1/query**", "/api/v1/query"),
            ("/api/v1/query**", "/api/v1/query_range"),
            ("/api/v1/lab*", "/api/v1/labels"),
            ("/api/v1/label/*/values", "/api/v1/label/job/values"),
            ("/api/v1/label/{name}/values", "/api/v1/label/job/values"),
        ];
        for (pattern, path) in yes {
            assert!(
                rule(pattern).allows("metric-storage", "GET", path),
                "{pattern} {path}"
            );
        }
        let no = [
            ("/api/v1/*", "/api/v1/label/x/values"),
            ("/api/v1/query", "/api/v1/query_range"),
            ("/api/v1/query", "/api/v1/query/"),
            ("/api/v1/lab*", "/api/v1/lab"),
            ("/api/v1/label/*/values", "/api/v1/label//values"),
            ("/api/v1/label/*/values", "/api/v1/label/a/b/values"),
        ];
        for (pattern, path) in no {
            assert!(
                !rule(pattern).allows("metric-storage", "GET", path),
                "{pattern} {path}"
            );
        }
        assert!(!rule("/api/v1/query").allows("metric-storage", "POST", "/api/v1/query"));
        assert!(
            !rule("/api/v1/query").allows("metric-storage", "get", "/api/v1/query"),
            "method is exact"
        );
        assert!(!rule("/api/v1/query").allows("compute", "GET", "/api/v1/query"));
        // Pathological patterns stay cheap.
        let evil = rule(&"**a".repeat(80));
        assert!(!evil.allows("metric-storage", "GET", &"a".repeat(79)));
    }
}
