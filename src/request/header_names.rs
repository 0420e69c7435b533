//! The request headers the filter knows by name: those it reads (as text), and those it
//! removes before a request goes upstream because they carry a credential or claim an
//! identity or a tenant. One `match` classifies a name, so a request's header block is
//! indexed in a single pass (`headers::Headers`) and no lookup scans it again.

macro_rules! header_names {
    ($($variant:ident = $name:literal, read: $read:literal, strip: $strip:literal;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum HeaderName {
            $($variant),*
        }

        impl HeaderName {
            pub const ALL: &'static [HeaderName] = &[$(HeaderName::$variant),*];

            /// The lower-case name, as hosts hand names over.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(HeaderName::$variant => $name),*
                }
            }

            /// The known header of that (lower-case) name.
            pub fn of(name: &str) -> Option<HeaderName> {
                match name {
                    $($name => Some(HeaderName::$variant),)*
                    _ => None,
                }
            }

            /// The filter reads it as text, so it must be UTF-8 (any other header may
            /// hold any bytes).
            pub fn is_read(self) -> bool {
                match self {
                    $(HeaderName::$variant => $read),*
                }
            }

            /// A credential, or a claimed identity or tenant: never forwarded upstream.
            pub fn is_stripped(self) -> bool {
                match self {
                    $(HeaderName::$variant => $strip),*
                }
            }
        }
    };
}

header_names! {
    Method = ":method", read: true, strip: false;
    Path = ":path", read: true, strip: false;
    ContentLength = "content-length", read: true, strip: false;
    TransferEncoding = "transfer-encoding", read: true, strip: false;
    ContentType = "content-type", read: true, strip: false;
    ContentEncoding = "content-encoding", read: true, strip: false;
    RequestId = "x-request-id", read: true, strip: false;
    // Removed only when the filter used it (Basic or Bearer credentials): other schemes
    // may be meant for the upstream.
    Authorization = "authorization", read: true, strip: false;
    // Credentials.
    AuthToken = "x-auth-token", read: true, strip: true;
    AppCredentialId = "x-application-credential-id", read: true, strip: true;
    AppCredentialName = "x-application-credential-name", read: true, strip: true;
    AppCredentialSecret = "x-application-credential-secret", read: true, strip: true;
    // keystonemiddleware's second token (a service's own): a credential all the same.
    ServiceToken = "x-service-token", read: false, strip: true;
    // Identities and tenants a client may claim (what keystonemiddleware would set, and
    // the tenant headers of Cortex, Mimir and Thanos); the first three also name the user
    // of an application credential.
    UserId = "x-user-id", read: true, strip: true;
    UserName = "x-user-name", read: true, strip: true;
    UserDomainName = "x-user-domain-name", read: true, strip: true;
    IdentityStatus = "x-identity-status", read: false, strip: true;
    ServiceIdentityStatus = "x-service-identity-status", read: false, strip: true;
    UserDomainId = "x-user-domain-id", read: false, strip: true;
    ProjectId = "x-project-id", read: false, strip: true;
    ProjectName = "x-project-name", read: false, strip: true;
    ProjectDomainId = "x-project-domain-id", read: false, strip: true;
    ProjectDomainName = "x-project-domain-name", read: false, strip: true;
    DomainId = "x-domain-id", read: false, strip: true;
    DomainName = "x-domain-name", read: false, strip: true;
    Roles = "x-roles", read: false, strip: true;
    ServiceRoles = "x-service-roles", read: false, strip: true;
    TenantId = "x-tenant-id", read: false, strip: true;
    Tenant = "x-tenant", read: false, strip: true;
    ScopeOrgId = "x-scope-orgid", read: false, strip: true;
    ThanosTenant = "thanos-tenant", read: false, strip: true;
    // VictoriaMetrics' tenant headers, and Mimir's switch that lets a writer skip its label
    // name checks.
    AccountId = "accountid", read: false, strip: true;
    VmProjectId = "projectid", read: false, strip: true;
    MimirSkipLabelNameValidation = "x-mimir-skiplabelnamevalidation", read: false, strip: true;
}

impl HeaderName {
    pub const COUNT: usize = HeaderName::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// Its bit in a set of known headers (`Headers::known_mask`).
    pub const fn bit(self) -> u64 {
        1 << self as usize
    }
}

// `Headers` notes which known headers are present in a u64.
const _: () = assert!(HeaderName::COUNT <= 64);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_variants_agree() {
        for (i, h) in HeaderName::ALL.iter().enumerate() {
            assert_eq!(h.index(), i);
            assert_eq!(HeaderName::of(h.as_str()), Some(*h));
            assert_eq!(h.as_str(), h.as_str().to_ascii_lowercase());
        }
        assert_eq!(HeaderName::of("x-auth-tokens"), None);
        assert_eq!(
            HeaderName::of("X-Auth-Token"),
            None,
            "hosts hand names over in lower case"
        );
    }

    #[test]
    fn every_credential_header_is_removed() {
        for h in [
            "x-auth-token",
            "x-application-credential-id",
            "x-application-credential-name",
            "x-application-credential-secret",
        ] {
            assert!(
                HeaderName::of(h).is_some_and(HeaderName::is_stripped),
                "{h}"
            );
        }
        assert!(
            !HeaderName::Authorization.is_stripped(),
            "only when used: see Flow::on_request_headers"
        );
    }
}
