//! The scope cache's logic, for proxy-wasm shared data.
//!
//! Shared data has no TTL, no delete and no eviction, so keys come from a fixed set of
//! slots: slot = first 8 bytes of the credential's SHA-256 modulo `max_entries`. A new
//! credential overwrites whatever held its slot. The value carries the full hash, checked
//! on every read (two credentials can share a slot, and NGINX matches keys by CRC32 only),
//! and the time the entry stops being valid, checked on every read.

use crate::auth::scope::Scope;
use serde::{Deserialize, Serialize};

const VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Entry {
    v: u8,
    /// Hex SHA-256 of the credential.
    h: String,
    /// Unix seconds after which the entry is stale.
    until: u64,
    /// `None`: Keystone refused the credential (a negative entry).
    scope: Option<Scope>,
}

/// What the cache knows of a credential, and until when (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Valid(Scope, u64),
    /// Refused by Keystone a moment ago.
    Invalid(u64),
    Miss,
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// The shared-data key of the slot that `digest` maps to. `namespace` separates filter
/// configurations that share a VM id (e.g. two Keystones).
pub fn slot_key(namespace: &str, digest: &[u8; 32], max_entries: u32) -> String {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let slot = u64::from_be_bytes(first) % u64::from(max_entries.max(1));
    format!("kpw/{namespace}/scope/{slot}")
}

/// How long a fresh validation is trusted: min(now + ttl, token expiry).
pub fn until(scope: &Scope, now: u64, ttl_seconds: u64) -> u64 {
    now.saturating_add(ttl_seconds).min(scope.expires_at)
}

/// The entry for a fresh validation, trusted until `until`.
pub fn encode(digest: &[u8; 32], scope: &Scope, until: u64) -> Vec<u8> {
    let entry = Entry {
        v: VERSION,
        h: hex(digest),
        until,
        scope: Some(scope.clone()),
    };
    serde_json::to_vec(&entry).unwrap_or_default()
}

/// The entry for a credential Keystone refused, remembered until `until`.
pub fn encode_invalid(digest: &[u8; 32], until: u64) -> Vec<u8> {
    let entry = Entry {
        v: VERSION,
        h: hex(digest),
        until,
        scope: None,
    };
    serde_json::to_vec(&entry).unwrap_or_default()
}

/// What the slot says of `digest`: only if it holds this very credential and is fresh.
pub fn decode(bytes: &[u8], digest: &[u8; 32], now: u64) -> Lookup {
    let Ok(entry) = serde_json::from_slice::<Entry>(bytes) else {
        return Lookup::Miss;
    };
    if entry.v != VERSION || entry.until <= now || entry.h != hex(digest) {
        return Lookup::Miss;
    }
    match entry.scope {
        Some(scope) if scope.expires_at > now => {
            let until = entry.until.min(scope.expires_at);
            Lookup::Valid(scope, until)
        }
        Some(_) => Lookup::Miss,
        None => Lookup::Invalid(entry.until),
    }
}

/// The shared-data key of the filter's service token.
pub fn service_key(namespace: &str) -> String {
    format!("kpw/{namespace}/service")
}

#[derive(Serialize, Deserialize)]
struct ServiceEntry {
    token: String,
    until: u64,
}

/// Refresh the service token this long before it expires.
pub const SERVICE_TOKEN_MARGIN: u64 = 120;

/// Kept until `SERVICE_TOKEN_MARGIN` before it expires, or half its remaining life when that
/// is shorter (a Keystone that issues short tokens would otherwise have them stored stale,
/// and every request would log in again).
pub fn encode_service_token(token: &str, expires_at: u64, now: u64) -> Vec<u8> {
    let margin = SERVICE_TOKEN_MARGIN.min(expires_at.saturating_sub(now) / 2);
    let e = ServiceEntry {
        token: token.to_string(),
        until: expires_at.saturating_sub(margin),
    };
    serde_json::to_vec(&e).unwrap_or_default()
}

pub fn decode_service_token(bytes: &[u8], now: u64) -> Option<String> {
    let e: ServiceEntry = serde_json::from_slice(bytes).ok()?;
    (e.until > now && !e.token.is_empty()).then_some(e.token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(expires_at: u64) -> Scope {
        Scope {
            user_id: "u".into(),
            project_id: Some("p".into()),
            domain_id: Some("d".into()),
            domain_scoped: false,
            system: false,
            roles: vec!["reader".into()],
            expires_at,
            subprojects: vec![],
            access_rules: None,
        }
    }

    #[test]
    fn negative_entries() {
        let d = [7u8; 32];
        let e = encode_invalid(&d, 1010);
        assert_eq!(decode(&e, &d, 1009), Lookup::Invalid(1010));
        assert_eq!(decode(&e, &d, 1010), Lookup::Miss);
        assert_eq!(decode(&e, &[8u8; 32], 1000), Lookup::Miss);
    }

    #[test]
    fn service_token() {
        let e = encode_service_token("svc", 10_000, 0);
        assert_eq!(
            decode_service_token(&e, 10_000 - SERVICE_TOKEN_MARGIN - 1).as_deref(),
            Some("svc")
        );
        assert_eq!(
            decode_service_token(&e, 10_000 - SERVICE_TOKEN_MARGIN),
            None
        );
        // A token that lives 60 s: usable for 30 of them, not stored stale.
        let e = encode_service_token("svc", 10_060, 10_000);
        assert_eq!(decode_service_token(&e, 10_029).as_deref(), Some("svc"));
        assert_eq!(decode_service_token(&e, 10_030), None);
        assert_eq!(decode_service_token(b"x", 0), None);
    }

    #[test]
    fn round_trip_until_ttl() {
        let d = [7u8; 32];
        let e = encode(&d, &scope(10_000), until(&scope(10_000), 1000, 300));
        assert_eq!(decode(&e, &d, 1000), Lookup::Valid(scope(10_000), 1300));
        assert_eq!(decode(&e, &d, 1299), Lookup::Valid(scope(10_000), 1300));
        assert_eq!(decode(&e, &d, 1300), Lookup::Miss);
    }

    #[test]
    fn token_expiry_caps_ttl() {
        let d = [7u8; 32];
        let e = encode(&d, &scope(1100), until(&scope(1100), 1000, 300));
        assert!(matches!(decode(&e, &d, 1099), Lookup::Valid(_, 1100)));
        assert_eq!(decode(&e, &d, 1100), Lookup::Miss);
    }

    #[test]
    fn other_credential_in_same_slot_misses() {
        let a = [1u8; 32];
        let mut b = a;
        b[31] = 2;
        assert_eq!(slot_key("n", &a, 64), slot_key("n", &b, 64));
        let e = encode(&a, &scope(10_000), 300);
        assert_eq!(decode(&e, &b, 1), Lookup::Miss);
    }

    #[test]
    fn the_key_never_holds_the_hash_or_token() {
        let d = [0xabu8; 32];
        let k = slot_key("ns", &d, 1000);
        assert!(k.starts_with("kpw/ns/scope/"));
        assert!(!k.contains("abab"));
        let slot: u64 = k.rsplit('/').next().unwrap().parse().unwrap();
        assert!(slot < 1000);
    }

    #[test]
    fn keys_stay_bounded_with_100k_credentials() {
        use crate::auth::credentials::Credential;
        let mut keys = std::collections::HashSet::new();
        for i in 0..100_000 {
            let d = Credential::Token(format!("token-{i}")).digest();
            keys.insert(slot_key("ns", &d, 16384));
        }
        assert!(keys.len() <= 16384, "never more keys than slots");
        assert!(
            keys.len() > 16_000,
            "the slots are spread evenly: {}",
            keys.len()
        );
    }

    #[test]
    fn garbage_is_a_miss() {
        assert_eq!(decode(b"", &[0; 32], 0), Lookup::Miss);
        assert_eq!(decode(b"{\"v\":9}", &[0; 32], 0), Lookup::Miss);
    }
}
