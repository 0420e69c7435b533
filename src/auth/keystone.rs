//! The Keystone callout: the validation request, and the mapping of Keystone's answer
//! to a [`Scope`] or a refusal. Plain data in, plain data out.

use crate::auth::credentials::{AppCredRef, Credential, ScopeRef, UserRef};
use crate::auth::scope::{AccessRule, Scope};
use crate::config::{KeystoneConfig, ProjectSpec, ServiceCredentials, UserSpec};
use serde::Deserialize;
use serde_json::{json, Value};

/// Keystone's validation response without the catalog is a few KiB; more is refused.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Bounds on an application credential's access rules (see `parse_token_answer`).
const MAX_ACCESS_RULES: usize = 16;
const MAX_RULE_PATH: usize = 128;

/// The access-rules version this filter enforces (keystonemiddleware sends the same).
pub const ACCESS_RULES_VERSION: &str = "1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callout {
    pub upstream: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

fn callout(
    cfg: &KeystoneConfig,
    method: &str,
    path: String,
    mut headers: Vec<(&'static str, String)>,
    body: Option<Value>,
) -> Callout {
    // `:scheme` is what makes ngx_wasm_module open TLS to Keystone (Envoy's cluster decides there).
    let scheme = if cfg.url.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let mut all = vec![
        (":method", method.to_string()),
        (":path", format!("{}{path}", cfg.path_prefix)),
        (":authority", cfg.authority.clone()),
        (":scheme", scheme.to_string()),
        ("accept", "application/json".to_string()),
    ];
    if body.is_some() {
        all.push(("content-type", "application/json".to_string()));
    }
    all.append(&mut headers);
    Callout {
        upstream: cfg.upstream.clone(),
        headers: all,
        body: body.map(|b| b.to_string().into_bytes()),
        timeout_ms: cfg.timeout_ms,
    }
}

/// `GET <keystone.url>/auth/tokens?nocatalog` for a user token. A user may validate its
/// own token, so the token goes in both headers unless a service token is given; with a
/// service token the filter also enforces access rules, so it says it supports them.
pub fn validation_request(
    cfg: &KeystoneConfig,
    token: &str,
    service_token: Option<&str>,
) -> Callout {
    let mut headers = vec![("x-subject-token", token.to_string())];
    match service_token {
        Some(svc) => {
            headers.push(("x-auth-token", svc.to_string()));
            headers.push((
                "openstack-identity-access-rules",
                ACCESS_RULES_VERSION.to_string(),
            ));
        }
        None => headers.push(("x-auth-token", token.to_string())),
    }
    callout(cfg, "GET", "/auth/tokens?nocatalog".into(), headers, None)
}

fn user_json(u: &UserRef) -> Value {
    match u {
        UserRef::Id(id) => json!({ "id": id }),
        UserRef::Name { name, domain } => json!({ "name": name, "domain": { "name": domain } }),
    }
}

/// `POST <keystone.url>/auth/tokens?nocatalog`: a password or application credential
/// exchanged for a token; its scope is the answer. `None` for a token credential.
pub fn auth_request(cfg: &KeystoneConfig, credential: &Credential) -> Option<Callout> {
    let auth = match credential {
        Credential::Token(_) => return None,
        Credential::Password {
            user,
            password,
            scope,
        } => {
            let mut user = user_json(user);
            user["password"] = json!(password);
            let scope = match scope {
                ScopeRef::ProjectId(id) => json!({ "project": { "id": id } }),
                ScopeRef::ProjectName { name, domain } => {
                    json!({ "project": { "name": name, "domain": { "name": domain } } })
                }
                ScopeRef::Domain(name) => json!({ "domain": { "name": name } }),
            };
            json!({ "identity": { "methods": ["password"], "password": { "user": user } }, "scope": scope })
        }
        Credential::AppCredential { cred, secret } => {
            let mut app = match cred {
                AppCredRef::Id(id) => json!({ "id": id }),
                AppCredRef::Name { name, user } => json!({ "name": name, "user": user_json(user) }),
            };
            app["secret"] = json!(secret);
            json!({ "identity": { "methods": ["application_credential"], "application_credential": app } })
        }
    };
    Some(callout(
        cfg,
        "POST",
        "/auth/tokens?nocatalog".into(),
        vec![],
        Some(json!({ "auth": auth })),
    ))
}

/// The filter's own login, for a service token.
pub fn service_auth_request(cfg: &KeystoneConfig, creds: &ServiceCredentials) -> Callout {
    let auth = match creds {
        ServiceCredentials::ApplicationCredential { id, secret } => json!({
            "identity": { "methods": ["application_credential"], "application_credential": { "id": id, "secret": secret } }
        }),
        ServiceCredentials::Password {
            user,
            password,
            project,
        } => {
            let mut user = match user {
                UserSpec::Id(id) => json!({ "id": id }),
                UserSpec::Name { name, domain_name } => {
                    json!({ "name": name, "domain": { "name": domain_name } })
                }
            };
            user["password"] = json!(password);
            let project = match project {
                ProjectSpec::Id(id) => json!({ "id": id }),
                ProjectSpec::Name { name, domain_name } => {
                    json!({ "name": name, "domain": { "name": domain_name } })
                }
            };
            json!({ "identity": { "methods": ["password"], "password": { "user": user } }, "scope": { "project": project } })
        }
    };
    callout(
        cfg,
        "POST",
        "/auth/tokens?nocatalog".into(),
        vec![],
        Some(json!({ "auth": auth })),
    )
}

/// `GET <keystone.url>/projects/<id>?subtree_as_ids`: the project's descendants.
pub fn subtree_request(cfg: &KeystoneConfig, project_id: &str, token: &str) -> Callout {
    let id: String = project_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    callout(
        cfg,
        "GET",
        format!("/projects/{id}?subtree_as_ids"),
        vec![("x-auth-token", token.to_string())],
        None,
    )
}

/// Why a credential did not yield a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// Keystone says the credential is not valid (401, 404), and what it says was refused.
    Invalid(Refusal),
    /// Valid, but it grants nothing this filter can enforce (403).
    Forbidden(String),
    /// Keystone could not answer (503): nothing may go upstream.
    Unavailable(String),
    /// Keystone did not answer within `keystone.timeout_ms` (504).
    Timeout(String),
}

/// How a callout ended, as the host saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer<'a> {
    /// `None` when the host got no response at all.
    pub status: Option<u16>,
    /// NGINX's reason for a failed callout (`timeout`, `broken connection`, …).
    pub dispatch_status: Option<&'a str>,
    /// The failed callout took at least the timeout (Envoy says no more than that).
    pub timed_out: bool,
    pub body: &'a [u8],
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
    application_credential: Option<AppCred>,
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

#[derive(Deserialize)]
struct AppCred {
    #[serde(default)]
    access_rules: Option<Vec<AccessRule>>,
}

/// What Keystone refused in its 401 (or 404) to a token request, as far as its answer
/// says: `error.message` of `{"error":{"code":401,"message":…}}`. By default (without
/// `[DEFAULT] insecure_debug`) Keystone hides why, and every refusal of a password or an
/// application credential reads "The request you have made requires authentication." (seen
/// on Keystone 22: a wrong password, an unknown user, a project without a role, an unknown
/// project or domain all answer so). It always says so when an account is locked or
/// disabled or a password expired; with `insecure_debug` it also names the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Keystone does not say (its default).
    Unsaid,
    /// "Invalid username or password", "Invalid application credential ID or secret": the
    /// password or secret is wrong (or, for a user given by id, there is no such user).
    WrongSecret,
    /// "Could not find user: …".
    NoUser,
    /// "Could not find application credential" (a 404 for an id).
    NoApplicationCredential,
    /// "The account is locked for user: …" (too many failed logins).
    Locked,
    /// "The account is disabled for user: …".
    Disabled,
    /// "The password is expired and needs to be changed for user: …".
    PasswordExpired,
    /// "User … has no access to project …" (or domain, or the system): no role there.
    NoRole,
    /// "Could not find project: …".
    NoProject,
    /// "Could not find domain: <name>.": the user's domain or the scope's.
    NoDomain(String),
    /// A token that validated but whose `expires_at` has passed.
    Expired,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
}

/// Reads Keystone's refusal from the body of its 401 or 404 (see [`Refusal`]).
pub fn refusal(body: &[u8]) -> Refusal {
    if body.len() > MAX_RESPONSE_BYTES {
        return Refusal::Unsaid;
    }
    let Ok(ErrorEnvelope { error }) = serde_json::from_slice::<ErrorEnvelope>(body) else {
        return Refusal::Unsaid;
    };
    // With `insecure_debug` Keystone appends " (Disable insecure_debug mode to suppress these details.)".
    let m = error
        .message
        .split(" (Disable insecure_debug")
        .next()
        .unwrap_or_default()
        .trim();
    let lower = m.to_ascii_lowercase();
    let starts = |p: &str| lower.starts_with(p);
    if starts("invalid username or password")
        || starts("invalid user / password")
        || starts("invalid application credential")
    {
        Refusal::WrongSecret
    } else if starts("could not find user") {
        Refusal::NoUser
    } else if starts("could not find application credential") {
        Refusal::NoApplicationCredential
    } else if starts("the account is locked") {
        Refusal::Locked
    } else if starts("the account is disabled") {
        Refusal::Disabled
    } else if starts("the password is expired") {
        Refusal::PasswordExpired
    } else if lower.contains(" has no access to ") {
        Refusal::NoRole
    } else if starts("could not find project") {
        Refusal::NoProject
    } else if let Some(name) = m
        .get("Could not find domain: ".len()..)
        .filter(|_| starts("could not find domain: "))
    {
        let name = name.strip_suffix('.').unwrap_or(name);
        Refusal::NoDomain(name.chars().take(256).collect())
    } else {
        Refusal::Unsaid
    }
}

/// Maps a failed or refused callout; `ok` is the status that means success.
fn failure(answer: &Answer, ok: u16) -> Option<AuthFailure> {
    let status = match answer.status {
        Some(s) => s,
        None => {
            let why = answer.dispatch_status.unwrap_or("no response");
            if answer.timed_out || why.contains("timeout") {
                return Some(AuthFailure::Timeout(
                    "Keystone did not answer in time; try again later".into(),
                ));
            }
            return Some(AuthFailure::Unavailable(format!(
                "Keystone could not be reached ({why}); try again later"
            )));
        }
    };
    match status {
        s if s == ok => None,
        // Envoy answers a callout that ran out of time with its own 504.
        504 => Some(AuthFailure::Timeout(
            "Keystone did not answer in time; try again later".into(),
        )),
        // A validation's refusal says nothing more than its status; a token request's may.
        401 | 404 if ok == 201 => Some(AuthFailure::Invalid(refusal(answer.body))),
        401 | 404 => Some(AuthFailure::Invalid(Refusal::Unsaid)),
        s => Some(AuthFailure::Unavailable(format!(
            "Keystone answered HTTP {s}; try again later"
        ))),
    }
}

/// Maps the answer to a validation (200) or a token request (201) to a scope.
pub fn parse_token_answer(answer: &Answer, ok: u16, now: u64) -> Result<Scope, AuthFailure> {
    if let Some(f) = failure(answer, ok) {
        return Err(f);
    }
    if answer.body.len() > MAX_RESPONSE_BYTES {
        return Err(AuthFailure::Unavailable(
            "Keystone's answer was too large".into(),
        ));
    }
    let env: Envelope = serde_json::from_slice(answer.body).map_err(|e| {
        AuthFailure::Unavailable(format!("Keystone's answer was not understood: {e}"))
    })?;
    let t = env.token;
    let expires_at = parse_rfc3339(&t.expires_at).ok_or_else(|| {
        AuthFailure::Unavailable(format!(
            "Keystone's expires_at {:?} was not understood",
            t.expires_at
        ))
    })?;
    if expires_at <= now {
        return Err(AuthFailure::Invalid(Refusal::Expired));
    }
    let roles: Vec<String> = t
        .roles
        .into_iter()
        .filter_map(|r| r.name.or(Some(r.id)))
        .collect();
    let access_rules = t.application_credential.and_then(|a| a.access_rules);
    // Any user can write an application credential's rules, and each validated token of it
    // is cached with them: bounded, so that one user cannot fill the caches' memory.
    if let Some(rules) = &access_rules {
        let long = |r: &AccessRule| {
            r.path.len() > MAX_RULE_PATH || r.service.len() > 64 || r.method.len() > 16
        };
        if rules.len() > MAX_ACCESS_RULES || rules.iter().any(long) {
            return Err(AuthFailure::Forbidden(format!(
                "the application credential's access rules exceed what the filter holds \
                 ({MAX_ACCESS_RULES} rules, paths of {MAX_RULE_PATH} bytes)"
            )));
        }
    }
    let mut scope = Scope {
        user_id: t.user.id,
        project_id: None,
        domain_id: None,
        domain_scoped: false,
        system: false,
        roles,
        expires_at,
        subprojects: Vec::new(),
        access_rules,
    };
    // An empty id would become `project_id=""`, which matches every series without the label.
    let empty = |id: &str| id.trim().is_empty();
    if t.project
        .as_ref()
        .is_some_and(|p| empty(&p.id) || p.domain.as_ref().is_some_and(|d| empty(&d.id)))
        || t.domain.as_ref().is_some_and(|d| empty(&d.id))
    {
        return Err(AuthFailure::Unavailable(
            "Keystone's answer has an empty project or domain id".into(),
        ));
    }
    match (t.project, t.domain, t.system) {
        (Some(p), _, _) => {
            scope.project_id = Some(p.id);
            scope.domain_id = p.domain.map(|d| d.id);
        }
        (None, Some(d), _) => {
            scope.domain_id = Some(d.id);
            scope.domain_scoped = true;
        }
        (None, None, Some(_)) => scope.system = true,
        (None, None, None) => {
            return Err(AuthFailure::Forbidden(
                "the token is unscoped; get a project-scoped token (e.g. set OS_PROJECT_NAME)"
                    .into(),
            ))
        }
    }
    Ok(scope)
}

/// The filter's service token from a token request: `X-Subject-Token` and its expiry.
pub fn parse_service_token(
    answer: &Answer,
    subject_token: Option<&str>,
    now: u64,
) -> Result<(String, u64), AuthFailure> {
    let scope = parse_token_answer(answer, 201, now).map_err(|f| match f {
        // The service's own credentials being refused is the operator's problem, not the user's.
        AuthFailure::Invalid(_) | AuthFailure::Forbidden(_) => AuthFailure::Unavailable(
            "the filter's service credentials were refused by Keystone".into(),
        ),
        other => other,
    })?;
    match subject_token {
        Some(t) if !t.is_empty() => Ok((t.to_string(), scope.expires_at)),
        _ => Err(AuthFailure::Unavailable(
            "Keystone issued no service token".into(),
        )),
    }
}

/// The descendants of a project, flattened from `subtree_as_ids`' nested map.
pub fn parse_subtree(answer: &Answer) -> Result<Vec<String>, AuthFailure> {
    if answer.status == Some(403) {
        return Err(AuthFailure::Forbidden(
            "Keystone does not let this token list the project's sub-projects".into(),
        ));
    }
    if let Some(f) = failure(answer, 200) {
        return Err(match f {
            AuthFailure::Invalid(_) => AuthFailure::Forbidden(
                "the project's sub-projects could not be looked up with this token".into(),
            ),
            other => other,
        });
    }
    let v: Value = serde_json::from_slice(answer.body).map_err(|e| {
        AuthFailure::Unavailable(format!("Keystone's project answer was not understood: {e}"))
    })?;
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = vec![&v["project"]["subtree"]];
    while let Some(node) = stack.pop() {
        if let Some(map) = node.as_object() {
            for (id, children) in map {
                if out.len() >= 1024 {
                    return Err(AuthFailure::Forbidden(
                        "the project has more than 1024 sub-projects".into(),
                    ));
                }
                if id.trim().is_empty() {
                    return Err(AuthFailure::Unavailable(
                        "Keystone's project answer has an empty sub-project id".into(),
                    ));
                }
                out.push(id.clone());
                stack.push(children);
            }
        }
    }
    out.sort();
    Ok(out)
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

    fn ok(body: &str) -> Answer<'_> {
        Answer {
            status: Some(200),
            dispatch_status: None,
            timed_out: false,
            body: body.as_bytes(),
        }
    }

    fn status(s: Option<u16>) -> Answer<'static> {
        Answer {
            status: s,
            dispatch_status: None,
            timed_out: false,
            body: b"",
        }
    }

    fn h<'a>(c: &'a Callout, n: &str) -> Option<&'a str> {
        c.headers
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn validation_uses_user_token_twice() {
        let c = validation_request(&ks(), "tok", None);
        assert_eq!(
            (c.upstream.as_str(), c.timeout_ms, c.body.as_ref()),
            ("keystone", 2000, None)
        );
        assert_eq!(h(&c, ":method"), Some("GET"));
        assert_eq!(h(&c, ":path"), Some("/v3/auth/tokens?nocatalog"));
        assert_eq!(h(&c, ":authority"), Some("ks:5000"));
        assert_eq!(h(&c, ":scheme"), Some("http"));
        let tls = Config::from_json(
            br#"{"keystone":{"url":"https://ks.example:5000/v3","upstream":"ks.example:5000"}}"#,
        );
        let c = validation_request(&tls.unwrap().keystone, "tok", None);
        assert_eq!(
            (h(&c, ":scheme"), h(&c, ":authority")),
            (Some("https"), Some("ks.example:5000"))
        );
        assert_eq!(h(&c, "x-auth-token"), Some("tok"));
        assert_eq!(h(&c, "x-subject-token"), Some("tok"));
        assert_eq!(h(&c, "openstack-identity-access-rules"), None);
    }

    #[test]
    fn validation_with_service_token_supports_access_rules() {
        let c = validation_request(&ks(), "tok", Some("svc"));
        assert_eq!(h(&c, "x-auth-token"), Some("svc"));
        assert_eq!(h(&c, "x-subject-token"), Some("tok"));
        assert_eq!(h(&c, "openstack-identity-access-rules"), Some("1"));
    }

    fn body(c: &Callout) -> Value {
        serde_json::from_slice(c.body.as_ref().unwrap()).unwrap()
    }

    #[test]
    fn password_and_appcred_requests() {
        let cred = Credential::Password {
            user: UserRef::Name {
                name: "alice".into(),
                domain: "tenants".into(),
            },
            password: "pw".into(),
            scope: ScopeRef::ProjectName {
                name: "team-a".into(),
                domain: "tenants".into(),
            },
        };
        let c = auth_request(&ks(), &cred).unwrap();
        assert_eq!(
            (h(&c, ":method"), h(&c, ":path")),
            (Some("POST"), Some("/v3/auth/tokens?nocatalog"))
        );
        assert_eq!(h(&c, "content-type"), Some("application/json"));
        assert_eq!(
            body(&c),
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user":
                {"name": "alice", "domain": {"name": "tenants"}, "password": "pw"}}},
                "scope": {"project": {"name": "team-a", "domain": {"name": "tenants"}}}}})
        );
        let cred = Credential::Password {
            user: UserRef::Id("u".into()),
            password: "p".into(),
            scope: ScopeRef::Domain("d".into()),
        };
        assert_eq!(
            body(&auth_request(&ks(), &cred).unwrap())["auth"]["scope"],
            json!({"domain": {"name": "d"}})
        );
        let cred = Credential::AppCredential {
            cred: AppCredRef::Name {
                name: "ci".into(),
                user: UserRef::Id("u1".into()),
            },
            secret: "s".into(),
        };
        assert_eq!(
            body(&auth_request(&ks(), &cred).unwrap())["auth"]["identity"],
            json!({"methods": ["application_credential"], "application_credential": {"name": "ci", "user": {"id": "u1"}, "secret": "s"}})
        );
        assert!(auth_request(&ks(), &Credential::Token("t".into())).is_none());
    }

    #[test]
    fn service_login() {
        let creds = ServiceCredentials::ApplicationCredential {
            id: "a".into(),
            secret: "s".into(),
        };
        let c = service_auth_request(&ks(), &creds);
        assert_eq!(
            body(&c)["auth"]["identity"]["application_credential"],
            json!({"id": "a", "secret": "s"})
        );
        let issued = Answer {
            status: Some(201),
            ..ok(BODY)
        };
        let now = parse_rfc3339("2026-11-21T13:30:00Z").unwrap();
        assert_eq!(
            parse_service_token(&issued, Some("svc-tok"), now)
                .unwrap()
                .0,
            "svc-tok"
        );
        assert!(matches!(
            parse_service_token(&issued, None, now),
            Err(AuthFailure::Unavailable(_))
        ));
        assert!(matches!(
            parse_service_token(&status(Some(401)), Some("x"), now),
            Err(AuthFailure::Unavailable(_))
        ));
    }

    #[test]
    fn project_scope() {
        let now = parse_rfc3339("2026-11-21T13:30:00Z").unwrap();
        let s = parse_token_answer(&ok(BODY), 200, now).unwrap();
        assert_eq!(s.user_id, "u1");
        assert_eq!(s.project_id.as_deref(), Some("p1"));
        assert_eq!(s.domain_id.as_deref(), Some("d1"));
        assert!(!s.domain_scoped && !s.system);
        assert_eq!(s.roles, vec!["member", "reader"]);
        assert_eq!(s.expires_at, parse_rfc3339("2026-11-21T14:12:13Z").unwrap());
        assert_eq!(s.access_rules, None);
        // A token request answers 201; 200 is then not success.
        assert!(parse_token_answer(&ok(BODY), 201, now).is_err());
    }

    #[test]
    fn empty_ids_and_oversized_access_rules_are_refused() {
        for body in [
            r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"project":{"id":""},"roles":[]}}"#,
            r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"project":{"id":"p","domain":{"id":" "}},"roles":[]}}"#,
            r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"domain":{"id":""},"roles":[]}}"#,
        ] {
            assert!(
                matches!(
                    parse_token_answer(&ok(body), 200, 0),
                    Err(AuthFailure::Unavailable(_))
                ),
                "{body}"
            );
        }
        let subtree = r#"{"project":{"id":"p","subtree":{"c1":{"":null}}}}"#;
        assert!(matches!(
            parse_subtree(&ok(subtree)),
            Err(AuthFailure::Unavailable(_))
        ));
        let rule = |path: &str| {
            format!(r#"{{"id":"x","service":"metric-storage","method":"GET","path":"{path}"}}"#)
        };
        let app = |rules: Vec<String>| {
            format!(
                r#"{{"token":{{"expires_at":"2099-01-01T00:00:00Z","user":{{"id":"u"}},"project":{{"id":"p"}},"roles":[],
                "application_credential":{{"id":"a","name":"n","restricted":true,"access_rules":[{}]}}}}}}"#,
                rules.join(",")
            )
        };
        let fine = app(vec![rule("/api/v1/query"); MAX_ACCESS_RULES]);
        assert!(parse_token_answer(&ok(&fine), 200, 0).is_ok());
        for body in [
            app(vec![rule("/api/v1/query"); MAX_ACCESS_RULES + 1]),
            app(vec![rule(&"/x".repeat(MAX_RULE_PATH))]),
        ] {
            assert!(matches!(
                parse_token_answer(&ok(&body), 200, 0),
                Err(AuthFailure::Forbidden(_))
            ));
        }
    }

    #[test]
    fn domain_system_and_appcred_scope() {
        let dom = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"domain":{"id":"d"},"roles":[]}}"#;
        let s = parse_token_answer(&ok(dom), 200, 0).unwrap();
        assert_eq!(
            (s.project_id, s.domain_id.as_deref(), s.domain_scoped),
            (None, Some("d"), true)
        );
        let sys = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"system":{"all":true},"roles":[{"id":"r","name":"admin"}]}}"#;
        let s = parse_token_answer(&ok(sys), 200, 0).unwrap();
        assert!(s.system && s.project_id.is_none());
        let unscoped = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"}}}"#;
        assert!(matches!(
            parse_token_answer(&ok(unscoped), 200, 0),
            Err(AuthFailure::Forbidden(_))
        ));
        let app = r#"{"token":{"expires_at":"2099-01-01T00:00:00Z","user":{"id":"u"},"project":{"id":"p"},"roles":[],
            "application_credential":{"id":"a","name":"n","restricted":true,
            "access_rules":[{"id":"x","service":"metric-storage","method":"GET","path":"/api/v1/query"}]}}}"#;
        let s = parse_token_answer(&ok(app), 200, 0).unwrap();
        assert_eq!(s.access_rules.unwrap()[0].path, "/api/v1/query");
    }

    #[test]
    fn statuses() {
        assert!(matches!(
            parse_token_answer(&status(Some(404)), 200, 0),
            Err(AuthFailure::Invalid(_))
        ));
        assert!(matches!(
            parse_token_answer(&status(Some(401)), 200, 0),
            Err(AuthFailure::Invalid(_))
        ));
        assert!(matches!(
            parse_token_answer(&status(Some(504)), 200, 0),
            Err(AuthFailure::Timeout(_))
        ));
        for s in [500, 502, 503, 403, 301] {
            assert!(matches!(
                parse_token_answer(&status(Some(s)), 200, 0),
                Err(AuthFailure::Unavailable(_))
            ));
        }
        let a = Answer {
            dispatch_status: Some("broken connection"),
            ..status(None)
        };
        assert!(
            matches!(parse_token_answer(&a, 200, 0), Err(AuthFailure::Unavailable(m)) if m.contains("broken"))
        );
        let a = Answer {
            dispatch_status: Some("timeout"),
            ..status(None)
        };
        assert!(matches!(
            parse_token_answer(&a, 200, 0),
            Err(AuthFailure::Timeout(_))
        ));
        let a = Answer {
            timed_out: true,
            ..status(None)
        };
        assert!(matches!(
            parse_token_answer(&a, 200, 0),
            Err(AuthFailure::Timeout(_))
        ));
        assert!(matches!(
            parse_token_answer(&ok("{"), 200, 0),
            Err(AuthFailure::Unavailable(_))
        ));
    }

    #[test]
    fn what_keystone_says_it_refused() {
        // Keystone 22's answers (harness stack), with and without `insecure_debug`.
        let said = |code: u16, message: &str| {
            let body =
                json!({"error": {"code": code, "message": message, "title": "Unauthorized"}})
                    .to_string();
            match parse_token_answer(
                &Answer {
                    body: body.as_bytes(),
                    ..status(Some(code))
                },
                201,
                0,
            ) {
                Err(AuthFailure::Invalid(r)) => r,
                other => panic!("{other:?}"),
            }
        };
        const D: &str = " (Disable insecure_debug mode to suppress these details.)";
        assert_eq!(
            said(401, "The request you have made requires authentication."),
            Refusal::Unsaid
        );
        assert_eq!(
            said(401, &format!("Invalid username or password{D}")),
            Refusal::WrongSecret
        );
        assert_eq!(
            said(
                401,
                &format!("Invalid application credential ID or secret{D}")
            ),
            Refusal::WrongSecret
        );
        assert_eq!(
            said(401, &format!("Could not find user: nobody.{D}")),
            Refusal::NoUser
        );
        assert_eq!(
            said(
                401,
                &format!("Could not find application credential: {{}}{D}")
            ),
            Refusal::NoApplicationCredential
        );
        assert_eq!(
            said(404, "Could not find Application Credential: 0123."),
            Refusal::NoApplicationCredential
        );
        assert_eq!(
            said(401, "The account is locked for user: 6289."),
            Refusal::Locked
        );
        assert_eq!(
            said(401, "The account is disabled for user: 6289."),
            Refusal::Disabled
        );
        assert_eq!(
            said(
                401,
                "The password is expired and needs to be changed for user: 6289."
            ),
            Refusal::PasswordExpired
        );
        assert_eq!(
            said(401, &format!("User 6289 has no access to project 1e03{D}")),
            Refusal::NoRole
        );
        assert_eq!(
            said(401, &format!("User 6289 has no access to domain 1e63{D}")),
            Refusal::NoRole
        );
        assert_eq!(
            said(401, &format!("Could not find project: team-zz.{D}")),
            Refusal::NoProject
        );
        assert_eq!(
            said(401, &format!("Could not find domain: no.domain.{D}")),
            Refusal::NoDomain("no.domain".into())
        );
        // Anything else, or no JSON, says nothing; a validation's refusal is never read.
        assert_eq!(said(401, "Something new."), Refusal::Unsaid);
        assert_eq!(refusal(b"<html>"), Refusal::Unsaid);
        let body = json!({"error": {"message": "Invalid username or password"}}).to_string();
        let validation = Answer {
            body: body.as_bytes(),
            ..status(Some(401))
        };
        assert_eq!(
            parse_token_answer(&validation, 200, 0),
            Err(AuthFailure::Invalid(Refusal::Unsaid))
        );
    }

    #[test]
    fn expired_token_is_invalid() {
        let now = parse_rfc3339("2026-11-21T15:00:00Z").unwrap();
        assert!(matches!(
            parse_token_answer(&ok(BODY), 200, now),
            Err(AuthFailure::Invalid(_))
        ));
    }

    #[test]
    fn subtree() {
        let c = subtree_request(&ks(), "p1", "tok");
        assert_eq!(h(&c, ":path"), Some("/v3/projects/p1?subtree_as_ids"));
        assert_eq!(
            subtree_request(&ks(), "../x?y", "t").headers[1].1,
            "/v3/projects/xy?subtree_as_ids"
        );
        let body = r#"{"project":{"id":"p1","subtree":{"c1":{"g1":null},"c2":null}}}"#;
        assert_eq!(parse_subtree(&ok(body)).unwrap(), ["c1", "c2", "g1"]);
        assert_eq!(
            parse_subtree(&ok(r#"{"project":{"id":"p1","subtree":null}}"#)).unwrap(),
            Vec::<String>::new()
        );
        assert!(matches!(
            parse_subtree(&status(Some(403))),
            Err(AuthFailure::Forbidden(_))
        ));
        assert!(matches!(
            parse_subtree(&status(Some(500))),
            Err(AuthFailure::Unavailable(_))
        ));
        assert!(matches!(
            parse_subtree(&status(Some(404))),
            Err(AuthFailure::Forbidden(_))
        ));
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-03-01T00:00:00.5Z"), Some(951_868_800));
        assert_eq!(
            parse_rfc3339("2026-11-21T14:12:13.000000Z"),
            Some(1_795_270_333)
        );
        assert_eq!(
            parse_rfc3339("2026-11-21T15:12:13+01:00"),
            Some(1_795_270_333)
        );
        assert_eq!(parse_rfc3339("2026-11-21T14:12:13"), Some(1_795_270_333));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-11-21 14:12",
            "2026-11-21T14:12:13.Z",
            "x026-11-21T14:12:13Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
