//! The words of a 401 for a credential Keystone refused: which credential the filter read
//! (the form, the user, the scope; never a password, secret or token) and what Keystone
//! refused, the password (authentication) or the scope, as far as its answer says
//! ([`Refusal`]). A user who typed `alice|team-a` learns that it was read as a user id and a
//! project id; one whose password is right learns that the project is the problem.

use crate::auth::credentials::{self, AppCredRef, Credential, ScopeRef, UserRef};
use crate::auth::keystone::Refusal;
use std::fmt::Write;

/// A name or id as the client sent it, quoted, and cut at 64 characters (Keystone's names
/// may be 255 long; the message stays readable). `credentials` let no control character in.
fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(70) + 2);
    out.push('\'');
    out.extend(s.chars().take(64));
    if s.chars().nth(64).is_some() {
        out.push('…');
    }
    out.push('\'');
    out
}

fn user(u: &UserRef) -> String {
    match u {
        UserRef::Id(id) => format!("user id {}", q(id)),
        UserRef::Name { name, domain } => format!("user name {} in domain {}", q(name), q(domain)),
    }
}

fn scope(s: &ScopeRef) -> String {
    match s {
        ScopeRef::ProjectId(id) => format!("project id {}", q(id)),
        ScopeRef::ProjectName { name, domain } => {
            format!("project name {} in domain {}", q(name), q(domain))
        }
        ScopeRef::Domain(name) => format!("domain {}", q(name)),
    }
}

/// The credential as the filter read it, e.g. "Basic auth as user name 'alice' in domain
/// 'Default', scoped to project name 'team-a' in domain 'Default'", or "the token in
/// X-Auth-Token". `from_authorization`: it came from the `Authorization` header.
pub fn form(c: &Credential, from_authorization: bool) -> String {
    match c {
        Credential::Token(_) if from_authorization => "the Bearer token in Authorization".into(),
        Credential::Token(_) => "the token in X-Auth-Token".into(),
        Credential::Password {
            user: u, scope: s, ..
        } => format!("Basic auth as {}, scoped to {}", user(u), scope(s)),
        Credential::AppCredential { cred, .. } => {
            let what = match cred {
                AppCredRef::Id(id) => format!("application credential id {}", q(id)),
                AppCredRef::Name { name, user: u } => {
                    format!("application credential name {} of {}", q(name), user(u))
                }
            };
            match (from_authorization, cred) {
                (true, _) => format!("Basic auth as {what}"),
                (false, AppCredRef::Id(_)) => format!("{what} (X-Application-Credential-Id)"),
                (false, AppCredRef::Name { .. }) => {
                    format!("{what} (X-Application-Credential-Name)")
                }
            }
        }
    }
}

/// Keystone's ids are 32 hex digits (64 for users mapped from LDAP).
fn looks_like_id(s: &str) -> bool {
    credentials::looks_like_id(s) || (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// For `alice|team-a`: the parts read as ids that look like names, and how to write names.
fn id_hint(c: &Credential) -> Option<String> {
    let Credential::Password { user, scope, .. } = c else {
        return None;
    };
    let user_id = match user {
        UserRef::Id(id) if !looks_like_id(id) => Some(id.as_str()),
        _ => None,
    };
    let project_id = match scope {
        ScopeRef::ProjectId(id) if !looks_like_id(id) => Some(id.as_str()),
        _ => None,
    };
    let user_part = |id: Option<&str>| match (id, user) {
        (Some(name), _) => format!("{name}@DOMAIN"),
        (None, UserRef::Id(id)) => id.clone(),
        (None, UserRef::Name { name, domain }) => format!("{name}@{domain}"),
    };
    let written = match (user_id, project_id) {
        (None, None) => return None,
        (Some(u), Some(p)) => format!(
            "{} was read as a user id and {} as a project id, as neither names a domain; if they are names, \
             write {u}@DOMAIN|{p}@DOMAIN (e.g. {u}@Default|{p}@Default)",
            q(u),
            q(p)
        ),
        (Some(u), None) => format!(
            "{} was read as a user id, as it names no domain; if it is a name, write {}|…",
            q(u),
            user_part(Some(u))
        ),
        (None, Some(p)) => format!(
            "{} was read as a project id, as the user is given by id; if it is a name, write {}|{p}@DOMAIN",
            q(p),
            user_part(None)
        ),
    };
    Some(written)
}

/// The domain names a password credential sent: the user's and the scope's.
fn domains(c: &Credential) -> (Option<&str>, Option<&str>) {
    fn user_domain(u: &UserRef) -> Option<&str> {
        match u {
            UserRef::Name { domain, .. } => Some(domain.as_str()),
            UserRef::Id(_) => None,
        }
    }
    match c {
        Credential::Password { user, scope, .. } => (
            user_domain(user),
            match scope {
                ScopeRef::ProjectName { domain, .. } | ScopeRef::Domain(domain) => {
                    Some(domain.as_str())
                }
                ScopeRef::ProjectId(_) => None,
            },
        ),
        Credential::AppCredential {
            cred: AppCredRef::Name { user, .. },
            ..
        } => (user_domain(user), None),
        _ => (None, None),
    }
}

/// The message of the 401 for a credential Keystone refused.
pub fn refused(c: &Credential, from_authorization: bool, refusal: &Refusal) -> String {
    let form = form(c, from_authorization);
    if let Credential::Token(_) = c {
        let why = match refusal {
            Refusal::Expired => "it has expired",
            _ => "it is invalid, expired or revoked",
        };
        return format!(
            "Keystone refused {form}: {why}; get a new token with `openstack token issue`"
        );
    }
    let password = matches!(c, Credential::Password { .. });
    let (secret, on) = match c {
        Credential::Password {
            scope: ScopeRef::Domain(_),
            ..
        } => ("password", "that domain"),
        Credential::Password { .. } => ("password", "that project"),
        _ => ("secret", "its project"),
    };
    let auth = "authentication failed";
    let why = match refusal {
        Refusal::WrongSecret if password => format!("{auth}: the password is wrong (or there is no user with that id)"),
        Refusal::WrongSecret => format!("{auth}: the secret is wrong"),
        Refusal::NoUser => format!("{auth}: there is no such user in that domain"),
        Refusal::NoApplicationCredential => format!("{auth}: there is no such application credential"),
        Refusal::Locked => format!("{auth}: the user's account is locked after failed logins; ask the cloud's administrators"),
        Refusal::Disabled => format!("{auth}: the user's account is disabled"),
        Refusal::PasswordExpired => format!("{auth}: the password has expired; change it (`openstack user password set`)"),
        Refusal::NoRole if password => format!("the password is right, but the scope was refused: the user has no role on {on}"),
        Refusal::NoRole => format!("the {secret} is right, but the user has no role on {on} any more"),
        Refusal::NoProject => "the scope was refused: there is no such project".to_string(),
        Refusal::NoDomain(name) => match domains(c) {
            (Some(u), s) if u == name.as_str() && s != Some(name.as_str()) => {
                format!("{auth}: there is no domain {} (the user's)", q(u))
            }
            (u, Some(s)) if s == name.as_str() && u != Some(name.as_str()) => format!("the scope was refused: there is no domain {}", q(s)),
            (Some(u), Some(_)) if u == name.as_str() => format!("there is no domain {}", q(u)),
            _ => "a domain it names does not exist".to_string(),
        },
        Refusal::Unsaid | Refusal::Expired if password => format!(
            "Keystone does not say whether it refused the password or the scope (it says why only with \
             insecure_debug): the password may be wrong (or the user may not exist), or the user may have \
             no role on {on} (or it may not exist)"
        ),
        Refusal::Unsaid | Refusal::Expired => {
            "the application credential does not exist, its secret is wrong, or it has expired".to_string()
        }
    };
    let mut out = format!("Keystone refused {form}: {why}");
    let hinted = matches!(
        refusal,
        Refusal::Unsaid | Refusal::WrongSecret | Refusal::NoUser | Refusal::NoProject
    );
    if let Some(hint) = id_hint(c).filter(|_| hinted) {
        let _ = write!(out, ". Note: {hint}");
    }
    out
}

/// The message of the 401 for a credential Keystone refused less than `negative_ttl`
/// seconds ago (the filter does not ask again before then; why is not kept).
pub fn refused_recently(c: &Credential, from_authorization: bool, negative_ttl: u64) -> String {
    let form = form(c, from_authorization);
    let what = match c {
        Credential::Token(_) => "get a new token with `openstack token issue`",
        Credential::Password { .. } => {
            "check the password, and that the user has a role on the project or domain"
        }
        Credential::AppCredential { .. } => "check the application credential and its secret",
    };
    format!(
        "Keystone refused {form} less than {negative_ttl} s ago (the filter does not ask again before then); {what}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(user: UserRef, scope: ScopeRef) -> Credential {
        Credential::Password {
            user,
            password: "s3cret-pw".into(),
            scope,
        }
    }

    fn uname(n: &str, d: &str) -> UserRef {
        UserRef::Name {
            name: n.into(),
            domain: d.into(),
        }
    }

    fn pname(n: &str, d: &str) -> ScopeRef {
        ScopeRef::ProjectName {
            name: n.into(),
            domain: d.into(),
        }
    }

    const PID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn every_form_is_named_without_its_secret() {
        let cases = [
            (Credential::Token("tok-secret".into()), false, "the token in X-Auth-Token"),
            (Credential::Token("tok-secret".into()), true, "the Bearer token in Authorization"),
            (
                password(uname("alice", "Default"), pname("team-a", "Default")),
                true,
                "Basic auth as user name 'alice' in domain 'Default', scoped to project name 'team-a' in domain 'Default'",
            ),
            (password(UserRef::Id("u1".into()), ScopeRef::ProjectId(PID.into())), true, "Basic auth as user id 'u1', scoped to project id '0123456789abcdef0123456789abcdef'"),
            (password(uname("rita", "tenants"), ScopeRef::Domain("tenants".into())), true, "Basic auth as user name 'rita' in domain 'tenants', scoped to domain 'tenants'"),
            (
                Credential::AppCredential { cred: AppCredRef::Id("ac1".into()), secret: "ac-secret".into() },
                true,
                "Basic auth as application credential id 'ac1'",
            ),
            (
                Credential::AppCredential { cred: AppCredRef::Id("ac1".into()), secret: "ac-secret".into() },
                false,
                "application credential id 'ac1' (X-Application-Credential-Id)",
            ),
            (
                Credential::AppCredential {
                    cred: AppCredRef::Name { name: "ci".into(), user: uname("alice", "tenants") },
                    secret: "ac-secret".into(),
                },
                false,
                "application credential name 'ci' of user name 'alice' in domain 'tenants' (X-Application-Credential-Name)",
            ),
        ];
        for (c, from_authorization, want) in cases {
            assert_eq!(form(&c, from_authorization), want);
            for r in [
                Refusal::Unsaid,
                Refusal::WrongSecret,
                Refusal::NoRole,
                Refusal::NoDomain("Default".into()),
            ] {
                let m = refused(&c, from_authorization, &r);
                assert!(m.starts_with(&format!("Keystone refused {want}: ")), "{m}");
                assert!(
                    !m.contains("secret-") && !m.contains("s3cret") && !m.contains("tok-secret"),
                    "{m}"
                );
            }
        }
        let long = form(
            &password(
                UserRef::Id("x".repeat(300)),
                ScopeRef::ProjectId(PID.into()),
            ),
            true,
        );
        assert!(
            long.contains(&format!("'{}…'", "x".repeat(64))) && !long.contains(&"x".repeat(65)),
            "{long}"
        );
    }

    #[test]
    fn tokens_keep_pointing_at_openstack_token_issue() {
        let m = refused(&Credential::Token("t".into()), false, &Refusal::Unsaid);
        assert_eq!(m, "Keystone refused the token in X-Auth-Token: it is invalid, expired or revoked; get a new token with `openstack token issue`");
        assert!(
            refused(&Credential::Token("t".into()), true, &Refusal::Expired)
                .contains("it has expired; get a new token with `openstack token issue`")
        );
        let m = refused_recently(&Credential::Token("t".into()), false, 10);
        assert!(
            m.contains("less than 10 s ago") && m.contains("openstack token issue"),
            "{m}"
        );
    }

    #[test]
    fn password_or_scope() {
        let alice = password(uname("alice", "tenants"), pname("team-b", "tenants"));
        let m = |r: Refusal| refused(&alice, true, &r);
        assert!(
            m(Refusal::WrongSecret).ends_with(
                ": authentication failed: the password is wrong (or there is no user with that id)"
            ),
            "{}",
            m(Refusal::WrongSecret)
        );
        assert!(m(Refusal::NoRole).ends_with(": the password is right, but the scope was refused: the user has no role on that project"));
        assert!(
            m(Refusal::NoProject).ends_with(": the scope was refused: there is no such project")
        );
        assert!(m(Refusal::NoUser).contains("authentication failed: there is no such user"));
        assert!(m(Refusal::Locked).contains("authentication failed: the user's account is locked"));
        assert!(m(Refusal::PasswordExpired).contains("the password has expired"));
        let unsaid = m(Refusal::Unsaid);
        assert!(
            unsaid.contains("does not say whether it refused the password or the scope"),
            "{unsaid}"
        );
        assert!(
            !unsaid.contains("openstack token issue") && !unsaid.contains("Note:"),
            "{unsaid}"
        );
        // Which domain is missing: the user's or the project's.
        let other = password(uname("alice", "nodomain"), pname("team-a", "tenants"));
        assert!(refused(&other, true, &Refusal::NoDomain("nodomain".into()))
            .ends_with("authentication failed: there is no domain 'nodomain' (the user's)"));
        let other = password(uname("alice", "tenants"), pname("team-a", "nodomain"));
        assert!(refused(&other, true, &Refusal::NoDomain("nodomain".into()))
            .ends_with("the scope was refused: there is no domain 'nodomain'"));
        let domain = password(
            uname("alice", "tenants"),
            ScopeRef::Domain("tenants".into()),
        );
        assert!(refused(&domain, true, &Refusal::NoRole)
            .ends_with("the user has no role on that domain"));
        let m = refused_recently(&alice, true, 10);
        assert!(
            m.contains("Basic auth as user name 'alice'") && m.contains("check the password"),
            "{m}"
        );
    }

    #[test]
    fn names_read_as_ids_are_pointed_out() {
        // alice|team-a: Maia reads a user without @domain as an id, and then the project too.
        let c = password(
            UserRef::Id("alice".into()),
            ScopeRef::ProjectId("team-a".into()),
        );
        let m = refused(&c, true, &Refusal::Unsaid);
        assert!(
            m.starts_with(
                "Keystone refused Basic auth as user id 'alice', scoped to project id 'team-a': "
            ),
            "{m}"
        );
        assert!(
            m.ends_with("Note: 'alice' was read as a user id and 'team-a' as a project id, as neither names a domain; \
                         if they are names, write alice@DOMAIN|team-a@DOMAIN (e.g. alice@Default|team-a@Default)"),
            "{m}"
        );
        let c = password(UserRef::Id("alice".into()), ScopeRef::ProjectId(PID.into()));
        assert!(refused(&c, true, &Refusal::WrongSecret)
            .ends_with("if it is a name, write alice@DOMAIN|…"));
        let uid = "f".repeat(64);
        let c = password(
            UserRef::Id(uid.clone()),
            ScopeRef::ProjectId("team-a".into()),
        );
        assert!(refused(&c, true, &Refusal::NoProject)
            .ends_with(&format!("if it is a name, write {uid}|team-a@DOMAIN")));
        // Ids that look like ids, names with domains, or a refusal that is not about them: no note.
        let c = password(UserRef::Id(PID.into()), ScopeRef::ProjectId(PID.into()));
        assert!(!refused(&c, true, &Refusal::Unsaid).contains("Note:"));
        let c = password(uname("alice", "tenants"), pname("team-a", "tenants"));
        assert!(!refused(&c, true, &Refusal::Unsaid).contains("Note:"));
        let c = password(
            UserRef::Id("alice".into()),
            ScopeRef::ProjectId("team-a".into()),
        );
        assert!(!refused(&c, true, &Refusal::NoRole).contains("Note:"));
    }
}
