//! The Keystone callout: the validation request, and the mapping of Keystone's answer
//! to a [`Scope`] or a refusal. Plain data in, plain data out.

use crate::config::KeystoneConfig;
use crate::scope::Scope;
use serde::Deserialize;

/// Keystone's validation response without the catalog is a few KiB; more is refused.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub upstream: String,
    pub headers: Vec<(&'static str, String)>,
    pub timeout_ms: u64,
}

/// `GET <keystone.url>/auth/tokens?nocatalog` for a user token. A user may validate its
/// own token, so the token goes in both headers unless a service token is configured.
pub fn validation_request(cfg: &KeystoneConfig, token: &str) -> Callout {
    let auth = cfg.service_token.as_deref().unwrap_or(token);
    Callout {
        upstream: cfg.upstream.clone(),
        headers: vec![
            (":method", "GET".to_string()),
            (":path", format!("{}/auth/tokens?nocatalog", cfg.path_prefix)),
            (":authority", cfg.authority.clone()),
            ("accept", "application/json".to_string()),
            ("x-auth-token", auth.to_string()),
            ("x-subject-token", token.to_string()),
        ],
        timeout_ms: cfg.timeout_ms,
    }
}

/// Why a credential did not yield a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Keystone says the credential is not valid (401).
    Invalid(String),
    /// Valid, but it grants nothing this filter can enforce (403).
    Forbidden(String),
    /// Keystone could not answer (503): nothing may go upstream.
    Unavailable(String),
}

#[derive(Deserialize)]
struct Envelope {
    token: Token,
}

#[derive(Deserialize)]
struct Token {
    expires_at: String,
    user: Named,
    project: Option<Project>,
    domain: Option<Named>,
    system: Option<serde_json::Value>,
    #[serde(default)]
    roles: Vec<Named>,
}

#[derive(Deserialize)]
struct Named {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Project {
    id: String,
    domain: Option<Named>,
}

/// Maps the callout's outcome. `status` is `None` when the host got no response at all
/// (timeout, refused connection; NGINX then says why in `dispatch_status`).
pub fn parse_validation(
    status: Option<u16>,
    dispatch_status: Option<&str>,
    body: &[u8],
    now: u64,
) -> Result<Scope, AuthFailure> {
    let status = match status {
        Some(s) => s,
        None => {
            let why = dispatch_status.unwrap_or("no response");
            return Err(AuthFailure::Unavailable(format!(
                "Keystone could not be reached ({why}); try again later"
            )));
        }
    };
    match status {
        200 => {}
        401 | 404 => {
            return Err(AuthFailure::Invalid(
                "the token is invalid or expired; get a new one with `openstack token issue`".into(),
            ))
        }
        s => {
            return Err(AuthFailure::Unavailable(format!(
                "Keystone answered HTTP {s} while validating the token; try again later"
            )))
        }
    }
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(AuthFailure::Unavailable("Keystone's answer was too large".into()));
    }
    let env: Envelope = serde_json::from_slice(body)
        .map_err(|e| AuthFailure::Unavailable(format!("Keystone's answer was not understood: {e}")))?;
    let t = env.token;
    let expires_at = parse_rfc3339(&t.expires_at).ok_or_else(|| {
        AuthFailure::Unavailable(format!("Keystone's expires_at {:?} was not understood", t.expires_at))
    })?;
    if expires_at <= now {
        return Err(AuthFailure::Invalid("the token has expired; get a new one".into()));
    }
    let roles: Vec<String> = t.roles.into_iter().filter_map(|r| r.name.or(Some(r.id))).collect();
    let (project_id, domain_id) = match (t.project, t.domain, t.system) {
        (Some(p), _, _) => (Some(p.id), p.domain.map(|d| d.id)),
        (None, Some(d), _) => (None, Some(d.id)),
        (None, None, Some(_)) => {
            return Err(AuthFailure::Forbidden(
                "system-scoped tokens cannot read tenant metrics; use a project-scoped token".into(),
            ))
        }
        (None, None, None) => {
            return Err(AuthFailure::Forbidden(
                "the token is unscoped; get a project-scoped token (e.g. set OS_PROJECT_NAME)".into(),
            ))
        }
    };
    Ok(Scope { user_id: t.user.id, project_id, domain_id, roles, expires_at })
}

/// Parses Keystone's `2026-11-21T14:12:13.000000Z` (any fraction, `Z` or `±hh:mm`) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let tz = rest.get(1..)?;
            if tz.len() != 5 || tz.as_bytes()[2] != b':' {
                return None;
            }
            let oh: i64 = tz.get(0..2)?.parse().ok()?;
            let om: i64 = tz.get(3..5)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + h * 3600 + mi * 60 + se - offset).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn ks() -> KeystoneConfig {
        Config::from_json(br#"{"keystone":{"url":"http://ks:5000/v3","upstream":"keystone"}}"#)
            .unwrap()
            .keystone
    }

    const BODY: &str = r#"{"token":{"methods":["password"],"user":{"domain":{"id":"d1","name":"tenants"},
        "id":"u1","name":"alice","password_expires_at":null},"audit_ids":["x"],
        "expires_at":"2026-11-21T14:12:13.000000Z","issued_at":"2026-11-21T13:12:13.000000Z",
        "project":{"domain":{"id":"d1","name":"tenants"},"id":"p1","name":"team-a"},"is_domain":false,
        "roles":[{"id":"r1","name":"member"},{"id":"r2","name":"reader"}]}}"#;

    #[test]
    fn request_uses_user_token_twice() {
        let c = validation_request(&ks(), "tok");
        assert_eq!(c.upstream, "keystone");
        assert_eq!(c.timeout_ms, 2000);
        let h = |n: &str| c.headers.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(h(":method"), Some("GET"));
        assert_eq!(h(":path"), Some("/v3/auth/tokens?nocatalog"));
        assert_eq!(h(":authority"), Some("ks:5000"));
        assert_eq!(h("x-auth-token"), Some("tok"));
        assert_eq!(h("x-subject-token"), Some("tok"));
    }

    #[test]
    fn request_prefers_service_token() {
        let mut cfg = ks();
        cfg.service_token = Some("svc".into());
        let c = validation_request(&cfg, "tok");
        assert!(c.headers.contains(&("x-auth-token", "svc".to_string())));
        assert!(c.headers.contains(&("x-subject-token", "tok".to_string())));
    }

    #[test]
    fn project_scope() {
        let now = parse_rfc3339("2026-11-21T13:30:00Z").unwrap();
        let s = parse_validation(Some(200), None, BODY.as_bytes(), now).unwrap();
        assert_eq!(s.user_id, "u1");
        assert_eq!(s.project_id.as_deref(), Some("p1"));
        assert_eq!(s.domain_id.as_deref(), Some("d1"));
        assert_eq!(s.roles, vec!["member", "reader"]);
        assert_eq!(s.expires_at, parse_rfc3339("2026-11-21T14:12:13Z").unwrap());
    }

    #[test]
    fn domain_and_system_scope() {
        let dom = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"domain":{"id":"d"},"roles":[]}}"#;
        let s = parse_validation(Some(200), None, dom.as_bytes(), 0).unwrap();
        assert_eq!((s.project_id, s.domain_id.as_deref()), (None, Some("d")));
        let sys = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"system":{"all":true},"roles":[]}}"#;
        assert!(matches!(parse_validation(Some(200), None, sys.as_bytes(), 0), Err(AuthFailure::Forbidden(_))));
        let unscoped = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"}}}"#;
        assert!(matches!(parse_validation(Some(200), None, unscoped.as_bytes(), 0), Err(AuthFailure::Forbidden(_))));
    }

    #[test]
    fn statuses() {
        assert!(matches!(parse_validation(Some(404), None, b"", 0), Err(AuthFailure::Invalid(_))));
        assert!(matches!(parse_validation(Some(401), None, b"", 0), Err(AuthFailure::Invalid(_))));
        for s in [500, 502, 503, 403, 301] {
            assert!(matches!(parse_validation(Some(s), None, b"", 0), Err(AuthFailure::Unavailable(_))));
        }
        match parse_validation(None, Some("timeout"), b"", 0) {
            Err(AuthFailure::Unavailable(m)) => assert!(m.contains("timeout")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_validation(Some(200), None, b"{", 0), Err(AuthFailure::Unavailable(_))));
    }

    #[test]
    fn expired_token_is_invalid() {
        let now = parse_rfc3339("2026-11-21T15:00:00Z").unwrap();
        assert!(matches!(parse_validation(Some(200), None, BODY.as_bytes(), now), Err(AuthFailure::Invalid(_))));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00.5Z"), Some(951_868_800));
        assert_eq!(parse_rfc3339("2026-11-21T14:12:13.000000Z"), Some(1_795_270_333));
        assert_eq!(parse_rfc3339("2026-11-21T15:12:13+01:00"), Some(1_795_270_333));
        assert_eq!(parse_rfc3339("2026-11-21T14:12:13"), Some(1_795_270_333));
        for bad in ["", "2026-13-01T00:00:00Z", "2026-11-21 14:12", "2026-11-21T14:12:13.Z", "x026-11-21T14:12:13Z"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
