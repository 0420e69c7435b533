//! Reading the user's credentials from the request, and the cache key derived from them.
//!
//! Accepted, in this order: `X-Auth-Token`; `Authorization: Bearer <token>`; the
//! `X-Application-Credential-*` headers; `Authorization: Basic` in Maia's encodings
//! (`user|project`, `user|@domain`, `*appcred…`).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use sha2::{Digest, Sha256};

/// Keystone tokens are a few hundred bytes (fernet) to a few KiB (PKI); anything longer
/// is refused before it is hashed or sent anywhere. The same bound holds for Basic auth.
pub const MAX_TOKEN_BYTES: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A Keystone token (`X-Auth-Token` or Bearer).
    Token(String),
    /// A user's password, with the scope to ask for.
    Password {
        user: UserRef,
        password: String,
        scope: ScopeRef,
    },
    /// An application credential and its secret (its scope is its own).
    AppCredential { cred: AppCredRef, secret: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(String),
    /// A user name and the NAME of its domain.
    Name {
        name: String,
        domain: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRef {
    ProjectId(String),
    /// A project name and the NAME of its domain.
    ProjectName {
        name: String,
        domain: String,
    },
    /// A domain, by name.
    Domain(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppCredRef {
    Id(String),
    Name { name: String, user: UserRef },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    Missing,
    Malformed(String),
}

/// A credential, and whether it came from the `Authorization` header (which is then
/// consumed and not forwarded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub credential: Credential,
    pub from_authorization: bool,
}

fn malformed(why: impl Into<String>) -> CredentialError {
    CredentialError::Malformed(why.into())
}

fn check_token(token: &str, what: &str) -> Result<String, CredentialError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(CredentialError::Missing);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed(format!("the {what} is too long")));
    }
    if !is_token(token) {
        return Err(malformed(format!("the {what} holds invalid characters")));
    }
    Ok(token.to_string())
}

/// What `check_token` accepts once trimmed: printable ASCII (anything else could smuggle
/// bytes into the callout), not empty, not too long. Every byte is looked at (a fold, not
/// `all`), which the compiler turns into 16 bytes per step.
pub fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN_BYTES
        && token.bytes().fold(true, |ok, b| ok & b.is_ascii_graphic())
}

/// Names and ids go into JSON and logs: no control characters, none empty.
fn check_part(s: &str, what: &str) -> Result<String, CredentialError> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err(malformed(format!(
            "the {what} in the Basic auth user name is empty or invalid"
        )));
    }
    Ok(s.to_string())
}

/// `name@domain` (split at the last `@`, as names may hold one) or an id.
fn user_ref(s: &str) -> Result<UserRef, CredentialError> {
    match s.rsplit_once('@') {
        Some((name, domain)) => Ok(UserRef::Name {
            name: check_part(name, "user name")?,
            domain: check_part(domain, "user domain")?,
        }),
        None => Ok(UserRef::Id(check_part(s, "user id")?)),
    }
}

/// Keystone's ids are uuid4 hex: 32 lower-case hex digits.
pub(crate) fn looks_like_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Maia's encodings of the Basic auth user name.
fn parse_basic_user(user: &str, password: String) -> Result<Credential, CredentialError> {
    if let Some(app) = user.strip_prefix('*') {
        let cred = match app.split_once('@') {
            None => AppCredRef::Id(check_part(app, "application credential id")?),
            Some((name, user)) => AppCredRef::Name {
                name: check_part(name, "application credential name")?,
                user: user_ref(user)?,
            },
        };
        return Ok(Credential::AppCredential {
            cred,
            secret: password,
        });
    }
    let (user, scope) = user.split_once('|').ok_or_else(|| {
        malformed("the Basic auth user name must be user|project or user|@domain (e.g. alice@Default|demo@Default)")
    })?;
    let user = user_ref(user)?;
    let scope = if let Some(domain) = scope.strip_prefix('@') {
        ScopeRef::Domain(check_part(domain, "domain")?)
    } else if let Some((name, domain)) = scope.rsplit_once('@') {
        ScopeRef::ProjectName {
            name: check_part(name, "project name")?,
            domain: check_part(domain, "project domain")?,
        }
    } else {
        match &user {
            // A plain project next to a named user: an id if it looks like one, else a
            // name in the user's own domain.
            UserRef::Name { domain, .. } if !looks_like_id(scope) => ScopeRef::ProjectName {
                name: check_part(scope, "project name")?,
                domain: domain.clone(),
            },
            _ => ScopeRef::ProjectId(check_part(scope, "project id")?),
        }
    };
    Ok(Credential::Password {
        user,
        password,
        scope,
    })
}

fn decode_basic(b64: &str) -> Result<(String, String), CredentialError> {
    let bytes = base64_decode(b64.trim())
        .ok_or_else(|| malformed("the Basic auth header is not valid base64"))?;
    let text =
        String::from_utf8(bytes).map_err(|_| malformed("the Basic auth header is not UTF-8"))?;
    let (user, password) = text
        .split_once(':')
        .ok_or_else(|| malformed("the Basic auth header has no ':'"))?;
    if password.is_empty() {
        return Err(malformed("the Basic auth password is empty"));
    }
    Ok((user.to_string(), password.to_string()))
}

/// Standard base64, with or without padding (clients differ); nothing else.
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard base64 with optional padding; `None` on anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    BASIC.decode(s).ok()
}

impl Credential {
    /// Reads the credential from request headers; `header` looks a header up by lower-case name.
    pub fn from_headers<'a>(
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Found, CredentialError> {
        let found = |credential, from_authorization| {
            Ok(Found {
                credential,
                from_authorization,
            })
        };
        if let Some(t) = header("x-auth-token").filter(|t| !t.trim().is_empty()) {
            return found(
                Credential::Token(check_token(t, "X-Auth-Token header")?),
                false,
            );
        }
        let authorization = header("authorization")
            .map(str::trim)
            .filter(|a| !a.is_empty());
        if let Some(a) = &authorization {
            if a.len() > MAX_TOKEN_BYTES {
                return Err(malformed("the Authorization header is too long"));
            }
            if let Some((scheme, rest)) = a.split_once(' ') {
                if scheme.eq_ignore_ascii_case("bearer") {
                    return found(Credential::Token(check_token(rest, "Bearer token")?), true);
                }
            }
        }
        if let Some(secret) = header("x-application-credential-secret").filter(|s| !s.is_empty()) {
            let cred = if let Some(id) = header("x-application-credential-id") {
                AppCredRef::Id(check_part(id.trim(), "application credential id")?)
            } else if let Some(name) = header("x-application-credential-name") {
                let user = match (header("x-user-id"), header("x-user-name"), header("x-user-domain-name")) {
                    (Some(id), _, _) => UserRef::Id(check_part(id.trim(), "user id")?),
                    (None, Some(n), Some(d)) => UserRef::Name { name: check_part(n.trim(), "user name")?, domain: check_part(d.trim(), "user domain")? },
                    _ => return Err(malformed("X-Application-Credential-Name needs X-User-Id, or X-User-Name and X-User-Domain-Name")),
                };
                AppCredRef::Name {
                    name: check_part(name.trim(), "application credential name")?,
                    user,
                }
            } else {
                return Err(malformed(
                    "X-Application-Credential-Secret needs X-Application-Credential-Id or -Name",
                ));
            };
            return found(
                Credential::AppCredential {
                    cred,
                    secret: secret.to_string(),
                },
                false,
            );
        }
        if let Some(a) = &authorization {
            if let Some((scheme, rest)) = a.split_once(' ') {
                if scheme.eq_ignore_ascii_case("basic") {
                    let (user, password) = decode_basic(rest)?;
                    return found(parse_basic_user(&user, password)?, true);
                }
            }
        }
        Err(CredentialError::Missing)
    }

    /// The digest of `Credential::Token(token)`, without the credential.
    pub fn token_digest(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// SHA-256 of the whole credential (secret included): the only form in which one is
    /// stored. A token is hashed as it is (the common case, kept to the fewest blocks); any
    /// other credential starts with a NUL byte, which no token holds, and has every field
    /// length-prefixed, so no two credentials share an encoding.
    pub fn digest(&self) -> [u8; 32] {
        if let Credential::Token(t) = self {
            return Credential::token_digest(t);
        }
        let mut h = Sha256::new();
        h.update([0u8]);
        let mut field = |s: &str| {
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        };
        fn user_fields(u: &UserRef) -> [&str; 3] {
            match u {
                UserRef::Id(id) => ["uid", id, ""],
                UserRef::Name { name, domain } => ["uname", name, domain],
            }
        }
        match self {
            Credential::Token(_) => {}
            Credential::Password {
                user,
                password,
                scope,
            } => {
                field("password");
                user_fields(user).iter().for_each(|f| field(f));
                field(password);
                match scope {
                    ScopeRef::ProjectId(id) => ["pid", id.as_str(), ""],
                    ScopeRef::ProjectName { name, domain } => {
                        ["pname", name.as_str(), domain.as_str()]
                    }
                    ScopeRef::Domain(d) => ["domain", d.as_str(), ""],
                }
                .iter()
                .for_each(|f| field(f));
            }
            Credential::AppCredential { cred, secret } => {
                field("appcred");
                match cred {
                    AppCredRef::Id(id) => {
                        field("id");
                        field(id);
                    }
                    AppCredRef::Name { name, user } => {
                        field("name");
                        field(name);
                        user_fields(user).iter().for_each(|f| field(f));
                    }
                }
                field(secret);
            }
        }
        h.finalize().into()
    }

    /// What to call the credential in logs: never a secret.
    pub fn describe(&self) -> &'static str {
        match self {
            Credential::Token(_) => "token",
            Credential::Password { .. } => "password",
            Credential::AppCredential { .. } => "application credential",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Credential, CredentialError> {
        Credential::from_headers(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
            .map(|f| f.credential)
    }

    use crate::host::mock::b64;

    fn basic(user: &str, pw: &str) -> Result<Credential, CredentialError> {
        let v = format!("Basic {}", b64(&format!("{user}:{pw}")));
        from(&[("authorization", &v)])
    }

    fn uname(n: &str, d: &str) -> UserRef {
        UserRef::Name {
            name: n.into(),
            domain: d.into(),
        }
    }

    const PID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn tokens() {
        assert_eq!(
            from(&[("x-auth-token", " gAAAAABk ")]),
            Ok(Credential::Token("gAAAAABk".into()))
        );
        assert_eq!(
            from(&[("authorization", "Bearer tok")]),
            Ok(Credential::Token("tok".into()))
        );
        assert_eq!(
            from(&[("authorization", "bearer tok")]),
            Ok(Credential::Token("tok".into()))
        );
        // X-Auth-Token wins over Authorization.
        assert_eq!(
            from(&[("x-auth-token", "a"), ("authorization", "Bearer b")]),
            Ok(Credential::Token("a".into()))
        );
        let f = Credential::from_headers(|n| (n == "authorization").then_some("Bearer t")).unwrap();
        assert!(f.from_authorization);
    }

    #[test]
    fn missing_or_malformed() {
        assert_eq!(from(&[]), Err(CredentialError::Missing));
        assert_eq!(
            from(&[("x-auth-token", "  ")]),
            Err(CredentialError::Missing)
        );
        assert_eq!(
            from(&[("authorization", "Negotiate xyz")]),
            Err(CredentialError::Missing)
        );
        for bad in [
            vec![("x-auth-token", "a b")],
            vec![("x-auth-token", "a\u{7f}")],
            vec![("authorization", "Basic !!!")],
            vec![("authorization", "Bearer a\u{1}")],
        ] {
            assert!(
                matches!(from(&bad), Err(CredentialError::Malformed(_))),
                "{bad:?}"
            );
        }
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(
            from(&[("x-auth-token", &long)]),
            Err(CredentialError::Malformed(_))
        ));
        assert!(
            matches!(basic("alice", "pw"), Err(CredentialError::Malformed(_))),
            "no scope"
        );
        assert!(
            matches!(basic("alice|p", ""), Err(CredentialError::Malformed(_))),
            "no password"
        );
        assert!(matches!(
            basic("|p", "pw"),
            Err(CredentialError::Malformed(_))
        ));
    }

    #[test]
    fn maia_basic_forms() {
        let pw = |user, scope| {
            Ok(Credential::Password {
                user,
                password: "pw".into(),
                scope,
            })
        };
        assert_eq!(
            basic(&format!("u1|{PID}"), "pw"),
            pw(UserRef::Id("u1".into()), ScopeRef::ProjectId(PID.into()))
        );
        assert_eq!(
            basic(&format!("alice@tenants|{PID}"), "pw"),
            pw(uname("alice", "tenants"), ScopeRef::ProjectId(PID.into()))
        );
        assert_eq!(
            basic("u1|team-a@tenants", "pw"),
            pw(
                UserRef::Id("u1".into()),
                ScopeRef::ProjectName {
                    name: "team-a".into(),
                    domain: "tenants".into()
                }
            )
        );
        assert_eq!(
            basic("alice@tenants|team-a@tenants", "pw"),
            pw(
                uname("alice", "tenants"),
                ScopeRef::ProjectName {
                    name: "team-a".into(),
                    domain: "tenants".into()
                }
            )
        );
        assert_eq!(
            basic("alice@tenants|team-a", "pw"),
            pw(
                uname("alice", "tenants"),
                ScopeRef::ProjectName {
                    name: "team-a".into(),
                    domain: "tenants".into()
                }
            )
        );
        assert_eq!(
            basic("u1|@tenants", "pw"),
            pw(UserRef::Id("u1".into()), ScopeRef::Domain("tenants".into()))
        );
        assert_eq!(
            basic("alice@tenants|@tenants", "pw"),
            pw(
                uname("alice", "tenants"),
                ScopeRef::Domain("tenants".into())
            )
        );
        // e-mail style user names keep their @.
        assert_eq!(
            basic("bob@example.com@Default|@Default", "pw"),
            pw(
                uname("bob@example.com", "Default"),
                ScopeRef::Domain("Default".into())
            )
        );
        // A password may hold ':'.
        assert!(
            matches!(basic("u1|p", "a:b"), Ok(Credential::Password { password, .. }) if password == "a:b")
        );
    }

    #[test]
    fn application_credentials() {
        let app = |cred| {
            Ok(Credential::AppCredential {
                cred,
                secret: "s".into(),
            })
        };
        assert_eq!(basic("*ac1", "s"), app(AppCredRef::Id("ac1".into())));
        assert_eq!(
            basic("*ci@u1", "s"),
            app(AppCredRef::Name {
                name: "ci".into(),
                user: UserRef::Id("u1".into())
            })
        );
        assert_eq!(
            basic("*ci@alice@tenants", "s"),
            app(AppCredRef::Name {
                name: "ci".into(),
                user: uname("alice", "tenants")
            })
        );
        assert_eq!(
            from(&[
                ("x-application-credential-id", "ac1"),
                ("x-application-credential-secret", "s")
            ]),
            app(AppCredRef::Id("ac1".into()))
        );
        assert_eq!(
            from(&[
                ("x-application-credential-name", "ci"),
                ("x-user-name", "alice"),
                ("x-user-domain-name", "tenants"),
                ("x-application-credential-secret", "s")
            ]),
            app(AppCredRef::Name {
                name: "ci".into(),
                user: uname("alice", "tenants")
            })
        );
        assert!(matches!(
            from(&[
                ("x-application-credential-name", "ci"),
                ("x-application-credential-secret", "s")
            ]),
            Err(CredentialError::Malformed(_))
        ));
    }

    #[test]
    fn digest_covers_every_field() {
        let all = [
            Credential::Token("abc".into()),
            Credential::Token("abd".into()),
            basic("u|p", "pw").unwrap(),
            basic("u|p", "pw2").unwrap(),
            basic("u|q", "pw").unwrap(),
            basic("u@d|p@d", "pw").unwrap(),
            basic("u@d|@d", "pw").unwrap(),
            basic("*ac", "pw").unwrap(),
            basic("*ac@u", "pw").unwrap(),
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.digest(), b.digest(), "{a:?} {b:?}");
            }
        }
        assert_eq!(all[0].digest(), Credential::Token("abc".into()).digest());
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("YWxpY2U6cHc=").unwrap(), b"alice:pw");
        assert_eq!(base64_decode("YWxpY2U6cHc").unwrap(), b"alice:pw");
        assert!(base64_decode("YW*").is_none());
    }
}
