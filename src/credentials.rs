//! Reading the user's credentials from the request, and the cache key derived from them.

use sha2::{Digest, Sha256};

/// Keystone tokens are a few hundred bytes (fernet) to a few KiB (PKI); anything longer
/// is refused before it is hashed or sent anywhere.
pub const MAX_TOKEN_BYTES: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A Keystone token from `X-Auth-Token`.
    Token(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialError {
    Missing,
    Malformed(&'static str),
}

impl Credential {
    /// Reads the credential from request headers; `header` looks a header up by lower-case name.
    pub fn from_headers(header: impl Fn(&str) -> Option<String>) -> Result<Credential, CredentialError> {
        let token = header("x-auth-token").ok_or(CredentialError::Missing)?;
        let token = token.trim();
        if token.is_empty() {
            return Err(CredentialError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(CredentialError::Malformed("the X-Auth-Token header is too long"));
        }
        // Tokens are printable ASCII; anything else could smuggle bytes into the callout.
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CredentialError::Malformed("the X-Auth-Token header holds invalid characters"));
        }
        Ok(Credential::Token(token.to_string()))
    }

    /// SHA-256 of the whole credential, domain-separated by its kind. This is the only
    /// form in which a credential is ever stored.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        match self {
            Credential::Token(t) => {
                h.update(b"token\0");
                h.update(t.as_bytes());
            }
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<Credential, CredentialError> {
        Credential::from_headers(|name| {
            pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn token_header() {
        assert_eq!(from(&[("x-auth-token", " gAAAAABk ")]), Ok(Credential::Token("gAAAAABk".into())));
    }

    #[test]
    fn missing_or_empty() {
        assert_eq!(from(&[]), Err(CredentialError::Missing));
        assert_eq!(from(&[("x-auth-token", "  ")]), Err(CredentialError::Missing));
    }

    #[test]
    fn malformed() {
        assert!(matches!(from(&[("x-auth-token", "a b")]), Err(CredentialError::Malformed(_))));
        assert!(matches!(from(&[("x-auth-token", "a\u{7f}")]), Err(CredentialError::Malformed(_))));
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert!(matches!(from(&[("x-auth-token", &long)]), Err(CredentialError::Malformed(_))));
    }

    #[test]
    fn digest_is_stable_and_distinct() {
        let a = Credential::Token("abc".into());
        assert_eq!(a.digest(), Credential::Token("abc".into()).digest());
        assert_ne!(a.digest(), Credential::Token("abd".into()).digest());
    }
}
