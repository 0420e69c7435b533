//! The scope cache's logic, for proxy-wasm shared data.
//!
//! Shared data has no TTL, no delete and no eviction, so keys come from a fixed set of
//! slots: slot = first 8 bytes of the credential's SHA-256 modulo `max_entries`. A new
//! credential overwrites whatever held its slot. The value carries the full hash, checked
//! on every read (two credentials can share a slot, and NGINX matches keys by CRC32 only),
//! and the time the entry stops being valid, checked on every read.

use crate::scope::Scope;
use serde::{Deserialize, Serialize};

const VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Entry {
    v: u8,
    /// Hex SHA-256 of the credential.
    h: String,
    /// Unix seconds after which the entry is stale.
    until: u64,
    scope: Scope,
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

/// The entry for a fresh validation: valid until min(now + ttl, token expiry).
pub fn encode(digest: &[u8; 32], scope: &Scope, now: u64, ttl_seconds: u64) -> Vec<u8> {
    let until = now.saturating_add(ttl_seconds).min(scope.expires_at);
    let entry = Entry { v: VERSION, h: hex(digest), until, scope: scope.clone() };
    serde_json::to_vec(&entry).unwrap_or_default()
}

/// The cached scope for `digest`, if the slot holds this very credential and is fresh.
pub fn decode(bytes: &[u8], digest: &[u8; 32], now: u64) -> Option<Scope> {
    let entry: Entry = serde_json::from_slice(bytes).ok()?;
    let fresh = entry.v == VERSION && entry.until > now && entry.scope.expires_at > now;
    (fresh && entry.h == hex(digest)).then_some(entry.scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(expires_at: u64) -> Scope {
        Scope {
            user_id: "u".into(),
            project_id: Some("p".into()),
            domain_id: Some("d".into()),
            roles: vec!["reader".into()],
            expires_at,
        }
    }

    #[test]
    fn round_trip_until_ttl() {
        let d = [7u8; 32];
        let e = encode(&d, &scope(10_000), 1000, 300);
        assert_eq!(decode(&e, &d, 1000), Some(scope(10_000)));
        assert_eq!(decode(&e, &d, 1299), Some(scope(10_000)));
        assert_eq!(decode(&e, &d, 1300), None);
    }

    #[test]
    fn token_expiry_caps_ttl() {
        let d = [7u8; 32];
        let e = encode(&d, &scope(1100), 1000, 300);
        assert!(decode(&e, &d, 1099).is_some());
        assert_eq!(decode(&e, &d, 1100), None);
    }

    #[test]
    fn other_credential_in_same_slot_misses() {
        let a = [1u8; 32];
        let mut b = a;
        b[31] = 2;
        assert_eq!(slot_key("n", &a, 64), slot_key("n", &b, 64));
        let e = encode(&a, &scope(10_000), 0, 300);
        assert_eq!(decode(&e, &b, 1), None);
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
    fn garbage_is_a_miss() {
        assert_eq!(decode(b"", &[0; 32], 0), None);
        assert_eq!(decode(b"{\"v\":9}", &[0; 32], 0), None);
    }
}
